//! Where S1 API tokens come from: the [`TokenProvider`] port, read from Secrets Manager in AWS
//! ([`SecretsManagerTokenProvider`]) or from an environment variable or file on one machine
//! ([`LocalTokenProvider`]). [`crate::s1::Consoles`] calls S1 with them, re-reading a token once
//! after a 401.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use aws_sdk_secretsmanager::Client;
use aws_sdk_secretsmanager::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};

use crate::ApiToken;
use crate::s1::S1Error;
use crate::store::TokenSource;

/// Reading a token failed. Never carries the token or secret value.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("secret {secret:?} does not exist in Secrets Manager")]
    NotFound { secret: String },
    #[error("not allowed to read secret {secret:?}: {message}")]
    AccessDenied { secret: String, message: String },
    #[error("secret {secret:?} holds no token (empty, or JSON without an apiToken field)")]
    Empty { secret: String },
    #[error("could not reach Secrets Manager for {secret:?}: {message}")]
    Unavailable { secret: String, message: String },
    #[error("reading secret {secret:?} failed ({code}): {message}")]
    Backend {
        secret: String,
        code: String,
        message: String,
    },
    #[error("environment variable {var} is not set or empty")]
    EnvMissing { var: String },
    #[error("cannot read the token file {path}: {message}")]
    File { path: String, message: String },
    #[error("this token provider cannot read {kind} token sources")]
    Unsupported { kind: &'static str },
}

impl SecretError {
    /// True when trying again later may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(self, SecretError::Unavailable { .. })
    }
}

fn kind(source: &TokenSource) -> &'static str {
    match source {
        TokenSource::SecretsManager { .. } => "Secrets Manager",
        TokenSource::Env { .. } => "environment",
        TokenSource::File { .. } => "file",
    }
}

/// The port: a tenant's current S1 API token.
#[async_trait]
pub trait TokenProvider: Send + Sync {
    /// The current token (possibly cached).
    async fn token(&self, source: &TokenSource) -> Result<ApiToken, SecretError>;
    /// Forgets any cached copy, so the next [`TokenProvider::token`] reads the source again.
    async fn invalidate(&self, source: &TokenSource);
    /// A token staged by a rotation that has not finished (Secrets Manager's `AWSPENDING`).
    /// S1 revokes the old token when it issues a new one, so while a rotation is stuck between
    /// its steps the pending token is the one that works.
    async fn pending_token(&self, _source: &TokenSource) -> Option<ApiToken> {
        None
    }
}

/// A secret's value may be the bare token or JSON such as `{"apiToken": "..."}`.
///
/// # Errors
/// [`SecretError::Empty`] when it holds no token.
pub fn token_from_secret_value(secret: &str, value: &str) -> Result<ApiToken, SecretError> {
    token_from_secret(secret, value)
}

fn token_from_secret(secret: &str, value: &str) -> Result<ApiToken, SecretError> {
    let trimmed = value.trim();
    let token = if trimmed.starts_with('{') {
        serde_json::from_str::<HashMap<String, serde_json::Value>>(trimmed)
            .ok()
            .and_then(|m| {
                ["apiToken", "token", "api_token"]
                    .iter()
                    .find_map(|k| m.get(*k)?.as_str().map(str::to_owned))
            })
            .unwrap_or_default()
    } else {
        trimmed.to_owned()
    };
    let token = ApiToken::new(token);
    if token.is_empty() {
        return Err(SecretError::Empty {
            secret: secret.to_owned(),
        });
    }
    Ok(token)
}

/// Reads tokens from Secrets Manager, one secret per tenant, and caches each for `ttl` so warm
/// Lambda invocations do not call Secrets Manager every minute.
pub struct SecretsManagerTokenProvider {
    client: Client,
    ttl: Duration,
    cache: Mutex<HashMap<String, (ApiToken, Instant)>>,
}

impl std::fmt::Debug for SecretsManagerTokenProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecretsManagerTokenProvider")
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}

impl SecretsManagerTokenProvider {
    /// Default cache lifetime: short enough that a rotated token is picked up within minutes.
    pub const DEFAULT_TTL: Duration = Duration::from_secs(300);

