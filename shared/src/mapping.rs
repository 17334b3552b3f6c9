//! Platform state -> S1 incident status, and close reason -> S1 analyst verdict (docs/design.md,
//! Mappings), with a tenant's overrides. The overrides are typed: a tenant whose
//! `mapping_overrides` names a status or verdict S1 does not have is refused when it is added,
//! not on its first webhook.

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};

use crate::platform::inbound::PlatformState;
use crate::s1::dto::uam_actions::UamVerdict;
use crate::s1::dto::{AnalystVerdict, IncidentStatus};

/// An S1 incident status an operator may map to (`unresolved`, `in_progress`, `resolved`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct KnownStatus(pub IncidentStatus);

/// A name that is not an S1 incident status or analyst verdict.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UnknownName {
    #[error("{0:?} is not an S1 incident status (unresolved, in_progress, resolved)")]
    Status(String),
    #[error("{0:?} is not an S1 verdict (true_positive, false_positive, suspicious, undefined)")]
    Verdict(String),
    #[error(
        "{0:?} is not a unified-alert verdict (TRUE_POSITIVE_*, FALSE_POSITIVE_* or UNDEFINED, as in docs/design.md, Mappings)"
    )]
    UamVerdict(String),
}

impl TryFrom<String> for KnownStatus {
    type Error = UnknownName;
    fn try_from(s: String) -> Result<Self, UnknownName> {
        match serde_json::from_value(serde_json::Value::String(s.clone())) {
            Ok(IncidentStatus::Unknown) | Err(_) => Err(UnknownName::Status(s)),
            Ok(status) => Ok(Self(status)),
        }
    }
}

impl From<KnownStatus> for String {
    fn from(s: KnownStatus) -> String {
        s.0.as_str().to_owned()
    }
}

/// An S1 analyst verdict an operator may map to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct KnownVerdict(pub AnalystVerdict);

impl TryFrom<String> for KnownVerdict {
    type Error = UnknownName;
    fn try_from(s: String) -> Result<Self, UnknownName> {
        match serde_json::from_value(serde_json::Value::String(s.clone())) {
            Ok(AnalystVerdict::Unknown) | Err(_) => Err(UnknownName::Verdict(s)),
            Ok(verdict) => Ok(Self(verdict)),
        }
    }
}

impl From<KnownVerdict> for String {
    fn from(v: KnownVerdict) -> String {
        v.0.as_str().to_owned()
    }
}

/// A unified-alert (UAM) verdict an operator may map to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct KnownUamVerdict(pub UamVerdict);

impl TryFrom<String> for KnownUamVerdict {
    type Error = UnknownName;
    fn try_from(s: String) -> Result<Self, UnknownName> {
        match serde_json::from_value(serde_json::Value::String(s.clone())) {
            Ok(UamVerdict::Unknown) | Err(_) => Err(UnknownName::UamVerdict(s)),
            Ok(verdict) => Ok(Self(verdict)),
        }
    }
}

impl From<KnownUamVerdict> for String {
    fn from(v: KnownUamVerdict) -> String {
        v.0.as_str().to_owned()
    }
}

/// A tenant's replacements for rows of the default tables: platform state -> status, close
/// reason -> verdict. Keys are compared normalised (see [`normalize`]).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MappingOverrides {
    #[serde(default)]
    pub states: BTreeMap<String, KnownStatus>,
    #[serde(default)]
    pub close_reasons: BTreeMap<String, KnownVerdict>,
    /// Close reason -> unified-alert verdict (the UAM column).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub uam_close_reasons: BTreeMap<String, KnownUamVerdict>,
}

impl MappingOverrides {
    /// True when nothing is overridden.
    pub fn is_empty(&self) -> bool {
        self.states.is_empty() && self.close_reasons.is_empty() && self.uam_close_reasons.is_empty()
    }

    /// Reads `null` (how tenants without overrides were stored) as no overrides.
    ///
    /// # Errors
    /// A malformed overrides object, naming the bad entry.
    pub fn deserialize_or_null<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(Option::<Self>::deserialize(d)?.unwrap_or_default())
    }
}

/// Lower case, every run of non-alphanumerics one space: "Suppressed - New device" and
/// "suppressed_new_device" compare equal.
pub fn normalize(s: &str) -> String {
    let mut out = String::new();
    for word in s.split(|c: char| !c.is_ascii_alphanumeric()).filter(|w| !w.is_empty()) {
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(&word.to_ascii_lowercase());
    }
    out
}

