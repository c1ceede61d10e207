//! The embargo table (EMBARGO_TABLE; keys `pk`, `sk`; TTL `expiresAt`):
//! the settings (`SETTING` / `<event type>#<service type>`), the holds
//! (`DUE#<release day>` / `<releaseAt>#<eventKey>#<subscriberId>`), their
//! index items for the read paths (`HOLD#<eventKey>#<subscriberId>` /
//! `HOLD`) and the release function's watermark (`WATERMARK`).

use std::collections::{HashMap, HashSet};

use aws_sdk_dynamodb::types::{AttributeValue, Put, TransactWriteItem, Update};

use super::batch::read_keyed;
use super::{
    Item, cancellation_reasons, conditionally_written, from_item, required_env, text_attribute,
    to_item, unavailable, unavailable_because,
};
use crate::catalogue::EventType;
use crate::criteria::ServiceType;
use crate::embargo::{EmbargoSetting, Embargoes, Hold, HoldStatus};
use crate::ports::{Page, StoreError};

#[derive(Clone)]
pub struct DynamoEmbargoStore {
    client: aws_sdk_dynamodb::Client,
    table: String,
}

const SETTING: &str = "SETTING";
const WATERMARK: &str = "WATERMARK";

impl DynamoEmbargoStore {
    pub fn new(client: aws_sdk_dynamodb::Client, table: impl Into<String>) -> Self {
        DynamoEmbargoStore {
            client,
            table: table.into(),
        }
    }

    /// The table named by EMBARGO_TABLE.
    pub fn from_env(client: aws_sdk_dynamodb::Client) -> Result<Self, StoreError> {
        Ok(Self::new(client, required_env("EMBARGO_TABLE")?))
    }
}

fn text(value: &str) -> AttributeValue {
    AttributeValue::S(value.to_owned())
}

fn status_code(status: HoldStatus) -> &'static str {
    match status {
        HoldStatus::Held => "held",
        HoldStatus::Released => "released",
        HoldStatus::Cancelled => "cancelled",
    }
}

fn due_pk(hold: &Hold) -> String {
    format!("DUE#{}", hold.release_day())
}

fn index_pk(event_key: &str, subscriber_id: &str) -> String {
    format!("HOLD#{event_key}#{subscriber_id}")
}

fn setting_sk(event_type: EventType, service_type: ServiceType) -> String {
    format!("{}#{}", event_type.code(), service_type.code())
}

fn build(what: &str) -> impl Fn(aws_sdk_dynamodb::error::BuildError) -> StoreError + '_ {
    move |error| unavailable(&format!("building {what}"), error)
}

impl crate::ports::EmbargoStore for DynamoEmbargoStore {
    async fn settings(&self) -> Result<Embargoes, StoreError> {
        let mut settings = Vec::new();
        let mut start: Option<Item> = None;
        loop {
            let output = self
                .client
                .query()
                .table_name(&self.table)
                .key_condition_expression("pk = :pk")
                .expression_attribute_values(":pk", text(SETTING))
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(|error| unavailable("reading the embargo settings", error))?;
            for item in output.items.unwrap_or_default() {
                if item.contains_key("removedAt") {
                    continue;
                }
                settings.push(from_item(item, "an embargo setting")?);
            }
            start = output.last_evaluated_key;
            if start.is_none() {
                return Ok(Embargoes(settings));
            }
        }
    }

    async fn put_setting(&self, setting: &EmbargoSetting) -> Result<(), StoreError> {
        let mut item = to_item(setting)?;
        item.insert("pk".into(), text(SETTING));
        item.insert(
            "sk".into(),
            text(&setting_sk(setting.event_type, setting.service_type)),
        );
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .send()
            .await
            .map_err(|error| unavailable("writing an embargo setting", error))?;
        Ok(())
    }

    /// Marked removed, not deleted: only the functions that remove
    /// subscriptions may delete (tests/tests/contract/template.rs).
    async fn remove_setting(
        &self,
        event_type: EventType,
        service_type: ServiceType,
        at: &str,
    ) -> Result<bool, StoreError> {
        let removed = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", text(SETTING))
            .key("sk", text(&setting_sk(event_type, service_type)))
            .update_expression("SET removedAt = :at")
            .condition_expression("attribute_exists(pk) AND attribute_not_exists(removedAt)")
            .expression_attribute_values(":at", text(at))
            .send()
            .await;
        conditionally_written(removed, "removing an embargo setting")
    }

    async fn hold(&self, hold: &Hold) -> Result<bool, StoreError> {
        let mut item = to_item(hold)?;
        item.insert("pk".into(), text(&due_pk(hold)));
        item.insert("sk".into(), text(&hold.due_key()));
        let due = Put::builder()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(pk)")
            .build()
            .map_err(build("a hold"))?;
        let index = Put::builder()
            .table_name(&self.table)
            .item("pk", text(&index_pk(&hold.event_key, &hold.subscriber_id)))
            .item("sk", text("HOLD"))
            .item("releaseAt", text(&hold.release_at))
            .item("status", text(status_code(HoldStatus::Held)))
            .item("expiresAt", AttributeValue::N(hold.expires_at.to_string()))
            .condition_expression("attribute_not_exists(pk)")
            .build()
            .map_err(build("a hold's index item"))?;
        let written = self
            .client
            .transact_write_items()
            .transact_items(TransactWriteItem::builder().put(due).build())
            .transact_items(TransactWriteItem::builder().put(index).build())
            .send()
            .await;
        let Err(error) = written else {
            return Ok(true);
        };
        let failed = cancellation_reasons(error, "holding a delivery")?;
        // Held before: a retried dispatch.
        if failed.at(0, "ConditionalCheckFailed") || failed.at(1, "ConditionalCheckFailed") {
            return Ok(false);
        }
        Err(unavailable_because(format!(
            "holding a delivery: the transaction was cancelled ({failed})"
        )))
    }

