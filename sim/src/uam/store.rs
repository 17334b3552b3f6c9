//! The console's unified alerts (UAM): generated with the world, changed by writes through the
//! GraphQL endpoint and by tests through the control API, each write bumping `updatedAt`.

use std::collections::{HashMap, VecDeque};
use std::time::Instant;

use time::{Duration, OffsetDateTime};

use super::schema::is_enum_value;
use super::{ActionOutcome, DetectionSource, NewUnifiedAlerts, UamAction, UnifiedAlertChange};
use crate::world::{SimConfig, THREAT_NAMES, Threat, World};

/// The action types the console offers for every alert, in the order `alertAvailableActions` lists
/// them.
pub(crate) const ACTION_TYPES: [(&str, &str); 5] = [
    ("STATUS_UPDATE", "Change status"),
    ("ANALYST_VERDICT_UPDATE", "Change analyst verdict"),
    ("SET_TICKET_ID", "Set ticket ID"),
    ("ADD_NOTE", "Add note"),
    ("ASSIGN_USER", "Assign user"),
];

pub(crate) const STATUSES: [&str; 3] = ["IN_PROGRESS", "NEW", "RESOLVED"];

/// Rules per non-endpoint source: (alert name, classification, severity).
const IDENTITY_RULES: [(&str, &str, &str); 3] = [
    ("Kerberoasting attempt", "ENUMERATION", "HIGH"),
    ("Password spray against domain accounts", "LATERAL_MOVEMENT", "MEDIUM"),
    ("DCSync from a non-domain-controller", "INFO_STEALER", "CRITICAL"),
];
const CLOUD_RULES: [(&str, &str, &str); 3] = [
    ("S3 bucket made public", "UNKNOWN", "HIGH"),
    ("Root account console login without MFA", "UNKNOWN", "CRITICAL"),
    ("Security group open to the world on port 22", "NETWORK", "MEDIUM"),
];
const THIRD_PARTY_RULES: [(&str, &str, &str); 2] = [
    ("Phishing link clicked", "PHISHING", "MEDIUM"),
    ("Malicious attachment delivered", "MALWARE", "HIGH"),
];

pub(crate) struct UamNote {
    pub id: String,
    pub text: String,
    pub content_type: String,
    pub author: String,
    pub author_id: String,
    pub created_at: OffsetDateTime,
}

pub(crate) struct UnifiedAlert {
    pub id: String,
    pub external_id: String,
    pub source: DetectionSource,
    pub name: String,
    pub classification: String,
    pub severity: String,
    pub confidence: &'static str,
    pub status: String,
    pub verdict: String,
    /// Endpoint alerts: the agent (index into the world's agents).
    pub agent: Option<usize>,
    /// Non-endpoint alerts: the asset (user principal, cloud resource, mailbox).
    pub asset_name: String,
    pub site: usize,
    pub sha1: Option<String>,
    pub file_name: Option<String>,
    pub storyline: Option<String>,
    pub ticket_id: Option<String>,
    pub detected_at: OffsetDateTime,
    pub created_at: OffsetDateTime,
    pub updated_at: OffsetDateTime,
    pub notes: Vec<UamNote>,
    /// What the next actions on this alert answer, set by a test.
    pub outcome: ActionOutcome,
}

impl UnifiedAlert {
    pub(crate) fn updated_ms(&self) -> i64 {
        ms(self.updated_at)
    }

    /// The threat this alert is the same detection as (EDR alerts name it in `externalId`).
    pub(crate) fn twin_of(&self) -> Option<u64> {
        (self.source == DetectionSource::Edr)
            .then(|| self.external_id.parse().ok())
            .flatten()
    }
}

pub(crate) fn ms(t: OffsetDateTime) -> i64 {
    (t.unix_timestamp_nanos() / 1_000_000) as i64
}

fn at_ms(t: OffsetDateTime) -> OffsetDateTime {
    t.replace_nanosecond(t.millisecond() as u32 * 1_000_000).unwrap_or(t)
}

/// An action as `alertAvailableActions` lists it; ids are per console and change on
/// [`UamState::rotate_action_ids`].
#[derive(Clone)]
pub(crate) struct ActionDef {
    pub id: String,
    pub action_type: &'static str,
    pub title: &'static str,
}

