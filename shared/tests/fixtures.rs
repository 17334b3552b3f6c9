//! Every recorded and synthetic S1 response in tests/fixtures/s1 decodes into our wire types,
//! and the values a user relies on come out right.

use std::path::{Path, PathBuf};

use s1_shared::s1::S1ErrorBody;
use s1_shared::s1::dto::*;
use serde::de::DeserializeOwned;

fn fixtures_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/s1");
    assert!(
        dir.is_dir(),
        "fixtures not found at {} (vendored in tests/fixtures/s1)",
        dir.display()
    );
    dir
}

fn load<T: DeserializeOwned>(rel: &str) -> T {
    let path = fixtures_dir().join(rel);
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    let de = &mut serde_json::Deserializer::from_slice(&bytes);
    serde_path_to_error::deserialize(de)
        .unwrap_or_else(|e| panic!("{rel} does not decode at {}: {}", e.path(), e.inner()))
}

/// Decodes one fixture file with the type that models it; fails on a file nobody mapped.
fn decode_any(rel: &str) {
    match rel {
        "threats_list_v21_same_agent.json" => drop(load::<ListEnvelope<Vec<Threat>>>(rel)),
        "agents_list_data_array.json" => drop(load::<Vec<Agent>>(rel)),
        "service_users_list.json" => drop(load::<ListEnvelope<Vec<ServiceUser>>>(rel)),
        "unified_alerts_graphql_list.json" => drop(load::<DataEnvelope<UnifiedAlertsData>>(rel)),
        "synthetic/accounts_list.json" => drop(load::<ListEnvelope<Vec<Account>>>(rel)),
        "synthetic/affected_result.json" => drop(load::<DataEnvelope<Affected>>(rel)),
        "synthetic/api_token_details.json" => drop(load::<DataEnvelope<TokenDetails>>(rel)),
        "synthetic/generate_api_token.json" => drop(load::<DataEnvelope<GeneratedToken>>(rel)),
        "synthetic/sites_list_page1.json" | "synthetic/sites_list_page2_last.json" => {
            drop(load::<ListEnvelope<SitesData>>(rel))
        }
        "synthetic/system_info.json" => drop(load::<DataEnvelope<SystemInfo>>(rel)),
        "synthetic/system_status.json" => drop(load::<DataEnvelope<SystemStatus>>(rel)),
        "synthetic/threat_notes_list.json" => drop(load::<ListEnvelope<Vec<Note>>>(rel)),
        "synthetic/threats_incident_update_result.json" | "synthetic/threats_analyst_verdict_result.json" => {
            drop(load::<DataEnvelope<ThreatActionResult>>(rel))
        }
        r if r.starts_with("synthetic/error_") => {
            #[derive(serde::Deserialize)]
            struct E {
                errors: Vec<S1ErrorBody>,
            }
            let e: E = load(rel);
            assert!(e.errors[0].code.is_some(), "{rel}: error without a code");
        }
        other => panic!("fixture {other} has no decoder: add it to this test"),
    }
}

#[test]
fn every_s1_fixture_decodes() {
    let dir = fixtures_dir();
    let mut seen = 0;
    for sub in ["", "synthetic"] {
        for entry in std::fs::read_dir(dir.join(sub)).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "json") {
                let rel = path.strip_prefix(&dir).unwrap().to_string_lossy().into_owned();
                decode_any(&rel);
                seen += 1;
            }
        }
    }
    assert!(seen >= 18, "expected every fixture, decoded only {seen}");
}

