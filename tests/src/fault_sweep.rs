//! Systematic store faults: a table that fails its N-th call, and sweeps that fail every call
//! of a poll run and of a writeback with retries in turn, rerun after the fault, and check what
//! a user relies on (every threat on the platform exactly once by `webhook-id`; S1 holding the
//! last change with one note per change).
//!
//! A fault is injected two ways: *before* (the call fails and nothing is written) and *after*
//! (the write lands but the caller sees an error, as when DynamoDB's answer is lost).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use s1_bridge_sim::SimConfig;
use s1_shared::platform::{Notice, Platform, PlatformError, PlatformResolver, PublishReceipt, ThreatEvent};
use s1_shared::store::{Cond, Item, ItemPage, ItemTable, Source, StoreError, TenantConfig};
use s1_shared::usecase::poll_threats::{Outcome, Selection, run};
use s1_shared::usecase::writeback::retry_pending;
use time::OffsetDateTime;

use crate::poll::PollHarness;
use crate::writeback::{INBOUND_SECRET, comment_added, deps, fail_incident, post_generic, s1_state, status_changed};

/// Where an injected fault strikes relative to the call's effect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Strike {
    /// The call fails and changes nothing.
    Before,
    /// The call takes effect, then fails (a lost answer).
    After,
}

/// A table that fails its `fail_at`-th call (1-based; 0: never), counting every call.
pub struct FaultTable {
    inner: Arc<dyn ItemTable>,
    calls: AtomicUsize,
    fail_at: AtomicUsize,
    after: AtomicBool,
}

impl FaultTable {
    pub fn new(inner: Arc<dyn ItemTable>) -> Arc<Self> {
        Arc::new(Self {
            inner,
            calls: AtomicUsize::new(0),
            fail_at: AtomicUsize::new(0),
            after: AtomicBool::new(false),
        })
    }

    /// Fails the `n`-th call from now (1-based).
    pub fn arm(&self, n: usize, strike: Strike) {
        self.calls.store(0, Ordering::SeqCst);
        self.after.store(strike == Strike::After, Ordering::SeqCst);
        self.fail_at.store(n, Ordering::SeqCst);
    }

    /// No more faults; the count starts again.
    pub fn disarm(&self) {
        self.fail_at.store(0, Ordering::SeqCst);
        self.calls.store(0, Ordering::SeqCst);
    }

    /// Calls since the last `arm`/`disarm`.
    pub fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }

    /// Whether this call is the one to fail, and how.
    fn strikes(&self) -> Option<Strike> {
        let n = self.calls.fetch_add(1, Ordering::SeqCst) + 1;
        (n == self.fail_at.load(Ordering::SeqCst)).then(|| {
            if self.after.load(Ordering::SeqCst) {
                Strike::After
            } else {
                Strike::Before
            }
        })
    }

    async fn guard<T, F>(&self, op: &'static str, call: F) -> Result<T, StoreError>
    where
        F: std::future::Future<Output = Result<T, StoreError>>,
    {
        let fault = || StoreError::Unavailable {
            op,
            message: "injected fault".into(),
        };
        match self.strikes() {
            None => call.await,
            Some(Strike::Before) => Err(fault()),
            Some(Strike::After) => {
                let _ = call.await;
                Err(fault())
            }
        }
    }
}

