//! "Test configuration" (`s1-bridge tenant test`): what a tenant's settings reach, as a list of
//! named checks, each `ok`, `fail` or `skip`, within a fixed time budget whatever the console
//! or the platform does. One attempt per call and short timeouts: a test reports what it meets,
//! it does not wait it out.
//!
//! - The console: its URL against the allow-list, the token readable, reachable, valid, its
//!   scope and roles (can the writeback write? can the rotation rotate?), its expiry, and a
//!   first page of what poll-threats and sync-assets read (`console.rs`). Once the console
//!   cannot be reached, the checks that need it are skipped, so the cause is said once.
//! - Unified alerts (UAM), when the tenant reads them: the token's scope (account or site), a
//!   first alert read, the write actions the writeback triggers (`uam.rs`).
//! - The platform: reachable (a test notice, which writes nothing on a platform that keeps
//!   records), then the adapter's own checks of its settings ([`Platform::check_settings`]:
//!   Halo's token and every configured name).

mod console;
mod uam;

use std::sync::Arc;
use std::time::Duration;

use time::OffsetDateTime;

use crate::config::AllowedHosts;
pub use crate::platform::check::{Check, CheckStatus};
use crate::platform::{Adapters, Notice, Platform, PlatformResolver};
use crate::s1::{ClientOptions, RetryPolicy, S1Client};
use crate::secrets::TokenProvider;
use crate::tenant::{Source, TenantConfig};

/// How long the console's checks may take in all; the platform's get the rest of
/// [`TEST_BUDGET`].
pub const CONSOLE_BUDGET: Duration = Duration::from_secs(6);
/// The whole test.
pub const TEST_BUDGET: Duration = Duration::from_secs(9);

/// One attempt per call: a test reports what it meets, it does not wait it out.
fn test_retry() -> RetryPolicy {
    RetryPolicy {
        max_attempts: 1,
        ..RetryPolicy::default()
    }
}

/// Runs every check of `tenant`, reading its token and platform secrets through `tokens` and
/// holding its URLs to `allowed`. Answers within [`TEST_BUDGET`].
pub async fn tenant_check(tenant: &TenantConfig, tokens: Arc<dyn TokenProvider>, allowed: &AllowedHosts) -> Vec<Check> {
    let started = tokio::time::Instant::now();
    let mut c = console::Checks::new(started + CONSOLE_BUDGET);
    c.push(Check::of(
        "console URL allowed",
        allowed
            .check_console_url(&tenant.console_url)
            .map(|()| tenant.console_url.clone()),
    ));
    let token = match tokens.token(&tenant.token).await {
        Ok(tok) => {
            c.push(Check::ok("token readable", "read from its source"));
            Some(tok)
        }
        Err(e) => {
            c.push(Check::fail("token readable", e.to_string()));
            c.console_down = Some("no token to call the console with".into());
            None
        }
    };
    let options = ClientOptions {
        connect_timeout: Duration::from_secs(3),
        request_timeout: Duration::from_secs(4),
        retry: test_retry(),
        ..ClientOptions::default()
    }
    .allowing(allowed.clone());
    let client = match token
        .as_ref()
        .map(|tok| S1Client::new(&tenant.console_url, tok, options))
    {
        Some(Ok(client)) => Some(client),
        Some(Err(e)) => {
            c.push(Check::fail("console reachable", e.to_string()));
            c.console_down = Some("the console cannot be called (see above)".into());
            None
        }
        None => None,
    };
    c.console_checks(client.as_ref(), token.as_ref()).await;
    if tenant.reads(Source::Unified) {
        c.uam_checks(client.as_ref(), tenant).await;
    }
    let mut out = c.into_checks();
    out.extend(platform_checks(tenant, tokens, allowed, started + TEST_BUDGET).await);
    out
}

/// "platform reachable" (a test notice), then the adapter's own checks, within `deadline`.
async fn platform_checks(
    tenant: &TenantConfig,
    tokens: Arc<dyn TokenProvider>,
    allowed: &AllowedHosts,
    deadline: tokio::time::Instant,
) -> Vec<Check> {
    const NAME: &str = "platform reachable";
    let remaining = deadline.saturating_duration_since(tokio::time::Instant::now());
    let http = crate::net::outbound_client(Duration::from_secs(2), Duration::from_secs(3).min(remaining), allowed);
    let reach = async {
        let http = http.map_err(|e| e.to_string())?;
        let platforms = Adapters::new(http, tokens, test_retry()).with_allowed_hosts(allowed.clone());
        let p = platforms.resolve(tenant).await.map_err(|e| e.to_string())?;
        let notice = Notice::Test {
            id: format!("msg_test_{}", OffsetDateTime::now_utc().unix_timestamp_nanos()),
            timestamp: OffsetDateTime::now_utc(),
            tenant: tenant.id.clone(),
            message: "s1-bridge configuration test".into(),
        };
        p.notify(&notice).await.map_err(|e| e.to_string())?;
        Ok::<_, String>(p)
    };
    let p: Arc<dyn Platform> = match tokio::time::timeout_at(deadline, reach).await {
        Ok(Ok(p)) => p,
        Ok(Err(e)) => return vec![Check::fail(NAME, e)],
        Err(_) => return vec![Check::fail(NAME, "no answer within the test's time budget")],
    };
    let mut out = vec![Check::ok(NAME, format!("{} accepted a test event", p.kind()))];
    match tokio::time::timeout_at(deadline, p.check_settings()).await {
        Ok(checks) => out.extend(checks),
        Err(_) => out.push(Check::fail(
            &format!("{} settings", p.kind()),
            "no answer within the test's time budget",
        )),
    }
    out
}
