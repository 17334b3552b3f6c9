//! The story behind a platform's alert reference.

use crate::domain::StoryRecord;
use crate::platform::PlatformKind;
use crate::platform::inbound::AlertRef;
use crate::store::{Store, StoreError, Versioned};
use crate::tenant::TenantConfig;

/// Finds the story behind an alert reference, with its item name and whether it is archived.
pub(super) async fn resolve_story(
    store: &Store,
    tenant: &TenantConfig,
    platform: PlatformKind,
    alert: &AlertRef,
) -> Result<Option<(String, bool, Versioned<StoryRecord>)>, StoreError> {
    let by_name = |name: String| async move {
        match store.get_story(&tenant.id, &name).await? {
            Some(s) => {
                let archived = s.value.key != name;
                Ok::<_, StoreError>(Some((name, archived, s)))
            }
            None => Ok(None),
        }
    };
    let by_key = |key: String| async move {
        if let Some(id) = crate::domain::AlertKey::story_id(&key, &tenant.console_url) {
            let Some(story_key) = crate::domain::story_key_of(id) else {
                return Ok(None);
            };
            if let Some(current) = store.get_story(&tenant.id, story_key).await? {
                if current.value.id == id {
                    return Ok(Some((story_key.to_owned(), false, current)));
                }
            }
            return by_name(id.to_owned()).await;
        }
        // A platform-made key (a PagerDuty dedup key) recorded as the story's platform ref.
        match store.story_by_platform_ref(&tenant.id, platform, &key).await? {
            Some(s) => {
                let current = store.get_story(&tenant.id, &s.value.key).await?;
                let archived = current.is_none_or(|c| c.value.id != s.value.id);
                let name = if archived {
                    s.value.id.clone()
                } else {
                    s.value.key.clone()
                };
                Ok(Some((name, archived, s)))
            }
            None => Ok(None),
        }
    };
    match alert {
        AlertRef::Key(k) => by_key(k.clone()).await,
        AlertRef::PlatformId(id) => match store.get_alias(&tenant.id, platform, id).await? {
            Some(name) => by_name(name).await,
            None => Ok(None),
        },
        AlertRef::KeyAndId(k, id) => {
            let found = by_key(k.clone()).await?;
            if let Some((name, _, _)) = &found {
                store.put_alias(&tenant.id, platform, id, name).await?;
            }
            Ok(found)
        }
    }
}
