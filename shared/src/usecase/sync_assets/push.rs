//! Pushing one customer, site or asset to the platform when its view changed, and the record
//! the snapshot keeps of it.

use serde_json::{Map, Value, json};
use time::OffsetDateTime;

use super::{AssetReport, AssetSettings, Stop};
use crate::platform::{Notice, Platform, PlatformError, SyncChange, Synced};
use crate::store::{AssetKind, AssetRecord};

pub(super) struct Pusher<'a> {
    pub(super) tenant: &'a str,
    pub(super) platform: &'a dyn Platform,
}

/// What is being synced: the object's kind, S1 ids and S1 fields.
pub(super) struct Subject<'a> {
    pub(super) kind: AssetKind,
    pub(super) id: &'a str,
    pub(super) name: Option<&'a str>,
    pub(super) account_id: Option<&'a str>,
    pub(super) site_id: Option<&'a str>,
    pub(super) s1: Map<String, Value>,
}

impl<'a> Subject<'a> {
    pub(super) fn new(kind: AssetKind, id: &'a str) -> Self {
        Self {
            kind,
            id,
            name: None,
            account_id: None,
            site_id: None,
            s1: Map::new(),
        }
    }
}

impl Pusher<'_> {
    /// Pushes one object if its payload changed (or its active flag did), and returns the record
    /// to store, or `None` when nothing changed or the platform refused it.
    pub(super) async fn push(
        &self,
        subject: Subject<'_>,
        payload: Value,
        active: bool,
        known: Option<&AssetRecord>,
        report: &mut AssetReport,
    ) -> Result<Option<AssetRecord>, Stop> {
        let (kind, id) = (subject.kind, subject.id);
        let digest = crate::domain::short_digest(&serde_json::to_vec(&payload).unwrap_or_default());
        if let Some(k) = known.filter(|k| k.digest.is_empty() && k.platform_ref.is_some()) {
            // Mapped by the operator onto an existing record: link it as it is.
            report.linked += 1;
            return Ok(Some(AssetRecord {
                digest,
                active,
                ..k.clone()
            }));
        }
        let change = match known {
            None if !active => return Ok(None), // decommissioned and never seen: nothing to say
            None => SyncChange::Created,
            Some(k) if k.active && !active => SyncChange::Deactivated,
            Some(k) if !k.active && active => SyncChange::Reactivated,
            Some(k) if k.digest != digest && active => SyncChange::Updated,
            Some(_) => {
                report.unchanged += 1;
                return Ok(None);
            }
        };
        let kind_name = match kind {
            AssetKind::Customer => "customer",
            AssetKind::Site => "site",
            AssetKind::Asset => "asset",
        };
        let verb = if change == SyncChange::Deactivated {
            "deactivated"
        } else {
            "upserted"
        };
        let event = format!("{kind_name}.{verb}");
        let fields = match payload {
            Value::Object(m) => m,
            other => Map::from_iter([("value".to_owned(), other)]),
        };
        let notice = Notice::for_synced(Synced {
            id: crate::domain::event_id(self.tenant, &event, id, None)
                .replace("msg_", &format!("msg_{}_", &digest[..8])),
            timestamp: OffsetDateTime::now_utc(),
            kind,
            external_id: id.to_owned(),
            active,
            change,
            name: subject.name.map(str::to_owned),
            account_id: subject.account_id.map(str::to_owned),
            site_id: subject.site_id.map(str::to_owned),
            platform_ref: known.and_then(|k| k.platform_ref.clone()),
            fields,
            s1: subject.s1,
        });
        match self.platform.notify(&notice).await {
            Ok(receipt) => {
                match change {
                    SyncChange::Created => report.created += 1,
                    SyncChange::Updated => report.updated += 1,
                    SyncChange::Reactivated => report.reactivated += 1,
                    SyncChange::Deactivated => report.deactivated += 1,
                }
                // A platform that keeps ids of its own (Halo) answers with the record's id: that
                // is the mapping from now on.
                Ok(Some(AssetRecord {
                    kind,
                    id: id.to_owned(),
                    digest,
                    platform_ref: receipt
                        .platform_ref
                        .or_else(|| known.and_then(|k| k.platform_ref.clone())),
                    active,
                }))
            }
            Err(PlatformError::Rejected { status, .. }) => {
                tracing::warn!(tenant = %self.tenant, id, status, "platform refused an asset event; retried next run");
                report.failed += 1;
                Ok(None)
            }
            Err(e) => Err(e.into()),
        }
    }
}

pub(super) fn scope_payload(
    id: Option<&str>,
    name: Option<&str>,
    extra: Value,
    settings: &AssetSettings,
    site: Option<&str>,
    account: Option<&str>,
) -> Value {
    json!({ "external_id": id, "name": name, "s1": extra, "placement": settings.placement(site, account) })
}
