//! sync-assets against the simulator and a real receiver: first run creates, second pushes
//! nothing, and each console change produces exactly the right events.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use integration_tests::poll::{PollHarness, tenant};
use s1_bridge_sim::{AgentChange, SimConfig, TokenScope, TokenSpec};
use s1_shared::s1::dto::Agent;
use s1_shared::store::{AssetKind, EmbeddedTable};
use s1_shared::usecase::Tick;
use s1_shared::usecase::sync_assets::{AssetDeps, AssetReport, AssetSettings, Outcome, sync_all};
use serde_json::{Value, json};

async fn harness(agents: usize) -> PollHarness {
    PollHarness::start(
        SimConfig {
            threats: 1,
            agents,
            cloud_alerts: 0,
            ..SimConfig::default()
        },
        Arc::new(EmbeddedTable::in_memory().unwrap()),
    )
    .await
}

fn deps(h: &PollHarness) -> AssetDeps {
    h.asset_deps()
}

/// A deadline far enough for any sync here.
fn soon() -> Instant {
    Instant::now() + Duration::from_secs(600)
}

fn of(h: &PollHarness, kind: &str) -> Vec<Value> {
    h.events(kind)
}

#[tokio::test(flavor = "multi_thread")]
async fn first_run_creates_everything_and_a_second_pushes_nothing() {
    let h = harness(200).await;
    let mut d = deps(&h);
    let ticks: Arc<Mutex<Vec<(Tick, u64)>>> = Arc::default();
    let seen = ticks.clone();
    d.progress = Some(Arc::new(move |r: &AssetReport, t: Tick| {
        seen.lock().unwrap().push((t, r.created))
    }));
    let r = sync_all(&d, soon()).await.unwrap().remove(0);
    assert_eq!(r.error, None);
    assert_eq!(
        ticks.lock().unwrap().last().copied(),
        Some((
            Tick {
                done: 3 + 6 + 200,
                expected: Some(3 + 6 + 200)
            },
            189
        )),
        "the live count covers customers, sites and every agent S1 listed"
    );
    assert_eq!((r.created, r.updated, r.deactivated), (3 + 6 + 180, 0, 0), "{r:?}");
    assert_eq!(of(&h, "customer.upserted").len(), 3);
    assert_eq!(of(&h, "site.upserted").len(), 6);
    let assets = of(&h, "asset.upserted");
    assert_eq!(
        assets.len(),
        180,
        "decommissioned agents never seen active are not created"
    );
    let a = &assets[0]["data"]["object"];
    assert!(
        a["fields"]["hostname"].is_string() && a["asset_type"].is_string() && a["site"]["external_id"].is_string(),
        "{a}"
    );
    assert!(r.emf(time::OffsetDateTime::now_utc()).contains("\"Created\":189.0"));

    let before = h.receiver.events().len();
    let r = sync_all(&d, soon()).await.unwrap().remove(0);
    assert_eq!(
        (r.created, r.updated, r.deactivated, r.unchanged),
        (0, 0, 0, 189),
        "{r:?}"
    );
    assert_eq!(h.receiver.events().len(), before);
}

