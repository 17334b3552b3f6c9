//! The fake Halo's HTTP side. Every request goes through, in order: an injected fault, the rate
//! limit (API requests only), the document's path and method, the bearer token and its scope
//! (except `GET /api/AuthInfo`), the document's query parameters, the content type and body,
//! then the records. Each answer is logged; each refusal is kept with its reasons.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::Response;
use serde_json::{Value, json};

use super::entity::HaloEntity;
use super::list::{Query, list};
use super::spec::Spec;
use super::store::{Actor, Store, get_one, refusal_body};
use super::{HaloAuthInfo, HaloConfig, HaloRefusal, HaloRequest, HaloStats};

pub(crate) struct Token {
    expires: Instant,
    scopes: Vec<String>,
}

pub(crate) struct Inner {
    pub store: Store,
    pub tokens: HashMap<String, Token>,
    pub issued: u64,
    pub faults: VecDeque<u16>,
    /// Faults for one path only: (path as sent, status), first match first.
    pub path_faults: Vec<(String, u16)>,
    /// Answers lost on the way back for writes to one path: (path as sent, status). The write
    /// is processed, then answered with the status (a gateway timing out on a request Halo did).
    pub lost_answers: Vec<(String, u16)>,
    recent: VecDeque<Instant>,
    pub log: Vec<HaloRequest>,
    pub refused: Vec<HaloRefusal>,
    pub stats: HaloStats,
    pub auth_info: HaloAuthInfo,
    pub webhooks_sent: i64,
}

pub(crate) struct Shared {
    pub config: HaloConfig,
    pub base: String,
    pub inner: Mutex<Inner>,
}

impl Shared {
    pub fn new(config: HaloConfig, base: String) -> Self {
        let inner = Inner {
            store: Store::new(&config.seed, config.closed_status_ids.clone()),
            tokens: HashMap::new(),
            issued: 0,
            faults: VecDeque::new(),
            path_faults: Vec::new(),
            lost_answers: Vec::new(),
            recent: VecDeque::new(),
            log: Vec::new(),
            refused: Vec::new(),
            stats: HaloStats::default(),
            auth_info: config.auth_info.clone(),
            webhooks_sent: 0,
        };
        Self {
            config,
            base,
            inner: Mutex::new(inner),
        }
    }

    pub fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The actor for writes made through the API: the application's agent.
    pub fn api_actor(&self, inner: &Inner) -> Actor {
        let id = self.config.api_agent_id;
        let name = inner
            .store
            .find(HaloEntity::Agent, &id.to_string())
            .and_then(|a| a.get("name").and_then(Value::as_str))
            .unwrap_or("API")
            .to_owned();
        Actor {
            agent_id: id,
            name,
            user_id: None,
        }
    }

    /// A new bearer token with these scopes.
    pub fn issue(&self, inner: &mut Inner, scopes: Vec<String>) -> String {
        inner.issued += 1;
        let token = format!("halo-at-{}-{:016x}", inner.issued, fastrand::u64(..));
        let expires = Instant::now() + Duration::from_secs(self.config.expires_in);
        inner.tokens.insert(token.clone(), Token { expires, scopes });
        inner.stats.tokens_issued += 1;
        token
    }
}

/// An answer: status, JSON body, extra headers; `reasons` set when it is a refusal.
struct Reply {
    status: u16,
    body: Value,
    headers: Vec<(header::HeaderName, String)>,
    reasons: Vec<String>,
}

impl Reply {
    fn ok(body: Value) -> Self {
        Self {
            status: 200,
            body,
            headers: Vec::new(),
            reasons: Vec::new(),
        }
    }

    fn refuse(status: u16, reasons: Vec<String>) -> Self {
        Self {
            status,
            body: refusal_body(status, &reasons),
            headers: Vec::new(),
            reasons,
        }
    }

    /// An OAuth error (`{"error": code}`), with the reason kept for the refusal log.
    fn oauth(status: u16, code: &str, reason: &str) -> Self {
        Self {
            body: json!({"error": code, "error_description": reason}),
            ..Self::refuse(status, vec![reason.to_owned()])
        }
    }
}

