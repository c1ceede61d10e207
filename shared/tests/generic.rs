//! Generic subscriptions: every rule type matching and not matching, both
//! places of a move, an absent organisation, and the property that a
//! subscription matches an event exactly when its store key is among the
//! event's match keys.

use std::collections::BTreeSet;
use std::io::BufReader;
use std::path::PathBuf;

use hub::EventType;
use hub::NhsNumber;
use hub::app::generic::locate;
use hub::criteria::{AgeRange, Criteria, RuleType, Target};
use hub::generic::{ChildLocation, RULE_TYPES, match_keys, matches, subscription_key};
use hub::memory::MemoryReferenceData;
use hub::reference::{Postcode, PostcodeArea};
use proptest::prelude::*;

const VACCINATIONS: EventType = EventType::Vaccinations;
const MOVE: EventType = EventType::PdsChangeOfAddress;
const GP_CHANGE: EventType = EventType::PdsChangeOfGp;

fn generic(rule: RuleType, organisation: Option<&str>, event: EventType) -> Criteria {
    Criteria {
        service_type: None,
        target: Target::Generic {
            rule,
            organisation: organisation.map(str::to_owned),
        },
        events: BTreeSet::from([event]),
        age: AgeRange::default(),
        gp_registration: None,
        tag: None,
    }
}

/// Sub-ICB locations are ODS codes, as the loader translates them.
fn area(local_authority: &str, icb_sub_location: &str, country: &str) -> PostcodeArea {
    PostcodeArea {
        local_authority: local_authority.into(),
        icb_sub_location: Some(icb_sub_location.into()),
        country: country.into(),
    }
}

fn leeds() -> PostcodeArea {
    area("E08000035", "15F", "E92000001")
}

fn kirklees() -> PostcodeArea {
    area("E08000034", "X2C4Y", "E92000001")
}

/// Outside England a postcode has no sub-ICB location.
fn cardiff() -> PostcodeArea {
    PostcodeArea {
        icb_sub_location: None,
        ..area("W06000015", "", "W92000004")
    }
}

/// A child in Leeds, registered at Shadwell (B86056, sub-ICB location 15F).
fn in_leeds() -> ChildLocation {
    ChildLocation {
        postcode_area: Some(leeds()),
        practice: Some("B86056".into()),
        practice_icb: Some("15F".into()),
        ..ChildLocation::default()
    }
}

/// The child of the NEMS change-of-address and change-of-GP examples: moved
/// from Kirklees (Liversedge, B85612, X2C4Y) to Leeds (Shadwell, B86056, 15F).
fn moved_to_leeds() -> ChildLocation {
    ChildLocation {
        previous_postcode_area: Some(kirklees()),
        previous_practice: Some("B85612".into()),
        previous_practice_icb: Some("X2C4Y".into()),
        ..in_leeds()
    }
}

fn check(rule: RuleType, organisation: &str, location: &ChildLocation, event: EventType) -> bool {
    let criteria = generic(rule, Some(organisation), event);
    let matched = matches(&criteria, location, event);
    // Every case below also checks the key equivalence by example.
    let key = subscription_key(&criteria).unwrap();
    assert_eq!(matched, match_keys(location, event).contains(&key), "{key}");
    matched
}

// --- Each rule type -------------------------------------------------------------

#[test]
fn gp_gp_gp_matches_the_practice() {
    assert!(check(RuleType::GpGpGp, "B86056", &in_leeds(), VACCINATIONS));
    assert!(!check(
        RuleType::GpGpGp,
        "A83627",
        &in_leeds(),
        VACCINATIONS
    ));
    // A practice code is not an area code, nor the practice's ICB.
    assert!(!check(RuleType::GpGpGp, "15F", &in_leeds(), VACCINATIONS));
    let unregistered = ChildLocation {
        practice: None,
        practice_icb: None,
        ..in_leeds()
    };
    assert!(!check(
        RuleType::GpGpGp,
        "B86056",
        &unregistered,
        VACCINATIONS
    ));
}

