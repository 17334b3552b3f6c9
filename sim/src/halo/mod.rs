//! A fake HaloPSA API (docs/platforms.md §1), stateful, strict and seeded, for tests and the
//! demo.
//!
//! - Every request is checked against Halo's own OpenAPI document (the vendored subset in
//!   `tests/fixtures/halo-openapi/`): unknown paths or methods, undeclared or wrongly typed query
//!   parameters, a body that is not a JSON array, unknown or wrongly typed fields: 400 with a
//!   JSON body naming each problem (`{"status", "title", "errors": [...]}`).
//! - Auth as Halo's: `GET /api/AuthInfo` says where the authorisation server is
//!   (`{"auth_url", "tenant_id"}`); `POST <auth_url>/token` takes form-encoded client
//!   credentials (and `?tenant=` when configured); every other API call needs a valid, unexpired
//!   bearer token whose scopes cover it (`all`, or `read:`/`edit:` `tickets`, `customers`,
//!   `assets`; writing asset types or groups, Halo configuration, also `admin`).
//! - Asset identity as Halo keeps it: an asset's values are `fields[]` items of its type's
//!   fields (another field is refused); `key_field`, `key_field2`, `key_field3` only show the
//!   type's key fields' values, and a write of them is not kept.
//! - Writes are a `POST` of an array to the collection (an element with an existing `id`
//!   updates only the fields it gives, without one creates); a one-element array answers the
//!   written object, a longer one an array of them. Reads: `GET /api/<Collection>/{id}` and lists
//!   (see [`HaloEntity::list_key`] for their shapes).
//! - 500 requests per rolling 300 s (configurable), then 429 with `Retry-After`; injected faults.
//! - A control API (Rust methods) for tests and the demo: records, a technician closing a ticket,
//!   Halo's webhook fired at our endpoint, the request log and the refusals.

mod control;
mod entity;
mod list;
mod seed;
mod server;
mod spec;
mod store;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use serde_json::Value;
use tokio::sync::oneshot;

pub use control::{HaloControlError, HaloStatusRef, HaloWebhookAuth, HaloWebhookPayload};
pub use entity::HaloEntity;
pub use seed::{HALO_API_AGENT_ID, HALO_CLOSED_STATUS_ID, HALO_TECHNICIAN_ID};

/// What `GET /api/AuthInfo` does.
#[derive(Debug, Clone, PartialEq)]
pub enum HaloAuthInfo {
    /// Answers `{"auth_url": "<base><auth_path>", "tenant_id": <tenant>}`.
    Serve,
    /// Answers this status (so a client must fall back to `<base>/auth/token`).
    Fail(u16),
    /// Answers this body with 200, whatever it says: AuthInfo is unauthenticated, so a client
    /// must not trust it with the client secret (another origin, an oversized answer).
    Answer(Value),
}

/// How a fake Halo is set up.
#[derive(Clone)]
pub struct HaloConfig {
    /// The API application's client id.
    pub client_id: String,
    /// The API application's client secret.
    pub client_secret: String,
    /// A hosted instance's tenant: the token request must carry `?tenant=<this>`, and AuthInfo
    /// answers it as `tenant_id`. `None`: self-hosted, any or no `tenant` accepted.
    pub tenant: Option<String>,
    /// Scopes granted to the application (`all`, or e.g. `read:tickets edit:tickets`); a token
    /// request asking for more is refused with `invalid_scope`.
    pub granted_scopes: Vec<String>,
    /// Token lifetime, answered as `expires_in` (seconds).
    pub expires_in: u64,
    /// The authorisation server's path on this host; the token endpoint is `<auth_path>/token`
    /// and AuthInfo's `auth_url` points here. Default `/auth` (Halo's fallback location).
    pub auth_path: String,
    /// What AuthInfo does at start (changeable with [`FakeHalo::set_auth_info`]).
    pub auth_info: HaloAuthInfo,
    /// API requests allowed per rolling `rate_window`.
    pub rate_limit: usize,
    pub rate_window: Duration,
    /// The agent the API application acts as (author of actions it posts).
    pub api_agent_id: i64,
    /// Statuses that count as closed (tickets get `hasbeenclosed`, `open_only` hides them).
    pub closed_status_ids: Vec<i64>,
    /// Records to start with, as JSON objects with their ids (see [`HaloConfig::default_seed`]).
    pub seed: Vec<(HaloEntity, Value)>,
}

