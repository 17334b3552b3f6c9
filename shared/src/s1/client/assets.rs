//! `/agents`, `/accounts` and `/sites`: the assets a tenant's token can see.

use futures_util::Stream;

use super::super::dto::{Account, Agent, Site, SitesData};
use super::super::error::S1Error;
use super::super::ratelimit::EndpointFamily;
use super::S1Client;
use super::paging::Page;
use super::query::{AgentQuery, MAX_PAGE_LIMIT, Query, SiteQuery};

impl S1Client {
    /// `GET /agents`, page by page.
    pub fn agents<'a>(&'a self, query: &AgentQuery) -> impl Stream<Item = Result<Page<Agent>, S1Error>> + use<'a> {
        self.pages("agents", EndpointFamily::Agents, query.to_pairs(), |d: Vec<Agent>| d)
    }

    /// `GET /accounts`, page by page. A site-scoped token gets [`S1Error::Forbidden`] (4030010).
    pub fn accounts(&self) -> impl Stream<Item = Result<Page<Account>, S1Error>> + '_ {
        let query = Query::new(MAX_PAGE_LIMIT).map(|mut q| {
            q.push("sortBy", "id");
            q.push("sortOrder", "asc");
            q.0
        });
        self.pages("accounts", EndpointFamily::SitesAccounts, query, |d: Vec<Account>| d)
    }

    /// `GET /sites`, page by page (S1 nests them in an object-shaped `data`).
    pub fn sites<'a>(&'a self, query: &SiteQuery) -> impl Stream<Item = Result<Page<Site>, S1Error>> + use<'a> {
        self.pages(
            "sites",
            EndpointFamily::SitesAccounts,
            query.to_pairs(),
            |d: SitesData| d.sites,
        )
    }
}
