//! Adapters of the ports over the AWS SDK: DynamoDB for state, SNS for
//! fan-out, SQS for subscriber queues. They run unchanged against AWS and
//! against the local emulator (the endpoint comes from AWS_ENDPOINT_URL).

use std::collections::{BTreeMap, HashMap};

use aws_sdk_dynamodb::types::{AttributeValue, Delete, Put, TransactWriteItem};
use aws_sdk_sns::types::{MessageAttributeValue, PublishBatchRequestEntry};
use aws_sdk_sqs::types::QueueAttributeName;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::json;

use crate::access::{self, AwsPrincipal, QueueAccess};
use crate::catalogue::EventType;
use crate::criteria::Target;
use crate::dispatch::{Delivery, SUBSCRIBER_ATTRIBUTE};
use crate::events::{CurrentVersion, EventSummary, StoredEvent, place};
use crate::nhs_number::NhsNumber;
use crate::ports::{
    DeliveryPublisher, EventStore, Insert, Page, QueueProvisioner, StoreError, SubscriberStore,
    SubscriptionState, SubscriptionStore, TopicSubscription,
};
use crate::subscriber::{Queues, Subscriber};
use crate::subscription::Subscription;

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

/// The events table (one item per event type and MessageHeader.id, written
/// once, indexed by patient and by day of arrival) and the versions table
/// (the current version of each focus identifier).
#[derive(Clone)]
pub struct DynamoEventStore {
    client: aws_sdk_dynamodb::Client,
    table: String,
    versions_table: String,
}

/// The events table's index of a child's events: the timeline reads it.
pub const PATIENT_INDEX: &str = "ByPatient";
/// The events table's index of each day's arrivals: replays read it.
pub const DAY_INDEX: &str = "ByDay";
/// How many times an insert reads the current version again when another
/// publish of the same focus resource changed it meanwhile.
const PLACE_ATTEMPTS: usize = 5;

impl DynamoEventStore {
    pub fn new(
        client: aws_sdk_dynamodb::Client,
        table: impl Into<String>,
        versions_table: impl Into<String>,
    ) -> Self {
        DynamoEventStore {
            client,
            table: table.into(),
            versions_table: versions_table.into(),
        }
    }

    /// The tables named by EVENTS_TABLE and VERSIONS_TABLE.
    pub fn from_env(client: aws_sdk_dynamodb::Client) -> Result<Self, StoreError> {
        Ok(Self::new(
            client,
            required_env("EVENTS_TABLE")?,
            required_env("VERSIONS_TABLE")?,
        ))
    }

    async fn current_version(
        &self,
        focus_identifier: &str,
    ) -> Result<Option<CurrentVersion>, StoreError> {
        let output = self
            .client
            .get_item()
            .table_name(&self.versions_table)
            .key(
                "focusIdentifier",
                AttributeValue::S(focus_identifier.to_owned()),
            )
            .consistent_read(true)
            .send()
            .await
            .map_err(|error| unavailable("reading the current version", error))?;
        output.item.map(from_item).transpose()
    }

    /// Whether the event already stored under this key has the same body.
    async fn existing(&self, event: &StoredEvent) -> Result<Insert, StoreError> {
        let existing = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("eventKey", AttributeValue::S(event.event_key.clone()))
            .projection_expression("payloadSha256")
            .consistent_read(true)
            .send()
            .await
            .map_err(|error| unavailable("reading the stored event", error))?;
        let stored_hash = existing
            .item()
            .and_then(|item| item.get("payloadSha256"))
            .and_then(|value| value.as_s().ok());
        if stored_hash == Some(&event.payload_sha256) {
            Ok(Insert::Duplicate)
        } else {
            Ok(Insert::Conflict)
        }
    }

    /// The put of a new event, refused if its key is taken.
    fn put_event(&self, event: &StoredEvent) -> Result<Put, StoreError> {
        Put::builder()
            .table_name(&self.table)
            .set_item(Some(to_item(event)?))
            .condition_expression("attribute_not_exists(eventKey)")
            .build()
            .map_err(|error| unavailable("building the event write", error))
    }

    /// What keeps the placement true while the event is written: the
    /// versions item is replaced (if the event is the newest) or checked,
    /// and either way must still be what was read.
    fn version_guard(
        &self,
        event: &StoredEvent,
        identifier: &str,
        seen: Option<&CurrentVersion>,
        becomes_current: bool,
    ) -> Result<TransactWriteItem, StoreError> {
        let unchanged = match seen {
            None => "attribute_not_exists(focusIdentifier)",
            Some(_) => "eventKey = :seen",
        };
        let seen_key = seen.map(|current| AttributeValue::S(current.event_key.clone()));
        match CurrentVersion::of(event).filter(|_| becomes_current) {
            Some(newest) => {
                let put = Put::builder()
                    .table_name(&self.versions_table)
                    .set_item(Some(to_item(&newest)?))
                    .condition_expression(unchanged)
                    .set_expression_attribute_values(
                        seen_key.map(|key| HashMap::from([(":seen".to_owned(), key)])),
                    )
                    .build()
                    .map_err(|error| unavailable("building the version write", error))?;
                Ok(TransactWriteItem::builder().put(put).build())
            }
            None => {
                let check = aws_sdk_dynamodb::types::ConditionCheck::builder()
                    .table_name(&self.versions_table)
                    .key("focusIdentifier", AttributeValue::S(identifier.to_owned()))
                    .condition_expression(unchanged)
                    .set_expression_attribute_values(
                        seen_key.map(|key| HashMap::from([(":seen".to_owned(), key)])),
                    )
                    .build()
                    .map_err(|error| unavailable("building the version check", error))?;
                Ok(TransactWriteItem::builder().condition_check(check).build())
            }
        }
    }
}

impl EventStore for DynamoEventStore {
    async fn insert(&self, event: &StoredEvent) -> Result<Insert, StoreError> {
        let Some(identifier) = event.focus_identifier.as_deref() else {
            let written = self
                .client
                .put_item()
                .table_name(&self.table)
                .set_item(Some(to_item(event)?))
                .condition_expression("attribute_not_exists(eventKey)")
                .send()
                .await;
            return if conditionally_written(written, "storing the event")? {
                Ok(Insert::Stored { out_of_order: None })
            } else {
                self.existing(event).await
            };
        };
        for _ in 0..PLACE_ATTEMPTS {
            let seen = self.current_version(identifier).await?;
            let placement = place(event, seen.as_ref());
            let mut stored = event.clone();
            stored.out_of_order = placement.out_of_order;
            let written = self
                .client
                .transact_write_items()
                .transact_items(
                    TransactWriteItem::builder()
                        .put(self.put_event(&stored)?)
                        .build(),
                )
                .transact_items(self.version_guard(
                    event,
                    identifier,
                    seen.as_ref(),
                    placement.becomes_current,
                )?)
                .send()
                .await;
            let error = match written {
                Ok(_) => {
                    return Ok(Insert::Stored {
                        out_of_order: placement.out_of_order,
                    });
                }
                Err(error) => error,
            };
            let failed = cancellation_reasons(error, "storing the event")?;
            if failed.at(0, "ConditionalCheckFailed") {
                return self.existing(event).await;
            }
            // Another publish of the same resource moved the current
            // version (or wrote at the same moment): place it again.
            if !(failed.at(1, "ConditionalCheckFailed")
                || failed.at(0, "TransactionConflict")
                || failed.at(1, "TransactionConflict"))
            {
                return Err(StoreError::Unavailable(format!(
                    "storing the event: the transaction was cancelled ({})",
                    failed
                )));
            }
        }
        Err(StoreError::Unavailable(format!(
            "the current version changed under each of {PLACE_ATTEMPTS} attempts to store the event"
        )))
    }

    async fn get(&self, event_key: &str) -> Result<Option<StoredEvent>, StoreError> {
        get_by_key(
            &self.client,
            &self.table,
            ("eventKey", event_key),
            Read::Eventual,
            "reading an event",
        )
        .await
    }

    async fn set_withheld(&self, event_key: &str, withheld: bool) -> Result<(), StoreError> {
        let written = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("eventKey", AttributeValue::S(event_key.to_owned()))
            // SENSITIVE is one of DynamoDB's reserved words.
            .update_expression("SET #withheld = :withheld")
            .expression_attribute_names("#withheld", "sensitive")
            // Never creates an item: an expired event stays gone.
            .condition_expression("attribute_exists(eventKey)")
            .expression_attribute_values(":withheld", AttributeValue::Bool(withheld))
            .send()
            .await;
        conditionally_written(written, "marking an event withheld or released").map(|_| ())
    }

    async fn get_many(&self, event_keys: &[String]) -> Result<Vec<StoredEvent>, StoreError> {
        let mut unique: Vec<String> = event_keys.to_vec();
        unique.sort();
        unique.dedup();
        read_batches(&self.client, &self.table, "eventKey", &unique, "events")
            .await?
            .into_iter()
            .map(from_item)
            .collect()
    }

    async fn patient_events(&self, nhs_number: NhsNumber) -> Result<Vec<EventSummary>, StoreError> {
        let mut found = Vec::new();
        let mut start: Option<Item> = None;
        loop {
            let output = self
                .client
                .query()
                .table_name(&self.table)
                .index_name(PATIENT_INDEX)
                .key_condition_expression("nhsNumber = :nhs")
                .expression_attribute_values(":nhs", AttributeValue::S(nhs_number.as_string()))
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(|error| {
                    unavailable(
                        "reading a child's events",
                        aws_sdk_dynamodb::error::DisplayErrorContext(error),
                    )
                })?;
            for item in output.items.unwrap_or_default() {
                found.push(from_item(item)?);
            }
            match output.last_evaluated_key {
                Some(key) if !key.is_empty() => start = Some(key),
                _ => break,
            }
        }
        Ok(found)
    }

