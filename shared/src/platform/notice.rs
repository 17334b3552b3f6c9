//! Everything a platform is told besides threats: token alerts, synced customers, sites and
//! assets, and the configuration test. Each adapter matches on the kind, so a new kind is a
//! compile error in every adapter until it decides what to do with it.

use serde::Serialize;
use time::OffsetDateTime;

use crate::store::AssetKind;

/// What happened to a synced object since the last sync.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SyncChange {
    Created,
    Updated,
    Reactivated,
    Deactivated,
}

/// One synced S1 account (customer), site or agent (asset), as the asset sync tells it.
#[derive(Debug, Clone, PartialEq)]
pub struct Synced {
    /// Stable per (object, content): the receiver's idempotency key.
    pub id: String,
    pub timestamp: OffsetDateTime,
    pub kind: AssetKind,
    /// The S1 id: account id, site id, or agent UUID.
    pub external_id: String,
    pub active: bool,
    pub change: SyncChange,
    /// The object's name in S1 (account or site name, agent's computer name), when it has one.
    pub name: Option<String>,
    /// The S1 account it belongs to (sites and agents) and the S1 site (agents).
    pub account_id: Option<String>,
    pub site_id: Option<String>,
    /// The platform's own id for this object from an earlier sync or the operator's mapping.
    pub platform_ref: Option<String>,
    /// The object as the tenant's field mapping renders it: the generic event's `object`.
    pub fields: AssetFields,
    /// The S1 object's own fields by their S1 names (an agent's `computerName`,
    /// `serialNumber`, `machineType`, ...), for platforms that map them themselves.
    pub s1: AssetFields,
}

/// The fields of a synced object under the names the tenant's field mapping gives them (the
/// operator chooses the names, so they are a map).
pub type AssetFields = serde_json::Map<String, serde_json::Value>;

/// A notice: the event type on the wire is [`Notice::kind`].
#[derive(Debug, Clone, PartialEq)]
pub enum Notice {
    /// A token-expiry threshold was crossed (`token.expiring`).
    TokenExpiring {
        id: String,
        timestamp: OffsetDateTime,
        tenant: String,
        console: String,
        expires_at: OffsetDateTime,
        days_left: i64,
        threshold_days: i64,
        message: String,
    },
    /// S1 refuses the tenant's token (`token.unauthorized`).
    TokenUnauthorized {
        id: String,
        timestamp: OffsetDateTime,
        tenant: String,
        console: String,
        message: String,
    },
    /// A rotated token could not be stored: the operator must act (`token.rotation_failed`).
    TokenRotationFailed {
        id: String,
        timestamp: OffsetDateTime,
        tenant: String,
        console: String,
        secret: String,
        message: String,
    },
    /// An S1 account, new or changed (`customer.upserted`).
    CustomerUpserted(Synced),
    /// An S1 site, new or changed (`site.upserted`).
    SiteUpserted(Synced),
    /// An S1 agent, new, changed or back (`asset.upserted`).
    AssetUpserted(Synced),
    /// An S1 agent decommissioned or gone (`asset.deactivated`).
    AssetDeactivated(Synced),
    /// The tenant's connector status turned to `error` (`connector.error`), or back from it
    /// (`connector.recovered`): sent only to tenants that opted in (`status_notices`), once per
    /// change.
    ConnectorStatus {
        id: String,
        timestamp: OffsetDateTime,
        tenant: String,
        console: String,
        /// `connected`, `degraded` or `error`.
        state: &'static str,
        recovered: bool,
        /// Why it is in error (or still degraded), as the run report names it.
        cause: Option<String>,
        message: String,
    },
    /// The configuration test ("Test configuration"): must page nobody (`bridge.test`).
    Test {
        id: String,
        timestamp: OffsetDateTime,
        tenant: String,
        message: String,
    },
}

