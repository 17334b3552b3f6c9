//! One S1 token's rate budget shared by every process through the state table (issue 25, item
//! 2): two "processes" (two console ports, each with its own store handle on one table: the
//! embedded store, and DynamoDB Local started by scripts/test.sh) calling S1 with one token
//! together stay under the token's budget, counted at the simulator; two tokens do not share
//! one; the token never reaches the table; and a console throttling one token does not slow a
//! tenant on another.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::future::join_all;
use s1_bridge_sim::{DEFAULT_TOKEN, FaultKind, FaultRule, Sim, SimConfig, TokenSpec};
use s1_shared::ApiToken;
use s1_shared::s1::{ClientOptions, Console, Consoles, RateLimits};
use s1_shared::secrets::LocalTokenProvider;
use s1_shared::store::{EmbeddedTable, ItemTable, Store};
use s1_shared::tenant::SecretRef;

/// `GET /user`'s rate per process in these tests: its shared budget is then 200 per 10 s, cut
/// into 1 s slices of `200 x 9/10 / 11` = 16 requests.
const RATE: u32 = 20;
const PER_SLICE: usize = 16;
/// How long each test hammers S1.
const RUN: Duration = Duration::from_secs(3);

fn options() -> ClientOptions {
    ClientOptions {
        rate_limits: RateLimits {
            user: RATE,
            ..RateLimits::default()
        },
        ..integration_tests::fast_retry_options()
    }
}

/// One process's console port, sharing S1 budgets through `store`.
fn process(store: &Store) -> Consoles {
    let tokens = Arc::new(LocalTokenProvider::with_lookup(|_| None));
    Consoles::new(reqwest::Client::new(), tokens, options()).sharing_budgets(Arc::new(store.clone()))
}

/// Calls `GET /user` on `sim` with `token` through `consoles` for [`RUN`]: how many succeeded.
async fn hammer(consoles: &Consoles, sim: &Sim, tenant: &str, token: &str) -> usize {
    let source = SecretRef::Env { var: "UNUSED".into() };
    let console = Console {
        tenant,
        url: &sim.base_url(),
        token: &source,
    };
    let client = consoles.client(console, &ApiToken::new(token)).unwrap();
    let started = Instant::now();
    let mut ok = 0;
    while started.elapsed() < RUN {
        ok += usize::from(client.user().await.is_ok());
    }
    ok
}

async fn user_requests(sim: &Sim) -> Vec<u64> {
    let log = sim.control().requests().await.unwrap();
    log.iter().filter(|r| r.path == "/user").map(|r| r.at_ms).collect()
}

/// The most a span of `span_ms` can hold from the table: the slices it overlaps (one more than
/// its whole seconds, rounded up), plus each process's one request on its allowance.
fn bound(span_ms: u64, processes: usize) -> usize {
    PER_SLICE * (span_ms.div_ceil(1000) as usize + 1) + processes
}

/// From the first request to the last, at the simulator.
fn span(at: &[u64]) -> u64 {
    at.iter().max().unwrap_or(&0) - at.iter().min().unwrap_or(&0)
}

async fn two_processes_stay_under_one_tokens_budget(stores: [Store; 2]) {
    let sim = Sim::start(SimConfig::default()).await.unwrap();
    let ports: Vec<Consoles> = stores.iter().map(process).collect();
    let sim = &sim;
    // Each process alone would send RATE a second; two, without the shared budget, twice that.
    let done = join_all(
        ports
            .iter()
            .enumerate()
            .map(|(n, c)| async move { hammer(c, sim, &format!("tenant-{n}"), DEFAULT_TOKEN).await }),
    )
    .await;
    let at = user_requests(sim).await;
    let mut per_second = std::collections::BTreeMap::<u64, usize>::new();
    for ms in &at {
        *per_second.entry(ms / 1000).or_default() += 1;
    }
    eprintln!("one token, two processes: {done:?} done, per second at the simulator {per_second:?}");
    let most = bound(span(&at), 2);
    assert!(
        at.len() <= most,
        "{} requests in {} ms with one token (at most {most}): {per_second:?}",
        at.len(),
        span(&at)
    );
    // Every second of the simulator's clock overlaps at most two slices.
    assert!(per_second.values().all(|&n| n <= 2 * PER_SLICE + 2), "{per_second:?}");
    assert!(
        done.iter().all(|&n| n > 0),
        "both processes got requests through: {done:?}"
    );
}

