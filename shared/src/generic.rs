//! Generic subscriptions: matching a subscription that selects children by
//! practice or area (`subscriptionRuleType` + `Organization.identifier`)
//! against where an event places its child.
//!
//! | Rule | Matches when the organisation is |
//! |---|---|
//! | `GP_GP_GP` | the child's GP practice (ODS code) |
//! | `CHO_GP_CCG` | the sub-ICB location of the child's practice (`epraccur.csv` commissioner) |
//! | `CHO_POSTCODE_CCG` | the sub-ICB location of the child's postcode (ONSPD `sicbl`) |
//! | `UHV_POSTCODE_LACODE` | the local authority of the child's postcode (ONSPD `oslaua`) |
//! | `COUNTRYCODE` | the country of the child's postcode (ONSPD `ctry`) |
//!
//! A move concerns both places: a change of address matches the postcode
//! rules of the old and the new area, a change of GP the practice rules of
//! both practices. Any other event is about the child where they are now,
//! and a previous place in its location is ignored.
//!
//! A generic subscription without `Organization.identifier` matches
//! nothing. The alternatives (every child in the country; the subscriber's
//! own ODS code, which is a practice code and no area's) would either
//! deliver far more than anyone asked for or guess; a subscription that
//! receives nothing is noticed and fixed, an over-wide one is a disclosure.
//!
//! Codes are compared without regard to case (ODS and ONS codes are upper
//! case; a subscriber may have typed `a83627`). Sub-ICB locations are ODS
//! codes for both CCG rules (`15F`), as in `epraccur.csv` and the NEMS
//! criteria examples (`13T`): the ONSPD's ONS codes are translated when the
//! reference data is loaded (see [`crate::reference`]).
//!
//! Dispatch finds candidates with keyed reads, never a scan: an event reads
//! the keys [`match_keys`] gives (at most two places × five rules), and a
//! subscription is stored under [`subscription_key`]. A subscription matches
//! an event exactly when its key is among the event's keys; the property
//! test in `tests/generic.rs` checks this against [`matches`].

use std::collections::BTreeSet;

use crate::catalogue::EventType;
use crate::criteria::{Criteria, RuleType, Target};
use crate::reference::PostcodeArea;

/// Every rule type, in the order keys are listed.
pub const RULE_TYPES: [RuleType; 5] = [
    RuleType::GpGpGp,
    RuleType::ChoGpCcg,
    RuleType::ChoPostcodeCcg,
    RuleType::UhvPostcodeLacode,
    RuleType::CountryCode,
];

/// The prefix of generic match keys, beside `EXPLICIT#` of explicit ones.
pub const GENERIC_KEY_PREFIX: &str = "GENERIC";

/// Where an event places its child, resolved against the reference data.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ChildLocation {
    pub postcode_area: Option<PostcodeArea>,
    /// The area left, for a change of address.
    pub previous_postcode_area: Option<PostcodeArea>,
    /// The GP practice's ODS code.
    pub practice: Option<String>,
    /// The practice's sub-ICB location.
    pub practice_icb: Option<String>,
    /// The practice left, for a change of GP.
    pub previous_practice: Option<String>,
    pub previous_practice_icb: Option<String>,
}

/// Whether a rule reads the child's postcode (else their practice).
fn is_postcode_rule(rule: RuleType) -> bool {
    matches!(
        rule,
        RuleType::ChoPostcodeCcg | RuleType::UhvPostcodeLacode | RuleType::CountryCode
    )
}

fn area_code(area: Option<&PostcodeArea>, rule: RuleType) -> Option<&str> {
    let area = area?;
    match rule {
        RuleType::ChoPostcodeCcg => area.icb_sub_location.as_deref(),
        RuleType::UhvPostcodeLacode => Some(&area.local_authority),
        RuleType::CountryCode => Some(&area.country),
        RuleType::GpGpGp | RuleType::ChoGpCcg => None,
    }
}

/// The code a rule compares the organisation with where the child is now
/// (the location's current place).
pub fn code_at(location: &ChildLocation, rule: RuleType) -> Option<&str> {
    match rule {
        RuleType::GpGpGp => location.practice.as_deref(),
        RuleType::ChoGpCcg => location.practice_icb.as_deref(),
        _ => area_code(location.postcode_area.as_ref(), rule),
    }
}

