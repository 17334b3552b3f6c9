//! Logging set-up and CloudWatch Embedded Metric Format (EMF) lines.

use serde_json::{Map, Value, json};

/// A metric in an EMF line.
#[derive(Debug, Clone, Copy)]
pub struct Metric<'a> {
    pub name: &'a str,
    pub value: f64,
    /// `Count`, `Seconds`, `Milliseconds`, ...
    pub unit: &'a str,
}

impl<'a> Metric<'a> {
    /// A count.
    pub fn count(name: &'a str, value: u64) -> Self {
        Self {
            name,
            value: value as f64,
            unit: "Count",
        }
    }
}

/// One EMF document: CloudWatch turns it into metrics when a Lambda writes it to stdout.
/// The first of `fields` (`Function`) is the metrics' only dimension; the others (`Tenant`)
/// are properties of the log line, for Logs Insights and the dashboard's worst-tenant tables:
/// a dimension per tenant would make every metric one custom metric per tenant, billed each
/// month, which at a fleet of thousands of consoles is the larger part of the bill.
pub fn emf_line(namespace: &str, fields: &[(&str, &str)], metrics: &[Metric<'_>], timestamp_ms: i64) -> String {
    let mut doc = Map::new();
    doc.insert(
        "_aws".into(),
        json!({
            "Timestamp": timestamp_ms,
            "CloudWatchMetrics": [{
                "Namespace": namespace,
                "Dimensions": [fields.iter().take(1).map(|(k, _)| *k).collect::<Vec<_>>()],
                "Metrics": metrics.iter().map(|m| json!({"Name": m.name, "Unit": m.unit})).collect::<Vec<_>>(),
            }],
        }),
    );
    for (k, v) in fields {
        doc.insert((*k).into(), Value::String((*v).into()));
    }
    for m in metrics {
        doc.insert(m.name.into(), json!(m.value));
    }
    Value::Object(doc).to_string()
}

/// The metrics namespace of every s1-bridge function.
pub const NAMESPACE: &str = "s1-bridge";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emf_document_shape() {
        let line = emf_line(
            NAMESPACE,
            &[("Function", "poll-threats"), ("Tenant", "acme")],
            &[
                Metric {
                    name: "Published",
                    value: 3.0,
                    unit: "Count",
                },
                Metric {
                    name: "LagSeconds",
                    value: 42.0,
                    unit: "Seconds",
                },
            ],
            1_700_000_000_000,
        );
        let v: Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["_aws"]["CloudWatchMetrics"][0]["Namespace"], "s1-bridge");
        assert_eq!(
            v["_aws"]["CloudWatchMetrics"][0]["Dimensions"],
            json!([["Function"]]),
            "no metric per tenant: the tenant is a property of the line"
        );
        assert_eq!(
            v["_aws"]["CloudWatchMetrics"][0]["Metrics"][1],
            json!({"Name": "LagSeconds", "Unit": "Seconds"})
        );
        assert_eq!(v["Tenant"], "acme");
        assert_eq!(v["Published"], 3.0);
        assert!(!line.contains('\n'), "one line per document");
    }
}
