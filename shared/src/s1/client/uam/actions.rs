//! UAM writes: a unified alert's status and verdict through `alertTriggerActions`, its notes
//! through `addAlertNote`, with the action ids discovered through `alertAvailableActions`.
//!
//! **Where the action ids live.** The schema gives no fixed ids (they are opaque and may differ
//! per console and release), so they are discovered. They are kept in memory, per process and
//! per console (its API root), for [`ACTION_TTL`]: one discovery serves every tenant and write of
//! that console in a warm process, and a cold Lambda discovers once. They are not kept in the
//! state table: an id that outlived a console upgrade there would be refused by every process at
//! once, while a stale one in memory is refused once, re-discovered and the write sent again
//! ([`S1Client::uam_set_fields`]).
//!
//! **The filter.** The schema says a null filter acts on every alert in scope, and does not say
//! what an empty one does; every write and discovery here carries a filter built by
//! [`alert_id_filter`], which refuses an empty id list before anything is sent.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::{Value, json};

use crate::s1::S1Client;
use crate::s1::S1Error;
use crate::s1::dto::uam_actions::{
    ActionErrorType, ActionType, AddAlertNoteData, AlertNotesData, AvailableAction, AvailableActionsData, SkipType,
    TriggerActionsData, TriggerActionsResult, UamStatus, UamVerdict,
};

/// How long discovered action ids are used before they are discovered again.
pub const ACTION_TTL: Duration = Duration::from_secs(15 * 60);
/// Alerts per `alertTriggerActions` call; a console that answers with a lower limit
/// (`ActionsErrorLimitPayload`) gets that many.
pub const MAX_ALERTS_PER_TRIGGER: usize = 100;

const DISCOVER: &str = "query WriteBackActions($filter: OrFilterSelectionInput!, $scope: ScopeSelectorInput) {
  alertAvailableActions(filter: $filter, scope: $scope, actionTypes: [STATUS_UPDATE, ANALYST_VERDICT_UPDATE, ADD_NOTE]) {
    data { id title types isDisabled disabledReason triggeredAfter triggersActions }
    errors { errorMessage }
  }
}";

/// The write: in its own file, so the simulator's tests validate and run this very document.
const TRIGGER: &str = include_str!("trigger_actions.graphql");

const ADD_NOTE: &str = "mutation AddNote($alertId: ID!, $text: String!) {
  addAlertNote(alertId: $alertId, text: $text, type: PLAIN_TEXT) { data { id alertId text } }
}";

const NOTES: &str = "query AlertNotes($alertId: ID!) {
  alertNotes(alertId: $alertId) { data { id alertId text } }
}";

/// The scope a UAM call is made in (`ScopeSelectorInput`): the tenant's sites, else its
/// accounts; none when the tenant names neither (the token's own scope).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct UamScope {
    /// `SITE` or `ACCOUNT` (`ScopeType`).
    pub scope_type: &'static str,
    /// The tenant's site or account ids.
    pub scope_ids: Vec<String>,
}

impl UamScope {
    /// The scope of a tenant that names `account_ids` and `site_ids` (sites are the narrower).
    pub fn for_tenant(account_ids: &[String], site_ids: &[String]) -> Option<Self> {
        if !site_ids.is_empty() {
            Some(Self {
                scope_type: "SITE",
                scope_ids: site_ids.to_vec(),
            })
        } else if !account_ids.is_empty() {
            Some(Self {
                scope_type: "ACCOUNT",
                scope_ids: account_ids.to_vec(),
            })
        } else {
            None
        }
    }
}

/// The filter naming exactly `ids` (`{"or":[{"and":[{"fieldId":"id","stringIn":{...}}]}]}`).
///
/// # Errors
/// [`S1Error::InvalidRequest`] when `ids` is empty or holds an empty id: such a filter would not
/// name the alerts to change, and a null or empty one may act on every alert in scope.
pub fn alert_id_filter(ids: &[String]) -> Result<Value, S1Error> {
    if ids.is_empty() {
        return Err(S1Error::InvalidRequest(
            "a UAM write must name the alerts it changes; an empty alert-id filter may act on every alert in scope and is never sent".into(),
        ));
    }
    if ids.iter().any(|id| id.trim().is_empty()) {
        return Err(S1Error::InvalidRequest(
            "a UAM write names an empty alert id; refused before sending".into(),
        ));
    }
    Ok(json!({ "or": [ { "and": [ { "fieldId": "id", "stringIn": { "values": ids } } ] } ] }))
}

