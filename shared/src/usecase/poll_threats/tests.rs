//! A unified alert against the threats' stories, at the level of one page's plan: an EDR alert
//! that is also a threat is one member whichever listing reads it first, and the other
//! listing's reading of it is news only when it is later and says another status or verdict.

use serde_json::{Value, json};

use super::candidate::Candidate;
use super::plan::decide;
use super::report::TenantReport;
use super::stories::Stories;
use crate::platform::EventKind;
use crate::s1::dto::{AnalystVerdict, IncidentStatus, Threat, UnifiedAlert};
use crate::store::TenantConfig;
use crate::test_util::generic;

const THREAT: &str = "1500000000000000001";

fn tenant() -> TenantConfig {
    TenantConfig::for_test(
        "t1",
        "https://acme.sentinelone.net",
        generic("https://hooks.example.com/s1", "HOOK"),
    )
}

/// Threat [`THREAT`] on UUID1 with file ABC, updated `secs` after 2026-01-01.
fn threat(secs: u32, status: &str) -> Candidate {
    let t: Threat = serde_json::from_value(json!({
        "id": THREAT,
        "threatInfo": {"sha1": "ABC", "threatName": "x.exe", "updatedAt": format!("2026-01-01T00:00:{secs:02}Z"),
                       "identifiedAt": "2026-01-01T00:00:00Z", "incidentStatus": status, "analystVerdict": "undefined"},
        "agentRealtimeInfo": {"agentUuid": "UUID1", "agentComputerName": "SRV-1"},
    }))
    .unwrap();
    Candidate::from_threat(&t, &tenant())
}

/// A unified alert (`patch` merged over an EDR alert on UUID1 with file ABC).
fn unified_alert(secs: u32, patch: Value) -> UnifiedAlert {
    let mut a = json!({
        "id": "u-1", "externalId": THREAT, "name": "x.exe", "status": "NEW", "analystVerdict": "UNDEFINED",
        "severity": "HIGH", "attackSurfaces": ["ENDPOINT"], "detectionSource": {"product": "EDR", "vendor": "SentinelOne"},
        "assets": [{"id": "asset-1", "name": "SRV-1", "primary": true, "agentUuid": "UUID1"}],
        "process": {"file": {"name": "x.exe", "sha1": "ABC"}},
        "detectedAt": "2026-01-01T00:00:00.000Z", "updatedAt": format!("2026-01-01T00:00:{secs:02}.500Z"),
    });
    for (k, v) in patch.as_object().unwrap() {
        a[k] = v.clone();
    }
    serde_json::from_value(a).unwrap()
}

fn unified(secs: u32, patch: Value) -> Candidate {
    Candidate::from_unified(&unified_alert(secs, patch), &tenant(), None)
}

/// Plans `page` as the poller does and records what it would tell the platform as taken:
/// (event kind, member id, story key) per event.
fn plan(work: &mut Stories, page: &[Candidate]) -> Vec<(EventKind, String, String)> {
    let mut told = vec![];
    for c in page {
        if let Some((placement, state)) = decide(c, work, &mut TenantReport::default()) {
            let w = work.get_mut(&placement.name).unwrap();
            w.put_member(&c.id, state);
            told.push((placement.kind, c.id.to_string(), w.story.key.clone()));
        }
    }
    told
}

#[test]
fn an_edr_alert_that_is_a_threat_is_one_member_whichever_listing_reads_it_first() {
    for threats_first in [true, false] {
        let mut work = Stories::new();
        let (first, second) = if threats_first {
            (threat(10, "unresolved"), unified(11, json!({})))
        } else {
            (unified(11, json!({})), threat(10, "unresolved"))
        };
        let told = plan(&mut work, &[first]);
        assert_eq!(told, [(EventKind::Created, THREAT.to_owned(), "uuid1:abc".to_owned())]);
        assert!(
            plan(&mut work, &[second]).is_empty(),
            "the other listing's reading is no news"
        );
        assert_eq!(work.len(), 1);
        assert_eq!(
            work["uuid1:abc"].story.members.len(),
            1,
            "one member, threats first: {threats_first}"
        );
    }
}

#[test]
fn the_other_listing_tells_a_later_status_once_and_never_bounces_back() {
    let mut work = Stories::new();
    plan(&mut work, &[threat(10, "unresolved")]);
    // Resolved in UAM: one update, read from the unified listing.
    let told = plan(
        &mut work,
        &[unified(
            20,
            json!({"status": "RESOLVED", "analystVerdict": "TRUE_POSITIVE_MALWARE"}),
        )],
    );
    assert_eq!(told, [(EventKind::Updated, THREAT.to_owned(), "uuid1:abc".to_owned())]);
    let m = &work["uuid1:abc"].story.members[THREAT];
    assert_eq!(
        (m.status, m.verdict),
        (Some(IncidentStatus::Resolved), Some(AnalystVerdict::TruePositive))
    );
    // The threats listing still showing the version before: not later, no news.
    assert!(plan(&mut work, &[threat(10, "unresolved")]).is_empty());
    // The threats listing catching up (later, same status and verdict): no news either.
    let caught_up: Threat = serde_json::from_value(json!({
        "id": THREAT,
        "threatInfo": {"sha1": "ABC", "threatName": "x.exe", "updatedAt": "2026-01-01T00:00:21Z",
                       "incidentStatus": "resolved", "analystVerdict": "true_positive"},
        "agentRealtimeInfo": {"agentUuid": "UUID1"},
    }))
    .unwrap();
    assert!(plan(&mut work, &[Candidate::from_threat(&caught_up, &tenant())]).is_empty());
    // The same listing with new content is news as ever.
    let told = plan(
        &mut work,
        &[unified(
            30,
            json!({"status": "RESOLVED", "analystVerdict": "TRUE_POSITIVE_MALWARE", "classification": "RANSOMWARE"}),
        )],
    );
    assert_eq!(told.len(), 1, "{told:?}");
}

