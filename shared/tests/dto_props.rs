//! Property tests for decoding S1 answers: an arbitrary JSON value put in any field of a real
//! (or fully populated) answer never panics the decoder, and the answer either decodes or fails
//! with [`S1Error::Decode`] naming the path of that field (or a path inside it); arbitrary bytes
//! fail the same way.

use proptest::prelude::*;
use s1_shared::s1::dto::{
    Account, Affected, Agent, CloudAlert, DataEnvelope, GeneratedToken, ListEnvelope, Note, SitesData, SystemInfo,
    SystemStatus, Threat, ThreatActionResult, TokenDetails, User,
};
use s1_shared::s1::{S1Error, decode_response};
use serde_json::{Value, json};

fn fixture(name: &str) -> Value {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/fixtures/s1")
        .join(name);
    serde_json::from_slice(&std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))).unwrap()
}

/// Answers with every field the DTOs read present, so a mutation can land on each of them.
fn samples() -> Vec<(&'static str, Value, Decoder)> {
    vec![
        (
            "threats",
            fixture("threats_list_v21_same_agent.json"),
            decode::<ListEnvelope<Vec<Threat>>>,
        ),
        (
            "agents",
            json!({"data": fixture("agents_list_data_array.json"), "pagination": {"nextCursor": "c2", "totalItems": 1}}),
            decode::<ListEnvelope<Vec<Agent>>>,
        ),
        (
            "accounts",
            fixture("synthetic/accounts_list.json"),
            decode::<ListEnvelope<Vec<Account>>>,
        ),
        (
            "sites",
            fixture("synthetic/sites_list_page1.json"),
            decode::<ListEnvelope<SitesData>>,
        ),
        (
            "threats/1/notes",
            fixture("synthetic/threat_notes_list.json"),
            decode::<ListEnvelope<Vec<Note>>>,
        ),
        (
            "threats/incident",
            fixture("synthetic/threats_incident_update_result.json"),
            decode::<DataEnvelope<ThreatActionResult>>,
        ),
        (
            "threats/notes",
            fixture("synthetic/affected_result.json"),
            decode::<DataEnvelope<Affected>>,
        ),
        (
            "users/api-token-details",
            fixture("synthetic/api_token_details.json"),
            decode::<DataEnvelope<TokenDetails>>,
        ),
        (
            "users/generate-api-token",
            fixture("synthetic/generate_api_token.json"),
            decode::<DataEnvelope<GeneratedToken>>,
        ),
        (
            "system/info",
            fixture("synthetic/system_info.json"),
            decode::<DataEnvelope<SystemInfo>>,
        ),
        (
            "system/status",
            fixture("synthetic/system_status.json"),
            decode::<DataEnvelope<SystemStatus>>,
        ),
        (
            "user",
            json!({"data": {"id": 7, "email": "a@example.com", "fullName": "A", "scope": "account",
                "canGenerateApiToken": "True",
                "apiToken": {"createdAt": "2026-01-01T00:00:00Z", "expiresAt": "2026-07-01T00:00:00.000000Z"},
                "scopeRoles": [{"id": "1", "name": "Acme", "roleName": "Admin", "roles": ["Admin"]}],
                "siteRoles": [{"id": 2, "name": "HQ", "roleName": "Viewer", "roles": null}]}}),
            decode::<DataEnvelope<User>>,
        ),
        (
            "cloud-detection/alerts",
            json!({"data": [{
                "alertInfo": {"alertId": "1900000000000000001", "createdAt": "2026-01-01T00:00:00Z",
                    "reportedAt": "2026-01-01T00:00:01Z", "updatedAt": "2026-01-01T00:00:02.123456Z",
                    "incidentStatus": "In progress", "analystVerdict": "Undefined"},
                "ruleInfo": {"id": 42, "name": "Encoded PowerShell", "severity": "High", "description": "d"},
                "agentDetectionInfo": {"uuid": "u1", "name": "DESKTOP-1", "siteId": 5, "accountId": "6",
                    "osFamily": "windows", "machineType": "laptop"},
                "sourceProcessInfo": {"name": "powershell.exe", "commandline": "-enc x", "filePath": "C:\\p.exe",
                    "fileHashSha1": "ab", "fileHashSha256": "cd", "storyline": "s", "user": "u"}
            }], "pagination": {"nextCursor": null, "totalItems": 1}}),
            decode::<ListEnvelope<Vec<CloudAlert>>>,
        ),
    ]
}

/// Decodes as the client does; the decoded value is dropped, only the outcome matters.
type Decoder = fn(&str, &[u8]) -> Result<(), S1Error>;

