//! token-expiry: no S1 token expires unnoticed, and (opt-in) tokens rotate through Secrets
//! Manager's rotation steps ([`RotationStep`]), reaching Secrets Manager through the
//! [`SecretVersions`] port.
//!
//! The watch reads each tenant's `expiresAt` (`POST /users/api-token-details`), reports the days
//! left as a metric, and alerts the platform once per threshold crossed (remembered in the
//! store), and at once on a 401.

use std::sync::Arc;

use futures_util::{StreamExt, stream};
use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};

use time::OffsetDateTime;

use crate::ApiToken;
use crate::platform::{Notice, PlatformResolver};
use crate::s1::{Consoles, S1Error};
use crate::secrets::{SecretError, SecretVersions, TokenCallError, VersionStage, token_from_secret_value};
use crate::store::{Store, StoreError, TokenState};
use crate::telemetry::{Metric, NAMESPACE, emf_line};
use crate::tenant::{SecretRef, TenantConfig};

/// What the watch needs. Built once per process.
#[derive(Clone)]
pub struct TokenDeps {
    pub store: Store,
    /// The tenants' S1 clients, called with their tokens.
    pub consoles: Consoles,
    pub platforms: Arc<dyn PlatformResolver>,
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
    /// Another check of this tenant's token held its lease: this one did nothing.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub lease_held: bool,
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
    let tenants: Vec<TenantConfig> = deps.store.enabled_tenants().await?;
    Ok(stream::iter(tenants.iter().map(|t| check_tenant(deps, t, now)))
        .buffer_unordered(4)
        .collect()
        .await)
}

async fn notify(platforms: &dyn PlatformResolver, tenant: &TenantConfig, notice: Notice) -> Result<(), String> {
    let platform = platforms.resolve(tenant).await.map_err(|e| e.to_string())?;
    platform.notify(&notice).await.map(drop).map_err(|e| e.to_string())
}

/// Name of the lease a token check holds per tenant: its own job's, so a check never waits for
/// (or holds up) the tenant's poll or asset sync.
pub const LEASE_JOB: &str = "tokens";

/// A lease owner no other check shares, in this process or another: every check is a run of
/// its own (a lease is re-entrant for its owner, so two checks under one owner would both run).
fn check_owner() -> String {
    use std::hash::BuildHasher;
    // RandomState's keys come from the OS's randomness once per thread and change with every
    // instance: a random 64 bits without another dependency.
    let r = std::collections::hash_map::RandomState::new().hash_one(std::process::id());
    format!("tokens-{r:016x}")
}

