//! poll-threats end to end: failures, truncated answers, rate limits, outages and tokens.

use super::*;

#[tokio::test(flavor = "multi_thread")]
async fn a_failure_between_pages_resumes_where_it_stopped() {
    let h = PollHarness::start(config(3_000), embedded()).await;
    // Page 2 fails through the whole retry budget.
    h.sim
        .control()
        .add_fault(&FaultRule::new("/threats", FaultKind::Reset, 4).after(1))
        .await
        .unwrap();
    let r = h.poll().await.tenants.remove(0);
    assert_eq!((r.outcome, r.pages, r.published), (Outcome::Failed, 1, 1_000), "{r:?}");
    assert!(r.error.as_deref().unwrap().contains("/threats"), "{r:?}");
    let r = h.poll().await.tenants.remove(0);
    assert_eq!(r.outcome, Outcome::Completed, "{r:?}");
    assert_eq!(r.new, 2_000, "resumed after page 1");
    assert_each_once(&h.events("threat.created"), 3_000);
    assert_eq!(h.receiver.deliveries().len(), 3_000);
}

/// Issue 21 item 5: an answer cut short (the JSON ends early) says nothing about the data; it is
/// read again like any transient fault, and the run completes with every threat once.
#[tokio::test(flavor = "multi_thread")]
async fn a_truncated_answer_from_s1_is_read_again_and_the_run_completes() {
    let h = PollHarness::start(config(3_000), embedded()).await;
    h.sim
        .control()
        .add_fault(&FaultRule::new("/threats", FaultKind::Truncate, 2).after(1))
        .await
        .unwrap();
    let r = h.poll().await.tenants.remove(0);
    assert_eq!((r.outcome, r.error.as_deref()), (Outcome::Completed, None), "{r:?}");
    assert_each_once(&h.events("threat.created"), 3_000);
}

