//! The fake Halo through real HTTP: every kind of refusal, the rate limit, injected faults, a
//! technician closing a ticket and Halo's webhook reaching a listener.

mod halo_support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::routing::post;
use halo_support::Api;
use reqwest::StatusCode;
use s1_bridge_sim::{FakeHalo, HALO_TECHNICIAN_ID, HaloConfig, HaloStatusRef, HaloWebhookAuth, HaloWebhookPayload};
use serde_json::{Value, json};

#[tokio::test]
async fn every_kind_of_bad_request_is_refused_with_the_reason_and_changes_nothing() {
    let halo = FakeHalo::start(HaloConfig::default()).await.unwrap();
    let api = Api::new(&halo).await;
    let before = (halo.tickets().len(), halo.clients().len());
    // (method, path, body, status, a piece of the reason)
    #[rustfmt::skip]
    let cases: Vec<(&str, &str, Option<Value>, u16, &str)> = vec![
        ("GET", "/api/Ticket", None, 400, "unknown path /api/Ticket"),
        ("GET", "/nowhere", None, 400, "unknown path /nowhere"),
        ("PUT", "/api/Tickets", Some(json!([])), 400, "method PUT is not declared for /Tickets"),
        ("GET", "/api/Tickets/abc", None, 400, "path parameter 'id'"),
        ("GET", "/api/Tickets?paginate=true", None, 400, "unknown query parameter 'paginate'"),
        ("GET", "/api/Actions?ticket_id=1&page_size=5", None, 400, "unknown query parameter 'page_size'"),
        ("GET", "/api/Asset?client_id=twelve", None, 400, "'client_id' must be an integer"),
        ("GET", "/api/Site?includeinactive=1", None, 400, "must be a boolean"),
        ("POST", "/api/Tickets", Some(json!({"summary": "x"})), 400, "must be a JSON array of Faults"),
        ("POST", "/api/Tickets", Some(json!([{"summary": "x", "severity": 3}])), 400, "unknown field 'severity'"),
        ("POST", "/api/Client", Some(json!([{"name": 5}])), 400, "[0].name: expected a string"),
        ("POST", "/api/Asset", Some(json!([{"assettype_id": "1"}])), 400, "expected an integer"),
        ("POST", "/api/Client", Some(json!([{"id": null, "name": "x"}])), 400, "null is not allowed"),
        ("POST", "/api/Tickets", Some(json!([{"summary": "x", "client_id": 99}])), 400, "no Client with that id"),
        ("POST", "/api/Tickets", Some(json!([{"id": 5000, "summary": "x"}])), 400, "no Tickets with that id to update"),
        ("POST", "/api/Tickets", Some(json!([{"details": "no summary"}])), 400, "'summary' is required"),
        ("POST", "/api/Site", Some(json!([{"name": "S", "client_id": 12}, {"name": 1}])), 400, "[1].name"),
        ("POST", "/api/Tickets", Some(json!([{"summary": "x", "client_id": 12, "site_id": 34},
            {"summary": "y", "status_id": 77}])), 400, "[1]: 'status_id' 77"),
        ("POST", "/api/Site", Some(json!([{"name": "S", "client_id": 13}])), 400, "'client_id' 13: no Client"),
        ("POST", "/api/Actions", Some(json!([{"ticket_id": 1001, "outcome": "Nope"}])), 400, "no Tickets with that id"),
    ];
    for (method, path, body, want, reason) in &cases {
        let mut r = api
            .http
            .request(method.parse().unwrap(), format!("{}{path}", api.base))
            .bearer_auth(&api.token);
        if let Some(b) = body {
            r = r.json(b);
        }
        let r = r.send().await.unwrap();
        let status = r.status().as_u16();
        let answer: Value = r.json().await.unwrap();
        assert_eq!(status, *want, "{method} {path}: {answer}");
        let errors = answer["errors"].to_string();
        assert!(
            errors.contains(reason),
            "{method} {path}: wanted '{reason}' in {errors}"
        );
    }
    // A body that is not JSON-typed is refused before it is read.
    let r = api
        .http
        .post(format!("{}/api/Tickets", api.base))
        .bearer_auth(&api.token)
        .header("content-type", "text/plain")
        .body(r#"[{"summary": "x"}]"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 415);

    assert_eq!(
        (halo.tickets().len(), halo.clients().len()),
        before,
        "nothing was written"
    );
    let refused = halo.refused();
    assert_eq!(refused.len(), cases.len() + 1);
    assert!(refused[0].reasons[0].contains("unknown path"));
    assert!(
        halo.requests()
            .iter()
            .all(|r| r.status >= 400 || r.path.ends_with("/token") || r.path.ends_with("AuthInfo")),
        "every request here was refused"
    );
}

#[tokio::test]
async fn over_the_limit_answers_429_with_retry_after_and_faults_answer_as_injected() {
    let halo = FakeHalo::start(HaloConfig {
        rate_limit: 5,
        rate_window: Duration::from_secs(120),
        ..HaloConfig::default()
    })
    .await
    .unwrap();
    let token = halo.issue_token();
    let http = reqwest::Client::new();
    let url = format!("{}/api/Status", halo.base_url());
    let mut statuses = Vec::new();
    let mut retry_after = None;
    for _ in 0..7 {
        let r = http.get(&url).bearer_auth(&token).send().await.unwrap();
        statuses.push(r.status().as_u16());
        if r.status() == 429 {
            retry_after = r
                .headers()
                .get("retry-after")
                .map(|v| v.to_str().unwrap().parse::<u64>().unwrap());
        }
    }
    assert_eq!(statuses, [200, 200, 200, 200, 200, 429, 429]);
    assert!(retry_after.is_some_and(|s| (1..=120).contains(&s)), "{retry_after:?}");
    assert_eq!(halo.stats().rate_limited, 2);

    let halo = FakeHalo::start(HaloConfig::default()).await.unwrap();
    let token = halo.issue_token();
    halo.fail_next(2, 503);
    let url = format!("{}/api/Status", halo.base_url());
    let mut statuses = Vec::new();
    for _ in 0..3 {
        statuses.push(
            http.get(&url)
                .bearer_auth(&token)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16(),
        );
    }
    assert_eq!(statuses, [503, 503, 200]);
    assert_eq!(halo.stats().faults, 2);
    let log = halo.requests();
    assert_eq!(log.len(), 3);
    assert_eq!(
        (log[2].method.as_str(), log[2].path.as_str(), log[2].status),
        ("GET", "/api/Status", 200)
    );
}

/// What the listener saw: headers and body of each delivery.
type Seen = Arc<Mutex<Vec<(HeaderMap, Value)>>>;

/// A small webhook endpoint: records every delivery, answers 200 when `Authorization` (or
/// `X-Halo-Secret`) is as expected, else 401.
async fn listener() -> (String, Seen) {
    async fn receive(State(seen): State<Seen>, headers: HeaderMap, body: axum::body::Bytes) -> StatusCode {
        let basic = format!("Basic {}", base64_of("halo:hook-password"));
        let ok = headers
            .get("authorization")
            .is_some_and(|v| v.to_str().unwrap() == basic)
            || headers
                .get("x-halo-secret")
                .is_some_and(|v| v.to_str().unwrap() == "s3cret");
        seen.lock()
            .unwrap()
            .push((headers, serde_json::from_slice(&body).unwrap()));
        if ok { StatusCode::OK } else { StatusCode::UNAUTHORIZED }
    }
    let seen: Seen = Arc::default();
    let app = Router::new()
        .route("/halo/acme", post(receive))
        .with_state(seen.clone());
    let socket = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/halo/acme", socket.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(socket, app).await });
    (url, seen)
}

fn base64_of(s: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(s)
}

fn keys(v: &Value) -> Vec<String> {
    let mut k: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
    k.sort();
    k
}

#[tokio::test]
async fn a_technician_closes_a_ticket_and_halos_webhook_reaches_our_endpoint() {
    let halo = FakeHalo::start(HaloConfig::default()).await.unwrap();
    let api = Api::new(&halo).await;
    let (_, ticket) = api
        .post(
            "/api/Tickets",
            &json!([{"summary": "S1 threat", "client_id": 12, "site_id": 34, "tickettype_id": 21}]),
        )
        .await;
    let id = ticket["id"].as_i64().unwrap();
    let note = halo
        .add_technician_note(id, "looking at it", "Alex Technician")
        .unwrap();
    assert_eq!(
        (note["who_agentid"].as_i64(), note["outcome"].as_str()),
        (Some(HALO_TECHNICIAN_ID), Some("Note"))
    );
    let action = halo
        .close_ticket_as_technician(id, "closed", "False Positive", "Benign installer", "Alex Technician")
        .unwrap();
    assert_eq!(action["id"], 2);
    assert_eq!(action["who"], "Alex Technician");
    assert_eq!(action["outcome"], "False Positive");
    assert_eq!(
        (action["new_status"].as_i64(), action["new_status_name"].as_str()),
        (Some(9), Some("Closed"))
    );
    let closed = halo.ticket(id).unwrap();
    assert_eq!(
        (closed["status_id"].as_i64(), closed["hasbeenclosed"].as_bool()),
        (Some(9), Some(true))
    );
    assert_eq!(closed["closure_note"], "Benign installer");
    // What the adapter reads back through the API.
    let (_, actions) = api.get(&format!("/api/Actions?ticket_id={id}")).await;
    assert_eq!(actions["actions"][1]["outcome"], "False Positive");
    // A new technician is created on first use; unknown outcomes and statuses are refused.
    let by_new = halo.add_technician_note(id, "second opinion", "Sam Analyst").unwrap();
    assert!(by_new["who_agentid"].as_i64().unwrap() > HALO_TECHNICIAN_ID);
    assert!(
        halo.close_ticket_as_technician(id, 9, "Nope", "", "Alex Technician")
            .is_err()
    );
    assert!(halo.set_ticket_status(id, HaloStatusRef::Name("Limbo".into())).is_err());
    halo.set_ticket_status(id, "Re-opened").unwrap();
    assert_eq!(halo.ticket(id).unwrap()["status_id"], 10);
    assert_eq!(halo.actions(id).len(), 3, "a direct status change adds no action");

    let (url, seen) = listener().await;
    let basic = HaloWebhookAuth::Basic {
        username: "halo".into(),
        password: "hook-password".into(),
    };
    let status = halo
        .fire_webhook(&url, id, HaloWebhookPayload::EventOnly, &basic)
        .await
        .unwrap();
    assert_eq!(status, 200);
    let header = HaloWebhookAuth::Header {
        name: "X-Halo-Secret".into(),
        value: "s3cret".into(),
    };
    let status = halo
        .fire_webhook(&url, id, HaloWebhookPayload::FullObject, &header)
        .await
        .unwrap();
    assert_eq!(status, 200);
    let status = halo
        .fire_webhook(&url, id, HaloWebhookPayload::EventOnly, &HaloWebhookAuth::None)
        .await
        .unwrap();
    assert_eq!(status, 401, "our endpoint's answer is returned");
    assert!(
        halo.fire_webhook(&url, 4242, HaloWebhookPayload::FullObject, &basic)
            .await
            .is_err()
    );

    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 3);
    let event_only: Value = serde_json::from_str(include_str!(
        "../../tests/fixtures/platforms/halo/SYNTHETIC-ticket-status-changed.event-only.json"
    ))
    .unwrap();
    let full: Value = serde_json::from_str(include_str!(
        "../../tests/fixtures/platforms/halo/SYNTHETIC-ticket-status-changed.full-object.json"
    ))
    .unwrap();
    assert_eq!(keys(&seen[0].1), keys(&event_only), "the event-only shape");
    assert_eq!(seen[0].1["object_id"], id);
    assert_eq!(seen[0].1["event"], "ticket status changed");
    assert_eq!(keys(&seen[1].1), keys(&full), "the full-object shape");
    assert_eq!(seen[1].1["ticket"]["status_id"], 10);
    assert_eq!(
        seen[1].1["message"],
        format!("The status has been changed for Ticket ID: {id:07}.")
    );
    assert_ne!(seen[0].1["id"], seen[1].1["id"], "each delivery has its own id");
    assert_eq!(seen[1].0["content-type"], "application/json");
}
