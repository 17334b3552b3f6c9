//! status-writeback: the SOC's status, verdict and comments reach S1 — verified, exactly once,
//! in order, and never lost.
//!
//! A webhook is verified, parsed into a [`StatusChange`], resolved to its story, and accepted in
//! one atomic store write (replay marker + pending change). Only then is S1 called, inline
//! within one time budget that fits the platform's 5 seconds; if S1 is down, slow or
//! rate-limits, the change stays pending and is retried with backoff by later runs until it
//! lands or, after [`MAX_ATTEMPTS`], moves to the dead letters.
//!
//! Every attempt (inline or retry) first claims the pending item with a conditional write
//! (owner + expiry), records its progress durably per step under that claim, and ends it with
//! a conditional write, so two attempts never both post a note and no attempt brings back an
//! item another retired. Status changes of one alert go to S1 one at a time under the alert's
//! ordering lock and in the order of their platform timestamps: a change older than one already
//! applied is retired as superseded (its note is posted, its status and verdict are not).

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration as StdDuration, Instant};

use futures_util::StreamExt;
use reqwest::header::HeaderMap;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use time::{Duration, OffsetDateTime};

use crate::mapping::Mapping;
use crate::platform::inbound::{AlertRef, ChangeAction, Inbound, InboundError, PlatformState, StatusChange};
use crate::platform::{PlatformKind, PlatformResolver};
use crate::s1::dto::{AnalystVerdict, IncidentStatus, ThreatActionResult};
use crate::s1::{Consoles, RequestObserver, RequestRecord, RetryPolicy, S1Client, S1Error};
use crate::secrets::{TokenCallError, TokenProvider};
use crate::store::{
    Acceptance, AlertLock, Claim, Finished, OutboundRequest, PendingEntry, PendingWriteback, Store, StoreError,
    StoryRecord, StoryStatus, TenantConfig, Versioned,
};

/// Bodies above this are refused with 413.
pub const MAX_BODY: usize = 256 * 1024;
/// Attempts before a change moves to the dead letters.
pub const MAX_ATTEMPTS: u32 = 8;
/// How long a webhook id is remembered for replay protection.
pub const EVENT_TTL: Duration = Duration::days(7);
/// PagerDuty deliveries (and bearer-mode ones, which nothing signs) whose event time is older
/// than this are refused; replay markers live longer ([`EVENT_TTL`]), so a delivery is either
/// remembered or too old.
pub const REPLAY_WINDOW: Duration = Duration::hours(24);
const _: () = assert!(EVENT_TTL.whole_seconds() >= REPLAY_WINDOW.whole_seconds());
/// A change dated further ahead than this is refused (it would hold back every later change).
pub const MAX_FUTURE: Duration = Duration::minutes(5);
/// The same comment (alert, actor, text) delivered again within this is one note.
pub const NOTE_DEDUPE_WINDOW: Duration = REPLAY_WINDOW;
/// The longest note S1 takes (`data.text` of `POST /threats/notes`: at most 10,000 characters
/// in the vendor's API export); longer notes are cut to it.
pub const MAX_NOTE_CHARS: usize = 10_000;
/// The longest close reason or actor kept from a webhook, in characters.
const MAX_FIELD_CHARS: usize = 500;
/// The whole webhook answer, inline S1 attempt included, fits in this (the platform waits 5 s).
pub const INLINE_BUDGET: StdDuration = StdDuration::from_millis(4_000);
/// How long an attempt's claim on a pending item (and on its alert's ordering lock) lasts.
/// Far longer than any attempt may run ([`INLINE_BUDGET`], [`RETRY_ATTEMPT_LIMIT`]), so a claim
/// lapses only when its attempt died.
pub const CLAIM_TTL: Duration = Duration::minutes(2);
/// The longest one attempt of a scheduled retry pass may run.
pub const RETRY_ATTEMPT_LIMIT: StdDuration = StdDuration::from_secs(30);
/// The `last_error` of a change retired as superseded: it is listed with the dead letters.
pub const SUPERSEDED: &str = "superseded: a later change to this alert reached S1 first; this change's status and verdict were not applied (its note was)";
/// No attempt (inline or in a retry pass) starts with less than this left: a claim taken and
/// cut at once would only hold the change back until the claim lapses.
const MIN_ATTEMPT_WINDOW: StdDuration = StdDuration::from_secs(1);

/// What the writeback needs. Built once per process.
#[derive(Clone)]
pub struct WritebackDeps {
    pub store: Store,
    /// The platforms' inbound secrets.
    pub tokens: Arc<dyn TokenProvider>,
    /// Builds the tenant's inbound adapter (its webhook's verification and parsing).
    pub platforms: Arc<dyn PlatformResolver>,
    /// The tenants' S1 clients, called with their tokens. Scheduled retries of pending changes
    /// retry S1 calls as its options say.
    pub consoles: Consoles,
    /// How the inline attempt, inside the webhook's 5-second budget, retries an S1 call: few,
    /// short tries.
    pub inline_retry: RetryPolicy,
}

impl WritebackDeps {
    /// A retry policy that fits the platform's 5-second answer budget. The whole inline attempt
    /// is bounded by [`INLINE_BUDGET`] too, whatever the HTTP client's own timeouts.
    pub fn inline_retry_policy() -> RetryPolicy {
        RetryPolicy {
            max_attempts: 2,
            min_delay: StdDuration::from_millis(100),
            max_delay: StdDuration::from_millis(300),
            max_retry_after: StdDuration::from_millis(500),
        }
    }
}

/// How one webhook is answered: the time budget of the whole answer, and (for tests replaying
/// recorded deliveries) the clock.
#[derive(Debug, Clone)]
pub struct WebhookOptions {
    /// The answer, inline S1 attempt included, comes within this; what does not fit is pending.
    pub budget: StdDuration,
    /// The time the request is judged at; the real clock when `None`.
    pub now: Option<OffsetDateTime>,
}

impl Default for WebhookOptions {
    fn default() -> Self {
        Self {
            budget: INLINE_BUDGET,
            now: None,
        }
    }
}

