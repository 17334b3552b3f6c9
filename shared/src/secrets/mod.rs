//! Where S1 API tokens come from: the [`TokenProvider`] port, read from Secrets Manager in AWS
//! ([`SecretsManagerTokenProvider`]) or from an environment variable or file on one machine
//! ([`LocalTokenProvider`]). [`crate::s1::Consoles`] calls S1 with them, re-reading a token once
//! after a 401.
//!
//! Secrets Manager itself is reached through the [`SecretVersions`] port (a secret's staged
//! versions: what the token provider reads and what rotation writes), implemented on the AWS
//! SDK ([`SecretsManagerVersions`], the only code here that uses it) and in memory for tests
//! ([`MemorySecretVersions`]).

mod aws;
mod versions;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use secrecy::ExposeSecret;

pub use aws::SecretsManagerVersions;
pub use versions::{MemorySecretVersions, SecretDescription, SecretVersion, SecretVersions, VersionStage};

use crate::ApiToken;
use crate::s1::S1Error;
use crate::tenant::SecretRef;

/// Reading a token (or a secret's version) failed. Never carries the token or secret value.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("secret {secret:?} does not exist in Secrets Manager")]
    NotFound { secret: String },
    #[error("Secrets Manager denied access to secret {secret:?}: {message}")]
    AccessDenied { secret: String, message: String },
    #[error("secret {secret:?} holds no token (empty, or JSON without an apiToken field)")]
    Empty { secret: String },
    #[error("could not reach Secrets Manager for {secret:?}: {message}")]
    Unavailable { secret: String, message: String },
    #[error("Secrets Manager failed on secret {secret:?} ({code}): {message}")]
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

fn kind(source: &SecretRef) -> &'static str {
    match source {
        SecretRef::SecretsManager { .. } => "Secrets Manager",
        SecretRef::Env { .. } => "environment",
        SecretRef::File { .. } => "file",
    }
}

