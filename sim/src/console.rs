//! The simulated console behind the server's one lock: the world its REST API serves (accounts,
//! sites, agents, threats, tokens, faults) and, beside it, the UAM store. The two meet only
//! here: a threat and its EDR twins are one detection, so a change through either API shows on
//! the other.

use std::ops::{Deref, DerefMut};

use crate::uam::store::UamState;
use crate::uam::{NewUnifiedAlerts, UnifiedAlertChange};
use crate::world::{SimConfig, World};

pub(crate) struct Console {
    pub world: World,
    pub uam: UamState,
}

impl Console {
    pub(crate) fn generate(cfg: &SimConfig) -> Self {
        let world = World::generate(cfg);
        let uam = UamState::generate(cfg, &world);
        Self { world, uam }
    }

    /// Adds unified alerts as if detection sources just raised them; returns their ids.
    pub(crate) fn add_unified_alerts(&mut self, spec: &NewUnifiedAlerts) -> Result<Vec<String>, String> {
        self.uam.add(&self.world, spec)
    }

    /// A change made by a person in the console (not through the client under test).
    pub(crate) fn change_unified_alert(&mut self, id: &str, c: &UnifiedAlertChange) -> Result<(), String> {
        let idx = self.uam.change(id, c)?;
        self.mirror_twin(idx);
        Ok(())
    }

    /// A change of the threat's status or verdict shows on its EDR twins (bumping their
    /// `updatedAt`).
    pub(crate) fn mirror_threat(&mut self, threat: usize) {
        let t = &self.world.threats[threat];
        let (id, status, verdict) = (t.id, t.incident_status, t.verdict);
        for i in self.uam.twins_of(id) {
            let a = &self.uam.alerts[i];
            let new_status = uam_status(status);
            let new_verdict = uam_verdict(verdict, &a.verdict);
            if a.status != new_status || a.verdict != new_verdict {
                let now = self.uam.write_time();
                let a = &mut self.uam.alerts[i];
                a.status = new_status.to_owned();
                a.verdict = new_verdict;
                a.updated_at = now;
            }
        }
    }

    /// The other way: a change made through UAM to an EDR twin shows on its threat.
    pub(crate) fn mirror_twin(&mut self, alert: usize) {
        let a = &self.uam.alerts[alert];
        let Some(t) = a.twin_of().and_then(|id| self.world.threat_index.get(&id).copied()) else {
            return;
        };
        let status = match a.status.as_str() {
            "IN_PROGRESS" => "in_progress",
            "RESOLVED" => "resolved",
            _ => "unresolved",
        };
        let verdict = threat_verdict(&a.verdict);
        if self.world.threats[t].incident_status != status || self.world.threats[t].verdict != verdict {
            let now = self.world.write_time();
            let th = &mut self.world.threats[t];
            th.incident_status = status;
            th.verdict = verdict;
            th.updated_at = now;
        }
    }
}

// The REST handlers (most of the server) read and write the world alone; through the console they
// keep naming it as they did before the UAM store stood beside it.
impl Deref for Console {
    type Target = World;
    fn deref(&self) -> &World {
        &self.world
    }
}

impl DerefMut for Console {
    fn deref_mut(&mut self) -> &mut World {
        &mut self.world
    }
}

fn uam_status(threat_status: &str) -> &'static str {
    match threat_status {
        "in_progress" => "IN_PROGRESS",
        "resolved" => "RESOLVED",
        _ => "NEW",
    }
}

/// The threat verdict's family in UAM terms, keeping a finer UAM verdict of the same family.
fn uam_verdict(of_threat: &str, current: &str) -> String {
    if threat_verdict(current) == of_threat {
        return current.to_owned();
    }
    match of_threat {
        "true_positive" => "TRUE_POSITIVE_UNDEFINED",
        "false_positive" => "FALSE_POSITIVE_UNDEFINED",
        "suspicious" => "TRUE_POSITIVE_BENIGN_BUT_SUSPICIOUS",
        _ => "UNDEFINED",
    }
    .to_owned()
}

fn threat_verdict(uam: &str) -> &'static str {
    if uam.ends_with("BENIGN_BUT_SUSPICIOUS") {
        "suspicious"
    } else if uam.starts_with("TRUE_POSITIVE") {
        "true_positive"
    } else if uam.starts_with("FALSE_POSITIVE") {
        "false_positive"
    } else {
        "undefined"
    }
}
