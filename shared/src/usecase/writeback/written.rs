//! What S1 holds because of us, recorded on the story's members *before* each status or verdict
//! call is sent, so the poller recognises our own change coming back whatever happens after it:
//! a failed or held note call, a kill, a budget run out, an answer lost on the way back. A
//! call S1 surely did not take (its answer said so) has its record taken back.

use crate::domain::MemberId;
use crate::domain::{MemberState, StoryRecord};
use crate::s1::dto::{AnalystVerdict, IncidentStatus};
use crate::store::Versioned;

use super::apply::Work;
use super::outcome::{ApplyError, store_error};

/// Tries at writing the story against other writers (the poller) before the step is retried.
const STORY_TRIES: usize = 5;

/// A member's fields the record touches, as they were before it and as it left them.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Fields {
    status: Option<IncidentStatus>,
    verdict: Option<AnalystVerdict>,
    written_status: Option<IncidentStatus>,
    written_verdict: Option<AnalystVerdict>,
}

impl Fields {
    fn of(m: &MemberState) -> Self {
        Self {
            status: m.status,
            verdict: m.verdict,
            written_status: m.written_status,
            written_verdict: m.written_verdict,
        }
    }

    fn put(self, m: &mut MemberState) {
        m.status = self.status;
        m.verdict = self.verdict;
        m.written_status = self.written_status;
        m.written_verdict = self.written_verdict;
    }
}

/// A record made before one S1 call, to take back if S1 surely did not take the call.
pub(super) struct Recorded {
    members: Vec<(MemberId, Fields, Fields)>,
}

/// The member as S1 holds it once a write of `status` / `verdict` (each when given) lands.
///
/// What an earlier write of ours left there and the poller has not seen yet is what S1 holds
/// if this write does not land (a write S1 refused is taken back, so it is one that landed or
/// whose outcome we never heard): it becomes what S1 was last known to hold, so the poller,
/// seeing either, takes it for our own.
fn stamped(m: &MemberState, status: Option<IncidentStatus>, verdict: Option<AnalystVerdict>) -> Fields {
    let mut f = Fields::of(m);
    if let Some(s) = status {
        if let Some(earlier) = f.written_status.filter(|w| *w != s) {
            f.status = Some(earlier);
        }
        f.written_status = Some(s);
    }
    if let Some(v) = verdict {
        if let Some(earlier) = f.written_verdict.filter(|w| *w != v) {
            f.verdict = Some(earlier);
        }
        f.written_verdict = Some(v);
    }
    f
}

impl Work<'_> {
    /// Records on `story`'s `members` (those S1 is about to be asked to change) that S1 is
    /// being given `status` / `verdict`, before the call is sent. `story` is left as written.
    pub(super) async fn record_written(
        &self,
        story: &mut Versioned<StoryRecord>,
        members: &[MemberId],
        status: Option<IncidentStatus>,
        verdict: Option<AnalystVerdict>,
    ) -> Result<Recorded, ApplyError> {
        let mut recorded = Recorded { members: Vec::new() };
        self.update_story(story, |s| {
            recorded.members.clear();
            for id in members {
                if let Some(m) = s.members.get_mut(id) {
                    let (before, after) = (Fields::of(m), stamped(m, status, verdict));
                    after.put(m);
                    recorded.members.push((id.clone(), before, after));
                }
            }
        })
        .await?;
        Ok(recorded)
    }

    /// Takes `recorded` back: S1 surely did not take the call. A member another writer changed
    /// since is left as it is. Best effort: when the store fails too, the record stays (at worst
    /// a later console change to the same state is taken for ours).
    pub(super) async fn take_back(&self, story: &mut Versioned<StoryRecord>, recorded: &Recorded) {
        let undo = self
            .update_story(story, |s| {
                for (id, before, after) in &recorded.members {
                    if let Some(m) = s.members.get_mut(id).filter(|m| Fields::of(m) == *after) {
                        before.put(m);
                    }
                }
            })
            .await;
        if let Err(e) = undo {
            tracing::warn!(tenant = %self.tenant.id, id = %self.pending.id, error = ?e, "could not take back what the writeback recorded; it stays");
        }
    }

    /// Applies `change` to the story and writes it, only over the version it was read at;
    /// another writer's version is read and `change` applied to it again.
    async fn update_story(
        &self,
        story: &mut Versioned<StoryRecord>,
        mut change: impl FnMut(&mut StoryRecord),
    ) -> Result<(), ApplyError> {
        let (tenant, name, archived) = (
            &self.tenant.id,
            &self.pending.change.story,
            self.pending.change.archived,
        );
        for _ in 0..STORY_TRIES {
            let mut next = story.value.clone();
            change(&mut next);
            if next == story.value {
                return Ok(());
            }
            let conflicts = self
                .deps
                .store
                .put_stories(tenant, &[(&next, story.version, archived)])
                .await
                .map_err(store_error)?;
            if conflicts.is_empty() {
                *story = Versioned {
                    value: next,
                    version: story.version + 1,
                };
                return Ok(());
            }
            *story = self
                .deps
                .store
                .get_story(tenant, name)
                .await
                .map_err(store_error)?
                .ok_or_else(|| ApplyError::Fatal(format!("story {name} no longer exists")))?;
        }
        Err(ApplyError::Retry(
            "the story kept changing while the writeback recorded what it sends to S1".into(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use IncidentStatus::{InProgress, Resolved, Unresolved};

    fn member(status: IncidentStatus, written: Option<IncidentStatus>) -> MemberState {
        MemberState {
            updated_at: None,
            digest: "d".into(),
            status: Some(status),
            verdict: None,
            verdict_detail: None,
            written_status: written,
            written_verdict: None,
            publish_error: None,
            unsure: false,
        }
    }

    #[test]
    fn a_write_the_poller_has_not_seen_becomes_what_s1_last_held() {
        // Nothing of ours pending: only the new write is recorded.
        let f = stamped(&member(Unresolved, None), Some(InProgress), None);
        assert_eq!((f.status, f.written_status), (Some(Unresolved), Some(InProgress)));
        // Our earlier `resolved`, not seen by the poller yet: S1 holds it or the new one.
        let f = stamped(&member(Unresolved, Some(Resolved)), Some(InProgress), None);
        assert_eq!((f.status, f.written_status), (Some(Resolved), Some(InProgress)));
        // The same write again (a retry): nothing moves.
        let f = stamped(&member(Unresolved, Some(InProgress)), Some(InProgress), None);
        assert_eq!((f.status, f.written_status), (Some(Unresolved), Some(InProgress)));
        // A verdict-only write leaves the status alone.
        let f = stamped(
            &member(Unresolved, Some(Resolved)),
            None,
            Some(AnalystVerdict::TruePositive),
        );
        assert_eq!(
            (f.status, f.written_status, f.written_verdict),
            (Some(Unresolved), Some(Resolved), Some(AnalystVerdict::TruePositive))
        );
    }
}
