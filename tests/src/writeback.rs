//! A status-writeback harness: the webhook handler behind a real HTTP server, the poll harness
//! for stories, signing helpers, a store wrapper that holds a chosen write until the test lets
//! it through (to build races and kills deterministically), and the writeback scenarios that
//! run on both stores (`writeback_scenarios!`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use s1_bridge_sim::SimConfig;
use s1_shared::platform::{WebhookSecret, sign};
use s1_shared::secrets::LocalTokenProvider;
use s1_shared::store::{Cond, Item, ItemPage, ItemTable, StoreError};
use s1_shared::usecase::writeback::{WebhookOptions, WritebackDeps, handle_webhook_with};
use serde_json::{Value, json};

use crate::poll::{PollHarness, tenant};

/// The inbound Standard Webhooks secret the tests' platform signs with (test-only).
pub const INBOUND_SECRET: &str = "whsec_dGhpcy1pcy1hLXRlc3Qtb25seS1pbmJvdW5kLWtleQ==";

/// The handler served over HTTP on a free loopback port; returns its base URL.
pub async fn serve(deps: WritebackDeps) -> String {
    serve_with(deps, WebhookOptions::default()).await
}

/// [`serve`] with a budget and clock of the test's choosing (recorded deliveries are judged at
/// the time they were made).
pub async fn serve_with(deps: WritebackDeps, options: WebhookOptions) -> String {
    type Shared = Arc<(WritebackDeps, WebhookOptions)>;
    async fn route(
        State(shared): State<Shared>,
        method: Method,
        uri: Uri,
        headers: HeaderMap,
        body: Bytes,
    ) -> (StatusCode, axum::Json<Value>) {
        let (deps, options) = &*shared;
        let r = handle_webhook_with(deps, method.as_str(), uri.path(), &headers, &body, options).await;
        (StatusCode::from_u16(r.status).unwrap(), axum::Json(r.body))
    }
    let app = axum::Router::new()
        .fallback(route)
        .layer(axum::extract::DefaultBodyLimit::max(4 << 20))
        .with_state(Arc::new((deps, options)));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    url
}

/// Writeback deps over the poll harness's store, tokens and simulator.
pub fn deps(h: &PollHarness) -> WritebackDeps {
    let env = h.env.clone();
    let tokens = Arc::new(LocalTokenProvider::with_lookup(move |k| {
        env.lock().unwrap().get(k).cloned()
    }));
    let mut inline_retry = WritebackDeps::inline_retry_policy();
    inline_retry.min_delay = std::time::Duration::from_millis(5);
    WritebackDeps {
        store: h.store.clone(),
        platforms: std::sync::Arc::new(
            s1_shared::platform::Adapters::new(
                reqwest::Client::new(),
                tokens.clone(),
                crate::fast_retry_options().retry,
            )
            .with_allowed_hosts(crate::loopback_hosts()),
        ),
        tokens,
        consoles: h.deps.consoles.clone(),
        inline_retry,
    }
}

/// Standard Webhooks headers for `body`, signed now with `secret`.
pub fn signed_headers(id: &str, body: &[u8], secret: &str) -> HeaderMap {
    let ts = time::OffsetDateTime::now_utc().unix_timestamp();
    let sig = sign(&WebhookSecret::parse(secret).unwrap(), id, ts, body);
    let mut h = HeaderMap::new();
    h.insert("webhook-id", id.parse().unwrap());
    h.insert("webhook-timestamp", ts.to_string().parse().unwrap());
    h.insert("webhook-signature", sig.parse().unwrap());
    h
}

/// A signed generic webhook POST; returns (status, body).
pub async fn post_generic(base: &str, tenant: &str, id: &str, body: &[u8], secret: &str) -> (u16, Value) {
    let mut req = reqwest::Client::new()
        .post(format!("{base}/generic/{tenant}"))
        .body(body.to_vec());
    for (k, v) in &signed_headers(id, body, secret) {
        req = req.header(k.as_str(), v.to_str().unwrap());
    }
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

/// A generic `alert.status_changed` body.
pub fn status_changed(alert_key: &str, status: &str, close_reason: Option<&str>, at: time::OffsetDateTime) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "type": "alert.status_changed",
        "timestamp": s1_shared::s1::dto::format_time(at),
        "data": {
            "alert_key": alert_key,
            "status": status,
            "close_reason": close_reason,
            "analysis": "checked the process tree",
            "actor": {"name": "Ana", "email": "ana@example.com"}
        }
    }))
    .unwrap()
}

/// A generic `alert.comment_added` body.
pub fn comment_added(alert_key: &str, comment: &str, at: time::OffsetDateTime) -> Vec<u8> {
    comment_with_verdict(alert_key, comment, None, at)
}

