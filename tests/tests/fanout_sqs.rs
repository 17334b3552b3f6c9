//! Fan-out through a real SQS-compatible queue (moto on loopback, started by scripts/test.sh)
//! over DynamoDB Local: the dispatcher sends one message per enabled tenant, and the
//! poll-threats consumer answers each message as the design says, from the SQS-shaped events
//! Lambda would hand it.

use std::sync::Arc;
use std::time::{Duration, Instant};

use integration_tests::poll::{PollHarness, tenant};
use integration_tests::sqs::{aws, delete, event, moto_queue, receive, receive_up_to, record, table};
use s1_bridge_sim::{DEFAULT_TOKEN, SimConfig};
use s1_shared::store::LEASE_TTL;
use s1_shared::usecase::fanout::{Job, Plan, consume, consume_assets, dispatch};
use s1_shared::usecase::poll_threats::{LEASE_JOB, Outcome};
use serde_json::{Value, json};
use time::OffsetDateTime;

/// The poll's plan, each minute, every message visible at once.
fn poll_plan() -> Plan {
    Plan {
        job: Job::Poll,
        every_minutes: 1,
        spread: Duration::ZERO,
    }
}

/// The simulator with `threats` on `agents`, tenant `acme` on it, state in DynamoDB Local.
async fn harness(config: &aws_config::SdkConfig, threats: usize, agents: usize) -> PollHarness {
    let sim = SimConfig {
        threats,
        agents,
        cloud_alerts: 0,
        ..SimConfig::default()
    };
    PollHarness::start(sim, table(config).await).await
}

/// Stores `tenants`, each with the simulator's token.
async fn add_tenants(h: &PollHarness, tenants: &[s1_shared::store::TenantConfig]) {
    for t in tenants {
        h.env
            .lock()
            .unwrap()
            .insert(format!("S1_TOKEN_{}", t.id), DEFAULT_TOKEN.into());
        h.store.put_tenant(t).await.unwrap();
    }
}

fn deadline() -> Instant {
    Instant::now() + Duration::from_secs(120)
}

