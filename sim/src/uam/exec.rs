//! Running a checked document: apollo-compiler's executor walks the selection sets (aliases,
//! fragments, `__typename`, non-null propagation, result coercion) and calls back here for each
//! field. Root fields compute their whole result as JSON from the world; below the root every
//! object is that JSON, read by field name.

use apollo_compiler::executable::OperationType;
use apollo_compiler::resolvers::{Execution, FieldError, ObjectValue, ResolveInfo, ResolvedValue};
use apollo_compiler::response::serde_json_bytes;
use apollo_compiler::schema::ExtendedType;
use serde_json::{Map, Value, json};

use super::ctx::Ctx;
use super::filter::{self, Reach, Refusal};
use super::schema::{Checked, SCHEMA};
use super::{actions, render};

/// Key a root result sets on a JSON object to make resolving it a field error (partial data).
const FAIL: &str = "__sim_fail";

/// Most alerts one page may hold.
const MAX_FIRST: i64 = 1_000;

/// Runs the operation; the answer is the GraphQL response body (`data` and maybe `errors`).
pub(crate) fn execute(ctx: &Ctx<'_>, checked: &Checked) -> Value {
    let run = || -> Result<Value, apollo_compiler::request::RequestError> {
        let operation = checked.document.operations.get(checked.operation_name.as_deref())?;
        let root = Root {
            ty: match operation.operation_type {
                OperationType::Mutation => "Mutation",
                _ => "Query",
            },
            ctx,
        };
        let response = Execution::new(&SCHEMA, &checked.document)
            .operation(operation)
            .coerced_variable_values(&checked.variables)
            .execute_sync(&root)?;
        Ok(serde_json::to_value(&response).unwrap_or(Value::Null))
    };
    match run() {
        Ok(v) => v,
        Err(e) => {
            json!({"errors": [serde_json::to_value(e.to_graphql_error(&checked.document.sources)).unwrap_or(Value::Null)]})
        }
    }
}

struct Root<'r, 'c> {
    ty: &'static str,
    ctx: &'r Ctx<'c>,
}

fn args(info: &ResolveInfo<'_>) -> Value {
    serde_json::to_value(info.arguments()).unwrap_or(Value::Null)
}

fn err(message: impl Into<String>) -> FieldError {
    FieldError {
        message: message.into(),
    }
}

impl ObjectValue for Root<'_, '_> {
    fn type_name(&self) -> &str {
        self.ty
    }

    fn resolve_field<'a>(&'a self, info: &'a ResolveInfo<'a>) -> Result<ResolvedValue<'a>, FieldError> {
        let a = args(info);
        let name = info.field_name();
        let value = match name {
            "alerts" => alerts(self.ctx, &a),
            "alert" => one_alert(self.ctx, &a),
            "alertNotes" => notes(self.ctx, &a),
            "alertAvailableActions" => actions::available(self.ctx, &a),
            "alertTriggerActions" => actions::trigger(self.ctx, &a),
            "addAlertNote" => actions::add_note(self.ctx, &a),
            other => Err(format!("{other} is not served by the simulator")),
        }
        .map_err(err)?;
        if self.ty == "Mutation" && self.ctx.partial.replace(false) {
            return Err(err("SERVICE_ERROR: the alert service did not answer in time"));
        }
        Ok(resolve(value, info.field_definition().ty.inner_named_type().as_str()))
    }
}

/// A JSON value as the field's declared type: objects become [`JsonObject`]s (their concrete type
/// from `__typename` when the field is a union or interface), lists element-wise, the rest leaves.
fn resolve<'a>(value: Value, named: &str) -> ResolvedValue<'a> {
    let leaf_type = matches!(
        SCHEMA.types.get(named),
        Some(ExtendedType::Scalar(_) | ExtendedType::Enum(_))
    );
    match value {
        Value::Array(items) => {
            let named = named.to_owned();
            ResolvedValue::List(Box::new(items.into_iter().map(move |i| match i {
                Value::Object(m) if m.contains_key(FAIL) => Err(err(m[FAIL].as_str().unwrap_or_default())),
                i => Ok(resolve(i, &named)),
            })))
        }
        Value::Object(map) if !leaf_type => {
            let ty = map
                .get("__typename")
                .and_then(Value::as_str)
                .unwrap_or(named)
                .to_owned();
            ResolvedValue::object(JsonObject { ty, map })
        }
        leaf => ResolvedValue::leaf(serde_json_bytes::to_value(leaf).unwrap_or_default()),
    }
}

struct JsonObject {
    ty: String,
    map: Map<String, Value>,
}

impl ObjectValue for JsonObject {
    fn type_name(&self) -> &str {
        &self.ty
    }

