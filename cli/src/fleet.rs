//! `bench-fleet`: the fleet benchmark of issue 25 (scripts/bench-fleet.sh runs it; not a test).
//!
//! Many tenants on one simulated console (every S1 request answered after `--s1-delay-ms`), the
//! real dispatcher (`usecase::fanout::dispatch`) sending one message per tenant into an
//! in-process queue behind the same `TenantQueue` port as SQS (delays honoured; every send,
//! receive and delete counted as the SQS request it would be), and a bounded pool of
//! `--workers` concurrent "invocations", each handing one message to the real consumer
//! (`usecase::fanout::consume`, what `poll-threats` runs) with the invocation's deadline.
//!
//! `--heavy` tenants see a backlog of `--backlog` threats and publish into a receiver that
//! answers after `--receiver-delay-ms`. Their side runs in a child process at the lowest CPU
//! priority (`nice -n 19`, this binary with `--serve-heavy`): their console, their receiver and
//! their runs (on a store of their own). A heavy tenant's message still takes one of the
//! `--workers` slots until the child says its run ended, as an invocation counts against the
//! event source mapping's `MaximumConcurrency`; but its processor time is not the measured
//! process's, as on Lambda, where every invocation has a processor share of its own. On a shared
//! machine nice 19 is the nearest to that: the heavy side still gets what the measured side
//! leaves idle, and the kernel still gives it a little when both want the cores.
//!
//! Two rounds of one dispatch each: idle tenants only, then the same with the heavy ones; per
//! round the time to dispatch, p50/p99 of "due to poll started" and "due to poll finished" for
//! the idle tenants; and per idle tenant-run (from the first round) S1 requests, store reads and
//! writes (calls on the store port: one per DynamoDB request but for batches over 100 keys),
//! queue requests, CPU ms and the measuring process's peak memory.

