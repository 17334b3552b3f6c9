//! What a platform's settings build their adapters with: the process's HTTP client, secret
//! provider, retry policy and allow-list, the state store (for a platform that maps S1 accounts
//! to records of its own), and what a platform keeps per process. The same for every platform,
//! so the registry hands it over without knowing which platform it builds.

use std::any::Any;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use super::PlatformError;
use crate::config::AllowedHosts;
use crate::s1::RetryPolicy;
use crate::secrets::TokenProvider;
use crate::store::Store;
use crate::tenant::SecretRef;

/// Shared by every adapter a process builds.
pub struct BuildContext {
    /// Sends to the platforms (built with [`crate::net::outbound_client`]).
    pub http: reqwest::Client,
    /// Reads the secrets the settings refer to.
    pub secrets: Arc<dyn TokenProvider>,
    /// How adapters retry a request.
    pub retry: RetryPolicy,
    /// The hosts a platform URL may name.
    pub allowed: AllowedHosts,
    /// The state store, when the process has one (Halo reads its S1 -> Halo mapping from it).
    pub store: Option<Store>,
    /// What a platform keeps per process, by a key it makes (its own name first).
    kept: Mutex<HashMap<String, Arc<dyn Any + Send + Sync>>>,
}

/// The tenant an adapter is built for: what the settings alone do not say.
#[derive(Debug, Clone, Copy)]
pub struct ForTenant<'a> {
    /// The tenant's id, named in every configuration error.
    pub id: &'a str,
    /// The tenant's S1 console (links back to it).
    pub console_url: &'a str,
}

impl BuildContext {
    /// A context sending with `http`, reading secrets through `secrets`, retrying per `retry`,
    /// checking platform URLs against the default allow-list, with no store.
    pub fn new(http: reqwest::Client, secrets: Arc<dyn TokenProvider>, retry: RetryPolicy) -> Self {
        Self {
            http,
            secrets,
            retry,
            allowed: AllowedHosts::default(),
            store: None,
            kept: Mutex::default(),
        }
    }

    /// The secret `source` refers to; an error names the tenant and `what` it is for.
    ///
    /// # Errors
    /// [`PlatformError::Config`] when it cannot be read.
    pub async fn secret(
        &self,
        tenant: ForTenant<'_>,
        source: &SecretRef,
        what: &str,
    ) -> Result<crate::ApiToken, PlatformError> {
        self.secrets
            .token(source)
            .await
            .map_err(|e| PlatformError::Config(format!("tenant {}: {what}: {e}", tenant.id)))
    }

    /// Every secret `sources` names, in order (each as [`secret`](Self::secret) reads it).
    pub async fn secrets_of(
        &self,
        tenant: ForTenant<'_>,
        sources: &[SecretRef],
        what: &str,
    ) -> Result<Vec<crate::ApiToken>, PlatformError> {
        let mut out = Vec::with_capacity(sources.len());
        for source in sources {
            out.push(self.secret(tenant, source, what).await?);
        }
        Ok(out)
    }

    /// What was kept under `key` (by [`keep`](Self::keep)), if it is a `T`.
    pub fn kept<T: Clone + Send + Sync + 'static>(&self, key: &str) -> Option<T> {
        let kept = self.kept.lock().expect("not poisoned");
        kept.get(key).and_then(|v| v.downcast_ref::<T>()).cloned()
    }

    /// Keeps `value` under `key` for this process's later builds.
    pub fn keep<T: Send + Sync + 'static>(&self, key: String, value: T) {
        self.kept.lock().expect("not poisoned").insert(key, Arc::new(value));
    }
}

impl ForTenant<'_> {
    /// Names the tenant in a configuration error.
    pub fn named(self) -> impl Fn(PlatformError) -> PlatformError {
        move |e| match e {
            PlatformError::Config(m) => PlatformError::Config(format!("tenant {}: {m}", self.id)),
            other => other,
        }
    }

    /// A configuration error naming the tenant.
    pub fn config_error(self, message: impl std::fmt::Display) -> PlatformError {
        PlatformError::Config(format!("tenant {}: {message}", self.id))
    }
}
