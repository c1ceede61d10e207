//! The audit log.

use aws_sdk_dynamodb::types::AttributeValue;

use super::batch::write_batches;
use super::page_token::{decode_page_token, encode_page_token};
use super::{Read, from_item, get_by_key, required_env, to_item, unavailable};
use crate::ports::{Page, StoreError};

/// The audit table: one item per record (`auditId`), with the indexes
/// `ByPatient` (nhsNumber, at) and `ByClient` (clientId, at).
#[derive(Clone)]
pub struct DynamoAuditLog {
    client: aws_sdk_dynamodb::Client,
    table: String,
}

const AUDIT_BY_PATIENT_INDEX: &str = "ByPatient";
const AUDIT_BY_CLIENT_INDEX: &str = "ByClient";

impl DynamoAuditLog {
    pub fn new(client: aws_sdk_dynamodb::Client, table: impl Into<String>) -> Self {
        DynamoAuditLog {
            client,
            table: table.into(),
        }
    }

    /// The audit table every function writes to, named by AUDIT_TABLE.
    pub fn from_env(client: aws_sdk_dynamodb::Client) -> Result<Self, StoreError> {
        Ok(DynamoAuditLog::new(client, required_env("AUDIT_TABLE")?))
    }
}

fn audit_query_value(query: &crate::audit::AuditQuery) -> (&'static str, String) {
    match query {
        crate::audit::AuditQuery::Patient(nhs_number) => ("nhsNumber", nhs_number.as_string()),
        crate::audit::AuditQuery::Client(client_id) => ("clientId", client_id.clone()),
    }
}

impl crate::ports::AuditLog for DynamoAuditLog {
    async fn record(&self, record: &crate::audit::AuditRecord) -> Result<(), StoreError> {
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(to_item(record)?))
            .send()
            .await
            .map_err(|error| unavailable("recording an audit entry", error))?;
        Ok(())
    }

    async fn record_all(&self, records: &[crate::audit::AuditRecord]) -> Result<(), StoreError> {
        let items = records.iter().map(to_item).collect::<Result<Vec<_>, _>>()?;
        write_batches(&self.client, &self.table, items, "audit entries").await
    }

    async fn get(&self, audit_id: &str) -> Result<Option<crate::audit::AuditRecord>, StoreError> {
        get_by_key(
            &self.client,
            &self.table,
            ("auditId", audit_id),
            Read::Eventual,
            "reading an audit entry",
        )
        .await
    }

    async fn query(
        &self,
        query: &crate::audit::AuditQuery,
        limit: usize,
        page_token: Option<&str>,
    ) -> Result<Page<crate::audit::AuditRecord>, StoreError> {
        let (attribute, value) = audit_query_value(query);
        let listing = format!("{attribute}={value}");
        let start_key = page_token
            .map(|token| {
                decode_page_token(token, &listing, |key| {
                    key.len() == 3
                        && key.contains_key("auditId")
                        && key.contains_key("at")
                        && key.get(attribute) == Some(&value)
                })
            })
            .transpose()?;
        let index = match query {
            crate::audit::AuditQuery::Patient(_) => AUDIT_BY_PATIENT_INDEX,
            crate::audit::AuditQuery::Client(_) => AUDIT_BY_CLIENT_INDEX,
        };
        let output = self
            .client
            .query()
            .table_name(&self.table)
            .index_name(index)
            .key_condition_expression("#key = :value")
            .expression_attribute_names("#key", attribute)
            .expression_attribute_values(":value", AttributeValue::S(value))
            .scan_index_forward(false)
            .limit(i32::try_from(limit.max(1)).unwrap_or(i32::MAX))
            .set_exclusive_start_key(start_key)
            .send()
            .await
            .map_err(|error| unavailable("querying the audit trail", error))?;
        let items = output
            .items
            .unwrap_or_default()
            .into_iter()
            .map(|item| {
                let described = super::keyed(&self.table, &item, "auditId");
                from_item(item, &described)
            })
            .collect::<Result<Vec<_>, _>>()?;
        let next = output
            .last_evaluated_key
            .as_ref()
            .and_then(|key| encode_page_token(key, &listing));
        Ok(Page { items, next })
    }
}
