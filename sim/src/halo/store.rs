//! The fake Halo's records and its write semantics: a `POST` of an array to a collection, where
//! an element with an existing `id` updates that record (only the fields given) and one without
//! (or with id 0) creates one. A batch is checked whole before anything is written, so a refused
//! batch changes nothing: ids must exist, references (client, site, type, status, priority,
//! outcome, ...) must point at records that exist, a site must belong to the client given.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use super::entity::{HaloEntity, Record, guid, id_text, int, now_text, reference};

/// Who writes: the API application's agent, a technician through the control API, or an end
/// user (a reply by e-mail or the portal: `user_id` set, no agent).
#[derive(Debug, Clone)]
pub(crate) struct Actor {
    pub agent_id: i64,
    pub name: String,
    pub user_id: Option<i64>,
}

/// Fields that refer to another collection, per writing collection.
const REFERENCES: &[(HaloEntity, &str, HaloEntity)] = &[
    (HaloEntity::Ticket, "client_id", HaloEntity::Client),
    (HaloEntity::Ticket, "site_id", HaloEntity::Site),
    (HaloEntity::Ticket, "user_id", HaloEntity::User),
    (HaloEntity::Ticket, "agent_id", HaloEntity::Agent),
    (HaloEntity::Ticket, "status_id", HaloEntity::Status),
    (HaloEntity::Ticket, "tickettype_id", HaloEntity::TicketType),
    (HaloEntity::Ticket, "priority_id", HaloEntity::Priority),
    (HaloEntity::Action, "ticket_id", HaloEntity::Ticket),
    (HaloEntity::Action, "new_status", HaloEntity::Status),
    (HaloEntity::Action, "outcome_id", HaloEntity::Outcome),
    (HaloEntity::Site, "client_id", HaloEntity::Client),
    (HaloEntity::Asset, "client_id", HaloEntity::Client),
    (HaloEntity::Asset, "site_id", HaloEntity::Site),
    (HaloEntity::Asset, "assettype_id", HaloEntity::AssetType),
    (HaloEntity::AssetType, "assetgroup_id", HaloEntity::AssetGroup),
    (HaloEntity::User, "client_id", HaloEntity::Client),
    (HaloEntity::User, "site_id", HaloEntity::Site),
];

/// Fields a create must carry.
const REQUIRED: &[(HaloEntity, &str)] = &[
    (HaloEntity::Ticket, "summary"),
    (HaloEntity::Action, "ticket_id"),
    (HaloEntity::Client, "name"),
    (HaloEntity::Site, "name"),
    (HaloEntity::Site, "client_id"),
    (HaloEntity::Asset, "assettype_id"),
    (HaloEntity::AssetType, "name"),
];

pub(crate) struct Store {
    tables: BTreeMap<HaloEntity, Vec<Record>>,
    pub closed_statuses: Vec<i64>,
    /// Generated GUIDs so far.
    guids: i64,
}

impl Store {
    pub fn new(seed: &[(HaloEntity, Value)], closed_statuses: Vec<i64>) -> Self {
        let mut store = Self {
            tables: BTreeMap::new(),
            closed_statuses,
            guids: 0,
        };
        for (entity, value) in seed {
            if let Some(map) = value.as_object() {
                store.table_mut(*entity).push(map.clone());
            }
        }
        store
    }

    pub fn table(&self, entity: HaloEntity) -> &[Record] {
        self.tables.get(&entity).map_or(&[], Vec::as_slice)
    }

    fn table_mut(&mut self, entity: HaloEntity) -> &mut Vec<Record> {
        self.tables.entry(entity).or_default()
    }

    /// The record with this id (for priorities, the GUID `id` or the integer `priorityid`).
    pub fn find(&self, entity: HaloEntity, id: &str) -> Option<&Record> {
        self.position(entity, id).map(|i| &self.table(entity)[i])
    }

    fn position(&self, entity: HaloEntity, id: &str) -> Option<usize> {
        let id = id.trim();
        self.table(entity).iter().position(|r| {
            id_text(r).is_some_and(|t| t.eq_ignore_ascii_case(id))
                || (entity == HaloEntity::Priority && int(r.get("priorityid")).is_some_and(|p| p.to_string() == id))
        })
    }