pub(crate) async fn handle(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri.path().to_owned();
    let query: Vec<(String, String)> = url::form_urlencoded::parse(uri.query().unwrap_or_default().as_bytes())
        .into_owned()
        .collect();
    let token_path = format!("{}/token", shared.config.auth_path.trim_end_matches('/'));
    let is_token = path.eq_ignore_ascii_case(&token_path);
    let api_path = strip_api(&path);
    let mut inner = shared.lock();
    inner.stats.requests += 1;
    let path_fault = inner
        .path_faults
        .iter()
        .position(|(p, _)| p.eq_ignore_ascii_case(&path))
        .map(|i| inner.path_faults.remove(i).1);
    let reply = if let Some(status) = path_fault.or_else(|| inner.faults.pop_front()) {
        inner.stats.faults += 1;
        let mut r = Reply::ok(json!({"error": "fault injected"}));
        r.status = status;
        if status == 429 {
            r.headers.push((header::RETRY_AFTER, "1".into()));
        }
        r
    } else if is_token {
        token(&shared, &mut inner, &method, &query, &headers, &body)
    } else if let Some(api_path) = api_path {
        inner.stats.api_requests += 1;
        let reply = api(&shared, &mut inner, &method, api_path, &query, &headers, &body);
        let lost = (method != Method::GET)
            .then(|| {
                inner
                    .lost_answers
                    .iter()
                    .position(|(p, _)| p.eq_ignore_ascii_case(&path))
            })
            .flatten()
            .map(|i| inner.lost_answers.remove(i).1);
        match lost {
            Some(status) => {
                inner.stats.faults += 1;
                let mut r = Reply::ok(json!({"error": "the answer was lost on the way back"}));
                r.status = status;
                r
            }
            None => reply,
        }
    } else {
        Reply::refuse(400, vec![format!("unknown path {path}: Halo's API lives under /api")])
    };
    let logged_body = if is_token {
        None
    } else {
        serde_json::from_slice(&body).ok()
    };
    inner.log.push(HaloRequest {
        method: method.to_string(),
        path: path.clone(),
        query: query.clone(),
        body: logged_body,
        status: reply.status,
        at: Instant::now(),
    });
    if !reply.reasons.is_empty() {
        inner.stats.refused += 1;
        inner.refused.push(HaloRefusal {
            method: method.to_string(),
            path,
            status: reply.status,
            reasons: reply.reasons.clone(),
        });
    }
    drop(inner);
    let mut response = Response::builder()
        .status(StatusCode::from_u16(reply.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR))
        .header(header::CONTENT_TYPE, "application/json; charset=utf-8");
    for (name, value) in reply.headers {
        response = response.header(name, value);
    }
    response
        .body(Body::from(reply.body.to_string()))
        .unwrap_or_else(|_| Response::new(Body::empty()))
}

/// The path after `/api` (case-insensitive), if it is an API path.
fn strip_api(path: &str) -> Option<&str> {
    let head = path.get(..4)?;
    let rest = &path[4..];
    (head.eq_ignore_ascii_case("/api") && (rest.is_empty() || rest.starts_with('/'))).then_some(rest)
}

