//! Locating a child for generic matching: reads the reference data (the
//! keys and rules are in `crate::generic`).

use crate::generic::ChildLocation;
use crate::ports::{ReferenceData, StoreError};
use crate::reference::{Postcode, practice_code};

/// Resolves where a child is against the reference data: the areas of the
/// current and previous postcodes, and the sub-ICB locations of the current
/// and previous practices, asked in one lookup (one BatchGetItem against
/// DynamoDB). An unknown postcode or practice leaves its area None (it then
/// matches no area rule); a failed lookup is an error.
pub async fn locate<R: ReferenceData>(
    reference: &R,
    postcode: Option<&Postcode>,
    previous_postcode: Option<&Postcode>,
    practice: Option<&str>,
    previous_practice: Option<&str>,
) -> Result<ChildLocation, StoreError> {
    let postcodes: Vec<&Postcode> = [postcode, previous_postcode]
        .into_iter()
        .flatten()
        .collect();
    let practices: Vec<&str> = [practice, previous_practice]
        .into_iter()
        .flatten()
        .collect();
    let areas = reference.locate_many(&postcodes, &practices).await?;
    let area = |postcode: Option<&Postcode>| postcode.and_then(|p| areas.postcode(p).cloned());
    let icb = |practice: Option<&str>| practice.and_then(|p| areas.practice(p).map(str::to_owned));
    Ok(ChildLocation {
        postcode_area: area(postcode),
        previous_postcode_area: area(previous_postcode),
        practice: practice.map(practice_code),
        practice_icb: icb(practice),
        previous_practice: previous_practice.map(practice_code),
        previous_practice_icb: icb(previous_practice),
    })
}
