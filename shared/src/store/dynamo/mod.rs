//! The DynamoDB backend. It reaches DynamoDB only through the SDK's normal configuration, so
//! `AWS_ENDPOINT_URL_DYNAMODB` points it at DynamoDB Local in tests with no test hook here.

mod condition;
mod errors;
mod item;

use std::collections::HashMap;
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, GlobalSecondaryIndex, KeySchemaElement, KeyType,
    KeysAndAttributes, Projection, ProjectionType, Put, PutRequest, ScalarAttributeType, TimeToLiveSpecification,
    TransactWriteItem, WriteRequest,
};

use self::condition::condition;
use self::errors::{cancelled, classify, on_item};
use self::item::{from_attrs, s, to_attrs};
use super::repo::check_size;
use super::schema::{self, BATCH_GET_MAX, BATCH_WRITE_MAX};
use super::{Cond, Item, ItemPage, ItemTable, StoreError, now_secs};

/// The DynamoDB implementation of [`ItemTable`] over one table.
#[derive(Clone, Debug)]
pub struct DynamoTable {
    client: Client,
    table: String,
    /// DynamoDB API calls made, for the benchmark's requests-per-threat figure.
    requests: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

/// Rounds of retries for unprocessed batch items before giving up as throttled.
const UNPROCESSED_ROUNDS: u32 = 8;

async fn backoff(round: u32) {
    let ms = 25u64 << round.min(6);
    tokio::time::sleep(Duration::from_millis(ms + fastish_jitter(ms))).await;
}

fn fastish_jitter(ms: u64) -> u64 {
    // Spread retries of parallel writers without a random-number dependency.
    (time::OffsetDateTime::now_utc().nanosecond() as u64) % (ms / 2 + 1)
}

impl DynamoTable {
    /// Over `table`, with a client built once at cold start.
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self {
            client,
            table: table.into(),
            requests: Default::default(),
        }
    }

    /// DynamoDB API calls this table (and its clones) made so far.
    pub fn requests(&self) -> u64 {
        self.requests.load(std::sync::atomic::Ordering::Relaxed)
    }

    fn count(&self) {
        self.requests.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    /// Over `table`, configured from the environment (region, credentials, endpoint overrides).
    pub async fn from_env(table: impl Into<String>) -> Self {
        let config = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
        Self::new(Client::new(&config), table)
    }

    /// The table name.
    pub fn table_name(&self) -> &str {
        &self.table
    }

    fn live(&self, m: &HashMap<String, AttributeValue>) -> Result<Option<Item>, StoreError> {
        let i = from_attrs(m)?;
        Ok((!i.expired(now_secs())).then_some(i))
    }

    async fn query_raw(
        &self,
        op: &'static str,
        index: bool,
        key_value: &str,
        sk_prefix: &str,
        start: Option<HashMap<String, AttributeValue>>,
        limit: usize,
    ) -> Result<ItemPage, StoreError> {
        let mut q = self
            .client
            .query()
            .table_name(&self.table)
            .limit(limit.clamp(1, 1000) as i32);
        if index {
            q = q
                .index_name(schema::GSI1)
                .key_condition_expression("#g = :g")
                .expression_attribute_names("#g", schema::GSI1_PK)
                .expression_attribute_values(":g", s(key_value));
        } else {
            q = q
                .consistent_read(true)
                .key_condition_expression("#pk = :pk AND begins_with(#sk, :prefix)")
                .expression_attribute_names("#pk", schema::PK)
                .expression_attribute_names("#sk", schema::SK)
                .expression_attribute_values(":pk", s(key_value))
                .expression_attribute_values(":prefix", s(sk_prefix));
        }
        self.count();
        let out = q
            .set_exclusive_start_key(start)
            .send()
            .await
            .map_err(|e| classify(op, &self.table, e))?;
        let mut items = Vec::new();
        for m in out.items() {
            if let Some(i) = self.live(m)? {
                items.push(i);
            }
        }
        let text = |m: &HashMap<String, AttributeValue>, k: &str| {
            m.get(k).and_then(|v| v.as_s().ok()).cloned().unwrap_or_default()
        };
        let next = out.last_evaluated_key().map(|k| {
            if index {
                serde_json::json!([text(k, schema::GSI1_SK), text(k, schema::PK), text(k, schema::SK)]).to_string()
            } else {
                text(k, schema::SK)
            }
        });
        Ok(ItemPage { items, next })
    }
}

/// Creates the state table with the key schema, index and TTL of the SAM template (on-demand).
///
/// # Errors
/// Backend errors (e.g. the table exists already).
pub async fn create_table(client: &Client, table: &str) -> Result<(), StoreError> {
    let attr = |name: &str| {
        AttributeDefinition::builder()
            .attribute_name(name)
            .attribute_type(ScalarAttributeType::S)
            .build()
            .expect("name and type are set")
    };
    let key = |name: &str, kind: KeyType| {
        KeySchemaElement::builder()
            .attribute_name(name)
            .key_type(kind)
            .build()
            .expect("set")
    };
    let gsi = GlobalSecondaryIndex::builder()
        .index_name(schema::GSI1)
        .key_schema(key(schema::GSI1_PK, KeyType::Hash))
        .key_schema(key(schema::GSI1_SK, KeyType::Range))
        .projection(Projection::builder().projection_type(ProjectionType::All).build())
        .build()
        .expect("index fields are set");
    client
        .create_table()
        .table_name(table)
        .billing_mode(BillingMode::PayPerRequest)
        .attribute_definitions(attr(schema::PK))
        .attribute_definitions(attr(schema::SK))
        .attribute_definitions(attr(schema::GSI1_PK))
        .attribute_definitions(attr(schema::GSI1_SK))
        .key_schema(key(schema::PK, KeyType::Hash))
        .key_schema(key(schema::SK, KeyType::Range))
        .global_secondary_indexes(gsi)
        .send()
        .await
        .map_err(|e| classify("create_table", table, e))?;
    client
        .update_time_to_live()
        .table_name(table)
        .time_to_live_specification(
            TimeToLiveSpecification::builder()
                .attribute_name(schema::TTL)
                .enabled(true)
                .build()
                .expect("set"),
        )
        .send()
        .await
        .map_err(|e| classify("update_time_to_live", table, e))?;
    Ok(())
}

#[async_trait]
impl ItemTable for DynamoTable {
    async fn get(&self, pk: &str, sk: &str) -> Result<Option<Item>, StoreError> {
        self.count();
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key(schema::PK, s(pk))
            .key(schema::SK, s(sk))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| classify("get", &self.table, e))?;
        match out.item() {
            Some(m) => self.live(m),
            None => Ok(None),
        }
    }