/// A generic `alert.comment_added` body that carries a verdict (`suspicious`, `true_positive`).
pub fn comment_with_verdict(
    alert_key: &str,
    comment: &str,
    verdict: Option<&str>,
    at: time::OffsetDateTime,
) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "type": "alert.comment_added",
        "timestamp": s1_shared::s1::dto::format_time(at),
        "data": {"alert_key": alert_key, "comment": comment, "verdict": verdict, "actor": {"name": "Ana"}}
    }))
    .unwrap()
}

/// A polled console whose tenant `acme` accepts signed generic webhooks, on `table`; returns the
/// harness, the webhook base URL, and stories as (alert key, threat ids), largest first.
pub async fn setup(threats: usize, table: Arc<dyn ItemTable>) -> (PollHarness, String, Vec<(String, Vec<String>)>) {
    let h = PollHarness::start(
        SimConfig {
            threats,
            agents: 60,
            cloud_alerts: 0,
            ..SimConfig::default()
        },
        table,
    )
    .await;
    let mut t = tenant("acme", &h.sim.base_url(), &h.receiver.url());
    t.generic_mut().inbound_secrets = vec![s1_shared::test_util::env("INBOUND")];
    h.store.put_tenant(&t).await.unwrap();
    h.env.lock().unwrap().insert("INBOUND".into(), INBOUND_SECRET.into());
    h.poll().await;
    let mut stories: HashMap<String, Vec<String>> = HashMap::new();
    for e in h.receiver.events() {
        stories
            .entry(e["data"]["alert_key"].as_str().unwrap().to_owned())
            .or_default()
            .push(e["data"]["s1"]["threat_id"].as_str().unwrap().to_owned());
    }
    let mut stories: Vec<_> = stories.into_iter().collect();
    stories.sort_by_key(|(k, v)| (std::cmp::Reverse(v.len()), k.clone()));
    let base = serve(deps(&h)).await;
    (h, base, stories)
}

