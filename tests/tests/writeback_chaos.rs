//! The writeback under chaos (issue 22), seeded: signed status changes and comments (some with
//! verdicts) for a few dozen stories, delivered out of order, several at once for one story, some
//! twice under one id; S1 answering its writeback endpoints with 429, 5xx, resets, slow and cut
//! answers; the runner killed at random moments (its webhook answers and retry pass aborted,
//! also while S1 holds a call) and restarted on the same store, the platform delivering again
//! what got no answer; the console changing other threats between rounds; a poll running
//! alongside. Then, faults cleared, retry passes until nothing is pending, and a poll.
//!
//! Checked: every change answered 202 (or, delivered again, 200 "already accepted") reached S1
//! exactly once (its note once on every threat of its story); every story ends on the newest
//! accepted status and the newest accepted verdict (per field, by platform time; a superseded
//! change sets neither); nothing
//! refused (409) reached S1; no dead letter but superseded; no `threat.updated` for a threat
//! only the platform changed (our own writes are never sent back), while every console change
//! is.
//!
//! The same run for unified alerts ([`Source::Unified`]): every story also holds an Identity
//! alert from UAM (a `uam:<id>` member), written through the simulator's GraphQL endpoint
//! (`alertTriggerActions`, `addAlertNote`); UAM's faults besides the HTTP ones: GraphQL errors
//! with HTTP 200 (`SURFACE_TOO_MANY_REQUESTS` among them), answers cut after UAM applied the
//! write, per-alert skips (`SYNC_ISSUE`) and transient failures, and action ids the console
//! stops taking (re-discovered). Checked besides: every unified alert ends on the newest
//! accepted status and the UAM verdict that change names, its notes once each. The threats
//! run draws exactly as it did before the unified one existed, so its seeds replay as before.
//!
//! One seed runs in the test command (`WRITEBACK_CHAOS_SEEDS`, comma-separated, runs others one
//! after another, e.g. `WRITEBACK_CHAOS_SEEDS=1,2,3,4,5,6,7,8,9,10`). A failure names its seed.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration as StdDuration, Instant};

use integration_tests::poll::PollHarness;
use integration_tests::writeback::{INBOUND_SECRET, deps, s1_state, setup, signed_headers};
use integration_tests::writeback_uam::{GRAPHQL, add_member, set_outcome, uam_state};
use s1_bridge_sim::{ActionOutcome, DetectionSource, FaultKind, FaultRule, NewUnifiedAlerts};
use s1_shared::domain::MemberId;
use s1_shared::s1::dto::format_time;
use s1_shared::store::{EmbeddedTable, ItemTable, Source};
use s1_shared::usecase::writeback::{SUPERSEDED_VERDICT_KEPT, WebhookResponse, handle_webhook, retry_pending};
use serde_json::{Value, json};
use time::{Duration, OffsetDateTime};

const ROUNDS: usize = 5;
/// Stories the platform changes, and stories only the console changes.
const PLATFORM_STORIES: usize = 24;
const CONSOLE_STORIES: usize = 8;
/// Deliveries in flight at once.
const WAVE: usize = 6;

/// SplitMix64: small, seeded, the same on every machine.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn chance(&mut self, percent: usize) -> bool {
        self.below(100) < percent
    }
    fn pick<T: Copy>(&mut self, xs: &[T]) -> T {
        xs[self.below(xs.len())]
    }
    fn shuffle<T>(&mut self, xs: &mut [T]) {
        for i in (1..xs.len()).rev() {
            xs.swap(i, self.below(i + 1));
        }
    }
}

