//! How far a source's polling has come: the checkpoint, and the write-ahead record of the page
//! being sent.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use super::MemberId;

/// Polling watermark: the newest `updatedAt` handled and ids already handled at exactly that
/// instant (`updatedAt__gte` returns them again). The id list is a shortcut, capped in size by the
/// poller: an id at the watermark that is not listed is recognised through its story instead.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Checkpoint {
    #[serde(with = "time::serde::rfc3339::option")]
    pub watermark: Option<OffsetDateTime>,
    #[serde(default)]
    pub ids_at_watermark: Vec<String>,
}

/// The updates a page is about to send, written before it sends them (a write-ahead record): if
/// the page is never committed (a kill, a failed commit), the next run marks each member
/// [`unsure`](super::MemberState::unsure) whose story still holds an older version, so the platform is
/// never left on a version the poller did not record. One per source and slot (two slots: at
/// most two pages are uncommitted at once); a record whose page's checkpoint the stored one has
/// passed is spent and ignored, so none is ever deleted.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct InFlight {
    /// The newest stamp of the page, and the id of a candidate carrying it: the page is
    /// committed once the stored checkpoint covers that candidate.
    #[serde(with = "time::serde::rfc3339::option")]
    pub watermark: Option<OffsetDateTime>,
    pub last: String,
    /// Each update's story (item name), member and version.
    pub members: Vec<InFlightMember>,
}

/// One update of an [`InFlight`] page.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InFlightMember {
    pub story: String,
    pub id: MemberId,
    #[serde(with = "time::serde::rfc3339::option")]
    pub updated_at: Option<OffsetDateTime>,
}

impl InFlight {
    /// Whether `stored` (the source's checkpoint as stored) covers this page, so the page was
    /// committed and this record is spent. (A page's last id may not be listed at the watermark
    /// when the list is full: the record is then taken as not spent, which only costs a look at
    /// its stories, whose members hold the versions sent.)
    pub fn committed_by(&self, stored: Option<&Checkpoint>) -> bool {
        let Some(page) = self.watermark else { return true };
        match stored.and_then(|c| c.watermark) {
            Some(w) if w > page => true,
            Some(w) if w == page => stored.is_some_and(|c| c.ids_at_watermark.contains(&self.last)),
            _ => false,
        }
    }
}
