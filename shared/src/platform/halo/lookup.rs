//! The tenant's Halo configuration resolved to this instance's ids, once per adapter: ticket
//! type, user, default client and site, priorities, statuses, our own agent. A name that does
//! not exist is an error naming it and what exists.

use std::collections::BTreeMap;

use serde_json::Value;

use super::client::{HaloClient, as_id};
use super::{NameOrId, Settings};
use crate::domain::Severity;
use crate::platform::PlatformError;

/// Ids this Halo instance gives the tenant's settings.
#[derive(Debug, Clone, PartialEq)]
pub struct Resolved {
    pub ticket_type: (i64, String),
    pub user: Option<(i64, String)>,
    pub client: Option<(i64, String)>,
    pub site: Option<(i64, String)>,
    /// Severity -> Halo priority id (`priorityid`); a severity without one is left to the
    /// ticket type's default.
    pub priorities: BTreeMap<Severity, (i64, String)>,
    pub closed: Vec<i64>,
    pub in_progress: Vec<i64>,
    pub open: Vec<i64>,
    pub reopen: (i64, String),
    pub close: (i64, String),
    /// The agent the API application acts as: its actions are ours, never echoed.
    pub agent: Option<i64>,
}

/// A record's name under any of the keys Halo uses for it.
pub fn record_name(r: &Value) -> Option<&str> {
    ["name", "outcome", "status", "description"]
        .iter()
        .find_map(|k| r.get(*k).and_then(Value::as_str))
}

/// Finds `want` among `records` by id (under `id_key`) or by name (case-insensitive).
///
/// # Errors
/// [`PlatformError::Config`] naming what was looked for and what exists.
pub fn find(records: &[Value], id_key: &str, want: &NameOrId, what: &str) -> Result<(i64, String), PlatformError> {
    let hit = records.iter().find(|r| match want {
        NameOrId::Id(id) => r.get(id_key).and_then(as_id) == Some(*id),
        NameOrId::Name(n) => record_name(r).is_some_and(|rn| rn.trim().eq_ignore_ascii_case(n.trim())),
    });
    match hit {
        Some(r) => Ok((
            r.get(id_key).and_then(as_id).unwrap_or_default(),
            record_name(r).unwrap_or_default().to_owned(),
        )),
        None => {
            let names: Vec<&str> = records.iter().filter_map(record_name).take(20).collect();
            Err(PlatformError::Config(format!(
                "Halo has no {what} {want} (it has: {})",
                names.join(", ")
            )))
        }
    }
}

fn find_all(records: &[Value], wants: &[NameOrId], what: &str) -> Result<Vec<i64>, PlatformError> {
    wants
        .iter()
        .map(|w| find(records, "id", w, what).map(|(id, _)| id))
        .collect()
}

/// Resolves the settings against the instance (a handful of reads).
///
/// # Errors
/// [`PlatformError::Config`] for a name Halo does not have; the client's errors.
pub async fn resolve(client: &HaloClient, s: &Settings) -> Result<Resolved, PlatformError> {
    let types = client.list_all("TicketType", "tickettypes").await?;
    let ticket_type = find(&types, "id", &s.ticket_type, "ticket type")?;
    let statuses = client.list_all("Status", "statuses").await?;
    let priorities_all = client.list_all("Priority", "priorities").await?;
    let mut priorities = BTreeMap::new();
    for severity in [
        Severity::Critical,
        Severity::High,
        Severity::Medium,
        Severity::Low,
        Severity::Info,
    ] {
        let found = match s.priorities.get(&severity) {
            Some(want) => Some(find(&priorities_all, "priorityid", want, "priority")?),
            // The seed behaviour: a priority of the severity's name, if Halo has one.
            None => find(
                &priorities_all,
                "priorityid",
                &NameOrId::Name(severity.as_str().to_owned()),
                "priority",
            )
            .ok(),
        };
        if let Some(p) = found {
            priorities.insert(severity, p);
        }
    }
    let user = match &s.user {
        Some(want) => {
            let q = match want {
                NameOrId::Name(n) => vec![("search", n.clone())],
                NameOrId::Id(_) => vec![],
            };
            Some(find(&client.list("Users", &q, "users").await?, "id", want, "user")?)
        }
        None => None,
    };
    let client_rec = match &s.client {
        Some(want) => {
            let q = match want {
                NameOrId::Name(n) => vec![("search", n.clone())],
                NameOrId::Id(_) => vec![],
            };
            Some(find(
                &client.list("Client", &q, "clients").await?,
                "id",
                want,
                "client",
            )?)
        }
        None => None,
    };
    let site = match (&s.site, &client_rec) {
        (Some(want), Some((client_id, _))) => {
            let sites = client
                .list("Site", &[("client_id", client_id.to_string())], "sites")
                .await?;
            Some(find(&sites, "id", want, "site")?)
        }
        (Some(want), None) => Some(find(&client.list("Site", &[], "sites").await?, "id", want, "site")?),
        (None, _) => None,
    };
    let agent = client
        .get("Agent/me", &[])
        .await
        .ok()
        .and_then(|me| me.get("id").and_then(as_id));
    Ok(Resolved {
        ticket_type,
        user,
        client: client_rec,
        site,
        priorities,
        closed: find_all(&statuses, &s.statuses.closed, "status")?,
        in_progress: find_all(&statuses, &s.statuses.in_progress, "status")?,
        open: find_all(&statuses, &s.statuses.open, "status")?,
        reopen: find(&statuses, "id", &s.statuses.reopen, "status")?,
        close: find(&statuses, "id", &s.statuses.close, "status")?,
        agent,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn records_are_found_by_id_or_name_and_a_miss_names_what_exists() {
        let rs = vec![json!({"id": 1, "name": "New"}), json!({"id": 9, "name": "Closed"})];
        assert_eq!(
            find(&rs, "id", &NameOrId::Name("closed".into()), "status").unwrap(),
            (9, "Closed".into())
        );
        assert_eq!(find(&rs, "id", &NameOrId::Id(1), "status").unwrap(), (1, "New".into()));
        let err = find(&rs, "id", &NameOrId::Name("Done".into()), "status").unwrap_err();
        assert_eq!(
            err.to_string(),
            "platform configuration: Halo has no status \"Done\" (it has: New, Closed)"
        );
    }
}
