//! Subscription criteria in the NEMS grammar: what `Criteria::parse` accepts
//! and refuses (and which component it blames), the canonical form, the age
//! arithmetic and the filters dispatch applies.

use std::collections::BTreeSet;

use hub::criteria::{
    AgeRange, CRITERIA_NHS_NUMBER_SYSTEM, Criteria, GpRegistration, MAX_TAG_LENGTH, PatientAtEvent,
    RuleType, ServiceType, Target, age_in_years,
};
use hub::{EventType, NhsNumber};
use proptest::prelude::*;
use time::Date;
use time::macros::date;

const PREFIX: &str = "/Bundle?type=message";
const VALID_NHS_NUMBERS: [&str; 4] = ["9912003888", "9449305552", "9434765919", "9000000009"];
const ALL_RULES: [RuleType; 5] = [
    RuleType::GpGpGp,
    RuleType::ChoGpCcg,
    RuleType::ChoPostcodeCcg,
    RuleType::UhvPostcodeLacode,
    RuleType::CountryCode,
];

fn nhs(number: &str) -> NhsNumber {
    NhsNumber::parse(number).unwrap()
}

fn explicit(number: &str, events: &[EventType]) -> Criteria {
    Criteria {
        service_type: None,
        target: Target::Explicit(nhs(number)),
        events: events.iter().copied().collect(),
        age: AgeRange::default(),
        gp_registration: None,
        tag: None,
    }
}

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

fn age(greater_than: Option<u32>, less_than: Option<u32>) -> AgeRange {
    AgeRange {
        greater_than,
        less_than,
    }
}

/// The explicit subscription most cases start from.
fn base() -> String {
    format!(
        "{PREFIX}&Patient.identifier={CRITERIA_NHS_NUMBER_SYSTEM}|9912003888&MessageHeader.event=vaccinations-1"
    )
}

fn vaccinations_for(number: &str) -> Criteria {
    explicit(number, &[EventType::Vaccinations])
}

// ---------------------------------------------------------------------------
// Accepted criteria
// ---------------------------------------------------------------------------