/// `POST <auth_path>/token`: OAuth2 client credentials, form-encoded.
fn token(
    shared: &Shared,
    inner: &mut Inner,
    method: &Method,
    query: &[(String, String)],
    headers: &HeaderMap,
    body: &[u8],
) -> Reply {
    let config = &shared.config;
    if method != Method::POST {
        return Reply::oauth(400, "invalid_request", "the token endpoint takes POST");
    }
    let form_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.trim()
                .to_ascii_lowercase()
                .starts_with("application/x-www-form-urlencoded")
        });
    if !form_type {
        return Reply::oauth(
            400,
            "invalid_request",
            "the token request must be application/x-www-form-urlencoded",
        );
    }
    let form: Vec<(String, String)> = url::form_urlencoded::parse(body).into_owned().collect();
    let field = |name: &str| form.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str());
    if field("grant_type") != Some("client_credentials") {
        return Reply::oauth(400, "unsupported_grant_type", "grant_type must be client_credentials");
    }
    if field("client_id") != Some(config.client_id.as_str())
        || field("client_secret") != Some(config.client_secret.as_str())
    {
        return Reply::oauth(401, "invalid_client", "unknown client_id or wrong client_secret");
    }
    if let Some(tenant) = &config.tenant {
        let given = Query(query).get("tenant").map(str::to_owned);
        if !given.is_some_and(|g| g.eq_ignore_ascii_case(tenant)) {
            return Reply::oauth(
                400,
                "invalid_request",
                "this hosted instance needs its ?tenant= on the token request",
            );
        }
    }
    let requested: Vec<String> = field("scope")
        .unwrap_or("all")
        .split_whitespace()
        .map(str::to_owned)
        .collect();
    let granted = &config.granted_scopes;
    if let Some(s) = requested
        .iter()
        .find(|s| !granted.iter().any(|g| g == "all" || g == *s))
    {
        return Reply::oauth(
            400,
            "invalid_scope",
            &format!("scope '{s}' is not granted to this application"),
        );
    }
    let scope = requested.join(" ");
    let access_token = shared.issue(inner, requested);
    Reply::ok(json!({
        "access_token": access_token,
        "token_type": "Bearer",
        "expires_in": config.expires_in,
        "scope": scope,
    }))
}

/// Which scope area a collection needs (`read:<area>` / `edit:<area>`); other collections need
/// only a valid token.
fn scope_area(entity: Option<HaloEntity>) -> Option<&'static str> {
    match entity? {
        HaloEntity::Ticket | HaloEntity::Action => Some("tickets"),
        HaloEntity::Client | HaloEntity::Site | HaloEntity::User => Some("customers"),
        HaloEntity::Asset | HaloEntity::AssetType | HaloEntity::AssetGroup => Some("assets"),
        _ => None,
    }
}

/// The rolling-window rate limit: `Some(retry_after_seconds)` when over.
fn over_limit(config: &HaloConfig, inner: &mut Inner) -> Option<u64> {
    let now = Instant::now();
    while inner
        .recent
        .front()
        .is_some_and(|t| now.duration_since(*t) >= config.rate_window)
    {
        inner.recent.pop_front();
    }
    if inner.recent.len() >= config.rate_limit {
        let oldest = inner.recent.front().copied().unwrap_or(now);
        let wait = config.rate_window.saturating_sub(now.duration_since(oldest));
        return Some(wait.as_secs_f64().ceil().max(1.0) as u64);
    }
    inner.recent.push_back(now);
    inner.stats.peak_in_window = inner.stats.peak_in_window.max(inner.recent.len());
    None
}

