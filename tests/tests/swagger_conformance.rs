//! The simulator serves what the vendor's own API export promises, and the client asks only
//! what it allows. Every endpoint the client calls is driven through the client, then each
//! recorded request is checked against swagger_2_1.json (parameters, enums, ranges, bodies) and
//! replayed raw so its response can be checked against the declared response schema.

use std::collections::BTreeSet;

use futures_util::TryStreamExt;
use integration_tests::swagger::Swagger;
use integration_tests::{client_for, fast_retry_options, sim_and_client};
use s1_bridge_sim::{DEFAULT_TOKEN, SimConfig, TokenScope, TokenSpec};
use s1_shared::ApiToken;
use s1_shared::s1::dto::{AnalystVerdict, IncidentStatus};
use s1_shared::s1::{AgentQuery, CloudAlertQuery, SiteQuery, ThreatQuery};
use serde_json::Value;

const EXPECTED: [(&str, &str); 17] = [
    ("GET", "/threats"),
    ("POST", "/threats/incident"),
    ("POST", "/threats/analyst-verdict"),
    ("POST", "/threats/notes"),
    ("GET", "/threats/{threat_id}/notes"),
    ("POST", "/threats/external-ticket-id"),
    ("GET", "/cloud-detection/alerts"),
    ("POST", "/cloud-detection/alerts/incident"),
    ("POST", "/cloud-detection/alerts/analyst-verdict"),
    ("GET", "/agents"),
    ("GET", "/accounts"),
    ("GET", "/sites"),
    ("POST", "/users/api-token-details"),
    ("POST", "/users/generate-api-token"),
    ("GET", "/user"),
    ("GET", "/system/status"),
    ("GET", "/system/info"),
];

