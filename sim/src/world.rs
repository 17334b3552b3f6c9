//! The simulated console's REST state: accounts, sites, agents, threats, alerts, notes and
//! tokens (its unified alerts are the UAM store's, beside it in [`crate::console`]).

use std::collections::{BTreeMap, HashMap};
use std::hash::{DefaultHasher, Hash, Hasher};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};
use time::{Duration, OffsetDateTime, macros::datetime};

use crate::faults::Faults;

/// The tenant-scope token every default simulator accepts. Not a secret: it only opens the
/// simulator.
pub const DEFAULT_TOKEN: &str = "sim-tenant-token";

/// How the last page says "no more pages": S1 has been seen sending all three.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CursorEnd {
    /// JSON `null` (the spec).
    #[default]
    Null,
    /// The string `"null"`.
    NullString,
    /// The empty string.
    Empty,
}

/// What a token may see.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "scope", content = "ids", rename_all = "snake_case")]
pub enum TokenScope {
    Tenant,
    Accounts(Vec<String>),
    Sites(Vec<String>),
}

/// A token the simulator accepts.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TokenSpec {
    pub token: String,
    pub scope: TokenScope,
    #[serde(with = "time::serde::rfc3339")]
    pub expires_at: OffsetDateTime,
    /// A viewer token gets `missing_permissions` for each threat it tries to change.
    #[serde(default = "yes")]
    pub can_write: bool,
    #[serde(default = "default_user")]
    pub user_name: String,
}

fn yes() -> bool {
    true
}
fn default_user() -> String {
    "Integration Service User".into()
}

impl TokenSpec {
    /// A tenant-scope token that expires `days` from now.
    pub fn tenant(token: impl Into<String>, days: i64) -> Self {
        Self {
            token: token.into(),
            scope: TokenScope::Tenant,
            expires_at: OffsetDateTime::now_utc() + Duration::days(days),
            can_write: true,
            user_name: default_user(),
        }
    }
}

/// Shape and size of the simulated console.
#[derive(Debug, Clone)]
pub struct SimConfig {
    pub seed: u64,
    pub accounts: usize,
    pub sites_per_account: usize,
    pub agents: usize,
    pub threats: usize,
    pub cloud_alerts: usize,
    /// `createdAt` of the first threat.
    pub start: OffsetDateTime,
    /// Time between consecutive threats.
    pub threat_spacing: Duration,
    /// How many consecutive threats share one `updatedAt` (1 = all distinct).
    pub same_updated_at: usize,
    /// Every n-th agent is decommissioned (0 = none).
    pub decommissioned_every: usize,
    /// Tokens accepted; the default holds [`DEFAULT_TOKEN`], tenant scope, 30 days left.
    pub tokens: Vec<TokenSpec>,
    pub cursor_end: CursorEnd,
    /// Unified alerts (UAM) from several detection sources; see [`crate::uam`].
    pub unified_alerts: usize,
    /// Every n-th unified alert is an EDR alert that is the same detection as a threat
    /// (`externalId` = the threat id); 0 = none.
    pub unified_threat_every: usize,
}

impl Default for SimConfig {
    fn default() -> Self {
        Self {
            seed: 42,
            accounts: 3,
            sites_per_account: 2,
            agents: 200,
            threats: 1_000,
            cloud_alerts: 50,
            start: datetime!(2026-01-01 00:00:00 UTC),
            threat_spacing: Duration::seconds(1),
            same_updated_at: 1,
            decommissioned_every: 10,
            tokens: vec![TokenSpec::tenant(DEFAULT_TOKEN, 30)],
            cursor_end: CursorEnd::Null,
            unified_alerts: 40,
            unified_threat_every: 3,
        }
    }
}

pub(crate) struct Account {
    pub id: u64,
    pub name: String,
    pub state: &'static str,
    pub account_type: &'static str,
    pub created_at: OffsetDateTime,
    pub updated_at: OffsetDateTime,
}

pub(crate) struct Site {
    pub id: u64,
    pub account: usize,
    pub name: String,
    pub state: &'static str,
    pub is_default: bool,
    pub created_at: OffsetDateTime,
    pub updated_at: OffsetDateTime,
}

pub(crate) struct Agent {
    /// Removed from the console (uninstalled and deleted): no longer listed.
    pub deleted: bool,
    pub id: u64,
    pub uuid: String,
    pub site: usize,
    pub computer_name: String,
    pub os: usize,
    pub machine_type: &'static str,
    pub is_active: bool,
    pub is_decommissioned: bool,
    pub ip: [u8; 4],
    pub created_at: OffsetDateTime,
    pub updated_at: OffsetDateTime,
}

pub(crate) struct Note {
    pub id: u64,
    pub text: String,
    pub creator: String,
    pub created_at: OffsetDateTime,
}

