//! `/users`, `/user` and `/system`: token details and generation, the caller, the console.

use serde_json::json;

use super::super::dto::{GeneratedToken, SystemInfo, SystemStatus, TokenDetails, User};
use super::super::error::S1Error;
use super::super::ratelimit::EndpointFamily;
use super::S1Client;
use crate::ApiToken;

impl S1Client {
    /// `POST /users/api-token-details` for `token` (usually this client's own).
    ///
    /// # Errors
    /// As any call; S1 answers 400 for a token it does not know.
    pub async fn api_token_details(&self, token: &ApiToken) -> Result<TokenDetails, S1Error> {
        let body = json!({ "data": { "apiToken": token.expose() } });
        self.post_query("users/api-token-details", EndpointFamily::Users, &body)
            .await
    }

    /// `POST /users/api-token-details` for this client's own token: when it expires.
    ///
    /// # Errors
    /// As [`S1Client::api_token_details`].
    pub async fn own_token_details(&self) -> Result<TokenDetails, S1Error> {
        self.api_token_details(&self.token).await
    }

    /// `POST /users/generate-api-token`: a new token for the calling console user. S1 revokes
    /// the caller's previous token, so this is never retried after an ambiguous failure.
    ///
    /// # Errors
    /// As any call.
    pub async fn generate_api_token(&self) -> Result<ApiToken, S1Error> {
        let body = json!({ "data": {} });
        let t: GeneratedToken = self
            .post_data("users/generate-api-token", EndpointFamily::Users, &body, false)
            .await?;
        Ok(t.token)
    }

    /// `GET /user`: the token's owner, scope and token dates.
    ///
    /// # Errors
    /// As any call.
    pub async fn user(&self) -> Result<User, S1Error> {
        self.get_data("user", EndpointFamily::User, true).await
    }

    /// `GET /system/status` (unauthenticated: proves reachability only).
    ///
    /// # Errors
    /// As any call.
    pub async fn system_status(&self) -> Result<SystemStatus, S1Error> {
        self.get_data("system/status", EndpointFamily::System, false).await
    }

    /// `GET /system/info` (authenticated: proves the token works).
    ///
    /// # Errors
    /// As any call.
    pub async fn system_info(&self) -> Result<SystemInfo, S1Error> {
        self.get_data("system/info", EndpointFamily::System, true).await
    }
}
