//! The `alerts` listing's arguments as a console reads them: filters (flat AND or OR-of-AND),
//! scope, view, sorts, and keyset cursors. The documents were already validated against the
//! schema; what is checked here is what the schema leaves to the server (known field ids, one
//! filter kind per `FilterInput`, not `filters` and `orFilter` together, ...).

use std::cmp::Ordering;
use std::hash::{DefaultHasher, Hash, Hasher};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};

use super::store::{UnifiedAlert, ms};
use crate::world::{GROUP_BASE, TokenScope, World};

/// An error the console reports as a GraphQL error (HTTP 200, `errors`).
pub(crate) type Refusal = String;

const FILTER_KINDS: [&str; 12] = [
    "booleanEqual",
    "booleanIn",
    "dateTimeRange",
    "intEqual",
    "intIn",
    "intRange",
    "longEqual",
    "longIn",
    "longRange",
    "match",
    "stringEqual",
    "stringIn",
];

const TIME_FIELDS: [&str; 3] = ["updatedAt", "createdAt", "detectedAt"];
const STRING_FIELDS: [&str; 9] = [
    "id",
    "externalId",
    "status",
    "analystVerdict",
    "severity",
    "storylineId",
    "ticketId",
    "assetAgentUuid",
    "detectionProduct",
];

/// One `FilterInput`.
pub(crate) struct Filter {
    field: String,
    negated: bool,
    test: Test,
}

enum Test {
    Range {
        start: Option<i64>,
        end: Option<i64>,
        start_inclusive: bool,
        end_inclusive: bool,
    },
    In(Vec<Option<String>>),
}

/// OR of ANDs; `filters` is one AND group.
pub(crate) struct Selection {
    pub groups: Vec<Vec<Filter>>,
}

impl Selection {
    pub(crate) fn is_empty(&self) -> bool {
        self.groups.is_empty()
    }

    pub(crate) fn matches(&self, w: &World, a: &UnifiedAlert) -> bool {
        // An OR of nothing selects nothing, but callers treat an empty selection as "no filter"
        // (the schema's default `{"or": []}`), so this is only asked of non-empty ones.
        self.groups.iter().any(|g| g.iter().all(|f| f.matches(w, a)))
    }

    /// The alert ids a selection names through `id` `stringIn`/`stringEqual` filters (to report
    /// ids it names that match nothing).
    pub(crate) fn named_ids(&self) -> Vec<String> {
        let mut out = Vec::new();
        for f in self.groups.iter().flatten() {
            if let (false, "id", Test::In(v)) = (f.negated, f.field.as_str(), &f.test) {
                out.extend(v.iter().flatten().cloned());
            }
        }
        out
    }
}

fn field_value(w: &World, a: &UnifiedAlert, field: &str) -> Option<String> {
    match field {
        "id" => Some(a.id.clone()),
        "externalId" => Some(a.external_id.clone()),
        "status" => Some(a.status.clone()),
        "analystVerdict" => Some(a.verdict.clone()),
        "severity" => Some(a.severity.clone()),
        "storylineId" => a.storyline.clone(),
        "ticketId" => a.ticket_id.clone(),
        "assetAgentUuid" => a.agent.map(|i| w.agents[i].uuid.clone()),
        "detectionProduct" => Some(a.source.product().0.to_owned()),
        _ => None,
    }
}

pub(crate) fn time_value(a: &UnifiedAlert, field: &str) -> i64 {
    match field {
        "createdAt" => ms(a.created_at),
        "detectedAt" => ms(a.detected_at),
        _ => a.updated_ms(),
    }
}

impl Filter {
    fn matches(&self, w: &World, a: &UnifiedAlert) -> bool {
        let hit = match &self.test {
            Test::Range {
                start,
                end,
                start_inclusive,
                end_inclusive,
            } => {
                let v = time_value(a, &self.field);
                let above = match start {
                    None => true,
                    Some(s) if *start_inclusive => v >= *s,
                    Some(s) => v > *s,
                };
                let below = match end {
                    None => true,
                    Some(e) if *end_inclusive => v <= *e,
                    Some(e) => v < *e,
                };
                above && below
            }
            Test::In(values) => {
                let v = field_value(w, a, &self.field);
                values.contains(&v)
            }
        };
        hit != self.negated
    }

