use std::sync::Arc;
use std::time::{Duration, Instant};

use backon::{BackoffBuilder, ExponentialBuilder};
use futures_util::{Stream, stream};
use reqwest::header::{AUTHORIZATION, HeaderMap, HeaderValue, LOCATION, RETRY_AFTER};
use reqwest::{Method, StatusCode};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use time::OffsetDateTime;
use url::Url;

use super::dto::{
    self, Account, Affected, Agent, AnalystVerdict, CloudAlert, DataEnvelope, GeneratedToken, IncidentStatus,
    ListEnvelope, Note, Site, SitesData, SystemInfo, SystemStatus, Threat, ThreatActionResult, TokenDetails, User,
};
use super::error::{S1Error, parse_error_body};
use super::ratelimit::{EndpointFamily, Limiters, RateLimits};
use crate::ApiToken;
use crate::config::AllowedHosts;
use crate::net::ReadError;

/// S1 refuses `limit` above 1000 with a 400.
pub const MAX_PAGE_LIMIT: u32 = 1000;

const API_PREFIX: &str = "/web/api/v2.1/";

/// How hard to retry what is safe to retry.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    /// Attempts in all, the first included.
    pub max_attempts: u32,
    /// First backoff delay; it doubles per attempt, with jitter.
    pub min_delay: Duration,
    /// Cap on one backoff delay.
    pub max_delay: Duration,
    /// Cap on a `Retry-After` S1 asks for; a longer wait is better left to the next run.
    pub max_retry_after: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 5,
            min_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(20),
            max_retry_after: Duration::from_secs(60),
        }
    }
}

/// The default cap on one S1 response body: a page of 1,000 threats is a few megabytes.
pub const DEFAULT_MAX_RESPONSE_BYTES: usize = 32 * 1024 * 1024;

/// Client settings. The defaults suit a Lambda run against a real console.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    pub connect_timeout: Duration,
    pub request_timeout: Duration,
    pub retry: RetryPolicy,
    pub rate_limits: RateLimits,
    /// Hosts a console URL may name (`S1_BRIDGE_ALLOWED_HOSTS`); checked whenever a client is
    /// built, so a tenant item written straight to the table cannot send the token elsewhere.
    pub allowed_hosts: AllowedHosts,
    /// Longest response body read; a longer one fails the call with [`S1Error::TooLarge`].
    pub max_response_bytes: usize,
}

impl Default for ClientOptions {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(30),
            retry: RetryPolicy::default(),
            rate_limits: RateLimits::default(),
            allowed_hosts: AllowedHosts::default(),
            max_response_bytes: DEFAULT_MAX_RESPONSE_BYTES,
        }
    }
}

impl ClientOptions {
    /// The same options with `hosts` as the console allow-list.
    #[must_use]
    pub fn allowing(mut self, hosts: AllowedHosts) -> Self {
        self.allowed_hosts = hosts;
        self
    }
}

/// One attempt of one call, as the outbound request log records it. Holds no token or secret.
#[derive(Debug, Clone)]
pub struct RequestRecord {
    pub method: String,
    /// API path without the `/web/api/v2.1` prefix, e.g. `/threats/incident`.
    pub path: String,
    /// HTTP status, or `None` when no response arrived.
    pub status: Option<u16>,
    pub latency: Duration,
    /// 1 for the first try.
    pub attempt: u32,
    /// Why the attempt failed, when it did.
    pub error: Option<String>,
}

/// Receives a [`RequestRecord`] for every attempt the client makes.
pub trait RequestObserver: Send + Sync {
    /// Called once per attempt, after its answer (or failure) is known.
    fn record(&self, record: &RequestRecord);
}

/// One page of a list endpoint.
#[derive(Debug, Clone)]
pub struct Page<T> {
    pub items: Vec<T>,
    /// The cursor that fetches the next page; `None` on the last one.
    pub next_cursor: Option<String>,
    /// S1's count of all matching items, when it sent one.
    pub total_items: Option<u64>,
}

/// `sortOrder`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SortOrder {
    #[default]
    Asc,
    Desc,
}

impl SortOrder {
    fn as_str(self) -> &'static str {
        match self {
            SortOrder::Asc => "asc",
            SortOrder::Desc => "desc",
        }
    }
}

/// `sortBy` for threats (the ones a poller needs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ThreatSort {
    #[default]
    UpdatedAt,
    CreatedAt,
    Id,
}

/// Filters for `GET /threats`. The default is what a poller wants: oldest change first, 1000
/// per page.
#[derive(Debug, Clone)]
pub struct ThreatQuery {
    pub updated_at_gte: Option<OffsetDateTime>,
    pub updated_at_gt: Option<OffsetDateTime>,
    pub updated_at_lte: Option<OffsetDateTime>,
    pub created_at_gte: Option<OffsetDateTime>,
    pub created_at_gt: Option<OffsetDateTime>,
    pub ids: Vec<String>,
    pub account_ids: Vec<String>,
    pub site_ids: Vec<String>,
    pub sort_by: ThreatSort,
    pub sort_order: SortOrder,
    pub limit: u32,
}

