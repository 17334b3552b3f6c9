//! Wire types of the S1 API, named as S1 names them (camelCase on the wire).
//!
//! They are deliberately lenient, because real consoles are: unknown fields are ignored, every
//! optional field accepts `null`, booleans may arrive as strings (`"True"`), enum values S1 adds
//! later decode as `Unknown` instead of failing a whole page, and ids stay strings (they exceed
//! 2^53).
//!
//! One module per family: `threats` (threats, their enums, actions and notes), `alerts` (STAR
//! and unified alerts), `assets` (agents, accounts, sites), `users` (tokens, users, system), and
//! `lenient` (the forgiving decoders they all use).

mod alerts;
mod assets;
mod lenient;
mod threats;
pub mod uam_actions;
mod users;

use serde::Deserialize;

pub use alerts::*;
pub use assets::*;
pub use lenient::*;
pub use threats::*;
pub use users::*;

/// S1's response envelope for list endpoints.
#[derive(Debug, Clone, Deserialize)]
pub struct ListEnvelope<T> {
    pub data: T,
    #[serde(default)]
    pub pagination: Option<Pagination>,
}

/// S1's response envelope for single-object endpoints.
#[derive(Debug, Clone, Deserialize)]
pub struct DataEnvelope<T> {
    pub data: T,
}

/// Paging information of a list response.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Pagination {
    /// The cursor of the next page; `null`, `"null"` and `""` all mean "last page".
    #[serde(default)]
    pub next_cursor: Option<String>,
    #[serde(default)]
    pub total_items: Option<u64>,
}

impl Pagination {
    /// The next cursor, or `None` on the last page whichever way S1 spelled it.
    pub fn next(&self) -> Option<&str> {
        match self.next_cursor.as_deref() {
            None | Some("") | Some("null") => None,
            Some(c) => Some(c),
        }
    }
}
