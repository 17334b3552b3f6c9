//! Checks JSON against the vendor's Swagger 2.0 export, read at run time.
//!
//! Swagger 2.0 schemas are not JSON Schema: nullability is the `x-nullable` extension and
//! parameters have their own keywords, so this small checker implements exactly the keywords
//! the export uses (`$ref`, `type`, `x-nullable`, `enum`, `properties`, `required`, `items`,
//! `additionalProperties`, `format: date-time`, `minimum`/`maximum`).

use serde_json::Value;

use crate::fixtures_dir;

const PREFIX: &str = "/web/api/v2.1";

pub struct Swagger {
    doc: Value,
}

/// One operation of the export.
pub struct Operation<'a> {
    pub template: String,
    pub op: &'a Value,
}

impl Swagger {
    pub fn load() -> Self {
        let path = fixtures_dir().join("s1-openapi/swagger_2_1.json");
        let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
        Self {
            doc: serde_json::from_slice(&bytes).expect("swagger is JSON"),
        }
    }

    /// The operation for a concrete API path (after `/web/api/v2.1`), e.g. `/threats/123/notes`.
    pub fn operation(&self, method: &str, path: &str) -> Option<Operation<'_>> {
        let paths = self.doc["paths"].as_object()?;
        let want: Vec<&str> = path.trim_matches('/').split('/').collect();
        let mut best: Option<(usize, &String)> = None;
        for template in paths.keys() {
            let Some(rest) = template.strip_prefix(PREFIX) else {
                continue;
            };
            let segs: Vec<&str> = rest.trim_matches('/').split('/').collect();
            if segs.len() != want.len() {
                continue;
            }
            let mut literal = 0;
            let fits = segs.iter().zip(&want).all(|(t, w)| {
                if t.starts_with('{') {
                    true
                } else {
                    literal += 1;
                    t == w
                }
            });
            // Prefer the template with the most literal segments (`/threats/notes` over `/threats/{id}`).
            if fits && best.is_none_or(|(n, _)| literal > n) {
                best = Some((literal, template));
            }
        }
        let (_, template) = best?;
        let op = self.doc["paths"][template].get(method.to_ascii_lowercase())?;
        Some(Operation {
            template: template[PREFIX.len()..].to_owned(),
            op,
        })
    }

    fn resolve<'a>(&'a self, mut schema: &'a Value) -> &'a Value {
        while let Some(r) = schema.get("$ref").and_then(Value::as_str) {
            let name = r.trim_start_matches("#/definitions/");
            schema = &self.doc["definitions"][name];
        }
        schema
    }

    /// Problems with the query parameters of a request: unknown names, values outside the
    /// declared type, enum or range.
    pub fn check_query(&self, op: &Operation<'_>, pairs: &[(String, String)]) -> Vec<String> {
        let params: Vec<&Value> = op.op["parameters"]
            .as_array()
            .map(|a| a.iter().collect())
            .unwrap_or_default();
        let mut errs = Vec::new();
        for (k, v) in pairs {
            let Some(p) = params.iter().find(|p| p["in"] == "query" && p["name"] == k.as_str()) else {
                errs.push(format!("{}: query parameter {k:?} is not declared", op.template));
                continue;
            };
            let values: Vec<&str> = if p["type"] == "array" {
                v.split(',').collect()
            } else {
                vec![v.as_str()]
            };
            let item = if p["type"] == "array" { &p["items"] } else { *p };
            for val in values {
                if let Some(e) = check_scalar_param(item, val) {
                    errs.push(format!("{}: query {k}={v:?}: {e}", op.template));
                }
            }
        }
        errs
    }

    /// Problems with a request body against the operation's body parameter.
    pub fn check_body(&self, op: &Operation<'_>, body: &Value) -> Vec<String> {
        let params = op.op["parameters"].as_array().cloned().unwrap_or_default();
        let Some(p) = params.iter().find(|p| p["in"] == "body") else {
            return vec![format!("{}: operation takes no body", op.template)];
        };
        let mut errs = Vec::new();
        self.validate(&p["schema"], body, "body", &mut errs);
        errs
    }

    /// Problems with a response body against the schema declared for its status.
    pub fn check_response(&self, op: &Operation<'_>, status: u16, body: &Value) -> Vec<String> {
        let Some(resp) = op.op["responses"].get(status.to_string()) else {
            return vec![format!("{}: status {status} is not declared", op.template)];
        };
        let Some(schema) = resp.get("schema") else {
            return Vec::new();
        };
        let mut errs = Vec::new();
        self.validate(schema, body, "", &mut errs);
        errs
    }

    fn validate(&self, schema: &Value, v: &Value, at: &str, errs: &mut Vec<String>) {
        let schema = self.resolve(schema);
        if errs.len() > 50 {
            return;
        }
        if v.is_null() {
            if schema.get("type").is_some() && schema["x-nullable"] != Value::Bool(true) {
                errs.push(format!("{at}: null where {} is not nullable", schema["type"]));
            }
            return;
        }
        if let Some(allowed) = schema.get("enum").and_then(Value::as_array) {
            if !allowed.contains(v) {
                errs.push(format!("{at}: {v} is not one of {}", Value::Array(allowed.clone())));
            }
        }
        let ty = schema.get("type").and_then(Value::as_str);
        let ok = match ty {
            None => true,
            Some("string") => v.is_string(),
            Some("integer") => v.is_i64() || v.is_u64(),
            Some("number") => v.is_number(),
            Some("boolean") => v.is_boolean(),
            Some("array") => v.is_array(),
            Some("object") => v.is_object(),
            Some(other) => {
                errs.push(format!("{at}: schema type {other} unknown to the checker"));
                true
            }
        };
        if !ok {
            errs.push(format!("{at}: expected {}, got {v}", ty.unwrap_or("?")));
            return;
        }
        if let (Some("date-time"), Some(s)) = (schema.get("format").and_then(Value::as_str), v.as_str()) {
            if time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).is_err() {
                errs.push(format!("{at}: {s:?} is not a date-time"));
            }
        }
        if let Some(n) = v.as_f64().filter(|_| v.is_number()) {
            if schema.get("minimum").and_then(Value::as_f64).is_some_and(|m| n < m) {
                errs.push(format!("{at}: {n} below minimum"));
            }
            if schema.get("maximum").and_then(Value::as_f64).is_some_and(|m| n > m) {
                errs.push(format!("{at}: {n} above maximum"));
            }
        }
        if let Some(items) = schema.get("items") {
            for (i, item) in v.as_array().into_iter().flatten().enumerate() {
                self.validate(items, item, &format!("{at}[{i}]"), errs);
            }
        }
        if let Some(obj) = v.as_object() {
            let props = schema.get("properties").and_then(Value::as_object);
            for req in schema.get("required").and_then(Value::as_array).into_iter().flatten() {
                if let Some(name) = req.as_str() {
                    if !obj.contains_key(name) {
                        errs.push(format!("{at}: required field {name} missing"));
                    }
                }
            }
            for (k, val) in obj {
                let child = format!("{at}.{k}");
                match props.and_then(|p| p.get(k)) {
                    Some(s) => self.validate(s, val, &child, errs),
                    None => {
                        if let Some(extra) = schema.get("additionalProperties").filter(|a| a.is_object()) {
                            self.validate(extra, val, &child, errs);
                        } else if schema["additionalProperties"] == Value::Bool(false) {
                            errs.push(format!("{child}: not allowed by the schema"));
                        }
                    }
                }
            }
        }
    }

    /// Every field name the schema of an operation's 200 response declares (dotted paths), for
    /// checks that we serve no field the vendor does not document.
    pub fn undeclared_fields(&self, op: &Operation<'_>, body: &Value) -> Vec<String> {
        let schema = &op.op["responses"]["200"]["schema"];
        let mut out = Vec::new();
        self.walk_undeclared(schema, body, "", &mut out);
        out
    }

    fn walk_undeclared(&self, schema: &Value, v: &Value, at: &str, out: &mut Vec<String>) {
        let schema = self.resolve(schema);
        match v {
            Value::Object(obj) => {
                let props = schema.get("properties").and_then(Value::as_object);
                if props.is_none() {
                    return; // free-form object
                }
                for (k, val) in obj {
                    let child = format!("{at}.{k}");
                    match props.and_then(|p| p.get(k)) {
                        Some(s) => self.walk_undeclared(s, val, &child, out),
                        None => out.push(child),
                    }
                }
            }
            Value::Array(items) => {
                if let Some(s) = schema.get("items") {
                    for item in items.iter().take(3) {
                        self.walk_undeclared(s, item, &format!("{at}[]"), out);
                    }
                }
            }
            _ => {}
        }
    }
}

