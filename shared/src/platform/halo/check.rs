//! Halo's part of "Test configuration": the API application gets a token, and every name the
//! tenant's settings give (ticket type, user, statuses, priorities, default client and site,
//! asset types) exists in this instance, each reported by its Halo name (and id), or named
//! with what Halo has instead. Reads only.

use super::lookup::{self, find_each};
use super::outbound::HaloTickets;
use crate::platform::PlatformError;
use crate::usecase::tenant_check::Check;

/// What is wrong, without the "platform configuration" prefix for a setting Halo lacks.
fn detail(e: &PlatformError) -> String {
    match e {
        PlatformError::Config(m) => m.clone(),
        other => other.to_string(),
    }
}

/// A found record as the checks show it.
fn shown((id, name): &(i64, String)) -> String {
    format!("{name} (id {id})")
}

/// `ok` with `found`'s detail, or `fail` naming what is wrong.
fn check(name: &str, found: Result<String, PlatformError>) -> Check {
    match found {
        Ok(d) => Check::ok(name, d),
        Err(e) => Check::fail(name, detail(&e)),
    }
}

impl HaloTickets {
    /// The checks, in order; none past a token Halo refuses (that is said by the test notice).
    pub(super) async fn checks(&self) -> Vec<Check> {
        let (client, s) = (self.client.as_ref(), &self.settings);
        if let Err(e) = client.sign_in().await {
            return vec![Check::fail("Halo token", detail(&e))];
        }
        let mut out = vec![Check::ok(
            "Halo token",
            format!("obtained for the API application (scope {})", s.scope),
        )];
        out.push(check(
            "Halo API agent",
            lookup::own_agent(client)
                .await
                .map(|id| format!("agent id {id}: its actions are the bridge's own, never sent to S1")),
        ));
        out.push(check(
            "Halo ticket type",
            lookup::ticket_type(client, s).await.map(|r| shown(&r)),
        ));
        if let Some(want) = &s.user {
            let found = lookup::user(client, want).await.map(|u| {
                format!(
                    "{} (id {}), of client {} and site {}: set on tickets under that client and site only (others get the site's default user)",
                    u.name,
                    u.id,
                    u.client.map_or("-".into(), |c| c.to_string()),
                    u.site.map_or("-".into(), |c| c.to_string())
                )
            });
            out.push(check("Halo user", found));
        }
        out.push(check("Halo statuses", self.statuses().await));
        out.push(check("Halo priorities", self.priorities().await));
        let mut default_client = None;
        if let Some(want) = &s.client {
            let found = lookup::default_client(client, want).await;
            default_client = found.as_ref().ok().map(|c| c.0);
            out.push(check("Halo default client", found.map(|r| shown(&r))));
        }
        if let Some(want) = &s.site {
            let found = lookup::site(client, want, default_client).await;
            out.push(check("Halo default site", found.map(|r| shown(&r))));
        }
        out.push(check("Halo asset types", lookup::asset_types(client, &s.assets).await));
        if let Some(want) = &s.assets.default_site {
            let found = lookup::site(client, want, None).await;
            out.push(check("Halo assets' default site", found.map(|r| shown(&r))));
        }
        out
    }

    /// Every status list, by name: `closed: Closed; in progress: In Progress; ...`.
    async fn statuses(&self) -> Result<String, PlatformError> {
        let s = &self.settings.statuses;
        let all = self.client.list_all("Status", "statuses").await?;
        let lists = [
            ("closed", s.closed.iter().collect::<Vec<_>>()),
            ("in progress", s.in_progress.iter().collect()),
            ("open", s.open.iter().collect()),
            ("reopen", vec![&s.reopen]),
            ("close", vec![&s.close]),
        ];
        // Every missing name at once, then each list by name.
        find_each(&all, "id", lists.iter().flat_map(|(_, w)| w.iter().copied()), "status")?;
        let mut parts = Vec::new();
        for (label, wants) in lists {
            parts.push(format!(
                "{label}: {}",
                find_each(&all, "id", wants, "status")?.join(", ")
            ));
        }
        Ok(parts.join("; "))
    }

    /// Severity -> priority, by name.
    async fn priorities(&self) -> Result<String, PlatformError> {
        let found = lookup::priorities(&lookup::all_priorities(&self.client).await?, &self.settings)?;
        Ok(lookup::SEVERITIES
            .iter()
            .map(|sev| match found.get(sev) {
                Some((_, name)) => format!("{}: {name}", sev.as_str()),
                None => format!("{}: the ticket type's default", sev.as_str()),
            })
            .collect::<Vec<_>>()
            .join(", "))
    }
}