#[test]
fn unified_alerts_that_are_not_threats_group_by_endpoint_or_by_asset_and_rule() {
    let mut work = Stories::new();
    plan(&mut work, &[threat(10, "unresolved")]);
    // An EDR alert that is no threat (no externalId) on the same endpoint and file joins it.
    let told = plan(&mut work, &[unified(12, json!({"id": "u-2", "externalId": null}))]);
    assert_eq!(
        told,
        [(EventKind::Created, "uam:u-2".to_owned(), "uuid1:abc".to_owned())]
    );
    assert_eq!(work["uuid1:abc"].story.members.len(), 2);
    // Identity alerts: by asset and detection rule.
    let identity = |id: &str, asset: &str, rule: &str| {
        unified(
            13,
            json!({"id": id, "externalId": "", "attackSurfaces": ["IDENTITY"], "detectionSource": {"product": "Identity", "vendor": "SentinelOne"},
                   "assets": [{"id": asset, "name": "jdoe", "primary": true, "agentUuid": "DC-AGENT"}],
                   "analytics": {"uid": rule, "name": "Kerberoasting"}, "process": null}),
        )
    };
    let told = plan(
        &mut work,
        &[
            identity("i-1", "USER-1", "R1"),
            identity("i-2", "USER-1", "R1"),
            identity("i-3", "USER-2", "R1"),
        ],
    );
    assert_eq!(
        told,
        [
            (EventKind::Created, "uam:i-1".to_owned(), "user-1:uam:r1".to_owned()),
            (EventKind::Created, "uam:i-2".to_owned(), "user-1:uam:r1".to_owned()),
            (EventKind::Created, "uam:i-3".to_owned(), "user-2:uam:r1".to_owned()),
        ]
    );
    let view = &identity("i-1", "USER-1", "R1").view;
    assert_eq!(
        (view.source.as_deref(), view.product.as_deref()),
        (Some("unified"), Some("Identity"))
    );
    assert!(view.title.starts_with("Identity: "), "{}", view.title);
}

#[test]
fn our_own_uam_verdict_comes_back_as_an_echo() {
    let mut work = Stories::new();
    plan(&mut work, &[unified(11, json!({}))]);
    let m = work
        .get_mut("uuid1:abc")
        .unwrap()
        .story
        .members
        .get_mut(THREAT)
        .unwrap();
    m.written_status = Some(IncidentStatus::Resolved);
    m.written_verdict = Some(AnalystVerdict::FalsePositive);
    let mut report = TenantReport::default();
    let c = unified(
        15,
        json!({"status": "RESOLVED", "analystVerdict": "FALSE_POSITIVE_BENIGN"}),
    );
    assert!(decide(&c, &mut work, &mut report).is_none());
    assert_eq!(report.echoes, 1);
}

#[test]
fn a_switch_between_two_positives_in_the_console_reaches_the_platform_once() {
    let mut work = Stories::new();
    let malicious = json!({"status": "RESOLVED", "analystVerdict": "TRUE_POSITIVE_MALICIOUS"});
    plan(&mut work, &[unified(11, malicious.clone())]);
    let adware = unified(
        15,
        json!({"status": "RESOLVED", "analystVerdict": "TRUE_POSITIVE_PUA_ADWARE"}),
    );
    assert_eq!(adware.view.verdict, Some(AnalystVerdict::TruePositive));
    assert_eq!(adware.view.verdict_detail.as_deref(), Some("TRUE_POSITIVE_PUA_ADWARE"));
    let told = plan(&mut work, &[adware]);
    assert_eq!(told, [(EventKind::Updated, THREAT.to_owned(), "uuid1:abc".to_owned())]);
    assert!(
        plan(
            &mut work,
            &[unified(
                16,
                json!({"status": "RESOLVED", "analystVerdict": "TRUE_POSITIVE_PUA_ADWARE"})
            )]
        )
        .is_empty(),
        "a later read of the same kind is no news"
    );
}

#[test]
fn a_unified_alert_links_to_its_threat_else_to_the_consoles_own_link_shape() {
    let shape = crate::s1::AlertLink::learn("/uam/alerts/u-7/overview", "u-7", "https://acme.sentinelone.net").unwrap();
    let link = |patch: Value, shape: Option<&crate::s1::AlertLink>| {
        Candidate::from_unified(&unified_alert(11, patch), &tenant(), shape)
            .view
            .console_url
    };
    assert_eq!(
        link(json!({}), Some(&shape)),
        format!("https://acme.sentinelone.net/incidents/threats/{THREAT}/overview"),
        "an EDR alert that is a threat opens the threat"
    );
    let identity = json!({"externalId": null, "id": "i-9"});
    assert_eq!(
        link(identity.clone(), Some(&shape)),
        "https://acme.sentinelone.net/uam/alerts/i-9/overview"
    );
    assert_eq!(
        link(identity, None),
        "https://acme.sentinelone.net/incidents/unified-alerts/i-9",
        "no shape learnt: the alerts page as we guess it"
    );
}
