//! The one-machine runner's polls (`serve`): each tenant on its own schedule in a bounded pool,
//! so a tenant with a backlog and a slow platform never delays the others' polls.

use std::sync::Arc;
use std::time::{Duration, Instant};

use integration_tests::poll::{PollHarness, WEBHOOK_SECRET, tenant};
use s1_bridge_sim::{DEFAULT_TOKEN, SimConfig, WebhookReceiver};
use s1_shared::store::EmbeddedTable;
use s1_shared::usecase::fanout::{PoolEvent, serve_polls};

#[tokio::test(flavor = "multi_thread")]
async fn a_slow_tenant_with_a_backlog_does_not_delay_the_others_polls() {
    // 300 threats: the light tenants publish them in their first run, then find nothing new.
    let h = PollHarness::start(
        SimConfig {
            threats: 300,
            agents: 50,
            cloud_alerts: 0,
            ..SimConfig::default()
        },
        Arc::new(EmbeddedTable::in_memory().unwrap()),
    )
    .await;
    // The heavy tenant's receiver answers each delivery after 2 s, one at a time: its backlog
    // takes ten minutes.
    let slow = WebhookReceiver::start(WEBHOOK_SECRET).await.unwrap();
    slow.stall_next(100_000, Duration::from_secs(2));
    let mut heavy = tenant("heavy", &h.sim.base_url(), &slow.url());
    heavy.max_in_flight = 1;
    // A tenant that asks to be polled once a minute: once in these 8 s.
    let mut rare = tenant("rare", &h.sim.base_url(), &h.receiver.url());
    rare.intervals.poll_minutes = Some(1);
    for (id, t) in [
        ("heavy", heavy),
        ("light", tenant("light", &h.sim.base_url(), &h.receiver.url())),
        ("rare", rare),
    ] {
        h.env
            .lock()
            .unwrap()
            .insert(format!("S1_TOKEN_{id}"), DEFAULT_TOKEN.into());
        h.store.put_tenant(&t).await.unwrap();
    }

    let t0 = Instant::now();
    let mut log: Vec<(Duration, String, bool)> = Vec::new();
    let pool = serve_polls(
        &h.deps,
        Duration::from_secs(1),
        3,
        Duration::from_secs(60),
        |e| match e {
            PoolEvent::Started(t) => log.push((t0.elapsed(), t.to_owned(), true)),
            PoolEvent::Finished(r) => log.push((t0.elapsed(), r.tenant.clone(), false)),
        },
    );
    let _ = tokio::time::timeout(Duration::from_secs(8), pool).await;

    let starts = |id: &str| -> Vec<Duration> {
        log.iter()
            .filter(|(_, t, started)| t == id && *started)
            .map(|(at, ..)| *at)
            .collect()
    };
    assert_eq!(starts("heavy").len(), 1, "{log:?}");
    assert!(
        !log.iter().any(|(_, t, started)| t == "heavy" && !started),
        "the heavy tenant is still on its backlog: {log:?}"
    );
    assert_eq!(starts("rare").len(), 1, "its own interval: {log:?}");
    // Three workers for four tenants: the heavy one holds one, and the light tenants take
    // turns on the others, each polled on time, every second.
    for id in ["acme", "light"] {
        let at = starts(id);
        assert!(at.len() >= 5, "{id} polled {} times in 8 s: {log:?}", at.len());
        let worst = at.windows(2).map(|w| w[1] - w[0]).max().unwrap();
        assert!(
            worst < Duration::from_millis(2_500),
            "{id} waited {worst:?} between polls (every 1 s): {log:?}"
        );
    }
    assert_eq!(
        h.events("threat.created").len(),
        900,
        "the three light tenants published the lot"
    );
    assert!(slow.events().len() <= 5, "{}", slow.events().len());
}
