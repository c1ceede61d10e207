//! Parent and carer relationships: the relationships table.

use aws_sdk_dynamodb::types::{AttributeValue, Put, TransactWriteItem};

use super::retry::Attempts;
use super::{
    Item, cancellation_reasons, conditionally_written, from_item, required_env, text_attribute,
    to_item, unavailable, unavailable_because,
};
use crate::nhs_number::NhsNumber;
use crate::pchr::ActedFor;
use crate::ports::{Recorded, RelationshipStore, StoreError};
use crate::relationship::{Relationship, RelationshipChange, relationship_key};

/// The relationships table (`pk`, `sk`): a relationship under
/// `CHILD#<child>` / `PERSON#<person>#<source>` (the `Relationship` as
/// serde writes it), indexed by `personNhs` (GSI `ByPerson`); and one item
/// per relationship event seen, `RELEVENT#<source>#<Bundle.id>` /
/// `RELEVENT`, holding the body's SHA-256.
#[derive(Clone)]
pub struct DynamoRelationshipStore {
    client: aws_sdk_dynamodb::Client,
    table: String,
}

/// The index of a person's relationships, to any child.
pub const PERSON_INDEX: &str = "ByPerson";
/// The sort key of an event-seen item.
const SEEN_SK: &str = "RELEVENT";
/// How many times a record reads again when a concurrent write of the same
/// relationship or event came between its read and its write.
const RECORD_ATTEMPTS: u32 = 5;

fn child_pk(child: NhsNumber) -> String {
    format!("CHILD#{child}")
}

/// The partition of the people one PCHR (its subscriber) acts for.
fn actor_pk(subscriber_id: &str) -> String {
    format!("ACTOR#{subscriber_id}")
}

fn person_sk(person: NhsNumber) -> String {
    format!("PERSON#{person}")
}

/// The event-seen item: the body's hash, what the event was, when seen.
fn seen_attributes(change: &RelationshipChange) -> Item {
    Item::from([
        ("pk".to_owned(), AttributeValue::S(change.event_key())),
        ("sk".to_owned(), AttributeValue::S(SEEN_SK.to_owned())),
        (
            "sha256".to_owned(),
            AttributeValue::S(change.body_sha256.clone()),
        ),
        (
            "eventType".to_owned(),
            AttributeValue::S(change.event_type.code().to_owned()),
        ),
        (
            "at".to_owned(),
            AttributeValue::S(change.relationship.changed_at.clone()),
        ),
    ])
}

impl DynamoRelationshipStore {
    pub fn new(client: aws_sdk_dynamodb::Client, table: impl Into<String>) -> Self {
        DynamoRelationshipStore {
            client,
            table: table.into(),
        }
    }

    /// The table named by RELATIONSHIPS_TABLE.
    pub fn from_env(client: aws_sdk_dynamodb::Client) -> Result<Self, StoreError> {
        Ok(Self::new(client, required_env("RELATIONSHIPS_TABLE")?))
    }

    /// The event seen before under this change's key: a duplicate when its
    /// hash is the body's, else a conflict; None when not seen.
    async fn seen_before(
        &self,
        change: &RelationshipChange,
    ) -> Result<Option<Recorded>, StoreError> {
        let output = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("pk", AttributeValue::S(change.event_key()))
            .key("sk", AttributeValue::S(SEEN_SK.to_owned()))
            .consistent_read(true)
            .send()
            .await
            .map_err(|error| unavailable("reading a relationship event seen", error))?;
        Ok(output.item.map(|item| {
            if text_attribute(&item, "sha256").as_deref() == Some(change.body_sha256.as_str()) {
                Recorded::Duplicate
            } else {
                Recorded::Conflict
            }
        }))
    }

    /// The relationship held under the change's key, if any.
    async fn held(&self, relationship: &Relationship) -> Result<Option<Relationship>, StoreError> {
        let output = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("pk", AttributeValue::S(child_pk(relationship.child_nhs)))
            .key("sk", AttributeValue::S(relationship.key()))
            .consistent_read(true)
            .send()
            .await
            .map_err(|error| unavailable("reading a relationship", error))?;
        output
            .item
            .map(|item| from_item(item, &format!("a relationship item of {}", self.table)))
            .transpose()
    }

    /// The event-seen item, written only if absent.
    fn seen_item(&self, change: &RelationshipChange) -> Result<Put, StoreError> {
        Put::builder()
            .table_name(&self.table)
            .set_item(Some(seen_attributes(change)))
            .condition_expression("attribute_not_exists(pk)")
            .build()
            .map_err(|error| unavailable("building the relationship event write", error))
    }

    /// The relationship's item, written if absent or older than it.
    fn relationship_item(&self, relationship: &Relationship) -> Result<Put, StoreError> {
        let mut item = to_item(relationship)?;
        item.insert(
            "pk".to_owned(),
            AttributeValue::S(child_pk(relationship.child_nhs)),
        );
        item.insert("sk".to_owned(), AttributeValue::S(relationship.key()));
        Put::builder()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(pk) OR sourceLastUpdated < :new")
            .expression_attribute_values(
                ":new",
                AttributeValue::S(relationship.source_last_updated.clone()),
            )
            .build()
            .map_err(|error| unavailable("building the relationship write", error))
    }

    /// The relationships of one Query, every page.
    async fn query(
        &self,
        request: aws_sdk_dynamodb::operation::query::builders::QueryFluentBuilder,
        what: &str,
    ) -> Result<Vec<Relationship>, StoreError> {
        let mut found = Vec::new();
        let mut items = request.into_paginator().items().send();
        while let Some(item) = items.next().await {
            let item = item.map_err(|error| unavailable(what, error))?;
            found.push(from_item(
                item,
                &format!("a relationship item of {}", self.table),
            )?);
        }
        Ok(found)
    }

