use serde::Deserialize;
use std::time::Duration;

/// One entry of S1's error envelope: `{"errors":[{"code","title","detail"}]}`.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
pub struct S1ErrorBody {
    /// S1's numeric error code, e.g. `4010010` (authentication failed).
    #[serde(default)]
    pub code: Option<i64>,
    /// Short title, e.g. "Authentication Failed".
    #[serde(default)]
    pub title: Option<String>,
    /// Longer detail, often null.
    #[serde(default)]
    pub detail: Option<String>,
}

impl S1ErrorBody {
    fn describe(&self) -> String {
        let mut s = String::new();
        if let Some(code) = self.code {
            s.push_str(&format!("code {code}"));
        }
        for part in [&self.title, &self.detail].into_iter().flatten() {
            if !s.is_empty() {
                s.push_str(": ");
            }
            s.push_str(part);
        }
        if s.is_empty() {
            s.push_str("no error details in the body");
        }
        s
    }
}

/// One entry of a GraphQL answer's `errors` array (the UAM API), as much of it as says what
/// went wrong: consoles put the machine-readable code in `extensions` (`code`, `errorType` or
/// `classification`), so [`GraphQlError::code`] is whichever of them came.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct GraphQlError {
    /// The human-readable message.
    pub message: String,
    /// Where in the answer it happened, e.g. `alerts.edges.3.node`; empty for the whole call.
    pub path: String,
    /// The error's code, e.g. `SURFACE_TOO_MANY_REQUESTS`, `UNAUTHENTICATED`, `GRAPHQL_VALIDATION_FAILED`.
    pub code: Option<String>,
}

impl<'de> Deserialize<'de> for GraphQlError {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde_json::Value;
        // Lenient: an entry of any shape is still an error (it only loses its details).
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Raw {
            #[serde(default)]
            message: Option<Value>,
            #[serde(default)]
            path: Option<Value>,
            #[serde(default)]
            extensions: Option<Value>,
            #[serde(default)]
            error_type: Option<Value>,
        }
        let raw = match Value::deserialize(d)? {
            Value::Object(m) => serde_json::from_value::<Raw>(Value::Object(m)).ok(),
            _ => None,
        };
        let Some(raw) = raw else {
            return Ok(Self::default());
        };
        let text = |v: &Value| match v {
            Value::String(s) => Some(s.clone()),
            Value::Null => None,
            other => Some(other.to_string()),
        };
        let path = match &raw.path {
            Some(Value::Array(parts)) => parts.iter().filter_map(text).collect::<Vec<_>>().join("."),
            Some(other) => text(other).unwrap_or_default(),
            None => String::new(),
        };
        let ext = raw.extensions.as_ref();
        let code = ["code", "errorType", "classification"]
            .iter()
            .find_map(|k| ext.and_then(|e| e.get(k)).and_then(text))
            .or_else(|| raw.error_type.as_ref().and_then(text));
        Ok(Self {
            message: raw.message.as_ref().and_then(text).unwrap_or_default(),
            path,
            code,
        })
    }
}

impl GraphQlError {
    /// Whether it is UAM's throttling signal (`SURFACE_TOO_MANY_REQUESTS`).
    pub fn is_rate_limit(&self) -> bool {
        self.code.as_deref() == Some(SURFACE_TOO_MANY_REQUESTS) || self.message.contains(SURFACE_TOO_MANY_REQUESTS)
    }
}

/// UAM's throttling error code, in a GraphQL error or a per-alert failure.
pub const SURFACE_TOO_MANY_REQUESTS: &str = "SURFACE_TOO_MANY_REQUESTS";

fn describe_graphql(errors: &[GraphQlError]) -> String {
    let mut parts: Vec<String> = errors
        .iter()
        .take(3)
        .map(|e| {
            let mut s = String::new();
            if let Some(c) = &e.code {
                s.push_str(c);
                s.push_str(": ");
            }
            s.push_str(if e.message.is_empty() { "no message" } else { &e.message });
            if !e.path.is_empty() {
                s.push_str(&format!(" at {}", e.path));
            }
            s
        })
        .collect();
    if errors.len() > 3 {
        parts.push(format!("and {} more", errors.len() - 3));
    }
    if parts.is_empty() {
        parts.push("an empty errors entry".into());
    }
    parts.join("; ")
}

/// Everything that can go wrong talking to S1, classified by what the caller should do.
///
/// `endpoint` is the API path (never the query string's secrets: S1 takes the token only in a
/// header, so paths and queries carry none).
#[derive(Debug, thiserror::Error)]
pub enum S1Error {
    /// HTTP 401 (code 4010010): the token is wrong, expired or revoked. Not retryable; re-read
    /// the token once, then alert.
    #[error("S1 rejected the API token on {endpoint} (HTTP 401, {}): the token is wrong, expired or revoked; check it and its expiry date", .body.describe())]
    Unauthorized { endpoint: String, body: S1ErrorBody },