/// The HTTP answer to a webhook.
#[derive(Debug, Clone, PartialEq)]
pub struct WebhookResponse {
    pub status: u16,
    pub body: Value,
    /// Time spent waiting on S1 inside the handler (for the latency benchmark).
    pub s1_time: StdDuration,
}

fn answer(status: u16, message: impl Into<String>) -> WebhookResponse {
    WebhookResponse {
        status,
        body: json!({ "status": status, "message": message.into() }),
        s1_time: StdDuration::ZERO,
    }
}

/// The one answer to every request that cannot be verified: unknown tenant, disabled tenant,
/// another platform's endpoint, missing or wrong signature.
fn unauthorized() -> WebhookResponse {
    answer(401, "the request could not be verified")
}

/// The state store failed: the platform retries; what failed goes to the log only.
fn unavailable(e: &StoreError) -> WebhookResponse {
    tracing::error!(error = %e, "state store unavailable");
    answer(503, "temporarily unavailable; retry later")
}

const TRUNCATED: &str = "… [truncated]";

/// `text` cut to at most `max` characters, marked when cut.
fn truncate(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_owned();
    }
    let keep = max.saturating_sub(TRUNCATED.chars().count());
    let mut out: String = text.chars().take(keep).collect();
    out.push_str(TRUNCATED);
    out
}

/// The change with its free text cut to what S1 takes (the analysis to a note's length, close
/// reason and actor shorter), so a huge comment neither fails S1 nor bloats the pending item.
fn bounded(mut change: StatusChange) -> StatusChange {
    change.analysis = change.analysis.map(|a| truncate(&a, MAX_NOTE_CHARS));
    change.actor = change.actor.map(|a| truncate(&a, MAX_FIELD_CHARS));
    if let ChangeAction::Status { close_reason, .. } = &mut change.action {
        *close_reason = close_reason.as_deref().map(|r| truncate(r, MAX_FIELD_CHARS));
    }
    change
}

/// The note S1 gets: platform, state, actor, close reason and analysis, at most
/// [`MAX_NOTE_CHARS`] characters.
pub fn note_text(change: &StatusChange) -> String {
    truncate(&full_note_text(change), MAX_NOTE_CHARS)
}

fn full_note_text(change: &StatusChange) -> String {
    let actor = change.actor.as_deref().unwrap_or("an automation");
    let head = match &change.action {
        ChangeAction::Status {
            state, close_reason, ..
        } => {
            let reason = close_reason.as_deref().map(|r| format!(": {r}")).unwrap_or_default();
            format!("[{}] {} by {actor}{reason}", change.platform, state.as_str())
        }
        ChangeAction::Note { .. } => format!("[{}] comment by {actor}", change.platform),
    };
    match change.analysis.as_deref().filter(|a| !a.trim().is_empty()) {
        Some(a) => format!("{head} — {a}"),
        None => head,
    }
}

// ---- the webhook ---------------------------------------------------------------------------------

/// Steps of a pending change, recorded durably (under the attempt's claim) as they complete.
mod step {
    /// The status/verdict step is over: applied, or skipped as superseded.
    pub const STATUS: &str = "status";
    /// The status and verdict were not applied: a newer change held the alert.
    pub const SUPERSEDED: &str = "superseded";
    /// The note was about to be sent: a later attempt looks in S1 before sending it again.
    pub const NOTE_STARTED: &str = "note_started";
    /// S1 took the note.
    pub const NOTE: &str = "note";
}

/// The change as stored while pending.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct PendingChange {
    change: StatusChange,
    /// The story's item name (its key, or an archived story's id) and whether it is archived.
    story: String,
    archived: bool,
    status: Option<IncidentStatus>,
    verdict: Option<AnalystVerdict>,
    note: String,
    /// Steps already completed (see [`step`]), so a retry never repeats a note.
    #[serde(default)]
    done: Vec<String>,
}

impl PendingChange {
    fn did(&self, step: &str) -> bool {
        self.done.iter().any(|d| d == step)
    }

    fn mark(&mut self, step: &str) {
        if !self.did(step) {
            self.done.push(step.to_owned());
        }
    }

    /// The platform time of the change, for ordering.
    fn at_micros(&self) -> i64 {
        (self.change.at.unix_timestamp_nanos() / 1000) as i64
    }
}

/// Answers one webhook: `POST /<platform>/<tenant>` with the raw body, within
/// [`INLINE_BUDGET`].
///
/// 202 accepted (applied, or pending when S1 is unavailable or slow), 200 replay or nothing to
/// do, 400 malformed, 401 not verified (one answer for an unknown or disabled tenant, another
/// platform's endpoint and a bad signature), 404 unknown alert, 409 older than the last applied
/// change, 413 too large, 503 state store unavailable (the platform retries; no detail given).
pub async fn handle_webhook(
    deps: &WritebackDeps,
    method: &str,
    path: &str,
    headers: &HeaderMap,
    body: &[u8],
) -> WebhookResponse {
    handle_webhook_with(deps, method, path, headers, body, &WebhookOptions::default()).await
}

