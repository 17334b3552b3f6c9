//! Token rotation on the in-memory `SecretVersions` port: each of Secrets Manager's steps
//! against the simulator, and a generated token that cannot be stored. (tests/token_expiry.rs
//! runs the same use case on moto's Secrets Manager.)

use std::sync::Arc;

use integration_tests::poll::{PollHarness, consoles_over, tenant};
use s1_bridge_sim::{FaultKind, FaultRule, SimConfig, TokenSpec};
use s1_shared::ApiToken;
use s1_shared::s1::{Console, S1Client};
use s1_shared::secrets::{MemorySecretVersions, VersionStage};
use s1_shared::store::{EmbeddedTable, TokenSource};
use s1_shared::usecase::token_expiry::{RotationDeps, RotationEvent, RotationStep, rotate};

const SECRET: &str = "s1-bridge/acme";
const REQUEST: &str = "5f0c1a7e-7777-4b2a-9c3d-000000000001";

/// The poll harness with tenant `acme` reading its token from an in-memory secret holding
/// `token` (which the simulator accepts), and the rotation deps over that secret.
async fn setup(token: &str) -> (PollHarness, Arc<MemorySecretVersions>, RotationDeps) {
    let h = PollHarness::start(
        SimConfig {
            threats: 1,
            agents: 1,
            cloud_alerts: 0,
            ..SimConfig::default()
        },
        Arc::new(EmbeddedTable::in_memory().unwrap()),
    )
    .await;
    let secrets = Arc::new(MemorySecretVersions::default());
    secrets.create(SECRET, token);
    h.sim.control().add_token(&TokenSpec::tenant(token, 20)).await.unwrap();
    let mut t = tenant("acme", &h.sim.base_url(), &h.receiver.url());
    t.token = TokenSource::SecretsManager {
        secret_id: SECRET.into(),
    };
    h.store.put_tenant(&t).await.unwrap();
    let d = RotationDeps {
        store: h.store.clone(),
        secrets: secrets.clone(),
        platforms: h.deps.platforms.clone(),
        consoles: consoles_over(h.tokens.clone()),
    };
    (h, secrets, d)
}

fn event(step: RotationStep) -> RotationEvent {
    RotationEvent {
        secret_id: SECRET.into(),
        token: REQUEST.into(),
        step,
    }
}

/// Whether the simulator accepts `token`.
async fn works(h: &PollHarness, token: &str) -> bool {
    let src = TokenSource::Env { var: "unused".into() };
    let console = Console {
        tenant: "check",
        url: &h.sim.base_url(),
        token: &src,
    };
    let client: S1Client = consoles_over(h.tokens.clone())
        .client(console, &ApiToken::new(token))
        .unwrap();
    client.system_info().await.is_ok()
}

async fn generated(h: &PollHarness) -> u64 {
    h.sim
        .control()
        .stats()
        .await
        .unwrap()
        .requests
        .get("POST /users/generate-api-token")
        .copied()
        .unwrap_or_default()
}

