//! The writeback to unified alerts (UAM) through the simulator's GraphQL endpoint, on both
//! stores (they are among `writeback_scenarios!`): a story holding a threat and a unified alert (a
//! `uam:<id>` member) is closed on the platform; the threat is written through the threats API
//! and the unified alert through `alertTriggerActions` and `addAlertNote`.

use std::sync::Arc;

use s1_bridge_sim::{ActionOutcome, DetectionSource, FaultKind, FaultRule, NewUnifiedAlerts, UnifiedAlertChange};
use s1_shared::domain::MemberId;
use s1_shared::s1::dto::{AnalystVerdict, IncidentStatus};
use s1_shared::store::{ItemTable, MemberState, PendingWriteback};
use serde_json::Value;
use time::{Duration, OffsetDateTime};

use crate::poll::PollHarness;
use crate::writeback::scenarios::retry_at;
use crate::writeback::{INBOUND_SECRET, post_generic, requests_to, s1_state, setup, status_changed, story_key};

/// The GraphQL path as the simulator's fault rules and request log name it.
pub const GRAPHQL: &str = "/unifiedalerts/graphql";

/// A story of one polled threat with an Identity unified alert added to it as a member (the
/// read side would group it there; the writeback only needs the member): the harness, the
/// webhook base URL, the story's alert key, its threat id and the unified alert's id.
pub struct UamStory {
    pub h: PollHarness,
    pub base: String,
    pub alert: String,
    pub threat: String,
    pub unified: String,
}

pub async fn uam_story(table: Arc<dyn ItemTable>) -> UamStory {
    let (h, base, stories) = setup(1, table).await;
    let (alert, threats) = stories[0].clone();
    let ids = h
        .sim
        .control()
        .add_unified_alerts(&NewUnifiedAlerts::one(DetectionSource::Identity))
        .await
        .unwrap();
    let unified = ids[0].clone();
    add_member(&h, &alert, MemberId::unified(&unified)).await;
    UamStory {
        h,
        base,
        alert,
        threat: threats[0].clone(),
        unified,
    }
}

/// Adds `member` (as the poller would record a new one) to the story behind `alert`.
pub async fn add_member(h: &PollHarness, alert: &str, member: MemberId) {
    let mut story = h.store.get_story("acme", &story_key(alert)).await.unwrap().unwrap();
    story.value.members.insert(member, crate::store_contract::member(0));
    let conflicts = h
        .store
        .put_stories("acme", &[(&story.value, story.version, false)])
        .await
        .unwrap();
    assert!(conflicts.is_empty());
}

/// The unified alert as the simulator holds it: (status, verdict, note texts).
pub async fn uam_state(h: &PollHarness, id: &str) -> (String, String, Vec<String>) {
    let a = h.sim.control().unified_alert(id).await.unwrap();
    let notes = a["notes"]
        .as_array()
        .map(|n| n.iter().filter_map(|n| n["text"].as_str().map(str::to_owned)).collect())
        .unwrap_or_default();
    (
        a["status"].as_str().unwrap_or_default().to_owned(),
        a["analystVerdict"].as_str().unwrap_or_default().to_owned(),
        notes,
    )
}

/// The member's record on the story: what we wrote.
pub async fn member(h: &PollHarness, alert: &str, id: &MemberId) -> MemberState {
    let story = h.store.get_story("acme", &story_key(alert)).await.unwrap().unwrap();
    story.value.members[id].clone()
}

pub async fn dead(h: &PollHarness) -> Vec<PendingWriteback> {
    h.store.list_dead("acme", None, 100).await.unwrap().items
}

pub async fn pending(h: &PollHarness) -> Vec<PendingWriteback> {
    h.store.list_pending("acme", None, 100).await.unwrap().items
}

pub async fn graphql_fault(h: &PollHarness, fault: FaultKind, after: u32, count: u32) {
    h.sim
        .control()
        .add_fault(&FaultRule::new(GRAPHQL, fault, count).after(after))
        .await
        .unwrap();
}

pub async fn set_outcome(h: &PollHarness, id: &str, outcome: ActionOutcome) {
    h.sim
        .control()
        .change_unified_alert(
            id,
            &UnifiedAlertChange {
                outcome: Some(outcome),
                ..UnifiedAlertChange::default()
            },
        )
        .await
        .unwrap();
}

