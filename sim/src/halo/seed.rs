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
    add(
        HaloEntity::AssetType,
        json!({"id": 1, "name": "Workstation", "assetgroup_id": 1}),
    );
    add(
        HaloEntity::AssetType,
        json!({"id": 2, "name": "Server", "assetgroup_id": 1}),
    );
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
