//! The UAM GraphQL endpoint through real HTTP: listing and paging, validation against the
//! vendored schema, the recorded fixture's shape, faults, and the write mutations.

use s1_bridge_sim::{
    ActionOutcome, DEFAULT_TOKEN, DetectionSource, FaultKind, FaultRule, NewUnifiedAlerts, Sim, SimConfig, TokenScope,
    TokenSpec, UnifiedAlertChange,
};
use serde_json::{Value, json};

const LIST: &str = r#"
query AlertsUpdatedSince($first: Int!, $after: String, $filters: [FilterInput!], $sorts: [SortInput!], $scope: ScopeSelectorInput) {
  alerts(first: $first, after: $after, filters: $filters, sorts: $sorts, scope: $scope, viewType: ALL) {
    totalCount
    pageInfo { hasNextPage endCursor }
    edges {
      cursor
      node {
        id externalId name severity status analystVerdict updatedAt detectedAt
        detectionSource { product vendor }
        assets { id name primary agentUuid }
        realTime { scope { account { id } site { id } } }
      }
    }
  }
}"#;

async fn gql_as(sim: &Sim, auth: &str, query: &str, variables: Value) -> (u16, Value) {
    let r = reqwest::Client::new()
        .post(format!("{}/web/api/v2.1/unifiedalerts/graphql", sim.base_url()))
        .header("Authorization", auth)
        .json(&json!({"query": query, "variables": variables}))
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

async fn gql(sim: &Sim, query: &str, variables: Value) -> Value {
    let (status, body) = gql_as(sim, &format!("ApiToken {DEFAULT_TOKEN}"), query, variables).await;
    assert_eq!(status, 200, "{body}");
    body
}

fn since(start_ms: i64) -> Value {
    json!([{ "fieldId": "updatedAt", "dateTimeRange": { "start": start_ms, "startInclusive": true } }])
}

fn asc() -> Value {
    json!([{ "by": "updatedAt", "order": "ASC" }])
}

fn epoch_ms(s: &str) -> i64 {
    let t = time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).unwrap();
    (t.unix_timestamp_nanos() / 1_000_000) as i64
}

/// Walks every page; returns the nodes in order and the page sizes.
async fn walk(sim: &Sim, first: i64, filters: Value) -> (Vec<Value>, Vec<usize>) {
    let mut after = Value::Null;
    let (mut nodes, mut pages) = (Vec::new(), Vec::new());
    loop {
        let body = gql(
            sim,
            LIST,
            json!({"first": first, "after": after, "filters": filters, "sorts": asc()}),
        )
        .await;
        assert!(body.get("errors").is_none(), "{body}");
        let conn = &body["data"]["alerts"];
        let edges = conn["edges"].as_array().unwrap();
        pages.push(edges.len());
        nodes.extend(edges.iter().map(|e| e["node"].clone()));
        if !conn["pageInfo"]["hasNextPage"].as_bool().unwrap() {
            return (nodes, pages);
        }
        after = conn["pageInfo"]["endCursor"].clone();
    }
}