pub(crate) struct Threat {
    pub id: u64,
    pub agent: usize,
    /// Empty for fileless threats.
    pub sha1: String,
    pub name: usize,
    pub confidence: &'static str,
    pub incident_status: &'static str,
    pub verdict: &'static str,
    pub mitigation: &'static str,
    pub storyline: u64,
    pub fileless: bool,
    pub external_ticket_id: Option<String>,
    pub created_at: OffsetDateTime,
    pub updated_at: OffsetDateTime,
    pub notes: Vec<Note>,
}

pub(crate) struct CloudAlert {
    pub id: u64,
    pub agent: usize,
    pub rule: usize,
    pub incident_status: &'static str,
    pub verdict: &'static str,
    pub created_at: OffsetDateTime,
    pub updated_at: OffsetDateTime,
}

pub(crate) const OSES: [(&str, &str, &str); 3] = [
    ("windows", "Windows 11 Pro", "22631"),
    ("linux", "Ubuntu 22.04.4 LTS", "5.15.0-105-generic"),
    ("macos", "macOS Sonoma", "14.4.1"),
];
const MACHINE_TYPES: [&str; 3] = ["laptop", "desktop", "server"];
pub(crate) const THREAT_NAMES: [(&str, &str); 8] = [
    ("invoice_0423.exe", "Trojan"),
    ("mimikatz.exe", "Infostealer"),
    ("beacon_x64.dll", "Malware"),
    ("wannacry.exe", "Ransomware"),
    ("setup_toolbar.exe", "PUA"),
    ("update_helper.ps1", "Malware"),
    ("keygen.exe", "Hacktool"),
    ("doc_macro.xlsm", "Exploit"),
];
pub(crate) const RULES: [(&str, &str); 4] = [
    ("Suspicious PowerShell download cradle", "High"),
    ("LSASS memory access", "Critical"),
    ("New scheduled task from temp folder", "Medium"),
    ("Rare parent-child process pair", "Low"),
];

const ACCOUNT_BASE: u64 = 1_100_000_000_000_000_000;
const SITE_BASE: u64 = 1_200_000_000_000_000_000;
const AGENT_BASE: u64 = 1_300_000_000_000_000_000;
const THREAT_BASE: u64 = 1_500_000_000_000_000_000;
const ALERT_BASE: u64 = 1_600_000_000_000_000_000;
const NOTE_BASE: u64 = 1_700_000_000_000_000_000;
pub(crate) const GROUP_BASE: u64 = 1_400_000_000_000_000_000;

pub(crate) struct World {
    pub accounts: Vec<Account>,
    pub sites: Vec<Site>,
    pub agents: Vec<Agent>,
    pub threats: Vec<Threat>,
    pub alerts: Vec<CloudAlert>,
    pub threat_index: HashMap<u64, usize>,
    pub tokens: BTreeMap<String, TokenSpec>,
    pub faults: Faults,
    pub cursor_end: CursorEnd,
    pub next_note: u64,
    last_write: OffsetDateTime,
    rng: fastrand::Rng,
}

fn hex(rng: &mut fastrand::Rng, bytes: usize) -> String {
    (0..bytes).map(|_| format!("{:02x}", rng.u8(..))).collect()
}

