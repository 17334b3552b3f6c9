//! What a poll does with one threat (or STAR alert) it fetched, decided against the stories it
//! already holds: nothing (unchanged), remember it quietly (our own writeback's echo), tell the
//! platform it changed, or tell the platform about a new one, which opens the key's first story,
//! joins its current story (reopening it when closed) or rolls it over to a new one (past its
//! 90-day window or its byte budget). Pure: no store, no clock, no platform; the poller applies
//! the decision.
//!
//! The rules, in order, for a threat already a member of a story (the key's current story or one
//! of its archived ones):
//! 1. the same `updatedAt` as recorded: **unchanged** (a page repeated after a crash);
//! 2. a newer version was sent and its outcome is unknown (the member is
//!    [`unsure`](crate::domain::MemberState::unsure)): **changed**, whatever this version reads, so
//!    the platform ends on S1's latest state;
//! 3. neither what the platform shows ([`content_digest`](super::content_digest)) nor the status
//!    and verdict changed (only `updatedAt` moved, a note say): **unchanged**;
//! 4. the content is the same, we wrote a status or verdict to S1, and S1 now holds exactly what
//!    we wrote (a field we did not write as it was): **echo**, our own writeback coming back;
//! 5. anything else (new content, or a status or verdict set in the console, also after one of
//!    our writes): **changed**.
//!
//! A member read from the other listing than the one that recorded it (a threat and the UAM
//! alert that is the same detection: [`UNIFIED_DIGEST`](super::UNIFIED_DIGEST) tells them
//! apart) is compared on status and verdict only, and only when it is the later version: the
//! listings' fields and clocks differ.
//!
//! For a threat no story holds yet, against its key's current story:
//! 1. there is none: **open** the key's first story;
//! 2. the threat was detected (else last updated) [`STORY_WINDOW`] or more after the story's
//!    window started: **roll** (window);
//! 3. the threat would take the story past [`STORY_MAX_BYTES`]: **roll** (full);
//! 4. else **join** it, reopening it when its alert is closed.

use std::collections::BTreeMap;

use time::OffsetDateTime;

use super::{MemberId, STORY_MAX_BYTES, STORY_WINDOW, member_bytes, story_id};
use crate::domain::{MemberState, StoryRecord, StoryStatus};
use crate::s1::dto::IncidentStatus;

/// A threat (or STAR alert) as fetched, to be correlated.
#[derive(Debug, Clone, Copy)]
pub struct Sighting<'a> {
    pub id: &'a MemberId,
    /// Its grouping key ([`story_key`](super::story_key)).
    pub key: &'a str,
    /// What S1 says of it now (nothing written by us: `written_*` are empty).
    pub state: &'a MemberState,
    /// When it was detected, else its stamp (`updatedAt`): placed against a story's window.
    pub detected_at: Option<OffsetDateTime>,
}

/// A story the poll holds, by item name (its key when current, its id once archived).
#[derive(Debug, Clone, Copy)]
pub struct Held<'a> {
    pub story: &'a StoryRecord,
    /// What it costs against [`STORY_MAX_BYTES`] so far ([`story_bytes`](super::story_bytes)
    /// when read, plus [`member_bytes`] per member joined since).
    pub bytes: usize,
}

/// Why a story rolled over to a new one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RollReason {
    /// The threat falls [`STORY_WINDOW`] or more after the story's window started.
    Window,
    /// One more member would take the story past [`STORY_MAX_BYTES`].
    Full,
}

/// What to do with one sighting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Nothing the platform shows changed: nothing is sent or written.
    Unchanged,
    /// Our own writeback coming back: the member's new state is recorded in `story` (an item
    /// name), nobody is told.
    Echo { story: String },
    /// A member of `story` (an item name: the key's current story, or an archived one) changed
    /// in S1: an update goes to the platform. `had_letter`: its last version was refused and is
    /// kept as a publish dead letter (retired once this one gets through).
    Changed { story: String, had_letter: bool },
    /// New, and its key has no story yet: it opens one (a new alert).
    Open,
    /// New: it joins its key's current story (`reopens` when that story's alert is closed).
    Join { reopens: bool },
    /// New: the key's current story is archived and the threat opens the next one (a new alert).
    Roll(RollReason),
}