/// The console's action ids for the writes the bridge makes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WriteActions {
    /// `STATUS_UPDATE`.
    pub status: String,
    /// `ANALYST_VERDICT_UPDATE`.
    pub verdict: String,
    /// The verdict action must run before the status one (its `triggeredAfter` says so the
    /// other way round: the status action lists the verdict one).
    pub verdict_first: bool,
    /// `ADD_NOTE`, when offered (the notes themselves go through `addAlertNote`).
    pub note: Option<String>,
}

/// The one enabled action of type `t`.
fn pick(actions: &[AvailableAction], t: ActionType) -> Result<&AvailableAction, S1Error> {
    let of_type: Vec<&AvailableAction> = actions.iter().filter(|a| a.types.contains(&t)).collect();
    let enabled: Vec<&AvailableAction> = of_type.iter().copied().filter(|a| !a.is_disabled).collect();
    match enabled.as_slice() {
        [one] => Ok(one),
        [] => Err(S1Error::InvalidRequest(match of_type.first() {
            Some(a) => format!(
                "the console's {t} action is disabled for this token ({})",
                a.disabled_reason.as_deref().unwrap_or("no reason given")
            ),
            None => format!("the console offers no {t} action for these alerts"),
        })),
        many => Err(S1Error::InvalidRequest(format!(
            "the console offers {} enabled {t} actions ({}); which one to use is not known",
            many.len(),
            many.iter().map(|a| a.id.as_str()).collect::<Vec<_>>().join(", ")
        ))),
    }
}

/// The write actions among `actions` (an `alertAvailableActions` answer).
///
/// # Errors
/// [`S1Error::InvalidRequest`] when the status or verdict action is missing, disabled or
/// ambiguous.
pub fn choose_actions(actions: &[AvailableAction]) -> Result<WriteActions, S1Error> {
    let status = pick(actions, ActionType::StatusUpdate)?;
    let verdict = pick(actions, ActionType::AnalystVerdictUpdate)?;
    let note = pick(actions, ActionType::AddNote).ok().map(|a| a.id.clone());
    Ok(WriteActions {
        verdict_first: status.triggered_after.contains(&verdict.id),
        status: status.id.clone(),
        verdict: verdict.id.clone(),
        note,
    })
}

/// The `actions` argument of a trigger setting `status` and `verdict` (each when given), in the
/// order the console asks for.
fn trigger_inputs(a: &WriteActions, status: Option<UamStatus>, verdict: Option<UamVerdict>) -> Vec<Value> {
    let s = status.map(|s| json!({ "id": a.status, "payload": { "status": { "value": s.as_str() } } }));
    let v = verdict.map(|v| json!({ "id": a.verdict, "payload": { "analystVerdict": { "value": v.as_str() } } }));
    let ordered = if a.verdict_first { [v, s] } else { [s, v] };
    ordered.into_iter().flatten().collect()
}

/// How one alert came out of a write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AlertOutcome {
    /// Every action succeeded, or had nothing to change (`NO_CHANGE`), or a newer action on
    /// the console had already taken its place (`NEWER_ACTION`).
    Applied,
    /// The console may take it later: a transient failure, a sync issue, the alert missing from
    /// the answer, or the work deferred (`TriggerActionsScheduled`, whose outcome is unknown).
    Retry(String),
    /// The console refused it (not found, no permission, not supported...): trying again will
    /// not help.
    Refused(String),
}

/// Per-alert outcomes of one write, by alert id.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UamWriteResult {
    pub alerts: BTreeMap<String, AlertOutcome>,
}

impl UamWriteResult {
    /// True when the console took the write for at least one alert (it holds part of it).
    pub fn any_applied(&self) -> bool {
        self.alerts.values().any(|o| *o == AlertOutcome::Applied)
    }

