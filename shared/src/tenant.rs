//! Reading a tenant file the way `tenant add` does: every setting typed, and every mistake
//! named before the tenant is stored (a wrong type, a missing setting, an unknown platform, a
//! key no setting reads, a console or platform URL the allow-list refuses, a mapping override
//! naming a status S1 does not have).

use crate::config::AllowedHosts;
use crate::store::TenantConfig;

/// What is wrong with a tenant file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TenantFileError {
    /// The JSON does not describe a tenant: at `path`, `message`.
    #[error("at `{path}`: {message}")]
    Invalid { path: String, message: String },
    /// Keys no setting reads (a typo would otherwise be silently ignored).
    #[error("unknown setting{} {}", if .0.len() == 1 { "" } else { "s" }, .0.iter().map(|k| format!("`{k}`")).collect::<Vec<_>>().join(", "))]
    Unknown(Vec<String>),
    /// A URL the allow-list refuses.
    #[error(transparent)]
    Url(#[from] crate::config::UrlRefused),
}

/// The most deliveries a tenant may have in flight ([`TenantConfig::max_in_flight`]).
pub const MAX_IN_FLIGHT: u32 = 64;

/// Parses a tenant file strictly and checks its URLs against `allowed`.
///
/// # Errors
/// [`TenantFileError`] naming the first thing wrong.
pub fn parse_tenant(text: &str, allowed: &AllowedHosts) -> Result<TenantConfig, TenantFileError> {
    let mut unknown = Vec::new();
    let tenant: TenantConfig = {
        let json = &mut serde_json::Deserializer::from_str(text);
        let mut track = serde_path_to_error::Track::new();
        let tracked = serde_path_to_error::Deserializer::new(json, &mut track);
        serde_ignored::deserialize(tracked, |path| unknown.push(path.to_string())).map_err(|e| {
            TenantFileError::Invalid {
                path: track.path().to_string(),
                message: e.to_string(),
            }
        })?
    };
    if !unknown.is_empty() {
        return Err(TenantFileError::Unknown(unknown));
    }
    if !(1..=MAX_IN_FLIGHT).contains(&tenant.max_in_flight) {
        return Err(TenantFileError::Invalid {
            path: "max_in_flight".into(),
            message: format!("must be between 1 and {MAX_IN_FLIGHT}"),
        });
    }
    if tenant.sources.is_empty() {
        return Err(TenantFileError::Invalid {
            path: "sources".into(),
            message: "names no source: list at least one of \"threats\", \"star\", \"unified\" (or leave it out for [\"threats\"])".into(),
        });
    }
    for (name, minutes) in tenant.intervals.named() {
        if minutes.is_some_and(|m| !(1..=crate::store::MAX_INTERVAL_MINUTES).contains(&m)) {
            return Err(TenantFileError::Invalid {
                path: format!("intervals.{name}"),
                message: format!(
                    "must be between 1 and {} minutes (a week)",
                    crate::store::MAX_INTERVAL_MINUTES
                ),
            });
        }
    }
    if let crate::platform::PlatformConfig::Generic(crate::platform::settings::Generic { batch: Some(b), .. }) =
        &tenant.platform
        && let Some(message) = b.problem()
    {
        return Err(TenantFileError::Invalid {
            path: "platform.settings.batch".into(),
            message,
        });
    }
    allowed
        .check_console_url(&tenant.console_url)
        .map_err(TenantFileError::Url)?;
    for (name, url) in tenant.platform.urls() {
        allowed
            .check_platform_url(&format!("platform.settings.{name}"), url)
            .map_err(TenantFileError::Url)?;
    }
    Ok(tenant)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(platform: &str, extra: &str) -> String {
        format!(
            r#"{{"id": "acme", "enabled": true, "console_url": "https://acme.sentinelone.net",
                "token": {{"kind": "secrets_manager", "secret_id": "s1-bridge/acme/s1"}},
                "platform": {platform}{extra}}}"#
        )
    }

    const GENERIC: &str = r#"{"kind": "generic", "settings": {"url": "https://hooks.example.com/s1",
        "secret": {"kind": "secrets_manager", "secret_id": "s1-bridge/acme/hook"}}}"#;

    #[test]
    fn a_good_file_reads_and_every_mistake_is_named() {
        let allowed = AllowedHosts::default();
        assert!(parse_tenant(&file(GENERIC, ""), &allowed).is_ok());
        let err = |platform: &str, extra: &str| parse_tenant(&file(platform, extra), &allowed).unwrap_err().to_string();
        assert!(err(r#"{"kind": "halo9", "settings": {}}"#, "").starts_with(
            "at `platform.kind`: unknown variant `halo9`, expected one of `generic`, `pagerduty`, `halo`"
        ),);
        assert!(
            err(
                r#"{"kind": "generic", "settings": {"url": "https://h.example.com"}}"#,
                ""
            )
            .contains("missing field `secret`")
        );
        assert!(err(r#"{"kind": "pagerduty", "settings": {"routing_key": {"kind": "env", "var": "K"}, "events_per_minute": 0}}"#, "").contains("events_per_minute"));
        assert_eq!(
            err(GENERIC, r#", "grouping": "stroy""#).split(':').next(),
            Some("at `grouping`")
        );
        assert_eq!(
            err(GENERIC, r#", "poll_cloud_alert": true"#),
            "unknown setting `poll_cloud_alert`"
        );
        let typo = GENERIC.replace(r#""url""#, r#""uri": "x", "url""#);
        assert_eq!(err(&typo, ""), "unknown setting `platform.settings.uri`");
        assert!(
            err(GENERIC, r#", "mapping_overrides": {"states": {"closed": "done"}}"#)
                .contains("mapping_overrides.states.closed")
        );
        let http = GENERIC.replace("https://hooks", "http://hooks");
        assert!(err(&http, "").contains("platform.settings.url"));
        // Intervals: minutes, a week at most, each job by name.
        let t = parse_tenant(&file(GENERIC, r#", "intervals": {"poll_minutes": 5}"#), &allowed).unwrap();
        assert_eq!((t.intervals.poll_minutes, t.intervals.assets_minutes), (Some(5), None));
        assert_eq!(
            err(GENERIC, r#", "intervals": {"poll_minutes": 0}"#),
            "at `intervals.poll_minutes`: must be between 1 and 10080 minutes (a week)"
        );
        assert!(err(GENERIC, r#", "intervals": {"assets_minutes": 20000}"#).contains("intervals.assets_minutes"));
        assert_eq!(
            err(GENERIC, r#", "intervals": {"poll_minute": 5}"#),
            "unknown setting `intervals.poll_minute`"
        );
    }

    #[test]
    fn sources_default_to_threats_and_the_old_star_setting_still_reads() {
        use crate::store::Source;
        let allowed = AllowedHosts::default();
        let read = |extra: &str| parse_tenant(&file(GENERIC, extra), &allowed);
        let t = read("").unwrap();
        assert_eq!(t.sources, [Source::Threats]);
        assert!(t.reads(Source::Threats) && !t.reads(Source::Star) && !t.reads(Source::Unified));
        let old = read(r#", "poll_cloud_alerts": true"#).unwrap();
        assert!(old.reads(Source::Threats) && old.reads(Source::Star) && !old.reads(Source::Unified));
        let new = read(r#", "sources": ["unified", "star"]"#).unwrap();
        assert!(!new.reads(Source::Threats) && new.reads(Source::Star) && new.reads(Source::Unified));
        let err = read(r#", "sources": ["threats", "uam"]"#).unwrap_err().to_string();
        assert!(
            err.starts_with("at `sources[1]`: unknown variant `uam`, expected one of `threats`, `star`, `unified`"),
            "{err}"
        );
        let err = read(r#", "sources": []"#).unwrap_err().to_string();
        assert!(err.starts_with("at `sources`: names no source"), "{err}");
        // A tenant that keeps the default is stored as before (no `sources` written).
        let stored = serde_json::to_value(&t).unwrap();
        assert!(stored.get("sources").is_none(), "{stored}");
        let back: crate::store::TenantConfig = serde_json::from_value(serde_json::to_value(&new).unwrap()).unwrap();
        assert_eq!(back.sources, [Source::Unified, Source::Star]);
    }
}
