//! Unified Alert Management (UAM) writes: the status and verdict enums a unified alert carries,
//! how they stand to the legacy threat enums, and the wire types of `alertAvailableActions`,
//! `alertTriggerActions`, `addAlertNote` and `alertNotes` (names as in the vendored schema,
//! `sim/uam/schema_subset.graphql`).

use serde::{Deserialize, Serialize};

use super::lenient::{lenient_enum, null_as_empty};
use super::{AnalystVerdict, IncidentStatus};

lenient_enum!(
    /// A unified alert's status (`Status` in the schema).
    UamStatus {
        New = "NEW",
        InProgress = "IN_PROGRESS",
        Resolved = "RESOLVED",
    }
);

impl UamStatus {
    /// The UAM status that says what the legacy incident status says (the two sets match one
    /// to one).
    pub fn from_legacy(s: IncidentStatus) -> Option<Self> {
        match s {
            IncidentStatus::Unresolved => Some(Self::New),
            IncidentStatus::InProgress => Some(Self::InProgress),
            IncidentStatus::Resolved => Some(Self::Resolved),
            IncidentStatus::Unknown => None,
        }
    }

    /// The legacy incident status this status is recorded as on a story member: the poller's
    /// reading ([`uam_status`](super::uam_status)), so our own write reads back as ours.
    pub fn legacy(self) -> IncidentStatus {
        super::uam_status(self.as_str()).unwrap_or(IncidentStatus::Unknown)
    }
}

lenient_enum!(
    /// A unified alert's analyst verdict (`AnalystVerdict` in the schema): a true or false
    /// positive with its kind, or undefined.
    UamVerdict {
        FalsePositiveBenign = "FALSE_POSITIVE_BENIGN",
        FalsePositiveBenignButSuspicious = "FALSE_POSITIVE_BENIGN_BUT_SUSPICIOUS",
        FalsePositiveSystemError = "FALSE_POSITIVE_SYSTEM_ERROR",
        FalsePositiveUndefined = "FALSE_POSITIVE_UNDEFINED",
        FalsePositiveUserError = "FALSE_POSITIVE_USER_ERROR",
        TruePositiveAdvancedPersistentThreat = "TRUE_POSITIVE_ADVANCED_PERSISTENT_THREAT",
        TruePositiveBenign = "TRUE_POSITIVE_BENIGN",
        TruePositiveBenignButSuspicious = "TRUE_POSITIVE_BENIGN_BUT_SUSPICIOUS",
        TruePositiveDataExfiltration = "TRUE_POSITIVE_DATA_EXFILTRATION",
        TruePositiveDenialOfService = "TRUE_POSITIVE_DENIAL_OF_SERVICE",
        TruePositiveExploitationTools = "TRUE_POSITIVE_EXPLOITATION_TOOLS",
        TruePositiveInsiderThreat = "TRUE_POSITIVE_INSIDER_THREAT",
        TruePositiveMalware = "TRUE_POSITIVE_MALWARE",
        TruePositivePhishingAttack = "TRUE_POSITIVE_PHISHING_ATTACK",
        TruePositivePolicyViolation = "TRUE_POSITIVE_POLICY_VIOLATION",
        TruePositivePuaAdware = "TRUE_POSITIVE_PUA_ADWARE",
        TruePositiveRansomware = "TRUE_POSITIVE_RANSOMWARE",
        TruePositiveUnauthorizedAccess = "TRUE_POSITIVE_UNAUTHORIZED_ACCESS",
        TruePositiveUndefined = "TRUE_POSITIVE_UNDEFINED",
        Undefined = "UNDEFINED",
    }
);

impl UamVerdict {
    /// The legacy verdict a unified alert's verdict is recorded as on a story member: the
    /// poller's reading ([`uam_verdict`](super::uam_verdict): the positive it names, its kind
    /// dropped). The writeback records our own writes this way, so the poller takes them for
    /// ours when they come back.
    pub fn legacy(self) -> AnalystVerdict {
        super::uam_verdict(self.as_str())
    }

    /// The UAM verdict for a legacy verdict given without a close reason that says more (an
    /// explicit `true_positive` in a webhook): the kind left undefined.
    pub fn from_legacy(v: AnalystVerdict) -> Option<Self> {
        match v {
            AnalystVerdict::TruePositive => Some(Self::TruePositiveUndefined),
            AnalystVerdict::FalsePositive => Some(Self::FalsePositiveUndefined),
            AnalystVerdict::Suspicious => Some(Self::TruePositiveBenignButSuspicious),
            AnalystVerdict::Undefined => Some(Self::Undefined),
            AnalystVerdict::Unknown => None,
        }
    }
}