#[tokio::test(flavor = "multi_thread")]
async fn every_endpoint_the_client_calls_conforms_to_the_vendor_export() {
    let config = SimConfig {
        threats: 40,
        agents: 30,
        cloud_alerts: 12,
        ..SimConfig::default()
    };
    let (sim, client) = sim_and_client(config).await;
    let control = sim.control();
    for t in ["gen-token", "replay-gen-token"] {
        control.add_token(&TokenSpec::tenant(t, 20)).await.unwrap();
    }

    // Drive every client call once (lists with small pages, so cursors are exercised too).
    let threats: Vec<_> = client
        .threats(&ThreatQuery {
            limit: 15,
            ..ThreatQuery::changed_since(time::macros::datetime!(2025-01-01 0:00 UTC))
        })
        .try_collect()
        .await
        .unwrap();
    assert_eq!(threats.len(), 3, "40 threats in pages of 15");
    let ids: Vec<String> = threats[0].items.iter().take(3).map(|t| t.id.clone()).collect();
    client
        .set_incident_status(&ids, IncidentStatus::Resolved, Some(AnalystVerdict::FalsePositive))
        .await
        .unwrap();
    client
        .set_analyst_verdict(&ids, AnalystVerdict::Suspicious)
        .await
        .unwrap();
    client
        .add_note(&ids, "closed in the platform by analyst@example.com")
        .await
        .unwrap();
    let _: Vec<_> = client.threat_notes(&ids[0]).try_collect().await.unwrap();
    client.set_external_ticket_id(&ids, "INC-1001").await.unwrap();
    let alerts: Vec<_> = client
        .cloud_alerts(&CloudAlertQuery {
            limit: 5,
            ..CloudAlertQuery::default()
        })
        .try_collect()
        .await
        .unwrap();
    let alert_ids: Vec<String> = alerts[0]
        .items
        .iter()
        .filter_map(|a| a.alert_info.alert_id.clone())
        .take(2)
        .collect();
    client
        .set_alert_incident_status(&alert_ids, IncidentStatus::InProgress)
        .await
        .unwrap();
    client
        .set_alert_analyst_verdict(&alert_ids, AnalystVerdict::TruePositive)
        .await
        .unwrap();
    let _: Vec<_> = client
        .agents(&AgentQuery {
            limit: 10,
            ..AgentQuery::default()
        })
        .try_collect()
        .await
        .unwrap();
    let _: Vec<_> = client.accounts().try_collect().await.unwrap();
    let _: Vec<_> = client
        .sites(&SiteQuery {
            limit: 4,
            ..SiteQuery::default()
        })
        .try_collect()
        .await
        .unwrap();
    client.api_token_details(&ApiToken::new(DEFAULT_TOKEN)).await.unwrap();
    client.user().await.unwrap();
    client.system_status().await.unwrap();
    client.system_info().await.unwrap();
    client_for(&sim, "gen-token", fast_retry_options())
        .generate_api_token()
        .await
        .unwrap();

    let swagger = Swagger::load();
    let log = control.requests().await.unwrap();
    let http = reqwest::Client::new();
    let mut covered = BTreeSet::new();
    let mut errors = Vec::new();
    for entry in &log {
        let Some(op) = swagger.operation(&entry.method, &entry.path) else {
            errors.push(format!("{} {}: not in the vendor export", entry.method, entry.path));
            continue;
        };
        errors.extend(swagger.check_query(&op, &entry.query));
        if let Some(body) = &entry.body {
            errors.extend(swagger.check_body(&op, body));
        }
        // Replay the same request raw and hold the response to the declared schema.
        let token = if entry.path == "/users/generate-api-token" {
            "replay-gen-token"
        } else {
            DEFAULT_TOKEN
        };
        let url = format!("{}/web/api/v2.1{}", sim.base_url(), entry.path);
        let mut req = http.request(entry.method.parse().unwrap(), &url).query(&entry.query);
        req = req.header("Authorization", format!("ApiToken {token}"));
        if let Some(body) = &entry.body {
            req = req.json(body);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        let body: Value = resp.json().await.unwrap();
        assert_eq!(status, 200, "{} {} replayed: {body}", entry.method, entry.path);
        errors.extend(swagger.check_response(&op, status, &body));
        errors.extend(
            swagger
                .undeclared_fields(&op, &body)
                .into_iter()
                .map(|f| format!("{}: serves undeclared field {f}", op.template)),
        );
        covered.insert((entry.method.clone(), op.template.clone()));
    }
    errors.sort();
    errors.dedup();
    assert!(
        errors.is_empty(),
        "{} conformance problems:\n{}",
        errors.len(),
        errors.join("\n")
    );
    let expected: BTreeSet<_> = EXPECTED.iter().map(|(m, p)| (m.to_string(), p.to_string())).collect();
    assert_eq!(
        covered, expected,
        "every endpoint the client calls, and only those, was validated"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn error_bodies_match_the_vendor_error_schema() {
    let (sim, _client) = sim_and_client(SimConfig {
        threats: 5,
        agents: 5,
        cloud_alerts: 0,
        ..SimConfig::default()
    })
    .await;
    let sites = sim.control().stats().await.unwrap().sites;
    assert!(sites > 0);
    let control = sim.control();
    let site_id = format!("{}", 1_200_000_000_000_000_001u64);
    control
        .add_token(&TokenSpec {
            scope: TokenScope::Sites(vec![site_id]),
            ..TokenSpec::tenant("site-token", 10)
        })
        .await
        .unwrap();
    let swagger = Swagger::load();
    let http = reqwest::Client::new();
    let base = format!("{}/web/api/v2.1", sim.base_url());
    for (token, path, status, definition) in [
        ("wrong", "/threats?limit=1", 401, "_NoDataSchema_401"),
        (DEFAULT_TOKEN, "/threats?limit=1001", 400, "_NoDataSchema_400"),
        (
            DEFAULT_TOKEN,
            "/threats?limit=1&cursor=bm90LWEtY3Vyc29y",
            400,
            "_NoDataSchema_400",
        ),
        ("site-token", "/accounts?limit=1", 403, "_NoDataSchema_401"),
    ] {
        let resp = http
            .get(format!("{base}{path}"))
            .header("Authorization", format!("ApiToken {token}"))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), status, "{path} with {token}");
        let body: Value = resp.json().await.unwrap();
        let errs = swagger.check_definition(definition, &body);
        assert!(errs.is_empty(), "{path}: {errs:?}");
        let code = body["errors"][0]["code"].as_i64().unwrap();
        assert_eq!(
            code / 10000,
            status as i64,
            "{path}: S1 codes start with the status ({code})"
        );
    }
}

#[test]
fn the_checker_refuses_what_the_export_forbids() {
    let swagger = Swagger::load();
    let op = swagger.operation("GET", "/threats").unwrap();
    let good = serde_json::json!({"data": [{"id": "1", "threatInfo": {"sha1": "", "incidentStatus": "resolved"}}], "pagination": {"totalItems": 1, "nextCursor": null}});
    assert!(swagger.check_response(&op, 200, &good).is_empty());
    for (bad, why) in [
        (
            serde_json::json!({"data": [{"threatInfo": {"incidentStatus": "closed"}}], "pagination": {"totalItems": 1}}),
            "enum",
        ),
        (
            serde_json::json!({"data": [{"threatInfo": {"sha1": null}}], "pagination": {"totalItems": 1}}),
            "null where not nullable",
        ),
        (
            serde_json::json!({"data": [{"threatInfo": {"updatedAt": "yesterday"}}], "pagination": {"totalItems": 1}}),
            "date-time",
        ),
        (
            serde_json::json!({"data": [], "pagination": {"nextCursor": null}}),
            "required totalItems",
        ),
        (
            serde_json::json!({"data": {"sites": []}, "pagination": {"totalItems": 0}}),
            "array expected",
        ),
    ] {
        assert!(
            !swagger.check_response(&op, 200, &bad).is_empty(),
            "should refuse: {why}"
        );
    }
    assert!(
        !swagger.check_query(&op, &[("limit".into(), "1001".into())]).is_empty(),
        "limit above 1000"
    );
    assert!(
        !swagger
            .check_query(&op, &[("updatedAt_gte".into(), "x".into())])
            .is_empty(),
        "misspelt filter"
    );
    assert!(
        !swagger
            .check_query(&op, &[("sortBy".into(), "updated".into())])
            .is_empty(),
        "sortBy enum"
    );
    assert!(
        swagger
            .check_query(&op, &[("incidentStatuses".into(), "resolved,in_progress".into())])
            .is_empty()
    );
    assert!(
        swagger
            .operation("GET", "/threats/123/notes")
            .is_some_and(|o| o.template == "/threats/{threat_id}/notes")
    );
    assert!(
        swagger
            .operation("POST", "/threats/notes")
            .is_some_and(|o| o.template == "/threats/notes")
    );
    assert!(swagger.operation("GET", "/no/such/path").is_none());
}