    /// Action `id` of ticket `ticket_id` (action ids count per ticket, as in Halo).
    pub fn find_action(&self, ticket_id: i64, id: i64) -> Option<&Record> {
        self.table(HaloEntity::Action)
            .iter()
            .find(|a| int(a.get("ticket_id")) == Some(ticket_id) && int(a.get("id")) == Some(id))
    }

    pub fn is_closed(&self, status_id: i64) -> bool {
        self.closed_statuses.contains(&status_id)
    }

    /// The outcome with this name (case-insensitive).
    pub fn outcome_by_name(&self, name: &str) -> Option<&Record> {
        self.table(HaloEntity::Outcome).iter().find(|o| {
            o.get("outcome")
                .and_then(Value::as_str)
                .is_some_and(|n| n.trim().eq_ignore_ascii_case(name.trim()))
        })
    }

    /// Checks a whole batch, then writes it; answers the records written (rendered), in order.
    pub fn upsert(&mut self, entity: HaloEntity, items: Vec<Record>, actor: &Actor) -> Result<Vec<Value>, Vec<String>> {
        let mut errors = Vec::new();
        for (i, item) in items.iter().enumerate() {
            for e in self.check(entity, item) {
                errors.push(format!("[{i}]: {e}"));
            }
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        let mut written = Vec::new();
        for item in items {
            let (entity, key) = self.write(entity, item, actor);
            written.push(self.render_key(entity, &key));
        }
        Ok(written)
    }

    /// What is wrong with one element, judged against the records as they are.
    fn check(&self, entity: HaloEntity, item: &Record) -> Vec<String> {
        let mut errors = Vec::new();
        let existing = self.existing(entity, item);
        let target = match existing {
            Ok(Some(i)) => Some(&self.table(entity)[i]),
            Ok(None) => None,
            Err(e) => return vec![e],
        };
        if target.is_none() {
            for (_, field) in REQUIRED.iter().filter(|(e, _)| *e == entity) {
                if item
                    .get(*field)
                    .is_none_or(|v| v.is_null() || v.as_str().is_some_and(|s| s.trim().is_empty()))
                {
                    errors.push(format!("'{field}' is required to create a {}", entity.segment()));
                }
            }
        }
        for (_, field, to) in REFERENCES.iter().filter(|(e, _, _)| *e == entity) {
            if let Some(id) = reference(item, field) {
                if self.find(*to, &id.to_string()).is_none() {
                    errors.push(format!("'{field}' {id}: no {} with that id", to.segment()));
                }
            }
        }
        if let Some(site) = reference(item, "site_id").and_then(|s| self.find(HaloEntity::Site, &s.to_string())) {
            let client = reference(item, "client_id").or_else(|| target.and_then(|t| reference(t, "client_id")));
            let site_client = reference(site, "client_id");
            if reference(item, "client_id").is_some() && client != site_client {
                errors.push(format!(
                    "site {} belongs to client {}, not {}",
                    reference(site, "id").unwrap_or_default(),
                    site_client.unwrap_or_default(),
                    client.unwrap_or_default()
                ));
            }
        }
        if entity == HaloEntity::Ticket {
            errors.extend(self.check_ticket_user(item, target));
        }
        if entity == HaloEntity::Asset {
            errors.extend(self.check_asset_fields(item, target));
        }
        if entity == HaloEntity::Action {
            if let Some(name) = item.get("outcome").and_then(Value::as_str) {
                if self.outcome_by_name(name).is_none() {
                    errors.push(format!("'outcome' '{name}': no Outcome with that name"));
                }
            }
        }
        errors
    }

    /// A ticket's user belongs to one site of one client, and a ticket's user comes from the
    /// ticket's site: a user of another client or site is refused (Halo would re-place the
    /// ticket under the user's client, or refuse it).
    fn check_ticket_user(&self, item: &Record, target: Option<&Record>) -> Option<String> {
        let given = |f: &str| reference(item, f).or_else(|| target.and_then(|t| reference(t, f)));
        let user_id = given("user_id")?;
        let user = self.find(HaloEntity::User, &user_id.to_string())?;
        let site = given("site_id");
        let client = given("client_id").or_else(|| {
            site.and_then(|s| self.find(HaloEntity::Site, &s.to_string()))
                .and_then(|s| reference(s, "client_id"))
        });
        let (user_client, user_site) = (reference(user, "client_id"), reference(user, "site_id"));
        if client.is_some() && user_client != client {
            return Some(format!(
                "user {user_id} belongs to client {}, not the ticket's client {}",
                user_client.unwrap_or_default(),
                client.unwrap_or_default()
            ));
        }
        if site.is_some() && user_site.is_some() && user_site != site {
            return Some(format!(
                "user {user_id} belongs to site {}, not the ticket's site {}",
                user_site.unwrap_or_default(),
                site.unwrap_or_default()
            ));
        }
        None
    }

    /// The asset type's fields, `(field id, name)`, and its key fields' ids in order.
    fn type_layout(&self, type_id: Option<i64>) -> (Vec<(i64, String)>, [Option<i64>; 3]) {
        let Some(t) = type_id.and_then(|t| self.find(HaloEntity::AssetType, &t.to_string())) else {
            return (vec![], [None; 3]);
        };
        let fields = t
            .get("fields")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|f| {
                let f = f.as_object()?;
                let id = reference(f, "field_id").or_else(|| reference(f, "id"))?;
                Some((
                    id,
                    f.get("field_name")
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_owned(),
                ))
            })
            .collect();
        let keys = ["keyfield_id", "keyfield2_id", "keyfield3_id"].map(|k| reference(t, k));
        (fields, keys)
    }

