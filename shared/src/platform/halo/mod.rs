//! The `halo` platform: HaloPSA, natively (docs/platforms.md §1; Halo's own OpenAPI document in
//! `tests/fixtures/halo-openapi`).
//!
//! - **Tickets out** (`outbound.rs`): one ticket per story (so one per threat with
//!   `grouping: "threat"`), STAR alerts included, under the client and site the S1 account and
//!   site are mapped to, with the configured ticket type and user, and a priority from the
//!   severity (the tenant's table, else the Halo priority of the same name, else the ticket
//!   type's default). A threat joining the story or changed in the S1 console adds an action (a
//!   private note); a story reopened in S1 reopens the ticket; optionally a story fully resolved
//!   in S1 closes it. The story's ticket id is kept in our store.
//! - **Status back** (`inbound.rs`): Halo's webhook (any payload) is authenticated by Basic
//!   credentials or a secret header, and then only the ticket as Halo's API returns it counts:
//!   its status through the tenant's status lists, the closing action's outcome as the close
//!   reason, and technicians' actions as notes. Our own actions are skipped.
//! - **Customers, sites, assets** (`assets.rs`): S1 accounts, sites and agents as Halo clients,
//!   sites and assets, through a mapping table the operator can pre-fill.

mod assets;
mod check;
pub mod client;
mod inbound;
mod layout;
mod lookup;
mod outbound;

use std::collections::BTreeMap;
use std::num::NonZeroU32;
use std::sync::Arc;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use super::build::{BuildContext, ForTenant};
use super::{InboundAdapter, Platform, PlatformError};
use crate::domain::{PlatformKind, Severity};
use crate::store::{AssetKind, Store};
use crate::tenant::SecretRef;

pub use assets::inventory_number;
pub use client::{HaloAuth, HaloClient};
pub use inbound::{HaloInbound, HaloWebhookAuth, changes, ticket_ids};
pub use lookup::{HaloUser, Resolved, ResolvedCache, find, find_each, resolve};
pub use outbound::{HaloTickets, details_html, marker};

/// Where the adapter finds which Halo client or site an S1 account or site is: the asset
/// snapshot's `platform_ref` (the mapping table), in our store.
#[async_trait]
pub trait Directory: Send + Sync {
    /// The Halo id recorded for an S1 account (`Customer`) or site.
    async fn halo_id(&self, tenant: &str, kind: AssetKind, s1_id: &str) -> Option<i64>;

    /// Whether story `story_id` (read from a ticket's third-party id) is one of the tenant's,
    /// with `ticket` as its ticket (or none recorded yet). Tenants that share a console's host
    /// (several tenants of one console, each with its accounts) and a Halo have story keys of
    /// the same form: only the tenant's own store says whose the ticket is.
    ///
    /// # Errors
    /// The store could not be read (the delivery is answered with an error, so Halo retries).
    async fn owns_ticket(&self, tenant: &str, story_id: &str, ticket: i64) -> Result<bool, String>;
}

#[async_trait]
impl Directory for Store {
    async fn halo_id(&self, tenant: &str, kind: AssetKind, s1_id: &str) -> Option<i64> {
        let found = self.get_assets(tenant, kind, &[s1_id.to_owned()]).await.ok()?;
        found.get(s1_id)?.platform_ref.as_deref()?.parse().ok()
    }

    async fn owns_ticket(&self, tenant: &str, story_id: &str, ticket: i64) -> Result<bool, String> {
        let read = |k: String| async move { self.get_story(tenant, &k).await.map_err(|e| e.to_string()) };
        // The current story of its key, when it is that story; else the story archived by id.
        let current = match crate::domain::story_key_of(story_id) {
            Some(key) => read(key.to_owned()).await?.filter(|s| s.value.id == story_id),
            None => None,
        };
        let story = match current {
            Some(s) => Some(s),
            None => read(story_id.to_owned()).await?,
        };
        Ok(story.is_some_and(|s| {
            s.value
                .platform_ref
                .as_deref()
                .is_none_or(|r| r.trim() == ticket.to_string())
        }))
    }
}

/// A Halo record named by its id or by its name (ticket types, statuses, priorities, users,
/// clients, sites, asset types): ids differ per Halo instance, names travel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum NameOrId {
    Id(i64),
    Name(String),
}

