//! Threats and stories into Halo tickets and actions; token alerts into tickets; the asset
//! sync's customers, sites and assets into clients, sites and assets (`assets.rs`).

use std::sync::Arc;

use super::client::{HaloClient, as_id};
use super::lookup::{Resolved, ResolvedCache};
use super::{Directory, Settings};
use crate::platform::{EventKind, Notice, Platform, PlatformError, PublishReceipt, ThreatEvent, ThreatView};
use crate::s1::dto::IncidentStatus;
use crate::store::AssetKind;
use async_trait::async_trait;
use serde_json::{Value, json};

/// Halo tickets for one tenant.
pub struct HaloTickets {
    pub(super) client: Arc<HaloClient>,
    pub(super) settings: Settings,
    pub(super) tenant: String,
    pub(super) directory: Option<Arc<dyn Directory>>,
    resolved: Arc<ResolvedCache>,
    /// Asset type layouts read by this adapter (the asset sync's, one run).
    pub(super) layouts: super::layout::Layouts,
    /// The instance's asset types as this adapter last listed them (one run of the sync).
    pub(super) types: super::layout::Types,
    /// Each match scope's assets as this adapter listed them (one run of the sync).
    pub(super) scopes: super::layout::Scopes,
}

impl std::fmt::Debug for HaloTickets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HaloTickets")
            .field("halo", &self.client.base_url().as_str())
            .field("tenant", &self.tenant)
            .finish_non_exhaustive()
    }
}

