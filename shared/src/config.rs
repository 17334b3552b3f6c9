//! Settings from the environment. The only module that reads environment variables; the names
//! are constants so the SAM template test can hold the template to them.

use std::time::Duration;

/// DynamoDB table holding all state.
pub const TABLE_NAME: &str = "TABLE_NAME";
/// Tenants polled at once by one poll-threats invocation.
pub const POLL_CONCURRENCY: &str = "POLL_CONCURRENCY";
/// How long a token read from Secrets Manager is cached.
pub const SECRET_CACHE_SECONDS: &str = "SECRET_CACHE_SECONDS";
/// Host patterns the functions may call as S1 consoles, and the only hosts a platform URL may
/// name when it resolves to a private, loopback or link-local address (see [`AllowedHosts`]).
pub const ALLOWED_HOSTS: &str = "S1_BRIDGE_ALLOWED_HOSTS";

/// The queue the dispatcher sends poll messages to (the dispatcher's own setting).
pub const POLL_QUEUE_URL: &str = "POLL_QUEUE_URL";
/// The asset sync's queue: the dispatcher sends to it, and `sync-assets` its continuations.
pub const ASSETS_QUEUE_URL: &str = "ASSETS_QUEUE_URL";
/// The token watch's queue (the dispatcher's setting).
pub const TOKENS_QUEUE_URL: &str = "TOKENS_QUEUE_URL";
/// Seconds over which the dispatcher spreads a minute's messages (per-tenant delays).
pub const DISPATCH_SPREAD_SECONDS: &str = "DISPATCH_SPREAD_SECONDS";

/// Every variable the functions read.
pub const ALL: [&str; 8] = [
    TABLE_NAME,
    POLL_CONCURRENCY,
    SECRET_CACHE_SECONDS,
    ALLOWED_HOSTS,
    POLL_QUEUE_URL,
    ASSETS_QUEUE_URL,
    TOKENS_QUEUE_URL,
    DISPATCH_SPREAD_SECONDS,
];

/// A setting is missing or malformed.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ConfigError {
    #[error("environment variable {0} is required")]
    Missing(&'static str),
    #[error("environment variable {var}={value:?} is invalid: {reason}")]
    Invalid {
        var: &'static str,
        value: String,
        reason: String,
    },
}

/// What the functions are configured with.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    pub table_name: String,
    pub poll_concurrency: usize,
    pub secret_cache_ttl: Duration,
    /// `S1_BRIDGE_ALLOWED_HOSTS` (default `*.sentinelone.net`).
    pub allowed_hosts: AllowedHosts,
    /// `POLL_QUEUE_URL`: set for the dispatcher only.
    pub poll_queue_url: Option<String>,
    /// `ASSETS_QUEUE_URL`: set for the dispatcher and `sync-assets` (its continuations).
    pub assets_queue_url: Option<String>,
    /// `TOKENS_QUEUE_URL`: set for the dispatcher only.
    pub tokens_queue_url: Option<String>,
    /// `DISPATCH_SPREAD_SECONDS` (default 50, at most 840).
    pub dispatch_spread: Duration,
}

