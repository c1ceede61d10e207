//! The child register.

use aws_sdk_dynamodb::types::AttributeValue;

use super::{conditionally_written, from_item, required_env, to_item, unavailable};
use crate::nhs_number::NhsNumber;
use crate::ports::StoreError;

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
                StoreError::Corrupt(format!("an item of {} has no readable version", self.table))
            })?;
        // Its key is an NHS number: the item is not named by it.
        let value: crate::register::ChildRecord =
            from_item(item, &format!("an item of {}", self.table))?;
        if value.nhs_number != nhs_number {
            return Err(StoreError::Corrupt(format!(
                "an item of {} is stored under another NHS number",
                self.table
            )));
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