    async fn received_on(
        &self,
        day: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Page<String>, StoreError> {
        let output = self
            .client
            .query()
            .table_name(&self.table)
            .index_name(DAY_INDEX)
            .key_condition_expression("receivedDay = :day AND receivedSort > :after")
            .expression_attribute_values(":day", AttributeValue::S(day.to_owned()))
            // Every position sorts after the day itself.
            .expression_attribute_values(
                ":after",
                AttributeValue::S(after.unwrap_or(day).to_owned()),
            )
            .limit(i32::try_from(limit.clamp(1, 1000)).unwrap_or(1000))
            .send()
            .await
            .map_err(|error| {
                unavailable(
                    "reading a day's events",
                    aws_sdk_dynamodb::error::DisplayErrorContext(error),
                )
            })?;
        let items = output.items.unwrap_or_default();
        let more = output.last_evaluated_key.is_some_and(|key| !key.is_empty());
        let next = if more {
            items
                .last()
                .and_then(|item| text_attribute(item, "receivedSort"))
        } else {
            None
        };
        Ok(Page {
            items: items
                .iter()
                .filter_map(|item| text_attribute(item, "receivedSort"))
                .collect(),
            next,
        })
    }
}

/// The subscriptions table. Each subscription is one resource item
/// (pk SUBSCRIPTION#id) plus one match item per event type it names
/// (pk EXPLICIT#<nhs number>#<event type>, sk = subscription id) holding a
/// copy of the subscription, so dispatch finds every candidate for an event
/// with a single Query, however many subscriptions exist.
#[derive(Clone)]
pub struct DynamoSubscriptionStore {
    client: aws_sdk_dynamodb::Client,
    table: String,
}

const RESOURCE_SORT_KEY: &str = "SUBSCRIPTION";

fn resource_key(id: &str) -> String {
    format!("SUBSCRIPTION#{id}")
}

fn explicit_key(nhs_number: NhsNumber, event_type: EventType) -> String {
    format!("EXPLICIT#{nhs_number}#{event_type}")
}

impl DynamoSubscriptionStore {
    pub fn new(client: aws_sdk_dynamodb::Client, table: impl Into<String>) -> Self {
        DynamoSubscriptionStore {
            client,
            table: table.into(),
        }
    }

    fn item(
        &self,
        pk: String,
        sk: String,
        subscription: &Subscription,
    ) -> Result<Item, StoreError> {
        let mut item = Item::new();
        item.insert("pk".into(), AttributeValue::S(pk));
        item.insert("sk".into(), AttributeValue::S(sk));
        item.insert(
            "subscriberId".into(),
            AttributeValue::S(subscription.subscriber_id.clone()),
        );
        item.insert(
            "subscription".into(),
            AttributeValue::M(to_item(subscription)?),
        );
        Ok(item)
    }

    fn put(&self, item: Item, condition: Option<&str>) -> Result<TransactWriteItem, StoreError> {
        let put = Put::builder()
            .table_name(&self.table)
            .set_item(Some(item))
            .set_condition_expression(condition.map(str::to_owned))
            .build()
            .map_err(|error| unavailable("building a write", error))?;
        Ok(TransactWriteItem::builder().put(put).build())
    }
}

fn subscription_of(mut item: Item) -> Result<Subscription, StoreError> {
    match item.remove("subscription") {
        Some(AttributeValue::M(fields)) => from_item(fields),
        _ => Err(StoreError::Unavailable(
            "a subscription item has no subscription".into(),
        )),
    }
}

/// The keys a subscription is stored under: its resource item first, then
/// one match item per event type of an explicit subscription, or the one
/// match item of a generic subscription (`generic::subscription_key`).
fn subscription_keys(subscription: &Subscription) -> Vec<(String, String)> {
    let mut keys = vec![(resource_key(&subscription.id), RESOURCE_SORT_KEY.to_owned())];
    match subscription.criteria.target {
        Target::Explicit(nhs_number) => {
            for &event_type in &subscription.criteria.events {
                keys.push((
                    explicit_key(nhs_number, event_type),
                    subscription.id.clone(),
                ));
            }
        }
        Target::Generic { .. } => {
            if let Some(key) = crate::generic::subscription_key(&subscription.criteria) {
                keys.push((key, subscription.id.clone()));
            }
        }
    }
    keys
}

/// The sparse index of resource items by subscriber (only they carry ownerId).
const BY_SUBSCRIBER_INDEX: &str = "BySubscriber";

/// A listing's page token: the Query's LastEvaluatedKey (string attributes),
/// bound to the listing that issued it (`listing`), so that a token cannot
/// be replayed against another subscriber's or another patient's listing.
fn encode_page_token(key: &Item, listing: &str) -> Option<String> {
    use base64::Engine as _;
    let strings: BTreeMap<&str, &str> = key
        .iter()
        .filter_map(|(name, value)| Some((name.as_str(), value.as_s().ok()?.as_str())))
        .collect();
    let json = serde_json::to_vec(&json!({"listing": listing, "key": strings})).ok()?;
    Some(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(json))
}

/// The start key a page token carries, if the token was issued for this
/// listing and its key has the shape `valid_key` expects. Key values are
/// never empty (DynamoDB refuses empty key attributes with an error).
fn decode_page_token(
    token: &str,
    listing: &str,
    valid_key: impl Fn(&BTreeMap<String, String>) -> bool,
) -> Result<Item, StoreError> {
    use base64::Engine as _;
    #[derive(serde::Deserialize)]
    struct Token {
        listing: String,
        key: BTreeMap<String, String>,
    }
    let json = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(token)
        .map_err(|_| StoreError::InvalidPageToken)?;
    let token: Token = serde_json::from_slice(&json).map_err(|_| StoreError::InvalidPageToken)?;
    let valid = token.listing == listing
        && token
            .key
            .values()
            .all(|value| !value.is_empty() && value.len() <= 256)
        && valid_key(&token.key);
    if !valid {
        return Err(StoreError::InvalidPageToken);
    }
    Ok(token
        .key
        .into_iter()
        .map(|(name, value)| (name, AttributeValue::S(value)))
        .collect())
}

/// A subscriber's listing: resource items of that subscriber.
fn is_subscription_listing_key(key: &BTreeMap<String, String>, subscriber_id: &str) -> bool {
    key.len() == 3
        && key.get("ownerId").map(String::as_str) == Some(subscriber_id)
        && key.get("sk").map(String::as_str) == Some(RESOURCE_SORT_KEY)
        && key
            .get("pk")
            .is_some_and(|pk| pk.starts_with("SUBSCRIPTION#") && pk.len() <= 64)
}

impl SubscriptionStore for DynamoSubscriptionStore {
    async fn create(&self, subscription: &Subscription) -> Result<(), StoreError> {
        let mut writes = Vec::new();
        for (index, (pk, sk)) in subscription_keys(subscription).into_iter().enumerate() {
            let mut item = self.item(pk, sk, subscription)?;
            let condition = if index == 0 {
                item.insert(
                    "ownerId".into(),
                    AttributeValue::S(subscription.subscriber_id.clone()),
                );
                Some("attribute_not_exists(pk)")
            } else {
                None
            };
            writes.push(self.put(item, condition)?);
        }
        self.client
            .transact_write_items()
            .set_transact_items(Some(writes))
            .send()
            .await
            .map_err(|error| {
                unavailable(
                    "storing the subscription",
                    aws_sdk_dynamodb::error::DisplayErrorContext(error),
                )
            })?;
        Ok(())
    }

    async fn delete(&self, subscription: &Subscription) -> Result<(), StoreError> {
        let deletes = subscription_keys(subscription)
            .into_iter()
            .map(|(pk, sk)| {
                let delete = Delete::builder()
                    .table_name(&self.table)
                    .key("pk", AttributeValue::S(pk))
                    .key("sk", AttributeValue::S(sk))
                    .build()
                    .map_err(|error| unavailable("building a delete", error))?;
                Ok(TransactWriteItem::builder().delete(delete).build())
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        self.client
            .transact_write_items()
            .set_transact_items(Some(deletes))
            .send()
            .await
            .map_err(|error| {
                unavailable(
                    "deleting the subscription",
                    aws_sdk_dynamodb::error::DisplayErrorContext(error),
                )
            })?;
        Ok(())
    }

    async fn list_by_subscriber(
        &self,
        subscriber_id: &str,
        limit: usize,
        page_token: Option<&str>,
    ) -> Result<Page<Subscription>, StoreError> {
        let start_key = page_token
            .map(|token| {
                decode_page_token(token, subscriber_id, |key| {
                    is_subscription_listing_key(key, subscriber_id)
                })
            })
            .transpose()?;
        let output = self
            .client
            .query()
            .table_name(&self.table)
            .index_name(BY_SUBSCRIBER_INDEX)
            .key_condition_expression("ownerId = :owner")
            .expression_attribute_values(":owner", AttributeValue::S(subscriber_id.to_owned()))
            .limit(i32::try_from(limit.max(1)).unwrap_or(i32::MAX))
            .set_exclusive_start_key(start_key)
            .send()
            .await
            .map_err(|error| unavailable("listing subscriptions", error))?;
        let items = output
            .items
            .unwrap_or_default()
            .into_iter()
            .map(subscription_of)
            .collect::<Result<Vec<_>, _>>()?;
        let next = output
            .last_evaluated_key
            .as_ref()
            .and_then(|key| encode_page_token(key, subscriber_id));
        Ok(Page { items, next })
    }

    async fn get(&self, id: &str) -> Result<Option<Subscription>, StoreError> {
        let output = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("pk", AttributeValue::S(resource_key(id)))
            .key("sk", AttributeValue::S(RESOURCE_SORT_KEY.into()))
            .send()
            .await
            .map_err(|error| unavailable("reading a subscription", error))?;
        output.item.map(subscription_of).transpose()
    }

    async fn explicit_candidates(
        &self,
        nhs_number: NhsNumber,
        event_type: EventType,
    ) -> Result<Vec<Subscription>, StoreError> {
        self.stored_under(explicit_key(nhs_number, event_type))
            .await
    }

    async fn generic_candidates(&self, keys: &[String]) -> Result<Vec<Subscription>, StoreError> {
        // At most ten Queries, sent together: the event waits for one round
        // trip rather than ten in a row.
        let queries = keys.iter().map(|key| self.stored_under(key.clone()));
        let found = futures_util::future::try_join_all(queries).await?;
        Ok(found.into_iter().flatten().collect())
    }
}

impl DynamoSubscriptionStore {
    /// Every subscription with a match item under `pk`: one Query (paged
    /// only when a key holds more than 1 MB of subscriptions).
    async fn stored_under(&self, pk: String) -> Result<Vec<Subscription>, StoreError> {
        let mut candidates = Vec::new();
        let mut start_key = None;
        loop {
            let page = self
                .client
                .query()
                .table_name(&self.table)
                .key_condition_expression("pk = :pk")
                // A subscription deleted a moment ago must not match.
                .consistent_read(true)
                .expression_attribute_values(":pk", AttributeValue::S(pk.clone()))
                .set_exclusive_start_key(start_key)
                .send()
                .await
                .map_err(|error| unavailable("finding subscriptions", error))?;
            for item in page.items.unwrap_or_default() {
                candidates.push(subscription_of(item)?);
            }
            start_key = page.last_evaluated_key;
            if start_key.is_none() {
                return Ok(candidates);
            }
        }
    }
}

/// The subscribers table: one item per subscriber id.
#[derive(Clone)]
pub struct DynamoSubscriberStore {
    client: aws_sdk_dynamodb::Client,
    table: String,
}

impl DynamoSubscriberStore {
    pub fn new(client: aws_sdk_dynamodb::Client, table: impl Into<String>) -> Self {
        DynamoSubscriberStore {
            client,
            table: table.into(),
        }
    }
}

impl SubscriberStore for DynamoSubscriberStore {
    async fn create(&self, subscriber: &Subscriber) -> Result<(), StoreError> {
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(to_item(subscriber)?))
            .condition_expression("attribute_not_exists(id)")
            .send()
            .await
            .map_err(|error| unavailable("storing the subscriber", error))?;
        Ok(())
    }

    async fn get(&self, id: &str) -> Result<Option<Subscriber>, StoreError> {
        get_by_key(
            &self.client,
            &self.table,
            ("id", id),
            Read::Eventual,
            "reading a subscriber",
        )
        .await
    }

    async fn save(&self, subscriber: &Subscriber) -> Result<(), StoreError> {
        let written = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(to_item(subscriber)?))
            // Never brings back a subscriber offboarded meanwhile.
            .condition_expression("attribute_exists(id) AND attribute_not_exists(offboardedAt)")
            .send()
            .await;
        if conditionally_written(written, "saving the subscriber")? {
            Ok(())
        } else {
            Err(StoreError::Unavailable(
                "the subscriber was offboarded while it was being changed".into(),
            ))
        }
    }