    /// Outcome counts for the outbound log, e.g. `applied=2 refused=1`.
    pub fn summary(&self) -> String {
        let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
        for o in self.alerts.values() {
            *counts
                .entry(match o {
                    AlertOutcome::Applied => "applied",
                    AlertOutcome::Retry(_) => "retry",
                    AlertOutcome::Refused(_) => "refused",
                })
                .or_default() += 1;
        }
        counts
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// The alerts not applied, each with why: `(id, reason, transient)`.
    pub fn problems(&self) -> impl Iterator<Item = (&str, &str, bool)> {
        self.alerts.iter().filter_map(|(id, o)| match o {
            AlertOutcome::Applied => None,
            AlertOutcome::Retry(why) => Some((id.as_str(), why.as_str(), true)),
            AlertOutcome::Refused(why) => Some((id.as_str(), why.as_str(), false)),
        })
    }

    /// Worse outcomes win for an alert several actions touched.
    fn put(&mut self, id: &str, o: AlertOutcome) {
        let rank = |o: &AlertOutcome| match o {
            AlertOutcome::Applied => 0,
            AlertOutcome::Retry(_) => 1,
            AlertOutcome::Refused(_) => 2,
        };
        match self.alerts.get(id) {
            Some(have) if rank(have) >= rank(&o) => {}
            _ => {
                self.alerts.insert(id.to_owned(), o);
            }
        }
    }
}

/// What a trigger answered, read per alert.
#[derive(Debug)]
enum Triggered {
    Done(UamWriteResult),
    /// Refused whole (`TriggerActionsError`); with the console's limit of alerts per trigger,
    /// when that is why.
    Refused {
        message: String,
        limit: Option<usize>,
    },
}

/// Reads a trigger's answer for `ids`, each action's results per alert.
fn read_trigger(ids: &[String], sent_actions: &[&str], answer: Option<TriggerActionsResult>) -> Triggered {
    let mut out = UamWriteResult::default();
    match answer {
        None => {
            for id in ids {
                out.put(
                    id,
                    AlertOutcome::Retry("the console gave no result for the write".into()),
                );
            }
        }
        Some(TriggerActionsResult::TriggerActionsScheduled { execution_id }) => {
            let why = format!(
                "the console deferred the write (execution {}); sent again to learn its outcome",
                execution_id.as_deref().unwrap_or("without id")
            );
            for id in ids {
                out.put(id, AlertOutcome::Retry(why.clone()));
            }
        }
        Some(TriggerActionsResult::TriggerActionsError { errors }) => {
            let limit = errors
                .iter()
                .filter_map(|e| e.error_payload.as_ref())
                .filter(|p| p.typename.as_deref() != Some("ActionsErrorConcurrentUserLimitPayload"))
                .filter_map(|p| p.limit)
                .find(|l| *l > 0)
                .map(|l| l as usize);
            let message = errors
                .iter()
                .filter_map(|e| e.error_message.as_deref())
                .collect::<Vec<_>>()
                .join("; ");
            return Triggered::Refused { message, limit };
        }
        Some(TriggerActionsResult::ActionsTriggered { actions }) => {
            for action in sent_actions {
                let Some(r) = actions.iter().find(|a| a.action_id == *action) else {
                    for id in ids {
                        out.put(
                            id,
                            AlertOutcome::Retry(format!("the console did not report action {action}")),
                        );
                    }
                    continue;
                };
                for s in &r.success {
                    out.put(&s.id, AlertOutcome::Applied);
                }
                for s in &r.skip {
                    let why = format!(
                        "skipped ({}{})",
                        s.skip_type.map_or("no reason", |t| t.as_str()),
                        s.skip_message.as_deref().map(|m| format!(": {m}")).unwrap_or_default()
                    );
                    out.put(
                        &s.id,
                        match s.skip_type {
                            Some(SkipType::NoChange | SkipType::NewerAction) => AlertOutcome::Applied,
                            Some(SkipType::SyncIssue) => AlertOutcome::Retry(why),
                            _ => AlertOutcome::Refused(why),
                        },
                    );
                }
                for f in &r.failure {
                    let why = format!(
                        "failed ({}{})",
                        f.error_type.map_or("no error type", |t| t.as_str()),
                        f.error_message.as_deref().map(|m| format!(": {m}")).unwrap_or_default()
                    );
                    out.put(
                        &f.id,
                        if f.error_type.is_some_and(ActionErrorType::is_transient) {
                            AlertOutcome::Retry(why)
                        } else {
                            AlertOutcome::Refused(why)
                        },
                    );
                }
                for id in ids {
                    let reported = r.success.iter().any(|x| x.id == *id)
                        || r.skip.iter().any(|x| x.id == *id)
                        || r.failure.iter().any(|x| x.id == *id);
                    if !reported {
                        out.put(
                            id,
                            AlertOutcome::Retry(format!("the console did not report alert {id} for action {action}")),
                        );
                    }
                }
            }
        }
    }
    // Only the alerts asked about count: an id the console added is not ours to judge.
    out.alerts.retain(|id, _| ids.contains(id));
    Triggered::Done(out)
}

/// True when every alert failed with `ILLEGAL_ARGUMENTS`: the action ids themselves are the
/// likely cause (a stale id after a console upgrade).
fn ids_refused(r: &UamWriteResult) -> bool {
    !r.alerts.is_empty()
        && r.alerts
            .values()
            .all(|o| matches!(o, AlertOutcome::Refused(why) if why.contains("ILLEGAL_ARGUMENTS")))
}

type ActionCache = Mutex<HashMap<String, (WriteActions, Instant)>>;

/// Discovered action ids per console (API root), process-wide.
fn cache() -> &'static ActionCache {
    static CACHE: OnceLock<ActionCache> = OnceLock::new();
    CACHE.get_or_init(Default::default)
}

