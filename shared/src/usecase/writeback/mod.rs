//! status-writeback: the SOC's status, verdict and comments reach S1 — verified, exactly once,
//! in order, and never lost.
//!
//! A webhook is verified, parsed into a [`StatusChange`](crate::platform::inbound::StatusChange), resolved to its story, and accepted in
//! one atomic store write (replay marker + pending change). Only then is S1 called, inline
//! within one time budget that fits the platform's 5 seconds; if S1 is down, slow or
//! rate-limits, the change stays pending and is retried with backoff by later runs until it
//! lands or, after [`MAX_ATTEMPTS`], moves to the dead letters.
//!
//! Every attempt (inline or retry) first claims the pending item with a conditional write
//! (owner + expiry), records its progress durably per step under that claim, and ends it with
//! a conditional write, so two attempts never both post a note and no attempt brings back an
//! item another retired. Changes of one alert that set a status or a verdict go to S1 one at a
//! time under the alert's ordering lock, and each field in the order of the platform timestamps:
//! a change whose status is older than the one S1 holds from us is retired as superseded (its
//! note is posted, its status and verdict are not, except that a verdict an earlier attempt had
//! already sent, perhaps landing on part of the story, goes to every member, so a threat and a
//! unified alert of one story never disagree on it); a verdict older than the alert's is left
//! out, whether a status change or a comment carries it. What each status or verdict call gives
//! S1 is recorded on the story before the call is sent, so the poller never sends our own
//! change back, whatever fails after it.
//!
//! Layout: `webhook.rs` turns a request into verified changes and answers it; `resolve.rs` finds
//! the story behind an alert reference; `accept.rs` stores a change (replay markers and the
//! pending item in one write) and makes the inline attempt, answering what came of it (an
//! `outcome::Accepted`, which only `webhook.rs` maps to HTTP); `attempt.rs` claims a pending item
//! and ends it (applied, rescheduled, dead); `apply.rs` applies its steps to S1 under the claim
//! and the alert's ordering lock; `written.rs` records on the story what S1 is given;
//! `s1_calls.rs` makes the S1 calls and keeps the outbound log; `uam_calls.rs` the UAM calls
//! for a story's unified alerts; `retry.rs` is the scheduled retry pass; `notes.rs` the text S1
//! gets; `outcome.rs` the outcomes and errors every step shares.

mod accept;
mod apply;
mod attempt;
mod notes;
mod outcome;
mod resolve;
mod retry;
mod s1_calls;
mod uam_calls;
mod webhook;
mod written;

use std::sync::Arc;
use std::time::Duration as StdDuration;

use time::{Duration, OffsetDateTime};

use crate::platform::PlatformResolver;
use crate::s1::{Consoles, RetryPolicy};
use crate::secrets::TokenProvider;
use crate::store::Store;

pub use notes::note_text;
pub use outcome::backoff;
pub use retry::{RetryReport, retry_pending};
pub use webhook::{WebhookResponse, handle_webhook, handle_webhook_with};

/// Bodies above this are refused with 413.
pub const MAX_BODY: usize = 256 * 1024;
/// Attempts before a change moves to the dead letters.
pub const MAX_ATTEMPTS: u32 = 8;
/// How long a webhook id is remembered for replay protection.
pub const EVENT_TTL: Duration = Duration::days(7);
/// PagerDuty deliveries (and bearer-mode ones, which nothing signs) whose event time is older
/// than this are refused; replay markers live longer ([`EVENT_TTL`]), so a delivery is either
/// remembered or too old.
pub const REPLAY_WINDOW: Duration = Duration::hours(24);
const _: () = assert!(EVENT_TTL.whole_seconds() >= REPLAY_WINDOW.whole_seconds());
/// A change dated further ahead than this is refused (it would hold back every later change).
pub const MAX_FUTURE: Duration = Duration::minutes(5);
/// The same comment (alert, actor, text) delivered again within this is one note.
pub const NOTE_DEDUPE_WINDOW: Duration = REPLAY_WINDOW;
/// The longest note S1 takes (`data.text` of `POST /threats/notes`: at most 10,000 characters
/// in the vendor's API export); longer notes are cut to it.
pub const MAX_NOTE_CHARS: usize = 10_000;
/// The longest close reason or actor kept from a webhook, in characters.
const MAX_FIELD_CHARS: usize = 500;
/// The whole webhook answer, inline S1 attempt included, fits in this (the platform waits 5 s).
pub const INLINE_BUDGET: StdDuration = StdDuration::from_millis(4_000);
/// How long an attempt's claim on a pending item (and on its alert's ordering lock) lasts.
/// Far longer than any attempt may run ([`INLINE_BUDGET`], [`RETRY_ATTEMPT_LIMIT`]), so a claim
/// lapses only when its attempt died.
pub const CLAIM_TTL: Duration = Duration::minutes(2);
/// The longest one attempt of a scheduled retry pass may run.
pub const RETRY_ATTEMPT_LIMIT: StdDuration = StdDuration::from_secs(30);
/// The `last_error` of a change retired as superseded: it is listed with the dead letters.
pub const SUPERSEDED: &str = "superseded: a later change to this alert reached S1 first; this change's status and verdict were not applied (its note was)";
/// The `last_error` of a change retired as superseded after an earlier attempt had sent its
/// status and verdict, perhaps landing on some of the story's members: its verdict (still the
/// latest) was applied to every member, its status was not.
pub const SUPERSEDED_VERDICT_KEPT: &str = "superseded: a later change to this alert reached S1 first; this change's status was not applied; its verdict and note were (an earlier attempt had sent the verdict to part of the story)";
/// No attempt (inline or in a retry pass) starts with less than this left: a claim taken and
/// cut at once would only hold the change back until the claim lapses.
const MIN_ATTEMPT_WINDOW: StdDuration = StdDuration::from_secs(1);

/// What the writeback needs. Built once per process.
#[derive(Clone)]
pub struct WritebackDeps {
    pub store: Store,
    /// The platforms' inbound secrets.
    pub tokens: Arc<dyn TokenProvider>,
    /// Builds the tenant's inbound adapter (its webhook's verification and parsing).
    pub platforms: Arc<dyn PlatformResolver>,
    /// The tenants' S1 clients, called with their tokens. Scheduled retries of pending changes
    /// retry S1 calls as its options say.
    pub consoles: Consoles,
    /// How the inline attempt, inside the webhook's 5-second budget, retries an S1 call: few,
    /// short tries.
    pub inline_retry: RetryPolicy,
}

impl WritebackDeps {
    /// A retry policy that fits the platform's 5-second answer budget. The whole inline attempt
    /// is bounded by [`INLINE_BUDGET`] too, whatever the HTTP client's own timeouts.
    pub fn inline_retry_policy() -> RetryPolicy {
        RetryPolicy {
            max_attempts: 2,
            min_delay: StdDuration::from_millis(100),
            max_delay: StdDuration::from_millis(300),
            max_retry_after: StdDuration::from_millis(500),
        }
    }
}

/// How one webhook is answered: the time budget of the whole answer, and (for tests replaying
/// recorded deliveries) the clock.
#[derive(Debug, Clone)]
pub struct WebhookOptions {
    /// The answer, inline S1 attempt included, comes within this; what does not fit is pending.
    pub budget: StdDuration,
    /// The time the request is judged at; the real clock when `None`.
    pub now: Option<OffsetDateTime>,
}

impl Default for WebhookOptions {
    fn default() -> Self {
        Self {
            budget: INLINE_BUDGET,
            now: None,
        }
    }
}