    async fn mark_offboarded(&self, id: &str, at: &str) -> Result<(), StoreError> {
        self.client
            .update_item()
            .table_name(&self.table)
            .key("id", AttributeValue::S(id.to_owned()))
            .update_expression("SET offboardedAt = if_not_exists(offboardedAt, :at)")
            .condition_expression("attribute_exists(id)")
            .expression_attribute_values(":at", AttributeValue::S(at.to_owned()))
            .send()
            .await
            .map_err(|error| unavailable("recording the offboarding", error))?;
        Ok(())
    }
}

/// Entries SNS reports as failed are retried this many times before the
/// whole event is handed back for the stream to retry.
const SNS_ENTRY_ATTEMPTS: usize = 3;

/// Publishes one message per recipient to the event type's topic.
#[derive(Clone)]
pub struct SnsDeliveryPublisher {
    client: aws_sdk_sns::Client,
    topics: BTreeMap<EventType, String>,
}

impl SnsDeliveryPublisher {
    pub fn new(client: aws_sdk_sns::Client, topics: BTreeMap<EventType, String>) -> Self {
        SnsDeliveryPublisher { client, topics }
    }
}

impl DeliveryPublisher for SnsDeliveryPublisher {
    async fn publish(
        &self,
        event: &StoredEvent,
        deliveries: &[Delivery],
    ) -> Result<(), StoreError> {
        let topic = self.topics.get(&event.event_type).ok_or_else(|| {
            StoreError::Unavailable(format!("no topic is configured for {}", event.event_type))
        })?;
        for chunk in crate::dispatch::batches(event, deliveries) {
            let mut pending: Vec<PublishBatchRequestEntry> = chunk
                .iter()
                .enumerate()
                .map(|(index, delivery)| entry(index, event, delivery))
                .collect::<Result<_, _>>()?;
            for attempt in 1..=SNS_ENTRY_ATTEMPTS {
                let output = self
                    .client
                    .publish_batch()
                    .topic_arn(topic)
                    .set_publish_batch_request_entries(Some(pending.clone()))
                    .send()
                    .await
                    .map_err(|error| {
                        unavailable(
                            "publishing deliveries",
                            aws_sdk_sns::error::DisplayErrorContext(error),
                        )
                    })?;
                let failed: Vec<&str> =
                    output.failed().iter().map(|failure| failure.id()).collect();
                if failed.is_empty() {
                    break;
                }
                if attempt == SNS_ENTRY_ATTEMPTS {
                    return Err(StoreError::Unavailable(format!(
                        "{} deliveries of event {} failed after {attempt} attempts",
                        failed.len(),
                        event.event_id
                    )));
                }
                pending.retain(|entry| failed.contains(&entry.id()));
            }
        }
        Ok(())
    }
}

fn entry(
    index: usize,
    event: &StoredEvent,
    delivery: &Delivery,
) -> Result<PublishBatchRequestEntry, StoreError> {
    let attributes = delivery
        .attributes(event)
        .into_iter()
        .map(|(name, value)| {
            MessageAttributeValue::builder()
                .data_type("String")
                .string_value(value)
                .build()
                .map(|value| (name.to_owned(), value))
                .map_err(|error| unavailable("building a message attribute", error))
        })
        .collect::<Result<HashMap<_, _>, _>>()?;
    PublishBatchRequestEntry::builder()
        .id(index.to_string())
        .message(&event.payload)
        .set_message_attributes(Some(attributes))
        .build()
        .map_err(|error| unavailable("building a batch entry", error))
}

/// An environment variable's value, trimmed; None when unset or empty.
fn optional_env(name: &str) -> Option<String> {
    std::env::var(name)
        .ok()
        .map(|value| value.trim().to_owned())
        .filter(|value| !value.is_empty())
}

/// Settings of the queues onboarding creates.
#[derive(Debug, Clone)]
pub struct QueueSettings {
    /// Prefix of every queue name (the stack's name), at most 39 characters
    /// so that `<prefix>-<uuid>-dlq` fits SQS's 80.
    pub name_prefix: String,
    /// Receives after which a message moves to the DLQ.
    pub max_receive_count: u32,
    /// How long an undelivered message is kept, in seconds (SQS allows 14 days).
    pub retention_seconds: u32,
    /// The KMS key (id, ARN or alias) that encrypts every queue and DLQ;
    /// `None` leaves SQS's default encryption.
    pub kms_master_key_id: Option<String>,
    /// The hub's queue for what SNS cannot deliver to a subscriber's queue
    /// (deleted, or its policy or key refusing SNS): the redrive policy of
    /// every topic subscription, so that such messages are kept for
    /// redrive rather than discarded. `None`: SNS discards them.
    pub undelivered_queue_arn: Option<String>,
}

impl QueueSettings {
    /// QUEUE_NAME_PREFIX, QUEUE_MAX_RECEIVE_COUNT, QUEUE_RETENTION_SECONDS,
    /// and QUEUE_KMS_KEY_ID and UNDELIVERED_QUEUE_ARN if set and not empty.
    pub fn from_env() -> Result<Self, StoreError> {
        let number = |name: &str| {
            required_env(name)?.parse::<u32>().map_err(|_| {
                StoreError::Unavailable(format!(
                    "environment variable {name} is not a whole number"
                ))
            })
        };
        Ok(QueueSettings {
            name_prefix: required_env("QUEUE_NAME_PREFIX")?,
            max_receive_count: number("QUEUE_MAX_RECEIVE_COUNT")?,
            retention_seconds: number("QUEUE_RETENTION_SECONDS")?,
            kms_master_key_id: optional_env("QUEUE_KMS_KEY_ID"),
            undelivered_queue_arn: optional_env("UNDELIVERED_QUEUE_ARN"),
        })
    }
}

/// Creates each subscriber's queue and DLQ (or takes the queue it owns),
/// subscribes the queue to the topics of the event types it may receive,
/// filtered to its own id, and lets the subscriber's principal read them.
#[derive(Clone)]
pub struct SqsQueueProvisioner {
    sqs: aws_sdk_sqs::Client,
    sns: aws_sdk_sns::Client,
    kms: aws_sdk_kms::Client,
    topics: BTreeMap<EventType, String>,
    settings: QueueSettings,
}

impl SqsQueueProvisioner {
    pub fn new(
        sqs: aws_sdk_sqs::Client,
        sns: aws_sdk_sns::Client,
        kms: aws_sdk_kms::Client,
        topics: BTreeMap<EventType, String>,
        settings: QueueSettings,
    ) -> Self {
        SqsQueueProvisioner {
            sqs,
            sns,
            kms,
            topics,
            settings,
        }
    }

    /// The clients of the configuration, the topics of TOPIC_ARN_*, and
    /// the settings of [`QueueSettings::from_env`].
    pub fn from_env(config: &aws_config::SdkConfig) -> Result<Self, StoreError> {
        Ok(Self::new(
            aws_sdk_sqs::Client::new(config),
            aws_sdk_sns::Client::new(config),
            aws_sdk_kms::Client::new(config),
            topic_arns_from_env(),
            QueueSettings::from_env()?,
        ))
    }

    async fn create_queue(
        &self,
        name: String,
        attributes: Vec<(QueueAttributeName, String)>,
    ) -> Result<(String, String), StoreError> {
        let mut request = self.sqs.create_queue().queue_name(name);
        for (key, value) in attributes {
            request = request.attributes(key, value);
        }
        let url = request
            .send()
            .await
            .map_err(|error| {
                unavailable(
                    "creating a queue",
                    aws_sdk_sqs::error::DisplayErrorContext(error),
                )
            })?
            .queue_url
            .ok_or_else(|| StoreError::Unavailable("SQS returned no queue URL".into()))?;
        let arn = self
            .sqs
            .get_queue_attributes()
            .queue_url(&url)
            .attribute_names(QueueAttributeName::QueueArn)
            .send()
            .await
            .map_err(|error| unavailable("reading a queue's ARN", error))?
            .attributes
            .and_then(|mut attributes| attributes.remove(&QueueAttributeName::QueueArn))
            .ok_or_else(|| StoreError::Unavailable("SQS returned no queue ARN".into()))?;
        Ok((url, arn))
    }

    fn topic_arns(&self, event_types: &[EventType]) -> Result<Vec<&str>, StoreError> {
        event_types
            .iter()
            .map(|event_type| {
                self.topics
                    .get(event_type)
                    .map(String::as_str)
                    .ok_or_else(|| {
                        StoreError::Unavailable(format!("no topic is configured for {event_type}"))
                    })
            })
            .collect()
    }

    async fn set_policy(
        &self,
        queue_url: &str,
        policy: serde_json::Value,
        what: &str,
    ) -> Result<(), StoreError> {
        self.sqs
            .set_queue_attributes()
            .queue_url(queue_url)
            .attributes(QueueAttributeName::Policy, policy.to_string())
            .send()
            .await
            .map_err(|error| unavailable(what, error))?;
        Ok(())
    }

    /// The queue's and DLQ's policies for these topics and this reader.
    async fn set_policies(
        &self,
        queues: &Queues,
        topic_arns: &[&str],
        reader: Option<&AwsPrincipal>,
    ) -> Result<(), StoreError> {
        self.set_policy(
            &queues.dead_letter_queue_url,
            access::dead_letter_queue_policy(&queues.dead_letter_queue_arn, reader),
            "setting the DLQ policy",
        )
        .await?;
        self.set_policy(
            &queues.queue_url,
            access::queue_policy(&queues.queue_arn, topic_arns, reader),
            "setting the queue policy",
        )
        .await
    }