#[test]
fn cho_gp_ccg_matches_the_practice_s_sub_icb_location() {
    assert!(check(RuleType::ChoGpCcg, "15F", &in_leeds(), VACCINATIONS));
    assert!(!check(
        RuleType::ChoGpCcg,
        "X2C4Y",
        &in_leeds(),
        VACCINATIONS
    ));
    // The practice's area, not the postcode's.
    let moved_away = ChildLocation {
        postcode_area: Some(kirklees()),
        ..in_leeds()
    };
    assert!(!check(
        RuleType::ChoGpCcg,
        "X2C4Y",
        &moved_away,
        VACCINATIONS
    ));
    assert!(!check(
        RuleType::ChoGpCcg,
        "B86056",
        &in_leeds(),
        VACCINATIONS
    ));
}

#[test]
fn cho_postcode_ccg_matches_the_postcode_s_sub_icb_location() {
    assert!(check(
        RuleType::ChoPostcodeCcg,
        "15F",
        &in_leeds(),
        VACCINATIONS
    ));
    assert!(!check(
        RuleType::ChoPostcodeCcg,
        "X2C4Y",
        &in_leeds(),
        VACCINATIONS
    ));
    // The postcode's area, not the practice's; nor the ONSPD's ONS code.
    let registered_elsewhere = ChildLocation {
        practice_icb: Some("X2C4Y".into()),
        ..in_leeds()
    };
    assert!(!check(
        RuleType::ChoPostcodeCcg,
        "X2C4Y",
        &registered_elsewhere,
        VACCINATIONS
    ));
    assert!(!check(
        RuleType::ChoPostcodeCcg,
        "E38000225",
        &in_leeds(),
        VACCINATIONS
    ));
    let no_postcode = ChildLocation {
        postcode_area: None,
        ..in_leeds()
    };
    assert!(!check(
        RuleType::ChoPostcodeCcg,
        "15F",
        &no_postcode,
        VACCINATIONS
    ));
}

#[test]
fn uhv_postcode_lacode_matches_the_postcode_s_local_authority() {
    assert!(check(
        RuleType::UhvPostcodeLacode,
        "E08000035",
        &in_leeds(),
        VACCINATIONS
    ));
    assert!(!check(
        RuleType::UhvPostcodeLacode,
        "E08000034",
        &in_leeds(),
        VACCINATIONS
    ));
    assert!(!check(
        RuleType::UhvPostcodeLacode,
        "E92000001",
        &in_leeds(),
        VACCINATIONS
    ));
}

#[test]
fn countrycode_matches_the_postcode_s_country() {
    assert!(check(
        RuleType::CountryCode,
        "E92000001",
        &in_leeds(),
        VACCINATIONS
    ));
    assert!(!check(
        RuleType::CountryCode,
        "W92000004",
        &in_leeds(),
        VACCINATIONS
    ));
    let in_cardiff = ChildLocation {
        postcode_area: Some(cardiff()),
        ..ChildLocation::default()
    };
    assert!(check(
        RuleType::CountryCode,
        "W92000004",
        &in_cardiff,
        VACCINATIONS
    ));
    assert!(!check(
        RuleType::CountryCode,
        "E92000001",
        &in_cardiff,
        VACCINATIONS
    ));
    for (country, _) in hub::reference::COUNTRY_CODES {
        let somewhere = ChildLocation {
            postcode_area: Some(area("X99999999", "X99999999", country)),
            ..ChildLocation::default()
        };
        assert!(check(
            RuleType::CountryCode,
            country,
            &somewhere,
            VACCINATIONS
        ));
    }
}

#[test]
fn codes_are_compared_without_regard_to_case() {
    assert!(check(RuleType::GpGpGp, "b86056", &in_leeds(), VACCINATIONS));
    assert!(check(RuleType::ChoGpCcg, "15f", &in_leeds(), VACCINATIONS));
    assert_eq!(
        subscription_key(&generic(RuleType::GpGpGp, Some("b86056"), VACCINATIONS)).unwrap(),
        "GENERIC#GP_GP_GP#B86056#vaccinations-1"
    );
}

