//! HTTP front of the simulator: S1's routes under `/web/api/v2.1`, the control API under
//! `/_sim`, fault injection, and an accept loop that can reset a connection on demand.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::{Arc, Mutex, MutexGuard};

use axum::body::{Body, to_bytes};
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use serde_json::{Value, json};
use time::OffsetDateTime;
use tokio::net::TcpListener;
use tokio::sync::{Notify, oneshot};

use crate::control::RequestLogEntry;
use crate::faults::{FaultKind, FaultRule};
use crate::render;
use crate::world::{Cursor, CursorEnd, Note, SimConfig, TokenScope, TokenSpec, World, micros, query_hash};

const API: &str = "/web/api/v2.1";
/// Requests kept in the log the control API serves; older ones are dropped.
const REQUEST_LOG_CAP: usize = 100_000;

pub(crate) struct Shared {
    world: Mutex<World>,
    requests: Mutex<Vec<RequestLogEntry>>,
    counts: Mutex<HashMap<String, u64>>,
    started: std::time::Instant,
}

impl Shared {
    fn world(&self) -> MutexGuard<'_, World> {
        // A panic while holding the lock must not take the whole simulator down with it.
        self.world.lock().unwrap_or_else(|e| e.into_inner())
    }
}

type Shr = Arc<Shared>;

/// A running simulator. Dropping it stops the server.
pub struct Sim {
    addr: SocketAddr,
    shared: Shr,
    stop: Option<oneshot::Sender<()>>,
}

impl Sim {
    /// Generates the console from `config` and serves it on a free loopback port.
    ///
    /// # Errors
    /// When no loopback port can be bound.
    pub async fn start(config: SimConfig) -> std::io::Result<Sim> {
        Self::start_on(config, "127.0.0.1:0".parse().expect("valid address")).await
    }

    /// As [`Sim::start`], on a given address.
    ///
    /// # Errors
    /// When the address cannot be bound.
    pub async fn start_on(config: SimConfig, addr: SocketAddr) -> std::io::Result<Sim> {
        let shared = Arc::new(Shared {
            world: Mutex::new(World::generate(&config)),
            requests: Mutex::new(Vec::new()),
            counts: Mutex::new(HashMap::new()),
            started: std::time::Instant::now(),
        });
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let router = router(shared.clone());
        let (stop, mut stopped) = oneshot::channel();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = &mut stopped => break,
                    accepted = listener.accept() => {
                        let Ok((stream, _)) = accepted else { continue };
                        tokio::spawn(serve_connection(stream, router.clone()));
                    }
                }
            }
        });
        Ok(Sim {
            addr,
            shared,
            stop: Some(stop),
        })
    }

    /// The console origin, e.g. `http://127.0.0.1:41234` (the API is under `/web/api/v2.1`).
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// A client for the control API of this simulator.
    pub fn control(&self) -> crate::SimControl {
        crate::SimControl::new(&self.base_url())
    }

    /// Number of threats held.
    pub fn threat_count(&self) -> usize {
        self.shared.world().threats.len()
    }

    /// Blocks until the process is asked to stop (for the binary).
    pub async fn wait(mut self) {
        let _ = tokio::signal::ctrl_c().await;
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }
}

impl Drop for Sim {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }
}

/// Lets a handler cut its own connection with a TCP reset.
#[derive(Clone)]
struct ConnReset(Arc<Notify>);

async fn serve_connection(stream: tokio::net::TcpStream, router: Router) {
    let _ = stream.set_nodelay(true);
    // A duplicate descriptor of the same socket lets us set SO_LINGER=0 at the moment of a reset
    // fault, so closing sends RST instead of FIN; ordinary closes stay graceful.
    let dup: Option<OwnedFd> = stream.as_fd().try_clone_to_owned().ok();
    let reset = Arc::new(Notify::new());
    let svc = TowerToHyperService::new(router.layer(Extension(ConnReset(reset.clone()))));
    let conn = hyper::server::conn::http1::Builder::new()
        .keep_alive(true)
        .serve_connection(TokioIo::new(stream), svc);
    tokio::select! {
        _ = conn => {}
        _ = reset.notified() => {
            if let Some(fd) = &dup {
                let _ = socket2::SockRef::from(fd).set_linger(Some(std::time::Duration::ZERO));
            }
        }
    }
}

fn router(shared: Shr) -> Router {
    let api = Router::new()
        .route("/threats", get(get_threats))
        .route("/threats/incident", post(post_incident))
        .route("/threats/analyst-verdict", post(post_verdict))
        .route("/threats/notes", post(post_notes))
        .route("/threats/{id}/notes", get(get_notes))
        .route("/threats/external-ticket-id", post(post_external_ticket))
        .route("/cloud-detection/alerts", get(get_alerts))
        .route("/cloud-detection/alerts/incident", post(post_alert_incident))
        .route("/cloud-detection/alerts/analyst-verdict", post(post_alert_verdict))
        .route("/agents", get(get_agents))
        .route("/accounts", get(get_accounts))
        .route("/sites", get(get_sites))
        .route("/users/api-token-details", post(post_token_details))
        .route("/users/generate-api-token", post(post_generate_token))
        .route("/user", get(get_user))
        .route("/system/status", get(get_system_status))
        .route("/system/info", get(get_system_info))
        .fallback(|| async { ApiError::new(StatusCode::NOT_FOUND, 4040010, "Not Found", Some("No such API path")) })
        .layer(middleware::from_fn_with_state(shared.clone(), faults_and_log));
    Router::new()
        .nest(API, api)
        .route("/_sim/faults", post(ctl_add_fault).delete(ctl_clear_faults))
        .route("/_sim/tokens", post(ctl_add_token))
        .route("/_sim/settings", post(ctl_settings))
        .route("/_sim/requests", get(ctl_requests).delete(ctl_clear_requests))
        .route("/_sim/stats", get(ctl_stats))
        .route("/_sim/threats", post(ctl_add_threats))
        .route("/_sim/agents/{uuid}", post(ctl_change_agent))
        .route("/_sim/threats/{id}", get(ctl_threat))
        .route("/_sim/threats/{id}/console", post(ctl_console_update))
        .with_state(shared)
}

