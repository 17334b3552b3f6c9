//! The checks of a tenant that reads unified alerts (UAM): the token's scope (UAM takes an
//! account- or site-scoped token), a first page of alerts, and the write actions the writeback
//! triggers, asked about that page's alert.

use serde::Deserialize;
use serde_json::json;

use super::Check;
use super::console::Checks;
use crate::s1::uam_writes::UamScope;
use crate::s1::{S1Client, S1Error};
use crate::store::TenantConfig;

/// The UAM checks, in the order they run.
pub(super) const UAM_CHECKS: [&str; 3] = ["UAM token scope", "UAM alerts readable", "UAM write actions"];

const FIRST_ALERT: &str = "query BridgeCheck($scope: ScopeSelectorInput) {
  alerts(first: 1, scope: $scope, viewType: ALL) { totalCount edges { node { id } } }
}";

#[derive(Deserialize)]
struct FirstAlert {
    alerts: Connection,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Connection {
    #[serde(default)]
    total_count: Option<u64>,
    #[serde(default)]
    edges: Vec<Edge>,
}

#[derive(Deserialize)]
struct Edge {
    node: Node,
}

#[derive(Deserialize)]
struct Node {
    id: String,
}

/// What the token's `/user` scope says of UAM: account and site tokens may call it; a global
/// (tenant-wide) one may not.
pub(super) fn scope_check(scope: Option<&str>) -> Check {
    const NAME: &str = "UAM token scope";
    match scope.map(str::to_ascii_lowercase).as_deref() {
        Some("account" | "site") => Check::ok(
            NAME,
            format!(
                "{} scope: UAM takes account- and site-scoped tokens",
                scope.unwrap_or_default()
            ),
        ),
        Some(other) => Check::fail(
            NAME,
            format!(
                "{other} scope: UAM needs an account- or site-scoped token; create one under the account or site the tenant reads"
            ),
        ),
        None => Check::fail(
            NAME,
            "S1 did not say the token's scope; UAM needs an account- or site-scoped token",
        ),
    }
}

impl Checks {
    /// The UAM checks (after the console's: the token's scope is read there); skipped once the
    /// console is down.
    pub(super) async fn uam_checks(&mut self, client: Option<&S1Client>, tenant: &TenantConfig) {
        let Some(client) = client else {
            let why = self.console_down.clone().unwrap_or_default();
            for name in UAM_CHECKS {
                self.push(Check::skip(name, &why));
            }
            return;
        };
        let scope = self.token_scope.clone();
        self.push(scope_check(scope.as_deref()));
        let uam_scope = UamScope::for_tenant(&tenant.account_ids, &tenant.site_ids);
        let first = self
            .console(
                "UAM alerts readable",
                client.graphql::<_, FirstAlert>(FIRST_ALERT, &json!({ "scope": uam_scope })),
            )
            .await;
        let alert = match first {
            None => {
                let why = self.console_down.clone().unwrap_or_default();
                self.push(Check::skip("UAM write actions", &why));
                return;
            }
            Some(Err(e)) => {
                self.push(Check::fail("UAM alerts readable", e.to_string()));
                self.push(Check::skip("UAM write actions", "the alerts could not be read"));
                return;
            }
            Some(Ok(page)) => {
                self.push(Check::ok(
                    "UAM alerts readable",
                    format!(
                        "alerts query answered ({} alert(s) in scope)",
                        page.alerts.total_count.unwrap_or(page.alerts.edges.len() as u64)
                    ),
                ));
                page.alerts.edges.into_iter().next().map(|e| e.node.id)
            }
        };
        let Some(alert) = alert else {
            self.push(Check::skip(
                "UAM write actions",
                "no unified alert in scope to ask the console about",
            ));
            return;
        };
        let ids = [alert];
        let found = self
            .console(
                "UAM write actions",
                client.uam_discover_actions(&ids, uam_scope.as_ref()),
            )
            .await;
        match found {
            None => {}
            Some(Ok(a)) => self.push(Check::ok(
                "UAM write actions",
                format!(
                    "status ({}), verdict ({}){} available",
                    a.status,
                    a.verdict,
                    a.note.map(|n| format!(", note ({n})")).unwrap_or_default()
                ),
            )),
            Some(Err(e @ S1Error::InvalidRequest(_))) => self.push(Check::fail(
                "UAM write actions",
                format!("{e}: the writeback's changes to unified alerts would end in the dead letters"),
            )),
            Some(Err(e)) => self.push(Check::fail("UAM write actions", e.to_string())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::platform::check::CheckStatus;

    #[test]
    fn uam_takes_account_and_site_tokens_only() {
        assert_eq!(scope_check(Some("account")).status, CheckStatus::Ok);
        assert_eq!(scope_check(Some("Site")).status, CheckStatus::Ok);
        let global = scope_check(Some("tenant"));
        assert_eq!(global.status, CheckStatus::Fail);
        assert!(global.detail.contains("account- or site-scoped"), "{global:?}");
        assert_eq!(scope_check(None).status, CheckStatus::Fail);
    }
}
