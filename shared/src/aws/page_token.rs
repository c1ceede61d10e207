//! Page tokens of the listings (subscriptions, audit trail): a Query's
//! LastEvaluatedKey, bound to the listing that issued it.

use std::collections::BTreeMap;

use aws_sdk_dynamodb::types::AttributeValue;
use serde_json::json;

use super::Item;
use crate::ports::StoreError;

/// A listing's page token: the Query's LastEvaluatedKey (string attributes),
/// bound to the listing that issued it (`listing`), so that a token cannot
/// be replayed against another subscriber's or another patient's listing.
pub(super) fn encode_page_token(key: &Item, listing: &str) -> Option<String> {
    use base64::Engine as _;
    let strings: BTreeMap<&str, &str> = key
        .iter()
        .filter_map(|(name, value)| Some((name.as_str(), value.as_s().ok()?.as_str())))
        .collect();
    let json = serde_json::to_vec(&json!({"listing": listing, "key": strings})).ok()?;
    Some(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(json))
}

/// The start key a page token carries, if the token was issued for this
/// listing and its key has the shape `valid_key` expects. Key values are
/// never empty (DynamoDB refuses empty key attributes with an error).
pub(super) fn decode_page_token(
    token: &str,
    listing: &str,
    valid_key: impl Fn(&BTreeMap<String, String>) -> bool,
) -> Result<Item, StoreError> {
    use base64::Engine as _;
    #[derive(serde::Deserialize)]
    struct Token {
        listing: String,
        key: BTreeMap<String, String>,
    }
    let json = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(token)
        .map_err(|_| StoreError::InvalidPageToken)?;
    let token: Token = serde_json::from_slice(&json).map_err(|_| StoreError::InvalidPageToken)?;
    let valid = token.listing == listing
        && token
            .key
            .values()
            .all(|value| !value.is_empty() && value.len() <= 256)
        && valid_key(&token.key);
    if !valid {
        return Err(StoreError::InvalidPageToken);
    }
    Ok(token
        .key
        .into_iter()
        .map(|(name, value)| (name, AttributeValue::S(value)))
        .collect())
}
