//! Reading a request: the API token, list parameters (filters, sorting, paging) and write bodies.

use std::collections::HashMap;

use axum::http::{HeaderMap, header};
use serde_json::{Value, json};
use time::OffsetDateTime;

use super::errors::ApiError;
use crate::world::{Cursor, CursorEnd, TokenSpec, World, micros, query_hash};

// ---- auth ----------------------------------------------------------------------------------

pub(super) fn authenticate(w: &World, headers: &HeaderMap) -> Result<TokenSpec, ApiError> {
    token_for(w, headers, &["ApiToken "])
}

/// UAM clients send the same console token as `Bearer` too.
pub(super) fn authenticate_uam(w: &World, headers: &HeaderMap) -> Result<TokenSpec, ApiError> {
    token_for(w, headers, &["ApiToken ", "Bearer "])
}

fn token_for(w: &World, headers: &HeaderMap, schemes: &[&str]) -> Result<TokenSpec, ApiError> {
    let value = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(ApiError::auth)?;
    let token = schemes
        .iter()
        .find_map(|s| value.strip_prefix(s))
        .ok_or_else(ApiError::auth)?;
    let spec = w.tokens.get(token).ok_or_else(ApiError::auth)?;
    if spec.expires_at <= OffsetDateTime::now_utc() {
        return Err(ApiError::auth());
    }
    Ok(spec.clone())
}

// ---- list plumbing ---------------------------------------------------------------------------

const COMMON: [&str; 7] = [
    "limit",
    "skip",
    "cursor",
    "sortBy",
    "sortOrder",
    "countOnly",
    "skipCount",
];

pub(super) struct ListReq {
    limit: usize,
    skip: usize,
    cursor: Option<Cursor>,
    pub(super) sort_by: String,
    desc: bool,
    count_only: bool,
    skip_count: bool,
    qhash: u64,
    pub(super) params: HashMap<String, String>,
}

impl ListReq {
    pub(super) fn parse(
        pairs: &[(String, String)],
        filters: &[&str],
        sorts: &[&str],
        default_sort: &str,
    ) -> Result<Self, ApiError> {
        let mut params = HashMap::new();
        for (k, v) in pairs {
            if !COMMON.contains(&k.as_str()) && !filters.contains(&k.as_str()) {
                return Err(ApiError::validation(format!("Unknown field: {k}")));
            }
            if params.insert(k.clone(), v.clone()).is_some() {
                return Err(ApiError::validation(format!("Field given twice: {k}")));
            }
        }
        let int = |k: &str, default: usize, max: usize, min: usize| -> Result<usize, ApiError> {
            match params.get(k) {
                None => Ok(default),
                Some(v) => match v.parse::<usize>() {
                    Ok(n) if (min..=max).contains(&n) => Ok(n),
                    _ => Err(ApiError::validation(format!("{k}: must be between {min} and {max}"))),
                },
            }
        };
        let limit = int("limit", 10, 1000, 1)?;
        let skip = int("skip", 0, 1000, 0)?;
        let sort_by = params.get("sortBy").cloned().unwrap_or_else(|| default_sort.to_owned());
        if !sorts.contains(&sort_by.as_str()) {
            return Err(ApiError::validation(format!(
                "sortBy: must be one of {}",
                sorts.join(", ")
            )));
        }
        let desc = match params.get("sortOrder").map(String::as_str) {
            None | Some("asc") => false,
            Some("desc") => true,
            Some(_) => return Err(ApiError::validation("sortOrder: must be asc or desc")),
        };
        let qhash = query_hash(pairs);
        let cursor = match params.get("cursor") {
            None => None,
            Some(c) => match Cursor::decode(c) {
                Some(c) if c.query_hash == qhash => Some(c),
                _ => return Err(ApiError::validation("Invalid cursor value received")),
            },
        };
        let flag = |k: &str| params.get(k).is_some_and(|v| v.eq_ignore_ascii_case("true"));
        Ok(Self {
            limit,
            skip,
            cursor,
            sort_by,
            desc,
            count_only: flag("countOnly"),
            skip_count: flag("skipCount"),
            qhash,
            params,
        })
    }

    fn time(&self, k: &str) -> Result<Option<i128>, ApiError> {
        match self.params.get(k) {
            None => Ok(None),
            Some(v) => OffsetDateTime::parse(v, &time::format_description::well_known::Rfc3339)
                .map(|t| Some(micros(t)))
                .map_err(|_| ApiError::validation(format!("{k}: not a valid date-time"))),
        }
    }

