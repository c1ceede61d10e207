use serde_json::{Value, json};
use time::macros::datetime;

use super::*;
use crate::error::HubError;

const CREATED: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../events/relationships/vrs-proxy-role-created-1.json"
));
const CHANGED: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../events/relationships/vrs-proxy-role-changed-1.json"
));
const DELETED: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../events/relationships/vrs-proxy-role-deleted-1.json"
));

const NOW: OffsetDateTime = datetime!(2026-12-07 12:00 UTC);

fn read(body: &str) -> Result<RelationshipChange, HubError> {
    read_vrs_signal(body, "vrs-publisher", NOW)
}

/// The created sample, changed by `edit`.
fn edited(edit: impl FnOnce(&mut Value)) -> String {
    let mut bundle: Value = serde_json::from_str(CREATED).unwrap();
    edit(&mut bundle);
    bundle.to_string()
}

/// The element a 422 names.
fn refused_at(body: &str) -> String {
    match read(body) {
        Err(HubError::Unprocessable { expression, .. }) => expression,
        other => panic!("not a 422: {other:?}"),
    }
}

#[test]
fn the_created_sample_reads_as_an_active_mother() {
    let change = read(CREATED).unwrap();
    let relationship = &change.relationship;
    assert_eq!(relationship.child_nhs.as_string(), "9912003888");
    assert_eq!(relationship.person_nhs.as_string(), "9449305552");
    assert_eq!(relationship.relationship_type, "MTH");
    assert_eq!(
        relationship.legal_basis.as_deref(),
        Some("parental-responsibility")
    );
    assert_eq!(relationship.source, "vrs:vrs-publisher");
    assert_eq!(relationship.source_ref, "ecc32c41");
    assert_eq!(relationship.verification_level, "P9");
    assert_eq!(relationship.start.as_deref(), Some("2026-12-07"));
    assert_eq!(relationship.end, None);
    assert_eq!(relationship.status, RelationshipStatus::Active);
    assert_eq!(
        relationship.source_last_updated,
        "2026-12-07T08:59:58.000000000Z"
    );
    assert_eq!(
        relationship.by_event,
        "vrs-proxy-role-created-1/6c1e2f1a-3b7d-4c55-9a3e-5f0d2c9b7e11"
    );
    assert!(relationship.is_active(NOW));
    assert_eq!(relationship.key(), "PERSON#9449305552#vrs:vrs-publisher");
    assert_eq!(change.event_type, RelationshipEventType::Created);
    assert_eq!(change.event_source, VRS_SOURCE);
    assert_eq!(
        change.event_key(),
        "RELEVENT#uk.nhs.validated-relationships-service#6c1e2f1a-3b7d-4c55-9a3e-5f0d2c9b7e11"
    );
    assert_eq!(change.body_sha256, crate::events::sha256_hex(CREATED));
    assert_eq!(
        change.audit_detail(),
        "vrs created MTH P9 person=9449305552"
    );
}

#[test]
fn the_changed_sample_is_newer_and_p5() {
    let change = read(CHANGED).unwrap();
    assert_eq!(change.event_type, RelationshipEventType::Changed);
    assert_eq!(change.relationship.verification_level, "P5");
    assert!(
        change.relationship.source_last_updated
            > read(CREATED).unwrap().relationship.source_last_updated
    );
    assert!(change.relationship.is_active(NOW));
}

#[test]
fn the_deleted_sample_is_inactive_with_its_end() {
    let change =
        read_vrs_signal(DELETED, "vrs-publisher", datetime!(2026-12-08 09:00 UTC)).unwrap();
    assert_eq!(change.event_type, RelationshipEventType::Deleted);
    assert_eq!(change.relationship.status, RelationshipStatus::Inactive);
    assert_eq!(change.relationship.end.as_deref(), Some("2026-12-08"));
    assert!(
        !change
            .relationship
            .is_active(datetime!(2026-12-08 09:00 UTC))
    );
}

