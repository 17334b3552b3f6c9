//! `/cloud-detection/alerts`: STAR alerts, their status and verdict.

use futures_util::Stream;
use serde_json::json;

use super::super::dto::{Affected, AnalystVerdict, CloudAlert, IncidentStatus};
use super::super::error::S1Error;
use super::super::ratelimit::EndpointFamily;
use super::S1Client;
use super::paging::Page;
use super::query::CloudAlertQuery;
use super::{ids_filter, wire};

impl S1Client {
    /// `GET /cloud-detection/alerts`, page by page.
    pub fn cloud_alerts<'a>(
        &'a self,
        query: &CloudAlertQuery,
    ) -> impl Stream<Item = Result<Page<CloudAlert>, S1Error>> + use<'a> {
        self.pages(
            "cloud-detection/alerts",
            EndpointFamily::CloudDetection,
            query.to_pairs(),
            |d: Vec<CloudAlert>| d,
        )
    }

    /// `POST /cloud-detection/alerts/incident`.
    ///
    /// # Errors
    /// As [`S1Client::set_incident_status`].
    pub async fn set_alert_incident_status(&self, ids: &[String], status: IncidentStatus) -> Result<Affected, S1Error> {
        let body = json!({ "filter": ids_filter(ids)?, "data": { "incidentStatus": wire(status.as_str())? } });
        self.post_data(
            "cloud-detection/alerts/incident",
            EndpointFamily::CloudDetection,
            &body,
            true,
        )
        .await
    }

    /// `POST /cloud-detection/alerts/analyst-verdict`.
    ///
    /// # Errors
    /// As [`S1Client::set_incident_status`].
    pub async fn set_alert_analyst_verdict(
        &self,
        ids: &[String],
        verdict: AnalystVerdict,
    ) -> Result<Affected, S1Error> {
        let body = json!({ "filter": ids_filter(ids)?, "data": { "analystVerdict": wire(verdict.as_str())? } });
        self.post_data(
            "cloud-detection/alerts/analyst-verdict",
            EndpointFamily::CloudDetection,
            &body,
            true,
        )
        .await
    }
}
