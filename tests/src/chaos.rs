//! A seeded chaos run of the poller: rounds of S1 faults (429, 5xx, slow, truncated, reset),
//! receiver faults (500s, deliveries taken and answered too late), kills of the run at random
//! moments (also the moment the receiver takes a delivery, before it answers), and the console
//! changing threats between and during rounds; then clean polls until one publishes nothing.
//! Against S1's final state it checks, per tenant (one plain, one batched generic receiver): the
//! receiver's last word on every threat is S1's latest status and verdict, every STAR alert
//! arrived, every delivery was signed, and no threat version came under two webhook ids. The
//! same run reads unified alerts instead ([`Source::Unified`]): GraphQL faults besides HTTP ones
//! (errors with HTTP 200, partial data, UAM's throttling), alerts changed and added in UAM, and
//! the receiver's last word on every unified alert its latest status and verdict.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::FutureExt;
use s1_bridge_sim::{DEFAULT_TOKEN, FaultKind, FaultRule, NewThreats, SimConfig, SimControl, WebhookReceiver};
use s1_shared::platform::{Adapters, PlatformResolver};
use s1_shared::store::{ItemTable, Source};
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
/// Unified alerts in the unified run: five pages of 100.
const UNIFIED: usize = 500;
const UAM_STATUSES: [&str; 3] = ["NEW", "IN_PROGRESS", "RESOLVED"];
const UAM_VERDICTS: [&str; 4] = [
    "UNDEFINED",
    "TRUE_POSITIVE_MALWARE",
    "TRUE_POSITIVE_PUA_ADWARE",
    "FALSE_POSITIVE_BENIGN",
];

/// One S1 fault on `source`'s listing, drawn.
fn s1_fault(rng: &mut fastrand::Rng, source: Source) -> FaultRule {
    if source == Source::Unified && rng.u8(..3) == 0 {
        // What only GraphQL answers: errors with HTTP 200 (UAM's throttling among them), or
        // partial data.
        let fault = match rng.u8(..3) {
            0 => FaultKind::GraphqlError {
                code: "SURFACE_TOO_MANY_REQUESTS".into(),
                message: None,
            },
            1 => FaultKind::GraphqlError {
                code: "INTERNAL_SERVER_ERROR".into(),
                message: Some("chaos".into()),
            },
            _ => FaultKind::PartialData,
        };
        return FaultRule::new(crate::writeback_uam::GRAPHQL, fault, rng.u32(1..4)).after(rng.u32(0..4));
    }
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
    if source == Source::Unified {
        return FaultRule::new(crate::writeback_uam::GRAPHQL, fault, rng.u32(1..4))
            .method("POST")
            .after(rng.u32(0..4));
    }
    let path = if rng.bool() {
        "/threats"
    } else {
        "/cloud-detection/alerts"
    };
    FaultRule::new(path, fault, rng.u32(1..4))
        .method("GET")
        .after(rng.u32(0..4))
}