pub mod scenarios {
    use super::*;

    const CLOSED_BY: &str = "[generic] closed by Ana";

    /// "closed" with reason benign: the threat resolved / false_positive through the threats
    /// API, the unified alert RESOLVED / FALSE_POSITIVE_BENIGN through UAM, one note on each;
    /// every UAM action named exactly that alert; the member records what it was given as the
    /// poller reads it back.
    pub async fn a_close_reaches_the_threat_through_the_threats_api_and_the_unified_alert_through_uam(
        table: Arc<dyn ItemTable>,
    ) {
        let s = uam_story(table).await;
        let closed = status_changed(&s.alert, "closed", Some("benign"), OffsetDateTime::now_utc());
        let (code, resp) = post_generic(&s.base, "acme", "uam-close", &closed, INBOUND_SECRET).await;
        assert_eq!((code, resp["writeback"].as_str()), (202, Some("applied")), "{resp}");

        let (status, verdict, notes) = s1_state(&s.h, &s.threat).await;
        assert_eq!((status.as_str(), verdict.as_str()), ("resolved", "false_positive"));
        assert_eq!(notes.iter().filter(|n| n.starts_with(CLOSED_BY)).count(), 1);
        let (status, verdict, notes) = uam_state(&s.h, &s.unified).await;
        assert_eq!(
            (status.as_str(), verdict.as_str()),
            ("RESOLVED", "FALSE_POSITIVE_BENIGN")
        );
        assert_eq!(
            notes.iter().filter(|n| n.starts_with(CLOSED_BY)).count(),
            1,
            "{notes:?}"
        );

        let actions = s.h.sim.control().uam_actions().await.unwrap();
        assert_eq!(actions.len(), 2, "status and verdict: {actions:?}");
        for a in &actions {
            assert!(!a.unfiltered, "every write names its alerts: {a:?}");
            assert_eq!(a.alert_ids, vec![s.unified.clone()], "{a:?}");
        }
        let m = member(&s.h, &s.alert, &MemberId::unified(&s.unified)).await;
        assert_eq!(
            (m.written_status, m.written_verdict),
            (Some(IncidentStatus::Resolved), Some(AnalystVerdict::FalsePositive)),
            "recorded as the poller reads FALSE_POSITIVE_BENIGN back"
        );
        let t = member(&s.h, &s.alert, &MemberId::threat(s.threat.clone())).await;
        assert_eq!(t.written_status, Some(IncidentStatus::Resolved));
        let out = s.h.store.list_outbound("acme", None, 100).await.unwrap().items;
        assert!(
            out.iter()
                .any(|o| o.path == GRAPHQL && o.result.as_deref().is_some_and(|r| r.contains("applied=1"))),
            "{out:?}"
        );
        assert!(out.iter().any(|o| o.path == "/threats/incident"), "{out:?}");
    }

    /// The console answers the unified alert's write with `MISSING_PERMISSION`: retrying will
    /// not help; the change is a dead letter that names the alert and the reason.
    pub async fn a_unified_write_the_console_refuses_is_a_dead_letter_naming_the_alert(table: Arc<dyn ItemTable>) {
        let s = uam_story(table).await;
        set_outcome(
            &s.h,
            &s.unified,
            ActionOutcome::Fail {
                error_type: "MISSING_PERMISSION".into(),
            },
        )
        .await;
        let closed = status_changed(&s.alert, "closed", Some("benign"), OffsetDateTime::now_utc());
        let (code, resp) = post_generic(&s.base, "acme", "uam-refused", &closed, INBOUND_SECRET).await;
        assert_eq!((code, resp["writeback"].as_str()), (202, Some("dead_letter")), "{resp}");
        let dead = dead(&s.h).await;
        assert_eq!(dead.len(), 1, "{dead:?}");
        let why = dead[0].last_error.clone().unwrap_or_default();
        assert!(why.contains(&s.unified) && why.contains("MISSING_PERMISSION"), "{why}");
        assert!(pending(&s.h).await.is_empty());
        assert_eq!(uam_state(&s.h, &s.unified).await.0, "NEW");
    }