/// Decides what a sighting is, given the stories the poll holds (`stories` finds one by item
/// name: the current one under its key, archived ones under their ids).
pub fn correlate<'s>(seen: &Sighting<'_>, stories: impl Fn(&str) -> Option<Held<'s>>) -> Decision {
    let current = stories(seen.key);
    let holds = |h: &Held<'_>| h.story.members.contains_key(seen.id.as_str());
    let home = match current {
        Some(h) if holds(&h) => Some((seen.key.to_owned(), h)),
        _ => current.and_then(|c| {
            c.story
                .previous
                .iter()
                .find_map(|id| stories(id).filter(holds).map(|h| (id.clone(), h)))
        }),
    };
    if let Some((story, h)) = home {
        let known = &h.story.members[seen.id.as_str()];
        return known_member(story, known, seen.state);
    }
    let Some(current) = current else {
        return Decision::Open;
    };
    let expired = seen
        .detected_at
        .is_some_and(|d| d >= current.story.window_start + STORY_WINDOW);
    if expired {
        Decision::Roll(RollReason::Window)
    } else if current.bytes + member_bytes(seen.id.as_str(), seen.state) > STORY_MAX_BYTES {
        Decision::Roll(RollReason::Full)
    } else {
        Decision::Join {
            reopens: current.story.status == StoryStatus::Closed,
        }
    }
}

/// A member seen again: unchanged, our echo, or changed.
fn known_member(story: String, known: &MemberState, fresh: &MemberState) -> Decision {
    if known.updated_at.is_some() && known.updated_at == fresh.updated_at {
        return Decision::Unchanged;
    }
    if known.unsure {
        return Decision::Changed {
            story,
            had_letter: known.publish_error.is_some(),
        };
    }
    let other_listing = super::is_unified_digest(&known.digest) != super::is_unified_digest(&fresh.digest);
    // Two positives (or two negatives) of different kinds read as one legacy verdict; the
    // unified listing's own word tells them apart (known only when both reads carry it).
    let detail_changed =
        !other_listing && matches!((&known.verdict_detail, &fresh.verdict_detail), (Some(k), Some(f)) if k != f);
    let status_changed = (known.status, known.verdict) != (fresh.status, fresh.verdict) || detail_changed;
    if other_listing {
        // The same detection read from the other listing (a threat and its UAM alert): their
        // clocks and fields differ, so only a later version with another status or verdict is
        // news; anything else would bounce the platform between the two listings.
        let later =
            matches!((known.updated_at, fresh.updated_at), (Some(k), Some(f)) if f > k) || known.updated_at.is_none();
        if !later || !status_changed {
            return Decision::Unchanged;
        }
    }
    let content_changed = !other_listing && known.digest != fresh.digest;
    if !content_changed && !status_changed {
        return Decision::Unchanged;
    }
    let ours = known.written_status.is_some() || known.written_verdict.is_some();
    let expected = (
        known.written_status.or(known.status),
        known.written_verdict.or(known.verdict),
    );
    // A change of the verdict's kind alone is ours only when we wrote a verdict (our UAM write
    // names a kind); after a status write it is the analyst's.
    let ours_kind = !detail_changed || known.written_verdict.is_some();
    if !content_changed && ours && ours_kind && (fresh.status, fresh.verdict) == expected {
        return Decision::Echo { story };
    }
    Decision::Changed {
        story,
        had_letter: known.publish_error.is_some(),
    }
}

/// A key's new story, its window starting at `window_start`; `previous` are its earlier ones.
pub fn new_story(key: &str, window_start: OffsetDateTime, previous: Vec<String>) -> StoryRecord {
    StoryRecord {
        key: key.to_owned(),
        id: story_id(key, window_start, &previous),
        window_start,
        status: StoryStatus::Open,
        platform: None,
        platform_ref: None,
        members: BTreeMap::new(),
        previous,
    }
}