impl Notice {
    /// The event type on the wire.
    pub fn kind(&self) -> &'static str {
        match self {
            Notice::TokenExpiring { .. } => "token.expiring",
            Notice::TokenUnauthorized { .. } => "token.unauthorized",
            Notice::TokenRotationFailed { .. } => "token.rotation_failed",
            Notice::CustomerUpserted(_) => "customer.upserted",
            Notice::SiteUpserted(_) => "site.upserted",
            Notice::AssetUpserted(_) => "asset.upserted",
            Notice::AssetDeactivated(_) => "asset.deactivated",
            Notice::Test { .. } => "bridge.test",
            Notice::ConnectorStatus { recovered: false, .. } => "connector.error",
            Notice::ConnectorStatus { recovered: true, .. } => "connector.recovered",
        }
    }

    /// The receiver's idempotency key.
    pub fn id(&self) -> &str {
        match self {
            Notice::TokenExpiring { id, .. }
            | Notice::TokenUnauthorized { id, .. }
            | Notice::TokenRotationFailed { id, .. }
            | Notice::ConnectorStatus { id, .. }
            | Notice::Test { id, .. } => id,
            Notice::CustomerUpserted(s)
            | Notice::SiteUpserted(s)
            | Notice::AssetUpserted(s)
            | Notice::AssetDeactivated(s) => &s.id,
        }
    }

    /// When it happened.
    pub fn timestamp(&self) -> OffsetDateTime {
        match self {
            Notice::TokenExpiring { timestamp, .. }
            | Notice::TokenUnauthorized { timestamp, .. }
            | Notice::TokenRotationFailed { timestamp, .. }
            | Notice::ConnectorStatus { timestamp, .. }
            | Notice::Test { timestamp, .. } => *timestamp,
            Notice::CustomerUpserted(s)
            | Notice::SiteUpserted(s)
            | Notice::AssetUpserted(s)
            | Notice::AssetDeactivated(s) => s.timestamp,
        }
    }

    /// The synced object of a customer, site or asset notice.
    pub fn synced(&self) -> Option<&Synced> {
        match self {
            Notice::CustomerUpserted(s)
            | Notice::SiteUpserted(s)
            | Notice::AssetUpserted(s)
            | Notice::AssetDeactivated(s) => Some(s),
            _ => None,
        }
    }

    /// The notice for a synced object: its kind and change say which one.
    pub fn for_synced(s: Synced) -> Self {
        match (s.kind, s.change) {
            (AssetKind::Customer, _) => Notice::CustomerUpserted(s),
            (AssetKind::Site, _) => Notice::SiteUpserted(s),
            (AssetKind::Asset, SyncChange::Deactivated) => Notice::AssetDeactivated(s),
            (AssetKind::Asset, _) => Notice::AssetUpserted(s),
        }
    }

    /// The `data` of the generic event (the documented event reference).
    pub fn data(&self) -> serde_json::Value {
        use serde_json::json;
        let time = crate::s1::dto::format_time;
        match self {
            Notice::TokenExpiring {
                tenant,
                console,
                expires_at,
                days_left,
                threshold_days,
                message,
                ..
            } => json!({
                "tenant": tenant, "console": console, "expires_at": time(*expires_at),
                "days_left": days_left, "threshold_days": threshold_days, "message": message,
            }),
            Notice::TokenUnauthorized {
                tenant,
                console,
                message,
                ..
            } => json!({"tenant": tenant, "console": console, "message": message}),
            Notice::TokenRotationFailed {
                tenant,
                console,
                secret,
                message,
                ..
            } => json!({"tenant": tenant, "console": console, "secret": secret, "message": message}),
            Notice::CustomerUpserted(s)
            | Notice::SiteUpserted(s)
            | Notice::AssetUpserted(s)
            | Notice::AssetDeactivated(s) => json!({
                "external_id": s.external_id, "active": s.active, "change": s.change, "object": s.fields,
            }),
            Notice::ConnectorStatus {
                tenant,
                console,
                state,
                cause,
                message,
                ..
            } => json!({"tenant": tenant, "console": console, "state": state, "cause": cause, "message": message}),
            Notice::Test { tenant, message, .. } => json!({"tenant": tenant, "message": message}),
        }
    }
}