    fn resolve_field<'a>(&'a self, info: &'a ResolveInfo<'a>) -> Result<ResolvedValue<'a>, FieldError> {
        let ty = &info.field_definition().ty;
        let value = match self.map.get(info.field_name()) {
            Some(Value::Object(m)) if m.contains_key(FAIL) => {
                return Err(err(m[FAIL].as_str().unwrap_or_default()));
            }
            Some(v) => v.clone(),
            // Fields the simulator does not model: null where the schema allows it, an empty list
            // or object where it does not, and a field error for a required scalar.
            None if !ty.is_non_null() => Value::Null,
            None if ty.is_list() => json!([]),
            None if SCHEMA.get_object(ty.inner_named_type()).is_some() => json!({}),
            None => {
                return Err(err(format!(
                    "{}.{} is not modelled by the simulator",
                    self.ty,
                    info.field_name()
                )));
            }
        };
        Ok(resolve(value, ty.inner_named_type().as_str()))
    }
}

// ---- queries ---------------------------------------------------------------------------------

fn alerts(ctx: &Ctx<'_>, a: &Value) -> Result<Value, Refusal> {
    if !a["before"].is_null() || !a["last"].is_null() {
        return Err("Backward paging ('before', 'last') is not supported by the simulator".into());
    }
    let first = a["first"].as_i64().unwrap_or(10);
    if !(0..=MAX_FIRST).contains(&first) {
        return Err(format!("'first' must be between 0 and {MAX_FIRST}, got {first}"));
    }
    let w = ctx.console.borrow();
    let selection = filter::selection(&a["filters"], &a["orFilter"])?;
    let sorts = filter::sorts(&a["sorts"], &a["sort"])?;
    let reach = Reach::new(&ctx.token.scope, &a["scope"], &a["viewType"], &w)?;
    let hash = filter::walk_hash(&[
        &a["filters"],
        &a["orFilter"],
        &a["sorts"],
        &a["sort"],
        &a["scope"],
        &a["viewType"],
    ]);
    let after = match a["after"].as_str() {
        Some(c) => Some(filter::decode_cursor(c, hash)?),
        None => None,
    };
    let alerts = &w.uam.alerts;
    let mut hits: Vec<usize> = (0..alerts.len())
        .filter(|&i| reach.covers(&alerts[i]) && (selection.is_empty() || selection.matches(&w, &alerts[i])))
        .collect();
    let total = hits.len();
    if let Some(after) = &after {
        hits.retain(|&i| filter::compare_to_key(&alerts[i], after, &sorts).is_gt());
    }
    // Only the page (and one more, to know whether there is a next page) needs full ordering.
    let want = first as usize + 1;
    let by = |x: &usize, y: &usize| filter::compare(&alerts[*x], &alerts[*y], &sorts);
    if hits.len() > want {
        hits.select_nth_unstable_by(want - 1, by);
        hits.truncate(want);
    }
    hits.sort_by(by);
    let has_next = hits.len() > first as usize;
    hits.truncate(first as usize);
    let mut edges: Vec<Value> = hits
        .iter()
        .map(|&i| {
            let k = filter::key(&alerts[i], &sorts);
            json!({"cursor": filter::encode_cursor(hash, &k), "node": render::alert(&w, &alerts[i])})
        })
        .collect();
    if let Some(e) = edges.first_mut() {
        if ctx.partial.replace(false) {
            e["node"] = json!({ FAIL: "SURFACE_SERVER_ERROR: the detection source of this alert did not answer" });
        }
    }
    let cursor = |e: Option<&Value>| e.map_or(Value::Null, |e| e["cursor"].clone());
    Ok(json!({
        "totalCount": total,
        "pageInfo": {
            "hasNextPage": has_next,
            "hasPreviousPage": after.is_some(),
            "startCursor": cursor(edges.first()),
            "endCursor": cursor(edges.last()),
        },
        "edges": edges,
    }))
}

fn one_alert(ctx: &Ctx<'_>, a: &Value) -> Result<Value, Refusal> {
    let id = a["id"].as_str().unwrap_or_default();
    let i = ctx.visible(id)?;
    let w = ctx.console.borrow();
    let reach = Reach::new(&ctx.token.scope, &a["scope"], &json!("ALL"), &w)?;
    if !reach.covers(&w.uam.alerts[i]) {
        return Err(format!("Alert '{id}' not found"));
    }
    let mut v = render::alert(&w, &w.uam.alerts[i]);
    v["__typename"] = json!("UnifiedAlertDetail");
    // Only the detail has a link (the listing's node has none). Its real shape is not recorded;
    // this one names the alert once, on the console, as a path.
    v["selfLink"] = json!(format!("/alerts/unified/{id}/overview"));
    Ok(v)
}

fn notes(ctx: &Ctx<'_>, a: &Value) -> Result<Value, Refusal> {
    let i = ctx.visible(a["alertId"].as_str().unwrap_or_default())?;
    Ok(json!({ "data": render::notes(&ctx.console.borrow().uam.alerts[i]) }))
}