    async fn batch_get(&self, keys: &[(String, String)]) -> Result<Vec<Item>, StoreError> {
        let mut out = Vec::new();
        let mut unique: Vec<&(String, String)> = keys.iter().collect();
        unique.sort();
        unique.dedup(); // DynamoDB refuses a batch that names one key twice.
        for chunk in unique.chunks(BATCH_GET_MAX) {
            let mut request = KeysAndAttributes::builder().consistent_read(true);
            for (pk, sk) in chunk {
                request = request.keys(HashMap::from([
                    (schema::PK.to_owned(), s(pk)),
                    (schema::SK.to_owned(), s(sk)),
                ]));
            }
            let mut pending = Some(request.build().map_err(|e| StoreError::Invalid(e.to_string()))?);
            let mut round = 0;
            while let Some(req) = pending.take() {
                self.count();
                let resp = self
                    .client
                    .batch_get_item()
                    .request_items(&self.table, req)
                    .send()
                    .await
                    .map_err(|e| classify("batch_get", &self.table, e))?;
                if let Some(found) = resp.responses().and_then(|r| r.get(&self.table)) {
                    for m in found {
                        if let Some(i) = self.live(m)? {
                            out.push(i);
                        }
                    }
                }
                if let Some(left) = resp
                    .unprocessed_keys()
                    .and_then(|u| u.get(&self.table))
                    .filter(|k| !k.keys().is_empty())
                {
                    round += 1;
                    if round > UNPROCESSED_ROUNDS {
                        return Err(StoreError::Throttled { op: "batch_get" });
                    }
                    backoff(round).await;
                    pending = Some(left.clone());
                }
            }
        }
        Ok(out)
    }