fn accepted_cases() -> Vec<(String, Criteria)> {
    let mut cases: Vec<(String, Criteria)> = Vec::new();
    let v = EventType::Vaccinations;

    // The plain explicit form, and every valid test number.
    cases.push((base(), vaccinations_for("9912003888")));
    for number in VALID_NHS_NUMBERS {
        cases.push((
            format!(
                "{PREFIX}&Patient.identifier={CRITERIA_NHS_NUMBER_SYSTEM}|{number}&MessageHeader.event=vaccinations-1"
            ),
            vaccinations_for(number),
        ));
    }
    // URL-encoded bar, upper and lower case hex.
    cases.push((
        format!(
            "{PREFIX}&Patient.identifier=http://fhir.nhs.net/Id/nhs-number%7C9449305552&MessageHeader.event=vaccinations-1"
        ),
        vaccinations_for("9449305552"),
    ));
    cases.push((
        format!(
            "{PREFIX}&Patient.identifier=http://fhir.nhs.net/Id/nhs-number%7c9449305552&MessageHeader.event=vaccinations-1"
        ),
        vaccinations_for("9449305552"),
    ));
    // A fully percent-encoded identifier value.
    cases.push((
        format!(
            "{PREFIX}&Patient.identifier=http%3A%2F%2Ffhir.nhs.net%2FId%2Fnhs-number%7C9434765919&MessageHeader.event=vaccinations-1"
        ),
        vaccinations_for("9434765919"),
    ));
    // `&amp;` separators, as criteria copied out of XML arrive.
    cases.push((
        "/Bundle?type=message&amp;Patient.identifier=http://fhir.nhs.net/Id/nhs-number|9912003888&amp;MessageHeader.event=vaccinations-1".into(),
        vaccinations_for("9912003888"),
    ));
    // Mixed `&amp;` and `&`, with the bar encoded.
    cases.push((
        "/Bundle?type=message&amp;serviceType=GP&Patient.identifier=http://fhir.nhs.net/Id/nhs-number%7C9000000009&amp;MessageHeader.event=vaccinations-1".into(),
        Criteria {
            service_type: Some(ServiceType::Gp),
            ..vaccinations_for("9000000009")
        },
    ));
    // Components in any order; surrounding white space.
    cases.push((
        "  /Bundle?MessageHeader.event=vaccinations-1&Patient.identifier=http://fhir.nhs.net/Id/nhs-number|9912003888&type=message \n".into(),
        vaccinations_for("9912003888"),
    ));
    // Empty components are skipped.
    cases.push((
        "/Bundle?&type=message&&Patient.identifier=http://fhir.nhs.net/Id/nhs-number|9912003888&MessageHeader.event=vaccinations-1&".into(),
        vaccinations_for("9912003888"),
    ));
    // The alternative NHS number system.
    cases.push((
        format!(
            "{PREFIX}&Patient.identifier=https://fhir.nhs.uk/Id/nhs-number|9912003888&MessageHeader.event=vaccinations-1"
        ),
        vaccinations_for("9912003888"),
    ));
    // Every service type.
    for (code, service_type) in [
        ("GP", ServiceType::Gp),
        ("CHO", ServiceType::Cho),
        ("UHV", ServiceType::Uhv),
        ("EPCHR", ServiceType::Epchr),
    ] {
        cases.push((
            format!("{}&serviceType={code}", base()),
            Criteria {
                service_type: Some(service_type),
                ..vaccinations_for("9912003888")
            },
        ));
    }
    // Every event type on its own, and all of them at once (explicit 1..*).
    for &event_type in EventType::ALL {
        cases.push((
            format!(
                "{PREFIX}&Patient.identifier={CRITERIA_NHS_NUMBER_SYSTEM}|9912003888&MessageHeader.event={}",
                event_type.code()
            ),
            explicit("9912003888", &[event_type]),
        ));
    }
    let mut all = format!("{PREFIX}&Patient.identifier={CRITERIA_NHS_NUMBER_SYSTEM}|9912003888");
    for &event_type in EventType::ALL {
        all.push_str("&MessageHeader.event=");
        all.push_str(event_type.code());
    }
    cases.push((all, explicit("9912003888", EventType::ALL)));
    // Ages: one bound, both bounds, the narrowest range (one whole age).
    for (query, range) in [
        ("&Patient.age=lt5", age(None, Some(5))),
        ("&Patient.age=gt2", age(Some(2), None)),
        ("&Patient.age=gt0", age(Some(0), None)),
        ("&Patient.age=gt999", age(Some(999), None)),
        ("&Patient.age=lt007", age(None, Some(7))),
        ("&Patient.age=gt2&Patient.age=lt4", age(Some(2), Some(4))),
        ("&Patient.age=lt4&Patient.age=gt2", age(Some(2), Some(4))),
        ("&Patient.age=gt0&Patient.age=lt2", age(Some(0), Some(2))),
        ("&Patient.age=gt5&Patient.age=lt19", age(Some(5), Some(19))),
    ] {
        cases.push((
            format!("{}{query}", base()),
            Criteria {
                age: range,
                ..vaccinations_for("9912003888")
            },
        ));
    }
    for (code, registration) in [
        ("RegisteredOnly", GpRegistration::RegisteredOnly),
        ("UnregisteredOnly", GpRegistration::UnregisteredOnly),
    ] {
        cases.push((
            format!("{}&GPRegistration={code}", base()),
            Criteria {
                gp_registration: Some(registration),
                ..vaccinations_for("9912003888")
            },
        ));
    }
    // Tags: every allowed character, the longest, an encoded bar.
    let every_tag_character =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_|,".to_owned();
    let longest = "x".repeat(MAX_TAG_LENGTH);
    for (query, tag) in [
        (every_tag_character.clone(), every_tag_character.clone()),
        (longest.clone(), longest.clone()),
        ("a".into(), "a".into()),
        ("team-7%7Cwest".into(), "team-7|west".into()),
    ] {
        cases.push((
            format!("{}&tag={query}", base()),
            Criteria {
                tag: Some(tag),
                ..vaccinations_for("9912003888")
            },
        ));
    }
    // Generic: every rule type, with and without an organisation.
    for rule in ALL_RULES {
        cases.push((
            format!(
                "{PREFIX}&subscriptionRuleType={}&MessageHeader.event=vaccinations-1",
                rule.code()
            ),
            generic(rule, None, v),
        ));
        cases.push((
            format!(
                "{PREFIX}&subscriptionRuleType={}&Organization.identifier=A83627&MessageHeader.event=vaccinations-1",
                rule.code()
            ),
            generic(rule, Some("A83627"), v),
        ));
    }
    // A generic subscription with every optional component.
    cases.push((
        format!(
            "{PREFIX}&serviceType=CHO&subscriptionRuleType=CHO_POSTCODE_CCG&Organization.identifier=13T\
             &MessageHeader.event=newborn-hearing-1&Patient.age=lt2&GPRegistration=RegisteredOnly&tag=north"
        ),
        Criteria {
            service_type: Some(ServiceType::Cho),
            target: Target::Generic {
                rule: RuleType::ChoPostcodeCcg,
                organisation: Some("13T".into()),
            },
            events: BTreeSet::from([EventType::NewbornHearing]),
            age: age(None, Some(2)),
            gp_registration: Some(GpRegistration::RegisteredOnly),
            tag: Some("north".into()),
        },
    ));
    // The leading slash is optional.
    cases.push((
        "Bundle?type=message&Patient.identifier=http://fhir.nhs.net/Id/nhs-number|9912003888&MessageHeader.event=vaccinations-1".into(),
        vaccinations_for("9912003888"),
    ));
    cases
}

#[test]
fn accepts_the_valid_criteria() {
    let cases = accepted_cases();
    assert!(cases.len() > 50);
    for (text, expected) in cases {
        match Criteria::parse(&text) {
            Ok(parsed) => assert_eq!(parsed, expected, "{text}"),
            Err(error) => panic!("{text:?} was refused: {error}"),
        }
    }
}

#[test]
fn every_accepted_criteria_round_trips_through_its_canonical_form() {
    for (text, expected) in accepted_cases() {
        let canonical = expected.to_criteria_string();
        assert!(
            canonical.starts_with("/Bundle?type=message&"),
            "{canonical}"
        );
        let reparsed = Criteria::parse(&canonical)
            .unwrap_or_else(|error| panic!("canonical {canonical:?} of {text:?}: {error}"));
        assert_eq!(reparsed, expected, "{text}");
        // The canonical form is a fixed point.
        assert_eq!(reparsed.to_criteria_string(), canonical);
    }
}