    /// Lets the reader decrypt its queue's and DLQ's messages, and nothing
    /// else under the hub's key: each grant is bound to one queue's
    /// encryption context. None without a reader or a key.
    async fn grant_reader(
        &self,
        subscriber_id: &str,
        queues: &Queues,
        reader: Option<&AwsPrincipal>,
    ) -> Result<Vec<String>, StoreError> {
        let (Some(reader), Some(key)) = (reader, &self.settings.kms_master_key_id) else {
            return Ok(Vec::new());
        };
        let mut grants = Vec::new();
        for (queue_arn, which) in [
            (&queues.queue_arn, "queue"),
            (&queues.dead_letter_queue_arn, "dlq"),
        ] {
            let (context_key, context_value) = access::queue_encryption_context(queue_arn);
            let granted = self
                .kms
                .create_grant()
                .key_id(key)
                .grantee_principal(reader.arn())
                .operations(aws_sdk_kms::types::GrantOperation::Decrypt)
                .constraints(
                    aws_sdk_kms::types::GrantConstraints::builder()
                        .encryption_context_subset(context_key, context_value)
                        .build(),
                )
                .name(format!(
                    "{}-{subscriber_id}-{which}",
                    self.settings.name_prefix
                ))
                .send()
                .await
                .map_err(|error| {
                    unavailable(
                        "granting the subscriber's principal its queue's key",
                        aws_sdk_kms::error::DisplayErrorContext(error),
                    )
                })?;
            grants.extend(granted.grant_id);
        }
        Ok(grants)
    }

    async fn revoke(&self, grants: &[String]) -> Result<(), StoreError> {
        let Some(key) = &self.settings.kms_master_key_id else {
            return Ok(());
        };
        for grant in grants {
            let revoked = self
                .kms
                .revoke_grant()
                .key_id(key)
                .grant_id(grant)
                .send()
                .await;
            match revoked {
                Ok(_) => {}
                // Already revoked (an earlier, interrupted change).
                Err(error)
                    if error
                        .as_service_error()
                        .is_some_and(|e| e.is_not_found_exception()) => {}
                Err(error) => {
                    return Err(unavailable(
                        "revoking a key grant",
                        aws_sdk_kms::error::DisplayErrorContext(error),
                    ));
                }
            }
        }
        Ok(())
    }

    /// Subscribes the queue to one topic, raw, filtered to the subscriber.
    async fn subscribe(
        &self,
        subscriber_id: &str,
        topic_arn: &str,
        queue_arn: &str,
    ) -> Result<Option<String>, StoreError> {
        let filter = json!({ SUBSCRIBER_ATTRIBUTE: [subscriber_id] }).to_string();
        let mut request = self
            .sns
            .subscribe()
            .topic_arn(topic_arn)
            .protocol("sqs")
            .endpoint(queue_arn)
            .attributes("RawMessageDelivery", "true")
            .attributes("FilterPolicy", &filter)
            .return_subscription_arn(true);
        if let Some(undelivered) = &self.settings.undelivered_queue_arn {
            request = request.attributes(
                "RedrivePolicy",
                json!({ "deadLetterTargetArn": undelivered }).to_string(),
            );
        }
        let subscribed = request
            .send()
            .await
            .map_err(|error| unavailable("subscribing the queue to a topic", error))?;
        Ok(subscribed.subscription_arn)
    }

    async fn unsubscribe_one(&self, subscription_arn: &str) -> Result<(), StoreError> {
        let removed = self
            .sns
            .unsubscribe()
            .subscription_arn(subscription_arn)
            .send()
            .await;
        match removed {
            Ok(_) => Ok(()),
            // Already gone (an earlier, interrupted offboarding): nothing to do.
            Err(error)
                if error
                    .as_service_error()
                    .is_some_and(|e| e.is_not_found_exception()) =>
            {
                Ok(())
            }
            Err(error) => Err(unavailable("removing a topic subscription", error)),
        }
    }
}

impl QueueProvisioner for SqsQueueProvisioner {
    async fn provision(
        &self,
        subscriber_id: &str,
        event_types: &[EventType],
        queue_access: &QueueAccess,
    ) -> Result<Queues, StoreError> {
        let topic_arns = self.topic_arns(event_types)?;
        let mut queues = match queue_access {
            // The subscriber's queue already exists, in its account: the hub
            // only subscribes it (its owner confirms each subscription).
            QueueAccess::SubscriberOwned { queue_arn } => Queues {
                queue_url: queue_arn.url(),
                queue_arn: queue_arn.arn().to_owned(),
                dead_letter_queue_url: String::new(),
                dead_letter_queue_arn: String::new(),
                topic_subscriptions: Vec::new(),
                key_grants: Vec::new(),
            },
            QueueAccess::HubOwned { principal } => {
                let retention = self.settings.retention_seconds.to_string();
                let base_name = format!("{}-{subscriber_id}", self.settings.name_prefix);
                // Both queues encrypted with the hub's key when one is configured.
                let mut common = vec![(QueueAttributeName::MessageRetentionPeriod, retention)];
                if let Some(key) = &self.settings.kms_master_key_id {
                    common.push((QueueAttributeName::KmsMasterKeyId, key.clone()));
                }
                let (dlq_url, dlq_arn) = self
                    .create_queue(format!("{base_name}-dlq"), common.clone())
                    .await?;
                let redrive = json!({
                    "deadLetterTargetArn": dlq_arn,
                    "maxReceiveCount": self.settings.max_receive_count.to_string(),
                });
                let mut attributes = common;
                attributes.push((QueueAttributeName::RedrivePolicy, redrive.to_string()));
                let (queue_url, queue_arn) = self.create_queue(base_name, attributes).await?;
                let mut queues = Queues {
                    queue_url,
                    queue_arn,
                    dead_letter_queue_url: dlq_url,
                    dead_letter_queue_arn: dlq_arn,
                    topic_subscriptions: Vec::new(),
                    key_grants: Vec::new(),
                };
                self.set_policies(&queues, &topic_arns, principal.as_ref())
                    .await?;
                queues.key_grants = self
                    .grant_reader(subscriber_id, &queues, principal.as_ref())
                    .await?;
                queues
            }
        };
        for topic_arn in topic_arns {
            queues.topic_subscriptions.extend(
                self.subscribe(subscriber_id, topic_arn, &queues.queue_arn)
                    .await?,
            );
        }
        Ok(queues)
    }

    async fn reconfigure(
        &self,
        subscriber_id: &str,
        queues: &Queues,
        event_types: &[EventType],
        queue_access: &QueueAccess,
    ) -> Result<Queues, StoreError> {
        let wanted = self.topic_arns(event_types)?;
        let mut next = queues.clone();
        // New deliveries first: the queue is admitted by the new topics
        // before they are subscribed, and subscribed before any is removed.
        if let QueueAccess::HubOwned { principal } = queue_access {
            let mut admitted: Vec<&str> = wanted.clone();
            let current = queues.topic_arns();
            admitted.extend(current.iter().map(String::as_str));
            admitted.sort_unstable();
            admitted.dedup();
            self.set_policies(queues, &admitted, principal.as_ref())
                .await?;
        }
        let current = queues.topic_arns();
        for topic_arn in &wanted {
            if !current.iter().any(|arn| arn == topic_arn) {
                next.topic_subscriptions.extend(
                    self.subscribe(subscriber_id, topic_arn, &queues.queue_arn)
                        .await?,
                );
            }
        }
        let mut kept = Vec::new();
        for subscription_arn in &next.topic_subscriptions {
            let topic = subscription_arn
                .rsplit_once(':')
                .map(|(topic, _)| topic)
                .unwrap_or_default();
            if wanted.contains(&topic) {
                kept.push(subscription_arn.clone());
            } else {
                self.unsubscribe_one(subscription_arn).await?;
            }
        }
        next.topic_subscriptions = kept;
        if let QueueAccess::HubOwned { principal } = queue_access {
            // Exactly the wanted topics now; the new reader's grants before
            // the old reader's go.
            self.set_policies(queues, &wanted, principal.as_ref())
                .await?;
            next.key_grants = self
                .grant_reader(subscriber_id, queues, principal.as_ref())
                .await?;
            self.revoke(&queues.key_grants).await?;
        }
        Ok(next)
    }

    async fn unsubscribe(&self, queues: &Queues) -> Result<(), StoreError> {
        for subscription_arn in &queues.topic_subscriptions {
            self.unsubscribe_one(subscription_arn).await?;
        }
        Ok(())
    }
}

/// The registered clients: one item per client id.
#[derive(Clone)]
pub struct DynamoClientStore {
    client: aws_sdk_dynamodb::Client,
    table: String,
}

impl DynamoClientStore {
    pub fn new(client: aws_sdk_dynamodb::Client, table: impl Into<String>) -> Self {
        DynamoClientStore {
            client,
            table: table.into(),
        }
    }

    /// Registers a client, or replaces its registration (a key rotation).
    pub async fn put(&self, registered: &crate::auth::Client) -> Result<(), StoreError> {
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(to_item(registered)?))
            .send()
            .await
            .map_err(|error| unavailable("registering a client", error))?;
        Ok(())
    }
}

impl crate::ports::ClientStore for DynamoClientStore {
    async fn get(&self, client_id: &str) -> Result<Option<crate::auth::Client>, StoreError> {
        get_by_key(
            &self.client,
            &self.table,
            ("clientId", client_id),
            Read::Consistent,
            "reading a client",
        )
        .await
    }

    async fn register(&self, registered: &crate::auth::Client) -> Result<bool, StoreError> {
        // One update, so that a disable or an onboarding's link landing at
        // the same moment is kept: the registration's own fields are set;
        // `enabled` only when the client is new (a disabled client stays
        // disabled through a re-registration), `subscriberId` never.
        let item = to_item(registered)?;
        let mut names = HashMap::new();
        let mut values = HashMap::new();
        let mut assignments = Vec::new();
        for (index, (name, value)) in item
            .into_iter()
            .filter(|(name, _)| !matches!(name.as_str(), "clientId" | "subscriberId" | "enabled"))
            .enumerate()
        {
            assignments.push(format!("#f{index} = :f{index}"));
            names.insert(format!("#f{index}"), name);
            values.insert(format!(":f{index}"), value);
        }
        assignments.push("enabled = if_not_exists(enabled, :enabled)".to_owned());
        values.insert(
            ":enabled".to_owned(),
            AttributeValue::Bool(registered.enabled),
        );
        let output = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("clientId", AttributeValue::S(registered.client_id.clone()))
            .update_expression(format!("SET {}", assignments.join(", ")))
            .set_expression_attribute_names(Some(names))
            .set_expression_attribute_values(Some(values))
            .return_values(aws_sdk_dynamodb::types::ReturnValue::AllOld)
            .send()
            .await
            .map_err(|error| unavailable("registering a client", error))?;
        // No old values: nothing was registered under this id.
        Ok(output.attributes.is_none_or(|old| old.is_empty()))
    }

    async fn disable(&self, client_id: &str) -> Result<bool, StoreError> {
        let updated = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("clientId", AttributeValue::S(client_id.to_owned()))
            .update_expression("SET enabled = :false")
            .condition_expression("attribute_exists(clientId)")
            .expression_attribute_values(":false", AttributeValue::Bool(false))
            .send()
            .await;
        conditionally_written(updated, "disabling a client")
    }