pub(crate) struct UamState {
    pub alerts: Vec<UnifiedAlert>,
    pub actions: Vec<ActionDef>,
    pub applied: Vec<UamAction>,
    /// With it on, a tenant-scope (global) token is refused: UAM wants an account or site token.
    pub needs_scoped_token: bool,
    /// Most alerts one `alertTriggerActions` may act on.
    pub trigger_limit: usize,
    /// Requests per second one token may make before HTTP 429 (none: unlimited).
    pub rate_limit: Option<u32>,
    /// Most requests one token made within any one second.
    pub peak_per_second: usize,
    /// Requests refused for going over `rate_limit`.
    pub throttled: u64,
    recent: HashMap<String, VecDeque<Instant>>,
    /// Threat id -> the EDR alerts that are the same detection.
    twins: HashMap<u64, Vec<usize>>,
    next_note: u64,
    generation: u64,
    last_write: OffsetDateTime,
    rng: fastrand::Rng,
}

fn uuid(rng: &mut fastrand::Rng) -> String {
    format!(
        "{:08x}-{:04x}-4{:03x}-8{:03x}-{:012x}",
        rng.u32(..),
        rng.u16(..),
        rng.u16(..0x1000),
        rng.u16(..0x1000),
        rng.u64(..1 << 48)
    )
}

impl UamState {
    pub(crate) fn new(seed: u64) -> Self {
        let mut state = Self {
            alerts: Vec::new(),
            actions: Vec::new(),
            applied: Vec::new(),
            needs_scoped_token: false,
            trigger_limit: 1_000,
            rate_limit: None,
            peak_per_second: 0,
            throttled: 0,
            recent: HashMap::new(),
            twins: HashMap::new(),
            next_note: 1,
            generation: 0,
            last_write: OffsetDateTime::UNIX_EPOCH,
            rng: fastrand::Rng::with_seed(seed ^ 0xac71_0115),
        };
        state.rotate_action_ids();
        state
    }

    pub(crate) fn generate(cfg: &SimConfig, world: &World) -> Self {
        let mut rng = fastrand::Rng::with_seed(cfg.seed ^ 0x55a1_1e27);
        let mut state = Self::new(cfg.seed);
        let group = cfg.same_updated_at.max(1);
        let others = [
            DetectionSource::Identity,
            DetectionSource::Cloud,
            DetectionSource::ThirdParty,
        ];
        let mut twins = 0usize;
        let mut plain = 0usize;
        for i in 0..cfg.unified_alerts {
            let at = cfg.start + cfg.threat_spacing * ((i / group * group) as i32);
            let twin = cfg.unified_threat_every > 0 && i % cfg.unified_threat_every == 0 && !world.threats.is_empty();
            let alert = if twin {
                let t = &world.threats[twins % world.threats.len()];
                twins += 1;
                edr_twin(&mut rng, world, t, at)
            } else {
                let source = others[plain % others.len()];
                plain += 1;
                let site = rng.usize(..world.sites.len());
                other_alert(&mut rng, world, source, site, None, None, at)
            };
            state.push(alert);
        }
        state
    }

    pub(crate) fn push(&mut self, alert: UnifiedAlert) {
        if let Some(threat) = alert.twin_of() {
            self.twins.entry(threat).or_default().push(self.alerts.len());
        }
        self.alerts.push(alert);
    }

    /// The EDR alerts that are the same detection as this threat.
    pub(crate) fn twins_of(&self, threat_id: u64) -> Vec<usize> {
        self.twins.get(&threat_id).cloned().unwrap_or_default()
    }

    /// New action ids for every action type, as after a console upgrade: ids a client cached are
    /// refused from now on.
    pub(crate) fn rotate_action_ids(&mut self) {
        self.generation += 1;
        let generation = self.generation;
        self.actions = ACTION_TYPES
            .iter()
            .map(|(t, title)| ActionDef {
                id: format!(
                    "s1-{}-{generation}-{:06x}",
                    t.to_ascii_lowercase().replace('_', "-"),
                    self.rng.u32(..1 << 24)
                ),
                action_type: t,
                title,
            })
            .collect();
    }

    /// A strictly increasing write time at millisecond precision, like UAM's `updatedAt`.
    pub(crate) fn write_time(&mut self) -> OffsetDateTime {
        let now = at_ms(OffsetDateTime::now_utc());
        let t = if now > self.last_write {
            now
        } else {
            self.last_write + Duration::milliseconds(1)
        };
        self.last_write = t;
        t
    }

