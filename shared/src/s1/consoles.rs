//! [`Consoles`]: how every use case reaches S1. One [`S1Client`] per tenant per process (its own
//! pacing per console and token), and every call made with the tenant's token, re-reading the
//! secret once when S1 answers 401.
//!
//! Built [`Consoles::sharing_budgets`] (the composition root hands it the store), every client
//! also keeps to its token's budgets shared by every process through the state table, one per
//! rate family and keyed by a hash of the console and token: S1 limits per token, and
//! concurrent Lambdas or several tenants on one token would otherwise add up past it. Each call
//! through the port sends its first request per family on its own allowance (an idle poll
//! costs no table write); the bound this gives is on `SharedFamilies` (`ratelimit.rs`).
//!
//! A 401 usually means the token was rotated since it was cached. [`Consoles::with_token`] then
//! forgets the cached token and reads the secret again: a different token gets the call once
//! more; the same token falls back to the one a stuck rotation staged (`AWSPENDING`: S1 revokes
//! the old token when it issues the new one, so between the rotation's steps only the staged one
//! works); otherwise the 401 stands.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};

use super::ratelimit::SharedFamilies;
use super::{ClientOptions, S1Client, S1Error};
use crate::ApiToken;
use crate::net::budget::BudgetCounters;
use crate::secrets::{SecretError, TokenCallError, TokenProvider};
use crate::tenant::{SecretRef, TenantConfig};

/// Which console a call goes to, and where its token comes from.
#[derive(Debug, Clone, Copy)]
pub struct Console<'a> {
    /// The tenant the console belongs to: one client (one rate budget) per tenant.
    pub tenant: &'a str,
    /// The console's origin, e.g. `https://acme.sentinelone.net`.
    pub url: &'a str,
    /// Where the tenant's S1 API token is read from.
    pub token: &'a SecretRef,
}

impl<'a> From<&'a TenantConfig> for Console<'a> {
    fn from(t: &'a TenantConfig) -> Self {
        Self {
            tenant: &t.id,
            url: &t.console_url,
            token: &t.token,
        }
    }
}

/// The error of a call made through [`Consoles::with_token`]: it can hold what the console port
/// itself fails with (the token cannot be read, the client cannot be built), and it says whether
/// S1 refused the token.
pub trait ConsoleError: From<SecretError> + From<S1Error> {
    /// S1 answered 401: the token is wrong, expired, revoked, or rotated since it was read.
    fn is_unauthorized(&self) -> bool;
}

impl ConsoleError for TokenCallError {
    fn is_unauthorized(&self) -> bool {
        matches!(self, TokenCallError::S1(e) if e.is_unauthorized())
    }
}

/// A tenant's client and what it was built for.
struct Cached {
    url: String,
    token: ApiToken,
    client: S1Client,
}

struct Inner {
    tokens: Arc<dyn TokenProvider>,
    http: reqwest::Client,
    options: ClientOptions,
    clients: Mutex<HashMap<String, Cached>>,
    built: AtomicU64,
    /// Where the shared budgets' counters are kept, when they are shared.
    counters: Option<Arc<dyn BudgetCounters>>,
    /// Each token's shared budgets in this process (by a hash of console and token), so the
    /// tenants on one token share what the process took of them.
    shared: Mutex<HashMap<String, Weak<SharedFamilies>>>,
}

/// The console port: tenants' S1 clients, built once per process and called with the tenants'
/// tokens. Cheap to clone (clones share the clients); build one per process and hand it to
/// every use case.
#[derive(Clone)]
pub struct Consoles {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Consoles {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Consoles")
            .field("clients", &self.lock().len())
            .finish_non_exhaustive()
    }
}

