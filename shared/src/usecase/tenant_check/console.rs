//! The checks that need the S1 console, in order, within the console's budget; skipped once the
//! console cannot be reached (no answer: DNS, refused, TLS, timeout), so the cause is said once.

use futures_util::StreamExt;
use time::OffsetDateTime;

use super::{CONSOLE_BUDGET, Check};
use crate::ApiToken;
use crate::s1::{AgentQuery, S1Client, S1Error, SiteQuery, ThreatQuery};

/// Every check that needs the console, in the order they run.
const CONSOLE_CHECKS: [&str; 8] = [
    "console reachable",
    "token valid",
    "token scope",
    "status-writeback can write",
    "token rotation",
    "token expiry",
    "poll-threats can read",
    "sync-assets can read",
];

/// The checks so far, and whether the console is down.
pub(super) struct Checks {
    out: Vec<Check>,
    /// Why the console's remaining checks are skipped.
    pub(super) console_down: Option<String>,
    /// The token's scope as `/user` says it, once read.
    pub(super) token_scope: Option<String>,
    deadline: tokio::time::Instant,
}

/// The first page of a list, to prove the token may read it.
async fn first_page<S: futures_util::Stream<Item = Result<usize, S1Error>>>(s: S) -> Result<usize, S1Error> {
    let mut s = std::pin::pin!(s);
    s.next().await.unwrap_or(Ok(0))
}

impl Checks {
    /// No checks yet; the console's must be done by `deadline`.
    pub(super) fn new(deadline: tokio::time::Instant) -> Self {
        Self {
            out: Vec::new(),
            console_down: None,
            token_scope: None,
            deadline,
        }
    }

    pub(super) fn push(&mut self, check: Check) {
        self.out.push(check);
    }

    pub(super) fn into_checks(self) -> Vec<Check> {
        self.out
    }

    /// Runs one call to the console within the console budget, or skips it once the console is
    /// down. A transport failure or the budget running out marks the console down.
    pub(super) async fn console<T>(
        &mut self,
        name: &str,
        call: impl std::future::Future<Output = Result<T, S1Error>>,
    ) -> Option<Result<T, S1Error>> {
        if let Some(why) = &self.console_down {
            self.out.push(Check::skip(name, why));
            return None;
        }
        match tokio::time::timeout_at(self.deadline, call).await {
            Ok(Err(e @ S1Error::Transport { .. })) => {
                self.push(Check::fail(name, e.to_string()));
                self.console_down = Some("console unreachable (see above)".into());
                None
            }
            Ok(r) => Some(r),
            Err(_) => {
                self.push(Check::fail(
                    name,
                    format!(
                        "no answer within the test's {} s budget for the console",
                        CONSOLE_BUDGET.as_secs()
                    ),
                ));
                self.console_down = Some("console unreachable (too slow, see above)".into());
                None
            }
        }
    }

    /// Like [`Checks::console`], recording the outcome through `judge` (a detail, or what is
    /// wrong).
    async fn console_check<T>(
        &mut self,
        name: &str,
        call: impl std::future::Future<Output = Result<T, S1Error>>,
        judge: impl FnOnce(T) -> Check,
    ) -> Option<()> {
        let r = self.console(name, call).await?;
        self.push(match r {
            Ok(v) => judge(v),
            Err(e) => Check::fail(name, e.to_string()),
        });
        Some(())
    }

