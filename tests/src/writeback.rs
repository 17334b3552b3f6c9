//! A status-writeback harness: the webhook handler behind a real HTTP server, the poll harness
//! for stories, and signing helpers.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use s1_shared::platform::{WebhookSecret, sign};
use s1_shared::secrets::LocalTokenProvider;
use s1_shared::usecase::writeback::{WritebackDeps, handle_webhook};
use serde_json::Value;

use crate::fast_retry_options;
use crate::poll::PollHarness;

/// The inbound Standard Webhooks secret the tests' platform signs with (test-only).
pub const INBOUND_SECRET: &str = "whsec_dGhpcy1pcy1hLXRlc3Qtb25seS1pbmJvdW5kLWtleQ==";

/// The handler served over HTTP on a free loopback port; returns its base URL.
pub async fn serve(deps: WritebackDeps) -> String {
    async fn route(
        State(deps): State<Arc<WritebackDeps>>,
        method: Method,
        uri: Uri,
        headers: HeaderMap,
        body: Bytes,
    ) -> (StatusCode, axum::Json<Value>) {
        let r = handle_webhook(&deps, method.as_str(), uri.path(), &headers, &body).await;
        (StatusCode::from_u16(r.status).unwrap(), axum::Json(r.body))
    }
    let app = axum::Router::new()
        .fallback(route)
        .layer(axum::extract::DefaultBodyLimit::max(4 << 20))
        .with_state(Arc::new(deps));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    url
}

/// Writeback deps over the poll harness's store, tokens and simulator.
pub fn deps(h: &PollHarness) -> WritebackDeps {
    let env = h.env.clone();
    let tokens = Arc::new(LocalTokenProvider::with_lookup(move |k| {
        env.lock().unwrap().get(k).cloned()
    }));
    let mut inline = WritebackDeps::inline_client_options().allowing(crate::loopback_hosts());
    inline.retry.min_delay = std::time::Duration::from_millis(5);
    WritebackDeps {
        store: h.store.clone(),
        tokens,
        http: reqwest::Client::new(),
        inline_options: inline,
        retry_options: fast_retry_options(),
    }
}

/// A signed generic webhook POST; returns (status, body).
pub async fn post_generic(base: &str, tenant: &str, id: &str, body: &[u8], secret: &str) -> (u16, Value) {
    let ts = time::OffsetDateTime::now_utc().unix_timestamp();
    let sig = sign(&WebhookSecret::parse(secret).unwrap(), id, ts, body);
    let r = reqwest::Client::new()
        .post(format!("{base}/generic/{tenant}"))
        .header("webhook-id", id)
        .header("webhook-timestamp", ts.to_string())
        .header("webhook-signature", sig)
        .body(body.to_vec())
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

/// A generic `alert.status_changed` body.
pub fn status_changed(alert_key: &str, status: &str, close_reason: Option<&str>, at: time::OffsetDateTime) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "type": "alert.status_changed",
        "timestamp": s1_shared::s1::dto::format_time(at),
        "data": {
            "alert_key": alert_key,
            "status": status,
            "close_reason": close_reason,
            "analysis": "checked the process tree",
            "actor": {"name": "Ana", "email": "ana@example.com"}
        }
    }))
    .unwrap()
}