#[tokio::test]
async fn a_listing_pages_by_ascending_updated_at_and_keeps_a_run_sharing_one_updated_at_whole() {
    // Runs of 7 alerts share one updatedAt; pages of 5 cut through every run.
    let sim = Sim::start(SimConfig {
        unified_alerts: 30,
        same_updated_at: 7,
        ..SimConfig::default()
    })
    .await
    .unwrap();
    let (nodes, pages) = walk(&sim, 5, since(0)).await;
    assert_eq!(pages, vec![5, 5, 5, 5, 5, 5]);
    let ids: std::collections::BTreeSet<_> = nodes.iter().map(|n| n["id"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), 30, "every alert once, none twice");
    let times: Vec<i64> = nodes
        .iter()
        .map(|n| epoch_ms(n["updatedAt"].as_str().unwrap()))
        .collect();
    assert!(times.windows(2).all(|w| w[0] <= w[1]), "ascending updatedAt: {times:?}");
    assert!(
        times.windows(2).any(|w| w[0] == w[1]),
        "the world has shared updatedAt runs"
    );

    // The filter's start is inclusive: from the 3rd run's time on, exactly the last 16 alerts.
    let third_run = times[14];
    let (from, _) = walk(&sim, 4, since(third_run)).await;
    assert_eq!(from.len(), 16);
    assert_eq!(from[0]["id"], nodes[14]["id"]);
    // Exclusive start skips the whole run at that millisecond.
    let excl = json!([{ "fieldId": "updatedAt", "dateTimeRange": { "start": third_run, "startInclusive": false } }]);
    let (after_run, _) = walk(&sim, 100, excl).await;
    assert_eq!(after_run.len(), 9);

    // Several detection sources, a share of them threats' twins (externalId = a threat id).
    let products: std::collections::BTreeSet<_> = nodes
        .iter()
        .map(|n| n["detectionSource"]["product"].as_str().unwrap().to_owned())
        .collect();
    assert!(products.len() >= 3, "{products:?}");
    let twins = nodes
        .iter()
        .filter(|n| n["externalId"].as_str().unwrap().starts_with("15000000000000"))
        .count();
    assert_eq!(twins, 10, "a third are EDR twins of threats");
}

