//! Assets: agents (`GET /agents`), accounts (`GET /accounts`) and sites (`GET /sites`).

use serde::Deserialize;
use time::OffsetDateTime;

use super::lenient::{lenient_bool, lenient_string, lenient_time, null_as_empty};

/// An endpoint (`GET /agents`).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Agent {
    #[serde(deserialize_with = "lenient_string")]
    pub id: Option<String>,
    #[serde(default)]
    pub uuid: Option<String>,
    #[serde(default)]
    pub computer_name: Option<String>,
    #[serde(default)]
    pub os_type: Option<String>,
    #[serde(default)]
    pub os_name: Option<String>,
    #[serde(default)]
    pub os_revision: Option<String>,
    #[serde(default)]
    pub machine_type: Option<String>,
    #[serde(default, deserialize_with = "lenient_string")]
    pub site_id: Option<String>,
    #[serde(default)]
    pub site_name: Option<String>,
    #[serde(default, deserialize_with = "lenient_string")]
    pub account_id: Option<String>,
    #[serde(default)]
    pub account_name: Option<String>,
    #[serde(default, deserialize_with = "lenient_string")]
    pub group_id: Option<String>,
    #[serde(default)]
    pub group_name: Option<String>,
    #[serde(default, deserialize_with = "lenient_bool")]
    pub is_active: Option<bool>,
    #[serde(default, deserialize_with = "lenient_bool")]
    pub is_decommissioned: Option<bool>,
    #[serde(default, deserialize_with = "lenient_bool")]
    pub is_uninstalled: Option<bool>,
    #[serde(default, deserialize_with = "lenient_bool")]
    pub is_up_to_date: Option<bool>,
    #[serde(default, deserialize_with = "lenient_bool")]
    pub infected: Option<bool>,
    #[serde(default)]
    pub network_status: Option<String>,
    #[serde(default)]
    pub agent_version: Option<String>,
    #[serde(default)]
    pub external_ip: Option<String>,
    #[serde(default)]
    pub last_ip_to_mgmt: Option<String>,
    #[serde(default)]
    pub domain: Option<String>,
    #[serde(default)]
    pub model_name: Option<String>,
    #[serde(default)]
    pub serial_number: Option<String>,
    #[serde(default)]
    pub last_logged_in_user_name: Option<String>,
    #[serde(default, deserialize_with = "lenient_time")]
    pub last_active_date: Option<OffsetDateTime>,
    #[serde(default, deserialize_with = "lenient_time")]
    pub registered_at: Option<OffsetDateTime>,
    #[serde(default, deserialize_with = "lenient_time")]
    pub created_at: Option<OffsetDateTime>,
    #[serde(default, deserialize_with = "lenient_time")]
    pub updated_at: Option<OffsetDateTime>,
    #[serde(default, deserialize_with = "null_as_empty")]
    pub network_interfaces: Vec<NetworkInterface>,
}

/// A network interface of an agent.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NetworkInterface {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default, deserialize_with = "null_as_empty")]
    pub inet: Vec<String>,
    #[serde(default, deserialize_with = "null_as_empty")]
    pub inet6: Vec<String>,
    #[serde(default)]
    pub physical: Option<String>,
}

/// A customer account (`GET /accounts`).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Account {
    #[serde(deserialize_with = "lenient_string")]
    pub id: Option<String>,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub state: Option<String>,
    #[serde(default)]
    pub account_type: Option<String>,
    #[serde(default)]
    pub usage_type: Option<String>,
    #[serde(default)]
    pub active_agents: Option<u64>,
    #[serde(default)]
    pub number_of_sites: Option<u64>,
    #[serde(default)]
    pub external_id: Option<String>,
    #[serde(default, deserialize_with = "lenient_time")]
    pub created_at: Option<OffsetDateTime>,
    #[serde(default, deserialize_with = "lenient_time")]
    pub updated_at: Option<OffsetDateTime>,
    #[serde(default, deserialize_with = "lenient_time")]
    pub expiration: Option<OffsetDateTime>,
}

/// A site (`GET /sites`, inside the object-shaped `data.sites`).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Site {
    #[serde(deserialize_with = "lenient_string")]
    pub id: Option<String>,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default, deserialize_with = "lenient_string")]
    pub account_id: Option<String>,
    #[serde(default)]
    pub account_name: Option<String>,
    #[serde(default)]
    pub state: Option<String>,
    #[serde(default)]
    pub site_type: Option<String>,
    #[serde(default)]
    pub active_licenses: Option<u64>,
    #[serde(default)]
    pub total_licenses: Option<u64>,
    #[serde(default)]
    pub external_id: Option<String>,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default, deserialize_with = "lenient_bool")]
    pub is_default: Option<bool>,
    #[serde(default, deserialize_with = "lenient_time")]
    pub created_at: Option<OffsetDateTime>,
    #[serde(default, deserialize_with = "lenient_time")]
    pub updated_at: Option<OffsetDateTime>,
    #[serde(default, deserialize_with = "lenient_time")]
    pub expiration: Option<OffsetDateTime>,
}

/// The object-shaped `data` of `GET /sites`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SitesData {
    #[serde(default, deserialize_with = "null_as_empty")]
    pub sites: Vec<Site>,
}
