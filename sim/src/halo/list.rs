//! List reads: the filters the adapter needs (and a few more that are cheap), ordering, Halo's
//! paging (`pageinate=true&page_size&page_no`) and its answer shapes: `{"record_count": N,
//! "<plural>": [...]}` for tickets, actions, clients, sites, assets and users (with `page_no` and
//! `page_size` when paged), a bare array for the lookup collections. Declared parameters the
//! fake does not implement are accepted and ignored.

use serde_json::{Value, json};

use super::entity::{HaloEntity, Record, int, reference};
use super::store::Store;

/// Query parameters, looked up case-insensitively (the validator has already checked them).
pub(crate) struct Query<'a>(pub &'a [(String, String)]);

impl Query<'_> {
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.trim())
    }

    pub fn int(&self, name: &str) -> Option<i64> {
        self.get(name).and_then(|v| v.parse().ok())
    }

    pub fn flag(&self, name: &str) -> Option<bool> {
        self.get(name).map(|v| v.eq_ignore_ascii_case("true"))
    }
}

/// (query parameter, record field) pairs filtered on by equality.
fn equal_filters(entity: HaloEntity) -> &'static [(&'static str, &'static str)] {
    match entity {
        HaloEntity::Ticket => &[
            ("client_id", "client_id"),
            ("site_id", "site_id"),
            ("user_id", "user_id"),
            ("agent_id", "agent_id"),
            ("status_id", "status_id"),
            ("requesttype_id", "tickettype_id"),
        ],
        HaloEntity::Action => &[("ticket_id", "ticket_id")],
        HaloEntity::Client => &[("toplevel_id", "toplevel_id")],
        HaloEntity::Site => &[("client_id", "client_id")],
        HaloEntity::Asset => &[
            ("client_id", "client_id"),
            ("site_id", "site_id"),
            ("assettype_id", "assettype_id"),
            ("assettype", "assettype_id"),
        ],
        HaloEntity::User => &[("client_id", "client_id"), ("site_id", "site_id")],
        HaloEntity::AssetType => &[("assetgroup_id", "assetgroup_id")],
        HaloEntity::Priority => &[("slaid", "slaid")],
        _ => &[],
    }
}

/// Fields `search=` looks in (a case-insensitive "like"). A ticket's `search` is its summary
/// (and id), as Halo's list search is; its details are searched only with `search_details`.
fn search_fields(entity: HaloEntity, q: &Query<'_>) -> &'static [&'static str] {
    match entity {
        HaloEntity::Ticket => &["summary", "id"],
        HaloEntity::Asset if q.flag("search_inventory_number_only") == Some(true) => &["inventory_number"],
        HaloEntity::Asset => &["inventory_number", "key_field", "key_field2", "key_field3"],
        HaloEntity::User => &["name", "emailaddress"],
        HaloEntity::Outcome => &["outcome"],
        _ => &["name"],
    }
}

fn text(rec: &Record, field: &str) -> String {
    match rec.get(field) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) => n.to_string(),
        _ => String::new(),
    }
}

/// Ticket searches on one field each: (parameter, fields looked in).
const TICKET_SEARCHES: &[(&str, &[&str])] = &[
    ("search_details", &["details", "details_html"]),
    ("search_summary", &["summary"]),
];

/// The columns a ticket list row carries: a list answers summaries, not whole tickets (no
/// details, no third-party ids); a client reads `GET /Tickets/{id}` for the rest.
const TICKET_ROW: &[&str] = &[
    "id",
    "summary",
    "client_id",
    "client_name",
    "site_id",
    "site_name",
    "user_id",
    "user_name",
    "agent_id",
    "status_id",
    "status_name",
    "tickettype_id",
    "priority_id",
    "dateoccurred",
    "datecreated",
    "last_update",
    "lastactiondate",
    "hasbeenclosed",
];

fn keep(store: &Store, entity: HaloEntity, rec: &Record, q: &Query<'_>) -> bool {
    for (param, field) in equal_filters(entity) {
        if let Some(want) = q.int(param) {
            if int(rec.get(*field)) != Some(want) {
                return false;
            }
        }
    }
    if entity == HaloEntity::Ticket {
        for (param, fields) in TICKET_SEARCHES {
            if let Some(term) = q.get(param).filter(|t| !t.is_empty()) {
                let term = term.to_lowercase();
                if !fields.iter().any(|f| text(rec, f).to_lowercase().contains(&term)) {
                    return false;
                }
            }
        }
    }
    if let Some(term) = q.get("search").filter(|t| !t.is_empty()) {
        let term = term.to_lowercase();
        if !search_fields(entity, q)
            .iter()
            .any(|f| text(rec, f).to_lowercase().contains(&term))
        {
            return false;
        }
    }
    if entity.has_inactive() {
        let inactive = rec.get("inactive").and_then(Value::as_bool).unwrap_or(false);
        let wanted = if inactive {
            q.flag("includeinactive").unwrap_or(false)
        } else {
            q.flag("includeactive").unwrap_or(true)
        };
        if !wanted {
            return false;
        }
    }
    match entity {
        HaloEntity::Asset => {
            if let Some(inv) = q.get("inventory_number") {
                if !text(rec, "inventory_number").eq_ignore_ascii_case(inv) {
                    return false;
                }
            }
            if let Some(group) = q.int("assetgroup_id") {
                let of_type = reference(rec, "assettype_id")
                    .and_then(|t| store.find(HaloEntity::AssetType, &t.to_string()))
                    .and_then(|t| reference(t, "assetgroup_id"));
                if of_type != Some(group) {
                    return false;
                }
            }
        }
        HaloEntity::Ticket => {
            let closed = reference(rec, "status_id").is_some_and(|s| store.is_closed(s));
            if (q.flag("open_only") == Some(true) && closed) || (q.flag("closed_only") == Some(true) && !closed) {
                return false;
            }
            if let Some(ids) = q.get("ticketids").filter(|s| !s.is_empty()) {
                let id = reference(rec, "id").unwrap_or_default();
                if !ids.split(',').any(|s| s.trim().parse() == Ok(id)) {
                    return false;
                }
            }
        }
        HaloEntity::Status if q.flag("excludeclosed") == Some(true) => {
            return !reference(rec, "id").is_some_and(|s| store.is_closed(s));
        }
        _ => {}
    }
    true
}

