//! Adapters of the ports over the AWS SDK: DynamoDB for state, SNS for
//! fan-out, SQS for subscriber queues. They run unchanged against AWS and
//! against the local emulator (the endpoint comes from AWS_ENDPOINT_URL).
//!
//! One file per port's adapter; this module holds what they share: the
//! configuration read from the environment, item encoding, single-key
//! reads and the outcome of conditional writes and transactions.

mod assertions;
mod audit;
mod batch;
mod clients;
mod events;
mod kms;
mod monitor;
mod page_token;
mod queues;
mod reference;
mod register;
mod replays;
mod sns;
mod stats;
mod subscribers;
mod subscriptions;

pub use assertions::DynamoReplayGuard;
pub use audit::DynamoAuditLog;
pub use clients::DynamoClientStore;
pub use events::{DAY_INDEX, DynamoEventStore, PATIENT_INDEX};
pub use kms::{KmsSigningKey, kms_verifier, kms_verifiers};
pub use monitor::SqsQueueMonitor;
pub use queues::{QueueSettings, SqsQueueProvisioner};
pub use reference::{DynamoReferenceData, reference_item_size};
pub use register::DynamoRegisterStore;
pub use replays::DynamoReplayStore;
pub use sns::SnsDeliveryPublisher;
pub use stats::DynamoDeliveryStats;
pub use subscribers::DynamoSubscriberStore;
pub use subscriptions::DynamoSubscriptionStore;

use std::collections::{BTreeMap, HashMap};

use aws_sdk_dynamodb::types::AttributeValue;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::catalogue::EventType;
use crate::ports::StoreError;
type Item = HashMap<String, AttributeValue>;

fn unavailable(context: &str, error: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(format!("{context}: {error}"))
}

/// Reads a required environment variable: configuration a function cannot run without.
pub fn required_env(name: &str) -> Result<String, StoreError> {
    std::env::var(name)
        .map_err(|_| StoreError::Unavailable(format!("environment variable {name} is not set")))
}

/// The environment variable that holds an event type's SNS topic ARN, e.g.
/// TOPIC_ARN_VACCINATIONS_1.
pub fn topic_env_var(event_type: EventType) -> String {
    format!(
        "TOPIC_ARN_{}",
        event_type.code().to_ascii_uppercase().replace('-', "_")
    )
}

/// The topic ARNs of the event types this deployment has topics for.
pub fn topic_arns_from_env() -> BTreeMap<EventType, String> {
    EventType::ALL
        .iter()
        .filter_map(|&event_type| {
            Some((event_type, std::env::var(topic_env_var(event_type)).ok()?))
        })
        .collect()
}

fn to_item<T: Serialize>(value: &T) -> Result<Item, StoreError> {
    serde_dynamo::to_item(value).map_err(|error| unavailable("encoding an item", error))
}

fn from_item<T: DeserializeOwned>(item: Item) -> Result<T, StoreError> {
    serde_dynamo::from_item(item).map_err(|error| unavailable("decoding an item", error))
}

/// Whether a read must see every write acknowledged before it.
#[derive(Clone, Copy)]
enum Read {
    Consistent,
    Eventual,
}

/// The item under one string key, decoded.
async fn get_by_key<T: DeserializeOwned>(
    client: &aws_sdk_dynamodb::Client,
    table: &str,
    (key_name, key): (&str, &str),
    read: Read,
    what: &str,
) -> Result<Option<T>, StoreError> {
    let output = client
        .get_item()
        .table_name(table)
        .key(key_name, AttributeValue::S(key.to_owned()))
        .consistent_read(matches!(read, Read::Consistent))
        .send()
        .await
        .map_err(|error| unavailable(what, error))?;
    output.item.map(from_item).transpose()
}

/// A conditional write's outcome: true when written, false when its
/// condition did not hold; any other failure is the store's.
fn conditionally_written<O, E>(
    result: Result<
        O,
        aws_sdk_dynamodb::error::SdkError<E, aws_sdk_dynamodb::config::http::HttpResponse>,
    >,
    what: &str,
) -> Result<bool, StoreError>
where
    E: aws_sdk_dynamodb::error::ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    match result {
        Ok(_) => Ok(true),
        Err(error)
            if error.as_service_error().and_then(|e| e.code())
                == Some("ConditionalCheckFailedException") =>
        {
            Ok(false)
        }
        Err(error) => Err(unavailable(
            what,
            aws_sdk_dynamodb::error::DisplayErrorContext(error),
        )),
    }
}

/// Why each item of a cancelled transaction failed, in the order written;
/// any other failure of the call is the store's.
struct CancellationReasons(Vec<Option<String>>);

/// The reason codes as DynamoDB gave them, `-` for an item that did not
/// fail: for the log line of an unexpected cancellation.
impl std::fmt::Display for CancellationReasons {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let codes: Vec<&str> = self
            .0
            .iter()
            .map(|code| code.as_deref().unwrap_or("-"))
            .collect();
        f.write_str(&codes.join(", "))
    }
}

impl CancellationReasons {
    /// Whether item `index` failed with this reason code
    /// (`ConditionalCheckFailed`, `TransactionConflict`...).
    fn at(&self, index: usize, code: &str) -> bool {
        self.0
            .get(index)
            .and_then(Option::as_deref)
            .is_some_and(|reason| reason == code)
    }
}

fn cancellation_reasons(
    error: aws_sdk_dynamodb::error::SdkError<
        aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError,
        aws_sdk_dynamodb::config::http::HttpResponse,
    >,
    what: &str,
) -> Result<CancellationReasons, StoreError> {
    match error.as_service_error() {
        Some(
            aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError::TransactionCanceledException(
                cancelled,
            ),
        ) => Ok(CancellationReasons(
            cancelled
                .cancellation_reasons()
                .iter()
                .map(|reason| reason.code().map(str::to_owned))
                .collect(),
        )),
        _ => Err(unavailable(
            what,
            aws_sdk_dynamodb::error::DisplayErrorContext(error),
        )),
    }
}

/// A string attribute of an item read back.
fn text_attribute(item: &Item, name: &str) -> Option<String> {
    item.get(name).and_then(|value| value.as_s().ok()).cloned()
}
