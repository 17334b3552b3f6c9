//! Settings from the environment. The only module that reads environment variables; the names
//! are constants so the SAM template test can hold the template to them.

use std::time::Duration;

/// DynamoDB table holding all state.
pub const TABLE_NAME: &str = "TABLE_NAME";
/// Tenants polled at once by one poll-threats invocation.
pub const POLL_CONCURRENCY: &str = "POLL_CONCURRENCY";
/// How long a token read from Secrets Manager is cached.
pub const SECRET_CACHE_SECONDS: &str = "SECRET_CACHE_SECONDS";

/// Every variable the functions read.
pub const ALL: [&str; 3] = [TABLE_NAME, POLL_CONCURRENCY, SECRET_CACHE_SECONDS];

/// A setting is missing or malformed.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ConfigError {
    #[error("environment variable {0} is required")]
    Missing(&'static str),
    #[error("environment variable {var}={value:?} is invalid: {reason}")]
    Invalid {
        var: &'static str,
        value: String,
        reason: &'static str,
    },
}

/// What the functions are configured with.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    pub table_name: String,
    pub poll_concurrency: usize,
    pub secret_cache_ttl: Duration,
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
                        reason: "must be a whole number in range",
                    }),
                },
            }
        };
        Ok(Self {
            table_name,
            poll_concurrency: number(POLL_CONCURRENCY, 4, 64)? as usize,
            secret_cache_ttl: Duration::from_secs(number(SECRET_CACHE_SECONDS, 300, 86_400)?),
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
            Settings::from_lookup(lookup(&[])),
            Err(ConfigError::Missing(TABLE_NAME))
        );
        let err = Settings::from_lookup(lookup(&[(TABLE_NAME, "t"), (POLL_CONCURRENCY, "lots")])).unwrap_err();
        assert!(err.to_string().contains("POLL_CONCURRENCY"), "{err}");
        assert!(Settings::from_lookup(lookup(&[(TABLE_NAME, "t"), (POLL_CONCURRENCY, "0")])).is_err());
    }
}

/// Console hosts a tenant may point at by default: SentinelOne's SaaS consoles.
pub const DEFAULT_CONSOLE_HOSTS: &str = "*.sentinelone.net";

/// Checks a tenant's console URL against an allow-list of host patterns (`*.sentinelone.net`,
/// `s1.example.com`), so a tenant config cannot point the functions at internal addresses.
/// https only; plain http is accepted for loopback hosts that the allow-list names exactly (the
/// simulator).
///
/// # Errors
/// What is wrong with the URL.
pub fn check_console_url(url: &str, allowed: &[String]) -> Result<(), String> {
    let u = url::Url::parse(url).map_err(|e| format!("console URL {url:?}: {e}"))?;
    let host = u
        .host_str()
        .ok_or_else(|| format!("console URL {url:?} has no host"))?
        .to_ascii_lowercase();
    let matches = |p: &String| {
        let p = p.trim().to_ascii_lowercase();
        match p.strip_prefix("*.") {
            Some(suffix) => host.ends_with(&format!(".{suffix}")),
            None => host == p,
        }
    };
    if !allowed.iter().any(matches) {
        return Err(format!(
            "console host {host} is not in the allowed hosts ({})",
            allowed.join(", ")
        ));
    }
    let loopback = matches!(host.as_str(), "127.0.0.1" | "localhost" | "[::1]");
    match u.scheme() {
        "https" => Ok(()),
        "http" if loopback => Ok(()),
        other => Err(format!("console URL must be https, not {other}")),
    }
}

#[cfg(test)]
mod console_tests {
    use super::check_console_url;

    #[test]
    fn allow_list() {
        let default = vec!["*.sentinelone.net".to_owned()];
        assert!(check_console_url("https://acme.sentinelone.net", &default).is_ok());
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
        let local = vec!["127.0.0.1".to_owned()];
        assert!(check_console_url("http://127.0.0.1:8787", &local).is_ok());
    }
}
