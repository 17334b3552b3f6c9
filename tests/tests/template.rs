//! The SAM template and the code agree: every environment variable the template sets is one the
//! config reads and vice versa, the table's keys and index are the store's, and every function
//! package has its resource.

use std::collections::BTreeSet;

fn template() -> String {
    std::fs::read_to_string(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../infra/template.yaml")).unwrap()
}

/// Keys of every `Variables:` mapping (CloudFormation's YAML tags make a generic parser balk,
/// and indentation is all this needs).
fn env_vars(t: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let lines: Vec<&str> = t.lines().collect();
    for (i, l) in lines.iter().enumerate() {
        if l.trim() != "Variables:" {
            continue;
        }
        let indent = l.len() - l.trim_start().len();
        for next in &lines[i + 1..] {
            let ni = next.len() - next.trim_start().len();
            if next.trim().is_empty() || ni <= indent {
                break;
            }
            if let Some((k, _)) = next.trim().split_once(':') {
                out.insert(k.to_owned());
            }
        }
    }
    out
}

#[test]
fn environment_variables_match_the_config_constants() {
    let t = template();
    let set = env_vars(&t);
    let read: BTreeSet<String> = s1_shared::config::ALL.iter().map(|s| s.to_string()).collect();
    assert_eq!(set, read, "template Variables vs config::ALL");
}

#[test]
fn the_table_is_the_stores_table() {
    use s1_shared::store::schema;
    let t = template();
    for (name, needle) in [
        ("partition key", format!("AttributeName: {}, KeyType: HASH", schema::PK)),
        ("sort key", format!("AttributeName: {}, KeyType: RANGE", schema::SK)),
        ("index", format!("IndexName: {}", schema::GSI1)),
        (
            "index partition key",
            format!("AttributeName: {}, KeyType: HASH", schema::GSI1_PK),
        ),
        (
            "index sort key",
            format!("AttributeName: {}, KeyType: RANGE", schema::GSI1_SK),
        ),
        ("TTL attribute", format!("AttributeName: {}\n", schema::TTL)),
    ] {
        assert!(t.contains(&needle), "{name}: {needle:?} not in the template");
    }
    for needle in [
        "BillingMode: PAY_PER_REQUEST",
        "SSEEnabled: true",
        "PointInTimeRecoveryEnabled: true",
        "DeletionPolicy: Retain",
    ] {
        assert!(t.contains(needle), "{needle}");
    }
}

#[test]
fn every_function_package_is_deployed_least_privilege() {
    let t = template();
    for pkg in [
        "poll-threats",
        "status-writeback",
        "sync-assets",
        "token-expiry",
        "dispatch",
    ] {
        assert!(
            t.contains(&format!("CodeUri: ../functions/{pkg}\n")),
            "{pkg} has no function resource"
        );
        assert!(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../functions")
                .join(pkg)
                .join("Cargo.toml")
                .exists()
        );
    }
    assert_eq!(t.matches("BuildMethod: rust-cargolambda").count(), 5);
    let statements = t.matches("- Sid: ").count();
    let effects = t.matches("Effect: Allow").count();
    assert_eq!(statements, effects, "every policy statement has a Sid");
    assert!(
        !t.contains("Resource: \"*\"") && !t.contains("Resource: '*'") && !t.contains("CrudPolicy"),
        "no wildcard resources, no Crud policy templates"
    );
    assert!(
        !t.to_lowercase().contains("whsec_") && !t.contains("ApiToken "),
        "no secret values in the template"
    );
}

#[test]
fn the_webhook_function_has_reserved_concurrency_from_a_parameter() {
    let t = template();
    assert!(
        t.contains("\n  WritebackReservedConcurrency:\n    Type: Number\n"),
        "the parameter"
    );
    // Within the status-writeback function's own properties.
    let function = t
        .split("\n  StatusWritebackFunction:\n")
        .nth(1)
        .and_then(|rest| rest.split("\n  StatusWritebackLogGroup:").next())
        .expect("the status-writeback function resource");
    assert!(
        function.contains("ReservedConcurrentExecutions: !If [HasWritebackConcurrency, !Ref WritebackReservedConcurrency, !Ref AWS::NoValue]"),
        "{function}"
    );
}

/// Every metric each function writes (from its EMF lines), by the `Function` dimension.
fn emitted() -> std::collections::BTreeMap<String, BTreeSet<String>> {
    use s1_shared::usecase::poll_threats::{PollReport, TenantReport};
    use s1_shared::usecase::sync_assets::AssetReport;
    use s1_shared::usecase::token_expiry::TokenReport;
    let now = time::OffsetDateTime::now_utc();
    let poll = PollReport {
        tenants: vec![TenantReport {
            tenant: "t".into(),
            lag_seconds: Some(1),
            ..TenantReport::default()
        }],
    };
    // The name the Lambda passes is the one the alarms use.
    let handler = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../functions/poll-threats/src/handler.rs"),
    )
    .unwrap();
    assert!(handler.contains(r#"emf_lines("poll-threats""#));
    let mut lines = poll.emf_lines("poll-threats", now);
    lines.push(
        AssetReport {
            tenant: "t".into(),
            ..AssetReport::default()
        }
        .emf(now),
    );
    lines.push(
        TokenReport {
            tenant: "t".into(),
            days_left: Some(3),
            ..TokenReport::default()
        }
        .emf(now),
    );
    lines.push(s1_shared::usecase::fanout::DispatchReport::default().emf(s1_shared::usecase::fanout::Job::Poll, now));
    let mut out = std::collections::BTreeMap::<String, BTreeSet<String>>::new();
    for line in lines {
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        let doc = &v["_aws"]["CloudWatchMetrics"][0];
        assert_eq!(doc["Namespace"], "s1-bridge");
        assert_eq!(
            doc["Dimensions"],
            serde_json::json!([["Function"]]),
            "the Function dimension alone (alarms watch it; no metric per tenant): {line}"
        );
        let names = doc["Metrics"].as_array().unwrap().iter();
        out.entry(v["Function"].as_str().unwrap().to_owned())
            .or_default()
            .extend(names.map(|m| m["Name"].as_str().unwrap().to_owned()));
    }
    out
}

/// (alarm, metric, function) of every template alarm on the s1-bridge namespace.
fn our_alarms(t: &str) -> Vec<(String, String, String)> {
    let mut out = Vec::new();
    let mut name = String::new();
    let mut fields = std::collections::HashMap::<&str, String>::new();
    let mut flush = |name: &str, fields: &mut std::collections::HashMap<&str, String>| {
        if fields.get("Type").map(String::as_str) == Some("AWS::CloudWatch::Alarm")
            && fields.get("Namespace").map(String::as_str) == Some("s1-bridge")
        {
            let function = fields
                .get("Dimensions")
                .and_then(|d| d.split("Value:").nth(1))
                .map(|v| v.trim().trim_end_matches(['}', ']']).trim().to_owned())
                .unwrap_or_default();
            out.push((
                name.to_owned(),
                fields.get("MetricName").cloned().unwrap_or_default(),
                function,
            ));
        }
        fields.clear();
    };
    for line in t.lines() {
        // A resource starts at two spaces of indentation.
        if line.starts_with("  ") && !line.starts_with("   ") && line.trim_end().ends_with(':') {
            flush(&name, &mut fields);
            name = line.trim().trim_end_matches(':').to_owned();
            continue;
        }
        if let Some((k, v)) = line.trim().split_once(": ") {
            if let Some(k) = ["Type", "Namespace", "MetricName", "Dimensions"]
                .into_iter()
                .find(|f| *f == k)
            {
                fields.insert(k, v.trim().to_owned());
            }
        }
    }
    flush(&name, &mut fields);
    out
}

#[test]
fn every_alarm_watches_a_metric_the_code_emits() {
    let emitted = emitted();
    let alarms = our_alarms(&template());
    assert!(alarms.len() >= 3, "{alarms:?}");
    for (alarm, metric, function) in &alarms {
        assert!(
            emitted.get(function).is_some_and(|m| m.contains(metric)),
            "alarm {alarm} watches {metric} of {function:?}, which the code never emits (it emits {emitted:?})"
        );
    }
}

#[test]
fn every_metric_the_operating_guide_lists_is_emitted() {
    let readme =
        std::fs::read_to_string(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/operating.md")).unwrap();
    // The "Metrics" bullet, up to the next bullet.
    let start = readme
        .find("- **Metrics**")
        .expect("docs/operating.md lists the metrics");
    let rest = &readme[start + 2..];
    let bullet = &rest[..rest.find("\n- **").unwrap_or(rest.len())];
    let list = &bullet[bullet.find("):").expect("the metric list follows the dimensions") + 2..];
    let emitted = emitted();
    let mut names: Vec<String> = Vec::new();
    let mut checked = 0;
    let mut inside = false;
    for part in list.split('`') {
        if inside {
            names.push(part.to_owned());
        } else if let Some(function) = part.split('(').nth(1).and_then(|f| f.split(')').next()) {
            for name in names.drain(..) {
                assert!(
                    emitted.get(function).is_some_and(|m| m.contains(&name)),
                    "docs/operating.md lists {name} for {function}, which the code does not emit ({emitted:?})"
                );
                checked += 1;
            }
        }
        inside = !inside;
    }
    // Names after the last "(function)" are prose about the list (say, what one of them counts).
    assert!(
        checked >= 20,
        "only {checked} metrics found in docs/operating.md's list"
    );
}

/// The text of one top-level resource.
fn resource<'a>(t: &'a str, name: &str) -> &'a str {
    let start = t
        .find(&format!("\n  {name}:\n"))
        .unwrap_or_else(|| panic!("no resource {name}"));
    let rest = &t[start + name.len() + 4..];
    let end = rest
        .find("\n  # ---")
        .into_iter()
        .chain(
            rest.match_indices("\n  ")
                .filter(|(i, _)| !rest[i + 3..].starts_with(' ') && !rest[i + 3..].starts_with('#'))
                .map(|(i, _)| i),
        )
        .min()
        .unwrap_or(rest.len());
    &rest[..end]
}

#[test]
fn polls_fan_out_through_a_queue_with_least_privilege() {
    let t = template();
    let mapping = resource(&t, "PollThreatsQueueMapping");
    for needle in [
        "Type: AWS::Lambda::EventSourceMapping",
        "EventSourceArn: !GetAtt PollQueue.Arn",
        "FunctionName: !Ref PollThreatsFunction",
        "FunctionResponseTypes: [ReportBatchItemFailures]",
        "MaximumConcurrency: !Ref PollMaxConcurrency",
    ] {
        assert!(mapping.contains(needle), "{needle}: {mapping}");
    }
    assert!(t.contains("\n  PollMaxConcurrency:\n    Type: Number\n"));
    // Ten tenants an invocation by default (the cost target is met only so:
    // docs/fleet-cost.md), at most SQS's 10 without a batching window, and a message never
    // waits for a batch to fill.
    assert!(mapping.contains("BatchSize: !Ref PollBatchSize\n"), "{mapping}");
    assert!(mapping.contains("MaximumBatchingWindowInSeconds: 0\n"), "{mapping}");
    assert!(
        t.contains("\n  PollBatchSize:\n    Type: Number\n    Default: 10\n    MinValue: 1\n    MaxValue: 10\n"),
        "the PollBatchSize parameter"
    );
    assert!(resource(&t, "PollQueue").contains("deadLetterTargetArn: !GetAtt PollDeadLetterQueue.Arn"));
    // Only the dispatcher sends to the poll queue; only poll-threats receives and deletes.
    let dispatcher = resource(&t, "DispatchFunction");
    let poller = resource(&t, "PollThreatsFunction");
    assert!(dispatcher.contains(
        "Action: [sqs:SendMessage]\n              Resource: [!GetAtt PollQueue.Arn, !GetAtt AssetsQueue.Arn, !GetAtt TokensQueue.Arn]"
    ));
    assert!(!dispatcher.contains("sqs:ReceiveMessage") && !dispatcher.contains("dynamodb:PutItem"));
    assert!(poller.contains("sqs:ReceiveMessage, sqs:DeleteMessage"));
    assert!(!poller.contains("Type: Schedule"), "the dispatcher has the schedule");
    assert!(
        dispatcher.contains("Schedule: rate(1 minute)\n            Input: '{\"job\": \"poll\", \"every_minutes\": 1}'")
    );
    assert!(
        !poller.contains("ReservedConcurrentExecutions"),
        "no longer one run at a time"
    );
    let senders = t.matches("!GetAtt PollQueue.Arn").count();
    assert_eq!(
        senders, 3,
        "the dispatcher's send, the poller's receive and its event source mapping, nothing else"
    );
    for alarm in ["PollQueueAgeAlarm", "PollDeadLetterQueueAlarm", "DispatchErrorsAlarm"] {
        assert!(resource(&t, alarm).contains("Type: AWS::CloudWatch::Alarm"), "{alarm}");
    }
    assert!(resource(&t, "PollQueueAgeAlarm").contains("Threshold: 120"));
}

/// Each consumer's queue: its event source mapping (partial batch failures, `MaximumConcurrency`
/// from a parameter), a dead-letter queue with its alarm, a visibility timeout over the
/// consumer's, and least privilege (only the dispatcher sends; `sync-assets` its own
/// continuations to its own queue; each consumer receives and deletes only its own).
#[test]
fn every_job_has_its_queue_mapping_dead_letter_queue_and_least_privilege() {
    let t = template();
    let jobs = [
        (
            "PollThreatsFunction",
            "PollThreatsQueueMapping",
            "PollQueue",
            "PollDeadLetterQueue",
            "PollMaxConcurrency",
            300,
        ),
        (
            "SyncAssetsFunction",
            "SyncAssetsQueueMapping",
            "AssetsQueue",
            "AssetsDeadLetterQueue",
            "AssetsMaxConcurrency",
            900,
        ),
        (
            "TokenExpiryFunction",
            "TokenExpiryQueueMapping",
            "TokensQueue",
            "TokensDeadLetterQueue",
            "TokensMaxConcurrency",
            120,
        ),
    ];
    let dispatcher = resource(&t, "DispatchFunction");
    for (function, mapping, queue, dlq, max, timeout) in jobs {
        let m = resource(&t, mapping);
        for needle in [
            "Type: AWS::Lambda::EventSourceMapping".to_owned(),
            format!("EventSourceArn: !GetAtt {queue}.Arn"),
            format!("FunctionName: !Ref {function}"),
            "FunctionResponseTypes: [ReportBatchItemFailures]".to_owned(),
            format!("MaximumConcurrency: !Ref {max}"),
        ] {
            assert!(m.contains(&needle), "{mapping}: {needle}");
        }
        assert!(t.contains(&format!("\n  {max}:\n    Type: Number\n")), "{max}");
        let q = resource(&t, queue);
        assert!(
            q.contains(&format!("deadLetterTargetArn: !GetAtt {dlq}.Arn")),
            "{queue}"
        );
        let visibility: u32 = q
            .split("VisibilityTimeout: ")
            .nth(1)
            .and_then(|v| v.lines().next())
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("{queue} has a visibility timeout"));
        let f = resource(&t, function);
        assert!(f.contains(&format!("Timeout: {timeout}\n")), "{function}'s timeout");
        assert!(
            visibility >= 6 * timeout,
            "{queue}: {visibility} s under six times {function}'s {timeout} s"
        );
        let alarms: Vec<&str> = t
            // Resources are separated by a blank line.
            .split("\n\n  ")
            .filter(|r| {
                r.contains("Type: AWS::CloudWatch::Alarm") && r.contains(&format!("Value: !GetAtt {dlq}.QueueName"))
            })
            .collect();
        assert_eq!(alarms.len(), 1, "one alarm on {dlq}");
        assert!(alarms[0].contains("Threshold: 1\n"), "any message in {dlq}");
        // Receive and delete: this consumer alone, its own queue alone.
        assert!(f.contains(&format!(
            "Action: [sqs:ReceiveMessage, sqs:DeleteMessage, sqs:GetQueueAttributes, sqs:ChangeMessageVisibility]\n              Resource: !GetAtt {queue}.Arn"
        )), "{function} consumes {queue}");
        assert_eq!(
            t.matches("sqs:ReceiveMessage").count(),
            3,
            "each consumer its own queue, nobody else"
        );
        assert!(
            !f.contains("Type: Schedule"),
            "{function}: the dispatcher has the schedules"
        );
        assert!(
            dispatcher.contains(&format!("!GetAtt {queue}.Arn")),
            "the dispatcher sends to {queue}"
        );
    }
    assert!(!dispatcher.contains("sqs:ReceiveMessage"));
    // Sends to the job queues: the dispatcher, and sync-assets to its own queue (continuations).
    let senders: Vec<&str> = t
        .split("\n            - Sid: ")
        .map(|s| s.split("\n\n").next().unwrap_or_default())
        .filter(|s| s.contains("sqs:SendMessage") && !s.contains("FailedInvocationsQueue"))
        .map(|s| s.lines().next().unwrap_or_default())
        .collect();
    assert_eq!(senders, ["SendTenantMessages", "ContinueAssetSync"]);
    assert!(resource(&t, "SyncAssetsFunction").contains(
        "Sid: ContinueAssetSync\n              Effect: Allow\n              Action: [sqs:SendMessage]\n              Resource: !GetAtt AssetsQueue.Arn"
    ));
    // One schedule per job, each saying how often it runs.
    for (job, rate, every) in [
        ("poll", "rate(1 minute)", 1),
        ("assets", "rate(15 minutes)", 15),
        ("tokens", "rate(15 minutes)", 15),
    ] {
        assert!(
            dispatcher.contains(&format!(
                "Schedule: {rate}\n            Input: '{{\"job\": \"{job}\", \"every_minutes\": {every}}}'"
            )),
            "{job}'s schedule"
        );
    }
    assert!(!t.contains("shard"), "the shard input is gone");
}