impl Default for ThreatQuery {
    fn default() -> Self {
        Self {
            updated_at_gte: None,
            updated_at_gt: None,
            updated_at_lte: None,
            created_at_gte: None,
            created_at_gt: None,
            ids: Vec::new(),
            account_ids: Vec::new(),
            site_ids: Vec::new(),
            sort_by: ThreatSort::UpdatedAt,
            sort_order: SortOrder::Asc,
            limit: MAX_PAGE_LIMIT,
        }
    }
}

impl ThreatQuery {
    /// Threats changed at or after `since`, oldest change first: the polling query.
    pub fn changed_since(since: OffsetDateTime) -> Self {
        Self {
            updated_at_gte: Some(since),
            ..Self::default()
        }
    }

    fn to_pairs(&self) -> Result<Vec<(String, String)>, S1Error> {
        let mut q = Query::new(self.limit)?;
        q.time("updatedAt__gte", self.updated_at_gte);
        q.time("updatedAt__gt", self.updated_at_gt);
        q.time("updatedAt__lte", self.updated_at_lte);
        q.time("createdAt__gte", self.created_at_gte);
        q.time("createdAt__gt", self.created_at_gt);
        q.csv("ids", &self.ids);
        q.csv("accountIds", &self.account_ids);
        q.csv("siteIds", &self.site_ids);
        let sort = match self.sort_by {
            ThreatSort::UpdatedAt => "updatedAt",
            ThreatSort::CreatedAt => "createdAt",
            ThreatSort::Id => "id",
        };
        q.push("sortBy", sort);
        q.push("sortOrder", self.sort_order.as_str());
        Ok(q.0)
    }
}

/// Filters for `GET /cloud-detection/alerts`. S1 offers no `updatedAt` filter here, so alerts
/// are polled by creation time.
#[derive(Debug, Clone)]
pub struct CloudAlertQuery {
    pub created_at_gte: Option<OffsetDateTime>,
    pub created_at_gt: Option<OffsetDateTime>,
    pub ids: Vec<String>,
    pub account_ids: Vec<String>,
    pub site_ids: Vec<String>,
    pub sort_order: SortOrder,
    pub limit: u32,
}

impl Default for CloudAlertQuery {
    fn default() -> Self {
        Self {
            created_at_gte: None,
            created_at_gt: None,
            ids: Vec::new(),
            account_ids: Vec::new(),
            site_ids: Vec::new(),
            sort_order: SortOrder::Asc,
            limit: MAX_PAGE_LIMIT,
        }
    }
}

impl CloudAlertQuery {
    fn to_pairs(&self) -> Result<Vec<(String, String)>, S1Error> {
        let mut q = Query::new(self.limit)?;
        q.time("createdAt__gte", self.created_at_gte);
        q.time("createdAt__gt", self.created_at_gt);
        q.csv("ids", &self.ids);
        q.csv("accountIds", &self.account_ids);
        q.csv("siteIds", &self.site_ids);
        q.push("sortBy", "alertInfoCreatedAt");
        q.push("sortOrder", self.sort_order.as_str());
        Ok(q.0)
    }
}

/// Filters for `GET /agents`.
#[derive(Debug, Clone)]
pub struct AgentQuery {
    pub account_ids: Vec<String>,
    pub site_ids: Vec<String>,
    /// Consoles differ in whether decommissioned agents are listed by default, so this is always
    /// sent explicitly.
    pub include_decommissioned: bool,
    pub updated_at_gte: Option<OffsetDateTime>,
    pub limit: u32,
}

impl Default for AgentQuery {
    fn default() -> Self {
        Self {
            account_ids: Vec::new(),
            site_ids: Vec::new(),
            include_decommissioned: true,
            updated_at_gte: None,
            limit: MAX_PAGE_LIMIT,
        }
    }
}

impl AgentQuery {
    fn to_pairs(&self) -> Result<Vec<(String, String)>, S1Error> {
        let mut q = Query::new(self.limit)?;
        q.csv("accountIds", &self.account_ids);
        q.csv("siteIds", &self.site_ids);
        q.push(
            "isDecommissioned",
            if self.include_decommissioned {
                "True,False"
            } else {
                "False"
            },
        );
        q.time("updatedAt__gte", self.updated_at_gte);
        q.push("sortBy", "id");
        q.push("sortOrder", "asc");
        Ok(q.0)
    }
}

