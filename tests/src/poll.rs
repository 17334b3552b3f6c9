//! A poll-threats harness: simulator, store, a signed-webhook receiver and the deps wired the way
//! the Lambda wires them.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use s1_bridge_sim::{DEFAULT_TOKEN, Sim, SimConfig, WebhookReceiver};
use s1_shared::platform::Adapters;
use s1_shared::s1::Consoles;
use s1_shared::secrets::{LocalTokenProvider, TokenProvider};
use s1_shared::store::*;
use s1_shared::usecase::poll_threats::{PollDeps, PollReport, Selection, run};
use serde_json::Value;

use crate::fast_retry_options;

/// A test webhook secret (not a real one: it only opens the test receiver).
pub const WEBHOOK_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

pub struct PollHarness {
    pub sim: Sim,
    pub receiver: WebhookReceiver,
    pub store: Store,
    pub deps: PollDeps,
    pub env: Arc<Mutex<HashMap<String, String>>>,
    /// Tokens and platform secrets, read from `env`.
    pub tokens: Arc<dyn TokenProvider>,
}

/// A console port reading tokens through `tokens`, with the tests' client options.
pub fn consoles_over(tokens: Arc<dyn TokenProvider>) -> Consoles {
    Consoles::new(reqwest::Client::new(), tokens, fast_retry_options())
}

/// Tenant `id` on `console`, publishing to `receiver_url` with [`WEBHOOK_SECRET`] (from env
/// `WEBHOOK_SECRET`).
pub fn tenant(id: &str, console: &str, receiver_url: &str) -> TenantConfig {
    TenantConfig::for_test(
        id,
        console,
        s1_shared::test_util::generic(receiver_url, "WEBHOOK_SECRET"),
    )
}

impl PollHarness {
    /// Simulator from `config`, tenant `acme` on it, publishing to a fresh receiver.
    pub async fn start(config: SimConfig, table: Arc<dyn ItemTable>) -> Self {
        let sim = Sim::start(config).await.expect("sim");
        let receiver = WebhookReceiver::start(WEBHOOK_SECRET).await.expect("receiver");
        let store = Store::new(table);
        let env = Arc::new(Mutex::new(HashMap::from([
            ("S1_TOKEN_acme".to_owned(), DEFAULT_TOKEN.to_owned()),
            ("WEBHOOK_SECRET".to_owned(), WEBHOOK_SECRET.to_owned()),
        ])));
        let lookup_env = env.clone();
        let tokens: Arc<dyn TokenProvider> = Arc::new(LocalTokenProvider::with_lookup(move |k| {
            lookup_env.lock().unwrap().get(k).cloned()
        }));
        let http = reqwest::Client::new();
        let options = fast_retry_options();
        let deps = PollDeps {
            progress: None,
            store: store.clone(),
            consoles: consoles_over(tokens.clone()),
            platforms: Arc::new(
                Adapters::new(http, tokens.clone(), options.retry).with_allowed_hosts(crate::loopback_hosts()),
            ),
            owner: "test-run".into(),
            concurrency: 4,
            writeback: None,
        };
        store
            .put_tenant(&tenant("acme", &sim.base_url(), &receiver.url()))
            .await
            .expect("tenant");
        Self {
            sim,
            receiver,
            store,
            deps,
            env,
            tokens,
        }
    }

    /// The asset sync wired to the same store, tokens and platform as the poller.
    pub fn asset_deps(&self) -> s1_shared::usecase::sync_assets::AssetDeps {
        s1_shared::usecase::sync_assets::AssetDeps {
            progress: None,
            store: self.store.clone(),
            consoles: self.deps.consoles.clone(),
            platforms: self.deps.platforms.clone(),
            owner: "test".into(),
        }
    }

    /// The token watch wired the same way.
    pub fn token_deps(&self) -> s1_shared::usecase::token_expiry::TokenDeps {
        s1_shared::usecase::token_expiry::TokenDeps {
            store: self.store.clone(),
            consoles: self.deps.consoles.clone(),
            platforms: self.deps.platforms.clone(),
        }
    }

    /// A console of `n` items of `source` alone (threats, or unified alerts none of which is a
    /// threat's twin) on `agents` agents, tenant `acme` reading only that source.
    pub async fn of_source(table: Arc<dyn ItemTable>, source: Source, n: usize, agents: usize) -> Self {
        let unified = source == Source::Unified;
        let h = Self::start(
            SimConfig {
                threats: if unified { 0 } else { n },
                unified_alerts: if unified { n } else { 0 },
                unified_threat_every: 0,
                agents,
                cloud_alerts: 0,
                ..SimConfig::default()
            },
            table,
        )
        .await;
        h.read_only(&[source]).await;
        h
    }

