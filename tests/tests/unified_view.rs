//! What the platform is shown of a unified alert that is no threat: its link in the console
//! (learnt from UAM's `selfLink`), and its verdict's kind: a switch in the console between two
//! kinds that read as one legacy verdict (`TRUE_POSITIVE_MALWARE` to `TRUE_POSITIVE_PUA_ADWARE`:
//! both `true_positive`) reaches the platform once, with the kind; a later read of the same kind
//! sends nothing. Through the simulator's GraphQL endpoint, on both stores.

use std::sync::Arc;

use integration_tests::dynamodb_table;
use integration_tests::poll::{PollHarness, tenant};
use s1_bridge_sim::{SimConfig, UnifiedAlertChange};
use s1_shared::store::{EmbeddedTable, ItemTable, Source};
use s1_shared::usecase::poll_threats::Outcome;

/// A console with one Identity alert (no threat), its tenant reading the unified source:
/// the harness and the alert's id.
async fn one_identity_alert(table: Arc<dyn ItemTable>) -> (PollHarness, String) {
    let h = PollHarness::start(
        SimConfig {
            threats: 0,
            cloud_alerts: 0,
            unified_alerts: 0,
            ..SimConfig::default()
        },
        table,
    )
    .await;
    let mut t = tenant("acme", &h.sim.base_url(), &h.receiver.url());
    t.sources = vec![Source::Unified];
    h.store.put_tenant(&t).await.unwrap();
    let id = integration_tests::writeback_uam::identity_alert(&h.sim).await;
    // The link shape is cached per console address for the process; an earlier test on the same
    // port may have left one.
    integration_tests::client_for(
        &h.sim,
        s1_bridge_sim::DEFAULT_TOKEN,
        integration_tests::fast_retry_options(),
    )
    .forget_alert_link();
    (h, id)
}

/// Alert `id` updated in the console with nothing changed.
async fn touch(h: &PollHarness, id: &str) {
    let change = UnifiedAlertChange {
        touch: true,
        ..UnifiedAlertChange::default()
    };
    h.sim.control().change_unified_alert(id, &change).await.unwrap();
}

async fn switch_between_two_positives(table: Arc<dyn ItemTable>) {
    let (h, id) = one_identity_alert(table).await;
    let change = |verdict: &str| UnifiedAlertChange {
        status: Some("RESOLVED".into()),
        analyst_verdict: Some(verdict.into()),
        ..UnifiedAlertChange::default()
    };
    h.sim
        .control()
        .change_unified_alert(&id, &change("TRUE_POSITIVE_MALWARE"))
        .await
        .unwrap();
    let r = h.poll().await.tenants.remove(0);
    assert_eq!((r.outcome, r.published), (Outcome::Completed, 1), "{r:?}");
    let created = h.events("threat.created");
    assert_eq!(created[0]["data"]["s1"]["verdict"], "true_positive");
    assert_eq!(created[0]["data"]["s1"]["verdict_detail"], "TRUE_POSITIVE_MALWARE");
    assert_eq!(
        created[0]["data"]["s1"]["console_url"],
        format!(
            "{}/alerts/unified/{id}/overview",
            h.sim.base_url().trim_end_matches('/')
        ),
        "the link the console gives the alert (one detail read learns its shape)"
    );

    h.sim
        .control()
        .change_unified_alert(&id, &change("TRUE_POSITIVE_PUA_ADWARE"))
        .await
        .unwrap();
    let r = h.poll().await.tenants.remove(0);
    assert_eq!((r.outcome, r.published), (Outcome::Completed, 1), "{r:?}");
    let updated = h.events("threat.updated");
    assert_eq!(updated.len(), 1);
    assert_eq!(updated[0]["data"]["s1"]["threat_id"], id.as_str());
    assert_eq!(updated[0]["data"]["s1"]["verdict"], "true_positive");
    assert_eq!(updated[0]["data"]["s1"]["verdict_detail"], "TRUE_POSITIVE_PUA_ADWARE");

    // Touched in the console without a change of kind: nothing new for the SOC.
    touch(&h, &id).await;
    let r = h.poll().await.tenants.remove(0);
    assert_eq!((r.outcome, r.published), (Outcome::Completed, 0), "{r:?}");
    assert_eq!(h.events("threat.updated").len(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_switch_between_two_positives_reaches_the_platform_once() {
    switch_between_two_positives(Arc::new(EmbeddedTable::in_memory().unwrap())).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_switch_between_two_positives_reaches_the_platform_once_on_dynamodb() {
    switch_between_two_positives(dynamodb_table("s1bridge-uam").await).await;
}

/// The link read failing (UAM answering it with errors) never fails the poll: the alert is sent
/// with the alerts page as its link, and the console is not asked again within the run's next
/// minutes (a failed read is remembered for 15 minutes).
#[tokio::test(flavor = "multi_thread")]
async fn a_link_that_cannot_be_read_never_fails_the_poll() {
    use s1_bridge_sim::{FaultKind, FaultRule};
    let (h, id) = one_identity_alert(Arc::new(EmbeddedTable::in_memory().unwrap())).await;
    let control = h.sim.control();
    let error = FaultKind::GraphqlError {
        code: "INTERNAL_SERVER_ERROR".into(),
        message: None,
    };
    // The first page goes through; the link read after it fails.
    control
        .add_fault(&FaultRule::new("/unifiedalerts/graphql", error, 1).after(1))
        .await
        .unwrap();
    let r = h.poll().await.tenants.remove(0);
    assert_eq!((r.outcome, r.published), (Outcome::Completed, 1), "{r:?}");
    let created = h.events("threat.created");
    assert_eq!(
        created[0]["data"]["s1"]["console_url"],
        format!(
            "{}/incidents/unified-alerts/{id}",
            h.sim.base_url().trim_end_matches('/')
        )
    );
    let graphql = || async {
        let log = control.requests().await.unwrap();
        log.iter()
            .filter(|r| r.path.ends_with("/unifiedalerts/graphql"))
            .count()
    };
    let before = graphql().await;
    touch(&h, &id).await;
    h.poll().await;
    assert_eq!(graphql().await - before, 1, "one page read, no second link read");
}
