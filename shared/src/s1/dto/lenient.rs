//! The forgiving decoders every wire type uses: booleans as strings, numbers as ids, `""` as
//! no value, `null` as an empty list, S1's timestamps, and enums that survive values S1 adds.

use serde::{Deserialize, Deserializer};
use time::OffsetDateTime;

macro_rules! lenient_enum {
    ($(#[$m:meta])* $name:ident { $($(#[$vm:meta])* $variant:ident = $wire:literal),+ $(,)? }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, Serialize)]
        pub enum $name {
            $($(#[$vm])* #[serde(rename = $wire)] $variant,)+
            /// A value this version does not know; kept so one odd record never fails a page.
            #[serde(other)]
            Unknown,
        }

        impl $name {
            /// The value as S1 spells it on the wire.
            pub fn as_str(&self) -> &'static str {
                match self {
                    $($name::$variant => $wire,)+
                    $name::Unknown => "unknown",
                }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}
pub(super) use lenient_enum;

/// Accepts `true`, `"True"`, `"true"`, `"1"`, `null` and friends.
pub fn lenient_bool<'de, D: Deserializer<'de>>(d: D) -> Result<Option<bool>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum B {
        Bool(bool),
        Str(String),
        Num(i64),
    }
    Ok(match Option::<B>::deserialize(d)? {
        None => None,
        Some(B::Bool(b)) => Some(b),
        Some(B::Num(n)) => Some(n != 0),
        Some(B::Str(s)) => match s.trim().to_ascii_lowercase().as_str() {
            "true" | "yes" | "1" => Some(true),
            "false" | "no" | "0" => Some(false),
            "" => None,
            other => {
                return Err(serde::de::Error::custom(format!(
                    "expected a boolean or a boolean string, got {other:?}"
                )));
            }
        },
    })
}

/// Accepts an RFC 3339 timestamp (with or without fraction), `null` or `""`.
pub fn lenient_time<'de, D: Deserializer<'de>>(d: D) -> Result<Option<OffsetDateTime>, D::Error> {
    match Option::<String>::deserialize(d)? {
        None => Ok(None),
        Some(s) if s.is_empty() => Ok(None),
        Some(s) => parse_time(&s)
            .map(Some)
            .map_err(|e| serde::de::Error::custom(format!("invalid timestamp {s:?}: {e}"))),
    }
}

/// Parses S1's timestamps: RFC 3339 with optional microseconds and `Z`.
pub fn parse_time(s: &str) -> Result<OffsetDateTime, time::error::Parse> {
    OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
}

/// Formats a timestamp the way S1 writes them: UTC, microseconds, `Z`.
pub fn format_time(t: OffsetDateTime) -> String {
    let t = t.to_offset(time::UtcOffset::UTC);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:06}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        t.microsecond()
    )
}

/// Accepts a string, a number (some consoles send numeric ids) or `null`; an empty (or blank)
/// string is `None`, as S1 means it.
pub fn lenient_string<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum S {
        Str(String),
        Int(i64),
        UInt(u64),
        Float(f64),
        Bool(bool),
    }
    Ok(Option::<S>::deserialize(d)?.and_then(|s| match s {
        // A console sends "" for a field it has no value for: that is no value.
        S::Str(s) if s.trim().is_empty() => None,
        S::Str(s) => Some(s),
        S::Int(n) => Some(n.to_string()),
        S::UInt(n) => Some(n.to_string()),
        S::Float(n) => Some(n.to_string()),
        S::Bool(b) => Some(b.to_string()),
    }))
}

/// `null` as an empty list.
pub fn null_as_empty<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Vec<T>, D::Error> {
    Ok(Option::<Vec<T>>::deserialize(d)?.unwrap_or_default())
}