    fn parse(v: &Value) -> Result<Self, Refusal> {
        let field = v["fieldId"].as_str().unwrap_or_default().to_owned();
        let kinds: Vec<&str> = FILTER_KINDS.iter().copied().filter(|k| !v[*k].is_null()).collect();
        let kind = match kinds.as_slice() {
            [k] => *k,
            [] => return Err(format!("Filter for field '{field}' defines no filter")),
            _ => {
                return Err(format!(
                    "Only one filter can be defined for field '{field}', got {}",
                    kinds.join(", ")
                ));
            }
        };
        let body = &v[kind];
        let test = if TIME_FIELDS.contains(&field.as_str()) {
            if kind != "dateTimeRange" && kind != "longRange" {
                return Err(format!("Filter type '{kind}' is not supported for field '{field}'"));
            }
            Test::Range {
                start: body["start"].as_i64(),
                end: body["end"].as_i64(),
                start_inclusive: body["startInclusive"].as_bool().unwrap_or(true),
                end_inclusive: body["endInclusive"].as_bool().unwrap_or(true),
            }
        } else if STRING_FIELDS.contains(&field.as_str()) {
            match kind {
                "stringIn" => Test::In(
                    body["values"]
                        .as_array()
                        .map(|vs| vs.iter().map(|x| x.as_str().map(str::to_owned)).collect())
                        .unwrap_or_default(),
                ),
                "stringEqual" => Test::In(vec![body["value"].as_str().map(str::to_owned)]),
                _ => return Err(format!("Filter type '{kind}' is not supported for field '{field}'")),
            }
        } else {
            return Err(format!("Unknown filter field '{field}'"));
        };
        Ok(Self {
            field,
            negated: v["isNegated"].as_bool().unwrap_or(false),
            test,
        })
    }
}

fn and_group(list: &Value) -> Result<Vec<Filter>, Refusal> {
    list.as_array()
        .map(|fs| fs.iter().map(Filter::parse).collect())
        .unwrap_or(Ok(Vec::new()))
}

/// `filters` (flat AND) or `orFilter` (OR of AND), never both.
pub(crate) fn selection(filters: &Value, or_filter: &Value) -> Result<Selection, Refusal> {
    if !filters.is_null() && !or_filter.is_null() {
        return Err("'filters' and 'orFilter' cannot be used together".into());
    }
    if !filters.is_null() {
        let g = and_group(filters)?;
        return Ok(Selection {
            groups: if g.is_empty() { Vec::new() } else { vec![g] },
        });
    }
    or_selection(or_filter)
}

/// An `OrFilterSelectionInput`. Empty AND groups are dropped, so `{"or": [{"and": []}]}` and
/// `{"or": []}` both come out empty: the caller decides what "no filter" means.
pub(crate) fn or_selection(or_filter: &Value) -> Result<Selection, Refusal> {
    let mut groups = Vec::new();
    for g in or_filter["or"].as_array().into_iter().flatten() {
        let g = and_group(&g["and"])?;
        if !g.is_empty() {
            groups.push(g);
        }
    }
    Ok(Selection { groups })
}

/// Which alerts the request's scope and view cover, given what the token sees.
pub(crate) struct Reach {
    scope_type: Option<String>,
    scope_ids: Vec<String>,
    token: TokenScope,
    view: String,
}

impl Reach {
    pub(crate) fn new(token: &TokenScope, scope: &Value, view: &Value, w: &World) -> Result<Self, Refusal> {
        let scope_type = scope["scopeType"].as_str().map(str::to_owned);
        let scope_ids: Vec<String> = scope["scopeIds"]
            .as_array()
            .map(|v| v.iter().filter_map(|x| x.as_str().map(str::to_owned)).collect())
            .unwrap_or_default();
        if let Some(t) = &scope_type {
            if scope_ids.is_empty() {
                return Err("Scope 'scopeIds' must not be empty".into());
            }
            for id in &scope_ids {
                let sites: Vec<usize> = (0..w.sites.len()).filter(|&s| scope_holds(t, id, w, s)).collect();
                if sites.is_empty() || !sites.iter().all(|&s| w.site_visible(token, s)) {
                    return Err(format!("Access denied to scope {t} {id}"));
                }
            }
        }
        Ok(Self {
            scope_type,
            scope_ids,
            token: token.clone(),
            view: view.as_str().unwrap_or("ALL").to_owned(),
        })
    }

