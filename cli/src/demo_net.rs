//! The demo's HTTP: every step (the main demo, Halo's, the unified alerts') calls only loopback
//! services, through the one outbound client the functions use.

use std::time::Duration;

use s1_shared::config::AllowedHosts;
use s1_shared::platform::{WebhookSecret, sign};
use serde_json::Value;
use time::OffsetDateTime;

/// Everything the demo calls is on loopback: the simulated console, the receiver, the PagerDuty
/// stand-in and the writeback endpoint.
pub(crate) fn local_hosts() -> AllowedHosts {
    AllowedHosts::parse("127.0.0.1").expect("a valid host")
}

pub(crate) fn reqwest_client() -> Result<reqwest::Client, reqwest::Error> {
    s1_shared::net::outbound_client(Duration::from_secs(5), Duration::from_secs(30), &local_hosts())
}

/// POSTs `body` to a generic-platform webhook `url` as the platform sends it (Standard Webhooks
/// headers, signed with `secret` under webhook id `id`): the HTTP status and the JSON answer
/// (null when there is none).
pub(crate) async fn post_signed(
    url: &str,
    secret: &str,
    id: &str,
    body: Vec<u8>,
) -> Result<(u16, Value), Box<dyn std::error::Error>> {
    let ts = OffsetDateTime::now_utc().unix_timestamp();
    let signature = sign(&WebhookSecret::parse(secret)?, id, ts, &body);
    let resp = reqwest_client()?
        .post(url)
        .header("webhook-id", id)
        .header("webhook-timestamp", ts.to_string())
        .header("webhook-signature", signature)
        .body(body)
        .send()
        .await?;
    let code = resp.status().as_u16();
    Ok((code, resp.json().await.unwrap_or_default()))
}
