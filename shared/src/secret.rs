//! Secret values that must never reach a log, an error message or `Debug` output.

use secrecy::{ExposeSecret, SecretString};
use std::fmt;

/// An S1 API token.
///
/// `Debug` and `Display` print a redaction, never the value; the only way to read it is
/// [`ApiToken::expose`], which the HTTP layer calls when it builds the `Authorization` header.
#[derive(Clone)]
pub struct ApiToken(SecretString);

impl ApiToken {
    /// Wraps a token value. Surrounding whitespace (a trailing newline from a file or a
    /// copy-paste) is trimmed, since S1 never issues tokens with it.
    pub fn new(value: impl Into<String>) -> Self {
        let value: String = value.into();
        Self(SecretString::from(value.trim().to_owned()))
    }

    /// The token value, for building the `Authorization` header and nothing else.
    pub fn expose(&self) -> &str {
        self.0.expose_secret()
    }

    /// True when the token is empty, which S1 would reject with a 401.
    pub fn is_empty(&self) -> bool {
        self.expose().is_empty()
    }
}

impl fmt::Debug for ApiToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiToken(<redacted>)")
    }
}

impl fmt::Display for ApiToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl PartialEq for ApiToken {
    fn eq(&self, other: &Self) -> bool {
        self.expose() == other.expose()
    }
}

impl<'de> serde::Deserialize<'de> for ApiToken {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(ApiToken::new)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_and_display_never_show_the_token() {
        let t = ApiToken::new("sEcReT-value-123\n");
        assert_eq!(t.expose(), "sEcReT-value-123");
        let shown = format!("{t:?} {t} {:?}", Some(&t));
        assert!(!shown.contains("sEcReT"), "leaked: {shown}");
    }
}