/// A platform state the platform may send: its close reason, the S1 status and verdict it
/// means, and the UAM verdict (the close-reason table's UAM column).
type State = (
    &'static str,
    Option<&'static str>,
    &'static str,
    Option<&'static str>,
    Option<&'static str>,
);
const STATES: [State; 6] = [
    ("investigating", None, "in_progress", None, None),
    ("acknowledged", None, "in_progress", None, None),
    ("reopened", None, "unresolved", None, None),
    (
        "resolved",
        Some("benign"),
        "resolved",
        Some("false_positive"),
        Some("FALSE_POSITIVE_BENIGN"),
    ),
    (
        "closed",
        Some("true_positive"),
        "resolved",
        Some("true_positive"),
        Some("TRUE_POSITIVE_UNDEFINED"),
    ),
    (
        "closed",
        Some("other"),
        "resolved",
        Some("suspicious"),
        Some("TRUE_POSITIVE_BENIGN_BUT_SUSPICIOUS"),
    ),
];
/// A comment's verdict and the UAM verdict it means (no close reason says more).
const COMMENT_VERDICTS: [(Option<&str>, Option<&str>); 4] = [
    (None, None),
    (Some("true_positive"), Some("TRUE_POSITIVE_UNDEFINED")),
    (Some("false_positive"), Some("FALSE_POSITIVE_UNDEFINED")),
    (Some("suspicious"), Some("TRUE_POSITIVE_BENIGN_BUT_SUSPICIOUS")),
];

/// The UAM status a legacy S1 status is written as.
fn uam_status(status: &str) -> &'static str {
    match status {
        "unresolved" => "NEW",
        "in_progress" => "IN_PROGRESS",
        "resolved" => "RESOLVED",
        other => panic!("no UAM status for {other}"),
    }
}

/// One change the platform sends.
#[derive(Debug, Clone)]
struct Change {
    /// Its webhook id; also in its note, so its note can be counted in S1.
    id: String,
    story: usize,
    at: OffsetDateTime,
    status: Option<&'static str>,
    verdict: Option<&'static str>,
    uam_verdict: Option<&'static str>,
    body: Vec<u8>,
}

impl Change {
    fn token(&self) -> String {
        format!("[{}]", self.id)
    }
}

/// What the platform heard back about a change, over all its deliveries.
#[derive(Debug, Default, Clone)]
struct Heard {
    accepted: bool,
    refused: bool,
    answers: Vec<String>,
}

struct Chaos {
    seed: u64,
    source: Source,
    rng: Rng,
    h: PollHarness,
    stories: Vec<(String, Vec<String>)>,
    /// Per story, its unified alert (the unified run only).
    unified: Vec<String>,
    changes: Vec<Change>,
    heard: Arc<Mutex<HashMap<String, Heard>>>,
    /// The platform's clock: every change is a second after the one before.
    clock: OffsetDateTime,
    /// The retry passes' clock, hours ahead so every pending change is due and every claim of a
    /// killed attempt has lapsed.
    later: OffsetDateTime,
    /// Threats the console changed.
    console_changed: BTreeSet<String>,
    /// Every platform story's threats' and unified alert's verdict before the first round.
    initial_verdicts: HashMap<String, String>,
}

impl Chaos {
    fn new_change(&mut self, story: usize) -> Change {
        self.clock += Duration::seconds(1);
        let n = self.changes.len();
        let id = format!("chaos-{}-{n}", self.seed);
        let alert = &self.stories[story].0;
        let at = format_time(self.clock);
        let token = format!("[{id}]");
        let (status, verdict, uam_verdict, body) = if self.rng.chance(65) {
            let (state, reason, status, verdict, uam_verdict) = self.rng.pick(&STATES);
            let body = json!({"type": "alert.status_changed", "timestamp": at, "data": {
                "alert_key": alert, "status": state, "close_reason": reason,
                "analysis": token, "actor": {"name": "Ana"}}});
            (Some(status), verdict, uam_verdict, body)
        } else {
            let (verdict, uam_verdict) = self.rng.pick(&COMMENT_VERDICTS);
            let body = json!({"type": "alert.comment_added", "timestamp": at, "data": {
                "alert_key": alert, "comment": token, "verdict": verdict, "actor": {"name": "Ana"}}});
            (None, verdict, uam_verdict, body)
        };
        let c = Change {
            id,
            story,
            at: self.clock,
            status,
            verdict,
            uam_verdict,
            body: serde_json::to_vec(&body).unwrap(),
        };
        self.changes.push(c.clone());
        c
    }