/// Close reasons that mean a true positive.
pub const TRUE_POSITIVE: [&str; 4] = ["activity blocked", "attack failed", "incident", "true positive"];
/// Close reasons that mean a false positive.
pub const FALSE_POSITIVE: [&str; 6] = [
    "benign",
    "false positive",
    "testing",
    "suppressed",
    "suppressed new device",
    "suppressed threshold exceeded",
];
/// Close reasons that mean suspicious.
pub const SUSPICIOUS: [&str; 7] = [
    "it misconfiguration",
    "misconfiguration",
    "possible policy violation",
    "policy violation",
    "pup pua",
    "pup",
    "other",
];

/// The UAM column of the close-reason table: each seed reason's unified-alert verdict, which
/// names the kind of positive where the legacy verdict cannot.
pub const UAM_CLOSE_REASONS: [(&str, UamVerdict); 17] = [
    ("activity blocked", UamVerdict::TruePositiveUndefined),
    ("attack failed", UamVerdict::TruePositiveUndefined),
    ("incident", UamVerdict::TruePositiveUndefined),
    ("true positive", UamVerdict::TruePositiveUndefined),
    ("benign", UamVerdict::FalsePositiveBenign),
    ("false positive", UamVerdict::FalsePositiveUndefined),
    ("testing", UamVerdict::FalsePositiveBenign),
    ("suppressed", UamVerdict::FalsePositiveUndefined),
    ("suppressed new device", UamVerdict::FalsePositiveUndefined),
    ("suppressed threshold exceeded", UamVerdict::FalsePositiveUndefined),
    ("it misconfiguration", UamVerdict::FalsePositiveSystemError),
    ("misconfiguration", UamVerdict::FalsePositiveSystemError),
    ("possible policy violation", UamVerdict::TruePositivePolicyViolation),
    ("policy violation", UamVerdict::TruePositivePolicyViolation),
    ("pup pua", UamVerdict::TruePositivePuaAdware),
    ("pup", UamVerdict::TruePositivePuaAdware),
    ("other", UamVerdict::TruePositiveBenignButSuspicious),
];

/// The tables in force for one tenant: the defaults with its overrides applied.
#[derive(Debug, Clone)]
pub struct Mapping {
    states: HashMap<String, IncidentStatus>,
    reasons: HashMap<String, AnalystVerdict>,
    uam_reasons: HashMap<String, UamVerdict>,
}

impl Default for Mapping {
    fn default() -> Self {
        let states = [
            ("new", IncidentStatus::Unresolved),
            ("reopened", IncidentStatus::Unresolved),
            ("investigating", IncidentStatus::InProgress),
            ("acknowledged", IncidentStatus::InProgress),
            ("in progress", IncidentStatus::InProgress),
            ("closed", IncidentStatus::Resolved),
            ("resolved", IncidentStatus::Resolved),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        let mut reasons = HashMap::new();
        for r in TRUE_POSITIVE {
            reasons.insert(r.to_owned(), AnalystVerdict::TruePositive);
        }
        for r in FALSE_POSITIVE {
            reasons.insert(r.to_owned(), AnalystVerdict::FalsePositive);
        }
        for r in SUSPICIOUS {
            reasons.insert(r.to_owned(), AnalystVerdict::Suspicious);
        }
        let uam_reasons = UAM_CLOSE_REASONS.iter().map(|(k, v)| ((*k).to_owned(), *v)).collect();
        Self {
            states,
            reasons,
            uam_reasons,
        }
    }
}

impl Mapping {
    /// The defaults with `overrides` applied.
    pub fn new(overrides: &MappingOverrides) -> Self {
        let mut m = Self::default();
        for (k, v) in &overrides.states {
            m.states.insert(normalize(k), v.0);
        }
        for (k, v) in &overrides.close_reasons {
            m.reasons.insert(normalize(k), v.0);
        }
        for (k, v) in &overrides.uam_close_reasons {
            let k = normalize(k);
            // A reason only the UAM column names still sets the threats' verdict (the one the
            // UAM verdict reads as): else a close with it would set a unified alert's verdict
            // and leave the story's threats without one.
            if !overrides.close_reasons.keys().any(|r| normalize(r) == k) {
                m.reasons.entry(k.clone()).or_insert(v.0.legacy());
            }
            m.uam_reasons.insert(k, v.0);
        }
        m
    }

    /// The S1 incident status for a platform state.
    pub fn status(&self, state: PlatformState) -> IncidentStatus {
        self.states
            .get(&normalize(state.as_str()))
            .copied()
            .unwrap_or(IncidentStatus::Unresolved)
    }

