//! A fake platform: an HTTP endpoint that receives s1-bridge's signed webhooks the way a careful
//! receiver does (Standard Webhooks: verify the signature and timestamp, de-duplicate on
//! `webhook-id`), records them, and fails on demand. A `threat.batch` request counts as one
//! delivery per event in it, each de-duplicated on its own `id`.

use std::collections::{HashSet, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, KeyInit, Mac};
use serde_json::Value;
use sha2::Sha256;
use tokio::sync::oneshot;

/// One accepted delivery.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub webhook_id: String,
    pub body: Value,
    /// Seen before under the same `webhook-id` (a redelivery): acknowledged, not recorded again.
    pub duplicate: bool,
}

#[derive(Default)]
struct Inner {
    deliveries: Vec<Delivery>,
    seen: HashSet<String>,
    faults: VecDeque<u16>,
    /// Requests still to be taken (recorded) and then left unanswered for this long.
    stalls: VecDeque<std::time::Duration>,
    refused_signatures: usize,
    /// Requests accepted (a batch is one).
    requests: usize,
    batches: usize,
}

struct RecvState {
    key: Vec<u8>,
    /// Off for benchmarks: count and de-duplicate, keep no bodies.
    keep_bodies: bool,
    inner: Mutex<Inner>,
}

/// A running receiver. Dropping it stops the server.
pub struct WebhookReceiver {
    addr: SocketAddr,
    state: Arc<RecvState>,
    stop: Option<oneshot::Sender<()>>,
}

impl WebhookReceiver {
    /// Starts on a free loopback port, verifying with `secret` (`whsec_...`).
    ///
    /// # Errors
    /// A bad secret, or no port to bind.
    pub async fn start(secret: &str) -> std::io::Result<Self> {
        Self::start_on(secret, "127.0.0.1:0".parse().expect("valid address"), true).await
    }

    /// Starts on `addr`; with `keep_bodies` off it only counts (for long benchmark runs).
    ///
    /// # Errors
    /// A bad secret, or the address cannot be bound.
    pub async fn start_on(secret: &str, addr: SocketAddr, keep_bodies: bool) -> std::io::Result<Self> {
        let b64 = secret.trim().strip_prefix("whsec_").unwrap_or(secret.trim());
        let key = STANDARD
            .decode(b64)
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidInput, "secret is not whsec_<base64>"))?;
        let state = Arc::new(RecvState {
            key,
            keep_bodies,
            inner: Mutex::new(Inner::default()),
        });
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let app = Router::new()
            .route("/hooks/s1", post(receive))
            .route("/hooks/stats", axum::routing::get(stats))
            .with_state(state.clone());
        let stop = crate::receiver::serve_until_stopped(listener, app);
        Ok(Self {
            addr,
            state,
            stop: Some(stop),
        })
    }

    /// Where to send webhooks.
    pub fn url(&self) -> String {
        format!("http://{}/hooks/s1", self.addr)
    }

    fn inner(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.state.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Accepted events, de-duplicated by `webhook-id`, in arrival order.
    pub fn events(&self) -> Vec<Value> {
        self.inner()
            .deliveries
            .iter()
            .filter(|d| !d.duplicate)
            .map(|d| d.body.clone())
            .collect()
    }

    /// Every accepted delivery, redeliveries included.
    pub fn deliveries(&self) -> Vec<Delivery> {
        self.inner().deliveries.clone()
    }

    /// Requests refused for a bad or stale signature.
    pub fn refused_signatures(&self) -> usize {
        self.inner().refused_signatures
    }

    /// Requests accepted, and how many of them were batches (each event of a batch is a
    /// delivery of its own in [`deliveries`](Self::deliveries)).
    pub fn requests(&self) -> (usize, usize) {
        let inner = self.inner();
        (inner.requests, inner.batches)
    }

    /// The next `n` requests answer `status` (e.g. 503, 429, 400) without being recorded.
    pub fn fail_next(&self, n: usize, status: u16) {
        let mut inner = self.inner();
        inner.faults.extend(std::iter::repeat_n(status, n));
    }

    /// The next `n` requests are taken (verified and recorded, as a platform that has stored
    /// them) and then left unanswered for `hold`: the sender's timeout fires although the
    /// platform has the delivery.
    pub fn stall_next(&self, n: usize, hold: std::time::Duration) {
        self.inner().stalls.extend(std::iter::repeat_n(hold, n));
    }

    /// Drops the failures and stalls still queued by [`fail_next`](Self::fail_next) and
    /// [`stall_next`](Self::stall_next): the platform is back.
    pub fn recover(&self) {
        let mut inner = self.inner();
        inner.faults.clear();
        inner.stalls.clear();
    }

    /// Forgets everything received.
    pub fn clear(&self) {
        let mut inner = self.inner();
        inner.deliveries.clear();
        inner.seen.clear();
    }
}