    async fn due(
        &self,
        day: &str,
        until: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Page<Hold>, StoreError> {
        let pk = format!("DUE#{day}");
        // Every due key released at or before `until` sorts below this
        // ('$' follows the '#' after the time).
        let upper = format!("{until}$");
        let mut start: Option<Item> = after.map(|after| {
            HashMap::from([("pk".to_owned(), text(&pk)), ("sk".to_owned(), text(after))])
        });
        let mut items = Vec::new();
        loop {
            let output = self
                .client
                .query()
                .table_name(&self.table)
                .key_condition_expression("pk = :pk AND sk < :upper")
                .filter_expression("#status = :held")
                .expression_attribute_names("#status", "status")
                .expression_attribute_values(":pk", text(&pk))
                .expression_attribute_values(":upper", text(&upper))
                .expression_attribute_values(":held", text(status_code(HoldStatus::Held)))
                .consistent_read(true)
                // No more than the page still needs (one more tells whether
                // a next page exists): the limit counts before the filter,
                // so released holds only cost another round.
                .limit(i32::try_from(limit + 1 - items.len()).unwrap_or(i32::MAX))
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(|error| unavailable("reading the holds due", error))?;
            for item in output.items.unwrap_or_default() {
                items.push(from_item::<Hold>(item, "a hold")?);
            }
            start = output.last_evaluated_key;
            if items.len() > limit {
                items.truncate(limit);
                let next = items.last().map(Hold::due_key);
                return Ok(Page { items, next });
            }
            if start.is_none() {
                return Ok(Page { items, next: None });
            }
        }
    }

    async fn attempt_failed(&self, hold: &Hold, error: &str) -> Result<(), StoreError> {
        let updated = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", text(&due_pk(hold)))
            .key("sk", text(&hold.due_key()))
            .update_expression("ADD attempts :one SET lastError = :error")
            .condition_expression("attribute_exists(pk)")
            .expression_attribute_values(":one", AttributeValue::N("1".into()))
            .expression_attribute_values(":error", text(error))
            .send()
            .await;
        conditionally_written(updated, "recording a failed release").map(|_| ())
    }

    async fn settle(
        &self,
        hold: &Hold,
        status: HoldStatus,
        detail: Option<&str>,
    ) -> Result<bool, StoreError> {
        let mut due = Update::builder()
            .table_name(&self.table)
            .key("pk", text(&due_pk(hold)))
            .key("sk", text(&hold.due_key()))
            .condition_expression("#status = :held")
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":held", text(status_code(HoldStatus::Held)))
            .expression_attribute_values(":status", text(status_code(status)))
            .expression_attribute_values(":one", AttributeValue::N("1".into()));
        due = match detail {
            Some(detail) => due
                .update_expression("SET #status = :status, lastError = :detail ADD attempts :one")
                .expression_attribute_values(":detail", text(detail)),
            None => due.update_expression("SET #status = :status ADD attempts :one"),
        };
        let index = Update::builder()
            .table_name(&self.table)
            .key("pk", text(&index_pk(&hold.event_key, &hold.subscriber_id)))
            .key("sk", text("HOLD"))
            .update_expression("SET #status = :status")
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":status", text(status_code(status)))
            .build()
            .map_err(build("a hold's index update"))?;
        let written = self
            .client
            .transact_write_items()
            .transact_items(
                TransactWriteItem::builder()
                    .update(due.build().map_err(build("a hold's update"))?)
                    .build(),
            )
            .transact_items(TransactWriteItem::builder().update(index).build())
            .send()
            .await;
        let Err(error) = written else {
            return Ok(true);
        };
        let failed = cancellation_reasons(error, "settling a hold")?;
        if failed.at(0, "ConditionalCheckFailed") {
            return Ok(false);
        }
        Err(unavailable_because(format!(
            "settling a hold: the transaction was cancelled ({failed})"
        )))
    }

    async fn held(
        &self,
        keys: &[(String, String)],
    ) -> Result<HashSet<(String, String)>, StoreError> {
        // The pairs by their index item's key: each item read is found by
        // its own, and a repeated pair is asked for once.
        let by_pk: HashMap<String, &(String, String)> = keys
            .iter()
            .map(|pair| (index_pk(&pair.0, &pair.1), pair))
            .collect();
        let requested = by_pk
            .keys()
            .map(|pk| HashMap::from([("pk".to_owned(), text(pk)), ("sk".to_owned(), text("HOLD"))]))
            .collect();
        let mut held = HashSet::new();
        for item in read_keyed(&self.client, &self.table, requested, "holds").await? {
            if text_attribute(&item, "status").as_deref() != Some(status_code(HoldStatus::Held)) {
                continue;
            }
            if let Some(pair) = text_attribute(&item, "pk").and_then(|pk| by_pk.get(&pk)) {
                held.insert((*pair).clone());
            }
        }
        Ok(held)
    }

    async fn watermark(&self) -> Result<Option<String>, StoreError> {
        let output = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("pk", text(WATERMARK))
            .key("sk", text(WATERMARK))
            .consistent_read(true)
            .send()
            .await
            .map_err(|error| unavailable("reading the embargo watermark", error))?;
        Ok(output.item.and_then(|item| text_attribute(&item, "day")))
    }

    async fn set_watermark(&self, day: &str) -> Result<(), StoreError> {
        self.client
            .put_item()
            .table_name(&self.table)
            .item("pk", text(WATERMARK))
            .item("sk", text(WATERMARK))
            .item("day", text(day))
            .send()
            .await
            .map_err(|error| unavailable("writing the embargo watermark", error))?;
        Ok(())
    }
}