    async fn add_faults(&mut self) {
        let unified = self.source == Source::Unified;
        // The threats run draws from exactly these, so its seeds replay as before.
        let paths: &[&str] = if unified {
            &[
                "/threats/incident",
                "/threats/analyst-verdict",
                "/threats/notes",
                GRAPHQL,
            ]
        } else {
            &["/threats/incident", "/threats/analyst-verdict", "/threats/notes"]
        };
        for _ in 0..2 + self.rng.below(3) {
            let fault = match self.rng.below(if unified { 8 } else { 6 }) {
                0 => FaultKind::Status {
                    status: 429,
                    retry_after: None,
                    code: None,
                },
                1 => FaultKind::Status {
                    status: self.rng.pick(&[500, 502, 503]),
                    retry_after: None,
                    code: None,
                },
                2 => FaultKind::Reset,
                3 => FaultKind::Truncate,
                6 | 7 => FaultKind::GraphqlError {
                    code: self
                        .rng
                        .pick(&["SURFACE_TOO_MANY_REQUESTS", "INTERNAL_SERVER_ERROR"])
                        .into(),
                    message: Some("chaos".into()),
                },
                _ => FaultKind::Slow {
                    millis: 300 + self.rng.below(1_500) as u64,
                },
            };
            // A GraphQL error answers only the GraphQL endpoint.
            let path = if matches!(fault, FaultKind::GraphqlError { .. }) {
                GRAPHQL
            } else {
                self.rng.pick(paths)
            };
            let rule = FaultRule::new(path, fault, 1 + self.rng.below(3) as u32)
                .method("POST")
                .after(self.rng.below(4) as u32);
            self.h.sim.control().add_fault(&rule).await.unwrap();
        }
        if unified {
            self.uam_refusals().await;
        }
    }

    /// UAM declining writes for a round: a few alerts skip them (`SYNC_ISSUE`) or fail them
    /// transiently (`SURFACE_TOO_MANY_REQUESTS` per alert), the rest apply again; sometimes the
    /// console stops taking the cached action ids.
    async fn uam_refusals(&mut self) {
        for n in 0..PLATFORM_STORIES {
            let outcome = match self.rng.below(10) {
                0 => ActionOutcome::Skip {
                    skip_type: "SYNC_ISSUE".into(),
                },
                1 => ActionOutcome::Fail {
                    error_type: "SURFACE_TOO_MANY_REQUESTS".into(),
                },
                _ => ActionOutcome::Apply,
            };
            set_outcome(&self.h, &self.unified[n], outcome).await;
        }
        if self.rng.chance(40) {
            self.h.sim.control().rotate_uam_action_ids().await.unwrap();
        }
    }

    async fn console_round(&mut self) {
        for _ in 0..2 {
            let story = PLATFORM_STORIES + self.rng.below(CONSOLE_STORIES);
            let id = self.stories[story].1[0].clone();
            let status = self.rng.pick(&["in_progress", "resolved", "unresolved"]);
            let verdict = self.rng.pick(&["true_positive", "false_positive", "suspicious"]);
            self.h
                .sim
                .control()
                .console_update(&id, Some(status), Some(verdict))
                .await
                .unwrap();
            self.console_changed.insert(id);
        }
    }

    /// Delivers `batch` in waves of concurrent deliveries; when `kill_after` comes, every
    /// delivery in flight is aborted (the runner is killed). Returns what got no answer.
    async fn deliver(&mut self, batch: Vec<Change>, kill_after: Option<StdDuration>) -> Vec<Change> {
        let started = Instant::now();
        let mut unanswered = Vec::new();
        for wave in batch.chunks(WAVE) {
            let d = deps(&self.h);
            let tasks: Vec<_> = wave
                .iter()
                .map(|c| {
                    let (d, c) = (d.clone(), c.clone());
                    tokio::spawn(async move {
                        let headers = signed_headers(&c.id, &c.body, INBOUND_SECRET);
                        handle_webhook(&d, "POST", "/generic/acme", &headers, &c.body).await
                    })
                })
                .collect();
            if let Some(k) = kill_after {
                if let Some(left) = k.checked_sub(started.elapsed()) {
                    let aborts: Vec<_> = tasks.iter().map(|t| t.abort_handle()).collect();
                    tokio::spawn(async move {
                        tokio::time::sleep(left).await;
                        aborts.iter().for_each(tokio::task::AbortHandle::abort);
                    });
                }
            }
            for (c, t) in wave.iter().zip(tasks) {
                match t.await {
                    Ok(r) => self.hear(c, &r),
                    Err(e) if e.is_cancelled() => unanswered.push(c.clone()),
                    Err(e) => panic!("seed {}: delivery {} panicked: {e}", self.seed, c.id),
                }
            }
        }
        unanswered
    }