    /// HTTP 403: the token's scope or role does not allow this call (4030010: a site-scoped
    /// token calling `/accounts`).
    #[error("S1 refused {endpoint} (HTTP 403, {}): the token's scope or role does not allow it", .body.describe())]
    Forbidden { endpoint: String, body: S1ErrorBody },

    /// HTTP 400: S1 judged the request invalid (4000010: validation error, e.g. a bad cursor).
    #[error("S1 rejected the request to {endpoint} as invalid (HTTP 400, {})", .body.describe())]
    BadRequest { endpoint: String, body: S1ErrorBody },

    /// HTTP 404: no such resource (an unknown id, or a path this console does not have).
    #[error("S1 has no such resource: {endpoint} (HTTP 404, {})", .body.describe())]
    NotFound { endpoint: String, body: S1ErrorBody },

    /// HTTP 429 on every attempt of the retry budget.
    #[error("S1 kept rate-limiting {endpoint} (HTTP 429) through {attempts} attempts; try again later")]
    RateLimited {
        endpoint: String,
        attempts: u32,
        /// The last `Retry-After` S1 sent, if any.
        retry_after: Option<Duration>,
    },

    /// HTTP 5xx on every attempt of the retry budget (or once, for a call that is unsafe to
    /// repeat).
    #[error("S1 failed on {endpoint} with HTTP {status} ({}) through {attempts} attempts; S1 may be down", .body.describe())]
    Server {
        endpoint: String,
        status: u16,
        attempts: u32,
        body: S1ErrorBody,
    },

    /// The connection failed, timed out or was cut, through the retry budget.
    #[error("could not reach S1 for {endpoint} ({}): {cause}", attempts_text(.attempts))]
    Transport {
        endpoint: String,
        attempts: u32,
        /// The cause by name: "DNS lookup failed for <host>", "connection refused by <host:port>",
        /// "TLS handshake with <host:port> failed: ...", a timeout.
        cause: String,
        #[source]
        source: reqwest::Error,
    },

    /// S1 (or whatever answers at the console URL) redirected the call. Redirects are never
    /// followed: the API token would go wherever the redirect points.
    #[error("{endpoint} answered with a redirect (HTTP {status}{}); redirects are not followed: check the tenant's console URL", .location.as_deref().map(|l| format!(" to {l}")).unwrap_or_default())]
    Redirected {
        endpoint: String,
        status: u16,
        location: Option<String>,
    },

    /// The answer's body is longer than the client's cap; it was not read.
    #[error("S1 answered {endpoint} (HTTP {status}) with a body over the {limit}-byte cap; refused without reading it")]
    TooLarge {
        endpoint: String,
        status: u16,
        limit: usize,
    },

    /// S1 answered 2xx but the body is not what the API promises.
    #[error("S1 answered {endpoint} with a body that does not decode at `{path}`: {message}")]
    Decode {
        endpoint: String,
        /// JSON path of the field that failed, e.g. `data[3].threatInfo.updatedAt`.
        path: String,
        message: String,
    },

    /// S1 answered 2xx but the body ends early (its JSON is cut short: the connection was cut
    /// or a proxy gave up): whether S1 acted on the call is unknown. Retryable; a call that is
    /// unsafe to repeat (adding a note) is not repeated blindly.
    #[error("S1's answer to {endpoint} (HTTP {status}) was cut short after {received} bytes (its JSON ends early) through {}; whether S1 acted on the call is unknown; try again", attempts_text(.attempts))]
    Truncated {
        endpoint: String,
        status: u16,
        attempts: u32,
        /// Bytes of the body that arrived.
        received: usize,
    },

    /// A call that is safe to repeat failed on its last try in a way that says S1 made no
    /// change (a 5xx, a 429), but an earlier try's outcome was never heard (its answer was cut
    /// short, or the connection was cut after the request went out): S1 may hold the change
    /// from that try. Retryable; never taken for "nothing landed".
    #[error(
        "S1 may have applied an earlier try of {endpoint} (its answer was lost); the last of {attempts} attempts failed: {last}; try again"
    )]
    OutcomeUnknown {
        endpoint: String,
        attempts: u32,
        /// The last try's failure, as text.
        last: String,
    },

    /// S1 answered a GraphQL call (UAM) with an `errors` array, HTTP 200 or not: the call
    /// failed, even when part of the data came with it (a page with holes is not a page, and is
    /// never taken as an empty one).
    #[error("S1 answered {endpoint} with GraphQL errors ({}){}", describe_graphql(.errors), if *.partial { "; the partial data that came with them was not used" } else { "" })]
    GraphQl {
        endpoint: String,
        errors: Vec<GraphQlError>,
        /// Whether `data` held something besides the errors (a mutation may then have acted).
        partial: bool,
    },

    /// Any other non-2xx status.
    #[error("S1 answered {endpoint} with unexpected HTTP {status} ({})", .body.describe())]
    UnexpectedStatus {
        endpoint: String,
        status: u16,
        body: S1ErrorBody,
    },

    /// The call was refused before it was sent (bad base URL, limit out of range, an empty id
    /// filter that would touch every threat, a token unusable in a header).
    #[error("invalid S1 request: {0}")]
    InvalidRequest(String),
}

