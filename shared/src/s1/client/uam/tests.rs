use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::*;
use crate::ApiToken;
use crate::s1::dto::UnifiedAlertsData;
use crate::s1::{ClientOptions, RetryPolicy};

const FIXTURE: &str = include_str!("../../../../../tests/fixtures/s1/unified_alerts_graphql_list.json");

#[test]
fn the_recorded_listing_decodes_with_what_stories_need() {
    let data: UnifiedAlertsData = read_answer(FIXTURE.as_bytes()).expect("the recorded answer decodes");
    let page = &data.alerts;
    assert_eq!(page.total_count, Some(1336));
    let info = page.page_info.as_ref().expect("pageInfo");
    assert_eq!(info.has_next_page, Some(true));
    assert_eq!(info.end_cursor.as_deref(), Some("end="));
    let a = &page.edges[0].node;
    assert_eq!(a.id, "test_id");
    assert_eq!(a.external_id.as_deref(), Some("123456789"));
    assert_eq!(a.status.as_deref(), Some("NEW"));
    assert_eq!(a.analyst_verdict.as_deref(), Some("UNDEFINED"));
    assert_eq!(a.attack_surfaces, ["ENDPOINT"]);
    assert!(a.is_endpoint());
    assert_eq!(a.product(), Some("CWS"));
    assert_eq!(a.file_hash(), Some("abc123"));
    assert_eq!(
        a.updated_at.map(|t| t.unix_timestamp_nanos() / 1_000_000),
        Some(1_766_492_643_056),
        "updatedAt to the millisecond: the checkpoint is compared in ms"
    );
    // Only the deprecated single asset is in the recording: it stands in for `assets`.
    assert_eq!(a.primary_asset().and_then(|x| x.id.as_deref()), Some("test"));
    let scope = a
        .real_time
        .as_ref()
        .and_then(|r| r.scope.as_ref())
        .expect("realTime.scope");
    assert_eq!(scope.site.as_ref().and_then(|s| s.id.as_deref()), Some("12345"));
    assert_eq!(
        a.detection_time
            .as_ref()
            .and_then(|d| d.scope.as_ref())
            .and_then(|s| s.account_id.as_deref()),
        Some("1234")
    );
}

#[test]
fn errors_with_http_200_are_errors_never_an_empty_page() {
    let empty = br#"{"data": {"alerts": {"totalCount": 0, "edges": [], "pageInfo": {"hasNextPage": false}}},
                     "errors": [{"message": "Field 'nope' is undefined", "path": ["alerts", "edges", 0],
                                 "extensions": {"code": "GRAPHQL_VALIDATION_FAILED"}}]}"#;
    match read_answer::<UnifiedAlertsData>(empty) {
        Err(S1Error::GraphQl { errors, partial, .. }) => {
            assert!(partial, "data came with the errors");
            assert_eq!(errors[0].code.as_deref(), Some("GRAPHQL_VALIDATION_FAILED"));
            assert_eq!(errors[0].path, "alerts.edges.0");
        }
        other => panic!("an answer with errors must fail, got {other:?}"),
    }
    let no_data = br#"{"data": null, "errors": [{"message": "Unauthorized"}]}"#;
    let err = read_answer::<UnifiedAlertsData>(no_data).unwrap_err();
    assert!(matches!(err, S1Error::GraphQl { partial: false, .. }), "{err:?}");
    assert!(err.made_no_change());
    assert!(!err.is_retryable());
    assert!(err.to_string().contains("Unauthorized"), "{err}");
    // An entry of an odd shape is still an error.
    let odd = br#"{"errors": ["boom"]}"#;
    assert!(matches!(
        read_answer::<UnifiedAlertsData>(odd),
        Err(S1Error::GraphQl { .. })
    ));
}

#[test]
fn surface_too_many_requests_is_throttling_unless_part_of_the_call_ran() {
    for body in [
        json!({"errors": [{"message": "slow down", "extensions": {"code": "SURFACE_TOO_MANY_REQUESTS"}}]}),
        json!({"data": null, "errors": [{"message": "x", "extensions": {"errorType": "SURFACE_TOO_MANY_REQUESTS"}}]}),
        json!({"errors": [{"message": "SURFACE_TOO_MANY_REQUESTS"}]}),
    ] {
        let err = read_answer::<UnifiedAlertsData>(body.to_string().as_bytes()).unwrap_err();
        assert!(matches!(err, S1Error::RateLimited { .. }), "{body}: {err:?}");
    }
    let partial = json!({"data": {"alerts": null},
                         "errors": [{"message": "x", "extensions": {"code": "SURFACE_TOO_MANY_REQUESTS"}}]});
    let err = read_answer::<UnifiedAlertsData>(partial.to_string().as_bytes()).unwrap_err();
    assert!(matches!(err, S1Error::GraphQl { partial: true, .. }), "{err:?}");
    assert!(!err.made_no_change(), "part of the call may have run");
}

