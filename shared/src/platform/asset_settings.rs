//! A tenant's asset settings (`platform.settings.assets`) and the platform's view of an agent
//! they give: mapped fields, asset type, customer and site placement.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use time::OffsetDateTime;

use crate::s1::dto::Agent;

/// How the asset type is chosen (PSA seed: one type for all, from a field, or ordered rules).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "mode", rename_all = "snake_case")]
pub enum AssetType {
    Fixed { r#type: String },
    Field { field: String },
    Rules { rules: Vec<TypeRule>, default: String },
}

/// One ordered rule: the first whose field equals the value wins.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TypeRule {
    pub field: String,
    pub equals: String,
    pub r#type: String,
}

/// Where an S1 account or site lands on the platform.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct Placement {
    #[serde(default)]
    pub customer: Option<String>,
    #[serde(default)]
    pub site: Option<String>,
}

/// Per-tenant asset settings (`platform.settings.assets`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AssetSettings {
    /// S1 agent field -> platform field.
    #[serde(default = "default_fields")]
    pub field_map: HashMap<String, String>,
    #[serde(default = "default_type")]
    pub asset_type: AssetType,
    /// Never create assets; only update or deactivate the ones already known.
    #[serde(default)]
    pub no_create: bool,
    /// Keep an existing asset on its site even when S1 moved the agent.
    #[serde(default)]
    pub no_move: bool,
    /// S1 site id (or account id) -> platform customer/site.
    #[serde(default)]
    pub site_map: HashMap<String, Placement>,
    #[serde(default)]
    pub default_site: Option<Placement>,
}

fn default_fields() -> HashMap<String, String> {
    [
        ("computerName", "hostname"),
        ("osName", "os"),
        ("lastIpToMgmt", "ip"),
        ("serialNumber", "serial_number"),
        ("modelName", "model"),
        ("domain", "domain"),
        ("lastActiveDate", "last_seen"),
        ("agentVersion", "agent_version"),
        ("lastLoggedInUserName", "last_user"),
    ]
    .into_iter()
    .map(|(a, b)| (a.to_owned(), b.to_owned()))
    .collect()
}

fn default_type() -> AssetType {
    AssetType::Field {
        field: "machineType".into(),
    }
}

impl Default for AssetSettings {
    fn default() -> Self {
        Self {
            field_map: default_fields(),
            asset_type: default_type(),
            no_create: false,
            no_move: false,
            site_map: HashMap::new(),
            default_site: None,
        }
    }
}

/// The S1 fields of an agent that mappings and rules can name.
pub fn agent_fields(a: &Agent) -> Map<String, Value> {
    let t = |v: &Option<String>| v.clone().map(Value::String).unwrap_or(Value::Null);
    let time = |v: &Option<OffsetDateTime>| {
        v.map(|t| Value::String(crate::s1::dto::format_time(t)))
            .unwrap_or(Value::Null)
    };
    let mut m = Map::new();
    for (k, v) in [
        ("uuid", t(&a.uuid)),
        ("id", t(&a.id)),
        ("computerName", t(&a.computer_name)),
        ("osType", t(&a.os_type)),
        ("osName", t(&a.os_name)),
        ("osRevision", t(&a.os_revision)),
        ("machineType", t(&a.machine_type)),
        ("siteId", t(&a.site_id)),
        ("siteName", t(&a.site_name)),
        ("accountId", t(&a.account_id)),
        ("accountName", t(&a.account_name)),
        ("groupName", t(&a.group_name)),
        ("domain", t(&a.domain)),
        ("modelName", t(&a.model_name)),
        ("serialNumber", t(&a.serial_number)),
        ("agentVersion", t(&a.agent_version)),
        ("externalIp", t(&a.external_ip)),
        ("lastIpToMgmt", t(&a.last_ip_to_mgmt)),
        ("lastLoggedInUserName", t(&a.last_logged_in_user_name)),
        ("networkStatus", t(&a.network_status)),
        ("lastActiveDate", time(&a.last_active_date)),
    ] {
        m.insert(k.to_owned(), v);
    }
    m
}

impl AssetSettings {
    fn asset_type(&self, fields: &Map<String, Value>) -> String {
        let get = |f: &str| fields.get(f).and_then(Value::as_str).unwrap_or_default().to_owned();
        match &self.asset_type {
            AssetType::Fixed { r#type } => r#type.clone(),
            AssetType::Field { field } => {
                let v = get(field);
                if v.is_empty() { "unknown".into() } else { v }
            }
            AssetType::Rules { rules, default } => rules
                .iter()
                .find(|r| get(&r.field).eq_ignore_ascii_case(&r.equals))
                .map(|r| r.r#type.clone())
                .unwrap_or_else(|| default.clone()),
        }
    }

    /// Where an agent of `site_id` / `account_id` goes: its site's mapping, else its account's, else
    /// the default site.
    pub fn placement(&self, site_id: Option<&str>, account_id: Option<&str>) -> Option<Placement> {
        site_id
            .and_then(|s| self.site_map.get(s))
            .or_else(|| account_id.and_then(|a| self.site_map.get(a)))
            .cloned()
            .or_else(|| self.default_site.clone())
    }

    /// The platform's view of an agent: mapped fields, type, customer/site.
    pub fn asset_payload(&self, a: &Agent) -> Value {
        let fields = agent_fields(a);
        let mut mapped = Map::new();
        let mut keys: Vec<_> = self.field_map.iter().collect();
        keys.sort();
        for (s1, platform) in keys {
            mapped.insert(platform.clone(), fields.get(s1).cloned().unwrap_or(Value::Null));
        }
        json!({
            "external_id": a.uuid,
            "asset_type": self.asset_type(&fields),
            "customer": {"external_id": a.account_id, "name": a.account_name},
            "site": {"external_id": a.site_id, "name": a.site_name},
            "placement": self.placement(a.site_id.as_deref(), a.account_id.as_deref()),
            "fields": mapped,
        })
    }
}