    /// A `SYNC_ISSUE` skip leaves the change pending; once the console takes writes again the
    /// retry pass lands it, with one note.
    pub async fn a_skipped_unified_write_stays_pending_and_lands_on_retry(table: Arc<dyn ItemTable>) {
        let s = uam_story(table).await;
        set_outcome(
            &s.h,
            &s.unified,
            ActionOutcome::Skip {
                skip_type: "SYNC_ISSUE".into(),
            },
        )
        .await;
        let now = OffsetDateTime::now_utc();
        let closed = status_changed(&s.alert, "closed", Some("PUP/PUA"), now);
        let (code, resp) = post_generic(&s.base, "acme", "uam-skip", &closed, INBOUND_SECRET).await;
        assert_eq!((code, resp["writeback"].as_str()), (202, Some("pending")), "{resp}");
        let p = pending(&s.h).await;
        assert!(
            p[0].last_error.as_deref().is_some_and(|e| e.contains("SYNC_ISSUE")),
            "{p:?}"
        );
        set_outcome(&s.h, &s.unified, ActionOutcome::Apply).await;
        let r = retry_at(&s.h, now + Duration::minutes(10)).await;
        assert_eq!(r.applied, 1, "{r:?}");
        let (status, verdict, notes) = uam_state(&s.h, &s.unified).await;
        assert_eq!(
            (status.as_str(), verdict.as_str()),
            ("RESOLVED", "TRUE_POSITIVE_PUA_ADWARE")
        );
        assert_eq!(
            notes.iter().filter(|n| n.starts_with(CLOSED_BY)).count(),
            1,
            "{notes:?}"
        );
        assert!(dead(&s.h).await.is_empty());
    }

    /// UAM takes the note but its answer is cut (the other side acted and we did not hear it):
    /// the retry finds the note there and adds no second one; the threat's note is not
    /// repeated either.
    pub async fn a_lost_answer_after_uam_took_the_note_adds_no_second_note(table: Arc<dyn ItemTable>) {
        // Discovery and the trigger pass; the note's answer is cut.
        let (s, now) = close_with_a_cut_answer(table, 2).await;
        assert_eq!(uam_state(&s.h, &s.unified).await.2.len(), 1, "UAM took the note");
        let r = retry_at(&s.h, now + Duration::minutes(10)).await;
        assert_eq!(r.applied, 1, "{r:?}");
        let notes = uam_state(&s.h, &s.unified).await.2;
        assert_eq!(
            notes.iter().filter(|n| n.starts_with(CLOSED_BY)).count(),
            1,
            "{notes:?}"
        );
        let (_, _, notes) = s1_state(&s.h, &s.threat).await;
        assert_eq!(
            notes.iter().filter(|n| n.starts_with(CLOSED_BY)).count(),
            1,
            "{notes:?}"
        );
    }

    /// UAM applies the status and verdict but the answer is cut: the change stays pending (not
    /// taken back, not dead); the retry sends it again, the console answers `NO_CHANGE`, and the
    /// change ends applied with one note.
    pub async fn a_lost_answer_after_uam_took_the_status_is_applied_on_retry_not_lost(table: Arc<dyn ItemTable>) {
        // Discovery passes; the trigger's answer is cut.
        let (s, now) = close_with_a_cut_answer(table, 1).await;
        assert_eq!(uam_state(&s.h, &s.unified).await.0, "RESOLVED", "UAM took it");
        let m = member(&s.h, &s.alert, &MemberId::unified(&s.unified)).await;
        assert_eq!(
            m.written_status,
            Some(IncidentStatus::Resolved),
            "a write whose answer was lost is still ours"
        );
        let r = retry_at(&s.h, now + Duration::minutes(10)).await;
        assert_eq!(r.applied, 1, "{r:?}");
        let actions = s.h.sim.control().uam_actions().await.unwrap();
        assert!(
            actions.iter().skip(2).all(|a| a.skip == vec![s.unified.clone()]),
            "sent again, answered NO_CHANGE: {actions:?}"
        );
        let (status, verdict, notes) = uam_state(&s.h, &s.unified).await;
        assert_eq!(
            (status.as_str(), verdict.as_str()),
            ("RESOLVED", "FALSE_POSITIVE_BENIGN")
        );
        assert_eq!(notes.len(), 1, "{notes:?}");
        assert!(dead(&s.h).await.is_empty() && pending(&s.h).await.is_empty());
    }