// ---- errors ------------------------------------------------------------------------------

struct ApiError {
    status: StatusCode,
    code: i64,
    title: &'static str,
    detail: Option<String>,
    retry_after: Option<String>,
}

impl ApiError {
    fn new(status: StatusCode, code: i64, title: &'static str, detail: Option<&str>) -> Self {
        Self {
            status,
            code,
            title,
            detail: detail.map(str::to_owned),
            retry_after: None,
        }
    }
    fn validation(detail: impl Into<String>) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            code: 4000010,
            title: "Validation Error",
            detail: Some(detail.into()),
            retry_after: None,
        }
    }
    fn auth() -> Self {
        Self::new(StatusCode::UNAUTHORIZED, 4010010, "Authentication Failed", None)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = json!({"errors": [{"code": self.code, "title": self.title, "detail": self.detail}]});
        let mut resp = (self.status, Json(body)).into_response();
        if let Some(ra) = self.retry_after.and_then(|r| HeaderValue::from_str(&r).ok()) {
            resp.headers_mut().insert(header::RETRY_AFTER, ra);
        }
        resp
    }
}

type ApiResult = Result<Response, ApiError>;

fn ok(v: Value) -> ApiResult {
    Ok(Json(v).into_response())
}

// ---- middleware: request log, counters, faults ----------------------------------------------

async fn faults_and_log(State(shared): State<Shr>, req: Request, next: Next) -> Response {
    let method = req.method().to_string();
    let path = req
        .uri()
        .path()
        .strip_prefix(API)
        .unwrap_or(req.uri().path())
        .to_owned();
    let query: Vec<(String, String)> = req.uri().query().map(url_pairs).unwrap_or_default();
    // Bodies are small JSON documents; keep a parsed copy for tests that check what was sent.
    let (parts, body) = req.into_parts();
    let bytes = to_bytes(body, 1 << 20).await.unwrap_or_default();
    let logged_body = if bytes.is_empty() {
        None
    } else {
        Some(serde_json::from_slice(&bytes).unwrap_or(Value::Null))
    };
    let req = Request::from_parts(parts, Body::from(bytes));
    {
        let at_ms = shared.started.elapsed().as_millis() as u64;
        let mut log = shared.requests.lock().unwrap_or_else(|e| e.into_inner());
        if log.len() >= REQUEST_LOG_CAP {
            log.remove(0);
        }
        log.push(RequestLogEntry {
            method: method.clone(),
            path: path.clone(),
            query,
            body: logged_body,
            at_ms,
        });
    }
    *shared
        .counts
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .entry(format!("{method} {path}"))
        .or_default() += 1;

    let fault = shared.world().faults.take(&method, &path);
    match fault {
        None => next.run(req).await,
        Some(FaultKind::Status {
            status,
            retry_after,
            code,
        }) => {
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            let (default_code, title) = match status.as_u16() {
                429 => (4290010, "Too Many Requests"),
                401 => (4010010, "Authentication Failed"),
                403 => (4030010, "Forbidden"),
                400 => (4000010, "Validation Error"),
                s if s >= 500 => (5000010, "Internal server error"),
                _ => (4000000, "Error"),
            };
            let mut e = ApiError::new(status, code.unwrap_or(default_code), title, None);
            e.retry_after = retry_after;
            e.into_response()
        }
        Some(FaultKind::Slow { millis }) => {
            tokio::time::sleep(std::time::Duration::from_millis(millis)).await;
            next.run(req).await
        }
        Some(FaultKind::Truncate) => {
            let resp = next.run(req).await;
            let (mut parts, body) = resp.into_parts();
            let bytes = to_bytes(body, usize::MAX).await.unwrap_or_default();
            let cut = bytes.slice(..bytes.len() / 2);
            parts
                .headers
                .insert(header::CONTENT_LENGTH, HeaderValue::from(cut.len()));
            Response::from_parts(parts, Body::from(cut))
        }
        Some(FaultKind::Reset) => {
            if let Some(ConnReset(n)) = req.extensions().get::<ConnReset>() {
                n.notify_one();
            }
            std::future::pending::<Response>().await
        }
    }
}

fn url_pairs(q: &str) -> Vec<(String, String)> {
    url::form_urlencoded::parse(q.as_bytes()).into_owned().collect()
}

// ---- auth ----------------------------------------------------------------------------------

fn authenticate(w: &World, headers: &HeaderMap) -> Result<TokenSpec, ApiError> {
    let value = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(ApiError::auth)?;
    let token = value.strip_prefix("ApiToken ").ok_or_else(ApiError::auth)?;
    let spec = w.tokens.get(token).ok_or_else(ApiError::auth)?;
    if spec.expires_at <= OffsetDateTime::now_utc() {
        return Err(ApiError::auth());
    }
    Ok(spec.clone())
}

// ---- list plumbing ---------------------------------------------------------------------------

const COMMON: [&str; 7] = [
    "limit",
    "skip",
    "cursor",
    "sortBy",
    "sortOrder",
    "countOnly",
    "skipCount",
];

struct ListReq {
    limit: usize,
    skip: usize,
    cursor: Option<Cursor>,
    sort_by: String,
    desc: bool,
    count_only: bool,
    skip_count: bool,
    qhash: u64,
    params: HashMap<String, String>,
}

