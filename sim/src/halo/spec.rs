//! Halo's own OpenAPI 3.0.1 document (the vendored subset), parsed once, and the checks the fake
//! makes against it before it does anything: the path (matched case-insensitively, as Halo's
//! routing does, with its `{id}` parameters) and method are declared, every query parameter is
//! declared for that operation (Halo's spellings) and parses as its declared type, and a body is
//! a JSON array whose elements carry only declared fields of the declared JSON types.
//!
//! The document's paths carry no `/api` prefix (its `servers` entry is `/api`): callers pass the
//! path after `/api`.

use std::sync::OnceLock;

use serde_json::{Map, Value};

/// The vendored document, relative to the sim crate.
const DOCUMENT: &str = include_str!("../../../tests/fixtures/halo-openapi/halo_api_v2_subset.json");

/// A query parameter type as the document spells it (`int`, `bool`, `double`, `List<int>`,
/// `string`; the standard `integer`/`boolean`/`number` too).
#[derive(Debug, Clone, Copy, PartialEq)]
enum ParamType {
    Int,
    Bool,
    Double,
    IntList,
    Uuid,
    Text,
}

impl ParamType {
    fn of(schema: &Value) -> Self {
        match (
            schema.get("type").and_then(Value::as_str),
            schema.get("format").and_then(Value::as_str),
        ) {
            (Some("int" | "integer"), _) => Self::Int,
            (Some("bool" | "boolean"), _) => Self::Bool,
            (Some("double" | "number"), _) => Self::Double,
            (Some("List<int>"), _) => Self::IntList,
            (_, Some("uuid")) => Self::Uuid,
            _ => Self::Text,
        }
    }

    /// Whether `raw` binds to this type, as ASP.NET model binding would.
    fn accepts(self, raw: &str) -> bool {
        let raw = raw.trim();
        match self {
            Self::Int => raw.parse::<i32>().is_ok(),
            Self::Bool => raw.eq_ignore_ascii_case("true") || raw.eq_ignore_ascii_case("false"),
            Self::Double => raw.parse::<f64>().is_ok_and(f64::is_finite),
            Self::IntList => raw.split(',').all(|p| p.trim().parse::<i32>().is_ok()),
            Self::Uuid => is_uuid(raw),
            Self::Text => true,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Self::Int => "an integer",
            Self::Bool => "a boolean (true or false)",
            Self::Double => "a number",
            Self::IntList => "a comma-separated list of integers",
            Self::Uuid => "a GUID",
            Self::Text => "a string",
        }
    }
}

fn is_uuid(s: &str) -> bool {
    let parts: Vec<&str> = s.split('-').collect();
    parts.iter().map(|p| p.len()).eq([8, 4, 4, 4, 12]) && parts.iter().all(|p| p.chars().all(|c| c.is_ascii_hexdigit()))
}

/// Path parameters: (the document's name, the value).
type Params = Vec<(String, String)>;

enum Segment {
    Literal(String),
    Param(String, ParamType),
}

struct Operation {
    /// Declared query parameters: (name, type); names compared case-insensitively.
    query: Vec<(String, ParamType)>,
    /// The request body schema (`{"type": "array", "items": {"$ref": ...}}`), if any.
    body: Option<Value>,
}

struct Route {
    /// The document's spelling, e.g. `/Tickets/{id}`.
    template: String,
    segments: Vec<Segment>,
    /// (upper-case method, operation).
    operations: Vec<(String, Operation)>,
}

/// The parsed document.
pub(crate) struct Spec {
    schemas: Map<String, Value>,
    routes: Vec<Route>,
}

/// A request that matched a declared operation.
pub(crate) struct Matched<'a> {
    /// The document's path template, e.g. `/Tickets/{id}`.
    pub template: &'a str,
    /// Path parameters, by the document's names.
    pub params: Vec<(String, String)>,
    op: &'a Operation,
}

