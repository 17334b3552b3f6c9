//! Function URL request -> webhook handling -> Function URL response.

use lambda_http::{Body, Request, Response};
use s1_shared::lambda::FunctionError;
use s1_shared::usecase::writeback::{WritebackDeps, handle_webhook};

/// Every request gets the webhook's answer; only a response that cannot be built is an error.
pub(crate) async fn handle(deps: &WritebackDeps, req: Request) -> Result<Response<Body>, FunctionError> {
    let (parts, body) = req.into_parts();
    // lambda_http has already base64-decoded a binary body; these are the bytes that were signed.
    let bytes: &[u8] = body.as_ref();
    let r = handle_webhook(deps, parts.method.as_str(), parts.uri.path(), &parts.headers, bytes).await;
    tracing::info!(path = parts.uri.path(), status = r.status, "webhook answered");
    Response::builder()
        .status(r.status)
        .header("content-type", "application/json")
        .body(Body::Text(r.body.to_string()))
        .map_err(FunctionError::internal)
}

#[cfg(test)]
mod tests {
    use super::*;

    use s1_bridge_sim::{DEFAULT_TOKEN, Sim, SimConfig};
    use s1_shared::platform::{WebhookSecret, sign};
    use s1_shared::store::*;
    use s1_shared::test_util::LoopbackPorts;

    const INBOUND: &str = "whsec_dGhpcy1pcy1hLXRlc3Qtb25seS1pbmJvdW5kLWtleQ==";

    #[tokio::test(flavor = "multi_thread")]
    async fn a_signed_function_url_request_updates_s1() {
        let sim = Sim::start(SimConfig {
            threats: 3,
            agents: 2,
            cloud_alerts: 0,
            ..SimConfig::default()
        })
        .await
        .unwrap();
        let ports = LoopbackPorts::new([("S1", DEFAULT_TOKEN.to_owned()), ("IN", INBOUND.to_owned())]);
        let store = Store::new(std::sync::Arc::new(EmbeddedTable::in_memory().unwrap()));
        store
            .put_tenant(&{
                let mut t = TenantConfig::for_test(
                    "acme",
                    &sim.base_url(),
                    s1_shared::test_util::generic("https://hooks.example.com/s1", "HOOK"),
                );
                t.token = s1_shared::test_util::env("S1");
                t.generic_mut().inbound_secrets = vec![s1_shared::test_util::env("IN")];
                t
            })
            .await
            .unwrap();
        let member = MemberState {
            updated_at: None,
            digest: String::new(),
            status: None,
            verdict: None,
            verdict_detail: None,
            written_status: None,
            written_verdict: None,
            publish_error: None,
            unsure: false,
        };
        let story = StoryRecord {
            key: "a:b".into(),
            id: "a:b@5".into(),
            window_start: time::OffsetDateTime::UNIX_EPOCH,
            status: StoryStatus::Open,
            platform: None,
            platform_ref: None,
            members: [(s1_shared::domain::MemberId::threat("1500000000000000001"), member)]
                .into_iter()
                .collect(),
            previous: vec![],
        };
        assert!(store.put_story("acme", &story, 0).await.unwrap());
        let deps = WritebackDeps {
            store,
            platforms: ports.platforms,
            tokens: ports.tokens,
            consoles: ports.consoles,
            inline_retry: WritebackDeps::inline_retry_policy(),
        };
        let body = serde_json::to_vec(&serde_json::json!({
            "type": "alert.status_changed", "timestamp": "2026-11-27T06:00:00Z",
            "data": {"alert_key": "s1:127.0.0.1:a:b@5", "status": "closed", "close_reason": "benign", "actor": {"name": "Ana"}}
        }))
        .unwrap();
        let ts = time::OffsetDateTime::now_utc().unix_timestamp();
        let sig = sign(&WebhookSecret::parse(INBOUND).unwrap(), "msg_1", ts, &body);
        let req = lambda_http::http::Request::builder()
            .method("POST")
            .uri("https://abc.lambda-url.eu-west-1.on.aws/generic/acme")
            .header("webhook-id", "msg_1")
            .header("webhook-timestamp", ts.to_string())
            .header("webhook-signature", sig)
            .body(Body::Binary(body.clone()))
            .unwrap();
        let resp = handle(&deps, req).await.unwrap();
        assert_eq!(resp.status(), 202);
        let threat = sim.control().threat("1500000000000000001").await.unwrap();
        assert_eq!(threat["threatInfo"]["incidentStatus"], "resolved");
        assert_eq!(threat["threatInfo"]["analystVerdict"], "false_positive");

        let bad = lambda_http::http::Request::builder()
            .method("POST")
            .uri("/generic/acme")
            .body(Body::Binary(body))
            .unwrap();
        assert_eq!(handle(&deps, bad).await.unwrap().status(), 401);
    }
}