impl ListReq {
    fn parse(
        pairs: &[(String, String)],
        filters: &[&str],
        sorts: &[&str],
        default_sort: &str,
    ) -> Result<Self, ApiError> {
        let mut params = HashMap::new();
        for (k, v) in pairs {
            if !COMMON.contains(&k.as_str()) && !filters.contains(&k.as_str()) {
                return Err(ApiError::validation(format!("Unknown field: {k}")));
            }
            if params.insert(k.clone(), v.clone()).is_some() {
                return Err(ApiError::validation(format!("Field given twice: {k}")));
            }
        }
        let int = |k: &str, default: usize, max: usize, min: usize| -> Result<usize, ApiError> {
            match params.get(k) {
                None => Ok(default),
                Some(v) => match v.parse::<usize>() {
                    Ok(n) if (min..=max).contains(&n) => Ok(n),
                    _ => Err(ApiError::validation(format!("{k}: must be between {min} and {max}"))),
                },
            }
        };
        let limit = int("limit", 10, 1000, 1)?;
        let skip = int("skip", 0, 1000, 0)?;
        let sort_by = params.get("sortBy").cloned().unwrap_or_else(|| default_sort.to_owned());
        if !sorts.contains(&sort_by.as_str()) {
            return Err(ApiError::validation(format!(
                "sortBy: must be one of {}",
                sorts.join(", ")
            )));
        }
        let desc = match params.get("sortOrder").map(String::as_str) {
            None | Some("asc") => false,
            Some("desc") => true,
            Some(_) => return Err(ApiError::validation("sortOrder: must be asc or desc")),
        };
        let qhash = query_hash(pairs);
        let cursor = match params.get("cursor") {
            None => None,
            Some(c) => match Cursor::decode(c) {
                Some(c) if c.query_hash == qhash => Some(c),
                _ => return Err(ApiError::validation("Invalid cursor value received")),
            },
        };
        let flag = |k: &str| params.get(k).is_some_and(|v| v.eq_ignore_ascii_case("true"));
        Ok(Self {
            limit,
            skip,
            cursor,
            sort_by,
            desc,
            count_only: flag("countOnly"),
            skip_count: flag("skipCount"),
            qhash,
            params,
        })
    }

    fn time(&self, k: &str) -> Result<Option<i128>, ApiError> {
        match self.params.get(k) {
            None => Ok(None),
            Some(v) => OffsetDateTime::parse(v, &time::format_description::well_known::Rfc3339)
                .map(|t| Some(micros(t)))
                .map_err(|_| ApiError::validation(format!("{k}: not a valid date-time"))),
        }
    }

    /// The `__gte/__gt/__lte/__lt` bounds S1 accepts on a timestamp field.
    fn range(&self, field: &str) -> Result<TimeRange, ApiError> {
        Ok(TimeRange {
            gte: self.time(&format!("{field}__gte"))?,
            gt: self.time(&format!("{field}__gt"))?,
            lte: self.time(&format!("{field}__lte"))?,
            lt: self.time(&format!("{field}__lt"))?,
        })
    }

    fn csv(&self, k: &str) -> Option<Vec<String>> {
        self.params.get(k).map(|v| {
            v.split(',')
                .map(|s| s.trim().to_owned())
                .filter(|s| !s.is_empty())
                .collect()
        })
    }

    /// Sorts the matches, applies cursor/skip/limit, and builds the envelope's pagination.
    fn paginate(&self, mut matches: Vec<(i128, u64, usize)>, end: CursorEnd) -> (Vec<usize>, Value) {
        let total = matches.len();
        if let Some(c) = self.cursor {
            let after = (c.key, c.id);
            matches.retain(|m| {
                if self.desc {
                    (m.0, m.1) < after
                } else {
                    (m.0, m.1) > after
                }
            });
        }
        let cmp = |a: &(i128, u64, usize), b: &(i128, u64, usize)| {
            let o = (a.0, a.1).cmp(&(b.0, b.1));
            if self.desc { o.reverse() } else { o }
        };
        let wanted = self.skip + self.limit;
        if matches.len() > wanted {
            matches.select_nth_unstable_by(wanted, cmp);
        }
        let more = matches.len() > wanted;
        matches.truncate(wanted);
        matches.sort_unstable_by(cmp);
        let page: Vec<_> = matches.iter().skip(self.skip).copied().collect();
        let next = match (more, page.last()) {
            (true, Some(last)) => json!(
                Cursor {
                    query_hash: self.qhash,
                    key: last.0,
                    id: last.1
                }
                .encode()
            ),
            _ => match end {
                CursorEnd::Null => Value::Null,
                CursorEnd::NullString => json!("null"),
                CursorEnd::Empty => json!(""),
            },
        };
        let mut pagination = json!({"totalItems": if self.skip_count { 0 } else { total }, "nextCursor": next});
        if self.count_only {
            pagination["nextCursor"] = Value::Null;
            return (Vec::new(), pagination);
        }
        (page.into_iter().map(|m| m.2).collect(), pagination)
    }
}

fn id_set(ids: Option<Vec<String>>) -> Option<std::collections::HashSet<u64>> {
    ids.map(|v| v.iter().filter_map(|s| s.parse().ok()).collect())
}

struct TimeRange {
    gte: Option<i128>,
    gt: Option<i128>,
    lte: Option<i128>,
    lt: Option<i128>,
}

impl TimeRange {
    fn contains(&self, v: i128) -> bool {
        self.gte.is_none_or(|b| v >= b)
            && self.gt.is_none_or(|b| v > b)
            && self.lte.is_none_or(|b| v <= b)
            && self.lt.is_none_or(|b| v < b)
    }
}

// ---- threats ---------------------------------------------------------------------------------

const THREAT_FILTERS: [&str; 16] = [
    "updatedAt__gte",
    "updatedAt__gt",
    "updatedAt__lte",
    "updatedAt__lt",
    "createdAt__gte",
    "createdAt__gt",
    "createdAt__lte",
    "createdAt__lt",
    "ids",
    "siteIds",
    "accountIds",
    "agentIds",
    "incidentStatuses",
    "analystVerdicts",
    "contentHashes",
    "tenant",
];