fn check_scalar_param(p: &Value, val: &str) -> Option<String> {
    if let Some(allowed) = p.get("enum").and_then(Value::as_array) {
        if !allowed.iter().any(|a| a.as_str() == Some(val)) {
            return Some(format!("not one of {}", Value::Array(allowed.clone())));
        }
    }
    match p.get("type").and_then(Value::as_str) {
        Some("integer") => {
            let Ok(n) = val.parse::<i64>() else {
                return Some("not an integer".into());
            };
            if p.get("maximum").and_then(Value::as_i64).is_some_and(|m| n > m) {
                return Some(format!("above maximum {}", p["maximum"]));
            }
            if p.get("minimum").and_then(Value::as_i64).is_some_and(|m| n < m) {
                return Some(format!("below minimum {}", p["minimum"]));
            }
        }
        Some("boolean") if !matches!(val, "true" | "false" | "True" | "False") => return Some("not a boolean".into()),
        Some("string")
            if p.get("format").and_then(Value::as_str) == Some("date-time")
                && time::OffsetDateTime::parse(val, &time::format_description::well_known::Rfc3339).is_err() =>
        {
            return Some("not a date-time".into());
        }
        _ => {}
    }
    None
}

impl Swagger {
    /// Problems with `v` against a named definition, e.g. `_NoDataSchema_401`.
    pub fn check_definition(&self, name: &str, v: &Value) -> Vec<String> {
        let schema = serde_json::json!({ "$ref": format!("#/definitions/{name}") });
        let mut errs = Vec::new();
        self.validate(&schema, v, name, &mut errs);
        errs
    }
}