/// The console changes `n` random items of `source` as an analyst would (see
/// [`console_changes`]); `unified` holds the unified alerts' ids.
async fn changes_to(control: &SimControl, rng: &mut fastrand::Rng, n: usize, source: Source, unified: &[String]) {
    if source != Source::Unified {
        return console_changes(control, rng, n).await;
    }
    for _ in 0..n {
        let id = &unified[rng.usize(..unified.len())];
        let status = rng.bool().then(|| UAM_STATUSES[rng.usize(..3)].to_owned());
        let verdict = (status.is_none() || rng.bool()).then(|| UAM_VERDICTS[rng.usize(..4)].to_owned());
        let change = s1_bridge_sim::UnifiedAlertChange {
            status,
            analyst_verdict: verdict,
            ..Default::default()
        };
        control.change_unified_alert(id, &change).await.unwrap();
    }
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

/// Runs the chaos with `seed` on `table`, the tenants reading `source` (threats with STAR
/// alerts, or unified alerts); panics naming the seed on any broken guarantee.
pub async fn chaos(seed: u64, table: Arc<dyn ItemTable>, source: Source) {
    println!("chaos seed {seed} (CHAOS_SEED={seed} replays it), {source:?}");
    let unified = source == Source::Unified;
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut h = PollHarness::start(
        SimConfig {
            threats: if unified { 0 } else { THREATS },
            agents: 80,
            cloud_alerts: if unified { 0 } else { ALERTS },
            unified_alerts: if unified { UNIFIED } else { 0 },
            unified_threat_every: 0,
            seed,
            ..SimConfig::default()
        },
        table,
    )
    .await;
    let control = h.sim.control();
    let ids = |all: Vec<Value>| -> Vec<String> { all.iter().map(|a| a["id"].as_str().unwrap().to_owned()).collect() };
    let mut alert_ids = ids(control.unified_alert_ids().await.unwrap());
    // Tenant acme (single deliveries, from the harness) and tenant beta (batched), both polling
    // STAR alerts too, each with its own receiver.
    let batched = WebhookReceiver::start(WEBHOOK_SECRET).await.unwrap();
    let mut acme = tenant("acme", &h.sim.base_url(), &h.receiver.url());
    let mut beta = tenant("beta", &h.sim.base_url(), &batched.url());
    for t in [&mut acme, &mut beta] {
        t.poll_cloud_alerts = !unified;
        t.sources = vec![source];
    }
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
            control.add_fault(&s1_fault(&mut rng, source)).await.unwrap();
        }
        for (_, r) in receivers {
            match rng.u8(..3) {
                0 => r.fail_next(rng.usize(1..30), [500, 503, 429][rng.usize(..3)]),
                1 => r.stall_next(rng.usize(1..5), Duration::from_millis(1_200)),
                _ => {}
            }
        }
        let add = rng.u8(..3) == 0;
        if add && unified {
            let added = s1_bridge_sim::NewUnifiedAlerts {
                count: rng.usize(1..30),
                ..s1_bridge_sim::NewUnifiedAlerts::one(s1_bridge_sim::DetectionSource::Identity)
            };
            alert_ids.extend(control.add_unified_alerts(&added).await.unwrap());
        } else if add {
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
        let backlog = if unified { UNIFIED } else { THREATS };
        let kill_at_delivery = rng.usize(..if round == 0 { backlog } else { 40 });
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
            let (control, alert_ids) = (h.sim.control(), alert_ids.clone());
            let mut rng = fastrand::Rng::with_seed(seed ^ round as u64);
            tokio::spawn(async move {
                for _ in 0..5 {
                    tokio::time::sleep(Duration::from_millis(rng.u64(20..400))).await;
                    changes_to(&control, &mut rng, 4, source, &alert_ids).await;
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
        changes_to(&control, &mut rng, n, source, &alert_ids).await;
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
    let (latest, alerts) = if unified {
        (latest_unified(&h).await, Vec::new())
    } else {
        let threats = s1_items(&h, "threats").await;
        (
            latest_of_threats(&threats),
            s1_items(&h, "cloud-detection/alerts").await,
        )
    };
    for (name, receiver) in receivers {
        check(seed, name, receiver, &latest, &alerts);
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

/// Every item's id as events name it, with S1's latest status and verdict as events tell them.
type Latest = Vec<(String, String, String)>;

fn latest_of_threats(threats: &[Value]) -> Latest {
    threats
        .iter()
        .map(|t| {
            let info = &t["threatInfo"];
            let word = |f: &str| info[f].as_str().unwrap_or_default().to_owned();
            (
                t["id"].as_str().unwrap().to_owned(),
                word("incidentStatus"),
                word("analystVerdict"),
            )
        })
        .collect()
}

/// Every unified alert as UAM lists it now, its status and verdict as events tell them.
async fn latest_unified(h: &PollHarness) -> Latest {
    use s1_shared::s1::dto::{uam_status, uam_verdict};
    let client = crate::client_for(&h.sim, DEFAULT_TOKEN, fast_retry_options());
    let alerts = crate::items(client.unified_alerts(&s1_shared::s1::UnifiedAlertQuery::default()))
        .await
        .unwrap();
    alerts
        .iter()
        .map(|a| {
            let status = a.status.as_deref().and_then(uam_status).map(|s| s.as_str());
            let verdict = a.analyst_verdict.as_deref().map(|v| uam_verdict(v).as_str());
            (
                a.id.clone(),
                status.unwrap_or_default().to_owned(),
                verdict.unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

/// The receiver's last word on every item is S1's latest status and verdict (`latest`); every
/// STAR alert arrived; every delivery was signed.
fn check(seed: u64, name: &str, receiver: &WebhookReceiver, latest: &Latest, alerts: &[Value]) {
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
    for (id, status, verdict) in latest {
        let want = (status.as_str(), verdict.as_str());
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