impl Settings {
    /// From the process environment.
    ///
    /// # Errors
    /// The first missing or malformed variable, by name.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|k| std::env::var(k).ok())
    }

    /// From any lookup (tests pass a map).
    ///
    /// # Errors
    /// The first missing or malformed variable, by name.
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let table_name = get(TABLE_NAME)
            .filter(|v| !v.trim().is_empty())
            .ok_or(ConfigError::Missing(TABLE_NAME))?;
        let number = |var: &'static str, default: u64, max: u64| -> Result<u64, ConfigError> {
            match get(var) {
                None => Ok(default),
                Some(v) => match v.trim().parse::<u64>() {
                    Ok(n) if (1..=max).contains(&n) => Ok(n),
                    _ => Err(ConfigError::Invalid {
                        var,
                        value: v,
                        reason: format!("must be a whole number in 1..={max}"),
                    }),
                },
            }
        };
        Ok(Self {
            table_name,
            poll_concurrency: number(POLL_CONCURRENCY, 4, 64)? as usize,
            secret_cache_ttl: Duration::from_secs(number(SECRET_CACHE_SECONDS, 300, 86_400)?),
            allowed_hosts: match get(ALLOWED_HOSTS) {
                None => AllowedHosts::default(),
                Some(v) => AllowedHosts::parse(&v).map_err(|reason| ConfigError::Invalid {
                    var: ALLOWED_HOSTS,
                    value: v,
                    reason: reason.to_string(),
                })?,
            },
            poll_queue_url: get(POLL_QUEUE_URL).filter(|v| !v.trim().is_empty()),
            assets_queue_url: get(ASSETS_QUEUE_URL).filter(|v| !v.trim().is_empty()),
            tokens_queue_url: get(TOKENS_QUEUE_URL).filter(|v| !v.trim().is_empty()),
            dispatch_spread: Duration::from_secs(number(DISPATCH_SPREAD_SECONDS, 50, 840)?),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn lookup(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        move |k| map.get(k).cloned()
    }

    #[test]
    fn defaults_and_errors_name_the_variable() {
        let s = Settings::from_lookup(lookup(&[(TABLE_NAME, "s1-bridge-state")])).unwrap();
        assert_eq!((s.poll_concurrency, s.secret_cache_ttl), (4, Duration::from_secs(300)));
        assert_eq!(
            (s.poll_queue_url.as_deref(), s.dispatch_spread),
            (None, Duration::from_secs(50))
        );
        let err = Settings::from_lookup(lookup(&[(TABLE_NAME, "t"), (DISPATCH_SPREAD_SECONDS, "900")])).unwrap_err();
        assert!(err.to_string().contains("DISPATCH_SPREAD_SECONDS"), "{err}");
        assert_eq!(
            Settings::from_lookup(lookup(&[])),
            Err(ConfigError::Missing(TABLE_NAME))
        );
        let err = Settings::from_lookup(lookup(&[(TABLE_NAME, "t"), (POLL_CONCURRENCY, "lots")])).unwrap_err();
        assert!(err.to_string().contains("POLL_CONCURRENCY"), "{err}");
        assert!(Settings::from_lookup(lookup(&[(TABLE_NAME, "t"), (POLL_CONCURRENCY, "0")])).is_err());
        assert_eq!(s.allowed_hosts, AllowedHosts::default());
        let s = Settings::from_lookup(lookup(&[
            (TABLE_NAME, "t"),
            (ALLOWED_HOSTS, "*.sentinelone.net, 127.0.0.1"),
        ]))
        .unwrap();
        assert_eq!(s.allowed_hosts.patterns(), ["*.sentinelone.net", "127.0.0.1"]);
        let err = Settings::from_lookup(lookup(&[(TABLE_NAME, "t"), (ALLOWED_HOSTS, "*")])).unwrap_err();
        assert!(err.to_string().contains(ALLOWED_HOSTS), "{err}");
    }
}

/// Console hosts a tenant may point at by default: SentinelOne's SaaS consoles.
pub const DEFAULT_CONSOLE_HOSTS: &str = "*.sentinelone.net";

/// The operator's allow-list of hosts (`S1_BRIDGE_ALLOWED_HOSTS`, `--allow-host`): exact names
/// (`s1.example.com`), subdomain patterns (`*.sentinelone.net`) and IP addresses (`127.0.0.1`).
///
/// - An S1 console must be on a host the list admits, over https; plain http only on a loopback
///   host the list names exactly (`127.0.0.1`, `::1`, `localhost`: the simulator).
/// - A platform URL (a generic webhook, PagerDuty's `events_url`) may be any public https host;
///   a private, loopback or link-local address (as an IP literal, or what a name resolves to,
///   see [`crate::net`]) only when the list admits the host, and plain http only on a loopback
///   host the list names exactly.
///
/// A list given replaces the default (`*.sentinelone.net`): name every console host pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllowedHosts(Vec<String>);

/// A host pattern the allow-list cannot take (the pattern as given).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HostPatternError {
    #[error("allowed host {0:?}: a wildcard is only allowed as a leading `*.` (e.g. *.sentinelone.net)")]
    Wildcard(String),
    #[error("allowed host {0:?}: `*.` must be followed by a domain with at least two labels (e.g. *.sentinelone.net)")]
    ShallowWildcard(String),
    #[error("allowed host {0:?} is not a host name, `*.<domain>` pattern or IP address (no scheme, port or path)")]
    NotAHost(String),
}