async fn get_threats(
    State(s): State<Shr>,
    headers: HeaderMap,
    Query(pairs): Query<Vec<(String, String)>>,
) -> ApiResult {
    let w = s.world();
    let token = authenticate(&w, &headers)?;
    let q = ListReq::parse(&pairs, &THREAT_FILTERS, &["updatedAt", "createdAt", "id"], "createdAt")?;
    let updated = q.range("updatedAt")?;
    let created = q.range("createdAt")?;
    let ids = id_set(q.csv("ids"));
    let sites = id_set(q.csv("siteIds"));
    let accounts = id_set(q.csv("accountIds"));
    let agents = id_set(q.csv("agentIds"));
    let statuses = q.csv("incidentStatuses");
    let verdicts = q.csv("analystVerdicts");
    let hashes = q.csv("contentHashes");
    let matches: Vec<(i128, u64, usize)> = w
        .threats
        .iter()
        .enumerate()
        .filter(|(_, t)| {
            let agent = &w.agents[t.agent];
            let site = &w.sites[agent.site];
            let (u, c) = (micros(t.updated_at), micros(t.created_at));
            w.site_visible(&token.scope, agent.site)
                && updated.contains(u)
                && created.contains(c)
                && ids.as_ref().is_none_or(|s| s.contains(&t.id))
                && sites.as_ref().is_none_or(|s| s.contains(&site.id))
                && accounts
                    .as_ref()
                    .is_none_or(|s| s.contains(&w.accounts[site.account].id))
                && agents.as_ref().is_none_or(|s| s.contains(&agent.id))
                && statuses
                    .as_ref()
                    .is_none_or(|s| s.iter().any(|x| x == t.incident_status))
                && verdicts.as_ref().is_none_or(|s| s.iter().any(|x| x == t.verdict))
                && hashes
                    .as_ref()
                    .is_none_or(|s| s.iter().any(|x| x.eq_ignore_ascii_case(&t.sha1)))
        })
        .map(|(i, t)| (sort_key(&q.sort_by, t.id, i, t.created_at, t.updated_at), t.id, i))
        .collect();
    let (page, pagination) = q.paginate(matches, w.cursor_end);
    let data: Vec<Value> = page.into_iter().map(|i| render::threat(&w, &w.threats[i])).collect();
    ok(json!({"data": data, "pagination": pagination}))
}

/// The threats a write body's `filter` selects, within the token's scope.
fn select_threats(w: &World, token: &TokenSpec, body: &Value) -> Result<Vec<usize>, ApiError> {
    let filter = body
        .get("filter")
        .and_then(Value::as_object)
        .ok_or_else(|| ApiError::validation("filter: Missing data for required field."))?;
    let mut ids = None;
    let mut sites = None;
    let mut accounts = None;
    for (k, v) in filter {
        let list = || -> Result<std::collections::HashSet<u64>, ApiError> {
            let arr = v
                .as_array()
                .ok_or_else(|| ApiError::validation(format!("filter.{k}: Not a valid list.")))?;
            arr.iter()
                .map(|x| {
                    x.as_str()
                        .and_then(|s| s.parse().ok())
                        .ok_or_else(|| ApiError::validation(format!("filter.{k}: Not a valid id.")))
                })
                .collect()
        };
        match k.as_str() {
            "ids" => ids = Some(list()?),
            "siteIds" => sites = Some(list()?),
            "accountIds" => accounts = Some(list()?),
            "tenant" => {}
            other => return Err(ApiError::validation(format!("filter.{other}: Unknown field."))),
        }
    }
    // Like S1, an empty filter selects everything in scope.
    Ok(w.threats
        .iter()
        .enumerate()
        .filter(|(_, t)| {
            let site_idx = w.agent_site(t.agent);
            let site = &w.sites[site_idx];
            w.site_visible(&token.scope, site_idx)
                && ids
                    .as_ref()
                    .is_none_or(|s: &std::collections::HashSet<u64>| s.contains(&t.id))
                && sites
                    .as_ref()
                    .is_none_or(|s: &std::collections::HashSet<u64>| s.contains(&site.id))
                && accounts
                    .as_ref()
                    .is_none_or(|s: &std::collections::HashSet<u64>| s.contains(&w.accounts[site.account].id))
        })
        .map(|(i, _)| i)
        .collect())
}

fn data_field(body: &Value, field: &str, allowed: &[&'static str]) -> Result<Option<&'static str>, ApiError> {
    let data = body
        .get("data")
        .and_then(Value::as_object)
        .ok_or_else(|| ApiError::validation("data: Missing data for required field."))?;
    match data.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(v)) => allowed
            .iter()
            .find(|a| a.eq_ignore_ascii_case(v))
            .map(|a| Some(*a))
            .ok_or_else(|| ApiError::validation(format!("data.{field}: Must be one of: {}.", allowed.join(", ")))),
        Some(_) => Err(ApiError::validation(format!("data.{field}: Not a valid string."))),
    }
}

fn parse_body(raw: &[u8]) -> Result<Value, ApiError> {
    serde_json::from_slice(raw).map_err(|e| ApiError::validation(format!("Invalid JSON body: {e}")))
}

const STATUSES: [&str; 3] = ["unresolved", "in_progress", "resolved"];
const VERDICTS: [&str; 4] = ["undefined", "true_positive", "false_positive", "suspicious"];

async fn post_incident(State(s): State<Shr>, headers: HeaderMap, raw: axum::body::Bytes) -> ApiResult {
    let body = parse_body(&raw)?;
    let mut w = s.world();
    let token = authenticate(&w, &headers)?;
    let status = data_field(&body, "incidentStatus", &STATUSES)?
        .ok_or_else(|| ApiError::validation("data.incidentStatus: Missing data for required field."))?;
    let verdict = data_field(&body, "analystVerdict", &VERDICTS)?;
    let selected = select_threats(&w, &token, &body)?;
    let mut affected = 0;
    let mut details = Vec::new();
    for i in selected {
        let t = &w.threats[i];
        let id = t.id.to_string();
        if !token.can_write {
            details.push(
                json!({"threatId": id, "result": "missing_permissions", "analystVerdict": "missing_permissions"}),
            );
            continue;
        }
        let status_changed = t.incident_status != status;
        let verdict_changed = verdict.is_some_and(|v| v != t.verdict);
        let mut d = json!({"threatId": id, "result": if status_changed { "updated" } else { "already_set" }});
        if verdict.is_some() {
            d["analystVerdict"] = json!(if verdict_changed { "updated" } else { "already_set" });
        }
        details.push(d);
        if status_changed || verdict_changed {
            let now = w.write_time();
            let t = &mut w.threats[i];
            t.incident_status = status;
            if let Some(v) = verdict {
                t.verdict = v;
            }
            t.updated_at = now;
            affected += 1;
        }
    }
    ok(json!({"data": {"affected": affected, "details": details}}))
}

