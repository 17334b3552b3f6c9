//! A seeded chaos run of the poller: rounds of S1 faults (429, 5xx, slow, truncated, reset),
//! receiver faults (500s, deliveries taken and answered too late), kills of the run at random
//! moments (also the moment the receiver takes a delivery, before it answers), and the console
//! changing threats between and during rounds; then clean polls until one publishes nothing.
//! Against S1's final state it checks, per tenant (one plain, one batched generic receiver): the
//! receiver's last word on every threat is S1's latest status and verdict, every STAR alert
//! arrived, every delivery was signed, and no threat version came under two webhook ids.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::FutureExt;
use s1_bridge_sim::{DEFAULT_TOKEN, FaultKind, FaultRule, NewThreats, SimConfig, SimControl, WebhookReceiver};
use s1_shared::platform::{Adapters, PlatformResolver};
use s1_shared::store::ItemTable;
use s1_shared::usecase::poll_threats::{Outcome, PollReport, Selection, run};
use serde_json::Value;

use crate::guarantees::ids_per_version;
use crate::poll::{Hooked, PollHarness, PublishHook, WEBHOOK_SECRET, tenant};
use crate::{fast_retry_options, loopback_hosts};

/// The seed: `CHAOS_SEED` when set (to replay a failure), else a fresh one.
pub fn seed() -> u64 {
    std::env::var("CHAOS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| time::OffsetDateTime::now_utc().unix_timestamp_nanos() as u64 % 1_000_000_007)
}

const THREATS: usize = 2_000;
const ALERTS: usize = 300;
const ROUNDS: usize = 30;

/// One S1 fault, drawn.
fn s1_fault(rng: &mut fastrand::Rng) -> FaultRule {
    let fault = match rng.u8(..6) {
        0 => FaultKind::Status {
            status: 429,
            retry_after: Some("1".into()),
            code: None,
        },
        1 => FaultKind::Status {
            status: [500, 502, 503][rng.usize(..3)],
            retry_after: None,
            code: None,
        },
        2 => FaultKind::Slow {
            millis: rng.u64(200..1_500),
        },
        3 => FaultKind::Truncate,
        4 => FaultKind::Reset,
        _ => FaultKind::Status {
            status: 429,
            retry_after: None,
            code: None,
        },
    };
    let path = if rng.bool() {
        "/threats"
    } else {
        "/cloud-detection/alerts"
    };
    FaultRule::new(path, fault, rng.u32(1..4))
        .method("GET")
        .after(rng.u32(0..4))
}

/// The console changes `n` random threats as an analyst would: a status (sometimes back to
/// unresolved), a verdict, or both.
async fn console_changes(control: &SimControl, rng: &mut fastrand::Rng, n: usize) {
    const STATUSES: [&str; 3] = ["unresolved", "in_progress", "resolved"];
    const VERDICTS: [&str; 4] = ["undefined", "true_positive", "false_positive", "suspicious"];
    for _ in 0..n {
        let id = (1_500_000_000_000_000_001u64 + rng.u64(..THREATS as u64)).to_string();
        let status = rng.bool().then(|| STATUSES[rng.usize(..3)]);
        let verdict = (status.is_none() || rng.bool()).then(|| VERDICTS[rng.usize(..4)]);
        // A threat added by a round may not exist under this id range: ignored.
        let _ = control.console_update(&id, status, verdict).await;
    }
}

/// Runs the chaos with `seed` on `table`; panics naming the seed on any broken guarantee.
pub async fn chaos(seed: u64, table: Arc<dyn ItemTable>) {
    println!("chaos seed {seed} (CHAOS_SEED={seed} replays it)");
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut h = PollHarness::start(
        SimConfig {
            threats: THREATS,
            agents: 80,
            cloud_alerts: ALERTS,
            seed,
            ..SimConfig::default()
        },
        table,
    )
    .await;
    let control = h.sim.control();
    // Tenant acme (single deliveries, from the harness) and tenant beta (batched), both polling
    // STAR alerts too, each with its own receiver.
    let batched = WebhookReceiver::start(WEBHOOK_SECRET).await.unwrap();
    let mut acme = tenant("acme", &h.sim.base_url(), &h.receiver.url());
    acme.poll_cloud_alerts = true;
    let mut beta = tenant("beta", &h.sim.base_url(), &batched.url());
    beta.poll_cloud_alerts = true;
    beta.generic_mut().batch = Some(s1_shared::platform::Batch::default());
    h.store.put_tenant(&acme).await.unwrap();
    h.store.put_tenant(&beta).await.unwrap();
    h.env
        .lock()
        .unwrap()
        .insert("S1_TOKEN_beta".into(), DEFAULT_TOKEN.into());
    let receivers = [("acme", &h.receiver), ("beta", &batched)];

    // Deliveries time out after 800 ms, so a receiver that takes one and answers late is a lost
    // answer, not a slow one.
    let impatient = reqwest::Client::builder()
        .timeout(Duration::from_millis(800))
        .build()
        .unwrap();
    let plain: Arc<dyn PlatformResolver> = Arc::new(
        Adapters::new(impatient, h.tokens.clone(), fast_retry_options().retry).with_allowed_hosts(loopback_hosts()),
    );

    for round in 0..ROUNDS {
        for _ in 0..rng.usize(1..4) {
            control.add_fault(&s1_fault(&mut rng)).await.unwrap();
        }
        for (_, r) in receivers {
            match rng.u8(..3) {
                0 => r.fail_next(rng.usize(1..30), [500, 503, 429][rng.usize(..3)]),
                1 => r.stall_next(rng.usize(1..5), Duration::from_millis(1_200)),
                _ => {}
            }
        }
        if rng.u8(..3) == 0 {
            let added = NewThreats {
                count: rng.usize(1..60),
                agent_uuid: None,
                sha1: None,
                detected_at: None,
            };
            control.add_threats(&added).await.unwrap();
        }
        // The run: killed at a random moment, or the moment the receiver takes its n-th
        // delivery (before the run hears the answer), or left to finish.
        let kill = rng.u8(..3);
        let kill_at_delivery = rng.usize(..if round == 0 { 2_000 } else { 40 });
        let kill_after = Duration::from_millis(rng.u64(5..800));
        let (taken, mut hung) = tokio::sync::mpsc::unbounded_channel::<()>();
        let after: PublishHook = Arc::new(move |n| {
            let taken = taken.clone();
            async move {
                if kill == 0 && n == kill_at_delivery {
                    let _ = taken.send(());
                    std::future::pending::<()>().await;
                }
            }
            .boxed()
        });
        let before: PublishHook = Arc::new(|_| async {}.boxed());
        h.deps.platforms = Hooked::wrap_both(plain.clone(), before, after);
        // The console changes while the run is under way.
        let during = {
            let control = h.sim.control();
            let mut rng = fastrand::Rng::with_seed(seed ^ round as u64);
            tokio::spawn(async move {
                for _ in 0..5 {
                    tokio::time::sleep(Duration::from_millis(rng.u64(20..400))).await;
                    console_changes(&control, &mut rng, 4).await;
                }
            })
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        let outcome = tokio::select! {
            r = run(&h.deps, &Selection::All, deadline) => format!("{:?}", summary(&r.unwrap())),
            _ = hung.recv() => "killed as the receiver took a delivery".to_owned(),
            _ = tokio::time::sleep(kill_after), if kill == 1 => format!("killed after {kill_after:?}"),
        };
        println!("round {round}: {outcome}");
        during.await.unwrap();
        let n = rng.usize(5..40);
        console_changes(&control, &mut rng, n).await;
        control.clear_faults().await.unwrap();
        for (_, r) in receivers {
            r.recover();
        }
    }

    // No more faults: polls until one publishes nothing.
    h.deps.platforms = plain;
    let mut quiet = false;
    for _ in 0..30 {
        let report = run(&h.deps, &Selection::All, Instant::now() + Duration::from_secs(60))
            .await
            .unwrap();
        println!("clean poll: {:?}", summary(&report));
        if report
            .tenants
            .iter()
            .all(|t| t.outcome == Outcome::Completed && t.published == 0)
        {
            quiet = true;
            break;
        }
    }
    assert!(quiet, "seed {seed}: the polls never settled");
    let threats = s1_items(&h, "threats").await;
    let alerts = s1_items(&h, "cloud-detection/alerts").await;
    for (name, receiver) in receivers {
        check(seed, name, receiver, &threats, &alerts);
        let versions = ids_per_version(receiver);
        let doubled: Vec<_> = versions.iter().filter(|(_, ids)| ids.len() > 1).collect();
        assert!(
            doubled.is_empty(),
            "seed {seed}, tenant {name}: threat versions under two webhook ids: {doubled:?}"
        );
    }
}

fn summary(r: &PollReport) -> Vec<(String, Outcome, u64, Option<String>)> {
    r.tenants
        .iter()
        .map(|t| (t.tenant.clone(), t.outcome, t.published, t.error.clone()))
        .collect()
}

/// Every item of an S1 list, read straight from the simulator.
async fn s1_items(h: &PollHarness, path: &str) -> Vec<Value> {
    let mut out = Vec::new();
    let mut cursor: Option<String> = None;
    let http = reqwest::Client::new();
    loop {
        let mut url = format!("{}/web/api/v2.1/{path}?limit=1000", h.sim.base_url());
        if let Some(c) = &cursor {
            url.push_str(&format!("&cursor={c}"));
        }
        let page: Value = http
            .get(&url)
            .header("Authorization", format!("ApiToken {DEFAULT_TOKEN}"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        out.extend(page["data"].as_array().unwrap().iter().cloned());
        match page["pagination"]["nextCursor"].as_str() {
            Some(c) if !c.is_empty() && c != "null" => cursor = Some(c.to_owned()),
            _ => return out,
        }
    }
}

/// The receiver's last word on every threat is S1's latest status and verdict; every STAR alert
/// arrived; every delivery was signed.
fn check(seed: u64, name: &str, receiver: &WebhookReceiver, threats: &[Value], alerts: &[Value]) {
    assert_eq!(
        receiver.refused_signatures(),
        0,
        "seed {seed}, tenant {name}: unsigned deliveries"
    );
    let mut last: HashMap<String, Value> = HashMap::new();
    for d in receiver.deliveries() {
        let id = d.body["data"]["s1"]["threat_id"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        last.insert(id, d.body);
    }
    let mut wrong = Vec::new();
    for t in threats {
        let id = t["id"].as_str().unwrap();
        let info = &t["threatInfo"];
        let want = (
            info["incidentStatus"].as_str().unwrap_or_default(),
            info["analystVerdict"].as_str().unwrap_or_default(),
        );
        match last.get(id) {
            None => wrong.push(format!("{id}: never told")),
            Some(e) => {
                let told = (
                    e["data"]["s1"]["status"].as_str().unwrap_or_default(),
                    e["data"]["s1"]["verdict"].as_str().unwrap_or_default(),
                );
                if told != want {
                    wrong.push(format!("{id}: told {told:?}, S1 holds {want:?}"));
                }
            }
        }
    }
    for a in alerts {
        let id = a["alertInfo"]["alertId"].as_str().unwrap();
        if !last.contains_key(id) {
            wrong.push(format!("alert {id}: never told"));
        }
    }
    assert!(
        wrong.is_empty(),
        "seed {seed}, tenant {name}: the platform is not on S1's latest state for {} items: {:?}",
        wrong.len(),
        &wrong[..wrong.len().min(20)]
    );
}
