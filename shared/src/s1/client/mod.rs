//! [`S1Client`]: one console, one token. This module holds the client itself (building it,
//! its single-object calls, decoding); the wire loop is in `transport`, paging in `paging`, and
//! the endpoints one family per module.

mod alerts;
mod assets;
mod options;
mod paging;
mod query;
mod threats;
mod transport;
pub mod uam;
mod users;

use std::sync::Arc;

use reqwest::Method;
use reqwest::header::HeaderValue;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use url::Url;

pub use options::{ClientOptions, RequestObserver, RequestRecord, RetryPolicy};
pub use paging::Page;
pub use query::{AgentQuery, CloudAlertQuery, MAX_PAGE_LIMIT, SiteQuery, SortOrder, ThreatQuery, ThreatSort};
pub use uam::{AlertLink, UNIFIED_MAX_PAGE, UnifiedAlertQuery};

use super::dto::DataEnvelope;
use super::error::S1Error;
use super::ratelimit::{Allowance, EndpointFamily, Limiters, SharedFamilies};
use crate::ApiToken;
use transport::Call;

const API_PREFIX: &str = "/web/api/v2.1/";

/// A client for one S1 console and one API token.
///
/// Cheap to clone (the HTTP pool and the rate limiters are shared), so one client per tenant
/// serves every concurrent task of that tenant and they share its rate budget.
#[derive(Clone)]
pub struct S1Client {
    http: reqwest::Client,
    api_base: Url,
    auth: HeaderValue,
    /// The token `auth` carries, for the one call that sends it in a body (its own details).
    token: ApiToken,
    limiters: Arc<Limiters>,
    /// The token's budgets shared with every process, when the console port has the table.
    shared: Option<Arc<SharedFamilies>>,
    /// This call's first request per family, which goes without the shared budget.
    allowance: Arc<Allowance>,
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
            token: token.clone(),
            limiters: Arc::new(Limiters::new(&options.rate_limits)),
            shared: None,
            allowance: Arc::default(),
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

    /// The same client (same console, token and rate budget) retrying as `retry` says: one
    /// caller may need a shorter retry budget (an answer due within seconds) than another.
    /// A `max_attempts` of 0 is taken as 1.
    #[must_use]
    pub fn with_retry(mut self, mut retry: RetryPolicy) -> Self {
        retry.max_attempts = retry.max_attempts.max(1);
        self.retry = retry;
        self
    }

    /// The same client also keeping to the token's budgets `shared` by every process.
    pub(crate) fn sharing(mut self, shared: Arc<SharedFamilies>) -> Self {
        self.shared = Some(shared);
        self
    }

    /// The same client for a new call through the console port: a fresh allowance (one request
    /// per family without the shared budget).
    pub(crate) fn for_new_call(mut self) -> Self {
        self.allowance = Arc::default();
        self
    }

    /// The state-table keys of the budgets this client shares (hashes; for tests).
    pub fn shared_budget_keys(&self) -> Vec<String> {
        self.shared.as_ref().map(|s| s.keys()).unwrap_or_default()
    }

    /// The token this client sends (for the console port's tests).
    #[cfg(test)]
    pub(crate) fn token(&self) -> &ApiToken {
        &self.token
    }

    /// Whether `other` draws on this client's rate budget (it is this client or a clone of it).
    pub fn shares_budget_with(&self, other: &S1Client) -> bool {
        Arc::ptr_eq(&self.limiters, &other.limiters)
    }

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
            changes: false,
            auth,
        };
        self.send(&call, |b| decode::<DataEnvelope<T>>(path, b).map(|e| e.data))
            .await
    }

    /// A write: `POST` of `body`, repeated after an ambiguous failure only when `idempotent`.
    async fn post_data<T: DeserializeOwned>(
        &self,
        path: &str,
        family: EndpointFamily,
        body: &Value,
        idempotent: bool,
    ) -> Result<T, S1Error> {
        self.post(path, family, body, idempotent, true).await
    }

    /// A read S1 takes as a `POST` (the token's details): repeated freely, changes nothing.
    async fn post_query<T: DeserializeOwned>(
        &self,
        path: &str,
        family: EndpointFamily,
        body: &Value,
    ) -> Result<T, S1Error> {
        self.post(path, family, body, true, false).await
    }

    async fn post<T: DeserializeOwned>(
        &self,
        path: &str,
        family: EndpointFamily,
        body: &Value,
        idempotent: bool,
        changes: bool,
    ) -> Result<T, S1Error> {
        let call = Call {
            method: Method::POST,
            path,
            query: &[],
            body: Some(body),
            family,
            idempotent,
            changes,
            auth: true,
        };
        self.send(&call, |b| decode::<DataEnvelope<T>>(path, b).map(|e| e.data))
            .await
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
    // Tracking the path costs a tenth of a backlog run's CPU: decode plainly, and only read a
    // body that fails again to name where.
    if let Ok(v) = serde_json::from_slice(bytes) {
        return Ok(v);
    }
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
    fn empty_id_filter_is_refused() {
        assert!(matches!(ids_filter(&[]), Err(S1Error::InvalidRequest(m)) if m.contains("every threat")));
        assert!(ids_filter(&[" ".into()]).is_err());
        assert_eq!(ids_filter(&["1".into()]).unwrap(), json!({"ids": ["1"]}));
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