#[tokio::test(flavor = "multi_thread")]
async fn renames_moves_decommissions_returns_and_removals_each_produce_exactly_their_event() {
    let h = harness(30).await;
    let d = deps(&h);
    sync_all(&d, soon()).await.unwrap();
    let agents: Vec<Value> = of(&h, "asset.upserted")
        .iter()
        .map(|e| e["data"]["object"].clone())
        .collect();
    let uuid = |i: usize| agents[i]["external_id"].as_str().unwrap().to_owned();
    let c = h.sim.control();
    let other_site = {
        let s = agents[0]["site"]["external_id"].as_str().unwrap();
        (1..=6)
            .map(|i| (1_200_000_000_000_000_000u64 + i).to_string())
            .find(|x| x != s)
            .unwrap()
    };
    let n0 = h.receiver.events().len();
    c.change_agent(
        &uuid(0),
        &AgentChange {
            computer_name: Some("RENAMED-01".into()),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    c.change_agent(
        &uuid(1),
        &AgentChange {
            site_id: Some(other_site.clone()),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    c.change_agent(
        &uuid(2),
        &AgentChange {
            decommissioned: Some(true),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    c.change_agent(
        &uuid(3),
        &AgentChange {
            deleted: Some(true),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let r = sync_all(&d, soon()).await.unwrap().remove(0);
    assert_eq!(
        (r.created, r.updated, r.deactivated, r.reactivated),
        (0, 2, 2, 0),
        "{r:?}"
    );
    let new: Vec<Value> = h.receiver.events()[n0..].to_vec();
    assert_eq!(new.len(), 4);
    let find = |kind: &str, id: &str| {
        new.iter()
            .find(|e| e["type"] == kind && e["data"]["external_id"] == id)
            .cloned()
    };
    assert_eq!(
        find("asset.upserted", &uuid(0)).unwrap()["data"]["object"]["fields"]["hostname"],
        "RENAMED-01"
    );
    assert_eq!(
        find("asset.upserted", &uuid(1)).unwrap()["data"]["object"]["site"]["external_id"],
        other_site.as_str()
    );
    assert!(find("asset.deactivated", &uuid(2)).is_some());
    assert_eq!(
        find("asset.deactivated", &uuid(3)).unwrap()["data"]["object"]["reason"],
        "no longer in S1"
    );

    // They come back.
    let n1 = h.receiver.events().len();
    c.change_agent(
        &uuid(2),
        &AgentChange {
            decommissioned: Some(false),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    c.change_agent(
        &uuid(3),
        &AgentChange {
            deleted: Some(false),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let r = sync_all(&d, soon()).await.unwrap().remove(0);
    assert_eq!(
        (r.created, r.updated, r.deactivated, r.reactivated),
        (0, 0, 0, 2),
        "{r:?}"
    );
    let back: Vec<Value> = h.receiver.events()[n1..].to_vec();
    assert!(
        back.iter()
            .all(|e| e["type"] == "asset.upserted" && e["data"]["change"] == "reactivated"),
        "{back:?}"
    );
    let records = h
        .store
        .get_assets("acme", AssetKind::Asset, &[uuid(2), uuid(3)])
        .await
        .unwrap();
    assert!(records.values().all(|r| r.active));
    // And quiet again.
    let r = sync_all(&d, soon()).await.unwrap().remove(0);
    assert_eq!(r.created + r.updated + r.deactivated + r.reactivated, 0, "{r:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_site_scoped_token_derives_customers_from_sites_and_settings_shape_the_assets() {
    let h = harness(60).await;
    let site = (1_200_000_000_000_000_000u64 + 3).to_string();
    h.sim
        .control()
        .add_token(&TokenSpec {
            scope: TokenScope::Sites(vec![site.clone()]),
            ..TokenSpec::tenant("site-only", 30)
        })
        .await
        .unwrap();
    h.env.lock().unwrap().insert("S1_TOKEN_acme".into(), "site-only".into());
    let mut t = tenant("acme", &h.sim.base_url(), &h.receiver.url());
    t.generic_mut().assets = Some(
        serde_json::from_value(json!({
            "field_map": {"computerName": "name", "serialNumber": "serial"},
            "asset_type": {"mode": "rules", "rules": [{"field": "machineType", "equals": "server", "type": "Server"}], "default": "Workstation"},
            "site_map": {site.clone(): {"customer": "Acme Ltd", "site": "London"}},
        }))
        .unwrap(),
    );
    h.store.put_tenant(&t).await.unwrap();
    let r = sync_all(&deps(&h), soon()).await.unwrap().remove(0);
    assert!(r.accounts_from_sites && r.error.is_none(), "{r:?}");
    assert_eq!(of(&h, "customer.upserted").len(), 1, "the site's account, derived");
    assert_eq!(of(&h, "site.upserted").len(), 1);
    let assets = of(&h, "asset.upserted");
    assert!(!assets.is_empty());
    for e in &assets {
        let o = &e["data"]["object"];
        assert_eq!(o["site"]["external_id"], site.as_str());
        assert_eq!(o["placement"], json!({"customer": "Acme Ltd", "site": "London"}));
        assert!(["Server", "Workstation"].contains(&o["asset_type"].as_str().unwrap()));
        assert_eq!(o["fields"].as_object().unwrap().len(), 2, "{o}");
    }

    // "Don't create new assets": a fresh tenant store creates none.
    let h2 = harness(20).await;
    let mut t2 = tenant("acme", &h2.sim.base_url(), &h2.receiver.url());
    t2.generic_mut().assets = Some(serde_json::from_value(json!({"no_create": true})).unwrap());
    h2.store.put_tenant(&t2).await.unwrap();
    let r = sync_all(&deps(&h2), soon()).await.unwrap().remove(0);
    assert_eq!(
        (r.created, r.skipped),
        (3 + 6, 18),
        "customers and sites yes, assets no: {r:?}"
    );
}

#[test]
fn the_recorded_agent_maps_right() {
    let path = integration_tests::fixtures_dir().join("s1/agents_list_data_array.json");
    let agents: Vec<Agent> = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    let a = &agents[0];
    let settings = AssetSettings::default();
    let p = settings.asset_payload(a);
    assert_eq!(p["external_id"], "f431b0a1a8744d2a8a92fc88fa3c13bc");
    assert_eq!(p["asset_type"], "server");
    assert_eq!(p["fields"]["hostname"], "EC2AMAZ-AJ0KANC");
    assert_eq!(p["fields"]["os"], "Windows Server 2016");
    assert_eq!(
        a.is_decommissioned,
        Some(true),
        "a decommissioned server: deactivated, never created"
    );
    assert_eq!(a.is_up_to_date, Some(true), "\"True\" read as a boolean");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_sync_holds_a_short_fenced_lease() {
    use integration_tests::poll::{Hooked, assert_lease_lapses_by, hang_hook, run_until_hung};
    use s1_shared::store::LEASE_TTL;
    use s1_shared::usecase::sync_assets::LEASE_JOB;
    // A sync hung in a push (as a killed one is left) keeps the tenant for at most LEASE_TTL.
    let h = harness(50).await;
    let mut d = deps(&h);
    let (hook, mut hung) = hang_hook();
    d.platforms = Hooked::wrap(d.platforms.clone(), hook);
    let killed_at = run_until_hung(sync_all(&d, soon()), &mut hung).await;
    assert_lease_lapses_by(&h.store, LEASE_JOB, killed_at).await;

    // A sync whose lease another run took (after it lapsed) stops at its next write.
    let h = harness(50).await;
    let mut d = deps(&h);
    let later = time::OffsetDateTime::now_utc() + time::Duration::minutes(20);
    let store = h.store.clone();
    d.platforms = Hooked::wrap(
        d.platforms.clone(),
        Arc::new(move |n| {
            let store = store.clone();
            Box::pin(async move {
                if n == 0 {
                    assert!(
                        store
                            .take_lease("acme", LEASE_JOB, "intruder", LEASE_TTL, later)
                            .await
                            .unwrap()
                            .is_some()
                    );
                }
            })
        }),
    );
    let r = sync_all(&d, soon()).await.unwrap().remove(0);
    assert!(r.error.as_deref().is_some_and(|e| e.contains("lease")), "{r:?}");
    let stored = h
        .store
        .scan_assets("acme", AssetKind::Asset, None, 1_000)
        .await
        .unwrap()
        .items;
    assert!(
        stored.is_empty(),
        "no snapshot written after the lease was lost: {stored:?}"
    );
}

/// The tenant's cached token was rotated away (S1 refuses it) and the secret now holds the new
/// one: the sync re-reads the secret once after the 401 and runs with the new token.
#[tokio::test(flavor = "multi_thread")]
async fn a_rotated_token_is_reread_once_after_a_401_and_the_sync_runs() {
    let h = harness(10).await;
    let tokens = integration_tests::tokens::CachingTokens::over(h.tokens.clone());
    let source = s1_shared::store::TokenSource::Env {
        var: "S1_TOKEN_acme".into(),
    };
    let set = |v: &str| h.env.lock().unwrap().insert("S1_TOKEN_acme".into(), v.into());
    set("rotated-away-token");
    use s1_shared::secrets::TokenProvider;
    tokens.token(&source).await.unwrap();
    set(s1_bridge_sim::DEFAULT_TOKEN);
    let mut d = deps(&h);
    d.consoles = integration_tests::poll::consoles_over(tokens.clone());
    let r = sync_all(&d, soon()).await.unwrap().remove(0);
    assert_eq!(r.error, None, "{r:?}");
    assert_eq!(r.created, 3 + 6 + 9, "{r:?}");
    assert_eq!((tokens.invalidations(), tokens.reads()), (1, 2), "one re-read");
    assert_eq!(
        h.sim.control().stats().await.unwrap().requests["GET /sites"],
        2,
        "one 401, then the call with the re-read token"
    );
}

/// A run out of time stops after the push in hand, keeps it in the snapshot and says `partial`;
/// the next run pushes only the rest. A run that did not list every agent deactivates none.
/// (A deadline already past: every run pushes one change, then stops.)
#[tokio::test(flavor = "multi_thread")]
async fn a_sync_out_of_time_keeps_what_it_pushed_and_the_next_run_continues() {
    let h = harness(30).await;
    let d = deps(&h);
    let stored = |kind: AssetKind| {
        let store = h.store.clone();
        async move { store.scan_assets("acme", kind, None, 1_000).await.unwrap().items.len() }
    };
    // A second tenant, whose turn comes after the time is spent: left for the next run.
    h.env
        .lock()
        .unwrap()
        .insert("S1_TOKEN_globex".into(), s1_bridge_sim::DEFAULT_TOKEN.into());
    let mut globex = tenant("globex", &h.sim.base_url(), &h.receiver.url());
    globex.enabled = true;
    h.store.put_tenant(&globex).await.unwrap();
    let rs = sync_all(&d, Instant::now()).await.unwrap();
    let r = &rs[0];
    assert_eq!(
        (r.outcome, r.created, r.error.as_deref()),
        (Outcome::Partial, 1, None),
        "{r:?}"
    );
    assert_eq!(h.receiver.events().len(), 1);
    assert_eq!(
        (rs[1].tenant.as_str(), rs[1].outcome, rs[1].created),
        ("globex", Outcome::Partial, 0)
    );
    assert!(
        rs[1].note.as_deref().unwrap_or_default().contains("not started"),
        "{rs:?}"
    );
    globex.enabled = false;
    h.store.put_tenant(&globex).await.unwrap();
    assert_eq!(
        stored(AssetKind::Customer).await,
        1,
        "what was pushed is in the snapshot"
    );
    assert_eq!(stored(AssetKind::Asset).await, 0);

    let r = sync_all(&d, soon()).await.unwrap().remove(0);
    assert_eq!(
        (r.outcome, r.unchanged, r.error.as_deref()),
        (Outcome::Completed, 1, None),
        "{r:?}"
    );
    let events = h.receiver.events();
    assert_eq!(events.len() as u64, 1 + r.created, "nothing pushed twice");
    let agents: Vec<String> = of(&h, "asset.upserted")
        .iter()
        .map(|e| e["data"]["object"]["external_id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(stored(AssetKind::Asset).await, agents.len());

    // Two renames and one agent gone from S1: a run out of time pushes one rename and does not
    // take the agent it never reached for gone.
    let c = h.sim.control();
    for (i, change) in [
        (
            0,
            AgentChange {
                computer_name: Some("RENAMED-0".into()),
                ..Default::default()
            },
        ),
        (
            1,
            AgentChange {
                computer_name: Some("RENAMED-1".into()),
                ..Default::default()
            },
        ),
        (
            2,
            AgentChange {
                deleted: Some(true),
                ..Default::default()
            },
        ),
    ] {
        c.change_agent(&agents[i], &change).await.unwrap();
    }
    let r = sync_all(&d, Instant::now()).await.unwrap().remove(0);
    assert_eq!(
        (r.outcome, r.updated, r.deactivated, r.error.as_deref()),
        (Outcome::Partial, 1, 0, None),
        "{r:?}"
    );
    let r = sync_all(&d, soon()).await.unwrap().remove(0);
    assert_eq!(
        (r.outcome, r.updated, r.deactivated, r.error.as_deref()),
        (Outcome::Completed, 1, 1, None),
        "the other rename, and the agent gone: {r:?}"
    );
    assert_eq!(of(&h, "asset.upserted").len(), agents.len() + 2);
    assert_eq!(of(&h, "asset.deactivated").len(), 1);
}