    /// Counts a request of `token` against its one-second window; false when it is over the rate
    /// limit (and then not counted as served).
    pub(crate) fn admit(&mut self, token: &str, now: Instant) -> bool {
        let window = self.recent.entry(token.to_owned()).or_default();
        while window
            .front()
            .is_some_and(|t| now.duration_since(*t) >= std::time::Duration::from_secs(1))
        {
            window.pop_front();
        }
        if self.rate_limit.is_some_and(|limit| window.len() >= limit as usize) {
            self.throttled += 1;
            return false;
        }
        window.push_back(now);
        self.peak_per_second = self.peak_per_second.max(window.len());
        true
    }

    pub(crate) fn find(&self, id: &str) -> Option<usize> {
        self.alerts.iter().position(|a| a.id == id)
    }

    pub(crate) fn add_note(&mut self, idx: usize, text: &str, content_type: &str, author: &str, author_id: &str) {
        let now = self.write_time();
        let id = format!("{:024x}", self.next_note);
        self.next_note += 1;
        let a = &mut self.alerts[idx];
        a.notes.push(UamNote {
            id,
            text: text.to_owned(),
            content_type: content_type.to_owned(),
            author: author.to_owned(),
            author_id: author_id.to_owned(),
            created_at: now,
        });
        a.updated_at = now;
    }
}

fn edr_twin(rng: &mut fastrand::Rng, world: &World, t: &Threat, at: OffsetDateTime) -> UnifiedAlert {
    let (file, class) = THREAT_NAMES[t.name];
    UnifiedAlert {
        id: uuid(rng),
        external_id: t.id.to_string(),
        source: DetectionSource::Edr,
        name: file.to_owned(),
        classification: match class {
            "Infostealer" => "INFO_STEALER".to_owned(),
            other => other.to_ascii_uppercase(),
        },
        severity: if t.confidence == "malicious" { "HIGH" } else { "MEDIUM" }.to_owned(),
        confidence: if t.confidence == "malicious" {
            "MALICIOUS"
        } else {
            "SUSPICIOUS"
        },
        status: "NEW".to_owned(),
        verdict: "UNDEFINED".to_owned(),
        agent: Some(t.agent),
        asset_name: world.agents[t.agent].computer_name.clone(),
        site: world.agents[t.agent].site,
        sha1: (!t.sha1.is_empty()).then(|| t.sha1.clone()),
        file_name: (!t.fileless).then(|| file.to_owned()),
        storyline: Some(format!("{:016X}", t.storyline)),
        ticket_id: None,
        detected_at: at_ms(t.created_at),
        created_at: at_ms(t.created_at),
        updated_at: at_ms(at.max(t.created_at)),
        notes: Vec::new(),
        outcome: ActionOutcome::Apply,
    }
}

fn other_alert(
    rng: &mut fastrand::Rng,
    world: &World,
    source: DetectionSource,
    site: usize,
    asset: Option<&str>,
    rule: Option<&str>,
    at: OffsetDateTime,
) -> UnifiedAlert {
    let rules: &[(&str, &str, &str)] = match source {
        DetectionSource::Identity => &IDENTITY_RULES,
        DetectionSource::Cloud => &CLOUD_RULES,
        _ => &THIRD_PARTY_RULES,
    };
    let (name, class, severity) = rules[rng.usize(..rules.len())];
    let n = rng.u16(..500);
    let asset_name = match source {
        DetectionSource::Identity => format!(
            "user{n}@{}.example",
            world.sites[site].name.to_ascii_lowercase().replace(' ', "-")
        ),
        DetectionSource::Cloud => format!("arn:aws:s3:::bucket-{n}"),
        _ => format!("mailbox{n}@example.com"),
    };
    UnifiedAlert {
        id: uuid(rng),
        external_id: format!("{}", rng.u64(10_000_000_000..100_000_000_000)),
        source,
        name: rule.unwrap_or(name).to_owned(),
        classification: class.to_owned(),
        severity: severity.to_owned(),
        confidence: "SUSPICIOUS",
        status: "NEW".to_owned(),
        verdict: "UNDEFINED".to_owned(),
        agent: None,
        asset_name: asset.map_or(asset_name, str::to_owned),
        site,
        sha1: None,
        file_name: None,
        storyline: None,
        ticket_id: None,
        detected_at: at_ms(at),
        created_at: at_ms(at),
        updated_at: at_ms(at),
        notes: Vec::new(),
        outcome: ActionOutcome::Apply,
    }
}