    /// A provider reading through `client`, caching each secret for `ttl`.
    pub fn new(client: Client, ttl: Duration) -> Self {
        Self {
            client,
            ttl,
            cache: Mutex::new(HashMap::new()),
        }
    }

    /// Configured from the environment (region, credentials, endpoint overrides).
    pub async fn from_env(ttl: Duration) -> Self {
        let config = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
        Self::new(Client::new(&config), ttl)
    }

    fn cached(&self, secret: &str) -> Option<ApiToken> {
        let cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        cache
            .get(secret)
            .filter(|(_, at)| at.elapsed() < self.ttl)
            .map(|(t, _)| t.clone())
    }

    async fn read(&self, secret: &str) -> Result<ApiToken, SecretError> {
        let out = self
            .client
            .get_secret_value()
            .secret_id(secret)
            // Named explicitly (it is the default): the version a finished rotation promoted.
            .version_stage("AWSCURRENT")
            .send()
            .await
            .map_err(|e| classify(secret, e))?;
        let value = out.secret_string().ok_or_else(|| SecretError::Empty {
            secret: secret.to_owned(),
        })?;
        token_from_secret(secret, value)
    }
}

fn classify<E, R>(secret: &str, e: SdkError<E, R>) -> SecretError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    let secret = secret.to_owned();
    match &e {
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) => SecretError::Unavailable {
            secret,
            message: DisplayErrorContext(&e).to_string(),
        },
        SdkError::ServiceError(se) => {
            let code = se.err().code().unwrap_or("Unknown").to_owned();
            let message = se.err().message().unwrap_or_default().to_owned();
            match code.as_str() {
                "ResourceNotFoundException" => SecretError::NotFound { secret },
                "AccessDeniedException" | "AccessDenied" => SecretError::AccessDenied { secret, message },
                "InternalServiceError" | "ThrottlingException" => SecretError::Unavailable { secret, message },
                _ => SecretError::Backend { secret, code, message },
            }
        }
        _ => SecretError::Backend {
            secret,
            code: "sdk".into(),
            message: DisplayErrorContext(&e).to_string(),
        },
    }
}

#[async_trait]
impl TokenProvider for SecretsManagerTokenProvider {
    async fn token(&self, source: &TokenSource) -> Result<ApiToken, SecretError> {
        let TokenSource::SecretsManager { secret_id } = source else {
            return Err(SecretError::Unsupported { kind: kind(source) });
        };
        if let Some(t) = self.cached(secret_id) {
            return Ok(t);
        }
        let token = self.read(secret_id).await?;
        self.cache
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(secret_id.clone(), (token.clone(), Instant::now()));
        Ok(token)
    }

    async fn invalidate(&self, source: &TokenSource) {
        if let TokenSource::SecretsManager { secret_id } = source {
            self.cache.lock().unwrap_or_else(|e| e.into_inner()).remove(secret_id);
        }
    }

    async fn pending_token(&self, source: &TokenSource) -> Option<ApiToken> {
        let TokenSource::SecretsManager { secret_id } = source else {
            return None;
        };
        let out = self
            .client
            .get_secret_value()
            .secret_id(secret_id)
            .version_stage("AWSPENDING")
            .send()
            .await
            .ok()?;
        token_from_secret(secret_id, out.secret_string()?).ok()
    }
}

type Lookup = Box<dyn Fn(&str) -> Option<String> + Send + Sync>;

/// Reads tokens from environment variables or files, fresh on every call (for the one-machine
/// runner, where editing the file is how a token is replaced).
pub struct LocalTokenProvider {
    lookup: Lookup,
}

impl std::fmt::Debug for LocalTokenProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LocalTokenProvider")
    }
}

impl LocalTokenProvider {
    /// Environment variables of this process.
    pub fn from_process_env() -> Self {
        Self::with_lookup(|k| std::env::var(k).ok())
    }

    /// Environment variables from `lookup` (tests pass a map).
    pub fn with_lookup(lookup: impl Fn(&str) -> Option<String> + Send + Sync + 'static) -> Self {
        Self {
            lookup: Box::new(lookup),
        }
    }
}