    async fn link_subscriber(
        &self,
        client_id: &str,
        subscriber_id: &str,
    ) -> Result<(), StoreError> {
        self.client
            .update_item()
            .table_name(&self.table)
            .key("clientId", AttributeValue::S(client_id.to_owned()))
            .update_expression("SET subscriberId = :subscriber")
            .condition_expression("attribute_exists(clientId)")
            .expression_attribute_values(":subscriber", AttributeValue::S(subscriber_id.to_owned()))
            .send()
            .await
            .map_err(|error| unavailable("linking a client to its subscriber", error))?;
        Ok(())
    }
}

/// The audit table: one item per record (`auditId`), with the indexes
/// `ByPatient` (nhsNumber, at) and `ByClient` (clientId, at).
#[derive(Clone)]
pub struct DynamoAuditLog {
    client: aws_sdk_dynamodb::Client,
    table: String,
}

const AUDIT_BY_PATIENT_INDEX: &str = "ByPatient";
const AUDIT_BY_CLIENT_INDEX: &str = "ByClient";

/// BatchWriteItem's limit.
const MAX_BATCH_WRITE: usize = 25;

/// How many times a batch request is sent while DynamoDB leaves some of it
/// unprocessed (throttling), before the caller's own retry takes over.
const BATCH_ATTEMPTS: u32 = 8;

/// Puts `items` into `table`, 25 to a BatchWriteItem, sending again what
/// DynamoDB leaves unprocessed, with a growing pause.
async fn write_batches(
    client: &aws_sdk_dynamodb::Client,
    table: &str,
    items: Vec<Item>,
    what: &str,
) -> Result<(), StoreError> {
    use aws_sdk_dynamodb::types::{PutRequest, WriteRequest};
    let mut items = items.into_iter().peekable();
    while items.peek().is_some() {
        let mut requests = items
            .by_ref()
            .take(MAX_BATCH_WRITE)
            .map(|item| {
                let put = PutRequest::builder()
                    .set_item(Some(item))
                    .build()
                    .map_err(|error| unavailable(what, error))?;
                Ok(WriteRequest::builder().put_request(put).build())
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        for attempt in 0..BATCH_ATTEMPTS {
            if attempt > 0 {
                back_off(client, attempt).await;
            }
            let output = client
                .batch_write_item()
                .request_items(table, requests)
                .send()
                .await
                .map_err(|error| {
                    unavailable(
                        &format!("writing {what}"),
                        aws_sdk_dynamodb::error::DisplayErrorContext(error),
                    )
                })?;
            requests = output
                .unprocessed_items
                .and_then(|mut unprocessed| unprocessed.remove(table))
                .unwrap_or_default();
            if requests.is_empty() {
                break;
            }
        }
        if !requests.is_empty() {
            return Err(StoreError::Unavailable(format!(
                "DynamoDB left {} {what} unprocessed after {BATCH_ATTEMPTS} requests",
                requests.len()
            )));
        }
    }
    Ok(())
}

/// Reads the items of `table` under these values of its string hash key,
/// 100 to a BatchGetItem, asking again for what DynamoDB leaves
/// unprocessed, with a growing pause. Keys with no item are left out; the
/// keys must be unique (BatchGetItem refuses a request that repeats one).
async fn read_batches(
    client: &aws_sdk_dynamodb::Client,
    table: &str,
    key_name: &str,
    keys: &[String],
    what: &str,
) -> Result<Vec<Item>, StoreError> {
    use aws_sdk_dynamodb::types::KeysAndAttributes;
    let mut found = Vec::with_capacity(keys.len());
    for chunk in keys.chunks(MAX_BATCH_GET) {
        let mut request = KeysAndAttributes::builder();
        for key in chunk {
            request = request.keys(HashMap::from([(
                key_name.to_owned(),
                AttributeValue::S(key.clone()),
            )]));
        }
        let mut pending = Some(
            request
                .build()
                .map_err(|error| unavailable(&format!("building a read of {what}"), error))?,
        );
        let mut attempt = 0;
        while let Some(keys) = pending.take() {
            if attempt == BATCH_ATTEMPTS {
                return Err(StoreError::Unavailable(format!(
                    "DynamoDB left keys of {what} unprocessed after {BATCH_ATTEMPTS} requests"
                )));
            }
            if attempt > 0 {
                back_off(client, attempt).await;
            }
            attempt += 1;
            let mut output = client
                .batch_get_item()
                .request_items(table, keys)
                .send()
                .await
                .map_err(|error| {
                    unavailable(
                        &format!("reading {what}"),
                        aws_sdk_dynamodb::error::DisplayErrorContext(error),
                    )
                })?;
            found.extend(
                output
                    .responses
                    .as_mut()
                    .and_then(|responses| responses.remove(table))
                    .unwrap_or_default(),
            );
            pending = output
                .unprocessed_keys
                .and_then(|mut unprocessed| unprocessed.remove(table))
                .filter(|keys| !keys.keys.is_empty());
        }
    }
    Ok(found)
}

/// Waits before asking again for what DynamoDB left unprocessed, as its
/// documentation asks: exponentially longer each time (25 ms doubling, at
/// most 1.6 s), with jitter so that concurrent writers spread out. Without
/// a sleep implementation in the client's configuration it asks again at
/// once.
async fn back_off(client: &aws_sdk_dynamodb::Client, attempt: u32) {
    use aws_sdk_dynamodb::config::AsyncSleep;
    let Some(sleep) = client.config().sleep_impl() else {
        return;
    };
    let base = 25u64 << attempt.min(6);
    let jitter = u64::from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |elapsed| elapsed.subsec_nanos()),
    ) % base.max(1);
    sleep
        .sleep(std::time::Duration::from_millis(base / 2 + jitter / 2))
        .await;
}

impl DynamoAuditLog {
    pub fn new(client: aws_sdk_dynamodb::Client, table: impl Into<String>) -> Self {
        DynamoAuditLog {
            client,
            table: table.into(),
        }
    }

    /// The audit table every function writes to, named by AUDIT_TABLE.
    pub fn from_env(client: aws_sdk_dynamodb::Client) -> Result<Self, StoreError> {
        Ok(DynamoAuditLog::new(client, required_env("AUDIT_TABLE")?))
    }
}

fn audit_query_value(query: &crate::audit::AuditQuery) -> (&'static str, String) {
    match query {
        crate::audit::AuditQuery::Patient(nhs_number) => ("nhsNumber", nhs_number.as_string()),
        crate::audit::AuditQuery::Client(client_id) => ("clientId", client_id.clone()),
    }
}

impl crate::ports::AuditLog for DynamoAuditLog {
    async fn record(&self, record: &crate::audit::AuditRecord) -> Result<(), StoreError> {
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(to_item(record)?))
            .send()
            .await
            .map_err(|error| unavailable("recording an audit entry", error))?;
        Ok(())
    }

    async fn record_all(&self, records: &[crate::audit::AuditRecord]) -> Result<(), StoreError> {
        let items = records.iter().map(to_item).collect::<Result<Vec<_>, _>>()?;
        write_batches(&self.client, &self.table, items, "audit entries").await
    }

    async fn get(&self, audit_id: &str) -> Result<Option<crate::audit::AuditRecord>, StoreError> {
        get_by_key(
            &self.client,
            &self.table,
            ("auditId", audit_id),
            Read::Eventual,
            "reading an audit entry",
        )
        .await
    }

    async fn query(
        &self,
        query: &crate::audit::AuditQuery,
        limit: usize,
        page_token: Option<&str>,
    ) -> Result<Page<crate::audit::AuditRecord>, StoreError> {
        let (attribute, value) = audit_query_value(query);
        let listing = format!("{attribute}={value}");
        let start_key = page_token
            .map(|token| {
                decode_page_token(token, &listing, |key| {
                    key.len() == 3
                        && key.contains_key("auditId")
                        && key.contains_key("at")
                        && key.get(attribute) == Some(&value)
                })
            })
            .transpose()?;
        let index = match query {
            crate::audit::AuditQuery::Patient(_) => AUDIT_BY_PATIENT_INDEX,
            crate::audit::AuditQuery::Client(_) => AUDIT_BY_CLIENT_INDEX,
        };
        let output = self
            .client
            .query()
            .table_name(&self.table)
            .index_name(index)
            .key_condition_expression("#key = :value")
            .expression_attribute_names("#key", attribute)
            .expression_attribute_values(":value", AttributeValue::S(value))
            .scan_index_forward(false)
            .limit(i32::try_from(limit.max(1)).unwrap_or(i32::MAX))
            .set_exclusive_start_key(start_key)
            .send()
            .await
            .map_err(|error| unavailable("querying the audit trail", error))?;
        let items = output
            .items
            .unwrap_or_default()
            .into_iter()
            .map(from_item)
            .collect::<Result<Vec<_>, _>>()?;
        let next = output
            .last_evaluated_key
            .as_ref()
            .and_then(|key| encode_page_token(key, &listing));
        Ok(Page { items, next })
    }
}

/// The client assertions already exchanged, one item per client and jti,
/// removed by the table's TTL on `expiresAt` once the assertion has expired.
#[derive(Clone)]
pub struct DynamoReplayGuard {
    client: aws_sdk_dynamodb::Client,
    table: String,
}

impl DynamoReplayGuard {
    pub fn new(client: aws_sdk_dynamodb::Client, table: impl Into<String>) -> Self {
        DynamoReplayGuard {
            client,
            table: table.into(),
        }
    }
}

impl crate::ports::ReplayGuard for DynamoReplayGuard {
    async fn remember(
        &self,
        client_id: &str,
        jti: &str,
        expires_at: time::OffsetDateTime,
    ) -> Result<bool, StoreError> {
        let written = self
            .client
            .put_item()
            .table_name(&self.table)
            .item("jtiKey", AttributeValue::S(format!("{client_id}#{jti}")))
            .item(
                "expiresAt",
                AttributeValue::N(expires_at.unix_timestamp().to_string()),
            )
            .condition_expression("attribute_not_exists(jtiKey)")
            .send()
            .await;
        conditionally_written(written, "recording an assertion")
    }
}

/// The hub's token-signing key in KMS (ECC_NIST_P256, SIGN_VERIFY): tokens
/// are signed by KMS, so no function ever holds the private key.
#[derive(Clone)]
pub struct KmsSigningKey {
    client: aws_sdk_kms::Client,
    key_id: String,
    verifier: crate::auth::HubVerifier,
}

impl KmsSigningKey {
    /// Reads the key's public half once, at start-up: its thumbprint is the
    /// `kid` of every token.
    pub async fn load(client: aws_sdk_kms::Client, key_id: &str) -> Result<Self, StoreError> {
        let verifier = kms_verifier(&client, key_id).await?;
        Ok(KmsSigningKey {
            client,
            key_id: key_id.to_owned(),
            verifier,
        })
    }
}

