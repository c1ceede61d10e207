//! The client assertions already exchanged (their ids), so that none is
//! exchanged twice.

use aws_sdk_dynamodb::types::AttributeValue;

use super::conditionally_written;
use crate::ports::StoreError;

/// The client assertions already exchanged, one item per client and jti,
/// removed by the table's TTL on `expiresAt` once the assertion has expired.
/// Its table is the template's `ReplayTable` (REPLAY_TABLE), named for the
/// replay of an assertion it prevents, not for replay jobs.
#[derive(Clone)]
pub struct DynamoUsedAssertionIds {
    client: aws_sdk_dynamodb::Client,
    table: String,
}

impl DynamoUsedAssertionIds {
    pub fn new(client: aws_sdk_dynamodb::Client, table: impl Into<String>) -> Self {
        DynamoUsedAssertionIds {
            client,
            table: table.into(),
        }
    }
}

impl crate::ports::UsedAssertionIds for DynamoUsedAssertionIds {
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
