//! A HaloPSA REST client (docs: Halo's OpenAPI document, vendored in `tests/fixtures/halo-openapi`).
//!
//! - OAuth2 client credentials: the token endpoint the operator names (`token_url`), else
//!   `GET /api/AuthInfo`'s `auth_url` + `/token` when it is on the instance's own origin (another
//!   origin is an error: the client secret goes nowhere else), else `<base>/auth/token` when
//!   that call fails; `?tenant=` is added for a hosted instance. The token is cached until a
//!   minute before `expires_in`, and is fetched again once when Halo answers 401 (a token can be
//!   revoked early on Halo's side).
//! - Writes are a `POST` of a JSON array to the collection; Halo answers the written object or an
//!   array of them, and both are accepted. Lists are paged with Halo's own `pageinate=true`,
//!   `page_size`, `page_no`, and answer either `{"record_count", "<plural>": [...]}` or a bare array.
//! - A token bucket keeps every tenant under Halo's documented 500 requests per 300 s; a 429 is
//!   honoured (`Retry-After`), 5xx and network failures are retried within the retry budget,
//!   except that a write whose answer was lost (500, 502, 504, a cut connection) is not sent
//!   again: Halo may have done it, and the caller looks before it writes again.

use std::num::NonZeroU32;
use std::time::{Duration, Instant};

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use reqwest::Method;
use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;
use url::Url;

use crate::config::AllowedHosts;
use crate::platform::PlatformError;
use crate::s1::RetryPolicy;

/// Halo's documented ceiling: 500 requests in any 300 s.
pub const HALO_LIMIT: (u32, Duration) = (500, Duration::from_secs(300));
/// A token is fetched again this long before Halo says it expires.
const TOKEN_MARGIN: Duration = Duration::from_secs(60);
/// Records per list page.
pub const PAGE_SIZE: usize = 100;
/// The largest answer read from Halo (a page of 100 assets with their fields is well under it).
pub const MAX_BODY: usize = 8 * 1024 * 1024;

/// Where a Halo instance is and how to sign in to it. Secrets are redacted in `Debug`.
#[derive(Clone)]
pub struct HaloAuth {
    /// The instance's base URL, e.g. `https://acme.halopsa.com`.
    pub base_url: String,
    /// A hosted (cloud) instance's tenant name, sent as `?tenant=` on the token request.
    pub tenant: Option<String>,
    pub client_id: SecretString,
    pub client_secret: SecretString,
    /// Space-separated scopes; `all` by default.
    pub scope: String,
    /// The token endpoint the operator names, when the authorisation server is not on the
    /// instance's own origin; without it the secret goes only to the instance's origin.
    pub token_url: Option<String>,
}

impl std::fmt::Debug for HaloAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HaloAuth")
            .field("base_url", &self.base_url)
            .field("tenant", &self.tenant)
            .field("scope", &self.scope)
            .field("token_url", &self.token_url)
            .finish_non_exhaustive()
    }
}

struct CachedToken {
    value: SecretString,
    renew_at: Instant,
}

/// One Halo instance's API, with its token cache and request budget. Cheap to share (`Arc`).
pub struct HaloClient {
    http: reqwest::Client,
    base: Url,
    allowed: AllowedHosts,
    auth: HaloAuth,
    retry: RetryPolicy,
    limiter: crate::platform::budget::Budget,
    token: tokio::sync::Mutex<Option<CachedToken>>,
    /// The operator's token endpoint (checked like the base URL), when named.
    token_url: Option<Url>,
}

impl std::fmt::Debug for HaloClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HaloClient")
            .field("base", &self.base.as_str())
            .finish_non_exhaustive()
    }
}

