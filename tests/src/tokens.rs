//! A token provider that keeps each token until it is invalidated, as the Secrets Manager
//! provider does within its cache lifetime: a secret rotated behind its back is seen only after
//! a re-read. It counts its reads and invalidations so tests can say what the bridge did.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};

use async_trait::async_trait;
use s1_shared::ApiToken;
use s1_shared::secrets::{SecretError, TokenProvider};
use s1_shared::store::TokenSource;

/// Caches `inner`'s tokens per source until [`TokenProvider::invalidate`].
pub struct CachingTokens {
    inner: Arc<dyn TokenProvider>,
    cache: Mutex<HashMap<String, ApiToken>>,
    reads: AtomicU32,
    invalidations: AtomicU32,
}

impl CachingTokens {
    pub fn over(inner: Arc<dyn TokenProvider>) -> Arc<Self> {
        Arc::new(Self {
            inner,
            cache: Mutex::default(),
            reads: AtomicU32::new(0),
            invalidations: AtomicU32::new(0),
        })
    }

    /// Reads of the underlying source (cache misses).
    pub fn reads(&self) -> u32 {
        self.reads.load(Ordering::SeqCst)
    }

    /// Calls of [`TokenProvider::invalidate`].
    pub fn invalidations(&self) -> u32 {
        self.invalidations.load(Ordering::SeqCst)
    }
}

fn key(source: &TokenSource) -> String {
    format!("{source:?}")
}

#[async_trait]
impl TokenProvider for CachingTokens {
    async fn token(&self, source: &TokenSource) -> Result<ApiToken, SecretError> {
        if let Some(t) = self.cache.lock().unwrap().get(&key(source)) {
            return Ok(t.clone());
        }
        self.reads.fetch_add(1, Ordering::SeqCst);
        let t = self.inner.token(source).await?;
        self.cache.lock().unwrap().insert(key(source), t.clone());
        Ok(t)
    }

    async fn invalidate(&self, source: &TokenSource) {
        self.invalidations.fetch_add(1, Ordering::SeqCst);
        self.cache.lock().unwrap().remove(&key(source));
        self.inner.invalidate(source).await;
    }

    async fn pending_token(&self, source: &TokenSource) -> Option<ApiToken> {
        self.inner.pending_token(source).await
    }
}
