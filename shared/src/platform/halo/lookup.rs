//! The tenant's Halo configuration resolved to this instance's ids: ticket type, user, default
//! client and site, priorities, statuses, our own agent. A name that does not exist is an error
//! naming it and what exists. Resolving costs six to eight reads, so a process keeps the result
//! per tenant ([`ResolvedCache`]) across deliveries and runs.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::client::{HaloClient, as_id};
use super::{AssetOptions, AssetTypeRule, NameOrId, Settings};
use crate::domain::Severity;
use crate::platform::PlatformError;

/// Ids this Halo instance gives the tenant's settings.
#[derive(Debug, Clone, PartialEq)]
pub struct Resolved {
    pub ticket_type: (i64, String),
    pub user: Option<HaloUser>,
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
    pub agent: i64,
    /// Every status id Halo had when this was resolved: a status outside it is one added since,
    /// and a reason to resolve again (it may be one the tenant's lists name).
    pub known_statuses: Vec<i64>,
}

impl Resolved {
    /// Whether Halo had status `id` when this was resolved.
    pub fn knows_status(&self, id: i64) -> bool {
        self.known_statuses.contains(&id)
    }
}

/// How long a process keeps a tenant's resolved settings before reading them again (a renamed
/// status or a new priority is picked up at the latest this long after; a status Halo did not
/// have is picked up at once, see [`ResolvedCache::refresh`]).
pub const SETTINGS_TTL: Duration = Duration::from_secs(15 * 60);

struct Kept {
    settings: Settings,
    resolved: Arc<Resolved>,
    at: Instant,
    /// Status ids a miss read the settings again for and Halo still did not have (deleted
    /// since): a ticket that keeps naming one must not cost every delivery a full read.
    still_missing: Vec<i64>,
}

/// One tenant's resolved Halo settings, kept by the process across deliveries and runs (the
/// registry keeps one per tenant and Halo instance, beside its client). Read again after
/// [`SETTINGS_TTL`], when the tenant's settings change, or on a miss; a failed read is never
/// kept (not knowing our own agent is an error each time, never "nobody").
pub struct ResolvedCache {
    kept: tokio::sync::Mutex<Option<Kept>>,
    ttl: Duration,
}

impl Default for ResolvedCache {
    fn default() -> Self {
        Self::new(SETTINGS_TTL)
    }
}

impl std::fmt::Debug for ResolvedCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResolvedCache")
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}

/// Whether something kept since `at` is still good at `now`.
fn fresh(at: Instant, now: Instant, ttl: Duration) -> bool {
    now.saturating_duration_since(at) < ttl
}

impl ResolvedCache {
    /// A cache whose entries live `ttl`.
    pub fn new(ttl: Duration) -> Self {
        Self {
            kept: tokio::sync::Mutex::new(None),
            ttl,
        }
    }

    /// The settings `s` resolved: the kept ones while fresh and for the same settings, else read
    /// now (one read at a time: concurrent deliveries wait for it instead of each reading).
    ///
    /// # Errors
    /// As [`resolve`].
    pub async fn get(&self, client: &HaloClient, s: &Settings) -> Result<Arc<Resolved>, PlatformError> {
        let mut kept = self.kept.lock().await;
        if let Some(k) = kept
            .as_ref()
            .filter(|k| k.settings == *s && fresh(k.at, Instant::now(), self.ttl))
        {
            return Ok(k.resolved.clone());
        }
        Self::read(&mut kept, client, s).await
    }

    /// Reads the settings again after a miss: Halo named `statuses` that the kept settings
    /// do not know (added since they were read). `None` when every one of them was already
    /// looked for by a read since (Halo did not have them then either); the kept settings when
    /// another delivery's read already knows them all.
    ///
    /// # Errors
    /// As [`resolve`].
    pub async fn refresh(
        &self,
        client: &HaloClient,
        s: &Settings,
        statuses: &[i64],
    ) -> Result<Option<Arc<Resolved>>, PlatformError> {
        let mut kept = self.kept.lock().await;
        if let Some(k) = kept.as_ref().filter(|k| k.settings == *s) {
            let new = |id: &i64| !k.resolved.knows_status(*id) && !k.still_missing.contains(id);
            if !statuses.iter().any(new) {
                return Ok(statuses
                    .iter()
                    .all(|id| k.resolved.knows_status(*id))
                    .then(|| k.resolved.clone()));
            }
        }
        let resolved = Self::read(&mut kept, client, s).await?;
        if let Some(k) = kept.as_mut() {
            k.still_missing = statuses
                .iter()
                .copied()
                .filter(|id| !resolved.knows_status(*id))
                .collect();
        }
        Ok(Some(resolved))
    }

    /// Forgets what is kept: the next [`ResolvedCache::get`] reads again (Halo refused a write
    /// made with it: an id may be gone).
    pub async fn forget(&self) {
        *self.kept.lock().await = None;
    }

