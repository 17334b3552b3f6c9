//! The composition root the four Lambdas share: what each builds once per cold start and
//! borrows in every invocation (settings, the state table, Secrets Manager, an HTTP client).

use std::sync::Arc;
use std::time::Duration;

use crate::config::Settings;
use crate::platform::{Adapters, PlatformResolver};
use crate::s1::{ClientOptions, Consoles};
use crate::secrets::{SecretVersions, SecretsManagerTokenProvider, SecretsManagerVersions};
use crate::store::{DynamoTable, Store};

/// The ports of a Lambda, from its environment and AWS's default credential chain.
pub struct LambdaPorts {
    /// The function's environment settings.
    pub settings: Settings,
    /// The state table (`TABLE_NAME`).
    pub store: Store,
    /// Secrets Manager's secret versions, for the rotation steps.
    pub secrets: Arc<dyn SecretVersions>,
    /// Tenants' S1 tokens and platform secrets, cached for `SECRET_CACHE_SECONDS`.
    pub tokens: Arc<SecretsManagerTokenProvider>,
    /// The one HTTP client (S1 and platforms), bounded by the timeouts given, following no
    /// redirect, resolving names through the allow-list's guard ([`crate::net`]).
    pub http: reqwest::Client,
    /// Retry and rate-limit policy for S1 calls, and the console allow-list.
    pub client_options: ClientOptions,
    /// The tenants' S1 clients (one per tenant for the life of the process), called with the
    /// tokens read through `tokens`.
    pub consoles: Consoles,
}

impl LambdaPorts {
    /// Builds the ports; `connect` and `total` bound every outbound HTTP call (S1 and the
    /// platform), so an invocation always ends inside its own timeout.
    ///
    /// # Errors
    /// A missing or malformed setting (named), or an HTTP client that cannot be built.
    pub async fn from_env(
        connect: Duration,
        total: Duration,
    ) -> Result<Self, Box<dyn std::error::Error + Send + Sync>> {
        let settings = Settings::from_env()?;
        let aws = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
        let store = Store::new(Arc::new(DynamoTable::new(
            aws_sdk_dynamodb::Client::new(&aws),
            settings.table_name.clone(),
        )));
        let secrets: Arc<dyn SecretVersions> =
            Arc::new(SecretsManagerVersions::new(aws_sdk_secretsmanager::Client::new(&aws)));
        let tokens = Arc::new(SecretsManagerTokenProvider::over(
            secrets.clone(),
            settings.secret_cache_ttl,
        ));
        let http = crate::net::outbound_client(connect, total, &settings.allowed_hosts)?;
        let client_options = ClientOptions::default().allowing(settings.allowed_hosts.clone());
        let consoles = Consoles::new(http.clone(), tokens.clone(), client_options.clone());
        Ok(Self {
            settings,
            store,
            secrets,
            tokens,
            http,
            client_options,
            consoles,
        })
    }

    /// The platform adapters, reading their secrets through the same token provider.
    pub fn platforms(&self) -> Arc<dyn PlatformResolver> {
        Arc::new(
            Adapters::new(
                self.http.clone(),
                self.tokens.clone(),
                self.client_options.retry.clone(),
            )
            .with_allowed_hosts(self.settings.allowed_hosts.clone())
            .with_store(self.store.clone()),
        )
    }
}