#[tokio::test(flavor = "multi_thread")]
async fn threats_sharing_one_updated_at_across_pages_are_neither_lost_nor_doubled() {
    let flaky = FlakyTable::new(embedded());
    let h = PollHarness::start(
        SimConfig {
            same_updated_at: 700,
            ..config(2_300)
        },
        flaky.clone(),
    )
    .await;
    // Groups of 700 share an instant, so every page boundary splits one. Crash at the
    // checkpoint after page 2 (page 2's stories go with it; page 3 was sent meanwhile): the rerun
    // starts inside the shared instant page 1 ended on, skips page 1's ids listed at it and
    // repeats pages 2 and 3.
    flaky.fail_puts_after("CURSOR#", 1, 1);
    let r = h.poll().await.tenants.remove(0);
    assert_eq!((r.outcome, r.published), (Outcome::Failed, 2_300), "{r:?}");
    let r = h.poll().await.tenants.remove(0);
    assert_eq!(r.outcome, Outcome::Completed, "{r:?}");
    assert_eq!((r.new, r.published), (1_300, 1_300), "pages 2 and 3 again: {r:?}");
    assert_each_once(&h.events("threat.created"), 2_300);
    let deliveries = h.receiver.deliveries();
    assert_eq!(
        deliveries.iter().filter(|d| d.duplicate).count(),
        1_300,
        "pages 2 and 3, recognised"
    );
    assert_eq!(deliveries.len(), 3_600);
    let again = h.poll().await.tenants.remove(0);
    assert_eq!(
        (again.published, again.unchanged),
        (0, 200),
        "the last instant's 200 are re-read and recognised"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn rate_limit_storms_and_server_error_bursts_are_ridden_out() {
    let h = PollHarness::start(config(1_200), embedded()).await;
    let c = h.sim.control();
    c.add_fault(&FaultRule::new(
        "/threats",
        FaultKind::Status {
            status: 429,
            retry_after: None,
            code: None,
        },
        3,
    ))
    .await
    .unwrap();
    c.add_fault(
        &FaultRule::new(
            "/threats",
            FaultKind::Status {
                status: 503,
                retry_after: None,
                code: None,
            },
            2,
        )
        .after(1),
    )
    .await
    .unwrap();
    h.receiver.fail_next(2, 503);
    h.receiver.fail_next(1, 429);
    let r = h.poll().await.tenants.remove(0);
    assert_eq!(r.outcome, Outcome::Completed, "{r:?}");
    assert_each_once(&h.events("threat.created"), 1_200);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_platform_outage_holds_the_checkpoint_and_a_refused_event_is_not_retried_forever() {
    let h = PollHarness::start(config(300), embedded()).await;
    h.receiver.fail_next(1_000, 503);
    let r = h.poll().await.tenants.remove(0);
    assert_eq!((r.outcome, r.published), (Outcome::Failed, 0), "{r:?}");
    assert!(r.error.as_deref().unwrap().contains("unavailable"), "{r:?}");
    assert!(h.receiver.deliveries().is_empty());
    assert_eq!(
        h.store.get_checkpoint("acme", "threats").await.unwrap(),
        None,
        "the checkpoint did not move"
    );

    let h = PollHarness::start(config(300), embedded()).await;
    h.receiver.fail_next(1, 400);
    let r = h.poll().await.tenants.remove(0);
    assert_eq!(
        (r.outcome, r.failed, r.published),
        (Outcome::Completed, 1, 299),
        "{r:?}"
    );
    let r = h.poll().await.tenants.remove(0);
    assert_eq!(r.published, 0, "the refused event is recorded, not retried");
}

#[tokio::test(flavor = "multi_thread")]
async fn after_an_outage_the_next_run_delivers_everything_once() {
    let h = PollHarness::start(config(300), embedded()).await;
    // Down for longer than the retry budget of every delivery in flight.
    h.receiver.fail_next(100_000, 503);
    let r = h.poll().await.tenants.remove(0);
    assert_eq!((r.outcome, r.published), (Outcome::Failed, 0), "{r:?}");
    assert!(r.error.as_deref().unwrap().contains("HTTP 503"), "{r:?}");
    assert_eq!(h.store.get_checkpoint("acme", "threats").await.unwrap(), None);
    h.receiver.recover();
    let r = h.poll().await.tenants.remove(0);
    assert_eq!((r.outcome, r.published), (Outcome::Completed, 300), "{r:?}");
    assert_each_once(&h.events("threat.created"), 300);
}

/// The cached token was rotated away (S1 refuses it) and the secret now holds the new one: the
/// run re-reads the secret once after the 401 and polls with the new token.
#[tokio::test(flavor = "multi_thread")]
async fn a_rotated_token_is_reread_once_after_a_401_and_the_poll_runs() {
    let mut h = PollHarness::start(config(30), embedded()).await;
    let tokens = integration_tests::tokens::CachingTokens::over(h.tokens.clone());
    let source = s1_shared::store::TokenSource::Env {
        var: "S1_TOKEN_acme".into(),
    };
    let set = |v: &str| h.env.lock().unwrap().insert("S1_TOKEN_acme".into(), v.into());
    set("rotated-away-token");
    use s1_shared::secrets::TokenProvider;
    tokens.token(&source).await.unwrap();
    set(s1_bridge_sim::DEFAULT_TOKEN);
    h.deps.consoles = integration_tests::poll::consoles_over(tokens.clone());
    let r = h.poll().await.tenants.remove(0);
    assert_eq!((r.outcome, r.published), (Outcome::Completed, 30), "{r:?}");
    assert_eq!((tokens.invalidations(), tokens.reads()), (1, 2), "one re-read");
    assert_each_once(&h.events("threat.created"), 30);
}

/// One client per tenant per process: the poll runs, the asset sync and the token watch of one
/// process call the tenant's console through the same client, so they share its rate budget.
#[tokio::test(flavor = "multi_thread")]
async fn one_client_per_tenant_serves_every_run_of_the_process() {
    let h = PollHarness::start(config(20), embedded()).await;
    let t = h.store.get_tenant("acme").await.unwrap().unwrap();
    let token = s1_shared::ApiToken::new(s1_bridge_sim::DEFAULT_TOKEN);
    assert_eq!(h.poll().await.tenants[0].outcome, Outcome::Completed);
    let first = h.deps.consoles.client((&t).into(), &token).unwrap();
    assert_eq!(h.poll().await.tenants[0].outcome, Outcome::Completed);
    let r = s1_shared::usecase::sync_assets::sync_all(&h.asset_deps(), Instant::now() + Duration::from_secs(600))
        .await
        .unwrap();
    assert_eq!(r[0].error, None);
    let now = time::OffsetDateTime::now_utc();
    let r = s1_shared::usecase::token_expiry::check_all(&h.token_deps(), now)
        .await
        .unwrap();
    assert_eq!(r[0].error, None);
    let later = h.deps.consoles.client((&t).into(), &token).unwrap();
    assert!(
        first.shares_budget_with(&later),
        "the same client, the same rate budget"
    );
    assert_eq!(h.deps.consoles.clients_built(), 1, "built once for four runs");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_revoked_token_fails_its_tenant_only() {
    let h = PollHarness::start(config(400), embedded()).await;
    let mut broken = tenant("broken", &h.sim.base_url(), &h.receiver.url());
    broken.token = s1_shared::store::TokenSource::Env {
        var: "S1_TOKEN_broken".into(),
    };
    h.env
        .lock()
        .unwrap()
        .insert("S1_TOKEN_broken".into(), "revoked-token".into());
    h.store.put_tenant(&broken).await.unwrap();
    let report = h.poll().await;
    let by: HashMap<_, _> = report.tenants.iter().map(|t| (t.tenant.as_str(), t)).collect();
    assert_eq!(by["acme"].outcome, Outcome::Completed);
    assert_eq!(by["acme"].published, 400);
    assert_eq!(by["broken"].outcome, Outcome::Failed);
    assert!(
        by["broken"].error.as_deref().unwrap().contains("401"),
        "{:?}",
        by["broken"]
    );
    assert!(
        !by["broken"].error.as_deref().unwrap().contains("revoked-token"),
        "no token in the report"
    );
    assert_eq!(report.totals().outcome, Outcome::Failed);
    let emf = report.emf_lines("poll-threats", time::OffsetDateTime::now_utc());
    assert_eq!(emf.len(), 2);
    assert!(
        emf.iter()
            .any(|l| l.contains("\"Tenant\":\"broken\"") && l.contains("\"RunFailed\":1.0"))
    );
}