impl S1Client {
    /// The console's write actions for the alerts `ids` names, from `alertAvailableActions`
    /// (never cached: see [`S1Client::uam_write_actions`]).
    ///
    /// # Errors
    /// As [`alert_id_filter`]; the console's errors; [`S1Error::InvalidRequest`] when a write
    /// action is missing, disabled or ambiguous.
    pub async fn uam_discover_actions(
        &self,
        ids: &[String],
        scope: Option<&UamScope>,
    ) -> Result<WriteActions, S1Error> {
        let filter = alert_id_filter(ids)?;
        let data: AvailableActionsData = self
            .graphql(DISCOVER, &json!({ "filter": filter, "scope": scope }))
            .await?;
        let r = data.alert_available_actions;
        if !r.errors.is_empty() {
            return Err(S1Error::InvalidRequest(format!(
                "the console could not list the alert actions: {}",
                r.errors
                    .iter()
                    .filter_map(|e| e.error_message.as_deref())
                    .collect::<Vec<_>>()
                    .join("; ")
            )));
        }
        choose_actions(&r.data)
    }

    /// The console's write actions: cached per console for [`ACTION_TTL`], else discovered for
    /// `ids` and cached.
    ///
    /// # Errors
    /// As [`S1Client::uam_discover_actions`].
    pub async fn uam_write_actions(&self, ids: &[String], scope: Option<&UamScope>) -> Result<WriteActions, S1Error> {
        if let Some(a) = self.cached_actions() {
            return Ok(a);
        }
        let a = self.uam_discover_actions(ids, scope).await?;
        cache()
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(self.api_base().to_owned(), (a.clone(), Instant::now()));
        Ok(a)
    }

    fn cached_actions(&self) -> Option<WriteActions> {
        let c = cache().lock().unwrap_or_else(|e| e.into_inner());
        c.get(self.api_base())
            .filter(|(_, at)| at.elapsed() < ACTION_TTL)
            .map(|(a, _)| a.clone())
    }

    fn forget_actions(&self) {
        cache()
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(self.api_base());
    }

    /// Sets `status` and `verdict` (each when given) on the unified alerts `ids`, in triggers of
    /// at most [`MAX_ALERTS_PER_TRIGGER`] alerts, and reads each alert's result. When the
    /// console refuses cached action ids, they are discovered again once and the write sent
    /// again with the new ones.
    ///
    /// # Errors
    /// As [`alert_id_filter`] (also when neither field is given); the console's errors; a trigger
    /// refused whole ([`S1Error::InvalidRequest`] naming the console's message).
    pub async fn uam_set_fields(
        &self,
        ids: &[String],
        status: Option<UamStatus>,
        verdict: Option<UamVerdict>,
        scope: Option<&UamScope>,
    ) -> Result<UamWriteResult, S1Error> {
        alert_id_filter(ids)?;
        if status.is_none() && verdict.is_none() {
            return Err(S1Error::InvalidRequest(
                "a UAM write with neither a status nor a verdict is never sent".into(),
            ));
        }
        let mut out = UamWriteResult::default();
        let mut rest: &[String] = ids;
        match self.uam_set_chunks(status, verdict, scope, &mut out, &mut rest).await {
            Ok(()) => Ok(out),
            // A later trigger failed after an earlier one landed: the console holds part of the
            // write, so the failure is not the write's answer. The alerts not sent get it as
            // theirs (retried, or refused when the console refused the write).
            Err(e) if out.any_applied() => {
                let refused = !e.is_retryable() && !e.is_unauthorized() && e.made_no_change();
                let why = format!("not written: a trigger for the alerts before it landed, then {e}");
                for id in rest {
                    out.put(
                        id,
                        if refused {
                            AlertOutcome::Refused(why.clone())
                        } else {
                            AlertOutcome::Retry(why.clone())
                        },
                    );
                }
                Ok(out)
            }
            Err(e) => Err(e),
        }
    }

