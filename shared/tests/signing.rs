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
    let v = &vectors()[0];
    let secret = WebhookSecret::parse(v["secret"].as_str().unwrap()).unwrap();
    let other = WebhookSecret::from_bytes(vec![9; 32]);
    let id = v["webhook_id"].as_str().unwrap();
    let ts = v["webhook_timestamp"].as_i64().unwrap();
    let ts_s = ts.to_string();
    let body = v["body"].as_str().unwrap().as_bytes();
    let sig = v["expected_signature"].as_str().unwrap();
    let at = OffsetDateTime::from_unix_timestamp(ts).unwrap();
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
