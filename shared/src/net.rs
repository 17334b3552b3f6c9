//! Outbound HTTP safety, for every call the functions make (S1 consoles and platforms):
//!
//! - [`outbound_client`] is the one way the code builds an HTTP client: redirects are never
//!   followed, and every name is resolved through a guard that drops private, loopback and
//!   link-local addresses unless the operator's allow-list admits the host, so a public name
//!   pointing inside the VPC is caught at connect time, not only an IP literal in a URL.
//! - [`read_capped`] reads a response body up to a cap.
//! - [`describe`] names the cause of a transport failure (DNS, refused, TLS, timeout).
//! - [`budget`]: a rate budget shared by every process through a port the store implements.

pub mod budget;

use std::error::Error as StdError;
use std::io::ErrorKind;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use crate::config::{ALLOWED_HOSTS, AllowedHosts};
pub use crate::ip::is_public;

/// How hard to retry what is safe to retry: the one policy for S1 and platform calls.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    /// Attempts in all, the first included.
    pub max_attempts: u32,
    /// First backoff delay; it doubles per attempt, with jitter.
    pub min_delay: Duration,
    /// Cap on one backoff delay.
    pub max_delay: Duration,
    /// Cap on a `Retry-After` the other side asks for; a longer wait is better left to the next run.
    pub max_retry_after: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 5,
            min_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(20),
            max_retry_after: Duration::from_secs(60),
        }
    }
}

impl RetryPolicy {
    /// The waits between attempts: exponential from `min_delay` to `max_delay`, with jitter, one
    /// fewer than `max_attempts`.
    pub fn delays(&self) -> impl Iterator<Item = Duration> + use<> {
        use backon::BackoffBuilder;
        backon::ExponentialBuilder::default()
            .with_min_delay(self.min_delay)
            .with_max_delay(self.max_delay)
            .with_jitter()
            .with_max_times(self.max_attempts.saturating_sub(1) as usize)
            .build()
    }
}

/// `Retry-After` as seconds or an HTTP date (a date in the past is "now"): the one reading of
/// it, for S1 and the platforms alike.
pub fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    let v = headers.get(reqwest::header::RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let when = time::OffsetDateTime::parse(v, &time::format_description::well_known::Rfc2822).ok()?;
    let secs = (when - time::OffsetDateTime::now_utc()).whole_seconds();
    Some(Duration::from_secs(secs.max(0) as u64))
}

/// The most bytes read from a platform's answer (they are small JSON documents).
pub const MAX_PLATFORM_BODY: usize = 64 * 1024;

/// Why a name could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    /// The name does not resolve (NXDOMAIN, no DNS, a typo).
    #[error("DNS lookup failed for {host}: {message}")]
    Lookup { host: String, message: String },
    /// Every address of the name is private, loopback or link-local, and the allow-list does not
    /// admit the name.
    #[error(
        "{host} resolves only to private, loopback or link-local addresses ({addrs}); name it in {ALLOWED_HOSTS} (or --allow-host) if that host is yours"
    )]
    NotPublic { host: String, addrs: String },
}

/// The addresses of `host` the functions may connect to: all of them when the allow-list admits
/// the host, else only the public ones.
///
/// # Errors
/// [`ResolveError::NotPublic`] when no address is left.
pub fn admitted_addrs(
    host: &str,
    allowed: &AllowedHosts,
    addrs: Vec<SocketAddr>,
) -> Result<Vec<SocketAddr>, ResolveError> {
    if allowed.admits(host) {
        return Ok(addrs);
    }
    let (public, inside): (Vec<_>, Vec<_>) = addrs.into_iter().partition(|a| is_public(a.ip()));
    if public.is_empty() {
        let mut ips: Vec<String> = inside.iter().map(|a| a.ip().to_string()).collect();
        ips.dedup();
        return Err(ResolveError::NotPublic {
            host: host.to_owned(),
            addrs: ips.join(", "),
        });
    }
    Ok(public)
}

/// The system resolver behind [`admitted_addrs`].
struct GuardedResolver {
    allowed: AllowedHosts,
}

