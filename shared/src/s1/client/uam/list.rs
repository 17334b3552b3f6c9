//! The incremental listing of unified alerts: `alerts` updated at or after a watermark, oldest
//! first, page by page with Relay cursors.

use futures_util::{Stream, stream};
use serde::Serialize;
use time::OffsetDateTime;

use super::super::super::dto::{UnifiedAlert, UnifiedAlertsData};
use super::super::super::error::S1Error;
use super::super::S1Client;
use super::super::paging::Page;

/// The most alerts asked for per page: UAM does not state its maximum (`first`), and 100 is
/// what the peers' pollers ask for.
pub const UNIFIED_MAX_PAGE: u32 = 100;

/// What the incremental listing asks for. Only `after` changes between the pages of one walk
/// (UAM ties a cursor to its filters, sorts and scope).
#[derive(Debug, Clone)]
pub struct UnifiedAlertQuery {
    /// Alerts whose `updatedAt` is at or after this (to the millisecond; UAM filters in epoch
    /// ms). `None`: from the first.
    pub updated_at_gte: Option<OffsetDateTime>,
    /// The tenant's scope. Sites win over accounts when both are set (UAM takes one scope type
    /// per call, and the sites are the narrower).
    pub account_ids: Vec<String>,
    pub site_ids: Vec<String>,
    /// Alerts per page, 1 to [`UNIFIED_MAX_PAGE`].
    pub first: u32,
}

impl Default for UnifiedAlertQuery {
    fn default() -> Self {
        Self {
            updated_at_gte: None,
            account_ids: vec![],
            site_ids: vec![],
            first: UNIFIED_MAX_PAGE,
        }
    }
}

/// The listing document (`NOTES.md` §1 of the UAM material): every field the poller reads.
const ALERTS_UPDATED_SINCE: &str = r#"query AlertsUpdatedSince(
  $first: Int!
  $after: String
  $filters: [FilterInput!]
  $sorts: [SortInput!]
  $scope: ScopeSelectorInput
) {
  alerts(first: $first, after: $after, filters: $filters, sorts: $sorts, scope: $scope, viewType: ALL) {
    totalCount
    pageInfo { hasNextPage endCursor }
    edges {
      node {
        id
        externalId
        name
        description
        severity
        status
        analystVerdict
        classification
        confidenceLevel
        result
        attackSurfaces
        storylineId
        ticketId
        noteExists
        detectedAt
        createdAt
        updatedAt
        firstSeenAt
        lastSeenAt
        detectionSource { product vendor }
        analytics { uid name category }
        assets { id name primary agentUuid agentVersion osType osVersion lastLoggedInUser category }
        detectionTime {
          asset { ipV4 domain osName osType }
          scope { accountId accountName siteId siteName groupId groupName }
        }
        process { cmdLine parentName file { name path sha1 sha256 md5 } }
        realTime { scope { account { id name } site { id name } group { id name } } }
        assignee { userId fullName email }
      }
    }
  }
}"#;

