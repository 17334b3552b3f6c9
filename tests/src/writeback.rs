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
    serde_json::to_vec(&json!({
        "type": "alert.comment_added",
        "timestamp": s1_shared::s1::dto::format_time(at),
        "data": {"alert_key": alert_key, "comment": comment, "actor": {"name": "Ana"}}
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

/// The simulator's next `count` `/threats/incident` calls meet `fault`.
pub async fn incident_fault(h: &PollHarness, fault: s1_bridge_sim::FaultKind, count: u32) {
    h.sim
        .control()
        .add_fault(&s1_bridge_sim::FaultRule::new("/threats/incident", fault, count))
        .await
        .unwrap();
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

/// The write that ends an applied writeback: it carries the story's echo record.
pub fn is_finish(i: &Item) -> bool {
    i.sk.starts_with("STORY#")
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

    async fn retry_at(h: &PollHarness, at: OffsetDateTime) -> s1_shared::usecase::writeback::RetryReport {
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
    async fn webhook_held_at_finish(
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
        let (held, task) = webhook_held_at_finish(&h, &gate, &alert, "race-1").await;
        let r = retry_at(&h, OffsetDateTime::now_utc() + retry_after).await;
        held.release();
        let resp = task.await.unwrap();
        retry_at(&h, OffsetDateTime::now_utc() + Duration::hours(1)).await;
        (h, ids, r, resp)
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
}
