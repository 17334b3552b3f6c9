//! Unified Alert Management (UAM): one GraphQL endpoint, `POST /unifiedalerts/graphql`, for every
//! alert source a console sees. This module holds the call itself ([`S1Client::graphql`]); the
//! listing and the write actions build their documents on it.

use reqwest::Method;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use super::super::error::{GraphQlError, S1Error};
use super::super::ratelimit::EndpointFamily;
use super::transport::Call;
use super::{S1Client, decode};

pub mod actions;
mod link;
mod list;

pub use link::AlertLink;
pub use list::{UNIFIED_MAX_PAGE, UnifiedAlertQuery};

/// The UAM endpoint, under the API root.
pub(crate) const GRAPHQL_PATH: &str = "unifiedalerts/graphql";

impl S1Client {
    /// Runs one GraphQL `document` (a query or a mutation) with `variables` and decodes its
    /// `data` as `T`.
    ///
    /// Goes through the client's transport: UAM's own rate budget (held below the ~25 requests a
    /// second per token), the retry policy, the body cap; the token travels only in the header.
    /// A query is repeated after an ambiguous failure; a mutation is not (it may have acted).
    ///
    /// # Errors
    /// [`S1Error::GraphQl`] when the answer carries an `errors` array, with HTTP 200 and even
    /// with part of the data: a failed call is never read as an empty result.
    /// `SURFACE_TOO_MANY_REQUESTS` (with no data, so nothing ran) is throttling: it is waited out
    /// and retried like a 429, and is [`S1Error::RateLimited`] once the retries are spent.
    /// Otherwise as any call ([`S1Error::Decode`] names the field of `data` that did not decode).
    pub async fn graphql<V: Serialize, T: DeserializeOwned>(
        &self,
        document: &'static str,
        variables: &V,
    ) -> Result<T, S1Error> {
        let body = serde_json::json!({
            "query": document,
            "variables": serde_json::to_value(variables)
                .map_err(|e| S1Error::InvalidRequest(format!("GraphQL variables do not serialise: {e}")))?,
        });
        let call = Call {
            method: Method::POST,
            path: GRAPHQL_PATH,
            query: &[],
            body: Some(&body),
            family: EndpointFamily::UnifiedAlerts,
            idempotent: !is_mutation(document),
            changes: is_mutation(document),
            auth: true,
        };
        self.send(&call, |bytes| read_answer(bytes)).await
    }
}

/// Whether `document` is a mutation (its first operation keyword), so not safe to repeat blindly.
fn is_mutation(document: &str) -> bool {
    document
        .lines()
        .map(str::trim_start)
        .find(|l| !l.is_empty() && !l.starts_with('#'))
        .is_some_and(|l| l.starts_with("mutation"))
}

/// A GraphQL answer: `data` kept raw until the errors are known (partial data with nulls in
/// non-null places would otherwise fail to decode and hide the errors that explain it).
#[derive(Deserialize)]
struct Answer<'a> {
    #[serde(default, borrow)]
    data: Option<&'a RawValue>,
    #[serde(default)]
    errors: Option<Vec<GraphQlError>>,
}

fn read_answer<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, S1Error> {
    let endpoint = format!("/{GRAPHQL_PATH}");
    // Borrowed, so a page's data is not copied: decoded plainly, as `decode` does.
    let answer: Answer<'_> = serde_json::from_slice(bytes).map_err(|e| S1Error::Decode {
        endpoint: endpoint.clone(),
        path: String::new(),
        message: e.to_string(),
    })?;
    let data = answer.data.filter(|d| d.get() != "null");
    match answer.errors {
        Some(errors) if !errors.is_empty() => {
            let partial = data.is_some();
            if !partial && errors.iter().any(GraphQlError::is_rate_limit) {
                return Err(S1Error::RateLimited {
                    endpoint,
                    attempts: 1,
                    retry_after: None,
                });
            }
            Err(S1Error::GraphQl {
                endpoint,
                errors,
                partial,
            })
        }
        _ => {
            let Some(data) = data else {
                return Err(S1Error::Decode {
                    endpoint,
                    path: "data".into(),
                    message: "the answer has neither data nor errors".into(),
                });
            };
            decode::<T>(GRAPHQL_PATH, data.get().as_bytes()).map_err(|e| match e {
                S1Error::Decode {
                    endpoint,
                    path,
                    message,
                } => S1Error::Decode {
                    endpoint,
                    path: format!("data.{path}"),
                    message,
                },
                other => other,
            })
        }
    }
}

#[cfg(test)]
mod tests;