impl UamState {
    /// Adds unified alerts as if detection sources just raised them (on `world`'s agents, sites
    /// and threats); returns their ids.
    pub(crate) fn add(&mut self, world: &World, spec: &NewUnifiedAlerts) -> Result<Vec<String>, String> {
        let threat = match &spec.threat_id {
            Some(id) => Some(
                id.parse::<u64>()
                    .ok()
                    .and_then(|n| world.threat_index.get(&n).copied())
                    .ok_or(format!("no threat {id}"))?,
            ),
            None => None,
        };
        let agent = match &spec.agent_uuid {
            Some(u) => Some(
                world
                    .agents
                    .iter()
                    .position(|a| a.uuid.eq_ignore_ascii_case(u))
                    .ok_or(format!("no agent {u}"))?,
            ),
            None => None,
        };
        let site = match &spec.site_id {
            Some(id) => Some(
                world
                    .sites
                    .iter()
                    .position(|s| s.id.to_string() == *id)
                    .ok_or(format!("no site {id}"))?,
            ),
            None => None,
        };
        if threat.is_some() && spec.source != DetectionSource::Edr {
            return Err("only an EDR alert can be the same detection as a threat".into());
        }
        let mut rng = fastrand::Rng::with_seed(self.alerts.len() as u64 ^ 0x0add_a1e7);
        let mut ids = Vec::new();
        for _ in 0..spec.count.max(1) {
            let now = self.write_time();
            let detected = spec.detected_at.map(at_ms).unwrap_or(now);
            let mut alert = match (spec.source, threat) {
                (DetectionSource::Edr, Some(t)) => edr_twin(&mut rng, world, &world.threats[t], now),
                (DetectionSource::Edr, None) => {
                    // An EDR alert that is not (yet) a threat in the legacy listing.
                    let t = Threat {
                        id: rng.u64(1_000_000_000_000_000_000..1_100_000_000_000_000_000),
                        agent: agent.unwrap_or_else(|| rng.usize(..world.agents.len())),
                        sha1: spec.sha1.clone().unwrap_or_else(|| format!("{:040x}", rng.u128(..))),
                        name: rng.usize(..THREAT_NAMES.len()),
                        confidence: "malicious",
                        incident_status: "unresolved",
                        verdict: "undefined",
                        mitigation: "not_mitigated",
                        storyline: rng.u64(..),
                        fileless: spec.sha1.as_deref() == Some(""),
                        external_ticket_id: None,
                        created_at: detected,
                        updated_at: now,
                        notes: Vec::new(),
                    };
                    edr_twin(&mut rng, world, &t, now)
                }
                (source, _) => {
                    let site = site.unwrap_or_else(|| rng.usize(..world.sites.len()));
                    other_alert(
                        &mut rng,
                        world,
                        source,
                        site,
                        spec.asset_name.as_deref(),
                        spec.rule.as_deref(),
                        now,
                    )
                }
            };
            alert.detected_at = detected;
            alert.created_at = detected;
            alert.updated_at = now;
            if let Some(r) = &spec.rule {
                alert.name = r.clone();
            }
            if let Some(s) = site {
                alert.site = s;
            }
            ids.push(alert.id.clone());
            self.push(alert);
        }
        Ok(ids)
    }

    /// A change made by a person in the console (not through the client under test); returns
    /// the alert's index.
    pub(crate) fn change(&mut self, id: &str, c: &UnifiedAlertChange) -> Result<usize, String> {
        let idx = self.find(id).ok_or(format!("no unified alert {id}"))?;
        if let Some(s) = &c.status {
            if !STATUSES.contains(&s.as_str()) {
                return Err(format!("status {s} is not one of {STATUSES:?}"));
            }
        }
        if let Some(v) = &c.analyst_verdict {
            if !is_enum_value("AnalystVerdict", v) {
                return Err(format!("{v} is not an AnalystVerdict"));
            }
        }
        if let Some(text) = &c.note {
            self.add_note(idx, text, "PLAIN_TEXT", "Console Analyst", "900000000000000001");
        }
        let now = self.write_time();
        let a = &mut self.alerts[idx];
        if let Some(s) = &c.status {
            a.status = s.clone();
        }
        if let Some(v) = &c.analyst_verdict {
            a.verdict = v.clone();
        }
        if let Some(t) = &c.ticket_id {
            a.ticket_id = Some(t.clone());
        }
        if let Some(o) = &c.outcome {
            a.outcome = o.clone();
        }
        if c.status.is_some() || c.analyst_verdict.is_some() || c.ticket_id.is_some() || c.touch {
            a.updated_at = now;
        }
        Ok(idx)
    }
}