    /// The field of `layout` an asset's `fields[]` item names, by `id`, else by `name`.
    fn layout_field<'l>(layout: &'l [(i64, String)], item: &Value) -> Option<&'l (i64, String)> {
        let id = int(item.get("id")).filter(|i| *i > 0);
        let name = item.get("name").and_then(Value::as_str);
        layout.iter().find(|(fid, fname)| match (id, name) {
            (Some(id), _) => *fid == id,
            (None, Some(n)) => fname.eq_ignore_ascii_case(n.trim()),
            (None, None) => false,
        })
    }

    /// An asset's `fields[]` items must each be a field of its asset type (by id or name).
    fn check_asset_fields(&self, item: &Record, target: Option<&Record>) -> Vec<String> {
        let Some(given) = item.get("fields").and_then(Value::as_array) else {
            return vec![];
        };
        let type_id = reference(item, "assettype_id").or_else(|| target.and_then(|t| reference(t, "assettype_id")));
        let (layout, _) = self.type_layout(type_id);
        let names: Vec<&str> = layout.iter().map(|(_, n)| n.as_str()).collect();
        given
            .iter()
            .enumerate()
            .filter(|(_, f)| Self::layout_field(&layout, f).is_none())
            .map(|(j, f)| {
                format!(
                    "fields[{j}]: {} is not a field of asset type {} (its fields: {})",
                    f.get("id").or_else(|| f.get("name")).unwrap_or(&Value::Null),
                    type_id.unwrap_or_default(),
                    names.join(", ")
                )
            })
            .collect()
    }

    /// An asset's identity as Halo keeps it: the values are `fields[]` items (merged by field
    /// id into what the asset has), and `key_field`, `key_field2`, `key_field3` are only the
    /// display values of its type's key fields, so a write of those is not kept.
    fn keep_asset_fields(&self, item: &mut Record, existing: Option<&Record>) {
        for k in ["key_field", "key_field2", "key_field3"] {
            item.remove(k);
        }
        let type_id = reference(item, "assettype_id").or_else(|| existing.and_then(|t| reference(t, "assettype_id")));
        let (layout, keys) = self.type_layout(type_id);
        let mut fields: Vec<Value> = existing
            .and_then(|e| e.get("fields"))
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        for given in item.get("fields").and_then(Value::as_array).into_iter().flatten() {
            let Some((id, name)) = Self::layout_field(&layout, given) else {
                continue;
            };
            let value = given.get("value").cloned().unwrap_or(Value::Null);
            let display = match &value {
                Value::String(s) => s.clone(),
                Value::Null => String::new(),
                other => other.to_string(),
            };
            fields.retain(|f| int(f.get("id")) != Some(*id));
            fields.push(json!({"id": id, "name": name, "value": value, "display": display}));
        }
        for (k, key) in ["key_field", "key_field2", "key_field3"].into_iter().zip(keys) {
            let shown = key
                .and_then(|key| fields.iter().find(|f| int(f.get("id")) == Some(key)))
                .and_then(|f| f.get("display").cloned())
                .unwrap_or_else(|| "".into());
            item.insert(k.into(), shown);
        }
        item.insert("fields".into(), Value::Array(fields));
    }

    /// The index of the record an element updates (`None`: it creates one), or why it cannot.
    fn existing(&self, entity: HaloEntity, item: &Record) -> Result<Option<usize>, String> {
        let Some(id) = id_text(item) else {
            return Ok(None);
        };
        let found = if entity == HaloEntity::Action {
            let Some(ticket) = reference(item, "ticket_id") else {
                return Err("an action update needs 'ticket_id' (action ids count per ticket)".into());
            };
            let n = int(item.get("id")).unwrap_or_default();
            self.table(entity)
                .iter()
                .position(|a| int(a.get("ticket_id")) == Some(ticket) && int(a.get("id")) == Some(n))
        } else {
            self.position(entity, &id)
        };
        found
            .map(Some)
            .ok_or_else(|| format!("'id' {id}: no {} with that id to update", entity.segment()))
    }

    /// Writes one checked element; answers where it went.
    fn write(&mut self, entity: HaloEntity, mut item: Record, actor: &Actor) -> (HaloEntity, String) {
        // A site given without its client takes the site's client, as Halo derives it.
        if let Some(site) = reference(&item, "site_id").and_then(|s| self.find(HaloEntity::Site, &s.to_string())) {
            if reference(&item, "client_id").is_none() && matches!(entity, HaloEntity::Ticket | HaloEntity::Asset) {
                if let Some(c) = reference(site, "client_id") {
                    item.insert("client_id".into(), c.into());
                }
            }
        }
        let index = self.existing(entity, &item).ok().flatten();
        if entity == HaloEntity::Asset {
            let existing = index.map(|i| self.table(entity)[i].clone());
            self.keep_asset_fields(&mut item, existing.as_ref());
        }
        if entity == HaloEntity::Action {
            self.complete_action(&mut item, index.is_none(), actor);
        }
        let index = match index {
            Some(i) => {
                item.remove("id");
                let rec = &mut self.table_mut(entity)[i];
                rec.extend(item);
                i
            }
            None => {
                let fresh = self.create(entity, item);
                self.table_mut(entity).push(fresh);
                self.table(entity).len() - 1
            }
        };
        let rec = self.table(entity)[index].clone();
        match entity {
            HaloEntity::Ticket => self.on_ticket_written(&rec),
            HaloEntity::Action => self.on_action_written(&rec, actor),
            _ => {}
        }
        let key = if entity == HaloEntity::Action {
            format!(
                "{}/{}",
                reference(&rec, "ticket_id").unwrap_or_default(),
                reference(&rec, "id").unwrap_or_default()
            )
        } else {
            id_text(&rec).unwrap_or_default()
        };
        (entity, key)
    }

    /// A new record: its id and Halo's defaults.
    fn create(&mut self, entity: HaloEntity, mut item: Record) -> Record {
        let now = now_text();
        if entity.string_id() {
            self.guids += 1;
            item.insert("id".into(), guid(self.guids + 0xA000).into());
            if entity == HaloEntity::Priority && reference(&item, "priorityid").is_none() {
                let next = self.next_int(entity, "priorityid");
                item.insert("priorityid".into(), next.into());
            }
        } else if entity == HaloEntity::Action {
            let ticket = reference(&item, "ticket_id");
            let next = self
                .table(entity)
                .iter()
                .filter(|a| reference(a, "ticket_id") == ticket)
                .filter_map(|a| int(a.get("id")))
                .max()
                .unwrap_or(0)
                + 1;
            item.insert("id".into(), next.into());
        } else {
            let next = self.next_int(entity, "id");
            item.insert("id".into(), next.into());
        }
        if entity.has_inactive() {
            item.entry("inactive").or_insert(false.into());
        }
        if entity == HaloEntity::Ticket {
            let first = |e: HaloEntity| self.table(e).first().and_then(|r| reference(r, "id"));
            if reference(&item, "tickettype_id").is_none() {
                if let Some(t) = first(HaloEntity::TicketType) {
                    item.insert("tickettype_id".into(), t.into());
                }
            }
            if reference(&item, "status_id").is_none() {
                if let Some(s) = first(HaloEntity::Status) {
                    item.insert("status_id".into(), s.into());
                }
            }
            if reference(&item, "priority_id").is_none() {
                let default = reference(&item, "tickettype_id")
                    .and_then(|t| self.find(HaloEntity::TicketType, &t.to_string()))
                    .and_then(|t| reference(t, "default_priority"));
                if let Some(p) = default {
                    item.insert("priority_id".into(), p.into());
                }
            }
            item.entry("datecreated").or_insert(now.clone().into());
            item.entry("dateoccurred").or_insert(now.into());
            item.entry("hasbeenclosed").or_insert(false.into());
        }
        item
    }

    fn next_int(&self, entity: HaloEntity, field: &str) -> i64 {
        let max = self
            .table(entity)
            .iter()
            .filter_map(|r| int(r.get(field)))
            .max()
            .unwrap_or(0);
        (max + 1).max(entity.first_id())
    }

    /// An action's author, time, and both spellings of its outcome and new status.
    fn complete_action(&self, item: &mut Record, creating: bool, actor: &Actor) {
        if creating {
            item.insert("who".into(), actor.name.clone().into());
            item.entry("datetime").or_insert(now_text().into());
            match actor.user_id {
                // An end user's action names the user and no agent.
                Some(user) => {
                    item.insert("who_agentid".into(), 0.into());
                    item.insert("actionby_agent_id".into(), 0.into());
                    item.insert("actionby_user_id".into(), user.into());
                    item.insert("who_type".into(), 2.into());
                }
                None => {
                    item.insert("who_agentid".into(), actor.agent_id.into());
                    item.insert("actionby_agent_id".into(), actor.agent_id.into());
                    item.insert("who_type".into(), 1.into());
                }
            }
        }
        let outcome = match (
            item.get("outcome").and_then(Value::as_str),
            reference(item, "outcome_id"),
        ) {
            (Some(name), _) => self.outcome_by_name(name),
            (None, Some(id)) => self.find(HaloEntity::Outcome, &id.to_string()),
            _ => None,
        };
        if let Some(o) = outcome.cloned() {
            item.insert("outcome".into(), o.get("outcome").cloned().unwrap_or_default());
            item.insert("outcome_id".into(), o.get("id").cloned().unwrap_or_default());
        }
        if let Some(s) = reference(item, "new_status").and_then(|s| self.find(HaloEntity::Status, &s.to_string())) {
            item.insert("new_status_name".into(), s.get("name").cloned().unwrap_or_default());
        }
        if let Some(html) = item
            .get("note_html")
            .and_then(Value::as_str)
            .filter(|_| !item.contains_key("note"))
        {
            let text = html.replace("<br>", "\n").replace("<br/>", "\n");
            item.insert("note".into(), strip_tags(&text).into());
        }
    }

    /// A ticket written is stamped `last_update`; one closed for the first time is marked
    /// `hasbeenclosed` (it stays set on reopen).
    fn on_ticket_written(&mut self, rec: &Record) {
        let id = id_text(rec).unwrap_or_default();
        if let Some(i) = self.position(HaloEntity::Ticket, &id) {
            self.table_mut(HaloEntity::Ticket)[i].insert("last_update".into(), now_text().into());
        }
        if reference(rec, "status_id").is_some_and(|s| self.is_closed(s)) {
            let id = id_text(rec).unwrap_or_default();
            if let Some(i) = self.position(HaloEntity::Ticket, &id) {
                self.table_mut(HaloEntity::Ticket)[i].insert("hasbeenclosed".into(), true.into());
            }
        }
    }

    /// An action with `new_status` changes its ticket's status; closing records the closure.
    fn on_action_written(&mut self, action: &Record, actor: &Actor) {
        let Some(ticket_id) = reference(action, "ticket_id") else {
            return;
        };
        let Some(i) = self.position(HaloEntity::Ticket, &ticket_id.to_string()) else {
            return;
        };
        let new_status = reference(action, "new_status");
        let closing = new_status.is_some_and(|s| self.is_closed(s));
        let ticket = &mut self.table_mut(HaloEntity::Ticket)[i];
        ticket.insert(
            "lastactiondate".into(),
            action.get("datetime").cloned().unwrap_or_default(),
        );
        ticket.insert("last_update".into(), now_text().into());
        if let Some(status) = new_status {
            ticket.insert("status_id".into(), status.into());
        }
        if closing {
            ticket.insert("hasbeenclosed".into(), true.into());
            ticket.insert("closure_agent_id".into(), actor.agent_id.into());
            if let Some(note) = action.get("note") {
                ticket.insert("closure_note".into(), note.clone());
            }
        }
    }

    /// Deletes a record; false when there is none.
    pub fn delete(&mut self, entity: HaloEntity, id: &str, ticket_id: Option<i64>) -> bool {
        let index = if entity == HaloEntity::Action {
            let n: i64 = id.parse().unwrap_or_default();
            self.table(entity).iter().position(|a| {
                int(a.get("id")) == Some(n) && ticket_id.is_none_or(|t| reference(a, "ticket_id") == Some(t))
            })
        } else {
            self.position(entity, id)
        };
        index.map(|i| self.table_mut(entity).remove(i)).is_some()
    }

    fn render_key(&self, entity: HaloEntity, key: &str) -> Value {
        let rec = if entity == HaloEntity::Action {
            let (t, a) = key.split_once('/').unwrap_or_default();
            self.find_action(t.parse().unwrap_or_default(), a.parse().unwrap_or_default())
        } else {
            self.find(entity, key)
        };
        rec.map_or(Value::Null, |r| self.render(entity, r))
    }

    /// A record as the API answers it: as stored, plus the names of what it refers to.
    pub fn render(&self, entity: HaloEntity, rec: &Record) -> Value {
        let mut out = rec.clone();
        let name_of = |e: HaloEntity, field: &str| -> Option<Value> {
            let id = reference(rec, field)?;
            self.find(e, &id.to_string())?.get(e.name_field()).cloned()
        };
        let names: &[(&str, HaloEntity, &str)] = match entity {
            HaloEntity::Ticket => &[
                ("client_id", HaloEntity::Client, "client_name"),
                ("site_id", HaloEntity::Site, "site_name"),
                ("user_id", HaloEntity::User, "user_name"),
                ("agent_id", HaloEntity::Agent, "agent_name"),
                ("status_id", HaloEntity::Status, "status_name"),
                ("priority_id", HaloEntity::Priority, "priority_name"),
                ("tickettype_id", HaloEntity::TicketType, "tickettype_name"),
            ],
            HaloEntity::Site | HaloEntity::User => &[
                ("client_id", HaloEntity::Client, "client_name"),
                ("site_id", HaloEntity::Site, "site_name"),
            ],
            HaloEntity::Asset => &[
                ("client_id", HaloEntity::Client, "client_name"),
                ("site_id", HaloEntity::Site, "site_name"),
                ("assettype_id", HaloEntity::AssetType, "assettype_name"),
            ],
            HaloEntity::AssetType => &[("assetgroup_id", HaloEntity::AssetGroup, "assetgroup_name")],
            _ => &[],
        };
        for (field, e, name) in names {
            if let Some(v) = name_of(*e, field) {
                out.insert((*name).to_owned(), v);
            }
        }
        Value::Object(out)
    }
}