    async fn under_child(
        &self,
        child: NhsNumber,
        prefix: String,
    ) -> Result<Vec<Relationship>, StoreError> {
        let request = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("pk = :pk AND begins_with(sk, :prefix)")
            .expression_attribute_values(":pk", AttributeValue::S(child_pk(child)))
            .expression_attribute_values(":prefix", AttributeValue::S(prefix))
            // A relationship ended a moment ago must not still count.
            .consistent_read(true);
        self.query(request, "reading a child's relationships").await
    }
}

impl RelationshipStore for DynamoRelationshipStore {
    async fn record(&self, change: &RelationshipChange) -> Result<Recorded, StoreError> {
        let relationship = &change.relationship;
        let mut attempts = Attempts::new(RECORD_ATTEMPTS, self.client.config().sleep_impl());
        while attempts.next().await {
            if let Some(seen) = self.seen_before(change).await? {
                return Ok(seen);
            }
            let held = self.held(relationship).await?;
            if held
                .as_ref()
                .is_some_and(|held| held.source_last_updated >= relationship.source_last_updated)
            {
                // Seen, so that its repetition is a duplicate; not applied.
                let written = self
                    .client
                    .put_item()
                    .table_name(&self.table)
                    .set_item(Some(seen_attributes(change)))
                    .condition_expression("attribute_not_exists(pk)")
                    .send()
                    .await;
                if conditionally_written(written, "recording a relationship event seen")? {
                    return Ok(Recorded::OutOfOrder);
                }
                continue;
            }
            let written = self
                .client
                .transact_write_items()
                .transact_items(
                    TransactWriteItem::builder()
                        .put(self.seen_item(change)?)
                        .build(),
                )
                .transact_items(
                    TransactWriteItem::builder()
                        .put(self.relationship_item(relationship)?)
                        .build(),
                )
                .send()
                .await;
            match written {
                Ok(_) if held.is_none() => return Ok(Recorded::Created),
                Ok(_) => return Ok(Recorded::Updated),
                Err(error) => {
                    let reasons = cancellation_reasons(error, "recording a relationship")?;
                    let conditional = reasons.at(0, "ConditionalCheckFailed")
                        || reasons.at(1, "ConditionalCheckFailed");
                    let contended = reasons.at(0, "TransactionConflict")
                        || reasons.at(1, "TransactionConflict");
                    if !conditional && !contended {
                        return Err(unavailable_because(format!(
                            "recording a relationship was cancelled: {reasons}"
                        )));
                    }
                    // Another write of the event or the relationship came
                    // first: read again and decide on what it left.
                }
            }
        }
        Err(unavailable_because(
            "recording a relationship kept meeting concurrent writes",
        ))
    }

    async fn for_child(&self, child: NhsNumber) -> Result<Vec<Relationship>, StoreError> {
        self.under_child(child, "PERSON#".to_owned()).await
    }

    async fn between(
        &self,
        child: NhsNumber,
        person: NhsNumber,
    ) -> Result<Vec<Relationship>, StoreError> {
        // `PERSON#<person>#`: the person's relationships from every source.
        self.under_child(child, relationship_key(person, "")).await
    }

    async fn children_of(&self, person: NhsNumber) -> Result<Vec<Relationship>, StoreError> {
        let request = self
            .client
            .query()
            .table_name(&self.table)
            .index_name(PERSON_INDEX)
            .key_condition_expression("personNhs = :person")
            .expression_attribute_values(":person", AttributeValue::S(person.as_string()));
        self.query(request, "reading a person's relationships")
            .await
    }

    /// `ACTOR#<subscriber>` / `PERSON#<person>`: a PutItem, replacing an
    /// earlier attestation. It carries no `personNhs`, so the ByPerson
    /// index holds relationships only.
    async fn act_for(&self, acted: &ActedFor) -> Result<(), StoreError> {
        let mut item = to_item(acted)?;
        item.insert(
            "pk".to_owned(),
            AttributeValue::S(actor_pk(&acted.subscriber_id)),
        );
        item.insert("sk".to_owned(), AttributeValue::S(person_sk(acted.person)));
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .send()
            .await
            .map_err(|error| unavailable("recording a person acted for", error))?;
        Ok(())
    }

    async fn acted_for(
        &self,
        subscriber_id: &str,
        person: NhsNumber,
    ) -> Result<Option<ActedFor>, StoreError> {
        let output = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("pk", AttributeValue::S(actor_pk(subscriber_id)))
            .key("sk", AttributeValue::S(person_sk(person)))
            .consistent_read(true)
            .send()
            .await
            .map_err(|error| unavailable("reading a person acted for", error))?;
        output
            .item
            .map(|mut item| {
                item.remove("pk");
                item.remove("sk");
                from_item(item, &format!("a person-acted-for item of {}", self.table))
            })
            .transpose()
    }

    /// An UpdateItem, conditional on acting now: never a delete.
    async fn stop_acting_for(
        &self,
        subscriber_id: &str,
        person: NhsNumber,
        at: &str,
    ) -> Result<bool, StoreError> {
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", AttributeValue::S(actor_pk(subscriber_id)))
            .key("sk", AttributeValue::S(person_sk(person)))
            .update_expression("SET #status = :ended, endedAt = :at")
            .condition_expression("#status = :active")
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":ended", AttributeValue::S("ended".into()))
            .expression_attribute_values(":active", AttributeValue::S("active".into()))
            .expression_attribute_values(":at", AttributeValue::S(at.to_owned()))
            .send()
            .await;
        conditionally_written(result, "ending a person acted for")
    }
}
