//! One delivery loop for every platform adapter: a request built afresh per attempt, retried
//! with backoff on 408, 429 (honouring `Retry-After`, as seconds or an HTTP date) and 5xx and
//! network failures; any other answer is final and classified (a refusal of the one item, or of
//! us). The S1 client reads `Retry-After` with the same function
//! ([`crate::net::retry_after`]).

use super::PlatformError;
use crate::net::retry_after;

/// Answers that are about the one event sent (malformed, too large, unprocessable, conflicting):
/// [`PlatformError::Rejected`]. Any other 4xx but 408 and 429 is about us or the endpoint:
/// [`PlatformError::Refused`].
pub const ITEM_REFUSALS: [u16; 4] = [400, 409, 413, 422];

/// Sends a request built afresh per attempt, retrying 408, 429 (honouring `Retry-After`), 5xx
/// and network failures with backoff within `retry`; any other 4xx is final: `Rejected` for
/// [`ITEM_REFUSALS`], `Refused` for the rest. With a `limiter`, every
/// attempt waits for its slot (a retry counts against the platform's limit too).
pub async fn deliver<F>(
    retry: &crate::net::RetryPolicy,
    limiter: Option<&crate::platform::budget::Budget>,
    build: F,
) -> Result<reqwest::Response, PlatformError>
where
    F: FnMut() -> reqwest::RequestBuilder,
{
    deliver_as(retry, limiter, true, build).await
}

/// [`deliver`], or, without `repeat_unheard`, for a request that must not be repeated blindly
/// (a create): a try whose answer was lost (a 500, 502 or 504, a connection cut after sending)
/// ends the call as [`PlatformError::Unavailable`] saying the platform may have done it, so the
/// caller looks before it sends again. Answers that say nothing was done (429, 408, 503, a
/// refused connection) are retried either way.
pub async fn deliver_as<F>(
    retry: &crate::net::RetryPolicy,
    limiter: Option<&crate::platform::budget::Budget>,
    repeat_unheard: bool,
    mut build: F,
) -> Result<reqwest::Response, PlatformError>
where
    F: FnMut() -> reqwest::RequestBuilder,
{
    let mut delays = retry.delays();
    let mut attempt = 0;
    loop {
        attempt += 1;
        if let Some(l) = limiter {
            l.until_ready().await;
        }
        let (detail, hint) = match build().send().await {
            Ok(resp) if resp.status().is_success() => return Ok(resp),
            Ok(resp)
                if resp.status() == reqwest::StatusCode::TOO_MANY_REQUESTS
                    || resp.status() == reqwest::StatusCode::REQUEST_TIMEOUT
                    || resp.status().is_server_error() =>
            {
                let status = resp.status();
                if !repeat_unheard && status.is_server_error() && status != reqwest::StatusCode::SERVICE_UNAVAILABLE {
                    return Err(lost(attempt, format!("HTTP {}", status.as_u16())));
                }
                let hint = retry_after(resp.headers());
                (format!("HTTP {}", status.as_u16()), hint)
            }
            Ok(resp) => {
                let status = resp.status().as_u16();
                let detail: String = answer_text(resp).await.chars().take(300).collect();
                return Err(if ITEM_REFUSALS.contains(&status) {
                    PlatformError::Rejected { status, detail }
                } else {
                    PlatformError::Refused { status, detail }
                });
            }
            Err(e) if !repeat_unheard && !e.is_connect() => return Err(lost(attempt, crate::net::describe(&e))),
            Err(e) => (crate::net::describe(&e), None),
        };
        match delays.next() {
            Some(d) => tokio::time::sleep(hint.map(|h| h.min(retry.max_retry_after)).unwrap_or(d)).await,
            None => {
                return Err(PlatformError::Unavailable {
                    attempts: attempt,
                    detail,
                });
            }
        }
    }
}

/// A write whose answer was lost: not sent again, the platform may hold it.
fn lost(attempts: u32, detail: String) -> PlatformError {
    PlatformError::Unavailable {
        attempts,
        detail: format!(
            "{detail}; the platform may have done it (its answer was lost), so it is not sent again blindly"
        ),
    }
}

/// The start of a platform's answer, read up to [`crate::net::MAX_PLATFORM_BODY`]; a longer or
/// broken body is described, not read.
pub(crate) async fn answer_text(resp: reqwest::Response) -> String {
    let location = resp
        .status()
        .is_redirection()
        .then(|| {
            resp.headers()
                .get(reqwest::header::LOCATION)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        })
        .flatten();
    if let Some(to) = location {
        return format!("redirected to {to}; redirects are not followed: check the platform URL");
    }
    match crate::net::read_capped(resp, crate::net::MAX_PLATFORM_BODY).await {
        Ok(b) => String::from_utf8_lossy(&b).into_owned(),
        Err(crate::net::ReadError::TooLarge { limit }) => {
            format!("the answer's body is over the {limit}-byte cap; refused without reading it")
        }
        Err(crate::net::ReadError::Transport(e)) => {
            format!("the answer's body could not be read: {}", crate::net::describe(&e))
        }
    }
}