    /// The checks that need the console, in order; skipped once it is down.
    pub(super) async fn console_checks(&mut self, client: Option<&S1Client>, token: Option<&ApiToken>) {
        let (Some(client), Some(token)) = (client, token) else {
            let why = self.console_down.clone().unwrap_or_default();
            for name in CONSOLE_CHECKS {
                if !self.out.iter().any(|done| done.check == name) {
                    self.out.push(Check::skip(name, &why));
                }
            }
            return;
        };
        self.console_check("console reachable", client.system_status(), |s| {
            Check::ok("console reachable", format!("health {}", s.health.unwrap_or_default()))
        })
        .await;
        self.console_check("token valid", client.system_info(), |i| {
            Check::ok(
                "token valid",
                format!("console version {}", i.version.unwrap_or_default()),
            )
        })
        .await;
        self.scope(client).await;
        self.console_check("token expiry", client.api_token_details(token), |d| {
            const NAME: &str = "token expiry";
            match d.expires_at {
                Some(x) => {
                    let days = (x - OffsetDateTime::now_utc()).whole_days();
                    if days < 7 {
                        Check::fail(NAME, format!("expires in {days} day(s): rotate or replace it"))
                    } else {
                        Check::ok(NAME, format!("{days} days left"))
                    }
                }
                None => Check::fail(NAME, "S1 sent no expiry"),
            }
        })
        .await;
        self.console_check(
            "poll-threats can read",
            first_page(
                client
                    .threats(&ThreatQuery {
                        limit: 1,
                        ..ThreatQuery::default()
                    })
                    .map(|p| p.map(|p| p.items.len())),
            ),
            |_| Check::ok("poll-threats can read", "GET /threats"),
        )
        .await;
        self.console_check("sync-assets can read", assets_readable(client), |detail| {
            Check::ok("sync-assets can read", detail)
        })
        .await;
    }

    /// The token's scope, whether its user may write (the writeback) and generate tokens (the
    /// rotation).
    async fn scope(&mut self, client: &S1Client) {
        match self.console("token scope", client.user()).await {
            None => {
                for name in ["status-writeback can write", "token rotation"] {
                    let why = self.console_down.clone().unwrap_or_default();
                    self.out.push(Check::skip(name, &why));
                }
            }
            Some(Err(e)) => self.push(Check::fail("token scope", e.to_string())),
            Some(Ok(u)) => {
                self.token_scope = u.scope.clone();
                let scope = format!("{} scope", u.scope.clone().unwrap_or_default());
                self.push(Check::ok("token scope", scope.clone()));
                let roles: std::collections::BTreeSet<&str> = u
                    .scope_roles
                    .iter()
                    .chain(&u.site_roles)
                    .filter_map(|r| r.role_name.as_deref())
                    .collect();
                let listed = roles.iter().copied().collect::<Vec<_>>().join(", ");
                const WRITE: &str = "status-writeback can write";
                self.push(if !roles.is_empty() && roles.iter().all(|r| r.eq_ignore_ascii_case("viewer")) {
                    Check::fail(
                        WRITE,
                        format!(
                            "the token's user has only the {listed} role: S1 will refuse status, verdict and notes (they would end in the dead letters)"
                        ),
                    )
                } else if roles.is_empty() {
                    Check::ok(WRITE, scope)
                } else {
                    Check::ok(WRITE, format!("role(s) {listed}"))
                });
                self.push(Check::ok(
                    "token rotation",
                    if u.can_generate_api_token == Some(true) {
                        "S1 lets this user generate API tokens: the rotation function can rotate it"
                    } else {
                        "this user cannot generate API tokens (a service user?): replace the token by hand before it expires"
                    },
                ));
            }
        }
    }
}

/// A first page of agents, sites and accounts (site scope: no accounts, customers come from
/// sites).
async fn assets_readable(client: &S1Client) -> Result<String, S1Error> {
    first_page(
        client
            .agents(&AgentQuery {
                limit: 1,
                ..AgentQuery::default()
            })
            .map(|p| p.map(|p| p.items.len())),
    )
    .await?;
    first_page(
        client
            .sites(&SiteQuery {
                limit: 1,
                ..SiteQuery::default()
            })
            .map(|p| p.map(|p| p.items.len())),
    )
    .await?;
    match first_page(client.accounts().map(|p| p.map(|p| p.items.len()))).await {
        Ok(_) => Ok("GET /agents, /sites, /accounts".to_owned()),
        Err(S1Error::Forbidden { .. }) => Ok("GET /agents, /sites (site scope: customers come from sites)".to_owned()),
        Err(e) => Err(e),
    }
}
