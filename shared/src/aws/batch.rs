//! BatchWriteItem and BatchGetItem in chunks, asking again for what
//! DynamoDB leaves unprocessed.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::AttributeValue;

use super::retry::Attempts;
use super::{Item, unavailable, unavailable_because};
use crate::ports::StoreError;

/// BatchWriteItem's limit.
pub(super) const MAX_BATCH_WRITE: usize = 25;
/// BatchGetItem's limit of keys per request.
const MAX_BATCH_GET: usize = 100;

/// How many times a batch request is sent while DynamoDB leaves some of it
/// unprocessed (throttling), before the caller's own retry takes over.
const BATCH_ATTEMPTS: u32 = 8;

/// Puts `items` into `table`, 25 to a BatchWriteItem, sending again what
/// DynamoDB leaves unprocessed, with a growing pause (`retry`), as its
/// documentation asks.
pub(super) async fn write_batches(
    client: &aws_sdk_dynamodb::Client,
    table: &str,
    items: Vec<Item>,
    what: &str,
) -> Result<(), StoreError> {
    use aws_sdk_dynamodb::types::{PutRequest, WriteRequest};
    let mut items = items.into_iter().peekable();
    while items.peek().is_some() {
        let mut requests = items
            .by_ref()
            .take(MAX_BATCH_WRITE)
            .map(|item| {
                let put = PutRequest::builder()
                    .set_item(Some(item))
                    .build()
                    .map_err(|error| unavailable(what, error))?;
                Ok(WriteRequest::builder().put_request(put).build())
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        let mut attempts = Attempts::new(BATCH_ATTEMPTS, client.config().sleep_impl());
        while !requests.is_empty() && attempts.next().await {
            let output = client
                .batch_write_item()
                .request_items(table, requests)
                .send()
                .await
                .map_err(|error| unavailable(&format!("writing {what}"), error))?;
            requests = output
                .unprocessed_items
                .and_then(|mut unprocessed| unprocessed.remove(table))
                .unwrap_or_default();
        }
        if !requests.is_empty() {
            return Err(unavailable_because(format!(
                "DynamoDB left {} {what} unprocessed after {BATCH_ATTEMPTS} requests",
                requests.len()
            )));
        }
    }
    Ok(())
}

/// Reads the items of `table` under these values of its string hash key
/// (`read_keyed`).
pub(super) async fn read_batches(
    client: &aws_sdk_dynamodb::Client,
    table: &str,
    key_name: &str,
    keys: &[String],
    what: &str,
) -> Result<Vec<Item>, StoreError> {
    let keys = keys
        .iter()
        .map(|key| HashMap::from([(key_name.to_owned(), AttributeValue::S(key.clone()))]))
        .collect();
    read_keyed(client, table, keys, what).await
}

/// Reads the items of `table` under these whole keys, 100 to a
/// BatchGetItem, asking again for what DynamoDB leaves unprocessed, with a
/// growing pause. Keys with no item are left out; the keys must be unique
/// (BatchGetItem refuses a request that repeats one).
pub(super) async fn read_keyed(
    client: &aws_sdk_dynamodb::Client,
    table: &str,
    keys: Vec<Item>,
    what: &str,
) -> Result<Vec<Item>, StoreError> {
    use aws_sdk_dynamodb::types::KeysAndAttributes;
    let mut found = Vec::with_capacity(keys.len());
    for chunk in keys.chunks(MAX_BATCH_GET) {
        let request = KeysAndAttributes::builder().set_keys(Some(chunk.to_vec()));
        let mut pending = Some(
            request
                .build()
                .map_err(|error| unavailable(&format!("building a read of {what}"), error))?,
        );
        let mut attempts = Attempts::new(BATCH_ATTEMPTS, client.config().sleep_impl());
        while let Some(keys) = pending.take() {
            if !attempts.next().await {
                return Err(unavailable_because(format!(
                    "DynamoDB left keys of {what} unprocessed after {BATCH_ATTEMPTS} requests"
                )));
            }
            let mut output = client
                .batch_get_item()
                .request_items(table, keys)
                .send()
                .await
                .map_err(|error| unavailable(&format!("reading {what}"), error))?;
            found.extend(
                output
                    .responses
                    .as_mut()
                    .and_then(|responses| responses.remove(table))
                    .unwrap_or_default(),
            );
            pending = output
                .unprocessed_keys
                .and_then(|mut unprocessed| unprocessed.remove(table))
                .filter(|keys| !keys.keys.is_empty());
        }
    }
    Ok(found)
}