/// True when every threat of `story` is resolved in S1 once member `id` is in `state`.
pub fn all_resolved(story: &StoryRecord, id: &MemberId, state: &MemberState) -> bool {
    let resolved = |m: &MemberState| m.status == Some(IncidentStatus::Resolved);
    resolved(state) && story.members.iter().all(|(m_id, m)| m_id == id || resolved(m))
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod verdict_kind {
    //! A unified alert's verdict changing between two kinds that read as one legacy verdict.

    use super::*;
    use crate::s1::dto::{AnalystVerdict, IncidentStatus};

    fn uam(updated: i64, verdict: AnalystVerdict, kind: &str) -> MemberState {
        MemberState {
            updated_at: Some(OffsetDateTime::UNIX_EPOCH + time::Duration::seconds(updated)),
            digest: format!("{}same", super::super::UNIFIED_DIGEST),
            status: Some(IncidentStatus::Resolved),
            verdict: Some(verdict),
            verdict_detail: Some(kind.to_owned()),
            written_status: None,
            written_verdict: None,
            publish_error: None,
            unsure: false,
        }
    }

    fn decide(known: &MemberState, fresh: &MemberState) -> &'static str {
        match known_member("s".into(), known, fresh) {
            Decision::Unchanged => "unchanged",
            Decision::Echo { .. } => "echo",
            Decision::Changed { .. } => "changed",
            _ => "other",
        }
    }

    #[test]
    fn an_analyst_switching_between_two_positives_is_news() {
        let known = uam(1, AnalystVerdict::TruePositive, "TRUE_POSITIVE_MALICIOUS");
        let fresh = uam(2, AnalystVerdict::TruePositive, "TRUE_POSITIVE_PUA_ADWARE");
        assert_eq!(decide(&known, &fresh), "changed");
        let fresh = uam(2, AnalystVerdict::TruePositive, "TRUE_POSITIVE_MALICIOUS");
        assert_eq!(decide(&known, &fresh), "unchanged", "a later read of the same kind");
    }

    #[test]
    fn our_verdict_of_another_kind_coming_back_is_an_echo() {
        let known = MemberState {
            written_verdict: Some(AnalystVerdict::TruePositive),
            ..uam(1, AnalystVerdict::TruePositive, "TRUE_POSITIVE_MALICIOUS")
        };
        let fresh = uam(2, AnalystVerdict::TruePositive, "TRUE_POSITIVE_PUA_ADWARE");
        assert_eq!(decide(&known, &fresh), "echo");
    }

    #[test]
    fn a_kind_switch_after_our_status_write_is_the_analysts() {
        let known = MemberState {
            written_status: Some(IncidentStatus::Resolved),
            ..uam(1, AnalystVerdict::FalsePositive, "FALSE_POSITIVE_BENIGN")
        };
        let fresh = uam(2, AnalystVerdict::FalsePositive, "FALSE_POSITIVE_SYSTEM_ERROR");
        assert_eq!(decide(&known, &fresh), "changed");
    }

    #[test]
    fn a_member_stored_without_the_kind_or_read_from_the_threats_listing_is_not_news() {
        let old = MemberState {
            verdict_detail: None,
            ..uam(1, AnalystVerdict::TruePositive, "")
        };
        let fresh = uam(2, AnalystVerdict::TruePositive, "TRUE_POSITIVE_PUA_ADWARE");
        assert_eq!(
            decide(&old, &fresh),
            "unchanged",
            "no update for every member stored before the kind was kept"
        );
        let threat = MemberState {
            digest: "threat-digest".into(),
            verdict_detail: None,
            ..uam(3, AnalystVerdict::TruePositive, "")
        };
        assert_eq!(
            decide(&fresh, &threat),
            "unchanged",
            "the threat listing has no kind to compare"
        );
    }
}
