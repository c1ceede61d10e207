//! The replay store: replay jobs, and the holds and daily counts that
//! admit them.

use aws_sdk_dynamodb::types::{AttributeValue, Put, TransactWriteItem};

use super::retry::Attempts;
use super::{
    Read, cancellation_reasons, conditionally_written, get_by_key, required_env, to_item,
    unavailable, unavailable_because,
};
use crate::ports::StoreError;

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
const START_ATTEMPTS: u32 = 3;

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
        let mut attempts = Attempts::new(START_ATTEMPTS, self.client.config().sleep_impl());
        while attempts.next().await {
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
                return Err(unavailable_because(format!(
                    "starting a replay: the transaction was cancelled ({})",
                    failed
                )));
            }
        }
        Err(unavailable_because(format!(
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
