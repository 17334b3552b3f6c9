use serde::{Deserialize, Serialize};

/// One fault to inject: which requests it hits, how many times, and what goes wrong.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct FaultRule {
    /// HTTP method to match (`GET`, `POST`); any when absent.
    #[serde(default)]
    pub method: Option<String>,
    /// API path after `/web/api/v2.1`, e.g. `/threats`. A trailing `*` matches a prefix and a
    /// lone `*` matches every path.
    pub path: String,
    /// Matching requests to let through untouched before the fault starts.
    #[serde(default)]
    pub after: u32,
    /// Matching requests the fault hits, after which it is spent.
    #[serde(default = "one")]
    pub count: u32,
    pub fault: FaultKind,
}

fn one() -> u32 {
    1
}

/// What goes wrong.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum FaultKind {
    /// Answer with this status and S1's error envelope (429s optionally with `Retry-After`).
    Status {
        status: u16,
        #[serde(default)]
        retry_after: Option<String>,
        #[serde(default)]
        code: Option<i64>,
    },
    /// Wait this long, then answer normally.
    Slow { millis: u64 },
    /// Answer normally but cut the JSON body in half (valid HTTP, broken JSON).
    Truncate,
    /// Reset the TCP connection without answering.
    Reset,
    /// GraphQL (`/unifiedalerts/graphql`) only: HTTP 200 with `data: null` and one error whose
    /// `extensions.code` is `code` (e.g. `SURFACE_TOO_MANY_REQUESTS`), as a console answers a
    /// request it could not run.
    GraphqlError {
        code: String,
        #[serde(default)]
        message: Option<String>,
    },
    /// GraphQL only: HTTP 200 with partial data: the first alert node of the page (or a
    /// mutation's result) is `null` and `errors` says why.
    PartialData,
}

impl FaultRule {
    /// `count` requests to `path` (any method) get `fault`.
    pub fn new(path: impl Into<String>, fault: FaultKind, count: u32) -> Self {
        Self {
            method: None,
            path: path.into(),
            after: 0,
            count,
            fault,
        }
    }

    /// Only requests with this method.
    pub fn method(mut self, m: &str) -> Self {
        self.method = Some(m.to_ascii_uppercase());
        self
    }

    /// Let `n` matching requests through first.
    pub fn after(mut self, n: u32) -> Self {
        self.after = n;
        self
    }

    pub(crate) fn matches(&self, method: &str, path: &str) -> bool {
        if let Some(m) = &self.method {
            if !m.eq_ignore_ascii_case(method) {
                return false;
            }
        }
        match self.path.strip_suffix('*') {
            Some(prefix) => path.starts_with(prefix),
            None => self.path == path,
        }
    }
}

/// Installed rules, consumed in order.
#[derive(Debug, Default)]
pub(crate) struct Faults {
    rules: Vec<FaultRule>,
}

impl Faults {
    pub(crate) fn add(&mut self, rule: FaultRule) {
        self.rules.push(rule);
    }

    pub(crate) fn clear(&mut self) {
        self.rules.clear();
    }

    /// The fault for this request, if one is due; spends one use of it.
    pub(crate) fn take(&mut self, method: &str, path: &str) -> Option<FaultKind> {
        let rule = self.rules.iter_mut().find(|r| r.count > 0 && r.matches(method, path))?;
        if rule.after > 0 {
            rule.after -= 1;
            return None;
        }
        rule.count -= 1;
        let fault = rule.fault.clone();
        self.rules.retain(|r| r.count > 0);
        Some(fault)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_count_skip_and_match() {
        let mut f = Faults::default();
        f.add(FaultRule::new("/threats", FaultKind::Truncate, 2).after(1));
        f.add(FaultRule::new("/threats/*", FaultKind::Reset, 1).method("post"));
        assert_eq!(f.take("GET", "/threats"), None, "first one passes");
        assert_eq!(f.take("GET", "/threats"), Some(FaultKind::Truncate));
        assert_eq!(f.take("GET", "/agents"), None);
        assert_eq!(f.take("GET", "/threats/notes"), None, "method must match");
        assert_eq!(f.take("POST", "/threats/notes"), Some(FaultKind::Reset));
        assert_eq!(f.take("GET", "/threats"), Some(FaultKind::Truncate));
        assert_eq!(f.take("GET", "/threats"), None, "spent");
    }
}