impl HaloConfig {
    /// The seed a default config starts with: statuses New=1, In Progress=2, Action Required=3,
    /// Waiting on User=4, Updated=5, On Hold=8, Closed=9, Re-opened=10; ticket types Incident=1,
    /// Service Request=3, Security Incident=21 (default priorities Medium, Low, High); priorities
    /// (`priorityid`) Critical=1, High=2, Medium=3, Low=4 in SLA 1; outcomes Note=1, Private Note=2,
    /// Email User=3, Resolved=4, True Positive=5, False Positive=6, Benign=7, Activity Blocked=8,
    /// Attack Failed=9, Incident=10, Testing=11, Suppressed=12, IT Misconfiguration=13, Policy
    /// Violation=14, PUP/PUA=15, Other=16; asset group Computers=1 with types Workstation=1 and
    /// Server=2; team Security Operations=1; agents S1 Bridge API=1 (the API application's) and
    /// Alex Technician=2; client Contoso Ltd=12 with site Contoso HQ=34 and user SentinelOne=1.
    pub fn default_seed() -> Vec<(HaloEntity, Value)> {
        seed::default_seed()
    }
}

/// The client secret is left out.
impl std::fmt::Debug for HaloConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HaloConfig")
            .field("client_id", &self.client_id)
            .field("client_secret", &"<redacted>")
            .field("tenant", &self.tenant)
            .field("granted_scopes", &self.granted_scopes)
            .field("expires_in", &self.expires_in)
            .field("auth_path", &self.auth_path)
            .field("auth_info", &self.auth_info)
            .field("rate_limit", &self.rate_limit)
            .field("rate_window", &self.rate_window)
            .field("api_agent_id", &self.api_agent_id)
            .field("closed_status_ids", &self.closed_status_ids)
            .field("seed", &self.seed.len())
            .finish()
    }
}

impl Default for HaloConfig {
    fn default() -> Self {
        Self {
            client_id: "halo-test-client-id".into(),
            client_secret: "halo-test-client-secret".into(),
            tenant: None,
            granted_scopes: vec!["all".into()],
            expires_in: 3600,
            auth_path: "/auth".into(),
            auth_info: HaloAuthInfo::Serve,
            rate_limit: 500,
            rate_window: Duration::from_secs(300),
            api_agent_id: HALO_API_AGENT_ID,
            closed_status_ids: vec![HALO_CLOSED_STATUS_ID],
            seed: seed::default_seed(),
        }
    }
}

/// One request the fake answered.
#[derive(Debug, Clone)]
pub struct HaloRequest {
    pub method: String,
    /// The path as sent (with `/api`).
    pub path: String,
    pub query: Vec<(String, String)>,
    /// The JSON body, when there was one (never for the token endpoint: it carries the secret).
    pub body: Option<Value>,
    pub status: u16,
    /// When it was answered.
    pub at: std::time::Instant,
}

/// A request the fake refused (4xx from its checks, not injected faults), with why.
#[derive(Debug, Clone)]
pub struct HaloRefusal {
    pub method: String,
    pub path: String,
    pub status: u16,
    pub reasons: Vec<String>,
}

/// Counters since start.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct HaloStats {
    /// Every request, token requests and faults included.
    pub requests: usize,
    /// Requests under `/api`.
    pub api_requests: usize,
    pub tokens_issued: usize,
    /// Requests refused by a check (any 4xx with reasons; 401 and 429 included).
    pub refused: usize,
    pub unauthorized: usize,
    pub rate_limited: usize,
    /// The most API requests answered in one rolling `rate_window` (what the budget is
    /// measured against: never more than `rate_limit`, so a test that wants to see a client
    /// overrun sets the limit high and compares this with the client's budget).
    pub peak_in_window: usize,
    /// Requests answered by an injected fault.
    pub faults: usize,
}

/// A running fake Halo. Dropping it stops the server.
pub struct FakeHalo {
    addr: SocketAddr,
    shared: Arc<server::Shared>,
    stop: Option<oneshot::Sender<()>>,
}