#[test]
fn canonical_form_of_a_full_explicit_subscription() {
    let criteria = Criteria {
        service_type: Some(ServiceType::Uhv),
        target: Target::Explicit(nhs("9434765919")),
        events: BTreeSet::from([EventType::Vaccinations, EventType::PdsChangeOfAddress]),
        age: age(Some(1), Some(5)),
        gp_registration: Some(GpRegistration::UnregisteredOnly),
        tag: Some("a|b".into()),
    };
    assert_eq!(
        criteria.to_criteria_string(),
        "/Bundle?type=message&serviceType=UHV\
         &Patient.identifier=http://fhir.nhs.net/Id/nhs-number|9434765919\
         &MessageHeader.event=pds-change-of-address-1&MessageHeader.event=vaccinations-1\
         &Patient.age=gt1&Patient.age=lt5&GPRegistration=UnregisteredOnly&tag=a|b"
    );
}

#[test]
fn canonical_form_uses_the_criteria_nhs_number_system() {
    let parsed = Criteria::parse(&format!(
        "{PREFIX}&Patient.identifier=https://fhir.nhs.uk/Id/nhs-number%7C9912003888&MessageHeader.event=vaccinations-1"
    ))
    .unwrap();
    assert_eq!(parsed.to_criteria_string(), base());
}

// ---------------------------------------------------------------------------
// Refused criteria, and the component blamed
// ---------------------------------------------------------------------------

