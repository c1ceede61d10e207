//! Reference data: postcode and practice areas (see crate::reference).

use std::collections::HashMap;

use aws_sdk_dynamodb::types::AttributeValue;

use super::batch::{MAX_BATCH_WRITE, read_batches, write_batches};
use super::{Item, required_env, text_attribute};
use crate::ports::StoreError;

/// The reference table (`refKey`, S): one item per postcode and per GP
/// practice, written by the loader (`hub-local reference load`) and read
/// by dispatch.
///
/// | refKey | attributes |
/// |---|---|
/// | `POSTCODE#LS17 7DF` | `localAuthority`, `icbSubLocation` (ODS code; absent when none), `country`, `terminated` (BOOL) |
/// | `PRACTICE#B86056` | `icbSubLocation` (ODS code) |
///
/// Every read is a BatchGetItem, even of one key: dispatch is granted that
/// action alone on the table, and reads an event's places (at most two
/// postcodes and two practices) with one request.
#[derive(Clone)]
pub struct DynamoReferenceData {
    client: aws_sdk_dynamodb::Client,
    table: String,
}

/// The reference table's key attribute.
const REFERENCE_KEY: &str = "refKey";
const REFERENCE_LOCAL_AUTHORITY: &str = "localAuthority";
const REFERENCE_ICB_SUB_LOCATION: &str = "icbSubLocation";
const REFERENCE_COUNTRY: &str = "country";
const REFERENCE_TERMINATED: &str = "terminated";

/// What one key of a batch read stands for.
enum ReferenceTarget<'a> {
    Postcode(&'a crate::reference::Postcode),
    Practice(String),
}

impl DynamoReferenceData {
    pub fn new(client: aws_sdk_dynamodb::Client, table: impl Into<String>) -> Self {
        DynamoReferenceData {
            client,
            table: table.into(),
        }
    }

    /// The reference table named by REFERENCE_TABLE.
    pub fn from_env(client: aws_sdk_dynamodb::Client) -> Result<Self, StoreError> {
        Ok(DynamoReferenceData::new(
            client,
            required_env("REFERENCE_TABLE")?,
        ))
    }

    pub fn table(&self) -> &str {
        &self.table
    }

    /// Writes items with BatchWriteItem, 25 to a request, one request after
    /// the other, asking again (with back-off) for what DynamoDB leaves
    /// unprocessed. Puts overwrite, so loading the same files twice leaves
    /// the same table. A key given twice is written once, with its last
    /// item (BatchWriteItem refuses a request that repeats a key). The
    /// loader runs several of these calls at once for speed.
    pub async fn put_batch(
        &self,
        items: &[crate::reference::ReferenceItem],
    ) -> Result<(), StoreError> {
        // One BatchWriteItem refuses two writes of a key: within a chunk the
        // last item of a key wins, as it would written one by one.
        for chunk in items.chunks(MAX_BATCH_WRITE) {
            let by_key: HashMap<String, Item> = chunk
                .iter()
                .map(|item| (item.key(), reference_attributes(item)))
                .collect();
            write_batches(
                &self.client,
                &self.table,
                by_key.into_values().collect(),
                "reference items",
            )
            .await?;
        }
        Ok(())
    }
}

/// A reference item as the table keeps it.
fn reference_attributes(item: &crate::reference::ReferenceItem) -> Item {
    use crate::reference::ReferenceItem;
    let mut attributes = Item::with_capacity(5);
    attributes.insert(REFERENCE_KEY.to_owned(), AttributeValue::S(item.key()));
    let icb_sub_location = match item {
        ReferenceItem::Postcode {
            area, terminated, ..
        } => {
            attributes.insert(
                REFERENCE_LOCAL_AUTHORITY.to_owned(),
                AttributeValue::S(area.local_authority.clone()),
            );
            attributes.insert(
                REFERENCE_COUNTRY.to_owned(),
                AttributeValue::S(area.country.clone()),
            );
            attributes.insert(
                REFERENCE_TERMINATED.to_owned(),
                AttributeValue::Bool(*terminated),
            );
            area.icb_sub_location.clone()
        }
        ReferenceItem::Practice(practice) => Some(practice.icb_sub_location.clone()),
    };
    if let Some(code) = icb_sub_location {
        attributes.insert(
            REFERENCE_ICB_SUB_LOCATION.to_owned(),
            AttributeValue::S(code),
        );
    }
    attributes
}