/// The port: a tenant's current S1 API token.
#[async_trait]
pub trait TokenProvider: Send + Sync {
    /// The current token (possibly cached).
    async fn token(&self, source: &SecretRef) -> Result<ApiToken, SecretError>;
    /// Forgets any cached copy, so the next [`TokenProvider::token`] reads the source again.
    async fn invalidate(&self, source: &SecretRef);
    /// A token staged by a rotation that has not finished (Secrets Manager's `AWSPENDING`).
    /// S1 revokes the old token when it issues a new one, so while a rotation is stuck between
    /// its steps the pending token is the one that works.
    async fn pending_token(&self, _source: &SecretRef) -> Option<ApiToken> {
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

/// Reads tokens from Secrets Manager (the `AWSCURRENT` version of the tenant's secret), one
/// secret per tenant, and caches each for `ttl` so warm Lambda invocations do not call Secrets
/// Manager every minute.
pub struct SecretsManagerTokenProvider {
    versions: Arc<dyn SecretVersions>,
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
    pub fn new(client: aws_sdk_secretsmanager::Client, ttl: Duration) -> Self {
        Self::over(Arc::new(SecretsManagerVersions::new(client)), ttl)
    }

    /// A provider reading `versions` (Secrets Manager, or memory in tests), caching each secret
    /// for `ttl`.
    pub fn over(versions: Arc<dyn SecretVersions>, ttl: Duration) -> Self {
        Self {
            versions,
            ttl,
            cache: Mutex::new(HashMap::new()),
        }
    }

    /// Configured from the environment (region, credentials, endpoint overrides).
    pub async fn from_env(ttl: Duration) -> Self {
        Self::over(Arc::new(SecretsManagerVersions::from_env().await), ttl)
    }

    fn cached(&self, secret: &str) -> Option<ApiToken> {
        let cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        cache
            .get(secret)
            .filter(|(_, at)| at.elapsed() < self.ttl)
            .map(|(t, _)| t.clone())
    }

    /// The token at `stage`: the version a finished rotation promoted, or one being brought in.
    async fn read(&self, secret: &str, stage: VersionStage) -> Result<ApiToken, SecretError> {
        let version = self.versions.get(secret, stage, None).await?;
        token_from_secret(secret, version.value.expose_secret())
    }
}

#[async_trait]
impl TokenProvider for SecretsManagerTokenProvider {
    async fn token(&self, source: &SecretRef) -> Result<ApiToken, SecretError> {
        let SecretRef::SecretsManager { secret_id } = source else {
            return Err(SecretError::Unsupported { kind: kind(source) });
        };
        if let Some(t) = self.cached(secret_id) {
            return Ok(t);
        }
        let token = self.read(secret_id, VersionStage::Current).await?;
        self.cache
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(secret_id.clone(), (token.clone(), Instant::now()));
        Ok(token)
    }

    async fn invalidate(&self, source: &SecretRef) {
        if let SecretRef::SecretsManager { secret_id } = source {
            self.cache.lock().unwrap_or_else(|e| e.into_inner()).remove(secret_id);
        }
    }

    async fn pending_token(&self, source: &SecretRef) -> Option<ApiToken> {
        let SecretRef::SecretsManager { secret_id } = source else {
            return None;
        };
        self.read(secret_id, VersionStage::Pending).await.ok()
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
    async fn token(&self, source: &SecretRef) -> Result<ApiToken, SecretError> {
        match source {
            SecretRef::Env { var } => {
                let token = ApiToken::new((self.lookup)(var).unwrap_or_default());
                if token.is_empty() {
                    return Err(SecretError::EnvMissing { var: var.clone() });
                }
                Ok(token)
            }
            SecretRef::File { path } => {
                let text = tokio::fs::read_to_string(path).await.map_err(|e| SecretError::File {
                    path: path.clone(),
                    message: e.to_string(),
                })?;
                token_from_secret(path, &text)
            }
            other => Err(SecretError::Unsupported { kind: kind(other) }),
        }
    }

    async fn invalidate(&self, _source: &SecretRef) {}
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
    async fn token(&self, source: &SecretRef) -> Result<ApiToken, SecretError> {
        match (source, &self.secrets_manager) {
            (SecretRef::SecretsManager { .. }, Some(sm)) => sm.token(source).await,
            _ => self.local.token(source).await,
        }
    }

    async fn invalidate(&self, source: &SecretRef) {
        if let Some(sm) = &self.secrets_manager {
            sm.invalidate(source).await;
        }
    }

    async fn pending_token(&self, source: &SecretRef) -> Option<ApiToken> {
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
            .token(&SecretRef::Env {
                var: "S1_TOKEN_ACME".into(),
            })
            .await
            .unwrap();
        assert_eq!(t.expose(), "tok-from-env");
        let err = p
            .token(&SecretRef::Env {
                var: "S1_TOKEN_OTHER".into(),
            })
            .await
            .unwrap_err();
        assert!(matches!(&err, SecretError::EnvMissing { var } if var == "S1_TOKEN_OTHER"));

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        std::fs::write(&path, "{\"apiToken\": \"tok-from-file\"}\n").unwrap();
        let src = SecretRef::File {
            path: path.display().to_string(),
        };
        assert_eq!(p.token(&src).await.unwrap().expose(), "tok-from-file");
        std::fs::write(&path, "  \n").unwrap();
        assert!(matches!(p.token(&src).await, Err(SecretError::Empty { .. })));
        let missing = SecretRef::File {
            path: "/nonexistent/s1-token".into(),
        };
        let err = p.token(&missing).await.unwrap_err();
        assert!(err.to_string().contains("/nonexistent/s1-token"), "{err}");
        let sm = SecretRef::SecretsManager { secret_id: "x".into() };
        assert!(matches!(p.token(&sm).await, Err(SecretError::Unsupported { .. })));
    }

    #[tokio::test]
    async fn secrets_manager_tokens_are_cached_until_invalidated_and_pending_is_read_on_demand() {
        let versions = Arc::new(MemorySecretVersions::default());
        versions.create("s1/acme", r#"{"apiToken": "tok-1"}"#);
        let provider = SecretsManagerTokenProvider::over(versions.clone(), Duration::from_secs(3600));
        let source = SecretRef::SecretsManager {
            secret_id: "s1/acme".into(),
        };
        assert_eq!(provider.token(&source).await.unwrap().expose(), "tok-1");
        assert_eq!(provider.pending_token(&source).await, None);
        versions
            .put("s1/acme", "r1", "tok-2", VersionStage::Pending)
            .await
            .unwrap();
        assert_eq!(provider.pending_token(&source).await, Some(ApiToken::new("tok-2")));
        versions
            .move_stage("s1/acme", VersionStage::Current, "r1", Some("v1"))
            .await
            .unwrap();
        assert_eq!(provider.token(&source).await.unwrap().expose(), "tok-1", "cached");
        provider.invalidate(&source).await;
        assert_eq!(provider.token(&source).await.unwrap().expose(), "tok-2");
        let missing = SecretRef::SecretsManager {
            secret_id: "s1/none".into(),
        };
        assert!(matches!(
            provider.token(&missing).await,
            Err(SecretError::NotFound { .. })
        ));
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
