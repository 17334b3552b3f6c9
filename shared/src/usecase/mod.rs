//! One use case per function, and the operator's configuration test (`tenant_check`). They take
//! ports, never SDK clients, so they run the same under Lambda, in the one-machine runner and in
//! tests.

pub mod fanout;
pub mod poll_threats;
pub mod status;
pub mod sync_assets;
pub mod tenant_check;
pub mod token_expiry;
pub mod writeback;

use std::sync::Arc;

/// How far a long run has got: S1 objects handled so far, and how many S1 says the listing holds
/// (when it sent a count).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tick {
    /// S1 objects handled so far in this run.
    pub done: u64,
    /// What S1 says the run will see in all, when it sent a count.
    pub expected: Option<u64>,
}

/// A live view of a long run: called with a tenant's running counts after each page it handles.
/// The CLI draws its progress line from it; the Lambdas leave it unset, since their report is
/// logged at the end.
pub type Progress<R> = Arc<dyn Fn(&R, Tick) + Send + Sync>;

/// The use cases' per-tenant futures are `Send` for every lifetime of their arguments, as
/// servers and the Lambda runtime need (a closure over borrowed state can quietly lose that;
/// this fails to compile when it does). `poll_threats::run` and `token_expiry::check_all` map
/// tenants to futures in a closure, which the compiler cannot prove so.
#[cfg(test)]
#[allow(dead_code, clippy::too_many_arguments)]
fn use_case_futures_are_send(
    poll: &poll_threats::PollDeps,
    assets: &sync_assets::AssetDeps,
    tokens: &token_expiry::TokenDeps,
    rotation: &token_expiry::RotationDeps,
    writeback: &writeback::WritebackDeps,
    tenant: &crate::tenant::TenantConfig,
    event: &token_expiry::RotationEvent,
    headers: &reqwest::header::HeaderMap,
    secrets: std::sync::Arc<dyn crate::secrets::TokenProvider>,
    allowed: &crate::config::AllowedHosts,
) {
    fn send<F: std::future::Future + Send>(_: F) {}
    let (now, deadline) = (time::OffsetDateTime::now_utc(), std::time::Instant::now());
    send(poll_threats::poll_tenant(poll, tenant, deadline));
    send(sync_assets::sync_all(assets, deadline));
    send(sync_assets::sync_tenant(assets, tenant, deadline));
    send(token_expiry::check_tenant(tokens, tenant, now));
    send(token_expiry::rotate(rotation, event));
    send(writeback::handle_webhook(writeback, "POST", "/generic/t", headers, b""));
    send(writeback::retry_pending(writeback, tenant, now, 1, deadline));
    send(tenant_check::tenant_check(tenant, secrets, allowed));
}