/// [`handle_webhook`] with an explicit budget and clock.
pub async fn handle_webhook_with(
    deps: &WritebackDeps,
    method: &str,
    path: &str,
    headers: &HeaderMap,
    body: &[u8],
    options: &WebhookOptions,
) -> WebhookResponse {
    let started = Instant::now();
    if !method.eq_ignore_ascii_case("POST") {
        return answer(405, "webhooks are POSTed");
    }
    if body.len() > MAX_BODY {
        return answer(413, format!("body is {} bytes; the limit is {MAX_BODY}", body.len()));
    }
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (platform, tenant_id) = match parts.as_slice() {
        [p, t] if PlatformKind::parse(p).is_some() => (PlatformKind::parse(p).expect("checked"), *t),
        _ => {
            let paths: Vec<String> = PlatformKind::ALL.iter().map(|k| format!("/{k}/<tenant>")).collect();
            return answer(404, format!("no such webhook endpoint: use {}", paths.join(" or ")));
        }
    };
    // Unknown, disabled or mismatched tenant and a failed check all get the same answer, so
    // nobody learns which tenants exist or what they use; the log says which it was.
    let tenant = match deps.store.get_tenant(tenant_id).await {
        Ok(Some(t)) if t.enabled && t.platform.kind() == platform => t,
        Ok(Some(t)) => {
            let why = if t.enabled {
                "the tenant uses another platform"
            } else {
                "the tenant is disabled"
            };
            tracing::warn!(tenant = %t.id, platform = %platform, reason = why, "webhook refused");
            return unauthorized();
        }
        Ok(None) | Err(StoreError::Invalid(_)) => {
            tracing::warn!(platform = %platform, "webhook refused: unknown tenant");
            return unauthorized();
        }
        Err(e) => return unavailable(&e),
    };
    let now = options.now.unwrap_or_else(OffsetDateTime::now_utc);
    let inbound = match deps.platforms.inbound(&tenant).await {
        Ok(a) => a,
        Err(e) => {
            tracing::error!(tenant = %tenant.id, error = %e, "inbound webhook auth is not configured");
            return unauthorized();
        }
    };
    if let Err(e) = inbound.verify(headers, body, now) {
        tracing::warn!(tenant = %tenant.id, error = %e, "webhook refused");
        return unauthorized();
    }
    let changes = match inbound.parse(headers, body).await {
        Ok(Inbound::Change(c)) => vec![c],
        Ok(Inbound::Batch(cs)) => cs,
        Ok(Inbound::Ignore(why)) => return answer(200, format!("ignored: {why}")),
        Err(InboundError::Malformed(m)) => return answer(400, m),
        Err(InboundError::Unauthorized(m)) => {
            tracing::warn!(tenant = %tenant.id, error = %m, "webhook refused");
            return unauthorized();
        }
        Err(InboundError::Unavailable(m)) => {
            tracing::warn!(tenant = %tenant.id, error = %m, "webhook could not be read back");
            return answer(503, "temporarily unavailable; retry later");
        }
    };
    let field = inbound.time_field();
    for change in &changes {
        if change.at > now + MAX_FUTURE {
            return answer(
                400,
                format!(
                    "{field} {} is more than 5 minutes in the future",
                    crate::s1::dto::format_time(change.at)
                ),
            );
        }
        // Standard Webhooks signs a fresh timestamp (checked within 300 s); the others carry
        // only the event's own time.
        if !inbound.signs_fresh_timestamp() && change.at < now - REPLAY_WINDOW {
            return answer(
                400,
                format!(
                    "{field} {} is older than the 24-hour replay window",
                    crate::s1::dto::format_time(change.at)
                ),
            );
        }
    }
    if changes.len() == 1 {
        let budget = options.budget.saturating_sub(started.elapsed());
        let change = changes.into_iter().next().expect("one change");
        return accept(deps, &tenant, bounded(change), now, budget).await;
    }
    accept_all(deps, &tenant, changes, now, started, options.budget).await
}

/// Several changes from one delivery, in the order they happened, within one budget. The answer
/// is the first failure the platform should retry (503: the accepted ones are then replays), else
/// 202 with each change's answer.
async fn accept_all(
    deps: &WritebackDeps,
    tenant: &TenantConfig,
    mut changes: Vec<StatusChange>,
    now: OffsetDateTime,
    started: Instant,
    total: StdDuration,
) -> WebhookResponse {
    changes.sort_by_key(|c| c.at);
    let mut each = Vec::new();
    let mut s1_time = StdDuration::ZERO;
    for change in changes {
        let id = change.event_id.clone();
        let budget = total.saturating_sub(started.elapsed());
        let r = accept(deps, tenant, bounded(change), now, budget).await;
        if r.status >= 500 {
            return r;
        }
        s1_time += r.s1_time;
        each.push(json!({"event": id, "status": r.status, "answer": r.body}));
    }
    WebhookResponse {
        status: 202,
        body: json!({"status": 202, "message": "accepted", "changes": each}),
        s1_time,
    }
}

async fn accept(
    deps: &WritebackDeps,
    tenant: &TenantConfig,
    change: StatusChange,
    now: OffsetDateTime,
    budget: StdDuration,
) -> WebhookResponse {
    let mapping = Mapping::new(&tenant.mapping_overrides);
    let (name, archived, story) = match resolve_story(&deps.store, tenant, change.platform, &change.alert).await {
        Ok(Some(found)) => found,
        Ok(None) => return answer(404, "unknown alert"),
        Err(e) => return unavailable(&e),
    };
    let (status, verdict) = match &change.action {
        ChangeAction::Status {
            state,
            close_reason,
            verdict,
        } => (
            Some(mapping.status(*state)),
            mapping.verdict(close_reason.as_deref(), *verdict),
        ),
        ChangeAction::Note { verdict } => (None, *verdict),
    };
    let id = crate::domain::short_digest(format!("{}\n{}", change.platform, change.event_id).as_bytes());
    let pending_change = PendingChange {
        note: note_text(&change),
        change: change.clone(),
        story: name,
        archived,
        status,
        verdict,
        done: vec![],
    };
    if status.is_some() {
        // Older than the change the alert holds: it would reach S1 out of order.
        match deps.store.alert_order(&tenant.id, &story.value.id).await {
            Ok(o) if o.supersedes(pending_change.at_micros(), &id) => {
                return answer(409, "older than the last change applied to this alert");
            }
            Ok(_) => {}
            Err(e) => return unavailable(&e),
        }
    }
    let pending = PendingWriteback {
        id,
        alert_key: story.value.id.clone(),
        change: serde_json::to_value(&pending_change).unwrap_or_default(),
        attempts: 0,
        last_error: None,
        created_at: now,
        next_attempt_at: now,
    };
    let event_key = format!("{}:{}", change.platform, change.event_id);
    let mut markers = vec![(event_key.as_str(), EVENT_TTL)];
    let note_key = format!(
        "note:{}",
        crate::domain::short_digest(format!("{}\n{}", pending.alert_key, pending_note(&pending)).as_bytes())
    );
    if matches!(change.action, ChangeAction::Note { .. }) {
        markers.push((note_key.as_str(), NOTE_DEDUPE_WINDOW));
    }
    match deps.store.accept_change(&tenant.id, &markers, &pending, now).await {
        Ok(Acceptance::Accepted) => {}
        Ok(Acceptance::Duplicate) => return answer(200, "duplicate delivery: already accepted"),
        Ok(Acceptance::DuplicateNote) => return answer(200, "duplicate note: already accepted"),
        Err(e) => return unavailable(&e),
    }
    if budget < MIN_ATTEMPT_WINDOW {
        // No time left to try S1 inline: the next run applies it.
        return WebhookResponse {
            status: 202,
            body: json!({ "status": 202, "message": "accepted", "writeback": "pending" }),
            s1_time: StdDuration::ZERO,
        };
    }
    let entry = PendingEntry {
        value: pending,
        version: 0,
        claim: None,
    };
    let (outcome, s1_time) = attempt(deps, tenant, entry, &deps.inline_retry, now, Some(story), budget).await;
    let state = match outcome {
        Attempt::Applied => "applied",
        Attempt::Superseded => "superseded",
        Attempt::Pending | Attempt::Busy => "pending",
        Attempt::Dead => "dead_letter",
    };
    WebhookResponse {
        status: 202,
        body: json!({ "status": 202, "message": "accepted", "writeback": state }),
        s1_time,
    }
}