async fn two_tokens_do_not_share(stores: [Store; 2]) {
    let sim = Sim::start(SimConfig::default()).await.unwrap();
    sim.control()
        .add_token(&TokenSpec::tenant("second-token", 30))
        .await
        .unwrap();
    let ports: Vec<Consoles> = stores.iter().map(process).collect();
    let sim = &sim;
    let done = join_all(
        ports
            .iter()
            .zip([DEFAULT_TOKEN, "second-token"])
            .enumerate()
            .map(|(n, (c, token))| async move { hammer(c, sim, &format!("tenant-{n}"), token).await }),
    )
    .await;
    let at = user_requests(sim).await;
    eprintln!("two tokens: {done:?} done, {} at the simulator", at.len());
    let one_token = bound(span(&at), 2);
    assert!(
        at.len() > one_token,
        "two tokens sent {} requests in {} ms, no more than one token's budget allows ({one_token}): they share it",
        at.len(),
        span(&at)
    );
}

/// Every stored item's bytes, as the backend holds them.
async fn dynamodb_items(config: &aws_config::SdkConfig, table: &str) -> String {
    let scan = aws_sdk_dynamodb::Client::new(config)
        .scan()
        .table_name(table)
        .send()
        .await
        .unwrap();
    format!("{:?}", scan.items())
}

fn assert_no_token(stored: &str, budgets: usize) {
    assert!(!stored.contains(DEFAULT_TOKEN), "the token is in the table");
    assert!(!stored.contains("second-token"), "the token is in the table");
    assert!(
        stored.matches("BUDGET#s1:").count() >= budgets,
        "the budgets' counters are stored: {stored}"
    );
}

async fn dynamodb() -> ([Store; 2], aws_config::SdkConfig, String) {
    integration_tests::dynamodb_twins("s1bridge-s1budget").await
}

/// Two handles on one redb file, as two processes would (one at a time: redb locks the file,
/// so the second is the first's table shared).
fn embedded(path: &Path) -> [Store; 2] {
    let table: Arc<dyn ItemTable> = Arc::new(EmbeddedTable::open(path).unwrap());
    [Store::new(table.clone()), Store::new(table)]
}

#[tokio::test(flavor = "multi_thread")]
async fn two_processes_share_one_s1_tokens_budget_embedded() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.redb");
    let stores = embedded(&path);
    two_processes_stay_under_one_tokens_budget(stores.clone()).await;
    two_tokens_do_not_share(stores).await;
    assert_no_token(&String::from_utf8_lossy(&std::fs::read(&path).unwrap()), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn two_processes_share_one_s1_tokens_budget_dynamodb() {
    let (stores, config, table) = dynamodb().await;
    two_processes_stay_under_one_tokens_budget(stores.clone()).await;
    two_tokens_do_not_share(stores).await;
    assert_no_token(&dynamodb_items(&config, &table).await, 3);
}

/// A console that throttles one tenant's token (429 on every call) while a tenant on another
/// token, in the same process and table, keeps its pace.
#[tokio::test(flavor = "multi_thread")]
async fn a_throttled_s1_token_does_not_slow_another_tenants() {
    let table: Arc<dyn ItemTable> = Arc::new(EmbeddedTable::in_memory().unwrap());
    let consoles = process(&Store::new(table));
    let throttled = Sim::start(SimConfig::default()).await.unwrap();
    throttled
        .control()
        .add_fault(&FaultRule {
            method: None,
            path: "/user".into(),
            after: 0,
            count: 10_000,
            fault: FaultKind::Status {
                status: 429,
                retry_after: Some("1".into()),
                code: None,
            },
        })
        .await
        .unwrap();
    let other = Sim::start(SimConfig::default()).await.unwrap();
    other
        .control()
        .add_token(&TokenSpec::tenant("second-token", 30))
        .await
        .unwrap();
    let source = SecretRef::Env { var: "UNUSED".into() };
    let slow = consoles
        .client(
            Console {
                tenant: "throttled",
                url: &throttled.base_url(),
                token: &source,
            },
            &ApiToken::new(DEFAULT_TOKEN),
        )
        .unwrap();
    let fast = consoles
        .client(
            Console {
                tenant: "other",
                url: &other.base_url(),
                token: &source,
            },
            &ApiToken::new("second-token"),
        )
        .unwrap();
    let hammer = async {
        let calls = join_all((0..3).map(|_| slow.user())).await;
        calls.iter().filter(|c| c.is_err()).count()
    };
    let timed = async {
        let started = Instant::now();
        for _ in 0..PER_SLICE {
            fast.user().await.unwrap();
        }
        started.elapsed()
    };
    let (refused, took) = tokio::join!(hammer, timed);
    assert_eq!(refused, 3, "the throttled token's calls ran out of retries");
    // 16 calls at 20 a second, within one or two slices of the other token's budget.
    assert!(took < Duration::from_secs(3), "the other tenant took {took:?}");
}