    /// [`uam_set_fields`](Self::uam_set_fields)'s triggers, from `rest` on: each chunk's results
    /// into `out`, `rest` moved past it.
    async fn uam_set_chunks(
        &self,
        status: Option<UamStatus>,
        verdict: Option<UamVerdict>,
        scope: Option<&UamScope>,
        out: &mut UamWriteResult,
        rest: &mut &[String],
    ) -> Result<(), S1Error> {
        let mut size = MAX_ALERTS_PER_TRIGGER;
        let mut rediscovered = false;
        while !rest.is_empty() {
            let chunk = &rest[..size.min(rest.len())];
            let cached = self.cached_actions().is_some();
            let actions = self.uam_write_actions(chunk, scope).await?;
            let inputs = trigger_inputs(&actions, status, verdict);
            let sent: Vec<&str> = [
                status.map(|_| actions.status.as_str()),
                verdict.map(|_| actions.verdict.as_str()),
            ]
            .into_iter()
            .flatten()
            .collect();
            let data: Result<TriggerActionsData, S1Error> = self
                .graphql(
                    TRIGGER,
                    &json!({ "filter": alert_id_filter(chunk)?, "scope": scope, "actions": inputs }),
                )
                .await;
            let refused_ids = match data {
                Ok(d) => match read_trigger(chunk, &sent, d.alert_trigger_actions) {
                    Triggered::Done(r) if cached && !rediscovered && ids_refused(&r) => true,
                    Triggered::Done(r) => {
                        for (id, o) in r.alerts {
                            out.put(&id, o);
                        }
                        *rest = &rest[chunk.len()..];
                        continue;
                    }
                    Triggered::Refused { limit: Some(l), .. } if l < chunk.len() => {
                        size = l;
                        continue;
                    }
                    Triggered::Refused { message, .. } if !cached || rediscovered => {
                        return Err(S1Error::InvalidRequest(format!(
                            "the console refused the write as a whole: {message}"
                        )));
                    }
                    Triggered::Refused { .. } => true,
                },
                // A refusal of the request itself (not a rate limit, not the network) with
                // cached ids: the ids may be what it refuses.
                Err(e)
                    if cached && !rediscovered && !e.is_retryable() && e.made_no_change() && !e.is_unauthorized() =>
                {
                    true
                }
                Err(e) => return Err(e),
            };
            if refused_ids {
                tracing::info!(console = %self.api_base(), "the console refused the cached UAM action ids; discovering them again");
                self.forget_actions();
                rediscovered = true;
            }
        }
        Ok(())
    }

    /// Adds a plain-text note to the unified alert `alert_id` (`addAlertNote`).
    ///
    /// # Errors
    /// [`S1Error::InvalidRequest`] for an empty id; the console's errors.
    pub async fn uam_add_note(&self, alert_id: &str, text: &str) -> Result<(), S1Error> {
        if alert_id.trim().is_empty() {
            return Err(S1Error::InvalidRequest(
                "a UAM note names an empty alert id; refused before sending".into(),
            ));
        }
        let _: AddAlertNoteData = self
            .graphql(ADD_NOTE, &json!({ "alertId": alert_id, "text": text }))
            .await?;
        Ok(())
    }