#[test]
fn a_subscription_for_another_event_type_does_not_match() {
    let criteria = generic(RuleType::GpGpGp, Some("B86056"), VACCINATIONS);
    assert!(matches(&criteria, &in_leeds(), VACCINATIONS));
    assert!(!matches(&criteria, &in_leeds(), EventType::NewbornHearing));
}

// --- Moves --------------------------------------------------------------------

#[test]
fn a_change_of_address_matches_the_old_and_the_new_area() {
    let location = moved_to_leeds();
    for (rule, new, old) in [
        (RuleType::ChoPostcodeCcg, "15F", "X2C4Y"),
        (RuleType::UhvPostcodeLacode, "E08000035", "E08000034"),
    ] {
        assert!(check(rule, new, &location, MOVE), "{rule:?} new");
        assert!(check(rule, old, &location, MOVE), "{rule:?} old");
        assert!(!check(rule, "E99999999", &location, MOVE));
    }
    // The practice did not change with the address: the old one is not told.
    assert!(check(RuleType::GpGpGp, "B86056", &location, MOVE));
    assert!(!check(RuleType::GpGpGp, "B85612", &location, MOVE));
}

#[test]
fn a_move_between_countries_matches_both_countries() {
    let location = ChildLocation {
        postcode_area: Some(leeds()),
        previous_postcode_area: Some(cardiff()),
        ..ChildLocation::default()
    };
    assert!(check(RuleType::CountryCode, "E92000001", &location, MOVE));
    assert!(check(RuleType::CountryCode, "W92000004", &location, MOVE));
}

#[test]
fn a_change_of_gp_matches_both_practices() {
    let location = moved_to_leeds();
    assert!(check(RuleType::GpGpGp, "B86056", &location, GP_CHANGE));
    assert!(check(RuleType::GpGpGp, "B85612", &location, GP_CHANGE));
    assert!(check(RuleType::ChoGpCcg, "15F", &location, GP_CHANGE));
    assert!(check(RuleType::ChoGpCcg, "X2C4Y", &location, GP_CHANGE));
    // The address did not change with the GP.
    assert!(!check(
        RuleType::ChoPostcodeCcg,
        "X2C4Y",
        &location,
        GP_CHANGE
    ));
}

#[test]
fn any_other_event_is_about_the_child_where_they_are_now() {
    let location = moved_to_leeds();
    assert!(check(RuleType::GpGpGp, "B86056", &location, VACCINATIONS));
    assert!(!check(RuleType::GpGpGp, "B85612", &location, VACCINATIONS));
    assert!(!check(
        RuleType::ChoPostcodeCcg,
        "X2C4Y",
        &location,
        VACCINATIONS
    ));
    assert!(!check(
        RuleType::UhvPostcodeLacode,
        "E08000034",
        &location,
        VACCINATIONS
    ));
}

#[test]
fn a_move_within_one_area_gives_each_key_once() {
    let location = ChildLocation {
        postcode_area: Some(leeds()),
        previous_postcode_area: Some(leeds()),
        ..ChildLocation::default()
    };
    let keys = match_keys(&location, MOVE);
    assert_eq!(
        keys,
        [
            "GENERIC#CHO_POSTCODE_CCG#15F#pds-change-of-address-1",
            "GENERIC#COUNTRYCODE#E92000001#pds-change-of-address-1",
            "GENERIC#UHV_POSTCODE_LACODE#E08000035#pds-change-of-address-1",
        ]
    );
}

// --- Keys -------------------------------------------------------------------------

