//! Adapters of the ports over the AWS SDK: DynamoDB for state, SNS for
//! fan-out, SQS for subscriber queues. They run unchanged against AWS and
//! against the local emulator (the endpoint comes from AWS_ENDPOINT_URL).
//!
//! One file per port's adapter; this module holds what they share: the
//! configuration read from the environment, item encoding, single-key
//! reads and the outcome of conditional writes and transactions.

mod assertion_ids;
mod audit;
mod batch;
mod clients;
mod embargoes;
mod events;
mod kms;
mod monitor;
mod page_token;
mod queues;
mod reference;
mod register;
mod relationships;
mod replays;
mod retry;
mod sns;
mod stats;
mod subscribers;
mod subscriptions;

pub use assertion_ids::DynamoUsedAssertionIds;
/// The former name of [`DynamoUsedAssertionIds`], kept while code elsewhere
/// still uses it.
pub use audit::DynamoAuditLog;
pub use clients::DynamoClientStore;
pub use embargoes::DynamoEmbargoStore;
pub use events::{DAY_INDEX, DynamoEventStore, PATIENT_INDEX};
pub use kms::{KmsSigningKey, kms_verifier, kms_verifiers};
pub use monitor::SqsQueueMonitor;
pub use queues::{QueueSettings, SqsQueueProvisioner};
pub use reference::{DynamoReferenceData, reference_item_size};
pub use register::DynamoRegisterStore;
pub use relationships::{DynamoRelationshipStore, PERSON_INDEX};
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
use crate::ports::{BoxError, StoreError};

type Item = HashMap<String, AttributeValue>;

/// An AWS call that failed, with what the hub was doing.
///
/// Its text is that context and the text of every error of the SDK error's
/// chain, which names the service's error code (throttling, access denied,
/// a missing table): what the SDK's `DisplayErrorContext` writes, without
/// the Debug dump it ends with, which holds the raw HTTP response, its body
/// included. The SDK error stays its source.
#[derive(Debug)]
struct Failed {
    context: String,
    error: BoxError,
}

impl std::fmt::Display for Failed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.context, self.error)?;
        let mut source = self.error.source();
        while let Some(error) = source {
            write!(f, ": {error}")?;
            source = error.source();
        }
        Ok(())
    }
}

impl std::error::Error for Failed {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(self.error.as_ref())
    }
}

/// The store's failure to do `context`, caused by `error`.
fn unavailable(context: &str, error: impl Into<BoxError>) -> StoreError {
    StoreError::Unavailable(Box::new(Failed {
        context: context.to_owned(),
        error: error.into(),
    }))
}

/// Unavailable for a reason in the hub's own words, with no error under
/// it: writes that kept conflicting, a part of a batch a service refused.
fn unavailable_because(reason: impl Into<String>) -> StoreError {
    StoreError::Unavailable(reason.into().into())
}

/// Reads a required environment variable: configuration a function cannot
/// run without. Every function reads its settings in `main`, so that one
/// missing fails its start rather than its requests.
pub fn required_env(name: &str) -> Result<String, StoreError> {
    std::env::var(name)
        .map_err(|_| StoreError::Configuration(format!("environment variable {name} is not set")))
}

/// The environment variable that holds an event type's SNS topic ARN, e.g.
/// TOPIC_ARN_VACCINATIONS_1.
pub fn topic_env_var(event_type: EventType) -> String {
    format!(
        "TOPIC_ARN_{}",
        event_type.code().to_ascii_uppercase().replace('-', "_")
    )
}

/// The topic ARN of every event type (TOPIC_ARN_*). Every event type needs
/// its topic: a missing one fails the function's start, naming each
/// variable missing, rather than leave its events undelivered.
pub fn topic_arns_from_env() -> Result<BTreeMap<EventType, String>, StoreError> {
    let mut topics = BTreeMap::new();
    let mut missing = Vec::new();
    for &event_type in EventType::ALL {
        let name = topic_env_var(event_type);
        match std::env::var(&name) {
            Ok(arn) if !arn.is_empty() => {
                topics.insert(event_type, arn);
            }
            _ => missing.push(name),
        }
    }
    if missing.is_empty() {
        Ok(topics)
    } else {
        Err(StoreError::Configuration(format!(
            "environment variables {} are not set: every event type needs its topic",
            missing.join(", ")
        )))
    }
}

fn to_item<T: Serialize>(value: &T) -> Result<Item, StoreError> {
    serde_dynamo::to_item(value).map_err(|error| unavailable("encoding an item", error))
}

/// Decodes an item read back; `described` names it (never by a key that
/// identifies a person). The decoder's message is left out of the error:
/// it may quote a value (an NHS number, a postcode).
fn from_item<T: DeserializeOwned>(item: Item, described: &str) -> Result<T, StoreError> {
    serde_dynamo::from_item(item).map_err(|_| {
        StoreError::Corrupt(format!(
            "{described} does not decode as {}",
            std::any::type_name::<T>()
        ))
    })
}

