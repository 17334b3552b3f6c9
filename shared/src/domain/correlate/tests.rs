//! The correlation table: one row per rule, on threats as S1 sends them (their keys, digests and
//! times made by the same functions the poller uses), against stories as the store holds them.

use std::collections::HashMap;

use time::{Duration, OffsetDateTime};

use super::*;
use crate::domain::Grouping;
use crate::domain::{content_digest, detected_at, story_bytes, story_key};
use crate::s1::dto::{AnalystVerdict, IncidentStatus, Threat};

const DAY: i64 = 86_400;
const T0: i64 = 1_767_225_600; // 2026-01-01T00:00:00Z

fn at(secs: i64) -> OffsetDateTime {
    OffsetDateTime::UNIX_EPOCH + Duration::seconds(T0 + secs)
}

/// A threat as S1 sends it (times in seconds after [`T0`]).
#[derive(Debug, Clone, Copy)]
struct T {
    id: &'static str,
    agent: &'static str,
    sha1: &'static str,
    storyline: &'static str,
    name: &'static str,
    updated: Option<i64>,
    detected: Option<i64>,
    status: &'static str,
    verdict: &'static str,
}

/// Threat A: a file on endpoint UUID1, detected at T0, updated 10 s later, untouched.
const A: T = T {
    id: "1500000000000000001",
    agent: "UUID1",
    sha1: "ABC",
    storyline: "SL1",
    name: "x.exe",
    updated: Some(10),
    detected: Some(0),
    status: "unresolved",
    verdict: "undefined",
};

/// Threat B: the same file on the same endpoint, a minute later (so A's key).
const B: T = T {
    id: "1500000000000000002",
    updated: Some(70),
    detected: Some(60),
    ..A
};

/// Threat F: fileless (no hash) on UUID1, in storyline SL2.
const F: T = T {
    id: "1500000000000000003",
    sha1: "",
    storyline: "SL2",
    ..B
};

impl T {
    /// Updated later, nothing else changed.
    fn later(self) -> T {
        T {
            updated: Some(20),
            ..self
        }
    }

    /// Updated later, with this status and verdict.
    fn says(self, status: &'static str, verdict: &'static str) -> T {
        T {
            status,
            verdict,
            ..self.later()
        }
    }

    /// Another name: content the platform shows changed.
    fn renamed(self) -> T {
        T { name: "y.exe", ..self }
    }

    /// Without an `updatedAt`.
    fn undated(self) -> T {
        T { updated: None, ..self }
    }

    /// On endpoint `agent` with hash `sha1`.
    fn on(self, agent: &'static str, sha1: &'static str) -> T {
        T { agent, sha1, ..self }
    }

    /// Detected at `detected` (seconds after T0), updated 90 days after T0.
    fn found(self, detected: Option<i64>) -> T {
        T {
            detected,
            updated: Some(90 * DAY),
            ..self
        }
    }

    fn threat(&self) -> Threat {
        let secs = |s: Option<i64>| {
            s.map(|s| serde_json::json!(at(s).format(&time::format_description::well_known::Rfc3339).unwrap()))
        };
        serde_json::from_value(serde_json::json!({
            "id": self.id,
            "threatInfo": {
                "sha1": self.sha1, "storyline": self.storyline, "threatName": self.name,
                "updatedAt": secs(self.updated), "identifiedAt": secs(self.detected),
                "incidentStatus": self.status, "analystVerdict": self.verdict,
            },
            "agentRealtimeInfo": {"agentUuid": self.agent},
        }))
        .unwrap()
    }

    fn key(&self) -> String {
        story_key(&self.threat(), Grouping::Story)
    }

    fn member_id(&self) -> MemberId {
        MemberId::threat(self.id)
    }

    /// What the poller records of it.
    fn state(&self) -> MemberState {
        let t = self.threat();
        MemberState {
            updated_at: t.threat_info.updated_at,
            digest: content_digest(&t),
            status: t.threat_info.incident_status,
            verdict: t.threat_info.analyst_verdict,
            verdict_detail: None,
            written_status: None,
            written_verdict: None,
            publish_error: None,
            unsure: false,
        }
    }

    /// Recorded, after our writeback wrote `status` and `verdict` to S1.
    fn written(&self, status: Option<IncidentStatus>, verdict: Option<AnalystVerdict>) -> MemberState {
        MemberState {
            written_status: status,
            written_verdict: verdict,
            ..self.state()
        }
    }

