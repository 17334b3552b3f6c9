//! S1 accounts, sites and agents as Halo clients, sites and assets. The link from an S1 id to
//! its Halo record is the asset snapshot's `platform_ref` in our store (the mapping table): the
//! operator may pre-fill it (`s1-bridge halo map`) to land on existing Halo clients and sites;
//! what is not mapped is created and recorded.
//!
//! An asset's identity (hostname, serial, OS) is kept where Halo keeps it: as `fields[]` items
//! (`{"id": <field id>, "value"}`) of the fields its asset type has. `key_field`, `key_field2`,
//! `key_field3` on an asset are only the display values of the type's three key fields, so the
//! settings' `key_field*` targets name those key fields, resolved per type
//! (`GET /AssetType/{id}`), and `field:<name>` any field of the type.

use std::sync::Arc;

use serde_json::{Map, Value, json};

use super::client::as_id;
use super::layout::{KEY_FIELD_TARGETS, TypeLayout};
use super::lookup::find;
use super::outbound::HaloTickets;
use super::{AssetMatch, AssetTypeRule, NameOrId};
use crate::platform::{PlatformError, PublishReceipt, Synced};
use crate::store::AssetKind;

/// The asset fields a hostname or serial is looked for in (besides the `fields[]` values).
const KEY_FIELDS: [&str; 4] = ["key_field", "key_field2", "key_field3", "inventory_number"];

/// Exact lookups in one run before it lists each scope's assets instead: a daily sync
/// of a few new agents keeps its exact lookups; a first import of thousands spends one request
/// per page of 100 assets rather than one per asset (docs/benchmarks.md "First Halo import").
const LIST_AFTER: u32 = 20;

/// A match scope: a Halo client, and its site where the agent's site is mapped.
type Scope = (i64, Option<i64>);

/// The query that keeps a match scope's assets, inactive ones too (an asset the agent had
/// before it was decommissioned is still its asset).
fn scope_query((client, site): Scope) -> Vec<(&'static str, String)> {
    let mut query = vec![("client_id", client.to_string())];
    if let Some(site) = site {
        query.push(("site_id", site.to_string()));
    }
    query.push(("includeinactive", "true".into()));
    query
}

/// The text a row holds for `value` in a field: a top-level key, or a `fields[]` item's value.
fn holds(row: &Value, keys: &[&str], value: &str) -> bool {
    let same = |v: Option<&str>| v.is_some_and(|v| v.trim().eq_ignore_ascii_case(value.trim()));
    keys.iter().any(|k| same(row.get(*k).and_then(Value::as_str)))
        || row
            .get("fields")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .any(|f| same(f.get("value").and_then(Value::as_str)) || same(f.get("display").and_then(Value::as_str)))
}

/// The inventory number the bridge gives an agent's asset.
pub fn inventory_number(agent_uuid: &str) -> String {
    format!("S1:{agent_uuid}")
}

fn field_text(fields: &Map<String, Value>, name: &str) -> Option<String> {
    match fields.get(name)? {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Array(a) if !a.is_empty() => Some(
            a.iter()
                .map(|v| v.as_str().map(str::to_owned).unwrap_or_else(|| v.to_string()))
                .collect::<Vec<_>>()
                .join(", "),
        ),
        _ => None,
    }
}

impl HaloTickets {
    /// The Halo id recorded for an S1 account (customer) or site.
    async fn mapped(&self, kind: AssetKind, s1_id: Option<&str>) -> Option<i64> {
        match (&self.directory, s1_id) {
            (Some(d), Some(id)) => d.halo_id(&self.tenant, kind, id).await,
            _ => None,
        }
    }

    /// One synced customer, site or asset.
    pub(super) async fn sync(&self, s: &Synced) -> Result<PublishReceipt, PlatformError> {
        let known = s.platform_ref.as_deref().and_then(|r| r.parse::<i64>().ok());
        let id = match s.kind {
            AssetKind::Customer => self.sync_client(s, known).await?,
            AssetKind::Site => self.sync_site(s, known).await?,
            AssetKind::Asset => self.sync_asset(s, known).await?,
        };
        Ok(PublishReceipt {
            platform_ref: id.map(|id| id.to_string()),
        })
    }