/// Filters for `GET /sites`.
#[derive(Debug, Clone)]
pub struct SiteQuery {
    pub account_ids: Vec<String>,
    pub site_ids: Vec<String>,
    pub limit: u32,
}

impl Default for SiteQuery {
    fn default() -> Self {
        Self {
            account_ids: Vec::new(),
            site_ids: Vec::new(),
            limit: MAX_PAGE_LIMIT,
        }
    }
}

impl SiteQuery {
    fn to_pairs(&self) -> Result<Vec<(String, String)>, S1Error> {
        let mut q = Query::new(self.limit)?;
        q.csv("accountIds", &self.account_ids);
        q.csv("siteIds", &self.site_ids);
        q.push("sortBy", "id");
        q.push("sortOrder", "asc");
        Ok(q.0)
    }
}

struct Query(Vec<(String, String)>);

impl Query {
    fn new(limit: u32) -> Result<Self, S1Error> {
        if !(1..=MAX_PAGE_LIMIT).contains(&limit) {
            return Err(S1Error::InvalidRequest(format!(
                "page limit {limit} is outside 1..={MAX_PAGE_LIMIT} (S1 answers 400 above 1000)"
            )));
        }
        Ok(Self(vec![("limit".into(), limit.to_string())]))
    }
    fn push(&mut self, k: &str, v: &str) {
        self.0.push((k.into(), v.into()));
    }
    fn time(&mut self, k: &str, t: Option<OffsetDateTime>) {
        if let Some(t) = t {
            self.push(k, &dto::format_time(t));
        }
    }
    fn csv(&mut self, k: &str, vals: &[String]) {
        if !vals.is_empty() {
            self.push(k, &vals.join(","));
        }
    }
}

struct Call<'a> {
    method: Method,
    path: &'a str,
    query: &'a [(String, String)],
    body: Option<&'a Value>,
    family: EndpointFamily,
    /// Whether repeating the call after an ambiguous failure (5xx, a cut connection) is
    /// harmless. Adding a note is not: a retry could post it twice.
    idempotent: bool,
    auth: bool,
}

/// A client for one S1 console and one API token.
///
/// Cheap to clone (the HTTP pool and the rate limiters are shared), so one client per tenant
/// serves every concurrent task of that tenant and they share its rate budget.
#[derive(Clone)]
pub struct S1Client {
    http: reqwest::Client,
    api_base: Url,
    auth: HeaderValue,
    limiters: Arc<Limiters>,
    retry: RetryPolicy,
    max_body: usize,
    observer: Option<Arc<dyn RequestObserver>>,
}

impl std::fmt::Debug for S1Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S1Client")
            .field("api_base", &self.api_base.as_str())
            .finish_non_exhaustive()
    }
}

impl S1Client {
    /// A client for the console at `console_url` (its origin, e.g.
    /// `https://acme.sentinelone.net`; a trailing `/web/api/v2.1` is accepted too).
    ///
    /// # Errors
    /// [`S1Error::InvalidRequest`] when the URL is not http(s) with a host, its host is not in
    /// `options.allowed_hosts` or it is plain http off loopback, or the token cannot be sent in a
    /// header.
    pub fn new(console_url: &str, token: &ApiToken, options: ClientOptions) -> Result<Self, S1Error> {
        let http =
            crate::net::outbound_client(options.connect_timeout, options.request_timeout, &options.allowed_hosts)
                .map_err(|e| S1Error::InvalidRequest(format!("cannot build the HTTP client: {e}")))?;
        Self::with_http(http, console_url, token, options)
    }

    /// Like [`S1Client::new`], sharing an existing `reqwest::Client` (one pool per process). Build
    /// it with [`crate::net::outbound_client`], so redirects are not followed.
    ///
    /// # Errors
    /// As [`S1Client::new`].
    pub fn with_http(
        http: reqwest::Client,
        console_url: &str,
        token: &ApiToken,
        options: ClientOptions,
    ) -> Result<Self, S1Error> {
        let api_base = api_base(console_url)?;
        options
            .allowed_hosts
            .check_console_url(console_url)
            .map_err(|e| S1Error::InvalidRequest(format!("refusing to call the console: {e}")))?;
        if token.is_empty() {
            return Err(S1Error::InvalidRequest("the S1 API token is empty".into()));
        }
        let mut auth = HeaderValue::from_str(&format!("ApiToken {}", token.expose())).map_err(|_| {
            S1Error::InvalidRequest("the S1 API token contains characters that cannot be sent in an HTTP header".into())
        })?;
        auth.set_sensitive(true);
        if options.retry.max_attempts == 0 {
            return Err(S1Error::InvalidRequest("retry max_attempts must be at least 1".into()));
        }
        Ok(Self {
            http,
            api_base,
            auth,
            limiters: Arc::new(Limiters::new(&options.rate_limits)),
            retry: options.retry,
            max_body: options.max_response_bytes,
            observer: None,
        })
    }