use std::collections::{BinaryHeap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use clap::Args;
use s1_bridge_sim::{FaultKind, FaultRule, Sim, SimConfig, WebhookReceiver};
use s1_shared::platform::{Adapters, PlatformConfig, settings};
use s1_shared::queue::{QueueError, SqsEvent, TenantMessage, TenantQueue};
use s1_shared::s1::Consoles;
use s1_shared::secrets::LocalTokenProvider;
use s1_shared::store::{Cond, EmbeddedTable, Item, ItemPage, ItemTable, Store, StoreError, TenantConfig, TokenSource};
use s1_shared::usecase::fanout::{consume, dispatch};
use s1_shared::usecase::poll_threats::{Outcome, PollDeps};
use serde_json::json;

#[derive(Args)]
pub struct FleetArgs {
    /// Idle tenants.
    #[arg(long, default_value_t = 10_000)]
    tenants: usize,
    /// Tenants carrying the backlog (in the second round).
    #[arg(long, default_value_t = 20)]
    heavy: usize,
    /// Threats of the backlog.
    #[arg(long, default_value_t = 100_000)]
    backlog: usize,
    /// Concurrent invocations (the event source mapping's MaximumConcurrency).
    #[arg(long, default_value_t = 100)]
    workers: usize,
    /// The invocation's time limit, seconds (a heavy tenant's run stops there).
    #[arg(long, default_value_t = 60)]
    invocation_s: u64,
    /// The dispatcher's spread of the tenants over the minute, seconds.
    #[arg(long, default_value_t = 50)]
    spread_s: u64,
    /// Seconds from one dispatch to the next (the schedule's minute): a round starts no sooner,
    /// so each tenant's runs are as far apart as deployed.
    #[arg(long, default_value_t = 60)]
    interval_s: u64,
    #[arg(long, default_value_t = 300)]
    s1_delay_ms: u64,
    #[arg(long, default_value_t = 200)]
    receiver_delay_ms: u64,
    /// The heavy tenants' side's niceness (19: the lowest priority; 0 to compare with it
    /// competing as an equal).
    #[arg(long, default_value_t = 19, value_parser = clap::value_parser!(u8).range(0..=19))]
    heavy_nice: u8,
    /// Be the heavy tenants' side (what the benchmark starts as its child; not for hand use).
    #[arg(long, hide = true)]
    serve_heavy: bool,
}

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"; // test-only: opens the local receiver

/// Store port calls, by kind.
#[derive(Default)]
struct Calls {
    reads: AtomicU64,
    writes: AtomicU64,
}

struct Counted {
    inner: Arc<dyn ItemTable>,
    calls: Arc<Calls>,
}

impl Counted {
    fn read(&self) {
        self.calls.reads.fetch_add(1, Ordering::Relaxed);
    }
    fn write(&self) {
        self.calls.writes.fetch_add(1, Ordering::Relaxed);
    }
}

#[async_trait]
impl ItemTable for Counted {
    async fn get(&self, pk: &str, sk: &str) -> Result<Option<Item>, StoreError> {
        self.read();
        self.inner.get(pk, sk).await
    }
    async fn batch_get(&self, keys: &[(String, String)]) -> Result<Vec<Item>, StoreError> {
        self.calls
            .reads
            .fetch_add(keys.len().div_ceil(100).max(1) as u64, Ordering::Relaxed);
        self.inner.batch_get(keys).await
    }
    async fn put(&self, item: &Item, cond: &Cond) -> Result<bool, StoreError> {
        self.write();
        self.inner.put(item, cond).await
    }
    async fn batch_put(&self, items: &[Item]) -> Result<(), StoreError> {
        self.calls
            .writes
            .fetch_add(items.len().div_ceil(25).max(1) as u64, Ordering::Relaxed);
        self.inner.batch_put(items).await
    }
    async fn put_all(&self, items: &[(Item, Cond)]) -> Result<Vec<usize>, StoreError> {
        self.write();
        self.inner.put_all(items).await
    }
    fn transaction_limits(&self) -> (usize, usize) {
        self.inner.transaction_limits()
    }
    async fn delete(&self, pk: &str, sk: &str, cond: &Cond) -> Result<bool, StoreError> {
        self.write();
        self.inner.delete(pk, sk, cond).await
    }
    async fn query(
        &self,
        pk: &str,
        sk_prefix: &str,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<ItemPage, StoreError> {
        self.read();
        self.inner.query(pk, sk_prefix, cursor, limit).await
    }
    async fn query_index(&self, key: &str, cursor: Option<&str>, limit: usize) -> Result<ItemPage, StoreError> {
        self.read();
        self.inner.query_index(key, cursor, limit).await
    }
}

/// A message waiting in the queue: visible from `at`, due (sent plus its delay) then too.
#[derive(PartialEq, Eq)]
pub(crate) struct Waiting {
    pub(crate) at: Instant,
    pub(crate) tenant: String,
}

impl Ord for Waiting {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        other.at.cmp(&self.at).then_with(|| other.tenant.cmp(&self.tenant))
    }
}

impl PartialOrd for Waiting {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

/// The in-process queue: what SQS does for the fan-out (delays, one consumer per message),
/// counting the SQS requests it stands for. The Halo import benchmark (`halo_import.rs`) runs
/// asset syncs and their continuations through it too.
#[derive(Default)]
pub(crate) struct LocalQueue {
    waiting: Mutex<BinaryHeap<Waiting>>,
    pub(crate) requests: AtomicU64,
}

#[async_trait]
impl TenantQueue for LocalQueue {
    async fn send_batch(&self, messages: &[TenantMessage]) -> Result<Vec<String>, QueueError> {
        self.requests.fetch_add(1, Ordering::Relaxed);
        let now = Instant::now();
        let mut w = self.waiting.lock().expect("not poisoned");
        for m in messages {
            w.push(Waiting {
                at: now + Duration::from_secs(u64::from(m.delay_seconds)),
                tenant: m.tenant.clone(),
            });
        }
        Ok(vec![])
    }
}

impl LocalQueue {
    /// The next message visible now (a receive and, once handled, a delete: two requests).
    pub(crate) fn next(&self) -> Option<Waiting> {
        let mut w = self.waiting.lock().expect("not poisoned");
        if w.peek().is_some_and(|m| m.at <= Instant::now()) {
            self.requests.fetch_add(2, Ordering::Relaxed);
            return w.pop();
        }
        None
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.waiting.lock().expect("not poisoned").is_empty()
    }
}

fn tenant(id: &str, console: &str, webhook: &str) -> TenantConfig {
    TenantConfig {
        name: id.into(),
        ..TenantConfig::new(
            id,
            console,
            TokenSource::Env { var: "S1".into() },
            PlatformConfig::Generic(settings::Generic {
                url: webhook.into(),
                secret: TokenSource::Env { var: "HOOK".into() },
                inbound_secrets: vec![],
                inbound_bearer: None,
                assets: None,
                batch: None,
            }),
        )
    }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn heavy_ids(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("heavy{i:02}")).collect()
}

/// A simulated console with `threats`, every request answered after `delay_ms`.
async fn start_console(threats: usize, delay_ms: u64) -> Result<Sim, Box<dyn std::error::Error>> {
    let sim = Sim::start(SimConfig {
        threats,
        agents: 2_000,
        cloud_alerts: 0,
        ..SimConfig::default()
    })
    .await?;
    sim.control()
        .add_fault(&FaultRule::new("*", FaultKind::Slow { millis: delay_ms }, u32::MAX))
        .await?;
    Ok(sim)
}

/// What a poll-threats invocation is given, over `store`.
fn poll_deps(store: Store) -> Result<PollDeps, Box<dyn std::error::Error>> {
    let secrets = HashMap::from([
        ("S1".to_owned(), s1_bridge_sim::DEFAULT_TOKEN.to_owned()),
        ("HOOK".to_owned(), SECRET.to_owned()),
    ]);
    let tokens = Arc::new(LocalTokenProvider::with_lookup(move |k| secrets.get(k).cloned()));
    let (http, options) = crate::bench::bench_http()?;
    let platforms = Arc::new(
        Adapters::new(http.clone(), tokens.clone(), options.retry.clone())
            .with_allowed_hosts(crate::bench::bench_hosts()),
    );
    Ok(PollDeps {
        progress: None,
        store,
        consoles: Consoles::new(http, tokens, options),
        platforms,
        owner: String::new(),
        concurrency: 1,
        writeback: None,
    })
}

/// One invocation of the consumer with one SQS record for `tenant`, as the event source mapping
/// delivers it.
async fn invoke(deps: &PollDeps, tenant: &str, id: u64, deadline: Instant) -> Outcome {
    let mut deps = deps.clone();
    deps.owner = format!("invocation-{id}");
    let event: SqsEvent = serde_json::from_value(json!({"Records": [{
        "messageId": format!("m-{id}"), "body": json!({"tenant": tenant}).to_string(),
        "attributes": {"ApproximateReceiveCount": "1"}, "eventSource": "aws:sqs"}]}))
    .expect("an SQS event");
    let (_, consumed) = consume(&deps, &event, deadline).await;
    consumed.runs.first().map_or(Outcome::Skipped, |r| r.outcome)
}

/// The heavy tenants' side as the measuring process sees it: a child process at nice 19 (this
/// binary with `--serve-heavy`), told one run at a time on its stdin (`{"tenant", "id"}`),
/// answering on its stdout when each ended (`{"done": id, "outcome"}`); its first line names
/// its console and receiver, its last (after its stdin closes) what it did.
struct HeavySide {
    child: Mutex<std::process::Child>,
    stdin: Mutex<Option<std::process::ChildStdin>>,
    waiting: Arc<Mutex<HashMap<u64, tokio::sync::oneshot::Sender<Outcome>>>>,
    last: Mutex<std::sync::mpsc::Receiver<serde_json::Value>>,
    console: String,
    receiver: String,
}

impl HeavySide {
    fn start(args: &FleetArgs) -> Result<Self, Box<dyn std::error::Error>> {
        use std::io::BufRead;
        use std::process::{Command, Stdio};
        let mut child = Command::new("nice")
            .args(["-n", &args.heavy_nice.to_string()])
            .arg(std::env::current_exe()?)
            .args(["bench-fleet", "--serve-heavy"])
            .args([
                "--heavy",
                &args.heavy.to_string(),
                "--backlog",
                &args.backlog.to_string(),
            ])
            .args(["--invocation-s", &args.invocation_s.to_string()])
            .args(["--s1-delay-ms", &args.s1_delay_ms.to_string()])
            .args(["--receiver-delay-ms", &args.receiver_delay_ms.to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot start the heavy side under `nice` (coreutils): {e}"))?;
        let stdin = child.stdin.take().ok_or("the heavy side's stdin")?;
        let mut lines = std::io::BufReader::new(child.stdout.take().ok_or("the heavy side's stdout")?).lines();
        let ready: serde_json::Value = serde_json::from_str(
            &lines
                .next()
                .ok_or("the heavy side ended before it was ready (its error is above)")??,
        )?;
        let waiting: Arc<Mutex<HashMap<u64, tokio::sync::oneshot::Sender<Outcome>>>> = Arc::default();
        let (last_tx, last) = std::sync::mpsc::channel();
        let done = waiting.clone();
        std::thread::spawn(move || {
            for line in lines.map_while(Result::ok) {
                let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) else {
                    eprintln!("heavy side: {line}");
                    continue;
                };
                match v["done"].as_u64() {
                    Some(id) => {
                        let outcome = match v["outcome"].as_str() {
                            Some("completed") => Outcome::Completed,
                            Some("partial") => Outcome::Partial,
                            Some("skipped") => Outcome::Skipped,
                            _ => Outcome::Failed,
                        };
                        if let Some(tx) = done.lock().expect("not poisoned").remove(&id) {
                            let _ = tx.send(outcome);
                        }
                    }
                    None => {
                        let _ = last_tx.send(v);
                    }
                }
            }
        });
        let url = |k: &str| {
            ready[k]
                .as_str()
                .map(str::to_owned)
                .ok_or(format!("the heavy side named no {k}"))
        };
        Ok(Self {
            console: url("console")?,
            receiver: url("receiver")?,
            child: Mutex::new(child),
            stdin: Mutex::new(Some(stdin)),
            waiting,
            last: Mutex::new(last),
        })
    }

    /// Has the child run `tenant`'s message; ends when its run did (a failed run if the child
    /// is gone).
    async fn run(&self, tenant: &str, id: u64) -> Outcome {
        use std::io::Write;
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.waiting.lock().expect("not poisoned").insert(id, tx);
        let sent = self
            .stdin
            .lock()
            .expect("not poisoned")
            .as_mut()
            .is_some_and(|w| writeln!(w, "{}", json!({"tenant": tenant, "id": id})).is_ok());
        if !sent {
            return Outcome::Failed;
        }
        rx.await.unwrap_or(Outcome::Failed)
    }

    /// Closes the child's stdin, waits for its runs to end and returns its last line.
    fn finish(&self) -> Result<serde_json::Value, Box<dyn std::error::Error>> {
        drop(self.stdin.lock().expect("not poisoned").take());
        let last = self
            .last
            .lock()
            .expect("not poisoned")
            .recv_timeout(Duration::from_secs(120))
            .map_err(|_| "the heavy side did not report")?;
        self.child.lock().expect("not poisoned").wait()?;
        Ok(last)
    }
}

/// `--serve-heavy`: the heavy tenants' console, receiver and runs, on a store of their own (their
/// items are theirs alone: the dispatcher reads their configuration from the measuring side's).
async fn serve_heavy(args: &FleetArgs) -> Result<(), Box<dyn std::error::Error>> {
    use std::io::BufRead;
    let console = start_console(args.backlog, args.s1_delay_ms).await?;
    let receiver = WebhookReceiver::start_on(SECRET, "127.0.0.1:0".parse()?, false).await?;
    receiver.stall_next(
        args.heavy * 100 * args.invocation_s as usize,
        Duration::from_millis(args.receiver_delay_ms),
    );
    let store = Store::new(Arc::new(EmbeddedTable::in_memory()?));
    for id in heavy_ids(args.heavy) {
        store
            .put_tenant(&tenant(&id, &console.base_url(), &receiver.url()))
            .await?;
    }
    let deps = poll_deps(store)?;
    println!("{}", json!({"console": console.base_url(), "receiver": receiver.url()}));
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    std::thread::spawn(move || {
        for line in std::io::stdin().lock().lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let limit = Duration::from_secs(args.invocation_s);
    let mut runs = Vec::new();
    while let Some(line) = rx.recv().await {
        #[derive(serde::Deserialize)]
        struct Run {
            tenant: String,
            id: u64,
        }
        let run: Run = serde_json::from_str(&line).map_err(|e| format!("{line:?}: {e}"))?;
        let deps = deps.clone();
        // A thread and runtime per run, as in the measuring process's pool (and the consumer's
        // future is not `Send` for `tokio::spawn`).
        runs.push(std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime");
            let outcome = rt.block_on(invoke(&deps, &run.tenant, run.id, Instant::now() + limit));
            println!("{}", json!({"done": run.id, "outcome": outcome}));
        }));
    }
    tokio::task::spawn_blocking(move || runs.into_iter().for_each(|r| r.join().unwrap_or_default())).await?;
    println!(
        "{}",
        json!({
            "events_delivered": receiver.requests().0,
            "cpu_ms": crate::bench::cpu_ms(),
            "peak_rss_mib": crate::bench::peak_rss_kib().map(|k| k as f64 / 1024.0),
        })
    );
    Ok(())
}

/// One round: a dispatch, then the pool works the queue until every tenant's run ended (the
/// heavy tenants' in the child, each holding its slot meanwhile). Returns the round's figures.
async fn round(
    deps: &PollDeps,
    queue: &Arc<LocalQueue>,
    args: &FleetArgs,
    heavy: Option<&Arc<HeavySide>>,
    n: &Arc<AtomicU64>,
) -> Result<serde_json::Value, Box<dyn std::error::Error>> {
    let dispatched_at = Instant::now();
    let next_round = dispatched_at + Duration::from_secs(args.interval_s);
    let report = dispatch(
        &deps.store,
        queue.as_ref(),
        s1_shared::usecase::fanout::Plan {
            job: s1_shared::usecase::fanout::Job::Poll,
            every_minutes: 1,
            spread: Duration::from_secs(args.spread_s),
        },
        time::OffsetDateTime::now_utc(),
    )
    .await?;
    let dispatch_s = dispatched_at.elapsed().as_secs_f64();
    // Due: when the dispatcher meant the tenant to run (its delay from the dispatch).
    let spread = Duration::from_secs(args.spread_s);
    let heavy_set: std::collections::HashSet<String> = heavy_ids(args.heavy).into_iter().collect();
    let limit = Duration::from_secs(args.invocation_s);
    // The pool: `workers` threads, each with a runtime of its own running one invocation at a
    // time, as Lambda runs each invocation in an instance of its own.
    let workers: Vec<_> = (0..args.workers)
        .map(|_| {
            let (queue, deps, n, heavy_set) = (queue.clone(), deps.clone(), n.clone(), heavy_set.clone());
            let heavy = heavy.cloned();
            std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("a runtime");
                rt.block_on(async move {
                    let mut out: Vec<(String, f64, f64, Outcome)> = Vec::new();
                    loop {
                        let Some(m) = queue.next() else {
                            if queue.is_empty() {
                                break;
                            }
                            tokio::time::sleep(Duration::from_millis(20)).await;
                            continue;
                        };
                        let id = n.fetch_add(1, Ordering::Relaxed);
                        let due_at = dispatched_at
                            + Duration::from_secs(u64::from(s1_shared::usecase::fanout::delay_of(&m.tenant, spread)));
                        let started = Instant::now();
                        let outcome = match &heavy {
                            Some(side) if heavy_set.contains(&m.tenant) => side.run(&m.tenant, id).await,
                            _ => invoke(&deps, &m.tenant, id, started + limit).await,
                        };
                        out.push((
                            m.tenant,
                            started.saturating_duration_since(due_at).as_secs_f64(),
                            Instant::now().saturating_duration_since(due_at).as_secs_f64(),
                            outcome,
                        ));
                    }
                    out
                })
            })
        })
        .collect();
    let times: Vec<(String, f64, f64, Outcome)> =
        tokio::task::spawn_blocking(move || workers.into_iter().flat_map(|w| w.join().unwrap_or_default()).collect())
            .await?;
    let round_s = dispatched_at.elapsed().as_secs_f64();
    tokio::time::sleep_until(next_round.into()).await;
    let (heavy_runs, idle): (Vec<_>, Vec<_>) = times.iter().partition(|t| heavy_set.contains(&t.0));
    let mut started: Vec<f64> = idle.iter().map(|t| t.1).collect();
    let mut finished: Vec<f64> = idle.iter().map(|t| t.2).collect();
    started.sort_by(f64::total_cmp);
    finished.sort_by(f64::total_cmp);
    let count = |runs: &[&(String, f64, f64, Outcome)], o: Outcome| runs.iter().filter(|t| t.3 == o).count();
    Ok(json!({
        "tenants": report.tenants,
        "sent": report.sent,
        "dispatch_s": dispatch_s,
        "idle_runs": idle.len(),
        "idle_failed": count(&idle, Outcome::Failed),
        "idle_skipped": count(&idle, Outcome::Skipped),
        "heavy_runs": heavy_runs.len(),
        "heavy_partial": count(&heavy_runs, Outcome::Partial),
        "heavy_failed": count(&heavy_runs, Outcome::Failed),
        "due_to_started_p50_s": percentile(&started, 0.5),
        "due_to_started_p99_s": percentile(&started, 0.99),
        "due_to_finished_p50_s": percentile(&finished, 0.5),
        "due_to_finished_p99_s": percentile(&finished, 0.99),
        "round_s": round_s,
    }))
}

pub async fn run_fleet_bench(args: FleetArgs) -> Result<(), Box<dyn std::error::Error>> {
    if args.serve_heavy {
        return serve_heavy(&args).await;
    }
    // Started first, so its set-up (a 100,000-threat console) is over before anything is
    // measured; idle until the second round.
    let heavy_side = Arc::new(HeavySide::start(&args)?);
    let sim = start_console(0, args.s1_delay_ms).await?;
    let receiver = WebhookReceiver::start_on(SECRET, "127.0.0.1:0".parse()?, false).await?;
    let calls = Arc::new(Calls::default());
    let table: Arc<dyn ItemTable> = Arc::new(Counted {
        inner: Arc::new(EmbeddedTable::in_memory()?),
        calls: calls.clone(),
    });
    let store = Store::new(table);
    let ids: Vec<String> = (0..args.tenants).map(|i| format!("t{i:05}")).collect();
    for id in &ids {
        store.put_tenant(&tenant(id, &sim.base_url(), &receiver.url())).await?;
    }
    let deps = poll_deps(store.clone())?;
    let queue = Arc::new(LocalQueue::default());
    let n = Arc::new(AtomicU64::new(0));
    // A first round that takes every tenant from nothing to idle (its first run writes its
    // checkpoint and status), not measured.
    round(&deps, &queue, &args, None, &n).await?;

    // Round 1: idle tenants only.
    let reads = calls.reads.load(Ordering::Relaxed);
    let writes = calls.writes.load(Ordering::Relaxed);
    let queued = queue.requests.load(Ordering::Relaxed);
    let s1_before = sim.control().requests().await?.len();
    let cpu = crate::bench::cpu_ms();
    let idle_only = round(&deps, &queue, &args, None, &n).await?;
    let cpu = crate::bench::cpu_ms().zip(cpu).map(|(a, b)| a - b);
    let runs = idle_only["idle_runs"].as_u64().unwrap_or(1).max(1) as f64;
    let s1 = (sim.control().requests().await?.len() - s1_before) as f64;
    let per_run = json!({
        "s1_requests": s1 / runs,
        "store_reads": (calls.reads.load(Ordering::Relaxed) - reads) as f64 / runs,
        "store_writes": (calls.writes.load(Ordering::Relaxed) - writes) as f64 / runs,
        "queue_requests": (queue.requests.load(Ordering::Relaxed) - queued) as f64 / runs,
        "cpu_ms": cpu.map(|c| c / runs),
    });

    // Round 2: the same with the heavy tenants dispatched too (their configuration here, for
    // the dispatcher; their runs in the child).
    for id in heavy_ids(args.heavy) {
        store
            .put_tenant(&tenant(&id, &heavy_side.console, &heavy_side.receiver))
            .await?;
    }
    let with_heavy = round(&deps, &queue, &args, Some(&heavy_side), &n).await?;
    let heavy_report = heavy_side.finish()?;
    println!(
        "{}",
        json!({
            "tenants": args.tenants, "heavy": args.heavy, "backlog": args.backlog,
            "workers": args.workers, "invocation_s": args.invocation_s,
            "idle_only": idle_only, "with_heavy": with_heavy, "per_idle_run": per_run,
            "heavy_side": heavy_report,
            "peak_rss_mib": crate::bench::peak_rss_kib().map(|k| k as f64 / 1024.0),
            "queue": "in-process (the TenantQueue port; SendMessageBatch, ReceiveMessage, DeleteMessage counted as SQS would bill them)",
            "store": "embedded (in memory), calls on the store port counted; the heavy tenants' runs on the child's own",
            "heavy_process": format!("a child at nice {}: the heavy tenants' console, receiver and runs", args.heavy_nice),
        })
    );
    Ok(())
}
