//! The operator CLI as a user runs it: the real binary against an embedded state file.

use std::process::Command;
use std::sync::Arc;

use s1_shared::store::{EmbeddedTable, OutboundRequest, PendingChange, PendingWriteback, PublishDeadLetter, Store};
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

/// A writeback that ran out of attempts.
fn writeback_dead_letter(now: OffsetDateTime) -> PendingWriteback {
    PendingWriteback {
        id: "chg42".into(),
        alert_key: "agent:hash@1".into(),
        change: PendingChange::for_test("agent:hash", now),
        attempts: 8,
        last_error: Some("S1 failed on /threats/incident with HTTP 503".into()),
        created_at: now,
        next_attempt_at: now,
    }
}

#[tokio::test]
async fn dead_letters_are_listed_and_replayed_and_the_outbound_log_is_shown() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.redb");
    let now = OffsetDateTime::now_utc();
    {
        let store = Store::new(Arc::new(EmbeddedTable::open(&path).unwrap()));
        store.move_to_dead("acme", &writeback_dead_letter(now)).await.unwrap();
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

#[tokio::test]
async fn both_directions_are_listed_and_replayed() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.redb");
    let now = OffsetDateTime::now_utc();
    {
        let store = Store::new(Arc::new(EmbeddedTable::open(&path).unwrap()));
        store.move_to_dead("acme", &writeback_dead_letter(now)).await.unwrap();
        let l = PublishDeadLetter {
            id: "1500000000000000007".into(),
            kind: "threat.created".into(),
            alert_key: "s1:acme.sentinelone.net:agent:hash@1".into(),
            event_id: "msg_0123".into(),
            updated_at: Some(now),
            status: 422,
            error: "title too long".into(),
            created_at: now,
            attempts: 1,
            replay_requested: false,
            event: s1_shared::platform::ThreatEvent::for_test("acme", "1500000000000000007"),
        };
        store.put_publish_dead("acme", &[l]).await.unwrap();
    }
    let spec = format!("embedded:{}", path.display());
    let list = |json: bool| {
        let mut args = vec!["dead-letters", "list", "--tenant", "acme", "--store", &spec];
        if json {
            args.push("--json");
        }
        bridge(&args)
    };

    let (ok, out, err) = list(false);
    assert!(ok, "{err}");
    let line = |id: &str| out.lines().find(|l| l.contains(id)).unwrap_or_default().to_owned();
    assert!(
        line("chg42").starts_with("writeback") && line("chg42").contains("HTTP 503"),
        "{out}"
    );
    let publish = line("1500000000000000007");
    assert!(
        publish.starts_with("publish") && publish.contains("HTTP 422: title too long"),
        "{out}"
    );
    let (ok, out, _) = list(true);
    assert!(ok);
    let listed: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(listed[0]["direction"], "writeback");
    assert_eq!(listed[0]["attempts"], 8);
    assert_eq!(listed[1]["direction"], "publish");
    assert_eq!(listed[1]["status"], 422);

    // A publish dead letter is queued for the next poll run; the list says so.
    let replay = |id: &str, extra: &[&str]| {
        let mut args = vec![
            "dead-letters",
            "replay",
            "--tenant",
            "acme",
            "--id",
            id,
            "--store",
            &spec,
        ];
        args.extend_from_slice(extra);
        bridge(&args)
    };
    let (ok, out, err) = replay("1500000000000000007", &[]);
    assert!(ok, "{err}");
    assert!(
        out.contains("publish dead letter") && out.contains("next poll run"),
        "{out}"
    );
    let (_, out, _) = list(false);
    assert!(out.contains("replay queued"), "{out}");
    let (ok, _, err) = replay("1500000000000000007", &["--direction", "writeback"]);
    assert!(
        !ok && err.contains("no writeback dead letter 1500000000000000007"),
        "{err}"
    );

    // A writeback dead letter goes back to the pending queue, as before.
    let (ok, out, err) = replay("chg42", &["--direction", "writeback"]);
    assert!(ok, "{err}");
    assert!(out.contains("pending again"), "{out}");
    let (ok, _, err) = replay("nothing-here", &[]);
    assert!(!ok && err.contains("no dead letter nothing-here"), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_tenant_is_added_tested_polled_and_disabled_from_the_command_line() {
    use s1_bridge_sim::{DEFAULT_TOKEN, Sim, SimConfig, WebhookReceiver};
    const HOOK: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    let sim = Sim::start(SimConfig {
        threats: 40,
        agents: 10,
        cloud_alerts: 0,
        ..SimConfig::default()
    })
    .await
    .unwrap();
    let receiver = WebhookReceiver::start(HOOK).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let spec = format!("embedded:{}", dir.path().join("state.redb").display());
    let file = dir.path().join("tenant.json");
    std::fs::write(
        &file,
        serde_json::to_vec(&serde_json::json!({
            // Only what a new user must give: `enabled` defaults to yes.
            "id": "acme", "console_url": sim.base_url(),
            "token": {"kind": "env", "var": "CLI_TEST_S1_TOKEN"},
            "platform": {"kind": "generic", "settings": {"url": receiver.url(), "secret": {"kind": "env", "var": "CLI_TEST_HOOK"}}}
        }))
        .unwrap(),
    )
    .unwrap();
    let run = |args: &[&str], token: &str| {
        let out = Command::new(env!("CARGO_BIN_EXE_s1-bridge"))
            .args(args)
            .env_remove("S1_BRIDGE_STORE")
            .env_remove("S1_BRIDGE_ALLOWED_HOSTS")
            .env("CLI_TEST_S1_TOKEN", token)
            .env("CLI_TEST_HOOK", HOOK)
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    // A platform this build does not have, a missing or mistyped setting, a key no setting
    // reads, or a mapping to a status S1 does not have is refused at add time, naming it, not
    // at the first run.
    let bad = dir.path().join("bad.json");
    let hook = serde_json::json!({"kind": "env", "var": "CLI_TEST_HOOK"});
    for (platform, expected) in [
        (
            serde_json::json!({"kind": "servicenow", "settings": {}}),
            "at `platform.kind`: unknown variant `servicenow`, expected one of `generic`, `pagerduty`, `halo`",
        ),
        (
            serde_json::json!({"kind": "pagerduty", "settings": {}}),
            "missing field `routing_key`",
        ),
        (
            serde_json::json!({"kind": "generic", "settings": {"url": receiver.url(), "secret": hook, "inbound_secret": []}}),
            "unknown setting `platform.settings.inbound_secret`",
        ),
        (
            serde_json::json!({"kind": "generic", "settings": {"url": receiver.url(), "secret": "whsec_inline"}}),
            "at `platform.settings.secret`",
        ),
    ] {
        std::fs::write(
            &bad,
            serde_json::to_vec(&serde_json::json!({
                "id": "bad", "enabled": true, "console_url": sim.base_url(),
                "token": {"kind": "env", "var": "CLI_TEST_S1_TOKEN"}, "platform": platform
            }))
            .unwrap(),
        )
        .unwrap();
        let bad = bad.display().to_string();
        let args = [
            "tenant",
            "add",
            "--file",
            &bad,
            "--allow-host",
            "127.0.0.1",
            "--store",
            &spec,
        ];
        let (ok, _, err) = run(&args, DEFAULT_TOKEN);
        assert!(!ok && err.contains(expected), "{err}");
    }
    let file = file.display().to_string();
    let (ok, _, err) = run(&["tenant", "add", "--file", &file, "--store", &spec], DEFAULT_TOKEN);
    assert!(
        !ok && err.contains("not in the allowed hosts"),
        "the default allow-list is *.sentinelone.net: {err}"
    );
    let (ok, out, err) = run(
        &[
            "tenant",
            "add",
            "--file",
            &file,
            "--allow-host",
            "127.0.0.1",
            "--store",
            &spec,
        ],
        DEFAULT_TOKEN,
    );
    assert!(ok && out.contains("tenant acme saved"), "{err}");
    let (_, out, _) = run(&["tenant", "list", "--store", &spec], DEFAULT_TOKEN);
    assert!(out.contains("acme") && out.contains("generic"), "{out}");
    let (_, out, _) = run(&["tenant", "show", "--id", "acme", "--store", &spec], DEFAULT_TOKEN);
    assert!(
        out.contains("CLI_TEST_S1_TOKEN") && !out.contains(DEFAULT_TOKEN),
        "shows references, never secrets: {out}"
    );

    let (ok, out, err) = run(
        &[
            "tenant",
            "test",
            "--id",
            "acme",
            "--allow-host",
            "127.0.0.1",
            "--store",
            &spec,
        ],
        DEFAULT_TOKEN,
    );
    assert!(ok, "{out}{err}");
    for c in [
        "console reachable",
        "token valid",
        "token expiry",
        "poll-threats can read",
        "sync-assets can read",
        "status-writeback can write",
        "token rotation",
        "platform reachable",
    ] {
        assert!(out.lines().any(|l| l.starts_with("ok") && l.contains(c)), "{c}: {out}");
    }
    assert_eq!(receiver.events()[0]["type"], "bridge.test");
    // A viewer's token reads everything but cannot write back: the test says so up front.
    sim.control()
        .add_token(&s1_bridge_sim::TokenSpec {
            scope: s1_bridge_sim::TokenScope::Accounts(vec!["1000000000000000001".into()]),
            can_write: false,
            ..s1_bridge_sim::TokenSpec::tenant("viewer-token", 90)
        })
        .await
        .unwrap();
    let (ok, out, _) = run(
        &[
            "tenant",
            "test",
            "--id",
            "acme",
            "--allow-host",
            "127.0.0.1",
            "--store",
            &spec,
        ],
        "viewer-token",
    );
    assert!(!ok, "{out}");
    assert!(
        out.lines()
            .any(|l| l.starts_with("FAIL") && l.contains("status-writeback can write") && l.contains("Viewer")),
        "{out}"
    );
    assert!(
        out.lines()
            .any(|l| l.starts_with("ok") && l.contains("poll-threats can read")),
        "{out}"
    );
    let (ok, out, _) = run(
        &[
            "tenant",
            "test",
            "--id",
            "acme",
            "--allow-host",
            "127.0.0.1",
            "--store",
            &spec,
        ],
        "revoked",
    );
    assert!(
        !ok && out.lines().any(|l| l.starts_with("FAIL") && l.contains("token valid")),
        "{out}"
    );

    let (ok, out, err) = run(
        &["run", "poll", "--allow-host", "127.0.0.1", "--store", &spec],
        "revoked",
    );
    assert!(!ok, "a failed tenant fails the run: {out}");
    assert!(out.starts_with("FAIL acme: failed:") && out.contains("401"), "{out}");
    assert!(err.contains("1 tenant(s) failed: acme"), "{err}");
    let (ok, out, err) = run(
        &[
            "run",
            "poll",
            "--allow-host",
            "127.0.0.1",
            "--store",
            &spec,
            "--progress",
            "lines",
        ],
        DEFAULT_TOKEN,
    );
    assert!(ok, "{err} {out}");
    assert!(
        out.starts_with("ok   acme: completed: fetched 40 in 1 pages: 40 new") && out.contains("published 40"),
        "{out}"
    );
    assert!(
        err.contains("poll acme: 40 of 40 so far: 40 new, 0 changed"),
        "live counts on stderr: {err}"
    );
    let (ok, out, err) = run(
        &["run", "poll", "--allow-host", "127.0.0.1", "--store", &spec, "--json"],
        DEFAULT_TOKEN,
    );
    assert!(ok, "{err}");
    assert!(
        !err.contains("so far"),
        "no live counts in --json runs by default: {err}"
    );
    let report: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        (&report["tenants"][0]["outcome"], &report["tenants"][0]["published"]),
        (&serde_json::json!("completed"), &serde_json::json!(0)),
        "the second run sends nothing: {report}"
    );
    let (ok, out, _) = run(
        &["run", "tokens", "--allow-host", "127.0.0.1", "--store", &spec, "--json"],
        DEFAULT_TOKEN,
    );
    assert!(ok && out.contains("days_left"), "{out}");
    let (ok, out, _) = run(
        &["run", "assets", "--allow-host", "127.0.0.1", "--store", &spec, "--json"],
        DEFAULT_TOKEN,
    );
    assert!(ok && out.contains("\"created\""), "{out}");
    let (ok, out, err) = run(
        &[
            "run",
            "assets",
            "--allow-host",
            "127.0.0.1",
            "--store",
            &spec,
            "--tenant",
            "acme",
        ],
        DEFAULT_TOKEN,
    );
    assert!(ok && out.starts_with("ok   acme: 0 created, 0 updated"), "{out}{err}");

    let (ok, _, _) = run(&["tenant", "disable", "--id", "acme", "--store", &spec], DEFAULT_TOKEN);
    assert!(ok);
    let (_, out, _) = run(
        &["run", "poll", "--allow-host", "127.0.0.1", "--store", &spec, "--json"],
        DEFAULT_TOKEN,
    );
    let report: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        report["tenants"].as_array().unwrap().len(),
        0,
        "a disabled tenant is not polled"
    );
    let (ok, out, _) = run(&["tenant", "enable", "--id", "acme", "--store", &spec], DEFAULT_TOKEN);
    assert!(ok && out.contains("tenant acme enabled"), "{out}");
    let (_, out, _) = run(
        &["run", "poll", "--allow-host", "127.0.0.1", "--store", &spec, "--json"],
        DEFAULT_TOKEN,
    );
    let report: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        report["tenants"][0]["tenant"], "acme",
        "`tenant enable` undoes `tenant disable`: {report}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn serve_runs_the_jobs_on_schedule_and_takes_webhooks() {
    use s1_bridge_sim::{DEFAULT_TOKEN, Sim, SimConfig, WebhookReceiver};
    const HOOK: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const INBOUND: &str = "whsec_ZGVtby1pbmJvdW5kLXNlY3JldC1mb3ItdGVzdHM=";
    let sim = Sim::start(SimConfig {
        threats: 30,
        agents: 10,
        cloud_alerts: 0,
        ..SimConfig::default()
    })
    .await
    .unwrap();
    let receiver = WebhookReceiver::start(HOOK).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.redb");
    {
        let store = Store::new(Arc::new(EmbeddedTable::open(&path).unwrap()));
        let t: s1_shared::store::TenantConfig = serde_json::from_value(serde_json::json!({
            "id": "acme", "enabled": true, "console_url": sim.base_url(),
            "token": {"kind": "env", "var": "SERVE_S1"},
            "platform": {"kind": "generic", "settings": {"url": receiver.url(), "secret": {"kind": "env", "var": "SERVE_HOOK"},
                         "inbound_secrets": [{"kind": "env", "var": "SERVE_IN"}]}}
        }))
        .unwrap();
        store.put_tenant(&t).await.unwrap();
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut child = Command::new(env!("CARGO_BIN_EXE_s1-bridge"))
        .args([
            "serve",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--poll-seconds",
            "1",
            "--allow-host",
            "127.0.0.1",
            "--store",
            &format!("embedded:{}", path.display()),
        ])
        .env("SERVE_S1", DEFAULT_TOKEN)
        .env("SERVE_HOOK", HOOK)
        .env("SERVE_IN", INBOUND)
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Both jobs start at once and race; wait for both (under load the asset sync can finish last).
    let done = |events: &[serde_json::Value]| {
        events.iter().filter(|e| e["type"] == "threat.created").count() >= 30
            && events.iter().any(|e| e["type"] == "asset.upserted")
    };
    let mut waited = 0;
    while !done(&receiver.events()) && waited < 600 {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        waited += 1;
    }
    let created: Vec<_> = receiver
        .events()
        .into_iter()
        .filter(|e| e["type"] == "threat.created")
        .collect();
    assert_eq!(created.len(), 30, "the scheduled poll published the backlog");
    assert!(
        receiver.events().iter().any(|e| e["type"] == "asset.upserted"),
        "the asset sync ran at start"
    );
    let alert = created[0]["data"]["alert_key"].as_str().unwrap().to_owned();
    let threat = created[0]["data"]["s1"]["threat_id"].as_str().unwrap().to_owned();
    let body = serde_json::to_vec(&serde_json::json!({
        "type": "alert.status_changed", "timestamp": s1_shared::s1::dto::format_time(OffsetDateTime::now_utc()),
        "data": {"alert_key": alert, "status": "closed", "close_reason": "benign", "actor": {"name": "Ana"}}
    }))
    .unwrap();
    let ts = OffsetDateTime::now_utc().unix_timestamp();
    let sig = s1_shared::platform::sign(
        &s1_shared::platform::WebhookSecret::parse(INBOUND).unwrap(),
        "serve-1",
        ts,
        &body,
    );
    let resp = reqwest::Client::new()
        .post(format!("http://127.0.0.1:{port}/webhooks/generic/acme"))
        .header("webhook-id", "serve-1")
        .header("webhook-timestamp", ts.to_string())
        .header("webhook-signature", sig)
        .body(body)
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    child.kill().unwrap();
    let _ = child.wait();
    assert_eq!(status, 202);
    let t = sim.control().threat(&threat).await.unwrap();
    assert_eq!(t["threatInfo"]["incidentStatus"], "resolved");
    assert_eq!(t["threatInfo"]["analystVerdict"], "false_positive");
}

#[test]
fn the_demo_runs_every_pipeline_and_reports_what_happened() {
    let (ok, out, err) = bridge(&["demo", "--threats", "600", "--agents", "80", "--json"]);
    assert!(ok, "{err}");
    let s: serde_json::Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    let polls = s["polls"].as_array().unwrap();
    assert_eq!(
        (&polls[0]["new"], &polls[0]["published"]),
        (&serde_json::json!(600), &serde_json::json!(600)),
        "the backlog, once"
    );
    assert_eq!(polls[1]["published"], 0, "nothing changed, nothing sent");
    assert_eq!(
        (&polls[2]["new"], &polls[2]["changed"]),
        (&serde_json::json!(3), &serde_json::json!(1))
    );
    assert_eq!(polls[3]["published"], 0, "our own writebacks are not sent back");
    assert!(polls[3]["echoes"].as_u64().unwrap() > 0);
    assert!(s["assets"][0]["created"].as_u64().unwrap() > 0);
    assert_eq!(
        (&s["assets"][1]["updated"], &s["assets"][1]["deactivated"]),
        (&serde_json::json!(1), &serde_json::json!(1))
    );
    assert_eq!(s["token"]["alerted"], 7);
    let pd = &s["pagerduty"];
    assert!(pd["alerts"].as_u64().unwrap() > 0 && pd["alerts"].as_u64() <= pd["stories"].as_u64());
    assert_eq!(
        (
            &pd["acknowledge_webhook"]["writeback"],
            &pd["s1_status_after"],
            &pd["events_after_echo"]
        ),
        (
            &serde_json::json!("applied"),
            &serde_json::json!("in_progress"),
            &serde_json::json!(0)
        )
    );
    let halo = &s["halo"];
    assert_eq!(
        (&halo["clients"], &halo["sites"]),
        (&serde_json::json!(3), &serde_json::json!(6))
    );
    assert!(halo["assets"].as_u64().unwrap() > 0 && halo["tickets"].as_u64().unwrap() > 0);
    assert_eq!(
        (
            &halo["close_webhook"],
            &halo["s1_after"]["status"],
            &halo["s1_after"]["verdict"]
        ),
        (
            &serde_json::json!(202),
            &serde_json::json!("resolved"),
            &serde_json::json!("false_positive")
        )
    );
    assert!(
        halo["s1_after"]["note"]
            .as_str()
            .unwrap()
            .starts_with("[halo] closed by Alex Technician: False Positive")
    );
    assert_eq!(
        (&halo["actions_after_echo"], &halo["refused_requests"]),
        (&serde_json::json!(0), &serde_json::json!(0))
    );
    let uam = &s["unified"];
    assert_eq!(uam["alerts"], 40);
    assert!(
        uam["twin"]["threat"].is_string(),
        "an EDR alert told as its threat: {uam}"
    );
    assert_eq!(
        (
            &uam["close"]["status_code"],
            &uam["close"]["writeback"],
            &uam["close"]["uam_status"],
            &uam["close"]["uam_verdict"],
            &uam["close"]["notes"]
        ),
        (
            &serde_json::json!(202),
            &serde_json::json!("applied"),
            &serde_json::json!("RESOLVED"),
            &serde_json::json!("FALSE_POSITIVE_BENIGN"),
            &serde_json::json!(1)
        ),
        "the close reached UAM: {uam}"
    );
    assert_eq!(uam["published_again"], 0, "our own close is not sent back: {uam}");
    assert!(uam["echoes_again"].as_u64().unwrap() > 0, "{uam}");
    assert!(
        err.is_empty() || !err.contains("so far"),
        "no live counts with --json: {err}"
    );
}

#[test]
fn the_demo_keeps_its_state_when_asked_and_status_reads_its_tenants() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("demo.redb");
    let path = path.to_str().unwrap();
    let demo = [
        "demo",
        "--threats",
        "300",
        "--agents",
        "40",
        "--json",
        "--keep-store",
        path,
    ];
    let (ok, out, err) = bridge(&demo);
    assert!(ok, "{err}");
    let summary: serde_json::Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    assert_eq!(summary["store"], path);

    let (ok, out, err) = bridge(&["status", "--store", &format!("embedded:{path}"), "--json"]);
    assert!(ok, "{err}");
    let lines: Vec<serde_json::Value> = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    let demo_tenant = lines
        .iter()
        .find(|l| l["tenant"] == "demo")
        .unwrap_or_else(|| panic!("the demo's first tenant: {out}"));
    // The demo's token expires in 5 days (the token watch's step saw it).
    assert_eq!(demo_tenant["token_days_left"], 4, "{out}");
    // Under 7 days: degraded, saying why, though the watch saw it after the tenant's last poll.
    assert_eq!(demo_tenant["status"], "degraded", "{out}");
    assert_eq!(demo_tenant["cause"], "the S1 token expires in 4 days", "{out}");
    assert!(lines.len() >= 4, "every demo tenant: {out}");
    assert!(
        lines
            .iter()
            .all(|l| l["status"] != "unknown" && l["last_success"].is_string()),
        "every demo tenant polled: {out}"
    );
    let (ok, out, _) = bridge(&["status", "--store", &format!("embedded:{path}")]);
    assert!(ok && out.starts_with("tenant ") && out.contains("\ndemo "), "{out}");

    // A second demo into the same file is refused: its steps need an empty store.
    let (ok, _, err) = bridge(&demo);
    assert!(!ok && err.contains(path) && err.contains("exists"), "{err}");
}

/// A loopback listener that counts the connections made to it and answers none of them.
fn counting_listener() -> (String, Arc<std::sync::atomic::AtomicUsize>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let count = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let seen = count.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            seen.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            drop(conn);
        }
    });
    (format!("127.0.0.1:{}", addr.port()), count)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_tenant_written_straight_to_the_store_never_sends_its_token_off_the_allow_list() {
    let (addr, connections) = counting_listener();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.redb");
    {
        let store = Store::new(Arc::new(EmbeddedTable::open(&path).unwrap()));
        // Not through `tenant add` (which checks the console URL): straight into the table.
        let t: s1_shared::store::TenantConfig = serde_json::from_value(serde_json::json!({
            "id": "rogue", "enabled": true, "console_url": format!("http://{addr}"),
            "token": {"kind": "env", "var": "ROGUE_S1"},
            "platform": {"kind": "generic", "settings": {"url": "https://hooks.example.com/s1", "secret": {"kind": "env", "var": "ROGUE_HOOK"}}}
        }))
        .unwrap();
        store.put_tenant(&t).await.unwrap();
    }
    let spec = format!("embedded:{}", path.display());
    for job in ["poll", "assets", "tokens"] {
        let out = Command::new(env!("CARGO_BIN_EXE_s1-bridge"))
            .args(["run", job, "--tenant", "rogue", "--store", &spec])
            .env_remove("S1_BRIDGE_STORE")
            .env_remove("S1_BRIDGE_ALLOWED_HOSTS")
            .env("ROGUE_S1", "token-that-must-stay-home")
            .env("ROGUE_HOOK", "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(!out.status.success(), "{job}: {stdout}");
        assert!(
            stdout.starts_with("FAIL rogue") && stdout.contains("not in the allowed hosts"),
            "{job}: {stdout}"
        );
    }
    assert_eq!(
        connections.load(std::sync::atomic::Ordering::SeqCst),
        0,
        "no request reached the console off the allow-list"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn tenant_test_names_an_unreachable_console_once_and_skips_what_needs_it() {
    use s1_bridge_sim::WebhookReceiver;
    const HOOK: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    let receiver = WebhookReceiver::start(HOOK).await.unwrap();
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    // Nothing listens there any more: connections are refused.
    let dir = tempfile::tempdir().unwrap();
    let spec = format!("embedded:{}", dir.path().join("state.redb").display());
    let needs_console = [
        "token valid",
        "token scope",
        "status-writeback can write",
        "token rotation",
        "token expiry",
        "poll-threats can read",
        "sync-assets can read",
    ];
    for (console, cause) in [
        (
            "https://acme.invalid".to_owned(),
            "DNS lookup failed for acme.invalid".to_owned(),
        ),
        (format!("http://{closed}"), format!("connection refused by {closed}")),
    ] {
        let file = dir.path().join("t.json");
        std::fs::write(
            &file,
            serde_json::to_vec(&serde_json::json!({
                "id": "far", "enabled": true, "console_url": console,
                "token": {"kind": "env", "var": "FAR_S1"},
                "platform": {"kind": "generic", "settings": {"url": receiver.url(), "secret": {"kind": "env", "var": "FAR_HOOK"}}}
            }))
            .unwrap(),
        )
        .unwrap();
        let run = |args: &[&str]| {
            let out = Command::new(env!("CARGO_BIN_EXE_s1-bridge"))
                .args(args)
                .args(["--allow-host", "acme.invalid,127.0.0.1", "--store", &spec])
                .env_remove("S1_BRIDGE_STORE")
                .env_remove("S1_BRIDGE_ALLOWED_HOSTS")
                .env("FAR_S1", "some-token")
                .env("FAR_HOOK", HOOK)
                .output()
                .unwrap();
            (
                out.status.success(),
                String::from_utf8_lossy(&out.stdout).into_owned(),
                String::from_utf8_lossy(&out.stderr).into_owned(),
            )
        };
        let (ok, _, err) = run(&["tenant", "add", "--file", &file.display().to_string()]);
        assert!(ok, "{err}");
        let (ok, out, err) = run(&["tenant", "test", "--id", "far"]);
        assert!(!ok, "{out}");
        assert!(
            err.contains("1 check(s) failed"),
            "only the reachability check fails: {err}"
        );
        let reach = out
            .lines()
            .find(|l| l.contains("console reachable"))
            .unwrap_or_default();
        assert!(
            reach.starts_with("FAIL") && reach.contains(&cause) && reach.contains("(1 attempt)"),
            "the cause, named, after one attempt: {out}"
        );
        assert_eq!(out.matches(&cause).count(), 1, "the cause is said once: {out}");
        for c in needs_console {
            let line = out.lines().find(|l| l.contains(c)).unwrap_or_default();
            assert!(
                line.starts_with("SKIP") && line.contains("console unreachable"),
                "{c}: {out}"
            );
        }
        assert!(
            out.lines()
                .any(|l| l.starts_with("ok") && l.contains("platform reachable")),
            "the platform is still tested: {out}"
        );
        let (_, out, _) = run(&["tenant", "test", "--id", "far", "--json"]);
        let checks: serde_json::Value = serde_json::from_str(&out).unwrap();
        let skipped = checks
            .as_array()
            .unwrap()
            .iter()
            .filter(|c| c["status"] == "skip" && c["ok"] == false)
            .count();
        assert_eq!(skipped, needs_console.len(), "{checks}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn tenant_test_never_retries_a_failing_console() {
    use s1_bridge_sim::{DEFAULT_TOKEN, FaultKind, FaultRule, Sim, SimConfig, WebhookReceiver};
    const HOOK: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    let sim = Sim::start(SimConfig {
        threats: 5,
        agents: 2,
        cloud_alerts: 0,
        ..SimConfig::default()
    })
    .await
    .unwrap();
    let receiver = WebhookReceiver::start(HOOK).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.redb");
    {
        let store = Store::new(Arc::new(EmbeddedTable::open(&path).unwrap()));
        let t: s1_shared::store::TenantConfig = serde_json::from_value(serde_json::json!({
            "id": "busy", "enabled": true, "console_url": sim.base_url(),
            "token": {"kind": "env", "var": "BUSY_S1"},
            "platform": {"kind": "generic", "settings": {"url": receiver.url(), "secret": {"kind": "env", "var": "BUSY_HOOK"}}}
        }))
        .unwrap();
        store.put_tenant(&t).await.unwrap();
    }
    // S1 answers 503 to everything (it would be retried 5 times per call in a run).
    sim.control()
        .add_fault(&FaultRule::new(
            "*",
            FaultKind::Status {
                status: 503,
                retry_after: None,
                code: None,
            },
            1_000,
        ))
        .await
        .unwrap();
    sim.control().clear_requests().await.unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_s1-bridge"))
        .args(["tenant", "test", "--id", "busy", "--allow-host", "127.0.0.1", "--store"])
        .arg(format!("embedded:{}", path.display()))
        .env_remove("S1_BRIDGE_STORE")
        .env("BUSY_S1", DEFAULT_TOKEN)
        .env("BUSY_HOOK", HOOK)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "{stdout}");
    let requests = sim.control().requests().await.unwrap();
    let mut per_path: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
    for r in &requests {
        *per_path.entry(format!("{} {}", r.method, r.path)).or_default() += 1;
    }
    assert!(!per_path.is_empty(), "the console was called: {stdout}");
    assert!(
        per_path.values().all(|n| *n == 1),
        "each call made once, never retried: {per_path:?}\n{stdout}"
    );
}

/// A Halo tenant from a file, then its mapping table pre-filled from the command line: the row
/// is kept as the operator's (not synced yet) and listed; a non-Halo tenant or a half-given
/// mapping is refused, naming what is wrong.
#[test]
fn a_halo_tenant_is_added_and_its_mapping_table_prefilled() {
    let dir = tempfile::tempdir().unwrap();
    let spec = format!("embedded:{}", dir.path().join("state.redb").display());
    let file = dir.path().join("halo.json");
    std::fs::write(
        &file,
        serde_json::to_vec(&serde_json::json!({
            "id": "msp", "enabled": true, "console_url": "https://msp.sentinelone.net",
            "token": {"kind": "secrets_manager", "secret_id": "s1-bridge/msp/s1"},
            "platform": {"kind": "halo", "settings": {
                "url": "https://msp.halopsa.com",
                "client_id": {"kind": "secrets_manager", "secret_id": "s1-bridge/msp/halo-id"},
                "client_secret": {"kind": "secrets_manager", "secret_id": "s1-bridge/msp/halo-secret"},
                "ticket_type": "Security Incident",
                "inbound": {"basic": {"username": {"kind": "env", "var": "U"}, "password": {"kind": "env", "var": "P"}}}
            }}
        }))
        .unwrap(),
    )
    .unwrap();
    let file = file.display().to_string();
    let (ok, out, err) = bridge(&["tenant", "add", "--file", &file, "--store", &spec]);
    assert!(ok, "{err}");
    assert!(out.contains("platform halo"), "{out}");
    let (ok, out, err) = bridge(&[
        "halo",
        "map",
        "--tenant",
        "msp",
        "--account",
        "1100000000000000001",
        "--client",
        "12",
        "--store",
        &spec,
    ]);
    assert!(ok, "{err}");
    assert!(
        out.contains("S1 account 1100000000000000001 -> Halo client 12"),
        "{out}"
    );
    let (ok, out, err) = bridge(&[
        "halo",
        "map",
        "--tenant",
        "msp",
        "--site",
        "1200000000000000001",
        "--store",
        &spec,
    ]);
    assert!(!ok && err.contains("--halo-site"), "{out}{err}");
    let (ok, out, _) = bridge(&["halo", "mappings", "--tenant", "msp", "--json", "--store", &spec]);
    assert!(ok);
    let rows: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        (
            rows[0]["id"].as_str(),
            rows[0]["platform_ref"].as_str(),
            rows[0]["digest"].as_str()
        ),
        (Some("1100000000000000001"), Some("12"), Some(""))
    );
    let (ok, out, _) = bridge(&["halo", "mappings", "--tenant", "msp", "--store", &spec]);
    assert!(ok && out.contains("mapped, not synced yet"), "{out}");
    // A tenant on another platform has no Halo mapping.
    let generic = dir.path().join("generic.json");
    std::fs::write(
        &generic,
        serde_json::to_vec(&serde_json::json!({
            "id": "other", "enabled": true, "console_url": "https://msp.sentinelone.net",
            "token": {"kind": "env", "var": "T"},
            "platform": {"kind": "generic", "settings": {"url": "https://hooks.example.com", "secret": {"kind": "env", "var": "H"}}}
        }))
        .unwrap(),
    )
    .unwrap();
    assert!(
        bridge(&[
            "tenant",
            "add",
            "--file",
            &generic.display().to_string(),
            "--store",
            &spec
        ])
        .0
    );
    let (ok, _, err) = bridge(&[
        "halo",
        "map",
        "--tenant",
        "other",
        "--account",
        "1",
        "--client",
        "12",
        "--store",
        &spec,
    ]);
    assert!(!ok && err.contains("not Halo"), "{err}");
}

/// Item 4 of issue 25: a tenant whose token is revoked turns `error` with the cause its run
/// names, `s1-bridge status` and `tenant list` show it, an opted-in platform hears of it once,
/// and the fixed token brings it back to `connected` with one recovery notice.
#[tokio::test(flavor = "multi_thread")]
async fn a_revoked_token_turns_the_tenant_to_error_and_a_fixed_one_back_with_one_notice_each_way() {
    use s1_bridge_sim::{Sim, SimConfig, TokenSpec, WebhookReceiver};
    const HOOK: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const FIRST: &str = "status-test-token-0001";
    let sim = Sim::start(SimConfig {
        threats: 5,
        agents: 5,
        cloud_alerts: 0,
        ..SimConfig::default()
    })
    .await
    .unwrap();
    sim.control().add_token(&TokenSpec::tenant(FIRST, 60)).await.unwrap();
    let receiver = WebhookReceiver::start(HOOK).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let spec = format!("embedded:{}", dir.path().join("state.redb").display());
    let file = dir.path().join("tenant.json");
    std::fs::write(
        &file,
        serde_json::to_vec(&serde_json::json!({
            "id": "acme", "enabled": true, "console_url": sim.base_url(), "status_notices": true,
            "token": {"kind": "env", "var": "STATUS_TEST_S1_TOKEN"},
            "platform": {"kind": "generic", "settings": {"url": receiver.url(), "secret": {"kind": "env", "var": "STATUS_TEST_HOOK"}}}
        }))
        .unwrap(),
    )
    .unwrap();
    let run = |args: &[&str], token: &str| {
        let out = Command::new(env!("CARGO_BIN_EXE_s1-bridge"))
            .args(args)
            .env_remove("S1_BRIDGE_STORE")
            .env_remove("S1_BRIDGE_ALLOWED_HOSTS")
            .env("STATUS_TEST_S1_TOKEN", token)
            .env("STATUS_TEST_HOOK", HOOK)
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let file = file.display().to_string();
    let add = [
        "tenant",
        "add",
        "--file",
        &file,
        "--allow-host",
        "127.0.0.1",
        "--store",
        &spec,
    ];
    assert!(run(&add, FIRST).0);
    let poll = ["run", "poll", "--allow-host", "127.0.0.1", "--store", &spec];
    let status = |token: &str| {
        let (ok, out, err) = run(&["status", "--store", &spec, "--json"], token);
        assert!(ok, "{err}");
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        v[0].clone()
    };
    let notices = |kind: &str| receiver.events().iter().filter(|e| e["type"] == kind).count();

    let (ok, out, err) = run(&poll, FIRST);
    assert!(ok, "{out}{err}");
    let s = status(FIRST);
    assert_eq!(
        (s["tenant"].as_str(), s["status"].as_str()),
        (Some("acme"), Some("connected")),
        "{s}"
    );
    assert!(s["last_success"].is_string() && s["lag_seconds"] == 0, "{s}");

    // The token is revoked, as S1 does when a new one is generated with it.
    let fresh: serde_json::Value = reqwest::Client::new()
        .post(format!("{}/web/api/v2.1/users/generate-api-token", sim.base_url()))
        .header("Authorization", format!("ApiToken {FIRST}"))
        .json(&serde_json::json!({"data": {}}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let second = fresh["data"]["token"].as_str().unwrap().to_owned();

    let (ok, _, _) = run(&poll, FIRST);
    assert!(!ok, "a failed tenant fails the run");
    let s = status(FIRST);
    assert_eq!(s["status"], "error", "{s}");
    let cause = s["cause"].as_str().unwrap();
    assert!(cause.contains("HTTP 401") && cause.contains("revoked"), "{cause}");
    assert!(
        !cause.contains(FIRST) && !s.to_string().contains(FIRST),
        "no token in the status: {s}"
    );
    let (_, table, _) = run(&["status", "--store", &spec], FIRST);
    let line = table.lines().find(|l| l.starts_with("acme")).unwrap();
    assert!(line.contains("error") && line.contains("HTTP 401"), "{table}");
    let (_, list, _) = run(&["tenant", "list", "--store", &spec], FIRST);
    assert!(
        list.lines().any(|l| l.starts_with("acme") && l.contains("error")),
        "{list}"
    );
    assert_eq!(notices("connector.error"), 1);

    // Still revoked: still in error, and the platform is not told again.
    assert!(!run(&poll, FIRST).0);
    assert_eq!(status(FIRST)["failures_in_a_row"], 2);
    assert_eq!(notices("connector.error"), 1);
    assert_eq!(notices("connector.recovered"), 0);

    // Three in a row: the dispatcher backs off. The configuration saved again (it may be the
    // fix) forgets the streak; so does a `tenant test` that passes, not one that fails.
    assert!(!run(&poll, FIRST).0);
    assert_eq!(status(FIRST)["failures_in_a_row"], 3);
    let (ok, out, err) = run(&add, FIRST);
    assert!(ok && out.contains("failed runs are forgotten"), "{out}{err}");
    assert_eq!(status(FIRST)["failures_in_a_row"], 0);
    assert_eq!(status(FIRST)["status"], "error", "until a run says otherwise");
    for _ in 0..3 {
        assert!(!run(&poll, FIRST).0);
    }
    let test = [
        "tenant",
        "test",
        "--id",
        "acme",
        "--allow-host",
        "127.0.0.1",
        "--store",
        &spec,
    ];
    assert!(!run(&test, FIRST).0, "the revoked token fails the test");
    assert_eq!(status(FIRST)["failures_in_a_row"], 3);
    let (ok, out, err) = run(&test, &second);
    assert!(ok && out.contains("failed runs are forgotten"), "{out}{err}");
    assert_eq!(status(&second)["failures_in_a_row"], 0);
    assert_eq!(notices("connector.error"), 1);

    // The operator puts the new token in place: the next run recovers, told once.
    let (ok, out, err) = run(&poll, &second);
    assert!(ok, "{out}{err}");
    let s = status(&second);
    assert_eq!(
        (s["status"].as_str(), s["failures_in_a_row"].as_u64()),
        (Some("connected"), Some(0)),
        "{s}"
    );
    assert!(s["cause"].is_null(), "{s}");
    assert!(run(&poll, &second).0);
    assert_eq!((notices("connector.error"), notices("connector.recovered")), (1, 1));
    let told = receiver
        .events()
        .into_iter()
        .find(|e| e["type"] == "connector.error")
        .unwrap();
    assert_eq!(told["data"]["tenant"], "acme");
    assert!(told["data"]["cause"].as_str().unwrap().contains("HTTP 401"), "{told}");
}

/// scripts/bench.sh's unified-alerts backlog: the fetch-only pass pages UAM with the poller's
/// page size, and the measured poll reads only the unified source (no threats), every alert once.
#[tokio::test(flavor = "multi_thread")]
async fn the_benchmarks_read_the_unified_source_alone() {
    use s1_bridge_sim::{DEFAULT_TOKEN, Sim, SimConfig, WebhookReceiver};
    const HOOK: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    let sim = Sim::start(SimConfig {
        threats: 90,
        agents: 20,
        cloud_alerts: 0,
        unified_alerts: 250,
        ..SimConfig::default()
    })
    .await
    .unwrap();
    let receiver = WebhookReceiver::start(HOOK).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let console = sim.base_url();
    let run = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_s1-bridge"))
            .args(args)
            .env("BENCH_S1_TOKEN", DEFAULT_TOKEN)
            .env("BENCH_WEBHOOK_SECRET", HOOK)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{args:?}: {stderr}");
        serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()
    };
    let fetch = run(&["bench-fetch", "--console", &console, "--source", "unified"]);
    assert_eq!(fetch["fetched"], 250, "{fetch}");
    assert_eq!(fetch["requests"], 3, "100 a page, as the poller asks: {fetch}");
    assert!(fetch["per_s"].as_f64().unwrap() > 0.0, "{fetch}");
    let path = dir.path().join("bench.redb");
    let poll = run(&[
        "bench-poll",
        "--console",
        &console,
        "--webhook",
        &receiver.url(),
        "--store",
        "embedded",
        "--path",
        path.to_str().unwrap(),
        "--source",
        "unified",
    ]);
    assert_eq!(poll["report"]["outcome"], "completed", "{poll}");
    assert_eq!(
        poll["report"]["fetched"], 250,
        "unified alerts only, no threats: {poll}"
    );
    assert!(!receiver.events().is_empty());
    assert!(
        sim.control()
            .requests()
            .await
            .unwrap()
            .iter()
            .all(|r| !r.path.starts_with("/threats")),
        "the unified-only tenant never lists threats"
    );
}