fn refused_cases() -> Vec<(String, &'static str)> {
    let id = format!("Patient.identifier={CRITERIA_NHS_NUMBER_SYSTEM}|9912003888");
    let vac = "MessageHeader.event=vaccinations-1";
    let b = base();
    let mut cases: Vec<(String, &'static str)> = vec![
        // The resource and the message type.
        ("".into(), "/Bundle"),
        ("type=message".into(), "/Bundle"),
        (format!("/Patient?type=message&{id}&{vac}"), "/Bundle"),
        (format!("/Bundle/type=message&{id}&{vac}"), "/Bundle"),
        (format!("/Bundle?{id}&{vac}"), "type"),
        (format!("/Bundle?type=history&{id}&{vac}"), "type"),
        (format!("/Bundle?type=Message&{id}&{vac}"), "type"),
        (format!("{b}&type=message"), "type"),
        // serviceType 0..1, four codes.
        (format!("{b}&serviceType=gp"), "serviceType"),
        (format!("{b}&serviceType=PHARMACY"), "serviceType"),
        (format!("{b}&serviceType="), "serviceType"),
        (format!("{b}&serviceType=GP&serviceType=CHO"), "serviceType"),
        (format!("{b}&serviceType=GP&serviceType=GP"), "serviceType"),
        // Patient.identifier: system, Modulus 11, shape, 1..1.
        (
            format!("{PREFIX}&Patient.identifier={CRITERIA_NHS_NUMBER_SYSTEM}|1112223330&{vac}"),
            "Patient.identifier",
        ),
        (
            format!("{PREFIX}&Patient.identifier={CRITERIA_NHS_NUMBER_SYSTEM}|9912003889&{vac}"),
            "Patient.identifier",
        ),
        (
            format!("{PREFIX}&Patient.identifier={CRITERIA_NHS_NUMBER_SYSTEM}|991200388&{vac}"),
            "Patient.identifier",
        ),
        (
            format!("{PREFIX}&Patient.identifier={CRITERIA_NHS_NUMBER_SYSTEM}|99120038888&{vac}"),
            "Patient.identifier",
        ),
        (
            format!("{PREFIX}&Patient.identifier={CRITERIA_NHS_NUMBER_SYSTEM}|991200388X&{vac}"),
            "Patient.identifier",
        ),
        (
            format!("{PREFIX}&Patient.identifier={CRITERIA_NHS_NUMBER_SYSTEM}|&{vac}"),
            "Patient.identifier",
        ),
        (
            format!("{PREFIX}&Patient.identifier={CRITERIA_NHS_NUMBER_SYSTEM}|%209912003888&{vac}"),
            "Patient.identifier",
        ),
        (
            format!("{PREFIX}&Patient.identifier=9912003888&{vac}"),
            "Patient.identifier",
        ),
        (
            format!("{PREFIX}&Patient.identifier=http://example.org/id|9912003888&{vac}"),
            "Patient.identifier",
        ),
        (
            format!("{PREFIX}&Patient.identifier=|9912003888&{vac}"),
            "Patient.identifier",
        ),
        (format!("{b}&{id}"), "Patient.identifier"),
        (
            format!("{b}&Patient.identifier={CRITERIA_NHS_NUMBER_SYSTEM}|9449305552"),
            "Patient.identifier",
        ),
        // Neither explicit nor generic.
        (format!("{PREFIX}&{vac}"), "Patient.identifier"),
        (
            format!("{PREFIX}&serviceType=GP&{vac}"),
            "Patient.identifier",
        ),
        // MessageHeader.event: explicit 1..*, generic exactly 1, catalogue codes.
        (format!("{PREFIX}&{id}"), "MessageHeader.event"),
        (
            format!("{PREFIX}&{id}&MessageHeader.event=vaccinations-2"),
            "MessageHeader.event",
        ),
        (
            format!("{PREFIX}&{id}&MessageHeader.event=Vaccinations-1"),
            "MessageHeader.event",
        ),
        (
            format!("{PREFIX}&{id}&MessageHeader.event="),
            "MessageHeader.event",
        ),
        (format!("{b}&{vac}"), "MessageHeader.event"),
        (
            format!(
                "{PREFIX}&subscriptionRuleType=GP_GP_GP&{vac}&MessageHeader.event=newborn-hearing-1"
            ),
            "MessageHeader.event",
        ),
        (
            format!("{PREFIX}&subscriptionRuleType=GP_GP_GP"),
            "MessageHeader.event",
        ),
        // Patient.age: ltN/gtN, 0..2, one of each, a consistent range.
        (format!("{b}&Patient.age=5"), "Patient.age"),
        (format!("{b}&Patient.age=eq5"), "Patient.age"),
        (format!("{b}&Patient.age=le5"), "Patient.age"),
        (format!("{b}&Patient.age=lt"), "Patient.age"),
        (format!("{b}&Patient.age=ltx"), "Patient.age"),
        (format!("{b}&Patient.age=lt-1"), "Patient.age"),
        (format!("{b}&Patient.age=lt+5"), "Patient.age"),
        (format!("{b}&Patient.age=lt5.5"), "Patient.age"),
        (format!("{b}&Patient.age=lt%205"), "Patient.age"),
        (format!("{b}&Patient.age=lt1000"), "Patient.age"),
        (format!("{b}&Patient.age=LT5"), "Patient.age"),
        (
            format!("{b}&Patient.age=lt5&Patient.age=lt6"),
            "Patient.age",
        ),
        (
            format!("{b}&Patient.age=gt5&Patient.age=gt6"),
            "Patient.age",
        ),
        (
            format!("{b}&Patient.age=gt1&Patient.age=lt9&Patient.age=lt3"),
            "Patient.age",
        ),
        (
            format!("{b}&Patient.age=gt5&Patient.age=lt6"),
            "Patient.age",
        ),
        (
            format!("{b}&Patient.age=gt5&Patient.age=lt5"),
            "Patient.age",
        ),
        (
            format!("{b}&Patient.age=gt6&Patient.age=lt5"),
            "Patient.age",
        ),
        (
            format!("{b}&Patient.age=gt0&Patient.age=lt1"),
            "Patient.age",
        ),
        (
            format!("{b}&Patient.age=lt0&Patient.age=gt0"),
            "Patient.age",
        ),
        // GPRegistration.
        (format!("{b}&GPRegistration=Registered"), "GPRegistration"),
        (
            format!("{b}&GPRegistration=registeredonly"),
            "GPRegistration",
        ),
        (format!("{b}&GPRegistration="), "GPRegistration"),
        (
            format!("{b}&GPRegistration=RegisteredOnly&GPRegistration=UnregisteredOnly"),
            "GPRegistration",
        ),
        // subscriptionRuleType: generic 1..1, explicit 0..0.
        (
            format!("{b}&subscriptionRuleType=GP_GP_GP"),
            "subscriptionRuleType",
        ),
        (
            format!("{PREFIX}&subscriptionRuleType=GP&{vac}"),
            "subscriptionRuleType",
        ),
        (
            format!("{PREFIX}&subscriptionRuleType=gp_gp_gp&{vac}"),
            "subscriptionRuleType",
        ),
        (
            format!("{PREFIX}&subscriptionRuleType=GP_GP_GP&subscriptionRuleType=GP_GP_GP&{vac}"),
            "subscriptionRuleType",
        ),
        // Organization.identifier: generic 0..1, a code.
        (
            format!("{b}&Organization.identifier=A83627"),
            "Organization.identifier",
        ),
        (
            format!("{PREFIX}&subscriptionRuleType=GP_GP_GP&Organization.identifier=&{vac}"),
            "Organization.identifier",
        ),
        (
            format!("{PREFIX}&subscriptionRuleType=GP_GP_GP&Organization.identifier=A8-3627&{vac}"),
            "Organization.identifier",
        ),
        (
            format!(
                "{PREFIX}&subscriptionRuleType=GP_GP_GP&Organization.identifier=A%2083627&{vac}"
            ),
            "Organization.identifier",
        ),
        (
            format!(
                "{PREFIX}&subscriptionRuleType=GP_GP_GP&Organization.identifier={}&{vac}",
                "A".repeat(21)
            ),
            "Organization.identifier",
        ),
        (
            format!(
                "{PREFIX}&subscriptionRuleType=GP_GP_GP&Organization.identifier=A83627&Organization.identifier=A83628&{vac}"
            ),
            "Organization.identifier",
        ),
        // tag: [A-Za-z0-9-_|,], 1 to 100.
        (format!("{b}&tag="), "tag"),
        (format!("{b}&tag={}", "x".repeat(MAX_TAG_LENGTH + 1)), "tag"),
        (format!("{b}&tag=a%20b"), "tag"),
        (format!("{b}&tag=a+b"), "tag"),
        (format!("{b}&tag=a.b"), "tag"),
        (format!("{b}&tag=a/b"), "tag"),
        (format!("{b}&tag=a;b"), "tag"),
        (format!("{b}&tag=a%26b"), "tag"),
        (format!("{b}&tag=caf%C3%A9"), "tag"),
        (format!("{b}&tag=a&tag=b"), "tag"),
        // Unknown components, and components not written name=value.
        (format!("{b}&foo=bar"), "foo"),
        (format!("{b}&patient.identifier=x"), "patient.identifier"),
        (format!("{b}&_format=json"), "_format"),
        (format!("{b}&tag"), "tag"),
        (format!("{b}&serviceType"), "serviceType"),
        // Malformed escapes, and escapes that are not UTF-8.
        (format!("{b}&tag=%"), "tag"),
        (format!("{b}&tag=a%7"), "tag"),
        (format!("{b}&tag=%ZZ"), "tag"),
        (format!("{b}&tag=%FF"), "tag"),
        (format!("{b}&tag=%C3"), "tag"),
        (
            format!("{PREFIX}&Patient.identifier={CRITERIA_NHS_NUMBER_SYSTEM}%7|9912003888&{vac}"),
            "Patient.identifier",
        ),
        (format!("{b}&serviceType=%G1"), "serviceType"),
    ];
    cases.push((format!("{b}&%ZZ=1"), "%ZZ"));
    cases
}