#[test]
fn an_event_reads_at_most_two_places_times_five_rules() {
    // Kirklees and Leeds are both in England: one country key for the two.
    let keys = match_keys(&moved_to_leeds(), MOVE);
    assert_eq!(keys.len(), 7);
    let mut both = moved_to_leeds();
    both.previous_postcode_area = Some(cardiff());
    // Only a change of address uses the old postcode, only a change of GP the
    // old practice: 3 postcode rules × 2 + 2 practice rules, less Cardiff's
    // sub-ICB location (there is none outside England).
    assert_eq!(match_keys(&both, MOVE).len(), 7);
    assert_eq!(match_keys(&both, GP_CHANGE).len(), 7);
    assert_eq!(match_keys(&both, VACCINATIONS).len(), 5);
    assert_eq!(
        match_keys(&ChildLocation::default(), VACCINATIONS),
        Vec::<String>::new()
    );
    assert_eq!(
        match_keys(&in_leeds(), VACCINATIONS),
        [
            "GENERIC#CHO_GP_CCG#15F#vaccinations-1",
            "GENERIC#CHO_POSTCODE_CCG#15F#vaccinations-1",
            "GENERIC#COUNTRYCODE#E92000001#vaccinations-1",
            "GENERIC#GP_GP_GP#B86056#vaccinations-1",
            "GENERIC#UHV_POSTCODE_LACODE#E08000035#vaccinations-1",
        ]
    );
}

#[test]
fn a_subscription_without_an_organisation_matches_nothing() {
    for rule in RULE_TYPES {
        let criteria = generic(rule, None, VACCINATIONS);
        assert_eq!(subscription_key(&criteria), None);
        assert!(!matches(&criteria, &in_leeds(), VACCINATIONS));
    }
}

#[test]
fn subscriptions_that_can_match_nothing_have_no_key() {
    let explicit = Criteria {
        target: Target::Explicit(NhsNumber::parse("9912003888").unwrap()),
        ..generic(RuleType::GpGpGp, Some("B86056"), VACCINATIONS)
    };
    assert_eq!(subscription_key(&explicit), None);
    assert!(!matches(&explicit, &in_leeds(), VACCINATIONS));

    let mut two_events = generic(RuleType::GpGpGp, Some("B86056"), VACCINATIONS);
    two_events.events.insert(EventType::NewbornHearing);
    assert_eq!(subscription_key(&two_events), None);
    assert!(!matches(&two_events, &in_leeds(), VACCINATIONS));

    // Codes the grammar refuses, were one built by hand: a key separator
    // would make keys ambiguous.
    for bad in ["", "B86056#vaccinations-1", "B86 056", "B86056-X"] {
        let criteria = generic(RuleType::GpGpGp, Some(bad), VACCINATIONS);
        assert_eq!(subscription_key(&criteria), None, "{bad:?}");
        assert!(!matches(&criteria, &in_leeds(), VACCINATIONS));
    }
}

#[test]
fn a_location_code_that_is_no_code_gives_no_key() {
    let location = ChildLocation {
        practice: Some("B86056#X".into()),
        practice_icb: Some(String::new()),
        ..ChildLocation::default()
    };
    assert_eq!(match_keys(&location, VACCINATIONS), Vec::<String>::new());
}

#[test]
fn the_key_of_a_parsed_subscription() {
    let criteria = Criteria::parse(
        "/Bundle?type=message&serviceType=CHO&subscriptionRuleType=CHO_POSTCODE_CCG\
         &Organization.identifier=15F&MessageHeader.event=vaccinations-1",
    )
    .unwrap();
    assert_eq!(
        subscription_key(&criteria).as_deref(),
        Some("GENERIC#CHO_POSTCODE_CCG#15F#vaccinations-1")
    );
}

// --- Resolving a location ----------------------------------------------------------

fn reference_data() -> MemoryReferenceData {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../events/reference");
    let open = |name: &str| BufReader::new(std::fs::File::open(dir.join(name)).unwrap());
    let (data, errors) = MemoryReferenceData::load(
        open("sub-icb-sample.csv"),
        open("onspd-sample.csv"),
        open("epraccur-sample.csv"),
    )
    .unwrap();
    assert_eq!(errors, []);
    data
}

