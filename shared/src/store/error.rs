/// A state-store failure, classified so callers know whether to retry.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The table is not there (wrong `TABLE_NAME`, or the stack is not deployed).
    #[error("state table {table:?} does not exist; check TABLE_NAME and that the stack is deployed")]
    TableMissing { table: String },
    /// DynamoDB throttled the call past the SDK's own retries.
    #[error("the state store throttled {op}; retry later")]
    Throttled { op: &'static str },
    /// The store could not be reached (network, timeout).
    #[error("could not reach the state store for {op}: {message}")]
    Unavailable { op: &'static str, message: String },
    /// Any other backend error, with its code.
    #[error("state store {op} failed ({code}): {message}")]
    Backend {
        op: &'static str,
        code: String,
        message: String,
        retryable: bool,
    },
    /// A stored item does not decode as the record its key promises.
    #[error("stored item {pk} / {sk} is not a valid {what}: {message}")]
    Corrupt {
        pk: String,
        sk: String,
        what: &'static str,
        message: String,
    },
    /// Another run took the lease this run held (ours lapsed, say after a long stall): the write
    /// was refused so the newer run's work is not overwritten.
    #[error(
        "the {job} lease of tenant {tenant} was taken by another run after ours lapsed; this run stopped and its last write was refused"
    )]
    LeaseLost { tenant: String, job: String },
    /// Concurrent writes kept winning over this call's: another writer changed `what` on every
    /// attempt, or DynamoDB cancelled a transaction that collided with another on the same item.
    /// What conflicted was not written; the same call may succeed when tried again.
    #[error("state store {op} lost to concurrent writes on {what}: not written; try again")]
    Conflict {
        op: &'static str,
        /// What conflicted: the items, or the records they hold.
        what: String,
    },
    /// The request itself is invalid (bad id, oversize item).
    #[error("invalid state-store request: {0}")]
    Invalid(String),
}

impl StoreError {
    /// True when the same call may succeed later.
    pub fn is_retryable(&self) -> bool {
        match self {
            StoreError::Throttled { .. } | StoreError::Unavailable { .. } | StoreError::Conflict { .. } => true,
            StoreError::Backend { retryable, .. } => *retryable,
            _ => false,
        }
    }
}