#[test]
fn refuses_invalid_criteria_naming_the_component_at_fault() {
    let cases = refused_cases();
    assert!(cases.len() > 80);
    for (text, component) in cases {
        match Criteria::parse(&text) {
            Ok(parsed) => panic!("{text:?} was accepted as {parsed:?}"),
            Err(error) => {
                assert_eq!(error.component, component, "{text:?}: {error}");
                assert!(!error.problem.is_empty(), "{text:?}");
                // The message names the component too.
                assert!(error.to_string().contains(component), "{text:?}: {error}");
            }
        }
    }
}

#[test]
fn an_invalid_nhs_number_is_reported_as_such() {
    let error = Criteria::parse(&format!(
        "{PREFIX}&Patient.identifier={CRITERIA_NHS_NUMBER_SYSTEM}|1112223330&MessageHeader.event=vaccinations-1"
    ))
    .unwrap_err();
    assert_eq!(error.component, "Patient.identifier");
    assert!(error.problem.contains("Modulus 11"), "{}", error.problem);
}

#[test]
fn a_malformed_escape_is_reported_as_such() {
    for text in [
        format!("{}&tag=%", base()),
        format!("{}&tag=a%7", base()),
        format!("{}&tag=%ZZ", base()),
        format!("{}&tag=%FF", base()),
    ] {
        let error = Criteria::parse(&text).unwrap_err();
        assert_eq!(error.component, "tag", "{text}");
        assert!(
            error.problem.contains("%-escape"),
            "{text}: {}",
            error.problem
        );
    }
}

#[test]
fn a_percent_escape_with_a_sign_is_malformed() {
    // RFC 3986: pct-encoded = "%" HEXDIG HEXDIG. `%+1` is not an escape, but
    // u8::from_str_radix accepts a leading '+', so it decodes to byte 0x01
    // and the tag is refused for a bad character instead.
    let error = Criteria::parse(&format!("{}&tag=%+1", base())).unwrap_err();
    assert_eq!(error.component, "tag");
    assert!(error.problem.contains("%-escape"), "{}", error.problem);
}

#[test]
fn an_empty_age_range_on_its_own_is_refused() {
    // gt5&lt6 is refused for leaving no whole age; lt0 (age < 0) leaves none
    // either and should be refused the same way, not stored as a
    // subscription that can never match.
    let error = Criteria::parse(&format!("{}&Patient.age=lt0", base())).unwrap_err();
    assert_eq!(error.component, "Patient.age");
}

// ---------------------------------------------------------------------------
// Ages
// ---------------------------------------------------------------------------

#[test]
fn age_range_bounds_are_exclusive() {
    let unbounded = AgeRange::default();
    assert!(unbounded.is_unbounded());
    assert!(unbounded.contains(0));
    assert!(unbounded.contains(u32::MAX));

    let older_than_two = age(Some(2), None);
    assert!(!older_than_two.is_unbounded());
    assert!(!older_than_two.contains(0));
    assert!(!older_than_two.contains(2));
    assert!(older_than_two.contains(3));
    assert!(older_than_two.contains(120));

    let under_five = age(None, Some(5));
    assert!(!under_five.is_unbounded());
    assert!(under_five.contains(0));
    assert!(under_five.contains(4));
    assert!(!under_five.contains(5));
    assert!(!under_five.contains(6));

    let exactly_three = age(Some(2), Some(4));
    assert_eq!(
        (0..10)
            .filter(|&a| exactly_three.contains(a))
            .collect::<Vec<_>>(),
        vec![3]
    );

    let nothing = age(None, Some(0));
    assert!((0..200).all(|a| !nothing.contains(a)));
}