async fn post_verdict(State(s): State<Shr>, headers: HeaderMap, raw: axum::body::Bytes) -> ApiResult {
    let body = parse_body(&raw)?;
    let mut w = s.world();
    let token = authenticate(&w, &headers)?;
    let verdict = data_field(&body, "analystVerdict", &VERDICTS)?
        .ok_or_else(|| ApiError::validation("data.analystVerdict: Missing data for required field."))?;
    let selected = select_threats(&w, &token, &body)?;
    let mut affected = 0;
    let mut details = Vec::new();
    for i in selected {
        let id = w.threats[i].id.to_string();
        let result = if !token.can_write {
            "missing_permissions"
        } else if w.threats[i].verdict == verdict {
            "already_set"
        } else {
            let now = w.write_time();
            let t = &mut w.threats[i];
            t.verdict = verdict;
            t.updated_at = now;
            affected += 1;
            "updated"
        };
        details.push(json!({"threatId": id, "result": result}));
    }
    ok(json!({"data": {"affected": affected, "details": details}}))
}

async fn post_notes(State(s): State<Shr>, headers: HeaderMap, raw: axum::body::Bytes) -> ApiResult {
    let body = parse_body(&raw)?;
    let mut w = s.world();
    let token = authenticate(&w, &headers)?;
    let text = body
        .pointer("/data/text")
        .and_then(Value::as_str)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| ApiError::validation("data.text: Missing data for required field."))?
        .to_owned();
    let selected = select_threats(&w, &token, &body)?;
    if !token.can_write {
        return ok(json!({"data": {"affected": 0}}));
    }
    let affected = selected.len();
    for i in selected {
        let now = w.write_time();
        w.next_note += 1;
        let note = Note {
            id: w.next_note,
            text: text.clone(),
            creator: token.user_name.clone(),
            created_at: now,
        };
        let t = &mut w.threats[i];
        t.notes.push(note);
        t.updated_at = now;
    }
    ok(json!({"data": {"affected": affected}}))
}

async fn get_notes(
    State(s): State<Shr>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(pairs): Query<Vec<(String, String)>>,
) -> ApiResult {
    let w = s.world();
    let token = authenticate(&w, &headers)?;
    let q = ListReq::parse(&pairs, &[], &["createdAt", "updatedAt"], "createdAt")?;
    let idx = id
        .parse::<u64>()
        .ok()
        .and_then(|id| w.threat_index.get(&id).copied())
        .filter(|&i| w.site_visible(&token.scope, w.agent_site(w.threats[i].agent)))
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, 4040010, "Not Found", Some("Threat not found")))?;
    let t = &w.threats[idx];
    let matches = t
        .notes
        .iter()
        .enumerate()
        .map(|(i, n)| (micros(n.created_at), n.id, i))
        .collect();
    let (page, pagination) = q.paginate(matches, w.cursor_end);
    let data: Vec<Value> = page.into_iter().map(|i| render::note(&t.notes[i])).collect();
    ok(json!({"data": data, "pagination": pagination}))
}

async fn post_external_ticket(State(s): State<Shr>, headers: HeaderMap, raw: axum::body::Bytes) -> ApiResult {
    let body = parse_body(&raw)?;
    let mut w = s.world();
    let token = authenticate(&w, &headers)?;
    let ticket = body
        .pointer("/data/externalTicketId")
        .and_then(Value::as_str)
        .ok_or_else(|| ApiError::validation("data.externalTicketId: Missing data for required field."))?
        .to_owned();
    let selected = select_threats(&w, &token, &body)?;
    if !token.can_write {
        return ok(json!({"data": {"affected": 0}}));
    }
    let mut affected = 0;
    for i in selected {
        if w.threats[i].external_ticket_id.as_deref() != Some(ticket.as_str()) {
            let now = w.write_time();
            let t = &mut w.threats[i];
            t.external_ticket_id = Some(ticket.clone());
            t.updated_at = now;
            affected += 1;
        }
    }
    ok(json!({"data": {"affected": affected}}))
}

// ---- cloud-detection alerts --------------------------------------------------------------------

async fn get_alerts(State(s): State<Shr>, headers: HeaderMap, Query(pairs): Query<Vec<(String, String)>>) -> ApiResult {
    let w = s.world();
    let token = authenticate(&w, &headers)?;
    let filters = [
        "createdAt__gte",
        "createdAt__gt",
        "createdAt__lte",
        "createdAt__lt",
        "ids",
        "siteIds",
        "accountIds",
        "tenant",
    ];
    let q = ListReq::parse(&pairs, &filters, &["alertInfoCreatedAt", "id"], "alertInfoCreatedAt")?;
    let created = q.range("createdAt")?;
    let ids = id_set(q.csv("ids"));
    let sites = id_set(q.csv("siteIds"));
    let accounts = id_set(q.csv("accountIds"));
    let matches = w
        .alerts
        .iter()
        .enumerate()
        .filter(|(_, a)| {
            let site_idx = w.agent_site(a.agent);
            let site = &w.sites[site_idx];
            w.site_visible(&token.scope, site_idx)
                && created.contains(micros(a.created_at))
                && ids.as_ref().is_none_or(|s| s.contains(&a.id))
                && sites.as_ref().is_none_or(|s| s.contains(&site.id))
                && accounts
                    .as_ref()
                    .is_none_or(|s| s.contains(&w.accounts[site.account].id))
        })
        .map(|(i, a)| {
            (
                if q.sort_by == "id" {
                    a.id as i128
                } else {
                    micros(a.created_at)
                },
                a.id,
                i,
            )
        })
        .collect();
    let (page, pagination) = q.paginate(matches, w.cursor_end);
    let data: Vec<Value> = page
        .into_iter()
        .map(|i| render::cloud_alert(&w, &w.alerts[i]))
        .collect();
    ok(json!({"data": data, "pagination": pagination}))
}

