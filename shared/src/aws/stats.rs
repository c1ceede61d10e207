//! Delivery counts per subscriber and event type.

use aws_sdk_dynamodb::types::AttributeValue;

use super::{required_env, text_attribute, unavailable};
use crate::catalogue::EventType;
use crate::ports::StoreError;

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
            .map_err(|error| unavailable("counting a delivery", error))?;
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
        // One page holds a subscriber's ten event types; the paginator is
        // for the contract, not the expected case.
        let mut items = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("subscriberId = :subscriber")
            .expression_attribute_values(":subscriber", AttributeValue::S(subscriber_id.to_owned()))
            .into_paginator()
            .items()
            .send();
        while let Some(item) = items.next().await {
            let item = item.map_err(|error| unavailable("reading delivery counts", error))?;
            // An event type the catalogue no longer has is left out.
            let Some(event_type) =
                text_attribute(&item, "eventType").and_then(|code| code.parse::<EventType>().ok())
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
        Ok(counts)
    }
}