/// The place a location says the child was before the event: the place a
/// move left, else where the child is.
pub fn before_event(location: &ChildLocation) -> ChildLocation {
    ChildLocation {
        postcode_area: location
            .previous_postcode_area
            .clone()
            .or_else(|| location.postcode_area.clone()),
        previous_postcode_area: None,
        practice: location
            .previous_practice
            .clone()
            .or_else(|| location.practice.clone()),
        practice_icb: location
            .previous_practice_icb
            .clone()
            .or_else(|| location.practice_icb.clone()),
        previous_practice: None,
        previous_practice_icb: None,
    }
}

/// Where a location says the child is once the event is recorded.
pub fn after_event(location: &ChildLocation) -> ChildLocation {
    ChildLocation {
        previous_postcode_area: None,
        previous_practice: None,
        previous_practice_icb: None,
        ..location.clone()
    }
}

/// The codes a rule compares the organisation with, for this event: the
/// current place's, and the previous place's when the event is the move.
fn codes(location: &ChildLocation, rule: RuleType, event_type: EventType) -> [Option<&str>; 2] {
    let current = code_at(location, rule);
    let previous = match rule {
        RuleType::GpGpGp if event_type == EventType::PdsChangeOfGp => {
            location.previous_practice.as_deref()
        }
        RuleType::ChoGpCcg if event_type == EventType::PdsChangeOfGp => {
            location.previous_practice_icb.as_deref()
        }
        _ if is_postcode_rule(rule) && event_type == EventType::PdsChangeOfAddress => {
            area_code(location.previous_postcode_area.as_ref(), rule)
        }
        _ => None,
    };
    [current, previous]
}

/// A code a key can be made of: the shape `Organization.identifier` accepts
/// (1 to 20 letters and digits). Anything else (a stray `#`, a space) can
/// match no subscription and would make keys ambiguous.
fn is_code(code: &str) -> bool {
    (1..=20).contains(&code.len()) && code.bytes().all(|b| b.is_ascii_alphanumeric())
}

/// The one event type and the organisation of a generic subscription that
/// can match anything.
fn generic_parts(criteria: &Criteria) -> Option<(RuleType, &str, EventType)> {
    let Target::Generic {
        rule,
        organisation: Some(organisation),
    } = &criteria.target
    else {
        return None;
    };
    let mut events = criteria.events.iter();
    let (Some(event_type), None) = (events.next(), events.next()) else {
        // The grammar gives a generic subscription exactly one event type.
        return None;
    };
    is_code(organisation).then_some((*rule, organisation.as_str(), *event_type))
}

/// Whether a generic subscription selects the child of an event of this
/// type at this location. Only the area rule is decided here; the
/// subscription's end, its age and GP-registration filters and the
/// patient's sensitivity are checked by dispatch as for explicit ones.
pub fn matches(criteria: &Criteria, location: &ChildLocation, event_type: EventType) -> bool {
    let Some((rule, organisation, wanted)) = generic_parts(criteria) else {
        return false;
    };
    wanted == event_type
        && codes(location, rule, event_type)
            .into_iter()
            .flatten()
            .any(|code| is_code(code) && code.eq_ignore_ascii_case(organisation))
}

fn key(rule: RuleType, code: &str, event_type: EventType) -> String {
    format!(
        "{GENERIC_KEY_PREFIX}#{}#{}#{event_type}",
        rule.code(),
        code.to_ascii_uppercase()
    )
}

/// The key a generic subscription is stored under, e.g.
/// `GENERIC#GP_GP_GP#A83627#vaccinations-1`; None for one that can match
/// nothing (no organisation, not exactly one event type, not generic).
pub fn subscription_key(criteria: &Criteria) -> Option<String> {
    generic_parts(criteria)
        .map(|(rule, organisation, event_type)| key(rule, organisation, event_type))
}

/// The keys under which the generic subscriptions an event can match are
/// stored: one per rule and place, at most 2 × 5 whatever the number of
/// subscriptions, sorted and without repeats.
pub fn match_keys(location: &ChildLocation, event_type: EventType) -> Vec<String> {
    let keys: BTreeSet<String> = RULE_TYPES
        .into_iter()
        .flat_map(|rule| {
            codes(location, rule, event_type)
                .into_iter()
                .flatten()
                .filter(|code| is_code(code))
                .map(move |code| key(rule, code, event_type))
        })
        .collect();
    keys.into_iter().collect()
}