    /// Recorded as refused by the platform.
    fn refused(&self) -> MemberState {
        MemberState {
            publish_error: Some("HTTP 422".into()),
            ..self.state()
        }
    }
}

/// A story of `key` whose window starts `start` seconds after T0.
fn story(key: &str, start: i64, status: StoryStatus, members: Vec<(MemberId, MemberState)>) -> StoryRecord {
    StoryRecord {
        status,
        members: members.into_iter().collect(),
        ..new_story(key, at(start), vec![])
    }
}

fn open(key: &str, members: Vec<(MemberId, MemberState)>) -> StoryRecord {
    story(key, 0, StoryStatus::Open, members)
}

/// A's key's current story, started 100 days after A's (so a later one), and its archived
/// predecessor holding `archived`.
fn rolled(archived: Vec<(MemberId, MemberState)>) -> (StoryRecord, StoryRecord) {
    let old = open(&A.key(), archived);
    let mut current = story(&A.key(), 100 * DAY, StoryStatus::Open, vec![]);
    current.previous = vec![old.id.clone()];
    (current, old)
}

/// A story of B's key holding as many members of B's size as fit, and no more.
fn full_for_b() -> StoryRecord {
    let mut s = open(&B.key(), vec![]);
    let m = B.state();
    let empty = story_bytes(&s);
    let (mut sum, mut n) = (0usize, 0u64);
    loop {
        let id = MemberId::threat((1_600_000_000_000_000_000u64 + n).to_string());
        let cost = member_bytes(id.as_str(), &m);
        // In the item, n members cost their member_bytes less one comma.
        if empty + sum + cost - 1 > STORY_MAX_BYTES {
            break;
        }
        s.members.insert(id, m.clone());
        sum += cost;
        n += 1;
    }
    s
}

/// How much room the sighting's current story has.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Room {
    /// What the story's members really take.
    Real,
    /// Exactly the sighting's own cost left.
    Exact,
    /// One byte less than the sighting costs.
    OneShort,
}

struct Row {
    name: &'static str,
    /// Current stories (under their keys) and archived ones (under their ids).
    current: Vec<StoryRecord>,
    archived: Vec<StoryRecord>,
    room: Room,
    seen: T,
    want: Decision,
}

fn row(name: &'static str, current: Vec<StoryRecord>, seen: T, want: Decision) -> Row {
    Row {
        name,
        current,
        archived: vec![],
        room: Room::Real,
        seen,
        want,
    }
}

fn decide(r: &Row) -> Decision {
    let t = r.seen.threat();
    let (id, key, state) = (r.seen.member_id(), story_key(&t, Grouping::Story), r.seen.state());
    let mut held: HashMap<String, (StoryRecord, usize)> = HashMap::new();
    for s in &r.current {
        held.insert(s.key.clone(), (s.clone(), story_bytes(s)));
    }
    for s in &r.archived {
        held.insert(s.id.clone(), (s.clone(), story_bytes(s)));
    }
    if let Some((_, bytes)) = held.get_mut(&key) {
        let cost = member_bytes(id.as_str(), &state);
        match r.room {
            Room::Real => {}
            Room::Exact => *bytes = STORY_MAX_BYTES - cost,
            Room::OneShort => *bytes = STORY_MAX_BYTES - cost + 1,
        }
    }
    let seen = Sighting {
        id: &id,
        key: &key,
        state: &state,
        detected_at: detected_at(&t).or(t.threat_info.updated_at),
    };
    correlate(&seen, |name| {
        held.get(name).map(|(story, bytes)| Held { story, bytes: *bytes })
    })
}