    async fn sync_client(&self, s: &Synced, known: Option<i64>) -> Result<Option<i64>, PlatformError> {
        let name = s
            .name
            .clone()
            .unwrap_or_else(|| format!("S1 account {}", s.external_id));
        let mut record = json!({"name": name});
        if let Some(id) = known {
            record["id"] = json!(id);
        }
        self.client.post_one("Client", record).await.map(Some)
    }

    async fn sync_site(&self, s: &Synced, known: Option<i64>) -> Result<Option<i64>, PlatformError> {
        let name = s.name.clone().unwrap_or_else(|| format!("S1 site {}", s.external_id));
        let mut record = json!({"name": name});
        match known {
            Some(id) => record["id"] = json!(id),
            None => {
                let client = match self.mapped(AssetKind::Customer, s.account_id.as_deref()).await {
                    Some(c) => Some(c),
                    None => self.resolved().await?.client.as_ref().map(|c| c.0),
                };
                let Some(client) = client else {
                    return Err(PlatformError::Rejected {
                        status: 422,
                        detail: format!(
                            "S1 site {} belongs to account {} that has no Halo client, and the tenant sets no default client",
                            s.external_id,
                            s.account_id.as_deref().unwrap_or("?")
                        ),
                    });
                };
                record["client_id"] = json!(client);
            }
        }
        self.client.post_one("Site", record).await.map(Some)
    }

    /// The Halo asset an agent already has: its recorded id, else a match by the tenant's rule;
    /// and the match scope it was looked for in, if it was.
    async fn find_asset(
        &self,
        s: &Synced,
        known: Option<i64>,
    ) -> Result<(Option<Value>, Option<Scope>), PlatformError> {
        if let Some(id) = known {
            match self.client.get(&format!("Asset/{id}"), &[]).await {
                Ok(a) if a.get("id").is_some() => return Ok((Some(a), None)),
                Ok(_) | Err(PlatformError::Refused { status: 404, .. }) => {}
                Err(e) => return Err(e),
            }
        }
        // Only within the client the agent's account maps to (and its site, where mapped): the
        // same hostname, serial or inventory number at another customer of the MSP is theirs.
        let Some((client, site)) = self.match_scope(s).await? else {
            return Ok((None, None));
        };
        let value = match self.settings.assets.matching {
            AssetMatch::InventoryNumber => inventory_number(&s.external_id),
            AssetMatch::Serial => match field_text(&s.s1, "serialNumber") {
                Some(serial) => serial,
                None => return Ok((None, None)),
            },
            AssetMatch::Hostname => match s.name.clone() {
                Some(host) => host,
                None => return Ok((None, None)),
            },
        };
        self.lookup_in_run(client, site, &value)
            .await
            .map(|a| (a, Some((client, site))))
    }

    /// The asset the tenant's matching rule finds for `value` within `client` (and `site`): the
    /// inventory number filter, else Halo's search (inventory number and key fields), each row
    /// checked, not trusted: a filter Halo applies loosely (or ignores) must not hand over the
    /// first asset it returns.
    pub(super) async fn lookup(
        &self,
        client: i64,
        site: Option<i64>,
        value: &str,
    ) -> Result<Option<Value>, PlatformError> {
        let by_inventory = self.settings.assets.matching == AssetMatch::InventoryNumber;
        let param = if by_inventory { "inventory_number" } else { "search" };
        let mut query = vec![(param, value.to_owned())];
        query.extend(scope_query((client, site)));
        let found = self.client.list("Asset", &query, "assets").await?;
        Ok(found.into_iter().find(|a| self.matches(a, client, site, value)))
    }