fn alert_update(
    s: &Shr,
    headers: &HeaderMap,
    raw: &[u8],
    field: &str,
    allowed: &[&'static str],
    display: fn(&str) -> &'static str,
) -> ApiResult {
    let body = parse_body(raw)?;
    let mut w = s.world();
    let token = authenticate(&w, headers)?;
    let value = data_field(&body, field, allowed)?
        .ok_or_else(|| ApiError::validation(format!("data.{field}: Missing data for required field.")))?;
    let ids: std::collections::HashSet<u64> = body
        .pointer("/filter/ids")
        .and_then(Value::as_array)
        .ok_or_else(|| ApiError::validation("filter.ids: Missing data for required field."))?
        .iter()
        .filter_map(|v| v.as_str().and_then(|s| s.parse().ok()))
        .collect();
    let mut affected = 0;
    let now = w.write_time();
    let scope = token.scope.clone();
    let selected: Vec<usize> = (0..w.alerts.len())
        .filter(|&i| ids.contains(&w.alerts[i].id) && w.site_visible(&scope, w.agent_site(w.alerts[i].agent)))
        .collect();
    for i in selected {
        let a = &mut w.alerts[i];
        let shown = display(value);
        let slot = if field == "incidentStatus" {
            &mut a.incident_status
        } else {
            &mut a.verdict
        };
        if token.can_write && *slot != shown {
            *slot = shown;
            a.updated_at = now;
            affected += 1;
        }
    }
    ok(json!({"data": {"affected": affected}}))
}

fn status_display(v: &str) -> &'static str {
    match v {
        "in_progress" => "In progress",
        "resolved" => "Resolved",
        _ => "Unresolved",
    }
}

fn verdict_display(v: &str) -> &'static str {
    match v {
        "true_positive" => "True positive",
        "false_positive" => "False positive",
        "suspicious" => "Suspicious",
        _ => "Undefined",
    }
}

async fn post_alert_incident(State(s): State<Shr>, headers: HeaderMap, raw: axum::body::Bytes) -> ApiResult {
    alert_update(&s, &headers, &raw, "incidentStatus", &STATUSES, status_display)
}

async fn post_alert_verdict(State(s): State<Shr>, headers: HeaderMap, raw: axum::body::Bytes) -> ApiResult {
    alert_update(&s, &headers, &raw, "analystVerdict", &VERDICTS, verdict_display)
}

// ---- assets --------------------------------------------------------------------------------------

async fn get_agents(State(s): State<Shr>, headers: HeaderMap, Query(pairs): Query<Vec<(String, String)>>) -> ApiResult {
    let w = s.world();
    let token = authenticate(&w, &headers)?;
    let filters = [
        "siteIds",
        "accountIds",
        "ids",
        "uuids",
        "isDecommissioned",
        "isActive",
        "updatedAt__gte",
        "updatedAt__gt",
        "updatedAt__lte",
        "updatedAt__lt",
    ];
    let q = ListReq::parse(
        &pairs,
        &filters,
        &["id", "updatedAt", "createdAt", "computerName"],
        "id",
    )?;
    let updated = q.range("updatedAt")?;
    let ids = id_set(q.csv("ids"));
    let sites = id_set(q.csv("siteIds"));
    let accounts = id_set(q.csv("accountIds"));
    let uuids = q.csv("uuids");
    let bools = |k: &str| -> Result<Option<Vec<bool>>, ApiError> {
        q.csv(k)
            .map(|v| {
                v.iter()
                    .map(|b| match b.to_ascii_lowercase().as_str() {
                        "true" => Ok(true),
                        "false" => Ok(false),
                        _ => Err(ApiError::validation(format!("{k}: Not a valid boolean."))),
                    })
                    .collect()
            })
            .transpose()
    };
    // Decommissioned agents are hidden unless asked for, as on most consoles.
    let decom = bools("isDecommissioned")?.unwrap_or_else(|| vec![false]);
    let active = bools("isActive")?;
    let matches = w
        .agents
        .iter()
        .enumerate()
        .filter(|(_, a)| {
            let site = &w.sites[a.site];
            !a.deleted
                && w.site_visible(&token.scope, a.site)
                && decom.contains(&a.is_decommissioned)
                && active.as_ref().is_none_or(|v| v.contains(&a.is_active))
                && updated.contains(micros(a.updated_at))
                && ids.as_ref().is_none_or(|s| s.contains(&a.id))
                && sites.as_ref().is_none_or(|s| s.contains(&site.id))
                && accounts
                    .as_ref()
                    .is_none_or(|s| s.contains(&w.accounts[site.account].id))
                && uuids
                    .as_ref()
                    .is_none_or(|s| s.iter().any(|u| u.eq_ignore_ascii_case(&a.uuid)))
        })
        .map(|(i, a)| (sort_key(&q.sort_by, a.id, i, a.created_at, a.updated_at), a.id, i))
        .collect();
    let (page, pagination) = q.paginate(matches, w.cursor_end);
    let data: Vec<Value> = page.into_iter().map(|i| render::agent(&w, &w.agents[i])).collect();
    ok(json!({"data": data, "pagination": pagination}))
}

