//! The filters of the list endpoints, as the query pairs S1 takes.

use time::OffsetDateTime;

use super::super::dto;
use super::super::error::S1Error;

/// S1 refuses `limit` above 1000 with a 400.
pub const MAX_PAGE_LIMIT: u32 = 1000;

/// `sortOrder`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SortOrder {
    #[default]
    Asc,
    Desc,
}

impl SortOrder {
    fn as_str(self) -> &'static str {
        match self {
            SortOrder::Asc => "asc",
            SortOrder::Desc => "desc",
        }
    }
}

/// `sortBy` for threats (the ones a poller needs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ThreatSort {
    #[default]
    UpdatedAt,
    CreatedAt,
    Id,
}

/// Filters for `GET /threats`. The default is what a poller wants: oldest change first, 1000
/// per page.
#[derive(Debug, Clone)]
pub struct ThreatQuery {
    pub updated_at_gte: Option<OffsetDateTime>,
    pub updated_at_gt: Option<OffsetDateTime>,
    pub updated_at_lte: Option<OffsetDateTime>,
    pub created_at_gte: Option<OffsetDateTime>,
    pub created_at_gt: Option<OffsetDateTime>,
    pub ids: Vec<String>,
    pub account_ids: Vec<String>,
    pub site_ids: Vec<String>,
    pub sort_by: ThreatSort,
    pub sort_order: SortOrder,
    pub limit: u32,
}

impl Default for ThreatQuery {
    fn default() -> Self {
        Self {
            updated_at_gte: None,
            updated_at_gt: None,
            updated_at_lte: None,
            created_at_gte: None,
            created_at_gt: None,
            ids: Vec::new(),
            account_ids: Vec::new(),
            site_ids: Vec::new(),
            sort_by: ThreatSort::UpdatedAt,
            sort_order: SortOrder::Asc,
            limit: MAX_PAGE_LIMIT,
        }
    }
}

impl ThreatQuery {
    /// Threats changed at or after `since`, oldest change first: the polling query.
    pub fn changed_since(since: OffsetDateTime) -> Self {
        Self {
            updated_at_gte: Some(since),
            ..Self::default()
        }
    }

    pub(super) fn to_pairs(&self) -> Result<Vec<(String, String)>, S1Error> {
        let mut q = Query::new(self.limit)?;
        q.time("updatedAt__gte", self.updated_at_gte);
        q.time("updatedAt__gt", self.updated_at_gt);
        q.time("updatedAt__lte", self.updated_at_lte);
        q.time("createdAt__gte", self.created_at_gte);
        q.time("createdAt__gt", self.created_at_gt);
        q.csv("ids", &self.ids);
        q.csv("accountIds", &self.account_ids);
        q.csv("siteIds", &self.site_ids);
        let sort = match self.sort_by {
            ThreatSort::UpdatedAt => "updatedAt",
            ThreatSort::CreatedAt => "createdAt",
            ThreatSort::Id => "id",
        };
        q.push("sortBy", sort);
        q.push("sortOrder", self.sort_order.as_str());
        Ok(q.0)
    }
}

/// Filters for `GET /cloud-detection/alerts`. S1 offers no `updatedAt` filter here, so alerts
/// are polled by creation time.
#[derive(Debug, Clone)]
pub struct CloudAlertQuery {
    pub created_at_gte: Option<OffsetDateTime>,
    pub created_at_gt: Option<OffsetDateTime>,
    pub ids: Vec<String>,
    pub account_ids: Vec<String>,
    pub site_ids: Vec<String>,
    pub sort_order: SortOrder,
    pub limit: u32,
}

impl Default for CloudAlertQuery {
    fn default() -> Self {
        Self {
            created_at_gte: None,
            created_at_gt: None,
            ids: Vec::new(),
            account_ids: Vec::new(),
            site_ids: Vec::new(),
            sort_order: SortOrder::Asc,
            limit: MAX_PAGE_LIMIT,
        }
    }
}