/// The note text a pending change carries (platform, actor and text: what makes two comments
/// the same).
fn pending_note(p: &PendingWriteback) -> &str {
    p.change.get("note").and_then(Value::as_str).unwrap_or_default()
}

/// Finds the story behind an alert reference, with its item name and whether it is archived.
async fn resolve_story(
    store: &Store,
    tenant: &TenantConfig,
    platform: PlatformKind,
    alert: &AlertRef,
) -> Result<Option<(String, bool, Versioned<StoryRecord>)>, StoreError> {
    let by_name = |name: String| async move {
        match store.get_story(&tenant.id, &name).await? {
            Some(s) => {
                let archived = s.value.key != name;
                Ok::<_, StoreError>(Some((name, archived, s)))
            }
            None => Ok(None),
        }
    };
    let by_key = |key: String| async move {
        if let Some(id) = crate::domain::AlertKey::story_id(&key, &tenant.console_url) {
            let Some(story_key) = crate::domain::story_key_of(id) else {
                return Ok(None);
            };
            if let Some(current) = store.get_story(&tenant.id, story_key).await? {
                if current.value.id == id {
                    return Ok(Some((story_key.to_owned(), false, current)));
                }
            }
            return by_name(id.to_owned()).await;
        }
        // A platform-made key (a PagerDuty dedup key) recorded as the story's platform ref.
        match store.story_by_platform_ref(platform.as_str(), &key).await? {
            Some((t, s)) if t == tenant.id => {
                let current = store.get_story(&tenant.id, &s.value.key).await?;
                let archived = current.is_none_or(|c| c.value.id != s.value.id);
                let name = if archived {
                    s.value.id.clone()
                } else {
                    s.value.key.clone()
                };
                Ok(Some((name, archived, s)))
            }
            _ => Ok(None),
        }
    };
    match alert {
        AlertRef::Key(k) => by_key(k.clone()).await,
        AlertRef::PlatformId(id) => match store.get_alias(&tenant.id, platform.as_str(), id).await? {
            Some(name) => by_name(name).await,
            None => Ok(None),
        },
        AlertRef::KeyAndId(k, id) => {
            let found = by_key(k.clone()).await?;
            if let Some((name, _, _)) = &found {
                store.put_alias(&tenant.id, platform.as_str(), id, name).await?;
            }
            Ok(found)
        }
    }
}

// ---- applying a change to S1 -----------------------------------------------------------------------

/// How an attempt ended.
enum Attempt {
    /// S1 holds the change; the pending item is retired.
    Applied,
    /// A newer change held the alert: the note was posted, the status and verdict were not, and
    /// the change is listed with the dead letters as superseded.
    Superseded,
    /// Not (fully) applied; it is retried later.
    Pending,
    /// Moved to the dead letters.
    Dead,
    /// Another attempt holds the item or its alert; nothing was done.
    Busy,
}

#[derive(Debug)]
enum ApplyError {
    /// Try again later (S1 down or rate-limiting, network, store).
    Retry(String),
    /// Retrying will not help (permissions, a refused request): straight to the dead letters.
    Fatal(String),
    /// Another attempt is applying a change to this alert: try again later, not an attempt.
    Busy(String),
    /// Another attempt took the pending item over: write nothing more.
    LostClaim,
}

fn classify(e: S1Error) -> ApplyError {
    if e.is_retryable() || e.is_unauthorized() {
        ApplyError::Retry(e.to_string())
    } else {
        ApplyError::Fatal(e.to_string())
    }
}

fn store_error(e: StoreError) -> ApplyError {
    ApplyError::Retry(format!("state store: {e}"))
}

#[derive(Default)]
struct Recorder {
    records: Mutex<Vec<RequestRecord>>,
    /// Time spent in S1 calls, for the latency benchmark.
    s1_micros: std::sync::atomic::AtomicU64,
}

impl RequestObserver for Recorder {
    fn record(&self, r: &RequestRecord) {
        self.s1_micros
            .fetch_add(r.latency.as_micros() as u64, std::sync::atomic::Ordering::Relaxed);
        self.records.lock().unwrap_or_else(|e| e.into_inner()).push(r.clone());
    }
}

fn summarize(r: &ThreatActionResult) -> String {
    let mut counts: std::collections::BTreeMap<&str, usize> = Default::default();
    for d in &r.details {
        *counts.entry(d.result.map_or("none", |x| x.as_str())).or_default() += 1;
    }
    counts
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(" ")
}