/// The verifier of the tokens a KMS key signs, from its public key.
pub async fn kms_verifier(
    client: &aws_sdk_kms::Client,
    key_id: &str,
) -> Result<crate::auth::HubVerifier, StoreError> {
    let output = client
        .get_public_key()
        .key_id(key_id)
        .send()
        .await
        .map_err(|error| unavailable("reading the hub's public key", error))?;
    let der = output
        .public_key
        .ok_or_else(|| StoreError::Unavailable("KMS returned no public key".into()))?;
    let pem = crate::auth::public_key_pem(der.as_ref());
    crate::auth::HubVerifier::from_public_pem(pem.as_bytes())
        .map_err(|error| unavailable("the hub's public key", error))
}

/// The verifiers of every key id in a comma-separated list: the current
/// signing key first, then any older one still trusted during a rotation.
pub async fn kms_verifiers(
    client: &aws_sdk_kms::Client,
    key_ids: &str,
) -> Result<Vec<crate::auth::HubVerifier>, StoreError> {
    let mut verifiers = Vec::new();
    for key_id in key_ids
        .split(',')
        .map(str::trim)
        .filter(|id| !id.is_empty())
    {
        verifiers.push(kms_verifier(client, key_id).await?);
    }
    if verifiers.is_empty() {
        return Err(StoreError::Unavailable(
            "no hub verifying key is configured".into(),
        ));
    }
    Ok(verifiers)
}

impl crate::ports::HubSigningKey for KmsSigningKey {
    fn key_id(&self) -> &str {
        self.verifier.key_id()
    }

    async fn sign(&self, signing_input: &[u8]) -> Result<Vec<u8>, StoreError> {
        use aws_sdk_kms::primitives::Blob;
        use aws_sdk_kms::types::{MessageType, SigningAlgorithmSpec};
        let output = self
            .client
            .sign()
            .key_id(&self.key_id)
            .message(Blob::new(signing_input))
            .message_type(MessageType::Raw)
            .signing_algorithm(SigningAlgorithmSpec::EcdsaSha256)
            .send()
            .await
            .map_err(|error| unavailable("signing a token", error))?;
        let der = output
            .signature
            .ok_or_else(|| StoreError::Unavailable("KMS returned no signature".into()))?;
        crate::auth::ecdsa_der_to_fixed(der.as_ref())
            .map(Vec::from)
            .ok_or_else(|| StoreError::Unavailable("KMS returned an unreadable signature".into()))
    }
}

// ---------------------------------------------------------------------------
// The child register
// ---------------------------------------------------------------------------

/// The register table: one item per NHS number (`nhsNumber`), the
/// `ChildRecord` as serde writes it plus `version` (N), which every write
/// checks and increments (optimistic locking between parallel dispatches).
#[derive(Clone)]
pub struct DynamoRegisterStore {
    client: aws_sdk_dynamodb::Client,
    table: String,
}

/// The register item's version attribute.
const REGISTER_VERSION: &str = "version";

impl DynamoRegisterStore {
    pub fn new(client: aws_sdk_dynamodb::Client, table: impl Into<String>) -> Self {
        DynamoRegisterStore {
            client,
            table: table.into(),
        }
    }

    /// The register table named by REGISTER_TABLE.
    pub fn from_env(client: aws_sdk_dynamodb::Client) -> Result<Self, StoreError> {
        Ok(DynamoRegisterStore::new(
            client,
            required_env("REGISTER_TABLE")?,
        ))
    }
}

impl crate::ports::RegisterStore for DynamoRegisterStore {
    async fn get(
        &self,
        nhs_number: NhsNumber,
    ) -> Result<Option<crate::ports::Versioned<crate::register::ChildRecord>>, StoreError> {
        let output = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("nhsNumber", AttributeValue::S(nhs_number.as_string()))
            // The version read is the one the write is conditioned on: a
            // stale read would only fail that condition and read again.
            .consistent_read(true)
            .send()
            .await
            .map_err(|error| unavailable("reading the child register", error))?;
        let Some(mut item) = output.item else {
            return Ok(None);
        };
        let version = item
            .remove(REGISTER_VERSION)
            .and_then(|value| value.as_n().ok()?.parse::<u64>().ok())
            .ok_or_else(|| {
                StoreError::Unavailable("a register item has no readable version".into())
            })?;
        let value: crate::register::ChildRecord = from_item(item)?;
        if value.nhs_number != nhs_number {
            return Err(StoreError::Unavailable(
                "a register item is stored under another NHS number".into(),
            ));
        }
        Ok(Some(crate::ports::Versioned { value, version }))
    }

    async fn put(
        &self,
        record: &crate::register::ChildRecord,
        expected_version: Option<u64>,
    ) -> Result<bool, StoreError> {
        let mut item = to_item(record)?;
        let version = expected_version.map_or(1, |version| version + 1);
        item.insert(
            REGISTER_VERSION.to_owned(),
            AttributeValue::N(version.to_string()),
        );
        let request = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item));
        let request = match expected_version {
            None => request.condition_expression("attribute_not_exists(nhsNumber)"),
            Some(expected) => request
                .condition_expression("#version = :expected")
                .expression_attribute_names("#version", REGISTER_VERSION)
                .expression_attribute_values(":expected", AttributeValue::N(expected.to_string())),
        };
        conditionally_written(request.send().await, "writing the child register")
    }
}

// ---------------------------------------------------------------------------
// Reference data: postcode and practice areas (see crate::reference)
// ---------------------------------------------------------------------------

/// The reference table (`refKey`, S): one item per postcode and per GP
/// practice, written by the loader (`hub-local reference load`) and read
/// by dispatch.
///
/// | refKey | attributes |
/// |---|---|
/// | `POSTCODE#LS17 7DF` | `localAuthority`, `icbSubLocation` (ODS code; absent when none), `country`, `terminated` (BOOL) |
/// | `PRACTICE#B86056` | `icbSubLocation` (ODS code) |
///
/// Every read is a BatchGetItem, even of one key: dispatch is granted that
/// action alone on the table, and reads an event's places (at most two
/// postcodes and two practices) with one request.
#[derive(Clone)]
pub struct DynamoReferenceData {
    client: aws_sdk_dynamodb::Client,
    table: String,
}

/// The reference table's key attribute.
const REFERENCE_KEY: &str = "refKey";
const REFERENCE_LOCAL_AUTHORITY: &str = "localAuthority";
const REFERENCE_ICB_SUB_LOCATION: &str = "icbSubLocation";
const REFERENCE_COUNTRY: &str = "country";
const REFERENCE_TERMINATED: &str = "terminated";
/// BatchGetItem's limit of keys per request.
const MAX_BATCH_GET: usize = 100;

/// What one key of a batch read stands for.
enum ReferenceTarget<'a> {
    Postcode(&'a crate::reference::Postcode),
    Practice(String),
}

impl DynamoReferenceData {
    pub fn new(client: aws_sdk_dynamodb::Client, table: impl Into<String>) -> Self {
        DynamoReferenceData {
            client,
            table: table.into(),
        }
    }

    /// The reference table named by REFERENCE_TABLE.
    pub fn from_env(client: aws_sdk_dynamodb::Client) -> Result<Self, StoreError> {
        Ok(DynamoReferenceData::new(
            client,
            required_env("REFERENCE_TABLE")?,
        ))
    }

    pub fn table(&self) -> &str {
        &self.table
    }

    /// Writes items with BatchWriteItem, 25 to a request, one request after
    /// the other, asking again (with back-off) for what DynamoDB leaves
    /// unprocessed. Puts overwrite, so loading the same files twice leaves
    /// the same table. A key given twice is written once, with its last
    /// item (BatchWriteItem refuses a request that repeats a key). The
    /// loader runs several of these calls at once for speed.
    pub async fn put_batch(
        &self,
        items: &[crate::reference::ReferenceItem],
    ) -> Result<(), StoreError> {
        // One BatchWriteItem refuses two writes of a key: within a chunk the
        // last item of a key wins, as it would written one by one.
        for chunk in items.chunks(MAX_BATCH_WRITE) {
            let by_key: HashMap<String, Item> = chunk
                .iter()
                .map(|item| (item.key(), reference_attributes(item)))
                .collect();
            write_batches(
                &self.client,
                &self.table,
                by_key.into_values().collect(),
                "reference items",
            )
            .await?;
        }
        Ok(())
    }
}

/// A reference item as the table keeps it.
fn reference_attributes(item: &crate::reference::ReferenceItem) -> Item {
    use crate::reference::ReferenceItem;
    let mut attributes = Item::with_capacity(5);
    attributes.insert(REFERENCE_KEY.to_owned(), AttributeValue::S(item.key()));
    let icb_sub_location = match item {
        ReferenceItem::Postcode {
            area, terminated, ..
        } => {
            attributes.insert(
                REFERENCE_LOCAL_AUTHORITY.to_owned(),
                AttributeValue::S(area.local_authority.clone()),
            );
            attributes.insert(
                REFERENCE_COUNTRY.to_owned(),
                AttributeValue::S(area.country.clone()),
            );
            attributes.insert(
                REFERENCE_TERMINATED.to_owned(),
                AttributeValue::Bool(*terminated),
            );
            area.icb_sub_location.clone()
        }
        ReferenceItem::Practice(practice) => Some(practice.icb_sub_location.clone()),
    };
    if let Some(code) = icb_sub_location {
        attributes.insert(
            REFERENCE_ICB_SUB_LOCATION.to_owned(),
            AttributeValue::S(code),
        );
    }
    attributes
}

/// The size DynamoDB counts for a reference item: the UTF-8 length of each
/// attribute's name and string value, one byte for a boolean. (Storage is
/// billed with about 100 bytes more per item, for indexing.) The loader
/// reports the table's size with it, since the emulator does not.
pub fn reference_item_size(item: &crate::reference::ReferenceItem) -> usize {
    reference_attributes(item)
        .iter()
        .map(|(name, value)| {
            name.len()
                + match value {
                    AttributeValue::S(text) => text.len(),
                    AttributeValue::Bool(_) => 1,
                    _ => 0,
                }
        })
        .sum()
}

/// A string attribute of an item read back.
fn text_attribute(item: &Item, name: &str) -> Option<String> {
    item.get(name).and_then(|value| value.as_s().ok()).cloned()
}