/// Plain text of a small HTML fragment.
fn strip_tags(html: &str) -> String {
    let mut out = String::new();
    let mut in_tag = false;
    for c in html.chars() {
        match c {
            '<' => in_tag = true,
            '>' => in_tag = false,
            c if !in_tag => out.push(c),
            _ => {}
        }
    }
    out
}

/// The answer to a GET of one record, or (status, reason).
pub(crate) fn get_one(
    store: &Store,
    entity: HaloEntity,
    id: &str,
    ticket_id: Option<i64>,
) -> Result<Value, (u16, String)> {
    let rec = if entity == HaloEntity::Action {
        let Some(t) = ticket_id else {
            return Err((
                400,
                "GET /Actions/{id} needs 'ticket_id': action ids count per ticket".into(),
            ));
        };
        store.find_action(t, id.parse().unwrap_or_default())
    } else {
        store.find(entity, id)
    };
    rec.map(|r| store.render(entity, r))
        .ok_or_else(|| (404, format!("no {} with id {id}", entity.segment())))
}

/// The JSON answer to a refused request.
pub(crate) fn refusal_body(status: u16, errors: &[String]) -> Value {
    json!({
        "status": status,
        "title": errors.first().cloned().unwrap_or_default(),
        "errors": errors,
    })
}