#[test]
fn age_in_completed_years() {
    let cases: [(Date, Date, Option<u32>); 18] = [
        // Born today.
        (date!(2020 - 05 - 10), date!(2020 - 05 - 10), Some(0)),
        // The day before birth, and long before.
        (date!(2020 - 05 - 10), date!(2020 - 05 - 09), None),
        (date!(2020 - 05 - 10), date!(2019 - 12 - 31), None),
        (date!(2020 - 05 - 10), date!(2019 - 05 - 10), None),
        // Birthday today, and the day before the birthday.
        (date!(2015 - 05 - 10), date!(2020 - 05 - 10), Some(5)),
        (date!(2015 - 05 - 10), date!(2020 - 05 - 09), Some(4)),
        (date!(2015 - 05 - 10), date!(2020 - 05 - 11), Some(5)),
        // Month before, month after.
        (date!(2015 - 05 - 10), date!(2020 - 04 - 30), Some(4)),
        (date!(2015 - 05 - 10), date!(2020 - 06 - 01), Some(5)),
        // Across new year.
        (date!(2019 - 12 - 31), date!(2020 - 01 - 01), Some(0)),
        (date!(2019 - 12 - 31), date!(2020 - 12 - 31), Some(1)),
        (date!(2019 - 01 - 01), date!(2019 - 12 - 31), Some(0)),
        // Born on a leap day: the birthday in a common year is 1 March.
        (date!(2016 - 02 - 29), date!(2017 - 02 - 28), Some(0)),
        (date!(2016 - 02 - 29), date!(2017 - 03 - 01), Some(1)),
        (date!(2016 - 02 - 29), date!(2020 - 02 - 28), Some(3)),
        (date!(2016 - 02 - 29), date!(2020 - 02 - 29), Some(4)),
        // Born on 1 March, reckoned on a leap day.
        (date!(2015 - 03 - 01), date!(2016 - 02 - 29), Some(0)),
        (date!(2015 - 03 - 01), date!(2016 - 03 - 01), Some(1)),
    ];
    for (birth, on, expected) in cases {
        assert_eq!(age_in_years(birth, on), expected, "born {birth}, on {on}");
    }
    assert_eq!(
        age_in_years(date!(1900 - 01 - 01), date!(2024 - 01 - 01)),
        Some(124)
    );
}

fn patient(birth_date: Option<Date>, event_date: Date, has_gp: Option<bool>) -> PatientAtEvent {
    PatientAtEvent {
        birth_date,
        event_date,
        has_gp,
    }
}

fn with_filters(range: AgeRange, registration: Option<GpRegistration>) -> Criteria {
    Criteria {
        age: range,
        gp_registration: registration,
        ..vaccinations_for("9912003888")
    }
}

#[test]
fn no_filter_lets_every_event_through() {
    let criteria = with_filters(AgeRange::default(), None);
    for facts in [
        patient(None, date!(2020 - 01 - 01), None),
        patient(Some(date!(2030 - 01 - 01)), date!(2020 - 01 - 01), None),
        patient(
            Some(date!(2019 - 01 - 01)),
            date!(2020 - 01 - 01),
            Some(true),
        ),
        patient(
            Some(date!(2019 - 01 - 01)),
            date!(2020 - 01 - 01),
            Some(false),
        ),
    ] {
        assert!(criteria.filters_allow(&facts), "{facts:?}");
    }
}

#[test]
fn age_filters_at_their_edges() {
    let birth = date!(2015 - 06 - 15);
    let over_two = with_filters(age(Some(2), None), None);
    // Turns three on 2018-06-15.
    assert!(!over_two.filters_allow(&patient(Some(birth), date!(2018 - 06 - 14), None)));
    assert!(over_two.filters_allow(&patient(Some(birth), date!(2018 - 06 - 15), None)));

    let under_five = with_filters(age(None, Some(5)), None);
    // Turns five on 2020-06-15.
    assert!(under_five.filters_allow(&patient(Some(birth), date!(2020 - 06 - 14), None)));
    assert!(!under_five.filters_allow(&patient(Some(birth), date!(2020 - 06 - 15), None)));

    let three_or_four = with_filters(age(Some(2), Some(5)), None);
    assert!(!three_or_four.filters_allow(&patient(Some(birth), date!(2018 - 06 - 14), None)));
    assert!(three_or_four.filters_allow(&patient(Some(birth), date!(2018 - 06 - 15), None)));
    assert!(three_or_four.filters_allow(&patient(Some(birth), date!(2020 - 06 - 14), None)));
    assert!(!three_or_four.filters_allow(&patient(Some(birth), date!(2020 - 06 - 15), None)));

    // A leap-day baby turns one on 1 March.
    let over_zero = with_filters(age(Some(0), None), None);
    let leap = date!(2016 - 02 - 29);
    assert!(!over_zero.filters_allow(&patient(Some(leap), date!(2017 - 02 - 28), None)));
    assert!(over_zero.filters_allow(&patient(Some(leap), date!(2017 - 03 - 01), None)));
}

#[test]
fn an_age_filter_without_a_known_age_does_not_match() {
    for range in [
        age(Some(0), None),
        age(None, Some(200)),
        age(Some(1), Some(3)),
    ] {
        let criteria = with_filters(range, None);
        // No birth date.
        assert!(!criteria.filters_allow(&patient(None, date!(2020 - 01 - 01), Some(true))));
        // An event before the birth.
        assert!(!criteria.filters_allow(&patient(
            Some(date!(2020 - 01 - 02)),
            date!(2020 - 01 - 01),
            Some(true)
        )));
    }
    // Whereas lt200 matches a newborn on its day of birth.
    let criteria = with_filters(age(None, Some(200)), None);
    assert!(criteria.filters_allow(&patient(
        Some(date!(2020 - 01 - 01)),
        date!(2020 - 01 - 01),
        None
    )));
}

#[test]
fn gp_registration_filters() {
    let on = date!(2020 - 01 - 01);
    let registered = with_filters(AgeRange::default(), Some(GpRegistration::RegisteredOnly));
    let unregistered = with_filters(AgeRange::default(), Some(GpRegistration::UnregisteredOnly));
    assert!(registered.filters_allow(&patient(None, on, Some(true))));
    assert!(!registered.filters_allow(&patient(None, on, Some(false))));
    assert!(!registered.filters_allow(&patient(None, on, None)));
    assert!(!unregistered.filters_allow(&patient(None, on, Some(true))));
    assert!(unregistered.filters_allow(&patient(None, on, Some(false))));
    assert!(!unregistered.filters_allow(&patient(None, on, None)));
}

