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
    for pkg in ["poll-threats", "status-writeback", "sync-assets", "token-expiry"] {
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
    assert_eq!(t.matches("BuildMethod: rust-cargolambda").count(), 4);
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