    /// The console's action ids change after they were cached (an upgrade): the refused write is
    /// sent again once with ids discovered afresh, and lands.
    pub async fn cached_action_ids_the_console_refuses_are_discovered_again_once(table: Arc<dyn ItemTable>) {
        let s = uam_story(table).await;
        let now = OffsetDateTime::now_utc();
        let closed = status_changed(&s.alert, "closed", Some("benign"), now - Duration::minutes(2));
        let (_, resp) = post_generic(&s.base, "acme", "uam-ids-1", &closed, INBOUND_SECRET).await;
        assert_eq!(resp["writeback"].as_str(), Some("applied"), "{resp}");
        s.h.sim.control().rotate_uam_action_ids().await.unwrap();
        let reopened = status_changed(&s.alert, "reopened", None, now - Duration::minutes(1));
        let (_, resp) = post_generic(&s.base, "acme", "uam-ids-2", &reopened, INBOUND_SECRET).await;
        assert_eq!(resp["writeback"].as_str(), Some("applied"), "{resp}");
        assert_eq!(uam_state(&s.h, &s.unified).await.0, "NEW");
        let discoveries = graphql_bodies(&s.h)
            .await
            .iter()
            .filter(|q| q.contains("alertAvailableActions"))
            .count();
        assert_eq!(discoveries, 2, "discovered once, then once more after the refusal");
    }

    /// UAM is down for "closed" (t1); "reopened" (t2) applies; the retry pass must not apply
    /// the older change over the newer one: the unified alert stays NEW, its verdict is not the
    /// superseded one, and the older change is listed as superseded with its note posted once.
    pub async fn an_older_unified_change_that_failed_is_superseded_by_a_newer_applied_one(table: Arc<dyn ItemTable>) {
        let s = uam_story(table).await;
        let now = OffsetDateTime::now_utc();
        let down = FaultKind::Status {
            status: 503,
            retry_after: None,
            code: None,
        };
        graphql_fault(&s.h, down, 0, 1_000).await;
        let closed = status_changed(&s.alert, "closed", Some("benign"), now - Duration::minutes(2));
        let (_, resp) = post_generic(&s.base, "acme", "uam-order-t1", &closed, INBOUND_SECRET).await;
        assert_eq!(resp["writeback"].as_str(), Some("pending"), "{resp}");
        s.h.sim.control().clear_faults().await.unwrap();
        let reopened = status_changed(&s.alert, "reopened", None, now - Duration::minutes(1));
        let (_, resp) = post_generic(&s.base, "acme", "uam-order-t2", &reopened, INBOUND_SECRET).await;
        assert_eq!(resp["writeback"].as_str(), Some("applied"), "{resp}");
        let r = retry_at(&s.h, now + Duration::minutes(10)).await;
        assert_eq!(r.applied, 0, "{r:?}");
        let (status, verdict, notes) = uam_state(&s.h, &s.unified).await;
        assert_eq!(status, "NEW", "the newer change stands");
        assert_ne!(
            verdict, "FALSE_POSITIVE_BENIGN",
            "the superseded verdict was not applied"
        );
        assert_eq!(
            notes.iter().filter(|n| n.starts_with(CLOSED_BY)).count(),
            1,
            "{notes:?}"
        );
        let dead = dead(&s.h).await;
        assert!(
            dead.iter()
                .any(|d| d.last_error.as_deref().is_some_and(|e| e.starts_with("superseded"))),
            "{dead:?}"
        );
    }

