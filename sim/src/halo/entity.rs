//! The kinds of record the fake Halo keeps, one per collection of the document, and small
//! helpers on JSON records.

use serde_json::{Map, Value};

/// A Halo collection (the document's schema name in brackets).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum HaloEntity {
    /// `/Tickets` (`Faults`).
    Ticket,
    /// `/Actions` (`Actions`): notes and status changes on a ticket; ids count per ticket.
    Action,
    /// `/Client` (`Area`).
    Client,
    /// `/Site` (`Site`).
    Site,
    /// `/Asset` (`Device`).
    Asset,
    /// `/AssetType` (`Xtype`).
    AssetType,
    /// `/AssetGroup` (`Generic`).
    AssetGroup,
    /// `/Status` (`TStatus`).
    Status,
    /// `/TicketType` (`RequestType`).
    TicketType,
    /// `/Priority` (`Policy`): `id` is a GUID; tickets refer to `priorityid`.
    Priority,
    /// `/Outcome` (`TOutcome`): the name is in `outcome`.
    Outcome,
    /// `/Users` (`Users`): end users of clients.
    User,
    /// `/Agent` (`Uname`): technicians, and the API application's own agent.
    Agent,
    /// `/Team` (`SectionDetail`).
    Team,
    /// `/FieldInfo` (`FieldInfo`).
    FieldInfo,
    /// `/Webhook` (`Webhook`): `id` is a GUID.
    Webhook,
    /// `/WebhookEvent` (`WebhookEvent`).
    WebhookEvent,
}

impl HaloEntity {
    /// Every collection.
    pub const ALL: [HaloEntity; 17] = [
        Self::Ticket,
        Self::Action,
        Self::Client,
        Self::Site,
        Self::Asset,
        Self::AssetType,
        Self::AssetGroup,
        Self::Status,
        Self::TicketType,
        Self::Priority,
        Self::Outcome,
        Self::User,
        Self::Agent,
        Self::Team,
        Self::FieldInfo,
        Self::Webhook,
        Self::WebhookEvent,
    ];

    /// The collection's path segment as the document spells it (`/api/<segment>`).
    pub fn segment(self) -> &'static str {
        match self {
            Self::Ticket => "Tickets",
            Self::Action => "Actions",
            Self::Client => "Client",
            Self::Site => "Site",
            Self::Asset => "Asset",
            Self::AssetType => "AssetType",
            Self::AssetGroup => "AssetGroup",
            Self::Status => "Status",
            Self::TicketType => "TicketType",
            Self::Priority => "Priority",
            Self::Outcome => "Outcome",
            Self::User => "Users",
            Self::Agent => "Agent",
            Self::Team => "Team",
            Self::FieldInfo => "FieldInfo",
            Self::Webhook => "Webhook",
            Self::WebhookEvent => "WebhookEvent",
        }
    }

    /// The key of the array in a list answer `{"record_count": N, "<key>": [...]}`; `None` for
    /// the lookup collections, which Halo lists as a bare array.
    pub fn list_key(self) -> Option<&'static str> {
        match self {
            Self::Ticket => Some("tickets"),
            Self::Action => Some("actions"),
            Self::Client => Some("clients"),
            Self::Site => Some("sites"),
            Self::Asset => Some("assets"),
            Self::User => Some("users"),
            _ => None,
        }
    }

    pub(crate) fn from_segment(segment: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|e| e.segment().eq_ignore_ascii_case(segment))
    }

    /// Collections whose `id` is a GUID string rather than an integer.
    pub(crate) fn string_id(self) -> bool {
        matches!(self, Self::Priority | Self::Webhook)
    }

    /// The field holding the record's human name.
    pub(crate) fn name_field(self) -> &'static str {
        match self {
            Self::Ticket => "summary",
            Self::Action => "note",
            Self::Outcome => "outcome",
            _ => "name",
        }
    }

    /// Collections with an `inactive` flag, hidden from lists unless `includeinactive=true`.
    pub(crate) fn has_inactive(self) -> bool {
        matches!(self, Self::Client | Self::Site | Self::Asset | Self::User)
    }

    /// The first id handed out (tickets look like Halo's, from 1001).
    pub(crate) fn first_id(self) -> i64 {
        if self == Self::Ticket { 1001 } else { 1 }
    }
}

/// A JSON record.
pub(crate) type Record = Map<String, Value>;

/// An integer from a JSON number (integral doubles too: `Site.client_id` is a double) or a
/// numeric string.
pub(crate) fn int(v: Option<&Value>) -> Option<i64> {
    match v? {
        Value::Number(n) => n
            .as_i64()
            .or_else(|| n.as_f64().filter(|f| f.fract() == 0.0).map(|f| f as i64)),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// A positive integer reference (Halo uses 0 and -1 for "none").
pub(crate) fn reference(rec: &Record, field: &str) -> Option<i64> {
    int(rec.get(field)).filter(|n| *n > 0)
}

/// The record's id as text (GUIDs as they are, integers in decimal).
pub(crate) fn id_text(rec: &Record) -> Option<String> {
    match rec.get("id")? {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        v => int(Some(v)).filter(|n| *n > 0).map(|n| n.to_string()),
    }
}

/// A deterministic GUID for the n-th generated record of a string-id collection.
pub(crate) fn guid(n: i64) -> String {
    format!("00000000-0000-4000-8000-{n:012x}")
}

/// Now, as Halo writes timestamps.
pub(crate) fn now_text() -> String {
    let now = time::OffsetDateTime::now_utc();
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:07}Z",
        now.year(),
        u8::from(now.month()),
        now.day(),
        now.hour(),
        now.minute(),
        now.second(),
        now.nanosecond() / 100
    )
}
