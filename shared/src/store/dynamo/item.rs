//! A stored [`Item`] as DynamoDB attributes and back.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::AttributeValue;

use crate::store::{Item, StoreError, schema};

pub(super) fn s(v: &str) -> AttributeValue {
    AttributeValue::S(v.to_owned())
}
pub(super) fn n(v: impl ToString) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

pub(super) fn to_attrs(i: &Item) -> HashMap<String, AttributeValue> {
    let mut m = HashMap::new();
    m.insert(schema::PK.into(), s(&i.pk));
    m.insert(schema::SK.into(), s(&i.sk));
    m.insert(schema::DATA.into(), s(&i.data));
    m.insert(schema::VERSION.into(), n(i.version));
    if let Some(t) = i.ttl {
        m.insert(schema::TTL.into(), n(t));
    }
    if let Some(g) = &i.gsi1pk {
        m.insert(schema::GSI1_PK.into(), s(g));
    }
    if let Some(g) = &i.gsi1sk {
        m.insert(schema::GSI1_SK.into(), s(g));
    }
    if let Some(o) = &i.owner {
        m.insert(schema::OWNER.into(), s(o));
    }
    if let Some(u) = i.until {
        m.insert(schema::UNTIL.into(), n(u));
    }
    if let Some(o) = i.order {
        m.insert(schema::ORDER.into(), n(o));
    }
    m
}

pub(super) fn from_attrs(m: &HashMap<String, AttributeValue>) -> Result<Item, StoreError> {
    let text = |k: &str| m.get(k).and_then(|v| v.as_s().ok()).cloned();
    let num = |k: &str| m.get(k).and_then(|v| v.as_n().ok()).and_then(|v| v.parse::<i64>().ok());
    let pk = text(schema::PK).unwrap_or_default();
    let sk = text(schema::SK).unwrap_or_default();
    let data = text(schema::DATA).ok_or_else(|| StoreError::Corrupt {
        pk: pk.clone(),
        sk: sk.clone(),
        what: "item",
        message: "no data attribute".into(),
    })?;
    Ok(Item {
        pk,
        sk,
        data,
        ttl: num(schema::TTL),
        gsi1pk: text(schema::GSI1_PK),
        gsi1sk: text(schema::GSI1_SK),
        version: num(schema::VERSION).unwrap_or(0).max(0) as u64,
        owner: text(schema::OWNER),
        until: num(schema::UNTIL),
        order: num(schema::ORDER),
    })
}
