//! Standard Webhooks signing against the published test vector in
//! tests/fixtures/platforms/signing-vectors/standard-webhooks.json.

use s1_shared::platform::{SignatureError, WebhookSecret, sign, verify};
use serde_json::Value;
use time::OffsetDateTime;

fn vectors() -> Vec<Value> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/fixtures/platforms/signing-vectors/standard-webhooks.json");
    let doc: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    doc["vectors"].as_array().unwrap().clone()
}

/// The first published vector, with the clock pinned to its timestamp.
struct Vector {
    secret: WebhookSecret,
    id: String,
    ts_s: String,
    body: Vec<u8>,
    sig: String,
    at: OffsetDateTime,
}

impl Vector {
    fn first() -> Self {
        let v = &vectors()[0];
        let ts = v["webhook_timestamp"].as_i64().unwrap();
        Self {
            secret: WebhookSecret::parse(v["secret"].as_str().unwrap()).unwrap(),
            id: v["webhook_id"].as_str().unwrap().to_owned(),
            ts_s: ts.to_string(),
            body: v["body"].as_str().unwrap().as_bytes().to_vec(),
            sig: v["expected_signature"].as_str().unwrap().to_owned(),
            at: OffsetDateTime::from_unix_timestamp(ts).unwrap(),
        }
    }
}

#[test]
fn signs_and_verifies_the_published_vectors() {
    for v in vectors() {
        let secret = WebhookSecret::parse(v["secret"].as_str().unwrap()).unwrap();
        let id = v["webhook_id"].as_str().unwrap();
        let ts = v["webhook_timestamp"].as_i64().unwrap();
        let body = v["body"].as_str().unwrap().as_bytes();
        let expected = v["expected_signature"].as_str().unwrap();
        let valid = v["expect_valid"].as_bool().unwrap();
        // The clock is pinned to the vector's timestamp, as the fixture notes.
        let at = OffsetDateTime::from_unix_timestamp(ts).unwrap();
        assert_eq!(sign(&secret, id, ts, body) == expected, valid, "sign {expected}");
        let result = verify(
            std::slice::from_ref(&secret),
            Some(id),
            Some(&ts.to_string()),
            Some(expected),
            body,
            at,
            300,
        );
        assert_eq!(result.is_ok(), valid, "verify {expected}: {result:?}");
    }
}

#[test]
fn refuses_tampering_staleness_and_missing_headers_and_allows_rotation() {
    let Vector {
        secret,
        id,
        ts_s,
        body,
        sig,
        at,
    } = Vector::first();
    let (id, body, sig) = (id.as_str(), body.as_slice(), sig.as_str());
    let other = WebhookSecret::from_bytes(vec![9; 32]);
    let mut tampered = body.to_vec();
    tampered[3] ^= 1;
    assert_eq!(
        verify(
            std::slice::from_ref(&secret),
            Some(id),
            Some(&ts_s),
            Some(sig),
            &tampered,
            at,
            300
        ),
        Err(SignatureError::Mismatch)
    );
    assert_eq!(
        verify(
            std::slice::from_ref(&other),
            Some(id),
            Some(&ts_s),
            Some(sig),
            body,
            at,
            300
        ),
        Err(SignatureError::Mismatch)
    );
    let late = at + time::Duration::seconds(301);
    assert_eq!(
        verify(
            std::slice::from_ref(&secret),
            Some(id),
            Some(&ts_s),
            Some(sig),
            body,
            late,
            300
        ),
        Err(SignatureError::Stale(300))
    );
    assert_eq!(
        verify(
            std::slice::from_ref(&secret),
            None,
            Some(&ts_s),
            Some(sig),
            body,
            at,
            300
        ),
        Err(SignatureError::Missing("webhook-id"))
    );
    // Rotation: several signatures in the header, several secrets on our side.
    let both = format!("v1,AAAA {sig}");
    assert!(verify(&[other, secret], Some(id), Some(&ts_s), Some(&both), body, at, 300).is_ok());
}

#[test]
fn a_signature_header_holds_at_most_8_candidates_in_1_kib() {
    let Vector {
        secret,
        id,
        ts_s,
        body,
        sig,
        at,
    } = Vector::first();
    let (id, body, sig) = (id.as_str(), body.as_slice(), sig.as_str());
    let check = |header: &str| {
        verify(
            std::slice::from_ref(&secret),
            Some(id),
            Some(&ts_s),
            Some(header),
            body,
            at,
            300,
        )
    };
    let junk = "v1,AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=";
    // Rotation room: the valid one among 8 passes.
    let eight = format!("{} {sig}", [junk; 7].join(" "));
    assert!(check(&eight).is_ok());
    // A ninth candidate, or a header over 1 KiB, is refused before any MAC is computed,
    // even with the valid signature in it.
    let nine = format!("{} {sig}", [junk; 8].join(" "));
    assert_eq!(check(&nine), Err(SignatureError::TooLarge));
    let padded = format!("{sig}{}", " ".repeat(1100));
    assert_eq!(check(&padded), Err(SignatureError::TooLarge));
    let many = vec![junk; 2_000].join(" ");
    assert_eq!(check(&many), Err(SignatureError::TooLarge));
}

#[test]
fn a_pagerduty_signature_header_holds_at_most_8_candidates_in_1_kib() {
    use s1_shared::ApiToken;
    use s1_shared::platform::{sign_pagerduty, verify_pagerduty};
    let secret = "a-pagerduty-webhook-subscription-secret";
    let body = br#"{"event":{"id":"E1"}}"#;
    let good = sign_pagerduty(secret, body);
    let junk = format!("v1={}", "0".repeat(64));
    let secrets = [ApiToken::new(secret)];
    let eight = format!("{},{good}", [junk.as_str(); 7].join(","));
    assert!(verify_pagerduty(&secrets, Some(&eight), body).is_ok());
    let nine = format!("{},{good}", [junk.as_str(); 8].join(","));
    assert!(verify_pagerduty(&secrets, Some(&nine), body).is_err());
    let padded = format!("{good},{}", "v0=x".repeat(300));
    assert!(verify_pagerduty(&secrets, Some(&padded), body).is_err());
}

#[test]
fn extreme_timestamps_are_stale_not_a_panic() {
    let Vector {
        secret,
        id,
        body,
        sig,
        at,
        ..
    } = Vector::first();
    for ts in [i64::MIN, i64::MIN + 1, i64::MAX, -1] {
        assert_eq!(
            verify(
                std::slice::from_ref(&secret),
                Some(&id),
                Some(&ts.to_string()),
                Some(&sig),
                &body,
                at,
                300
            ),
            Err(SignatureError::Stale(300)),
            "{ts}"
        );
    }
}