fn check_details(r: &ThreatActionResult, ids: &[String], want_verdict: bool) -> Result<(), ApplyError> {
    let bad: Vec<String> = r
        .details
        .iter()
        .filter(|d| {
            !d.result.is_some_and(|x| x.is_applied())
                || (want_verdict && d.analyst_verdict.is_some_and(|x| !x.is_applied()))
        })
        .map(|d| {
            format!(
                "{}: {}",
                d.threat_id.as_deref().unwrap_or("?"),
                d.result.map_or("no result", |x| x.as_str())
            )
        })
        .collect();
    if !bad.is_empty() {
        return Err(ApplyError::Fatal(format!(
            "S1 did not apply the change to every threat ({})",
            bad.join(", ")
        )));
    }
    if r.details.is_empty() && r.affected == 0 && !ids.is_empty() {
        return Err(ApplyError::Fatal(
            "S1 reported no threat affected and no per-threat results".into(),
        ));
    }
    Ok(())
}

/// One attempt on one claimed pending item.
struct Work<'a> {
    deps: &'a WritebackDeps,
    tenant: &'a TenantConfig,
    pending: PendingWriteback,
    change: PendingChange,
    /// The pending item's version as we last wrote it (under our claim).
    version: u64,
    claim: Claim,
    /// The alert's ordering lock, while we hold it.
    lock: Option<AlertLock>,
    now: OffsetDateTime,
}

impl Work<'_> {
    /// Records progress durably under the claim. Losing the claim stops the attempt.
    async fn save(&mut self) -> Result<(), ApplyError> {
        self.pending.change = serde_json::to_value(&self.change).unwrap_or_default();
        match self
            .deps
            .store
            .update_pending(&self.tenant.id, &self.pending, self.version, Some(&self.claim))
            .await
        {
            Ok(Some(v)) => {
                self.version = v;
                Ok(())
            }
            Ok(None) => Err(ApplyError::LostClaim),
            Err(e) => Err(store_error(e)),
        }
    }

    async fn lock_alert(&mut self) -> Result<(), ApplyError> {
        if self.lock.is_some() {
            return Ok(());
        }
        match self
            .deps
            .store
            .lock_alert(&self.tenant.id, &self.pending.alert_key, &self.claim, self.now)
            .await
        {
            Ok(Some(l)) => {
                self.lock = Some(l);
                Ok(())
            }
            Ok(None) => Err(ApplyError::Busy(
                "another attempt is applying a change to this alert".into(),
            )),
            Err(e) => Err(store_error(e)),
        }
    }
}

/// The text a note on a superseded change carries.
fn superseded_note(note: &str) -> String {
    const SUFFIX: &str = " (not applied to the status: a later change to this alert reached S1 first)";
    let room = MAX_NOTE_CHARS - SUFFIX.chars().count();
    format!("{}{SUFFIX}", truncate(note, room))
}

/// The S1 calls of one attempt: through the tenant's client, retried as the attempt's policy
/// says and seen by its recorder. A 401 re-reads the token once and repeats the call with the
/// new one (S1 did nothing with a refused call, so even a note is not posted twice).
struct S1Calls<'a> {
    deps: &'a WritebackDeps,
    tenant: &'a TenantConfig,
    retry: &'a RetryPolicy,
    recorder: &'a Arc<Recorder>,
}

impl S1Calls<'_> {
    async fn run<T, Fut>(&self, mut call: impl FnMut(S1Client) -> Fut) -> Result<T, ApplyError>
    where
        Fut: Future<Output = Result<T, S1Error>>,
    {
        self.deps
            .consoles
            .with_token(self.tenant, |client| {
                let running = call(
                    client
                        .with_retry(self.retry.clone())
                        .with_observer(self.recorder.clone()),
                );
                async move { running.await.map_err(TokenCallError::from) }
            })
            .await
            .map_err(call_error)
    }
}

/// A call made with the tenant's token failed: an unreadable secret is retried later; S1's
/// answer as [`classify`] says.
fn call_error(e: TokenCallError) -> ApplyError {
    match e {
        TokenCallError::Secret(e) => ApplyError::Retry(e.to_string()),
        TokenCallError::S1(e) => classify(e),
    }
}

/// Whether S1 already holds a note with exactly `text` on the threat (a previous attempt may
/// have sent it and died before recording so).
async fn note_in_s1(s1: &S1Calls<'_>, threat_id: &str, text: &str) -> Result<bool, ApplyError> {
    s1.run(|client| async move { note_among(&client, threat_id, text).await })
        .await
}

async fn note_among(client: &S1Client, threat_id: &str, text: &str) -> Result<bool, S1Error> {
    let pages = client.threat_notes(threat_id);
    futures_util::pin_mut!(pages);
    // Bounded: a threat with more than 10,000 notes is not searched to its end.
    for _ in 0..10 {
        match pages.next().await {
            Some(page) => {
                if page?.items.iter().any(|n| n.text.as_deref() == Some(text)) {
                    return Ok(true);
                }
            }
            None => break,
        }
    }
    Ok(false)
}