/// The token bucket for `limit` requests per `window`: a tenth of the budget may go at once and
/// 80% of it is spread evenly, so no window of that length holds more than 90% of `limit`
/// (room for another client of the same API application, and for clock skew).
fn bucket(limit: u32, window: Duration) -> Result<DefaultDirectRateLimiter, PlatformError> {
    let burst = (limit / 10).max(1);
    let steady = (limit * 8 / 10).max(1);
    let period = window / steady;
    let quota = Quota::with_period(period)
        .ok_or_else(|| PlatformError::Config("the Halo request budget must allow at least one request".into()))?
        .allow_burst(NonZeroU32::new(burst).expect("burst is at least 1"));
    Ok(RateLimiter::direct(quota))
}

impl HaloClient {
    /// A client for `auth.base_url`, pacing itself at `limit` requests per window.
    ///
    /// # Errors
    /// [`PlatformError::Config`] for a base URL that is not https on a public host (or a host
    /// `allowed` names), or a zero budget.
    pub fn new(
        http: reqwest::Client,
        auth: HaloAuth,
        allowed: &AllowedHosts,
        limit: (u32, Duration),
        retry: RetryPolicy,
    ) -> Result<Self, PlatformError> {
        let mut base = allowed
            .check_platform_url("Halo url", &auth.base_url)
            .map_err(|e| PlatformError::Config(e.to_string()))?;
        if base.cannot_be_a_base() {
            return Err(PlatformError::Config(format!(
                "Halo url {:?} has no host",
                auth.base_url
            )));
        }
        // Halo's API sits under /api of the instance; a pasted ".../api" is the same instance.
        let path = base.path().trim_end_matches('/').trim_end_matches("/api").to_owned();
        base.set_path(&format!("{path}/"));
        let token_url = match auth.token_url.as_deref().map(str::trim).filter(|u| !u.is_empty()) {
            Some(u) => Some(
                allowed
                    .check_platform_url("Halo token_url", u)
                    .map_err(|e| PlatformError::Config(e.to_string()))?,
            ),
            None => None,
        };
        Ok(Self {
            token_url,
            http,
            base,
            allowed: allowed.clone(),
            auth,
            retry,
            limiter: crate::platform::budget::Budget::local(bucket(limit.0, limit.1)?),
            token: tokio::sync::Mutex::new(None),
        })
    }

    /// This client, also keeping to the instance's budget shared through `store` with every
    /// other process (and tenant) that uses the same instance and API application: `limit`
    /// requests per `window`, keyed by a hash of the base URL and client id.
    #[must_use]
    pub fn with_shared_budget(mut self, store: crate::store::Store, limit: (u32, Duration)) -> Self {
        let shared = crate::platform::budget::SharedBudget::new(
            std::sync::Arc::new(store),
            "halo",
            &[self.base.as_str(), self.auth.client_id.expose_secret()],
            limit.0,
            limit.1,
        );
        self.limiter.share(shared);
        self
    }

    /// The instance's base URL (ends with `/`).
    pub fn base_url(&self) -> &Url {
        &self.base
    }

    fn api_url(&self, path: &str) -> Url {
        let mut u = self.base.clone();
        u.set_path(&format!("{}api/{}", self.base.path(), path.trim_start_matches('/')));
        u
    }

