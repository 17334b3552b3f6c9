//! The records a fresh fake Halo starts with: a service desk set up the way an MSP's is, with a
//! security ticket type, named priorities, close reasons as outcomes, one existing customer and
//! the API application's own agent.

use serde_json::{Value, json};

use super::entity::{HaloEntity, guid};

/// The agent the API application acts as (author of actions posted through the API).
pub const HALO_API_AGENT_ID: i64 = 1;
/// A technician who can close tickets in tests and the demo.
pub const HALO_TECHNICIAN_ID: i64 = 2;
/// The "Closed" status (Halo's usual id).
pub const HALO_CLOSED_STATUS_ID: i64 = 9;

/// The asset fields the seed's computer types have (Halo's field ids are instance-wide): an
/// asset's values are `fields[]` items by these ids, and `key_field`, `key_field2`, `key_field3`
/// show the values of its type's key fields.
pub const HALO_ASSET_FIELDS: [(i64, &str); 4] = [
    (1, "Hostname"),
    (2, "Serial Number"),
    (3, "Operating System"),
    (4, "Domain"),
];

/// A computer asset type: every field of [`HALO_ASSET_FIELDS`], Hostname, Serial Number and
/// Operating System its key fields.
fn computer_type(id: i64, name: &str) -> Value {
    let fields: Vec<Value> = (1..)
        .zip(HALO_ASSET_FIELDS)
        .map(|(n, (field, fname))| json!({"id": id * 100 + n, "field_id": field, "field_name": fname}))
        .collect();
    json!({
        "id": id, "name": name, "assetgroup_id": 1, "fields": fields,
        "keyfield_id": 1, "keyfield_name": "Hostname",
        "keyfield2_id": 2, "keyfield2_name": "Serial Number",
        "keyfield3_id": 3, "keyfield3_name": "Operating System",
    })
}

/// The default seed (see [`crate::HaloConfig::default_seed`]).
pub(crate) fn default_seed() -> Vec<(HaloEntity, Value)> {
    let mut seed = Vec::new();
    let mut add = |e: HaloEntity, v: Value| seed.push((e, v));
    for (id, name) in [
        (1, "New"),
        (2, "In Progress"),
        (3, "Action Required"),
        (4, "Waiting on User"),
        (5, "Updated"),
        (8, "On Hold"),
        (9, "Closed"),
        (10, "Re-opened"),
    ] {
        add(HaloEntity::Status, json!({"id": id, "name": name, "colour": "#2e86de"}));
    }
    for (id, name, priority) in [
        (1, "Incident", 3),
        (3, "Service Request", 4),
        (21, "Security Incident", 2),
    ] {
        add(
            HaloEntity::TicketType,
            json!({"id": id, "name": name, "default_priority": priority}),
        );
    }
    for (n, name) in [(1, "Critical"), (2, "High"), (3, "Medium"), (4, "Low")] {
        add(
            HaloEntity::Priority,
            json!({"id": guid(0xB000 + n), "slaid": 1, "priorityid": n, "name": name}),
        );
    }
    let outcomes = [
        "Note",
        "Private Note",
        "Email User",
        "Resolved",
        "True Positive",
        "False Positive",
        "Benign",
        "Activity Blocked",
        "Attack Failed",
        "Incident",
        "Testing",
        "Suppressed",
        "IT Misconfiguration",
        "Policy Violation",
        "PUP/PUA",
        "Other",
    ];
    for (i, name) in (1..).zip(outcomes) {
        add(
            HaloEntity::Outcome,
            json!({"id": i, "outcome": name, "buttonname": name}),
        );
    }
    add(HaloEntity::AssetGroup, json!({"id": 1, "name": "Computers"}));
    for (id, name) in [(1, "Workstation"), (2, "Server")] {
        add(HaloEntity::AssetType, computer_type(id, name));
    }
    add(HaloEntity::Team, json!({"id": 1, "name": "Security Operations"}));
    add(
        HaloEntity::Agent,
        json!({"id": HALO_API_AGENT_ID, "name": "S1 Bridge API", "isapiagent": true, "team": "Security Operations"}),
    );
    add(
        HaloEntity::Agent,
        json!({"id": HALO_TECHNICIAN_ID, "name": "Alex Technician", "email": "alex@msp.example", "team": "Security Operations"}),
    );
    add(
        HaloEntity::Client,
        json!({"id": 12, "name": "Contoso Ltd", "inactive": false}),
    );
    add(
        HaloEntity::Site,
        json!({"id": 34, "name": "Contoso HQ", "client_id": 12, "inactive": false}),
    );
    add(
        HaloEntity::User,
        json!({"id": 1, "name": "SentinelOne", "client_id": 12, "site_id": 34, "emailaddress": "s1@contoso.example", "inactive": false}),
    );
    seed
}