lenient_enum!(
    /// What an action does (`ActionType`); the writeback uses the first four.
    ActionType {
        StatusUpdate = "STATUS_UPDATE",
        AnalystVerdictUpdate = "ANALYST_VERDICT_UPDATE",
        AddNote = "ADD_NOTE",
        SetTicketId = "SET_TICKET_ID",
        AssignUser = "ASSIGN_USER",
    }
);

lenient_enum!(
    /// Why an action was skipped for one alert (`SkipReasonType`).
    SkipType {
        NewerAction = "NEWER_ACTION",
        NotSupported = "NOT_SUPPORTED",
        NoChange = "NO_CHANGE",
        PreconditionsNotMet = "PRECONDITIONS_NOT_MET",
        SyncIssue = "SYNC_ISSUE",
        UiOnly = "UI_ONLY",
    }
);

lenient_enum!(
    /// Why an action failed for one alert (`ErrorType`).
    ActionErrorType {
        AlertNotFound = "ALERT_NOT_FOUND",
        IllegalArguments = "ILLEGAL_ARGUMENTS",
        InsufficientCredits = "INSUFFICIENT_CREDITS",
        MissingPermission = "MISSING_PERMISSION",
        ServiceError = "SERVICE_ERROR",
        SurfaceClientError = "SURFACE_CLIENT_ERROR",
        SurfaceReadTimeout = "SURFACE_READ_TIMEOUT",
        SurfaceServerError = "SURFACE_SERVER_ERROR",
        SurfaceTooManyRequests = "SURFACE_TOO_MANY_REQUESTS",
    }
);

impl ActionErrorType {
    /// True when trying again later may succeed (the surface was busy or failed); false when
    /// the console refused the write itself (no such alert, no permission, bad arguments).
    pub fn is_transient(self) -> bool {
        matches!(
            self,
            Self::ServiceError | Self::SurfaceReadTimeout | Self::SurfaceServerError | Self::SurfaceTooManyRequests
        )
    }
}

/// `data` of an `alertAvailableActions` query.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AvailableActionsData {
    pub alert_available_actions: AvailableActionsResponse,
}

/// The actions available for the alerts a filter names.
#[derive(Debug, Clone, Deserialize)]
pub struct AvailableActionsResponse {
    #[serde(default, deserialize_with = "null_as_empty")]
    pub data: Vec<AvailableAction>,
    #[serde(default, deserialize_with = "null_as_empty")]
    pub errors: Vec<ActionsError>,
}

/// One available action.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AvailableAction {
    pub id: String,
    #[serde(default)]
    pub title: Option<String>,
    #[serde(default, deserialize_with = "null_as_empty")]
    pub types: Vec<ActionType>,
    #[serde(default)]
    pub is_disabled: bool,
    #[serde(default)]
    pub disabled_reason: Option<String>,
    /// Ids that must run before this one when both are in one request.
    #[serde(default, deserialize_with = "null_as_empty")]
    pub triggered_after: Vec<String>,
    /// Ids this one runs itself.
    #[serde(default, deserialize_with = "null_as_empty")]
    pub triggers_actions: Vec<String>,
}

/// An error of an actions query or trigger.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ActionsError {
    #[serde(default)]
    pub error_message: Option<String>,
    #[serde(default)]
    pub error_payload: Option<ActionsErrorPayload>,
}

/// The limit an actions error names (alerts per trigger, or executions per user).
#[derive(Debug, Clone, Deserialize)]
pub struct ActionsErrorPayload {
    #[serde(rename = "__typename", default)]
    pub typename: Option<String>,
    #[serde(default)]
    pub limit: Option<i64>,
}

/// `data` of an `alertTriggerActions` mutation.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TriggerActionsData {
    /// Null when the console gave no result (the schema allows it).
    #[serde(default)]
    pub alert_trigger_actions: Option<TriggerActionsResult>,
}

/// What a trigger did: ran now (per-alert results), refused as a whole, or deferred.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "__typename")]
pub enum TriggerActionsResult {
    ActionsTriggered {
        #[serde(default, deserialize_with = "null_as_empty")]
        actions: Vec<TriggeredAction>,
    },
    TriggerActionsError {
        #[serde(default, deserialize_with = "null_as_empty")]
        errors: Vec<ActionsError>,
    },
    TriggerActionsScheduled {
        #[serde(rename = "executionId", default)]
        execution_id: Option<String>,
    },
}

/// One triggered action's per-alert results.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TriggeredAction {
    pub action_id: String,
    #[serde(default, deserialize_with = "null_as_empty")]
    pub success: Vec<AlertRef>,
    #[serde(default, deserialize_with = "null_as_empty")]
    pub skip: Vec<SkipDetail>,
    #[serde(default, deserialize_with = "null_as_empty")]
    pub failure: Vec<FailureDetail>,
}

/// An alert by id.
#[derive(Debug, Clone, Deserialize)]
pub struct AlertRef {
    pub id: String,
}