async fn apply(
    w: &mut Work<'_>,
    retry: &RetryPolicy,
    recorder: &Arc<Recorder>,
    known: Option<Versioned<StoryRecord>>,
) -> Result<Attempt, ApplyError> {
    let (deps, tenant) = (w.deps, w.tenant);
    // The webhook path has just read the story; a scheduled retry reads it afresh.
    let story = match known {
        Some(s) => s,
        None => deps
            .store
            .get_story(&tenant.id, &w.change.story)
            .await
            .map_err(store_error)?
            .ok_or_else(|| ApplyError::Fatal(format!("story {} no longer exists", w.change.story)))?,
    };
    let threat_ids: Vec<String> = story
        .value
        .members
        .keys()
        .filter_map(crate::domain::MemberId::threat_id)
        .map(str::to_owned)
        .collect();
    let alert_ids: Vec<String> = story
        .value
        .members
        .keys()
        .filter_map(crate::domain::MemberId::star_alert_id)
        .map(str::to_owned)
        .collect();
    // The token is read and the client built before anything is locked: when either fails,
    // the attempt ends here.
    deps.consoles.client_for(tenant).await.map_err(call_error)?;
    let s1 = S1Calls {
        deps,
        tenant,
        retry,
        recorder,
    };
    let (threats, alerts) = (threat_ids.as_slice(), alert_ids.as_slice());
    let at = w.change.at_micros();
    let id = w.pending.id.clone();
    let ordered = w.change.status.is_some();
    let mut results = Vec::new();
    if ordered {
        // Status changes of one alert go to S1 one at a time, in platform-time order.
        w.lock_alert().await?;
    }
    if !w.change.did(step::STATUS) {
        match (w.change.status, w.change.verdict) {
            (Some(status), verdict) => {
                let lock = w.lock.as_mut().expect("locked above");
                if lock.order.supersedes(at, &id) {
                    w.change.mark(step::SUPERSEDED);
                } else {
                    // Marked before S1 is called, so no older change can follow this one.
                    if !deps
                        .store
                        .mark_alert(&tenant.id, lock, at, &id)
                        .await
                        .map_err(store_error)?
                    {
                        return Err(ApplyError::LostClaim);
                    }
                    if !threat_ids.is_empty() {
                        let r = s1
                            .run(|c| async move { c.set_incident_status(threats, status, verdict).await })
                            .await?;
                        check_details(&r, &threat_ids, verdict.is_some())?;
                        results.push(("/threats/incident", summarize(&r)));
                    }
                    if !alert_ids.is_empty() {
                        s1.run(|c| async move { c.set_alert_incident_status(alerts, status).await })
                            .await?;
                        if let Some(v) = verdict {
                            s1.run(|c| async move { c.set_alert_analyst_verdict(alerts, v).await })
                                .await?;
                        }
                    }
                }
            }
            (None, Some(verdict)) => {
                // A note implying a verdict: not over a newer status change's own verdict.
                let order = deps
                    .store
                    .alert_order(&tenant.id, &w.pending.alert_key)
                    .await
                    .map_err(store_error)?;
                if order.applied_micros.is_some_and(|a| a > at) {
                    w.change.verdict = None;
                } else {
                    if !threat_ids.is_empty() {
                        let r = s1
                            .run(|c| async move { c.set_analyst_verdict(threats, verdict).await })
                            .await?;
                        check_details(&r, &threat_ids, false)?;
                        results.push(("/threats/analyst-verdict", summarize(&r)));
                    }
                    if !alert_ids.is_empty() {
                        s1.run(|c| async move { c.set_alert_analyst_verdict(alerts, verdict).await })
                            .await?;
                    }
                }
            }
            (None, None) => {}
        }
        w.change.mark(step::STATUS);
        w.save().await?;
    }
    let superseded = w.change.did(step::SUPERSEDED);
    // S1 has no notes on STAR alerts; threats get the note.
    if !threat_ids.is_empty() && !w.change.did(step::NOTE) {
        if w.change.did(step::NOTE_STARTED) && note_in_s1(&s1, &threat_ids[0], &w.change.note).await? {
            w.change.mark(step::NOTE);
        } else {
            if !w.change.did(step::NOTE_STARTED) {
                if superseded {
                    w.change.note = superseded_note(&w.change.note);
                }
                w.change.mark(step::NOTE_STARTED);
                w.save().await?;
            }
            let note = w.change.note.as_str();
            let r = s1.run(|c| async move { c.add_note(threats, note).await }).await?;
            results.push(("/threats/notes", format!("affected={}", r.affected)));
            w.change.mark(step::NOTE);
        }
    }
    let outbound = outbound_records(recorder, &results);
    w.pending.change = serde_json::to_value(&w.change).unwrap_or_default();
    if superseded {
        w.pending.last_error = Some(SUPERSEDED.to_owned());
        let done = deps
            .store
            .retire_to_dead(&tenant.id, &w.pending, w.version, w.lock.as_ref())
            .await
            .map_err(store_error)?;
        if !done {
            return Err(ApplyError::LostClaim);
        }
        w.lock = None;
        if let Err(e) = deps.store.record_outbound_many(&tenant.id, &outbound).await {
            tracing::warn!(tenant = %tenant.id, error = %e, "could not record outbound requests");
        }
        return Ok(Attempt::Superseded);
    }
    finish(w, &outbound, Some(story)).await?;
    Ok(Attempt::Applied)
}

static OUT_SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// The outbound-log records of the calls `recorder` saw, with their per-threat results.
fn outbound_records(recorder: &Recorder, results: &[(&str, String)]) -> Vec<OutboundRequest> {
    // Copied, not taken: when the applied change cannot be stored, the failure path logs them.
    let records = recorder.records.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let now = OffsetDateTime::now_utc();
    records
        .into_iter()
        .map(|r| {
            let result = if r.status.is_some_and(|s| (200..300).contains(&s)) {
                results.iter().find(|(p, _)| *p == r.path).map(|(_, s)| s.clone())
            } else {
                None
            };
            let seq = OUT_SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            OutboundRequest {
                id: format!("{}-{seq}", std::process::id()),
                at: now - Duration::try_from(r.latency).unwrap_or_default(),
                method: r.method,
                path: r.path,
                status: r.status,
                result,
                latency_ms: r.latency.as_millis() as u64,
                attempt: r.attempt,
                error: r.error,
            }
        })
        .collect()
}

async fn record_outbound(deps: &WritebackDeps, tenant: &TenantConfig, recorder: &Recorder) {
    let out = outbound_records(recorder, &[]);
    if out.is_empty() {
        return;
    }
    if let Err(e) = deps.store.record_outbound_many(&tenant.id, &out).await {
        tracing::warn!(tenant = %tenant.id, error = %e, "could not record outbound requests");
    }
}