/// The dashboard shows what the operator watches, per-tenant tables from the log (no metric per
/// tenant), and the fleet alarms are there.
#[test]
fn the_dashboard_and_the_fleet_alarms() {
    let t = template();
    let d = resource(&t, "FleetDashboard");
    assert!(d.contains("Type: AWS::CloudWatch::Dashboard"));
    for needle in [
        r#""LagSeconds", "Function", "poll-threats", {"stat": "p99""#,
        "stats max(LagSeconds) as lag_seconds",
        r#""Published", "Function", "poll-threats""#,
        r#"[".", "Failed""#,
        r#""RunFailed", "Function", "poll-threats""#,
        r#""DeadLetters""#,
        "ApproximateAgeOfOldestMessage",
        r#""ApproximateNumberOfMessagesVisible", ".", "${PollDlq}""#,
        "stats min(TokenDaysRemaining) as days_left by Tenant",
        "HTTP 429",
        r#""LaggingPercent", "Function", "dispatch""#,
    ] {
        assert!(d.contains(needle), "the dashboard lacks {needle}");
    }
    assert!(!d.contains(r#""Tenant","#), "no metric by tenant on the dashboard");
    let lagging = resource(&t, "FleetLaggingAlarm");
    assert!(lagging.contains("MetricName: LaggingPercent") && lagging.contains("Threshold: !Ref LaggingAlarmPercent"));
    assert_eq!(
        s1_shared::usecase::fanout::LAGGING_SECONDS,
        300,
        "the alarm's 5 minutes"
    );
    assert!(resource(&t, "PollQueueAgeAlarm").contains("Threshold: 120"));
}