/// Adds what an item read back says of its postcode or practice. An item
/// that lacks an attribute the loader always writes is taken as unknown
/// (and logged without its key, which may be a child's postcode) rather
/// than failing every dispatch that meets it.
fn answer(areas: &mut crate::reference::ReferenceAreas, target: &ReferenceTarget, item: &Item) {
    let icb_sub_location = text_attribute(item, REFERENCE_ICB_SUB_LOCATION);
    match target {
        ReferenceTarget::Postcode(postcode) => {
            let local_authority = text_attribute(item, REFERENCE_LOCAL_AUTHORITY);
            let country = text_attribute(item, REFERENCE_COUNTRY);
            let (Some(local_authority), Some(country)) = (local_authority, country) else {
                tracing::warn!(
                    "a postcode item of the reference table lacks its local authority or country: taken as unknown"
                );
                return;
            };
            areas.postcodes.insert(
                (*postcode).clone(),
                crate::reference::PostcodeArea {
                    local_authority,
                    icb_sub_location,
                    country,
                },
            );
        }
        ReferenceTarget::Practice(code) => match icb_sub_location {
            Some(icb) => {
                areas.practices.insert(code.clone(), icb);
            }
            None => tracing::warn!(
                "a practice item of the reference table lacks its sub-ICB location: taken as unknown"
            ),
        },
    }
}

impl crate::ports::ReferenceData for DynamoReferenceData {
    async fn postcode_area(
        &self,
        postcode: &crate::reference::Postcode,
    ) -> Result<Option<crate::reference::PostcodeArea>, StoreError> {
        let mut areas = self.locate_many(&[postcode], &[]).await?;
        Ok(areas.postcodes.remove(postcode))
    }

    async fn practice_area(&self, ods_code: &str) -> Result<Option<String>, StoreError> {
        let mut areas = self.locate_many(&[], &[ods_code]).await?;
        Ok(areas
            .practices
            .remove(&crate::reference::practice_code(ods_code)))
    }

    /// One BatchGetItem for up to 100 keys (an event has at most four),
    /// plus a request for each retry of unprocessed keys.
    async fn locate_many(
        &self,
        postcodes: &[&crate::reference::Postcode],
        practices: &[&str],
    ) -> Result<crate::reference::ReferenceAreas, StoreError> {
        use crate::reference::{ReferenceAreas, postcode_key, practice_key};

        // Unique keys: BatchGetItem refuses a request that repeats one.
        let mut targets: HashMap<String, ReferenceTarget> = HashMap::new();
        for postcode in postcodes {
            targets.insert(postcode_key(postcode), ReferenceTarget::Postcode(postcode));
        }
        for practice in practices {
            targets.insert(
                practice_key(practice),
                ReferenceTarget::Practice(crate::reference::practice_code(practice)),
            );
        }
        let mut areas = ReferenceAreas::default();
        let keys: Vec<String> = targets.keys().cloned().collect();
        let items = read_batches(
            &self.client,
            &self.table,
            REFERENCE_KEY,
            &keys,
            "reference data",
        )
        .await?;
        for item in items {
            if let Some(target) =
                text_attribute(&item, REFERENCE_KEY).and_then(|key| targets.get(&key))
            {
                answer(&mut areas, target, &item);
            }
        }
        Ok(areas)
    }
}

// End of the reference data adapter.

/// Replay jobs, one item per replay (key replayId); the table's stream
/// drives the replay worker, each save prompting its next step.
#[derive(Clone)]
pub struct DynamoReplayStore {
    client: aws_sdk_dynamodb::Client,
    table: String,
}

impl DynamoReplayStore {
    pub fn new(client: aws_sdk_dynamodb::Client, table: impl Into<String>) -> Self {
        DynamoReplayStore {
            client,
            table: table.into(),
        }
    }

    /// The table named by REPLAYS_TABLE.
    pub fn from_env(client: aws_sdk_dynamodb::Client) -> Result<Self, StoreError> {
        Ok(Self::new(client, required_env("REPLAYS_TABLE")?))
    }
}

/// Attempts at starting a replay when a concurrent start of the same
/// subscriber's (another subscription) touched its quota count meanwhile.
const START_ATTEMPTS: usize = 3;

impl crate::ports::ReplayStore for DynamoReplayStore {
    /// One transaction of three writes: the job (new), the subscription's
    /// hold (`running#<subscription>`, new or ended) and the subscriber's
    /// count of the day (`quota#<subscriber>#<day>`, below the limit). The
    /// hold and the count live in the replays table beside the jobs, under
    /// keys no replay id takes; the worker skips their stream records, which
    /// are not jobs.
    async fn start(
        &self,
        job: &crate::replay::ReplayJob,
        admission: &crate::replay::Admission,
    ) -> Result<Result<(), crate::replay::NotStarted>, StoreError> {
        use aws_sdk_dynamodb::types::Update;
        let build = |what: &str, error: aws_sdk_dynamodb::error::BuildError| {
            unavailable(&format!("building the replay's {what}"), error)
        };
        let number = |value: i64| AttributeValue::N(value.to_string());
        let put_job = Put::builder()
            .table_name(&self.table)
            .set_item(Some(to_item(job)?))
            .condition_expression("attribute_not_exists(replayId)")
            .build()
            .map_err(|error| build("record", error))?;
        let hold = Put::builder()
            .table_name(&self.table)
            .item("replayId", AttributeValue::S(admission.hold_key.clone()))
            .item("runningReplay", AttributeValue::S(job.replay_id.clone()))
            .item("holdUntil", number(admission.hold_until))
            .item("expiresAt", number(admission.hold_until))
            .condition_expression("attribute_not_exists(replayId) OR holdUntil < :now")
            .expression_attribute_values(":now", number(admission.now))
            .build()
            .map_err(|error| build("hold", error))?;
        let count = Update::builder()
            .table_name(&self.table)
            .key("replayId", AttributeValue::S(admission.quota_key.clone()))
            .update_expression(
                "SET started = if_not_exists(started, :zero) + :one, expiresAt = :expires",
            )
            .condition_expression("attribute_not_exists(started) OR started < :limit")
            .expression_attribute_values(":zero", number(0))
            .expression_attribute_values(":one", number(1))
            .expression_attribute_values(":limit", number(i64::from(admission.per_day)))
            .expression_attribute_values(":expires", number(admission.quota_expires_at))
            .build()
            .map_err(|error| build("count", error))?;
        for _ in 0..START_ATTEMPTS {
            let written = self
                .client
                .transact_write_items()
                .transact_items(TransactWriteItem::builder().put(put_job.clone()).build())
                .transact_items(TransactWriteItem::builder().put(hold.clone()).build())
                .transact_items(TransactWriteItem::builder().update(count.clone()).build())
                .send()
                .await;
            let error = match written {
                Ok(_) => return Ok(Ok(())),
                Err(error) => error,
            };
            let failed = cancellation_reasons(error, "starting a replay")?;
            // A concurrent start of the same subscription is as much a
            // running replay as one already stored.
            if failed.at(1, "ConditionalCheckFailed") || failed.at(1, "TransactionConflict") {
                return Ok(Err(crate::replay::NotStarted::AlreadyRunning));
            }
            if failed.at(2, "ConditionalCheckFailed") {
                return Ok(Err(crate::replay::NotStarted::QuotaSpent));
            }
            if !failed.at(2, "TransactionConflict") {
                return Err(StoreError::Unavailable(format!(
                    "starting a replay: the transaction was cancelled ({})",
                    failed
                )));
            }
        }
        Err(StoreError::Unavailable(format!(
            "starting a replay: the subscriber's count changed under each of {START_ATTEMPTS} attempts"
        )))
    }

    /// The hold is ended in place (its `holdUntil` set to 0), not deleted:
    /// no function but the two that remove subscriptions deletes anything
    /// (tests/tests/template.rs). TTL removes the record later.
    async fn release(&self, job: &crate::replay::ReplayJob) -> Result<(), StoreError> {
        let ended = self
            .client
            .put_item()
            .table_name(&self.table)
            .item(
                "replayId",
                AttributeValue::S(crate::replay::Admission::hold_key_of(job)),
            )
            .item("runningReplay", AttributeValue::S(job.replay_id.clone()))
            .item("holdUntil", AttributeValue::N("0".into()))
            .item("expiresAt", AttributeValue::N(job.expires_at.to_string()))
            .condition_expression("runningReplay = :replay")
            .expression_attribute_values(":replay", AttributeValue::S(job.replay_id.clone()))
            .send()
            .await;
        // Not held by this job (taken over after its hold ended): nothing
        // to release.
        conditionally_written(ended, "releasing a replay's subscription").map(|_| ())
    }

    async fn get(&self, replay_id: &str) -> Result<Option<crate::replay::ReplayJob>, StoreError> {
        get_by_key(
            &self.client,
            &self.table,
            ("replayId", replay_id),
            Read::Consistent,
            "reading a replay",
        )
        .await
    }

    async fn save(&self, job: &crate::replay::ReplayJob) -> Result<bool, StoreError> {
        let written = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(to_item(job)?))
            .condition_expression("revision = :previous")
            .expression_attribute_values(
                ":previous",
                AttributeValue::N(job.revision.saturating_sub(1).to_string()),
            )
            .send()
            .await;
        conditionally_written(written, "saving a replay")
    }
}

// ---------------------------------------------------------------------------
// Delivery status: counts per subscriber and event type, queue depths, redrive
// ---------------------------------------------------------------------------

/// The delivery stats table: one item per (subscriberId, eventType) with
/// `delivered` (N) and `lastDeliveryAt` (S).
#[derive(Clone)]
pub struct DynamoDeliveryStats {
    client: aws_sdk_dynamodb::Client,
    table: String,
}

/// UpdateItem calls a dispatch runs at once (one per recipient).
const STATS_CONCURRENCY: usize = 8;

impl DynamoDeliveryStats {
    pub fn new(client: aws_sdk_dynamodb::Client, table: impl Into<String>) -> Self {
        DynamoDeliveryStats {
            client,
            table: table.into(),
        }
    }

    /// The table named by DELIVERY_STATS_TABLE.
    pub fn from_env(client: aws_sdk_dynamodb::Client) -> Result<Self, StoreError> {
        Ok(DynamoDeliveryStats::new(
            client,
            required_env("DELIVERY_STATS_TABLE")?,
        ))
    }

    async fn add_one(
        &self,
        subscriber_id: &str,
        event_type: EventType,
        at: &str,
    ) -> Result<(), StoreError> {
        // ADD creates the item and the counter at the first delivery: no
        // read before the write, and concurrent dispatches never lose one.
        self.client
            .update_item()
            .table_name(&self.table)
            .key("subscriberId", AttributeValue::S(subscriber_id.to_owned()))
            .key("eventType", AttributeValue::S(event_type.code().to_owned()))
            .update_expression("ADD delivered :one SET lastDeliveryAt = :at")
            .expression_attribute_values(":one", AttributeValue::N("1".to_owned()))
            .expression_attribute_values(":at", AttributeValue::S(at.to_owned()))
            .send()
            .await
            .map_err(|error| {
                unavailable(
                    "counting a delivery",
                    aws_sdk_dynamodb::error::DisplayErrorContext(error),
                )
            })?;
        Ok(())
    }
}