/// A threat's (incident status, verdict, note texts) in the simulator.
pub async fn s1_state(h: &PollHarness, id: &str) -> (String, String, Vec<String>) {
    let t = h.sim.control().threat(id).await.unwrap();
    let notes = t["notes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["text"].as_str().unwrap().to_owned())
        .collect();
    (
        t["threatInfo"]["incidentStatus"].as_str().unwrap().to_owned(),
        t["threatInfo"]["analystVerdict"].as_str().unwrap().to_owned(),
        notes,
    )
}

/// Write calls (POSTs) the simulator has seen.
pub async fn s1_writes(h: &PollHarness) -> usize {
    h.sim
        .control()
        .requests()
        .await
        .unwrap()
        .iter()
        .filter(|r| r.method == "POST")
        .count()
}

/// The simulator's next `count` calls to `path` (any method) meet `fault`.
pub async fn s1_fault(h: &PollHarness, path: &str, fault: s1_bridge_sim::FaultKind, count: u32) {
    h.sim
        .control()
        .add_fault(&s1_bridge_sim::FaultRule::new(path, fault, count))
        .await
        .unwrap();
}

/// The simulator's next `count` `/threats/incident` calls meet `fault`.
pub async fn incident_fault(h: &PollHarness, fault: s1_bridge_sim::FaultKind, count: u32) {
    s1_fault(h, "/threats/incident", fault, count).await;
}

/// The calls to `path` the simulator has received, in order (a held call counts from its
/// arrival).
pub async fn requests_to(h: &PollHarness, path: &str) -> Vec<s1_bridge_sim::RequestLogEntry> {
    let all = h.sim.control().requests().await.unwrap();
    all.into_iter().filter(|r| r.path == path).collect()
}

/// `POST <path>` calls the simulator has received (a held call counts from its arrival).
pub async fn s1_posts_to(h: &PollHarness, path: &str) -> usize {
    requests_to(h, path).await.iter().filter(|r| r.method == "POST").count()
}

/// Waits (up to 30 s) until `done` holds: for S1 to finish a call it holds.
pub async fn wait_until<F: std::future::Future<Output = bool>>(what: &str, mut done: impl FnMut() -> F) {
    let until = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !done().await {
        assert!(std::time::Instant::now() < until, "timed out waiting until {what}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// The simulator answers the next `count` `/threats/incident` calls with HTTP `status`.
pub async fn fail_incident(h: &PollHarness, status: u16, count: u32) {
    let fault = s1_bridge_sim::FaultKind::Status {
        status,
        retry_after: None,
        code: None,
    };
    incident_fault(h, fault, count).await;
}

/// Notes on a threat that start with `prefix`.
pub async fn notes_starting(h: &PollHarness, id: &str, prefix: &str) -> usize {
    s1_state(h, id).await.2.iter().filter(|n| n.starts_with(prefix)).count()
}

// ---- holding a write until the test lets it through -------------------------------------------

type Matcher = Box<dyn Fn(&Item) -> bool + Send + Sync>;

struct Armed {
    matches: Matcher,
    reached: Arc<tokio::sync::Notify>,
    release: Arc<tokio::sync::Semaphore>,
}

/// A store that holds the first write matching an armed predicate until the test releases it:
/// a writer stopped there can be raced against, or killed (its task aborted) at that point.
pub struct GateTable {
    inner: Arc<dyn ItemTable>,
    armed: Mutex<Option<Armed>>,
}

/// One armed hold.
pub struct Gate {
    reached: Arc<tokio::sync::Notify>,
    release: Arc<tokio::sync::Semaphore>,
}

impl Gate {
    /// Waits until a writer is held at the gate.
    pub async fn reached(&self) {
        tokio::time::timeout(std::time::Duration::from_secs(120), self.reached.notified())
            .await
            .expect("no write reached the gate");
    }

    /// Lets the held write through.
    pub fn release(&self) {
        self.release.add_permits(1);
    }
}

impl GateTable {
    pub fn new(inner: Arc<dyn ItemTable>) -> Arc<Self> {
        Arc::new(Self {
            inner,
            armed: Mutex::new(None),
        })
    }

    /// Holds the next write (put, batch or transaction) that includes an item matching `matches`.
    pub fn arm(&self, matches: impl Fn(&Item) -> bool + Send + Sync + 'static) -> Gate {
        let reached = Arc::new(tokio::sync::Notify::new());
        let release = Arc::new(tokio::sync::Semaphore::new(0));
        *self.armed.lock().unwrap() = Some(Armed {
            matches: Box::new(matches),
            reached: reached.clone(),
            release: release.clone(),
        });
        Gate { reached, release }
    }

    async fn pass<'a>(&self, mut items: impl Iterator<Item = &'a Item>) {
        let hit = {
            let mut armed = self.armed.lock().unwrap();
            match armed.as_ref() {
                Some(a) if items.any(|i| (a.matches)(i)) => armed.take(),
                _ => None,
            }
        };
        if let Some(a) = hit {
            a.reached.notify_one();
            let _ = a.release.acquire().await;
        }
    }
}

#[async_trait]
impl ItemTable for GateTable {
    async fn get(&self, pk: &str, sk: &str) -> Result<Option<Item>, StoreError> {
        self.inner.get(pk, sk).await
    }
    async fn batch_get(&self, keys: &[(String, String)]) -> Result<Vec<Item>, StoreError> {
        self.inner.batch_get(keys).await
    }
    async fn put(&self, item: &Item, cond: &Cond) -> Result<bool, StoreError> {
        self.pass(std::iter::once(item)).await;
        self.inner.put(item, cond).await
    }
    async fn batch_put(&self, items: &[Item]) -> Result<(), StoreError> {
        self.pass(items.iter()).await;
        self.inner.batch_put(items).await
    }
    async fn put_all(&self, items: &[(Item, Cond)]) -> Result<Vec<usize>, StoreError> {
        self.pass(items.iter().map(|(i, _)| i)).await;
        self.inner.put_all(items).await
    }
    async fn delete(&self, pk: &str, sk: &str, cond: &Cond) -> Result<bool, StoreError> {
        self.inner.delete(pk, sk, cond).await
    }
    async fn query(
        &self,
        pk: &str,
        sk_prefix: &str,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<ItemPage, StoreError> {
        self.inner.query(pk, sk_prefix, cursor, limit).await
    }
    async fn query_index(&self, key: &str, cursor: Option<&str>, limit: usize) -> Result<ItemPage, StoreError> {
        self.inner.query_index(key, cursor, limit).await
    }
}

/// The story key inside an alert key `s1:<host>:<story key>@<window start>`.
pub fn story_key(alert: &str) -> String {
    let id = alert.splitn(3, ':').nth(2).unwrap();
    id.rsplit_once('@').unwrap().0.to_owned()
}

/// The write that ends a writeback: it retires the pending item (written already expired).
pub fn is_finish(i: &Item) -> bool {
    i.sk.starts_with("PENDING#") && i.ttl.is_some()
}

// ---- scenarios run on both stores ---------------------------------------------------------------

/// The writeback scenarios that involve the store, as test functions over a table expression
/// (`writeback_scenarios!(embedded())` / `writeback_scenarios!(dynamo().await)`).
#[macro_export]
macro_rules! writeback_scenarios {
    ($table:expr) => {
        $crate::writeback_scenarios!(@tests $table;
            an_older_change_that_failed_is_superseded_by_a_newer_applied_one,
            the_inline_attempt_keeps_its_claim_against_a_retry_pass,
            a_retry_pass_takes_over_an_expired_claim_and_the_note_is_posted_once,
            a_kill_after_the_note_before_finish_does_not_post_the_note_again,
            our_own_status_is_not_sent_back_when_a_later_step_fails,
            an_older_comments_verdict_held_by_s1_does_not_overwrite_a_newer_status_change,
            an_older_status_change_retried_after_a_newer_comments_verdict_keeps_that_verdict,
            a_cut_answer_from_s1_is_retried_and_never_a_dead_letter,
            a_redelivered_change_is_a_duplicate_even_once_a_newer_one_reached_s1,
            // Unified alerts (UAM), `writeback_uam.rs`.
            a_close_reaches_the_threat_through_the_threats_api_and_the_unified_alert_through_uam,
            a_unified_write_the_console_refuses_is_a_dead_letter_naming_the_alert,
            a_skipped_unified_write_stays_pending_and_lands_on_retry,
            a_lost_answer_after_uam_took_the_note_adds_no_second_note,
            a_lost_answer_after_uam_took_the_status_is_applied_on_retry_not_lost,
            cached_action_ids_the_console_refuses_are_discovered_again_once,
            an_older_unified_change_that_failed_is_superseded_by_a_newer_applied_one,
            a_superseded_close_that_reached_only_the_threat_gets_its_verdict_onto_the_unified_alert,
            a_close_cut_off_after_the_threat_took_it_keeps_its_verdict_through_a_clean_retry_failure,
            a_close_whose_lost_answer_was_followed_by_503s_is_not_taken_for_unsent,
            a_newer_close_that_landed_nowhere_does_not_keep_an_older_ones_verdict_split,
            our_own_unified_write_is_not_sent_back_by_the_poller,
            a_graphql_error_that_is_no_refusal_leaves_the_unified_change_pending,
            a_dead_lettered_unified_change_replayed_by_the_operator_reaches_uam_once,
            a_status_a_note_and_a_verdict_reach_uam_in_order,
            a_kill_after_uam_took_the_note_before_finish_does_not_add_it_again,
            the_inline_unified_attempt_keeps_its_claim_against_a_retry_pass,
            a_retry_pass_takes_over_an_expired_unified_claim_and_the_note_is_added_once,
        );
    };
    (@tests $table:expr; $($name:ident),+ $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread")]
            async fn $name() {
                $crate::writeback::scenarios::$name($table).await;
            }
        )+
    };
}

pub mod scenarios {
    use std::sync::Arc;

    use s1_shared::store::ItemTable;
    use s1_shared::usecase::writeback::{handle_webhook, retry_pending};
    use time::{Duration, OffsetDateTime};

    use super::*;
    pub use crate::writeback_uam::scenarios::*;

    /// A retry pass of tenant `acme`'s pending changes as if run at `at`.
    pub async fn retry_at(h: &PollHarness, at: OffsetDateTime) -> s1_shared::usecase::writeback::RetryReport {
        let tenant = h.store.get_tenant("acme").await.unwrap().unwrap();
        retry_pending(
            &deps(h),
            &tenant,
            at,
            50,
            std::time::Instant::now() + std::time::Duration::from_secs(120),
        )
        .await
        .unwrap()
    }

    /// S1 fails "closed" (t1); "reopened" (t2) applies; the retry pass must not apply the older
    /// change over the newer one: S1 ends "unresolved", with exactly one note per change, and
    /// the older change is listed as superseded.
    pub async fn an_older_change_that_failed_is_superseded_by_a_newer_applied_one(table: Arc<dyn ItemTable>) {
        let (h, base, stories) = setup(60, table).await;
        let (alert, ids) = &stories[0];
        let now = OffsetDateTime::now_utc();
        fail_incident(&h, 503, 1_000).await;
        let closed = status_changed(alert, "closed", Some("benign"), now - Duration::minutes(2));
        let (code, resp) = post_generic(&base, "acme", "order-t1", &closed, INBOUND_SECRET).await;
        assert_eq!((code, resp["writeback"].as_str()), (202, Some("pending")), "{resp}");
        h.sim.control().clear_faults().await.unwrap();
        let reopened = status_changed(alert, "reopened", None, now - Duration::minutes(1));
        let (code, resp) = post_generic(&base, "acme", "order-t2", &reopened, INBOUND_SECRET).await;
        assert_eq!((code, resp["writeback"].as_str()), (202, Some("applied")), "{resp}");

        let r = retry_at(&h, now + Duration::minutes(10)).await;
        assert_eq!(r.applied, 0, "{r:?}");
        for id in ids {
            let (status, verdict, _) = s1_state(&h, id).await;
            assert_eq!(status, "unresolved", "threat {id}: the newer change stands");
            assert_ne!(
                verdict, "false_positive",
                "threat {id}: the superseded verdict was not applied"
            );
            assert_eq!(
                notes_starting(&h, id, "[generic] closed by Ana").await,
                1,
                "threat {id}"
            );
            assert_eq!(
                notes_starting(&h, id, "[generic] reopened by Ana").await,
                1,
                "threat {id}"
            );
        }
        assert!(h.store.list_pending("acme", None, 10).await.unwrap().items.is_empty());
        let listed = h.store.list_dead("acme", None, 10).await.unwrap().items;
        assert_eq!(listed.len(), 1, "{listed:?}");
        assert!(
            listed[0]
                .last_error
                .as_deref()
                .unwrap_or_default()
                .starts_with("superseded"),
            "{listed:?}"
        );
        // Nothing more happens on later passes. The echo record is what S1 holds, so the
        // poller sends nothing back.
        let writes = s1_writes(&h).await;
        retry_at(&h, now + Duration::hours(3)).await;
        assert_eq!(s1_writes(&h).await, writes);
        let story = h
            .store
            .get_story("acme", &story_key(alert))
            .await
            .unwrap()
            .unwrap()
            .value;
        for (id, m) in &story.members {
            assert_eq!(
                (m.written_status, m.written_verdict),
                (Some(s1_shared::s1::dto::IncidentStatus::Unresolved), None),
                "threat {id}"
            );
        }
        let before = h.receiver.events().len();
        let p = h.poll().await.tenants.remove(0);
        assert_eq!(p.published, 0, "{p:?}");
        assert_eq!(h.receiver.events().len(), before);
    }

    /// Starts a webhook on `gate_table`'s harness in its own task, held at the finish write.
    pub(crate) async fn webhook_held_at_finish(
        h: &PollHarness,
        gate: &GateTable,
        alert: &str,
        id: &str,
    ) -> (
        Gate,
        tokio::task::JoinHandle<s1_shared::usecase::writeback::WebhookResponse>,
    ) {
        let held = gate.arm(is_finish);
        let body = status_changed(alert, "closed", Some("true_positive"), OffsetDateTime::now_utc());
        let headers = signed_headers(id, &body, INBOUND_SECRET);
        let d = deps(h);
        let task = tokio::spawn(async move { handle_webhook(&d, "POST", "/generic/acme", &headers, &body).await });
        held.reached().await;
        (held, task)
    }

    /// Every threat of the story is resolved in S1 with one note of the change, and nothing is
    /// left pending or dead.
    async fn resolved_once(h: &PollHarness, ids: &[String]) {
        for id in ids {
            assert_eq!(s1_state(h, id).await.0, "resolved");
            assert_eq!(notes_starting(h, id, "[generic] closed by Ana").await, 1, "threat {id}");
        }
        assert!(h.store.list_pending("acme", None, 10).await.unwrap().items.is_empty());
        assert!(h.store.list_dead("acme", None, 10).await.unwrap().items.is_empty());
    }

    /// A retry pass at `retry_after` from now runs while the webhook's inline attempt is held
    /// after its note, before its finish; then the inline attempt goes on. Returns the pass's
    /// report and the webhook's answer.
    async fn race(
        table: Arc<dyn ItemTable>,
        retry_after: Duration,
    ) -> (
        PollHarness,
        Vec<String>,
        s1_shared::usecase::writeback::RetryReport,
        s1_shared::usecase::writeback::WebhookResponse,
    ) {
        let gate = GateTable::new(table);
        let (h, _, stories) = setup(40, gate.clone()).await;
        let (alert, ids) = stories[0].clone();
        let (r, resp) = race_at_finish(&h, &gate, &alert, retry_after).await;
        (h, ids, r, resp)
    }

    /// A retry pass at `retry_after` from now runs while a close of `alert`'s inline attempt is
    /// held after its note, before its finish; then the inline attempt goes on, and a later pass
    /// runs. Returns the racing pass's report and the webhook's answer.
    pub(crate) async fn race_at_finish(
        h: &PollHarness,
        gate: &GateTable,
        alert: &str,
        retry_after: Duration,
    ) -> (
        s1_shared::usecase::writeback::RetryReport,
        s1_shared::usecase::writeback::WebhookResponse,
    ) {
        let (held, task) = webhook_held_at_finish(h, gate, alert, "race-1").await;
        let r = retry_at(h, OffsetDateTime::now_utc() + retry_after).await;
        held.release();
        let resp = task.await.unwrap();
        retry_at(h, OffsetDateTime::now_utc() + Duration::hours(1)).await;
        (r, resp)
    }

    /// The webhook's inline attempt has posted its note and is about to finish; a retry pass
    /// running now finds the item claimed and leaves it alone.
    pub async fn the_inline_attempt_keeps_its_claim_against_a_retry_pass(table: Arc<dyn ItemTable>) {
        let (h, ids, r, resp) = race(table, Duration::ZERO).await;
        assert_eq!((r.applied, r.dead), (0, 0), "{r:?}");
        assert_eq!(
            (resp.status, resp.body["writeback"].as_str()),
            (202, Some("applied")),
            "{resp:?}"
        );
        resolved_once(&h, &ids).await;
    }

    /// The inline attempt stalls past its claim; the retry pass takes the item over and ends it;
    /// the stalled attempt, let go, writes nothing and posts nothing.
    pub async fn a_retry_pass_takes_over_an_expired_claim_and_the_note_is_posted_once(table: Arc<dyn ItemTable>) {
        let (h, ids, r, resp) = race(table, Duration::minutes(10)).await;
        assert_eq!(r.applied, 1, "{r:?}");
        assert_eq!(resp.status, 202, "{resp:?}");
        resolved_once(&h, &ids).await;
    }

    /// The function is killed after S1 took the note and before the writeback was finished in
    /// the store: the retry pass completes it without posting the note again.
    pub async fn a_kill_after_the_note_before_finish_does_not_post_the_note_again(table: Arc<dyn ItemTable>) {
        let gate = GateTable::new(table);
        let (h, _, stories) = setup(40, gate.clone()).await;
        let (alert, ids) = &stories[0];
        let (_held, task) = webhook_held_at_finish(&h, &gate, alert, "kill-1").await;
        task.abort();
        assert!(task.await.unwrap_err().is_cancelled());
        for id in ids {
            assert_eq!(
                notes_starting(&h, id, "[generic] closed by Ana").await,
                1,
                "S1 took the note"
            );
        }
        let r = retry_at(&h, OffsetDateTime::now_utc() + Duration::minutes(10)).await;
        assert_eq!(r.applied, 1, "{r:?}");
        resolved_once(&h, ids).await;
        // The echo is recorded: the poller does not send our own change back.
        let p = h.poll().await.tenants.remove(0);
        assert_eq!(p.published, 0, "{p:?}");
    }

    /// Every threat of `ids` holds `want` (status, verdict) in S1, with one note starting with
    /// each of `notes`.
    async fn each_holds(h: &PollHarness, ids: &[String], want: (&str, &str), notes: &[&str]) {
        for id in ids {
            let (status, verdict, _) = s1_state(h, id).await;
            assert_eq!((status.as_str(), verdict.as_str()), want, "threat {id}");
            for note in notes {
                assert_eq!(notes_starting(h, id, note).await, 1, "threat {id}: {note}");
            }
        }
    }

    /// Nothing of the tenant is pending or dead (but superseded changes).
    async fn nothing_left_but_superseded(h: &PollHarness) {
        assert!(h.store.list_pending("acme", None, 10).await.unwrap().items.is_empty());
        let dead = h.store.list_dead("acme", None, 100).await.unwrap().items;
        assert!(
            dead.iter()
                .all(|d| d.last_error.as_deref().is_some_and(|e| e.starts_with("superseded"))),
            "{dead:?}"
        );
    }

    /// A poll publishes nothing: S1's state is all our own writes.
    async fn poll_sends_nothing_back(h: &PollHarness, when: &str) {
        let before = h.receiver.events().len();
        let p = h.poll().await.tenants.remove(0);
        let echoed: Vec<_> = h.receiver.events()[before..]
            .iter()
            .map(|e| {
                format!(
                    "{} {} {}",
                    e["type"], e["data"]["s1"]["threat_id"], e["data"]["s1"]["status"]
                )
            })
            .collect();
        assert!(
            p.published == 0 && echoed.is_empty(),
            "{when}: our own writes came back: {echoed:?} {p:?}"
        );
    }

    /// Issue 22 item 1. S1 took the status of an `investigating` change, and then (a) answered
    /// its note call 500, (b) held the note call past the webhook's budget, (c) held it while the
    /// function was killed. The status S1 holds is ours: the poller must not send it back to the
    /// platform, before or after the notes land.
    pub async fn our_own_status_is_not_sent_back_when_a_later_step_fails(table: Arc<dyn ItemTable>) {
        use s1_bridge_sim::FaultKind;
        let (h, base, stories) = setup(60, table).await;
        let now = OffsetDateTime::now_utc();
        let body = |alert: &str| status_changed(alert, "investigating", None, now);
        // (a) The note call fails.
        s1_fault(
            &h,
            "/threats/notes",
            FaultKind::Status {
                status: 500,
                retry_after: None,
                code: None,
            },
            1,
        )
        .await;
        let (code, resp) = post_generic(&base, "acme", "echo-a", &body(&stories[0].0), INBOUND_SECRET).await;
        assert_eq!((code, resp["writeback"].as_str()), (202, Some("pending")), "{resp}");
        // (b) The note call outlasts the budget.
        s1_fault(&h, "/threats/notes", FaultKind::Slow { millis: 4_500 }, 1).await;
        let (code, resp) = post_generic(&base, "acme", "echo-b", &body(&stories[1].0), INBOUND_SECRET).await;
        assert_eq!((code, resp["writeback"].as_str()), (202, Some("pending")), "{resp}");
        // (c) Killed while S1 holds the note call.
        s1_fault(&h, "/threats/notes", FaultKind::Slow { millis: 1_500 }, 1).await;
        let notes_before = s1_posts_to(&h, "/threats/notes").await;
        let b = body(&stories[2].0);
        let headers = signed_headers("echo-c", &b, INBOUND_SECRET);
        let d = deps(&h);
        let task = tokio::spawn(async move { handle_webhook(&d, "POST", "/generic/acme", &headers, &b).await });
        wait_until("S1 holds the note call", || async {
            s1_posts_to(&h, "/threats/notes").await > notes_before
        })
        .await;
        task.abort();
        let _ = task.await;

        let all: Vec<&String> = stories[..3].iter().flat_map(|(_, ids)| ids).collect();
        for id in &all {
            assert_eq!(
                s1_state(&h, id).await.0,
                "in_progress",
                "threat {id}: S1 took the status"
            );
        }
        poll_sends_nothing_back(&h, "after the failed steps").await;

        // The retry pass finishes every change with one note each (the simulator drops a held
        // call whose caller went away, so the retry posts the note after looking for it).
        let r = retry_at(&h, now + Duration::minutes(10)).await;
        assert_eq!(r.applied, 3, "{r:?}");
        for id in &all {
            assert_eq!(
                notes_starting(&h, id, "[generic] investigating by Ana").await,
                1,
                "threat {id}"
            );
        }
        nothing_left_but_superseded(&h).await;
        poll_sends_nothing_back(&h, "after the retries").await;
    }

    /// Issue 22 item 2. A comment carrying verdict `suspicious` (t1) is accepted and S1 holds its
    /// verdict call; meanwhile a newer `closed` change (t2, activity blocked: true positive) is
    /// accepted. S1 must end on the newer verdict: resolved / true positive.
    pub async fn an_older_comments_verdict_held_by_s1_does_not_overwrite_a_newer_status_change(
        table: Arc<dyn ItemTable>,
    ) {
        use s1_bridge_sim::FaultKind;
        let (h, base, stories) = setup(60, table).await;
        let (alert, ids) = &stories[0];
        let now = OffsetDateTime::now_utc();
        s1_fault(&h, "/threats/analyst-verdict", FaultKind::Slow { millis: 2_000 }, 1).await;
        let comment = comment_with_verdict(
            alert,
            "looks like a dual-use tool",
            Some("suspicious"),
            now - Duration::minutes(2),
        );
        let (b, a) = (base.clone(), alert.clone());
        let older = tokio::spawn(async move { post_generic(&b, "acme", "verdict-t1", &comment, INBOUND_SECRET).await });
        wait_until("S1 holds the comment's verdict call", || async {
            s1_posts_to(&h, "/threats/analyst-verdict").await > 0
        })
        .await;
        let closed = status_changed(&a, "closed", Some("activity_blocked"), now - Duration::minutes(1));
        let (code, resp) = post_generic(&base, "acme", "status-t2", &closed, INBOUND_SECRET).await;
        assert_eq!(code, 202, "{resp}");
        let (code, resp) = older.await.unwrap();
        assert_eq!(code, 202, "{resp}");
        retry_at(&h, now + Duration::minutes(10)).await;
        let notes = ["[generic] comment by Ana", "[generic] closed by Ana"];
        each_holds(&h, ids, ("resolved", "true_positive"), &notes).await;
        nothing_left_but_superseded(&h).await;
    }

    /// Issue 22 item 2, the other way round. An older `closed` change (t1, benign: false
    /// positive) fails in S1 and stays pending; a newer comment (t2) sets verdict true positive.
    /// The older change, retried, sets its status but must not put its verdict back.
    pub async fn an_older_status_change_retried_after_a_newer_comments_verdict_keeps_that_verdict(
        table: Arc<dyn ItemTable>,
    ) {
        let (h, base, stories) = setup(60, table).await;
        let (alert, ids) = &stories[0];
        let now = OffsetDateTime::now_utc();
        fail_incident(&h, 503, 1_000).await;
        let closed = status_changed(alert, "closed", Some("benign"), now - Duration::minutes(2));
        let (code, resp) = post_generic(&base, "acme", "status-t1", &closed, INBOUND_SECRET).await;
        assert_eq!((code, resp["writeback"].as_str()), (202, Some("pending")), "{resp}");
        h.sim.control().clear_faults().await.unwrap();
        let comment = comment_with_verdict(
            alert,
            "confirmed malicious",
            Some("true_positive"),
            now - Duration::minutes(1),
        );
        let (code, resp) = post_generic(&base, "acme", "verdict-t2", &comment, INBOUND_SECRET).await;
        assert_eq!((code, resp["writeback"].as_str()), (202, Some("applied")), "{resp}");
        let r = retry_at(&h, now + Duration::minutes(10)).await;
        assert_eq!(r.applied, 1, "{r:?}");
        each_holds(&h, ids, ("resolved", "true_positive"), &["[generic] closed by Ana"]).await;
        nothing_left_but_superseded(&h).await;
        poll_sends_nothing_back(&h, "after both changes").await;
    }

    /// Issue 22 item 3. S1 applies a call but its answer is cut short (the JSON ends early): we
    /// do not know the outcome, which is a retry, never a dead letter. (a) `/threats/incident`
    /// cut once: retried at once; (b) cut on every inline try: pending, then the retry pass
    /// lands it; (c) `/threats/notes` cut: the note S1 took is found, not posted again.
    pub async fn a_cut_answer_from_s1_is_retried_and_never_a_dead_letter(table: Arc<dyn ItemTable>) {
        use s1_bridge_sim::FaultKind;
        let (h, base, stories) = setup(60, table).await;
        let now = OffsetDateTime::now_utc();
        let body = |alert: &str| status_changed(alert, "closed", Some("true_positive"), now);
        let cases = [
            ("/threats/incident", 1, "applied"),
            ("/threats/incident", 2, "pending"),
            ("/threats/notes", 1, "pending"),
        ];
        for (n, (path, count, want)) in cases.into_iter().enumerate() {
            s1_fault(&h, path, FaultKind::Truncate, count).await;
            let (code, resp) =
                post_generic(&base, "acme", &format!("cut-{n}"), &body(&stories[n].0), INBOUND_SECRET).await;
            assert_eq!(
                (code, resp["writeback"].as_str()),
                (202, Some(want)),
                "{path} cut {count}x: {resp}"
            );
        }
        let r = retry_at(&h, now + Duration::minutes(10)).await;
        assert_eq!((r.applied, r.dead), (2, 0), "{r:?}");
        for (_, ids) in &stories[..3] {
            each_holds(&h, ids, ("resolved", "true_positive"), &["[generic] closed by Ana"]).await;
        }
        nothing_left_but_superseded(&h).await;
        poll_sends_nothing_back(&h, "after cut answers").await;
    }

    /// Found by the writeback chaos test: a change accepted (202 pending: S1 was down) is
    /// delivered again by the platform (our answer was lost) after a newer change reached S1.
    /// It was accepted: the answer is "already accepted", not a 409 refusal of a change that
    /// is in fact retried and whose note reaches S1.
    pub async fn a_redelivered_change_is_a_duplicate_even_once_a_newer_one_reached_s1(table: Arc<dyn ItemTable>) {
        let (h, base, stories) = setup(40, table).await;
        let (alert, _) = &stories[0];
        let now = OffsetDateTime::now_utc();
        fail_incident(&h, 503, 1_000).await;
        let older = status_changed(alert, "closed", Some("benign"), now - Duration::minutes(2));
        let (code, resp) = post_generic(&base, "acme", "again-t1", &older, INBOUND_SECRET).await;
        assert_eq!((code, resp["writeback"].as_str()), (202, Some("pending")), "{resp}");
        h.sim.control().clear_faults().await.unwrap();
        let newer = status_changed(alert, "investigating", None, now - Duration::minutes(1));
        let (code, resp) = post_generic(&base, "acme", "again-t2", &newer, INBOUND_SECRET).await;
        assert_eq!((code, resp["writeback"].as_str()), (202, Some("applied")), "{resp}");
        let (code, resp) = post_generic(&base, "acme", "again-t1", &older, INBOUND_SECRET).await;
        assert_eq!(code, 200, "{resp}");
        assert!(resp["message"].as_str().unwrap().contains("already accepted"), "{resp}");
        // A change never accepted and older than the alert's is still refused.
        let (code, resp) = post_generic(&base, "acme", "again-t0", &older, INBOUND_SECRET).await;
        assert_eq!(code, 409, "{resp}");
    }
}
