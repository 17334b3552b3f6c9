//! status-writeback: the SOC's status, verdict and comments reach S1 — verified, exactly once,
//! in order, and never lost.
//!
//! A webhook is verified, parsed into a [`StatusChange`], resolved to its story, and accepted in
//! one atomic store write (replay marker + pending change + ordering mark). Only then is S1
//! called, inline within the platform's 5-second budget; if S1 is down or rate-limits, the change
//! stays pending and is retried with backoff by later runs until it lands or, after
//! [`MAX_ATTEMPTS`], moves to the dead letters.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration as StdDuration;

use reqwest::header::HeaderMap;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use time::{Duration, OffsetDateTime};

use crate::ApiToken;
use crate::platform::WebhookSecret;
use crate::platform::inbound::{
    AlertRef, ChangeAction, Inbound, InboundAuth, InboundError, PlatformState, StatusChange, authenticate,
    parse_generic, parse_pagerduty,
};
use crate::s1::dto::{AnalystVerdict, IncidentStatus, ThreatActionResult};
use crate::s1::{ClientOptions, RequestObserver, RequestRecord, S1Client, S1Error};
use crate::secrets::TokenProvider;
use crate::store::{
    Acceptance, OutboundRequest, PendingWriteback, Store, StoreError, StoryRecord, StoryStatus, TenantConfig,
    TokenSource, Versioned,
};

/// Bodies above this are refused with 413.
pub const MAX_BODY: usize = 256 * 1024;
/// Attempts before a change moves to the dead letters.
pub const MAX_ATTEMPTS: u32 = 8;
/// How long a webhook id is remembered for replay protection.
pub const EVENT_TTL: Duration = Duration::days(7);

/// What the writeback needs. Built once per process.
#[derive(Clone)]
pub struct WritebackDeps {
    pub store: Store,
    pub tokens: Arc<dyn TokenProvider>,
    pub http: reqwest::Client,
    /// For the inline attempt inside the webhook's 5-second budget: few, short tries.
    pub inline_options: ClientOptions,
    /// For scheduled retries of pending changes.
    pub retry_options: ClientOptions,
}