impl World {
    pub(crate) fn generate(cfg: &SimConfig) -> Self {
        let mut rng = fastrand::Rng::with_seed(cfg.seed);
        let origin = cfg.start - Duration::days(400);
        let accounts: Vec<Account> = (0..cfg.accounts.max(1))
            .map(|i| Account {
                id: ACCOUNT_BASE + i as u64 + 1,
                name: format!("Customer {}", (b'A' + (i % 26) as u8) as char),
                state: if i > 0 && i % 5 == 4 { "expired" } else { "active" },
                account_type: if i % 3 == 2 { "Trial" } else { "Paid" },
                created_at: origin + Duration::days(i as i64),
                updated_at: origin + Duration::days(i as i64 + 30),
            })
            .collect();
        let mut sites = Vec::new();
        for (a, acc) in accounts.iter().enumerate() {
            for s in 0..cfg.sites_per_account.max(1) {
                sites.push(Site {
                    id: SITE_BASE + sites.len() as u64 + 1,
                    account: a,
                    name: if s == 0 {
                        format!("{} HQ", acc.name)
                    } else {
                        format!("{} Branch {s}", acc.name)
                    },
                    state: acc.state,
                    is_default: s == 0,
                    created_at: acc.created_at + Duration::hours(1),
                    updated_at: acc.updated_at,
                });
            }
        }
        let agents: Vec<Agent> = (0..cfg.agents.max(1))
            .map(|i| {
                let os = rng.usize(..OSES.len());
                let decom =
                    cfg.decommissioned_every > 0 && i % cfg.decommissioned_every == cfg.decommissioned_every - 1;
                let created = origin + Duration::minutes(i as i64);
                Agent {
                    deleted: false,
                    id: AGENT_BASE + i as u64 + 1,
                    uuid: hex(&mut rng, 16),
                    site: rng.usize(..sites.len()),
                    computer_name: format!("{}-{:05}", ["WS", "SRV", "MAC"][os], i + 1),
                    os,
                    machine_type: if os == 1 {
                        "server"
                    } else {
                        MACHINE_TYPES[rng.usize(..2)]
                    },
                    is_active: !decom,
                    is_decommissioned: decom,
                    ip: [10, rng.u8(..), rng.u8(..), rng.u8(1..255)],
                    created_at: created,
                    updated_at: created + Duration::days(30),
                }
            })
            .collect();
        let hash_pool: Vec<String> = (0..(cfg.threats / 4).max(1)).map(|_| hex(&mut rng, 20)).collect();
        // Infections recur: half the time a threat is a file already seen on its endpoint, so
        // stories (endpoint + file) hold several threats, as on real consoles.
        let mut seen_on_agent: Vec<Vec<usize>> = vec![Vec::new(); agents.len()];
        let group = cfg.same_updated_at.max(1);
        let threats: Vec<Threat> = (0..cfg.threats)
            .map(|i| {
                let at = cfg.start + cfg.threat_spacing * ((i / group * group) as i32);
                let fileless = rng.u8(..100) < 5;
                let roll = rng.u8(..100);
                let agent = rng.usize(..agents.len());
                let sha1 = if fileless {
                    String::new()
                } else {
                    let known = &mut seen_on_agent[agent];
                    let h = if !known.is_empty() && rng.bool() {
                        known[rng.usize(..known.len())]
                    } else {
                        rng.usize(..hash_pool.len())
                    };
                    known.push(h);
                    hash_pool[h].clone()
                };
                Threat {
                    id: THREAT_BASE + i as u64 + 1,
                    agent,
                    sha1,
                    name: rng.usize(..THREAT_NAMES.len()),
                    confidence: if rng.u8(..100) < 70 { "malicious" } else { "suspicious" },
                    incident_status: match roll {
                        0..80 => "unresolved",
                        80..90 => "in_progress",
                        _ => "resolved",
                    },
                    verdict: if roll >= 90 { "true_positive" } else { "undefined" },
                    mitigation: if rng.bool() { "mitigated" } else { "not_mitigated" },
                    storyline: rng.u64(..),
                    fileless,
                    external_ticket_id: None,
                    created_at: at,
                    updated_at: at,
                    notes: Vec::new(),
                }
            })
            .collect();
        let alerts = (0..cfg.cloud_alerts)
            .map(|i| {
                let at = cfg.start + Duration::seconds(30) * (i as i32);
                CloudAlert {
                    id: ALERT_BASE + i as u64 + 1,
                    agent: rng.usize(..agents.len()),
                    rule: rng.usize(..RULES.len()),
                    incident_status: "Unresolved",
                    verdict: "Undefined",
                    created_at: at,
                    updated_at: at,
                }
            })
            .collect();
        let threat_index = threats.iter().enumerate().map(|(i, t)| (t.id, i)).collect();
        Self {
            accounts,
            sites,
            agents,
            threats,
            alerts,
            threat_index,
            tokens: cfg.tokens.iter().map(|t| (t.token.clone(), t.clone())).collect(),
            faults: Faults::default(),
            cursor_end: cfg.cursor_end,
            next_note: NOTE_BASE,
            last_write: OffsetDateTime::UNIX_EPOCH,
            rng,
        }
    }

    /// A strictly increasing write time in microseconds, like S1's `updatedAt`.
    pub(crate) fn write_time(&mut self) -> OffsetDateTime {
        let now = OffsetDateTime::now_utc();
        let now = now.replace_nanosecond(now.microsecond() * 1000).unwrap_or(now);
        let t = if now > self.last_write {
            now
        } else {
            self.last_write + Duration::microseconds(1)
        };
        self.last_write = t;
        t
    }

    pub(crate) fn random_token(&mut self) -> String {
        hex(&mut self.rng, 40)
    }

    pub(crate) fn site_visible(&self, scope: &TokenScope, site: usize) -> bool {
        match scope {
            TokenScope::Tenant => true,
            TokenScope::Sites(ids) => ids.iter().any(|i| *i == self.sites[site].id.to_string()),
            TokenScope::Accounts(ids) => {
                let acc = self.accounts[self.sites[site].account].id.to_string();
                ids.contains(&acc)
            }
        }
    }

    pub(crate) fn agent_site(&self, agent: usize) -> usize {
        self.agents[agent].site
    }
}