    async fn read(kept: &mut Option<Kept>, client: &HaloClient, s: &Settings) -> Result<Arc<Resolved>, PlatformError> {
        *kept = None;
        let resolved = Arc::new(resolve(client, s).await?);
        *kept = Some(Kept {
            settings: s.clone(),
            resolved: resolved.clone(),
            at: Instant::now(),
            still_missing: vec![],
        });
        Ok(resolved)
    }
}

/// The configured end user, with where it belongs: in Halo a user is of one site of one client,
/// and a ticket's user comes from the ticket's site.
#[derive(Debug, Clone, PartialEq)]
pub struct HaloUser {
    pub id: i64,
    pub name: String,
    pub client: Option<i64>,
    pub site: Option<i64>,
}

impl HaloUser {
    /// The user, when it belongs to this client and site (a ticket elsewhere gets none, so
    /// Halo takes the site's default user instead of moving the ticket to the user's client).
    pub fn for_ticket(&self, client: Option<i64>, site: Option<i64>) -> Option<i64> {
        let same_client = client.is_none_or(|c| self.client == Some(c));
        let same_site = site.is_none_or(|s| self.site.is_none_or(|u| u == s));
        (same_client && same_site).then_some(self.id)
    }
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

/// Finds every one of `wants` among `records` (as [`find`]) and gives their names, or one
/// error naming every one Halo does not have and what exists.
///
/// # Errors
/// [`PlatformError::Config`] naming what is missing.
pub fn find_each<'a>(
    records: &[Value],
    id_key: &str,
    wants: impl IntoIterator<Item = &'a NameOrId>,
    what: &str,
) -> Result<Vec<String>, PlatformError> {
    let (mut found, mut missing) = (Vec::new(), Vec::new());
    for want in wants {
        match find(records, id_key, want, what) {
            Ok((_, name)) => found.push(name),
            Err(_) => missing.push(want.to_string()),
        }
    }
    if missing.is_empty() {
        return Ok(found);
    }
    let names: Vec<&str> = records.iter().filter_map(record_name).take(20).collect();
    Err(PlatformError::Config(format!(
        "Halo has no {what} {} (it has: {})",
        missing.join(", "),
        names.join(", ")
    )))
}

/// The severities in the order they are listed.
pub(super) const SEVERITIES: [Severity; 5] = [
    Severity::Critical,
    Severity::High,
    Severity::Medium,
    Severity::Low,
    Severity::Info,
];

/// The ticket type tickets are logged as.
///
/// # Errors
/// [`PlatformError::Config`] when Halo has no such type; the client's errors.
pub async fn ticket_type(client: &HaloClient, s: &Settings) -> Result<(i64, String), PlatformError> {
    let types = client.list_all("TicketType", "tickettypes").await?;
    find(&types, "id", &s.ticket_type, "ticket type")
}

/// Halo's priorities (`priorityid` is the id tickets take).
///
/// # Errors
/// The client's errors.
pub async fn all_priorities(client: &HaloClient) -> Result<Vec<Value>, PlatformError> {
    client.list_all("Priority", "priorities").await
}

/// Severity -> priority: the tenant's table, else the priority of the severity's name when
/// Halo has one (the seed behaviour), else none (the ticket type's default).
///
/// # Errors
/// [`PlatformError::Config`] for a priority in the tenant's table that Halo does not have.
pub fn priorities(all: &[Value], s: &Settings) -> Result<BTreeMap<Severity, (i64, String)>, PlatformError> {
    let mut out = BTreeMap::new();
    for severity in SEVERITIES {
        let found = match s.priorities.get(&severity) {
            Some(want) => Some(find(all, "priorityid", want, "priority")?),
            None => find(
                all,
                "priorityid",
                &NameOrId::Name(severity.as_str().to_owned()),
                "priority",
            )
            .ok(),
        };
        if let Some(p) = found {
            out.insert(severity, p);
        }
    }
    Ok(out)
}

/// A search by name, or every record when the setting is an id.
fn search(want: &NameOrId) -> Vec<(&'static str, String)> {
    match want {
        NameOrId::Name(n) => vec![("search", n.clone())],
        NameOrId::Id(_) => vec![],
    }
}

/// The end-user tickets are logged for, with its client and site.
///
/// # Errors
/// [`PlatformError::Config`] when Halo has no such user; the client's errors.
pub async fn user(client: &HaloClient, want: &NameOrId) -> Result<HaloUser, PlatformError> {
    let users = client.list("Users", &search(want), "users").await?;
    let (id, name) = find(&users, "id", want, "user")?;
    let record = users.iter().find(|u| u.get("id").and_then(as_id) == Some(id));
    let of = |k: &str| record.and_then(|u| u.get(k)).and_then(as_id).filter(|v| *v > 0);
    Ok(HaloUser {
        id,
        name,
        client: of("client_id"),
        site: of("site_id"),
    })
}

