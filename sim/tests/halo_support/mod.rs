//! Helpers shared by the fake Halo's tests: tokens through Halo's discovery, and a small API
//! client that sends the bearer token.
#![allow(dead_code)]

use reqwest::StatusCode;
use s1_bridge_sim::{FakeHalo, HaloConfig};
use serde_json::Value;

const FORM: &str = "application/x-www-form-urlencoded";

pub fn form(config: &HaloConfig, scope: &str) -> String {
    format!(
        "grant_type=client_credentials&client_id={}&client_secret={}&scope={}",
        config.client_id,
        config.client_secret,
        scope.replace(' ', "+")
    )
}

pub async fn post_token(url: &str, body: String) -> (StatusCode, Value) {
    let r = reqwest::Client::new()
        .post(url)
        .header("content-type", FORM)
        .body(body)
        .send()
        .await
        .unwrap();
    (r.status(), r.json().await.unwrap_or_default())
}

/// A token through discovery: AuthInfo, then `<auth_url>/token`.
pub async fn discover_token(halo: &FakeHalo) -> String {
    let info: Value = reqwest::get(format!("{}/api/AuthInfo", halo.base_url()))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let mut url = format!("{}/token", info["auth_url"].as_str().unwrap());
    if let Some(t) = info["tenant_id"].as_str() {
        url.push_str(&format!("?tenant={t}"));
    }
    let (status, body) = post_token(&url, form(halo.config(), "all")).await;
    assert_eq!(status, 200, "{body}");
    body["access_token"].as_str().unwrap().to_owned()
}

pub struct Api {
    pub base: String,
    pub token: String,
    pub http: reqwest::Client,
}

impl Api {
    pub async fn new(halo: &FakeHalo) -> Self {
        Self {
            base: halo.base_url(),
            token: discover_token(halo).await,
            http: reqwest::Client::new(),
        }
    }

    pub async fn get(&self, path: &str) -> (StatusCode, Value) {
        let r = self
            .http
            .get(format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .send()
            .await
            .unwrap();
        (r.status(), r.json().await.unwrap_or_default())
    }

    pub async fn post(&self, path: &str, body: &Value) -> (StatusCode, Value) {
        let r = self
            .http
            .post(format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .json(body)
            .send()
            .await
            .unwrap();
        (r.status(), r.json().await.unwrap_or_default())
    }
}