impl Matched<'_> {
    /// Whether the operation declares a body.
    pub fn has_body(&self) -> bool {
        self.op.body.is_some()
    }
}

impl Spec {
    /// The vendored document, parsed on first use.
    pub(crate) fn get() -> &'static Spec {
        static SPEC: OnceLock<Spec> = OnceLock::new();
        SPEC.get_or_init(|| Spec::parse(DOCUMENT).expect("the vendored Halo document parses"))
    }

    fn parse(text: &str) -> Result<Self, String> {
        let doc: Value = serde_json::from_str(text).map_err(|e| e.to_string())?;
        let schemas = doc
            .pointer("/components/schemas")
            .and_then(Value::as_object)
            .cloned()
            .ok_or("no components.schemas")?;
        let paths = doc.get("paths").and_then(Value::as_object).ok_or("no paths")?;
        let mut routes = Vec::new();
        for (template, item) in paths {
            let item = item.as_object().ok_or("path item is not an object")?;
            let mut operations = Vec::new();
            let mut path_types = Vec::new();
            for (method, op) in item {
                let mut query = Vec::new();
                for p in op.get("parameters").and_then(Value::as_array).into_iter().flatten() {
                    let name = p.get("name").and_then(Value::as_str).unwrap_or_default().to_owned();
                    let ty = ParamType::of(p.get("schema").unwrap_or(&Value::Null));
                    match p.get("in").and_then(Value::as_str) {
                        Some("query") => query.push((name, ty)),
                        Some("path") => path_types.push((name, ty)),
                        _ => {}
                    }
                }
                let body = op.pointer("/requestBody/content/application~1json/schema").cloned();
                operations.push((method.to_ascii_uppercase(), Operation { query, body }));
            }
            let segments = template
                .split('/')
                .filter(|s| !s.is_empty())
                .map(|s| match s.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
                    Some(name) => {
                        let ty = path_types
                            .iter()
                            .find(|(n, _)| n == name)
                            .map_or(ParamType::Text, |(_, t)| *t);
                        Segment::Param(name.to_owned(), ty)
                    }
                    None => Segment::Literal(s.to_owned()),
                })
                .collect();
            routes.push(Route {
                template: template.clone(),
                segments,
                operations,
            });
        }
        Ok(Self { schemas, routes })
    }

    /// The declared operation for `method` on `path` (the path after `/api`).
    pub(crate) fn route(&self, method: &str, path: &str) -> Result<Matched<'_>, String> {
        let parts: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
        let mut best: Option<(usize, &Route, Params)> = None;
        let mut bad_param = None;
        for route in self.routes.iter().filter(|r| r.segments.len() == parts.len()) {
            let mut literals = 0;
            let mut params = Vec::new();
            let mut fits = true;
            for (seg, part) in route.segments.iter().zip(&parts) {
                match seg {
                    Segment::Literal(l) if l.eq_ignore_ascii_case(part) => literals += 1,
                    Segment::Literal(_) => fits = false,
                    Segment::Param(name, ty) => {
                        if !ty.accepts(part) {
                            bad_param = Some(format!(
                                "path parameter '{name}' of {} must be {}, got '{part}'",
                                route.template,
                                ty.name()
                            ));
                            fits = false;
                        }
                        params.push((name.clone(), (*part).to_owned()));
                    }
                }
                if !fits {
                    break;
                }
            }
            if fits && best.as_ref().is_none_or(|(n, _, _)| literals > *n) {
                best = Some((literals, route, params));
            }
        }
        let Some((_, route, params)) = best else {
            return Err(bad_param.unwrap_or_else(|| format!("unknown path /api{path}: not in Halo's API document")));
        };
        let method = method.to_ascii_uppercase();
        let Some((_, op)) = route.operations.iter().find(|(m, _)| *m == method) else {
            let declared: Vec<&str> = route.operations.iter().map(|(m, _)| m.as_str()).collect();
            return Err(format!(
                "method {method} is not declared for {} (declared: {})",
                route.template,
                declared.join(", ")
            ));
        };
        Ok(Matched {
            template: &route.template,
            params,
            op,
        })
    }

    /// Problems with the query parameters, one line each (empty when they are all declared and
    /// well typed).
    pub(crate) fn check_query(&self, m: &Matched<'_>, method: &str, query: &[(String, String)]) -> Vec<String> {
        let mut errors = Vec::new();
        for (name, value) in query {
            match m.op.query.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)) {
                None => errors.push(format!("unknown query parameter '{name}' for {method} {}", m.template)),
                Some((n, ty)) if !ty.accepts(value) => {
                    errors.push(format!("query parameter '{n}' must be {}, got '{value}'", ty.name()));
                }
                Some(_) => {}
            }
        }
        errors
    }

    /// The body's elements, with top-level field names in the document's spelling (Halo binds
    /// them case-insensitively), or the problems found, one line each.
    pub(crate) fn check_body(&self, m: &Matched<'_>, body: &[u8]) -> Result<Vec<Map<String, Value>>, Vec<String>> {
        let Some(schema) = &m.op.body else {
            return Ok(Vec::new());
        };
        let value: Value =
            serde_json::from_slice(body).map_err(|e| vec![format!("the body is not valid JSON: {e}")])?;
        let item_schema = self.resolve(schema.get("items").unwrap_or(&Value::Null));
        let entity = schema
            .pointer("/items/$ref")
            .and_then(Value::as_str)
            .and_then(|r| r.rsplit('/').next())
            .unwrap_or("object");
        let Value::Array(items) = value else {
            return Err(vec![format!(
                "the body must be a JSON array of {entity} (Halo's writes take an array), got {}",
                kind(&value)
            )]);
        };
        let mut errors = Vec::new();
        let mut out = Vec::new();
        for (i, item) in items.into_iter().enumerate() {
            let at = format!("[{i}]");
            self.check_value(item_schema, &item, &at, &mut errors);
            if let Value::Object(map) = item {
                out.push(self.canonical(item_schema, map));
            }
        }
        if errors.is_empty() { Ok(out) } else { Err(errors) }
    }

    /// Renames top-level keys to the schema's spelling.
    fn canonical(&self, schema: &Value, map: Map<String, Value>) -> Map<String, Value> {
        let props = self.properties(schema);
        map.into_iter()
            .map(|(k, v)| {
                let name = props
                    .iter()
                    .find(|(n, _)| n.eq_ignore_ascii_case(&k))
                    .map_or(k, |(n, _)| (*n).to_owned());
                (name, v)
            })
            .collect()
    }

    /// Follows `$ref` (local `#/components/schemas/...` only).
    fn resolve<'a>(&'a self, schema: &'a Value) -> &'a Value {
        let mut s = schema;
        for _ in 0..16 {
            match s.get("$ref").and_then(Value::as_str) {
                Some(r) => {
                    let name = r.rsplit('/').next().unwrap_or_default();
                    match self.schemas.get(name) {
                        Some(t) => s = t,
                        None => return &Value::Null,
                    }
                }
                None => return s,
            }
        }
        s
    }

    /// The declared properties of an object schema, `allOf` parts merged.
    fn properties<'a>(&'a self, schema: &'a Value) -> Vec<(&'a str, &'a Value)> {
        let schema = self.resolve(schema);
        let mut out: Vec<(&str, &Value)> = schema
            .get("properties")
            .and_then(Value::as_object)
            .into_iter()
            .flatten()
            .map(|(k, v)| (k.as_str(), v))
            .collect();
        for part in schema.get("allOf").and_then(Value::as_array).into_iter().flatten() {
            out.extend(self.properties(part));
        }
        out
    }

    /// Whether the object schema refuses undeclared properties (`additionalProperties: false`
    /// on it or any `allOf` part).
    fn closed(&self, schema: &Value) -> bool {
        let schema = self.resolve(schema);
        schema.get("additionalProperties") == Some(&Value::Bool(false))
            || schema
                .get("allOf")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .any(|p| self.closed(p))
    }

    fn check_value(&self, schema: &Value, value: &Value, at: &str, errors: &mut Vec<String>) {
        let by_ref = schema.get("$ref").is_some();
        let s = self.resolve(schema);
        let ty = s.get("type").and_then(Value::as_str);
        let is_object = ty == Some("object") || s.get("properties").is_some() || s.get("allOf").is_some();
        if value.is_null() {
            // Nullable where declared; a `$ref` to a class is nullable in .NET (Swashbuckle emits a
            // bare `$ref` for class-typed properties); an untyped schema accepts anything.
            let nullable = s.get("nullable") == Some(&Value::Bool(true)) || by_ref || (ty.is_none() && !is_object);
            if !nullable {
                errors.push(format!("{at}: null is not allowed (not nullable in the document)"));
            }
            return;
        }
        if let Some(allowed) = s.get("enum").and_then(Value::as_array) {
            if !allowed.contains(value) {
                errors.push(format!("{at}: {value} is not one of the declared values"));
            }
        }
        let format = s.get("format").and_then(Value::as_str);
        match ty {
            Some("integer") => {
                let fits = match format {
                    Some("int32") => value.as_i64().is_some_and(|n| i32::try_from(n).is_ok()),
                    _ => value.as_i64().is_some(),
                };
                if !fits {
                    errors.push(format!(
                        "{at}: expected an integer ({}), got {}",
                        format.unwrap_or("int"),
                        kind(value)
                    ));
                }
            }
            Some("number") if !value.is_number() => {
                errors.push(format!("{at}: expected a number, got {}", kind(value)))
            }
            Some("boolean") if !value.is_boolean() => {
                errors.push(format!("{at}: expected a boolean, got {}", kind(value)));
            }
            Some("string") => match value.as_str() {
                None => errors.push(format!("{at}: expected a string, got {}", kind(value))),
                Some(text) => {
                    if format == Some("uuid") && !is_uuid(text) {
                        errors.push(format!("{at}: expected a GUID, got '{text}'"));
                    }
                    if let Some(max) = s.get("maxLength").and_then(Value::as_u64) {
                        if text.chars().count() as u64 > max {
                            errors.push(format!("{at}: longer than the declared maxLength {max}"));
                        }
                    }
                }
            },
            Some("array") => match value.as_array() {
                None => errors.push(format!("{at}: expected an array, got {}", kind(value))),
                Some(items) => {
                    let item_schema = s.get("items").unwrap_or(&Value::Null);
                    for (i, item) in items.iter().enumerate() {
                        self.check_value(item_schema, item, &format!("{at}[{i}]"), errors);
                    }
                }
            },
            _ if is_object => match value.as_object() {
                None => errors.push(format!("{at}: expected an object, got {}", kind(value))),
                Some(map) => self.check_object(s, map, at, errors),
            },
            _ => {}
        }
    }

    fn check_object(&self, s: &Value, map: &Map<String, Value>, at: &str, errors: &mut Vec<String>) {
        let props = self.properties(s);
        let extra = s.get("additionalProperties").filter(|a| a.is_object());
        for (key, v) in map {
            match props.iter().find(|(n, _)| n.eq_ignore_ascii_case(key)) {
                Some((name, p)) => self.check_value(p, v, &format!("{at}.{name}"), errors),
                None => match extra {
                    Some(schema) => self.check_value(schema, v, &format!("{at}.{key}"), errors),
                    None if self.closed(s) => {
                        errors.push(format!("{at}: unknown field '{key}' (not in the document's schema)"));
                    }
                    None => {}
                },
            }
        }
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
#[path = "spec_tests.rs"]
mod tests;
