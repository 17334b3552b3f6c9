//! The composition root the four Lambdas share: what each builds once per cold start and
//! borrows in every invocation (settings, the state table, Secrets Manager, an HTTP client);
//! an invocation's deadline; and [`FunctionError`], the one mapping from the use cases' errors
//! to what the Lambda runtime reports, saying whether running the invocation again can help.

use std::sync::Arc;
use std::time::{Duration, Instant};

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
    /// The AWS configuration the clients were built from (region, credentials, endpoints), for
    /// the clients only one function needs (the dispatcher's queue).
    pub aws: aws_config::SdkConfig,
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
        // S1 limits per token: every process's clients take their place in the token's budgets in
        // the table, so concurrent invocations (and tenants on one token) stay under them.
        let consoles = Consoles::new(http.clone(), tokens.clone(), client_options.clone())
            .sharing_budgets(Arc::new(store.clone()));
        Ok(Self {
            settings,
            store,
            secrets,
            tokens,
            http,
            client_options,
            consoles,
            aws,
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

/// Time left before the invocation's deadline, as an [`Instant`] (no deadline in local runs: 15
/// minutes; an emulator's unusable one: 60 s).
pub fn deadline(ctx: &lambda_runtime::Context) -> Instant {
    let now_ms = (time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as u64;
    let mut left = if ctx.deadline == 0 {
        900_000
    } else {
        ctx.deadline.saturating_sub(now_ms)
    };
    if left < 1_000 {
        // Lambda always leaves the function's timeout; an emulator may send no usable deadline.
        tracing::warn!(
            deadline_ms = ctx.deadline,
            now_ms,
            "no usable invocation deadline; using 60 s"
        );
        left = 60_000;
    }
    Instant::now() + Duration::from_millis(left)
}

/// What kind of failure ended an invocation: its `errorType` in the runtime's report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    /// Transient (the state table throttled, unreachable or busy): the same invocation may
    /// succeed when run again.
    Retryable,
    /// The input is wrong (a malformed event, an unknown tenant or step): it fails the same way
    /// every time.
    BadInput,
    /// The state table refused the work for good (a missing table, a corrupt item).
    Store,
    /// A Secrets Manager rotation step failed: Secrets Manager retries the rotation, and the
    /// secret's current version stays in place meanwhile.
    Rotation,
    /// A bug: a report that cannot be serialised, a response that cannot be built.
    Internal,
}

impl FailureKind {
    /// The `errorType` the runtime reports.
    pub fn error_type(self) -> &'static str {
        match self {
            FailureKind::Retryable => "Retryable",
            FailureKind::BadInput => "BadInput",
            FailureKind::Store => "StoreError",
            FailureKind::Rotation => "RotationFailed",
            FailureKind::Internal => "Internal",
        }
    }

    /// Whether running the same invocation again can succeed without anything being fixed.
    pub fn is_retryable(self) -> bool {
        self == FailureKind::Retryable
    }
}

/// Why an invocation failed, with the use case's own message. Every function's handler returns
/// it; the runtime reports it as a [`lambda_runtime::Diagnostic`] (`errorType` from its
/// [`FailureKind`]).
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct FunctionError {
    pub kind: FailureKind,
    pub message: String,
}

impl FunctionError {
    /// The event is not one the function takes.
    pub fn bad_input(message: impl std::fmt::Display) -> Self {
        Self {
            kind: FailureKind::BadInput,
            message: message.to_string(),
        }
    }

    /// A bug on our side.
    pub fn internal(message: impl std::fmt::Display) -> Self {
        Self {
            kind: FailureKind::Internal,
            message: message.to_string(),
        }
    }

    /// The invocation's answer: `report` as JSON.
    ///
    /// # Errors
    /// [`FailureKind::Internal`] when it does not serialise.
    pub fn answer(report: &impl serde::Serialize) -> Result<serde_json::Value, Self> {
        serde_json::to_value(report).map_err(Self::internal)
    }
}

/// The SQS batch a consumer's event source mapping hands `function`.
///
/// # Errors
/// [`FailureKind::BadInput`] for a batch that does not read, naming it.
pub fn sqs_batch(function: &str, payload: serde_json::Value) -> Result<crate::queue::SqsEvent, FunctionError> {
    serde_json::from_value(payload)
        .map_err(|e| FunctionError::bad_input(format!("{function}: an SQS batch that does not read: {e}")))
}

/// The tenant an operator's `{"tenant": "<id>"}` names.
///
/// # Errors
/// [`FailureKind::BadInput`] for a tenant that does not exist; the store's errors.
pub async fn named_tenant(store: &crate::store::Store, id: &str) -> Result<crate::store::TenantConfig, FunctionError> {
    store
        .get_tenant(id)
        .await?
        .ok_or_else(|| FunctionError::bad_input(format!("no tenant {id:?}")))
}

impl From<crate::store::StoreError> for FunctionError {
    fn from(e: crate::store::StoreError) -> Self {
        Self {
            kind: if e.is_retryable() {
                FailureKind::Retryable
            } else {
                FailureKind::Store
            },
            message: e.to_string(),
        }
    }
}

impl From<crate::usecase::poll_threats::PollError> for FunctionError {
    fn from(e: crate::usecase::poll_threats::PollError) -> Self {
        use crate::usecase::poll_threats::PollError;
        match e {
            PollError::Store(s) => s.into(),
            other => Self::bad_input(other),
        }
    }
}

impl From<crate::usecase::token_expiry::RotationError> for FunctionError {
    fn from(e: crate::usecase::token_expiry::RotationError) -> Self {
        Self {
            kind: FailureKind::Rotation,
            message: e.to_string(),
        }
    }
}

impl From<FunctionError> for lambda_runtime::Diagnostic {
    fn from(e: FunctionError) -> Self {
        Self {
            error_type: e.kind.error_type().into(),
            error_message: e.message,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::StoreError;
    use crate::usecase::poll_threats::PollError;

    #[test]
    fn use_case_errors_map_to_what_the_runtime_reports() {
        let d = |e: FunctionError| {
            let retryable = e.kind.is_retryable();
            let d = lambda_runtime::Diagnostic::from(e);
            (d.error_type, retryable, d.error_message)
        };
        let throttled = StoreError::Throttled { op: "query" };
        let text = throttled.to_string();
        assert_eq!(d(throttled.into()), ("Retryable".into(), true, text));
        let missing = StoreError::TableMissing { table: "t".into() };
        assert_eq!(d(missing.into()).0, "StoreError");
        let (kind, retryable, message) = d(PollError::UnknownTenant("nobody".into()).into());
        assert_eq!((kind.as_str(), retryable), ("BadInput", false));
        assert!(message.contains("nobody"), "{message}");
        let busy = PollError::Store(StoreError::Conflict {
            op: "put",
            what: "x".into(),
        });
        assert_eq!(d(busy.into()).0, "Retryable");
        let rotation = crate::usecase::token_expiry::RotationError::Failed {
            secret: "s1/acme".into(),
            message: "S1 refused".into(),
        };
        assert_eq!(d(rotation.into()).0, "RotationFailed");
        assert_eq!(d(FunctionError::bad_input("x")).0, "BadInput");
        assert_eq!(d(FunctionError::internal("x")).0, "Internal");
    }

    #[test]
    fn a_missing_or_unusable_deadline_gives_time() {
        let ctx = lambda_runtime::Context::default();
        let left = deadline(&ctx).saturating_duration_since(Instant::now());
        assert!(left > Duration::from_secs(890), "{left:?}");
        let mut past = lambda_runtime::Context::default();
        past.deadline = 1;
        let left = deadline(&past).saturating_duration_since(Instant::now());
        assert!(
            left > Duration::from_secs(50) && left <= Duration::from_secs(60),
            "{left:?}"
        );
    }
}
