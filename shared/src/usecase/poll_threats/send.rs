//! Publishing a page's events with several deliveries in flight.
//!
//! The events go out in units (one event, or a batch for a platform that takes batches), up to
//! the tenant's `max_in_flight` units at once (a unit takes its slot once its turn has come). A unit waits for every earlier unit holding an
//! event of one of its stories, so a story's events reach the platform in order, and a story's
//! first event has been answered (with the platform's id for it, say a Halo ticket) before its
//! next one is sent. After an error that is not about one event (the platform refused us or is
//! down), or [`REFUSALS_IN_A_ROW`] refusals, no further unit is sent; what is in flight finishes.
//! The caller records what was accepted and holds the checkpoint on any stop.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::Instant;

use futures_util::{StreamExt, stream};
use tokio::sync::watch;

use super::{REFUSALS_IN_A_ROW, Stop};
use crate::platform::{Platform, PlatformError, PublishReceipt, ThreatEvent};

/// An event to send, from candidate `index` of the page, in story `key`.
pub(super) struct Planned {
    pub index: usize,
    pub key: String,
    pub event: ThreatEvent,
}

/// What became of a planned event.
pub(super) enum Sent {
    Accepted(PublishReceipt),
    /// Refused as this event's own fault (400, 409, 413, 422).
    Rejected {
        status: u16,
        detail: String,
    },
    /// Sent and failed otherwise, or never sent (the run stopped first).
    NotDelivered,
}

/// A planned event with its answer.
pub(super) struct Delivery {
    pub index: usize,
    pub event: ThreatEvent,
    pub sent: Sent,
}

/// Shared by the units of one page.
struct Run<'a> {
    platform: &'a dyn Platform,
    /// No unit starts after this (the run's deadline, less its margin), except a page's first,
    /// so every run makes progress however slow the platform.
    cutoff: Instant,
    /// A delivery still unanswered at this point is given up (its outcome unknown, as after a
    /// kill), so the page is settled and committed before the run's own deadline cuts it.
    give_up: Instant,
    started: AtomicBool,
    /// Refusals in a row, across the run's pages ([`REFUSALS_IN_A_ROW`]).
    refusals: &'a AtomicU32,
    stopped: AtomicBool,
    stop: Mutex<Option<Stop>>,
    /// The platform's id for each story (by story id) as soon as one of its events got one.
    refs: Mutex<HashMap<String, String>>,
}

impl Run<'_> {
    fn halt(&self, why: Stop) {
        self.stopped.store(true, Ordering::SeqCst);
        let mut stop = self.stop.lock().expect("stop lock");
        // Running out of time hides no failure: a refusal or an outage heard after it is the
        // reason the run reports.
        if stop.is_none() || (matches!(*stop, Some(Stop::Deadline)) && !matches!(why, Stop::Deadline)) {
            *stop = Some(why);
        }
    }

    fn answer(&self, event: &ThreatEvent, result: Result<PublishReceipt, PlatformError>) -> Sent {
        match result {
            Ok(receipt) => {
                // The platform takes events: the refusals before this one were about them.
                self.refusals.store(0, Ordering::Relaxed);
                if let Some(r) = &receipt.platform_ref {
                    self.refs
                        .lock()
                        .expect("refs lock")
                        .entry(event.story.id.clone())
                        .or_insert_with(|| r.clone());
                }
                Sent::Accepted(receipt)
            }
            Err(PlatformError::Rejected { status, detail }) => {
                let in_a_row = self.refusals.fetch_add(1, Ordering::Relaxed) + 1;
                if in_a_row >= REFUSALS_IN_A_ROW {
                    // Not one event's fault: none of them is recorded, the checkpoint holds.
                    self.halt(Stop::Refusals {
                        count: in_a_row,
                        status,
                        detail: detail.clone(),
                    });
                }
                Sent::Rejected { status, detail }
            }
            Err(e) => {
                if !matches!(&e, PlatformError::Unavailable { attempts: 0, .. }) {
                    self.halt(e.into());
                }
                Sent::NotDelivered
            }
        }
    }

    async fn deliver(&self, mut unit: Vec<Planned>) -> Vec<Delivery> {
        if self.stopped.load(Ordering::SeqCst) {
            return unit.into_iter().map(not_delivered).collect();
        }
        if Instant::now() >= self.cutoff && self.started.load(Ordering::SeqCst) {
            // Out of time: what is in flight finishes, and what the platform took is recorded.
            self.halt(Stop::Deadline);
            return unit.into_iter().map(not_delivered).collect();
        }
        self.started.store(true, Ordering::SeqCst);
        {
            // A story's earlier event may have been given the platform's id for it.
            let refs = self.refs.lock().expect("refs lock");
            for p in &mut unit {
                if p.event.story.platform_ref.is_none() {
                    p.event.story.platform_ref = refs.get(&p.event.story.id).cloned();
                }
            }
        }
        let platform = self.platform;
        let (indexes, events): (Vec<usize>, Vec<ThreatEvent>) = unit.into_iter().map(|p| (p.index, p.event)).unzip();
        let sending = async {
            if events.len() == 1 {
                vec![platform.publish(&events[0]).await]
            } else {
                platform.publish_batch(&events).await
            }
        };
        let Ok(results) = tokio::time::timeout_at(self.give_up.into(), sending).await else {
            self.halt(Stop::Deadline);
            return indexes
                .into_iter()
                .zip(events)
                .map(|(index, event)| Delivery {
                    index,
                    event,
                    sent: Sent::NotDelivered,
                })
                .collect();
        };
        if results.len() != events.len() {
            // An adapter must answer for every event: without an answer an event is neither
            // delivered nor refused, so the run stops and the page is held.
            self.halt(Stop::Platform(PlatformError::Config(format!(
                "the {} adapter answered {} of {} events",
                platform.kind(),
                results.len(),
                events.len()
            ))));
        }
        let mut results = results.into_iter();
        indexes
            .into_iter()
            .zip(events)
            .map(|(index, event)| {
                let sent = match results.next() {
                    Some(r) => self.answer(&event, r),
                    None => Sent::NotDelivered,
                };
                Delivery { index, event, sent }
            })
            .collect()
    }
}

