//! The delivery publisher: one SNS message per recipient.

use std::collections::{BTreeMap, HashMap};

use aws_sdk_sns::types::{MessageAttributeValue, PublishBatchRequestEntry};

use super::retry::Attempts;
use super::{unavailable, unavailable_because};
use crate::catalogue::EventType;
use crate::dispatch::Delivery;
use crate::events::StoredEvent;
use crate::ports::{DeliveryPublisher, StoreError};

/// Entries SNS reports as failed are retried this many times before the
/// whole event is handed back for the stream to retry.
const SNS_ENTRY_ATTEMPTS: u32 = 3;

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
            StoreError::Configuration(format!("no topic is configured for {}", event.event_type))
        })?;
        for chunk in crate::dispatch::batches(event, deliveries) {
            let mut pending: Vec<PublishBatchRequestEntry> = chunk
                .iter()
                .enumerate()
                .map(|(index, delivery)| entry(index, event, delivery))
                .collect::<Result<_, _>>()?;
            // Entries SNS reports as failed (throttled, an internal error)
            // are sent again after a pause, not at once.
            let mut attempts = Attempts::new(SNS_ENTRY_ATTEMPTS, self.client.config().sleep_impl());
            while attempts.next().await {
                let output = self
                    .client
                    .publish_batch()
                    .topic_arn(topic)
                    .set_publish_batch_request_entries(Some(pending.clone()))
                    .send()
                    .await
                    .map_err(|error| unavailable("publishing deliveries", error))?;
                let failed: Vec<&str> =
                    output.failed().iter().map(|failure| failure.id()).collect();
                if failed.is_empty() {
                    break;
                }
                if attempts.made() == SNS_ENTRY_ATTEMPTS {
                    return Err(unavailable_because(format!(
                        "{} deliveries of event {} failed after {SNS_ENTRY_ATTEMPTS} attempts",
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