#[test]
fn a_deletion_of_an_active_consent_without_an_end_ends_when_last_updated() {
    let body = edited(|bundle| {
        bundle["entry"][0]["resource"]["parameter"][3]["part"][0]["valueString"] =
            json!("vrs-proxy-role-deleted-1");
    });
    let relationship = read(&body).unwrap().relationship;
    assert_eq!(relationship.status, RelationshipStatus::Inactive);
    assert_eq!(relationship.end.as_deref(), Some("2026-12-07T08:59:58Z"));
    assert!(!relationship.is_active(NOW));
}

#[test]
fn a_consent_not_active_or_past_its_end_is_inactive() {
    let suspended = edited(|bundle| bundle["entry"][1]["resource"]["status"] = json!("inactive"));
    assert_eq!(
        read(&suspended).unwrap().relationship.status,
        RelationshipStatus::Inactive
    );
    let ended = edited(|bundle| {
        bundle["entry"][1]["resource"]["provision"]["period"]["end"] = json!("2026-12-07T11:00:00Z")
    });
    let relationship = read(&ended).unwrap().relationship;
    assert_eq!(relationship.status, RelationshipStatus::Inactive);
    assert_eq!(relationship.end.as_deref(), Some("2026-12-07T11:00:00Z"));
    // An end still to come keeps it active until then: a date ends with its day.
    let ending = edited(|bundle| {
        bundle["entry"][1]["resource"]["provision"]["period"]["end"] = json!("2026-12-07")
    });
    let relationship = read(&ending).unwrap().relationship;
    assert_eq!(relationship.status, RelationshipStatus::Active);
    assert!(relationship.is_active(datetime!(2026-12-07 23:59 UTC)));
    assert!(!relationship.is_active(datetime!(2026-12-08 00:00 UTC)));
}

#[test]
fn the_subject_must_be_the_consents_patient() {
    let body = edited(|bundle| {
        bundle["entry"][0]["resource"]["parameter"][3]["part"][2]["valueReference"]["identifier"]
            ["value"] = json!("9434765919");
    });
    assert_eq!(refused_at(&body), "Consent.patient");
}

#[test]
fn nhs_numbers_must_pass_modulus_11() {
    let body = edited(|bundle| {
        bundle["entry"][1]["resource"]["patient"]["identifier"]["value"] = json!("9912003889");
    });
    assert_eq!(refused_at(&body), "Consent.patient.identifier.value");
    let body = edited(|bundle| {
        bundle["entry"][1]["resource"]["performer"][0]["identifier"]["value"] = json!("9449305553");
    });
    assert_eq!(refused_at(&body), "Consent.performer[0].identifier.value");
}

#[test]
fn the_performer_is_one_person_and_not_the_child() {
    let body = edited(|bundle| {
        bundle["entry"][1]["resource"]["performer"][0]["identifier"]["value"] = json!("9912003888");
    });
    assert_eq!(refused_at(&body), "Consent.performer[0]");
    let body = edited(|bundle| {
        let performer = bundle["entry"][1]["resource"]["performer"][0].clone();
        bundle["entry"][1]["resource"]["performer"] = json!([performer.clone(), performer]);
    });
    assert_eq!(refused_at(&body), "Consent.performer");
}

#[test]
fn the_event_type_must_be_a_relationship_event() {
    let body = edited(|bundle| {
        bundle["entry"][0]["resource"]["parameter"][3]["part"][0]["valueString"] =
            json!("pds-change-of-gp-1");
    });
    assert_eq!(
        refused_at(&body),
        "Parameters.parameter.where(name='additional-context').part.where(name='event-type')"
    );
}

#[test]
fn consent_meta_last_updated_is_required() {
    let body = edited(|bundle| {
        bundle["entry"][1]["resource"]["meta"] = json!({"versionId": "1"});
    });
    assert_eq!(refused_at(&body), "Consent.meta.lastUpdated");
    let body = edited(|bundle| {
        bundle["entry"][1]["resource"]["meta"]["lastUpdated"] = json!("2026-12-07");
    });
    assert_eq!(refused_at(&body), "Consent.meta.lastUpdated");
}