    /// Where the token endpoint is: the one the operator names, else AuthInfo's `auth_url` +
    /// `/token` when that is on the instance's own origin, else `<base>/auth/token`. AuthInfo is
    /// unauthenticated, so its answer is read under the same cap as every other and never sends
    /// the client secret anywhere but the instance's origin: another origin is an error naming
    /// it (the operator can name it as `token_url` if it is theirs).
    async fn token_url(&self) -> Result<Url, PlatformError> {
        if let Some(named) = &self.token_url {
            return Ok(named.clone());
        }
        let mut fallback = self.base.clone();
        fallback.set_path(&format!("{}auth/token", self.base.path()));
        self.limiter.until_ready().await;
        let resp = match self.http.get(self.api_url("AuthInfo")).send().await {
            Ok(r) if r.status().is_success() => r,
            _ => return Ok(fallback),
        };
        let body = read(resp, "GET /api/AuthInfo").await?;
        let Some(auth_url) = serde_json::from_slice::<Value>(&body)
            .ok()
            .and_then(|v| {
                v.get("auth_url")?
                    .as_str()
                    .map(|u| u.trim().trim_end_matches('/').to_owned())
            })
            .filter(|u| !u.is_empty())
        else {
            return Ok(fallback);
        };
        let shown: String = auth_url.chars().take(200).collect();
        let url = self
            .allowed
            .check_platform_url("Halo auth_url", &format!("{auth_url}/token"))
            .map_err(|e| {
                PlatformError::Config(format!(
                    "Halo's AuthInfo names an authorisation server that is refused: {e}"
                ))
            })?;
        if url.origin() != self.base.origin() {
            return Err(PlatformError::Config(format!(
                "Halo's AuthInfo names {shown:?} as the authorisation server, not on the instance's origin {}; \
                 the client secret is sent only there: if that server is the instance's, set settings.token_url to its token endpoint",
                self.base.origin().ascii_serialization()
            )));
        }
        Ok(url)
    }