impl WritebackDeps {
    /// Client options that fit the platform's 5-second answer budget.
    pub fn inline_client_options() -> ClientOptions {
        ClientOptions {
            connect_timeout: StdDuration::from_secs(1),
            request_timeout: StdDuration::from_millis(1_500),
            retry: crate::s1::RetryPolicy {
                max_attempts: 2,
                min_delay: StdDuration::from_millis(100),
                max_delay: StdDuration::from_millis(300),
                max_retry_after: StdDuration::from_millis(500),
            },
            ..ClientOptions::default()
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

// ---- mapping (docs/design.md, Mappings) ----------------------------------------------------------------------

/// Platform state -> S1 incident status, and close reason -> analyst verdict, with a tenant's
/// overrides applied over the defaults.
#[derive(Debug, Clone)]
pub struct Mapping {
    states: HashMap<String, IncidentStatus>,
    reasons: HashMap<String, AnalystVerdict>,
}

/// Lower case, every run of non-alphanumerics one space: "Suspressed - New device" and
/// "suppressed_new_device" compare equal.
pub fn normalize(s: &str) -> String {
    let mut out = String::new();
    for word in s.split(|c: char| !c.is_ascii_alphanumeric()).filter(|w| !w.is_empty()) {
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(&word.to_ascii_lowercase());
    }
    out
}

const TRUE_POSITIVE: [&str; 4] = ["activity blocked", "attack failed", "incident", "true positive"];
const FALSE_POSITIVE: [&str; 6] = [
    "benign",
    "false positive",
    "testing",
    "suppressed",
    "suppressed new device",
    "suppressed threshold exceeded",
];
const SUSPICIOUS: [&str; 7] = [
    "it misconfiguration",
    "misconfiguration",
    "possible policy violation",
    "policy violation",
    "pup pua",
    "pup",
    "other",
];

impl Default for Mapping {
    fn default() -> Self {
        let states = [
            ("new", IncidentStatus::Unresolved),
            ("reopened", IncidentStatus::Unresolved),
            ("investigating", IncidentStatus::InProgress),
            ("acknowledged", IncidentStatus::InProgress),
            ("in progress", IncidentStatus::InProgress),
            ("closed", IncidentStatus::Resolved),
            ("resolved", IncidentStatus::Resolved),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        let mut reasons = HashMap::new();
        for r in TRUE_POSITIVE {
            reasons.insert(r.to_owned(), AnalystVerdict::TruePositive);
        }
        for r in FALSE_POSITIVE {
            reasons.insert(r.to_owned(), AnalystVerdict::FalsePositive);
        }
        for r in SUSPICIOUS {
            reasons.insert(r.to_owned(), AnalystVerdict::Suspicious);
        }
        Self { states, reasons }
    }
}

impl Mapping {
    /// The defaults with the tenant's `mapping_overrides` (`{"states": {..}, "close_reasons": {..}}`).
    ///
    /// # Errors
    /// An override naming an unknown S1 status or verdict.
    pub fn for_tenant(t: &TenantConfig) -> Result<Self, String> {
        let mut m = Self::default();
        let o = &t.mapping_overrides;
        for (k, v) in o.get("states").and_then(Value::as_object).into_iter().flatten() {
            let status: IncidentStatus =
                serde_json::from_value(v.clone()).map_err(|e| format!("mapping_overrides.states.{k}: {e}"))?;
            if status == IncidentStatus::Unknown {
                return Err(format!(
                    "mapping_overrides.states.{k}: {v} is not an S1 incident status"
                ));
            }
            m.states.insert(normalize(k), status);
        }
        for (k, v) in o.get("close_reasons").and_then(Value::as_object).into_iter().flatten() {
            let verdict: AnalystVerdict =
                serde_json::from_value(v.clone()).map_err(|e| format!("mapping_overrides.close_reasons.{k}: {e}"))?;
            if verdict == AnalystVerdict::Unknown {
                return Err(format!("mapping_overrides.close_reasons.{k}: {v} is not an S1 verdict"));
            }
            m.reasons.insert(normalize(k), verdict);
        }
        Ok(m)
    }

    /// The S1 incident status for a platform state.
    pub fn status(&self, state: PlatformState) -> IncidentStatus {
        self.states
            .get(&normalize(state.as_str()))
            .copied()
            .unwrap_or(IncidentStatus::Unresolved)
    }

    /// The verdict: an explicit one wins; else the close reason's group; else unchanged.
    pub fn verdict(&self, close_reason: Option<&str>, explicit: Option<AnalystVerdict>) -> Option<AnalystVerdict> {
        explicit.or_else(|| close_reason.and_then(|r| self.reasons.get(&normalize(r)).copied()))
    }
}

/// The note S1 gets: platform, state, actor, close reason and analysis.
pub fn note_text(change: &StatusChange) -> String {
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
    /// Steps already applied (`status`, `note`), so a retry never repeats a note.
    #[serde(default)]
    done: Vec<String>,
}

async fn read_secret(tokens: &dyn TokenProvider, source: &Value, what: &str) -> Result<ApiToken, String> {
    let source: TokenSource = serde_json::from_value(source.clone()).map_err(|e| format!("{what}: {e}"))?;
    tokens.token(&source).await.map_err(|e| format!("{what}: {e}"))
}

async fn inbound_auth(deps: &WritebackDeps, tenant: &TenantConfig, platform: &str) -> Result<InboundAuth, String> {
    let settings = &tenant.platform.settings;
    let mut secrets = Vec::new();
    for s in settings
        .get("inbound_secrets")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        secrets.push(read_secret(deps.tokens.as_ref(), s, "settings.inbound_secrets").await?);
    }
    match platform {
        "pagerduty" if !secrets.is_empty() => Ok(InboundAuth::PagerDuty(secrets)),
        "generic" if !secrets.is_empty() => Ok(InboundAuth::StandardWebhooks(
            secrets
                .iter()
                .map(|s| WebhookSecret::parse(s.expose()))
                .collect::<Result<_, _>>()
                .map_err(|e| format!("settings.inbound_secrets: {e}"))?,
        )),
        "generic" => match settings.get("inbound_bearer") {
            Some(b) => Ok(InboundAuth::Bearer(
                read_secret(deps.tokens.as_ref(), b, "settings.inbound_bearer").await?,
            )),
            None => Err("the tenant has no inbound_secrets or inbound_bearer configured".into()),
        },
        _ => Err("the tenant has no inbound_secrets configured".into()),
    }
}

fn header<'a>(h: &'a HeaderMap, name: &str) -> Option<&'a str> {
    h.get(name).and_then(|v| v.to_str().ok())
}

/// Answers one webhook: `POST /<platform>/<tenant>` with the raw body.
///
/// 202 accepted (applied, or pending when S1 is unavailable), 200 replay or nothing to do,
/// 400 malformed, 401 bad signature, 404 unknown tenant or alert, 409 older than the last
/// applied change, 413 too large, 503 state store unavailable (the platform retries).
pub async fn handle_webhook(
    deps: &WritebackDeps,
    method: &str,
    path: &str,
    headers: &HeaderMap,
    body: &[u8],
) -> WebhookResponse {
    if !method.eq_ignore_ascii_case("POST") {
        return answer(405, "webhooks are POSTed");
    }
    if body.len() > MAX_BODY {
        return answer(413, format!("body is {} bytes; the limit is {MAX_BODY}", body.len()));
    }
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (platform, tenant_id) = match parts.as_slice() {
        [p, t] if matches!(*p, "generic" | "pagerduty") => (*p, *t),
        _ => {
            return answer(
                404,
                "no such webhook endpoint: use /generic/<tenant> or /pagerduty/<tenant>",
            );
        }
    };
    let tenant = match deps.store.get_tenant(tenant_id).await {
        Ok(Some(t)) => t,
        Ok(None) => return answer(404, format!("unknown tenant {tenant_id:?}")),
        Err(StoreError::Invalid(m)) => return answer(404, m),
        Err(e) => return answer(503, format!("state store unavailable: {e}")),
    };
    if tenant.platform.kind != platform {
        return answer(404, format!("tenant {tenant_id} does not use the {platform} platform"));
    }
    let now = OffsetDateTime::now_utc();
    let auth = match inbound_auth(deps, &tenant, platform).await {
        Ok(a) => a,
        Err(e) => {
            tracing::error!(tenant = %tenant.id, error = %e, "inbound webhook auth is not configured");
            return answer(401, "the webhook cannot be verified for this tenant");
        }
    };
    if let Err(e) = authenticate(&auth, headers, body, now) {
        tracing::warn!(tenant = %tenant.id, error = %e, "webhook refused");
        return answer(401, e.to_string());
    }
    let parsed = match platform {
        "pagerduty" => parse_pagerduty(header(headers, "x-webhook-id"), body),
        _ => {
            let id = header(headers, "webhook-id").or_else(|| header(headers, "idempotency-key"));
            parse_generic(id, body)
        }
    };
    let change = match parsed {
        Ok(Inbound::Change(c)) => c,
        Ok(Inbound::Ignore(why)) => return answer(200, format!("ignored: {why}")),
        Err(InboundError::Malformed(m)) => return answer(400, m),
        Err(InboundError::Unauthorized(m)) => return answer(401, m),
    };
    accept(deps, &tenant, change, now).await
}

async fn accept(
    deps: &WritebackDeps,
    tenant: &TenantConfig,
    change: StatusChange,
    now: OffsetDateTime,
) -> WebhookResponse {
    let mapping = match Mapping::for_tenant(tenant) {
        Ok(m) => m,
        Err(e) => return answer(500, format!("tenant mapping is invalid: {e}")),
    };
    let (name, archived, story) = match resolve_story(&deps.store, tenant, &change.platform, &change.alert).await {
        Ok(Some(found)) => found,
        Ok(None) => return answer(404, "unknown alert"),
        Err(e) => return answer(503, format!("state store unavailable: {e}")),
    };
    let (status, verdict, order) = match &change.action {
        ChangeAction::Status {
            state,
            close_reason,
            verdict,
        } => (
            Some(mapping.status(*state)),
            mapping.verdict(close_reason.as_deref(), *verdict),
            Some(change.at),
        ),
        ChangeAction::Note { verdict } => (None, *verdict, None),
    };
    let pending = PendingWriteback {
        id: crate::domain::short_digest(format!("{}\n{}", change.platform, change.event_id).as_bytes()),
        alert_key: story.value.id.clone(),
        change: serde_json::to_value(PendingChange {
            note: note_text(&change),
            change: change.clone(),
            story: name,
            archived,
            status,
            verdict,
            done: vec![],
        })
        .unwrap_or_default(),
        attempts: 0,
        last_error: None,
        created_at: now,
        next_attempt_at: now,
    };
    let at = order.map(|t| (t.unix_timestamp_nanos() / 1000) as i64);
    let event_key = format!("{}:{}", change.platform, change.event_id);
    match deps
        .store
        .accept_change(&tenant.id, &event_key, EVENT_TTL, &pending, at, now)
        .await
    {
        Ok(Acceptance::Accepted) => {}
        Ok(Acceptance::Duplicate) => return answer(200, "duplicate delivery: already accepted"),
        Ok(Acceptance::Stale) => return answer(409, "older than the last change applied to this alert"),
        Err(e) => return answer(503, format!("state store unavailable: {e}")),
    }
    let (outcome, s1_time) = attempt(deps, tenant, pending, &deps.inline_options, now, Some(story)).await;
    let state = match outcome {
        Attempt::Applied => "applied",
        Attempt::Pending => "pending",
        Attempt::Dead => "dead_letter",
    };
    WebhookResponse {
        status: 202,
        body: json!({ "status": 202, "message": "accepted", "writeback": state }),
        s1_time,
    }
}

/// Finds the story behind an alert reference, with its item name and whether it is archived.
async fn resolve_story(
    store: &Store,
    tenant: &TenantConfig,
    platform: &str,
    alert: &AlertRef,
) -> Result<Option<(String, bool, Versioned<StoryRecord>)>, StoreError> {
    let host = url::Url::parse(&tenant.console_url)
        .ok()
        .and_then(|u| u.host_str().map(str::to_owned))
        .unwrap_or_default();
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
        if let Some(id) = key.strip_prefix(&format!("s1:{host}:")) {
            let Some((story_key, _)) = id.rsplit_once('@') else {
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
        match store.story_by_platform_ref(platform, &key).await? {
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
        AlertRef::PlatformId(id) => match store.get_alias(&tenant.id, platform, id).await? {
            Some(name) => by_name(name).await,
            None => Ok(None),
        },
        AlertRef::KeyAndId(k, id) => {
            let found = by_key(k.clone()).await?;
            if let Some((name, _, _)) = &found {
                store.put_alias(&tenant.id, platform, id, name).await?;
            }
            Ok(found)
        }
    }
}

// ---- applying a change to S1 -----------------------------------------------------------------------

enum Attempt {
    Applied,
    Pending,
    Dead,
}

#[derive(Debug)]
enum ApplyError {
    /// Try again later (S1 down or rate-limiting, network, store).
    Retry(String),
    /// Retrying will not help (permissions, a refused request): straight to the dead letters.
    Fatal(String),
}

fn classify(e: S1Error) -> ApplyError {
    if e.is_retryable() || e.is_unauthorized() {
        ApplyError::Retry(e.to_string())
    } else {
        ApplyError::Fatal(e.to_string())
    }
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

async fn apply(
    deps: &WritebackDeps,
    tenant: &TenantConfig,
    pending: &mut PendingWriteback,
    change: &mut PendingChange,
    options: &ClientOptions,
    recorder: &Arc<Recorder>,
    known: Option<Versioned<StoryRecord>>,
) -> Result<(), ApplyError> {
    // The webhook path has just read the story; a scheduled retry reads it afresh.
    let story = match known {
        Some(s) => s,
        None => deps
            .store
            .get_story(&tenant.id, &change.story)
            .await
            .map_err(|e| ApplyError::Retry(e.to_string()))?
            .ok_or_else(|| ApplyError::Fatal(format!("story {} no longer exists", change.story)))?,
    };
    let threat_ids: Vec<String> = story
        .value
        .members
        .keys()
        .filter(|k| !k.starts_with("alert:"))
        .cloned()
        .collect();
    let alert_ids: Vec<String> = story
        .value
        .members
        .keys()
        .filter_map(|k| k.strip_prefix("alert:"))
        .map(str::to_owned)
        .collect();
    let token = deps
        .tokens
        .token(&tenant.token)
        .await
        .map_err(|e| ApplyError::Retry(e.to_string()))?;
    let client = S1Client::with_http(deps.http.clone(), &tenant.console_url, &token, options.clone())
        .map_err(|e| ApplyError::Fatal(e.to_string()))?
        .with_observer(recorder.clone());
    let mut results = Vec::new();
    if !change.done.iter().any(|d| d == "status") {
        match (change.status, change.verdict) {
            (Some(status), verdict) => {
                if !threat_ids.is_empty() {
                    let r = client
                        .set_incident_status(&threat_ids, status, verdict)
                        .await
                        .map_err(classify)?;
                    check_details(&r, &threat_ids, verdict.is_some())?;
                    results.push(("/threats/incident", summarize(&r)));
                }
                if !alert_ids.is_empty() {
                    client
                        .set_alert_incident_status(&alert_ids, status)
                        .await
                        .map_err(classify)?;
                    if let Some(v) = verdict {
                        client
                            .set_alert_analyst_verdict(&alert_ids, v)
                            .await
                            .map_err(classify)?;
                    }
                }
            }
            (None, Some(verdict)) => {
                if !threat_ids.is_empty() {
                    let r = client
                        .set_analyst_verdict(&threat_ids, verdict)
                        .await
                        .map_err(classify)?;
                    check_details(&r, &threat_ids, false)?;
                    results.push(("/threats/analyst-verdict", summarize(&r)));
                }
                if !alert_ids.is_empty() {
                    client
                        .set_alert_analyst_verdict(&alert_ids, verdict)
                        .await
                        .map_err(classify)?;
                }
            }
            (None, None) => {}
        }
        // Not saved here: a crash before the note only repeats the status call, which S1 answers
        // `already_set` (applied). Any failure below saves this progress with the retry.
        change.done.push("status".into());
    }
    // S1 has no notes on STAR alerts; threats get the note.
    if !change.done.iter().any(|d| d == "note") && !threat_ids.is_empty() {
        let r = client.add_note(&threat_ids, &change.note).await.map_err(classify)?;
        results.push(("/threats/notes", format!("affected={}", r.affected)));
        change.done.push("note".into());
    }
    let outbound = outbound_records(recorder, &results);
    pending.change = serde_json::to_value(&*change).unwrap_or_default();
    finish(deps, tenant, pending, change, &outbound, Some(story))
        .await
        .map_err(|e| ApplyError::Retry(e.to_string()))
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

/// Ends an applied writeback in one store transaction: what we wrote on each member (so the
/// poller recognises the echo) and the alert's open/closed state, the pending item retired, and
/// the outbound log. One synced write instead of one per record keeps the webhook's answer fast.
async fn finish(
    deps: &WritebackDeps,
    tenant: &TenantConfig,
    pending: &PendingWriteback,
    change: &PendingChange,
    outbound: &[OutboundRequest],
    mut known: Option<Versioned<StoryRecord>>,
) -> Result<(), StoreError> {
    for _ in 0..5 {
        let current = match known.take() {
            Some(s) => Some(s),
            None => deps.store.get_story(&tenant.id, &change.story).await?,
        };
        let Some(Versioned {
            value: mut story,
            version,
        }) = current
        else {
            // The story is gone: nothing to remember on it, but the writeback is still done.
            deps.store.delete_pending(&tenant.id, &pending.id).await?;
            return deps.store.record_outbound_many(&tenant.id, outbound).await;
        };
        for m in story.members.values_mut() {
            if let Some(s) = change.status {
                m.written_status = Some(s.as_str().to_owned());
            }
            if let Some(v) = change.verdict {
                m.written_verdict = Some(v.as_str().to_owned());
            }
        }
        if let ChangeAction::Status { state, .. } = change.change.action {
            story.status = match state {
                PlatformState::Closed | PlatformState::Resolved => StoryStatus::Closed,
                PlatformState::New | PlatformState::Reopened => StoryStatus::Open,
                _ => story.status,
            };
        }
        let written = deps
            .store
            .finish_writeback(
                &tenant.id,
                &story,
                version,
                change.archived,
                pending,
                outbound,
                OffsetDateTime::now_utc(),
            )
            .await?;
        if written {
            return Ok(());
        }
    }
    Err(StoreError::Backend {
        op: "finish_writeback",
        code: "Conflict".into(),
        message: "story kept changing".into(),
        retryable: true,
    })
}

/// Backoff before the n-th retry: 1, 2, 4 ... minutes, at most an hour.
pub fn backoff(attempts: u32) -> Duration {
    Duration::minutes(1i64 << attempts.saturating_sub(1).min(6))
}

async fn attempt(
    deps: &WritebackDeps,
    tenant: &TenantConfig,
    mut pending: PendingWriteback,
    options: &ClientOptions,
    now: OffsetDateTime,
    known: Option<Versioned<StoryRecord>>,
) -> (Attempt, StdDuration) {
    let Ok(mut change) = serde_json::from_value::<PendingChange>(pending.change.clone()) else {
        tracing::error!(tenant = %tenant.id, id = %pending.id, "undecodable pending change; moving it to the dead letters");
        pending.last_error = Some("undecodable pending change".into());
        let _ = deps.store.move_to_dead(&tenant.id, &pending).await;
        return (Attempt::Dead, StdDuration::ZERO);
    };
    let recorder = Arc::new(Recorder::default());
    let result = apply(deps, tenant, &mut pending, &mut change, options, &recorder, known).await;
    let s1_time = StdDuration::from_micros(recorder.s1_micros.load(std::sync::atomic::Ordering::Relaxed));
    (
        attempt_outcome(deps, tenant, pending, change, result, now, &recorder).await,
        s1_time,
    )
}

async fn attempt_outcome(
    deps: &WritebackDeps,
    tenant: &TenantConfig,
    mut pending: PendingWriteback,
    change: PendingChange,
    result: Result<(), ApplyError>,
    now: OffsetDateTime,
    recorder: &Recorder,
) -> Attempt {
    pending.change = serde_json::to_value(&change).unwrap_or(pending.change);
    match result {
        // The pending item was retired with the story, in one transaction.
        Ok(()) => Attempt::Applied,
        Err(e) => {
            record_outbound(deps, tenant, recorder).await;
            pending.attempts += 1;
            let (fatal, message) = match e {
                ApplyError::Fatal(m) => (true, m),
                ApplyError::Retry(m) => (false, m),
            };
            pending.last_error = Some(message.clone());
            if fatal || pending.attempts >= MAX_ATTEMPTS {
                tracing::warn!(tenant = %tenant.id, id = %pending.id, attempts = pending.attempts, error = %message, "writeback moved to the dead letters");
                if let Err(e) = deps.store.move_to_dead(&tenant.id, &pending).await {
                    tracing::error!(tenant = %tenant.id, error = %e, "could not move a writeback to the dead letters; it stays pending");
                }
                Attempt::Dead
            } else {
                pending.next_attempt_at = now + backoff(pending.attempts);
                tracing::info!(tenant = %tenant.id, id = %pending.id, attempts = pending.attempts, error = %message, "writeback pending");
                if let Err(e) = deps.store.put_pending(&tenant.id, &pending).await {
                    tracing::error!(tenant = %tenant.id, error = %e, "could not reschedule a pending writeback");
                }
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
    /// Due later.
    pub waiting: u64,
}

/// Retries a tenant's pending writebacks that are due at `now`, at most `max` of them.
///
/// # Errors
/// The pending list could not be read.
pub async fn retry_pending(
    deps: &WritebackDeps,
    tenant: &TenantConfig,
    now: OffsetDateTime,
    max: usize,
) -> Result<RetryReport, StoreError> {
    let mut report = RetryReport::default();
    let mut cursor = None;
    let mut tried = 0;
    loop {
        let page = deps.store.list_pending(&tenant.id, cursor.as_deref(), 100).await?;
        for p in page.items {
            if p.next_attempt_at > now {
                report.waiting += 1;
                continue;
            }
            if tried >= max {
                report.waiting += 1;
                continue;
            }
            tried += 1;
            match attempt(deps, tenant, p, &deps.retry_options, now, None).await.0 {
                Attempt::Applied => report.applied += 1,
                Attempt::Pending => report.rescheduled += 1,
                Attempt::Dead => report.dead += 1,
            }
        }
        match page.next {
            Some(n) => cursor = Some(n),
            None => return Ok(report),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_row_of_the_default_mapping() {
        let m = Mapping::default();
        for (state, want) in [
            (PlatformState::New, IncidentStatus::Unresolved),
            (PlatformState::Reopened, IncidentStatus::Unresolved),
            (PlatformState::Investigating, IncidentStatus::InProgress),
            (PlatformState::Acknowledged, IncidentStatus::InProgress),
            (PlatformState::InProgress, IncidentStatus::InProgress),
            (PlatformState::Closed, IncidentStatus::Resolved),
            (PlatformState::Resolved, IncidentStatus::Resolved),
        ] {
            assert_eq!(m.status(state), want, "{state:?}");
        }
        for (reason, want) in [
            ("activity blocked", Some(AnalystVerdict::TruePositive)),
            ("attack_failed", Some(AnalystVerdict::TruePositive)),
            ("Incident", Some(AnalystVerdict::TruePositive)),
            ("true positive", Some(AnalystVerdict::TruePositive)),
            ("benign", Some(AnalystVerdict::FalsePositive)),
            ("false_positive", Some(AnalystVerdict::FalsePositive)),
            ("testing", Some(AnalystVerdict::FalsePositive)),
            ("suppressed", Some(AnalystVerdict::FalsePositive)),
            ("Suppressed - New device", Some(AnalystVerdict::FalsePositive)),
            ("suppressed - threshold exceeded", Some(AnalystVerdict::FalsePositive)),
            ("IT misconfiguration", Some(AnalystVerdict::Suspicious)),
            ("possible policy violation", Some(AnalystVerdict::Suspicious)),
            ("policy_violation", Some(AnalystVerdict::Suspicious)),
            ("PUP/PUA", Some(AnalystVerdict::Suspicious)),
            ("pup_pua", Some(AnalystVerdict::Suspicious)),
            ("other", Some(AnalystVerdict::Suspicious)),
            ("duplicate", None),
        ] {
            assert_eq!(m.verdict(Some(reason), None), want, "{reason}");
        }
        assert_eq!(m.verdict(None, None), None, "no reason: verdict unchanged");
        assert_eq!(
            m.verdict(Some("benign"), Some(AnalystVerdict::TruePositive)),
            Some(AnalystVerdict::TruePositive),
            "explicit wins"
        );
    }

    #[test]
    fn tenant_overrides() {
        let mut t: TenantConfig = serde_json::from_value(json!({
            "id": "t", "enabled": true, "console_url": "https://x.sentinelone.net",
            "token": {"kind": "env", "var": "X"}, "platform": {"kind": "generic"},
            "mapping_overrides": {"states": {"acknowledged": "unresolved"}, "close_reasons": {"duplicate": "false_positive"}}
        }))
        .unwrap();
        let m = Mapping::for_tenant(&t).unwrap();
        assert_eq!(m.status(PlatformState::Acknowledged), IncidentStatus::Unresolved);
        assert_eq!(m.verdict(Some("Duplicate"), None), Some(AnalystVerdict::FalsePositive));
        t.mapping_overrides = json!({"states": {"closed": "done"}});
        assert!(Mapping::for_tenant(&t).unwrap_err().contains("closed"));
    }

    #[test]
    fn note_carries_platform_state_actor_reason_and_analysis() {
        let c = StatusChange {
            event_id: "e".into(),
            platform: "generic".into(),
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
}