#[test]
fn data_without_errors_decodes_and_a_bad_field_is_named() {
    let ok = br#"{"data": {"alerts": {"edges": []}}, "errors": []}"#;
    assert!(read_answer::<UnifiedAlertsData>(ok).unwrap().alerts.edges.is_empty());
    let bad = br#"{"data": {"alerts": {"edges": [{"node": {"name": "no id"}}]}}}"#;
    match read_answer::<UnifiedAlertsData>(bad) {
        Err(S1Error::Decode { path, .. }) => assert_eq!(path, "data.alerts.edges[0].node"),
        other => panic!("{other:?}"),
    }
    let neither = br#"{"data": null}"#;
    assert!(matches!(
        read_answer::<UnifiedAlertsData>(neither),
        Err(S1Error::Decode { .. })
    ));
}

#[test]
fn mutations_are_told_from_queries() {
    assert!(is_mutation(
        "\n  # set status\n  mutation Set($f: OrFilterSelectionInput!) { x }"
    ));
    assert!(!is_mutation(
        "query AlertsUpdatedSince($first: Int!) { alerts { totalCount } }"
    ));
    assert!(!is_mutation("{ alerts { totalCount } }"));
}

/// A one-connection-at-a-time HTTP server on loopback answering `answers` in turn, recording
/// each request (head and body).
async fn serve(answers: Vec<String>) -> (String, Arc<Mutex<Vec<String>>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    tokio::spawn(async move {
        for answer in answers {
            let (mut sock, _) = listener.accept().await.unwrap();
            let mut buf = Vec::new();
            let mut chunk = [0u8; 4096];
            loop {
                let n = sock.read(&mut chunk).await.unwrap();
                buf.extend_from_slice(&chunk[..n]);
                let text = String::from_utf8_lossy(&buf).to_string();
                if let Some(end) = text.find("\r\n\r\n") {
                    let len = text
                        .lines()
                        .find_map(|l| {
                            l.to_ascii_lowercase()
                                .strip_prefix("content-length:")
                                .map(|v| v.trim().parse::<usize>().unwrap())
                        })
                        .unwrap_or(0);
                    if buf.len() >= end + 4 + len || n == 0 {
                        log.lock().unwrap().push(text);
                        break;
                    }
                }
            }
            let resp = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{answer}",
                answer.len()
            );
            sock.write_all(resp.as_bytes()).await.unwrap();
        }
    });
    (url, seen)
}

fn client(url: &str) -> S1Client {
    let options = ClientOptions {
        retry: RetryPolicy {
            max_attempts: 3,
            min_delay: Duration::from_millis(5),
            max_delay: Duration::from_millis(20),
            max_retry_after: Duration::from_secs(1),
        },
        allowed_hosts: crate::config::AllowedHosts::parse("127.0.0.1").unwrap(),
        ..ClientOptions::default()
    };
    S1Client::new(url, &ApiToken::new("tok-SECRET"), options).unwrap()
}

const DOC: &str = "query Q($first: Int!) { alerts(first: $first) { totalCount edges { node { id } } } }";

#[tokio::test]
async fn a_throttled_query_is_retried_and_the_token_goes_only_in_the_header() {
    let throttled = json!({"errors": [{"message": "later", "extensions": {"code": "SURFACE_TOO_MANY_REQUESTS"}}]});
    let page = json!({"data": {"alerts": {"totalCount": 1, "edges": [{"node": {"id": "a1"}}]}}});
    let (url, seen) = serve(vec![throttled.to_string(), page.to_string()]).await;
    let data: UnifiedAlertsData = client(&url).graphql(DOC, &json!({"first": 5})).await.unwrap();
    assert_eq!(data.alerts.edges[0].node.id, "a1");
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 2, "retried once after the throttling answer");
    let req = &seen[0];
    assert!(req.starts_with("POST /web/api/v2.1/unifiedalerts/graphql "), "{req}");
    assert!(
        req.to_ascii_lowercase().contains("authorization: apitoken tok-secret"),
        "{req}"
    );
    let body = &req[req.find("\r\n\r\n").unwrap() + 4..];
    let body: serde_json::Value = serde_json::from_str(body).unwrap();
    assert_eq!(body, json!({"query": DOC, "variables": {"first": 5}}));
}

#[tokio::test]
async fn throttling_through_every_attempt_is_rate_limited_and_a_mutation_error_is_not_repeated() {
    let throttled = json!({"errors": [{"message": "later", "extensions": {"code": "SURFACE_TOO_MANY_REQUESTS"}}]});
    let (url, seen) = serve(vec![throttled.to_string(); 3]).await;
    let err = client(&url)
        .graphql::<_, UnifiedAlertsData>(DOC, &json!({"first": 5}))
        .await
        .unwrap_err();
    assert!(matches!(err, S1Error::RateLimited { attempts: 3, .. }), "{err:?}");
    assert_eq!(seen.lock().unwrap().len(), 3);
    assert!(!format!("{err:?} {err}").contains("SECRET"));

    let failed = json!({"data": {"addAlertNote": null}, "errors": [{"message": "boom"}]});
    let (url, seen) = serve(vec![failed.to_string(), failed.to_string()]).await;
    let err = client(&url)
        .graphql::<_, serde_json::Value>(
            "mutation N($id: ID!) { addAlertNote(alertId: $id, text: \"x\") { data { id } } }",
            &json!({"id": "a1"}),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, S1Error::GraphQl { partial: true, .. }), "{err:?}");
    assert_eq!(
        seen.lock().unwrap().len(),
        1,
        "a GraphQL error is an answer, not retried"
    );
}
