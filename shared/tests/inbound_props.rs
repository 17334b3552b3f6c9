//! Property tests of the inbound side: whatever a sender puts in a webhook's body and headers,
//! the parsers and verifiers never panic, nothing authenticates without the secret, and a body
//! either decodes into a change or fails naming what is wrong.

use proptest::prelude::*;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use s1_shared::ApiToken;
use s1_shared::platform::inbound::{ChangeAction, Inbound, InboundError};
use s1_shared::platform::{
    GenericAuth, GenericInbound, InboundAdapter, PagerDutyInbound, WebhookSecret, parse_generic, parse_pagerduty, sign,
    sign_pagerduty, verify, verify_pagerduty,
};
use serde_json::{Value, json};
use time::OffsetDateTime;

/// Printable header text, sometimes near the real shapes.
fn header_text() -> impl Strategy<Value = String> {
    prop_oneof![
        "[ -~]{0,80}",
        "v1,[A-Za-z0-9+/=]{0,60}( v1,[A-Za-z0-9+/=]{0,60}){0,12}",
        "v1=[0-9a-f]{0,70}(,v1=[0-9a-f]{0,70}){0,12}",
        "-?[0-9]{1,20}",
        Just(i64::MIN.to_string()),
        Just(i64::MAX.to_string()),
    ]
}

/// Arbitrary headers among the ones the verifiers read.
fn headers() -> impl Strategy<Value = HeaderMap> {
    let name = prop_oneof![
        Just("webhook-id"),
        Just("webhook-timestamp"),
        Just("webhook-signature"),
        Just("x-pagerduty-signature"),
        Just("authorization"),
        Just("idempotency-key"),
    ];
    proptest::collection::vec((name, header_text()), 0..8).prop_map(|pairs| {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            if let Ok(v) = HeaderValue::from_str(&v) {
                h.append(HeaderName::from_static(k), v);
            }
        }
        h
    })
}

/// JSON values up to a few levels deep.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        "[ -~]{0,24}".prop_map(Value::String),
        Just(json!("2026-11-27T06:00:00Z")),
        Just(json!("closed")),
        Just(json!("s1:acme.sentinelone.net:agent:hash@1")),
    ];
    leaf.prop_recursive(3, 24, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            proptest::collection::btree_map(field_name(), inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Field names the parsers look for, and others.
fn field_name() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(vec![
            "type",
            "timestamp",
            "data",
            "alert_key",
            "status",
            "close_reason",
            "verdict",
            "analysis",
            "comment",
            "action",
            "actor",
            "name",
            "email",
            "event",
            "id",
            "event_type",
            "occurred_at",
            "agent",
            "incident",
            "incident_key",
            "content",
            "resolve_reason",
            "title",
        ])
        .prop_map(str::to_owned),
        "[a-z_]{1,10}",
    ]
}

/// A body: arbitrary bytes, arbitrary JSON, or a generic or PagerDuty envelope with arbitrary
/// contents.
fn body() -> impl Strategy<Value = Vec<u8>> {
    let event_type = prop::sample::select(vec![
        "alert.status_changed",
        "alert.comment_added",
        "alert.response_action",
        "incident.triggered",
        "incident.acknowledged",
        "incident.resolved",
        "incident.annotated",
        "pagey.ping",
        "other",
    ]);
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..256),
        json_value().prop_map(|v| serde_json::to_vec(&v).unwrap()),
        (event_type.clone(), json_value(), json_value()).prop_map(|(t, ts, data)| {
            serde_json::to_vec(&json!({"type": t, "timestamp": ts, "data": data})).unwrap()
        }),
        (event_type, json_value(), json_value(), json_value()).prop_map(|(t, id, at, data)| {
            serde_json::to_vec(&json!({"event": {"id": id, "event_type": t, "occurred_at": at, "data": data}})).unwrap()
        }),
    ]
}

/// A failure names what is wrong: a JSON path, a field, a header or the body.
fn names_what(e: &InboundError) -> bool {
    let InboundError::Malformed(m) = e else {
        return false;
    };
    [
        "`",
        "data.",
        "event.",
        "timestamp",
        "webhook-id",
        "body is not JSON",
        "no event object",
    ]
    .iter()
    .any(|needle| m.contains(needle))
}