#[test]
fn real_threats_fixture_keeps_what_correlation_needs() {
    let page: ListEnvelope<Vec<Threat>> = load("threats_list_v21_same_agent.json");
    assert!(page.pagination.is_none(), "the recording has no pagination key");
    let threats = page.data;
    assert_eq!(threats.len(), 4);
    for t in &threats {
        // Detection info is all null in this recording: the uuid must come from real-time info.
        assert_eq!(
            t.agent_uuid(),
            Some("f431b0a1a8744d2a8a92fc88fa3c13bc"),
            "threat {}",
            t.id
        );
        assert!(t.threat_info.updated_at.is_some(), "threat {} lost updatedAt", t.id);
        assert_eq!(t.threat_info.incident_status, Some(IncidentStatus::Resolved));
    }
    let shared: Vec<_> = threats
        .iter()
        .filter(|t| t.file_hash() == Some("d8757a0396d05a1d532422827a70a7966c361366"))
        .map(|t| t.id.as_str())
        .collect();
    assert_eq!(shared, ["715723437013282014", "715723444638526700"]);
    let t = &threats[1];
    assert_eq!(
        format_time(t.threat_info.updated_at.unwrap()),
        "2020-04-02T14:52:28.534110Z",
        "microseconds survive a round trip"
    );
}

#[test]
fn real_agent_fixture_reads_string_booleans() {
    let agents: Vec<Agent> = load("agents_list_data_array.json");
    let a = &agents[0];
    assert_eq!(a.uuid.as_deref(), Some("f431b0a1a8744d2a8a92fc88fa3c13bc"));
    assert_eq!(a.is_decommissioned, Some(true));
    assert_eq!(a.is_active, Some(false));
    assert_eq!(a.is_up_to_date, Some(true), "\"True\" is a boolean");
    assert_eq!(a.machine_type.as_deref(), Some("server"));
}

#[test]
fn paging_end_markers() {
    let su: ListEnvelope<Vec<ServiceUser>> = load("service_users_list.json");
    let p = su.pagination.expect("pagination");
    assert_eq!(p.next_cursor.as_deref(), Some(""));
    assert_eq!(p.next(), None, "an empty cursor ends paging");
    let p1: ListEnvelope<SitesData> = load("synthetic/sites_list_page1.json");
    assert!(p1.pagination.unwrap().next().is_some());
    let p2: ListEnvelope<SitesData> = load("synthetic/sites_list_page2_last.json");
    assert_eq!(p2.pagination.unwrap().next(), None);
    assert!(!p1.data.sites.is_empty());
    let token: ListEnvelope<Vec<ServiceUser>> = load("service_users_list.json");
    assert!(token.data[0].api_token.as_ref().unwrap().expires_at.is_some());
}

#[test]
fn action_results_are_per_threat() {
    let r: DataEnvelope<ThreatActionResult> = load("synthetic/threats_incident_update_result.json");
    assert_eq!(r.data.affected, 1);
    assert_eq!(r.data.details[0].result, Some(ActionResult::Updated));
    assert_eq!(r.data.details[0].analyst_verdict, Some(ActionResult::Updated));
}

#[test]
fn lenient_values() {
    #[derive(serde::Deserialize)]
    struct B {
        #[serde(default, deserialize_with = "lenient_bool")]
        b: Option<bool>,
    }
    for (json, want) in [
        (r#"{"b":true}"#, Some(true)),
        (r#"{"b":"True"}"#, Some(true)),
        (r#"{"b":"false"}"#, Some(false)),
        (r#"{"b":null}"#, None),
        (r#"{}"#, None),
    ] {
        assert_eq!(serde_json::from_str::<B>(json).unwrap().b, want, "{json}");
    }
    assert!(serde_json::from_str::<B>(r#"{"b":"maybe"}"#).is_err());
    let t: Threat = serde_json::from_str(
        r#"{"id":"1","threatInfo":{"sha1":"","incidentStatus":"brand_new","updatedAt":"2025-03-01T10:12:08Z","isFileless":"True"}}"#,
    )
    .unwrap();
    assert_eq!(t.file_hash(), None, "empty sha1 is no hash");
    assert_eq!(t.threat_info.incident_status, Some(IncidentStatus::Unknown));
    assert_eq!(t.threat_info.is_fileless, Some(true));
}