    /// The `__gte/__gt/__lte/__lt` bounds S1 accepts on a timestamp field.
    pub(super) fn range(&self, field: &str) -> Result<TimeRange, ApiError> {
        Ok(TimeRange {
            gte: self.time(&format!("{field}__gte"))?,
            gt: self.time(&format!("{field}__gt"))?,
            lte: self.time(&format!("{field}__lte"))?,
            lt: self.time(&format!("{field}__lt"))?,
        })
    }

    pub(super) fn csv(&self, k: &str) -> Option<Vec<String>> {
        self.params.get(k).map(|v| {
            v.split(',')
                .map(|s| s.trim().to_owned())
                .filter(|s| !s.is_empty())
                .collect()
        })
    }

    /// Sorts the matches, applies cursor/skip/limit, and builds the envelope's pagination.
    pub(super) fn paginate(&self, mut matches: Vec<(i128, u64, usize)>, end: CursorEnd) -> (Vec<usize>, Value) {
        let total = matches.len();
        if let Some(c) = self.cursor {
            let after = (c.key, c.id);
            matches.retain(|m| {
                if self.desc {
                    (m.0, m.1) < after
                } else {
                    (m.0, m.1) > after
                }
            });
        }
        let cmp = |a: &(i128, u64, usize), b: &(i128, u64, usize)| {
            let o = (a.0, a.1).cmp(&(b.0, b.1));
            if self.desc { o.reverse() } else { o }
        };
        let wanted = self.skip + self.limit;
        if matches.len() > wanted {
            matches.select_nth_unstable_by(wanted, cmp);
        }
        let more = matches.len() > wanted;
        matches.truncate(wanted);
        matches.sort_unstable_by(cmp);
        let page: Vec<_> = matches.iter().skip(self.skip).copied().collect();
        let next = match (more, page.last()) {
            (true, Some(last)) => json!(
                Cursor {
                    query_hash: self.qhash,
                    key: last.0,
                    id: last.1
                }
                .encode()
            ),
            _ => match end {
                CursorEnd::Null => Value::Null,
                CursorEnd::NullString => json!("null"),
                CursorEnd::Empty => json!(""),
            },
        };
        let mut pagination = json!({"totalItems": if self.skip_count { 0 } else { total }, "nextCursor": next});
        if self.count_only {
            pagination["nextCursor"] = Value::Null;
            return (Vec::new(), pagination);
        }
        (page.into_iter().map(|m| m.2).collect(), pagination)
    }
}

pub(super) fn id_set(ids: Option<Vec<String>>) -> Option<std::collections::HashSet<u64>> {
    ids.map(|v| v.iter().filter_map(|s| s.parse().ok()).collect())
}

pub(super) struct TimeRange {
    gte: Option<i128>,
    gt: Option<i128>,
    lte: Option<i128>,
    lt: Option<i128>,
}

impl TimeRange {
    pub(super) fn contains(&self, v: i128) -> bool {
        self.gte.is_none_or(|b| v >= b)
            && self.gt.is_none_or(|b| v > b)
            && self.lte.is_none_or(|b| v <= b)
            && self.lt.is_none_or(|b| v < b)
    }
}

pub(super) fn sort_key(by: &str, id: u64, idx: usize, created: OffsetDateTime, updated: OffsetDateTime) -> i128 {
    match by {
        "createdAt" => micros(created),
        "updatedAt" => micros(updated),
        // Generated names follow generation order, so the index sorts like the name.
        "name" | "computerName" => idx as i128,
        _ => id as i128,
    }
}

// ---- write bodies ----------------------------------------------------------------------------

pub(super) fn parse_body(raw: &[u8]) -> Result<Value, ApiError> {
    serde_json::from_slice(raw).map_err(|e| ApiError::validation(format!("Invalid JSON body: {e}")))
}

pub(super) fn data_field(
    body: &Value,
    field: &str,
    allowed: &[&'static str],
) -> Result<Option<&'static str>, ApiError> {
    let data = body
        .get("data")
        .and_then(Value::as_object)
        .ok_or_else(|| ApiError::validation("data: Missing data for required field."))?;
    match data.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(v)) => allowed
            .iter()
            .find(|a| a.eq_ignore_ascii_case(v))
            .map(|a| Some(*a))
            .ok_or_else(|| ApiError::validation(format!("data.{field}: Must be one of: {}.", allowed.join(", ")))),
        Some(_) => Err(ApiError::validation(format!("data.{field}: Not a valid string."))),
    }
}