    /// A valid bearer token: the cached one, or a new one from the authorisation server.
    async fn bearer(&self) -> Result<SecretString, PlatformError> {
        let mut cached = self.token.lock().await;
        if let Some(t) = cached.as_ref().filter(|t| Instant::now() < t.renew_at) {
            return Ok(t.value.clone());
        }
        let mut url = self.token_url().await?;
        if let Some(tenant) = self.auth.tenant.as_deref().filter(|t| !t.is_empty()) {
            url.query_pairs_mut().append_pair("tenant", tenant);
        }
        let form = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("grant_type", "client_credentials")
            .append_pair("client_id", self.auth.client_id.expose_secret())
            .append_pair("client_secret", self.auth.client_secret.expose_secret())
            .append_pair("scope", &self.auth.scope)
            .finish();
        let resp = crate::platform::http::deliver(&self.retry, Some(&self.limiter), || {
            self.http
                .post(url.clone())
                .header(reqwest::header::CONTENT_TYPE, "application/x-www-form-urlencoded")
                .body(form.clone())
        })
        .await
        .map_err(|e| match e {
            PlatformError::Rejected { status, detail } | PlatformError::Refused { status, detail } => {
                PlatformError::Config(format!(
                    "Halo refused the API application's credentials (HTTP {status} from its token endpoint): {}",
                    oauth_error(&detail)
                ))
            }
            other => other,
        })?;
        let body: Value = serde_json::from_slice(&read(resp, "the token endpoint").await?)
            .map_err(|e| unavailable(format!("Halo's token answer is not JSON: {e}")))?;
        let value = body
            .get("access_token")
            .and_then(Value::as_str)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| unavailable("Halo's token answer has no access_token".into()))?;
        let lifetime = Duration::from_secs(body.get("expires_in").and_then(Value::as_u64).unwrap_or(3600));
        let token = SecretString::from(value.to_owned());
        *cached = Some(CachedToken {
            value: token.clone(),
            renew_at: Instant::now() + lifetime.saturating_sub(TOKEN_MARGIN),
        });
        Ok(token)
    }

    /// Gets a token (the cached one, or a new one): proves the API application's credentials
    /// and scope.
    ///
    /// # Errors
    /// [`PlatformError::Config`] when Halo refuses the credentials; the token endpoint's errors.
    pub async fn sign_in(&self) -> Result<(), PlatformError> {
        self.bearer().await.map(drop)
    }

    async fn forget_token(&self) {
        *self.token.lock().await = None;
    }

    /// One API call with a bearer token; on 401 the token is fetched again once and the call
    /// repeated. Returns the parsed JSON body (`Null` for an empty one).
    ///
    /// # Errors
    /// [`PlatformError::Rejected`] for a refusal of this request (400, 409, 413, 422),
    /// [`PlatformError::Refused`] for any other 4xx (permissions, a wrong URL),
    /// [`PlatformError::Unavailable`] after the retry budget, [`PlatformError::Config`] when
    /// the credentials are refused.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<&Value>,
    ) -> Result<Value, PlatformError> {
        let url = self.api_url(path);
        for fresh in [false, true] {
            let token = self.bearer().await?;
            // A write (a create above all) is not sent again after a try whose answer was lost:
            // the caller looks for what it may have made first (a ticket by its marker, an
            // asset by the tenant's match rule).
            let repeat_unheard = method == Method::GET;
            let sent = crate::platform::http::deliver_as(&self.retry, Some(&self.limiter), repeat_unheard, || {
                let mut rb = self
                    .http
                    .request(method.clone(), url.clone())
                    .bearer_auth(token.expose_secret())
                    .query(query);
                if let Some(b) = body {
                    rb = rb.json(b);
                }
                rb
            })
            .await;
            match sent {
                Err(PlatformError::Refused { status: 401, .. }) if !fresh => self.forget_token().await,
                Err(PlatformError::Refused { status: 401, detail }) => {
                    return Err(PlatformError::Config(format!(
                        "Halo refused a fresh token for {method} /api/{path} (HTTP 401): {}",
                        detail.trim()
                    )));
                }
                Err(e) => return Err(e),
                Ok(resp) => {
                    let bytes = read(resp, &format!("{method} /api/{path}")).await?;
                    if bytes.iter().all(u8::is_ascii_whitespace) {
                        return Ok(Value::Null);
                    }
                    return serde_json::from_slice(&bytes)
                        .map_err(|e| unavailable(format!("Halo's answer to {method} /api/{path} is not JSON: {e}")));
                }
            }
        }
        unreachable!("the loop returns on its second pass")
    }

    /// `GET /api/<path>` with a query.
    ///
    /// # Errors
    /// As [`HaloClient::call`].
    pub async fn get(&self, path: &str, query: &[(&str, String)]) -> Result<Value, PlatformError> {
        self.call(Method::GET, path, query, None).await
    }

    /// Writes records: `POST` of an array to the collection (an element with an `id` updates it,
    /// one without creates). Returns the written records, whether Halo answered an object or an
    /// array.
    ///
    /// # Errors
    /// As [`HaloClient::call`].
    pub async fn post(&self, collection: &str, records: &[Value]) -> Result<Vec<Value>, PlatformError> {
        let answer = self
            .call(Method::POST, collection, &[], Some(&Value::Array(records.to_vec())))
            .await?;
        Ok(match answer {
            Value::Array(items) => items,
            Value::Null => vec![],
            other => vec![other],
        })
    }

    /// Writes one record and returns Halo's id for it.
    ///
    /// # Errors
    /// As [`HaloClient::call`]; [`PlatformError::Unavailable`] when the answer carries no id.
    pub async fn post_one(&self, collection: &str, record: Value) -> Result<i64, PlatformError> {
        let written = self.post(collection, std::slice::from_ref(&record)).await?;
        written
            .first()
            .and_then(|r| r.get("id"))
            .and_then(as_id)
            .ok_or_else(|| unavailable(format!("Halo's answer to POST /api/{collection} names no id")))
    }

    /// Every record of a list, page by page (`pageinate=true&page_size&page_no`), or the bare
    /// array of a collection Halo does not page.
    ///
    /// # Errors
    /// As [`HaloClient::call`].
    pub async fn list(
        &self,
        collection: &str,
        query: &[(&str, String)],
        key: &str,
    ) -> Result<Vec<Value>, PlatformError> {
        let mut out = Vec::new();
        for page_no in 1.. {
            let mut q = query.to_vec();
            q.push(("pageinate", "true".into()));
            q.push(("page_size", PAGE_SIZE.to_string()));
            q.push(("page_no", page_no.to_string()));
            let answer = self.get(collection, &q).await?;
            let (items, total) = list_items(answer, key);
            let got = items.len();
            out.extend(items);
            let done = got < PAGE_SIZE || total.is_some_and(|t| out.len() >= t);
            if done {
                break;
            }
        }
        Ok(out)
    }

    /// A collection Halo answers unpaged (statuses, ticket types, priorities, outcomes, asset
    /// types and groups): a bare array or a wrapper.
    ///
    /// # Errors
    /// As [`HaloClient::call`].
    pub async fn list_all(&self, collection: &str, key: &str) -> Result<Vec<Value>, PlatformError> {
        Ok(list_items(self.get(collection, &[]).await?, key).0)
    }
}

