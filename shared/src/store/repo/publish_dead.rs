//! Publish dead letters: events the platform refused for good, and an operator's replay marks.

use super::{Store, decode, item};
use crate::domain::MemberId;
use crate::store::{Cond, PublishDeadLetter, RecordPage, StoreError, keys};

impl Store {
    /// Stores publish dead letters (batched), each replacing any earlier one of its threat.
    ///
    /// # Errors
    /// Backend errors.
    pub async fn put_publish_dead(&self, tenant: &str, letters: &[PublishDeadLetter]) -> Result<(), StoreError> {
        let pk = keys::tenant(tenant);
        let items = letters
            .iter()
            .map(|l| item(pk.clone(), keys::publish_dead(&l.id), l))
            .collect::<Result<Vec<_>, _>>()?;
        self.table.batch_put(&items).await
    }

    /// A page of a tenant's publish dead letters, in id order.
    ///
    /// # Errors
    /// Backend errors; corrupt record.
    pub async fn list_publish_dead(
        &self,
        tenant: &str,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<RecordPage<PublishDeadLetter>, StoreError> {
        self.query_records(
            &keys::tenant(tenant),
            keys::PUBLISH_DEAD_PREFIX,
            cursor,
            limit,
            "publish dead letter",
        )
        .await
    }

    /// One publish dead letter.
    ///
    /// # Errors
    /// Backend errors; corrupt record.
    pub async fn get_publish_dead(&self, tenant: &str, id: &str) -> Result<Option<PublishDeadLetter>, StoreError> {
        self.get_record(&keys::tenant(tenant), &keys::publish_dead(id), "publish dead letter")
            .await
    }

    /// Asks for a publish dead letter to be sent again by the next poll run: the letter says so
    /// and a replay mark (which the poller lists, cheaply, every run) is written with it.
    ///
    /// # Errors
    /// [`StoreError::Invalid`] when there is no such dead letter; backend errors.
    pub async fn request_publish_replay(&self, tenant: &str, id: &str) -> Result<PublishDeadLetter, StoreError> {
        let mut l = self
            .get_publish_dead(tenant, id)
            .await?
            .ok_or_else(|| StoreError::Invalid(format!("tenant {tenant} has no publish dead letter {id}")))?;
        l.replay_requested = true;
        let pk = keys::tenant(tenant);
        let letter = item(pk.clone(), keys::publish_dead(id), &l)?;
        let mark = item(pk, keys::publish_replay(id), &serde_json::json!({ "id": id }))?;
        self.table
            .put_all(&[(letter, Cond::Always), (mark, Cond::Always)])
            .await?;
        Ok(l)
    }

    /// The publish dead letters an operator asked to send again (at most `limit`), in id order.
    ///
    /// # Errors
    /// Backend errors; corrupt record.
    pub async fn publish_replays(&self, tenant: &str, limit: usize) -> Result<Vec<PublishDeadLetter>, StoreError> {
        let pk = keys::tenant(tenant);
        let marks = self.table.query(&pk, keys::PUBLISH_REPLAY_PREFIX, None, limit).await?;
        if marks.items.is_empty() {
            return Ok(Vec::new());
        }
        // A mark's key part is its letter's.
        let wanted: Vec<(String, String)> = marks
            .items
            .iter()
            .filter_map(|m| m.sk.strip_prefix(keys::PUBLISH_REPLAY_PREFIX))
            .map(|part| (pk.clone(), format!("{}{part}", keys::PUBLISH_DEAD_PREFIX)))
            .collect();
        let mut letters = self
            .table
            .batch_get(&wanted)
            .await?
            .iter()
            .map(|i| decode::<PublishDeadLetter>(i, "publish dead letter"))
            .collect::<Result<Vec<_>, _>>()?;
        letters.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(letters)
    }

    /// Records that a replayed dead letter was refused again: the letter with its new answer,
    /// its replay mark removed.
    ///
    /// # Errors
    /// Backend errors.
    pub async fn refused_again(&self, tenant: &str, letter: &PublishDeadLetter) -> Result<(), StoreError> {
        self.put_publish_dead(tenant, std::slice::from_ref(letter)).await?;
        self.table
            .delete(&keys::tenant(tenant), &keys::publish_replay(&letter.id), &Cond::Always)
            .await
            .map(drop)
    }

    /// Removes publish dead letters (and any replay marks) whose event reached the platform
    /// after all.
    ///
    /// # Errors
    /// Backend errors.
    pub async fn retire_publish_dead(&self, tenant: &str, ids: &[MemberId]) -> Result<(), StoreError> {
        let pk = keys::tenant(tenant);
        for id in ids {
            self.table.delete(&pk, &keys::publish_replay(id), &Cond::Always).await?;
            self.table.delete(&pk, &keys::publish_dead(id), &Cond::Always).await?;
        }
        Ok(())
    }
}
