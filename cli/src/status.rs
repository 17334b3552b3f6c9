//! `status`: one line per tenant saying whether its connector works, from the status record its
//! poll runs keep (`connected`, `degraded`, `error` with the cause).

use std::collections::HashMap;

use s1_shared::store::{ConnectorStatus, Store};
use serde::Serialize;
use time::OffsetDateTime;

use crate::ops::StoreArgs;

/// One tenant's line.
#[derive(Serialize)]
struct Line {
    tenant: String,
    enabled: bool,
    platform: s1_shared::platform::PlatformKind,
    /// `connected`, `degraded`, `error`, or `unknown` before the first run.
    status: String,
    #[serde(flatten)]
    record: Option<ConnectorStatus>,
}

/// Every tenant's connector status as of now (its last success brought up to its last poll
/// run, which an idle run does not write into the record), keyed by tenant id.
pub(crate) async fn by_tenant(
    store: &Store,
    tenants: &[s1_shared::store::TenantConfig],
) -> Result<HashMap<String, ConnectorStatus>, Box<dyn std::error::Error>> {
    let ids: Vec<&str> = tenants.iter().map(|t| t.id.as_str()).collect();
    Ok(store
        .statuses_as_of(
            &ids,
            s1_shared::usecase::poll_threats::LEASE_JOB,
            OffsetDateTime::now_utc(),
        )
        .await?
        .into_iter()
        .collect())
}

/// The state's name as shown, `unknown` before the first run.
pub(crate) fn state_of(s: Option<&ConnectorStatus>) -> &'static str {
    s.map_or("unknown", |s| s.state.as_str())
}

fn ago(at: Option<OffsetDateTime>, now: OffsetDateTime) -> String {
    let Some(at) = at else { return "never".into() };
    let s = (now - at).whole_seconds().max(0);
    match s {
        0..=119 => format!("{s}s ago"),
        120..=7199 => format!("{}m ago", s / 60),
        _ => format!("{}h ago", s / 3600),
    }
}

pub async fn status(args: StoreArgs) -> Result<(), Box<dyn std::error::Error>> {
    let store = args.store.open().await?;
    let tenants = store.list_tenants().await?;
    let mut statuses = by_tenant(&store, &tenants).await?;
    let lines: Vec<Line> = tenants
        .iter()
        .map(|t| {
            let record = statuses.remove(&t.id);
            Line {
                tenant: t.id.clone(),
                enabled: t.enabled,
                platform: t.platform.kind(),
                status: state_of(record.as_ref()).into(),
                record,
            }
        })
        .collect();
    if args.json {
        println!("{}", serde_json::to_string_pretty(&lines)?);
        return Ok(());
    }
    if lines.is_empty() {
        println!("no tenants (see `tenant add`)");
        return Ok(());
    }
    let now = OffsetDateTime::now_utc();
    println!(
        "{:<20} {:<9} {:<10} {:<13} {:>7} {:>5} {:>7} {:>4}  cause",
        "tenant", "status", "platform", "last success", "lag", "token", "pending", "dead"
    );
    for l in &lines {
        let r = l.record.as_ref();
        let status = if l.enabled {
            l.status.clone()
        } else {
            format!("{} (off)", l.status)
        };
        println!(
            "{:<20} {:<9} {:<10} {:<13} {:>7} {:>5} {:>7} {:>4}  {}",
            l.tenant,
            status,
            l.platform.to_string(),
            ago(r.and_then(|r| r.last_success), now),
            r.and_then(|r| r.lag_seconds).map_or("-".into(), |s| format!("{s}s")),
            r.and_then(|r| r.token_days_left)
                .map_or("-".into(), |d| format!("{d}d")),
            r.map_or(0, |r| r.pending_writebacks),
            r.map_or(0, |r| r.dead_letters),
            r.and_then(|r| r.cause.as_deref()).unwrap_or(""),
        );
    }
    Ok(())
}