    /// Whether the unified alert `alert_id` holds a note with exactly `text` (`alertNotes`): a
    /// previous attempt may have added it and died before recording so.
    ///
    /// # Errors
    /// The console's errors.
    pub async fn uam_note_exists(&self, alert_id: &str, text: &str) -> Result<bool, S1Error> {
        let data: AlertNotesData = self.graphql(NOTES, &json!({ "alertId": alert_id })).await?;
        Ok(data.alert_notes.data.iter().any(|n| n.text.as_deref() == Some(text)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::s1::dto::uam_actions::TriggerActionsData;

    fn ids(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn a_write_that_names_no_alert_is_refused_before_it_is_sent() {
        let err = alert_id_filter(&[]).unwrap_err();
        assert!(matches!(err, S1Error::InvalidRequest(_)), "{err}");
        assert!(err.to_string().contains("empty alert-id filter"), "{err}");
        assert!(alert_id_filter(&ids(&["a", " "])).is_err());
        let f = alert_id_filter(&ids(&["a", "b"])).unwrap();
        assert_eq!(
            f,
            json!({"or": [{"and": [{"fieldId": "id", "stringIn": {"values": ["a", "b"]}}]}]})
        );
    }

    #[tokio::test]
    async fn the_client_refuses_an_empty_write_without_calling_the_console() {
        // A console that does not exist: any call would fail as a transport error instead.
        let client = S1Client::new(
            "https://uam-refusal-test.sentinelone.net",
            &crate::ApiToken::new("t"),
            crate::s1::ClientOptions::default(),
        )
        .unwrap();
        for err in [
            client
                .uam_set_fields(&[], Some(UamStatus::Resolved), None, None)
                .await
                .unwrap_err(),
            client.uam_discover_actions(&[], None).await.unwrap_err(),
            client.uam_add_note("", "x").await.unwrap_err(),
        ] {
            assert!(matches!(err, S1Error::InvalidRequest(_)), "{err}");
        }
    }

    fn available(v: Value) -> Vec<AvailableAction> {
        serde_json::from_value::<AvailableActionsData>(json!({"alertAvailableActions": {"data": v}}))
            .unwrap()
            .alert_available_actions
            .data
    }

    #[test]
    fn the_write_actions_are_the_enabled_one_of_each_type() {
        let a = available(json!([
            {"id": "s", "title": "Status", "types": ["STATUS_UPDATE"], "isDisabled": false, "triggeredAfter": ["v"], "triggersActions": []},
            {"id": "v", "title": "Verdict", "types": ["ANALYST_VERDICT_UPDATE"], "isDisabled": false, "triggeredAfter": null, "triggersActions": []},
            {"id": "n0", "title": "Note (off)", "types": ["ADD_NOTE"], "isDisabled": true, "disabledReason": "no", "triggersActions": []},
            {"id": "n", "title": "Note", "types": ["ADD_NOTE"], "isDisabled": false, "triggersActions": []},
            {"id": "x", "title": "Isolate", "types": ["MITIGATION"], "isDisabled": false, "triggersActions": []}
        ]));
        let w = choose_actions(&a).unwrap();
        assert_eq!(
            w,
            WriteActions {
                status: "s".into(),
                verdict: "v".into(),
                verdict_first: true,
                note: Some("n".into())
            }
        );
        let inputs = trigger_inputs(&w, Some(UamStatus::Resolved), Some(UamVerdict::FalsePositiveBenign));
        assert_eq!(
            inputs,
            vec![
                json!({"id": "v", "payload": {"analystVerdict": {"value": "FALSE_POSITIVE_BENIGN"}}}),
                json!({"id": "s", "payload": {"status": {"value": "RESOLVED"}}}),
            ],
            "the status action asks to come after the verdict one"
        );

        let disabled = available(json!([
            {"id": "s", "title": "Status", "types": ["STATUS_UPDATE"], "isDisabled": true, "disabledReason": "viewer role", "triggersActions": []},
            {"id": "v", "title": "Verdict", "types": ["ANALYST_VERDICT_UPDATE"], "isDisabled": false, "triggersActions": []}
        ]));
        let err = choose_actions(&disabled).unwrap_err().to_string();
        assert!(
            err.contains("STATUS_UPDATE action is disabled") && err.contains("viewer role"),
            "{err}"
        );
        let twice = available(json!([
            {"id": "s1", "title": "Status", "types": ["STATUS_UPDATE"], "isDisabled": false, "triggersActions": []},
            {"id": "s2", "title": "Status", "types": ["STATUS_UPDATE"], "isDisabled": false, "triggersActions": []},
            {"id": "v", "title": "Verdict", "types": ["ANALYST_VERDICT_UPDATE"], "isDisabled": false, "triggersActions": []}
        ]));
        assert!(
            choose_actions(&twice)
                .unwrap_err()
                .to_string()
                .contains("2 enabled STATUS_UPDATE actions")
        );
        let none = available(json!([]));
        assert!(
            choose_actions(&none)
                .unwrap_err()
                .to_string()
                .contains("no STATUS_UPDATE action")
        );
    }

    fn trigger(v: Value) -> Option<TriggerActionsResult> {
        serde_json::from_value::<TriggerActionsData>(json!({ "alertTriggerActions": v }))
            .unwrap()
            .alert_trigger_actions
    }

    #[test]
    fn per_alert_results_are_read_from_every_action() {
        let asked = ids(&["a", "b", "c", "d", "e", "f"]);
        let answer = trigger(json!({"__typename": "ActionsTriggered", "actions": [
            {"actionId": "s",
             "success": [{"id": "a"}, {"id": "b"}, {"id": "c"}, {"id": "d"}],
             "skip": [{"id": "e", "skipType": "NO_CHANGE"}, {"id": "f", "skipType": "UI_ONLY", "skipMessage": "wizard"}],
             "failure": []},
            {"actionId": "v",
             "success": [{"id": "a"}, {"id": "e"}, {"id": "f"}],
             "skip": [{"id": "b", "skipType": "SYNC_ISSUE"}],
             "failure": [{"id": "c", "errorType": "SURFACE_TOO_MANY_REQUESTS"}, {"id": "d", "errorType": "MISSING_PERMISSION", "errorMessage": "role"}, {"id": "zz", "errorType": "ALERT_NOT_FOUND"}]}
        ]}));
        let Triggered::Done(r) = read_trigger(&asked, &["s", "v"], answer) else {
            panic!("refused")
        };
        assert_eq!(r.alerts["a"], AlertOutcome::Applied);
        assert!(matches!(&r.alerts["b"], AlertOutcome::Retry(w) if w.contains("SYNC_ISSUE")));
        assert!(matches!(&r.alerts["c"], AlertOutcome::Retry(w) if w.contains("SURFACE_TOO_MANY_REQUESTS")));
        assert!(matches!(&r.alerts["d"], AlertOutcome::Refused(w) if w.contains("MISSING_PERMISSION: role")));
        assert_eq!(r.alerts["e"], AlertOutcome::Applied, "NO_CHANGE is applied");
        assert!(matches!(&r.alerts["f"], AlertOutcome::Refused(w) if w.contains("UI_ONLY: wizard")));
        assert!(!r.alerts.contains_key("zz"), "only the alerts asked about");
        assert_eq!(r.summary(), "applied=2 refused=2 retry=2");

        // An alert the answer leaves out is not taken as applied.
        let Triggered::Done(r) = read_trigger(
            &ids(&["a", "b"]),
            &["s"],
            trigger(
                json!({"__typename": "ActionsTriggered", "actions": [{"actionId": "s", "success": [{"id": "a"}], "skip": [], "failure": []}]}),
            ),
        ) else {
            panic!("refused")
        };
        assert!(matches!(&r.alerts["b"], AlertOutcome::Retry(_)));

        let Triggered::Done(r) = read_trigger(
            &ids(&["a"]),
            &["s"],
            trigger(json!({"__typename": "TriggerActionsScheduled", "executionId": "e1"})),
        ) else {
            panic!("refused")
        };
        assert!(matches!(&r.alerts["a"], AlertOutcome::Retry(w) if w.contains("deferred")));
        assert!(!r.any_applied());

        let Triggered::Refused { message, limit } = read_trigger(
            &ids(&["a", "b"]),
            &["s"],
            trigger(json!({"__typename": "TriggerActionsError", "errors": [
                {"errorMessage": "too many alerts", "errorPayload": {"__typename": "ActionsErrorLimitPayload", "limit": 1}}]})),
        ) else {
            panic!("not refused")
        };
        assert_eq!((message.as_str(), limit), ("too many alerts", Some(1)));
    }
}