#[async_trait]
impl ItemTable for FaultTable {
    async fn get(&self, pk: &str, sk: &str) -> Result<Option<Item>, StoreError> {
        self.guard("get", self.inner.get(pk, sk)).await
    }
    async fn batch_get(&self, keys: &[(String, String)]) -> Result<Vec<Item>, StoreError> {
        self.guard("batch_get", self.inner.batch_get(keys)).await
    }
    async fn put(&self, item: &Item, cond: &Cond) -> Result<bool, StoreError> {
        self.guard("put", self.inner.put(item, cond)).await
    }
    async fn batch_put(&self, items: &[Item]) -> Result<(), StoreError> {
        self.guard("batch_put", self.inner.batch_put(items)).await
    }
    async fn put_all(&self, items: &[(Item, Cond)]) -> Result<Vec<usize>, StoreError> {
        self.guard("put_all", self.inner.put_all(items)).await
    }
    async fn delete(&self, pk: &str, sk: &str, cond: &Cond) -> Result<bool, StoreError> {
        self.guard("delete", self.inner.delete(pk, sk, cond)).await
    }
    async fn query(
        &self,
        pk: &str,
        sk_prefix: &str,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<ItemPage, StoreError> {
        self.guard("query", self.inner.query(pk, sk_prefix, cursor, limit))
            .await
    }
    async fn query_index(&self, key: &str, cursor: Option<&str>, limit: usize) -> Result<ItemPage, StoreError> {
        self.guard("query_index", self.inner.query_index(key, cursor, limit))
            .await
    }
}

/// The tenant's real platform, claiming a pace of one event a second, so the poller reads pages
/// of 60 threats: a small backlog spans several pages (and checkpoints).
struct SmallPages(Arc<dyn PlatformResolver>);
struct SmallPagesPlatform(Arc<dyn Platform>);

#[async_trait]
impl PlatformResolver for SmallPages {
    async fn resolve(&self, tenant: &TenantConfig) -> Result<Arc<dyn Platform>, PlatformError> {
        Ok(Arc::new(SmallPagesPlatform(self.0.resolve(tenant).await?)))
    }
}

#[async_trait]
impl Platform for SmallPagesPlatform {
    fn kind(&self) -> s1_shared::platform::PlatformKind {
        self.0.kind()
    }
    async fn publish(&self, event: &ThreatEvent) -> Result<PublishReceipt, PlatformError> {
        self.0.publish(event).await
    }
    async fn notify(&self, notice: &Notice) -> Result<PublishReceipt, PlatformError> {
        self.0.notify(notice).await
    }
    fn max_events_per_second(&self) -> Option<f64> {
        Some(1.0)
    }
}

/// A console with a backlog of 150 threats or unified alerts (`source`) on 12 agents (so they
/// share stories), polled in pages of 60, over `table`.
async fn poll_setup(table: Arc<dyn ItemTable>, source: Source) -> PollHarness {
    let unified = source == Source::Unified;
    let mut h = PollHarness::start(
        SimConfig {
            threats: if unified { 0 } else { 150 },
            unified_alerts: if unified { 150 } else { 0 },
            unified_threat_every: 0,
            agents: 12,
            cloud_alerts: 0,
            ..SimConfig::default()
        },
        table,
    )
    .await;
    h.read_only(&[source]).await;
    h.deps.platforms = Arc::new(SmallPages(h.deps.platforms.clone()));
    h
}

async fn poll_once(h: &PollHarness) -> Outcome {
    let report = run(&h.deps, &Selection::All, Instant::now() + Duration::from_secs(600))
        .await
        .map(|r| r.tenants[0].outcome);
    report.unwrap_or(Outcome::Failed)
}

/// How many store calls one clean poll of the `source` backlog makes (the sweep's range).
pub async fn poll_calls(base: Arc<dyn ItemTable>, source: Source) -> usize {
    let table = FaultTable::new(base);
    let h = poll_setup(table.clone(), source).await;
    table.disarm();
    assert_eq!(poll_once(&h).await, Outcome::Completed);
    table.calls()
}

/// One point of the poll sweep: the `n`-th store call of the first run fails (`strike`), then
/// runs go on until one completes. Every threat (or unified alert, by `source`) reaches the
/// platform exactly once by `webhook-id` (a repeat carries the same id), nothing is sent as
/// changed, and a further run sends nothing.
pub async fn poll_survives_a_fault_at(base: Arc<dyn ItemTable>, source: Source, n: usize, strike: Strike) {
    let table = FaultTable::new(base);
    let h = poll_setup(table.clone(), source).await;
    table.arm(n, strike);
    poll_once(&h).await;
    table.disarm();
    // Runs go on as the schedule would run them (the same owner takes a lease it left behind).
    let mut completed = false;
    for _ in 0..4 {
        if poll_once(&h).await == Outcome::Completed {
            completed = true;
            break;
        }
    }
    assert!(completed, "fault at call {n} ({strike:?}): no run completed afterwards");
    let mut ids_of: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for d in h.receiver.deliveries() {
        assert_eq!(
            d.body["type"], "threat.created",
            "fault at call {n} ({strike:?}): nothing changed in S1, yet {}",
            d.body
        );
        let threat = d.body["data"]["s1"]["threat_id"].as_str().unwrap().to_owned();
        ids_of.entry(threat).or_default().insert(d.webhook_id);
    }
    assert_eq!(
        ids_of.len(),
        150,
        "fault at call {n} ({strike:?}): every threat delivered"
    );
    for (threat, ids) in &ids_of {
        assert_eq!(
            ids.len(),
            1,
            "fault at call {n} ({strike:?}): threat {threat} sent under several ids {ids:?}"
        );
    }
    let before = h.receiver.deliveries().len();
    assert_eq!(poll_once(&h).await, Outcome::Completed);
    assert_eq!(
        h.receiver.deliveries().len(),
        before,
        "fault at call {n} ({strike:?}): the next run sent something"
    );
}

/// The writeback scenario: S1 refuses the first "closed" (false positive) attempt, a comment
/// follows, and retry passes run. A platform redelivers any webhook it got no 2xx for, under the
/// same `webhook-id`.
struct WritebackRun {
    h: PollHarness,
    base: String,
    alert: String,
    threats: Vec<String>,
}

async fn writeback_setup(table: Arc<dyn ItemTable>) -> WritebackRun {
    let (h, base, stories) = crate::writeback::setup(40, table).await;
    let (alert, threats) = stories[0].clone();
    WritebackRun {
        h,
        base,
        alert,
        threats,
    }
}

/// Delivers `body` as the platform would: again (same id) until it answers 2xx, at most 5 times.
async fn deliver(run: &WritebackRun, id: &str, body: &[u8]) {
    for _ in 0..5 {
        let (code, _) = post_generic(&run.base, "acme", id, body, INBOUND_SECRET).await;
        if (200..300).contains(&code) {
            return;
        }
    }
}

async fn retry_at(run: &WritebackRun, at: OffsetDateTime) {
    // A scheduled run that cannot read its tenant fails as a whole; the next one goes on.
    let Ok(Some(tenant)) = run.h.store.get_tenant("acme").await else {
        return;
    };
    let _ = retry_pending(
        &deps(&run.h),
        &tenant,
        at,
        50,
        Instant::now() + Duration::from_secs(120),
    )
    .await;
}

/// The whole scenario; `armed` runs between set-up and the first webhook.
async fn writeback_scenario(run: &WritebackRun, armed: impl FnOnce()) {
    let now = OffsetDateTime::now_utc();
    fail_incident(&run.h, 503, 1_000).await;
    armed();
    let closed = status_changed(
        &run.alert,
        "closed",
        Some("false positive"),
        now - time::Duration::minutes(2),
    );
    deliver(run, "sweep-closed", &closed).await;
    run.h.sim.control().clear_faults().await.unwrap();
    let comment = comment_added(
        &run.alert,
        "sweep: checked the parent process",
        now - time::Duration::minutes(1),
    );
    deliver(run, "sweep-comment", &comment).await;
    // Retry passes, each past the last one's claims (2 minutes) and backoff.
    for k in 1..=4 {
        retry_at(run, now + time::Duration::hours(2 * k)).await;
    }
}

/// How many store calls the clean writeback scenario makes.
pub async fn writeback_calls(base: Arc<dyn ItemTable>) -> usize {
    let table = FaultTable::new(base);
    let run = writeback_setup(table.clone()).await;
    table.disarm();
    writeback_scenario(&run, || {}).await;
    table.calls()
}

/// One point of the writeback sweep: the `n`-th store call of the scenario fails; then a last
/// retry pass runs. S1 holds the last change (resolved, false positive) on every threat of the
/// story, with exactly one note per change.
pub async fn writeback_survives_a_fault_at(base: Arc<dyn ItemTable>, n: usize, strike: Strike) {
    let table = FaultTable::new(base);
    let run = writeback_setup(table.clone()).await;
    writeback_scenario(&run, || table.arm(n, strike)).await;
    table.disarm();
    retry_at(&run, OffsetDateTime::now_utc() + time::Duration::days(1)).await;
    for id in &run.threats {
        let (status, verdict, notes) = s1_state(&run.h, id).await;
        assert_eq!(
            (status.as_str(), verdict.as_str()),
            ("resolved", "false_positive"),
            "fault at call {n} ({strike:?}): threat {id}; notes {notes:?}"
        );
        let count = |prefix: &str| notes.iter().filter(|t| t.starts_with(prefix)).count();
        assert_eq!(
            (count("[generic] closed by Ana"), count("[generic] comment by Ana")),
            (1, 1),
            "fault at call {n} ({strike:?}): threat {id}: one note per change; notes {notes:?}"
        );
    }
}