/// Serves `app` on `listener` until the returned sender is used or dropped (so dropping the
/// fake platform stops its server).
pub(crate) fn serve_until_stopped(listener: tokio::net::TcpListener, app: Router) -> oneshot::Sender<()> {
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app)
            .with_graceful_shutdown(async {
                let _ = stopped.await;
            })
            .await;
    });
    stop
}

impl Drop for WebhookReceiver {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }
}

fn verified(key: &[u8], headers: &HeaderMap, body: &[u8]) -> Option<String> {
    let get = |k: &str| headers.get(k).and_then(|v| v.to_str().ok());
    let id = get("webhook-id")?;
    let ts: i64 = get("webhook-timestamp")?.parse().ok()?;
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    if (now - ts).abs() > 300 {
        return None;
    }
    for sig in get("webhook-signature")?.split_whitespace() {
        let Some(raw) = sig.strip_prefix("v1,").and_then(|b| STANDARD.decode(b).ok()) else {
            continue;
        };
        let mut mac = Hmac::<Sha256>::new_from_slice(key).ok()?;
        mac.update(format!("{id}.{ts}.").as_bytes());
        mac.update(body);
        if mac.verify_slice(&raw).is_ok() {
            return Some(id.to_owned());
        }
    }
    None
}

async fn receive(State(state): State<Arc<RecvState>>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let (status, stall) = take(&state, &headers, &body);
    if let Some(hold) = stall.filter(|_| status == StatusCode::OK) {
        tokio::time::sleep(hold).await;
    }
    status
}

/// Verifies and records one request; with the stall due for it, if one is.
fn take(state: &RecvState, headers: &HeaderMap, body: &[u8]) -> (StatusCode, Option<std::time::Duration>) {
    let mut inner = state.inner.lock().unwrap_or_else(|e| e.into_inner());
    let stall = inner.stalls.pop_front();
    (answer(state, &mut inner, headers, body), stall)
}

fn answer(state: &RecvState, inner: &mut Inner, headers: &HeaderMap, body: &[u8]) -> StatusCode {
    if let Some(status) = inner.faults.pop_front() {
        return StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    }
    let Some(id) = verified(&state.key, headers, body) else {
        inner.refused_signatures += 1;
        return StatusCode::UNAUTHORIZED;
    };
    let Ok(json) = serde_json::from_slice::<Value>(body) else {
        return StatusCode::BAD_REQUEST;
    };
    inner.requests += 1;
    if json["type"] == "threat.batch" {
        // A batch: each event in it is a delivery of its own, under its own id.
        let Some(events) = json["data"]["events"].as_array() else {
            return StatusCode::BAD_REQUEST;
        };
        if events.iter().any(|e| e["id"].as_str().is_none()) || json["data"]["count"] != events.len() {
            return StatusCode::BAD_REQUEST;
        }
        inner.batches += 1;
        for e in events {
            let id = e["id"].as_str().unwrap_or_default().to_owned();
            let mut e = e.clone();
            if let Some(o) = e.as_object_mut() {
                o.remove("id");
            }
            record(inner, id, e, state.keep_bodies);
        }
        return StatusCode::OK;
    }
    record(inner, id, json, state.keep_bodies);
    StatusCode::OK
}

fn record(inner: &mut Inner, id: String, body: Value, keep_bodies: bool) {
    let duplicate = !inner.seen.insert(id.clone());
    inner.deliveries.push(Delivery {
        webhook_id: id,
        body: if keep_bodies { body } else { Value::Null },
        duplicate,
    });
}

async fn stats(State(state): State<Arc<RecvState>>) -> axum::Json<Value> {
    let inner = state.inner.lock().unwrap_or_else(|e| e.into_inner());
    axum::Json(serde_json::json!({
        "deliveries": inner.deliveries.len(),
        "unique": inner.seen.len(),
        "refused_signatures": inner.refused_signatures,
        "requests": inner.requests,
        "batches": inner.batches,
    }))
}
