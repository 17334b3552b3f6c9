//! One Halo instance's request budget shared by every process through the state table (issue 25,
//! item 2): two "processes" (two clients, each with its own store handle on one table: the
//! embedded store, and DynamoDB Local started by scripts/test.sh) hammering one fake Halo
//! together stay under its limit, counted at the fake (which answers 429 past it); and a Halo
//! that throttles one tenant does not slow another tenant's instance.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::future::join_all;
use s1_bridge_sim::{FakeHalo, HaloConfig};
use s1_shared::platform::halo::{HaloAuth, HaloClient};
use s1_shared::s1::RetryPolicy;
use s1_shared::store::{EmbeddedTable, ItemTable, Store};
use secrecy::SecretString;

/// The fake's limit: 40 requests per rolling 2 s.
const LIMIT: u32 = 40;
const WINDOW: Duration = Duration::from_secs(2);

fn client(halo: &FakeHalo, store: Store, limit: (u32, Duration)) -> HaloClient {
    let allowed = integration_tests::loopback_hosts();
    let http = s1_shared::net::outbound_client(Duration::from_secs(2), Duration::from_secs(10), &allowed).unwrap();
    let auth = HaloAuth {
        base_url: halo.base_url(),
        tenant: halo.config().tenant.clone(),
        client_id: SecretString::from(halo.config().client_id.clone()),
        client_secret: SecretString::from(halo.config().client_secret.clone()),
        scope: "all".into(),
        token_url: None,
    };
    // Few retries: a process that overran the limit shows it as failed requests too.
    let retry = RetryPolicy {
        max_attempts: 2,
        min_delay: Duration::from_millis(10),
        max_delay: Duration::from_millis(50),
        max_retry_after: Duration::from_millis(200),
    };
    HaloClient::new(http, auth, &allowed, limit, retry)
        .unwrap()
        .with_shared_budget(store, limit)
}

async fn two_processes_stay_under_one_halos_limit(stores: [Store; 2]) {
    let halo = FakeHalo::start(HaloConfig {
        rate_limit: LIMIT as usize,
        rate_window: WINDOW,
        ..HaloConfig::default()
    })
    .await
    .unwrap();
    let clients: Vec<HaloClient> = stores.into_iter().map(|s| client(&halo, s, (LIMIT, WINDOW))).collect();
    // Each process alone would keep to 90% of the limit; together, without the shared budget,
    // they would send nearly twice that.
    let results = join_all(clients.iter().map(|c| async move {
        let mut ok = 0;
        for _ in 0..30 {
            ok += usize::from(c.get("Tickets", &[("count", "1".into())]).await.is_ok());
        }
        ok
    }))
    .await;
    assert_eq!(halo.stats().rate_limited, 0, "the fake answered 429: {results:?}");
    assert_eq!(results, [30, 30]);
}

async fn a_throttled_instance_does_not_slow_another(store: Store) {
    let throttled = FakeHalo::start(HaloConfig {
        rate_limit: 2,
        rate_window: Duration::from_secs(5),
        ..HaloConfig::default()
    })
    .await
    .unwrap();
    let other = FakeHalo::start(HaloConfig::default()).await.unwrap();
    let budget = (100_000, Duration::from_secs(300));
    let slow = client(&throttled, store.clone(), budget);
    let fast = client(&other, store, budget);
    let hammer = async {
        for _ in 0..10 {
            let _ = slow.get("Tickets", &[]).await;
        }
    };
    let timed = async {
        let started = Instant::now();
        for _ in 0..20 {
            fast.get("Tickets", &[]).await.unwrap();
        }
        started.elapsed()
    };
    let ((), took) = tokio::join!(hammer, timed);
    assert!(
        throttled.stats().rate_limited > 0,
        "the throttled instance answered 429s"
    );
    assert!(took < Duration::from_secs(3), "the other instance took {took:?}");
}

fn embedded() -> [Store; 2] {
    let table: Arc<dyn ItemTable> = Arc::new(EmbeddedTable::in_memory().unwrap());
    [Store::new(table.clone()), Store::new(table)]
}

/// Two DynamoDB clients (as two processes have) on one fresh table.
async fn dynamodb() -> [Store; 2] {
    integration_tests::dynamodb_twins("s1bridge-budget").await.0
}

#[tokio::test(flavor = "multi_thread")]
async fn two_processes_share_one_halo_budget_embedded() {
    two_processes_stay_under_one_halos_limit(embedded()).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn two_processes_share_one_halo_budget_dynamodb() {
    two_processes_stay_under_one_halos_limit(dynamodb().await).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_throttled_halo_does_not_slow_another_tenants_embedded() {
    let [store, _] = embedded();
    a_throttled_instance_does_not_slow_another(store).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_throttled_halo_does_not_slow_another_tenants_dynamodb() {
    let [store, _] = dynamodb().await;
    a_throttled_instance_does_not_slow_another(store).await;
}
