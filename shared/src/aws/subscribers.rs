//! The subscriber store.

use aws_sdk_dynamodb::types::AttributeValue;

use super::{Read, conditionally_written, get_by_key, to_item, unavailable, unavailable_because};
use crate::ports::{StoreError, SubscriberStore};
use crate::subscriber::Subscriber;

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
            Err(unavailable_because(
                "the subscriber was offboarded while it was being changed",
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