impl crate::ports::DeliveryStats for DynamoDeliveryStats {
    async fn record_deliveries(
        &self,
        event_type: EventType,
        subscriber_ids: &[&str],
        at: &str,
    ) -> Result<(), StoreError> {
        for chunk in subscriber_ids.chunks(STATS_CONCURRENCY) {
            let calls: Vec<_> = chunk
                .iter()
                .map(|subscriber_id| self.add_one(subscriber_id, event_type, at))
                .collect();
            futures_util::future::try_join_all(calls).await?;
        }
        Ok(())
    }

    async fn counts(
        &self,
        subscriber_id: &str,
    ) -> Result<Vec<crate::status::DeliveryCount>, StoreError> {
        let mut counts = Vec::new();
        let mut start: Option<Item> = None;
        // One page holds a subscriber's ten event types; the loop is for
        // the contract, not the expected case.
        loop {
            let output = self
                .client
                .query()
                .table_name(&self.table)
                .key_condition_expression("subscriberId = :subscriber")
                .expression_attribute_values(
                    ":subscriber",
                    AttributeValue::S(subscriber_id.to_owned()),
                )
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(|error| {
                    unavailable(
                        "reading delivery counts",
                        aws_sdk_dynamodb::error::DisplayErrorContext(error),
                    )
                })?;
            for item in output.items.unwrap_or_default() {
                // An event type the catalogue no longer has is left out.
                let Some(event_type) = text_attribute(&item, "eventType")
                    .and_then(|code| code.parse::<EventType>().ok())
                else {
                    continue;
                };
                let delivered = match item.get("delivered") {
                    Some(AttributeValue::N(number)) => number.parse::<u64>().unwrap_or_default(),
                    _ => 0,
                };
                counts.push(crate::status::DeliveryCount {
                    event_type,
                    delivered,
                    last_delivery_at: text_attribute(&item, "lastDeliveryAt"),
                });
            }
            match output.last_evaluated_key {
                Some(key) if !key.is_empty() => start = Some(key),
                _ => break,
            }
        }
        Ok(counts)
    }
}

/// Subscriber queues through SQS: their depth, and the redrive of a DLQ
/// by receive, send and delete (the emulator has no StartMessageMoveTask,
/// and this way the bound of one request is the hub's own).
#[derive(Clone)]
pub struct SqsQueueMonitor {
    sqs: aws_sdk_sqs::Client,
    sns: Option<aws_sdk_sns::Client>,
    topics: BTreeMap<EventType, String>,
}

/// How long a message received from the DLQ stays invisible while it is
/// being moved; it reappears there if the move fails half way.
const REDRIVE_VISIBILITY_SECONDS: i32 = 60;

impl SqsQueueMonitor {
    pub fn new(sqs: aws_sdk_sqs::Client) -> Self {
        SqsQueueMonitor {
            sqs,
            sns: None,
            topics: BTreeMap::new(),
        }
    }

    /// Also reads the states of queues' topic subscriptions from SNS, and
    /// names each by the event type of its topic.
    pub fn with_subscriptions(
        mut self,
        sns: aws_sdk_sns::Client,
        topics: BTreeMap<EventType, String>,
    ) -> Self {
        self.sns = Some(sns);
        self.topics = topics;
        self
    }

    fn event_type_of(&self, subscription_arn: &str) -> Option<EventType> {
        let (topic, _) = subscription_arn.rsplit_once(':')?;
        self.topics
            .iter()
            .find(|(_, arn)| arn.as_str() == topic)
            .map(|(event_type, _)| *event_type)
    }

    /// Sends the messages to the queue, at most ten and 256 KiB a request,
    /// and deletes from the DLQ exactly those SQS accepted. The number
    /// moved, or an error naming how many could not be.
    async fn move_messages(
        &self,
        dead_letter_queue_url: &str,
        queue_url: &str,
        messages: &[aws_sdk_sqs::types::Message],
    ) -> Result<u64, StoreError> {
        use aws_sdk_sqs::types::{DeleteMessageBatchRequestEntry, SendMessageBatchRequestEntry};
        let sizes: Vec<usize> = messages.iter().map(message_size).collect();
        let mut moved = 0;
        for batch in crate::status::send_batches(&sizes) {
            let batch = &messages[batch];
            let entries = batch
                .iter()
                .enumerate()
                .map(|(index, message)| {
                    SendMessageBatchRequestEntry::builder()
                        .id(index.to_string())
                        .message_body(message.body().unwrap_or_default())
                        .set_message_attributes(message.message_attributes.clone())
                        .build()
                        .map_err(|error| unavailable("building a redrive entry", error))
                })
                .collect::<Result<Vec<_>, _>>()?;
            let sent = self
                .sqs
                .send_message_batch()
                .queue_url(queue_url)
                .set_entries(Some(entries))
                .send()
                .await
                .map_err(|error| {
                    unavailable(
                        "sending messages back to the queue",
                        aws_sdk_sqs::error::DisplayErrorContext(error),
                    )
                })?;
            let deletions = sent
                .successful()
                .iter()
                .filter_map(|done| {
                    let message = done.id().parse::<usize>().ok().and_then(|i| batch.get(i))?;
                    DeleteMessageBatchRequestEntry::builder()
                        .id(done.id())
                        .receipt_handle(message.receipt_handle()?)
                        .build()
                        .ok()
                })
                .collect::<Vec<_>>();
            if !deletions.is_empty() {
                let deleted = self
                    .sqs
                    .delete_message_batch()
                    .queue_url(dead_letter_queue_url)
                    .set_entries(Some(deletions))
                    .send()
                    .await
                    .map_err(|error| {
                        unavailable(
                            "deleting redriven messages from the DLQ",
                            aws_sdk_sqs::error::DisplayErrorContext(error),
                        )
                    })?;
                if !deleted.failed().is_empty() {
                    return Err(StoreError::Unavailable(format!(
                        "{} messages were sent back to the queue but stay in the DLQ too",
                        deleted.failed().len()
                    )));
                }
            }
            moved += sent.successful().len() as u64;
            if !sent.failed().is_empty() {
                // Those stay in the DLQ, visible again after the timeout.
                return Err(StoreError::Unavailable(format!(
                    "{} messages could not be sent back to the queue ({moved} were moved)",
                    sent.failed().len()
                )));
            }
        }
        Ok(moved)
    }
}

/// The bytes SendMessageBatch counts for a message: its body, and each
/// attribute's name, type and value.
fn message_size(message: &aws_sdk_sqs::types::Message) -> usize {
    let attributes: usize = message
        .message_attributes()
        .map(|attributes| {
            attributes
                .iter()
                .map(|(name, value)| {
                    name.len()
                        + value.data_type().len()
                        + value.string_value().map_or(0, str::len)
                        + value.binary_value().map_or(0, |blob| blob.as_ref().len())
                })
                .sum()
        })
        .unwrap_or_default();
    message.body().map_or(0, str::len) + attributes
}

impl crate::ports::QueueMonitor for SqsQueueMonitor {
    async fn depth(&self, queue_url: &str) -> Result<crate::status::QueueDepth, StoreError> {
        let read = self
            .sqs
            .get_queue_attributes()
            .queue_url(queue_url)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesDelayed)
            .send()
            .await;
        let attributes = match read {
            Ok(output) => output.attributes.unwrap_or_default(),
            // Deleted outside the hub: a state to report, not a failure.
            Err(error)
                if error
                    .as_service_error()
                    .is_some_and(|e| e.is_queue_does_not_exist()) =>
            {
                return Ok(crate::status::QueueDepth {
                    missing: true,
                    ..Default::default()
                });
            }
            Err(error) => {
                return Err(unavailable(
                    "reading a queue's depth",
                    aws_sdk_sqs::error::DisplayErrorContext(error),
                ));
            }
        };
        let number = |name: QueueAttributeName| {
            attributes
                .get(&name)
                .and_then(|value| value.parse::<u64>().ok())
                .unwrap_or_default()
        };
        Ok(crate::status::QueueDepth {
            waiting: number(QueueAttributeName::ApproximateNumberOfMessages),
            in_flight: number(QueueAttributeName::ApproximateNumberOfMessagesNotVisible),
            delayed: number(QueueAttributeName::ApproximateNumberOfMessagesDelayed),
            missing: false,
        })
    }

    async fn redrive(
        &self,
        dead_letter_queue_url: &str,
        queue_url: &str,
        limits: crate::status::RedriveLimits,
    ) -> Result<crate::status::Redriven, StoreError> {
        let started = std::time::Instant::now();
        let mut moved: u64 = 0;
        loop {
            let left = limits
                .max_messages
                .saturating_sub(usize::try_from(moved).unwrap_or(usize::MAX));
            if left == 0 || started.elapsed() >= limits.max_duration {
                break;
            }
            let received = self
                .sqs
                .receive_message()
                .queue_url(dead_letter_queue_url)
                .max_number_of_messages(i32::try_from(left.min(10)).unwrap_or(10))
                .visibility_timeout(REDRIVE_VISIBILITY_SECONDS)
                // A short wait: SQS's short polls may answer empty while a
                // few messages remain on other servers.
                .wait_time_seconds(1)
                .message_attribute_names("All")
                .send()
                .await
                .map_err(|error| {
                    unavailable(
                        "receiving from the DLQ",
                        aws_sdk_sqs::error::DisplayErrorContext(error),
                    )
                })?
                .messages
                .unwrap_or_default();
            if received.is_empty() {
                break;
            }
            moved += self
                .move_messages(dead_letter_queue_url, queue_url, &received)
                .await?;
        }
        let left = self.depth(dead_letter_queue_url).await?;
        Ok(crate::status::Redriven {
            moved,
            remaining: left.waiting + left.in_flight + left.delayed > 0,
        })
    }

    async fn subscription_states(
        &self,
        queues: &Queues,
    ) -> Result<Vec<TopicSubscription>, StoreError> {
        let mut states = Vec::with_capacity(queues.topic_subscriptions.len());
        for subscription_arn in &queues.topic_subscriptions {
            let Some(sns) = &self.sns else {
                return Err(StoreError::Unavailable(
                    "the queue monitor was built without an SNS client".into(),
                ));
            };
            let read = sns
                .get_subscription_attributes()
                .subscription_arn(subscription_arn)
                .send()
                .await;
            let state = match read {
                Ok(output) => {
                    let pending = output
                        .attributes
                        .as_ref()
                        .and_then(|attributes| attributes.get("PendingConfirmation"))
                        .is_some_and(|value| value == "true");
                    if pending {
                        SubscriptionState::PendingConfirmation
                    } else {
                        SubscriptionState::Confirmed
                    }
                }
                Err(error)
                    if error
                        .as_service_error()
                        .is_some_and(|e| e.is_not_found_exception()) =>
                {
                    SubscriptionState::Missing
                }
                Err(error) => return Err(unavailable("reading a topic subscription", error)),
            };
            states.push(TopicSubscription {
                event_type: self.event_type_of(subscription_arn),
                subscription_arn: subscription_arn.clone(),
                state,
            });
        }
        Ok(states)
    }
}
