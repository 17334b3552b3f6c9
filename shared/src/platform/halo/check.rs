//! Halo's part of "Test configuration": the API application gets a token, and every name the
//! tenant's settings give (ticket type, user, statuses, priorities, default client and site,
//! asset types) exists in this instance, each reported by its Halo name (and id), or named
//! with what Halo has instead; the permissions each configured option needs are in the scope;
//! the asset types have the fields the agents' identity goes to, and one asset the bridge wrote
//! is read back and found again by the sync's own lookup. Reads only.

use serde_json::Value;

use super::client::as_id;
use super::layout::{KEY_FIELD_TARGETS, TypeLayout};
use super::lookup::{self, find, find_each};
use super::outbound::HaloTickets;
use super::{AssetMatch, AssetTypeRule, Settings};
use crate::platform::PlatformError;
use crate::platform::check::Check;

/// The permissions (Halo API scopes) the tenant's options need, each with what for.
pub fn permissions(s: &Settings) -> Vec<(&'static str, &'static str)> {
    let mut out = vec![
        (
            "read:tickets",
            "reading tickets and actions (webhooks, the crash-safe ticket lookup)",
        ),
        ("edit:tickets", "opening tickets and adding notes and status changes"),
        (
            "read:customers",
            "the user, client and site names, and the asset sync's clients and sites",
        ),
        ("edit:customers", "the asset sync's clients and sites"),
        ("read:assets", "the asset sync's assets and asset types"),
        ("edit:assets", "the asset sync's assets"),
    ];
    if matches!(s.assets.asset_type, AssetTypeRule::Field { .. }) {
        out.push((
            "admin",
            "creating the asset types Halo lacks (assets.asset_type mode field): asset types are Halo configuration",
        ));
    }
    out
}

/// Which of `needed` the space-separated `scope` lacks (`all` covers every one).
fn missing<'n>(scope: &str, needed: &'n [(&'static str, &'static str)]) -> Vec<&'n (&'static str, &'static str)> {
    let granted: Vec<&str> = scope.split_whitespace().collect();
    if granted.contains(&"all") {
        return vec![];
    }
    needed.iter().filter(|(p, _)| !granted.contains(p)).collect()
}

/// The S1 agent field the matching rule compares, when it is not the inventory number.
fn matched_s1_field(m: AssetMatch) -> Option<&'static str> {
    match m {
        AssetMatch::InventoryNumber => None,
        AssetMatch::Serial => Some("serialNumber"),
        AssetMatch::Hostname => Some("computerName"),
    }
}

/// The text an asset keeps in field `id`.
fn field_value(asset: &Value, id: i64) -> Option<String> {
    asset
        .get("fields")?
        .as_array()?
        .iter()
        .find(|f| f.get("id").and_then(as_id) == Some(id))
        .and_then(|f| {
            ["value", "display"]
                .iter()
                .find_map(|k| f.get(*k).and_then(Value::as_str).filter(|v| !v.trim().is_empty()))
        })
        .map(str::to_owned)
}

/// What is wrong, without the "platform configuration" prefix for a setting Halo lacks.
fn detail(e: &PlatformError) -> String {
    match e {
        PlatformError::Config(m) => m.clone(),
        other => other.to_string(),
    }
}

/// A found record as the checks show it.
fn shown((id, name): &(i64, String)) -> String {
    format!("{name} (id {id})")
}

/// `ok` with `found`'s detail, or `fail` naming what is wrong.
fn check(name: &str, found: Result<String, PlatformError>) -> Check {
    match found {
        Ok(d) => Check::ok(name, d),
        Err(e) => Check::fail(name, detail(&e)),
    }
}