#[test]
fn age_and_gp_filters_must_both_pass() {
    let criteria = with_filters(age(None, Some(5)), Some(GpRegistration::RegisteredOnly));
    let birth = Some(date!(2018 - 01 - 01));
    let on = date!(2020 - 01 - 01);
    assert!(criteria.filters_allow(&patient(birth, on, Some(true))));
    assert!(!criteria.filters_allow(&patient(birth, on, Some(false))));
    assert!(!criteria.filters_allow(&patient(birth, date!(2023 - 01 - 01), Some(true))));
    assert!(!criteria.filters_allow(&patient(None, on, Some(true))));
}

// ---------------------------------------------------------------------------
// Properties
// ---------------------------------------------------------------------------

/// A valid NHS number: nine random digits and their Modulus 11 check digit.
fn nhs_number_strategy() -> impl Strategy<Value = NhsNumber> {
    proptest::array::uniform9(0u32..10).prop_filter_map("check digit would be 10", |digits| {
        let weighted: u32 = digits
            .iter()
            .zip((2..=10u32).rev())
            .map(|(d, w)| d * w)
            .sum();
        let check = match 11 - weighted % 11 {
            11 => 0,
            10 => return None,
            check => check,
        };
        let text: String = digits
            .iter()
            .chain(std::iter::once(&check))
            .map(|d| char::from_digit(*d, 10).unwrap())
            .collect();
        Some(NhsNumber::parse(&text).expect("a computed check digit is valid"))
    })
}

fn event_type_strategy() -> impl Strategy<Value = EventType> {
    proptest::sample::select(EventType::ALL.to_vec())
}

fn target_and_events_strategy() -> impl Strategy<Value = (Target, BTreeSet<EventType>)> {
    let explicit = (
        nhs_number_strategy(),
        proptest::collection::btree_set(event_type_strategy(), 1..=EventType::ALL.len()),
    )
        .prop_map(|(number, events)| (Target::Explicit(number), events));
    let generic = (
        proptest::sample::select(ALL_RULES.to_vec()),
        proptest::option::of("[A-Za-z0-9]{1,20}"),
        event_type_strategy(),
    )
        .prop_map(|(rule, organisation, event)| {
            (
                Target::Generic { rule, organisation },
                BTreeSet::from([event]),
            )
        });
    prop_oneof![explicit, generic]
}

fn age_strategy() -> impl Strategy<Value = AgeRange> {
    (
        proptest::option::of(0u32..=997),
        proptest::option::of(1u32..=999),
    )
        .prop_filter_map("a consistent range", |(over, under)| match (over, under) {
            (Some(over), Some(under)) if under <= over + 1 => None,
            _ => Some(age(over, under)),
        })
}

fn criteria_strategy() -> impl Strategy<Value = Criteria> {
    (
        proptest::option::of(proptest::sample::select(vec![
            ServiceType::Gp,
            ServiceType::Cho,
            ServiceType::Uhv,
            ServiceType::Epchr,
        ])),
        target_and_events_strategy(),
        age_strategy(),
        proptest::option::of(proptest::sample::select(vec![
            GpRegistration::RegisteredOnly,
            GpRegistration::UnregisteredOnly,
        ])),
        proptest::option::of("[A-Za-z0-9_|,-]{1,100}"),
    )
        .prop_map(
            |(service_type, (target, events), age, gp_registration, tag)| Criteria {
                service_type,
                target,
                events,
                age,
                gp_registration,
                tag,
            },
        )
}

/// The components of criteria, unordered, each as name and raw value.
fn components(criteria: &Criteria) -> Vec<(&'static str, String)> {
    let mut parts = vec![("type", "message".to_owned())];
    if let Some(service_type) = criteria.service_type {
        parts.push(("serviceType", service_type.code().to_owned()));
    }
    match &criteria.target {
        Target::Explicit(number) => parts.push((
            "Patient.identifier",
            format!("{CRITERIA_NHS_NUMBER_SYSTEM}|{number}"),
        )),
        Target::Generic { rule, organisation } => {
            parts.push(("subscriptionRuleType", rule.code().to_owned()));
            if let Some(code) = organisation {
                parts.push(("Organization.identifier", code.clone()));
            }
        }
    }
    for event in &criteria.events {
        parts.push(("MessageHeader.event", event.code().to_owned()));
    }
    if let Some(over) = criteria.age.greater_than {
        parts.push(("Patient.age", format!("gt{over}")));
    }
    if let Some(under) = criteria.age.less_than {
        parts.push(("Patient.age", format!("lt{under}")));
    }
    if let Some(registration) = criteria.gp_registration {
        parts.push(("GPRegistration", registration.code().to_owned()));
    }
    if let Some(tag) = &criteria.tag {
        parts.push(("tag", tag.clone()));
    }
    parts
}

