//! Cursor paging: a list endpoint as a stream of pages, one page in memory at a time.

use futures_util::{Stream, stream};
use reqwest::Method;
use serde::de::DeserializeOwned;

use super::super::dto::ListEnvelope;
use super::super::error::S1Error;
use super::super::ratelimit::EndpointFamily;
use super::transport::Call;
use super::{S1Client, decode};

/// One page of a list endpoint.
#[derive(Debug, Clone)]
pub struct Page<T> {
    pub items: Vec<T>,
    /// The cursor that fetches the next page; `None` on the last one.
    pub next_cursor: Option<String>,
    /// S1's count of all matching items, when it sent one.
    pub total_items: Option<u64>,
}

impl S1Client {
    pub(super) fn pages<D, T>(
        &self,
        path: &'static str,
        family: EndpointFamily,
        query: Result<Vec<(String, String)>, S1Error>,
        extract: fn(D) -> Vec<T>,
    ) -> impl Stream<Item = Result<Page<T>, S1Error>> + '_
    where
        D: DeserializeOwned + 'static,
        T: 'static,
    {
        self.pages_owned(path.to_owned(), family, query, extract)
    }

    /// Follows `nextCursor` with the query otherwise unchanged (S1 ties a cursor to its query),
    /// one page in memory at a time.
    pub(super) fn pages_owned<D, T>(
        &self,
        path: String,
        family: EndpointFamily,
        query: Result<Vec<(String, String)>, S1Error>,
        extract: fn(D) -> Vec<T>,
    ) -> impl Stream<Item = Result<Page<T>, S1Error>> + '_
    where
        D: DeserializeOwned + 'static,
        T: 'static,
    {
        enum State {
            Start(Result<Vec<(String, String)>, S1Error>),
            Next(Vec<(String, String)>, String),
            Done,
        }
        stream::unfold(State::Start(query), move |state| {
            let path = path.clone();
            async move {
                let (base, cursor) = match state {
                    State::Done => return None,
                    State::Start(Err(e)) => return Some((Err(e), State::Done)),
                    State::Start(Ok(q)) => (q, None),
                    State::Next(q, c) => (q, Some(c)),
                };
                let mut query = base.clone();
                if let Some(c) = &cursor {
                    query.push(("cursor".into(), c.clone()));
                }
                let call = Call {
                    method: Method::GET,
                    path: &path,
                    query: &query,
                    body: None,
                    family,
                    idempotent: true,
                    changes: false,
                    auth: true,
                };
                let result = async {
                    let env: ListEnvelope<D> = self.send(&call, |b| decode(&path, b)).await?;
                    let pagination = env.pagination.unwrap_or_default();
                    let next = pagination.next().map(str::to_owned);
                    if next.is_some() && next == cursor {
                        return Err(S1Error::Decode {
                            endpoint: format!("/{path}"),
                            path: "pagination.nextCursor".into(),
                            message: "S1 returned the cursor it was given; stopping instead of looping".into(),
                        });
                    }
                    Ok(Page {
                        items: extract(env.data),
                        next_cursor: next,
                        total_items: pagination.total_items,
                    })
                }
                .await;
                match result {
                    Ok(page) => {
                        let state = match &page.next_cursor {
                            Some(c) => State::Next(base, c.clone()),
                            None => State::Done,
                        };
                        Some((Ok(page), state))
                    }
                    Err(e) => Some((Err(e), State::Done)),
                }
            }
        })
    }
}