async fn get_accounts(
    State(s): State<Shr>,
    headers: HeaderMap,
    Query(pairs): Query<Vec<(String, String)>>,
) -> ApiResult {
    let w = s.world();
    let token = authenticate(&w, &headers)?;
    if matches!(token.scope, TokenScope::Sites(_)) {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            4030010,
            "Action is not allowed to site users",
            None,
        ));
    }
    let q = ListReq::parse(
        &pairs,
        &["accountIds", "ids", "states"],
        &["id", "name", "createdAt", "updatedAt"],
        "id",
    )?;
    let ids = id_set(q.csv("accountIds").or_else(|| q.csv("ids")));
    let states = q.csv("states");
    let matches = w
        .accounts
        .iter()
        .enumerate()
        .filter(|(_, a)| {
            let visible = match &token.scope {
                TokenScope::Accounts(v) => v.contains(&a.id.to_string()),
                _ => true,
            };
            visible
                && ids.as_ref().is_none_or(|s| s.contains(&a.id))
                && states.as_ref().is_none_or(|s| s.iter().any(|x| x == a.state))
        })
        .map(|(i, a)| (sort_key(&q.sort_by, a.id, i, a.created_at, a.updated_at), a.id, i))
        .collect();
    let (page, pagination) = q.paginate(matches, w.cursor_end);
    let data: Vec<Value> = page.into_iter().map(|i| render::account(&w, i)).collect();
    ok(json!({"data": data, "pagination": pagination}))
}

fn sort_key(by: &str, id: u64, idx: usize, created: OffsetDateTime, updated: OffsetDateTime) -> i128 {
    match by {
        "createdAt" => micros(created),
        "updatedAt" => micros(updated),
        // Generated names follow generation order, so the index sorts like the name.
        "name" | "computerName" => idx as i128,
        _ => id as i128,
    }
}

async fn get_sites(State(s): State<Shr>, headers: HeaderMap, Query(pairs): Query<Vec<(String, String)>>) -> ApiResult {
    let w = s.world();
    let token = authenticate(&w, &headers)?;
    let q = ListReq::parse(
        &pairs,
        &["accountIds", "siteIds", "state"],
        &["id", "name", "createdAt", "updatedAt"],
        "id",
    )?;
    let accounts = id_set(q.csv("accountIds"));
    let ids = id_set(q.csv("siteIds"));
    let state = q.params.get("state").cloned();
    let matches = w
        .sites
        .iter()
        .enumerate()
        .filter(|(i, st)| {
            w.site_visible(&token.scope, *i)
                && ids.as_ref().is_none_or(|s| s.contains(&st.id))
                && accounts.as_ref().is_none_or(|s| s.contains(&w.accounts[st.account].id))
                && state.as_ref().is_none_or(|s| s == st.state)
        })
        .map(|(i, st)| (sort_key(&q.sort_by, st.id, i, st.created_at, st.updated_at), st.id, i))
        .collect::<Vec<_>>();
    let active: usize = matches
        .iter()
        .map(|m| w.agents.iter().filter(|a| a.site == m.2 && a.is_active).count())
        .sum();
    let total = matches.len() * 50;
    let (page, pagination) = q.paginate(matches, w.cursor_end);
    let sites: Vec<Value> = page.into_iter().map(|i| render::site(&w, i)).collect();
    ok(
        json!({"data": {"allSites": {"activeLicenses": active, "totalLicenses": total}, "sites": sites}, "pagination": pagination}),
    )
}

// ---- users, tokens, system -------------------------------------------------------------------

async fn post_token_details(State(s): State<Shr>, headers: HeaderMap, raw: axum::body::Bytes) -> ApiResult {
    let body = parse_body(&raw)?;
    let w = s.world();
    authenticate(&w, &headers)?;
    let asked = body
        .pointer("/data/apiToken")
        .and_then(Value::as_str)
        .ok_or_else(|| ApiError::validation("data.apiToken: Missing data for required field."))?;
    let spec = w
        .tokens
        .get(asked)
        .ok_or_else(|| ApiError::validation("Invalid API token"))?;
    let created = spec.expires_at - time::Duration::days(30);
    ok(json!({"data": {"createdAt": render::ts(created), "expiresAt": render::ts(spec.expires_at)}}))
}

async fn post_generate_token(State(s): State<Shr>, headers: HeaderMap, raw: axum::body::Bytes) -> ApiResult {
    let _ = parse_body(&raw)?;
    let mut w = s.world();
    let old = authenticate(&w, &headers)?;
    let new_token = w.random_token();
    let mut spec = old.clone();
    spec.token = new_token.clone();
    spec.expires_at = OffsetDateTime::now_utc() + time::Duration::days(30);
    // Generating a token revokes the caller's previous one, as on S1.
    w.tokens.remove(&old.token);
    w.tokens.insert(new_token.clone(), spec);
    ok(json!({"data": {"token": new_token}}))
}

async fn get_user(State(s): State<Shr>, headers: HeaderMap, Query(pairs): Query<Vec<(String, String)>>) -> ApiResult {
    let w = s.world();
    let token = authenticate(&w, &headers)?;
    if let Some((k, _)) = pairs
        .iter()
        .find(|(k, _)| !["accountIds", "siteIds", "groupIds", "tenant"].contains(&k.as_str()))
    {
        return Err(ApiError::validation(format!("Unknown field: {k}")));
    }
    let (scope, roles): (&str, Vec<Value>) = match &token.scope {
        TokenScope::Tenant => ("tenant", vec![]),
        TokenScope::Accounts(ids) => ("account", ids.iter().map(|id| json!({"id": id, "name": "Account", "accountName": "Account", "roleName": if token.can_write { "Admin" } else { "Viewer" }, "roles": [if token.can_write { "Admin" } else { "Viewer" }]})).collect()),
        TokenScope::Sites(ids) => ("site", ids.iter().map(|id| json!({"id": id, "name": "Site", "accountName": "Account", "roleName": if token.can_write { "Admin" } else { "Viewer" }, "roles": [if token.can_write { "Admin" } else { "Viewer" }]})).collect()),
    };
    let site_roles: Vec<Value> = if scope == "site" { roles.clone() } else { vec![] };
    let scope_roles: Vec<Value> = if scope == "site" { vec![] } else { roles };
    ok(json!({"data": {
        "id": "1000000000000000950",
        "email": "integration@example.com",
        "fullName": token.user_name,
        "scope": scope,
        "scopeRoles": scope_roles,
        "siteRoles": site_roles,
        "canGenerateApiToken": true,
        "apiToken": {"createdAt": render::ts(token.expires_at - time::Duration::days(30)), "expiresAt": render::ts(token.expires_at)},
        "twoFaEnabled": false,
        "emailVerified": true,
        "source": "mgmt",
    }}))
}