fn percent_encode_all(text: &str) -> String {
    text.bytes().map(|byte| format!("%{byte:02X}")).collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn arbitrary_text_never_panics(text in any::<String>()) {
        let _ = Criteria::parse(&text);
    }

    #[test]
    fn arbitrary_queries_never_panic(
        query in "[A-Za-z0-9.=&%|;:/_+,\\- ]{0,200}",
        prefix in proptest::sample::select(vec!["/Bundle?", "Bundle?", "/Bundle?type=message&", ""]),
    ) {
        let text = format!("{prefix}{query}");
        if let Ok(parsed) = Criteria::parse(&text) {
            // Whatever is accepted has a canonical form that reads back alike.
            prop_assert_eq!(Criteria::parse(&parsed.to_criteria_string()), Ok(parsed));
        }
    }

    #[test]
    fn mutated_valid_criteria_never_panic(
        criteria in criteria_strategy(),
        index in any::<proptest::sample::Index>(),
        insert in "[%&=|a-z0-9\u{e9}\u{1F600}]{0,3}",
        cut in 0usize..4,
    ) {
        let mut text = criteria.to_criteria_string();
        let mut at = index.index(text.len() + 1);
        while !text.is_char_boundary(at) {
            at -= 1;
        }
        let end = (at + cut).min(text.len());
        if text.is_char_boundary(end) {
            text.replace_range(at..end, &insert);
        }
        let _ = Criteria::parse(&text);
    }

    #[test]
    fn valid_criteria_round_trip(criteria in criteria_strategy()) {
        let text = criteria.to_criteria_string();
        prop_assert_eq!(Criteria::parse(&text), Ok(criteria.clone()));
        prop_assert_eq!(Criteria::parse(&text).unwrap().to_criteria_string(), text);
    }

    #[test]
    fn component_order_and_encoding_do_not_matter(
        criteria in criteria_strategy(),
        seed in proptest::collection::vec(any::<proptest::sample::Index>(), 32),
        encode in proptest::collection::vec(any::<bool>(), 32),
        amp in any::<bool>(),
    ) {
        let mut parts = components(&criteria);
        // A deterministic shuffle driven by the generated indices.
        for (i, index) in seed.iter().enumerate().take(parts.len()) {
            let j = index.index(parts.len());
            parts.swap(i, j);
        }
        let separator = if amp { "&amp;" } else { "&" };
        let query: Vec<String> = parts
            .iter()
            .enumerate()
            .map(|(i, (name, value))| {
                let value = if encode.get(i).copied().unwrap_or(false) {
                    percent_encode_all(value)
                } else {
                    value.replace('|', "%7C")
                };
                format!("{name}={value}")
            })
            .collect();
        let text = format!("/Bundle?{}", query.join(separator));
        prop_assert_eq!(Criteria::parse(&text), Ok(criteria));
    }

    #[test]
    fn an_invalid_check_digit_is_always_refused(
        number in nhs_number_strategy(),
        wrong in 1u8..10,
    ) {
        let text = number.to_string();
        let last = text.as_bytes()[9] - b'0';
        let bad = format!("{}{}", &text[..9], (last + wrong) % 10);
        let result = Criteria::parse(&format!(
            "{PREFIX}&Patient.identifier={CRITERIA_NHS_NUMBER_SYSTEM}|{bad}&MessageHeader.event=vaccinations-1"
        ));
        prop_assert_eq!(result.map_err(|e| e.component), Err("Patient.identifier".to_owned()));
    }
}

/// The criteria examples of the NEMS subscription page
/// (pages/subscriptions/explore_create_subscription.md), written as the page
/// writes them, `&amp;` separators included.
#[test]
fn the_specifications_criteria_examples_are_accepted() {
    let explicit = "/Bundle?type=message&amp;serviceType=GP&amp;Patient.identifier=http://fhir.nhs.net/Id/nhs-number|9434765919&amp;MessageHeader.event=pds-change-of-address-1";
    let criteria = Criteria::parse(explicit).unwrap();
    assert_eq!(
        criteria.target,
        Target::Explicit(NhsNumber::parse("9434765919").unwrap())
    );
    assert_eq!(criteria.service_type, Some(ServiceType::Gp));

    let generic = "/Bundle?type=message&amp;subscriptionRuleType=CHO_POSTCODE_CCG&amp;Organization.identifier=X2458&amp;MessageHeader.event=pds-change-of-address-1&amp;tag=site123";
    let criteria = Criteria::parse(generic).unwrap();
    assert_eq!(
        criteria.target,
        Target::Generic {
            rule: RuleType::ChoPostcodeCcg,
            organisation: Some("X2458".into())
        }
    );
    assert_eq!(criteria.tag.as_deref(), Some("site123"));

    // The create request examples of the same page.
    for example in [
        "/Bundle?type=message&amp;serviceType=UHV&amp;Patient.identifier=http://fhir.nhs.net/Id/nhs-number|9434765919&amp;MessageHeader.event=pds-change-of-address-1",
        "/Bundle?type=message&amp;subscriptionRuleType=CHO_POSTCODE_CCG&amp;Organization.identifier=X2458&amp;MessageHeader.event=pds-change-of-address-1",
        "/Bundle?type=message&amp;MessageHeader.event=pds-change-of-gp-1&amp;subscriptionRuleType=COUNTRYCODE&amp;Organization.identifier=E92000001",
    ] {
        assert!(Criteria::parse(example).is_ok(), "{example}");
    }
    // A rule type the page does not list is refused, naming the component.
    let unknown = "/Bundle?type=message&amp;subscriptionRuleType=HSS&amp;Organization.identifier=A83627&amp;MessageHeader.event=pds-change-of-gp-1";
    assert_eq!(
        Criteria::parse(unknown).unwrap_err().component,
        "subscriptionRuleType"
    );
}