impl std::fmt::Display for NameOrId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NameOrId::Id(id) => write!(f, "#{id}"),
            NameOrId::Name(n) => write!(f, "{n:?}"),
        }
    }
}

fn name(n: &str) -> NameOrId {
    NameOrId::Name(n.to_owned())
}

/// Which Halo statuses mean what, and which ones the bridge sets.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Statuses {
    /// Statuses that resolve the S1 threats (`resolved`).
    #[serde(default = "default_closed")]
    pub closed: Vec<NameOrId>,
    /// Statuses that set them in progress (`in_progress`).
    #[serde(default = "default_in_progress")]
    pub in_progress: Vec<NameOrId>,
    /// Statuses that set them back to `unresolved` (new, reopened).
    #[serde(default = "default_open")]
    pub open: Vec<NameOrId>,
    /// The status a ticket gets when its story reopens in S1.
    #[serde(default = "default_reopen")]
    pub reopen: NameOrId,
    /// The status a ticket gets when its story is fully resolved in S1 (with
    /// `close_when_resolved`).
    #[serde(default = "default_close")]
    pub close: NameOrId,
}

fn default_closed() -> Vec<NameOrId> {
    vec![name("Closed")]
}
fn default_in_progress() -> Vec<NameOrId> {
    vec![name("In Progress")]
}
fn default_open() -> Vec<NameOrId> {
    vec![name("New"), name("Re-opened")]
}
fn default_reopen() -> NameOrId {
    name("Re-opened")
}
fn default_close() -> NameOrId {
    name("Closed")
}

impl Default for Statuses {
    fn default() -> Self {
        Self {
            closed: default_closed(),
            in_progress: default_in_progress(),
            open: default_open(),
            reopen: default_reopen(),
            close: default_close(),
        }
    }
}

/// How Halo's webhook proves it is Halo: the Basic credentials or the secret header the
/// webhook is configured with (Halo signs nothing).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum InboundAuthSettings {
    Basic {
        username: SecretRef,
        password: SecretRef,
    },
    Header {
        /// The header's name, e.g. `X-S1-Bridge-Secret`.
        name: String,
        value: SecretRef,
    },
}

/// How S1 agents are matched to Halo assets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AssetMatch {
    /// `inventory_number` = `S1:<agent UUID>` (the bridge writes it; exact lookups).
    #[default]
    InventoryNumber,
    /// The agent's serial number, searched across the asset's key fields.
    Serial,
    /// The agent's computer name, searched across the asset's key fields.
    Hostname,
}

/// How an asset's Halo type is chosen.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "mode", rename_all = "snake_case", deny_unknown_fields)]
pub enum AssetTypeRule {
    /// Every asset gets this type.
    Fixed { asset_type: NameOrId },
    /// The type named by an S1 agent field (e.g. `machineType`: "desktop", "server"), created
    /// under the default asset group when Halo has none of that name.
    Field { field: String },
    /// The first rule whose field equals its value, else `default`.
    Rules { rules: Vec<TypeRule>, default: NameOrId },
}

/// One ordered asset-type rule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TypeRule {
    pub field: String,
    pub equals: String,
    pub asset_type: NameOrId,
}

/// The asset sync's options.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AssetOptions {
    #[serde(default)]
    pub matching: AssetMatch,
    /// The site for agents whose S1 site is not mapped to a Halo site.
    #[serde(default)]
    pub default_site: Option<NameOrId>,
    /// Keep an existing asset on the Halo site it is on, wherever S1 moves the agent.
    #[serde(default)]
    pub dont_move: bool,
    /// Never create assets; only update (or deactivate) ones already in Halo.
    #[serde(default)]
    pub dont_create: bool,
    /// S1 agent field -> where Halo keeps it: the asset type's key fields (`key_field`,
    /// `key_field2`, `key_field3`), a field of the type by name (`field:<name>`), a custom
    /// field (`custom:<name>`), or a top-level asset field (`notes`, ...).
    #[serde(default = "default_field_map")]
    pub fields: BTreeMap<String, String>,
    #[serde(default = "default_type_rule")]
    pub asset_type: AssetTypeRule,
    /// The asset group new asset types are created under.
    #[serde(default = "default_group")]
    pub asset_group: NameOrId,
    /// The status id new assets get, when set.
    #[serde(default)]
    pub new_status: Option<i64>,
}