async fn get_system_status() -> ApiResult {
    ok(json!({"data": {"health": "ok"}}))
}

async fn get_system_info(State(s): State<Shr>, headers: HeaderMap) -> ApiResult {
    let w = s.world();
    authenticate(&w, &headers)?;
    ok(
        json!({"data": {"version": "sim-1.0", "build": "1", "release": "sim", "patch": "0", "latestAgentVersion": "24.1.4.257"}}),
    )
}

// ---- control API -----------------------------------------------------------------------------------

async fn ctl_add_fault(State(s): State<Shr>, Json(rule): Json<FaultRule>) -> StatusCode {
    s.world().faults.add(rule);
    StatusCode::NO_CONTENT
}

async fn ctl_clear_faults(State(s): State<Shr>) -> StatusCode {
    s.world().faults.clear();
    StatusCode::NO_CONTENT
}

async fn ctl_add_token(State(s): State<Shr>, Json(spec): Json<TokenSpec>) -> StatusCode {
    s.world().tokens.insert(spec.token.clone(), spec);
    StatusCode::NO_CONTENT
}

#[derive(serde::Deserialize)]
struct Settings {
    cursor_end: Option<CursorEnd>,
}

async fn ctl_settings(State(s): State<Shr>, Json(settings): Json<Settings>) -> StatusCode {
    if let Some(c) = settings.cursor_end {
        s.world().cursor_end = c;
    }
    StatusCode::NO_CONTENT
}

async fn ctl_requests(State(s): State<Shr>) -> Json<Vec<RequestLogEntry>> {
    Json(s.requests.lock().unwrap_or_else(|e| e.into_inner()).clone())
}

async fn ctl_clear_requests(State(s): State<Shr>) -> StatusCode {
    s.requests.lock().unwrap_or_else(|e| e.into_inner()).clear();
    s.counts.lock().unwrap_or_else(|e| e.into_inner()).clear();
    StatusCode::NO_CONTENT
}

async fn ctl_stats(State(s): State<Shr>) -> Json<Value> {
    let counts = s.counts.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let w = s.world();
    Json(json!({
        "accounts": w.accounts.len(),
        "sites": w.sites.len(),
        "agents": w.agents.len(),
        "threats": w.threats.len(),
        "cloud_alerts": w.alerts.len(),
        "requests": counts,
    }))
}

/// A threat's current state and notes, for tests to check what a write did.
async fn ctl_threat(State(s): State<Shr>, Path(id): Path<String>) -> Result<Json<Value>, StatusCode> {
    let w = s.world();
    let idx = id
        .parse::<u64>()
        .ok()
        .and_then(|id| w.threat_index.get(&id).copied())
        .ok_or(StatusCode::NOT_FOUND)?;
    let t = &w.threats[idx];
    let mut v = render::threat(&w, t);
    v["notes"] = Value::Array(t.notes.iter().map(render::note).collect());
    Ok(Json(v))
}

/// A change made by a person in the S1 console (not through the API client under test).
#[derive(serde::Deserialize)]
struct ConsoleUpdate {
    #[serde(rename = "incidentStatus")]
    incident_status: Option<String>,
    #[serde(rename = "analystVerdict")]
    analyst_verdict: Option<String>,
}

async fn ctl_console_update(
    State(s): State<Shr>,
    Path(id): Path<String>,
    Json(u): Json<ConsoleUpdate>,
) -> Result<StatusCode, (StatusCode, String)> {
    let mut w = s.world();
    let idx = id
        .parse::<u64>()
        .ok()
        .and_then(|id| w.threat_index.get(&id).copied())
        .ok_or((StatusCode::NOT_FOUND, format!("no threat {id}")))?;
    let pick = |v: Option<String>, allowed: &[&'static str]| -> Result<Option<&'static str>, (StatusCode, String)> {
        v.map(|v| {
            allowed
                .iter()
                .find(|a| **a == v)
                .copied()
                .ok_or((StatusCode::BAD_REQUEST, format!("{v} is not one of {allowed:?}")))
        })
        .transpose()
    };
    let status = pick(u.incident_status, &STATUSES)?;
    let verdict = pick(u.analyst_verdict, &VERDICTS)?;
    let now = w.write_time();
    let t = &mut w.threats[idx];
    if let Some(st) = status {
        t.incident_status = st;
    }
    if let Some(v) = verdict {
        t.verdict = v;
    }
    t.updated_at = now;
    Ok(StatusCode::NO_CONTENT)
}

async fn ctl_add_threats(
    State(s): State<Shr>,
    Json(spec): Json<crate::world::NewThreats>,
) -> Result<Json<Vec<String>>, (StatusCode, String)> {
    let mut w = s.world();
    w.add_threats(&spec).map(Json).map_err(|e| (StatusCode::BAD_REQUEST, e))
}

async fn ctl_change_agent(
    State(s): State<Shr>,
    Path(uuid): Path<String>,
    Json(c): Json<crate::world::AgentChange>,
) -> Result<StatusCode, (StatusCode, String)> {
    s.world()
        .change_agent(&uuid, &c)
        .map(|()| StatusCode::NO_CONTENT)
        .map_err(|e| (StatusCode::BAD_REQUEST, e))
}