    pub(crate) fn covers(&self, w: &World, a: &UnifiedAlert) -> bool {
        if !w.site_visible(&self.token, a.site) {
            return false;
        }
        if let Some(t) = &self.scope_type {
            if !self.scope_ids.iter().any(|id| scope_holds(t, id, w, a.site)) {
                return false;
            }
        }
        match self.view.as_str() {
            "ALL" => true,
            v => a.source.view() == v,
        }
    }
}

fn scope_holds(scope_type: &str, id: &str, w: &World, site: usize) -> bool {
    let s = &w.sites[site];
    match scope_type {
        "ACCOUNT" => w.accounts[s.account].id.to_string() == id,
        "SITE" => s.id.to_string() == id,
        "GROUP" => (GROUP_BASE + site as u64).to_string() == id,
        _ => false,
    }
}

// ---- sorting and cursors ---------------------------------------------------------------------

const SORT_FIELDS: [&str; 5] = ["updatedAt", "createdAt", "detectedAt", "id", "name"];

pub(crate) struct Sort {
    by: String,
    desc: bool,
}

/// `sorts` when non-empty, else `sort`, else `detectedAt` descending (the console's default).
pub(crate) fn sorts(sorts: &Value, sort: &Value) -> Result<Vec<Sort>, Refusal> {
    let list: Vec<&Value> = match sorts.as_array() {
        Some(v) if !v.is_empty() => v.iter().collect(),
        _ if !sort.is_null() => vec![sort],
        _ => {
            return Ok(vec![Sort {
                by: "detectedAt".into(),
                desc: true,
            }]);
        }
    };
    list.into_iter()
        .map(|s| {
            let by = s["by"].as_str().unwrap_or_default();
            if !SORT_FIELDS.contains(&by) {
                return Err(format!(
                    "Sorting by '{by}' is not supported; sortable: {}",
                    SORT_FIELDS.join(", ")
                ));
            }
            Ok(Sort {
                by: by.to_owned(),
                desc: s["order"].as_str() == Some("DESC"),
            })
        })
        .collect()
}

/// An alert's position under the sorts: its sort values, then its id (the tie-break).
pub(crate) fn key(a: &UnifiedAlert, sorts: &[Sort]) -> Vec<Value> {
    let mut k: Vec<Value> = sorts
        .iter()
        .map(|s| match s.by.as_str() {
            "id" => json!(a.id),
            "name" => json!(a.name),
            f => json!(time_value(a, f)),
        })
        .collect();
    k.push(json!(a.id));
    k
}

fn cmp_value(a: &Value, b: &Value) -> Ordering {
    match (a.as_i64(), b.as_i64()) {
        (Some(x), Some(y)) => x.cmp(&y),
        _ => a.as_str().unwrap_or_default().cmp(b.as_str().unwrap_or_default()),
    }
}

pub(crate) fn compare(a: &[Value], b: &[Value], sorts: &[Sort]) -> Ordering {
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        let o = cmp_value(x, y);
        let o = if sorts.get(i).is_some_and(|s| s.desc) {
            o.reverse()
        } else {
            o
        };
        if o != Ordering::Equal {
            return o;
        }
    }
    Ordering::Equal
}

/// A hash of everything that decides a walk's order and membership (not `first`, not `after`).
pub(crate) fn walk_hash(args: &[&Value]) -> u64 {
    let mut h = DefaultHasher::new();
    for a in args {
        a.to_string().hash(&mut h);
    }
    h.finish()
}

pub(crate) fn encode_cursor(hash: u64, key: &[Value]) -> String {
    URL_SAFE_NO_PAD.encode(json!(["uam1", hash.to_string(), key]).to_string())
}

pub(crate) fn decode_cursor(s: &str, hash: u64) -> Result<Vec<Value>, Refusal> {
    let bad = || format!("Invalid cursor '{s}'");
    let raw = URL_SAFE_NO_PAD.decode(s).map_err(|_| bad())?;
    let v: Value = serde_json::from_slice(&raw).map_err(|_| bad())?;
    if v[0] != "uam1" || v[1].as_str() != Some(&hash.to_string()) {
        return Err(bad());
    }
    v[2].as_array().cloned().ok_or_else(bad)
}
