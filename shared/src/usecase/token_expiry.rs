//! token-expiry: no S1 token expires unnoticed, and (opt-in) tokens rotate through Secrets
//! Manager's rotation steps.
//!
//! The watch reads each tenant's `expiresAt` (`POST /users/api-token-details`), reports the days
//! left as a metric, and alerts the platform once per threshold crossed (remembered in the
//! store), and at once on a 401.

use std::sync::Arc;

use aws_sdk_secretsmanager::Client as SecretsClient;
use futures_util::{StreamExt, stream};
use serde::{Deserialize, Serialize};
use serde_json::json;
use time::OffsetDateTime;

use crate::ApiToken;
use crate::platform::{Notice, PlatformResolver};
use crate::s1::{ClientOptions, S1Client, S1Error};
use crate::secrets::TokenProvider;
use crate::store::{Store, StoreError, TenantConfig, TokenSource, TokenState};
use crate::telemetry::{Metric, NAMESPACE, emf_line};

/// What the watch needs. Built once per process.
#[derive(Clone)]
pub struct TokenDeps {
    pub store: Store,
    pub tokens: Arc<dyn TokenProvider>,
    pub platforms: Arc<dyn PlatformResolver>,
    pub http: reqwest::Client,
    pub client_options: ClientOptions,
}

/// One tenant's token check.
#[derive(Debug, Clone, Default, Serialize)]
pub struct TokenReport {
    pub tenant: String,
    #[serde(with = "time::serde::rfc3339::option")]
    pub expires_at: Option<OffsetDateTime>,
    /// Whole days left (negative once expired).
    pub days_left: Option<i64>,
    /// The threshold alerted in this run, if any.
    pub alerted: Option<i64>,
    /// S1 refused the token (revoked or expired).
    pub unauthorized: bool,
    pub error: Option<String>,
}

impl TokenReport {
    /// The CloudWatch EMF line of this report.
    pub fn emf(&self, now: OffsetDateTime) -> String {
        let mut metrics = vec![Metric {
            name: "TokenUnauthorized",
            value: f64::from(u8::from(self.unauthorized)),
            unit: "Count",
        }];
        if let Some(d) = self.days_left {
            metrics.push(Metric {
                name: "TokenDaysRemaining",
                value: d as f64,
                unit: "Count",
            });
        }
        let ms = (now.unix_timestamp_nanos() / 1_000_000) as i64;
        emf_line(
            NAMESPACE,
            &[("Function", "token-expiry"), ("Tenant", &self.tenant)],
            &metrics,
            ms,
        )
    }
}

/// Checks every enabled tenant's token, a few at a time.
///
/// # Errors
/// Only when the tenant list cannot be read.
pub async fn check_all(deps: &TokenDeps, now: OffsetDateTime) -> Result<Vec<TokenReport>, StoreError> {
    let tenants: Vec<TenantConfig> = deps
        .store
        .list_tenants()
        .await?
        .into_iter()
        .filter(|t| t.enabled)
        .collect();
    Ok(stream::iter(tenants.iter().map(|t| check_tenant(deps, t, now)))
        .buffer_unordered(4)
        .collect()
        .await)
}

async fn notify(
    deps: &TokenDeps,
    tenant: &TenantConfig,
    kind: &str,
    id: String,
    data: serde_json::Value,
    now: OffsetDateTime,
) -> Result<(), String> {
    let platform = deps.platforms.resolve(tenant).await.map_err(|e| e.to_string())?;
    platform
        .notify(&Notice {
            id,
            kind: kind.into(),
            timestamp: now,
            data,
        })
        .await
        .map(drop)
        .map_err(|e| e.to_string())
}

/// Checks one tenant's token and alerts when due.
pub async fn check_tenant(deps: &TokenDeps, tenant: &TenantConfig, now: OffsetDateTime) -> TokenReport {
    let mut report = TokenReport {
        tenant: tenant.id.clone(),
        ..TokenReport::default()
    };
    if let Err(e) = check(deps, tenant, now, &mut report).await {
        report.error = Some(e);
    }
    tracing::info!(tenant = %report.tenant, days_left = report.days_left, alerted = report.alerted, unauthorized = report.unauthorized, error = report.error.as_deref(), "token check");
    report
}

