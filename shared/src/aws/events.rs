//! The event store: the events table (written once per message) and the
//! versions table (the current version of each focus resource).

use std::collections::HashMap;

use aws_sdk_dynamodb::types::{AttributeValue, Put, TransactWriteItem};

use super::batch::read_batches;
use super::retry::Attempts;
use super::{
    Read, cancellation_reasons, conditionally_written, from_item, get_by_key, keyed, required_env,
    text_attribute, to_item, unavailable, unavailable_because,
};
use crate::events::{CurrentVersion, EventSummary, StoredEvent, place};
use crate::nhs_number::NhsNumber;
use crate::ports::{EventStore, Insert, Page, StoreError};

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
const PLACE_ATTEMPTS: u32 = 5;

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
        // The focus identifier holds an NHS number: the item is not named by it.
        output
            .item
            .map(|item| {
                from_item(
                    item,
                    &format!("the {} item of a focus resource", self.versions_table),
                )
            })
            .transpose()
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
        let mut attempts = Attempts::new(PLACE_ATTEMPTS, self.client.config().sleep_impl());
        while attempts.next().await {
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
                return Err(unavailable_because(format!(
                    "storing the event: the transaction was cancelled ({failed})"
                )));
            }
        }
        Err(unavailable_because(format!(
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
            .map(|item| {
                let described = keyed(&self.table, &item, "eventKey");
                from_item(item, &described)
            })
            .collect()
    }

    async fn patient_events(&self, nhs_number: NhsNumber) -> Result<Vec<EventSummary>, StoreError> {
        let mut found = Vec::new();
        // Every page, until DynamoDB returns no (or an empty) last key.
        let mut items = self
            .client
            .query()
            .table_name(&self.table)
            .index_name(PATIENT_INDEX)
            .key_condition_expression("nhsNumber = :nhs")
            .expression_attribute_values(":nhs", AttributeValue::S(nhs_number.as_string()))
            .into_paginator()
            .items()
            .send();
        while let Some(item) = items.next().await {
            let item = item.map_err(|error| unavailable("reading a child's events", error))?;
            let described = keyed(&self.table, &item, "eventKey");
            found.push(from_item(item, &described)?);
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
            .map_err(|error| unavailable("reading a day's events", error))?;
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
