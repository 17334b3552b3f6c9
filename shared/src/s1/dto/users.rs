//! Users and the system: token details and generated tokens, the caller, service users, and the
//! console's status and version.

use serde::Deserialize;
use time::OffsetDateTime;

use super::lenient::{lenient_bool, lenient_string, lenient_time, null_as_empty};
use crate::ApiToken;

/// `{createdAt, expiresAt}` of an API token.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TokenDetails {
    #[serde(default, deserialize_with = "lenient_time")]
    pub created_at: Option<OffsetDateTime>,
    #[serde(default, deserialize_with = "lenient_time")]
    pub expires_at: Option<OffsetDateTime>,
}

/// A freshly generated API token (`POST /users/generate-api-token`).
#[derive(Clone, Deserialize)]
pub struct GeneratedToken {
    pub token: ApiToken,
}

impl std::fmt::Debug for GeneratedToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GeneratedToken").field("token", &self.token).finish()
    }
}

/// The caller (`GET /user`): scope, roles and own token dates.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct User {
    #[serde(default, deserialize_with = "lenient_string")]
    pub id: Option<String>,
    #[serde(default)]
    pub email: Option<String>,
    #[serde(default)]
    pub full_name: Option<String>,
    /// `tenant`, `account` or `site`.
    #[serde(default)]
    pub scope: Option<String>,
    #[serde(default, deserialize_with = "lenient_bool")]
    pub can_generate_api_token: Option<bool>,
    #[serde(default)]
    pub api_token: Option<TokenDetails>,
    #[serde(default, deserialize_with = "null_as_empty")]
    pub scope_roles: Vec<ScopeRole>,
    #[serde(default, deserialize_with = "null_as_empty")]
    pub site_roles: Vec<ScopeRole>,
}

/// A role the caller holds on an account or site.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ScopeRole {
    #[serde(default, deserialize_with = "lenient_string")]
    pub id: Option<String>,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub role_name: Option<String>,
    #[serde(default, deserialize_with = "null_as_empty")]
    pub roles: Vec<String>,
}

/// A service user (`GET /service-users`) with its token dates.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServiceUser {
    #[serde(deserialize_with = "lenient_string")]
    pub id: Option<String>,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub scope: Option<String>,
    #[serde(default)]
    pub api_token: Option<TokenDetails>,
}

/// `GET /system/status`.
#[derive(Debug, Clone, Deserialize)]
pub struct SystemStatus {
    #[serde(default)]
    pub health: Option<String>,
}

/// `GET /system/info`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SystemInfo {
    #[serde(default)]
    pub version: Option<String>,
    #[serde(default)]
    pub build: Option<String>,
    #[serde(default)]
    pub release: Option<String>,
    #[serde(default)]
    pub patch: Option<String>,
    #[serde(default)]
    pub latest_agent_version: Option<String>,
}