impl HaloTickets {
    /// The checks, in order; none past a token Halo refuses (that is said by the test notice).
    pub(super) async fn checks(&self) -> Vec<Check> {
        let (client, s) = (self.client.as_ref(), &self.settings);
        if let Err(e) = client.sign_in().await {
            return vec![Check::fail("Halo token", detail(&e))];
        }
        let mut out = vec![Check::ok(
            "Halo token",
            format!("obtained for the API application (scope {})", s.scope),
        )];
        let needed = permissions(s);
        let lacking = missing(&s.scope, &needed);
        out.push(if lacking.is_empty() {
            Check::ok(
                "Halo permissions",
                format!(
                    "scope {} covers what the options need: {}",
                    s.scope,
                    needed.iter().map(|(p, _)| *p).collect::<Vec<_>>().join(" ")
                ),
            )
        } else {
            Check::fail(
                "Halo permissions",
                format!(
                    "scope {:?} lacks {}; give the API application these permissions and add them to settings.scope (or use all)",
                    s.scope,
                    lacking
                        .iter()
                        .map(|(p, why)| format!("{p} (for {why})"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            )
        });
        out.push(check(
            "Halo API agent",
            lookup::own_agent(client)
                .await
                .map(|id| format!("agent id {id}: its actions are the bridge's own, never sent to S1")),
        ));
        out.push(check(
            "Halo ticket type",
            lookup::ticket_type(client, s).await.map(|r| shown(&r)),
        ));
        if let Some(want) = &s.user {
            let found = lookup::user(client, want).await.map(|u| {
                format!(
                    "{} (id {}), of client {} and site {}: set on tickets under that client and site only (others get the site's default user)",
                    u.name,
                    u.id,
                    u.client.map_or("-".into(), |c| c.to_string()),
                    u.site.map_or("-".into(), |c| c.to_string())
                )
            });
            out.push(check("Halo user", found));
        }
        out.push(check("Halo statuses", self.statuses().await));
        out.push(check("Halo priorities", self.priorities().await));
        let mut default_client = None;
        if let Some(want) = &s.client {
            let found = lookup::default_client(client, want).await;
            default_client = found.as_ref().ok().map(|c| c.0);
            out.push(check("Halo default client", found.map(|r| shown(&r))));
        }
        if let Some(want) = &s.site {
            let found = lookup::site(client, want, default_client).await;
            out.push(check("Halo default site", found.map(|r| shown(&r))));
        }
        out.push(check("Halo asset types", lookup::asset_types(client, &s.assets).await));
        out.push(check("Halo asset identity", self.asset_identity().await));
        if let Some(want) = &s.assets.default_site {
            let found = lookup::site(client, want, None).await;
            out.push(check("Halo assets' default site", found.map(|r| shown(&r))));
        }
        out
    }

    /// The asset types the rule gives agents (for mode `field`, the group's type new ones are
    /// laid out like), each with the fields the settings write to and, for hostname or serial
    /// matching, the matched value in a key field (Halo's asset search looks there); then one
    /// asset the bridge wrote, read back and found again by the sync's lookup.
    async fn asset_identity(&self) -> Result<String, PlatformError> {
        let opts = &self.settings.assets;
        let types = self.client.list_all("AssetType", "assettypes").await?;
        let wants: Vec<_> = match &opts.asset_type {
            AssetTypeRule::Fixed { asset_type } => vec![asset_type.clone()],
            AssetTypeRule::Rules { rules, default } => rules
                .iter()
                .map(|r| r.asset_type.clone())
                .chain([default.clone()])
                .collect(),
            AssetTypeRule::Field { .. } => {
                let groups = self.client.list_all("AssetGroup", "assetgroups").await?;
                let (group, _) = find(&groups, "id", &opts.asset_group, "asset group")?;
                types
                    .iter()
                    .filter(|t| t.get("assetgroup_id").and_then(as_id) == Some(group))
                    .filter_map(|t| t.get("id").and_then(as_id))
                    .map(super::NameOrId::Id)
                    .take(1)
                    .collect()
            }
        };
        let mut layouts: Vec<std::sync::Arc<TypeLayout>> = Vec::new();
        for want in &wants {
            let (id, _) = find(&types, "id", want, "asset type")?;
            if !layouts.iter().any(|l| l.id == id) {
                layouts.push(self.type_layout(id).await?);
            }
        }
        let mut problems = Vec::new();
        let matched = matched_s1_field(opts.matching);
        for layout in &layouts {
            for (s1_field, target) in &opts.fields {
                match layout.field_for(target) {
                    Err(why) => problems.push(format!("{s1_field} -> {target}: {why}")),
                    Ok(Some(field)) if Some(s1_field.as_str()) == matched && !layout.is_key(field) => {
                        problems.push(format!(
                            "matching {:?} compares {s1_field}, but {target} is not a key field of asset type {}: Halo's asset search looks in key fields",
                            opts.matching, layout.name
                        ));
                    }
                    Ok(None) if Some(s1_field.as_str()) == matched => problems.push(format!(
                        "matching {:?} compares {s1_field}, but {target} is not a field of asset type {}: Halo's asset search cannot find it there",
                        opts.matching, layout.name
                    )),
                    Ok(_) => {}
                }
            }
            if let Some(f) = matched.filter(|f| !opts.fields.contains_key(*f)) {
                problems.push(format!(
                    "matching {:?} compares {f}, which assets.fields writes nowhere",
                    opts.matching
                ));
            }
        }
        if !problems.is_empty() {
            problems.dedup();
            return Err(PlatformError::Config(problems.join("; ")));
        }
        let shown: Vec<String> = layouts
            .iter()
            .map(|l| {
                let keys: Vec<String> = KEY_FIELD_TARGETS
                    .iter()
                    .filter_map(|k| {
                        let id = l.field_for(k).ok().flatten()?;
                        let name = l.fields.iter().find(|(f, _)| *f == id).map(|(_, n)| n.as_str());
                        Some(format!("{k} = {}", name.unwrap_or("?")))
                    })
                    .collect();
                format!("{} ({})", l.name, keys.join(", "))
            })
            .collect();
        Ok(format!("{}; {}", shown.join("; "), self.read_one_back(matched).await?))
    }

    /// One asset the bridge wrote (`inventory_number` `S1:...`), read whole and found again by
    /// the lookup the sync matches with, within its own client and site.
    async fn read_one_back(&self, matched: Option<&str>) -> Result<String, PlatformError> {
        let query = [
            ("search", "S1:".to_owned()),
            ("search_inventory_number_only", "true".to_owned()),
            ("includeinactive", "true".to_owned()),
            ("count", "5".to_owned()),
        ];
        let rows = match self.client.get("Asset", &query).await? {
            Value::Array(rows) => rows,
            other => other
                .get("assets")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default(),
        };
        let Some(id) = rows
            .iter()
            .filter(|a| {
                a.get("inventory_number")
                    .and_then(Value::as_str)
                    .is_some_and(|n| n.starts_with("S1:"))
            })
            .find_map(|a| a.get("id").and_then(as_id))
        else {
            return Ok("no asset written by the bridge yet to read back (run the asset sync, then test again)".into());
        };
        let asset = self.client.get(&format!("Asset/{id}"), &[]).await?;
        let (what, value) = match matched {
            None => (
                "inventory number".to_owned(),
                asset.get("inventory_number").and_then(Value::as_str).map(str::to_owned),
            ),
            Some(s1_field) => {
                let target = self
                    .settings
                    .assets
                    .fields
                    .get(s1_field)
                    .map(String::as_str)
                    .unwrap_or_default();
                let layout = match asset.get("assettype_id").and_then(as_id) {
                    Some(t) => self.type_layout(t).await?,
                    None => return Err(PlatformError::Config(format!("Halo's asset {id} names no asset type"))),
                };
                let field = layout.field_for(target).map_err(PlatformError::Config)?;
                (
                    format!("{s1_field} ({target})"),
                    field.and_then(|f| field_value(&asset, f)),
                )
            }
        };
        let Some(value) = value else {
            return Err(PlatformError::Config(format!(
                "asset {id} read back has no {what}: the sync's writes do not land where it matches"
            )));
        };
        let client = asset.get("client_id").and_then(as_id).unwrap_or_default();
        let site = asset.get("site_id").and_then(as_id).filter(|s| *s > 0);
        let found = self.lookup(client, site, &value).await?;
        match found.and_then(|a| a.get("id").and_then(as_id)) {
            Some(again) if again == id => Ok(format!(
                "asset {id} read back: its {what} {value:?} is found again by the sync's lookup"
            )),
            other => Err(PlatformError::Config(format!(
                "asset {id} read back: its {what} {value:?} is not found again by the sync's lookup (found {other:?}): matching would create a duplicate"
            ))),
        }
    }

    /// Every status list, by name: `closed: Closed; in progress: In Progress; ...`.
    async fn statuses(&self) -> Result<String, PlatformError> {
        let s = &self.settings.statuses;
        let all = self.client.list_all("Status", "statuses").await?;
        let lists = [
            ("closed", s.closed.iter().collect::<Vec<_>>()),
            ("in progress", s.in_progress.iter().collect()),
            ("open", s.open.iter().collect()),
            ("reopen", vec![&s.reopen]),
            ("close", vec![&s.close]),
        ];
        // Every missing name at once, then each list by name.
        find_each(&all, "id", lists.iter().flat_map(|(_, w)| w.iter().copied()), "status")?;
        let mut parts = Vec::new();
        for (label, wants) in lists {
            parts.push(format!(
                "{label}: {}",
                find_each(&all, "id", wants, "status")?.join(", ")
            ));
        }
        Ok(parts.join("; "))
    }

    /// Severity -> priority, by name.
    async fn priorities(&self) -> Result<String, PlatformError> {
        let found = lookup::priorities(&lookup::all_priorities(&self.client).await?, &self.settings)?;
        Ok(lookup::SEVERITIES
            .iter()
            .map(|sev| match found.get(sev) {
                Some((_, name)) => format!("{}: {name}", sev.as_str()),
                None => format!("{}: the ticket type's default", sev.as_str()),
            })
            .collect::<Vec<_>>()
            .join(", "))
    }
}