    fn hear(&self, c: &Change, r: &WebhookResponse) {
        let mut heard = self.heard.lock().unwrap();
        let e = heard.entry(c.id.clone()).or_default();
        let message = r.body["message"].as_str().unwrap_or_default();
        match r.status {
            202 => e.accepted = true,
            200 if message.contains("already accepted") => e.accepted = true,
            409 => e.refused = true,
            _ => panic!("seed {}: change {} got {} {}", self.seed, c.id, r.status, r.body),
        }
        e.answers.push(format!(
            "{} {}",
            r.status,
            r.body["writeback"].as_str().unwrap_or(message)
        ));
    }

    /// A retry pass at the retry clock, aborted after `kill_after` when given.
    async fn retry_pass(&mut self, kill_after: Option<StdDuration>) {
        self.later += Duration::hours(3);
        let (d, later) = (deps(&self.h), self.later);
        let tenant = self.h.store.get_tenant("acme").await.unwrap().unwrap();
        let task = tokio::spawn(async move {
            retry_pending(&d, &tenant, later, 500, Instant::now() + StdDuration::from_secs(300))
                .await
                .unwrap()
        });
        if let Some(k) = kill_after {
            tokio::time::sleep(k).await;
            task.abort();
        }
        let _ = task.await;
    }

    async fn round(&mut self) {
        self.console_round().await;
        self.add_faults().await;
        let mut batch = Vec::new();
        for _ in 0..10 {
            let story = self.rng.below(PLATFORM_STORIES);
            for _ in 0..1 + self.rng.below(3) {
                batch.push(self.new_change(story));
            }
        }
        // Some delivered twice under one id, all out of order.
        let twice: Vec<Change> = batch.iter().filter(|_| self.rng.chance(20)).cloned().collect();
        batch.extend(twice);
        self.rng.shuffle(&mut batch);
        let kill = self
            .rng
            .chance(60)
            .then(|| StdDuration::from_millis(50 + self.rng.below(3_000) as u64));
        // A poll runs alongside the deliveries.
        let deps = self.h.deps.clone();
        let poll = async move {
            s1_shared::usecase::poll_threats::run(
                &deps,
                &s1_shared::usecase::poll_threats::Selection::All,
                Instant::now() + StdDuration::from_secs(120),
            )
            .await
        };
        let (unanswered, polled) = tokio::join!(self.deliver(batch, kill), poll);
        polled.unwrap();
        let retry_kill = self
            .rng
            .chance(40)
            .then(|| StdDuration::from_millis(self.rng.below(1_500) as u64));
        self.retry_pass(retry_kill).await;
        // Restarted: the platform delivers again what got no answer.
        self.deliver(unanswered, None).await;
        self.retry_pass(None).await;
        self.h.poll().await;
    }

    /// Faults cleared: retry passes until nothing is pending.
    async fn settle(&mut self) {
        self.h.sim.control().clear_faults().await.unwrap();
        for id in &self.unified {
            set_outcome(&self.h, id, ActionOutcome::Apply).await;
        }
        for _ in 0..12 {
            if self
                .h
                .store
                .list_pending("acme", None, 10)
                .await
                .unwrap()
                .items
                .is_empty()
            {
                break;
            }
            self.retry_pass(None).await;
        }
        let pending = self.h.store.list_pending("acme", None, 100).await.unwrap().items;
        assert!(pending.is_empty(), "seed {}: still pending: {pending:?}", self.seed);
        self.h.poll().await;
    }

