//! One call on the wire: the rate limiter, the retry loop (what is safe to repeat, `Retry-After`),
//! the capped body read (an answer cut short is an outcome we did not hear, not bad data), the
//! observer, and the failure classified as an [`S1Error`].

use std::time::{Duration, Instant};

use reqwest::header::{AUTHORIZATION, LOCATION};
use reqwest::{Method, StatusCode};
use serde_json::Value;

use super::super::error::{S1Error, parse_error_body};
use super::super::ratelimit::EndpointFamily;
use super::S1Client;
use super::options::RequestRecord;
use crate::net::{ReadError, retry_after};

pub(super) struct Call<'a> {
    pub(super) method: Method,
    pub(super) path: &'a str,
    pub(super) query: &'a [(String, String)],
    pub(super) body: Option<&'a Value>,
    pub(super) family: EndpointFamily,
    /// Whether repeating the call after an ambiguous failure (5xx, a cut connection) is
    /// harmless. Adding a note is not: a retry could post it twice.
    pub(super) idempotent: bool,
    /// Whether the call changes something in S1 (a write), so a lost answer to one try may
    /// have left a change behind.
    pub(super) changes: bool,
    pub(super) auth: bool,
}

impl S1Client {
    /// Makes the call and reads a 2xx answer with `read`. An answer whose JSON ends early (cut
    /// short on the way) is retried like a cut connection, when the call is safe to repeat.
    ///
    /// When an earlier try's outcome was never heard and the last try says S1 made no change,
    /// the failure is [`S1Error::OutcomeUnknown`]: the earlier try may have landed, and a caller
    /// that takes back what it recorded on "no change" must not.
    pub(super) async fn send<T>(
        &self,
        call: &Call<'_>,
        read: impl Fn(&[u8]) -> Result<T, S1Error>,
    ) -> Result<T, S1Error> {
        let mut unheard = false;
        match self.send_tries(call, read, &mut unheard).await {
            Err(e) if unheard && call.changes && e.made_no_change() => Err(S1Error::OutcomeUnknown {
                endpoint: format!("/{}", call.path),
                attempts: e.attempts().unwrap_or(1),
                last: e.to_string(),
            }),
            r => r,
        }
    }

