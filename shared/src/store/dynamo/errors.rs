//! DynamoDB's errors as [`StoreError`]s, classified so callers know whether to retry.

use aws_sdk_dynamodb::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};

use crate::store::{Cond, Item, StoreError};

pub(super) fn classify<E, R>(op: &'static str, table: &str, e: SdkError<E, R>) -> StoreError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    match &e {
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) => StoreError::Unavailable {
            op,
            message: DisplayErrorContext(&e).to_string(),
        },
        SdkError::ServiceError(se) => {
            let code = se.err().code().unwrap_or("Unknown").to_owned();
            let message = se.err().message().unwrap_or_default().to_owned();
            match code.as_str() {
                "ResourceNotFoundException" => StoreError::TableMissing {
                    table: table.to_owned(),
                },
                "ProvisionedThroughputExceededException" | "ThrottlingException" | "RequestLimitExceeded" => {
                    StoreError::Throttled { op }
                }
                // PutItem or DeleteItem on an item a transaction is writing right now.
                "TransactionConflictException" => StoreError::Conflict {
                    op,
                    what: format!("an item of table {table} that a transaction was writing"),
                },
                "InternalServerError" | "ServiceUnavailable" => StoreError::Backend {
                    op,
                    code,
                    message,
                    retryable: true,
                },
                _ => StoreError::Backend {
                    op,
                    code,
                    message,
                    retryable: false,
                },
            }
        }
        _ => StoreError::Backend {
            op,
            code: "sdk".into(),
            message: DisplayErrorContext(&e).to_string(),
            retryable: false,
        },
    }
}

/// What a cancelled transaction of `items` means, from DynamoDB's reason code for each item
/// (`None` where the item was not the cause): the indexes of the items whose condition failed,
/// or why nothing was written.
pub(super) fn cancelled(codes: &[Option<String>], items: &[(Item, Cond)]) -> Result<Vec<usize>, StoreError> {
    let with = |code: &str| -> Vec<usize> {
        codes
            .iter()
            .enumerate()
            .filter(|(_, c)| c.as_deref() == Some(code))
            .map(|(i, _)| i)
            .collect()
    };
    let failed = with("ConditionalCheckFailed");
    if !failed.is_empty() {
        return Ok(failed);
    }
    // Another transaction was writing some of the items: nothing was written and trying again
    // is right.
    let collided = with("TransactionConflict");
    if !collided.is_empty() {
        let named: Vec<String> = collided
            .iter()
            .filter_map(|i| items.get(*i))
            .map(|(i, _)| format!("{} / {}", i.pk, i.sk))
            .collect();
        return Err(StoreError::Conflict {
            op: "put_all",
            what: format!("item(s) {}", named.join(", ")),
        });
    }
    // Cancelled for another reason (throttling): nothing was written and trying again is right.
    Err(StoreError::Backend {
        op: "put_all",
        code: "TransactionCanceled".into(),
        message: format!("{codes:?}"),
        retryable: true,
    })
}

/// `e`, naming the one item written when it is a conflict.
pub(super) fn on_item(e: StoreError, pk: &str, sk: &str) -> StoreError {
    match e {
        StoreError::Conflict { op, .. } => StoreError::Conflict {
            op,
            what: format!("item {pk} / {sk}"),
        },
        e => e,
    }
}

#[cfg(test)]
mod tests {
    use aws_sdk_dynamodb::error::{ErrorMetadata, SdkError};
    use aws_sdk_dynamodb::operation::put_item::PutItemError;
    use aws_sdk_dynamodb::types::error::TransactionConflictException;

    use super::*;

    fn item(sk: &str) -> (Item, Cond) {
        let i = Item {
            pk: "TENANT#acme".into(),
            sk: sk.into(),
            ..Item::default()
        };
        (i, Cond::Always)
    }

    #[test]
    fn a_write_colliding_with_a_transaction_is_a_retryable_conflict_naming_its_item() {
        let collided = TransactionConflictException::builder()
            .message("Transaction is ongoing for the item")
            .meta(ErrorMetadata::builder().code("TransactionConflictException").build())
            .build();
        let e = SdkError::<PutItemError, ()>::service_error(PutItemError::TransactionConflictException(collided), ());
        let err = on_item(classify("put", "state", e), "TENANT#acme", "STORY#k1");
        assert!(
            matches!(&err, StoreError::Conflict { op: "put", what } if what == "item TENANT#acme / STORY#k1"),
            "{err:?}"
        );
        assert!(err.is_retryable());
        assert!(err.to_string().contains("TENANT#acme / STORY#k1"), "{err}");
    }

    #[test]
    fn a_cancelled_transaction_reports_failed_conditions_conflicts_or_a_retryable_cancel() {
        let items = [item("STORY#k1"), item("STORY#k2"), item("STORY#k3")];
        let code = |c: &str| Some(c.to_owned());
        let failed = [None, code("ConditionalCheckFailed"), code("TransactionConflict")];
        assert_eq!(cancelled(&failed, &items).unwrap(), [1], "failed conditions come first");
        let collided = [None, code("TransactionConflict"), code("TransactionConflict")];
        let err = cancelled(&collided, &items).unwrap_err();
        assert!(
            matches!(&err, StoreError::Conflict { op: "put_all", what }
                if what == "item(s) TENANT#acme / STORY#k2, TENANT#acme / STORY#k3"),
            "{err:?}"
        );
        assert!(err.is_retryable());
        let throttled = [code("ThrottlingError"), None, None];
        let err = cancelled(&throttled, &items).unwrap_err();
        assert!(
            matches!(&err, StoreError::Backend { code, .. } if code == "TransactionCanceled"),
            "{err:?}"
        );
        assert!(err.is_retryable());
    }
}