impl Consoles {
    /// Clients built on `http` (one pool per process; build it with
    /// [`crate::net::outbound_client`]) with `options`, reading tokens through `tokens`.
    pub fn new(http: reqwest::Client, tokens: Arc<dyn TokenProvider>, options: ClientOptions) -> Self {
        Self {
            inner: Arc::new(Inner {
                tokens,
                http,
                options,
                clients: Mutex::new(HashMap::new()),
                built: AtomicU64::new(0),
                counters: None,
                shared: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// The same port (with no client built yet) whose clients also keep to their tokens'
    /// budgets shared by every process through `counters` (the state table).
    #[must_use]
    pub fn sharing_budgets(self, counters: Arc<dyn BudgetCounters>) -> Self {
        let inner = &self.inner;
        Self {
            inner: Arc::new(Inner {
                tokens: inner.tokens.clone(),
                http: inner.http.clone(),
                options: inner.options.clone(),
                clients: Mutex::new(HashMap::new()),
                built: AtomicU64::new(0),
                counters: Some(counters),
                shared: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// `client` keeping to its token's shared budgets, when this port shares them.
    fn share(&self, client: S1Client, token: &ApiToken) -> S1Client {
        let Some(counters) = &self.inner.counters else {
            return client;
        };
        let key = SharedFamilies::process_key(client.api_base(), token);
        let mut shared = self.inner.shared.lock().unwrap_or_else(|e| e.into_inner());
        let families = match shared.get(&key).and_then(Weak::upgrade) {
            Some(f) => f,
            None => {
                // Tokens rotate: forget the budgets no client holds any more.
                shared.retain(|_, f| f.strong_count() > 0);
                let f = Arc::new(SharedFamilies::new(
                    counters,
                    &self.inner.options.rate_limits,
                    client.api_base(),
                    token,
                ));
                shared.insert(key, Arc::downgrade(&f));
                f
            }
        };
        client.sharing(families)
    }

    /// The options every client is built with.
    pub fn options(&self) -> &ClientOptions {
        &self.inner.options
    }

    /// How many clients this port has built (a tenant's client is rebuilt only when its console
    /// URL or token changes).
    pub fn clients_built(&self) -> u64 {
        self.inner.built.load(Ordering::Relaxed)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Cached>> {
        self.inner.clients.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The tenant's client for `token`: the one built before when it was built for the same
    /// console URL and token, else a new one, which replaces it.
    ///
    /// # Errors
    /// [`S1Error::InvalidRequest`] when the client cannot be built (see [`S1Client::new`]).
    pub fn client(&self, console: Console<'_>, token: &ApiToken) -> Result<S1Client, S1Error> {
        let mut clients = self.lock();
        if let Some(c) = clients.get(console.tenant) {
            if c.url == console.url && c.token == *token {
                return Ok(c.client.clone().for_new_call());
            }
        }
        let client = S1Client::with_http(self.inner.http.clone(), console.url, token, self.inner.options.clone())?;
        let client = self.share(client, token);
        self.inner.built.fetch_add(1, Ordering::Relaxed);
        clients.insert(
            console.tenant.to_owned(),
            Cached {
                url: console.url.to_owned(),
                token: token.clone(),
                client: client.clone(),
            },
        );
        Ok(client)
    }

    /// The tenant's client with its current token (read, possibly from a cache).
    ///
    /// # Errors
    /// The token cannot be read, or the client cannot be built.
    pub async fn client_for<'c>(&self, console: impl Into<Console<'c>>) -> Result<S1Client, TokenCallError> {
        let console = console.into();
        let token = self.inner.tokens.token(console.token).await?;
        Ok(self.client(console, &token)?)
    }

    /// Runs `call` with the tenant's client. On a 401 the token is re-read once (see the module
    /// docs): when that gives another token, `call` runs once more with it; when not, the 401
    /// stands. `call` must be safe to repeat after a 401 (S1 did nothing with the refused call).
    ///
    /// # Errors
    /// The token cannot be read, the client cannot be built, or `call`'s own error (after the
    /// one re-read for a 401).
    pub async fn with_token<'c, T, E, Fut>(
        &self,
        console: impl Into<Console<'c>>,
        mut call: impl FnMut(S1Client) -> Fut,
    ) -> Result<T, E>
    where
        Fut: Future<Output = Result<T, E>>,
        E: ConsoleError,
    {
        self.with_token_state(console, (), |client, ()| {
            let running = call(client);
            async move { ((), running.await) }
        })
        .await
    }

    /// [`Consoles::with_token`] for a call that works on `state` (say, `&mut` a run's report):
    /// each try gets it and hands it back with its result, so a repeated try goes on from
    /// where the refused one left it.
    ///
    /// (A closure borrowing the state for each try, an `AsyncFnMut`, would be simpler to call,
    /// but the compiler cannot prove its futures `Send` for every lifetime, which servers and
    /// the Lambda runtime need.)
    ///
    /// # Errors
    /// As [`Consoles::with_token`].
    pub async fn with_token_state<'c, S, T, E, Fut>(
        &self,
        console: impl Into<Console<'c>>,
        state: S,
        mut call: impl FnMut(S1Client, S) -> Fut,
    ) -> Result<T, E>
    where
        Fut: Future<Output = (S, Result<T, E>)>,
        E: ConsoleError,
    {
        let console = console.into();
        let token = self.inner.tokens.token(console.token).await?;
        let client = self.client(console, &token)?;
        match call(client, state).await {
            (state, Err(e)) if e.is_unauthorized() => {
                let Some(fresh) = self.reread(console, &token).await? else {
                    return Err(e);
                };
                tracing::info!(
                    tenant = console.tenant,
                    "S1 rejected the cached token; retrying once with the re-read one"
                );
                let client = self.client(console, &fresh)?;
                call(client, state).await.1
            }
            (_, result) => result,
        }
    }

    /// After S1 refused `refused`: the secret's token read afresh, or the one a stuck rotation
    /// staged; `None` when neither differs from the refused one.
    async fn reread(&self, console: Console<'_>, refused: &ApiToken) -> Result<Option<ApiToken>, SecretError> {
        let tokens = &self.inner.tokens;
        tokens.invalidate(console.token).await;
        let fresh = tokens.token(console.token).await?;
        if fresh != *refused {
            return Ok(Some(fresh));
        }
        Ok(tokens.pending_token(console.token).await.filter(|p| p != refused))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secrets::LocalTokenProvider;

    fn options() -> ClientOptions {
        ClientOptions::default().allowing(crate::config::AllowedHosts::parse("127.0.0.1").unwrap())
    }

    fn source(var: &str) -> SecretRef {
        SecretRef::Env { var: var.into() }
    }

    #[test]
    fn one_client_per_tenant_rebuilt_when_its_token_or_console_changes() {
        let tokens = Arc::new(LocalTokenProvider::with_lookup(|_| None));
        let consoles = Consoles::new(reqwest::Client::new(), tokens, options());
        let (a_src, b_src) = (source("A"), source("B"));
        let a = Console {
            tenant: "a",
            url: "http://127.0.0.1:1",
            token: &a_src,
        };
        let b = Console {
            tenant: "b",
            url: "http://127.0.0.1:1",
            token: &b_src,
        };
        let t1 = ApiToken::new("t1");
        let first = consoles.client(a, &t1).unwrap();
        let again = consoles.clone().client(a, &t1).unwrap();
        assert!(first.shares_budget_with(&again), "one rate budget per tenant");
        assert_eq!(consoles.clients_built(), 1);
        let other = consoles.client(b, &t1).unwrap();
        assert!(!first.shares_budget_with(&other), "tenants do not share a budget");
        let rotated = consoles.client(a, &ApiToken::new("t2")).unwrap();
        assert!(!first.shares_budget_with(&rotated), "a new token is a new budget");
        let moved = Console {
            url: "http://127.0.0.1:2",
            ..a
        };
        let moved = consoles.client(moved, &ApiToken::new("t2")).unwrap();
        assert!(!rotated.shares_budget_with(&moved));
        assert_eq!(consoles.clients_built(), 4);
        assert!(!format!("{consoles:?}").contains("t1"));
    }

    /// Counters that grant everything (the table is not the point here).
    struct Unlimited;

    #[async_trait::async_trait]
    impl BudgetCounters for Unlimited {
        async fn take(
            &self,
            _: &str,
            _: i64,
            limit: u32,
            want: u32,
            _: (i64, i64),
        ) -> Result<u32, crate::net::budget::CounterError> {
            Ok(want.min(limit))
        }
    }

    #[test]
    fn tenants_on_one_token_share_its_budgets_keyed_without_the_token() {
        let tokens = Arc::new(LocalTokenProvider::with_lookup(|_| None));
        let consoles = Consoles::new(reqwest::Client::new(), tokens, options()).sharing_budgets(Arc::new(Unlimited));
        let src = source("A");
        let tenant = |tenant, url| Console {
            tenant,
            url,
            token: &src,
        };
        let token = ApiToken::new("secret-token-1");
        let a = consoles.client(tenant("a", "http://127.0.0.1:1"), &token).unwrap();
        // The same console written another way is the same console.
        let b = consoles.client(tenant("b", "http://127.0.0.1:1/"), &token).unwrap();
        let keys = a.shared_budget_keys();
        assert_eq!(keys.len(), 9, "one budget per rate family: {keys:?}");
        assert_eq!(keys, b.shared_budget_keys(), "one token, one set of budgets");
        assert!(
            keys.iter().all(|k| k.starts_with("s1:") && !k.contains("secret")),
            "{keys:?}"
        );
        let other = consoles
            .client(tenant("c", "http://127.0.0.1:1"), &ApiToken::new("secret-token-2"))
            .unwrap();
        assert!(
            other.shared_budget_keys().iter().all(|k| !keys.contains(k)),
            "another token, other budgets"
        );
        let elsewhere = consoles.client(tenant("d", "http://127.0.0.1:2"), &token).unwrap();
        assert!(
            elsewhere.shared_budget_keys().iter().all(|k| !keys.contains(k)),
            "another console"
        );
        let plain = Consoles::new(
            reqwest::Client::new(),
            Arc::new(LocalTokenProvider::with_lookup(|_| None)),
            options(),
        );
        let local = plain.client(tenant("a", "http://127.0.0.1:1"), &token).unwrap();
        assert!(local.shared_budget_keys().is_empty(), "no table, no shared budget");
    }

    #[test]
    fn a_client_that_cannot_be_built_is_an_error_and_not_kept() {
        let tokens = Arc::new(LocalTokenProvider::with_lookup(|_| None));
        let consoles = Consoles::new(reqwest::Client::new(), tokens, ClientOptions::default());
        let src = source("A");
        let off_list = Console {
            tenant: "a",
            url: "https://s1.evil.example",
            token: &src,
        };
        let err = consoles.client(off_list, &ApiToken::new("t")).unwrap_err();
        assert!(err.to_string().contains("not in the allowed hosts"), "{err}");
        assert_eq!(consoles.clients_built(), 0);
    }

    /// A secret with a cache in front, as Secrets Manager's provider has: `current` is what the
    /// secret holds now, the cache what was read before; `pending` a stuck rotation's token.
    #[derive(Default)]
    struct Rotating {
        current: Mutex<String>,
        cached: Mutex<Option<String>>,
        pending: Mutex<Option<String>>,
        invalidations: AtomicU64,
    }

    #[async_trait::async_trait]
    impl TokenProvider for Rotating {
        async fn token(&self, _: &SecretRef) -> Result<ApiToken, SecretError> {
            let mut cached = self.cached.lock().unwrap();
            let value = cached.get_or_insert_with(|| self.current.lock().unwrap().clone());
            if value.is_empty() {
                return Err(SecretError::NotFound { secret: "s".into() });
            }
            Ok(ApiToken::new(value.clone()))
        }
        async fn invalidate(&self, _: &SecretRef) {
            self.invalidations.fetch_add(1, Ordering::SeqCst);
            *self.cached.lock().unwrap() = None;
        }
        async fn pending_token(&self, _: &SecretRef) -> Option<ApiToken> {
            self.pending.lock().unwrap().clone().map(ApiToken::new)
        }
    }

    fn refused() -> S1Error {
        S1Error::Unauthorized {
            endpoint: "/system/info".into(),
            body: Default::default(),
        }
    }

    /// `consoles` over a secret whose cache holds `cached` while the secret holds `current`.
    fn rotated(cached: &str, current: &str, pending: Option<&str>) -> (Consoles, Arc<Rotating>) {
        let tokens = Arc::new(Rotating {
            current: Mutex::new(current.into()),
            cached: Mutex::new(Some(cached.into())),
            pending: Mutex::new(pending.map(str::to_owned)),
            ..Rotating::default()
        });
        (Consoles::new(reqwest::Client::new(), tokens.clone(), options()), tokens)
    }

    /// Runs a call through `consoles` that S1 answers 401 unless it carries `works`; returns
    /// the outcome and the tokens the tries carried.
    async fn call_accepting(consoles: &Consoles, works: &str) -> (Result<(), TokenCallError>, Vec<String>) {
        let src = source("S1");
        let console = Console {
            tenant: "acme",
            url: "http://127.0.0.1:1",
            token: &src,
        };
        let mut tried = Vec::new();
        let result = consoles
            .with_token_state(console, &mut tried, |c, tried| async move {
                let carried = c.token().expose().to_owned();
                let ok = carried == works;
                tried.push(carried);
                (tried, if ok { Ok(()) } else { Err(refused().into()) })
            })
            .await;
        (result, tried)
    }

    #[tokio::test]
    async fn a_401_rereads_the_secret_once_and_retries_with_the_rotated_token() {
        let (consoles, tokens) = rotated("old", "new", None);
        let (result, tried) = call_accepting(&consoles, "new").await;
        assert!(result.is_ok(), "{result:?}");
        assert_eq!(tried, ["old", "new"]);
        assert_eq!(tokens.invalidations.load(Ordering::SeqCst), 1);
        // The next run uses the re-read token's client straight away.
        let (result, tried) = call_accepting(&consoles, "new").await;
        assert!(result.is_ok());
        assert_eq!(tried, ["new"]);
        assert_eq!(consoles.clients_built(), 2);
    }

    #[tokio::test]
    async fn the_401_stands_when_the_secret_still_holds_the_refused_token() {
        let (consoles, tokens) = rotated("old", "old", None);
        let (result, tried) = call_accepting(&consoles, "new").await;
        assert!(result.as_ref().is_err_and(ConsoleError::is_unauthorized), "{result:?}");
        assert_eq!(tried, ["old"], "no pointless retry");
        assert_eq!(tokens.invalidations.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_stuck_rotation_falls_back_to_the_staged_token() {
        let (consoles, _) = rotated("old", "old", Some("staged"));
        let (result, tried) = call_accepting(&consoles, "staged").await;
        assert!(result.is_ok(), "{result:?}");
        assert_eq!(tried, ["old", "staged"]);
        // A staged token equal to the refused one is no way out.
        let (consoles, _) = rotated("old", "old", Some("old"));
        let (result, tried) = call_accepting(&consoles, "staged").await;
        assert!(result.is_err());
        assert_eq!(tried, ["old"]);
    }

    #[tokio::test]
    async fn the_reread_token_is_tried_once_and_other_errors_are_not_retried() {
        let (consoles, _) = rotated("old", "new", None);
        let (result, tried) = call_accepting(&consoles, "nothing works").await;
        assert!(result.as_ref().is_err_and(ConsoleError::is_unauthorized));
        assert_eq!(tried, ["old", "new"]);

        let (consoles, tokens) = rotated("old", "new", None);
        let src = source("S1");
        let mut calls = 0;
        let result: Result<(), TokenCallError> = consoles
            .with_token(
                Console {
                    tenant: "acme",
                    url: "http://127.0.0.1:1",
                    token: &src,
                },
                |_| {
                    calls += 1;
                    async { Err(S1Error::InvalidRequest("no".into()).into()) }
                },
            )
            .await;
        assert!(result.is_err());
        assert_eq!((calls, tokens.invalidations.load(Ordering::SeqCst)), (1, 0));
    }

    #[tokio::test]
    async fn a_secret_that_cannot_be_read_again_ends_the_call() {
        let (consoles, _) = rotated("old", "", None);
        let (result, tried) = call_accepting(&consoles, "new").await;
        assert!(
            matches!(result, Err(TokenCallError::Secret(SecretError::NotFound { .. }))),
            "{result:?}"
        );
        assert_eq!(tried, ["old"]);
    }
}
