//! The UAM side of an attempt: a story's unified members (`uam:<alert id>`) get the change's
//! status and verdict through `alertTriggerActions` and its note through `addAlertNote`; the
//! story's threats keep the threats API. What a unified member is recorded as having been given
//! is what the poller reads the alert back as (the UAM verdict's legacy reading), so our own
//! write coming back is recognised as ours.

use super::outcome::ApplyError;
use super::s1_calls::{CallFailed, S1Calls};
use crate::mapping::Mapping;
use crate::platform::inbound::ChangeAction;
use crate::s1::dto::uam_actions::{UamStatus, UamVerdict};
use crate::s1::dto::{AnalystVerdict, IncidentStatus};
use crate::s1::uam_writes::{UamScope, UamWriteResult};
use crate::store::{PendingChange, TenantConfig};

/// The outbound log's path of every UAM call.
pub(super) const UAM_PATH: &str = "/unifiedalerts/graphql";

/// The UAM verdict a change gives unified alerts when it gives threats `verdict` (`None`: the
/// verdict is left alone, as for the threats): the tenant's UAM column for the change's close
/// reason, or its explicit verdict.
pub(super) fn unified_verdict(
    tenant: &TenantConfig,
    change: &PendingChange,
    verdict: Option<AnalystVerdict>,
) -> Option<UamVerdict> {
    verdict?;
    let (reason, explicit) = match &change.change.action {
        ChangeAction::Status {
            close_reason, verdict, ..
        } => (close_reason.as_deref(), *verdict),
        ChangeAction::Note { verdict } => (None, *verdict),
    };
    Mapping::new(&tenant.mapping_overrides)
        .uam_verdict(reason, explicit)
        .or_else(|| verdict.and_then(UamVerdict::from_legacy))
}

/// Sets `status` / `verdict` on the unified alerts `ids` and reads each alert's result: every
/// alert applied, or the change is retried (a transient failure, a skip for a sync issue, an
/// alert the answer left out) or dead (the console refused it).
pub(super) async fn set_unified(
    s1: &S1Calls<'_>,
    ids: &[String],
    status: Option<IncidentStatus>,
    verdict: Option<UamVerdict>,
    results: &mut Vec<(&'static str, String)>,
) -> Result<(), CallFailed> {
    let status = status.and_then(UamStatus::from_legacy);
    if ids.is_empty() || (status.is_none() && verdict.is_none()) {
        return Ok(());
    }
    let scope = UamScope::for_tenant(&s1.tenant.account_ids, &s1.tenant.site_ids);
    let scope = scope.as_ref();
    let r = s1
        .try_run(|c| async move { c.uam_set_fields(ids, status, verdict, scope).await })
        .await?;
    results.push((UAM_PATH, r.summary()));
    judge(&r).map_err(|error| CallFailed {
        error,
        made_no_change: !r.any_applied(),
    })
}

/// A write's per-alert results as the attempt's outcome: any alert that may still take it
/// retries the change (the alerts that took it answer `NO_CHANGE` next time); else any alert
/// the console refused sends it to the dead letters.
fn judge(r: &UamWriteResult) -> Result<(), ApplyError> {
    let problems: Vec<(&str, &str, bool)> = r.problems().collect();
    if problems.is_empty() {
        return Ok(());
    }
    let listed = problems
        .iter()
        .map(|(id, why, _)| format!("{id}: {why}"))
        .collect::<Vec<_>>()
        .join(", ");
    let msg = format!("UAM did not apply the change to every unified alert ({listed})");
    if problems.iter().any(|(_, _, transient)| *transient) {
        Err(ApplyError::Retry(msg))
    } else {
        Err(ApplyError::Fatal(msg))
    }
}

/// Adds `note` to each unified alert of `ids`; when an earlier attempt may have sent it
/// (`retrying`), only to the alerts that do not hold it yet.
pub(super) async fn add_unified_notes(
    s1: &S1Calls<'_>,
    ids: &[String],
    note: &str,
    retrying: bool,
    results: &mut Vec<(&'static str, String)>,
) -> Result<(), ApplyError> {
    let mut added = 0;
    for id in ids {
        let id = id.as_str();
        if retrying && s1.run(|c| async move { c.uam_note_exists(id, note).await }).await? {
            continue;
        }
        s1.run(|c| async move { c.uam_add_note(id, note).await }).await?;
        added += 1;
    }
    if !ids.is_empty() {
        results.push((UAM_PATH, format!("notes_added={added}")));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::s1::uam_writes::AlertOutcome;

    #[test]
    fn a_transient_problem_retries_and_a_refusal_alone_is_dead() {
        let mut r = UamWriteResult::default();
        r.alerts.insert("a".into(), AlertOutcome::Applied);
        assert!(judge(&r).is_ok());
        r.alerts
            .insert("b".into(), AlertOutcome::Refused("failed (ALERT_NOT_FOUND)".into()));
        assert!(matches!(judge(&r), Err(ApplyError::Fatal(m)) if m.contains("b: failed (ALERT_NOT_FOUND)")));
        r.alerts
            .insert("c".into(), AlertOutcome::Retry("skipped (SYNC_ISSUE)".into()));
        assert!(matches!(judge(&r), Err(ApplyError::Retry(_))));
    }
}