#[test]
fn correlation_table() {
    use AnalystVerdict::{FalsePositive, TruePositive};
    use Decision::*;
    use IncidentStatus::Resolved;
    const JOIN: Decision = Join { reopens: false };
    let (a, b) = (A.member_id(), B.member_id());
    let a_key = A.key();
    let changed = |had_letter| Changed {
        story: a_key.clone(),
        had_letter,
    };
    let echo = Echo { story: a_key.clone() };
    let with_a = |m: MemberState| vec![open(&a_key, vec![(a.clone(), m)])];
    let closed = vec![story(&a_key, 0, StoryStatus::Closed, vec![(a.clone(), A.state())])];
    let (current, old) = rolled(vec![(a.clone(), A.written(Some(Resolved), Some(FalsePositive)))]);
    let archived = |name, seen, want| Row {
        archived: vec![old.clone()],
        ..row(name, vec![current.clone()], seen, want)
    };
    let room = |room, r: Row| Row { room, ..r };
    let fileless = || vec![open(&F.key(), vec![(b.clone(), B.state())])];
    let rows = vec![
        // New threats.
        row("a first threat opens its key's first story", vec![], A, Open),
        row("a new threat joins its key's open story", with_a(A.state()), B, JOIN),
        row(
            "joining a closed story reopens its alert",
            closed.clone(),
            B,
            Join { reopens: true },
        ),
        row(
            "the same file in other case is the same key",
            with_a(A.state()),
            B.on("uuid1", "abc"),
            JOIN,
        ),
        row(
            "another endpoint with the same file: its own story",
            with_a(A.state()),
            B.on("UUID2", "ABC"),
            Open,
        ),
        // Known threats: unchanged.
        row("the same updatedAt again is unchanged", with_a(A.state()), A, Unchanged),
        row(
            "the same updatedAt with other content (a repeated page)",
            with_a(A.state()),
            A.renamed(),
            Unchanged,
        ),
        row(
            "only updatedAt moved (a note): unchanged",
            with_a(A.state()),
            A.later(),
            Unchanged,
        ),
        row(
            "no updatedAt and nothing else changed: unchanged",
            with_a(A.undated().state()),
            A.undated(),
            Unchanged,
        ),
        // Known threats: a newer version's outcome unknown.
        row(
            "only updatedAt moved, but a newer version may have reached the platform: changed",
            with_a(MemberState {
                unsure: true,
                ..A.state()
            }),
            A.later(),
            changed(false),
        ),
        row(
            "the version recorded, seen again, stays unchanged even when unsure",
            with_a(MemberState {
                unsure: true,
                ..A.state()
            }),
            A,
            Unchanged,
        ),
        row(
            "an unsure member back at what we wrote is told, not taken for our echo",
            with_a(MemberState {
                unsure: true,
                ..A.written(Some(Resolved), None)
            }),
            A.says("resolved", "undefined"),
            changed(false),
        ),
        // Known threats: changed.
        row(
            "no updatedAt and new content: changed",
            with_a(A.undated().state()),
            A.undated().renamed(),
            changed(false),
        ),
        row(
            "new content: changed",
            with_a(A.state()),
            A.later().renamed(),
            changed(false),
        ),
        row(
            "a status set in the console: changed",
            with_a(A.state()),
            A.says("resolved", "undefined"),
            changed(false),
        ),
        row(
            "a verdict set in the console",
            with_a(A.state()),
            A.says("unresolved", "true_positive"),
            changed(false),
        ),
        row(
            "the same status and verdict without a write of ours",
            with_a(A.state()),
            A.says("resolved", "false_positive"),
            changed(false),
        ),
        row(
            "a change of a refused version carries its dead letter",
            with_a(A.refused()),
            A.says("in_progress", "undefined"),
            changed(true),
        ),
        // Our own writeback coming back, or the console after it.
        row(
            "S1 holds the status and verdict we wrote: echo",
            with_a(A.written(Some(Resolved), Some(FalsePositive))),
            A.says("resolved", "false_positive"),
            echo.clone(),
        ),
        row(
            "we wrote the status only, the verdict is as it was: echo",
            with_a(A.written(Some(Resolved), None)),
            A.says("resolved", "undefined"),
            echo.clone(),
        ),
        row(
            "we wrote the verdict only, the status is as it was: echo",
            with_a(A.written(None, Some(TruePositive))),
            A.says("unresolved", "true_positive"),
            echo,
        ),
        row(
            "what we wrote, with new content: changed",
            with_a(A.written(Some(Resolved), Some(FalsePositive))),
            A.says("resolved", "false_positive").renamed(),
            changed(false),
        ),
        row(
            "the console changed the status after our write",
            with_a(A.written(Some(Resolved), Some(FalsePositive))),
            A.says("in_progress", "false_positive"),
            changed(false),
        ),
        row(
            "the console changed the verdict after our status write",
            with_a(A.written(Some(Resolved), None)),
            A.says("resolved", "true_positive"),
            changed(false),
        ),
        // The 90-day window.
        row(
            "detected 90 days after the window started: roll",
            with_a(A.state()),
            B.found(Some(90 * DAY)),
            Roll(RollReason::Window),
        ),
        row(
            "detected a second before the 90 days: join",
            with_a(A.state()),
            B.found(Some(90 * DAY - 1)),
            JOIN,
        ),
        row(
            "no detection time: its updatedAt places it",
            with_a(A.state()),
            B.found(None),
            Roll(RollReason::Window),
        ),
        row(
            "a closed story past its window rolls, not reopens",
            closed,
            B.found(Some(91 * DAY)),
            Roll(RollReason::Window),
        ),
        // The byte budget.
        room(
            Room::Exact,
            row("exactly the room the threat takes: join", with_a(A.state()), B, JOIN),
        ),
        room(
            Room::OneShort,
            row(
                "one byte short of the room it takes: roll",
                with_a(A.state()),
                B,
                Roll(RollReason::Full),
            ),
        ),
        row(
            "a story filled with real members: roll",
            vec![full_for_b()],
            B,
            Roll(RollReason::Full),
        ),
        room(
            Room::OneShort,
            row(
                "full and past its window: the window is named",
                with_a(A.state()),
                B.found(Some(90 * DAY)),
                Roll(RollReason::Window),
            ),
        ),
        // Members of archived stories.
        archived(
            "a member of an archived story changed: updated there",
            A.says("in_progress", "false_positive"),
            Changed {
                story: old.id.clone(),
                had_letter: false,
            },
        ),
        archived(
            "our echo in an archived story",
            A.says("resolved", "false_positive"),
            Echo { story: old.id.clone() },
        ),
        archived("a member of an archived story unchanged", A, Unchanged),
        archived(
            "a new threat after a roll joins the current story",
            B.found(Some(100 * DAY + 1)),
            JOIN,
        ),
        row(
            "an archived story not held is not searched: taken as new",
            vec![current.clone()],
            A.later(),
            JOIN,
        ),
        Row {
            archived: vec![old.clone()],
            ..row(
                "a story the current one does not list is not searched",
                vec![story(&a_key, 100 * DAY, StoryStatus::Open, vec![])],
                A.later(),
                JOIN,
            )
        },
        // Fileless threats group by storyline.
        row(
            "a fileless threat joins the story of its storyline",
            fileless(),
            F,
            JOIN,
        ),
        row(
            "a fileless threat of another storyline: its own story",
            fileless(),
            T { storyline: "SL3", ..F },
            Open,
        ),
        row(
            "a fileless threat does not join its endpoint's file story",
            with_a(A.state()),
            F,
            Open,
        ),
        row(
            "a file threat does not join the story of its storyline",
            fileless(),
            T { storyline: "SL2", ..A },
            Open,
        ),
    ];
    assert_eq!(F.key(), "uuid1:storyline:sl2");
    let full = full_for_b();
    assert!(full.members.len() > 1000, "{} members", full.members.len());
    assert!(story_bytes(&full) + member_bytes(B.id, &B.state()) > STORY_MAX_BYTES);
    let mut failed = Vec::new();
    for r in &rows {
        let got = decide(r);
        if got != r.want {
            failed.push(format!("{}: got {got:?}, want {:?}", r.name, r.want));
        }
    }
    assert!(
        failed.is_empty(),
        "{} of {} rows:\n{}",
        failed.len(),
        rows.len(),
        failed.join("\n")
    );
}

#[test]
fn new_stories_and_resolution() {
    let key = A.key();
    let first = new_story(&key, at(0), vec![]);
    assert_eq!(
        (first.id.as_str(), first.status),
        ("uuid1:abc@1767225600", StoryStatus::Open)
    );
    let next = new_story(&key, at(0), vec![first.id.clone()]);
    assert_eq!(
        next.id, "uuid1:abc@1767225600.1",
        "a roll in the same second gets an id of its own"
    );

    let resolved = T {
        status: "resolved",
        ..A
    };
    let mut s = open(&key, vec![(A.member_id(), A.state())]);
    assert!(
        all_resolved(&s, &A.member_id(), &resolved.state()),
        "its only member, now resolved"
    );
    assert!(!all_resolved(&s, &A.member_id(), &A.state()));
    s.members.insert(B.member_id(), B.state());
    assert!(
        !all_resolved(&s, &A.member_id(), &resolved.state()),
        "B is not resolved"
    );
    s.members.insert(
        B.member_id(),
        T {
            status: "resolved",
            ..B
        }
        .state(),
    );
    assert!(all_resolved(&s, &A.member_id(), &resolved.state()));
}