    /// Reports every attempt to `observer` (the outbound request log).
    pub fn with_observer(mut self, observer: Arc<dyn RequestObserver>) -> Self {
        self.observer = Some(observer);
        self
    }

    /// The API root this client calls, e.g. `https://acme.sentinelone.net/web/api/v2.1/`.
    pub fn api_base(&self) -> &str {
        self.api_base.as_str()
    }

    // ---- threats -------------------------------------------------------------------------

    /// `GET /threats`, page by page.
    pub fn threats<'a>(&'a self, query: &ThreatQuery) -> impl Stream<Item = Result<Page<Threat>, S1Error>> + use<'a> {
        self.pages(
            "threats",
            EndpointFamily::ThreatsList,
            query.to_pairs(),
            |d: Vec<Threat>| d,
        )
    }

    /// `POST /threats/incident`: sets the incident status (and, atomically, the verdict) of the
    /// given threats. Check `details[].result`; HTTP 200 alone proves nothing.
    ///
    /// # Errors
    /// [`S1Error::InvalidRequest`] for an empty id list (S1 would apply an empty filter to every
    /// threat in scope); otherwise as any call.
    pub async fn set_incident_status(
        &self,
        ids: &[String],
        status: IncidentStatus,
        verdict: Option<AnalystVerdict>,
    ) -> Result<ThreatActionResult, S1Error> {
        let mut data = json!({ "incidentStatus": wire(status.as_str())? });
        if let Some(v) = verdict {
            data["analystVerdict"] = json!(wire(v.as_str())?);
        }
        let body = json!({ "filter": ids_filter(ids)?, "data": data });
        self.post_data("threats/incident", EndpointFamily::ThreatActions, &body, true)
            .await
    }

    /// `POST /threats/analyst-verdict`.
    ///
    /// # Errors
    /// As [`S1Client::set_incident_status`].
    pub async fn set_analyst_verdict(
        &self,
        ids: &[String],
        verdict: AnalystVerdict,
    ) -> Result<ThreatActionResult, S1Error> {
        let body = json!({ "filter": ids_filter(ids)?, "data": { "analystVerdict": wire(verdict.as_str())? } });
        self.post_data("threats/analyst-verdict", EndpointFamily::ThreatActions, &body, true)
            .await
    }

    /// `POST /threats/notes`: adds one note to every given threat. Not retried after an
    /// ambiguous failure, so a note is never posted twice.
    ///
    /// # Errors
    /// As [`S1Client::set_incident_status`]; an empty text is refused too.
    pub async fn add_note(&self, ids: &[String], text: &str) -> Result<Affected, S1Error> {
        if text.trim().is_empty() {
            return Err(S1Error::InvalidRequest("refusing to add an empty note".into()));
        }
        let body = json!({ "filter": ids_filter(ids)?, "data": { "text": text } });
        self.post_data("threats/notes", EndpointFamily::ThreatActions, &body, false)
            .await
    }

    /// `GET /threats/{id}/notes`, page by page.
    pub fn threat_notes<'a>(&'a self, threat_id: &str) -> impl Stream<Item = Result<Page<Note>, S1Error>> + use<'a> {
        let (path, query) = match path_with_id("threats", threat_id, "notes") {
            Ok(path) => {
                let query = Query::new(MAX_PAGE_LIMIT).map(|mut q| {
                    q.push("sortBy", "createdAt");
                    q.push("sortOrder", "asc");
                    q.0
                });
                (path, query)
            }
            Err(e) => (String::new(), Err(e)),
        };
        self.pages_owned(path, EndpointFamily::ThreatActions, query, |d: Vec<Note>| d)
    }

    /// `POST /threats/external-ticket-id`: stamps the platform's ticket id on the threats.
    ///
    /// # Errors
    /// As [`S1Client::set_incident_status`].
    pub async fn set_external_ticket_id(&self, ids: &[String], ticket_id: &str) -> Result<Affected, S1Error> {
        let body = json!({ "filter": ids_filter(ids)?, "data": { "externalTicketId": ticket_id } });
        self.post_data("threats/external-ticket-id", EndpointFamily::ThreatActions, &body, true)
            .await
    }

    // ---- cloud-detection (STAR) alerts ---------------------------------------------------

    /// `GET /cloud-detection/alerts`, page by page.
    pub fn cloud_alerts<'a>(
        &'a self,
        query: &CloudAlertQuery,
    ) -> impl Stream<Item = Result<Page<CloudAlert>, S1Error>> + use<'a> {
        self.pages(
            "cloud-detection/alerts",
            EndpointFamily::CloudDetection,
            query.to_pairs(),
            |d: Vec<CloudAlert>| d,
        )
    }

    /// `POST /cloud-detection/alerts/incident`.
    ///
    /// # Errors
    /// As [`S1Client::set_incident_status`].
    pub async fn set_alert_incident_status(&self, ids: &[String], status: IncidentStatus) -> Result<Affected, S1Error> {
        let body = json!({ "filter": ids_filter(ids)?, "data": { "incidentStatus": wire(status.as_str())? } });
        self.post_data(
            "cloud-detection/alerts/incident",
            EndpointFamily::CloudDetection,
            &body,
            true,
        )
        .await
    }

    /// `POST /cloud-detection/alerts/analyst-verdict`.
    ///
    /// # Errors
    /// As [`S1Client::set_incident_status`].
    pub async fn set_alert_analyst_verdict(
        &self,
        ids: &[String],
        verdict: AnalystVerdict,
    ) -> Result<Affected, S1Error> {
        let body = json!({ "filter": ids_filter(ids)?, "data": { "analystVerdict": wire(verdict.as_str())? } });
        self.post_data(
            "cloud-detection/alerts/analyst-verdict",
            EndpointFamily::CloudDetection,
            &body,
            true,
        )
        .await
    }

    // ---- assets --------------------------------------------------------------------------

    /// `GET /agents`, page by page.
    pub fn agents<'a>(&'a self, query: &AgentQuery) -> impl Stream<Item = Result<Page<Agent>, S1Error>> + use<'a> {
        self.pages("agents", EndpointFamily::Agents, query.to_pairs(), |d: Vec<Agent>| d)
    }

    /// `GET /accounts`, page by page. A site-scoped token gets [`S1Error::Forbidden`] (4030010).
    pub fn accounts(&self) -> impl Stream<Item = Result<Page<Account>, S1Error>> + '_ {
        let query = Query::new(MAX_PAGE_LIMIT).map(|mut q| {
            q.push("sortBy", "id");
            q.push("sortOrder", "asc");
            q.0
        });
        self.pages("accounts", EndpointFamily::SitesAccounts, query, |d: Vec<Account>| d)
    }

    /// `GET /sites`, page by page (S1 nests them in an object-shaped `data`).
    pub fn sites<'a>(&'a self, query: &SiteQuery) -> impl Stream<Item = Result<Page<Site>, S1Error>> + use<'a> {
        self.pages(
            "sites",
            EndpointFamily::SitesAccounts,
            query.to_pairs(),
            |d: SitesData| d.sites,
        )
    }

    // ---- tokens, users, system -------------------------------------------------------------

    /// `POST /users/api-token-details` for `token` (usually this client's own).
    ///
    /// # Errors
    /// As any call; S1 answers 400 for a token it does not know.
    pub async fn api_token_details(&self, token: &ApiToken) -> Result<TokenDetails, S1Error> {
        let body = json!({ "data": { "apiToken": token.expose() } });
        self.post_data("users/api-token-details", EndpointFamily::Users, &body, true)
            .await
    }

    /// `POST /users/generate-api-token`: a new token for the calling console user. S1 revokes
    /// the caller's previous token, so this is never retried after an ambiguous failure.
    ///
    /// # Errors
    /// As any call.
    pub async fn generate_api_token(&self) -> Result<ApiToken, S1Error> {
        let body = json!({ "data": {} });
        let t: GeneratedToken = self
            .post_data("users/generate-api-token", EndpointFamily::Users, &body, false)
            .await?;
        Ok(t.token)
    }

    /// `GET /user`: the token's owner, scope and token dates.
    ///
    /// # Errors
    /// As any call.
    pub async fn user(&self) -> Result<User, S1Error> {
        self.get_data("user", EndpointFamily::User, true).await
    }

    /// `GET /system/status` (unauthenticated: proves reachability only).
    ///
    /// # Errors
    /// As any call.
    pub async fn system_status(&self) -> Result<SystemStatus, S1Error> {
        self.get_data("system/status", EndpointFamily::System, false).await
    }

    /// `GET /system/info` (authenticated: proves the token works).
    ///
    /// # Errors
    /// As any call.
    pub async fn system_info(&self) -> Result<SystemInfo, S1Error> {
        self.get_data("system/info", EndpointFamily::System, true).await
    }

    // ---- plumbing ------------------------------------------------------------------------

    async fn get_data<T: DeserializeOwned>(
        &self,
        path: &str,
        family: EndpointFamily,
        auth: bool,
    ) -> Result<T, S1Error> {
        let call = Call {
            method: Method::GET,
            path,
            query: &[],
            body: None,
            family,
            idempotent: true,
            auth,
        };
        let bytes = self.send(&call).await?;
        decode::<DataEnvelope<T>>(path, &bytes).map(|e| e.data)
    }

    async fn post_data<T: DeserializeOwned>(
        &self,
        path: &str,
        family: EndpointFamily,
        body: &Value,
        idempotent: bool,
    ) -> Result<T, S1Error> {
        let call = Call {
            method: Method::POST,
            path,
            query: &[],
            body: Some(body),
            family,
            idempotent,
            auth: true,
        };
        let bytes = self.send(&call).await?;
        decode::<DataEnvelope<T>>(path, &bytes).map(|e| e.data)
    }

    fn pages<D, T>(
        &self,
        path: &'static str,
        family: EndpointFamily,
        query: Result<Vec<(String, String)>, S1Error>,
        extract: fn(D) -> Vec<T>,
    ) -> impl Stream<Item = Result<Page<T>, S1Error>> + '_
    where
        D: DeserializeOwned + 'static,
        T: 'static,
    {
        self.pages_owned(path.to_owned(), family, query, extract)
    }

    /// Follows `nextCursor` with the query otherwise unchanged (S1 ties a cursor to its query),
    /// one page in memory at a time.
    fn pages_owned<D, T>(
        &self,
        path: String,
        family: EndpointFamily,
        query: Result<Vec<(String, String)>, S1Error>,
        extract: fn(D) -> Vec<T>,
    ) -> impl Stream<Item = Result<Page<T>, S1Error>> + '_
    where
        D: DeserializeOwned + 'static,
        T: 'static,
    {
        enum State {
            Start(Result<Vec<(String, String)>, S1Error>),
            Next(Vec<(String, String)>, String),
            Done,
        }
        stream::unfold(State::Start(query), move |state| {
            let path = path.clone();
            async move {
                let (base, cursor) = match state {
                    State::Done => return None,
                    State::Start(Err(e)) => return Some((Err(e), State::Done)),
                    State::Start(Ok(q)) => (q, None),
                    State::Next(q, c) => (q, Some(c)),
                };
                let mut query = base.clone();
                if let Some(c) = &cursor {
                    query.push(("cursor".into(), c.clone()));
                }
                let call = Call {
                    method: Method::GET,
                    path: &path,
                    query: &query,
                    body: None,
                    family,
                    idempotent: true,
                    auth: true,
                };
                let result = async {
                    let bytes = self.send(&call).await?;
                    let env: ListEnvelope<D> = decode(&path, &bytes)?;
                    let pagination = env.pagination.unwrap_or_default();
                    let next = pagination.next().map(str::to_owned);
                    if next.is_some() && next == cursor {
                        return Err(S1Error::Decode {
                            endpoint: format!("/{path}"),
                            path: "pagination.nextCursor".into(),
                            message: "S1 returned the cursor it was given; stopping instead of looping".into(),
                        });
                    }
                    Ok(Page {
                        items: extract(env.data),
                        next_cursor: next,
                        total_items: pagination.total_items,
                    })
                }
                .await;
                match result {
                    Ok(page) => {
                        let state = match &page.next_cursor {
                            Some(c) => State::Next(base, c.clone()),
                            None => State::Done,
                        };
                        Some((Ok(page), state))
                    }
                    Err(e) => Some((Err(e), State::Done)),
                }
            }
        })
    }

    async fn send(&self, call: &Call<'_>) -> Result<bytes::Bytes, S1Error> {
        let endpoint = format!("/{}", call.path);
        let url = self
            .api_base
            .join(call.path)
            .map_err(|e| S1Error::InvalidRequest(format!("bad API path {endpoint}: {e}")))?;
        let mut delays = ExponentialBuilder::default()
            .with_min_delay(self.retry.min_delay)
            .with_max_delay(self.retry.max_delay)
            .with_jitter()
            .with_max_times(self.retry.max_attempts.saturating_sub(1) as usize)
            .build();
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            self.limiters.acquire(call.family).await;
            let started = Instant::now();
            let mut req = self.http.request(call.method.clone(), url.clone());
            if !call.query.is_empty() {
                req = req.query(call.query);
            }
            if call.auth {
                req = req.header(AUTHORIZATION, self.auth.clone());
            }
            if let Some(body) = call.body {
                req = req.json(body);
            }
            // (status, Retry-After, Location, body) or the failure of the attempt.
            let outcome = match req.send().await {
                Ok(resp) => {
                    let status = resp.status();
                    let retry_after = retry_after(resp.headers());
                    let location = status
                        .is_redirection()
                        .then(|| {
                            resp.headers()
                                .get(LOCATION)
                                .and_then(|v| v.to_str().ok())
                                .map(str::to_owned)
                        })
                        .flatten();
                    match crate::net::read_capped(resp, self.max_body).await {
                        Ok(b) => Ok((status, retry_after, location, b)),
                        Err(ReadError::Transport(e)) => Err(e),
                        Err(ReadError::TooLarge { limit }) => {
                            let err = S1Error::TooLarge {
                                endpoint: endpoint.clone(),
                                status: status.as_u16(),
                                limit,
                            };
                            self.observe(
                                call,
                                &endpoint,
                                attempt,
                                started.elapsed(),
                                Some(status),
                                Some(err.to_string()),
                            );
                            return Err(err);
                        }
                    }
                }
                Err(e) => Err(e),
            };
            match &outcome {
                Ok((status, ..)) => self.observe(call, &endpoint, attempt, started.elapsed(), Some(*status), None),
                Err(e) => self.observe(
                    call,
                    &endpoint,
                    attempt,
                    started.elapsed(),
                    None,
                    Some(crate::net::describe(e)),
                ),
            }

            let (failure, hint) = match outcome {
                Ok((status, _, _, bytes)) if status.is_success() => return Ok(bytes),
                Ok((StatusCode::TOO_MANY_REQUESTS, retry_after, _, _)) => (
                    // S1 did not process a rate-limited call, so retrying is safe for every call.
                    S1Error::RateLimited {
                        endpoint: endpoint.clone(),
                        attempts: attempt,
                        retry_after,
                    },
                    retry_after,
                ),
                Ok((status, _, _, bytes)) if status.is_server_error() => {
                    let err = S1Error::Server {
                        endpoint: endpoint.clone(),
                        status: status.as_u16(),
                        attempts: attempt,
                        body: parse_error_body(&bytes),
                    };
                    if !call.idempotent {
                        return Err(err);
                    }
                    (err, None)
                }
                Ok((status, _, location, _)) if status.is_redirection() => {
                    return Err(S1Error::Redirected {
                        endpoint,
                        status: status.as_u16(),
                        location,
                    });
                }
                Ok((status, _, _, bytes)) => return Err(classify(&endpoint, status, &bytes)),
                Err(e) => {
                    // A refused connection never reached S1; anything later is ambiguous.
                    let safe = call.idempotent || e.is_connect();
                    let err = S1Error::Transport {
                        endpoint: endpoint.clone(),
                        attempts: attempt,
                        cause: crate::net::describe(&e),
                        source: e.without_url(),
                    };
                    if !safe {
                        return Err(err);
                    }
                    (err, None)
                }
            };
            let Some(backoff) = delays.next() else {
                return Err(failure);
            };
            let wait = hint.map(|h| h.min(self.retry.max_retry_after)).unwrap_or(backoff);
            tracing::debug!(endpoint = %endpoint, attempt, wait_ms = wait.as_millis() as u64, error = %failure, "retrying S1 call");
            tokio::time::sleep(wait).await;
        }
    }

    fn observe(
        &self,
        call: &Call<'_>,
        endpoint: &str,
        attempt: u32,
        latency: Duration,
        status: Option<StatusCode>,
        error: Option<String>,
    ) {
        let Some(observer) = &self.observer else {
            return;
        };
        observer.record(&RequestRecord {
            method: call.method.to_string(),
            path: endpoint.to_owned(),
            status: status.map(|s| s.as_u16()),
            latency,
            attempt,
            error,
        });
    }
}

