//! `/threats`: the list, status and verdict changes, notes, external ticket ids.

use futures_util::Stream;
use serde_json::json;

use super::super::dto::{Affected, AnalystVerdict, IncidentStatus, Note, Threat, ThreatActionResult};
use super::super::error::S1Error;
use super::super::ratelimit::EndpointFamily;
use super::paging::Page;
use super::query::{MAX_PAGE_LIMIT, Query, ThreatQuery};
use super::{S1Client, ids_filter, path_with_id, wire};

impl S1Client {
    /// `GET /threats`, page by page.
    pub fn threats<'a>(&'a self, query: &ThreatQuery) -> impl Stream<Item = Result<Page<Threat>, S1Error>> + use<'a> {
        self.pages(
            "threats",
            EndpointFamily::ThreatsList,
            query.to_pairs(),
            |d: Vec<Threat>| d,
        )
    }

    /// `POST /threats/incident`: sets the incident status (and, atomically, the verdict) of the
    /// given threats. Check `details[].result`; HTTP 200 alone proves nothing.
    ///
    /// # Errors
    /// [`S1Error::InvalidRequest`] for an empty id list (S1 would apply an empty filter to every
    /// threat in scope); otherwise as any call.
    pub async fn set_incident_status(
        &self,
        ids: &[String],
        status: IncidentStatus,
        verdict: Option<AnalystVerdict>,
    ) -> Result<ThreatActionResult, S1Error> {
        let mut data = json!({ "incidentStatus": wire(status.as_str())? });
        if let Some(v) = verdict {
            data["analystVerdict"] = json!(wire(v.as_str())?);
        }
        let body = json!({ "filter": ids_filter(ids)?, "data": data });
        self.post_data("threats/incident", EndpointFamily::ThreatActions, &body, true)
            .await
    }

    /// `POST /threats/analyst-verdict`.
    ///
    /// # Errors
    /// As [`S1Client::set_incident_status`].
    pub async fn set_analyst_verdict(
        &self,
        ids: &[String],
        verdict: AnalystVerdict,
    ) -> Result<ThreatActionResult, S1Error> {
        let body = json!({ "filter": ids_filter(ids)?, "data": { "analystVerdict": wire(verdict.as_str())? } });
        self.post_data("threats/analyst-verdict", EndpointFamily::ThreatActions, &body, true)
            .await
    }

    /// `POST /threats/notes`: adds one note to every given threat. Not retried after an
    /// ambiguous failure, so a note is never posted twice.
    ///
    /// # Errors
    /// As [`S1Client::set_incident_status`]; an empty text is refused too.
    pub async fn add_note(&self, ids: &[String], text: &str) -> Result<Affected, S1Error> {
        if text.trim().is_empty() {
            return Err(S1Error::InvalidRequest("refusing to add an empty note".into()));
        }
        let body = json!({ "filter": ids_filter(ids)?, "data": { "text": text } });
        self.post_data("threats/notes", EndpointFamily::ThreatActions, &body, false)
            .await
    }

    /// `GET /threats/{id}/notes`, page by page.
    pub fn threat_notes<'a>(&'a self, threat_id: &str) -> impl Stream<Item = Result<Page<Note>, S1Error>> + use<'a> {
        let (path, query) = match path_with_id("threats", threat_id, "notes") {
            Ok(path) => {
                let query = Query::new(MAX_PAGE_LIMIT).map(|mut q| {
                    q.push("sortBy", "createdAt");
                    q.push("sortOrder", "asc");
                    q.0
                });
                (path, query)
            }
            Err(e) => (String::new(), Err(e)),
        };
        self.pages_owned(path, EndpointFamily::ThreatActions, query, |d: Vec<Note>| d)
    }

    /// `POST /threats/external-ticket-id`: stamps the platform's ticket id on the threats.
    ///
    /// # Errors
    /// As [`S1Client::set_incident_status`].
    pub async fn set_external_ticket_id(&self, ids: &[String], ticket_id: &str) -> Result<Affected, S1Error> {
        let body = json!({ "filter": ids_filter(ids)?, "data": { "externalTicketId": ticket_id } });
        self.post_data("threats/external-ticket-id", EndpointFamily::ThreatActions, &body, true)
            .await
    }
}