#[test]
fn repeated_singletons_are_refused() {
    // Consent.patient as an array: one reader might take the first, another the last.
    let body = edited(|bundle| {
        let patient = bundle["entry"][1]["resource"]["patient"].clone();
        bundle["entry"][1]["resource"]["patient"] = json!([patient.clone(), patient]);
    });
    assert_eq!(refused_at(&body), "Consent.patient");
    let body = edited(|bundle| {
        let context = bundle["entry"][0]["resource"]["parameter"][3].clone();
        bundle["entry"][0]["resource"]["parameter"]
            .as_array_mut()
            .unwrap()
            .push(context);
    });
    assert_eq!(
        refused_at(&body),
        "Parameters.parameter.where(name='additional-context')"
    );
    // Two different relationship codes.
    let body = edited(|bundle| {
        bundle["entry"][2]["resource"]["relationship"][0]["coding"]
            .as_array_mut()
            .unwrap()
            .push(json!({"system": "http://terminology.hl7.org/CodeSystem/v3-RoleCode", "code": "FTH"}));
    });
    assert_eq!(refused_at(&body), "RelatedPerson.relationship");
    // A key given twice is refused by the JSON reader itself: 400.
    let twice = CREATED.replacen(
        "\"status\": \"active\"",
        "\"status\": \"active\", \"status\": \"inactive\"",
        1,
    );
    assert_ne!(twice, CREATED);
    assert!(matches!(read(&twice), Err(HubError::BadRequest { .. })));
}

#[test]
fn the_focus_must_be_the_consent() {
    let body = edited(|bundle| bundle["entry"][1]["fullUrl"] = json!("urn:uuid:other"));
    assert_eq!(
        refused_at(&body),
        "Parameters.parameter.where(name='notification-event').part.where(name='focus')"
    );
}

#[test]
fn the_entries_are_parameters_consent_related_person_and_patient() {
    let body = edited(|bundle| {
        bundle["entry"].as_array_mut().unwrap().truncate(2);
    });
    assert_eq!(refused_at(&body), "Bundle.entry");
    let body = edited(|bundle| bundle["entry"].as_array_mut().unwrap().swap(1, 2));
    assert_eq!(refused_at(&body), "Bundle.entry[1].resource");
    let body = edited(|bundle| bundle["type"] = json!("message"));
    assert_eq!(refused_at(&body), "Bundle.type");
    // Without the proxy's Patient, the level is none.
    let body = edited(|bundle| {
        bundle["entry"].as_array_mut().unwrap().truncate(3);
    });
    assert_eq!(read(&body).unwrap().relationship.verification_level, "none");
}

#[test]
fn the_related_person_and_patient_must_be_the_performer() {
    let body = edited(|bundle| {
        bundle["entry"][2]["resource"]["identifier"][0]["value"] = json!("9434765919");
    });
    assert_eq!(refused_at(&body), "RelatedPerson.identifier");
    let body = edited(|bundle| {
        bundle["entry"][3]["resource"]["identifier"][0]["value"] = json!("9434765919");
    });
    assert_eq!(refused_at(&body), "Patient.identifier");
    let body = edited(|bundle| {
        bundle["entry"][3]["resource"]["meta"]["security"][0]["code"] = json!("P7");
    });
    assert_eq!(refused_at(&body), "Patient.meta.security.code");
}

#[test]
fn not_json_is_a_bad_request() {
    assert!(matches!(read("{"), Err(HubError::BadRequest { .. })));
    assert_eq!(refused_at(r#"{"resourceType": "Patient"}"#), "Bundle");
}

#[test]
fn sortable_instants_order_as_their_moments() {
    let whole = sortable_instant(datetime!(2026-12-07 08:59:58 +01:00));
    let half = sortable_instant(datetime!(2026-12-07 07:59:58.5 UTC));
    assert_eq!(whole, "2026-12-07T07:59:58.000000000Z");
    assert!(whole < half);
}