impl FakeHalo {
    /// Starts on a free loopback port.
    ///
    /// # Errors
    /// No port to bind.
    pub async fn start(config: HaloConfig) -> std::io::Result<Self> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(server::Shared::new(config, format!("http://{addr}")));
        let app = Router::new().fallback(server::handle).with_state(shared.clone());
        let stop = crate::receiver::serve_until_stopped(listener, app);
        Ok(Self {
            addr,
            shared,
            stop: Some(stop),
        })
    }

    /// The Halo URL to configure (`http://127.0.0.1:<port>`; the API is under `/api`).
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The token endpoint (`<base><auth_path>/token`).
    pub fn token_url(&self) -> String {
        format!(
            "{}{}/token",
            self.base_url(),
            self.shared.config.auth_path.trim_end_matches('/')
        )
    }

    /// The configuration it runs with.
    pub fn config(&self) -> &HaloConfig {
        &self.shared.config
    }

    /// A valid bearer token with every granted scope, issued without HTTP.
    pub fn issue_token(&self) -> String {
        let mut inner = self.shared.lock();
        self.shared.issue(&mut inner, self.shared.config.granted_scopes.clone())
    }

    /// Revokes every token issued so far: the next API call with one answers 401.
    pub fn revoke_tokens(&self) {
        self.shared.lock().tokens.clear();
    }

    /// Changes what AuthInfo does from now on.
    pub fn set_auth_info(&self, mode: HaloAuthInfo) {
        self.shared.lock().auth_info = mode;
    }

    /// The next `n` requests (any path) answer `status` without being processed.
    pub fn fail_next(&self, n: usize, status: u16) {
        self.shared.lock().faults.extend(std::iter::repeat_n(status, n));
    }

    /// The next `n` requests to `path` (as sent, e.g. `/api/Agent/me`) answer `status` without
    /// being processed; other paths are answered as usual.
    pub fn fail_path(&self, path: &str, n: usize, status: u16) {
        let mut inner = self.shared.lock();
        inner
            .path_faults
            .extend(std::iter::repeat_n((path.to_owned(), status), n));
    }

    /// The next `n` writes (any method but GET) to `path` are processed as usual, then answered
    /// `status` (the answer lost on the way back, e.g. a gateway's 504): Halo did what was asked.
    pub fn lose_answers(&self, path: &str, n: usize, status: u16) {
        let mut inner = self.shared.lock();
        inner
            .lost_answers
            .extend(std::iter::repeat_n((path.to_owned(), status), n));
    }

    /// Drops every injected fault not yet answered.
    pub fn clear_faults(&self) {
        let mut inner = self.shared.lock();
        inner.faults.clear();
        inner.path_faults.clear();
        inner.lost_answers.clear();
    }

    /// Every request answered, in order.
    pub fn requests(&self) -> Vec<HaloRequest> {
        self.shared.lock().log.clone()
    }

    /// Forgets the request log and the refusals (counters stay).
    pub fn clear_requests(&self) {
        let mut inner = self.shared.lock();
        inner.log.clear();
        inner.refused.clear();
    }

    /// Requests refused by a check, with the reasons.
    pub fn refused(&self) -> Vec<HaloRefusal> {
        self.shared.lock().refused.clone()
    }

    /// Counters since start.
    pub fn stats(&self) -> HaloStats {
        self.shared.lock().stats.clone()
    }

    /// Every record of a collection, as the API renders it, by id.
    pub fn records(&self, entity: HaloEntity) -> Vec<Value> {
        let inner = self.shared.lock();
        let store = &inner.store;
        store.table(entity).iter().map(|r| store.render(entity, r)).collect()
    }

    /// One record by id (GUID or integer; for priorities also `priorityid`).
    pub fn record(&self, entity: HaloEntity, id: impl std::fmt::Display) -> Option<Value> {
        let inner = self.shared.lock();
        let store = &inner.store;
        store.find(entity, &id.to_string()).map(|r| store.render(entity, r))
    }

    /// Every ticket.
    pub fn tickets(&self) -> Vec<Value> {
        self.records(HaloEntity::Ticket)
    }

    /// One ticket.
    pub fn ticket(&self, id: i64) -> Option<Value> {
        self.record(HaloEntity::Ticket, id)
    }

    /// The actions of one ticket, oldest first.
    pub fn actions(&self, ticket_id: i64) -> Vec<Value> {
        self.records(HaloEntity::Action)
            .into_iter()
            .filter(|a| a["ticket_id"].as_i64() == Some(ticket_id))
            .collect()
    }

    /// Every client.
    pub fn clients(&self) -> Vec<Value> {
        self.records(HaloEntity::Client)
    }

    /// Every site.
    pub fn sites(&self) -> Vec<Value> {
        self.records(HaloEntity::Site)
    }

    /// Every asset, inactive ones included.
    pub fn assets(&self) -> Vec<Value> {
        self.records(HaloEntity::Asset)
    }
}

impl Drop for FakeHalo {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }
}
