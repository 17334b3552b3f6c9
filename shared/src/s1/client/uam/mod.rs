//! TEMPORARY stand-in for the read side's UAM GraphQL core (branch wt26c); replaced at merge.

pub mod actions;

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::S1Client;
use crate::s1::S1Error;

impl S1Client {
    /// Stand-in: refuses every call until the read side's transport lands.
    pub async fn graphql<V: Serialize, T: DeserializeOwned>(
        &self,
        _document: &'static str,
        _variables: &V,
    ) -> Result<T, S1Error> {
        Err(S1Error::InvalidRequest(
            "the UAM GraphQL transport is not built yet".into(),
        ))
    }
}