/// Why a console or platform URL is refused; `what` names the setting (`console URL`,
/// `webhook URL`, `platform.settings.url`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UrlRefused {
    #[error("{what} {url:?}: {reason}")]
    Unparsable {
        what: String,
        url: String,
        reason: url::ParseError,
    },
    #[error("{what} {url:?} has no host")]
    NoHost { what: String, url: String },
    #[error(
        "console host {host} is not in the allowed hosts ({allowed}); add it to {var} (or --allow-host) if it really is an S1 console",
        var = ALLOWED_HOSTS
    )]
    ConsoleHostNotAllowed { host: String, allowed: String },
    #[error(
        "console URL {url} must be https: plain http would send the API token in clear (http is accepted only for a loopback host named in {var})",
        var = ALLOWED_HOSTS
    )]
    ConsoleHttp { url: String },
    #[error("console URL must be https, not {scheme}")]
    ConsoleScheme { scheme: String },
    #[error(
        "{what} {url} must be https (plain http only for a loopback host named in {var})",
        var = ALLOWED_HOSTS
    )]
    PlainHttp { what: String, url: String },
    #[error("{what} {url} must be https, not {scheme}")]
    Scheme { what: String, url: String, scheme: String },
    #[error(
        "{what} {url} points at {ip}, a private, loopback or link-local address; name it in {var} (or --allow-host) if that receiver is yours",
        var = ALLOWED_HOSTS
    )]
    PrivateAddress {
        what: String,
        url: String,
        ip: std::net::IpAddr,
    },
}

/// Parses `url` for the setting `what` and returns it with its host, normalised.
fn parse_url(what: &str, url: &str) -> Result<(url::Url, String), UrlRefused> {
    let u = url::Url::parse(url.trim()).map_err(|reason| UrlRefused::Unparsable {
        what: what.to_owned(),
        url: url.to_owned(),
        reason,
    })?;
    let host = u.host_str().map(normalize_host).ok_or_else(|| UrlRefused::NoHost {
        what: what.to_owned(),
        url: url.to_owned(),
    })?;
    Ok((u, host))
}

impl Default for AllowedHosts {
    fn default() -> Self {
        Self(vec![DEFAULT_CONSOLE_HOSTS.to_owned()])
    }
}

impl AllowedHosts {
    /// A comma- or space-separated list; an empty list is the default.
    ///
    /// # Errors
    /// The first pattern that is not a host name, `*.<domain>` or an IP address.
    pub fn parse(list: &str) -> Result<Self, HostPatternError> {
        Self::from_patterns(list.split([',', ' ', '\n', '\t']))
    }

    /// From patterns one by one (empty ones are skipped; none at all is the default).
    ///
    /// # Errors
    /// As [`AllowedHosts::parse`].
    pub fn from_patterns<S: AsRef<str>>(patterns: impl IntoIterator<Item = S>) -> Result<Self, HostPatternError> {
        let mut out = Vec::new();
        for p in patterns {
            let p = p.as_ref().trim();
            if p.is_empty() {
                continue;
            }
            let norm = normalize_host(p);
            let name = norm.strip_prefix("*.").unwrap_or(&norm);
            let is_ip = name.parse::<std::net::IpAddr>().is_ok();
            let valid_name = !name.is_empty()
                && name.split('.').all(|l| {
                    !l.is_empty() && l.len() <= 63 && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                });
            if (norm.contains('*') && !norm.starts_with("*.")) || name.contains('*') {
                return Err(HostPatternError::Wildcard(p.to_owned()));
            }
            if norm.starts_with("*.") && (is_ip || !name.contains('.')) {
                return Err(HostPatternError::ShallowWildcard(p.to_owned()));
            }
            if !(is_ip || valid_name) {
                return Err(HostPatternError::NotAHost(p.to_owned()));
            }
            if !out.contains(&norm) {
                out.push(norm);
            }
        }
        Ok(if out.is_empty() { Self::default() } else { Self(out) })
    }

    /// The patterns, normalised (lower case, IPv6 without brackets).
    pub fn patterns(&self) -> &[String] {
        &self.0
    }

    /// Whether `host` (a name or an IP address, IPv6 with or without brackets) matches a pattern.
    pub fn admits(&self, host: &str) -> bool {
        let host = normalize_host(host);
        self.0.iter().any(|p| match p.strip_prefix("*.") {
            Some(suffix) => host.len() > suffix.len() + 1 && host.ends_with(&format!(".{suffix}")),
            None => *p == host,
        })
    }