    /// A tenant reading threats and unified alerts: an Identity alert raised after the first
    /// poll becomes a story of its own (member `uam:<id>`); the SOC closes it as PUP/PUA (the
    /// threats' verdict would be `suspicious`, UAM's is TRUE_POSITIVE_PUA_ADWARE); UAM holds
    /// RESOLVED / TRUE_POSITIVE_PUA_ADWARE with a newer `updatedAt`, and the next poll takes
    /// that for our own write: nothing is sent back to the platform.
    pub async fn our_own_unified_write_is_not_sent_back_by_the_poller(table: Arc<dyn ItemTable>) {
        let (h, base, _) = setup(1, table).await;
        let mut tenant = h.store.get_tenant("acme").await.unwrap().unwrap();
        tenant.sources = vec![s1_shared::store::Source::Threats, s1_shared::store::Source::Unified];
        h.store.put_tenant(&tenant).await.unwrap();
        let id = h
            .sim
            .control()
            .add_unified_alerts(&NewUnifiedAlerts::one(DetectionSource::Identity))
            .await
            .unwrap()
            .remove(0);
        h.poll().await;
        let about = |e: &Value| e.to_string().contains(&id);
        let events = h.receiver.events();
        let alert = events
            .iter()
            .find(|e| about(e))
            .and_then(|e| e["data"]["alert_key"].as_str())
            .unwrap_or_else(|| panic!("no event for unified alert {id}: {events:#?}"))
            .to_owned();
        let before = events.iter().filter(|e| about(e)).count();
        let closed = status_changed(&alert, "closed", Some("PUP/PUA"), OffsetDateTime::now_utc());
        let (_, resp) = post_generic(&base, "acme", "uam-echo", &closed, INBOUND_SECRET).await;
        assert_eq!(resp["writeback"].as_str(), Some("applied"), "{resp}");
        assert_eq!(
            uam_state(&h, &id).await.1,
            "TRUE_POSITIVE_PUA_ADWARE",
            "UAM holds our write"
        );
        h.poll().await;
        let after: Vec<Value> = h.receiver.events().into_iter().filter(|e| about(e)).collect();
        assert_eq!(after.len(), before, "our own write came back: {after:#?}");
        let m = member(&h, &alert, &MemberId::unified(&id)).await;
        assert_eq!(m.status, Some(IncidentStatus::Resolved), "the poller saw it: {m:?}");
    }

    /// UAM answers the trigger with a GraphQL error that is no refusal (an internal error, HTTP
    /// 200): the change stays pending, not dead, and lands on retry.
    pub async fn a_graphql_error_that_is_no_refusal_leaves_the_unified_change_pending(table: Arc<dyn ItemTable>) {
        let s = uam_story(table).await;
        let internal = FaultKind::GraphqlError {
            code: "INTERNAL_SERVER_ERROR".into(),
            message: None,
        };
        // Discovery passes; the trigger fails.
        graphql_fault(&s.h, internal, 1, 1).await;
        let now = OffsetDateTime::now_utc();
        let closed = status_changed(&s.alert, "closed", Some("benign"), now);
        let (_, resp) = post_generic(&s.base, "acme", "uam-graphql-error", &closed, INBOUND_SECRET).await;
        assert_eq!(resp["writeback"].as_str(), Some("pending"), "{resp}");
        let r = retry_at(&s.h, now + Duration::minutes(10)).await;
        assert_eq!(r.applied, 1, "{r:?}");
        assert_eq!(uam_state(&s.h, &s.unified).await.0, "RESOLVED");
        assert!(dead(&s.h).await.is_empty());
    }

    /// A "closed" (benign) whose GraphQL call number `after + 1` has its answer cut after UAM
    /// acted on it: the change is left pending. Returns the story and the change's time.
    async fn close_with_a_cut_answer(table: Arc<dyn ItemTable>, after: u32) -> (UamStory, OffsetDateTime) {
        let s = uam_story(table).await;
        graphql_fault(&s.h, FaultKind::Truncate, after, 1).await;
        let now = OffsetDateTime::now_utc();
        let closed = status_changed(&s.alert, "closed", Some("benign"), now);
        let (code, resp) = post_generic(&s.base, "acme", &format!("uam-cut-{after}"), &closed, INBOUND_SECRET).await;
        assert_eq!((code, resp["writeback"].as_str()), (202, Some("pending")), "{resp}");
        (s, now)
    }

    /// The GraphQL documents the simulator received, in order.
    async fn graphql_bodies(h: &PollHarness) -> Vec<String> {
        requests_to(h, GRAPHQL)
            .await
            .iter()
            .map(|r| r.body.as_ref().map(Value::to_string).unwrap_or_default())
            .collect()
    }
}