fn decode<T: serde::de::DeserializeOwned>(path: &str, bytes: &[u8]) -> Result<(), S1Error> {
    decode_response::<T>(path, bytes).map(drop)
}

/// Every path of `v` below the root, in serde_path_to_error's spelling (`data[0].threatInfo`).
fn paths(v: &Value, at: &str, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            for (k, child) in m {
                let p = if at.is_empty() { k.clone() } else { format!("{at}.{k}") };
                out.push(p.clone());
                paths(child, &p, out);
            }
        }
        Value::Array(a) => {
            for (i, child) in a.iter().enumerate() {
                let p = format!("{at}[{i}]");
                out.push(p.clone());
                paths(child, &p, out);
            }
        }
        _ => {}
    }
}

/// The value at `path` (as [`paths`] spells it), for replacing.
fn at_path<'a>(v: &'a mut Value, path: &str) -> &'a mut Value {
    let mut cur = v;
    for segment in path.split('.') {
        let (key, indices) = match segment.find('[') {
            Some(i) => (&segment[..i], &segment[i..]),
            None => (segment, ""),
        };
        if !key.is_empty() {
            cur = cur.get_mut(key).expect("path from paths()");
        }
        for idx in indices.split('[').filter(|s| !s.is_empty()) {
            let i: usize = idx.trim_end_matches(']').parse().unwrap();
            cur = cur.get_mut(i).expect("path from paths()");
        }
    }
    cur
}

/// Any JSON value, with the strings S1's lenient fields look for (timestamps, boolean words,
/// numbers as text, enum spellings) among them.
fn any_json() -> impl Strategy<Value = Value> {
    let text = prop_oneof![
        ".{0,12}".prop_map(Value::from),
        Just(json!("")),
        Just(json!("True")),
        Just(json!("null")),
        Just(json!("2026-01-01T00:00:00.000000Z")),
        Just(json!("2026-13-45T99:00:00Z")),
        Just(json!("resolved")),
        Just(json!("18446744073709551616")),
    ];
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("JSON has no NaN or infinity", |f| f.is_finite())
            .prop_map(Value::from),
        text,
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map("[a-zA-Z]{1,8}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn check_named(endpoint: &str, replaced: &str, r: Result<(), S1Error>) -> Result<(), TestCaseError> {
    match r {
        Ok(()) => Ok(()),
        Err(S1Error::Decode {
            path,
            endpoint: e,
            message,
        }) => {
            prop_assert_eq!(e, format!("/{endpoint}"));
            prop_assert!(
                path == replaced
                    || path.starts_with(&format!("{replaced}."))
                    || path.starts_with(&format!("{replaced}[")),
                "the error names {path:?} ({message}), not the field replaced ({replaced:?})"
            );
            Ok(())
        }
        Err(other) => Err(TestCaseError::fail(format!("not a decode error: {other:?}"))),
    }
}

#[test]
fn every_sample_decodes_as_it_is() {
    for (endpoint, sample, decoder) in samples() {
        let bytes = serde_json::to_vec(&sample).unwrap();
        decoder(endpoint, &bytes).unwrap_or_else(|e| panic!("{endpoint}: {e}"));
        let mut all = Vec::new();
        paths(&sample, "", &mut all);
        assert!(!all.is_empty(), "{endpoint} has fields to replace");
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn any_value_in_any_field_decodes_or_names_the_field(
        which in any::<prop::sample::Index>(),
        field in any::<prop::sample::Index>(),
        value in any_json(),
    ) {
        let samples = samples();
        let (endpoint, sample, decoder) = &samples[which.index(samples.len())];
        let mut all = Vec::new();
        paths(sample, "", &mut all);
        let replaced = field.get(&all).clone();
        let mut mutated = sample.clone();
        *at_path(&mut mutated, &replaced) = value;
        let bytes = serde_json::to_vec(&mutated).unwrap();
        check_named(endpoint, &replaced, decoder(endpoint, &bytes))?;
    }

    #[test]
    fn arbitrary_bytes_fail_as_decode_errors(
        which in any::<prop::sample::Index>(),
        bytes in prop::collection::vec(any::<u8>(), 0..256),
    ) {
        let samples = samples();
        let (endpoint, _, decoder) = &samples[which.index(samples.len())];
        match decoder(endpoint, &bytes) {
            Ok(()) | Err(S1Error::Decode { .. }) => {}
            Err(other) => prop_assert!(false, "not a decode error: {other:?}"),
        }
    }
}
