//! The vendored UAM schema, compiled once, and the checks a console makes on a request before it
//! runs it: the document parses and validates against the schema, the operation exists, and the
//! variables coerce to the operation's declared types.

use std::sync::LazyLock;

use apollo_compiler::request::coerce_variable_values;
use apollo_compiler::response::{GraphQLError, JsonMap, serde_json_bytes};
use apollo_compiler::validation::Valid;
use apollo_compiler::{ExecutableDocument, Schema};

const SDL: &str = include_str!("../../../tests/fixtures/s1-uam/schema_subset.graphql");

/// The subset names ten types it does not define (see its PROVENANCE.md); opaque scalars stand in
/// for them so the rest validates, and a client selecting one gets its value as-is.
const STAND_INS: &str = "
scalar SecurityAlertEventResponse
scalar Indicator
scalar Observable
scalar Enrichment
scalar RelatedAlert
scalar DetectionCloudProviderDetails
scalar ActionData
scalar HistoryItemData
scalar TimelineItemData
scalar UqlColumnMetadata
";

pub(crate) static SCHEMA: LazyLock<Valid<Schema>> = LazyLock::new(|| {
    Schema::parse_and_validate(format!("{SDL}\n{STAND_INS}"), "schema_subset.graphql")
        .unwrap_or_else(|e| panic!("the vendored UAM schema must validate: {e}"))
});

/// Whether the schema's enum `enum_name` has `value`.
pub(crate) fn is_enum_value(enum_name: &str, value: &str) -> bool {
    SCHEMA.get_enum(enum_name).is_some_and(|e| e.values.contains_key(value))
}

/// A request that passed every check: ready to execute.
pub(crate) struct Checked {
    pub document: Valid<ExecutableDocument>,
    pub operation_name: Option<String>,
    pub variables: Valid<JsonMap>,
}

/// Refusals carry the GraphQL errors to answer with (`{"errors": [...]}`, no `data`).
pub(crate) fn check(
    query: &str,
    operation_name: Option<&str>,
    variables: &serde_json::Map<String, serde_json::Value>,
) -> Result<Checked, Vec<GraphQLError>> {
    let document = ExecutableDocument::parse_and_validate(&SCHEMA, query, "request.graphql").map_err(|e| {
        e.errors
            .iter()
            .map(|d| validation_error(d.unstable_to_json_compat()))
            .collect::<Vec<_>>()
    })?;
    let operation = document
        .operations
        .get(operation_name)
        .map_err(|e| vec![validation_error(e.to_graphql_error(&document.sources))])?;
    let raw: JsonMap = match serde_json_bytes::to_value(variables) {
        Ok(serde_json_bytes::Value::Object(m)) => m,
        _ => JsonMap::new(),
    };
    let variables = coerce_variable_values(&SCHEMA, operation, &raw)
        .map_err(|e| vec![validation_error(e.to_graphql_error(&document.sources))])?;
    Ok(Checked {
        document,
        operation_name: operation_name.map(str::to_owned),
        variables,
    })
}

fn validation_error(mut e: GraphQLError) -> GraphQLError {
    e.extensions.insert("code", "GRAPHQL_VALIDATION_FAILED".into());
    e.extensions.insert("classification", "ValidationError".into());
    e
}