    /// Tenant `acme` reads only `sources`.
    pub async fn read_only(&self, sources: &[Source]) {
        let mut t = tenant("acme", &self.sim.base_url(), &self.receiver.url());
        t.sources = sources.to_vec();
        self.store.put_tenant(&t).await.expect("tenant");
    }

    pub async fn poll(&self) -> PollReport {
        run(&self.deps, &Selection::All, Instant::now() + Duration::from_secs(600))
            .await
            .expect("run starts")
    }

    /// Accepted, de-duplicated events of one type.
    pub fn events(&self, kind: &str) -> Vec<Value> {
        self.receiver
            .events()
            .into_iter()
            .filter(|e| e["type"] == kind)
            .collect()
    }
}

/// Threat ids of events, in order.
pub fn threat_ids(events: &[Value]) -> Vec<String> {
    events
        .iter()
        .map(|e| e["data"]["s1"]["threat_id"].as_str().unwrap_or_default().to_owned())
        .collect()
}

/// Wraps a real table and fails chosen writes, to stand in for a crash at that point.
pub struct FlakyTable {
    inner: Arc<dyn ItemTable>,
    /// (prefix, puts to let through first, puts to fail) for puts whose sort key has the prefix.
    fail_puts: Mutex<Vec<(String, u32, u32)>>,
    /// Fail the next `n` transactional writes of stories.
    fail_put_all: AtomicU32,
    /// Another writer changes every story of a transactional write just before it.
    rival_story_writes: AtomicBool,
    /// While true, transactional writes of stories wait (a page's commit kept in flight).
    held: tokio::sync::watch::Sender<bool>,
}

impl FlakyTable {
    pub fn new(inner: Arc<dyn ItemTable>) -> Arc<Self> {
        Arc::new(Self {
            inner,
            fail_puts: Mutex::new(Vec::new()),
            fail_put_all: AtomicU32::new(0),
            rival_story_writes: AtomicBool::new(false),
            held: tokio::sync::watch::Sender::new(false),
        })
    }

    pub fn fail_puts(&self, sk_prefix: &str, n: u32) {
        self.fail_puts_after(sk_prefix, 0, n);
    }

    pub fn fail_puts_after(&self, sk_prefix: &str, skip: u32, n: u32) {
        self.fail_puts.lock().unwrap().push((sk_prefix.to_owned(), skip, n));
    }

    pub fn fail_story_writes(&self, n: u32) {
        self.fail_put_all.store(n, Ordering::SeqCst);
    }

    /// While `on`, another writer (as the writeback would) changes every story of a transactional
    /// write just before it, so each such write finds its stories changed.
    pub fn rival_story_writes(&self, on: bool) {
        self.rival_story_writes.store(on, Ordering::SeqCst);
    }

    /// While `on`, transactional writes of stories wait (until it is turned off).
    pub fn hold_story_writes(&self, on: bool) {
        self.held.send_replace(on);
    }

    /// Fails the write when a rule for one of its items' sort keys says so.
    fn check_rules(&self, items: &[Item], op: &'static str) -> Result<(), StoreError> {
        let mut rules = self.fail_puts.lock().unwrap();
        for item in items {
            if let Some(rule) = rules
                .iter_mut()
                .find(|(p, _, n)| *n > 0 && item.sk.starts_with(p.as_str()))
            {
                if rule.1 > 0 {
                    rule.1 -= 1;
                } else {
                    rule.2 -= 1;
                    return Err(Self::crash(op));
                }
            }
        }
        Ok(())
    }

    fn crash(op: &'static str) -> StoreError {
        StoreError::Unavailable {
            op,
            message: "injected crash".into(),
        }
    }
}