#[derive(Debug, Clone, Serialize)]
struct Variables {
    first: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    after: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    filters: Option<[Filter; 1]>,
    sorts: [Sort; 1],
    #[serde(skip_serializing_if = "Option::is_none")]
    scope: Option<Scope>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
struct Filter {
    field_id: &'static str,
    date_time_range: Range,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
struct Range {
    start: i64,
    start_inclusive: bool,
}

#[derive(Debug, Clone, Serialize)]
struct Sort {
    by: &'static str,
    order: &'static str,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
struct Scope {
    scope_type: &'static str,
    scope_ids: Vec<String>,
}

/// Epoch milliseconds of `t`, rounded down: an inclusive start never skips the alerts of the
/// watermark's own millisecond.
fn epoch_ms(t: OffsetDateTime) -> i64 {
    (t.unix_timestamp_nanos().div_euclid(1_000_000)) as i64
}

impl UnifiedAlertQuery {
    fn variables(&self) -> Result<Variables, S1Error> {
        if !(1..=UNIFIED_MAX_PAGE).contains(&self.first) {
            return Err(S1Error::InvalidRequest(format!(
                "unified alerts page size {} is out of range 1..={UNIFIED_MAX_PAGE}",
                self.first
            )));
        }
        let scope = match (self.site_ids.as_slice(), self.account_ids.as_slice()) {
            ([], []) => None,
            ([], ids) => Some(("ACCOUNT", ids)),
            (ids, _) => Some(("SITE", ids)),
        };
        if let Some((_, ids)) = scope
            && let Some(bad) = ids.iter().find(|i| i.trim().is_empty())
        {
            return Err(S1Error::InvalidRequest(format!("{bad:?} is not a valid S1 scope id")));
        }
        Ok(Variables {
            first: self.first,
            after: None,
            filters: self.updated_at_gte.map(|t| {
                [Filter {
                    field_id: "updatedAt",
                    date_time_range: Range {
                        start: epoch_ms(t),
                        start_inclusive: true,
                    },
                }]
            }),
            sorts: [Sort {
                by: "updatedAt",
                order: "ASC",
            }],
            scope: scope.map(|(scope_type, ids)| Scope {
                scope_type,
                scope_ids: ids.to_vec(),
            }),
        })
    }
}

impl S1Client {
    /// Unified alerts updated at or after `query.updated_at_gte`, oldest first, page by page
    /// (one page in memory at a time). Alerts sharing the watermark's millisecond come again
    /// (the start is inclusive): the caller drops the ones it has.
    ///
    /// A page with GraphQL errors ends the walk with [`S1Error::GraphQl`], never as an empty
    /// page.
    pub fn unified_alerts<'a>(
        &'a self,
        query: &UnifiedAlertQuery,
    ) -> impl Stream<Item = Result<Page<UnifiedAlert>, S1Error>> + use<'a> {
        enum State {
            Start(Result<Variables, S1Error>),
            Next(Variables),
            Done,
        }
        stream::unfold(State::Start(query.variables()), move |state| async move {
            let vars = match state {
                State::Done => return None,
                State::Start(Err(e)) => return Some((Err(e), State::Done)),
                State::Start(Ok(v)) | State::Next(v) => v,
            };
            let result = self.graphql::<_, UnifiedAlertsData>(ALERTS_UPDATED_SINCE, &vars).await;
            let connection = match result {
                Ok(d) => d.alerts,
                Err(e) => return Some((Err(e), State::Done)),
            };
            let info = connection.page_info.as_ref();
            let more = info.and_then(|p| p.has_next_page).unwrap_or(false);
            let cursor = info.and_then(|p| p.end_cursor.clone()).filter(|c| !c.is_empty());
            let next = match (more, cursor) {
                (false, _) => None,
                (true, Some(c)) if Some(&c) == vars.after.as_ref() => {
                    return Some((
                        Err(stuck(
                            "UAM returned the cursor it was given; stopping instead of looping",
                        )),
                        State::Done,
                    ));
                }
                (true, Some(c)) => Some(c),
                (true, None) => {
                    return Some((
                        Err(stuck("hasNextPage is true but there is no endCursor to go on from")),
                        State::Done,
                    ));
                }
            };
            let page = Page {
                items: connection.edges.into_iter().map(|e| e.node).collect(),
                next_cursor: next.clone(),
                total_items: connection.total_count,
            };
            // The first alert that is no threat (a threat links to its own page) teaches the
            // console's alert link shape, once per console per process.
            if self.alert_link().is_none() {
                if let Some(a) = page.items.iter().find(|a| a.threat_id().is_none()) {
                    self.learn_alert_link(&a.id).await;
                }
            }
            let state = match next {
                Some(after) => State::Next(Variables {
                    after: Some(after),
                    ..vars
                }),
                None => State::Done,
            };
            Some((Ok(page), state))
        })
    }
}

fn stuck(message: &str) -> S1Error {
    S1Error::Decode {
        endpoint: format!("/{}", super::GRAPHQL_PATH),
        path: "data.alerts.pageInfo".into(),
        message: message.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn variables_filter_on_updated_at_in_ms_ascending_in_the_tenant_scope() {
        let at = time::macros::datetime!(2026-01-01 00:00:00.123456 UTC);
        let q = UnifiedAlertQuery {
            updated_at_gte: Some(at),
            account_ids: vec!["11".into()],
            site_ids: vec![],
            first: 50,
        };
        assert_eq!(
            serde_json::to_value(q.variables().unwrap()).unwrap(),
            json!({
                "first": 50,
                "filters": [{"fieldId": "updatedAt", "dateTimeRange": {"start": 1_767_225_600_123_i64, "startInclusive": true}}],
                "sorts": [{"by": "updatedAt", "order": "ASC"}],
                "scope": {"scopeType": "ACCOUNT", "scopeIds": ["11"]}
            })
        );
        let sites = UnifiedAlertQuery {
            site_ids: vec!["22".into()],
            account_ids: vec!["11".into()],
            ..UnifiedAlertQuery::default()
        };
        let v = serde_json::to_value(sites.variables().unwrap()).unwrap();
        assert_eq!(v["scope"], json!({"scopeType": "SITE", "scopeIds": ["22"]}));
        assert!(v.get("filters").is_none() && v.get("after").is_none(), "{v}");
        let bad = UnifiedAlertQuery {
            first: 0,
            ..UnifiedAlertQuery::default()
        };
        assert!(matches!(bad.variables(), Err(S1Error::InvalidRequest(_))));
        let blank = UnifiedAlertQuery {
            site_ids: vec![" ".into()],
            ..UnifiedAlertQuery::default()
        };
        assert!(matches!(blank.variables(), Err(S1Error::InvalidRequest(_))));
    }
}
