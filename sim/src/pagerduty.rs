//! A fake PagerDuty Events API v2 (`POST /v2/enqueue`), strict the way PagerDuty is
//! (docs/platforms.md §2.1): the routing key is the credential, the body is validated (actions,
//! required payload fields, lengths, severities) and refused with 400 and PagerDuty's error body;
//! events sharing a `dedup_key` act on one open alert (a trigger after a resolve opens a new
//! one; an acknowledge or resolve with no open alert is dropped); more than the per-key limit in
//! 60 s answers 429. It keeps the alerts so tests can assert what an on-call engineer would see.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use serde_json::{Value, json};
use tokio::sync::oneshot;

/// One PagerDuty alert, as the service shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct PdAlert {
    pub dedup_key: String,
    /// `triggered`, `acknowledged` or `resolved`.
    pub status: String,
    pub summary: String,
    pub severity: String,
    pub source: String,
    /// Trigger events deduplicated into this alert (the first included).
    pub triggers: usize,
    pub custom_details: Value,
    pub links: Value,
}

#[derive(Default)]
struct Inner {
    /// Every alert ever opened, in order; a re-trigger after a resolve appends a new one.
    alerts: Vec<PdAlert>,
    /// Accepted events, as received.
    events: Vec<Value>,
    faults: VecDeque<u16>,
    recent: VecDeque<Instant>,
    refused: Vec<Value>,
}

struct PdState {
    routing_key: String,
    per_minute: usize,
    inner: Mutex<Inner>,
}

/// A running fake Events API. Dropping it stops the server.
pub struct FakePagerDuty {
    addr: SocketAddr,
    state: Arc<PdState>,
    stop: Option<oneshot::Sender<()>>,
}