    /// The verdict: an explicit one wins; else the close reason's group; else unchanged.
    pub fn verdict(&self, close_reason: Option<&str>, explicit: Option<AnalystVerdict>) -> Option<AnalystVerdict> {
        explicit.or_else(|| close_reason.and_then(|r| self.reasons.get(&normalize(r)).copied()))
    }

    /// The unified-alert verdict: the close reason's UAM row, unless an explicit verdict in the
    /// event says otherwise (then the explicit verdict, its kind undefined); else unchanged.
    pub fn uam_verdict(&self, close_reason: Option<&str>, explicit: Option<AnalystVerdict>) -> Option<UamVerdict> {
        let row = close_reason.and_then(|r| self.uam_reasons.get(&normalize(r)).copied());
        match (row, explicit) {
            (Some(row), Some(e)) if row.legacy() != e => UamVerdict::from_legacy(e),
            (Some(row), _) => Some(row),
            (None, Some(e)) => UamVerdict::from_legacy(e),
            (None, None) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_row_of_the_default_mapping() {
        let m = Mapping::default();
        for (state, want) in [
            (PlatformState::New, IncidentStatus::Unresolved),
            (PlatformState::Reopened, IncidentStatus::Unresolved),
            (PlatformState::Investigating, IncidentStatus::InProgress),
            (PlatformState::Acknowledged, IncidentStatus::InProgress),
            (PlatformState::InProgress, IncidentStatus::InProgress),
            (PlatformState::Closed, IncidentStatus::Resolved),
            (PlatformState::Resolved, IncidentStatus::Resolved),
        ] {
            assert_eq!(m.status(state), want, "{state:?}");
        }
        for (reason, want) in [
            ("activity blocked", Some(AnalystVerdict::TruePositive)),
            ("attack_failed", Some(AnalystVerdict::TruePositive)),
            ("Incident", Some(AnalystVerdict::TruePositive)),
            ("true positive", Some(AnalystVerdict::TruePositive)),
            ("benign", Some(AnalystVerdict::FalsePositive)),
            ("false_positive", Some(AnalystVerdict::FalsePositive)),
            ("testing", Some(AnalystVerdict::FalsePositive)),
            ("suppressed", Some(AnalystVerdict::FalsePositive)),
            ("Suppressed - New device", Some(AnalystVerdict::FalsePositive)),
            ("suppressed - threshold exceeded", Some(AnalystVerdict::FalsePositive)),
            ("IT misconfiguration", Some(AnalystVerdict::Suspicious)),
            ("possible policy violation", Some(AnalystVerdict::Suspicious)),
            ("policy_violation", Some(AnalystVerdict::Suspicious)),
            ("PUP/PUA", Some(AnalystVerdict::Suspicious)),
            ("pup_pua", Some(AnalystVerdict::Suspicious)),
            ("other", Some(AnalystVerdict::Suspicious)),
            ("duplicate", None),
        ] {
            assert_eq!(m.verdict(Some(reason), None), want, "{reason}");
        }
        assert_eq!(m.verdict(None, None), None, "no reason: verdict unchanged");
        assert_eq!(
            m.verdict(Some("benign"), Some(AnalystVerdict::TruePositive)),
            Some(AnalystVerdict::TruePositive),
            "explicit wins"
        );
    }

    #[test]
    fn tenant_overrides() {
        use crate::tenant::TenantConfig;
        let tenant = |overrides: serde_json::Value| {
            serde_json::from_value::<TenantConfig>(serde_json::json!({
                "id": "t", "enabled": true, "console_url": "https://x.sentinelone.net",
                "token": {"kind": "env", "var": "X"},
                "platform": {"kind": "generic", "settings": {"url": "https://h.example.com", "secret": {"kind": "env", "var": "S"}}},
                "mapping_overrides": overrides
            }))
        };
        let t = tenant(serde_json::json!({"states": {"acknowledged": "unresolved"}, "close_reasons": {"duplicate": "false_positive"}})).unwrap();
        let m = Mapping::new(&t.mapping_overrides);
        assert_eq!(m.status(PlatformState::Acknowledged), IncidentStatus::Unresolved);
        assert_eq!(m.verdict(Some("Duplicate"), None), Some(AnalystVerdict::FalsePositive));
        // How tenants without overrides were stored.
        assert!(tenant(serde_json::Value::Null).unwrap().mapping_overrides.is_empty());
        let err = tenant(serde_json::json!({"states": {"closed": "done"}})).unwrap_err();
        assert!(
            err.to_string().contains("\"done\" is not an S1 incident status"),
            "{err}"
        );
    }

    #[test]
    fn overrides_name_only_what_s1_has() {
        let ok: MappingOverrides = serde_json::from_str(
            r#"{"states": {"Triage": "in_progress"}, "close_reasons": {"Dup": "false_positive"}}"#,
        )
        .unwrap();
        let m = Mapping::new(&ok);
        assert_eq!(m.verdict(Some("dup"), None), Some(AnalystVerdict::FalsePositive));
        let bad = serde_json::from_str::<MappingOverrides>(r#"{"states": {"x": "done"}}"#).unwrap_err();
        assert!(
            bad.to_string().contains("\"done\" is not an S1 incident status"),
            "{bad}"
        );
        let bad = serde_json::from_str::<MappingOverrides>(r#"{"close_reasons": {"x": "unknown"}}"#).unwrap_err();
        assert!(bad.to_string().contains("is not an S1 verdict"), "{bad}");
        let bad = serde_json::from_str::<MappingOverrides>(r#"{"state": {}}"#).unwrap_err();
        assert!(bad.to_string().contains("unknown field `state`"), "{bad}");
    }

    #[test]
    fn the_uam_column_and_its_overrides() {
        let m = Mapping::default();
        for (reason, want) in [
            ("PUP/PUA", Some(UamVerdict::TruePositivePuaAdware)),
            ("benign", Some(UamVerdict::FalsePositiveBenign)),
            ("Policy violation", Some(UamVerdict::TruePositivePolicyViolation)),
            (
                "possible_policy_violation",
                Some(UamVerdict::TruePositivePolicyViolation),
            ),
            ("true positive", Some(UamVerdict::TruePositiveUndefined)),
            ("Suppressed - New device", Some(UamVerdict::FalsePositiveUndefined)),
            ("duplicate", None),
        ] {
            assert_eq!(m.uam_verdict(Some(reason), None), want, "{reason}");
        }
        // Every seed reason has a UAM row, and only seed reasons do.
        let seed: Vec<&str> = TRUE_POSITIVE
            .iter()
            .chain(&FALSE_POSITIVE)
            .chain(&SUSPICIOUS)
            .copied()
            .collect();
        assert_eq!(seed.len(), UAM_CLOSE_REASONS.len());
        for r in seed {
            assert!(UAM_CLOSE_REASONS.iter().any(|(k, _)| *k == r), "{r} has no UAM row");
        }
        // An explicit verdict of the same kind keeps the reason's finer row; another kind wins.
        assert_eq!(
            m.uam_verdict(Some("benign"), Some(AnalystVerdict::FalsePositive)),
            Some(UamVerdict::FalsePositiveBenign)
        );
        assert_eq!(
            m.uam_verdict(Some("benign"), Some(AnalystVerdict::TruePositive)),
            Some(UamVerdict::TruePositiveUndefined)
        );
        assert_eq!(m.uam_verdict(None, None), None, "no reason: verdict unchanged");

        let o: MappingOverrides = serde_json::from_str(
            r#"{"uam_close_reasons": {"Benign": "FALSE_POSITIVE_USER_ERROR", "Phish": "TRUE_POSITIVE_PHISHING_ATTACK"}}"#,
        )
        .unwrap();
        let m = Mapping::new(&o);
        assert_eq!(
            m.uam_verdict(Some("benign"), None),
            Some(UamVerdict::FalsePositiveUserError)
        );
        assert_eq!(
            m.uam_verdict(Some("phish"), None),
            Some(UamVerdict::TruePositivePhishingAttack)
        );
        // A reason only the UAM column knows sets the threats' verdict as it reads.
        assert_eq!(m.verdict(Some("phish"), None), Some(AnalystVerdict::TruePositive));
        // The legacy row of a reason both know is left alone.
        assert_eq!(m.verdict(Some("benign"), None), Some(AnalystVerdict::FalsePositive));
        let bad =
            serde_json::from_str::<MappingOverrides>(r#"{"uam_close_reasons": {"x": "true_positive"}}"#).unwrap_err();
        assert!(
            bad.to_string()
                .contains("\"true_positive\" is not a unified-alert verdict"),
            "{bad}"
        );
        assert!(!o.is_empty());
        let back: MappingOverrides = serde_json::from_value(serde_json::to_value(&o).unwrap()).unwrap();
        assert_eq!(back, o, "overrides round-trip through the tenant record");
    }
}