    /// Whether `host` is listed exactly (not through a `*.` pattern).
    pub fn names(&self, host: &str) -> bool {
        let host = normalize_host(host);
        self.0.contains(&host)
    }

    /// Checks an S1 console URL: a host the list admits, https (plain http only on a loopback host
    /// the list names exactly).
    ///
    /// # Errors
    /// What is wrong with the URL, naming the setting that would allow it.
    pub fn check_console_url(&self, url: &str) -> Result<(), UrlRefused> {
        let (u, host) = parse_url("console URL", url)?;
        if !self.admits(&host) {
            return Err(UrlRefused::ConsoleHostNotAllowed {
                host,
                allowed: self.0.join(", "),
            });
        }
        match u.scheme() {
            "https" => Ok(()),
            "http" if is_loopback_host(&host) && self.names(&host) => Ok(()),
            "http" => Err(UrlRefused::ConsoleHttp { url: url.to_owned() }),
            other => Err(UrlRefused::ConsoleScheme {
                scheme: other.to_owned(),
            }),
        }
    }

    /// Checks a platform URL (`what` names it in errors, e.g. "webhook URL"): https, and an IP
    /// address that is not public only when the list admits it; plain http only on a loopback
    /// host the list names exactly. A name is checked again when it resolves ([`crate::net`]).
    ///
    /// # Errors
    /// What is wrong with the URL, naming the setting that would allow it.
    pub fn check_platform_url(&self, what: &str, url: &str) -> Result<url::Url, UrlRefused> {
        let (u, host) = parse_url(what, url)?;
        let what = what.to_owned();
        match u.scheme() {
            "https" => {}
            "http" if is_loopback_host(&host) && self.names(&host) => {}
            "http" => {
                return Err(UrlRefused::PlainHttp {
                    what,
                    url: u.to_string(),
                });
            }
            other => {
                return Err(UrlRefused::Scheme {
                    what,
                    url: u.to_string(),
                    scheme: other.to_owned(),
                });
            }
        }
        if let Ok(ip) = host.parse::<std::net::IpAddr>() {
            if !crate::ip::is_public(ip) && !self.admits(&host) {
                return Err(UrlRefused::PrivateAddress {
                    what,
                    url: u.to_string(),
                    ip,
                });
            }
        }
        Ok(u)
    }
}

impl std::fmt::Display for AllowedHosts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0.join(","))
    }
}

/// Lower case, without a trailing dot or IPv6 brackets.
fn normalize_host(h: &str) -> String {
    let h = h.trim().trim_end_matches('.').to_ascii_lowercase();
    h.strip_prefix('[')
        .and_then(|x| x.strip_suffix(']'))
        .map(str::to_owned)
        .unwrap_or(h)
}

