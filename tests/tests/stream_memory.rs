//! Paging is a stream: walking a 100,000-threat console holds one page at a time, so memory
//! stays flat in the size of the backlog. Measured with a counting allocator in this test
//! binary (the simulator runs in-process, so its own allocations count too; its data set is
//! allocated before the baseline is taken).

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use futures_util::StreamExt;
use integration_tests::sim_and_client;
use s1_bridge_sim::SimConfig;
use s1_shared::s1::ThreatQuery;

struct Counting;

static CURRENT: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            let now = CURRENT.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
            PEAK.fetch_max(now, Ordering::Relaxed);
        }
        p
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) };
        CURRENT.fetch_sub(layout.size(), Ordering::Relaxed);
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn reset_peak() -> usize {
    let now = CURRENT.load(Ordering::Relaxed);
    PEAK.store(now, Ordering::Relaxed);
    now
}

/// The measurements share the allocator's counters, so they take turns.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_100k_threat_backlog_streams_in_flat_memory() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let (sim, client) = sim_and_client(SimConfig {
        threats: 100_000,
        agents: 5_000,
        cloud_alerts: 0,
        ..SimConfig::default()
    })
    .await;
    assert_eq!(sim.threat_count(), 100_000);
    let query = ThreatQuery::default();

    // Peak for one page, as the yardstick.
    let base = reset_peak();
    {
        let mut pages = std::pin::pin!(client.threats(&query));
        let first = pages.next().await.unwrap().unwrap();
        assert_eq!(first.items.len(), 1000);
    }
    let one_page = PEAK.load(Ordering::Relaxed) - base;

    // Peak for all hundred pages.
    let base = reset_peak();
    let mut seen = 0usize;
    let mut pages_seen = 0usize;
    let mut last = None;
    let mut pages = std::pin::pin!(client.threats(&query));
    while let Some(page) = pages.next().await {
        let page = page.unwrap();
        seen += page.items.len();
        pages_seen += 1;
        let newest = page.items.last().map(|t| t.threat_info.updated_at);
        assert!(newest >= last, "pages arrive in updatedAt order");
        last = newest;
    }
    let all_pages = PEAK.load(Ordering::Relaxed) - base;
    assert_eq!(seen, 100_000);
    assert_eq!(pages_seen, 100);
    eprintln!(
        "peak above baseline: one page {} KiB, 100 pages {} KiB",
        one_page / 1024,
        all_pages / 1024
    );
    // Flat: a hundred pages cost about what one does (some slack for pool and allocator noise);
    // holding them all would cost roughly a hundred times more.
    assert!(
        all_pages < one_page * 2 + (4 << 20),
        "memory grew with the backlog: one page {one_page} B, all {all_pages} B"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn syncing_50k_agents_streams_in_flat_memory() {
    use integration_tests::poll::PollHarness;
    use s1_shared::usecase::sync_assets::{AssetDeps, sync_all};
    let _turn = ONE_AT_A_TIME.lock().await;
    let sync_peak = |agents: usize| async move {
        let h = PollHarness::start(
            SimConfig {
                threats: 1,
                agents,
                cloud_alerts: 0,
                decommissioned_every: 0,
                ..SimConfig::default()
            },
            std::sync::Arc::new(s1_shared::store::EmbeddedTable::in_memory().unwrap()),
        )
        .await;
        let tokens = h.tokens.clone();
        let d = AssetDeps {
            progress: None,
            store: h.store.clone(),
            consoles: integration_tests::poll::consoles_over(tokens.clone()),
            platforms: std::sync::Arc::new(
                s1_shared::platform::Adapters::new(
                    reqwest::Client::new(),
                    tokens,
                    integration_tests::fast_retry_options().retry,
                )
                .with_allowed_hosts(integration_tests::loopback_hosts()),
            ),
            owner: "m".into(),
        };
        // First run pushes everything; the second (nothing changed) is the streaming walk to measure.
        let r = sync_all(&d, std::time::Instant::now() + std::time::Duration::from_secs(600))
            .await
            .unwrap()
            .remove(0);
        assert_eq!(r.created as usize, agents + 3 + 6, "{r:?}");
        // The test receiver keeps every body; empty it so what is measured is the bridge alone.
        h.receiver.clear();
        let base = reset_peak();
        let r = sync_all(&d, std::time::Instant::now() + std::time::Duration::from_secs(600))
            .await
            .unwrap()
            .remove(0);
        assert_eq!(r.unchanged as usize, agents + 3 + 6, "{r:?}");
        PEAK.load(Ordering::Relaxed) - base
    };
    let small = sync_peak(5_000).await;
    let large = sync_peak(50_000).await;
    eprintln!(
        "peak above baseline for an unchanged sync: 5k agents {} KiB, 50k agents {} KiB",
        small / 1024,
        large / 1024
    );
    // Ten times the agents may cost the set of seen UUIDs (a few MiB), never ten times the memory.
    assert!(
        large < small * 3 + (8 << 20),
        "memory grew with the agent count: {small} B -> {large} B"
    );
}