fn default_field_map() -> BTreeMap<String, String> {
    [
        ("computerName", "key_field"),
        ("serialNumber", "key_field2"),
        ("osName", "key_field3"),
    ]
    .into_iter()
    .map(|(a, b)| (a.to_owned(), b.to_owned()))
    .collect()
}

fn default_type_rule() -> AssetTypeRule {
    AssetTypeRule::Rules {
        rules: vec![TypeRule {
            field: "machineType".into(),
            equals: "server".into(),
            asset_type: name("Server"),
        }],
        default: name("Workstation"),
    }
}

fn default_group() -> NameOrId {
    name("Computers")
}

impl Default for AssetOptions {
    fn default() -> Self {
        Self {
            matching: AssetMatch::default(),
            default_site: None,
            dont_move: false,
            dont_create: false,
            fields: default_field_map(),
            asset_type: default_type_rule(),
            asset_group: default_group(),
            new_status: None,
        }
    }
}

/// A tenant's HaloPSA settings: secret references, never values.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Settings {
    /// The Halo instance, e.g. `https://acme.halopsa.com` (its API is under `/api`).
    pub url: String,
    /// A hosted (cloud) instance's tenant name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    /// The API application's client id and secret (client credentials).
    pub client_id: SecretRef,
    pub client_secret: SecretRef,
    /// The authorisation server's token endpoint, when it is not on the instance's own origin
    /// (the client secret is sent only to the instance's origin or here; AuthInfo's answer is
    /// not trusted with it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_url: Option<String>,
    /// The scopes asked for (`all`, or e.g. `read:tickets edit:tickets read:customers ...`).
    #[serde(default = "default_scope")]
    pub scope: String,
    /// The ticket type tickets are logged as.
    pub ticket_type: NameOrId,
    /// The end-user tickets are logged for (else Halo's default for the client).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<NameOrId>,
    /// The client (and site) for tickets and token alerts whose S1 account is not mapped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client: Option<NameOrId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub site: Option<NameOrId>,
    /// Severity -> Halo priority; a severity not listed takes the Halo priority of its name,
    /// else the ticket type's default.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub priorities: BTreeMap<Severity, NameOrId>,
    #[serde(default)]
    pub statuses: Statuses,
    /// Close the ticket (with `statuses.close`) when every threat of its story is resolved in
    /// the S1 console.
    #[serde(default)]
    pub close_when_resolved: bool,
    /// How Halo's webhook to us is authenticated; without it the webhook is refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inbound: Option<InboundAuthSettings>,
    #[serde(default)]
    pub assets: AssetOptions,
    /// Halo's request budget per 300 s (its documented limit is 500).
    #[serde(default = "default_budget")]
    pub requests_per_5_minutes: NonZeroU32,
    /// The length of that budget's window, in seconds: Halo's is 300, and so is the default.
    /// For tests and benchmarks only (`s1-bridge bench-halo-import` shrinks it to run an hour's
    /// import in minutes): the client's pacing, the shared budget and an asset sync's
    /// continuation delay all follow it. Not written when it is the default.
    #[serde(default = "default_window", skip_serializing_if = "is_default_window")]
    pub budget_window_seconds: NonZeroU32,
}

fn default_scope() -> String {
    "all".into()
}

fn default_budget() -> NonZeroU32 {
    NonZeroU32::new(client::HALO_LIMIT.0).expect("not zero")
}

fn default_window() -> NonZeroU32 {
    NonZeroU32::new(client::HALO_LIMIT.1.as_secs() as u32).expect("not zero")
}

fn is_default_window(w: &NonZeroU32) -> bool {
    *w == default_window()
}

impl Settings {
    /// The request budget: `requests_per_5_minutes` per `budget_window_seconds`.
    pub fn budget(&self) -> (u32, std::time::Duration) {
        (
            self.requests_per_5_minutes.get(),
            std::time::Duration::from_secs(u64::from(self.budget_window_seconds.get())),
        )
    }
}

/// What a process shares between a tenant's Halo adapters: its client (token, budget) and its
/// resolved settings.
type HaloShared = (Arc<HaloClient>, Arc<ResolvedCache>);