fn api_base(console_url: &str) -> Result<Url, S1Error> {
    let mut url = Url::parse(console_url.trim())
        .map_err(|e| S1Error::InvalidRequest(format!("console URL {console_url:?} is not a URL: {e}")))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(S1Error::InvalidRequest(format!(
            "console URL {console_url:?} must be http(s)://host (e.g. https://acme.sentinelone.net)"
        )));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(S1Error::InvalidRequest("console URL must not carry credentials".into()));
    }
    let path = url.path().trim_end_matches('/');
    if !(path.is_empty() || path == "/web/api/v2.1") {
        return Err(S1Error::InvalidRequest(format!(
            "console URL {console_url:?} has path {path:?}; give the console origin only"
        )));
    }
    url.set_path(API_PREFIX);
    url.set_query(None);
    url.set_fragment(None);
    Ok(url)
}

fn path_with_id(prefix: &str, id: &str, suffix: &str) -> Result<String, S1Error> {
    if id.is_empty() || !id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
        return Err(S1Error::InvalidRequest(format!("{id:?} is not a valid S1 id")));
    }
    Ok(format!("{prefix}/{id}/{suffix}"))
}

fn ids_filter(ids: &[String]) -> Result<Value, S1Error> {
    if ids.is_empty() {
        return Err(S1Error::InvalidRequest(
            "refusing to send an empty id filter: S1 would apply the change to every threat in scope".into(),
        ));
    }
    if let Some(bad) = ids.iter().find(|i| i.trim().is_empty()) {
        return Err(S1Error::InvalidRequest(format!("{bad:?} is not a valid S1 id")));
    }
    Ok(json!({ "ids": ids }))
}