impl reqwest::dns::Resolve for GuardedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let host = name.as_str().to_owned();
        let allowed = self.allowed.clone();
        Box::pin(async move {
            let found: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0))
                .await
                .map_err(|e| ResolveError::Lookup {
                    host: host.clone(),
                    message: e.to_string(),
                })?
                .collect();
            if found.is_empty() {
                return Err(Box::new(ResolveError::Lookup {
                    host,
                    message: "no addresses".into(),
                }) as Box<dyn StdError + Send + Sync>);
            }
            let addrs = admitted_addrs(&host, &allowed, found)?;
            Ok(Box::new(addrs.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

/// The HTTP client for S1 and the platforms: `connect` and `total` bound every call, redirects
/// are never followed (a 3xx is an answer like any other), names resolve through the guard
/// described in the module docs, and no proxy named in the environment is used (every
/// connection goes straight to the target, whose address the guard checks).
///
/// # Errors
/// When the TLS backend cannot be set up.
pub fn outbound_client(
    connect: Duration,
    total: Duration,
    allowed: &AllowedHosts,
) -> Result<reqwest::Client, reqwest::Error> {
    reqwest::Client::builder()
        .connect_timeout(connect)
        .timeout(total)
        .redirect(reqwest::redirect::Policy::none())
        // No proxy from the environment (HTTPS_PROXY and the like): through a proxy only the
        // proxy's name is resolved here, so the guard would never see the target's address.
        .no_proxy()
        // reqwest's own retries only ever apply to HTTP/2 and 3 (not built in here); turned off
        // so it does not copy every request's headers in case of one. Our callers retry.
        .retry(reqwest::retry::never().max_retries_per_request(0))
        .dns_resolver(Arc::new(GuardedResolver {
            allowed: allowed.clone(),
        }))
        .user_agent(concat!("s1-bridge/", env!("CARGO_PKG_VERSION")))
        .build()
}

/// A body read failed.
#[derive(Debug)]
pub enum ReadError {
    /// The body is longer than the cap (said by `Content-Length` or found while reading).
    TooLarge { limit: usize },
    /// The connection failed while reading.
    Transport(reqwest::Error),
}

/// Reads `resp`'s body, refusing it once it is longer than `limit` bytes (without reading the
/// rest).
///
/// # Errors
/// [`ReadError`].
pub async fn read_capped(mut resp: reqwest::Response, limit: usize) -> Result<bytes::Bytes, ReadError> {
    if resp.content_length().is_some_and(|n| n > limit as u64) {
        return Err(ReadError::TooLarge { limit });
    }
    let mut buf = bytes::BytesMut::with_capacity(resp.content_length().map_or(8 * 1024, |n| n as usize));
    while let Some(chunk) = resp.chunk().await.map_err(ReadError::Transport)? {
        if buf.len() + chunk.len() > limit {
            return Err(ReadError::TooLarge { limit });
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(buf.freeze())
}

/// What went wrong with a call that got no answer, by cause: "DNS lookup failed for <host>",
/// "connection refused by <host:port>", "TLS handshake with <host:port> failed: ...", a timeout,
/// a reset, or the innermost error's own text. Never a URL's path or query.
pub fn describe(e: &reqwest::Error) -> String {
    let url = e.url();
    let host = url.and_then(|u| u.host_str()).unwrap_or("the server").to_owned();
    let target = match url.and_then(|u| u.port_or_known_default()) {
        Some(port) => format!("{host}:{port}"),
        None => host.clone(),
    };
    let tls = url.is_some_and(|u| u.scheme() == "https");
    let mut dns = false;
    let mut innermost: Option<String> = None;
    let mut cur: Option<&(dyn StdError + 'static)> = Some(e);
    while let Some(err) = cur {
        if let Some(r) = err.downcast_ref::<ResolveError>() {
            return r.to_string();
        }
        // An io::Error's `source()` skips the error it wraps: look inside each layer.
        let mut io = err.downcast_ref::<std::io::Error>();
        while let Some(e_io) = io {
            if let Some(r) = e_io.get_ref().and_then(|i| i.downcast_ref::<ResolveError>()) {
                return r.to_string();
            }
            match e_io.kind() {
                ErrorKind::ConnectionRefused => return format!("connection refused by {target}"),
                ErrorKind::ConnectionReset | ErrorKind::ConnectionAborted => {
                    return format!("connection reset by {target}");
                }
                ErrorKind::TimedOut => return format!("timed out connecting to {target}"),
                // tokio-rustls reports TLS failures as these two kinds.
                ErrorKind::InvalidData if tls => {
                    return format!("TLS handshake with {target} failed: {e_io}");
                }
                ErrorKind::UnexpectedEof if tls => {
                    return format!("TLS handshake with {target} failed: the connection was closed");
                }
                _ => {}
            }
            io = e_io.get_ref().and_then(|i| i.downcast_ref::<std::io::Error>());
        }
        let text = err.to_string();
        if text == "dns error" {
            dns = true;
        }
        innermost = Some(text);
        cur = err.source();
    }
    if e.is_timeout() {
        return if e.is_connect() {
            format!("timed out connecting to {target}")
        } else {
            format!("{target} did not answer within the request timeout")
        };
    }
    if dns {
        return format!("DNS lookup failed for {host}");
    }
    match innermost {
        Some(m) => format!("{m} ({target})"),
        None => format!("the call to {target} failed"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_is_seconds_or_an_http_date() {
        let mut h = reqwest::header::HeaderMap::new();
        h.insert(reqwest::header::RETRY_AFTER, "7".parse().unwrap());
        assert_eq!(retry_after(&h), Some(Duration::from_secs(7)));
        let at = time::OffsetDateTime::now_utc() + time::Duration::seconds(30);
        let date = at
            .format(
                &time::format_description::parse_borrowed::<2>(
                    "[weekday repr:short], [day] [month repr:short] [year] [hour]:[minute]:[second] GMT",
                )
                .unwrap(),
            )
            .unwrap();
        h.insert(reqwest::header::RETRY_AFTER, date.parse().unwrap());
        let wait = retry_after(&h).expect("an HTTP date parses");
        assert!((28..=30).contains(&wait.as_secs()), "{wait:?}");
        h.insert(
            reqwest::header::RETRY_AFTER,
            "Sun, 06 Nov 1994 08:49:37 GMT".parse().unwrap(),
        );
        assert_eq!(retry_after(&h), Some(Duration::ZERO));
        h.insert(reqwest::header::RETRY_AFTER, "soon".parse().unwrap());
        assert_eq!(retry_after(&h), None);
    }

    #[test]
    fn public_and_inside_addresses() {
        for inside in [
            "0.0.0.0",
            "10.1.2.3",
            "100.64.0.1",
            "127.0.0.1",
            "127.9.9.9",
            "169.254.169.254",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "224.0.0.1",
            "255.255.255.255",
            "::",
            "::1",
            "fd00::1",
            "fe80::1",
            "::ffff:10.0.0.1",
            "::ffff:169.254.169.254",
            "64:ff9b::a9fe:a9fe",
            "ff02::1",
        ] {
            assert!(!is_public(inside.parse().unwrap()), "{inside}");
        }
        for public in [
            "8.8.8.8",
            "1.1.1.1",
            "172.32.0.1",
            "100.128.0.1",
            "2606:4700::1111",
            "::ffff:8.8.8.8",
        ] {
            assert!(is_public(public.parse().unwrap()), "{public}");
        }
    }

    #[test]
    fn resolved_addresses_are_filtered_unless_the_host_is_allowed() {
        let addr = |s: &str| SocketAddr::new(s.parse().unwrap(), 443);
        let default = AllowedHosts::default();
        let err = admitted_addrs("hooks.example.com", &default, vec![addr("10.0.0.7"), addr("::1")]).unwrap_err();
        assert!(
            err.to_string().contains("hooks.example.com resolves only to private")
                && err.to_string().contains("10.0.0.7"),
            "{err}"
        );
        assert_eq!(
            admitted_addrs("hooks.example.com", &default, vec![addr("10.0.0.7"), addr("8.8.8.8")]).unwrap(),
            vec![addr("8.8.8.8")],
            "only the public address is used"
        );
        let named = AllowedHosts::parse("*.sentinelone.net,hooks.internal").unwrap();
        assert_eq!(
            admitted_addrs("hooks.internal", &named, vec![addr("10.0.0.7")]).unwrap(),
            vec![addr("10.0.0.7")]
        );
    }
}
