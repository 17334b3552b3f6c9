//! The writeback to unified alerts (UAM) through the simulator's GraphQL endpoint, on both
//! stores (they are among `writeback_scenarios!`): a story holding a threat and a unified alert (a
//! `uam:<id>` member) is closed on the platform; the threat is written through the threats API
//! and the unified alert through `alertTriggerActions` and `addAlertNote`.

use std::sync::Arc;

use s1_bridge_sim::{ActionOutcome, DetectionSource, FaultKind, FaultRule, NewUnifiedAlerts, UnifiedAlertChange};
use s1_shared::domain::MemberId;
use s1_shared::s1::dto::{AnalystVerdict, IncidentStatus};
use s1_shared::store::{ItemTable, MemberState, PendingWriteback};
use s1_shared::usecase::writeback::{RetryReport, SUPERSEDED, SUPERSEDED_VERDICT_KEPT};
use serde_json::Value;
use time::{Duration, OffsetDateTime};

use crate::poll::PollHarness;
use crate::writeback::scenarios::retry_at;
use crate::writeback::{
    INBOUND_SECRET, comment_added, comment_with_verdict, post_generic, requests_to, s1_state, setup, status_changed,
    story_key,
};

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
    let unified = identity_alert(&h.sim).await;
    add_member(&h, &alert, MemberId::unified(&unified)).await;
    UamStory {
        h,
        base,
        alert,
        threat: threats[0].clone(),
        unified,
    }
}