fn wire(s: &'static str) -> Result<&'static str, S1Error> {
    if s == "unknown" {
        return Err(S1Error::InvalidRequest(
            "cannot send an unknown enum value to S1".into(),
        ));
    }
    Ok(s)
}

fn classify(endpoint: &str, status: StatusCode, bytes: &[u8]) -> S1Error {
    let body = parse_error_body(bytes);
    let endpoint = endpoint.to_owned();
    match status {
        StatusCode::UNAUTHORIZED => S1Error::Unauthorized { endpoint, body },
        StatusCode::FORBIDDEN => S1Error::Forbidden { endpoint, body },
        StatusCode::BAD_REQUEST => S1Error::BadRequest { endpoint, body },
        StatusCode::NOT_FOUND => S1Error::NotFound { endpoint, body },
        other => S1Error::UnexpectedStatus {
            endpoint,
            status: other.as_u16(),
            body,
        },
    }
}

/// `Retry-After` as seconds or an HTTP date.
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let v = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let when = time::OffsetDateTime::parse(v, &time::format_description::well_known::Rfc2822).ok()?;
    let secs = (when - OffsetDateTime::now_utc()).whole_seconds();
    Some(Duration::from_secs(secs.max(0) as u64))
}

/// Decodes an S1 answer from `/<path>` as the client does: whatever the body holds, a failure is
/// [`S1Error::Decode`] naming the JSON path of the field that failed
/// (`data[3].threatInfo.updatedAt`), never a panic.
///
/// # Errors
/// [`S1Error::Decode`].
pub fn decode_response<T: DeserializeOwned>(path: &str, bytes: &[u8]) -> Result<T, S1Error> {
    decode(path, bytes)
}