    /// Whether a listed asset is the one the matching rule finds for `value` in the scope.
    fn matches(&self, a: &Value, client: i64, site: Option<i64>, value: &str) -> bool {
        a.get("client_id").and_then(as_id) == Some(client)
            && site.is_none_or(|site| a.get("site_id").and_then(as_id) == Some(site))
            && if self.settings.assets.matching == AssetMatch::InventoryNumber {
                a.get("inventory_number")
                    .and_then(Value::as_str)
                    .is_some_and(|v| v.trim().eq_ignore_ascii_case(value.trim()))
            } else {
                holds(a, &KEY_FIELDS, value)
            }
    }

    /// [`Self::lookup`] within one sync run: the run's first [`LIST_AFTER`] lookups are exact;
    /// after that the run is an import, and a scope's next lookup lists the scope's assets once,
    /// this and every later lookup in the scope answered from that list (and what the run wrote
    /// since, see [`Self::remember`]) with the same row checks. Counted per run, not per scope:
    /// an import spread over several clients and sites would otherwise spend up to
    /// [`LIST_AFTER`] exact lookups in each scope in each of its runs.
    async fn lookup_in_run(&self, client: i64, site: Option<i64>, value: &str) -> Result<Option<Value>, PlatformError> {
        let scope = (client, site);
        let list = {
            let mut run = self.scopes.lock().expect("not poisoned");
            if let Some(rows) = run.listed.get(&scope) {
                return Ok(rows.iter().find(|a| self.matches(a, client, site, value)).cloned());
            }
            run.looked += 1;
            run.looked > LIST_AFTER
        };
        if !list {
            return self.lookup(client, site, value).await;
        }
        let rows = self.client.list("Asset", &scope_query(scope), "assets").await?;
        let found = rows.iter().find(|a| self.matches(a, client, site, value)).cloned();
        // A concurrent lookup may have listed the scope (and remembered writes) already: keep that.
        self.scopes
            .lock()
            .expect("not poisoned")
            .listed
            .entry(scope)
            .or_insert(rows);
        Ok(found)
    }

    /// Keeps what the run wrote to an asset in its scope's listed assets (if listed), so a later
    /// agent of the run matches it as a lookup in Halo would: a created asset by the client,
    /// site, inventory number and `fields[]` values it was created with.
    fn remember(&self, scope: Scope, existing: Option<Value>, record: Value, id: i64) {
        let mut run = self.scopes.lock().expect("not poisoned");
        let Some(rows) = run.listed.get_mut(&scope) else {
            return;
        };
        let mut row = existing.unwrap_or_else(|| json!({"client_id": scope.0, "site_id": scope.1}));
        if let (Some(row), Value::Object(written)) = (row.as_object_mut(), record) {
            for (k, v) in written {
                if k != "fields" {
                    row.insert(k, v);
                    continue;
                }
                // Halo replaces the values of the fields sent and keeps the others.
                let kept = row.entry("fields").or_insert_with(|| json!([]));
                let (Some(kept), Value::Array(sent)) = (kept.as_array_mut(), v) else {
                    continue;
                };
                for f in sent {
                    let same = |k: &Value| k.get("id").and_then(as_id) == f.get("id").and_then(as_id);
                    kept.retain(|k| !same(k));
                    kept.push(f);
                }
            }
            row.insert("id".into(), json!(id));
        }
        rows.retain(|r| r.get("id").and_then(as_id) != Some(id));
        rows.push(row);
    }