fn not_delivered(p: Planned) -> Delivery {
    Delivery {
        index: p.index,
        event: p.event,
        sent: Sent::NotDelivered,
    }
}

/// Sends `planned` (in page order) and answers for each, in page order, with the reason the
/// sending stopped early, if it did.
pub(super) async fn send_all(
    platform: &dyn Platform,
    in_flight: usize,
    refusals: &AtomicU32,
    planned: Vec<Planned>,
    (cutoff, give_up): (Instant, Instant),
) -> (Vec<Delivery>, Option<Stop>) {
    let per_unit = platform.batch_limit().unwrap_or(1).max(1);
    let mut units: Vec<Vec<Planned>> = Vec::new();
    for p in planned {
        match units.last_mut() {
            Some(u) if u.len() < per_unit => u.push(p),
            _ => units.push(vec![p]),
        }
    }
    // Each unit waits for the last earlier unit of each of its stories.
    let mut last: HashMap<&str, usize> = HashMap::new();
    let mut after: Vec<Vec<usize>> = Vec::with_capacity(units.len());
    for (i, u) in units.iter().enumerate() {
        let mut deps: Vec<usize> = u.iter().filter_map(|p| last.get(p.key.as_str()).copied()).collect();
        deps.sort_unstable();
        deps.dedup();
        deps.retain(|&d| d != i);
        after.push(deps);
        for p in u {
            last.insert(p.key.as_str(), i);
        }
    }
    drop(last);
    let (done, watchers): (Vec<_>, Vec<_>) = (0..units.len()).map(|_| watch::channel(false)).unzip();
    let run = Run {
        platform,
        cutoff,
        give_up,
        started: AtomicBool::new(false),
        refusals,
        stopped: AtomicBool::new(false),
        stop: Mutex::new(None),
        refs: Mutex::new(HashMap::new()),
    };
    // Every unit waits for its stories' earlier units first, and only then for a slot: a long
    // story's queued events hold no slot while they wait their turn.
    let slots = tokio::sync::Semaphore::new(in_flight.max(1));
    let (run_ref, watchers, slots) = (&run, &watchers, &slots);
    let mut out: Vec<Delivery> = units
        .into_iter()
        .zip(after)
        .zip(done)
        .map(|((unit, after), done)| async move {
            for d in after {
                // A dropped sender is a finished unit too.
                let _ = watchers[d].clone().wait_for(|finished| *finished).await;
            }
            let answered = match slots.acquire().await {
                Ok(_slot) => run_ref.deliver(unit).await,
                Err(_) => unit.into_iter().map(not_delivered).collect(),
            };
            let _ = done.send(true);
            answered
        })
        .collect::<futures_util::stream::FuturesUnordered<_>>()
        .flat_map(stream::iter)
        .collect()
        .await;
    out.sort_unstable_by_key(|d| d.index);
    let stop = run.stop.into_inner().expect("stop lock");
    (out, stop)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::AtomicUsize;
    use std::time::Duration;

    use async_trait::async_trait;

    use super::*;
    use crate::platform::Notice;

    /// Takes every event after a pause, noting how many were in flight at once and whether two
    /// events of one story ever overlapped.
    #[derive(Default)]
    struct Slow {
        now: AtomicUsize,
        most: AtomicUsize,
        busy: Mutex<std::collections::HashSet<String>>,
        overlapped: AtomicBool,
        order: Mutex<Vec<String>>,
    }

    #[async_trait]
    impl Platform for Slow {
        fn kind(&self) -> crate::domain::PlatformKind {
            crate::domain::PlatformKind::Generic
        }
        async fn publish(&self, event: &ThreatEvent) -> Result<PublishReceipt, PlatformError> {
            let n = self.now.fetch_add(1, Ordering::SeqCst) + 1;
            self.most.fetch_max(n, Ordering::SeqCst);
            if !self.busy.lock().unwrap().insert(event.story.id.clone()) {
                self.overlapped.store(true, Ordering::SeqCst);
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
            self.busy.lock().unwrap().remove(&event.story.id);
            self.order.lock().unwrap().push(event.id.clone());
            self.now.fetch_sub(1, Ordering::SeqCst);
            Ok(PublishReceipt {
                platform_ref: Some(format!("ref-{}", event.story.id)),
            })
        }
        async fn notify(&self, _: &Notice) -> Result<PublishReceipt, PlatformError> {
            Ok(PublishReceipt::default())
        }
    }

    fn far() -> Instant {
        Instant::now() + Duration::from_secs(600)
    }

    fn planned(stories: usize, per_story: usize) -> Vec<Planned> {
        let mut out = Vec::new();
        for i in 0..per_story {
            for s in 0..stories {
                let mut event = ThreatEvent::for_test("acme", &format!("t{s}-{i}"));
                event.id = format!("{s}-{i}");
                event.story.id = format!("story-{s}");
                event.story.platform_ref = None;
                out.push(Planned {
                    index: out.len(),
                    key: format!("key-{s}"),
                    event,
                });
            }
        }
        out
    }

    #[tokio::test]
    async fn at_most_max_in_flight_at_once_and_a_storys_events_one_after_another() {
        let slow = Arc::new(Slow::default());
        let (out, stop) = send_all(slow.as_ref(), 8, &AtomicU32::new(0), planned(40, 3), (far(), far())).await;
        assert!(stop.is_none());
        assert_eq!(out.len(), 120);
        assert!(out.iter().all(|d| matches!(d.sent, Sent::Accepted(_))));
        assert!(out.windows(2).all(|w| w[0].index < w[1].index), "answers in page order");
        assert_eq!(slow.most.load(Ordering::SeqCst), 8, "eight in flight, never more");
        assert!(
            !slow.overlapped.load(Ordering::SeqCst),
            "a story's events never overlap"
        );
        let order = slow.order.lock().unwrap().clone();
        for s in 0..40 {
            let mine: Vec<&String> = order.iter().filter(|id| id.starts_with(&format!("{s}-"))).collect();
            assert_eq!(mine, [&format!("{s}-0"), &format!("{s}-1"), &format!("{s}-2")]);
        }
    }

    #[tokio::test]
    async fn a_long_story_waiting_its_turn_does_not_hold_the_other_stories_back() {
        let slow = Arc::new(Slow::default());
        // Story 0's 30 events first in the page, then one event each of 20 other stories.
        let mut page = planned(1, 30);
        for (i, mut p) in planned(21, 1).into_iter().skip(1).enumerate() {
            p.index = 30 + i;
            page.push(p);
        }
        let (out, _) = send_all(slow.as_ref(), 8, &AtomicU32::new(0), page, (far(), far())).await;
        assert_eq!(out.len(), 50);
        let order = slow.order.lock().unwrap().clone();
        let tenth_of_long = order.iter().position(|id| id == "0-9").unwrap();
        let others_done = order.iter().filter(|id| !id.starts_with("0-")).count();
        let others_before = order[..tenth_of_long].iter().filter(|id| !id.starts_with("0-")).count();
        assert_eq!(others_done, 20);
        assert_eq!(
            others_before, 20,
            "the other stories went while the long one took its turns: {order:?}"
        );
    }

    #[tokio::test]
    async fn past_the_cutoff_no_unit_starts_but_the_first_and_the_page_stops_for_the_deadline() {
        let slow = Arc::new(Slow::default());
        let (out, stop) = send_all(
            slow.as_ref(),
            4,
            &AtomicU32::new(0),
            planned(1, 20),
            (Instant::now(), far()),
        )
        .await;
        assert!(
            matches!(stop, Some(Stop::Deadline)),
            "{:?}",
            stop.map(|s| s.to_string())
        );
        let accepted = out.iter().filter(|d| matches!(d.sent, Sent::Accepted(_))).count();
        assert_eq!(accepted, 1, "the page's first unit goes, so every run moves on");
        assert_eq!(out.len(), 20, "an answer for every event");
    }

    #[tokio::test]
    async fn a_storys_later_events_carry_the_id_its_first_one_was_given() {
        let slow = Arc::new(Slow::default());
        let (out, _) = send_all(slow.as_ref(), 4, &AtomicU32::new(0), planned(3, 2), (far(), far())).await;
        for d in out.iter().filter(|d| d.event.id.ends_with("-1")) {
            assert_eq!(
                d.event.story.platform_ref.as_deref(),
                Some(format!("ref-{}", d.event.story.id).as_str())
            );
        }
    }
}