/// A change to an agent made in the console or by the endpoint itself.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct AgentChange {
    #[serde(default)]
    pub computer_name: Option<String>,
    /// Move to this site (by id).
    #[serde(default)]
    pub site_id: Option<String>,
    #[serde(default)]
    pub decommissioned: Option<bool>,
    /// Remove it from the console altogether.
    #[serde(default)]
    pub deleted: Option<bool>,
}

impl World {
    pub(crate) fn change_agent(&mut self, uuid: &str, c: &AgentChange) -> Result<(), String> {
        let site = match &c.site_id {
            Some(id) => Some(
                self.sites
                    .iter()
                    .position(|s| s.id.to_string() == *id)
                    .ok_or(format!("no site {id}"))?,
            ),
            None => None,
        };
        let now = self.write_time();
        let a = self
            .agents
            .iter_mut()
            .find(|a| a.uuid.eq_ignore_ascii_case(uuid))
            .ok_or(format!("no agent {uuid}"))?;
        if let Some(n) = &c.computer_name {
            a.computer_name = n.clone();
        }
        if let Some(s) = site {
            a.site = s;
        }
        if let Some(d) = c.decommissioned {
            a.is_decommissioned = d;
            a.is_active = !d;
        }
        if let Some(d) = c.deleted {
            a.deleted = d;
        }
        a.updated_at = now;
        Ok(())
    }
}

/// New threats to add to a running simulator (as if agents just detected them).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct NewThreats {
    pub count: usize,
    /// On this agent (by UUID); a seeded random agent otherwise.
    #[serde(default)]
    pub agent_uuid: Option<String>,
    /// With this SHA1; a fresh random one otherwise. Empty means fileless.
    #[serde(default)]
    pub sha1: Option<String>,
    /// Detection time (`identifiedAt`/`createdAt`); now otherwise. `updatedAt` is always now.
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub detected_at: Option<OffsetDateTime>,
}

impl World {
    /// Adds threats; returns their ids.
    pub(crate) fn add_threats(&mut self, spec: &NewThreats) -> Result<Vec<String>, String> {
        let agent = match &spec.agent_uuid {
            Some(u) => Some(
                self.agents
                    .iter()
                    .position(|a| a.uuid.eq_ignore_ascii_case(u))
                    .ok_or(format!("no agent {u}"))?,
            ),
            None => None,
        };
        let mut ids = Vec::new();
        for _ in 0..spec.count {
            let now = self.write_time();
            let id = THREAT_BASE + self.threats.len() as u64 + 1;
            let sha1 = match &spec.sha1 {
                Some(s) => s.clone(),
                None => hex(&mut self.rng, 20),
            };
            let t = Threat {
                id,
                agent: agent.unwrap_or_else(|| self.rng.usize(..self.agents.len())),
                fileless: sha1.is_empty(),
                sha1,
                name: self.rng.usize(..THREAT_NAMES.len()),
                confidence: "malicious",
                incident_status: "unresolved",
                verdict: "undefined",
                mitigation: "not_mitigated",
                storyline: self.rng.u64(..),
                external_ticket_id: None,
                created_at: spec.detected_at.unwrap_or(now),
                updated_at: now,
                notes: Vec::new(),
            };
            self.threat_index.insert(id, self.threats.len());
            self.threats.push(t);
            ids.push(id.to_string());
        }
        Ok(ids)
    }
}

/// A cursor carries the last key of its page and a hash of the query it belongs to, so a
/// cursor reused with another query is refused, as S1 does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Cursor {
    pub query_hash: u64,
    pub key: i128,
    pub id: u64,
}

impl Cursor {
    pub(crate) fn encode(&self) -> String {
        URL_SAFE_NO_PAD.encode(format!("v1:{}:{}:{}", self.query_hash, self.key, self.id))
    }

    pub(crate) fn decode(s: &str) -> Option<Self> {
        let raw = String::from_utf8(URL_SAFE_NO_PAD.decode(s).ok()?).ok()?;
        let mut parts = raw.split(':');
        if parts.next()? != "v1" {
            return None;
        }
        let c = Cursor {
            query_hash: parts.next()?.parse().ok()?,
            key: parts.next()?.parse().ok()?,
            id: parts.next()?.parse().ok()?,
        };
        parts.next().is_none().then_some(c)
    }
}

/// Deterministic hash of a query's parameters, cursor excluded.
pub(crate) fn query_hash(pairs: &[(String, String)]) -> u64 {
    let mut sorted: Vec<_> = pairs.iter().filter(|(k, _)| k != "cursor").collect();
    sorted.sort();
    let mut h = DefaultHasher::new();
    sorted.hash(&mut h);
    h.finish()
}

pub(crate) fn micros(t: OffsetDateTime) -> i128 {
    t.unix_timestamp_nanos() / 1000
}