#[tokio::test]
async fn a_cursor_stays_valid_while_alerts_change_and_is_refused_with_other_filters() {
    let sim = Sim::start(SimConfig {
        unified_alerts: 10,
        ..SimConfig::default()
    })
    .await
    .unwrap();
    let body = gql(&sim, LIST, json!({"first": 4, "filters": since(0), "sorts": asc()})).await;
    let page1: Vec<String> = body["data"]["alerts"]["edges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["node"]["id"].as_str().unwrap().to_owned())
        .collect();
    let cursor = body["data"]["alerts"]["pageInfo"]["endCursor"].clone();
    assert_eq!(body["data"]["alerts"]["totalCount"], 10);
    // An alert of page 1 changes (moves to the end); a new one arrives.
    sim.control()
        .change_unified_alert(
            &page1[0],
            &UnifiedAlertChange {
                status: Some("IN_PROGRESS".into()),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    sim.control()
        .add_unified_alerts(&NewUnifiedAlerts::one(DetectionSource::Identity))
        .await
        .unwrap();
    let body = gql(
        &sim,
        LIST,
        json!({"first": 100, "after": cursor, "filters": since(0), "sorts": asc()}),
    )
    .await;
    let rest: Vec<&str> = body["data"]["alerts"]["edges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["node"]["id"].as_str().unwrap())
        .collect();
    assert_eq!(
        rest.len(),
        6 + 1 + 1,
        "the 6 not yet read, the changed one again, the new one"
    );
    assert_eq!(rest[6], page1[0], "the changed alert comes back at its new updatedAt");

    let body = gql(
        &sim,
        LIST,
        json!({"first": 4, "after": cursor, "filters": since(1), "sorts": asc()}),
    )
    .await;
    assert!(
        body["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("Invalid cursor"),
        "{body}"
    );
    assert_eq!(body["data"], Value::Null);
}

#[tokio::test]
async fn invalid_documents_and_variables_get_validation_errors_naming_the_problem() {
    let sim = Sim::start(SimConfig::default()).await.unwrap();
    let cases = [
        (
            "query { alerts(first: 1) { edges { node { id noSuchField } } } }",
            json!({}),
            "noSuchField",
        ),
        (LIST, json!({"first": "ten"}), "first"),
        (LIST, json!({"after": null}), "first"),
        (
            LIST,
            json!({"first": 1, "sorts": [{"by": "updatedAt", "order": "UPWARDS"}]}),
            "UPWARDS",
        ),
        ("query { alerts(first: 1) { totalCount }", json!({}), "syntax"),
    ];
    for (doc, vars, names) in cases {
        let body = gql(&sim, doc, vars.clone()).await;
        assert!(body.get("data").is_none(), "a refused request has no data: {body}");
        let errors = body["errors"].as_array().unwrap();
        let all = errors
            .iter()
            .map(|e| e["message"].as_str().unwrap())
            .collect::<Vec<_>>()
            .join(" | ");
        assert!(
            all.to_lowercase().contains(&names.to_lowercase()),
            "{vars} -> {all} should name {names}"
        );
        assert_eq!(errors[0]["extensions"]["code"], "GRAPHQL_VALIDATION_FAILED");
    }
    // What the schema leaves to the server is checked too.
    let body = gql(
        &sim,
        LIST,
        json!({"first": 1, "filters": [{"fieldId": "colour", "stringIn": {"values": ["red"]}}]}),
    )
    .await;
    assert!(
        body["errors"][0]["message"].as_str().unwrap().contains("colour"),
        "{body}"
    );
    assert_eq!(body["data"], Value::Null);
}

/// Object-typed keys the fixture records as null: the subfields to select on them.
const NULL_OBJECTS: [(&str, &str); 4] = [
    ("assignee", "userId fullName email"),
    ("attacker", "__typename"),
    ("cloud", "__typename"),
    ("targetUser", "__typename"),
];

/// A document selecting exactly the keys the recorded fixture's node has.
fn selection_of(v: &Value) -> String {
    let Value::Object(m) = v else { return String::new() };
    m.iter()
        .map(|(k, v)| match (v, NULL_OBJECTS.iter().find(|(n, _)| n == k)) {
            (Value::Object(_), _) => format!("{k} {{ {} }}", selection_of(v)),
            (Value::Null, Some((_, sub))) => format!("{k} {{ {sub} }}"),
            _ => k.clone(),
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Same JSON kind wherever both sides have a value; nulls on either side are allowed.
fn same_shape(path: &str, a: &Value, b: &Value, diffs: &mut Vec<String>) {
    match (a, b) {
        (Value::Null, _) | (_, Value::Null) => {}
        (Value::Object(x), Value::Object(y)) => {
            let kx: Vec<_> = x.keys().collect();
            let ky: Vec<_> = y.keys().collect();
            if kx != ky {
                diffs.push(format!("{path}: keys {kx:?} vs {ky:?}"));
            }
            for (k, v) in x {
                if let Some(w) = y.get(k) {
                    same_shape(&format!("{path}.{k}"), v, w, diffs);
                }
            }
        }
        (Value::Array(x), Value::Array(y)) => {
            if let (Some(p), Some(q)) = (x.first(), y.first()) {
                same_shape(&format!("{path}[]"), p, q, diffs);
            }
        }
        (Value::String(s), Value::String(t)) => {
            // Timestamps: the fixture's millisecond UTC form.
            let stamp = |s: &str| s.len() == 24 && s.ends_with('Z') && s.as_bytes()[19] == b'.';
            if stamp(s) != stamp(t) {
                diffs.push(format!("{path}: {s:?} vs {t:?}"));
            }
        }
        (x, y) if std::mem::discriminant(x) == std::mem::discriminant(y) => {}
        (x, y) => diffs.push(format!("{path}: {x} vs {y}")),
    }
}

#[tokio::test]
async fn the_recorded_fixtures_query_is_answered_in_the_fixtures_shape() {
    let fixture: Value =
        serde_json::from_str(include_str!("../../tests/fixtures/s1/unified_alerts_graphql_list.json")).unwrap();
    let node = &fixture["data"]["alerts"]["edges"][0]["node"];
    let query = format!(
        "query {{ alerts(first: 40) {{ totalCount edges {{ node {{ {} }} }} pageInfo {{ {} }} }} }}",
        selection_of(node),
        selection_of(&fixture["data"]["alerts"]["pageInfo"])
    );
    let sim = Sim::start(SimConfig::default()).await.unwrap();
    let body = gql(&sim, &query, json!({})).await;
    assert!(body.get("errors").is_none(), "{}", body["errors"]);
    let mut diffs = Vec::new();
    same_shape("data", &fixture["data"], &body["data"], &mut diffs);
    for e in body["data"]["alerts"]["edges"].as_array().unwrap() {
        same_shape("node", node, &e["node"], &mut diffs);
    }
    assert!(diffs.is_empty(), "{diffs:#?}");
    // And the node carries what a reader needs from each source, non-null.
    let edges = body["data"]["alerts"]["edges"].as_array().unwrap();
    let edr = &edges
        .iter()
        .find(|e| e["node"]["detectionSource"]["product"] == "EDR")
        .unwrap()["node"];
    assert!(
        edr["asset"]["agentUuid"].is_string() && edr["process"]["file"]["sha1"].is_string(),
        "{edr}"
    );
}

#[tokio::test]
async fn bearer_and_api_token_both_open_it_and_scope_narrows_it() {
    let sim = Sim::start(SimConfig::default()).await.unwrap();
    let q = "query { alerts(first: 1000) { totalCount } }";
    let (s1, b1) = gql_as(&sim, &format!("Bearer {DEFAULT_TOKEN}"), q, json!({})).await;
    let (s2, b2) = gql_as(&sim, &format!("ApiToken {DEFAULT_TOKEN}"), q, json!({})).await;
    assert_eq!((s1, s2), (200, 200));
    assert_eq!(b1, b2);
    let (s3, _) = gql_as(&sim, "Bearer nope", q, json!({})).await;
    assert_eq!(s3, 401);

    // An account token sees its account's alerts only; naming another account is an error.
    let all = gql(&sim, LIST, json!({"first": 1000})).await;
    let nodes: Vec<&Value> = all["data"]["alerts"]["edges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| &e["node"])
        .collect();
    let acc = nodes[0]["realTime"]["scope"]["account"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let mine = nodes
        .iter()
        .filter(|n| n["realTime"]["scope"]["account"]["id"] == acc.as_str())
        .count();
    let mut spec = TokenSpec::tenant("acct-token", 30);
    spec.scope = TokenScope::Accounts(vec![acc.clone()]);
    sim.control().add_token(&spec).await.unwrap();
    let (_, b) = gql_as(&sim, "Bearer acct-token", q, json!({})).await;
    assert_eq!(b["data"]["alerts"]["totalCount"], mine);
    let scoped = json!({"first": 1000, "scope": {"scopeType": "ACCOUNT", "scopeIds": [acc]}});
    let b = gql(&sim, LIST, scoped).await;
    assert_eq!(b["data"]["alerts"]["totalCount"], mine);
    let other = json!({"first": 1, "scope": {"scopeType": "ACCOUNT", "scopeIds": ["1100000000000000003"]}});
    let (_, b) = gql_as(&sim, "Bearer acct-token", LIST, other).await;
    assert!(
        b["errors"][0]["message"].as_str().unwrap().contains("Access denied"),
        "{b}"
    );

    // With the setting on, UAM refuses a tenant-scope token.
    sim.control().set_uam_needs_scoped_token(true).await.unwrap();
    let (s, b) = gql_as(&sim, &format!("Bearer {DEFAULT_TOKEN}"), q, json!({})).await;
    assert_eq!(s, 403, "{b}");
    let (s, _) = gql_as(&sim, "Bearer acct-token", q, json!({})).await;
    assert_eq!(s, 200);
}

#[tokio::test]
async fn faults_429_errors_with_200_and_partial_data_are_answered_as_a_console_does() {
    let sim = Sim::start(SimConfig::default()).await.unwrap();
    let ctl = sim.control();
    let path = "/unifiedalerts/graphql";
    let vars = json!({"first": 3, "filters": since(0), "sorts": asc()});

    ctl.add_fault(&FaultRule::new(
        path,
        FaultKind::Status {
            status: 429,
            retry_after: Some("2".into()),
            code: None,
        },
        1,
    ))
    .await
    .unwrap();
    let (status, _) = gql_as(&sim, &format!("Bearer {DEFAULT_TOKEN}"), LIST, vars.clone()).await;
    assert_eq!(status, 429);

    ctl.add_fault(&FaultRule::new(
        path,
        FaultKind::GraphqlError {
            code: "SURFACE_TOO_MANY_REQUESTS".into(),
            message: None,
        },
        1,
    ))
    .await
    .unwrap();
    let body = gql(&sim, LIST, vars.clone()).await;
    assert_eq!(body["data"], Value::Null);
    assert_eq!(body["errors"][0]["extensions"]["code"], "SURFACE_TOO_MANY_REQUESTS");

    ctl.add_fault(&FaultRule::new(path, FaultKind::PartialData, 1))
        .await
        .unwrap();
    let body = gql(&sim, LIST, vars.clone()).await;
    let edges = body["data"]["alerts"]["edges"].as_array().unwrap();
    assert_eq!(edges.len(), 3, "the page is there");
    assert_eq!(edges[0]["node"], Value::Null, "one node missing");
    assert!(edges[1]["node"]["id"].is_string());
    assert_eq!(body["errors"][0]["path"], json!(["alerts", "edges", 0, "node"]));

    // Spent: the next request is whole.
    let body = gql(&sim, LIST, vars).await;
    assert!(body.get("errors").is_none() && body["data"]["alerts"]["edges"][0]["node"]["id"].is_string());
}

// ---- writes ----------------------------------------------------------------------------------

const ACTIONS: &str = r#"
query WriteBackActions($filter: OrFilterSelectionInput!, $scope: ScopeSelectorInput) {
  alertAvailableActions(filter: $filter, scope: $scope, actionTypes: [STATUS_UPDATE, ANALYST_VERDICT_UPDATE, SET_TICKET_ID, ADD_NOTE]) {
    data { id title types isDisabled disabledReason triggeredAfter triggersActions }
    errors { errorMessage }
  }
}"#;

// The client's own document (s1-shared sends this file), so a change to it is validated here.
const TRIGGER: &str = include_str!("../../shared/src/s1/client/uam/trigger_actions.graphql");

const ADD_NOTE: &str = r#"
mutation AddNote($alertId: ID!, $text: String!) {
  addAlertNote(alertId: $alertId, text: $text, type: PLAIN_TEXT) {
    data {
      id alertId text type createdAt
      createdBy {
        __typename
        ... on UserNoteAuthor { userId fullName email }
        ... on RuleNoteAuthor { id name version }
      }
    }
  }
}"#;

const NOTES: &str =
    "query N($id: ID!) { alertNotes(alertId: $id) { data { id text } } alert(id: $id) { id noteExists updatedAt } }";

fn by_ids(ids: &[&str]) -> Value {
    json!({"or": [{"and": [{"fieldId": "id", "stringIn": {"values": ids}}]}]})
}

async fn action_ids(sim: &Sim) -> std::collections::HashMap<String, String> {
    let body = gql(sim, ACTIONS, json!({"filter": by_ids(&["x"])})).await;
    body["data"]["alertAvailableActions"]["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            (
                a["types"][0].as_str().unwrap().to_owned(),
                a["id"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

async fn all_alerts(sim: &Sim) -> Vec<Value> {
    let body = gql(
        sim,
        LIST,
        json!({"first": 1000, "sorts": [{"by": "id", "order": "ASC"}]}),
    )
    .await;
    body["data"]["alerts"]["edges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["node"].clone())
        .collect()
}

#[tokio::test]
async fn a_trigger_filtered_by_ids_changes_exactly_those_alerts_and_bumps_updated_at() {
    let sim = Sim::start(SimConfig::default()).await.unwrap();
    let ids = action_ids(&sim).await;
    assert_eq!(ids.len(), 4, "{ids:?}");
    let before = all_alerts(&sim).await;
    let (a, b) = (before[3]["id"].as_str().unwrap(), before[7]["id"].as_str().unwrap());
    let actions = json!([
        {"id": ids["STATUS_UPDATE"], "payload": {"status": {"value": "RESOLVED"}}},
        {"id": ids["ANALYST_VERDICT_UPDATE"], "payload": {"analystVerdict": {"value": "FALSE_POSITIVE_BENIGN"}}},
    ]);
    let body = gql(&sim, TRIGGER, json!({"filter": by_ids(&[a, b]), "actions": actions})).await;
    let result = &body["data"]["alertTriggerActions"];
    assert_eq!(result["__typename"], "ActionsTriggered", "{body}");
    for act in result["actions"].as_array().unwrap() {
        let mut ok: Vec<&str> = act["success"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["id"].as_str().unwrap())
            .collect();
        ok.sort();
        let mut want = vec![a, b];
        want.sort();
        assert_eq!(ok, want);
    }
    let after = all_alerts(&sim).await;
    for (x, y) in before.iter().zip(&after) {
        let changed = x["id"] == a || x["id"] == b;
        assert_eq!(x != y, changed, "{x} -> {y}");
        if changed {
            assert_eq!(
                (y["status"].as_str(), y["analystVerdict"].as_str()),
                (Some("RESOLVED"), Some("FALSE_POSITIVE_BENIGN"))
            );
            assert!(epoch_ms(y["updatedAt"].as_str().unwrap()) > epoch_ms(x["updatedAt"].as_str().unwrap()));
        }
    }
    let log = sim.control().uam_actions().await.unwrap();
    assert_eq!(log.len(), 2);
    assert!(log.iter().all(|l| !l.unfiltered && l.alert_ids.len() == 2));

    // The same again changes nothing: NO_CHANGE skips.
    let body = gql(&sim, TRIGGER, json!({"filter": by_ids(&[a]), "actions": [{"id": ids["STATUS_UPDATE"], "payload": {"status": {"value": "RESOLVED"}}}]})).await;
    assert_eq!(
        body["data"]["alertTriggerActions"]["actions"][0]["skip"][0]["skipType"],
        "NO_CHANGE"
    );

    // An id the filter names that is not there is a per-alert failure; a set outcome answers.
    sim.control()
        .change_unified_alert(
            b,
            &UnifiedAlertChange {
                outcome: Some(ActionOutcome::Fail {
                    error_type: "SURFACE_TOO_MANY_REQUESTS".into(),
                }),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let body = gql(&sim, TRIGGER, json!({"filter": by_ids(&[b, "nope"]), "actions": [{"id": ids["SET_TICKET_ID"], "payload": {"ticketId": {"value": "INC-42"}}}]})).await;
    let failures = body["data"]["alertTriggerActions"]["actions"][0]["failure"]
        .as_array()
        .unwrap()
        .clone();
    let kinds: Vec<(&str, &str)> = failures
        .iter()
        .map(|f| (f["id"].as_str().unwrap(), f["errorType"].as_str().unwrap()))
        .collect();
    assert!(
        kinds.contains(&("nope", "ALERT_NOT_FOUND")) && kinds.contains(&(b, "SURFACE_TOO_MANY_REQUESTS")),
        "{kinds:?}"
    );

    // Rotated action ids: the cached ones are refused and nothing runs.
    sim.control().rotate_uam_action_ids().await.unwrap();
    let body = gql(&sim, TRIGGER, json!({"filter": by_ids(&[a]), "actions": [{"id": ids["STATUS_UPDATE"], "payload": {"status": {"value": "NEW"}}}]})).await;
    assert_eq!(
        body["data"]["alertTriggerActions"]["__typename"], "TriggerActionsError",
        "{body}"
    );
    assert_ne!(action_ids(&sim).await["STATUS_UPDATE"], ids["STATUS_UPDATE"]);
}

#[tokio::test]
async fn an_empty_filter_acts_on_every_alert_in_scope_unless_over_the_limit() {
    let sim = Sim::start(SimConfig::default()).await.unwrap();
    let ids = action_ids(&sim).await;
    sim.control().set_uam_trigger_limit(5).await.unwrap();
    let body = gql(&sim, TRIGGER, json!({"filter": {"or": []}, "actions": [{"id": ids["STATUS_UPDATE"], "payload": {"status": {"value": "IN_PROGRESS"}}}]})).await;
    let r = &body["data"]["alertTriggerActions"];
    assert_eq!(r["__typename"], "TriggerActionsError");
    assert_eq!(
        r["errors"][0]["errorPayload"],
        json!({"__typename": "ActionsErrorLimitPayload", "limit": 5})
    );
    sim.control().set_uam_trigger_limit(1000).await.unwrap();
    let body = gql(&sim, TRIGGER, json!({"filter": {"or": []}, "actions": [{"id": ids["STATUS_UPDATE"], "payload": {"status": {"value": "IN_PROGRESS"}}}]})).await;
    let done = body["data"]["alertTriggerActions"]["actions"][0]["success"]
        .as_array()
        .unwrap()
        .len();
    assert_eq!(done, sim.unified_alert_count());
    assert!(sim.control().uam_actions().await.unwrap()[0].unfiltered);
}

#[tokio::test]
async fn notes_are_added_listed_and_bump_updated_at() {
    let sim = Sim::start(SimConfig::default()).await.unwrap();
    let id = all_alerts(&sim).await[0]["id"].as_str().unwrap().to_owned();
    let before = gql(&sim, NOTES, json!({"id": id})).await;
    assert_eq!(before["data"]["alertNotes"]["data"], json!([]));
    assert_eq!(before["data"]["alert"]["noteExists"], false);
    let body = gql(
        &sim,
        ADD_NOTE,
        json!({"alertId": id, "text": "Closed by integration: benign admin tool."}),
    )
    .await;
    let notes = body["data"]["addAlertNote"]["data"].as_array().unwrap();
    assert_eq!(notes.len(), 1, "{body}");
    assert_eq!(notes[0]["createdBy"]["__typename"], "UserNoteAuthor");
    assert_eq!(notes[0]["alertId"], id.as_str());
    let ids = action_ids(&sim).await;
    gql(&sim, TRIGGER, json!({"filter": by_ids(&[&id]), "actions": [{"id": ids["ADD_NOTE"], "payload": {"note": {"value": "second"}}}]})).await;
    let after = gql(&sim, NOTES, json!({"id": id})).await;
    let texts: Vec<&str> = after["data"]["alertNotes"]["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["text"].as_str().unwrap())
        .collect();
    assert_eq!(texts, ["Closed by integration: benign admin tool.", "second"]);
    assert_eq!(after["data"]["alert"]["noteExists"], true);
    assert!(
        epoch_ms(after["data"]["alert"]["updatedAt"].as_str().unwrap())
            > epoch_ms(before["data"]["alert"]["updatedAt"].as_str().unwrap())
    );
    let state = sim.control().unified_alert(&id).await.unwrap();
    assert_eq!(state["notes"].as_array().unwrap().len(), 2);

    // A note for an alert that does not exist: an error and no data (the field is non-null).
    let body = gql(&sim, ADD_NOTE, json!({"alertId": "nope", "text": "x"})).await;
    assert_eq!(body["data"], Value::Null);
    assert!(body["errors"][0]["message"].as_str().unwrap().contains("not found"));
}

#[tokio::test]
async fn over_the_rate_limit_a_token_gets_429_and_the_peak_rate_is_counted() {
    let sim = Sim::start(SimConfig::default()).await.unwrap();
    let q = "query { alerts(first: 1) { totalCount } }";
    for _ in 0..4 {
        gql(&sim, q, json!({})).await;
    }
    let stats = sim.control().stats().await.unwrap();
    assert!(stats.uam_peak_per_second >= 4 && stats.uam_throttled == 0, "{stats:?}");
    sim.control().set_uam_rate_limit(Some(3)).await.unwrap();
    let mut statuses = Vec::new();
    for _ in 0..5 {
        statuses.push(gql_as(&sim, &format!("Bearer {DEFAULT_TOKEN}"), q, json!({})).await.0);
    }
    assert!(statuses.contains(&429), "{statuses:?}");
    assert!(sim.control().stats().await.unwrap().uam_throttled >= 1);
    // The window is one second: after it the token is served again.
    tokio::time::sleep(std::time::Duration::from_millis(1_100)).await;
    assert_eq!(
        gql_as(&sim, &format!("Bearer {DEFAULT_TOKEN}"), q, json!({})).await.0,
        200
    );
}

#[tokio::test]
async fn the_default_world_has_an_edr_alert_that_is_a_threat_and_an_identity_alert() {
    let sim = Sim::start(SimConfig::default()).await.unwrap();
    let ids = sim.control().unified_alert_ids().await.unwrap();
    assert_eq!(ids.len(), 40);
    assert_eq!(ids[0]["source"], "edr");
    assert_eq!(ids[1]["source"], "identity");
    let threat = sim
        .control()
        .threat(ids[0]["externalId"].as_str().unwrap())
        .await
        .unwrap();
    let twin = sim
        .control()
        .unified_alert(ids[0]["id"].as_str().unwrap())
        .await
        .unwrap();
    assert_eq!(twin["asset"]["agentUuid"], threat["agentRealtimeInfo"]["agentUuid"]);
    assert_eq!(twin["process"]["file"]["sha1"], threat["threatInfo"]["sha1"]);
    let identity = sim
        .control()
        .unified_alert(ids[1]["id"].as_str().unwrap())
        .await
        .unwrap();
    assert_eq!(identity["attackSurfaces"], json!(["IDENTITY"]));
    assert_eq!(identity["asset"]["agentUuid"], Value::Null);
}

#[tokio::test]
async fn a_threat_and_its_edr_twin_are_one_detection_changed_through_either_api() {
    let sim = Sim::start(SimConfig::default()).await.unwrap();
    let ctl = sim.control();
    let ids = ctl.unified_alert_ids().await.unwrap();
    let (alert, threat) = (ids[0]["id"].as_str().unwrap(), ids[0]["externalId"].as_str().unwrap());
    let before = ctl.unified_alert(alert).await.unwrap();

    // Through the threats API: the twin shows the new status and verdict, with a later updatedAt.
    let r = reqwest::Client::new()
        .post(format!("{}/web/api/v2.1/threats/incident", sim.base_url()))
        .header("Authorization", format!("ApiToken {DEFAULT_TOKEN}"))
        .json(&json!({"filter": {"ids": [threat]}, "data": {"incidentStatus": "resolved", "analystVerdict": "false_positive"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let twin = ctl.unified_alert(alert).await.unwrap();
    assert_eq!(
        (twin["status"].as_str(), twin["analystVerdict"].as_str()),
        (Some("RESOLVED"), Some("FALSE_POSITIVE_UNDEFINED"))
    );
    assert!(epoch_ms(twin["updatedAt"].as_str().unwrap()) > epoch_ms(before["updatedAt"].as_str().unwrap()));

    // Through UAM: the threat follows; a finer verdict of the same family changes only the twin.
    let actions = action_ids(&sim).await;
    let body = gql(&sim, TRIGGER, json!({"filter": by_ids(&[alert]), "actions": [
        {"id": actions["STATUS_UPDATE"], "payload": {"status": {"value": "IN_PROGRESS"}}},
        {"id": actions["ANALYST_VERDICT_UPDATE"], "payload": {"analystVerdict": {"value": "FALSE_POSITIVE_BENIGN"}}},
    ]})).await;
    assert_eq!(body["data"]["alertTriggerActions"]["__typename"], "ActionsTriggered");
    let t = ctl.threat(threat).await.unwrap();
    assert_eq!(t["threatInfo"]["incidentStatus"], "in_progress");
    assert_eq!(t["threatInfo"]["analystVerdict"], "false_positive");
    assert_eq!(
        ctl.unified_alert(alert).await.unwrap()["analystVerdict"],
        "FALSE_POSITIVE_BENIGN"
    );

    // A non-EDR alert has no threat to follow it.
    let identity = ids[1]["id"].as_str().unwrap();
    let body = gql(&sim, TRIGGER, json!({"filter": by_ids(&[identity]), "actions": [{"id": actions["STATUS_UPDATE"], "payload": {"status": {"value": "RESOLVED"}}}]})).await;
    assert_eq!(
        body["data"]["alertTriggerActions"]["actions"][0]["success"][0]["id"],
        identity
    );
}
