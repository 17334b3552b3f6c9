//! The text S1 gets: the note a change carries, and free text cut to what S1 takes.

use super::{MAX_FIELD_CHARS, MAX_NOTE_CHARS};
use crate::platform::inbound::{ChangeAction, StatusChange};

const TRUNCATED: &str = "… [truncated]";

/// `text` cut to at most `max` characters, marked when cut.
pub(super) fn truncate(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_owned();
    }
    let keep = max.saturating_sub(TRUNCATED.chars().count());
    let mut out: String = text.chars().take(keep).collect();
    out.push_str(TRUNCATED);
    out
}

/// The change with its free text cut to what S1 takes (the analysis to a note's length, close
/// reason and actor shorter), so a huge comment neither fails S1 nor bloats the pending item.
pub(super) fn bounded(mut change: StatusChange) -> StatusChange {
    change.analysis = change.analysis.map(|a| truncate(&a, MAX_NOTE_CHARS));
    change.actor = change.actor.map(|a| truncate(&a, MAX_FIELD_CHARS));
    if let ChangeAction::Status { close_reason, .. } = &mut change.action {
        *close_reason = close_reason.as_deref().map(|r| truncate(r, MAX_FIELD_CHARS));
    }
    change
}

/// The note S1 gets: platform, state, actor, close reason and analysis, at most
/// [`MAX_NOTE_CHARS`] characters.
pub fn note_text(change: &StatusChange) -> String {
    truncate(&full_note_text(change), MAX_NOTE_CHARS)
}

fn full_note_text(change: &StatusChange) -> String {
    let actor = change.actor.as_deref().unwrap_or("an automation");
    let head = match &change.action {
        ChangeAction::Status {
            state, close_reason, ..
        } => {
            let reason = close_reason.as_deref().map(|r| format!(": {r}")).unwrap_or_default();
            format!("[{}] {} by {actor}{reason}", change.platform, state.as_str())
        }
        ChangeAction::Note { .. } => format!("[{}] comment by {actor}", change.platform),
    };
    match change.analysis.as_deref().filter(|a| !a.trim().is_empty()) {
        Some(a) => format!("{head} — {a}"),
        None => head,
    }
}

/// The text a note on a superseded change carries.
pub(super) fn superseded_note(note: &str) -> String {
    const SUFFIX: &str = " (not applied to the status: a later change to this alert reached S1 first)";
    let room = MAX_NOTE_CHARS - SUFFIX.chars().count();
    format!("{}{SUFFIX}", truncate(note, room))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::platform::PlatformKind;
    use crate::platform::inbound::{AlertRef, PlatformState};
    use time::OffsetDateTime;

    #[test]
    fn note_carries_platform_state_actor_reason_and_analysis() {
        let c = StatusChange {
            event_id: "e".into(),
            platform: PlatformKind::Generic,
            alert: AlertRef::Key("k".into()),
            action: ChangeAction::Status {
                state: PlatformState::Closed,
                close_reason: Some("false_positive".into()),
                verdict: None,
            },
            analysis: Some("signed installer from IT".into()),
            actor: Some("Ana <ana@example.com>".into()),
            at: OffsetDateTime::UNIX_EPOCH,
        };
        assert_eq!(
            note_text(&c),
            "[generic] closed by Ana <ana@example.com>: false_positive — signed installer from IT"
        );
    }

    #[test]
    fn notes_are_cut_to_what_s1_takes() {
        assert_eq!(truncate("short", 10), "short");
        let long = "ü".repeat(MAX_NOTE_CHARS + 5);
        let cut = truncate(&long, MAX_NOTE_CHARS);
        assert_eq!(cut.chars().count(), MAX_NOTE_CHARS);
        assert!(cut.ends_with("[truncated]"));
        assert_eq!(superseded_note(&long).chars().count(), MAX_NOTE_CHARS);
        assert!(superseded_note("n").starts_with("n (not applied"));
    }
}
