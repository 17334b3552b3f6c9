//! The forgiving decoders every wire type uses: booleans as strings, numbers as ids, `""` as
//! no value, `null` as an empty list, S1's timestamps, and enums that survive values S1 adds.

use serde::de::{self, Visitor};
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

/// `null` as `None`, anything else given to the inner visitor. The lenient decoders visit values
/// in place through it: no intermediate buffer (an untagged enum cost two allocations a field).
struct Nullable<V>(V);

impl<'de, T, V: Visitor<'de, Value = Option<T>>> Visitor<'de> for Nullable<V> {
    type Value = Option<T>;
    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.expecting(f)
    }
    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self.0)
    }
}

/// Accepts `true`, `"True"`, `"true"`, `"1"`, `null` and friends.
pub fn lenient_bool<'de, D: Deserializer<'de>>(d: D) -> Result<Option<bool>, D::Error> {
    struct V;
    impl<'de> Visitor<'de> for V {
        type Value = Option<bool>;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("a boolean, a boolean string, a number or null")
        }
        fn visit_bool<E: de::Error>(self, b: bool) -> Result<Self::Value, E> {
            Ok(Some(b))
        }
        fn visit_i64<E: de::Error>(self, n: i64) -> Result<Self::Value, E> {
            Ok(Some(n != 0))
        }
        fn visit_u64<E: de::Error>(self, n: u64) -> Result<Self::Value, E> {
            Ok(Some(n != 0))
        }
        fn visit_str<E: de::Error>(self, s: &str) -> Result<Self::Value, E> {
            match s.trim().to_ascii_lowercase().as_str() {
                "true" | "yes" | "1" => Ok(Some(true)),
                "false" | "no" | "0" => Ok(Some(false)),
                "" => Ok(None),
                other => Err(E::custom(format!(
                    "expected a boolean or a boolean string, got {other:?}"
                ))),
            }
        }
    }
    d.deserialize_option(Nullable(V))
}

/// Accepts an RFC 3339 timestamp (with or without fraction), `null` or `""`.
pub fn lenient_time<'de, D: Deserializer<'de>>(d: D) -> Result<Option<OffsetDateTime>, D::Error> {
    struct V;
    impl<'de> Visitor<'de> for V {
        type Value = Option<OffsetDateTime>;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("an RFC 3339 timestamp or null")
        }
        fn visit_str<E: de::Error>(self, s: &str) -> Result<Self::Value, E> {
            if s.is_empty() {
                return Ok(None);
            }
            parse_time(s)
                .map(Some)
                .map_err(|e| E::custom(format!("invalid timestamp {s:?}: {e}")))
        }
    }
    d.deserialize_option(Nullable(V))
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
    struct V;
    impl<'de> Visitor<'de> for V {
        type Value = Option<String>;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("a string, a number, a boolean or null")
        }
        // A console sends "" for a field it has no value for: that is no value.
        fn visit_str<E: de::Error>(self, s: &str) -> Result<Self::Value, E> {
            Ok((!s.trim().is_empty()).then(|| s.to_owned()))
        }
        fn visit_string<E: de::Error>(self, s: String) -> Result<Self::Value, E> {
            Ok((!s.trim().is_empty()).then_some(s))
        }
        fn visit_i64<E: de::Error>(self, n: i64) -> Result<Self::Value, E> {
            Ok(Some(n.to_string()))
        }
        fn visit_u64<E: de::Error>(self, n: u64) -> Result<Self::Value, E> {
            Ok(Some(n.to_string()))
        }
        fn visit_f64<E: de::Error>(self, n: f64) -> Result<Self::Value, E> {
            Ok(Some(n.to_string()))
        }
        fn visit_bool<E: de::Error>(self, b: bool) -> Result<Self::Value, E> {
            Ok(Some(b.to_string()))
        }
    }
    d.deserialize_option(Nullable(V))
}

/// `null` as an empty list.
pub fn null_as_empty<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Vec<T>, D::Error> {
    Ok(Option::<Vec<T>>::deserialize(d)?.unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    use super::*;

    #[derive(Debug, Deserialize)]
    struct Fields {
        #[serde(default, deserialize_with = "lenient_string")]
        s: Option<String>,
        #[serde(default, deserialize_with = "lenient_bool")]
        b: Option<bool>,
        #[serde(default, deserialize_with = "lenient_time")]
        t: Option<OffsetDateTime>,
    }

    fn decode(json: &str) -> Result<Fields, String> {
        serde_json::from_str(json).map_err(|e| e.to_string())
    }

    #[test]
    fn strings_numbers_and_blanks() {
        let s = |json: &str| decode(&format!(r#"{{"s": {json}}}"#)).unwrap().s;
        assert_eq!(s(r#""abc""#).as_deref(), Some("abc"));
        assert_eq!(s(r#""a\"b""#).as_deref(), Some("a\"b"), "escaped strings too");
        assert_eq!(s("1234567890123456789").as_deref(), Some("1234567890123456789"));
        assert_eq!(s("-5").as_deref(), Some("-5"));
        assert_eq!(s("18446744073709551615").as_deref(), Some("18446744073709551615"));
        assert_eq!(s("1.5").as_deref(), Some("1.5"));
        assert_eq!(s("true").as_deref(), Some("true"));
        assert_eq!(s("null"), None);
        assert_eq!(s(r#""""#), None);
        assert_eq!(s(r#""   ""#), None);
        assert_eq!(decode("{}").unwrap().s, None, "absent");
        let e = decode(r#"{"s": {"x": 1}}"#).unwrap_err();
        assert!(e.contains("a string, a number, a boolean or null"), "{e}");
        assert!(decode(r#"{"s": [1]}"#).is_err());
    }

    #[test]
    fn booleans_in_every_spelling() {
        let b = |json: &str| decode(&format!(r#"{{"b": {json}}}"#)).map(|f| f.b);
        for yes in ["true", r#""True""#, r#""yes""#, r#"" 1 ""#, "1", "7"] {
            assert_eq!(b(yes), Ok(Some(true)), "{yes}");
        }
        for no in ["false", r#""FALSE""#, r#""no""#, r#""0""#, "0"] {
            assert_eq!(b(no), Ok(Some(false)), "{no}");
        }
        assert_eq!(b("null"), Ok(None));
        assert_eq!(b(r#""""#), Ok(None));
        let e = b(r#""maybe""#).unwrap_err();
        assert!(e.contains(r#"got "maybe""#), "{e}");
        assert!(b("{}").is_err());
    }

    #[test]
    fn timestamps_with_and_without_fraction() {
        let t = |json: &str| decode(&format!(r#"{{"t": {json}}}"#)).map(|f| f.t);
        let at = parse_time("2024-05-01T10:00:00Z").unwrap();
        assert_eq!(t(r#""2024-05-01T10:00:00Z""#), Ok(Some(at)));
        assert_eq!(
            t(r#""2024-05-01T10:00:00.123456Z""#),
            Ok(Some(at + time::Duration::microseconds(123_456)))
        );
        assert_eq!(t("null"), Ok(None));
        assert_eq!(t(r#""""#), Ok(None));
        let e = t(r#""yesterday""#).unwrap_err();
        assert!(e.contains(r#"invalid timestamp "yesterday""#), "{e}");
        assert!(t("1714557600").is_err(), "a number is not a timestamp");
    }
}