#[async_trait]
impl ItemTable for FlakyTable {
    async fn get(&self, pk: &str, sk: &str) -> Result<Option<Item>, StoreError> {
        self.inner.get(pk, sk).await
    }
    async fn batch_get(&self, keys: &[(String, String)]) -> Result<Vec<Item>, StoreError> {
        self.inner.batch_get(keys).await
    }
    async fn put(&self, item: &Item, cond: &Cond) -> Result<bool, StoreError> {
        self.check_rules(std::slice::from_ref(item), "put")?;
        self.inner.put(item, cond).await
    }
    async fn batch_put(&self, items: &[Item]) -> Result<(), StoreError> {
        self.inner.batch_put(items).await
    }
    async fn put_all(&self, items: &[(Item, Cond)]) -> Result<Vec<usize>, StoreError> {
        let written: Vec<Item> = items.iter().map(|(i, _)| i.clone()).collect();
        // A checkpoint is written in a transaction with its lease: the rules see every item.
        self.check_rules(&written, "put_all")?;
        let stories = written.iter().any(|i| i.sk.starts_with("STORY#"));
        if stories {
            let _ = self.held.subscribe().wait_for(|held| !*held).await;
        }
        if stories && self.fail_put_all.load(Ordering::SeqCst) > 0 {
            self.fail_put_all.fetch_sub(1, Ordering::SeqCst);
            return Err(Self::crash("put_all"));
        }
        if stories && self.rival_story_writes.load(Ordering::SeqCst) {
            for (mine, _) in items.iter().filter(|(i, _)| i.sk.starts_with("STORY#")) {
                let mut theirs = self
                    .inner
                    .get(&mine.pk, &mine.sk)
                    .await?
                    .unwrap_or_else(|| mine.clone());
                theirs.version += 1;
                self.inner.put(&theirs, &Cond::Always).await?;
            }
        }
        self.inner.put_all(items).await
    }
    fn transaction_limits(&self) -> (usize, usize) {
        self.inner.transaction_limits()
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

/// Distinct threat ids among `events`, and how many events there were.
fn distinct_and_total(events: &[Value]) -> (usize, usize) {
    let ids = threat_ids(events);
    let total = ids.len();
    (ids.into_iter().collect::<std::collections::HashSet<_>>().len(), total)
}

/// 5,000 threats on one agent with one file hash within 90 days (one story's worth of grouping,
/// far past what one stored item can hold): each reaches the platform once, the next poll
/// publishes nothing, and newer threats of the same story still flow.
pub async fn a_5000_threat_story_is_delivered_once(table: Arc<dyn ItemTable>) {
    use s1_shared::usecase::poll_threats::Outcome;
    let h = PollHarness::start(
        SimConfig {
            threats: 1,
            agents: 5,
            cloud_alerts: 0,
            ..SimConfig::default()
        },
        table,
    )
    .await;
    let r = h.poll().await.tenants.remove(0);
    assert_eq!((r.outcome, r.published), (Outcome::Completed, 1), "{r:?}");
    let agent = h.events("threat.created")[0]["data"]["asset"]["external_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let same = s1_bridge_sim::NewThreats {
        count: 5_000,
        agent_uuid: Some(agent),
        sha1: Some("5a".repeat(20)),
        detected_at: Some(time::OffsetDateTime::now_utc() - time::Duration::days(1)),
    };
    h.sim.control().add_threats(&same).await.unwrap();
    let r = h.poll().await.tenants.remove(0);
    assert_eq!(
        (r.outcome, r.new, r.published),
        (Outcome::Completed, 5_000, 5_000),
        "{r:?}"
    );
    let created = h.events("threat.created");
    assert_eq!(distinct_and_total(&created), (5_001, 5_001));
    // The story rolled over as it filled: each part is an alert of its own, opened once.
    let alerts: std::collections::HashSet<&str> = created[1..]
        .iter()
        .map(|e| e["data"]["alert_key"].as_str().unwrap())
        .collect();
    let opened = created[1..]
        .iter()
        .filter(|e| e["data"]["story"]["new_alert"] == true)
        .count();
    assert!(alerts.len() > 1, "one item cannot hold 5,000 members");
    assert_eq!(alerts.len(), opened);
    let again = h.poll().await.tenants.remove(0);
    assert_eq!((again.outcome, again.published), (Outcome::Completed, 0), "{again:?}");

    let newer = h
        .sim
        .control()
        .add_threats(&s1_bridge_sim::NewThreats { count: 3, ..same })
        .await
        .unwrap();
    let r = h.poll().await.tenants.remove(0);
    assert_eq!((r.outcome, r.new, r.published), (Outcome::Completed, 3, 3), "{r:?}");
    let created = h.events("threat.created");
    assert_eq!(distinct_and_total(&created), (5_004, 5_004));
    let last = threat_ids(&created[created.len() - 3..]);
    assert_eq!(last, newer);
}

/// 20,000 threats sharing one `updatedAt` (a bulk console action): each reaches the platform
/// once although the watermark's id set is larger than one stored item, the next poll publishes
/// nothing, and newer threats still flow.
pub async fn twenty_thousand_threats_sharing_one_instant_are_delivered_once(table: Arc<dyn ItemTable>) {
    use s1_shared::usecase::poll_threats::Outcome;
    let h = PollHarness::start(
        SimConfig {
            threats: 20_000,
            same_updated_at: 20_000,
            agents: 300,
            cloud_alerts: 0,
            ..SimConfig::default()
        },
        table,
    )
    .await;
    let r = h.poll().await.tenants.remove(0);
    assert_eq!((r.outcome, r.published), (Outcome::Completed, 20_000), "{r:?}");
    assert_eq!(distinct_and_total(&h.events("threat.created")), (20_000, 20_000));
    let again = h.poll().await.tenants.remove(0);
    assert_eq!(
        (again.outcome, again.published, again.unchanged),
        (Outcome::Completed, 0, 20_000),
        "{again:?}"
    );
    let newer = h
        .sim
        .control()
        .add_threats(&s1_bridge_sim::NewThreats {
            count: 3,
            agent_uuid: None,
            sha1: None,
            detected_at: None,
        })
        .await
        .unwrap();
    let r = h.poll().await.tenants.remove(0);
    assert_eq!((r.outcome, r.published), (Outcome::Completed, 3), "{r:?}");
    let created = h.events("threat.created");
    assert_eq!(distinct_and_total(&created), (20_003, 20_003));
    // Three stories: delivered side by side, in any order.
    let mut last = threat_ids(&created[20_000..]);
    last.sort();
    let mut newer = newer;
    newer.sort();
    assert_eq!(last, newer);
}

/// What a [`Hooked`] platform runs before the n-th publish (0-based) of a run.
pub type PublishHook = Arc<dyn Fn(usize) -> futures_util::future::BoxFuture<'static, ()> + Send + Sync>;

/// The tenant's real platform (over HTTP), with a hook run before each publish: to take a lease
/// away mid-run, or to hang the run as a kill would leave it.
pub struct Hooked {
    inner: Arc<dyn s1_shared::platform::PlatformResolver>,
    hook: PublishHook,
    after: Option<PublishHook>,
    count: Arc<std::sync::atomic::AtomicUsize>,
}

impl Hooked {
    pub fn wrap(inner: Arc<dyn s1_shared::platform::PlatformResolver>, hook: PublishHook) -> Arc<Self> {
        Arc::new(Self {
            inner,
            hook,
            after: None,
            count: Arc::default(),
        })
    }

    /// With a second hook run after the platform answered, before the run hears the answer (to
    /// leave deliveries in flight, the platform having taken them).
    pub fn wrap_both(
        inner: Arc<dyn s1_shared::platform::PlatformResolver>,
        hook: PublishHook,
        after: PublishHook,
    ) -> Arc<Self> {
        Arc::new(Self {
            inner,
            hook,
            after: Some(after),
            count: Arc::default(),
        })
    }
}

struct HookedPlatform {
    inner: Arc<dyn s1_shared::platform::Platform>,
    hook: PublishHook,
    after: Option<PublishHook>,
    count: Arc<std::sync::atomic::AtomicUsize>,
}

#[async_trait]
impl s1_shared::platform::PlatformResolver for Hooked {
    async fn resolve(
        &self,
        tenant: &TenantConfig,
    ) -> Result<Arc<dyn s1_shared::platform::Platform>, s1_shared::platform::PlatformError> {
        Ok(Arc::new(HookedPlatform {
            inner: self.inner.resolve(tenant).await?,
            hook: self.hook.clone(),
            after: self.after.clone(),
            count: self.count.clone(),
        }))
    }
}

#[async_trait]
impl s1_shared::platform::Platform for HookedPlatform {
    fn kind(&self) -> s1_shared::platform::PlatformKind {
        self.inner.kind()
    }
    async fn publish(
        &self,
        event: &s1_shared::platform::ThreatEvent,
    ) -> Result<s1_shared::platform::PublishReceipt, s1_shared::platform::PlatformError> {
        let n = self.count.fetch_add(1, Ordering::SeqCst);
        (self.hook)(n).await;
        let answer = self.inner.publish(event).await;
        if let Some(after) = &self.after {
            after(n).await;
        }
        answer
    }
    async fn notify(
        &self,
        notice: &s1_shared::platform::Notice,
    ) -> Result<s1_shared::platform::PublishReceipt, s1_shared::platform::PlatformError> {
        (self.hook)(self.count.fetch_add(1, Ordering::SeqCst)).await;
        self.inner.notify(notice).await
    }
    fn keeps_assets(&self) -> bool {
        self.inner.keeps_assets()
    }
    fn max_events_per_second(&self) -> Option<f64> {
        self.inner.max_events_per_second()
    }
}

/// A run whose lease lapsed and was taken by another run (as after a long stall) cannot save its
/// stories or move the checkpoint; the next run of the new holder delivers everything once. The
/// tenant reads `source` (threats or unified alerts), 300 of them.
pub async fn a_run_that_lost_its_lease_saves_nothing(table: Arc<dyn ItemTable>, source: Source) {
    use s1_shared::usecase::poll_threats::{LEASE_JOB, Outcome};
    let unified = source == Source::Unified;
    let mut h = PollHarness::start(
        SimConfig {
            threats: if unified { 0 } else { 300 },
            unified_alerts: if unified { 300 } else { 0 },
            unified_threat_every: 0,
            agents: 50,
            cloud_alerts: 0,
            ..SimConfig::default()
        },
        table,
    )
    .await;
    h.read_only(&[source]).await;
    let later = time::OffsetDateTime::now_utc() + time::Duration::minutes(20);
    let store = h.store.clone();
    let intruder = Arc::new(std::sync::Mutex::new(None));
    let taken = intruder.clone();
    h.deps.platforms = Hooked::wrap(
        h.deps.platforms.clone(),
        Arc::new(move |n| {
            let (store, taken) = (store.clone(), taken.clone());
            Box::pin(async move {
                if n == 50 {
                    // Within page 1 of either source (a unified page is 100); twenty
                    // minutes from now our lease has long lapsed: another run takes it.
                    let lease = store
                        .take_lease("acme", LEASE_JOB, "intruder", time::Duration::minutes(5), later)
                        .await
                        .unwrap();
                    assert!(lease.is_some(), "the lapsed lease can be taken");
                    *taken.lock().unwrap() = lease;
                }
            })
        }),
    );
    let r = h.poll().await.tenants.remove(0);
    assert_eq!(r.outcome, Outcome::Failed, "{r:?}");
    assert!(r.error.as_deref().unwrap().contains("lease"), "{r:?}");
    assert_eq!(h.store.get_checkpoint("acme", source.checkpoint()).await.unwrap(), None);
    let stories = h.store.table().query("TENANT#acme", "STORY#", None, 10).await.unwrap();
    assert!(stories.items.is_empty(), "no story was written: {:?}", stories.items);

    // The new holder finishes; then a run delivers everything, each threat once.
    let lease = intruder.lock().unwrap().take().expect("the intruder took the lease");
    assert!(h.store.give_back(&lease).await.unwrap());
    let r = h.poll().await.tenants.remove(0);
    assert_eq!(r.outcome, Outcome::Completed, "{r:?}");
    assert_eq!(distinct_and_total(&h.events("threat.created")), (300, 300));
}

/// A run whose stories another writer changes on every attempt to save them fails with a
/// conflict naming the tenant's stories, and moves no checkpoint; once the other writer stops,
/// the next run saves everything and each threat reached the platform once.
pub async fn stories_changed_on_every_attempt_fail_the_run_as_a_conflict(table: Arc<dyn ItemTable>) {
    use s1_shared::usecase::poll_threats::Outcome;
    let flaky = FlakyTable::new(table);
    let h = PollHarness::start(
        SimConfig {
            threats: 30,
            agents: 10,
            cloud_alerts: 0,
            ..SimConfig::default()
        },
        flaky.clone(),
    )
    .await;
    flaky.rival_story_writes(true);
    let r = h.poll().await.tenants.remove(0);
    assert_eq!(r.outcome, Outcome::Failed, "{r:?}");
    let error = r.error.as_deref().unwrap_or_default();
    assert!(
        error.contains("put_stories lost to concurrent writes on tenant acme's stories"),
        "{error}"
    );
    assert_eq!(h.store.get_checkpoint("acme", "threats").await.unwrap(), None);

    flaky.rival_story_writes(false);
    let r = h.poll().await.tenants.remove(0);
    assert_eq!(r.outcome, Outcome::Completed, "{r:?}");
    assert_eq!(distinct_and_total(&h.events("threat.created")), (30, 30));
    assert!(h.store.get_checkpoint("acme", "threats").await.unwrap().is_some());
}

/// A killed run (here: hung in a publish, then dropped) leaves a lease that lapses within
/// [`LEASE_TTL`], not after the old 15 minutes.
pub async fn a_killed_runs_lease_lapses_quickly(table: Arc<dyn ItemTable>) {
    use s1_shared::usecase::poll_threats::{LEASE_JOB, Outcome};
    let mut h = PollHarness::start(
        SimConfig {
            threats: 20,
            agents: 10,
            cloud_alerts: 0,
            ..SimConfig::default()
        },
        table,
    )
    .await;
    let plain = h.deps.platforms.clone();
    let (hook, mut hung) = hang_hook();
    h.deps.platforms = Hooked::wrap(plain.clone(), hook);
    let killed_at = run_until_hung(
        run(&h.deps, &Selection::All, Instant::now() + Duration::from_secs(600)),
        &mut hung,
    )
    .await;
    assert_lease_lapses_by(&h.store, LEASE_JOB, killed_at).await;
    // The next invocation (another owner) finds the tenant still leased, for now.
    h.deps.platforms = plain;
    h.deps.owner = "next-invocation".into();
    let r = h.poll().await.tenants.remove(0);
    assert_eq!(r.outcome, Outcome::Skipped, "meanwhile it still keeps other runs out");
    assert!(
        h.store
            .take_lease(
                "acme",
                LEASE_JOB,
                "next",
                LEASE_TTL,
                killed_at + LEASE_TTL + time::Duration::seconds(1)
            )
            .await
            .unwrap()
            .is_some(),
        "once it lapsed, the next run takes it"
    );
}

/// A kill while deliveries are in flight (the platform has taken some of them, the run has not
/// heard): the next run repeats only the unfinished page, under the same webhook ids, so the
/// receiver sees every item once and nothing is missed. `h` holds a backlog of `total` items of
/// one source whose pages hold `page` (`total` past two pages).
pub async fn a_kill_with_deliveries_in_flight_repeats_only_its_page(mut h: PollHarness, page: usize, total: usize) {
    use s1_shared::usecase::poll_threats::Outcome;
    let in_flight = s1_shared::store::DEFAULT_MAX_IN_FLIGHT as usize;
    // A fifth into page 2, every delivery hangs once the platform has taken it, until all the
    // slots are held; the process dies there.
    let kill_from = page + page / 5;
    let (plain, mut hung) = hang_once_taken(&mut h, kill_from);
    // Page 1's commit goes on while page 2's deliveries hang; the kill comes once it landed (a
    // small page, as a unified one, could otherwise be killed before it, which is not this
    // scenario).
    let tenant = h.store.get_tenant("acme").await.unwrap().unwrap();
    let checkpoint = tenant.sources[0].checkpoint();
    let page_1_recorded = async {
        while h.store.get_checkpoint("acme", checkpoint).await.unwrap().is_none() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    let what = "the run fills its delivery slots";
    kill_once_taken(&h, &mut hung, in_flight, what, page_1_recorded).await;
    let taken = h.receiver.deliveries().len();
    assert_eq!(taken, kill_from + in_flight, "the platform took the events in flight");

    h.deps.platforms = plain;
    let r = h.poll().await.tenants.remove(0);
    assert_eq!(r.outcome, Outcome::Completed, "{r:?}");
    assert_eq!(
        r.published as usize,
        total - page,
        "page 1 was recorded; the pages after it are sent: {r:?}"
    );
    assert_eq!(distinct_and_total(&h.events("threat.created")), (total, total));
    let repeated = h.receiver.deliveries().iter().filter(|d| d.duplicate).count();
    assert_eq!(
        repeated,
        kill_from + in_flight - page,
        "only page 2's events sent before the kill were repeated, each under its own id"
    );
}

/// Makes every delivery of a run from the `from`-th on (0-based) hang once the platform took it,
/// reported on the receiver returned, as a killed process leaves it; returns the platform as it
/// was too.
pub fn hang_once_taken(
    h: &mut PollHarness,
    from: usize,
) -> (
    Arc<dyn s1_shared::platform::PlatformResolver>,
    tokio::sync::mpsc::UnboundedReceiver<()>,
) {
    use futures_util::FutureExt;
    let (taken, hung) = tokio::sync::mpsc::unbounded_channel::<()>();
    let before: PublishHook = Arc::new(|_| async {}.boxed());
    let after: PublishHook = Arc::new(move |n| {
        let taken = taken.clone();
        async move {
            if n >= from {
                let _ = taken.send(());
                std::future::pending::<()>().await;
            }
        }
        .boxed()
    });
    let plain = h.deps.platforms.clone();
    h.deps.platforms = Hooked::wrap_both(plain.clone(), before, after);
    (plain, hung)
}

/// The receiver's delivery count once it stops moving: a delivery the killed run had sent
/// before the kill may still be landing at the receiver (it runs on, the sender gone).
pub async fn settled_deliveries(h: &PollHarness) -> usize {
    let mut seen = h.receiver.deliveries().len();
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let now = h.receiver.deliveries().len();
        if now == seen {
            return now;
        }
        seen = now;
    }
    panic!("the receiver's deliveries kept coming after the kill: {seen}");
}

/// Runs a poll until `n` deliveries hung (see [`hang_once_taken`]) and then `also` is done (the
/// run going on meanwhile), then drops it: the kill. `what` names the wait in the failure when
/// they never hang.
pub async fn kill_once_taken(
    h: &PollHarness,
    hung: &mut tokio::sync::mpsc::UnboundedReceiver<()>,
    n: usize,
    what: &str,
    also: impl std::future::Future<Output = ()>,
) {
    let run = run(&h.deps, &Selection::All, Instant::now() + Duration::from_secs(600));
    let taken = async {
        for _ in 0..n {
            tokio::time::timeout(Duration::from_secs(60), hung.recv())
                .await
                .unwrap_or_else(|_| panic!("timed out: {what}"))
                .expect("hook alive");
        }
        also.await;
    };
    tokio::select! {
        r = run => panic!("the run ended while its deliveries hung: {r:?}"),
        () = taken => {}
    }
}

/// A publish hook that reports, then hangs forever (as a killed process leaves a run), and the
/// receiver of that report.
pub fn hang_hook() -> (PublishHook, tokio::sync::mpsc::UnboundedReceiver<()>) {
    let (inside, entered) = tokio::sync::mpsc::unbounded_channel::<()>();
    let hook: PublishHook = Arc::new(move |_| {
        let inside = inside.clone();
        Box::pin(async move {
            let _ = inside.send(());
            std::future::pending::<()>().await;
        })
    });
    (hook, entered)
}

/// Runs `work` until its hook reports it hung, then drops it (the kill); returns when.
pub async fn run_until_hung<F>(work: F, hung: &mut tokio::sync::mpsc::UnboundedReceiver<()>) -> time::OffsetDateTime
where
    F: std::future::Future,
    F::Output: std::fmt::Debug,
{
    tokio::select! {
        r = work => panic!("the run cannot finish while it hangs: {r:?}"),
        _ = hung.recv() => {}
    }
    time::OffsetDateTime::now_utc()
}

/// The killed run's lease on tenant `acme`'s `job` lapses at most [`LEASE_TTL`] after `killed_at`.
pub async fn assert_lease_lapses_by(store: &Store, job: &str, killed_at: time::OffsetDateTime) {
    let lease = store
        .table()
        .get("TENANT#acme", &format!("LEASE#{job}"))
        .await
        .unwrap()
        .expect("the killed run's lease is still there");
    let until = lease.until.unwrap();
    let limit = ((killed_at + LEASE_TTL).unix_timestamp_nanos() / 1_000_000) as i64;
    assert!(until <= limit, "lease until {until} ms, beyond {limit} ms");
}

/// Every publish dead letter of tenant `acme`.
pub async fn publish_dead_letters(store: &Store) -> Vec<PublishDeadLetter> {
    store.list_publish_dead("acme", None, 1_000).await.unwrap().items
}

/// Refusals about one event (400, 413, 422) become publish dead letters: listed with the
/// platform's answer, not retried by the next run, re-sent exactly once by the run after a
/// replay is asked for. The tenant reads `source` (threats or unified alerts).
pub async fn a_refused_event_becomes_a_publish_dead_letter_replayed_once(table: Arc<dyn ItemTable>, source: Source) {
    use s1_shared::usecase::poll_threats::Outcome;
    let unified = source == Source::Unified;
    let h = PollHarness::of_source(table, source, 30, 20).await;
    h.receiver.fail_next(1, 422);
    let report = h.poll().await;
    let r = report.tenants[0].clone();
    assert_eq!(
        (r.outcome, r.published, r.failed, r.publish_dead_letters),
        (Outcome::Completed, 29, 1, 1),
        "{r:?}"
    );
    // The dead-letters alarm sees it.
    let emf = &report.emf_lines("poll-threats", time::OffsetDateTime::now_utc())[0];
    assert!(
        emf.contains(r#""DeadLetters":1.0"#) && emf.contains(r#""PublishDeadLetters":1.0"#),
        "{emf}"
    );
    let letters = publish_dead_letters(&h.store).await;
    assert_eq!(letters.len(), 1, "{letters:?}");
    assert_eq!((letters[0].status, letters[0].replay_requested), (422, false));
    assert!(
        !threat_ids(&h.events("threat.created")).contains(&letters[0].id.to_string()),
        "the dead letter is the refused threat"
    );
    let r = h.poll().await.tenants.remove(0);
    assert_eq!((r.published, r.replayed), (0, 0), "not retried by itself: {r:?}");

    // Two more refused, for other reasons about the item.
    if unified {
        let spec = s1_bridge_sim::NewUnifiedAlerts {
            count: 3,
            ..s1_bridge_sim::NewUnifiedAlerts::one(s1_bridge_sim::DetectionSource::Cloud)
        };
        h.sim.control().add_unified_alerts(&spec).await.unwrap();
    } else {
        let spec = s1_bridge_sim::NewThreats {
            count: 3,
            ..s1_bridge_sim::NewThreats::default()
        };
        h.sim.control().add_threats(&spec).await.unwrap();
    }
    h.receiver.fail_next(1, 400);
    h.receiver.fail_next(1, 413);
    let r = h.poll().await.tenants.remove(0);
    assert_eq!(
        (r.outcome, r.published, r.publish_dead_letters),
        (Outcome::Completed, 1, 2),
        "{r:?}"
    );
    let letters = publish_dead_letters(&h.store).await;
    let mut statuses: Vec<u16> = letters.iter().map(|l| l.status).collect();
    statuses.sort_unstable();
    assert_eq!(statuses, [400, 413, 422]);

    // The operator fixed the receiver and replays them: the next run sends each once.
    for l in &letters {
        let queued = h.store.request_publish_replay("acme", &l.id).await.unwrap();
        assert!(queued.replay_requested);
    }
    let err = h
        .store
        .request_publish_replay("acme", "no-such-threat")
        .await
        .unwrap_err();
    assert!(err.to_string().contains("no-such-threat"), "{err}");
    let r = h.poll().await.tenants.remove(0);
    assert_eq!(
        (r.outcome, r.replayed, r.published),
        (Outcome::Completed, 3, 0),
        "{r:?}"
    );
    assert!(publish_dead_letters(&h.store).await.is_empty());
    assert_eq!(distinct_and_total(&h.events("threat.created")), (33, 33));
    let r = h.poll().await.tenants.remove(0);
    assert_eq!((r.replayed, r.published), (0, 0), "{r:?}");
    assert_eq!(h.receiver.deliveries().len(), 33, "nothing sent twice");
}

/// A refused item's next version gets through: its dead letter is retired before the page's
/// stories and checkpoint are written. A crash between the two sends that version again under
/// the same id (its story still says refused), retires nothing twice, and loses nothing. The
/// tenant reads `source` (threats or unified alerts).
pub async fn a_crash_after_a_dead_letter_is_retired_sends_it_again_under_the_same_id(
    table: Arc<dyn ItemTable>,
    source: Source,
) {
    use s1_shared::usecase::poll_threats::Outcome;
    let flaky = FlakyTable::new(table);
    let h = PollHarness::of_source(flaky.clone(), source, 30, 20).await;
    h.receiver.fail_next(1, 422);
    let r = h.poll().await.tenants.remove(0);
    assert_eq!((r.outcome, r.publish_dead_letters), (Outcome::Completed, 1), "{r:?}");
    let letter = publish_dead_letters(&h.store).await.remove(0);
    // Events name a unified alert by its UAM id, its member by `uam:<id>`.
    let id = letter.id.unified_alert_id().unwrap_or(letter.id.as_str()).to_owned();
    let for_it = |h: &PollHarness| {
        h.receiver
            .deliveries()
            .into_iter()
            .filter(|d| d.body["data"]["s1"]["threat_id"] == id.as_str())
            .collect::<Vec<_>>()
    };
    assert!(for_it(&h).is_empty(), "refused: the receiver recorded nothing");

    // Someone changes it in the console; its new version is accepted, the letter retired, and
    // the run dies writing the page's stories and checkpoint.
    crate::guarantees::console_moves_on(&h.sim.control(), source, &id).await;
    flaky.fail_story_writes(1);
    let r = h.poll().await.tenants.remove(0);
    assert_eq!((r.outcome, r.published), (Outcome::Failed, 1), "{r:?}");
    assert!(
        publish_dead_letters(&h.store).await.is_empty(),
        "retired before the crash"
    );

    let r = h.poll().await.tenants.remove(0);
    assert_eq!((r.outcome, r.published, r.failed), (Outcome::Completed, 1, 0), "{r:?}");
    let sent = for_it(&h);
    assert_eq!(sent.len(), 2, "accepted, then repeated: {sent:?}");
    assert_eq!(sent[0].webhook_id, sent[1].webhook_id, "the repeat carries the same id");
    assert!(
        !sent[0].duplicate && sent[1].duplicate,
        "and the receiver recognised it"
    );
    assert!(publish_dead_letters(&h.store).await.is_empty());
    let r = h.poll().await.tenants.remove(0);
    assert_eq!(
        (r.published, r.publish_dead_letters),
        (0, 0),
        "recorded as delivered: {r:?}"
    );
    assert_eq!(for_it(&h).len(), 2);
}