    /// The Halo client (and site, where mapped) an agent's asset may be matched in: the client
    /// its S1 account maps to, else the client of its mapped site, else the client of the
    /// tenant's default asset site. `None`: nothing mapped, so nothing is matched.
    async fn match_scope(&self, s: &Synced) -> Result<Option<(i64, Option<i64>)>, PlatformError> {
        let client = self.mapped(AssetKind::Customer, s.account_id.as_deref()).await;
        let site = self.mapped(AssetKind::Site, s.site_id.as_deref()).await;
        let site_record = match (site, &self.settings.assets.default_site) {
            (Some(site), _) => Some(NameOrId::Id(site)),
            (None, Some(default)) => Some(default.clone()),
            (None, None) => None,
        };
        if let Some(client) = client {
            return Ok(Some((client, site)));
        }
        let Some(want) = site_record else {
            return Ok(None);
        };
        let sites = self.client.list("Site", &[], "sites").await?;
        let (site_id, _) = find(&sites, "id", &want, "site")?;
        let client = sites
            .iter()
            .find(|r| r.get("id").and_then(as_id) == Some(site_id))
            .and_then(|r| r.get("client_id"))
            .and_then(as_id);
        Ok(client.map(|c| (c, site)))
    }

    /// The asset type an agent gets under the tenant's rule (a type named by an S1 field is
    /// created under the default asset group when Halo has none).
    async fn asset_type(&self, s: &Synced) -> Result<i64, PlatformError> {
        let types = self.asset_types().await?;
        let want = match &self.settings.assets.asset_type {
            AssetTypeRule::Fixed { asset_type } => asset_type.clone(),
            AssetTypeRule::Rules { rules, default } => rules
                .iter()
                .find(|r| field_text(&s.s1, &r.field).is_some_and(|v| v.eq_ignore_ascii_case(&r.equals)))
                .map(|r| r.asset_type.clone())
                .unwrap_or_else(|| default.clone()),
            AssetTypeRule::Field { field } => {
                let name = field_text(&s.s1, field).unwrap_or_else(|| "Unknown".into());
                let want = NameOrId::Name(name.clone());
                if let Ok((id, _)) = find(&types, "id", &want, "asset type") {
                    return Ok(id);
                }
                let groups = self.client.list_all("AssetGroup", "assetgroups").await?;
                let (group, _) = find(&groups, "id", &self.settings.assets.asset_group, "asset group")?;
                // Laid out like a type of the group that has key fields, so the new type has
                // somewhere to keep the agent's identity.
                let mut record = json!({"name": name, "assetgroup_id": group});
                let like = types
                    .iter()
                    .filter(|t| t.get("assetgroup_id").and_then(as_id) == Some(group))
                    .filter_map(|t| t.get("id").and_then(as_id));
                for id in like {
                    let layout = self.type_layout(id).await?;
                    if layout.keys.iter().any(Option::is_some) {
                        let keys = ["keyfield_id", "keyfield2_id", "keyfield3_id"];
                        for (k, v) in keys.into_iter().zip(layout.keys) {
                            record[k] = json!(v);
                        }
                        record["fields"] = layout
                            .fields
                            .iter()
                            .map(|(id, n)| json!({"field_id": id, "field_name": n}))
                            .collect();
                        break;
                    }
                }
                let created = self.client.post_one("AssetType", record).await;
                // The next agent of this type finds it in a fresh list.
                *self.types.lock().expect("not poisoned") = None;
                return created;
            }
        };
        find(&types, "id", &want, "asset type").map(|(id, _)| id)
    }