    async fn put(&self, item: &Item, cond: &Cond) -> Result<bool, StoreError> {
        check_size(item)?;
        let mut req = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(to_attrs(item)));
        if let Some(expr) = condition(cond) {
            req = req
                .condition_expression(expr.text)
                .set_expression_attribute_names(Some(expr.names))
                .set_expression_attribute_values(Some(expr.values));
        }
        self.count();
        match req.send().await {
            Ok(_) => Ok(true),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_conditional_check_failed_exception()) =>
            {
                Ok(false)
            }
            Err(e) => Err(on_item(classify("put", &self.table, e), &item.pk, &item.sk)),
        }
    }

    async fn batch_put(&self, items: &[Item]) -> Result<(), StoreError> {
        for chunk in items.chunks(BATCH_WRITE_MAX) {
            let mut writes = Vec::with_capacity(chunk.len());
            for i in chunk {
                check_size(i)?;
                let put = PutRequest::builder()
                    .set_item(Some(to_attrs(i)))
                    .build()
                    .map_err(|e| StoreError::Invalid(e.to_string()))?;
                writes.push(WriteRequest::builder().put_request(put).build());
            }
            let mut round = 0;
            while !writes.is_empty() {
                self.count();
                let resp = self
                    .client
                    .batch_write_item()
                    .request_items(&self.table, writes)
                    .send()
                    .await
                    .map_err(|e| classify("batch_put", &self.table, e))?;
                writes = resp
                    .unprocessed_items()
                    .and_then(|u| u.get(&self.table))
                    .cloned()
                    .unwrap_or_default();
                if !writes.is_empty() {
                    round += 1;
                    if round > UNPROCESSED_ROUNDS {
                        return Err(StoreError::Throttled { op: "batch_put" });
                    }
                    backoff(round).await;
                }
            }
        }
        Ok(())
    }

    async fn put_all(&self, items: &[(Item, Cond)]) -> Result<Vec<usize>, StoreError> {
        if items.is_empty() {
            return Ok(Vec::new());
        }
        if items.len() > schema::TRANSACT_MAX {
            return Err(StoreError::Invalid(format!(
                "{} items in one transaction; the limit is {}",
                items.len(),
                schema::TRANSACT_MAX
            )));
        }
        let mut actions = Vec::with_capacity(items.len());
        for (item, cond) in items {
            check_size(item)?;
            let mut put = Put::builder().table_name(&self.table).set_item(Some(to_attrs(item)));
            if let Some(expr) = condition(cond) {
                put = put
                    .condition_expression(expr.text)
                    .set_expression_attribute_names(Some(expr.names))
                    .set_expression_attribute_values(Some(expr.values));
            }
            let put = put.build().map_err(|e| StoreError::Invalid(e.to_string()))?;
            actions.push(TransactWriteItem::builder().put(put).build());
        }
        self.count();
        match self
            .client
            .transact_write_items()
            .set_transact_items(Some(actions))
            .send()
            .await
        {
            Ok(_) => Ok(Vec::new()),
            Err(e) => {
                let reasons: Option<Vec<Option<String>>> = e
                    .as_service_error()
                    .filter(|s| s.is_transaction_canceled_exception())
                    .and_then(|s| match s {
                        aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError::TransactionCanceledException(c) => {
                            Some(c.cancellation_reasons().iter().map(|r| r.code().map(str::to_owned)).collect())
                        }
                        _ => None,
                    });
                match reasons {
                    Some(codes) => cancelled(&codes, items),
                    None => Err(classify("put_all", &self.table, e)),
                }
            }
        }
    }

    async fn delete(&self, pk: &str, sk: &str, cond: &Cond) -> Result<bool, StoreError> {
        let mut req = self
            .client
            .delete_item()
            .table_name(&self.table)
            .key(schema::PK, s(pk))
            .key(schema::SK, s(sk));
        if let Some(expr) = condition(cond) {
            req = req
                .condition_expression(expr.text)
                .set_expression_attribute_names(Some(expr.names))
                .set_expression_attribute_values(Some(expr.values));
        }
        self.count();
        match req.send().await {
            Ok(_) => Ok(true),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_conditional_check_failed_exception()) =>
            {
                Ok(false)
            }
            Err(e) => Err(on_item(classify("delete", &self.table, e), pk, sk)),
        }
    }

    async fn query(
        &self,
        pk: &str,
        sk_prefix: &str,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<ItemPage, StoreError> {
        let start = match cursor {
            Some(c) if c.starts_with(sk_prefix) => Some(HashMap::from([
                (schema::PK.to_owned(), s(pk)),
                (schema::SK.to_owned(), s(c)),
            ])),
            Some(_) => return Err(StoreError::Invalid("query cursor does not belong to this query".into())),
            None => None,
        };
        self.query_raw("query", false, pk, sk_prefix, start, limit).await
    }

    async fn query_index(&self, key: &str, cursor: Option<&str>, limit: usize) -> Result<ItemPage, StoreError> {
        let start = match cursor {
            Some(c) => {
                let parts: Vec<String> = serde_json::from_str(c)
                    .ok()
                    .filter(|p: &Vec<String>| p.len() == 3)
                    .ok_or_else(|| StoreError::Invalid("index cursor is not valid".into()))?;
                Some(HashMap::from([
                    (schema::GSI1_PK.to_owned(), s(key)),
                    (schema::GSI1_SK.to_owned(), s(&parts[0])),
                    (schema::PK.to_owned(), s(&parts[1])),
                    (schema::SK.to_owned(), s(&parts[2])),
                ]))
            }
            None => None,
        };
        self.query_raw("query_index", true, key, "", start, limit).await
    }
}