/// Text for HTML: `<`, `>`, `&` and quotes escaped.
pub fn html(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// The marker our tickets carry in their details, so a ticket created just before a crash is
/// found again instead of created twice.
pub fn marker(alert_key: &str) -> String {
    format!("s1-bridge story {alert_key}")
}

/// The ticket's details: the threat, endpoint, file, hashes and the console link.
pub fn details_html(event: &ThreatEvent) -> String {
    let t = &event.threat;
    let row = |k: &str, v: Option<&str>| match v.filter(|v| !v.is_empty()) {
        Some(v) => format!("<tr><th align=\"left\">{}</th><td>{}</td></tr>", html(k), html(v)),
        None => String::new(),
    };
    let ips = t.asset.ip.join(", ");
    let time = |v: Option<time::OffsetDateTime>| v.map(crate::s1::dto::format_time);
    let detected = time(t.detected_at);
    let status = t.status.map(|s| s.as_str());
    let verdict = verdict_text(t);
    format!(
        "<p><b>{}</b></p><table>{}{}{}{}{}{}{}{}{}{}{}{}{}{}{}{}</table><p><a href=\"{}\">Open in SentinelOne</a></p><p><small>{}</small></p>",
        html(&t.title),
        row("Severity", Some(event.severity.as_str())),
        row("Classification", t.classification.as_deref()),
        row("Confidence", t.confidence.as_deref()),
        row("S1 status", status),
        row("S1 verdict", verdict.as_deref()),
        row("Endpoint", t.asset.hostname.as_deref()),
        row("OS", t.asset.os.as_deref()),
        row("IP", Some(ips.as_str())),
        row("Account", t.customer.name.as_deref()),
        row("Site", t.site.name.as_deref()),
        row("File", t.file.path.as_deref()),
        row("SHA1", t.file.sha1.as_deref()),
        row("SHA256", t.file.sha256.as_deref()),
        row("Detected", detected.as_deref()),
        row("Detection product", t.product.as_deref()),
        row("S1 source", t.source.as_deref()),
        html(&t.console_url),
        html(&format!(
            "{}; S1 threat {}",
            marker(&event.story.alert_key),
            t.threat_id
        )),
    )
}

fn summary(t: &ThreatView) -> String {
    let mut s = format!("[S1] {}", t.title);
    if let Some(c) = &t.classification {
        s.push_str(&format!(" ({c})"));
    }
    s.chars().take(200).collect()
}

impl HaloTickets {
    /// Tickets for `tenant` through `client`; S1 accounts and sites are placed through
    /// `directory` (the mapping table). The settings are resolved on first use and kept in a
    /// cache of its own; [`HaloTickets::with_cache`] shares one across adapters.
    pub fn new(
        client: Arc<HaloClient>,
        settings: Settings,
        tenant: String,
        directory: Option<Arc<dyn Directory>>,
    ) -> Self {
        Self {
            client,
            settings,
            tenant,
            directory,
            resolved: Arc::default(),
            layouts: super::layout::Layouts::default(),
            types: super::layout::Types::default(),
            scopes: super::layout::Scopes::default(),
        }
    }

    /// Keeps the resolved settings in `cache`: the process's one for this tenant and instance,
    /// so a delivery or run does not read them again.
    #[must_use]
    pub fn with_cache(mut self, cache: Arc<ResolvedCache>) -> Self {
        self.resolved = cache;
        self
    }

    /// The tenant's settings resolved to this instance's ids (kept across deliveries, see
    /// [`ResolvedCache`]).
    ///
    /// # Errors
    /// A configured name Halo does not have, or the client's errors.
    pub async fn resolved(&self) -> Result<Arc<Resolved>, PlatformError> {
        self.resolved.get(&self.client, &self.settings).await
    }

    /// The settings read again after a miss: `statuses` Halo named that they do not know (see
    /// [`ResolvedCache::refresh`]).
    ///
    /// # Errors
    /// As [`HaloTickets::resolved`].
    pub async fn refreshed(&self, statuses: &[i64]) -> Result<Option<Arc<Resolved>>, PlatformError> {
        self.resolved.refresh(&self.client, &self.settings, statuses).await
    }

    /// The Halo client and site a threat's ticket goes under: the S1 account's and site's
    /// mapping, else the tenant's defaults.
    async fn placement(&self, t: &ThreatView, r: &Resolved) -> (Option<i64>, Option<i64>) {
        let mapped = |kind: AssetKind, id: Option<String>| {
            let dir = self.directory.clone();
            let tenant = self.tenant.clone();
            async move {
                match (dir, id) {
                    (Some(d), Some(id)) => d.halo_id(&tenant, kind, &id).await,
                    _ => None,
                }
            }
        };
        let client = mapped(AssetKind::Customer, t.customer.external_id.clone()).await;
        let site = mapped(AssetKind::Site, t.site.external_id.clone()).await;
        match (client, site) {
            (Some(c), site) => (Some(c), site),
            (None, _) => (r.client.as_ref().map(|c| c.0), r.site.as_ref().map(|s| s.0)),
        }
    }

    /// A ticket we created for `key` before (a story's alert key: a run that crashed after
    /// creating it; the tenant's token key: the token ticket), `open_only` among open tickets.
    /// Halo's `search` looks in summaries, so the marker is looked for with `search_details`
    /// (where it is); list rows are partial, so each candidate is read whole and kept only when
    /// the third-party id Halo keeps for it is `key`.
    async fn existing_ticket(&self, key: &str, open_only: bool) -> Result<Option<Value>, PlatformError> {
        let mut query = vec![("search_details", marker(key)), ("count", "5".to_owned())];
        if open_only {
            query.push(("open_only", "true".to_owned()));
        }
        let found = self.client.get("Tickets", &query).await?;
        let rows = match &found {
            Value::Array(rows) => rows.as_slice(),
            other => other
                .get("tickets")
                .and_then(Value::as_array)
                .map_or(&[][..], Vec::as_slice),
        };
        for id in rows.iter().filter_map(|t| t.get("id").and_then(as_id)) {
            let ticket = match self.client.get(&format!("Tickets/{id}"), &[]).await {
                Ok(t) => t,
                Err(PlatformError::Refused { status: 404, .. }) => continue,
                Err(e) => return Err(e),
            };
            if ticket.get("third_party_id_string").and_then(Value::as_str) == Some(key) {
                return Ok(Some(ticket));
            }
        }
        Ok(None)
    }

    async fn create_ticket(&self, event: &ThreatEvent, r: &Resolved) -> Result<i64, PlatformError> {
        if let Some(id) = self
            .existing_ticket(&event.story.alert_key, false)
            .await?
            .and_then(|t| t.get("id").and_then(as_id))
        {
            return Ok(id);
        }
        let t = &event.threat;
        let (client, site) = self.placement(t, r).await;
        let mut ticket = json!({
            "summary": summary(t),
            "details_html": details_html(event),
            "tickettype_id": r.ticket_type.0,
            "third_party_id_string": event.story.alert_key,
        });
        let fields = [
            ("client_id", client),
            ("site_id", site),
            ("user_id", r.user.as_ref().and_then(|u| u.for_ticket(client, site))),
            ("priority_id", r.priorities.get(&event.severity).map(|p| p.0)),
        ];
        for (k, v) in fields {
            if let Some(v) = v {
                ticket[k] = json!(v);
            }
        }
        if let Some(at) = t.detected_at {
            ticket["dateoccurred"] = json!(crate::s1::dto::format_time(at));
        }
        self.client.post_one("Tickets", ticket).await
    }

    /// A private note on the ticket, optionally changing its status.
    pub(super) async fn action(
        &self,
        ticket: i64,
        note_html: String,
        new_status: Option<i64>,
    ) -> Result<(), PlatformError> {
        let mut action = json!({
            "ticket_id": ticket,
            "note_html": note_html,
            "outcome": "Private Note",
            "hiddenfromuser": true,
        });
        if let Some(s) = new_status {
            action["new_status"] = json!(s);
        }
        self.client.post("Actions", &[action]).await.map(drop)
    }
}

/// The verdict as the ticket shows it: UAM's own kind beside it when it says more.
fn verdict_text(t: &crate::platform::ThreatView) -> Option<String> {
    let v = t.verdict.map(|v| v.as_str())?;
    Some(match &t.verdict_detail {
        Some(d) => format!("{v} ({d})"),
        None => v.to_owned(),
    })
}

/// The note an update adds to the story's ticket.
fn update_note(event: &ThreatEvent) -> String {
    let t = &event.threat;
    let what = match event.kind {
        EventKind::Created if event.story.reopened => "A new threat reopened this story in SentinelOne",
        EventKind::Created => "A new threat joined this story",
        EventKind::Updated => "A threat of this story changed in the SentinelOne console",
    };
    let status = t.status.map(|s| s.as_str()).unwrap_or("unknown");
    let verdict = verdict_text(t).unwrap_or_else(|| "undefined".into());
    format!(
        "<p>{what}: <b>{}</b> (S1 status {}, verdict {}; {} threat(s) in the story).</p>{}",
        html(&t.title),
        html(status),
        html(&verdict),
        event.story.threat_count,
        details_html(event)
    )
}

impl HaloTickets {
    /// A threat event as a new ticket or an action on its story's ticket.
    async fn publish_with(&self, event: &ThreatEvent, r: &Resolved) -> Result<PublishReceipt, PlatformError> {
        let ticket = match event.story.platform_ref.as_deref().and_then(|t| t.parse::<i64>().ok()) {
            Some(ticket) if !event.story.new_alert => {
                let new_status = if event.story.reopened {
                    Some(r.reopen.0)
                } else if event.story.all_resolved
                    && self.settings.close_when_resolved
                    && event.threat.status == Some(IncidentStatus::Resolved)
                {
                    Some(r.close.0)
                } else {
                    None
                };
                self.action(ticket, update_note(event), new_status).await?;
                ticket
            }
            _ => {
                let ticket = self.create_ticket(event, r).await?;
                if event.story.all_resolved && self.settings.close_when_resolved {
                    self.action(
                        ticket,
                        "<p>Every threat of this story is resolved in SentinelOne.</p>".into(),
                        Some(r.close.0),
                    )
                    .await?;
                }
                ticket
            }
        };
        Ok(PublishReceipt {
            platform_ref: Some(ticket.to_string()),
        })
    }
}

#[async_trait]
impl Platform for HaloTickets {
    fn kind(&self) -> crate::domain::PlatformKind {
        crate::domain::PlatformKind::Halo
    }

    async fn publish(&self, event: &ThreatEvent) -> Result<PublishReceipt, PlatformError> {
        let r = self.resolved().await?;
        let published = self.publish_with(event, &r).await;
        if let Err(PlatformError::Rejected { .. }) = &published {
            // Halo refused what the kept settings said (a ticket type, priority or status removed
            // since): the retry reads them again.
            self.resolved.forget().await;
        }
        published
    }

    async fn notify(&self, notice: &Notice) -> Result<PublishReceipt, PlatformError> {
        match notice {
            Notice::TokenExpiring { message, .. }
            | Notice::TokenUnauthorized { message, .. }
            | Notice::TokenRotationFailed { message, .. }
            | Notice::ConnectorStatus { message, .. } => self.token_ticket(notice, message).await,
            Notice::Test { .. } => {
                // Proves the credentials; writes nothing. The configured names are checked one
                // by one by `check_settings`.
                self.client.sign_in().await?;
                Ok(PublishReceipt { platform_ref: None })
            }
            Notice::CustomerUpserted(s)
            | Notice::SiteUpserted(s)
            | Notice::AssetUpserted(s)
            | Notice::AssetDeactivated(s) => self.sync(s).await,
        }
    }

    fn keeps_own_ids(&self) -> bool {
        true
    }

    fn max_events_per_second(&self) -> Option<f64> {
        // A new story costs a search and a create, an update one action: two requests an event
        // at most, within 80% of the budget the client keeps to.
        let (limit, window) = self.settings.budget();
        Some(f64::from(limit) * 0.8 / window.as_secs_f64() / 2.0)
    }

    async fn check_settings(&self) -> Vec<crate::platform::check::Check> {
        self.checks().await
    }
}

impl HaloTickets {
    /// A token alert or a connector status notice: one ticket per tenant and topic (token,
    /// status), under the default client; later notices add to it while it is open.
    async fn token_ticket(&self, notice: &Notice, message: &str) -> Result<PublishReceipt, PlatformError> {
        let r = self.resolved().await?;
        // Status notices keep a ticket of their own: a token alert is not a connector outage.
        let (topic, needs) = match notice {
            Notice::ConnectorStatus { .. } => ("status", "connector"),
            _ => ("token", "S1 API token"),
        };
        let key = format!("s1-bridge:{}:{topic}", self.tenant);
        let note = format!("<p>{}</p><p><small>{}</small></p>", html(message), html(&marker(&key)));
        // Open in Halo's terms (`open_only`) and not in one of the tenant's closed statuses.
        let open = self.existing_ticket(&key, true).await?.filter(|t| {
            let status = t.get("status_id").and_then(as_id);
            !status.is_some_and(|s| r.closed.contains(&s))
        });
        let open = open.and_then(|t| t.get("id").and_then(as_id));
        let id = match open {
            Some(id) => {
                self.action(id, note, None).await?;
                id
            }
            None => {
                let mut ticket = json!({
                    "summary": format!("[s1-bridge] {}: the {needs} of tenant {} needs attention", notice.kind(), self.tenant),
                    "details_html": note,
                    "tickettype_id": r.ticket_type.0,
                    "third_party_id_string": key,
                });
                if let Some(c) = &r.client {
                    ticket["client_id"] = json!(c.0);
                }
                if let Some(s) = &r.site {
                    ticket["site_id"] = json!(s.0);
                }
                let place = (r.client.as_ref().map(|c| c.0), r.site.as_ref().map(|s| s.0));
                if let Some(u) = r.user.as_ref().and_then(|u| u.for_ticket(place.0, place.1)) {
                    ticket["user_id"] = json!(u);
                }
                if let Some(p) = r.priorities.get(&crate::domain::Severity::High) {
                    ticket["priority_id"] = json!(p.0);
                }
                self.client.post_one("Tickets", ticket).await?
            }
        };
        Ok(PublishReceipt {
            platform_ref: Some(id.to_string()),
        })
    }
}