/// The size DynamoDB counts for a reference item: the UTF-8 length of each
/// attribute's name and string value, one byte for a boolean. (Storage is
/// billed with about 100 bytes more per item, for indexing.) The loader
/// reports the table's size with it, since the emulator does not.
pub fn reference_item_size(item: &crate::reference::ReferenceItem) -> usize {
    reference_attributes(item)
        .iter()
        .map(|(name, value)| {
            name.len()
                + match value {
                    AttributeValue::S(text) => text.len(),
                    AttributeValue::Bool(_) => 1,
                    _ => 0,
                }
        })
        .sum()
}

/// Adds what an item read back says of its postcode or practice. An item
/// that lacks an attribute the loader always writes is taken as unknown
/// (and logged without its key, which may be a child's postcode) rather
/// than failing every dispatch that meets it.
fn answer(areas: &mut crate::reference::ReferenceAreas, target: &ReferenceTarget, item: &Item) {
    let icb_sub_location = text_attribute(item, REFERENCE_ICB_SUB_LOCATION);
    match target {
        ReferenceTarget::Postcode(postcode) => {
            let local_authority = text_attribute(item, REFERENCE_LOCAL_AUTHORITY);
            let country = text_attribute(item, REFERENCE_COUNTRY);
            let (Some(local_authority), Some(country)) = (local_authority, country) else {
                tracing::warn!(
                    "a postcode item of the reference table lacks its local authority or country: taken as unknown"
                );
                return;
            };
            areas.postcodes.insert(
                (*postcode).clone(),
                crate::reference::PostcodeArea {
                    local_authority,
                    icb_sub_location,
                    country,
                },
            );
        }
        ReferenceTarget::Practice(code) => match icb_sub_location {
            Some(icb) => {
                areas.practices.insert(code.clone(), icb);
            }
            None => tracing::warn!(
                "a practice item of the reference table lacks its sub-ICB location: taken as unknown"
            ),
        },
    }
}

impl crate::ports::ReferenceData for DynamoReferenceData {
    async fn postcode_area(
        &self,
        postcode: &crate::reference::Postcode,
    ) -> Result<Option<crate::reference::PostcodeArea>, StoreError> {
        let mut areas = self.locate_many(&[postcode], &[]).await?;
        Ok(areas.postcodes.remove(postcode))
    }

    async fn practice_area(&self, ods_code: &str) -> Result<Option<String>, StoreError> {
        let mut areas = self.locate_many(&[], &[ods_code]).await?;
        Ok(areas
            .practices
            .remove(&crate::reference::practice_code(ods_code)))
    }

    /// One BatchGetItem for up to 100 keys (an event has at most four),
    /// plus a request for each retry of unprocessed keys.
    async fn locate_many(
        &self,
        postcodes: &[&crate::reference::Postcode],
        practices: &[&str],
    ) -> Result<crate::reference::ReferenceAreas, StoreError> {
        use crate::reference::{ReferenceAreas, postcode_key, practice_key};

        // Unique keys: BatchGetItem refuses a request that repeats one.
        let mut targets: HashMap<String, ReferenceTarget> = HashMap::new();
        for postcode in postcodes {
            targets.insert(postcode_key(postcode), ReferenceTarget::Postcode(postcode));
        }
        for practice in practices {
            targets.insert(
                practice_key(practice),
                ReferenceTarget::Practice(crate::reference::practice_code(practice)),
            );
        }
        let mut areas = ReferenceAreas::default();
        let keys: Vec<String> = targets.keys().cloned().collect();
        let items = read_batches(
            &self.client,
            &self.table,
            REFERENCE_KEY,
            &keys,
            "reference data",
        )
        .await?;
        for item in items {
            if let Some(target) =
                text_attribute(&item, REFERENCE_KEY).and_then(|key| targets.get(&key))
            {
                answer(&mut areas, target, &item);
            }
        }
        Ok(areas)
    }
}