    async fn check(&self) {
        let seed = self.seed;
        let heard = self.heard.lock().unwrap().clone();
        let mut s1: HashMap<String, (String, String, Vec<String>)> = HashMap::new();
        for (_, ids) in &self.stories[..PLATFORM_STORIES + CONSOLE_STORIES] {
            for id in ids {
                s1.insert(id.clone(), s1_state(&self.h, id).await);
            }
        }
        let mut uam: HashMap<String, (String, String, Vec<String>)> = HashMap::new();
        for id in &self.unified {
            uam.insert(id.clone(), uam_state(&self.h, id).await);
        }
        // Notes: once per accepted change on every threat of its story, never for a refused one.
        for c in &self.changes {
            let h = heard.get(&c.id).cloned().unwrap_or_default();
            assert!(
                h.accepted || h.refused,
                "seed {seed}: change {} got no answer at all",
                c.id
            );
            let want = usize::from(h.accepted);
            for id in &self.stories[c.story].1 {
                let notes = &s1[id].2;
                let n = notes.iter().filter(|t| t.contains(&c.token())).count();
                assert_eq!(
                    n, want,
                    "seed {seed}: change {} ({:?}) on threat {id}: notes {notes:?}",
                    c.id, h.answers
                );
            }
            if let Some(id) = self.unified.get(c.story) {
                let notes = &uam[id].2;
                let n = notes.iter().filter(|t| t.contains(&c.token())).count();
                assert_eq!(
                    n, want,
                    "seed {seed}: change {} ({:?}) on unified alert {id}: notes {notes:?}",
                    c.id, h.answers
                );
            }
        }
        // No dead letter but superseded: a status change older than one S1 already held from
        // us, its note posted, its status and verdict not.
        let dead = self.h.store.list_dead("acme", None, 1_000).await.unwrap().items;
        for d in &dead {
            assert!(
                d.last_error.as_deref().is_some_and(|e| e.starts_with("superseded")),
                "seed {seed}: dead letter {d:?}"
            );
        }
        let superseded: Vec<&str> = dead.iter().map(|d| d.change.change.event_id.as_str()).collect();
        // A superseded change an earlier attempt had sent (perhaps landing on part of the
        // story) keeps its verdict, on every member.
        let verdict_kept: Vec<&str> = dead
            .iter()
            .filter(|d| d.last_error.as_deref() == Some(SUPERSEDED_VERDICT_KEPT))
            .map(|d| d.change.change.event_id.as_str())
            .collect();
        // Each story: the newest accepted status and verdict, per field (a superseded change
        // sets no status, and no verdict unless it kept it).
        for (n, (alert, ids)) in self.stories[..PLATFORM_STORIES].iter().enumerate() {
            let accepted = |verdicts: bool| -> Vec<&Change> {
                self.changes
                    .iter()
                    .filter(|c| c.story == n && heard.get(&c.id).is_some_and(|h| h.accepted))
                    .filter(|c| {
                        let id = c.id.as_str();
                        !superseded.contains(&id) || (verdicts && verdict_kept.contains(&id))
                    })
                    .collect()
            };
            let newest = |f: fn(&Change) -> Option<&'static str>, verdicts: bool| {
                accepted(verdicts)
                    .into_iter()
                    .filter(|c| f(c).is_some())
                    .max_by_key(|c| c.at)
                    .map(|c| (f(c), c.id.clone()))
            };
            let status = newest(|c| c.status, false);
            let verdict = newest(|c| c.verdict, true);
            if let Some(id) = self.unified.get(n) {
                let (s, v, _) = &uam[id];
                if let Some((want, by)) = &status {
                    assert_eq!(
                        s.as_str(),
                        uam_status(want.unwrap()),
                        "seed {seed}: {alert} unified alert {id} status (newest: {by})"
                    );
                }
                if let Some((_, by)) = &verdict {
                    let want = newest(|c| c.uam_verdict, true).and_then(|(v, _)| v);
                    assert_eq!(
                        Some(v.as_str()),
                        want,
                        "seed {seed}: {alert} unified alert {id} verdict (newest: {by})"
                    );
                }
            }
            for id in ids {
                let (s, v, _) = &s1[id];
                if let Some((want, by)) = &status {
                    assert_eq!(
                        Some(s.as_str()),
                        *want,
                        "seed {seed}: {alert} threat {id} status (newest: {by})"
                    );
                }
                if let Some((want, by)) = &verdict {
                    assert_eq!(
                        Some(v.as_str()),
                        *want,
                        "seed {seed}: {alert} threat {id} verdict (newest: {by})"
                    );
                }
            }
        }
        // Whatever else holds, a story's threats and its unified alert agree on the verdict:
        // both as they were, or both as one accepted change set them (the legacy verdict and the
        // UAM verdict its close reason or comment names).
        for (n, (alert, ids)) in self.stories[..PLATFORM_STORIES].iter().enumerate() {
            let Some(unified) = self.unified.get(n) else { continue };
            let held_uam = uam[unified].1.as_str();
            for id in ids {
                let held = s1[id].1.as_str();
                let as_before = self.initial_verdicts.get(id).map(String::as_str) == Some(held)
                    && self.initial_verdicts.get(unified).map(String::as_str) == Some(held_uam);
                let set_by = self.changes.iter().find(|c| {
                    c.story == n
                        && heard.get(&c.id).is_some_and(|h| h.accepted)
                        && c.verdict == Some(held)
                        && c.uam_verdict == Some(held_uam)
                });
                assert!(
                    as_before || set_by.is_some(),
                    "seed {seed}: {alert}: threat {id} holds verdict {held}, unified alert {unified} holds {held_uam}: no change set both"
                );
            }
        }
        // Nothing only the platform changed comes back; every console change does.
        let events = self.h.events("threat.updated");
        let platform_threats: Vec<&String> = self.stories[..PLATFORM_STORIES].iter().flat_map(|(_, t)| t).collect();
        let echoes: Vec<&Value> = events
            .iter()
            .filter(|e| {
                platform_threats
                    .iter()
                    .any(|t| e["data"]["s1"]["threat_id"] == t.as_str())
            })
            .collect();
        assert!(echoes.is_empty(), "seed {seed}: our own writes came back: {echoes:#?}");
        for id in &self.console_changed {
            let (status, verdict, _) = &s1[id];
            let last = events
                .iter()
                .rev()
                .find(|e| e["data"]["s1"]["threat_id"] == id.as_str());
            if let Some(e) = last {
                assert_eq!(
                    (e["data"]["s1"]["status"].as_str(), e["data"]["s1"]["verdict"].as_str()),
                    (Some(status.as_str()), Some(verdict.as_str())),
                    "seed {seed}: console change of {id}"
                );
            }
        }
    }
}