/// Orders by `order` (a field name; `orderdesc=true` reverses), else by id.
fn order(records: &mut [&Record], q: &Query<'_>) {
    let field = q.get("order").filter(|f| !f.is_empty()).unwrap_or("id").to_owned();
    records.sort_by(|a, b| {
        let (x, y) = (a.get(&field), b.get(&field));
        match (int(x), int(y)) {
            (Some(x), Some(y)) => x.cmp(&y),
            _ => {
                let s = |v: Option<&Value>| v.and_then(Value::as_str).unwrap_or_default().to_lowercase();
                s(x).cmp(&s(y))
            }
        }
    });
    if q.flag("orderdesc") == Some(true) {
        records.reverse();
    }
}

/// The answer to a list GET.
pub(crate) fn list(store: &Store, entity: HaloEntity, q: &Query<'_>) -> Value {
    let mut records: Vec<&Record> = store
        .table(entity)
        .iter()
        .filter(|r| keep(store, entity, r, q))
        .collect();
    order(&mut records, q);
    let total = records.len();
    let paged = q.flag("pageinate") == Some(true);
    let (page_size, page_no) = (
        q.int("page_size").filter(|n| *n > 0).unwrap_or(50),
        q.int("page_no").filter(|n| *n > 0).unwrap_or(1),
    );
    let row = |r: &Record| {
        let full = store.render(entity, r);
        match (entity, full) {
            (HaloEntity::Ticket, Value::Object(mut o)) => {
                o.retain(|k, _| TICKET_ROW.contains(&k.as_str()));
                Value::Object(o)
            }
            (_, v) => v,
        }
    };
    let page: Vec<Value> = if paged {
        let skip = usize::try_from((page_no - 1).saturating_mul(page_size)).unwrap_or(usize::MAX);
        let take = usize::try_from(page_size).unwrap_or(usize::MAX);
        records.iter().skip(skip).take(take).map(|r| row(r)).collect()
    } else {
        let count = q
            .int("count")
            .filter(|n| *n > 0)
            .map_or(usize::MAX, |n| usize::try_from(n).unwrap_or(usize::MAX));
        records.iter().take(count).map(|r| row(r)).collect()
    };
    match entity.list_key() {
        None => Value::Array(page),
        Some(key) if paged => json!({"page_no": page_no, "page_size": page_size, "record_count": total, key: page}),
        Some(key) => json!({"record_count": total, key: page}),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::halo::store::Actor;

    fn record(v: Value) -> Record {
        serde_json::from_value(v).unwrap()
    }

    /// The asset sync lists a client's (and site's) assets page by page, inactive ones too: the
    /// filters hold on every page, pages do not overlap, and the count is the filtered total.
    #[test]
    fn a_sites_assets_are_listed_page_by_page_with_the_inactive_ones() {
        let config = crate::HaloConfig::default();
        let mut store = Store::new(&config.seed, config.closed_status_ids.clone());
        let actor = Actor {
            agent_id: 1,
            name: "API".into(),
            user_id: None,
        };
        let mut add = |e, v| {
            store.upsert(e, vec![record(v)], &actor).unwrap()[0]["id"]
                .as_i64()
                .unwrap()
        };
        let globex = add(HaloEntity::Client, json!({"name": "Globex"}));
        let globex_site = add(HaloEntity::Site, json!({"name": "Globex HQ", "client_id": globex}));
        for i in 0..250 {
            let (client, site) = if i % 5 == 0 { (globex, globex_site) } else { (12, 34) };
            add(
                HaloEntity::Asset,
                json!({"assettype_id": 1, "client_id": client, "site_id": site,
                    "inventory_number": format!("S1:{i}"), "inactive": i % 7 == 0}),
            );
        }
        let page = |n: usize| {
            let q: Vec<(String, String)> = [
                ("client_id", "12"),
                ("site_id", "34"),
                ("includeinactive", "true"),
                ("pageinate", "true"),
                ("page_size", "100"),
            ]
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .chain([("page_no".to_owned(), n.to_string())])
            .collect();
            list(&store, HaloEntity::Asset, &Query(&q))
        };
        let mut seen = std::collections::HashSet::new();
        for (n, size) in [(1, 100), (2, 100), (3, 0)] {
            let answer = page(n);
            assert_eq!(answer["record_count"], 200, "page {n}");
            let rows = answer["assets"].as_array().unwrap();
            assert_eq!(rows.len(), size, "page {n}");
            for r in rows {
                assert_eq!((&r["client_id"], &r["site_id"]), (&json!(12), &json!(34)), "{r}");
                assert!(seen.insert(r["id"].clone()), "{r} on two pages");
            }
        }
        assert!(seen.len() == 200, "inactive ones included");
    }
}