/// The records of a list answer and the total Halo reports, whatever its shape.
fn list_items(answer: Value, key: &str) -> (Vec<Value>, Option<usize>) {
    match answer {
        Value::Array(items) => (items, None),
        Value::Object(mut o) => {
            let total = o
                .get("record_count")
                .and_then(Value::as_u64)
                .and_then(|n| usize::try_from(n).ok());
            let items = match o.remove(key) {
                Some(Value::Array(items)) => items,
                _ => vec![],
            };
            (items, total)
        }
        _ => (vec![], None),
    }
}

/// Halo ids are numbers, sometimes sent as strings.
pub fn as_id(v: &Value) -> Option<i64> {
    v.as_i64().or_else(|| v.as_str().and_then(|s| s.trim().parse().ok()))
}

/// An answer's body, capped at [`MAX_BODY`].
async fn read(resp: reqwest::Response, what: &str) -> Result<bytes::Bytes, PlatformError> {
    crate::net::read_capped(resp, MAX_BODY).await.map_err(|e| match e {
        crate::net::ReadError::TooLarge { limit } => {
            unavailable(format!("Halo's answer to {what} is larger than {limit} bytes"))
        }
        crate::net::ReadError::Transport(e) => {
            unavailable(format!("reading Halo's answer to {what}: {}", crate::net::describe(&e)))
        }
    })
}

fn unavailable(detail: String) -> PlatformError {
    PlatformError::Unavailable { attempts: 1, detail }
}

/// The OAuth `error` / `error_description` of a token refusal, else the raw text.
fn oauth_error(body: &str) -> String {
    match serde_json::from_str::<Value>(body) {
        Ok(v) => {
            let code = v.get("error").and_then(Value::as_str).unwrap_or("refused");
            match v.get("error_description").and_then(Value::as_str) {
                Some(d) => format!("{code}: {d}"),
                None => code.to_owned(),
            }
        }
        Err(_) => body.trim().chars().take(200).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_answers_of_every_shape_are_read() {
        let (items, total) = list_items(
            serde_json::json!({"record_count": 3, "clients": [{"id": 1}]}),
            "clients",
        );
        assert_eq!((items.len(), total), (1, Some(3)));
        let (items, total) = list_items(serde_json::json!([{"id": 1}, {"id": 2}]), "clients");
        assert_eq!((items.len(), total), (2, None));
        assert!(list_items(serde_json::json!({"other": []}), "clients").0.is_empty());
    }

    #[test]
    fn the_bucket_never_allows_more_than_the_window_holds() {
        // A tenth at once (50), then one every 300/400 s.
        let b = bucket(500, Duration::from_secs(300)).unwrap();
        let mut at_once = 0;
        while b.check().is_ok() {
            at_once += 1;
        }
        assert_eq!(at_once, 50);
    }

    #[test]
    fn debug_never_shows_the_secret() {
        let auth = HaloAuth {
            base_url: "https://acme.halopsa.com".into(),
            tenant: None,
            client_id: SecretString::from("the-client-id"),
            client_secret: SecretString::from("sEcReT"),
            scope: "all".into(),
            token_url: None,
        };
        let shown = format!("{auth:?}");
        assert!(!shown.contains("sEcReT") && !shown.contains("the-client-id"), "{shown}");
    }
}