impl CloudAlertQuery {
    pub(super) fn to_pairs(&self) -> Result<Vec<(String, String)>, S1Error> {
        let mut q = Query::new(self.limit)?;
        q.time("createdAt__gte", self.created_at_gte);
        q.time("createdAt__gt", self.created_at_gt);
        q.csv("ids", &self.ids);
        q.csv("accountIds", &self.account_ids);
        q.csv("siteIds", &self.site_ids);
        q.push("sortBy", "alertInfoCreatedAt");
        q.push("sortOrder", self.sort_order.as_str());
        Ok(q.0)
    }
}

/// Filters for `GET /agents`.
#[derive(Debug, Clone)]
pub struct AgentQuery {
    pub account_ids: Vec<String>,
    pub site_ids: Vec<String>,
    /// Consoles differ in whether decommissioned agents are listed by default, so this is always
    /// sent explicitly.
    pub include_decommissioned: bool,
    pub updated_at_gte: Option<OffsetDateTime>,
    pub limit: u32,
}

impl Default for AgentQuery {
    fn default() -> Self {
        Self {
            account_ids: Vec::new(),
            site_ids: Vec::new(),
            include_decommissioned: true,
            updated_at_gte: None,
            limit: MAX_PAGE_LIMIT,
        }
    }
}

impl AgentQuery {
    pub(super) fn to_pairs(&self) -> Result<Vec<(String, String)>, S1Error> {
        let mut q = Query::new(self.limit)?;
        q.csv("accountIds", &self.account_ids);
        q.csv("siteIds", &self.site_ids);
        q.push(
            "isDecommissioned",
            if self.include_decommissioned {
                "True,False"
            } else {
                "False"
            },
        );
        q.time("updatedAt__gte", self.updated_at_gte);
        q.push("sortBy", "id");
        q.push("sortOrder", "asc");
        Ok(q.0)
    }
}

/// Filters for `GET /sites`.
#[derive(Debug, Clone)]
pub struct SiteQuery {
    pub account_ids: Vec<String>,
    pub site_ids: Vec<String>,
    pub limit: u32,
}

impl Default for SiteQuery {
    fn default() -> Self {
        Self {
            account_ids: Vec::new(),
            site_ids: Vec::new(),
            limit: MAX_PAGE_LIMIT,
        }
    }
}

impl SiteQuery {
    pub(super) fn to_pairs(&self) -> Result<Vec<(String, String)>, S1Error> {
        let mut q = Query::new(self.limit)?;
        q.csv("accountIds", &self.account_ids);
        q.csv("siteIds", &self.site_ids);
        q.push("sortBy", "id");
        q.push("sortOrder", "asc");
        Ok(q.0)
    }
}

pub(super) struct Query(pub(super) Vec<(String, String)>);

impl Query {
    pub(super) fn new(limit: u32) -> Result<Self, S1Error> {
        if !(1..=MAX_PAGE_LIMIT).contains(&limit) {
            return Err(S1Error::InvalidRequest(format!(
                "page limit {limit} is outside 1..={MAX_PAGE_LIMIT} (S1 answers 400 above 1000)"
            )));
        }
        Ok(Self(vec![("limit".into(), limit.to_string())]))
    }
    pub(super) fn push(&mut self, k: &str, v: &str) {
        self.0.push((k.into(), v.into()));
    }
    pub(super) fn time(&mut self, k: &str, t: Option<OffsetDateTime>) {
        if let Some(t) = t {
            self.push(k, &dto::format_time(t));
        }
    }
    pub(super) fn csv(&mut self, k: &str, vals: &[String]) {
        if !vals.is_empty() {
            self.push(k, &vals.join(","));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limit_outside_range_is_refused_before_sending() {
        for limit in [0, 1001] {
            let q = ThreatQuery {
                limit,
                ..ThreatQuery::default()
            };
            assert!(matches!(q.to_pairs(), Err(S1Error::InvalidRequest(_))), "limit {limit}");
        }
        assert!(
            ThreatQuery {
                limit: 1000,
                ..ThreatQuery::default()
            }
            .to_pairs()
            .is_ok()
        );
    }
}
