//! Where the console shows a unified alert. The listing's node (`UnifiedAlert`) carries no link;
//! the detail (`alert(id)`, a `UnifiedAlertDetail`) carries `selfLink`. One detail read per
//! console (made by the listing when a page first holds an alert that is no threat) learns the
//! link's shape, cached for the process, and the poller builds every alert's link from it: a
//! request per console, not per alert. Until it is learnt (or when a console's link does not
//! name the alert), the caller falls back to its own link.

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use serde::Deserialize;
use serde_json::json;

use super::super::S1Client;

const ALERT_LINK: &str = "query AlertLink($id: ID!) {\n  alert(id: $id) { selfLink }\n}";

/// How long a learnt shape is used before it is read again.
const LEARNT_TTL: Duration = Duration::from_secs(6 * 3600);
/// How long a console whose detail read failed, or gave no usable link, is not asked again.
const UNKNOWN_TTL: Duration = Duration::from_secs(15 * 60);

/// A console's link to a unified alert, as a shape: the alert's id between a prefix and a
/// suffix (an absolute URL on the console).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlertLink {
    prefix: String,
    suffix: String,
}

impl AlertLink {
    /// The shape of `self_link`, alert `id`'s own link, on the console at `origin`
    /// (`https://host[:port]`): `None` unless the link is on that console (a path, or an absolute
    /// URL on its origin: a ticket's link is clicked by the SOC) and names the id exactly once.
    pub fn learn(self_link: &str, id: &str, origin: &str) -> Option<Self> {
        let link = self_link.trim();
        let origin = origin.trim_end_matches('/');
        let absolute = if link.starts_with('/') && !link.starts_with("//") {
            format!("{origin}{link}")
        } else {
            let rest = link.strip_prefix(origin)?;
            if !(rest.is_empty() || rest.starts_with(['/', '?', '#'])) {
                return None;
            }
            link.to_owned()
        };
        if !plain(id) || absolute.matches(id).count() != 1 {
            return None;
        }
        let (prefix, suffix) = absolute.split_once(id)?;
        Some(Self {
            prefix: prefix.to_owned(),
            suffix: suffix.to_owned(),
        })
    }

    /// Alert `id`'s link; `None` for an id that could not stand in a URL as it is.
    pub fn of(&self, id: &str) -> Option<String> {
        plain(id).then(|| format!("{}{id}{}", self.prefix, self.suffix))
    }
}

/// An id that needs no escaping in a URL (UAM's ids are letters, digits and dashes).
fn plain(id: &str) -> bool {
    !id.is_empty() && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

type LinkCache = Mutex<HashMap<String, (Option<AlertLink>, Instant)>>;

fn cache() -> &'static LinkCache {
    static CACHE: OnceLock<LinkCache> = OnceLock::new();
    CACHE.get_or_init(Default::default)
}

#[derive(Deserialize)]
struct Data {
    alert: Detail,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Detail {
    self_link: Option<String>,
}

impl S1Client {
    /// What is known of the console's alert link shape: `None` when nothing is (or it is
    /// stale), and [`S1Client::learn_alert_link`] is worth a request; `Some(None)` when the console
    /// lately gave no usable link.
    pub fn alert_link(&self) -> Option<Option<AlertLink>> {
        let c = cache().lock().unwrap_or_else(|e| e.into_inner());
        match c.get(self.api_base()) {
            Some((link, at)) if at.elapsed() < if link.is_some() { LEARNT_TTL } else { UNKNOWN_TTL } => {
                Some(link.clone())
            }
            _ => None,
        }
    }

    /// Forgets what is known of the console's alert link shape: the next listing that meets an
    /// alert that is no threat reads it again.
    pub fn forget_alert_link(&self) {
        cache()
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(self.api_base());
    }

    /// Reads alert `sample`'s `selfLink` and keeps the console's link shape from it. Never fails
    /// the caller: a link is not worth a poll; a failed read is remembered for a while.
    pub async fn learn_alert_link(&self, sample: &str) -> Option<AlertLink> {
        let origin = url::Url::parse(self.api_base())
            .map(|u| u.origin().ascii_serialization())
            .unwrap_or_default();
        let link = match self.graphql::<_, Data>(ALERT_LINK, &json!({ "id": sample })).await {
            Ok(d) => d.alert.self_link.and_then(|l| AlertLink::learn(&l, sample, &origin)),
            Err(e) => {
                tracing::info!(console = %self.api_base(), error = %e, "the unified alert link could not be read; alerts link to the alerts page");
                None
            }
        };
        cache()
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(self.api_base().to_owned(), (link.clone(), Instant::now()));
        link
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ORIGIN: &str = "https://acme.sentinelone.net";

    #[test]
    fn a_path_or_a_link_on_the_console_that_names_the_alert_gives_its_shape() {
        for (link, want) in [
            (
                "/alerts/u-7/overview",
                "https://acme.sentinelone.net/alerts/u-9/overview",
            ),
            (
                "https://acme.sentinelone.net/uam?alertId=u-7&tab=1",
                "https://acme.sentinelone.net/uam?alertId=u-9&tab=1",
            ),
            (
                "https://acme.sentinelone.net/a/u-7",
                "https://acme.sentinelone.net/a/u-9",
            ),
        ] {
            let shape = AlertLink::learn(link, "u-7", ORIGIN).unwrap_or_else(|| panic!("{link}"));
            assert_eq!(shape.of("u-9").as_deref(), Some(want), "{link}");
        }
    }

    #[test]
    fn a_link_off_the_console_or_not_naming_the_alert_once_is_no_shape() {
        for link in [
            "https://acme.sentinelone.net.evil.example/a/u-7",
            "//evil.example/a/u-7",
            "javascript:alert('u-7')",
            "https://acme.sentinelone.net/a/other",
            "https://acme.sentinelone.net/a/u-7/u-7",
            "",
        ] {
            assert_eq!(AlertLink::learn(link, "u-7", ORIGIN), None, "{link}");
        }
        let shape = AlertLink::learn("/a/u-7", "u-7", ORIGIN).unwrap();
        assert_eq!(shape.of("x/../../y"), None, "an id that is not plain makes no link");
    }
}
