//! "Test configuration" (`usecase::tenant_check`) for a Halo tenant, against the simulated S1
//! console and a fake Halo that checks every request against Halo's OpenAPI document: the
//! token, and every configured name found and reported by name; a name Halo lacks is named
//! with what Halo has.

use std::sync::Arc;

use integration_tests::halo::HaloHarness;
use integration_tests::loopback_hosts;
use s1_bridge_sim::HaloConfig;
use s1_shared::store::EmbeddedTable;
use s1_shared::usecase::tenant_check::{Check, CheckStatus, tenant_check};
use serde_json::{Value, json};

async fn harness(extra: Value) -> HaloHarness {
    HaloHarness::start(
        1,
        Arc::new(EmbeddedTable::in_memory().unwrap()),
        HaloConfig {
            rate_limit: 100_000,
            ..HaloConfig::default()
        },
        extra,
    )
    .await
}

async fn checks(h: &HaloHarness) -> Vec<Check> {
    let tenant = h.h.store.get_tenant("acme").await.unwrap().unwrap();
    tenant_check(&tenant, h.h.tokens.clone(), &loopback_hosts()).await
}

/// The check `name`, which must be there.
fn get<'a>(checks: &'a [Check], name: &str) -> &'a Check {
    checks
        .iter()
        .find(|c| c.check == name)
        .unwrap_or_else(|| panic!("no check {name:?}: {checks:#?}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn a_halo_tenant_reports_its_token_and_every_configured_name() {
    let h = harness(json!({
        "user": "SentinelOne",
        "assets": {"default_site": "Contoso HQ"},
    }))
    .await;
    let out = checks(&h).await;
    assert!(out.iter().all(|c| c.status == CheckStatus::Ok), "{out:#?}");
    for (name, details) in [
        ("platform reachable", &["halo accepted a test event"][..]),
        ("Halo token", &["obtained", "scope all"]),
        (
            "Halo permissions",
            &[
                "scope all covers what the options need: read:tickets edit:tickets read:customers edit:customers read:assets edit:assets",
            ],
        ),
        ("Halo API agent", &["agent id 1"]),
        ("Halo ticket type", &["Security Incident (id 21)"]),
        ("Halo user", &["SentinelOne (id 1)"]),
        (
            "Halo statuses",
            &[
                "closed: Closed",
                "in progress: In Progress",
                "open: New, Re-opened",
                "reopen: Re-opened",
                "close: Closed",
            ],
        ),
        (
            "Halo priorities",
            &[
                "critical: Critical",
                "high: High",
                "medium: Medium",
                "low: Low",
                "info: the ticket type's default",
            ],
        ),
        ("Halo default client", &["Contoso Ltd (id 12)"]),
        ("Halo default site", &["Contoso HQ (id 34)"]),
        (
            "Halo asset types",
            &["machineType = server: Server", "otherwise: Workstation"],
        ),
        ("Halo assets' default site", &["Contoso HQ (id 34)"]),
        (
            "Halo asset identity",
            &[
                "Server (key_field = Hostname, key_field2 = Serial Number, key_field3 = Operating System)",
                "Workstation (key_field = Hostname",
                "no asset written by the bridge yet",
            ],
        ),
    ] {
        let c = get(&out, name);
        for d in details {
            assert!(c.detail.contains(d), "{name}: {d:?} in {c:?}");
        }
    }
    assert!(h.refusals().is_empty(), "{:?}", h.refusals());
    assert!(h.halo.tickets().is_empty(), "the test writes nothing to Halo");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_name_halo_lacks_is_named_with_what_it_has_and_the_rest_still_checked() {
    let h = harness(json!({
        "ticket_type": "Security Incidents",
        "statuses": {"closed": ["Closed", "Done"]},
        "assets": {"asset_type": {"mode": "fixed", "asset_type": "Laptop"}},
    }))
    .await;
    let out = checks(&h).await;
    let failed: Vec<&str> = out
        .iter()
        .filter(|c| c.status == CheckStatus::Fail)
        .map(|c| c.check.as_str())
        .collect();
    assert_eq!(
        failed,
        [
            "Halo ticket type",
            "Halo statuses",
            "Halo asset types",
            "Halo asset identity"
        ],
        "{out:#?}"
    );
    assert_eq!(
        get(&out, "Halo ticket type").detail,
        "Halo has no ticket type \"Security Incidents\" (it has: Incident, Service Request, Security Incident)"
    );
    let statuses = &get(&out, "Halo statuses").detail;
    assert!(
        statuses.starts_with("Halo has no status \"Done\" (it has: New, In Progress,"),
        "{statuses}"
    );
    assert_eq!(
        get(&out, "Halo asset types").detail,
        "Halo has no asset type \"Laptop\" (it has: Workstation, Server)"
    );
    for ok in [
        "platform reachable",
        "Halo token",
        "Halo priorities",
        "Halo default client",
    ] {
        assert_eq!(get(&out, ok).status, CheckStatus::Ok, "{out:#?}");
    }

    // Credentials Halo refuses: said once, by "platform reachable"; nothing else asks Halo.
    h.h.env
        .lock()
        .unwrap()
        .insert("HALO_SECRET".into(), "not-the-secret".into());
    let out = checks(&h).await;
    let reach = get(&out, "platform reachable");
    assert!(
        reach.status == CheckStatus::Fail && reach.detail.contains("refused the API application's credentials"),
        "{reach:?}"
    );
    assert!(!out.iter().any(|c| c.check.starts_with("Halo")), "{out:#?}");
}

/// After an asset sync, the test reads one of the bridge's assets back and finds it again with
/// the sync's own lookup, by whatever the tenant matches on: the identity the sync writes lands
/// where matching looks (Halo's key fields), so the next sync adopts it instead of duplicating.
#[tokio::test(flavor = "multi_thread")]
async fn one_asset_is_read_back_and_found_again_by_the_matching_field() {
    for matching in ["inventory_number", "hostname", "serial"] {
        let h = harness(json!({"assets": {"matching": matching, "default_site": "Contoso HQ"}})).await;
        let r = h.sync_assets().await;
        assert_eq!((r.error.as_deref(), r.failed), (None, 0), "{r:?}");
        let c = get(&checks(&h).await, "Halo asset identity").clone();
        assert_eq!(c.status, CheckStatus::Ok, "{matching}: {c:?}");
        let want = match matching {
            "inventory_number" => "its inventory number \"S1:",
            "hostname" => "its computerName (key_field) \"",
            _ => "its serialNumber (key_field2) \"",
        };
        assert!(
            c.detail.contains(want) && c.detail.contains("is found again by the sync's lookup"),
            "{matching}: {c:?}"
        );
        assert!(h.refusals().is_empty(), "{:?}", h.refusals());
    }
}

/// Identity the asset type cannot keep, or keeps where matching cannot find it, is named.
#[tokio::test(flavor = "multi_thread")]
async fn identity_the_asset_type_cannot_keep_is_named() {
    let h = harness(json!({"assets": {
        "matching": "hostname",
        "fields": {"computerName": "notes", "serialNumber": "field:Serial No"},
    }}))
    .await;
    let c = get(&checks(&h).await, "Halo asset identity").clone();
    assert_eq!(c.status, CheckStatus::Fail, "{c:?}");
    for said in [
        "serialNumber -> field:Serial No: asset type Server has no field \"Serial No\" (its fields: Hostname, Serial Number, Operating System, Domain)",
        "matching Hostname compares computerName, but notes is not a field of asset type Server",
    ] {
        assert!(c.detail.contains(said), "{said:?} in {c:?}");
    }
    // A field that is the type's but not a key field: Halo's search does not look there.
    let h = harness(json!({"assets": {"matching": "hostname", "fields": {"computerName": "field:Domain"}}})).await;
    let c = get(&checks(&h).await, "Halo asset identity").clone();
    assert!(
        c.status == CheckStatus::Fail
            && c.detail
                .contains("field:Domain is not a key field of asset type Server"),
        "{c:?}"
    );
}

/// Each option's permissions: with named scopes, what an option needs and the scope lacks is
/// said with what it is for (creating asset types is configuration: `admin`).
#[tokio::test(flavor = "multi_thread")]
async fn the_permissions_each_option_needs_are_checked_against_the_scope() {
    let scoped = "read:tickets edit:tickets read:customers edit:customers read:assets edit:assets";
    let h = harness(json!({"scope": scoped})).await;
    let c = get(&checks(&h).await, "Halo permissions").clone();
    assert_eq!(c.status, CheckStatus::Ok, "{c:?}");
    let h =
        harness(json!({"scope": scoped, "assets": {"asset_type": {"mode": "field", "field": "machineType"}}})).await;
    let c = get(&checks(&h).await, "Halo permissions").clone();
    assert!(
        c.status == CheckStatus::Fail
            && c.detail
                .contains("lacks admin (for creating the asset types Halo lacks"),
        "{c:?}"
    );
    // And it is so: the sync cannot create a type with that scope.
    let r = h.sync_assets().await;
    assert!(r.error.as_deref().is_some_and(|e| e.contains("admin")), "{r:?}");
    let h = harness(json!({"scope": "read:tickets edit:tickets"})).await;
    let c = get(&checks(&h).await, "Halo permissions").clone();
    assert!(
        c.status == CheckStatus::Fail
            && c.detail.contains("read:customers (for the user, client and site names")
            && c.detail.contains("edit:assets (for the asset sync's assets)"),
        "{c:?}"
    );
}

// ---- a tenant that reads unified alerts (UAM) ---------------------------------------------------

/// The checks of tenant `acme` reading unified alerts with a token of `scope` (a writer, or a
/// viewer), on a console holding one Identity alert in the token's site.
async fn uam_checks(scope: &str, can_write: bool) -> Vec<Check> {
    use futures_util::TryStreamExt;
    use integration_tests::poll::PollHarness;
    use s1_bridge_sim::{DetectionSource, NewUnifiedAlerts, SimConfig, TokenScope, TokenSpec};
    use s1_shared::s1::SiteQuery;
    use s1_shared::store::Source;

    let h = PollHarness::start(
        SimConfig {
            threats: 3,
            agents: 10,
            ..SimConfig::default()
        },
        Arc::new(EmbeddedTable::in_memory().unwrap()),
    )
    .await;
    let client = integration_tests::client_for(
        &h.sim,
        s1_bridge_sim::DEFAULT_TOKEN,
        integration_tests::fast_retry_options(),
    );
    let sites: Vec<_> = client
        .sites(&SiteQuery::default())
        .map_ok(|p| p.items)
        .try_concat()
        .await
        .unwrap();
    let site = sites[0].id.clone().unwrap();
    h.sim
        .control()
        .add_unified_alerts(&NewUnifiedAlerts {
            site_id: Some(site.clone()),
            ..NewUnifiedAlerts::one(DetectionSource::Identity)
        })
        .await
        .unwrap();
    let scope = match scope {
        "site" => TokenScope::Sites(vec![site.clone()]),
        _ => TokenScope::Tenant,
    };
    h.sim
        .control()
        .add_token(&TokenSpec {
            scope,
            can_write,
            ..TokenSpec::tenant("uam-check-token", 60)
        })
        .await
        .unwrap();
    h.env
        .lock()
        .unwrap()
        .insert("S1_TOKEN_acme".into(), "uam-check-token".into());
    let mut tenant = h.store.get_tenant("acme").await.unwrap().unwrap();
    tenant.sources = vec![Source::Threats, Source::Unified];
    tenant.site_ids = vec![site];
    tenant_check(&tenant, h.tokens.clone(), &loopback_hosts()).await
}

/// A site-scoped writer: UAM takes the token, reads the alert and offers the status and verdict
/// actions the writeback triggers.
#[tokio::test(flavor = "multi_thread")]
async fn a_unified_tenant_with_a_site_token_passes_the_uam_checks() {
    let out = uam_checks("site", true).await;
    for name in ["UAM token scope", "UAM alerts readable", "UAM write actions"] {
        assert_eq!(get(&out, name).status, CheckStatus::Ok, "{out:#?}");
    }
    assert!(get(&out, "UAM write actions").detail.contains("status ("), "{out:#?}");
}

/// A global token is named as the wrong scope for UAM; a viewer's write actions are disabled,
/// said before its changes would end in the dead letters.
#[tokio::test(flavor = "multi_thread")]
async fn a_global_token_and_a_viewer_fail_the_uam_checks_by_name() {
    let out = uam_checks("tenant", true).await;
    let c = get(&out, "UAM token scope");
    assert!(
        c.status == CheckStatus::Fail && c.detail.contains("account- or site-scoped"),
        "{c:?}"
    );
    let out = uam_checks("site", false).await;
    let c = get(&out, "UAM write actions");
    assert!(
        c.status == CheckStatus::Fail && c.detail.contains("disabled") && c.detail.contains("dead letters"),
        "{c:?}"
    );
}

/// A tenant that does not read unified alerts is not asked about UAM.
#[tokio::test(flavor = "multi_thread")]
async fn a_threats_only_tenant_has_no_uam_checks() {
    let h = integration_tests::poll::PollHarness::start(
        s1_bridge_sim::SimConfig {
            threats: 1,
            agents: 2,
            ..s1_bridge_sim::SimConfig::default()
        },
        Arc::new(EmbeddedTable::in_memory().unwrap()),
    )
    .await;
    let tenant = h.store.get_tenant("acme").await.unwrap().unwrap();
    let out = tenant_check(&tenant, h.tokens.clone(), &loopback_hosts()).await;
    assert!(!out.iter().any(|c| c.check.starts_with("UAM")), "{out:#?}");
}