fn secret_from(key: &[u8]) -> WebhookSecret {
    WebhookSecret::from_bytes(key.to_vec())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn generic_bodies_decode_or_name_what_is_wrong(id in proptest::option::of("[ -~]{0,40}"), body in body()) {
        match parse_generic(id.as_deref(), &body) {
            Ok(Inbound::Change(c)) => {
                prop_assert!(!c.event_id.is_empty());
                prop_assert_eq!(c.platform, s1_shared::platform::PlatformKind::Generic);
            }
            Ok(Inbound::Ignore(why)) => prop_assert!(!why.is_empty()),
            Ok(Inbound::Batch(_)) => prop_assert!(false, "one delivery, one change"),
            Err(e) => prop_assert!(names_what(&e), "{}", e),
        }
    }

    #[test]
    fn pagerduty_bodies_decode_or_name_what_is_wrong(body in body()) {
        match parse_pagerduty(&body) {
            Ok(Inbound::Change(c)) => {
                prop_assert!(!c.event_id.is_empty() && c.event_id.len() <= 256);
                prop_assert_eq!(c.platform, s1_shared::platform::PlatformKind::PagerDuty);
            }
            Ok(Inbound::Ignore(why)) => prop_assert!(!why.is_empty()),
            Ok(Inbound::Batch(_)) => prop_assert!(false, "one delivery, one change"),
            Err(e) => prop_assert!(names_what(&e), "{}", e),
        }
    }

    #[test]
    fn valid_generic_changes_decode_to_what_was_sent(
        status in prop::sample::select(vec!["new", "reopened", "investigating", "acknowledged", "in_progress", "closed", "resolved"]),
        reason in "[a-zA-Z ]{1,30}",
        analysis in "[ -~]{0,200}",
        secs in 0i64..4_000_000_000,
    ) {
        let at = OffsetDateTime::from_unix_timestamp(secs).unwrap();
        let body = serde_json::to_vec(&json!({
            "type": "alert.status_changed",
            "timestamp": s1_shared::s1::dto::format_time(at),
            "data": {"alert_key": "k", "status": status, "close_reason": reason, "analysis": analysis}
        })).unwrap();
        let Ok(Inbound::Change(c)) = parse_generic(Some("evt"), &body) else {
            return Err(TestCaseError::fail("a valid body did not decode"));
        };
        prop_assert_eq!(c.at, at);
        let ChangeAction::Status { state, close_reason, .. } = c.action else {
            return Err(TestCaseError::fail("not a status change"));
        };
        prop_assert_eq!(state.as_str().replace('_', " "), status.replace('_', " "));
        prop_assert_eq!(close_reason.as_deref(), Some(reason.as_str()));
    }

    #[test]
    fn standard_webhooks_never_pass_without_the_secret(
        key in proptest::collection::vec(any::<u8>(), 24..64),
        other in proptest::collection::vec(any::<u8>(), 24..64),
        id in "[ -~]{1,40}",
        offset in -400i64..400,
        body in proptest::collection::vec(any::<u8>(), 0..512),
        headers in headers(),
    ) {
        let now = OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap();
        let secret = secret_from(&key);
        // Whatever arrives in the headers, with no signature made with the secret, fails.
        let auth = GenericInbound { auth: GenericAuth::Signed(vec![secret.clone()]) };
        prop_assert!(auth.verify(&headers, &body, now).is_err());
        // A signature made with another key fails; one made with the key passes within 300 s.
        let ts = now.unix_timestamp() + offset;
        let ts_s = ts.to_string();
        let forged = sign(&secret_from(&other), &id, ts, &body);
        prop_assume!(other != key);
        prop_assert!(verify(std::slice::from_ref(&secret), Some(&id), Some(&ts_s), Some(&forged), &body, now, 300).is_err());
        let good = sign(&secret, &id, ts, &body);
        let result = verify(std::slice::from_ref(&secret), Some(&id), Some(&ts_s), Some(&good), &body, now, 300);
        prop_assert_eq!(result.is_ok(), offset.abs() <= 300);
    }

    #[test]
    fn pagerduty_signatures_never_pass_without_the_secret(
        // Secrets are read trimmed, as the token provider reads every secret.
        secret in "[!-~]{8,64}",
        other in "[!-~]{8,64}",
        body in proptest::collection::vec(any::<u8>(), 0..512),
        header in proptest::option::of(header_text()),
        headers in headers(),
    ) {
        prop_assume!(secret != other);
        let secrets = [ApiToken::new(secret.clone())];
        prop_assert!(verify_pagerduty(&secrets, header.as_deref(), &body).is_err());
        let auth = PagerDutyInbound { secrets: secrets.to_vec() };
        prop_assert!(auth.verify(&headers, &body, OffsetDateTime::now_utc()).is_err());
        prop_assert!(verify_pagerduty(&secrets, Some(&sign_pagerduty(&other, &body)), &body).is_err());
        prop_assert!(verify_pagerduty(&secrets, Some(&sign_pagerduty(&secret, &body)), &body).is_ok());
    }

    #[test]
    fn a_bearer_endpoint_passes_only_its_token(token in "[A-Za-z0-9]{16,48}", headers in headers(), body in proptest::collection::vec(any::<u8>(), 0..64)) {
        let auth = GenericInbound { auth: GenericAuth::Bearer(ApiToken::new(token.clone())) };
        prop_assert!(auth.verify(&headers, &body, OffsetDateTime::now_utc()).is_err());
        let mut good = HeaderMap::new();
        good.insert("authorization", HeaderValue::from_str(&format!("Bearer {token}")).unwrap());
        prop_assert!(auth.verify(&good, &body, OffsetDateTime::now_utc()).is_ok());
    }
}
