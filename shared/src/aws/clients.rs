//! The client store: the registered clients.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::AttributeValue;

use super::{Read, conditionally_written, get_by_key, to_item, unavailable};
use crate::ports::StoreError;

/// The registered clients: one item per client id.
#[derive(Clone)]
pub struct DynamoClientStore {
    client: aws_sdk_dynamodb::Client,
    table: String,
}

impl DynamoClientStore {
    pub fn new(client: aws_sdk_dynamodb::Client, table: impl Into<String>) -> Self {
        DynamoClientStore {
            client,
            table: table.into(),
        }
    }

    /// Registers a client, or replaces its registration (a key rotation).
    pub async fn put(&self, registered: &crate::auth::Client) -> Result<(), StoreError> {
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(to_item(registered)?))
            .send()
            .await
            .map_err(|error| unavailable("registering a client", error))?;
        Ok(())
    }
}

impl crate::ports::ClientStore for DynamoClientStore {
    async fn get(&self, client_id: &str) -> Result<Option<crate::auth::Client>, StoreError> {
        get_by_key(
            &self.client,
            &self.table,
            ("clientId", client_id),
            Read::Consistent,
            "reading a client",
        )
        .await
    }

    async fn register(&self, registered: &crate::auth::Client) -> Result<bool, StoreError> {
        // One update, so that a disable or an onboarding's link landing at
        // the same moment is kept: the registration's own fields are set;
        // `enabled` only when the client is new (a disabled client stays
        // disabled through a re-registration), `subscriberId` never.
        let item = to_item(registered)?;
        let mut names = HashMap::new();
        let mut values = HashMap::new();
        let mut assignments = Vec::new();
        for (index, (name, value)) in item
            .into_iter()
            .filter(|(name, _)| !matches!(name.as_str(), "clientId" | "subscriberId" | "enabled"))
            .enumerate()
        {
            assignments.push(format!("#f{index} = :f{index}"));
            names.insert(format!("#f{index}"), name);
            values.insert(format!(":f{index}"), value);
        }
        assignments.push("enabled = if_not_exists(enabled, :enabled)".to_owned());
        values.insert(
            ":enabled".to_owned(),
            AttributeValue::Bool(registered.enabled),
        );
        let output = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("clientId", AttributeValue::S(registered.client_id.clone()))
            .update_expression(format!("SET {}", assignments.join(", ")))
            .set_expression_attribute_names(Some(names))
            .set_expression_attribute_values(Some(values))
            .return_values(aws_sdk_dynamodb::types::ReturnValue::AllOld)
            .send()
            .await
            .map_err(|error| unavailable("registering a client", error))?;
        // No old values: nothing was registered under this id.
        Ok(output.attributes.is_none_or(|old| old.is_empty()))
    }

    async fn disable(&self, client_id: &str) -> Result<bool, StoreError> {
        let updated = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("clientId", AttributeValue::S(client_id.to_owned()))
            .update_expression("SET enabled = :false")
            .condition_expression("attribute_exists(clientId)")
            .expression_attribute_values(":false", AttributeValue::Bool(false))
            .send()
            .await;
        conditionally_written(updated, "disabling a client")
    }

    async fn link_subscriber(
        &self,
        client_id: &str,
        subscriber_id: &str,
    ) -> Result<(), StoreError> {
        self.client
            .update_item()
            .table_name(&self.table)
            .key("clientId", AttributeValue::S(client_id.to_owned()))
            .update_expression("SET subscriberId = :subscriber")
            .condition_expression("attribute_exists(clientId)")
            .expression_attribute_values(":subscriber", AttributeValue::S(subscriber_id.to_owned()))
            .send()
            .await
            .map_err(|error| unavailable("linking a client to its subscriber", error))?;
        Ok(())
    }
}