#[tokio::test(flavor = "multi_thread")]
async fn the_dispatcher_sends_one_message_per_enabled_tenant_and_each_is_answered_as_designed() {
    let config = aws().await;
    let h = harness(&config, 20, 10).await;
    h.env
        .lock()
        .unwrap()
        .insert("S1_TOKEN_beta".into(), DEFAULT_TOKEN.into());
    h.store
        .put_tenant(&tenant("beta", &h.sim.base_url(), &h.receiver.url()))
        .await
        .unwrap();
    let mut off = tenant("off", &h.sim.base_url(), &h.receiver.url());
    off.enabled = false;
    h.store.put_tenant(&off).await.unwrap();

    let (sqs, url, q) = moto_queue(&config).await;
    let report = dispatch(&h.store, &q, poll_plan(), OffsetDateTime::now_utc())
        .await
        .unwrap();
    assert_eq!(
        (report.tenants, report.sent, report.backed_off),
        (2, 2, 0),
        "{report:?}"
    );
    assert!(report.not_sent.is_empty());
    let records = receive(&sqs, &url).await;
    let mut bodies: Vec<&str> = records.iter().map(|r| r["body"].as_str().unwrap()).collect();
    bodies.sort();
    assert_eq!(
        bodies,
        [r#"{"tenant":"acme"}"#, r#"{"tenant":"beta"}"#],
        "the disabled tenant gets none"
    );

    // Each message is one tenant's run; none is to be received again.
    let (answer, consumed) = consume(&h.deps, &event(&records), deadline()).await;
    assert!(answer.batch_item_failures.is_empty(), "{answer:?}");
    assert_eq!(
        consumed
            .runs
            .iter()
            .map(|r| (r.tenant.as_str(), r.outcome, r.published))
            .collect::<Vec<_>>(),
        [("acme", Outcome::Completed, 20), ("beta", Outcome::Completed, 20)]
    );
    assert_eq!(
        serde_json::to_value(&answer).unwrap(),
        json!({"batchItemFailures": []}),
        "the answer Lambda reads"
    );
    let delivered = h.receiver.events().len();
    assert_eq!(delivered, 40);

    // The same message again while another run holds the tenant's lease: ends at once, counted.
    let held = h
        .store
        .take_lease(
            "acme",
            LEASE_JOB,
            "the-previous-run",
            LEASE_TTL,
            OffsetDateTime::now_utc(),
        )
        .await
        .unwrap()
        .unwrap();
    let started = Instant::now();
    let (answer, consumed) = consume(&h.deps, &event(&records[..1]), deadline()).await;
    assert!(answer.batch_item_failures.is_empty());
    assert_eq!(consumed.lease_held, 1);
    assert_eq!(consumed.runs[0].outcome, Outcome::Skipped);
    assert!(started.elapsed() < Duration::from_secs(5), "{:?}", started.elapsed());
    h.store.give_back(&held).await.unwrap();
    // And once the lease is free: a duplicate sends nothing twice.
    let (_, consumed) = consume(&h.deps, &event(&records), deadline()).await;
    assert!(
        consumed
            .runs
            .iter()
            .all(|r| r.published == 0 && r.outcome == Outcome::Completed)
    );
    assert_eq!(h.receiver.events().len(), delivered);

    // A disabled or deleted tenant's message ends at once; a malformed one is left to the
    // dead-letter queue (received again until the queue's limit), never dropped.
    let batch = event(&[
        record("m-off", r#"{"tenant":"off"}"#),
        record("m-gone", r#"{"tenant":"gone"}"#),
        record("m-number", r#"{"tenant":5}"#),
        record("m-text", "poll everything"),
        record("m-shard", r#"{"shard":0,"shards":4}"#),
    ]);
    let (answer, consumed) = consume(&h.deps, &batch, deadline()).await;
    let mut again: Vec<&str> = answer
        .batch_item_failures
        .iter()
        .map(|f| f.item_identifier.as_str())
        .collect();
    again.sort();
    assert_eq!(again, ["m-number", "m-shard", "m-text"]);
    assert_eq!((consumed.disabled, consumed.unknown, consumed.malformed), (1, 1, 3));
    assert!(consumed.runs.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn messages_are_spread_over_the_minute_by_a_stable_per_tenant_delay() {
    use s1_shared::queue::{TenantMessage, TenantQueue};
    let config = aws().await;
    let (sqs, url, q) = moto_queue(&config).await;
    let failed = q
        .send_batch(&[
            TenantMessage {
                tenant: "now".into(),
                delay_seconds: 0,
            },
            TenantMessage {
                tenant: "later".into(),
                delay_seconds: 30,
            },
        ])
        .await
        .unwrap();
    assert!(failed.is_empty());
    let visible = receive(&sqs, &url).await;
    assert_eq!(
        visible.len(),
        1,
        "the delayed message is held by the queue: {visible:?}"
    );
    assert_eq!(visible[0]["body"], r#"{"tenant":"now"}"#);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_asset_sync_that_ends_partial_continues_itself_through_the_queue_until_done() {
    let config = aws().await;
    let h = PollHarness::start(
        SimConfig {
            threats: 1,
            agents: 8,
            cloud_alerts: 0,
            decommissioned_every: 0,
            ..SimConfig::default()
        },
        table(&config).await,
    )
    .await;
    let (sqs, url, q) = moto_queue(&config).await;
    // The daily dispatch, from an hourly schedule: the tenant is sent once that day.
    let day = time::macros::datetime!(2026-03-01 0:00 UTC);
    let mut sent = 0;
    for hour in 0..24 {
        let plan = Plan {
            job: Job::Assets,
            every_minutes: 60,
            spread: Duration::ZERO,
        };
        sent += dispatch(&h.store, &q, plan, day + time::Duration::hours(hour))
            .await
            .unwrap()
            .sent;
    }
    assert_eq!(sent, 1, "one sync a day");

    // Every run's time is spent at once: it pushes one change, says `partial` and sends its
    // own continuation (no budget on the generic platform: no delay), which the next
    // invocation takes, until the sync completes.
    let deps = h.asset_deps();
    let mut outcomes = Vec::new();
    while outcomes.len() < 40 {
        let records = receive(&sqs, &url).await;
        if records.is_empty() {
            break;
        }
        assert_eq!(records.len(), 1, "one message at a time: {records:?}");
        let (answer, consumed) = consume_assets(&deps, &q, &event(&records), Instant::now()).await;
        assert!(answer.batch_item_failures.is_empty(), "{answer:?}");
        delete(&sqs, &url, &records[0]).await;
        outcomes.push(consumed.runs[0].outcome);
    }
    let objects = 3 + 6 + 8;
    assert_eq!(outcomes.len(), objects + 1, "{outcomes:?}");
    assert!(
        outcomes[..objects].iter().all(|o| *o == Outcome::Partial),
        "{outcomes:?}"
    );
    assert_eq!(
        outcomes.last(),
        Some(&Outcome::Completed),
        "the last run finds nothing left"
    );
    assert_eq!(h.receiver.events().len(), objects, "each object pushed once");
    assert!(
        receive(&sqs, &url).await.is_empty(),
        "a completed sync sends no continuation"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_halo_sync_continues_after_the_budget_window() {
    let config = aws().await;
    let h = integration_tests::halo::HaloHarness::start(
        1,
        table(&config).await,
        s1_bridge_sim::HaloConfig {
            rate_limit: 100_000,
            ..s1_bridge_sim::HaloConfig::default()
        },
        json!({}),
    )
    .await;
    let tenant = h.h.store.get_tenant("acme").await.unwrap().unwrap();
    assert_eq!(
        s1_shared::usecase::fanout::continuation_delay(&tenant),
        30,
        "one slice of Halo's 5-minute window"
    );
    let (sqs, url, q) = moto_queue(&config).await;
    let (answer, consumed) = consume_assets(
        &h.h.asset_deps(),
        &q,
        &event(&[record("m1", r#"{"tenant":"acme"}"#)]),
        Instant::now(),
    )
    .await;
    assert!(answer.batch_item_failures.is_empty(), "{answer:?}");
    assert_eq!(consumed.runs[0].outcome, Outcome::Partial, "{:?}", consumed.runs);
    assert!(
        receive(&sqs, &url).await.is_empty(),
        "the continuation waits a slice of Halo's window"
    );
    let attributes = sqs
        .get_queue_attributes()
        .queue_url(&url)
        .attribute_names(aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessagesDelayed)
        .send()
        .await
        .unwrap();
    let delayed = attributes
        .attributes()
        .and_then(|a| a.get(&aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessagesDelayed))
        .cloned();
    assert_eq!(
        delayed.as_deref(),
        Some("1"),
        "the continuation is in the queue, delayed"
    );
}

/// A first Halo import, scaled down: 200 agents and Halo's budget shrunk to 100 requests per
/// 2 s window (`budget_window_seconds`, the benchmark's knob; scripts/bench-halo-import.sh runs
/// 5,000). The sync-assets consumer takes one message at a time from moto's queue, as the event
/// source mapping hands them, each run within a 4 s "timeout": each partial run sends its own
/// continuation, delayed by a slice of the window, until one completes. Every agent's asset is created
/// once, no rolling window at the stand-in holds more than the budget, and an asset costs about
/// one Halo request (the create): a run lists each site's assets once rather than looking each
/// new asset up, and lists the asset types once, not for every asset.
#[tokio::test(flavor = "multi_thread")]
async fn a_first_halo_import_completes_through_continuations_within_the_budget() {
    let config = aws().await;
    let agents = 200;
    let h = integration_tests::halo::HaloHarness::start_with(
        SimConfig {
            threats: 0,
            agents,
            cloud_alerts: 0,
            decommissioned_every: 0,
            ..SimConfig::default()
        },
        table(&config).await,
        s1_bridge_sim::HaloConfig {
            // Lifted: the stand-in counts what a window holds rather than refusing it.
            rate_limit: usize::MAX,
            rate_window: Duration::from_secs(2),
            ..s1_bridge_sim::HaloConfig::default()
        },
        json!({"requests_per_5_minutes": 100, "budget_window_seconds": 2}),
    )
    .await;
    let tenant = h.h.store.get_tenant("acme").await.unwrap().unwrap();
    assert_eq!(s1_shared::usecase::fanout::continuation_delay(&tenant), 1);
    let (sqs, url, q) = moto_queue(&config).await;
    s1_shared::queue::TenantQueue::send_batch(
        &q,
        &[s1_shared::queue::TenantMessage {
            tenant: "acme".into(),
            delay_seconds: 0,
        }],
    )
    .await
    .unwrap();
    let deps = h.h.asset_deps();
    let mut outcomes = Vec::new();
    let give_up = Instant::now() + Duration::from_secs(120);
    while outcomes.last() != Some(&Outcome::Completed) && Instant::now() < give_up {
        for r in receive_up_to(&sqs, &url, 1).await {
            let timeout = Instant::now() + Duration::from_secs(4);
            let (answer, consumed) = consume_assets(&deps, &q, &event(std::slice::from_ref(&r)), timeout).await;
            assert!(answer.batch_item_failures.is_empty(), "{answer:?}");
            delete(&sqs, &url, &r).await;
            let run = &consumed.runs[0];
            assert!(run.error.is_none(), "{run:?}");
            outcomes.push(run.outcome);
        }
    }
    assert_eq!(outcomes.last(), Some(&Outcome::Completed), "{outcomes:?}");
    assert!(outcomes.len() >= 2, "the import took continuations: {outcomes:?}");
    assert!(
        outcomes[..outcomes.len() - 1].iter().all(|o| *o == Outcome::Partial),
        "{outcomes:?}"
    );
    assert!(
        receive(&sqs, &url).await.is_empty(),
        "no continuation after the last run"
    );
    let inventory: Vec<String> = h
        .halo
        .assets()
        .iter()
        .filter_map(|a| a["inventory_number"].as_str().map(str::to_owned))
        .filter(|n| n.starts_with("S1:"))
        .collect();
    let distinct: std::collections::HashSet<&String> = inventory.iter().collect();
    assert_eq!(
        (inventory.len(), distinct.len()),
        (agents, agents),
        "each asset created once"
    );
    let stats = h.halo.stats();
    assert!(
        stats.peak_in_window <= 100,
        "a window held {} requests",
        stats.peak_in_window
    );
    assert_eq!(stats.rate_limited, 0);
    // One an asset (the create), and per run: the 20 exact lookups a run makes before it lists
    // each of the 6 sites' assets instead (a page each here), and a few for the token, clients,
    // sites and asset type layouts. Two an asset (a lookup before each create) is over this.
    assert!(
        stats.api_requests <= agents + 10 + (20 + 6 + 4) * outcomes.len(),
        "{} Halo requests for {agents} assets in {} runs: {:?}",
        stats.api_requests,
        outcomes.len(),
        h.api_requests()
            .iter()
            .fold(std::collections::BTreeMap::<String, usize>::new(), |mut m, r| {
                *m.entry(r.split('?').next().unwrap_or(r).to_owned()).or_default() += 1;
                m
            })
    );
}

/// Head-of-line, Lambda mode: the dispatcher's messages through moto's SQS, consumed by two
/// concurrent "invocations" of the poll consumer (the event source mapping's
/// `MaximumConcurrency`, batch size 1). One tenant's receiver answers each delivery after 2 s,
/// one at a time, with a backlog of 100 threats (over three minutes of work); the five other
/// tenants' polls start on time, dispatch after dispatch.
#[tokio::test(flavor = "multi_thread")]
async fn a_slow_tenant_with_a_backlog_does_not_delay_the_others_polls_through_the_queue() {
    use integration_tests::poll::WEBHOOK_SECRET;
    use s1_bridge_sim::WebhookReceiver;
    let config = aws().await;
    let h = PollHarness::start(
        SimConfig {
            threats: 100,
            agents: 50,
            cloud_alerts: 0,
            ..SimConfig::default()
        },
        Arc::new(s1_shared::store::EmbeddedTable::in_memory().unwrap()),
    )
    .await;
    let slow = WebhookReceiver::start(WEBHOOK_SECRET).await.unwrap();
    slow.stall_next(100_000, Duration::from_secs(2));
    let mut heavy = tenant("heavy", &h.sim.base_url(), &slow.url());
    heavy.max_in_flight = 1;
    // `acme` is the harness's own.
    let light = ["acme", "light1", "light2", "light3", "light4"];
    let mut tenants = vec![heavy];
    tenants.extend(
        light[1..]
            .iter()
            .map(|id| tenant(id, &h.sim.base_url(), &h.receiver.url())),
    );
    add_tenants(&h, &tenants).await;
    let (sqs, url, q) = moto_queue(&config).await;

    // Three invocations at once, each taking one message, running it within a 12 s "timeout"
    // and deleting it, as the event source mapping does.
    let log = std::sync::Mutex::new(Vec::<(Instant, String, bool)>::new());
    let t0 = Instant::now();
    let stop = t0 + Duration::from_secs(20);
    let invocations = futures_util::future::join_all((0..3).map(|_| async {
        while Instant::now() < stop {
            for r in receive_up_to(&sqs, &url, 1).await {
                let body: Value = serde_json::from_str(r["body"].as_str().unwrap()).unwrap();
                let tenant = body["tenant"].as_str().unwrap().to_owned();
                log.lock().unwrap().push((Instant::now(), tenant.clone(), true));
                let deadline = Instant::now() + Duration::from_secs(12);
                let (answer, _) = consume(&h.deps, &event(std::slice::from_ref(&r)), deadline).await;
                assert!(answer.batch_item_failures.is_empty());
                delete(&sqs, &url, &r).await;
                log.lock().unwrap().push((Instant::now(), tenant, false));
            }
        }
    }));
    // Two "minutes", 6 s apart: each dispatch sends every tenant, the heavy one included.
    let dispatcher = async {
        let mut dispatched = Vec::new();
        for _ in 0..2 {
            dispatched.push(Instant::now());
            let report = dispatch(&h.store, &q, poll_plan(), OffsetDateTime::now_utc())
                .await
                .unwrap();
            assert_eq!(report.sent, 6, "{report:?}");
            tokio::time::sleep(Duration::from_secs(6)).await;
        }
        dispatched
    };
    let (_, dispatched) = tokio::join!(invocations, dispatcher);
    let log = log.into_inner().unwrap();
    let at = |id: &str, started: bool| -> Vec<Duration> {
        log.iter()
            .filter(|(_, t, s)| t == id && *s == started)
            .map(|(when, ..)| *when - t0)
            .collect()
    };
    let heavy_started = at("heavy", true);
    let heavy_finished = at("heavy", false);
    assert!(!heavy_started.is_empty(), "{log:?}");
    // Its first run is on its backlog (2 s a delivery) until its deadline, past the second
    // dispatch (whose message for it finds its lease held and ends at once).
    assert!(
        heavy_finished.first().is_none_or(|f| *f > dispatched[1] - t0),
        "{log:?}"
    );
    assert!(slow.events().len() < 12, "{}", slow.events().len());
    for (round, sent) in dispatched.iter().enumerate() {
        let sent = *sent - t0;
        for id in light {
            let start = at(id, true)
                .into_iter()
                .find(|s| *s >= sent)
                .unwrap_or_else(|| panic!("{id} was not polled after dispatch {round}: {log:?}"));
            assert!(
                start - sent < Duration::from_secs(5),
                "{id} started {:?} after dispatch {round}, behind the heavy tenant: {log:?}",
                start - sent
            );
        }
    }
    assert_eq!(
        h.events("threat.created").len(),
        5 * 100,
        "every light tenant published its threats"
    );
}

/// A tenant whose runs keep failing (S1 refuses its token) is sent once every 15 minutes; once
/// `tenant test` passes or its configuration changes (both forget the streak), every minute
/// again; a tenant's own interval is honoured; the fleet's figures count it.
#[tokio::test(flavor = "multi_thread")]
async fn a_tenant_that_keeps_failing_backs_off_and_comes_back_at_once_when_fixed() {
    let config = aws().await;
    let h = harness(&config, 5, 5).await;
    h.env
        .lock()
        .unwrap()
        .insert("S1_TOKEN_acme".into(), "a-revoked-token".into());
    for i in 0..3 {
        let (answer, consumed) = consume(
            &h.deps,
            &event(&[record(&format!("m{i}"), r#"{"tenant":"acme"}"#)]),
            deadline(),
        )
        .await;
        assert!(
            answer.batch_item_failures.is_empty(),
            "a failed run is not the queue's to retry"
        );
        assert_eq!(consumed.runs[0].outcome, Outcome::Failed);
    }
    assert_eq!(h.store.get_status("acme").await.unwrap().unwrap().failures_in_a_row, 3);

    let (sqs, url, q) = moto_queue(&config).await;
    let t0 = time::macros::datetime!(2026-03-01 0:00 UTC);
    let over = |minutes: i64| {
        let (store, q) = (&h.store, &q);
        async move {
            let mut totals = (0, 0, 0);
            for m in 0..minutes {
                let r = dispatch(store, q, poll_plan(), t0 + time::Duration::minutes(m))
                    .await
                    .unwrap();
                totals = (totals.0 + r.sent, totals.1 + r.backed_off, totals.2 + r.lagging);
            }
            totals
        }
    };
    assert_eq!(over(15).await, (1, 14, 15), "once in 15 minutes; lagging every time");
    assert_eq!(receive(&sqs, &url).await.len(), 1);

    // `tenant test` passed (the CLI forgets the streak): every minute again, at once.
    assert!(h.store.clear_failure_streak("acme").await.unwrap());
    assert_eq!(over(15).await.0, 15);

    // Its own interval: every 5 minutes.
    let mut acme = h.store.get_tenant("acme").await.unwrap().unwrap();
    acme.intervals.poll_minutes = Some(5);
    h.store.put_tenant(&acme).await.unwrap();
    assert_eq!(over(15).await.0, 3);
}

/// Head-of-line within a batch (`PollBatchSize` 10): the dispatcher's messages for a slow tenant
/// with a backlog (its receiver answering each delivery after 2 s) and nine idle tenants reach
/// one invocation together through moto's queue. The consumer runs the whole batch at once, so
/// the nine are polled, started and finished, within seconds while the slow one works to its
/// deadline; and that even with `PollConcurrency` at 1 and the slow tenant first in the batch,
/// the order in which one consumer slot would have taken them.
#[tokio::test(flavor = "multi_thread")]
async fn a_batch_of_ten_polls_its_idle_tenants_at_once_beside_a_slow_one() {
    use integration_tests::poll::WEBHOOK_SECRET;
    use s1_bridge_sim::{Sim, WebhookReceiver};
    let config = aws().await;
    let h = harness(&config, 100, 50).await;
    // The idle tenants' console has nothing for them: each run reads one empty page.
    let quiet = Sim::start(SimConfig {
        threats: 0,
        agents: 1,
        cloud_alerts: 0,
        ..SimConfig::default()
    })
    .await
    .unwrap();
    let slow = WebhookReceiver::start(WEBHOOK_SECRET).await.unwrap();
    slow.stall_next(100_000, Duration::from_secs(2));
    let mut heavy = tenant("heavy", &h.sim.base_url(), &slow.url());
    heavy.max_in_flight = 1;
    let mut acme = h.store.get_tenant("acme").await.unwrap().unwrap();
    acme.enabled = false;
    let idle: Vec<String> = (1..=9).map(|i| format!("idle{i}")).collect();
    let mut tenants = vec![heavy, acme];
    tenants.extend(idle.iter().map(|id| tenant(id, &quiet.base_url(), &h.receiver.url())));
    add_tenants(&h, &tenants).await;
    let (sqs, url, q) = moto_queue(&config).await;
    let report = dispatch(&h.store, &q, poll_plan(), OffsetDateTime::now_utc())
        .await
        .unwrap();
    assert_eq!(report.sent, 10, "{report:?}");
    // One batch of ten, as the event source mapping hands it (moto may answer a receive with
    // fewer than are visible).
    let mut records = Vec::new();
    for _ in 0..10 {
        if records.len() == 10 {
            break;
        }
        records.extend(receive_up_to(&sqs, &url, 10 - records.len() as i32).await);
    }
    assert_eq!(records.len(), 10);
    records.sort_by_key(|r| r["body"] != r#"{"tenant":"heavy"}"#);
    let deps = s1_shared::usecase::poll_threats::PollDeps {
        concurrency: 1,
        ..h.deps.clone()
    };
    let (t0, started) = (OffsetDateTime::now_utc(), Instant::now());
    let (answer, consumed) = consume(&deps, &event(&records), Instant::now() + Duration::from_secs(12)).await;
    let took = started.elapsed();
    assert!(answer.batch_item_failures.is_empty(), "{answer:?}");
    assert_eq!(consumed.lease_held, 0);
    let outcomes: Vec<(&str, Outcome)> = consumed.runs.iter().map(|r| (r.tenant.as_str(), r.outcome)).collect();
    assert_eq!(outcomes.len(), 10, "{outcomes:?}");
    assert!(outcomes.contains(&("heavy", Outcome::Partial)), "{outcomes:?}");
    assert!(
        took > Duration::from_secs(7),
        "the slow tenant worked to its deadline: {took:?}"
    );
    assert!(slow.events().len() < 8, "{}", slow.events().len());
    // Each idle run wrote its first status as it finished: seconds after the batch began,
    // long before the slow tenant's deadline.
    for id in &idle {
        assert!(outcomes.contains(&(id.as_str(), Outcome::Completed)), "{outcomes:?}");
        let finished = h.store.get_status(id).await.unwrap().expect("a status").checked_at - t0;
        assert!(
            finished < time::Duration::seconds(6),
            "{id} finished {finished} after the batch began, behind the slow tenant ({took:?})"
        );
    }
}

/// SQS delivers at least once, so one batch may hold the same tenant twice: each message runs
/// under a lease owner of its own, so the second finds the first's lease held and ends at once,
/// counted, and no threat is sent twice.
#[tokio::test(flavor = "multi_thread")]
async fn a_tenant_twice_in_one_batch_runs_once_and_the_other_finds_the_lease_held() {
    let config = aws().await;
    let h = harness(&config, 20, 10).await;
    let twice = event(&[
        record("m1", r#"{"tenant":"acme"}"#),
        record("m2", r#"{"tenant":"acme"}"#),
    ]);
    let (answer, consumed) = consume(&h.deps, &twice, deadline()).await;
    assert!(answer.batch_item_failures.is_empty(), "{answer:?}");
    assert_eq!(consumed.lease_held, 1, "{:?}", consumed.runs);
    let mut outcomes: Vec<(Outcome, u64)> = consumed.runs.iter().map(|r| (r.outcome, r.published)).collect();
    outcomes.sort_by_key(|(_, published)| *published);
    assert_eq!(outcomes, [(Outcome::Skipped, 0), (Outcome::Completed, 20)]);
    let deliveries = h.receiver.deliveries();
    assert_eq!(deliveries.len(), 20, "each threat sent once");
    assert!(deliveries.iter().all(|d| !d.duplicate));
}

/// Two checks of one tenant's token at once (the schedule's message and an operator's run, or
/// a message delivered twice) while it crosses a threshold: one takes the tenant's token lease
/// and alerts, the other finds it held; exactly one alert reaches the platform. The token lease
/// is the check's own: a poll holding the tenant's poll lease does not stop it.
#[tokio::test(flavor = "multi_thread")]
async fn two_token_checks_at_once_send_one_threshold_alert() {
    use s1_bridge_sim::TokenSpec;
    use s1_shared::usecase::fanout::consume_tokens;
    use s1_shared::usecase::token_expiry::check_tenant;
    let config = aws().await;
    let h = harness(&config, 1, 1).await;
    let expiring = |days: i64| TokenSpec {
        expires_at: OffsetDateTime::now_utc() + time::Duration::days(days) + time::Duration::hours(1),
        ..TokenSpec::tenant("watched-token", 0)
    };
    h.sim.control().add_token(&expiring(5)).await.unwrap();
    h.env
        .lock()
        .unwrap()
        .insert("S1_TOKEN_acme".into(), "watched-token".into());
    let poll = h
        .store
        .take_lease("acme", LEASE_JOB, "a-poll", LEASE_TTL, OffsetDateTime::now_utc())
        .await
        .unwrap()
        .unwrap();
    // The platform takes a second to answer: both checks are under way before either could
    // record the threshold it alerted.
    h.receiver.stall_next(4, Duration::from_secs(1));
    let d = h.token_deps();
    let acme = h.store.get_tenant("acme").await.unwrap().unwrap();
    let now = OffsetDateTime::now_utc();
    let (a, b) = tokio::join!(check_tenant(&d, &acme, now), check_tenant(&d, &acme, now));
    let mut reports = [a, b];
    reports.sort_by_key(|r| r.lease_held);
    assert_eq!(
        reports.iter().map(|r| (r.alerted, r.lease_held)).collect::<Vec<_>>(),
        [(Some(7), false), (None, true)],
        "{reports:?}"
    );
    assert_eq!(h.receiver.deliveries().len(), 1, "one alert reaches the platform");

    // The same through the queue: the tenant twice in one batch, the next threshold crossed.
    h.sim.control().add_token(&expiring(2)).await.unwrap();
    let twice = event(&[
        record("m1", r#"{"tenant":"acme"}"#),
        record("m2", r#"{"tenant":"acme"}"#),
    ]);
    let (answer, consumed) = consume_tokens(&d, &twice, OffsetDateTime::now_utc()).await;
    assert!(answer.batch_item_failures.is_empty(), "{answer:?}");
    assert_eq!(consumed.lease_held, 1, "{:?}", consumed.runs);
    let deliveries = h.receiver.deliveries();
    assert_eq!(deliveries.len(), 2, "one more alert, for 3 days");
    assert_eq!(deliveries[1].body["data"]["threshold_days"], 3);
    h.store.give_back(&poll).await.unwrap();
}