#[async_trait]
impl TokenProvider for LocalTokenProvider {
    async fn token(&self, source: &TokenSource) -> Result<ApiToken, SecretError> {
        match source {
            TokenSource::Env { var } => {
                let token = ApiToken::new((self.lookup)(var).unwrap_or_default());
                if token.is_empty() {
                    return Err(SecretError::EnvMissing { var: var.clone() });
                }
                Ok(token)
            }
            TokenSource::File { path } => {
                let text = tokio::fs::read_to_string(path).await.map_err(|e| SecretError::File {
                    path: path.clone(),
                    message: e.to_string(),
                })?;
                token_from_secret(path, &text)
            }
            other => Err(SecretError::Unsupported { kind: kind(other) }),
        }
    }

    async fn invalidate(&self, _source: &TokenSource) {}
}

/// Reads each source with the provider that knows it: environment and files locally, Secrets
/// Manager when configured (the one-machine runner and the operator CLI mix them).
pub struct AnyTokenProvider {
    pub local: LocalTokenProvider,
    pub secrets_manager: Option<SecretsManagerTokenProvider>,
}

impl std::fmt::Debug for AnyTokenProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AnyTokenProvider")
    }
}

#[async_trait]
impl TokenProvider for AnyTokenProvider {
    async fn token(&self, source: &TokenSource) -> Result<ApiToken, SecretError> {
        match (source, &self.secrets_manager) {
            (TokenSource::SecretsManager { .. }, Some(sm)) => sm.token(source).await,
            _ => self.local.token(source).await,
        }
    }

    async fn invalidate(&self, source: &TokenSource) {
        if let Some(sm) = &self.secrets_manager {
            sm.invalidate(source).await;
        }
    }

    async fn pending_token(&self, source: &TokenSource) -> Option<ApiToken> {
        match &self.secrets_manager {
            Some(sm) => sm.pending_token(source).await,
            None => None,
        }
    }
}

/// A call made with a tenant's token ([`crate::s1::Consoles`]) failed.
#[derive(Debug, thiserror::Error)]
pub enum TokenCallError {
    #[error(transparent)]
    Secret(#[from] SecretError),
    #[error(transparent)]
    S1(#[from] S1Error),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn env_and_file_sources() {
        let p = LocalTokenProvider::with_lookup(|k| (k == "S1_TOKEN_ACME").then(|| "tok-from-env\n".to_owned()));
        let t = p
            .token(&TokenSource::Env {
                var: "S1_TOKEN_ACME".into(),
            })
            .await
            .unwrap();
        assert_eq!(t.expose(), "tok-from-env");
        let err = p
            .token(&TokenSource::Env {
                var: "S1_TOKEN_OTHER".into(),
            })
            .await
            .unwrap_err();
        assert!(matches!(&err, SecretError::EnvMissing { var } if var == "S1_TOKEN_OTHER"));

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        std::fs::write(&path, "{\"apiToken\": \"tok-from-file\"}\n").unwrap();
        let src = TokenSource::File {
            path: path.display().to_string(),
        };
        assert_eq!(p.token(&src).await.unwrap().expose(), "tok-from-file");
        std::fs::write(&path, "  \n").unwrap();
        assert!(matches!(p.token(&src).await, Err(SecretError::Empty { .. })));
        let missing = TokenSource::File {
            path: "/nonexistent/s1-token".into(),
        };
        let err = p.token(&missing).await.unwrap_err();
        assert!(err.to_string().contains("/nonexistent/s1-token"), "{err}");
        let sm = TokenSource::SecretsManager { secret_id: "x".into() };
        assert!(matches!(p.token(&sm).await, Err(SecretError::Unsupported { .. })));
    }

    #[test]
    fn secret_values_bare_or_json() {
        for (value, want) in [
            ("abc", Some("abc")),
            ("  abc\n", Some("abc")),
            (r#"{"apiToken":"abc"}"#, Some("abc")),
            (r#"{"token":"abc","note":"x"}"#, Some("abc")),
            (r#"{"other":"abc"}"#, None),
            ("", None),
        ] {
            let got = token_from_secret("s", value).ok();
            assert_eq!(got.as_ref().map(ApiToken::expose), want, "{value:?}");
        }
    }
}