    /// [`send`](Self::send)'s tries; sets `unheard` once a try that is then repeated may have
    /// acted.
    async fn send_tries<T>(
        &self,
        call: &Call<'_>,
        read: impl Fn(&[u8]) -> Result<T, S1Error>,
        unheard: &mut bool,
    ) -> Result<T, S1Error> {
        let endpoint = format!("/{}", call.path);
        let url = self
            .api_base
            .join(call.path)
            .map_err(|e| S1Error::InvalidRequest(format!("bad API path {endpoint}: {e}")))?;
        let mut delays = self.retry.delays();
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            self.limiters.acquire(call.family).await;
            if let Some(shared) = &self.shared {
                // Retries take their place too: S1 counts every attempt.
                shared.acquire(call.family, self.allowance.claim(call.family)).await;
            }
            let started = Instant::now();
            let mut req = self.http.request(call.method.clone(), url.clone());
            if !call.query.is_empty() {
                req = req.query(call.query);
            }
            if call.auth {
                req = req.header(AUTHORIZATION, self.auth.clone());
            }
            if let Some(body) = call.body {
                req = req.json(body);
            }
            // (status, Retry-After, Location, body) or the failure of the attempt.
            let outcome = match req.send().await {
                Ok(resp) => {
                    let status = resp.status();
                    let retry_after = retry_after(resp.headers());
                    let location = status
                        .is_redirection()
                        .then(|| {
                            resp.headers()
                                .get(LOCATION)
                                .and_then(|v| v.to_str().ok())
                                .map(str::to_owned)
                        })
                        .flatten();
                    match crate::net::read_capped(resp, self.max_body).await {
                        Ok(b) => Ok((status, retry_after, location, b)),
                        Err(ReadError::Transport(e)) => Err(e),
                        Err(ReadError::TooLarge { limit }) => {
                            let err = S1Error::TooLarge {
                                endpoint: endpoint.clone(),
                                status: status.as_u16(),
                                limit,
                            };
                            self.observe(
                                call,
                                &endpoint,
                                attempt,
                                started.elapsed(),
                                Some(status),
                                Some(err.to_string()),
                            );
                            return Err(err);
                        }
                    }
                }
                Err(e) => Err(e),
            };
            let mut cut_short = None;
            if let Ok((status, _, _, bytes)) = &outcome {
                if status.is_success() {
                    match read(bytes) {
                        Ok(v) => {
                            self.observe(call, &endpoint, attempt, started.elapsed(), Some(*status), None);
                            return Ok(v);
                        }
                        // A 2xx answer that says S1 is throttling (GraphQL's
                        // SURFACE_TOO_MANY_REQUESTS): the reader returns it only when S1 did
                        // nothing, so it is waited out like a 429.
                        Err(S1Error::RateLimited { retry_after, .. }) => {
                            cut_short = Some(S1Error::RateLimited {
                                endpoint: endpoint.clone(),
                                attempts: attempt,
                                retry_after,
                            });
                        }
                        Err(S1Error::Decode { .. }) if ends_early(bytes) => {
                            cut_short = Some(S1Error::Truncated {
                                endpoint: endpoint.clone(),
                                status: status.as_u16(),
                                attempts: attempt,
                                received: bytes.len(),
                            });
                        }
                        Err(e) => {
                            self.observe(call, &endpoint, attempt, started.elapsed(), Some(*status), None);
                            return Err(e);
                        }
                    }
                }
            }
            match &outcome {
                Ok((status, ..)) => self.observe(
                    call,
                    &endpoint,
                    attempt,
                    started.elapsed(),
                    Some(*status),
                    cut_short.as_ref().map(ToString::to_string),
                ),
                Err(e) => self.observe(
                    call,
                    &endpoint,
                    attempt,
                    started.elapsed(),
                    None,
                    Some(crate::net::describe(e)),
                ),
            }

            let (failure, hint) = match outcome {
                Ok((status, ..)) if status.is_success() => {
                    match cut_short.expect("a 2xx answer read above is cut short or throttled") {
                        err @ S1Error::RateLimited { retry_after, .. } => (err, retry_after),
                        // S1 may have acted on the call: repeat only what is safe to repeat.
                        err if !call.idempotent => return Err(err),
                        err => (err, None),
                    }
                }
                Ok((StatusCode::TOO_MANY_REQUESTS, retry_after, _, _)) => (
                    // S1 did not process a rate-limited call, so retrying is safe for every call.
                    S1Error::RateLimited {
                        endpoint: endpoint.clone(),
                        attempts: attempt,
                        retry_after,
                    },
                    retry_after,
                ),
                Ok((status, _, _, bytes)) if status.is_server_error() => {
                    let err = S1Error::Server {
                        endpoint: endpoint.clone(),
                        status: status.as_u16(),
                        attempts: attempt,
                        body: parse_error_body(&bytes),
                    };
                    if !call.idempotent {
                        return Err(err);
                    }
                    (err, None)
                }
                Ok((status, _, location, _)) if status.is_redirection() => {
                    return Err(S1Error::Redirected {
                        endpoint,
                        status: status.as_u16(),
                        location,
                    });
                }
                Ok((status, _, _, bytes)) => return Err(classify(&endpoint, status, &bytes)),
                Err(e) => {
                    // A refused connection never reached S1; anything later is ambiguous.
                    let safe = call.idempotent || e.is_connect();
                    let err = S1Error::Transport {
                        endpoint: endpoint.clone(),
                        attempts: attempt,
                        cause: crate::net::describe(&e),
                        source: e.without_url(),
                    };
                    if !safe {
                        return Err(err);
                    }
                    (err, None)
                }
            };
            let Some(backoff) = delays.next() else {
                return Err(failure);
            };
            *unheard |= !failure.made_no_change();
            let wait = hint.map(|h| h.min(self.retry.max_retry_after)).unwrap_or(backoff);
            tracing::debug!(endpoint = %endpoint, attempt, wait_ms = wait.as_millis() as u64, error = %failure, "retrying S1 call");
            tokio::time::sleep(wait).await;
        }
    }

    fn observe(
        &self,
        call: &Call<'_>,
        endpoint: &str,
        attempt: u32,
        latency: Duration,
        status: Option<StatusCode>,
        error: Option<String>,
    ) {
        let Some(observer) = &self.observer else {
            return;
        };
        observer.record(&RequestRecord {
            method: call.method.to_string(),
            path: endpoint.to_owned(),
            status: status.map(|s| s.as_u16()),
            latency,
            attempt,
            error,
        });
    }
}

fn classify(endpoint: &str, status: StatusCode, bytes: &[u8]) -> S1Error {
    let body = parse_error_body(bytes);
    let endpoint = endpoint.to_owned();
    match status {
        StatusCode::UNAUTHORIZED => S1Error::Unauthorized { endpoint, body },
        StatusCode::FORBIDDEN => S1Error::Forbidden { endpoint, body },
        StatusCode::BAD_REQUEST => S1Error::BadRequest { endpoint, body },
        StatusCode::NOT_FOUND => S1Error::NotFound { endpoint, body },
        other => S1Error::UnexpectedStatus {
            endpoint,
            status: other.as_u16(),
            body,
        },
    }
}

/// Whether a body that did not decode is JSON that ends early: cut short on the way, not
/// malformed. Only read on the failure path.
fn ends_early(bytes: &[u8]) -> bool {
    serde_json::from_slice::<serde::de::IgnoredAny>(bytes).is_err_and(|e| e.is_eof())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_json_that_ends_early_is_cut_short() {
        assert!(ends_early(br#"{"data": [{"id": "1"}, {"id": "#));
        assert!(ends_early(b""), "nothing of the answer arrived");
        assert!(!ends_early(br#"{"data": [}"#), "complete but malformed");
        assert!(!ends_early(br#"{"data": "not a list"}"#), "complete, the wrong shape");
        assert!(!ends_early(br#"{"data": []} trailing"#));
    }
}