fn decode<T: DeserializeOwned>(path: &str, bytes: &[u8]) -> Result<T, S1Error> {
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize(de).map_err(|e| S1Error::Decode {
        endpoint: format!("/{path}"),
        path: e.path().to_string(),
        message: e.inner().to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn console_url_forms() {
        for (input, want) in [
            (
                "https://acme.sentinelone.net",
                Some("https://acme.sentinelone.net/web/api/v2.1/"),
            ),
            (
                "https://acme.sentinelone.net/",
                Some("https://acme.sentinelone.net/web/api/v2.1/"),
            ),
            (
                "https://acme.sentinelone.net/web/api/v2.1",
                Some("https://acme.sentinelone.net/web/api/v2.1/"),
            ),
            ("http://127.0.0.1:8080", Some("http://127.0.0.1:8080/web/api/v2.1/")),
            ("ftp://acme.sentinelone.net", None),
            ("acme.sentinelone.net", None),
            ("https://user:pw@acme.sentinelone.net", None),
            ("https://acme.sentinelone.net/other", None),
        ] {
            let got = api_base(input).ok().map(|u| u.to_string());
            assert_eq!(got.as_deref(), want, "console URL {input:?}");
        }
    }

    #[test]
    fn limit_outside_range_is_refused_before_sending() {
        for limit in [0, 1001] {
            let q = ThreatQuery {
                limit,
                ..ThreatQuery::default()
            };
            assert!(matches!(q.to_pairs(), Err(S1Error::InvalidRequest(_))), "limit {limit}");
        }
        assert!(
            ThreatQuery {
                limit: 1000,
                ..ThreatQuery::default()
            }
            .to_pairs()
            .is_ok()
        );
    }

    #[test]
    fn empty_id_filter_is_refused() {
        assert!(matches!(ids_filter(&[]), Err(S1Error::InvalidRequest(m)) if m.contains("every threat")));
        assert!(ids_filter(&[" ".into()]).is_err());
        assert_eq!(ids_filter(&["1".into()]).unwrap(), json!({"ids": ["1"]}));
    }

    #[test]
    fn retry_after_seconds_and_dates() {
        let mut h = HeaderMap::new();
        h.insert(RETRY_AFTER, HeaderValue::from_static("7"));
        assert_eq!(retry_after(&h), Some(Duration::from_secs(7)));
        h.insert(RETRY_AFTER, HeaderValue::from_static("Wed, 21 Oct 2015 07:28:00 GMT"));
        assert_eq!(retry_after(&h), Some(Duration::ZERO), "a past date means now");
        h.insert(RETRY_AFTER, HeaderValue::from_static("soon"));
        assert_eq!(retry_after(&h), None);
    }

    #[test]
    fn token_is_not_in_client_debug() {
        let c = S1Client::new(
            "https://a.sentinelone.net",
            &ApiToken::new("tok-SECRET"),
            ClientOptions::default(),
        )
        .unwrap();
        assert!(!format!("{c:?}").contains("SECRET"));
    }
}