impl FakePagerDuty {
    /// Starts on a free loopback port, accepting only `routing_key` (32 characters, as PagerDuty
    /// issues them), at most `per_minute` events per 60 s (PagerDuty's is about 120).
    ///
    /// # Errors
    /// No port to bind.
    pub async fn start(routing_key: &str, per_minute: usize) -> std::io::Result<Self> {
        let state = Arc::new(PdState {
            routing_key: routing_key.to_owned(),
            per_minute,
            inner: Mutex::new(Inner::default()),
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let app = Router::new()
            .route("/v2/enqueue", post(enqueue))
            .with_state(state.clone());
        let stop = crate::receiver::serve_until_stopped(listener, app);
        Ok(Self {
            addr,
            state,
            stop: Some(stop),
        })
    }

    /// The Events API URL to configure (`events_url`).
    pub fn url(&self) -> String {
        format!("http://{}/v2/enqueue", self.addr)
    }

    fn inner(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.state.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Every alert opened so far, in order.
    pub fn alerts(&self) -> Vec<PdAlert> {
        self.inner().alerts.clone()
    }

    /// Accepted events, as sent.
    pub fn events(&self) -> Vec<Value> {
        self.inner().events.clone()
    }

    /// Bodies refused with 400, as sent.
    pub fn refused(&self) -> Vec<Value> {
        self.inner().refused.clone()
    }

    /// The next `n` requests answer `status` without being processed.
    pub fn fail_next(&self, n: usize, status: u16) {
        self.inner().faults.extend(std::iter::repeat_n(status, n));
    }
}

impl Drop for FakePagerDuty {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }
}

fn invalid(errors: Vec<String>) -> (StatusCode, axum::Json<Value>) {
    (
        StatusCode::BAD_REQUEST,
        axum::Json(json!({"status": "invalid event", "message": "Event object is invalid", "errors": errors})),
    )
}

/// What PagerDuty checks before it accepts an event.
fn validate(body: &Value, routing_key: &str) -> Vec<String> {
    let mut errors = Vec::new();
    let s = |p: &str| body.pointer(p).and_then(Value::as_str);
    match s("/routing_key") {
        None => errors.push("'routing_key' is missing.".to_owned()),
        Some(k) if k.len() != 32 => errors.push("'routing_key' must be 32 characters.".to_owned()),
        Some(k) if k != routing_key => errors.push("Invalid routing key".to_owned()),
        Some(_) => {}
    }
    let action = s("/event_action");
    if !matches!(action, Some("trigger" | "acknowledge" | "resolve")) {
        errors.push("'event_action' is invalid (must be one of: trigger, acknowledge, resolve).".to_owned());
    }
    match s("/dedup_key") {
        Some(k) if k.len() > 255 => errors.push("'dedup_key' is too long (max 255).".to_owned()),
        None if action != Some("trigger") => {
            errors.push("'dedup_key' is required for acknowledge and resolve.".to_owned());
        }
        _ => {}
    }
    if action == Some("trigger") {
        match s("/payload/summary") {
            None | Some("") => errors.push("'payload.summary' is missing or blank.".to_owned()),
            Some(x) if x.chars().count() > 1024 => errors.push("'payload.summary' is too long (max 1024).".to_owned()),
            Some(_) => {}
        }
        if s("/payload/source").is_none_or(str::is_empty) {
            errors.push("'payload.source' is missing or blank.".to_owned());
        }
        if !matches!(s("/payload/severity"), Some("critical" | "error" | "warning" | "info")) {
            errors.push("'payload.severity' is invalid (must be one of: critical, error, warning, info).".to_owned());
        }
        for field in ["timestamp", "component", "group", "class"] {
            if body["payload"].get(field).is_some_and(|v| !v.is_string()) {
                errors.push(format!("'payload.{field}' must be a string when given."));
            }
        }
        if let Some(d) = body.pointer("/payload/custom_details") {
            if !d.is_object() && !d.is_null() {
                errors.push("'payload.custom_details' must be an object.".to_owned());
            }
        }
    }
    errors
}

async fn enqueue(State(state): State<Arc<PdState>>, body: Bytes) -> (StatusCode, axum::Json<Value>) {
    let mut inner = state.inner.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(status) = inner.faults.pop_front() {
        let code = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        return (
            code,
            axum::Json(json!({"status": "error", "message": "fault injected"})),
        );
    }
    let now = Instant::now();
    while inner
        .recent
        .front()
        .is_some_and(|t| now.duration_since(*t) > Duration::from_secs(60))
    {
        inner.recent.pop_front();
    }
    if inner.recent.len() >= state.per_minute {
        return (
            StatusCode::TOO_MANY_REQUESTS,
            axum::Json(
                json!({"status": "throttle event", "message": "Requests for this service are arriving too quickly. Please retry later."}),
            ),
        );
    }
    inner.recent.push_back(now);
    let Ok(event) = serde_json::from_slice::<Value>(&body) else {
        return invalid(vec!["Event object is not valid JSON.".to_owned()]);
    };
    let errors = validate(&event, &state.routing_key);
    if !errors.is_empty() {
        inner.refused.push(event);
        return invalid(errors);
    }
    let s = |p: &str| event.pointer(p).and_then(Value::as_str).unwrap_or_default().to_owned();
    let key = match event.get("dedup_key").and_then(Value::as_str) {
        Some(k) => k.to_owned(),
        None => format!("generated-{}", inner.events.len()),
    };
    let open = inner
        .alerts
        .iter_mut()
        .rev()
        .find(|a| a.dedup_key == key && a.status != "resolved");
    match (s("/event_action").as_str(), open) {
        ("trigger", Some(a)) => {
            a.triggers += 1;
        }
        ("trigger", None) => {
            let alert = PdAlert {
                dedup_key: key.clone(),
                status: "triggered".into(),
                summary: s("/payload/summary"),
                severity: s("/payload/severity"),
                source: s("/payload/source"),
                triggers: 1,
                custom_details: event.pointer("/payload/custom_details").cloned().unwrap_or_default(),
                links: event.get("links").cloned().unwrap_or_default(),
            };
            inner.alerts.push(alert);
        }
        ("acknowledge", Some(a)) => a.status = "acknowledged".into(),
        ("resolve", Some(a)) => a.status = "resolved".into(),
        // PagerDuty drops acknowledge/resolve for a key with no open alert, and still says 202.
        _ => {}
    }
    inner.events.push(event);
    (
        StatusCode::ACCEPTED,
        axum::Json(json!({"status": "success", "message": "Event processed", "dedup_key": key})),
    )
}
