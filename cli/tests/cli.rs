//! The operator CLI as a user runs it: the real binary against an embedded state file.

use std::process::Command;
use std::sync::Arc;

use s1_shared::store::{EmbeddedTable, OutboundRequest, PendingWriteback, Store};
use time::OffsetDateTime;

fn bridge(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_s1-bridge"))
        .args(args)
        .env_remove("S1_BRIDGE_STORE")
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
async fn dead_letters_are_listed_and_replayed_and_the_outbound_log_is_shown() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.redb");
    let now = OffsetDateTime::now_utc();
    {
        let store = Store::new(Arc::new(EmbeddedTable::open(&path).unwrap()));
        let p = PendingWriteback {
            id: "chg42".into(),
            alert_key: "agent:hash@1".into(),
            change: serde_json::json!({}),
            attempts: 8,
            last_error: Some("S1 failed on /threats/incident with HTTP 503".into()),
            created_at: now,
            next_attempt_at: now,
        };
        store.move_to_dead("acme", &p).await.unwrap();
        let r = OutboundRequest {
            id: "1".into(),
            at: now,
            method: "POST".into(),
            path: "/threats/incident".into(),
            status: Some(200),
            result: Some("updated=3".into()),
            latency_ms: 12,
            attempt: 1,
            error: None,
        };
        store.record_outbound("acme", &r).await.unwrap();
    }
    let spec = format!("embedded:{}", path.display());
    let (ok, out, err) = bridge(&["dead-letters", "list", "--tenant", "acme", "--store", &spec]);
    assert!(ok, "{err}");
    assert!(out.contains("chg42") && out.contains("HTTP 503"), "{out}");
    let (ok, out, _) = bridge(&["dead-letters", "list", "--tenant", "acme", "--store", &spec, "--json"]);
    assert!(ok);
    let listed: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(listed[0]["attempts"], 8);

    let (ok, out, err) = bridge(&[
        "dead-letters",
        "replay",
        "--tenant",
        "acme",
        "--id",
        "chg42",
        "--store",
        &spec,
    ]);
    assert!(ok, "{err}");
    assert!(out.contains("pending again"), "{out}");
    let (_, out, _) = bridge(&["dead-letters", "list", "--tenant", "acme", "--store", &spec]);
    assert!(out.contains("no dead letters"), "{out}");
    let (ok, _, err) = bridge(&[
        "dead-letters",
        "replay",
        "--tenant",
        "acme",
        "--id",
        "chg42",
        "--store",
        &spec,
    ]);
    assert!(!ok && err.contains("no dead letter chg42"), "{err}");

    let (ok, out, err) = bridge(&["outbound", "--tenant", "acme", "--store", &spec]);
    assert!(ok, "{err}");
    assert!(out.contains("/threats/incident") && out.contains("updated=3"), "{out}");

    let (ok, _, err) = bridge(&["outbound", "--tenant", "acme", "--store", "postgres:x"]);
    assert!(!ok && err.contains("embedded:<path> or dynamodb:<table>"), "{err}");
}
