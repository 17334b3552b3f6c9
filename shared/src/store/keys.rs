//! Key layout of the single table (docs/design.md, The state table). Every tenant item lives in partition
//! `TENANT#<id>`, so one tenant's data can be listed, scanned or removed without touching
//! another's.

use crate::domain::PlatformKind;

/// Partition of a tenant's items.
pub fn tenant(tenant: &str) -> String {
    format!("TENANT#{tenant}")
}
/// Sort key of the tenant's configuration.
pub const CONFIG: &str = "CONFIG";
/// Sort key of the tenant's token state.
pub const TOKEN: &str = "TOKEN";
/// Sort key of the tenant's connector status.
pub const STATUS: &str = "STATUS";
/// Index key under which every tenant configuration is listed.
pub const TENANTS_INDEX: &str = "TENANTS";

/// Sort key of a named checkpoint (`threats`, `alerts`).
pub fn checkpoint(name: &str) -> String {
    format!("CURSOR#{name}")
}
/// Sort key of a source's write-ahead record of a page's updates ([`InFlight`](super::InFlight)),
/// `slot` 0 or 1.
pub fn in_flight(source: &str, slot: u8) -> String {
    format!("INFLIGHT#{source}#{slot}")
}
/// Sort-key prefix of stories.
pub const STORY_PREFIX: &str = "STORY#";
/// Sort key of a story: its grouping key when current, its id once archived.
pub fn story(key: &str) -> String {
    format!("{STORY_PREFIX}{key}")
}
/// Sort key of a job's lease.
pub fn lease(job: &str) -> String {
    format!("LEASE#{job}")
}
/// Sort-key prefix of pending writebacks.
pub const PENDING_PREFIX: &str = "PENDING#";
/// Sort key of one pending writeback.
pub fn pending(id: &str) -> String {
    format!("{PENDING_PREFIX}{id}")
}
/// Sort-key prefix of dead letters.
pub const DEAD_PREFIX: &str = "DEAD#";
/// Sort key of one dead letter.
pub fn dead(id: &str) -> String {
    format!("{DEAD_PREFIX}{id}")
}
/// Sort-key prefix of publish dead letters (events the platform refused for good).
pub const PUBLISH_DEAD_PREFIX: &str = "PUBDEAD#";
/// Sort key of one publish dead letter: the refused threat's (or STAR alert's) member id.
pub fn publish_dead(id: &str) -> String {
    format!("{PUBLISH_DEAD_PREFIX}{}", member_part(id))
}
/// A member id as a key part: as it is when it can be one (S1's ids always can), else a digest,
/// so an odd id from a console can never make a dead letter unstorable.
fn member_part(id: &str) -> std::borrow::Cow<'_, str> {
    if !id.is_empty() && id.len() <= 200 && !id.contains('#') && !id.chars().any(char::is_control) {
        id.into()
    } else {
        format!("~{}", crate::domain::short_digest(id.as_bytes())).into()
    }
}
/// Sort-key prefix of the marks of publish dead letters an operator asked to send again.
pub const PUBLISH_REPLAY_PREFIX: &str = "PUBREPLAY#";
/// Sort key of the replay mark of one publish dead letter.
pub fn publish_replay(id: &str) -> String {
    format!("{PUBLISH_REPLAY_PREFIX}{}", member_part(id))
}
/// Sort-key prefix of the outbound request log.
pub const OUTBOUND_PREFIX: &str = "OUT#";
/// Outbound requests sort by time, so the newest are at the end of the partition.
pub fn outbound(at_micros: i128, id: &str) -> String {
    format!("{OUTBOUND_PREFIX}{at_micros:020}#{id}")
}
/// Sort key of an alert's last applied status change (for "only if newer").
pub fn order(alert_key: &str) -> String {
    format!("ORDER#{alert_key}")
}
/// Partition of a tenant's replay marker of a webhook delivery id (or comment dedupe key).
pub fn event(tenant: &str, id: &str) -> String {
    format!("EVENT#{tenant}#{id}")
}
/// Sort key of a replay marker.
pub const EVENT_SK: &str = "EVENT";
/// Index key of a platform alert, pointing at its story.
pub fn platform_alert(platform: PlatformKind, reference: &str) -> String {
    format!("ALERT#{platform}#{reference}")
}
/// A platform's own id for an alert (e.g. a PagerDuty incident id), pointing at its story.
pub fn alias(platform: PlatformKind, reference: &str) -> String {
    format!("ALIAS#{platform}#{reference}")
}

/// Partition of a rate budget shared by every process (`BUDGET#<key>`; the key names a platform
/// instance by a hash, never by a secret).
pub fn budget(key: &str) -> String {
    format!("BUDGET#{key}")
}

/// One time slice of a shared budget.
pub fn budget_slice(index: i64) -> String {
    format!("SLICE#{index}")
}
