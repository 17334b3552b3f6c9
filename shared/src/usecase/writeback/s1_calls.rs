//! The S1 calls of an attempt (with the tenant's token, retried as the attempt's policy says),
//! how their failures count, and the outbound log they leave.

use std::future::Future;
use std::sync::{Arc, Mutex};

use futures_util::StreamExt;
use time::{Duration, OffsetDateTime};

use super::WritebackDeps;
use super::outcome::ApplyError;
use crate::s1::dto::ThreatActionResult;
use crate::s1::{RequestObserver, RequestRecord, RetryPolicy, S1Client, S1Error};
use crate::secrets::TokenCallError;
use crate::store::OutboundRequest;
use crate::tenant::TenantConfig;

/// GraphQL error codes that say the console refused the request itself: sending it again
/// cannot help.
const GRAPHQL_REFUSALS: [&str; 6] = [
    "GRAPHQL_VALIDATION_FAILED",
    "GRAPHQL_PARSE_FAILED",
    "BAD_USER_INPUT",
    "BAD_REQUEST",
    "FORBIDDEN",
    "MISSING_PERMISSION",
];

/// A UAM answer with GraphQL errors none of which is a refusal of the request (an internal
/// error, a surface that failed): the console's passing failure, retried within the attempts.
fn graphql_may_pass(e: &S1Error) -> bool {
    match e {
        S1Error::GraphQl { errors, .. } => !errors.iter().any(|g| {
            g.code
                .as_deref()
                .is_some_and(|c| GRAPHQL_REFUSALS.iter().any(|r| c.eq_ignore_ascii_case(r)))
        }),
        _ => false,
    }
}

fn classify(e: S1Error) -> ApplyError {
    if e.is_retryable() || e.is_unauthorized() || graphql_may_pass(&e) {
        ApplyError::Retry(e.to_string())
    } else {
        ApplyError::Fatal(e.to_string())
    }
}

#[derive(Default)]
pub(super) struct Recorder {
    pub(super) records: Mutex<Vec<RequestRecord>>,
    /// Time spent in S1 calls, for the latency benchmark.
    pub(super) s1_micros: std::sync::atomic::AtomicU64,
}

impl RequestObserver for Recorder {
    fn record(&self, r: &RequestRecord) {
        self.s1_micros
            .fetch_add(r.latency.as_micros() as u64, std::sync::atomic::Ordering::Relaxed);
        self.records.lock().unwrap_or_else(|e| e.into_inner()).push(r.clone());
    }
}

pub(super) fn summarize(r: &ThreatActionResult) -> String {
    let mut counts: std::collections::BTreeMap<&str, usize> = Default::default();
    for d in &r.details {
        *counts.entry(d.result.map_or("none", |x| x.as_str())).or_default() += 1;
    }
    counts
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(" ")
}

pub(super) fn check_details(r: &ThreatActionResult, ids: &[String], want_verdict: bool) -> Result<(), ApplyError> {
    let bad: Vec<String> = r
        .details
        .iter()
        .filter(|d| {
            !d.result.is_some_and(|x| x.is_applied())
                || (want_verdict && d.analyst_verdict.is_some_and(|x| !x.is_applied()))
        })
        .map(|d| {
            format!(
                "{}: {}",
                d.threat_id.as_deref().unwrap_or("?"),
                d.result.map_or("no result", |x| x.as_str())
            )
        })
        .collect();
    if !bad.is_empty() {
        return Err(ApplyError::Fatal(format!(
            "S1 did not apply the change to every threat ({})",
            bad.join(", ")
        )));
    }
    if r.details.is_empty() && r.affected == 0 && !ids.is_empty() {
        return Err(ApplyError::Fatal(
            "S1 reported no threat affected and no per-threat results".into(),
        ));
    }
    Ok(())
}

/// The S1 calls of one attempt: through the tenant's client, retried as the attempt's policy
/// says and seen by its recorder. A 401 re-reads the token once and repeats the call with the
/// new one (S1 did nothing with a refused call, so even a note is not posted twice).
pub(super) struct S1Calls<'a> {
    pub(super) deps: &'a WritebackDeps,
    pub(super) tenant: &'a TenantConfig,
    pub(super) retry: &'a RetryPolicy,
    pub(super) recorder: &'a Arc<Recorder>,
}

/// A failed S1 call of an attempt: how it counts, and whether S1 surely made no change (its
/// answer said so), as opposed to an outcome we did not hear.
pub(super) struct CallFailed {
    pub(super) error: ApplyError,
    pub(super) made_no_change: bool,
}