async fn check(
    deps: &TokenDeps,
    tenant: &TenantConfig,
    now: OffsetDateTime,
    report: &mut TokenReport,
) -> Result<(), String> {
    let mut state = deps
        .store
        .get_token_state(&tenant.id)
        .await
        .map_err(|e| e.to_string())?
        .unwrap_or_default();
    let details = async {
        let token = deps.tokens.token(&tenant.token).await.map_err(|e| e.to_string())?;
        let client = S1Client::with_http(
            deps.http.clone(),
            &tenant.console_url,
            &token,
            deps.client_options.clone(),
        )
        .map_err(|e| e.to_string())?;
        Ok::<_, String>(client.api_token_details(&token).await)
    }
    .await?;
    let host = url::Url::parse(&tenant.console_url)
        .ok()
        .and_then(|u| u.host_str().map(str::to_owned))
        .unwrap_or_default();
    match details {
        Err(e) if e.is_unauthorized() => {
            report.unauthorized = true;
            // A rotated secret may hold a newer token: read it afresh next time.
            deps.tokens.invalidate(&tenant.token).await;
            if !state.unauthorized_alerted {
                let id = crate::domain::event_id(
                    &tenant.id,
                    "token.unauthorized",
                    &host,
                    Some(now.replace_time(time::Time::MIDNIGHT)),
                );
                let data = json!({"tenant": tenant.id, "console": host, "message": "S1 rejects this tenant's API token (401): it was revoked or has expired. Replace it in the tenant's secret."});
                notify(deps, tenant, "token.unauthorized", id, data, now).await?;
                report.alerted = Some(-1);
                state.unauthorized_alerted = true;
                deps.store
                    .put_token_state(&tenant.id, &state)
                    .await
                    .map_err(|e| e.to_string())?;
            }
            Ok(())
        }
        Err(e) => Err(e.to_string()),
        Ok(d) => {
            let expires = d.expires_at.ok_or("S1 sent no expiresAt for the token")?;
            let days = (expires - now).whole_days() - i64::from(expires < now);
            report.expires_at = Some(expires);
            report.days_left = Some(days);
            if state.expires_at != Some(expires) {
                // A new token (rotated or replaced): its thresholds start afresh.
                state = TokenState {
                    expires_at: Some(expires),
                    alerted_thresholds: vec![],
                    unauthorized_alerted: false,
                };
            }
            state.unauthorized_alerted = false;
            let crossed: Vec<i64> = tenant
                .token_alert_days
                .iter()
                .copied()
                .filter(|t| days <= *t && !state.alerted_thresholds.contains(t))
                .collect();
            // One alert, for the tightest threshold crossed, however many were crossed at once.
            if let Some(tightest) = crossed.iter().copied().min() {
                let id = crate::domain::event_id(
                    &tenant.id,
                    "token.expiring",
                    &format!("{host}:{tightest}"),
                    Some(expires),
                );
                let data = json!({
                    "tenant": tenant.id, "console": host, "expires_at": crate::s1::dto::format_time(expires),
                    "days_left": days, "threshold_days": tightest,
                    "message": format!("The S1 API token of tenant {} expires in {days} day(s) ({}). Rotate or replace it.", tenant.id, crate::s1::dto::format_time(expires)),
                });
                notify(deps, tenant, "token.expiring", id, data, now).await?;
                report.alerted = Some(tightest);
                state.alerted_thresholds.extend(crossed);
            }
            deps.store
                .put_token_state(&tenant.id, &state)
                .await
                .map_err(|e| e.to_string())
        }
    }
}

// ---- rotation ----------------------------------------------------------------------------------

/// A Secrets Manager rotation invocation.
#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct RotationEvent {
    #[serde(rename = "SecretId")]
    pub secret_id: String,
    #[serde(rename = "ClientRequestToken")]
    pub token: String,
    #[serde(rename = "Step")]
    pub step: String,
}

/// A rotation step failed; Secrets Manager retries the rotation later and the current version
/// stays in place.
#[derive(Debug, thiserror::Error)]
pub enum RotationError {
    #[error("rotation of {secret}: {message}")]
    Failed { secret: String, message: String },
}

fn fail(secret: &str, message: impl std::fmt::Display) -> RotationError {
    RotationError::Failed {
        secret: secret.to_owned(),
        message: message.to_string(),
    }
}

/// A Secrets Manager error as its code and message, without the raw response.
fn sm<E: aws_sdk_secretsmanager::error::ProvideErrorMetadata>(e: &E) -> String {
    format!(
        "Secrets Manager {}: {}",
        e.code().unwrap_or("error"),
        e.message().unwrap_or("no message")
    )
}

/// What rotation needs.
#[derive(Clone)]
pub struct RotationDeps {
    pub store: Store,
    pub secrets: SecretsClient,
    pub http: reqwest::Client,
    pub client_options: ClientOptions,
}

fn secret_matches(source: &TokenSource, secret_id: &str) -> bool {
    match source {
        // Secrets Manager passes the ARN; tenants may name the secret by name or ARN.
        TokenSource::SecretsManager { secret_id: s } => {
            s == secret_id
                || secret_id.contains(&format!(":secret:{s}-"))
                || secret_id.ends_with(&format!(":secret:{s}"))
        }
        _ => false,
    }
}