/// An alert the action was skipped for.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SkipDetail {
    pub id: String,
    #[serde(default)]
    pub skip_type: Option<SkipType>,
    #[serde(default)]
    pub skip_message: Option<String>,
}

/// An alert the action failed for.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FailureDetail {
    pub id: String,
    #[serde(default)]
    pub error_type: Option<ActionErrorType>,
    #[serde(default)]
    pub error_message: Option<String>,
}

/// `data` of an `addAlertNote` mutation.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AddAlertNoteData {
    pub add_alert_note: AlertNotes,
}

/// `data` of an `alertNotes` query.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AlertNotesData {
    pub alert_notes: AlertNotes,
}

/// A list of an alert's notes (`AlertNotesListResponse`).
#[derive(Debug, Clone, Deserialize)]
pub struct AlertNotes {
    #[serde(default, deserialize_with = "null_as_empty")]
    pub data: Vec<AlertNote>,
}

/// One note of a unified alert.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AlertNote {
    pub id: String,
    #[serde(default)]
    pub alert_id: Option<String>,
    #[serde(default)]
    pub text: Option<String>,
}

/// A value set through an action's payload (`{"value": ...}`).
#[derive(Debug, Clone, Serialize)]
pub struct ValueInput<T> {
    pub value: T,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uam_verdicts_read_as_legacy_verdicts() {
        for (v, want) in [
            (UamVerdict::TruePositivePuaAdware, AnalystVerdict::TruePositive),
            (UamVerdict::TruePositivePolicyViolation, AnalystVerdict::TruePositive),
            (UamVerdict::FalsePositiveBenign, AnalystVerdict::FalsePositive),
            (
                UamVerdict::FalsePositiveBenignButSuspicious,
                AnalystVerdict::FalsePositive,
            ),
            (
                UamVerdict::TruePositiveBenignButSuspicious,
                AnalystVerdict::TruePositive,
            ),
            (UamVerdict::Undefined, AnalystVerdict::Undefined),
        ] {
            assert_eq!(v.legacy(), want, "{v}");
        }
        for legacy in [
            AnalystVerdict::TruePositive,
            AnalystVerdict::FalsePositive,
            AnalystVerdict::Undefined,
        ] {
            let uam = UamVerdict::from_legacy(legacy).unwrap();
            assert_eq!(uam.legacy(), legacy, "{legacy} -> {uam} reads back as itself");
        }
        // UAM has no "suspicious": it is a true positive of the benign-but-suspicious kind.
        assert_eq!(
            UamVerdict::from_legacy(AnalystVerdict::Suspicious),
            Some(UamVerdict::TruePositiveBenignButSuspicious)
        );
        for s in [
            IncidentStatus::Unresolved,
            IncidentStatus::InProgress,
            IncidentStatus::Resolved,
        ] {
            assert_eq!(UamStatus::from_legacy(s).unwrap().legacy(), s);
        }
        assert_eq!(UamStatus::from_legacy(IncidentStatus::Unknown), None);
    }

    #[test]
    fn trigger_results_of_every_kind_decode() {
        let done: TriggerActionsData = serde_json::from_value(serde_json::json!({"alertTriggerActions": {
            "__typename": "ActionsTriggered",
            "actions": [{"actionId": "a1", "success": [{"id": "x"}],
                "skip": [{"id": "y", "skipType": "NO_CHANGE", "skipMessage": null}],
                "failure": [{"id": "z", "errorType": "SOMETHING_NEW", "errorMessage": "?"}]}]}}))
        .unwrap();
        let Some(TriggerActionsResult::ActionsTriggered { actions }) = done.alert_trigger_actions else {
            panic!("not triggered")
        };
        assert_eq!(actions[0].skip[0].skip_type, Some(SkipType::NoChange));
        assert_eq!(actions[0].failure[0].error_type, Some(ActionErrorType::Unknown));
        let refused: TriggerActionsData = serde_json::from_value(serde_json::json!({"alertTriggerActions": {
            "__typename": "TriggerActionsError",
            "errors": [{"errorMessage": "too many", "errorPayload": {"__typename": "ActionsErrorLimitPayload", "limit": 100}}]}}))
        .unwrap();
        assert!(matches!(
            refused.alert_trigger_actions,
            Some(TriggerActionsResult::TriggerActionsError { ref errors }) if errors[0].error_payload.as_ref().unwrap().limit == Some(100)
        ));
        let later: TriggerActionsData = serde_json::from_value(serde_json::json!({"alertTriggerActions":
            {"__typename": "TriggerActionsScheduled", "executionId": "e1"}}))
        .unwrap();
        assert!(matches!(
            later.alert_trigger_actions,
            Some(TriggerActionsResult::TriggerActionsScheduled { execution_id: Some(ref e) }) if e == "e1"
        ));
    }
}
