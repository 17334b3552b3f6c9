//! A named check and what it found: what `tenant test` reports, and what each platform adds for
//! its own settings ([`Platform::check_settings`](super::Platform::check_settings)). Here, below
//! the use cases, so the platform port does not import the test that runs it.

use serde::Serialize;

/// How a check came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CheckStatus {
    Ok,
    Fail,
    /// Not run: what it needs failed before (said in the detail).
    Skip,
}

/// One named check and what it found (fields in the order the JSON output has them).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Check {
    pub check: String,
    /// What was found, or what is wrong.
    pub detail: String,
    /// `status` is `ok`.
    pub ok: bool,
    pub status: CheckStatus,
}

impl Check {
    /// A check that passed.
    pub fn ok(name: &str, detail: impl Into<String>) -> Self {
        Self::new(name, CheckStatus::Ok, detail.into())
    }

    /// A check that failed, saying why.
    pub fn fail(name: &str, detail: impl Into<String>) -> Self {
        Self::new(name, CheckStatus::Fail, detail.into())
    }

    /// A check not run, saying why.
    pub fn skip(name: &str, why: &str) -> Self {
        Self::new(name, CheckStatus::Skip, format!("skipped: {why}"))
    }

    /// `ok` or `fail` as `result` is.
    pub fn of<E: std::fmt::Display>(name: &str, result: Result<String, E>) -> Self {
        match result {
            Ok(detail) => Self::ok(name, detail),
            Err(e) => Self::fail(name, e.to_string()),
        }
    }

    fn new(name: &str, status: CheckStatus, detail: String) -> Self {
        Self {
            check: name.to_owned(),
            detail,
            ok: status == CheckStatus::Ok,
            status,
        }
    }
}