impl Settings {
    /// The tenant's Halo client and its kept settings, made once per process: one token cache,
    /// one request budget, and the tenant's resolved settings, however many runs and webhooks
    /// use it.
    async fn client(&self, tenant: ForTenant<'_>, ctx: &BuildContext) -> Result<HaloShared, PlatformError> {
        let key = format!(
            "halo\n{}\n{}\n{}\n{}",
            tenant.id,
            self.url,
            self.tenant.as_deref().unwrap_or_default(),
            self.token_url.as_deref().unwrap_or_default()
        );
        if let Some(c) = ctx.kept::<HaloShared>(&key) {
            return Ok(c);
        }
        let client_id = ctx.secret(tenant, &self.client_id, "Halo client_id").await?;
        let client_secret = ctx.secret(tenant, &self.client_secret, "Halo client_secret").await?;
        let auth = HaloAuth {
            base_url: self.url.clone(),
            tenant: self.tenant.clone(),
            client_id: client_id.expose().to_owned().into(),
            client_secret: client_secret.expose().to_owned().into(),
            scope: self.scope.clone(),
            token_url: self.token_url.clone(),
        };
        let limit = self.budget();
        let client =
            HaloClient::new(ctx.http.clone(), auth, &ctx.allowed, limit, ctx.retry.clone()).map_err(tenant.named())?;
        // The instance's budget is kept in the store, shared with every process and tenant
        // using this Halo, when there is one.
        let client = Arc::new(match &ctx.store {
            Some(store) => client.with_shared_budget(store.clone(), limit),
            None => client,
        });
        let made = (client, Arc::new(ResolvedCache::default()));
        ctx.keep(key, made.clone());
        Ok(made)
    }

    async fn tickets(&self, tenant: ForTenant<'_>, ctx: &BuildContext) -> Result<HaloTickets, PlatformError> {
        let (client, resolved) = self.client(tenant, ctx).await?;
        let directory = ctx.store.clone().map(|s| Arc::new(s) as Arc<dyn Directory>);
        Ok(HaloTickets::new(client, self.clone(), tenant.id.to_owned(), directory).with_cache(resolved))
    }
}

#[async_trait]
impl crate::platform::settings_port::PlatformSettings for Settings {
    fn kind(&self) -> PlatformKind {
        PlatformKind::Halo
    }

    fn secrets(&self) -> Vec<(&'static str, &SecretRef)> {
        let mut out = vec![("client_id", &self.client_id), ("client_secret", &self.client_secret)];
        match &self.inbound {
            Some(InboundAuthSettings::Basic { username, password }) => {
                out.push(("inbound.basic.username", username));
                out.push(("inbound.basic.password", password));
            }
            Some(InboundAuthSettings::Header { value, .. }) => out.push(("inbound.header.value", value)),
            None => {}
        }
        out
    }

    fn budget_window(&self) -> Option<std::time::Duration> {
        Some(self.budget().1)
    }

    fn urls(&self) -> Vec<(&'static str, &str)> {
        let mut out = vec![("url", self.url.as_str())];
        if let Some(t) = &self.token_url {
            out.push(("token_url", t.as_str()));
        }
        out
    }

    fn assets(&self) -> Option<crate::platform::AssetSettings> {
        // Placement, types and fields are the adapter's own (`assets`); the sync only needs to
        // know not to offer new agents.
        Some(crate::platform::AssetSettings {
            no_create: self.assets.dont_create,
            ..Default::default()
        })
    }

    async fn outbound(&self, tenant: ForTenant<'_>, ctx: &BuildContext) -> Result<Arc<dyn Platform>, PlatformError> {
        Ok(Arc::new(self.tickets(tenant, ctx).await?))
    }

    async fn inbound(
        &self,
        tenant: ForTenant<'_>,
        ctx: &BuildContext,
    ) -> Result<Box<dyn InboundAdapter>, PlatformError> {
        let auth = match &self.inbound {
            Some(InboundAuthSettings::Basic { username, password }) => HaloWebhookAuth::Basic {
                username: ctx.secret(tenant, username, "settings.inbound.basic.username").await?,
                password: ctx.secret(tenant, password, "settings.inbound.basic.password").await?,
            },
            Some(InboundAuthSettings::Header { name, value }) => HaloWebhookAuth::Header {
                name: name.to_ascii_lowercase(),
                value: ctx.secret(tenant, value, "settings.inbound.header.value").await?,
            },
            None => return Err(tenant.config_error("no inbound authentication configured for Halo's webhook")),
        };
        Ok(Box::new(HaloInbound {
            tickets: Arc::new(self.tickets(tenant, ctx).await?),
            auth,
            console_url: tenant.console_url.to_owned(),
        }))
    }
}
