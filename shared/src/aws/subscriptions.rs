//! The subscription store: a resource item per subscription and match
//! items dispatch finds candidates by.

use std::collections::BTreeMap;

use aws_sdk_dynamodb::types::{AttributeValue, Delete, Put, TransactWriteItem, Update};

use super::page_token::{decode_page_token, encode_page_token};
use super::{
    Item, cancellation_reasons, conditionally_written, from_item, to_item, unavailable,
    unavailable_because,
};
use crate::backfill::BackfillGrant;
use crate::basis::{Basis, Ended};
use crate::catalogue::EventType;
use crate::criteria::Target;
use crate::nhs_number::NhsNumber;
use crate::ports::{Page, StoreError, SubscriptionStore};
use crate::subscription::{DailyCount, Subscription};

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
/// The sort key of a daily count item (subscription::DailyCount).
const COUNT_SORT_KEY: &str = "COUNT";

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

    /// One transaction of UpdateItems that set one member inside the stored
    /// copy, on the resource item and every match item: dispatch, which
    /// reads the match items, and the owner, who reads the resource, see the
    /// same subscription. The resource's condition makes it happen only over
    /// the value read, `previous` (None: not set, so the write happens
    /// once); false when it fails. Each item's `attribute_exists` keeps a
    /// deleted subscription deleted.
    async fn set_member(
        &self,
        subscription: &Subscription,
        member: &str,
        value: AttributeValue,
        previous: Option<AttributeValue>,
        what: &str,
    ) -> Result<bool, StoreError> {
        let updates = subscription_keys(subscription)
            .into_iter()
            .enumerate()
            .map(|(index, (pk, sk))| {
                let mut update = Update::builder()
                    .table_name(&self.table)
                    .key("pk", AttributeValue::S(pk))
                    .key("sk", AttributeValue::S(sk))
                    .update_expression("SET #subscription.#member = :value")
                    .expression_attribute_names("#subscription", "subscription")
                    .expression_attribute_names("#member", member)
                    .expression_attribute_values(":value", value.clone());
                update = match (&previous, index) {
                    (None, 0) => update.condition_expression(
                        "attribute_exists(pk) AND attribute_not_exists(#subscription.#member)",
                    ),
                    (Some(previous), 0) => update
                        .condition_expression(
                            "attribute_exists(pk) AND #subscription.#member = :previous",
                        )
                        .expression_attribute_values(":previous", previous.clone()),
                    _ => update.condition_expression("attribute_exists(pk)"),
                };
                let update = update
                    .build()
                    .map_err(|error| unavailable("building an update", error))?;
                Ok(TransactWriteItem::builder().update(update).build())
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        let written = self
            .client
            .transact_write_items()
            .set_transact_items(Some(updates))
            .send()
            .await;
        let Err(error) = written else {
            return Ok(true);
        };
        let failed = cancellation_reasons(error, what)?;
        if failed.at(0, "ConditionalCheckFailed") {
            return Ok(false);
        }
        Err(unavailable_because(format!(
            "{what}: the transaction was cancelled ({failed})"
        )))
    }

    /// Every subscription of the table, a page at a time: for offline tools
    /// run by operators (`hub-local migrate subscription-bases`). No
    /// function's role allows a Scan. The page token is the last key the
    /// scan read (`[pk, sk]` as JSON), a match item's as often as not.
    pub async fn scan_page(
        &self,
        page_token: Option<&str>,
    ) -> Result<Page<Subscription>, StoreError> {
        let start_key = page_token
            .map(|token| {
                let [pk, sk]: [String; 2] = serde_json::from_str(token)
                    .map_err(|error| StoreError::Corrupt(format!("a scan page token: {error}")))?;
                Ok::<_, StoreError>(Item::from([
                    ("pk".to_owned(), AttributeValue::S(pk)),
                    ("sk".to_owned(), AttributeValue::S(sk)),
                ]))
            })
            .transpose()?;
        let output = self
            .client
            .scan()
            .table_name(&self.table)
            .filter_expression("sk = :resource")
            .expression_attribute_values(":resource", AttributeValue::S(RESOURCE_SORT_KEY.into()))
            .set_exclusive_start_key(start_key)
            .send()
            .await
            .map_err(|error| unavailable("scanning the subscriptions", error))?;
        let items = subscriptions_of(&self.table, output.items)?;
        let next = output.last_evaluated_key.as_ref().and_then(|key| {
            let pk = super::text_attribute(key, "pk")?;
            let sk = super::text_attribute(key, "sk")?;
            Some(serde_json::json!([pk, sk]).to_string())
        });
        Ok(Page { items, next })
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

/// The subscription an item holds. A broken item is named by the
/// subscription's id (`pk` of its resource item, `sk` of a match item,
/// whose `pk` may hold an NHS number).
fn subscription_of(table: &str, mut item: Item) -> Result<Subscription, StoreError> {
    let id = super::text_attribute(&item, "pk")
        .and_then(|pk| pk.strip_prefix("SUBSCRIPTION#").map(str::to_owned))
        .or_else(|| super::text_attribute(&item, "sk"))
        .unwrap_or_default();
    let described = format!("the {table} item of subscription {id}");
    match item.remove("subscription") {
        Some(AttributeValue::M(fields)) => from_item(fields, &described),
        _ => Err(StoreError::Corrupt(format!(
            "{described} has no subscription"
        ))),
    }
}

/// The subscriptions a page of items holds.
fn subscriptions_of(
    table: &str,
    items: Option<Vec<Item>>,
) -> Result<Vec<Subscription>, StoreError> {
    items
        .unwrap_or_default()
        .into_iter()
        .map(|item| subscription_of(table, item))
        .collect()
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
    /// One UpdateItem on the count's own item (`pk` = its key, `sk`
    /// `COUNT`), conditional on the count being below the limit: concurrent
    /// creations cannot both pass the last place. It expires with
    /// `expiresAt` (the table's TTL).
    async fn count_explicit(&self, count: &DailyCount) -> Result<bool, StoreError> {
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", AttributeValue::S(count.key.clone()))
            .key("sk", AttributeValue::S(COUNT_SORT_KEY.into()))
            .update_expression("SET expiresAt = :expires ADD n :one")
            .condition_expression("attribute_not_exists(n) OR n < :limit")
            .expression_attribute_values(":one", AttributeValue::N("1".into()))
            .expression_attribute_values(":limit", AttributeValue::N(count.per_day.to_string()))
            .expression_attribute_values(
                ":expires",
                AttributeValue::N(count.expires_at.to_string()),
            )
            .send()
            .await;
        conditionally_written(result, "counting an explicit subscription")
    }

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
            .map_err(|error| unavailable("storing the subscription", error))?;
        Ok(())
    }

    /// Sets `ended` inside the stored copies, once (`set_member`).
    async fn end(&self, subscription: &Subscription, ended: &Ended) -> Result<bool, StoreError> {
        self.set_member(
            subscription,
            "ended",
            AttributeValue::M(to_item(ended)?),
            None,
            "ending the subscription",
        )
        .await
    }

    /// Sets `basis` inside the stored copies, once (`set_member`).
    async fn assign_basis(
        &self,
        subscription: &Subscription,
        basis: &Basis,
    ) -> Result<bool, StoreError> {
        self.set_member(
            subscription,
            "basis",
            AttributeValue::M(to_item(basis)?),
            None,
            "recording the subscription's basis",
        )
        .await
    }

    /// Sets `backfills` inside the stored copies, over the list read
    /// (`set_member`).
    async fn replace_backfills(
        &self,
        subscription: &Subscription,
        grants: &[BackfillGrant],
    ) -> Result<bool, StoreError> {
        let encode = |grants: &[BackfillGrant]| {
            serde_dynamo::to_attribute_value(grants)
                .map_err(|error| unavailable("encoding the backfill grants", error))
        };
        let previous = if subscription.backfills.is_empty() {
            None
        } else {
            Some(encode(&subscription.backfills)?)
        };
        self.set_member(
            subscription,
            "backfills",
            encode(grants)?,
            previous,
            "recording the subscription's backfill grants",
        )
        .await
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
            .map_err(|error| unavailable("deleting the subscription", error))?;
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
        let items = subscriptions_of(&self.table, output.items)?;
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
        output
            .item
            .map(|item| subscription_of(&self.table, item))
            .transpose()
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
        let mut items = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("pk = :pk")
            // A subscription deleted a moment ago must not match.
            .consistent_read(true)
            .expression_attribute_values(":pk", AttributeValue::S(pk))
            .into_paginator()
            .items()
            .send();
        while let Some(item) = items.next().await {
            let item = item.map_err(|error| unavailable("finding subscriptions", error))?;
            candidates.push(subscription_of(&self.table, item)?);
        }
        Ok(candidates)
    }
}