impl S1Error {
    /// True when trying the same call later may succeed (rate limits, 5xx, network).
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            S1Error::RateLimited { .. }
                | S1Error::Server { .. }
                | S1Error::Transport { .. }
                | S1Error::Truncated { .. }
                | S1Error::OutcomeUnknown { .. }
        )
    }

    /// True when the failure says the call changed nothing in S1: S1 refused it (4xx, 429),
    /// failed it (5xx, taken at its word), it was refused before it was sent, or the connection
    /// was refused. False when the outcome is unknown: a connection cut or timed out after the
    /// request went out, an unreadable answer to a call S1 accepted.
    pub fn made_no_change(&self) -> bool {
        match self {
            S1Error::Unauthorized { .. }
            | S1Error::Forbidden { .. }
            | S1Error::BadRequest { .. }
            | S1Error::NotFound { .. }
            | S1Error::RateLimited { .. }
            | S1Error::Server { .. }
            | S1Error::InvalidRequest(_) => true,
            S1Error::UnexpectedStatus { status, .. }
            | S1Error::Redirected { status, .. }
            | S1Error::TooLarge { status, .. } => *status >= 300,
            S1Error::Transport { source, .. } => source.is_connect(),
            // With no data, nothing ran (taken at its word); partial data means part of it did.
            S1Error::GraphQl { partial, .. } => !partial,
            S1Error::Decode { .. } | S1Error::Truncated { .. } | S1Error::OutcomeUnknown { .. } => false,
        }
    }

    /// True for a 401: the token must be re-read or replaced.
    pub fn is_unauthorized(&self) -> bool {
        matches!(self, S1Error::Unauthorized { .. })
    }

    /// S1's numeric error code, when the error body carried one.
    pub fn code(&self) -> Option<i64> {
        match self {
            S1Error::Unauthorized { body, .. }
            | S1Error::Forbidden { body, .. }
            | S1Error::BadRequest { body, .. }
            | S1Error::NotFound { body, .. }
            | S1Error::Server { body, .. }
            | S1Error::UnexpectedStatus { body, .. } => body.code,
            _ => None,
        }
    }

    /// How many tries the call made, when the failure counts them.
    pub fn attempts(&self) -> Option<u32> {
        match self {
            S1Error::RateLimited { attempts, .. }
            | S1Error::Server { attempts, .. }
            | S1Error::Transport { attempts, .. }
            | S1Error::Truncated { attempts, .. }
            | S1Error::OutcomeUnknown { attempts, .. } => Some(*attempts),
            _ => None,
        }
    }

    /// The HTTP status S1 answered with, when there was one.
    pub fn status(&self) -> Option<u16> {
        match self {
            S1Error::Unauthorized { .. } => Some(401),
            S1Error::Forbidden { .. } => Some(403),
            S1Error::BadRequest { .. } => Some(400),
            S1Error::NotFound { .. } => Some(404),
            S1Error::RateLimited { .. } => Some(429),
            S1Error::Server { status, .. }
            | S1Error::UnexpectedStatus { status, .. }
            | S1Error::Redirected { status, .. }
            | S1Error::TooLarge { status, .. }
            | S1Error::Truncated { status, .. } => Some(*status),
            _ => None,
        }
    }
}

fn attempts_text(n: &u32) -> String {
    if *n == 1 {
        "1 attempt".to_owned()
    } else {
        format!("{n} attempts")
    }
}

/// Parses S1's error envelope leniently: a body that is not the envelope still yields an error
/// with the status, just without details.
pub(crate) fn parse_error_body(bytes: &[u8]) -> S1ErrorBody {
    #[derive(Deserialize)]
    struct Envelope {
        #[serde(default)]
        errors: Vec<S1ErrorBody>,
    }
    serde_json::from_slice::<Envelope>(bytes)
        .ok()
        .and_then(|e| e.errors.into_iter().next())
        .unwrap_or_default()
}