#[test]
fn steps_are_parsed_once_by_their_secrets_manager_names() {
    for step in RotationStep::ALL {
        assert_eq!(step.as_str().parse::<RotationStep>(), Ok(step));
        let ev: RotationEvent = serde_json::from_value(serde_json::json!({
            "SecretId": SECRET, "ClientRequestToken": REQUEST, "Step": step.as_str()
        }))
        .unwrap();
        assert_eq!(ev.step, step);
        assert_eq!(serde_json::to_value(step).unwrap(), step.as_str());
    }
    let err = "rollSecret".parse::<RotationStep>().unwrap_err().to_string();
    assert!(err.contains("rollSecret"), "{err}");
    assert!(
        serde_json::from_value::<RotationEvent>(serde_json::json!({
            "SecretId": SECRET, "ClientRequestToken": REQUEST, "Step": "rollSecret"
        }))
        .is_err()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn each_step_does_its_part_and_a_repeated_step_changes_nothing() {
    let (h, secrets, d) = setup("rotate-me").await;

    // createSecret: S1 makes a new token, stored as AWSPENDING under the request token.
    rotate(&d, &event(RotationStep::CreateSecret)).await.unwrap();
    let fresh = secrets.value_at(SECRET, VersionStage::Pending).unwrap();
    assert_ne!(fresh, "rotate-me");
    assert_eq!(
        secrets.value_at(SECRET, VersionStage::Current).as_deref(),
        Some("rotate-me")
    );
    assert!(works(&h, &fresh).await, "S1 issued it");
    assert!(!works(&h, "rotate-me").await, "and revoked the old one");
    rotate(&d, &event(RotationStep::CreateSecret)).await.unwrap();
    assert_eq!(generated(&h).await, 1, "a repeated createSecret makes no second token");
    assert_eq!(secrets.puts(), 1);

    // setSecret: nothing to do (S1 made the token itself).
    rotate(&d, &event(RotationStep::SetSecret)).await.unwrap();
    assert_eq!(
        secrets.value_at(SECRET, VersionStage::Current).as_deref(),
        Some("rotate-me")
    );

    // testSecret: the pending token works against the console.
    rotate(&d, &event(RotationStep::TestSecret)).await.unwrap();

    // finishSecret: AWSCURRENT moves to the new version; the old one is AWSPREVIOUS.
    rotate(&d, &event(RotationStep::FinishSecret)).await.unwrap();
    assert_eq!(secrets.value_at(SECRET, VersionStage::Current), Some(fresh.clone()));
    assert_eq!(
        secrets.value_at(SECRET, VersionStage::Previous).as_deref(),
        Some("rotate-me")
    );
    rotate(&d, &event(RotationStep::FinishSecret)).await.unwrap();
    assert_eq!(secrets.value_at(SECRET, VersionStage::Current), Some(fresh));
}

#[tokio::test(flavor = "multi_thread")]
async fn test_and_finish_need_this_rotations_pending_version() {
    let (h, secrets, d) = setup("rotate-me-2").await;
    let err = rotate(&d, &event(RotationStep::TestSecret)).await.unwrap_err();
    assert!(err.to_string().contains("no AWSPENDING version"), "{err}");
    assert!(rotate(&d, &event(RotationStep::FinishSecret)).await.is_err());
    assert_eq!(
        secrets.value_at(SECRET, VersionStage::Current).as_deref(),
        Some("rotate-me-2")
    );

    // A pending token the console refuses fails the test step; AWSCURRENT stays.
    rotate(&d, &event(RotationStep::CreateSecret)).await.unwrap();
    h.sim
        .control()
        .add_fault(&FaultRule::new(
            "/system/info",
            FaultKind::Status {
                status: 401,
                retry_after: None,
                code: None,
            },
            1,
        ))
        .await
        .unwrap();
    let err = rotate(&d, &event(RotationStep::TestSecret)).await.unwrap_err();
    assert!(err.to_string().contains("does not work"), "{err}");
    assert_eq!(
        secrets.value_at(SECRET, VersionStage::Current).as_deref(),
        Some("rotate-me-2")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_put_that_fails_at_first_is_retried_with_the_same_request_token() {
    let (_h, secrets, d) = setup("rotate-me-3").await;
    secrets.fail_puts(2);
    rotate(&d, &event(RotationStep::CreateSecret)).await.unwrap();
    assert_eq!(secrets.puts(), 3);
    assert!(secrets.value_at(SECRET, VersionStage::Pending).is_some());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_generated_token_that_cannot_be_stored_is_reported_to_the_platform() {
    let (h, secrets, d) = setup("rotate-me-4").await;
    secrets.fail_puts(1_000);
    let err = rotate(&d, &event(RotationStep::CreateSecret)).await.unwrap_err();
    assert!(err.to_string().contains("could not be stored"), "{err}");
    assert_eq!(secrets.puts(), 4, "every attempt made");
    assert_eq!(generated(&h).await, 1);
    assert_eq!(secrets.value_at(SECRET, VersionStage::Pending), None);
    assert_eq!(
        secrets.value_at(SECRET, VersionStage::Current).as_deref(),
        Some("rotate-me-4")
    );
    let alerts = h.events("token.rotation_failed");
    assert_eq!(alerts.len(), 1, "{:?}", h.receiver.events());
    let message = alerts[0]["data"]["message"].as_str().unwrap();
    for needle in [SECRET, "put-secret-value", "revoked", "cancel-rotate-secret"] {
        assert!(message.contains(needle), "{needle} not in {message}");
    }
    assert!(!alerts[0].to_string().contains("rotate-me-4"), "no token in the alert");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_secret_no_tenant_reads_is_refused() {
    let (_h, secrets, d) = setup("rotate-me-5").await;
    secrets.create("s1-bridge/other", "x");
    for id in ["s1-bridge/other", "s1-bridge/nowhere"] {
        let ev = RotationEvent {
            secret_id: id.into(),
            ..event(RotationStep::SetSecret)
        };
        let err = rotate(&d, &ev).await.unwrap_err();
        assert!(err.to_string().contains("no tenant"), "{id}: {err}");
    }
}