fn api(
    shared: &Shared,
    inner: &mut Inner,
    method: &Method,
    path: &str,
    query: &[(String, String)],
    headers: &HeaderMap,
    body: &[u8],
) -> Reply {
    let config = &shared.config;
    if let Some(wait) = over_limit(config, inner) {
        inner.stats.rate_limited += 1;
        let mut r = Reply::refuse(
            429,
            vec![format!(
                "more than {} requests in {:?}",
                config.rate_limit, config.rate_window
            )],
        );
        r.headers.push((header::RETRY_AFTER, wait.to_string()));
        return r;
    }
    let spec = Spec::get();
    let m = match spec.route(method.as_str(), path) {
        Ok(m) => m,
        Err(e) => return Reply::refuse(400, vec![e]),
    };
    let segment = m.template.split('/').find(|s| !s.is_empty()).unwrap_or_default();
    let entity = HaloEntity::from_segment(segment);
    if m.template != "/AuthInfo" {
        let bearer = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, t)| t.trim());
        let now = Instant::now();
        let Some(token) = bearer.and_then(|t| inner.tokens.get(t)).filter(|t| t.expires > now) else {
            inner.stats.unauthorized += 1;
            let mut r = Reply::refuse(
                401,
                vec!["no valid bearer token (missing, unknown, revoked or expired)".into()],
            );
            r.headers
                .push((header::WWW_AUTHENTICATE, "Bearer error=\"invalid_token\"".into()));
            return r;
        };
        if let Some(area) = scope_area(entity) {
            let need = format!("{}:{area}", if method == Method::GET { "read" } else { "edit" });
            if !token.scopes.iter().any(|s| s == "all" || *s == need) {
                return Reply::refuse(403, vec![format!("the token's scopes do not include {need}")]);
            }
        }
        // Asset types and groups are Halo configuration: writing them takes `admin` as well.
        let configures = matches!(entity, Some(HaloEntity::AssetType | HaloEntity::AssetGroup));
        if configures && method != Method::GET && !token.scopes.iter().any(|s| s == "all" || s == "admin") {
            return Reply::refuse(
                403,
                vec!["the token's scopes do not include admin (asset types and groups are configuration)".into()],
            );
        }
    }
    let errors = spec.check_query(&m, method.as_str(), query);
    if !errors.is_empty() {
        return Reply::refuse(400, errors);
    }
    let q = Query(query);
    if m.template == "/AuthInfo" {
        return match inner.auth_info {
            HaloAuthInfo::Serve => {
                let auth_url = format!("{}{}", shared.base, config.auth_path.trim_end_matches('/'));
                let mut info = json!({"auth_url": auth_url});
                if let Some(t) = &config.tenant {
                    info["tenant_id"] = t.clone().into();
                }
                Reply::ok(info)
            }
            HaloAuthInfo::Answer(ref body) => Reply::ok(body.clone()),
            HaloAuthInfo::Fail(status) => {
                let mut r = Reply::ok(json!({"error": "AuthInfo is unavailable"}));
                r.status = status;
                r
            }
        };
    }
    if m.template == "/Agent/me" {
        let me = inner
            .store
            .find(HaloEntity::Agent, &config.api_agent_id.to_string())
            .cloned();
        return Reply::ok(me.map_or(Value::Null, |a| inner.store.render(HaloEntity::Agent, &a)));
    }
    let Some(entity) = entity else {
        return Reply::refuse(
            400,
            vec![format!("{} is declared but not served by the fake", m.template)],
        );
    };
    let id = m.params.iter().find(|(n, _)| n == "id").map(|(_, v)| v.clone());
    match (method.as_str(), id) {
        ("GET", None) => Reply::ok(list(&inner.store, entity, &q)),
        ("GET", Some(id)) => match get_one(&inner.store, entity, &id, q.int("ticket_id")) {
            Ok(v) => Reply::ok(v),
            Err((status, reason)) => Reply::refuse(status, vec![reason]),
        },
        ("DELETE", Some(id)) => {
            if inner.store.delete(entity, &id, q.int("ticket_id")) {
                Reply::ok(Value::Null)
            } else {
                Reply::refuse(404, vec![format!("no {} with id {id}", entity.segment())])
            }
        }
        ("POST", None) if m.has_body() => {
            if !json_content(headers) {
                return Reply::refuse(
                    415,
                    vec!["the body must be sent as application/json (or text/json, application/*+json)".into()],
                );
            }
            let items = match spec.check_body(&m, body) {
                Ok(items) => items,
                Err(errors) => return Reply::refuse(400, errors),
            };
            let actor = shared.api_actor(inner);
            match inner.store.upsert(entity, items, &actor) {
                // One element answers the object itself; several, an array.
                Ok(mut written) if written.len() == 1 => Reply::ok(written.remove(0)),
                Ok(written) => Reply::ok(Value::Array(written)),
                Err(errors) => Reply::refuse(400, errors),
            }
        }
        _ => Reply::refuse(400, vec![format!("{method} {} is not served by the fake", m.template)]),
    }
}

/// Whether the request's content type is one the document lists for request bodies.
fn json_content(headers: &HeaderMap) -> bool {
    let Some(ct) = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let media = ct.split(';').next().unwrap_or_default().trim().to_ascii_lowercase();
    media == "application/json"
        || media == "text/json"
        || (media.starts_with("application/") && media.ends_with("+json"))
}
