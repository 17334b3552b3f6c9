//! What one GraphQL request runs with: the console (locked for the request), the caller's token,
//! and whether a partial-data fault is due; shared by the queries and the write side.

use std::cell::{Cell, RefCell};

use super::filter::Refusal;
use crate::console::Console;
use crate::world::TokenSpec;

pub(crate) struct Ctx<'c> {
    pub console: RefCell<&'c mut Console>,
    pub token: TokenSpec,
    /// A partial-data fault is due: the first alert node (or a mutation's result) fails.
    pub partial: Cell<bool>,
}

impl Ctx<'_> {
    /// The alert the token may see, by id.
    pub(crate) fn visible(&self, id: &str) -> Result<usize, Refusal> {
        let c = self.console.borrow();
        c.uam
            .find(id)
            .filter(|&i| c.world.site_visible(&self.token.scope, c.uam.alerts[i].site))
            .ok_or_else(|| format!("Alert '{id}' not found"))
    }
}
