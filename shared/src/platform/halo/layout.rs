//! An asset type's layout as Halo keeps it (its fields and key fields), and the layouts one
//! adapter has read: shared by the ticket adapter, which holds them, and the asset sync, which
//! reads and uses them.

use std::collections::HashMap;
use std::sync::Arc;

use serde_json::Value;

use super::client::as_id;

/// The settings' names for an asset type's three key fields, in order.
pub const KEY_FIELD_TARGETS: [&str; 3] = ["key_field", "key_field2", "key_field3"];

/// An asset type's fields as Halo keeps them: `(field id, name)`, and its key fields' ids.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TypeLayout {
    pub id: i64,
    pub name: String,
    pub fields: Vec<(i64, String)>,
    pub keys: [Option<i64>; 3],
}

impl TypeLayout {
    /// Reads an asset type as `GET /AssetType/{id}` answers it.
    pub fn of(t: &Value) -> Self {
        let fields = t
            .get("fields")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|f| {
                let id = f.get("field_id").and_then(as_id).filter(|i| *i > 0)?;
                let name = ["field_name", "name"]
                    .iter()
                    .find_map(|k| f.get(*k).and_then(Value::as_str))
                    .unwrap_or_default();
                Some((id, name.to_owned()))
            })
            .collect();
        let key = |k: &str| t.get(k).and_then(as_id).filter(|i| *i > 0);
        Self {
            id: t.get("id").and_then(as_id).unwrap_or_default(),
            name: t.get("name").and_then(Value::as_str).unwrap_or_default().to_owned(),
            fields,
            keys: [key("keyfield_id"), key("keyfield2_id"), key("keyfield3_id")],
        }
    }

    /// The field id a settings target names: `key_field`, `key_field2`, `key_field3` (the
    /// type's key fields) or `field:<name>`; `Err` says why there is none, `Ok(None)` for a
    /// target that is not a type field (`custom:`, `notes`, ...).
    pub fn field_for(&self, target: &str) -> Result<Option<i64>, String> {
        if let Some(n) = KEY_FIELD_TARGETS.iter().position(|k| *k == target) {
            return self.keys[n].map(Some).ok_or_else(|| {
                format!(
                    "asset type {} has no key field {} (its fields: {})",
                    self.name,
                    n + 1,
                    self.names()
                )
            });
        }
        let Some(name) = target.strip_prefix("field:") else {
            return Ok(None);
        };
        self.fields
            .iter()
            .find(|(_, n)| n.trim().eq_ignore_ascii_case(name.trim()))
            .map(|(id, _)| Some(*id))
            .ok_or_else(|| {
                format!(
                    "asset type {} has no field {name:?} (its fields: {})",
                    self.name,
                    self.names()
                )
            })
    }

    fn names(&self) -> String {
        self.fields
            .iter()
            .map(|(_, n)| n.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// Whether `field` is one of the type's key fields (the ones Halo's asset search and list
    /// rows show).
    pub fn is_key(&self, field: i64) -> bool {
        self.keys.contains(&Some(field))
    }
}

/// Asset type layouts read so far by one adapter.
pub(super) type Layouts = std::sync::Mutex<HashMap<i64, Arc<TypeLayout>>>;
/// The asset type list one adapter has read (`None`: not yet, or a type was created since).
pub(super) type Types = std::sync::Mutex<Option<Arc<Vec<Value>>>>;
/// One sync run's view of the assets of each match scope (client, and site where mapped).
pub(super) type Scopes = std::sync::Mutex<RunAssets>;

/// The assets one run knows, by match scope.
#[derive(Debug, Default)]
pub(super) struct RunAssets {
    /// Exact lookups made so far in the run, in any scope.
    pub looked: u32,
    /// The scopes listed so far, with the assets the run created or updated in them since.
    pub listed: HashMap<(i64, Option<i64>), Vec<Value>>,
}
