//! A [`Cond`] as a DynamoDB condition expression, evaluated server-side atomically with the write.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::AttributeValue;

use super::item::{n, s};
use crate::store::{Cond, now_secs, schema};

/// A condition expression with only the names and values it uses (DynamoDB rejects unused ones).
pub(super) struct Expr {
    pub(super) text: String,
    pub(super) names: HashMap<String, String>,
    pub(super) values: HashMap<String, AttributeValue>,
}

pub(super) fn condition(cond: &Cond) -> Option<Expr> {
    let now = now_secs();
    let mut names = HashMap::from([
        ("#pk".to_owned(), schema::PK.to_owned()),
        ("#ttl".to_owned(), schema::TTL.to_owned()),
    ]);
    let mut values = HashMap::from([(":now".to_owned(), n(now))]);
    // An item past its TTL may still be there (DynamoDB deletes lazily): it counts as absent.
    let absent = "(attribute_not_exists(#pk) OR #ttl <= :now)";
    let live = "(attribute_exists(#pk) AND (attribute_not_exists(#ttl) OR #ttl > :now))";
    let text = match cond {
        Cond::Always => return None,
        Cond::NotExists | Cond::Version(0) => absent.to_owned(),
        Cond::Version(v) => {
            names.insert("#ver".into(), schema::VERSION.into());
            values.insert(":ver".into(), n(v));
            format!("{live} AND #ver = :ver")
        }
        Cond::LeaseFree { owner, now_ms } => {
            names.insert("#until".into(), schema::UNTIL.into());
            names.insert("#owner".into(), schema::OWNER.into());
            values.insert(":nowms".into(), n(now_ms));
            values.insert(":owner".into(), s(owner));
            format!("{absent} OR #until < :nowms OR #owner = :owner")
        }
        Cond::LiveVersion(v) => {
            names.insert("#ver".into(), schema::VERSION.into());
            values.insert(":ver".into(), n(v));
            format!("{live} AND #ver = :ver")
        }
        Cond::LeaseFenced { owner, generation } => {
            names.insert("#owner".into(), schema::OWNER.into());
            names.insert("#ord".into(), schema::ORDER.into());
            values.insert(":owner".into(), s(owner));
            values.insert(":gen".into(), n(generation));
            format!("{live} AND #owner = :owner AND #ord = :gen")
        }
    };
    Some(Expr { text, names, values })
}