fn is_loopback_host(host: &str) -> bool {
    host == "localhost" || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod console_tests {
    use super::AllowedHosts;

    /// Checks a console URL against host patterns.
    fn check_console_url(url: &str, allowed: &[String]) -> Result<(), String> {
        AllowedHosts::from_patterns(allowed)
            .map_err(|e| e.to_string())?
            .check_console_url(url)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn allow_list() {
        let default = vec!["*.sentinelone.net".to_owned()];
        assert!(check_console_url("https://acme.sentinelone.net", &default).is_ok());
        assert!(check_console_url("https://ACME.SentinelOne.net.", &default).is_ok());
        assert!(
            check_console_url("http://acme.sentinelone.net", &default)
                .unwrap_err()
                .contains("https")
        );
        assert!(
            check_console_url("https://169.254.169.254", &default)
                .unwrap_err()
                .contains("not in the allowed")
        );
        assert!(check_console_url("https://sentinelone.net.evil.com", &default).is_err());
        assert!(check_console_url("https://evilsentinelone.net", &default).is_err());
        assert!(check_console_url("https://sentinelone.net", &default).is_err());
        let local = vec!["127.0.0.1".to_owned()];
        assert!(check_console_url("http://127.0.0.1:8787", &local).is_ok());
        assert!(check_console_url("http://127.0.0.1:8787", &default).is_err());
        let v6 = AllowedHosts::parse("::1").unwrap();
        assert!(v6.check_console_url("http://[::1]:8787").is_ok());
        // A loopback host admitted by a wildcard is not named: https only.
        let wild = AllowedHosts::parse("*.internal.example").unwrap();
        assert!(wild.check_console_url("https://s1.internal.example").is_ok());
        assert!(wild.check_console_url("http://s1.internal.example").is_err());
    }

    #[test]
    fn refusals_read_as_they_always_have() {
        let default = AllowedHosts::default();
        let console = |url: &str| default.check_console_url(url).unwrap_err().to_string();
        assert_eq!(
            console("https://evil.example"),
            "console host evil.example is not in the allowed hosts (*.sentinelone.net); add it to S1_BRIDGE_ALLOWED_HOSTS (or --allow-host) if it really is an S1 console"
        );
        assert_eq!(
            console("http://acme.sentinelone.net"),
            "console URL http://acme.sentinelone.net must be https: plain http would send the API token in clear (http is accepted only for a loopback host named in S1_BRIDGE_ALLOWED_HOSTS)"
        );
        assert_eq!(
            console("ftp://acme.sentinelone.net"),
            "console URL must be https, not ftp"
        );
        assert_eq!(
            console("nonsense"),
            "console URL \"nonsense\": relative URL without a base"
        );
        let platform = |url: &str| default.check_platform_url("webhook URL", url).unwrap_err().to_string();
        assert_eq!(
            platform("http://hooks.example.com/s1"),
            "webhook URL http://hooks.example.com/s1 must be https (plain http only for a loopback host named in S1_BRIDGE_ALLOWED_HOSTS)"
        );
        assert_eq!(
            platform("ftp://hooks.example.com/s1"),
            "webhook URL ftp://hooks.example.com/s1 must be https, not ftp"
        );
        assert_eq!(
            platform("https://10.1.2.3/s1"),
            "webhook URL https://10.1.2.3/s1 points at 10.1.2.3, a private, loopback or link-local address; name it in S1_BRIDGE_ALLOWED_HOSTS (or --allow-host) if that receiver is yours"
        );
        assert_eq!(platform("mailto:x@y.z"), "webhook URL \"mailto:x@y.z\" has no host");
        let pattern = |p: &str| AllowedHosts::parse(p).unwrap_err().to_string();
        assert_eq!(
            pattern("a*.b.com"),
            "allowed host \"a*.b.com\": a wildcard is only allowed as a leading `*.` (e.g. *.sentinelone.net)"
        );
        assert_eq!(
            pattern("*.com"),
            "allowed host \"*.com\": `*.` must be followed by a domain with at least two labels (e.g. *.sentinelone.net)"
        );
        assert_eq!(
            pattern("x.com:443"),
            "allowed host \"x.com:443\" is not a host name, `*.<domain>` pattern or IP address (no scheme, port or path)"
        );
    }

    #[test]
    fn patterns_are_validated() {
        for bad in [
            "*",
            "*.com",
            "https://x.com",
            "x.com:443",
            "a*.b.com",
            "x.*.com",
            "*.127.0.0.1",
            "a b/c",
        ] {
            assert!(AllowedHosts::from_patterns([bad]).is_err(), "{bad}");
        }
        assert_eq!(AllowedHosts::parse("").unwrap(), AllowedHosts::default());
        assert_eq!(
            AllowedHosts::parse("*.sentinelone.net,127.0.0.1 [::1]")
                .unwrap()
                .patterns(),
            ["*.sentinelone.net", "127.0.0.1", "::1"]
        );
    }

    #[test]
    fn platform_urls() {
        let default = AllowedHosts::default();
        let local = AllowedHosts::parse("127.0.0.1,hooks.internal").unwrap();
        for (url, allowed, ok) in [
            ("https://hooks.example.com/s1", &default, true),
            ("http://hooks.example.com/s1", &default, false),
            ("ftp://hooks.example.com/s1", &default, false),
            ("https://10.1.2.3/s1", &default, false),
            ("https://169.254.169.254/latest", &default, false),
            ("https://[::1]/s1", &default, false),
            ("https://[fd00::1]/s1", &default, false),
            ("https://[::ffff:127.0.0.1]/s1", &default, false),
            ("http://127.0.0.1:9000/s1", &default, false),
            ("http://127.0.0.1:9000/s1", &local, true),
            ("https://127.0.0.1:9000/s1", &local, true),
            ("https://8.8.8.8/s1", &default, true),
            ("https://hooks.internal/s1", &local, true),
            ("http://hooks.internal/s1", &local, false),
        ] {
            assert_eq!(
                allowed.check_platform_url("webhook URL", url).is_ok(),
                ok,
                "{url} with {allowed}"
            );
        }
    }
}