#[tokio::test]
async fn the_nems_move_is_located_from_the_sample_reference_data() {
    let data = reference_data();
    let new = Postcode::parse("LS17 7DF").unwrap();
    let old = Postcode::parse("WF14 0BQ").unwrap();
    let location = locate(
        &data,
        Some(&new),
        Some(&old),
        Some("b86056"),
        Some("B85612"),
    )
    .await
    .unwrap();
    assert_eq!(
        location,
        ChildLocation {
            postcode_area: Some(leeds()),
            previous_postcode_area: Some(kirklees()),
            practice: Some("B86056".into()),
            practice_icb: Some("15F".into()),
            previous_practice: Some("B85612".into()),
            previous_practice_icb: Some("X2C4Y".into()),
        }
    );
    assert!(matches(
        &generic(RuleType::UhvPostcodeLacode, Some("E08000034"), MOVE),
        &location,
        MOVE
    ));

    // Unknown postcode and practice: no area, and so no area rule matches.
    let unknown = Postcode::parse("ZZ99 9ZZ").unwrap();
    let nowhere = locate(&data, Some(&unknown), None, Some("Z99999"), None)
        .await
        .unwrap();
    assert_eq!(nowhere.postcode_area, None);
    assert_eq!(nowhere.practice_icb, None);
    assert_eq!(
        match_keys(&nowhere, VACCINATIONS),
        ["GENERIC#GP_GP_GP#Z99999#vaccinations-1"]
    );
}

#[test]
fn locating_can_run_on_a_multi_threaded_runtime() {
    fn send<T: Send>(_: &T) {}
    let data = MemoryReferenceData::default();
    send(&locate(&data, None, None, None, None));
}

// --- The property -------------------------------------------------------------------

/// Codes drawn from one small pool for both sides, so that matches are
/// frequent; lower case and malformed ones included.
const CODES: [&str; 8] = [
    "B86056",
    "b86056",
    "15F",
    "E38000225",
    "E08000035",
    "E92000001",
    "W92000004",
    "B8#6",
];
const EVENTS: [EventType; 4] = [
    EventType::Vaccinations,
    EventType::PdsChangeOfAddress,
    EventType::PdsChangeOfGp,
    EventType::NewbornHearing,
];

fn code() -> impl Strategy<Value = Option<String>> {
    prop::option::of(prop::sample::select(CODES.to_vec()).prop_map(str::to_owned))
}

fn postcode_area() -> impl Strategy<Value = Option<PostcodeArea>> {
    prop::option::of(
        (
            prop::sample::select(CODES.to_vec()),
            prop::sample::select(CODES.to_vec()),
            prop::sample::select(CODES.to_vec()),
        )
            .prop_map(|(la, icb, country)| area(la, icb, country)),
    )
}

fn location() -> impl Strategy<Value = ChildLocation> {
    (
        postcode_area(),
        postcode_area(),
        code(),
        code(),
        code(),
        code(),
    )
        .prop_map(
            |(area, previous_area, practice, icb, previous_practice, previous_icb)| ChildLocation {
                postcode_area: area,
                previous_postcode_area: previous_area,
                practice,
                practice_icb: icb,
                previous_practice,
                previous_practice_icb: previous_icb,
            },
        )
}

fn criteria() -> impl Strategy<Value = Criteria> {
    (
        prop::sample::select(RULE_TYPES.to_vec()),
        code(),
        prop::collection::btree_set(prop::sample::select(EVENTS.to_vec()), 0..3),
        any::<bool>(),
    )
        .prop_map(|(rule, organisation, events, explicit)| Criteria {
            service_type: None,
            target: if explicit {
                Target::Explicit(NhsNumber::parse("9912003888").unwrap())
            } else {
                Target::Generic { rule, organisation }
            },
            events,
            age: AgeRange::default(),
            gp_registration: None,
            tag: None,
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn a_subscription_matches_exactly_when_its_key_is_among_the_event_s_keys(
        criteria in criteria(),
        location in location(),
        event in prop::sample::select(EVENTS.to_vec()),
    ) {
        let keys = match_keys(&location, event);
        prop_assert!(keys.len() <= 2 * RULE_TYPES.len());
        let by_key = subscription_key(&criteria).is_some_and(|key| keys.contains(&key));
        prop_assert_eq!(matches(&criteria, &location, event), by_key);
    }
}