/// Ends an applied writeback in one store transaction, under the claim: what S1 now holds on
/// each member (so the poller recognises the echo) and the alert's open/closed state, the
/// pending item retired, the alert's lock released, and the outbound log.
async fn finish(
    w: &mut Work<'_>,
    outbound: &[OutboundRequest],
    mut known: Option<Versioned<StoryRecord>>,
) -> Result<(), ApplyError> {
    let (deps, tenant) = (w.deps, w.tenant);
    let id = w.pending.id.clone();
    // S1 holds this change's status only if the alert's mark is still ours (a newer change
    // that got the lock after ours lapsed was applied after it).
    let status_held = w.change.status.is_some()
        && w.lock
            .as_ref()
            .is_some_and(|l| l.order.applied_by.as_deref() == Some(id.as_str()));
    let verdict_held = w.change.verdict.is_some() && (w.change.status.is_none() || status_held);
    for _ in 0..5 {
        let current = match known.take() {
            Some(s) => Some(s),
            None => deps
                .store
                .get_story(&tenant.id, &w.change.story)
                .await
                .map_err(store_error)?,
        };
        let story = current.map(
            |Versioned {
                 value: mut story,
                 version,
             }| {
                for m in story.members.values_mut() {
                    if let (Some(s), true) = (w.change.status, status_held) {
                        m.written_status = Some(s);
                    }
                    if let (Some(v), true) = (w.change.verdict, verdict_held) {
                        m.written_verdict = Some(v);
                    }
                }
                if let (ChangeAction::Status { state, .. }, true) = (&w.change.change.action, status_held) {
                    story.status = match state {
                        PlatformState::Closed | PlatformState::Resolved => StoryStatus::Closed,
                        PlatformState::New | PlatformState::Reopened => StoryStatus::Open,
                        _ => story.status,
                    };
                }
                (story, version)
            },
        );
        let finished = deps
            .store
            .finish_claimed(
                &tenant.id,
                story.as_ref().map(|(s, v)| (s, *v, w.change.archived)),
                &w.pending,
                w.version,
                w.lock.as_ref(),
                outbound,
            )
            .await
            .map_err(store_error)?;
        match finished {
            Finished::Done => {
                w.lock = None;
                return Ok(());
            }
            Finished::LostClaim => return Err(ApplyError::LostClaim),
            Finished::StoryChanged => {}
        }
    }
    Err(ApplyError::Retry(
        "the story kept changing while the writeback finished".into(),
    ))
}

/// Backoff before the n-th retry: 1, 2, 4 ... minutes, at most an hour.
pub fn backoff(attempts: u32) -> Duration {
    Duration::minutes(1i64 << attempts.saturating_sub(1).min(6))
}

static OWNER_SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// A claim owner unique to one attempt.
fn new_owner() -> String {
    format!(
        "wb-{}-{}-{}",
        std::process::id(),
        OffsetDateTime::now_utc().unix_timestamp_nanos(),
        OWNER_SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    )
}

/// One attempt on a pending item, bounded by `limit`: claims it, applies what is left of it,
/// and ends it (applied, rescheduled or dead), each write conditional on the claim.
async fn attempt(
    deps: &WritebackDeps,
    tenant: &TenantConfig,
    entry: PendingEntry,
    retry: &RetryPolicy,
    now: OffsetDateTime,
    known: Option<Versioned<StoryRecord>>,
    limit: StdDuration,
) -> (Attempt, StdDuration) {
    let owner = new_owner();
    if entry.claim.as_ref().is_some_and(|c| c.blocks(&owner, now)) {
        return (Attempt::Busy, StdDuration::ZERO);
    }
    let mut pending = entry.value;
    let Ok(change) = serde_json::from_value::<PendingChange>(pending.change.clone()) else {
        tracing::error!(tenant = %tenant.id, id = %pending.id, "undecodable pending change; moving it to the dead letters");
        pending.last_error = Some("undecodable pending change".into());
        return match deps
            .store
            .retire_to_dead(&tenant.id, &pending, entry.version, None)
            .await
        {
            Ok(true) => (Attempt::Dead, StdDuration::ZERO),
            _ => (Attempt::Busy, StdDuration::ZERO),
        };
    };
    let claim = Claim::new(owner, CLAIM_TTL, now);
    let version = match deps
        .store
        .update_pending(&tenant.id, &pending, entry.version, Some(&claim))
        .await
    {
        Ok(Some(v)) => v,
        Ok(None) => return (Attempt::Busy, StdDuration::ZERO),
        Err(e) => {
            tracing::warn!(tenant = %tenant.id, id = %pending.id, error = %e, "could not claim a pending writeback");
            return (Attempt::Pending, StdDuration::ZERO);
        }
    };
    let mut work = Work {
        deps,
        tenant,
        pending,
        change,
        version,
        claim,
        lock: None,
        now,
    };
    let recorder = Arc::new(Recorder::default());
    let result = tokio::time::timeout(limit, apply(&mut work, retry, &recorder, known)).await;
    let s1_time = StdDuration::from_micros(recorder.s1_micros.load(std::sync::atomic::Ordering::Relaxed));
    let outcome = match result {
        Ok(r) => attempt_outcome(work, r, &recorder).await,
        Err(_) => {
            // Out of time, perhaps with a call to S1 in flight: the claim (and the alert's lock)
            // stay until they lapse, so nothing repeats that call while it may still land; the
            // progress recorded so far lets the next attempt go on from there.
            tracing::info!(tenant = %tenant.id, id = %work.pending.id, "writeback ran out of time; it stays pending");
            Attempt::Pending
        }
    };
    (outcome, s1_time)
}