/// A new Identity alert (no threat) on the simulated console: its id.
pub async fn identity_alert(sim: &s1_bridge_sim::Sim) -> String {
    sim.control()
        .add_unified_alerts(&NewUnifiedAlerts::one(DetectionSource::Identity))
        .await
        .unwrap()
        .remove(0)
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

    /// The unified alert `id` is RESOLVED with `verdict`, and holds the close's note once.
    async fn closed_once_in_uam(h: &PollHarness, id: &str, verdict: &str) {
        let (status, held, notes) = uam_state(h, id).await;
        assert_eq!((status.as_str(), held.as_str()), ("RESOLVED", verdict));
        assert_eq!(
            notes.iter().filter(|n| n.starts_with(CLOSED_BY)).count(),
            1,
            "{notes:?}"
        );
    }

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
        closed_once_in_uam(&s.h, &s.unified, "FALSE_POSITIVE_BENIGN").await;

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
        closed_once_in_uam(&s.h, &s.unified, "TRUE_POSITIVE_PUA_ADWARE").await;
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

    /// S1 fails "closed" (t1) on the threats API and on UAM alike; "reopened" (t2) applies; the
    /// retry pass supersedes the close: neither the threat nor the unified alert gets its
    /// verdict (nothing of it had landed), each gets its note once.
    pub async fn an_older_unified_change_that_failed_is_superseded_by_a_newer_applied_one(table: Arc<dyn ItemTable>) {
        let s = uam_story(table).await;
        let now = OffsetDateTime::now_utc();
        crate::writeback::fail_incident(&s.h, 503, 1_000).await;
        graphql_fault(&s.h, DOWN, 0, 1_000).await;
        let (closed, reopened) = close_then_reopen(&s, now, "uam-order").await;
        assert_eq!(closed, "pending");
        assert_eq!(reopened, "applied");
        let r = retry_at(&s.h, now + Duration::minutes(10)).await;
        assert_eq!((r.applied, r.superseded), (0, 1), "{r:?}");
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
        let (status, verdict, notes) = s1_state(&s.h, &s.threat).await;
        assert_eq!(status, "unresolved", "the newer change stands");
        assert_ne!(verdict, "false_positive", "the superseded verdict was not applied");
        assert_eq!(
            notes.iter().filter(|n| n.starts_with(CLOSED_BY)).count(),
            1,
            "{notes:?}"
        );
        let dead = dead(&s.h).await;
        assert_eq!(dead.len(), 1, "{dead:?}");
        assert_eq!(dead[0].last_error.as_deref(), Some(SUPERSEDED), "{dead:?}");
    }

    const DOWN: FaultKind = FaultKind::Status {
        status: 503,
        retry_after: None,
        code: None,
    };

    /// Posts "closed" (benign, at `now` - 2 min) then "reopened" (at `now` - 1 min) for the
    /// story: the webhook's answers.
    async fn close_then_reopen(s: &UamStory, now: OffsetDateTime, id: &str) -> (String, String) {
        let closed = status_changed(&s.alert, "closed", Some("benign"), now - Duration::minutes(2));
        let (_, a) = post_generic(&s.base, "acme", &format!("{id}-t1"), &closed, INBOUND_SECRET).await;
        s.h.sim.control().clear_faults().await.unwrap();
        let reopened = status_changed(&s.alert, "reopened", None, now - Duration::minutes(1));
        let (_, b) = post_generic(&s.base, "acme", &format!("{id}-t2"), &reopened, INBOUND_SECRET).await;
        let answer = |r: &Value| r["writeback"].as_str().unwrap_or_default().to_owned();
        (answer(&a), answer(&b))
    }

    /// The story's threat and unified alert hold the reopen's status and the superseded
    /// close's verdict, each the close's note once; the close is listed as superseded with its
    /// verdict kept; and the next poll sends nothing back.
    async fn reopened_with_the_close_verdict_everywhere(s: &UamStory) {
        reopened_with_the_close_verdict_on_both(s, 1).await;
        let dead = dead(&s.h).await;
        assert_eq!(dead.len(), 1, "{dead:?}");
        assert_eq!(dead[0].last_error.as_deref(), Some(SUPERSEDED_VERDICT_KEPT), "{dead:?}");
        no_echo(s).await;
    }

    /// The next poll sends nothing back, and nothing is pending.
    async fn no_echo(s: &UamStory) {
        assert!(pending(&s.h).await.is_empty());
        let before = s.h.receiver.events().len();
        let p = s.h.poll().await.tenants.remove(0);
        assert_eq!(p.published, 0, "our own writes came back: {p:?}");
        assert_eq!(s.h.receiver.events().len(), before);
    }

    /// The story's threat and unified alert hold the reopen's status and the benign close's
    /// verdict, and `closes` close notes each (one per close).
    async fn reopened_with_the_close_verdict_on_both(s: &UamStory, closes: usize) {
        let (status, verdict, notes) = uam_state(&s.h, &s.unified).await;
        assert_eq!((status.as_str(), verdict.as_str()), ("NEW", "FALSE_POSITIVE_BENIGN"));
        assert_eq!(
            notes.iter().filter(|n| n.starts_with(CLOSED_BY)).count(),
            closes,
            "{notes:?}"
        );
        let (status, verdict, notes) = s1_state(&s.h, &s.threat).await;
        assert_eq!((status.as_str(), verdict.as_str()), ("unresolved", "false_positive"));
        assert_eq!(
            notes.iter().filter(|n| n.starts_with(CLOSED_BY)).count(),
            closes,
            "{notes:?}"
        );
    }

    /// "closed" benign (t1) lands on the threat, UAM fails it; "closed" true positive (t2)
    /// fails on the threats API before anything lands; "reopened" (t3) applies. The t2 close
    /// made no change, so it holds no mark: the t1 close still holds the verdict and, superseded,
    /// completes it on the unified alert; the t2 close is superseded whole. Before its marks
    /// were taken back, both were superseded whole and the members split (found by review).
    pub async fn a_newer_close_that_landed_nowhere_does_not_keep_an_older_ones_verdict_split(
        table: Arc<dyn ItemTable>,
    ) {
        let s = uam_story(table).await;
        let now = OffsetDateTime::now_utc();
        graphql_fault(&s.h, DOWN, 0, 1_000).await;
        let benign = status_changed(&s.alert, "closed", Some("benign"), now - Duration::minutes(3));
        let (_, a) = post_generic(&s.base, "acme", "uam-marks-t1", &benign, INBOUND_SECRET).await;
        assert_eq!(a["writeback"].as_str(), Some("pending"), "{a}");
        s.h.sim.control().clear_faults().await.unwrap();
        let tries = crate::fast_retry_options().retry.max_attempts;
        crate::writeback::fail_incident(&s.h, 503, tries).await;
        let tp = status_changed(&s.alert, "closed", Some("true_positive"), now - Duration::minutes(2));
        let (_, c) = post_generic(&s.base, "acme", "uam-marks-t2", &tp, INBOUND_SECRET).await;
        assert_eq!(c["writeback"].as_str(), Some("pending"), "{c}");
        s.h.sim.control().clear_faults().await.unwrap();
        let reopened = status_changed(&s.alert, "reopened", None, now - Duration::minutes(1));
        let (_, d) = post_generic(&s.base, "acme", "uam-marks-t3", &reopened, INBOUND_SECRET).await;
        assert_eq!(d["writeback"].as_str(), Some("applied"), "{d}");
        let r = retry_at(&s.h, now + Duration::minutes(10)).await;
        assert_eq!((r.applied, r.superseded), (0, 2), "{r:?}");
        reopened_with_the_close_verdict_on_both(&s, 2).await;
        let mut dead: Vec<(String, Option<String>)> = dead(&s.h)
            .await
            .into_iter()
            .map(|d| (d.change.change.event_id, d.last_error))
            .collect();
        dead.sort();
        assert_eq!(
            dead,
            vec![
                ("uam-marks-t1".to_owned(), Some(SUPERSEDED_VERDICT_KEPT.to_owned())),
                ("uam-marks-t2".to_owned(), Some(SUPERSEDED.to_owned())),
            ]
        );
        no_echo(&s).await;
    }

    /// "closed" (t1) lands on the threat (resolved / false_positive), then UAM fails it;
    /// "reopened" (t2, status only) applies to both. The close, retried, is superseded, but its
    /// verdict is still the SOC's latest and already on the threat: it goes to the unified
    /// alert too, so the story's members agree (they did not: seeded writeback chaos, seed 4).
    pub async fn a_superseded_close_that_reached_only_the_threat_gets_its_verdict_onto_the_unified_alert(
        table: Arc<dyn ItemTable>,
    ) {
        let s = uam_story(table).await;
        let now = OffsetDateTime::now_utc();
        graphql_fault(&s.h, DOWN, 0, 1_000).await;
        let (closed, reopened) = close_then_reopen(&s, now, "uam-split").await;
        assert_eq!((closed.as_str(), reopened.as_str()), ("pending", "applied"));
        let r = retry_at(&s.h, now + Duration::minutes(10)).await;
        assert_eq!((r.applied, r.superseded), (0, 1), "{r:?}");
        reopened_with_the_close_verdict_everywhere(&s).await;
    }

    /// "closed" (t1): the threats call's first answer is cut short (the threat took it) and its
    /// retries get 503s, so UAM is never called; "reopened" (t2) applies. The last try's 503
    /// does not make the close "nothing landed": what it recorded on the threat stays (no echo)
    /// and, superseded, its verdict reaches the unified alert too.
    pub async fn a_close_whose_lost_answer_was_followed_by_503s_is_not_taken_for_unsent(table: Arc<dyn ItemTable>) {
        let s = uam_story(table).await;
        let now = OffsetDateTime::now_utc();
        let incident = "/threats/incident";
        for rule in [
            FaultRule::new(incident, FaultKind::Truncate, 1),
            FaultRule::new(incident, DOWN, crate::fast_retry_options().retry.max_attempts - 1),
        ] {
            s.h.sim.control().add_fault(&rule).await.unwrap();
        }
        let (closed, reopened) = close_then_reopen(&s, now, "uam-lost").await;
        assert_eq!((closed.as_str(), reopened.as_str()), ("pending", "applied"));
        let r = retry_at(&s.h, now + Duration::minutes(10)).await;
        assert_eq!((r.applied, r.superseded), (0, 1), "{r:?}");
        reopened_with_the_close_verdict_everywhere(&s).await;
    }

    /// As above, but the close's attempt is cut off (out of time, as a kill) while UAM holds
    /// its call, after the threat took it; its retry then fails cleanly before anything lands,
    /// and "reopened" applies in between. The mark that the close was sent outlives both, so
    /// the superseded close's verdict still reaches the unified alert.
    pub async fn a_close_cut_off_after_the_threat_took_it_keeps_its_verdict_through_a_clean_retry_failure(
        table: Arc<dyn ItemTable>,
    ) {
        let s = uam_story(table).await;
        let now = OffsetDateTime::now_utc();
        graphql_fault(&s.h, FaultKind::Slow { millis: 120_000 }, 0, 1_000).await;
        let closed = status_changed(&s.alert, "closed", Some("benign"), now - Duration::minutes(2));
        let (_, a) = post_generic(&s.base, "acme", "uam-cut-t1", &closed, INBOUND_SECRET).await;
        assert_eq!(a["writeback"].as_str(), Some("pending"), "{a}");
        s.h.sim.control().clear_faults().await.unwrap();
        assert_eq!(
            s1_state(&s.h, &s.threat).await.1,
            "false_positive",
            "the threat took it"
        );
        assert_ne!(
            uam_state(&s.h, &s.unified).await.1,
            "FALSE_POSITIVE_BENIGN",
            "UAM did not"
        );
        // The close's claim and the alert's lock are held until they lapse: the reopen waits.
        let reopened = status_changed(&s.alert, "reopened", None, now - Duration::minutes(1));
        let (_, b) = post_generic(&s.base, "acme", "uam-cut-t2", &reopened, INBOUND_SECRET).await;
        assert_eq!(b["writeback"].as_str(), Some("pending"), "{b}");
        // The close goes first (older) and fails every try cleanly; the reopen then applies.
        let tries = crate::fast_retry_options().retry.max_attempts;
        crate::writeback::fail_incident(&s.h, 503, tries).await;
        let r = retry_at(&s.h, now + Duration::minutes(10)).await;
        assert_eq!((r.applied, r.rescheduled), (1, 1), "{r:?}");
        let r = retry_at(&s.h, now + Duration::hours(3)).await;
        assert_eq!((r.applied, r.superseded), (0, 1), "{r:?}");
        reopened_with_the_close_verdict_everywhere(&s).await;
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
        let id = identity_alert(&h.sim).await;
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

    /// UAM answers 503 for good: the unified part of a close runs out of attempts and is a dead
    /// letter (the threat's part landed through the threats API). UAM comes back and the operator
    /// replays the dead letter: the unified alert is resolved once, with one note, the threat's
    /// note is not posted again, and later passes write nothing more.
    pub async fn a_dead_lettered_unified_change_replayed_by_the_operator_reaches_uam_once(table: Arc<dyn ItemTable>) {
        use s1_shared::usecase::writeback::MAX_ATTEMPTS;
        let s = uam_story(table).await;
        graphql_fault(&s.h, unavailable(), 0, 100_000).await;
        let now = OffsetDateTime::now_utc();
        let closed = status_changed(&s.alert, "closed", Some("benign"), now);
        let (_, resp) = post_generic(&s.base, "acme", "uam-gone", &closed, INBOUND_SECRET).await;
        assert_eq!(resp["writeback"].as_str(), Some("pending"), "{resp}");
        let mut at = now;
        for _ in 0..MAX_ATTEMPTS {
            at += Duration::hours(2);
            retry_at(&s.h, at).await;
        }
        assert!(pending(&s.h).await.is_empty());
        let letters = dead(&s.h).await;
        assert_eq!(letters.len(), 1, "{letters:?}");
        assert_eq!(letters[0].attempts, MAX_ATTEMPTS);
        assert_eq!(uam_state(&s.h, &s.unified).await.0, "NEW", "UAM took nothing");

        s.h.sim.control().clear_faults().await.unwrap();
        s.h.store
            .replay_dead("acme", &letters[0].id, OffsetDateTime::now_utc())
            .await
            .unwrap();
        let r = retry_at(&s.h, OffsetDateTime::now_utc()).await;
        assert_eq!(r.applied, 1, "{r:?}");
        closed_once_in_uam(&s.h, &s.unified, "FALSE_POSITIVE_BENIGN").await;
        let (_, _, notes) = s1_state(&s.h, &s.threat).await;
        assert_eq!(
            notes.iter().filter(|n| n.starts_with(CLOSED_BY)).count(),
            1,
            "the threat's note is not posted again: {notes:?}"
        );
        let status_writes = |actions: &[s1_bridge_sim::UamAction]| {
            actions
                .iter()
                .filter(|a| a.action_type == "STATUS_UPDATE" && a.success.contains(&s.unified))
                .count()
        };
        assert_eq!(status_writes(&s.h.sim.control().uam_actions().await.unwrap()), 1);
        assert!(dead(&s.h).await.is_empty() && pending(&s.h).await.is_empty());
        let writes = graphql_bodies(&s.h).await.len();
        retry_at(&s.h, OffsetDateTime::now_utc() + Duration::hours(3)).await;
        assert_eq!(graphql_bodies(&s.h).await.len(), writes, "nothing more is written");
    }

    /// The function is killed after UAM took the status, verdict and note of a close and before
    /// the writeback was finished in the store: the retry pass completes it without adding the
    /// note again, and the poller does not send our own write back.
    pub async fn a_kill_after_uam_took_the_note_before_finish_does_not_add_it_again(table: Arc<dyn ItemTable>) {
        use crate::writeback::scenarios::webhook_held_at_finish;
        let gate = crate::writeback::GateTable::new(table);
        let s = uam_story(gate.clone()).await;
        let (_held, task) = webhook_held_at_finish(&s.h, &gate, &s.alert, "uam-kill").await;
        task.abort();
        assert!(task.await.unwrap_err().is_cancelled());
        let (status, _, notes) = uam_state(&s.h, &s.unified).await;
        assert_eq!(
            (status.as_str(), notes.len()),
            ("RESOLVED", 1),
            "UAM took it: {notes:?}"
        );
        let r = retry_at(&s.h, OffsetDateTime::now_utc() + Duration::minutes(10)).await;
        assert_eq!(r.applied, 1, "{r:?}");
        closed_once_in_uam(&s.h, &s.unified, "TRUE_POSITIVE_UNDEFINED").await;
        assert!(dead(&s.h).await.is_empty() && pending(&s.h).await.is_empty());
        let m = member(&s.h, &s.alert, &MemberId::unified(&s.unified)).await;
        assert_eq!(m.written_status, Some(IncidentStatus::Resolved), "{m:?}");
    }

    /// A close's inline attempt has written it to UAM (and the threats API) and is held before
    /// its finish while a retry pass runs at `retry_after` from now; then it goes on. UAM and
    /// the threat hold the close once, nothing is left pending or dead.
    async fn uam_race(table: Arc<dyn ItemTable>, retry_after: Duration) -> (UamStory, RetryReport, u16) {
        use crate::writeback::scenarios::race_at_finish;
        let gate = crate::writeback::GateTable::new(table);
        let s = uam_story(gate.clone()).await;
        let (r, resp) = race_at_finish(&s.h, &gate, &s.alert, retry_after).await;
        closed_once_in_uam(&s.h, &s.unified, "TRUE_POSITIVE_UNDEFINED").await;
        let (status, _, notes) = s1_state(&s.h, &s.threat).await;
        assert_eq!(status, "resolved");
        assert_eq!(
            notes.iter().filter(|n| n.starts_with(CLOSED_BY)).count(),
            1,
            "{notes:?}"
        );
        assert!(dead(&s.h).await.is_empty() && pending(&s.h).await.is_empty());
        (s, r, resp.status)
    }

    /// A retry pass running while the inline attempt holds its claim leaves the change alone.
    pub async fn the_inline_unified_attempt_keeps_its_claim_against_a_retry_pass(table: Arc<dyn ItemTable>) {
        let (_, r, status) = uam_race(table, Duration::ZERO).await;
        assert_eq!((r.applied, r.dead, status), (0, 0, 202), "{r:?}");
    }

    /// The inline attempt stalls past its claim; the retry pass takes the change over and ends
    /// it; the stalled attempt, let go, adds no second note.
    pub async fn a_retry_pass_takes_over_an_expired_unified_claim_and_the_note_is_added_once(
        table: Arc<dyn ItemTable>,
    ) {
        let (_, r, status) = uam_race(table, Duration::minutes(10)).await;
        assert_eq!((r.applied, status), (1, 202), "{r:?}");
    }

    /// UAM is down while three changes to one story are accepted: a status (investigating, t1),
    /// a comment (t2) and a verdict (a comment carrying true positive, t3). Once UAM is back the
    /// retry pass lands them in that order at UAM: the status action and its note, then the
    /// comment's note, then the verdict action; each note once.
    pub async fn a_status_a_note_and_a_verdict_reach_uam_in_order(table: Arc<dyn ItemTable>) {
        let s = uam_story(table).await;
        graphql_fault(&s.h, unavailable(), 0, 100_000).await;
        let now = OffsetDateTime::now_utc();
        let changes = [
            status_changed(&s.alert, "investigating", None, now - Duration::minutes(3)),
            comment_added(&s.alert, "first look: lateral movement", now - Duration::minutes(2)),
            comment_with_verdict(&s.alert, "confirmed", Some("true_positive"), now - Duration::minutes(1)),
        ];
        for (n, body) in changes.iter().enumerate() {
            let (_, resp) = post_generic(&s.base, "acme", &format!("uam-order-{n}"), body, INBOUND_SECRET).await;
            assert_eq!(resp["writeback"].as_str(), Some("pending"), "change {n}: {resp}");
        }
        s.h.sim.control().clear_faults().await.unwrap();
        let before = graphql_bodies(&s.h).await.len();
        let r = retry_at(&s.h, now + Duration::minutes(10)).await;
        assert_eq!(r.applied, 3, "{r:?}");
        let writes: Vec<String> = graphql_requests(&s.h)
            .await
            .iter()
            .skip(before)
            .filter_map(uam_write)
            .collect();
        let first = |what: &str| {
            writes
                .iter()
                .position(|w| w.contains(what))
                .unwrap_or_else(|| panic!("no {what} among {writes:?}"))
        };
        let order = [
            first("trigger: status"),
            first("investigating by Ana"),
            first("first look"),
            first("trigger: verdict"),
        ];
        assert!(order.windows(2).all(|w| w[0] < w[1]), "out of order: {writes:?}");
        let (status, verdict, notes) = uam_state(&s.h, &s.unified).await;
        assert_eq!(status, "IN_PROGRESS");
        assert!(verdict.starts_with("TRUE_POSITIVE"), "{verdict}");
        for note in ["investigating by Ana", "first look", "confirmed"] {
            assert_eq!(
                notes.iter().filter(|n| n.contains(note)).count(),
                1,
                "{note}: {notes:?}"
            );
        }
        assert!(pending(&s.h).await.is_empty());
    }

    /// UAM unavailable (HTTP 503).
    fn unavailable() -> FaultKind {
        FaultKind::Status {
            status: 503,
            retry_after: None,
            code: None,
        }
    }

    /// A UAM write as `trigger: status`, `trigger: verdict` (by its action ids) or `note: <text>`;
    /// `None` for a read.
    fn uam_write(body: &Value) -> Option<String> {
        let query = body["query"].as_str().unwrap_or_default();
        if query.contains("addAlertNote") {
            return Some(format!(
                "note: {}",
                body["variables"]["text"].as_str().unwrap_or_default()
            ));
        }
        if !query.contains("alertTriggerActions") {
            return None;
        }
        let ids = body["variables"]["actions"].to_string();
        Some(
            [("s1-status-update", "status"), ("s1-analyst-verdict-update", "verdict")]
                .iter()
                .filter(|(prefix, _)| ids.contains(prefix))
                .map(|(_, kind)| format!("trigger: {kind}"))
                .collect::<Vec<_>>()
                .join(", "),
        )
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

    /// The GraphQL requests' bodies the simulator received, in order.
    async fn graphql_requests(h: &PollHarness) -> Vec<Value> {
        requests_to(h, GRAPHQL)
            .await
            .into_iter()
            .map(|r| r.body.unwrap_or_default())
            .collect()
    }

    /// The GraphQL documents the simulator received, in order.
    async fn graphql_bodies(h: &PollHarness) -> Vec<String> {
        graphql_requests(h).await.iter().map(Value::to_string).collect()
    }
}