/// An item by its table and the value of its key attribute `key_name`
/// (for an error): only for keys that identify no one (event keys, ids).
fn keyed(table: &str, item: &Item, key_name: &str) -> String {
    match text_attribute(item, key_name) {
        Some(key) => format!("the {table} item under {key_name} {key}"),
        None => format!("an item of {table} without {key_name}"),
    }
}

/// Whether a read must see every write acknowledged before it.
#[derive(Clone, Copy)]
enum Read {
    Consistent,
    Eventual,
}

/// The item under one string key, decoded. The key must identify no one:
/// it names an item that does not decode.
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
    output
        .item
        .map(|item| from_item(item, &format!("the {table} item under {key_name} {key}")))
        .transpose()
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
        Err(error) => Err(unavailable(what, error)),
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
        _ => Err(unavailable(what, error)),
    }
}

/// A string attribute of an item read back.
fn text_attribute(item: &Item, name: &str) -> Option<String> {
    item.get(name).and_then(|value| value.as_s().ok()).cloned()
}

#[cfg(test)]
mod tests {
    use aws_sdk_dynamodb::error::{ErrorMetadata, SdkError};
    use aws_sdk_dynamodb::operation::get_item::GetItemError;
    use aws_sdk_dynamodb::types::error::ResourceNotFoundException;

    use super::*;

    /// A response as DynamoDB would send it, its body naming a child.
    fn response() -> aws_sdk_dynamodb::config::http::HttpResponse {
        aws_sdk_dynamodb::config::http::HttpResponse::new(
            400.try_into().expect("a status"),
            r#"{"message":"about 9434765919"}"#.into(),
        )
    }

    /// The log line names the service's error code, modelled or not, and
    /// never the response's body (which the SDK's `DisplayErrorContext`
    /// would write).
    #[test]
    fn a_failed_call_names_its_error_code_and_not_the_body() {
        let missing = SdkError::service_error(
            GetItemError::ResourceNotFoundException(
                ResourceNotFoundException::builder()
                    .message("Requested resource not found")
                    .build(),
            ),
            response(),
        );
        let throttled = SdkError::service_error(
            GetItemError::generic(
                ErrorMetadata::builder()
                    .code("ThrottlingException")
                    .message("Rate of requests exceeds the allowed throughput")
                    .build(),
            ),
            response(),
        );
        for (error, code) in [
            (missing, "ResourceNotFoundException"),
            (throttled, "ThrottlingException"),
        ] {
            let dumped = aws_sdk_dynamodb::error::DisplayErrorContext(&error).to_string();
            assert!(dumped.contains("9434765919"), "{dumped}");
            let failed = unavailable("reading an event", error);
            let text = failed.to_string();
            assert!(matches!(failed, StoreError::Unavailable(_)));
            assert!(text.contains("reading an event"), "{text}");
            assert!(text.contains(code), "{text}");
            assert!(!text.contains("9434765919"), "{text}");
            // The SDK error stays in the chain, under the hub's context.
            let source = std::error::Error::source(&failed).expect("the context");
            assert!(std::error::Error::source(source).is_some());
        }
    }

    /// An item that does not decode is corrupt, named by a key that
    /// identifies no one, without the value the decoder quotes.
    #[test]
    fn an_item_that_does_not_decode_is_corrupt() {
        #[derive(Debug, serde::Deserialize)]
        struct Counted {
            #[allow(dead_code)]
            count: u64,
        }
        let item = Item::from([
            (
                "eventKey".to_owned(),
                AttributeValue::S("vaccinations-1/abc".into()),
            ),
            ("count".to_owned(), AttributeValue::S("9434765919".into())),
        ]);
        let described = keyed("events", &item, "eventKey");
        let error = from_item::<Counted>(item, &described).unwrap_err();
        let StoreError::Corrupt(text) = &error else {
            panic!("not corrupt: {error:?}");
        };
        assert!(
            text.contains("the events item under eventKey vaccinations-1/abc"),
            "{text}"
        );
        assert!(!text.contains("9434765919"), "{text}");
    }

    /// A function that publishes to the topics needs every event type's:
    /// a missing one fails its start, naming each variable missing. (The
    /// tests run without any TOPIC_ARN_* set.)
    #[test]
    fn missing_topics_are_configuration_naming_each_variable() {
        if EventType::ALL
            .iter()
            .any(|&event_type| std::env::var_os(topic_env_var(event_type)).is_some())
        {
            return;
        }
        let StoreError::Configuration(text) = topic_arns_from_env().unwrap_err() else {
            panic!("not a configuration error");
        };
        for &event_type in EventType::ALL {
            assert!(text.contains(&topic_env_var(event_type)), "{text}");
        }
    }

    #[test]
    fn a_missing_setting_is_configuration() {
        let error = required_env("HUB_TEST_SURELY_UNSET_VARIABLE").unwrap_err();
        assert_eq!(
            error,
            StoreError::Configuration(
                "environment variable HUB_TEST_SURELY_UNSET_VARIABLE is not set".into()
            )
        );
    }
}