/// The default client.
///
/// # Errors
/// [`PlatformError::Config`] when Halo has no such client; the client's errors.
pub async fn default_client(client: &HaloClient, want: &NameOrId) -> Result<(i64, String), PlatformError> {
    find(
        &client.list("Client", &search(want), "clients").await?,
        "id",
        want,
        "client",
    )
}

/// A site: among `under`'s sites when a client is given, else among all.
///
/// # Errors
/// [`PlatformError::Config`] when Halo has no such site; the client's errors.
pub async fn site(client: &HaloClient, want: &NameOrId, under: Option<i64>) -> Result<(i64, String), PlatformError> {
    let query = match under {
        Some(client_id) => vec![("client_id", client_id.to_string())],
        None => vec![],
    };
    find(&client.list("Site", &query, "sites").await?, "id", want, "site")
}

/// The asset types the tenant's rule names, in words: a fixed type, or each rule's and the
/// default; for types named by an agent field, the asset group they are created under.
///
/// # Errors
/// [`PlatformError::Config`] naming every type (or the group) Halo does not have; the client's
/// errors.
pub async fn asset_types(client: &HaloClient, opts: &AssetOptions) -> Result<String, PlatformError> {
    match &opts.asset_type {
        AssetTypeRule::Fixed { asset_type } => {
            let types = client.list_all("AssetType", "assettypes").await?;
            let found = find_each(&types, "id", [asset_type], "asset type")?;
            Ok(format!("every asset: {}", found.join("")))
        }
        AssetTypeRule::Rules { rules, default } => {
            let types = client.list_all("AssetType", "assettypes").await?;
            let wants = rules.iter().map(|r| &r.asset_type).chain([default]);
            let found = find_each(&types, "id", wants, "asset type")?;
            let mut parts: Vec<String> = rules
                .iter()
                .zip(&found)
                .map(|(r, name)| format!("{} = {}: {name}", r.field, r.equals))
                .collect();
            parts.push(format!(
                "otherwise: {}",
                found.last().map(String::as_str).unwrap_or_default()
            ));
            Ok(parts.join("; "))
        }
        AssetTypeRule::Field { field } => {
            let groups = client.list_all("AssetGroup", "assetgroups").await?;
            let (_, group) = find(&groups, "id", &opts.asset_group, "asset group")?;
            Ok(format!(
                "named by the agent's {field}; a type Halo lacks is created under the asset group {group}"
            ))
        }
    }
}

/// The agent the API application acts as (`GET /api/Agent/me`). Not knowing it is an error,
/// never "nobody": every action of ours would then read as a technician's and go back to S1.
///
/// # Errors
/// The client's errors; [`PlatformError::Config`] when Halo names no agent.
pub async fn own_agent(client: &HaloClient) -> Result<i64, PlatformError> {
    let me = client.get("Agent/me", &[]).await?;
    me.get("id").and_then(as_id).filter(|id| *id > 0).ok_or_else(|| {
        PlatformError::Config(
            "Halo's Agent/me names no agent: give the API application an agent to act as (its actions are the bridge's own)"
                .into(),
        )
    })
}

/// Resolves the settings against the instance (a handful of reads).
///
/// # Errors
/// [`PlatformError::Config`] for a name Halo does not have; the client's errors.
pub async fn resolve(client: &HaloClient, s: &Settings) -> Result<Resolved, PlatformError> {
    let ticket_type = ticket_type(client, s).await?;
    let statuses = client.list_all("Status", "statuses").await?;
    let priorities = priorities(&all_priorities(client).await?, s)?;
    let user = match &s.user {
        Some(want) => Some(user(client, want).await?),
        None => None,
    };
    let client_rec = match &s.client {
        Some(want) => Some(default_client(client, want).await?),
        None => None,
    };
    let site = match &s.site {
        Some(want) => Some(site(client, want, client_rec.as_ref().map(|c| c.0)).await?),
        None => None,
    };
    let agent = own_agent(client).await?;
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
        known_statuses: statuses.iter().filter_map(|r| r.get("id").and_then(as_id)).collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn kept_settings_go_stale_after_their_lifetime() {
        let at = Instant::now();
        let ttl = Duration::from_secs(900);
        assert!(fresh(at, at, ttl));
        assert!(fresh(at, at + Duration::from_secs(899), ttl));
        assert!(!fresh(at, at + ttl, ttl), "read again on the timer");
        assert!(
            fresh(at + Duration::from_secs(5), at, ttl),
            "a clock read before `at` is fresh"
        );
    }

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
        let wants = [NameOrId::Name("New".into()), NameOrId::Id(9)];
        assert_eq!(find_each(&rs, "id", &wants, "status").unwrap(), ["New", "Closed"]);
        let wants = [NameOrId::Name("Done".into()), NameOrId::Id(9), NameOrId::Id(4)];
        assert_eq!(
            find_each(&rs, "id", &wants, "status").unwrap_err().to_string(),
            "platform configuration: Halo has no status \"Done\", #4 (it has: New, Closed)"
        );
    }
}