async fn read_stage(
    d: &RotationDeps,
    secret: &str,
    stage: &str,
    version: Option<&str>,
) -> Result<Option<(String, ApiToken)>, RotationError> {
    let mut req = d.secrets.get_secret_value().secret_id(secret).version_stage(stage);
    if let Some(v) = version {
        req = req.version_id(v);
    }
    match req.send().await {
        Ok(out) => {
            let value = out.secret_string().unwrap_or_default();
            let token = crate::secrets::token_from_secret_value(secret, value).map_err(|e| fail(secret, e))?;
            Ok(Some((out.version_id().unwrap_or_default().to_owned(), token)))
        }
        Err(e)
            if e.as_service_error()
                .is_some_and(|s| s.is_resource_not_found_exception()) =>
        {
            Ok(None)
        }
        Err(e) => Err(fail(secret, sm(&e))),
    }
}

/// Runs one step of Secrets Manager's rotation contract for a tenant's S1 token secret.
///
/// - `createSecret`: a new S1 token (`POST /users/generate-api-token`, authenticated with the
///   current one) stored as `AWSPENDING` under the request token (idempotent).
/// - `setSecret`: nothing: S1 made the token itself.
/// - `testSecret`: `GET /system/info` with the pending token must succeed.
/// - `finishSecret`: `AWSCURRENT` moves to the pending version.
///
/// # Errors
/// Any step that cannot complete; the current version stays `AWSCURRENT`.
pub async fn rotate(d: &RotationDeps, ev: &RotationEvent) -> Result<(), RotationError> {
    let secret = ev.secret_id.as_str();
    let tenants = d.store.list_tenants().await.map_err(|e| fail(secret, e))?;
    let tenant = tenants
        .into_iter()
        .find(|t| secret_matches(&t.token, secret))
        .ok_or_else(|| fail(secret, "no tenant reads its S1 token from this secret"))?;
    let client_for = |token: &ApiToken| {
        S1Client::with_http(d.http.clone(), &tenant.console_url, token, d.client_options.clone())
            .map_err(|e| fail(secret, e))
    };
    match ev.step.as_str() {
        "createSecret" => {
            if read_stage(d, secret, "AWSPENDING", Some(&ev.token)).await?.is_some() {
                return Ok(()); // this request already made its token
            }
            let (_, current) = read_stage(d, secret, "AWSCURRENT", None)
                .await?
                .ok_or_else(|| fail(secret, "no AWSCURRENT version"))?;
            let fresh = client_for(&current)?
                .generate_api_token()
                .await
                .map_err(|e: S1Error| fail(secret, e))?;
            d.secrets
                .put_secret_value()
                .secret_id(secret)
                .client_request_token(&ev.token)
                .secret_string(fresh.expose())
                .version_stages("AWSPENDING")
                .send()
                .await
                .map_err(|e| fail(secret, sm(&e)))?;
            tracing::info!(tenant = %tenant.id, "rotation: new S1 token stored as AWSPENDING");
            Ok(())
        }
        "setSecret" => Ok(()),
        "testSecret" => {
            let (_, pending) = read_stage(d, secret, "AWSPENDING", Some(&ev.token))
                .await?
                .ok_or_else(|| fail(secret, "no AWSPENDING version for this rotation"))?;
            client_for(&pending)?
                .system_info()
                .await
                .map_err(|e| fail(secret, format!("the new token does not work: {e}")))?;
            Ok(())
        }
        "finishSecret" => {
            let described = d
                .secrets
                .describe_secret()
                .secret_id(secret)
                .send()
                .await
                .map_err(|e| fail(secret, sm(&e)))?;
            let current = described.version_ids_to_stages().and_then(|m| {
                m.iter()
                    .find(|(_, stages)| stages.iter().any(|s| s == "AWSCURRENT"))
                    .map(|(v, _)| v.clone())
            });
            if current.as_deref() == Some(ev.token.as_str()) {
                return Ok(());
            }
            let mut req = d
                .secrets
                .update_secret_version_stage()
                .secret_id(secret)
                .version_stage("AWSCURRENT")
                .move_to_version_id(&ev.token);
            if let Some(c) = current {
                req = req.remove_from_version_id(c);
            }
            req.send().await.map_err(|e| fail(secret, sm(&e)))?;
            tracing::info!(tenant = %tenant.id, "rotation: the new S1 token is AWSCURRENT");
            Ok(())
        }
        other => Err(fail(secret, format!("unknown rotation step {other:?}"))),
    }
}