impl CallFailed {
    /// A failure after part of the change landed in S1: S1 holds something of it.
    pub(super) fn after(self, landed: bool) -> Self {
        Self {
            made_no_change: self.made_no_change && !landed,
            ..self
        }
    }

    /// A failure before anything was sent.
    pub(super) fn unsent(error: ApplyError) -> Self {
        Self {
            error,
            made_no_change: true,
        }
    }

    /// A failure S1 reported after taking the call.
    pub(super) fn landed(error: ApplyError) -> Self {
        Self {
            error,
            made_no_change: false,
        }
    }
}

impl From<CallFailed> for ApplyError {
    fn from(f: CallFailed) -> Self {
        f.error
    }
}

impl S1Calls<'_> {
    pub(super) async fn run<T, Fut>(&self, call: impl FnMut(S1Client) -> Fut) -> Result<T, ApplyError>
    where
        Fut: Future<Output = Result<T, S1Error>>,
    {
        Ok(self.try_run(call).await?)
    }

    /// [`run`](Self::run), saying on failure whether S1 surely made no change.
    pub(super) async fn try_run<T, Fut>(&self, mut call: impl FnMut(S1Client) -> Fut) -> Result<T, CallFailed>
    where
        Fut: Future<Output = Result<T, S1Error>>,
    {
        self.deps
            .consoles
            .with_token(self.tenant, |client| {
                let running = call(
                    client
                        .with_retry(self.retry.clone())
                        .with_observer(self.recorder.clone()),
                );
                async move { running.await.map_err(TokenCallError::from) }
            })
            .await
            .map_err(|e| CallFailed {
                made_no_change: match &e {
                    TokenCallError::Secret(_) => true,
                    TokenCallError::S1(e) => e.made_no_change(),
                },
                error: call_error(e),
            })
    }
}

/// A call made with the tenant's token failed: an unreadable secret is retried later; S1's
/// answer as [`classify`] says.
pub(super) fn call_error(e: TokenCallError) -> ApplyError {
    match e {
        TokenCallError::Secret(e) => ApplyError::Retry(e.to_string()),
        TokenCallError::S1(e) => classify(e),
    }
}

/// Whether S1 already holds a note with exactly `text` on the threat (a previous attempt may
/// have sent it and died before recording so).
pub(super) async fn note_in_s1(s1: &S1Calls<'_>, threat_id: &str, text: &str) -> Result<bool, ApplyError> {
    s1.run(|client| async move { note_among(&client, threat_id, text).await })
        .await
}

async fn note_among(client: &S1Client, threat_id: &str, text: &str) -> Result<bool, S1Error> {
    let pages = client.threat_notes(threat_id);
    futures_util::pin_mut!(pages);
    // Bounded: a threat with more than 10,000 notes is not searched to its end.
    for _ in 0..10 {
        match pages.next().await {
            Some(page) => {
                if page?.items.iter().any(|n| n.text.as_deref() == Some(text)) {
                    return Ok(true);
                }
            }
            None => break,
        }
    }
    Ok(false)
}

static OUT_SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// The outbound-log records of the calls `recorder` saw, with their per-threat results.
pub(super) fn outbound_records(recorder: &Recorder, results: &[(&str, String)]) -> Vec<OutboundRequest> {
    // Copied, not taken: when the applied change cannot be stored, the failure path logs them.
    let records = recorder.records.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let now = OffsetDateTime::now_utc();
    records
        .into_iter()
        .map(|r| {
            let result = if r.status.is_some_and(|s| (200..300).contains(&s)) {
                results.iter().find(|(p, _)| *p == r.path).map(|(_, s)| s.clone())
            } else {
                None
            };
            let seq = OUT_SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            OutboundRequest {
                id: format!("{}-{seq}", std::process::id()),
                at: now - Duration::try_from(r.latency).unwrap_or_default(),
                method: r.method,
                path: r.path,
                status: r.status,
                result,
                latency_ms: r.latency.as_millis() as u64,
                attempt: r.attempt,
                error: r.error,
            }
        })
        .collect()
}

pub(super) async fn record_outbound(deps: &WritebackDeps, tenant: &TenantConfig, recorder: &Recorder) {
    let out = outbound_records(recorder, &[]);
    if out.is_empty() {
        return;
    }
    if let Err(e) = deps.store.record_outbound_many(&tenant.id, &out).await {
        tracing::warn!(tenant = %tenant.id, error = %e, "could not record outbound requests");
    }
}