async fn run(seed: u64, source: Source) {
    let table: Arc<dyn ItemTable> = Arc::new(EmbeddedTable::in_memory().unwrap());
    let (h, _, stories) = setup(200, table).await;
    assert!(
        stories.len() >= PLATFORM_STORIES + CONSOLE_STORIES,
        "{} stories",
        stories.len()
    );
    let mut unified = Vec::new();
    if source == Source::Unified {
        // One Identity alert joins each story the platform changes (the read side would group
        // it by asset and rule; the writeback only needs the member).
        let spec = NewUnifiedAlerts {
            count: PLATFORM_STORIES,
            ..NewUnifiedAlerts::one(DetectionSource::Identity)
        };
        unified = h.sim.control().add_unified_alerts(&spec).await.unwrap();
        for ((alert, _), id) in stories.iter().zip(&unified) {
            add_member(&h, alert, MemberId::unified(id)).await;
        }
    }
    let mut initial_verdicts = HashMap::new();
    for (_, ids) in &stories[..PLATFORM_STORIES] {
        for id in ids {
            initial_verdicts.insert(id.clone(), s1_state(&h, id).await.1);
        }
    }
    for id in &unified {
        initial_verdicts.insert(id.clone(), uam_state(&h, id).await.1);
    }
    let now = OffsetDateTime::now_utc();
    let mut chaos = Chaos {
        seed,
        source,
        rng: Rng(seed),
        h,
        stories,
        unified,
        changes: Vec::new(),
        heard: Arc::default(),
        clock: now - Duration::minutes(30),
        later: now,
        console_changed: BTreeSet::new(),
        initial_verdicts,
    };
    for _ in 0..ROUNDS {
        chaos.round().await;
    }
    chaos.settle().await;
    chaos.check().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_writeback_under_chaos_keeps_its_promises() {
    run_seeds(Source::Threats).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_unified_writeback_under_chaos_keeps_its_promises() {
    run_seeds(Source::Unified).await;
}

async fn run_seeds(source: Source) {
    let seeds: Vec<u64> = std::env::var("WRITEBACK_CHAOS_SEEDS")
        .ok()
        .map(|s| {
            s.split(',')
                .map(|x| x.trim().parse().expect("a seed is a number"))
                .collect()
        })
        .unwrap_or_else(|| vec![22]);
    for seed in seeds {
        let started = Instant::now();
        run(seed, source).await;
        println!(
            "writeback chaos ({source:?}) seed {seed}: passed in {:.1} s",
            started.elapsed().as_secs_f64()
        );
    }
}