/// Checks one tenant's token and alerts when due, under the tenant's token lease: a second check
/// at the same time (a duplicate message, the schedule and an operator's run) finds it held and
/// ends at once (`lease_held`), so a threshold is never alerted twice by two checks racing
/// between reading the token state and writing it.
pub async fn check_tenant(deps: &TokenDeps, tenant: &TenantConfig, now: OffsetDateTime) -> TokenReport {
    let mut report = TokenReport {
        tenant: tenant.id.clone(),
        ..TokenReport::default()
    };
    // The lease on the clock, not on `now`: a check may be asked about another day (a test, a
    // what-if), and its lease must still lapse in real time.
    let lease = match deps
        .store
        .take_lease(
            &tenant.id,
            LEASE_JOB,
            &check_owner(),
            crate::store::LEASE_TTL,
            OffsetDateTime::now_utc(),
        )
        .await
    {
        Ok(Some(lease)) => lease,
        Ok(None) => {
            report.lease_held = true;
            report.error = Some("another check holds this tenant's token lease".into());
            tracing::info!(tenant = %report.tenant, "token check skipped: another check holds the lease");
            return report;
        }
        Err(e) => {
            report.error = Some(e.to_string());
            return report;
        }
    };
    // The token state is written only while the lease is still ours: a check that lost it
    // (paused past the lease) cannot overwrite what the check that took it recorded.
    let fenced = TokenDeps {
        store: deps.store.fenced(lease.clone()),
        ..deps.clone()
    };
    match deps
        .store
        .keep_alive(&lease, check(&fenced, tenant, now, &mut report))
        .await
    {
        Ok(Ok(())) => {}
        Ok(Err(e)) => report.error = Some(e),
        Err(e) => report.error = Some(e.to_string()),
    }
    if let Err(e) = deps.store.release(&lease, OffsetDateTime::now_utc()).await {
        tracing::warn!(tenant = %tenant.id, error = %e, "could not release the token lease; it lapses by itself");
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
    // A 401 re-reads the token once (a rotated secret may hold a newer one); if it stands, the
    // token is refused.
    let details = match deps
        .consoles
        .with_token(tenant, |client| async move {
            client.own_token_details().await.map_err(TokenCallError::from)
        })
        .await
    {
        Ok(d) => Ok(d),
        Err(TokenCallError::S1(e)) => Err(e),
        Err(e @ TokenCallError::Secret(_)) => return Err(e.to_string()),
    };
    let host = url::Url::parse(&tenant.console_url)
        .ok()
        .and_then(|u| u.host_str().map(str::to_owned))
        .unwrap_or_default();
    match details {
        Err(e) if e.is_unauthorized() => {
            report.unauthorized = true;
            if !state.unauthorized_alerted {
                let id = crate::domain::event_id(
                    &tenant.id,
                    "token.unauthorized",
                    &host,
                    Some(now.replace_time(time::Time::MIDNIGHT)),
                );
                let notice = Notice::TokenUnauthorized {
                    id,
                    timestamp: now,
                    tenant: tenant.id.clone(),
                    console: host.clone(),
                    message: "S1 rejects this tenant's API token (401): it was revoked or has expired. Replace it in the tenant's secret.".into(),
                };
                notify(deps.platforms.as_ref(), tenant, notice).await?;
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
                let notice = Notice::TokenExpiring {
                    id,
                    timestamp: now,
                    tenant: tenant.id.clone(),
                    console: host.clone(),
                    expires_at: expires,
                    days_left: days,
                    threshold_days: tightest,
                    message: format!(
                        "The S1 API token of tenant {} expires in {days} day(s) ({}). Rotate or replace it.",
                        tenant.id,
                        crate::s1::dto::format_time(expires)
                    ),
                };
                notify(deps.platforms.as_ref(), tenant, notice).await?;
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
    /// The new version's id (Secrets Manager's client request token for this rotation).
    #[serde(rename = "ClientRequestToken")]
    pub token: String,
    #[serde(rename = "Step")]
    pub step: RotationStep,
}

/// The steps of Secrets Manager's rotation contract, as its events name them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum RotationStep {
    /// Make the new secret value and store it as `AWSPENDING`.
    CreateSecret,
    /// Set the new value where it is used (S1 made it itself: nothing to do).
    SetSecret,
    /// Check that the new value works.
    TestSecret,
    /// Promote the new value to `AWSCURRENT`.
    FinishSecret,
}

impl RotationStep {
    pub const ALL: [RotationStep; 4] = [
        RotationStep::CreateSecret,
        RotationStep::SetSecret,
        RotationStep::TestSecret,
        RotationStep::FinishSecret,
    ];

    /// The step as Secrets Manager names it.
    pub fn as_str(self) -> &'static str {
        match self {
            RotationStep::CreateSecret => "createSecret",
            RotationStep::SetSecret => "setSecret",
            RotationStep::TestSecret => "testSecret",
            RotationStep::FinishSecret => "finishSecret",
        }
    }
}

impl std::fmt::Display for RotationStep {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A step name Secrets Manager's rotation contract does not have.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown rotation step {0:?} (expected createSecret, setSecret, testSecret or finishSecret)")]
pub struct UnknownRotationStep(pub String);

impl std::str::FromStr for RotationStep {
    type Err = UnknownRotationStep;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|step| step.as_str() == s)
            .ok_or_else(|| UnknownRotationStep(s.to_owned()))
    }
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

/// What rotation needs.
#[derive(Clone)]
pub struct RotationDeps {
    pub store: Store,
    /// The tenants' token secrets (Secrets Manager).
    pub secrets: Arc<dyn SecretVersions>,
    /// Where a rotation that lost a token it generated is reported (the tenant's platform).
    pub platforms: Arc<dyn PlatformResolver>,
    /// The tenants' S1 clients (rotation calls S1 with the tokens it reads from the secret).
    pub consoles: Consoles,
}

/// A secret as Secrets Manager names it: its full ARN (with the random 6-character suffix) and
/// its name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretIdentity {
    pub arn: String,
    pub name: String,
}

/// Whether a tenant's token source is exactly this secret, named as Secrets Manager accepts a
/// secret id: its name, its full ARN, or its ARN without the random suffix. Never by prefix:
/// `s1-bridge/acme` is not `s1-bridge/acme-eu`.
pub fn secret_matches(source: &SecretRef, secret: &SecretIdentity) -> bool {
    let SecretRef::SecretsManager { secret_id } = source else {
        return false;
    };
    let partial_arn = secret
        .arn
        .strip_suffix(secret.arn.rsplit('-').next().unwrap_or_default())
        .and_then(|a| a.strip_suffix('-'))
        .filter(|a| a.ends_with(&format!(":secret:{}", secret.name)));
    *secret_id == secret.arn || *secret_id == secret.name || partial_arn == Some(secret_id.as_str())
}

/// Attempts to store a generated token before giving up (each with the same client request
/// token, so a write that landed but whose answer was lost is not repeated).
const PUT_ATTEMPTS: u32 = 4;

/// Stores `fresh` as the `AWSPENDING` version `version`, idempotently: retried with the same
/// client request token, and a version that is already there (an earlier try whose answer was
/// lost) counts as stored.
async fn store_pending(d: &RotationDeps, secret: &str, version: &str, fresh: &ApiToken) -> Result<(), String> {
    let mut last = String::new();
    for attempt in 0..PUT_ATTEMPTS {
        if attempt > 0 {
            tokio::time::sleep(std::time::Duration::from_millis(200 << attempt)).await;
            if let Ok(Some(stored)) = read_stage(d, secret, VersionStage::Pending, Some(version)).await {
                if stored == *fresh {
                    return Ok(());
                }
            }
        }
        match d
            .secrets
            .put(secret, version, fresh.expose(), VersionStage::Pending)
            .await
        {
            Ok(()) => return Ok(()),
            Err(e) => {
                last = e.to_string();
                tracing::warn!(secret, attempt, error = %last, "rotation: could not store the new S1 token yet");
            }
        }
    }
    Err(last)
}

/// The token at `stage` (and `version`, when given); `None` when there is no such version.
async fn read_stage(
    d: &RotationDeps,
    secret: &str,
    stage: VersionStage,
    version: Option<&str>,
) -> Result<Option<ApiToken>, RotationError> {
    match d.secrets.get(secret, stage, version).await {
        Ok(v) => token_from_secret_value(secret, v.value.expose_secret())
            .map(Some)
            .map_err(|e| fail(secret, e)),
        Err(SecretError::NotFound { .. }) => Ok(None),
        Err(e) => Err(fail(secret, e)),
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
    let no_tenant = || fail(secret, "no tenant reads its S1 token from this secret");
    let described = match d.secrets.describe(secret).await {
        Ok(described) => described,
        Err(SecretError::NotFound { .. }) => return Err(no_tenant()),
        Err(e) => return Err(fail(secret, e)),
    };
    let identity = SecretIdentity {
        arn: described.arn.clone(),
        name: described.name.clone(),
    };
    let tenants = d.store.list_tenants().await.map_err(|e| fail(secret, e))?;
    let tenant = tenants
        .into_iter()
        .find(|t| secret_matches(&t.token, &identity))
        .ok_or_else(no_tenant)?;
    let client_for = |token: &ApiToken| d.consoles.client((&tenant).into(), token).map_err(|e| fail(secret, e));
    match ev.step {
        RotationStep::CreateSecret => {
            if read_stage(d, secret, VersionStage::Pending, Some(&ev.token))
                .await?
                .is_some()
            {
                return Ok(()); // this request already made its token
            }
            let current = read_stage(d, secret, VersionStage::Current, None)
                .await?
                .ok_or_else(|| fail(secret, "no AWSCURRENT version"))?;
            let fresh = client_for(&current)?
                .generate_api_token()
                .await
                .map_err(|e: S1Error| fail(secret, e))?;
            // S1 has revoked the current token: the new one must not be lost.
            if let Err(e) = store_pending(d, secret, &ev.token, &fresh).await {
                let message = format!(
                    "S1 issued a new API token for tenant {} while rotating secret {}, but it could not be stored in Secrets Manager ({e}). S1 has revoked the previous token, so the bridge cannot reach this console until a new one is stored: generate a new API token in the S1 console for the token's user, store it with `aws secretsmanager put-secret-value --secret-id {} --secret-string <new token>`, then stop this rotation with `aws secretsmanager cancel-rotate-secret --secret-id {}`.",
                    tenant.id, identity.name, identity.name, identity.name
                );
                tracing::error!(tenant = %tenant.id, secret = %identity.name, error = %e, "rotation: a new S1 token could not be stored");
                let host = url::Url::parse(&tenant.console_url)
                    .ok()
                    .and_then(|u| u.host_str().map(str::to_owned))
                    .unwrap_or_default();
                let now = OffsetDateTime::now_utc();
                let id = crate::domain::event_id(&tenant.id, "token.rotation_failed", &ev.token, None);
                let notice = Notice::TokenRotationFailed {
                    id,
                    timestamp: now,
                    tenant: tenant.id.clone(),
                    console: host,
                    secret: identity.name.clone(),
                    message,
                };
                if let Err(n) = notify(d.platforms.as_ref(), &tenant, notice).await {
                    tracing::error!(tenant = %tenant.id, error = %n, "rotation: could not alert the platform either");
                }
                return Err(fail(
                    secret,
                    format!("the new S1 token could not be stored: {e}; the tenant's platform was alerted"),
                ));
            }
            tracing::info!(tenant = %tenant.id, "rotation: new S1 token stored as AWSPENDING");
            Ok(())
        }
        RotationStep::SetSecret => Ok(()),
        RotationStep::TestSecret => {
            let pending = read_stage(d, secret, VersionStage::Pending, Some(&ev.token))
                .await?
                .ok_or_else(|| fail(secret, "no AWSPENDING version for this rotation"))?;
            client_for(&pending)?
                .system_info()
                .await
                .map_err(|e| fail(secret, format!("the new token does not work: {e}")))?;
            Ok(())
        }
        RotationStep::FinishSecret => {
            let current = described.version_at(VersionStage::Current);
            if current == Some(ev.token.as_str()) {
                return Ok(());
            }
            d.secrets
                .move_stage(secret, VersionStage::Current, &ev.token, current)
                .await
                .map_err(|e| fail(secret, e))?;
            tracing::info!(tenant = %tenant.id, "rotation: the new S1 token is AWSCURRENT");
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_secret_matches_by_name_or_arn_never_by_prefix() {
        let eu = SecretIdentity {
            arn: "arn:aws:secretsmanager:eu-west-1:123456789012:secret:s1-bridge/acme-eu-AbC1eF".into(),
            name: "s1-bridge/acme-eu".into(),
        };
        let source = |id: &str| SecretRef::SecretsManager { secret_id: id.into() };
        for (id, want) in [
            ("s1-bridge/acme-eu", true),
            (eu.arn.as_str(), true),
            (
                "arn:aws:secretsmanager:eu-west-1:123456789012:secret:s1-bridge/acme-eu",
                true,
            ),
            ("s1-bridge/acme", false),
            (
                "arn:aws:secretsmanager:eu-west-1:123456789012:secret:s1-bridge/acme",
                false,
            ),
            (
                "arn:aws:secretsmanager:eu-west-1:123456789012:secret:s1-bridge/acme-eu-AbC1e",
                false,
            ),
            (
                "arn:aws:secretsmanager:eu-west-1:999999999999:secret:s1-bridge/acme-eu",
                false,
            ),
            ("s1-bridge/acme-eu-AbC1eF", false),
            ("", false),
        ] {
            assert_eq!(secret_matches(&source(id), &eu), want, "{id}");
        }
        assert!(!secret_matches(
            &SecretRef::Env {
                var: "s1-bridge/acme-eu".into()
            },
            &eu
        ));
    }
}