    async fn sync_asset(&self, s: &Synced, known: Option<i64>) -> Result<Option<i64>, PlatformError> {
        let (existing, scope) = self.find_asset(s, known).await?;
        let opts = &self.settings.assets;
        if existing.is_none() && (!s.active || opts.dont_create) {
            // Nothing to deactivate, or creating is not ours to do.
            return Ok(None);
        }
        let mut record = json!({"inactive": !s.active});
        let type_id = match &existing {
            Some(a) => {
                record["id"] = a.get("id").cloned().unwrap_or(Value::Null);
                a.get("assettype_id").and_then(as_id)
            }
            None => {
                let t = self.asset_type(s).await?;
                record["assettype_id"] = json!(t);
                if let Some(status) = opts.new_status {
                    record["status_id"] = json!(status);
                }
                Some(t)
            }
        };
        if opts.matching == AssetMatch::InventoryNumber || existing.is_none() {
            record["inventory_number"] = json!(inventory_number(&s.external_id));
        }
        // Placement: the mapped site, else the default site; an existing asset stays put with
        // "don't move".
        if !(opts.dont_move && existing.is_some()) && s.active {
            let site = match self.mapped(AssetKind::Site, s.site_id.as_deref()).await {
                Some(site) => Some(site),
                None => match &opts.default_site {
                    Some(want) => {
                        let sites = self.client.list("Site", &[], "sites").await?;
                        Some(find(&sites, "id", want, "site")?.0)
                    }
                    None => None,
                },
            };
            if let Some(site) = site {
                record["site_id"] = json!(site);
                if let Some(client) = self.mapped(AssetKind::Customer, s.account_id.as_deref()).await {
                    record["client_id"] = json!(client);
                }
            }
        }
        let layout = match type_id {
            Some(t) => Some(self.type_layout(t).await?),
            None => None,
        };
        let (mut custom, mut fields) = (Vec::new(), Vec::new());
        for (s1_field, target) in &opts.fields {
            let value = field_text(&s.s1, s1_field);
            if let Some(name) = target.strip_prefix("custom:") {
                custom.push(json!({"name": name, "value": value}));
                continue;
            }
            let typed = layout.as_deref().map(|l| l.field_for(target));
            match typed {
                Some(Ok(Some(id))) => fields.push(json!({"id": id, "value": value})),
                // The type has no such field: the value has nowhere to go in Halo (tenant test
                // names it); the rest of the asset is still synced.
                Some(Err(why)) => tracing::warn!(tenant = %self.tenant, field = %s1_field, "{why}"),
                _ if KEY_FIELD_TARGETS.contains(&target.as_str()) || target.starts_with("field:") => {}
                _ => record[target.as_str()] = json!(value),
            }
        }
        if !custom.is_empty() {
            record["customfields"] = Value::Array(custom);
        }
        if !fields.is_empty() {
            record["fields"] = Value::Array(fields);
        }
        let id = self.client.post_one("Asset", record.clone()).await?;
        if let Some(scope) = scope {
            self.remember(scope, existing, record, id);
        }
        Ok(Some(id))
    }
}

impl HaloTickets {
    /// The instance's asset types, listed once per adapter (one run of the sync): the list is
    /// the same for every agent, and a first import of thousands would otherwise spend a third
    /// of Halo's budget listing it again for each new asset (docs/benchmarks.md).
    async fn asset_types(&self) -> Result<Arc<Vec<Value>>, PlatformError> {
        if let Some(t) = self.types.lock().expect("not poisoned").clone() {
            return Ok(t);
        }
        let listed = Arc::new(self.client.list_all("AssetType", "assettypes").await?);
        *self.types.lock().expect("not poisoned") = Some(listed.clone());
        Ok(listed)
    }

    /// An asset type's layout (`GET /AssetType/{id}`), read once per adapter.
    pub(super) async fn type_layout(&self, id: i64) -> Result<Arc<TypeLayout>, PlatformError> {
        if let Some(l) = self.layouts.lock().expect("not poisoned").get(&id) {
            return Ok(l.clone());
        }
        let t = self
            .client
            .get(&format!("AssetType/{id}"), &[("includedetails", "true".into())])
            .await?;
        let layout = Arc::new(TypeLayout::of(&t));
        self.layouts.lock().expect("not poisoned").insert(id, layout.clone());
        Ok(layout)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_read_as_halo_text() {
        let f: Map<String, Value> = serde_json::from_value(json!({
            "a": "x", "b": 3, "c": ["10.0.0.1", "10.0.0.2"], "d": null, "e": ""
        }))
        .unwrap();
        assert_eq!(field_text(&f, "a").as_deref(), Some("x"));
        assert_eq!(field_text(&f, "b").as_deref(), Some("3"));
        assert_eq!(field_text(&f, "c").as_deref(), Some("10.0.0.1, 10.0.0.2"));
        assert_eq!(field_text(&f, "d"), None);
        assert_eq!(field_text(&f, "e"), None);
    }
}