async fn attempt_outcome(mut w: Work<'_>, result: Result<Attempt, ApplyError>, recorder: &Recorder) -> Attempt {
    let (deps, tenant) = (w.deps, w.tenant);
    let (fatal, message) = match result {
        Ok(done) => return done,
        // Another attempt has the item: it is theirs to end.
        Err(ApplyError::LostClaim) => return Attempt::Busy,
        Err(ApplyError::Busy(m)) => {
            // Not an attempt: let go of the item, as it was, for a later run.
            w.pending.change = serde_json::to_value(&w.change).unwrap_or(w.pending.change);
            if let Err(e) = deps.store.update_pending(&tenant.id, &w.pending, w.version, None).await {
                tracing::warn!(tenant = %tenant.id, error = %e, "could not release a pending writeback; its claim lapses");
            }
            tracing::info!(tenant = %tenant.id, id = %w.pending.id, reason = %m, "writeback waits");
            return Attempt::Busy;
        }
        Err(ApplyError::Fatal(m)) => (true, m),
        Err(ApplyError::Retry(m)) => (false, m),
    };
    record_outbound(deps, tenant, recorder).await;
    w.pending.change = serde_json::to_value(&w.change).unwrap_or(w.pending.change);
    w.pending.attempts += 1;
    w.pending.last_error = Some(message.clone());
    if fatal || w.pending.attempts >= MAX_ATTEMPTS {
        tracing::warn!(tenant = %tenant.id, id = %w.pending.id, attempts = w.pending.attempts, error = %message, "writeback moved to the dead letters");
        match deps
            .store
            .retire_to_dead(&tenant.id, &w.pending, w.version, w.lock.as_ref())
            .await
        {
            Ok(true) => Attempt::Dead,
            Ok(false) => Attempt::Busy,
            Err(e) => {
                tracing::error!(tenant = %tenant.id, error = %e, "could not move a writeback to the dead letters; it stays pending");
                Attempt::Pending
            }
        }
    } else {
        w.pending.next_attempt_at = w.now + backoff(w.pending.attempts);
        tracing::info!(tenant = %tenant.id, id = %w.pending.id, attempts = w.pending.attempts, error = %message, "writeback pending");
        if let Some(lock) = w.lock.take() {
            if let Err(e) = deps.store.unlock_alert(&tenant.id, &lock).await {
                tracing::warn!(tenant = %tenant.id, error = %e, "could not release an alert's lock; it lapses");
            }
        }
        match deps.store.update_pending(&tenant.id, &w.pending, w.version, None).await {
            Ok(Some(_)) => Attempt::Pending,
            Ok(None) => Attempt::Busy,
            Err(e) => {
                tracing::error!(tenant = %tenant.id, error = %e, "could not reschedule a pending writeback; its claim lapses");
                Attempt::Pending
            }
        }
    }
}

/// Counts of a retry pass.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct RetryReport {
    pub applied: u64,
    pub rescheduled: u64,
    pub dead: u64,
    /// Older changes retired because a newer one of the same alert was applied first.
    pub superseded: u64,
    /// Due later, claimed by another attempt, or left for the next run (deadline, `max`).
    pub waiting: u64,
}

/// Retries a tenant's pending writebacks that are due at `now`, at most `max` of them, starting
/// none with less than a second left before `deadline` and cutting each at the deadline. Per
/// alert, changes are tried in the order of their platform timestamps. A disabled tenant's
/// changes are left alone.
///
/// # Errors
/// The pending list could not be read.
pub async fn retry_pending(
    deps: &WritebackDeps,
    tenant: &TenantConfig,
    now: OffsetDateTime,
    max: usize,
    deadline: Instant,
) -> Result<RetryReport, StoreError> {
    let mut report = RetryReport::default();
    if !tenant.enabled {
        return Ok(report);
    }
    // Per alert, oldest platform time first; alerts by their oldest change.
    let mut by_alert: BTreeMap<String, Vec<(OffsetDateTime, PendingEntry)>> = BTreeMap::new();
    let mut cursor = None;
    loop {
        let page = deps
            .store
            .list_pending_entries(&tenant.id, cursor.as_deref(), 100)
            .await?;
        for e in page.items {
            let at = serde_json::from_value::<PendingChange>(e.value.change.clone())
                .map_or(OffsetDateTime::UNIX_EPOCH, |c| c.change.at);
            by_alert.entry(e.value.alert_key.clone()).or_default().push((at, e));
        }
        match page.next {
            Some(n) => cursor = Some(n),
            None => break,
        }
    }
    let mut alerts: Vec<Vec<(OffsetDateTime, PendingEntry)>> = by_alert.into_values().collect();
    for a in &mut alerts {
        a.sort_by(|(x, p), (y, q)| (x, p.value.created_at, &p.value.id).cmp(&(y, q.value.created_at, &q.value.id)));
    }
    alerts.sort_by_key(|a| a.first().map(|(at, _)| *at));
    let mut tried = 0;
    for (_, entry) in alerts.into_iter().flatten() {
        let left = deadline.saturating_duration_since(Instant::now());
        if entry.value.next_attempt_at > now
            || entry
                .claim
                .as_ref()
                .is_some_and(|c| c.until_ms >= (now.unix_timestamp_nanos() / 1_000_000) as i64)
            || tried >= max
            || left < MIN_ATTEMPT_WINDOW
        {
            report.waiting += 1;
            continue;
        }
        tried += 1;
        let limit = left.min(RETRY_ATTEMPT_LIMIT);
        match attempt(deps, tenant, entry, &deps.consoles.options().retry, now, None, limit)
            .await
            .0
        {
            Attempt::Applied => report.applied += 1,
            Attempt::Superseded => report.superseded += 1,
            Attempt::Pending => report.rescheduled += 1,
            Attempt::Dead => report.dead += 1,
            Attempt::Busy => report.waiting += 1,
        }
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn note_carries_platform_state_actor_reason_and_analysis() {
        let c = StatusChange {
            event_id: "e".into(),
            platform: PlatformKind::Generic,
            alert: AlertRef::Key("k".into()),
            action: ChangeAction::Status {
                state: PlatformState::Closed,
                close_reason: Some("false_positive".into()),
                verdict: None,
            },
            analysis: Some("signed installer from IT".into()),
            actor: Some("Ana <ana@example.com>".into()),
            at: OffsetDateTime::UNIX_EPOCH,
        };
        assert_eq!(
            note_text(&c),
            "[generic] closed by Ana <ana@example.com>: false_positive — signed installer from IT"
        );
    }

    #[test]
    fn notes_are_cut_to_what_s1_takes() {
        assert_eq!(truncate("short", 10), "short");
        let long = "ü".repeat(MAX_NOTE_CHARS + 5);
        let cut = truncate(&long, MAX_NOTE_CHARS);
        assert_eq!(cut.chars().count(), MAX_NOTE_CHARS);
        assert!(cut.ends_with("[truncated]"));
        assert_eq!(superseded_note(&long).chars().count(), MAX_NOTE_CHARS);
        assert!(superseded_note("n").starts_with("n (not applied"));
    }
}
