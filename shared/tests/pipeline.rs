//! The whole domain flow with the in-memory adapters: publishing (checks,
//! refusals, duplicates), onboarding, subscribing, and dispatch.

use hub::ports::Adapters;
use std::collections::BTreeSet;
use std::path::PathBuf;

use hub::app::dispatch::Dispatcher;
use hub::app::events::publish;
use hub::app::subscriber::onboard;
use hub::app::subscription::create_subscription;
use hub::auth::{Caller, Client, Role};
use hub::criteria::Criteria;
use hub::dispatch::{Dispatched, SUBSCRIBER_ATTRIBUTE};
use hub::events::{MAX_PAYLOAD_BYTES, PublishOutcome, Retention, StoredEvent, sha256_hex};
use hub::lambda::Answer;
use hub::memory::MemoryReferenceData;
use hub::memory::{
    MemoryAuditLog, MemoryClientStore, MemoryEventStore, MemoryPublisher, MemoryQueueProvisioner,
    MemoryRegisterStore, MemorySubscriberStore, MemorySubscriptionStore, SentMessage,
};
use hub::message::{EventMessage, MessageError, ProblemKind};
use hub::ports::{ClientStore, RelationshipStore, SubscriberStore, SubscriptionStore};
use hub::subscriber::{OdsCode, OnboardRequest, Subscriber};
use hub::subscription::{DailyLimit, Subscription, SubscriptionRequest};
use hub::{Encoding, EventType, HubError, Lifecycle, NhsNumber};
use serde_json::{Value, json};
use time::macros::datetime;
use time::{Duration, OffsetDateTime};

const FHIR_XML: &str = "application/fhir+xml";
const FHIR_JSON: &str = "application/fhir+json";
const LEGACY_XML: &str = "application/xml+fhir";

const HEADER: &str = "Bundle.entry[0].resource.ofType(MessageHeader)";
const ROUTING_URL: &str =
    "https://fhir.nhs.uk/STU3/StructureDefinition/Extension-RoutingDemographics-1";
const LIFECYCLE_URL: &str =
    "https://fhir.nhs.uk/STU3/StructureDefinition/Extension-MessageEventType-1";
const ODS_PREFIX: &str = "https://directory.spineservices.nhs.uk/STU3/Organization/";

const VACCINATION_ID: &str = "85c8a1c5-a8a1-41c9-bb99-20956fa66218";
const PATIENT: &str = "9912003888";
const OTHER_PATIENT: &str = "9449305552";

/// When the hub received the events of these tests.
const RECEIVED: OffsetDateTime = datetime!(2024-06-01 09:30:00 UTC);
/// When subscriptions are created and events dispatched.
const NOW: OffsetDateTime = datetime!(2024-06-01 12:00:00 UTC);

// ---------------------------------------------------------------------------
// Fixtures
// ---------------------------------------------------------------------------

fn events_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../events")
}

fn xml_fixture(name: &str) -> String {
    std::fs::read_to_string(events_dir().join(format!("nems/{name}.xml")))
        .unwrap_or_else(|error| panic!("events/nems/{name}.xml: {error}"))
}

fn json_fixture(name: &str) -> String {
    std::fs::read_to_string(events_dir().join(format!("nems-json/{name}.json")))
        .unwrap_or_else(|error| panic!("events/nems-json/{name}.json: {error}"))
}

/// Every example message, with the event type its name says it is.
fn all_fixtures() -> Vec<(String, EventType)> {
    let mut names: Vec<String> = std::fs::read_dir(events_dir().join("nems"))
        .unwrap()
        .filter_map(|entry| {
            let name = entry.ok()?.file_name().into_string().ok()?;
            name.strip_suffix(".xml").map(str::to_owned)
        })
        .collect();
    names.sort();
    names
        .into_iter()
        .map(|name| {
            let event_type = [
                ("BirthNotification", EventType::PdsBirthNotification),
                ("PDS-Change-Of-Address", EventType::PdsChangeOfAddress),
                ("PDS-Change-Of-GP", EventType::PdsChangeOfGp),
                ("PDS-Death-Notification", EventType::PdsDeathNotification),
                ("PDS-Record-Change", EventType::PdsRecordChange),
                ("Professional-Contacts-1", EventType::ProfessionalContacts),
                ("blood-spot-test-outcome-1", EventType::BloodSpotTestOutcome),
                ("newborn-hearing-1", EventType::NewbornHearing),
                ("nipe-outcome-1", EventType::NipeOutcome),
                ("vaccinations-1", EventType::Vaccinations),
            ]
            .into_iter()
            .find(|(prefix, _)| name.starts_with(prefix))
            .map(|(_, event_type)| event_type)
            .unwrap_or_else(|| panic!("no event type for fixture {name}"));
            (name, event_type)
        })
        .collect()
}

/// Replaces every occurrence of `from`, which must occur.
fn mutate(text: &str, from: &str, to: &str) -> String {
    assert!(text.contains(from), "the fixture does not contain {from:?}");
    text.replace(from, to)
}

fn vaccination_xml() -> String {
    xml_fixture("vaccinations-1-new")
}

fn vaccination_json() -> String {
    json_fixture("vaccinations-1-new")
}

/// The vaccination example with the patient's routing date of birth and the
/// event's timestamp set.
fn vaccination_born(birth: &str, timestamp: &str) -> String {
    let born = mutate(
        &vaccination_xml(),
        "<valueDateTime value=\"2017-10-02T12:00:00+00:00\"/>",
        &format!("<valueDateTime value=\"{birth}\"/>"),
    );
    mutate(
        &born,
        "<timestamp value=\"2017-02-14T15:00:00+00:00\"/>",
        &format!("<timestamp value=\"{timestamp}\"/>"),
    )
}

/// The vaccination example with the Patient marked with a confidentiality code.
fn vaccination_with_security(code: &str) -> String {
    let patient_profile = "<profile value=\"https://fhir.hl7.org.uk/STU3/StructureDefinition/CareConnect-Patient-1\"/>";
    mutate(
        &vaccination_xml(),
        patient_profile,
        &format!(
            "{patient_profile}<security><system value=\"http://hl7.org/fhir/v3/Confidentiality\"/>\
             <code value=\"{code}\"/></security>"
        ),
    )
}

// ---------------------------------------------------------------------------
// Publishing helpers
// ---------------------------------------------------------------------------

async fn publish_to(
    store: &MemoryEventStore,
    expected: EventType,
    content_type: Option<&str>,
    body: &[u8],
) -> Result<PublishOutcome, HubError> {
    // The media type, size and characters of a body are the Lambda layer's
    // to check (tests/tests/handlers/publish_body.rs); these bodies pass.
    let encoding = content_type
        .and_then(Encoding::from_content_type)
        .expect("a FHIR media type");
    let text = std::str::from_utf8(body).expect("UTF-8 text");
    publish(
        store,
        &hub::memory::MemoryRegisterStore::default(),
        &MemoryAuditLog::default(),
        &publisher_of(body),
        expected,
        encoding,
        text,
        RECEIVED,
        Retention::DEFAULT,
    )
    .await
}

/// A publisher registered for every event type and for the organisation the
/// body names responsible: these tests are about validation and storage;
/// the refusals of publishers are tested in `publishers_publish_only_*`.
fn publisher_of(body: &[u8]) -> Caller {
    let responsible = std::str::from_utf8(body)
        .ok()
        .and_then(|text| {
            [Encoding::Xml, Encoding::Json]
                .into_iter()
                .find_map(|encoding| EventMessage::read(text, encoding).ok())
        })
        .and_then(|message| message.responsible_ods);
    Caller {
        client_id: "test-publisher".into(),
        ods_code: OdsCode::parse("RR8").unwrap(),
        roles: BTreeSet::from([Role::Publisher]),
        subscriber_id: None,
        publish_event_types: EventType::ALL.iter().copied().collect(),
        publish_for_ods: responsible.into_iter().collect(),
        subscribe_explicit: false,
        subscribe_generic: Default::default(),
        sensitivity_authority: false,
        relationship_sources: Default::default(),
        pchr: None,
    }
}

/// Publishes into a fresh store and returns the event as stored.
async fn stored(expected: EventType, content_type: &str, body: &str) -> StoredEvent {
    let store = MemoryEventStore::default();
    let outcome = publish_to(&store, expected, Some(content_type), body.as_bytes())
        .await
        .unwrap_or_else(|error| panic!("publish refused: {error}"));
    let PublishOutcome::Accepted { event_id, .. } = outcome else {
        panic!("a fresh store cannot hold a duplicate: {outcome:?}");
    };
    store
        .by_message_id(&event_id)
        .expect("the accepted event is stored")
}

fn first_issue(error: &HubError) -> Value {
    error.outcome().to_json()["issue"][0].clone()
}

/// Whether the hub read the request and refused what it says (the Lambda
/// layer answers 422), rather than refusing it unread (400, 413, 415) or
/// for a clash (409). The statuses themselves are lambda::http_status's.
fn refused_as_unprocessable(error: &HubError) -> bool {
    matches!(
        error,
        HubError::Unprocessable { .. }
            | HubError::Criteria(_)
            | HubError::EventTypeMismatch { .. }
            | HubError::Message(MessageError::Invalid { .. })
    )
}

/// Checks a refusal's kind (unprocessable or not), Spine code and the
/// element it names (if any).
fn assert_refusal(
    error: &HubError,
    unprocessable: bool,
    spine_code: &str,
    expression: Option<&str>,
    context: &str,
) {
    assert_eq!(
        refused_as_unprocessable(error),
        unprocessable,
        "{context}: {error}"
    );
    let issue = first_issue(error);
    assert_eq!(issue["severity"], "error", "{context}");
    assert_eq!(
        issue["details"]["coding"][0]["code"], spine_code,
        "{context}: {issue}"
    );
    match expression {
        Some(expected) => {
            assert_eq!(issue["expression"], json!([expected]), "{context}: {issue}")
        }
        None => assert!(issue.get("expression").is_none(), "{context}: {issue}"),
    }
    // Both renderings carry the same issue.
    let xml = error.outcome().to_xml();
    assert!(xml.contains(spine_code), "{context}: {xml}");
}

fn routing_nhs_number_expression() -> String {
    format!("{HEADER}.extension('{ROUTING_URL}').extension('nhsNumber').valueIdentifier.value")
}

// ---------------------------------------------------------------------------
// Publishing: accepted
// ---------------------------------------------------------------------------

#[tokio::test]
async fn publishes_fhir_xml_and_stores_the_routing_data() {
    let store = MemoryEventStore::default();
    let body = vaccination_xml();
    let outcome = publish_to(
        &store,
        EventType::Vaccinations,
        Some(FHIR_XML),
        body.as_bytes(),
    )
    .await
    .unwrap();
    assert_eq!(
        outcome,
        PublishOutcome::Accepted {
            event_id: VACCINATION_ID.into(),
            nhs_number: NhsNumber::parse(PATIENT).ok(),
            sensitive: false,
            warnings: vec![],
            out_of_order: None,
        }
    );
    assert!(matches!(outcome, PublishOutcome::Accepted { .. }));
    let answer = outcome.outcome().to_json();
    assert_eq!(answer["issue"].as_array().unwrap().len(), 1);
    assert_eq!(answer["issue"][0]["severity"], "information");
    assert_eq!(
        answer["issue"][0]["details"]["coding"][0]["code"],
        "ACCEPTED"
    );

    assert_eq!(store.len(), 1);
    let event = store.by_message_id(VACCINATION_ID).unwrap();
    assert_eq!(event.event_id, VACCINATION_ID);
    assert_eq!(event.event_type, EventType::Vaccinations);
    assert_eq!(event.lifecycle, Lifecycle::New);
    assert_eq!(event.content_type, FHIR_XML);
    assert_eq!(event.payload, body);
    assert_eq!(event.payload_sha256, sha256_hex(&body));
    assert_eq!(event.payload_sha256.len(), 64);
    assert_eq!(event.nhs_number, Some(NhsNumber::parse(PATIENT).unwrap()));
    // The routing birthDateTime, not the Patient's (different) birthDate.
    assert_eq!(event.birth_date.as_deref(), Some("2017-10-02"));
    assert_eq!(event.timestamp, "2017-02-14T15:00:00Z");
    assert_eq!(event.last_updated.as_deref(), Some("2017-11-01T15:00:33Z"));
    assert_eq!(event.responsible_ods.as_deref(), Some("A83627"));
    assert_eq!(event.home_postcode.as_deref(), Some("DH1 2TF"));
    assert_eq!(event.gp_ods, None);
    assert!(!event.sensitive);
    assert_eq!(event.received_at, "2024-06-01T09:30:00Z");
}

#[tokio::test]
async fn publishes_fhir_json() {
    let store = MemoryEventStore::default();
    let body = vaccination_json();
    let outcome = publish_to(
        &store,
        EventType::Vaccinations,
        Some(FHIR_JSON),
        body.as_bytes(),
    )
    .await
    .unwrap();
    assert!(matches!(outcome, PublishOutcome::Accepted { .. }));
    let event = store.by_message_id(VACCINATION_ID).unwrap();
    assert_eq!(event.content_type, FHIR_JSON);
    assert_eq!(event.payload, body);
    // The same routing data as from the XML.
    let from_xml = stored(EventType::Vaccinations, FHIR_XML, &vaccination_xml()).await;
    assert_eq!(
        StoredEvent {
            content_type: FHIR_XML.into(),
            payload: from_xml.payload.clone(),
            payload_sha256: from_xml.payload_sha256.clone(),
            ..event
        },
        from_xml
    );
}

#[tokio::test]
async fn accepts_the_legacy_and_parameterised_content_types() {
    for (content_type, body, stored_as) in [
        (LEGACY_XML, vaccination_xml(), FHIR_XML),
        ("application/json+fhir", vaccination_json(), FHIR_JSON),
        (
            "application/fhir+xml; charset=utf-8",
            vaccination_xml(),
            FHIR_XML,
        ),
        (
            "Application/FHIR+JSON;charset=UTF-8",
            vaccination_json(),
            FHIR_JSON,
        ),
        (" application/xml+fhir ", vaccination_xml(), FHIR_XML),
    ] {
        let store = MemoryEventStore::default();
        let outcome = publish_to(
            &store,
            EventType::Vaccinations,
            Some(content_type),
            body.as_bytes(),
        )
        .await
        .unwrap_or_else(|error| panic!("{content_type}: {error}"));
        assert!(
            matches!(outcome, PublishOutcome::Accepted { .. }),
            "{content_type}"
        );
        assert_eq!(
            store.by_message_id(VACCINATION_ID).unwrap().content_type,
            stored_as,
            "{content_type}"
        );
    }
}

#[tokio::test]
async fn every_example_is_accepted_in_both_encodings() {
    let fixtures = all_fixtures();
    assert_eq!(fixtures.len(), 19);
    for (name, event_type) in fixtures {
        for (content_type, body) in [
            (FHIR_XML, xml_fixture(&name)),
            (FHIR_JSON, json_fixture(&name)),
        ] {
            // The birth notification example's mother has an invalid number.
            let body = if name == "BirthNotificationWithMother" {
                mutate(&body, "1112223330", OTHER_PATIENT)
            } else {
                body
            };
            let store = MemoryEventStore::default();
            let outcome = publish_to(&store, event_type, Some(content_type), body.as_bytes())
                .await
                .unwrap_or_else(|error| panic!("{name} as {content_type}: {error}"));
            let PublishOutcome::Accepted { event_id, .. } = &outcome else {
                panic!("{name}: {outcome:?}");
            };
            let event = store.by_message_id(event_id).unwrap();
            assert_eq!(event.event_type, event_type, "{name}");
            assert_eq!(event.payload, body, "{name}");
            assert!(
                event_type.allowed_lifecycles().contains(&event.lifecycle),
                "{name}"
            );
        }
    }
}

#[tokio::test]
async fn the_birth_notification_example_is_refused_for_the_mothers_number() {
    for (content_type, body) in [
        (FHIR_XML, xml_fixture("BirthNotificationWithMother")),
        (FHIR_JSON, json_fixture("BirthNotificationWithMother")),
    ] {
        let store = MemoryEventStore::default();
        let error = publish_to(
            &store,
            EventType::PdsBirthNotification,
            Some(content_type),
            body.as_bytes(),
        )
        .await
        .unwrap_err();
        assert_refusal(
            &error,
            true,
            "INVALID_NHS_NUMBER",
            Some(&routing_nhs_number_expression()),
            content_type,
        );
        assert!(store.is_empty());
    }
}

#[tokio::test]
async fn an_out_of_range_zone_offset_is_accepted_with_a_warning() {
    let store = MemoryEventStore::default();
    let outcome = publish_to(
        &store,
        EventType::NipeOutcome,
        Some(FHIR_XML),
        xml_fixture("nipe-outcome-1-update").as_bytes(),
    )
    .await
    .unwrap();
    let PublishOutcome::Accepted { warnings, .. } = &outcome else {
        panic!("{outcome:?}");
    };
    assert_eq!(warnings.len(), 1);
    assert_eq!(warnings[0].expression, format!("{HEADER}.timestamp"));
    let answer = outcome.outcome().to_json();
    assert_eq!(answer["issue"][1]["severity"], "warning");
    assert_eq!(
        answer["issue"][1]["expression"],
        json!([format!("{HEADER}.timestamp")])
    );
    let event = store
        .by_message_id("5d87d039-e0e7-43e6-9839-76edeeeefb99")
        .unwrap();
    assert_eq!(event.timestamp, "2017-11-01T16:02:04Z");
}

#[tokio::test]
async fn a_sensitive_patient_is_accepted_and_flagged() {
    let store = MemoryEventStore::default();
    let outcome = publish_to(
        &store,
        EventType::Vaccinations,
        Some(FHIR_XML),
        vaccination_with_security("R").as_bytes(),
    )
    .await
    .unwrap();
    assert_eq!(
        outcome,
        PublishOutcome::Accepted {
            event_id: VACCINATION_ID.into(),
            nhs_number: NhsNumber::parse(PATIENT).ok(),
            sensitive: true,
            warnings: vec![],
            out_of_order: None,
        }
    );
    let answer = outcome.outcome().to_json();
    assert_eq!(
        answer["issue"][1]["details"]["coding"][0]["code"],
        "SENSITIVE_PATIENT"
    );
    assert!(store.by_message_id(VACCINATION_ID).unwrap().sensitive);

    // A normal confidentiality code is not sensitive.
    let normal = stored(
        EventType::Vaccinations,
        FHIR_XML,
        &vaccination_with_security("N"),
    )
    .await;
    assert!(!normal.sensitive);
}

#[tokio::test]
async fn a_body_of_exactly_the_limit_is_accepted() {
    for (content_type, fixture) in [
        (FHIR_XML, vaccination_xml()),
        (FHIR_JSON, vaccination_json()),
    ] {
        let mut body = fixture;
        body.push_str(&" ".repeat(MAX_PAYLOAD_BYTES - body.len()));
        assert_eq!(body.len(), MAX_PAYLOAD_BYTES);
        let store = MemoryEventStore::default();
        let outcome = publish_to(
            &store,
            EventType::Vaccinations,
            Some(content_type),
            body.as_bytes(),
        )
        .await
        .unwrap_or_else(|error| panic!("{content_type}: {error}"));
        assert!(matches!(outcome, PublishOutcome::Accepted { .. }));
        assert_eq!(store.by_message_id(VACCINATION_ID).unwrap().payload, body);
    }
}

// ---------------------------------------------------------------------------
// Publishing: refused
// ---------------------------------------------------------------------------

#[tokio::test]
async fn refuses_a_body_that_cannot_be_read_with_400() {
    let xml = vaccination_xml();
    let json = vaccination_json();
    let truncated_xml = xml[..xml.len() / 2].to_owned();
    let truncated_json = json[..json.len() / 2].to_owned();
    for (content_type, body) in [
        (FHIR_XML, "this is not XML".to_owned()),
        (FHIR_XML, String::new()),
        (FHIR_XML, truncated_xml),
        (FHIR_XML, json.clone()),
        (FHIR_XML, xml.replace("xmlns=\"http://hl7.org/fhir\"", "")),
        (FHIR_JSON, xml.clone()),
        (FHIR_JSON, truncated_json),
        (FHIR_JSON, "[]".to_owned()),
        (FHIR_JSON, "{\"type\": \"message\"}".to_owned()),
    ] {
        let store = MemoryEventStore::default();
        let error = publish_to(
            &store,
            EventType::Vaccinations,
            Some(content_type),
            body.as_bytes(),
        )
        .await
        .unwrap_err();
        let context = format!("{content_type}: {:.40}", body);
        assert!(
            matches!(error, HubError::Message(MessageError::Unreadable(_))),
            "{context}: {error:?}"
        );
        assert_refusal(&error, false, "MESSAGE_NOT_WELL_FORMED", None, &context);
        assert!(store.is_empty());
    }
}

#[tokio::test]
async fn refuses_a_resource_that_is_not_a_bundle_with_400() {
    for (content_type, body) in [
        (
            FHIR_XML,
            "<Patient xmlns=\"http://hl7.org/fhir\"><id value=\"1\"/></Patient>",
        ),
        (FHIR_JSON, "{\"resourceType\": \"Patient\", \"id\": \"1\"}"),
        (
            FHIR_XML,
            "<MessageHeader xmlns=\"http://hl7.org/fhir\"><id value=\"85c8a1c5-a8a1-41c9-bb99-20956fa66218\"/></MessageHeader>",
        ),
    ] {
        let store = MemoryEventStore::default();
        let error = publish_to(
            &store,
            EventType::Vaccinations,
            Some(content_type),
            body.as_bytes(),
        )
        .await
        .unwrap_err();
        assert!(
            matches!(&error, HubError::Message(MessageError::NotABundle { .. })),
            "{body}: {error:?}"
        );
        assert_refusal(&error, false, "INVALID_RESOURCE", None, body);
    }
}

#[tokio::test]
async fn refuses_an_event_of_another_type_with_422() {
    let store = MemoryEventStore::default();
    let error = publish_to(
        &store,
        EventType::NewbornHearing,
        Some(FHIR_XML),
        vaccination_xml().as_bytes(),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(
            error,
            HubError::EventTypeMismatch {
                expected: EventType::NewbornHearing,
                found: EventType::Vaccinations
            }
        ),
        "{error:?}"
    );
    assert_refusal(
        &error,
        true,
        "INVALID_VALUE",
        Some(&format!("{HEADER}.event.code")),
        "mismatch",
    );
    assert!(store.is_empty());

    // An event code outside the catalogue names the same element.
    let unknown = mutate(
        &vaccination_xml(),
        "<code value=\"vaccinations-1\"/>",
        "<code value=\"vaccinations-2\"/>",
    );
    let error = publish_to(
        &store,
        EventType::Vaccinations,
        Some(FHIR_XML),
        unknown.as_bytes(),
    )
    .await
    .unwrap_err();
    assert_refusal(
        &error,
        true,
        "INVALID_VALUE",
        Some(&format!("{HEADER}.event.code")),
        "unknown code",
    );
}

/// One invalid message, as XML and JSON, and what the refusal must say.
struct Invalid {
    what: &'static str,
    xml: String,
    json: String,
    kind: ProblemKind,
    spine_code: &'static str,
    expression: String,
}

fn invalid_messages() -> Vec<Invalid> {
    let xml = vaccination_xml();
    let json = vaccination_json();
    vec![
        Invalid {
            what: "invalid routing NHS number",
            xml: mutate(&xml, PATIENT, "9912003880"),
            json: mutate(&json, PATIENT, "9912003880"),
            kind: ProblemKind::BadNhsNumber,
            spine_code: "INVALID_NHS_NUMBER",
            expression: routing_nhs_number_expression(),
        },
        Invalid {
            what: "NHS number of nine digits",
            xml: mutate(&xml, PATIENT, "991200388"),
            json: mutate(&json, PATIENT, "991200388"),
            kind: ProblemKind::BadNhsNumber,
            spine_code: "INVALID_NHS_NUMBER",
            expression: routing_nhs_number_expression(),
        },
        Invalid {
            what: "missing MessageHeader.id",
            xml: mutate(&xml, &format!("<id value=\"{VACCINATION_ID}\"/>"), ""),
            json: mutate(&json, &format!("\"id\": \"{VACCINATION_ID}\","), ""),
            kind: ProblemKind::Missing,
            spine_code: "MISSING_OR_INVALID_HEADER",
            expression: format!("{HEADER}.id"),
        },
        Invalid {
            what: "MessageHeader.id not a UUID",
            xml: mutate(
                &xml,
                &format!("<id value=\"{VACCINATION_ID}\"/>"),
                "<id value=\"message-1\"/>",
            ),
            json: mutate(
                &json,
                &format!("\"id\": \"{VACCINATION_ID}\","),
                "\"id\": \"message-1\",",
            ),
            kind: ProblemKind::BadValue,
            spine_code: "INVALID_VALUE",
            expression: format!("{HEADER}.id"),
        },
        Invalid {
            what: "missing routing demographics extension",
            xml: mutate(&xml, "Extension-RoutingDemographics-1", "Extension-Other-1"),
            json: mutate(
                &json,
                "Extension-RoutingDemographics-1",
                "Extension-Other-1",
            ),
            kind: ProblemKind::Missing,
            spine_code: "MISSING_OR_INVALID_HEADER",
            expression: format!("{HEADER}.extension('{ROUTING_URL}')"),
        },
        Invalid {
            what: "missing lifecycle extension",
            xml: mutate(&xml, LIFECYCLE_URL, "https://example.org/other"),
            json: mutate(&json, LIFECYCLE_URL, "https://example.org/other"),
            kind: ProblemKind::Missing,
            spine_code: "MISSING_OR_INVALID_HEADER",
            expression: format!("{HEADER}.extension('{LIFECYCLE_URL}')"),
        },
        Invalid {
            what: "lifecycle not allowed for the type",
            xml: mutate(&xml, "<code value=\"new\"/>", "<code value=\"cancel\"/>"),
            json: mutate(&json, "\"code\": \"new\"", "\"code\": \"cancel\""),
            kind: ProblemKind::BadValue,
            spine_code: "INVALID_VALUE",
            expression: format!("{HEADER}.extension('{LIFECYCLE_URL}')"),
        },
        Invalid {
            what: "timestamp without a zone offset",
            xml: mutate(&xml, "2017-02-14T15:00:00+00:00", "2017-02-14T15:00:00"),
            json: mutate(&json, "2017-02-14T15:00:00+00:00", "2017-02-14T15:00:00"),
            kind: ProblemKind::BadValue,
            spine_code: "INVALID_VALUE",
            expression: format!("{HEADER}.timestamp"),
        },
        Invalid {
            what: "timestamp without seconds",
            xml: mutate(&xml, "2017-02-14T15:00:00+00:00", "2017-02-14T15:00+00:00"),
            json: mutate(&json, "2017-02-14T15:00:00+00:00", "2017-02-14T15:00+00:00"),
            kind: ProblemKind::BadValue,
            spine_code: "INVALID_VALUE",
            expression: format!("{HEADER}.timestamp"),
        },
    ]
}

#[tokio::test]
async fn refuses_invalid_messages_with_422_naming_the_element() {
    for invalid in invalid_messages() {
        for (content_type, body) in [(FHIR_XML, &invalid.xml), (FHIR_JSON, &invalid.json)] {
            let context = format!("{} ({content_type})", invalid.what);
            let store = MemoryEventStore::default();
            let error = publish_to(
                &store,
                EventType::Vaccinations,
                Some(content_type),
                body.as_bytes(),
            )
            .await
            .unwrap_err();
            match &error {
                HubError::Message(MessageError::Invalid {
                    expression, kind, ..
                }) => {
                    assert_eq!(*kind, invalid.kind, "{context}");
                    assert_eq!(*expression, invalid.expression, "{context}");
                }
                other => panic!("{context}: {other:?}"),
            }
            assert_refusal(
                &error,
                true,
                invalid.spine_code,
                Some(&invalid.expression),
                &context,
            );
            assert!(store.is_empty(), "{context}");
        }
    }
}

#[tokio::test]
async fn a_repeated_message_is_a_duplicate_and_stored_once() {
    for (content_type, body) in [
        (FHIR_XML, vaccination_xml()),
        (FHIR_JSON, vaccination_json()),
    ] {
        let store = MemoryEventStore::default();
        let first = publish_to(
            &store,
            EventType::Vaccinations,
            Some(content_type),
            body.as_bytes(),
        )
        .await
        .unwrap();
        assert!(matches!(first, PublishOutcome::Accepted { .. }));
        let second = publish_to(
            &store,
            EventType::Vaccinations,
            Some(content_type),
            body.as_bytes(),
        )
        .await
        .unwrap();
        assert_eq!(
            second,
            PublishOutcome::Duplicate {
                event_id: VACCINATION_ID.into(),
                nhs_number: NhsNumber::parse(PATIENT).ok(),
            }
        );
        assert!(matches!(second, PublishOutcome::Duplicate { .. }));
        let answer = second.outcome().to_json();
        assert_eq!(answer["issue"][0]["severity"], "information");
        assert_eq!(
            answer["issue"][0]["details"]["coding"][0]["code"],
            "DUPLICATE"
        );
        assert_eq!(store.len(), 1);
        assert_eq!(
            store.by_message_id(VACCINATION_ID).unwrap().received_at,
            "2024-06-01T09:30:00Z"
        );
    }
}

#[tokio::test]
async fn the_same_id_with_another_body_is_a_409_conflict() {
    let store = MemoryEventStore::default();
    let original = vaccination_xml();
    publish_to(
        &store,
        EventType::Vaccinations,
        Some(FHIR_XML),
        original.as_bytes(),
    )
    .await
    .unwrap();
    let changed = mutate(&original, "CCJN12M", "CCJN99X");
    let error = publish_to(
        &store,
        EventType::Vaccinations,
        Some(FHIR_XML),
        changed.as_bytes(),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(&error, HubError::DuplicateConflict { message_id } if message_id == VACCINATION_ID),
        "{error:?}"
    );
    assert_refusal(
        &error,
        false,
        "DUPLICATE_REJECTED",
        Some(&format!("{HEADER}.id")),
        "conflict",
    );
    // The first body stays.
    assert_eq!(store.len(), 1);
    assert_eq!(
        store.by_message_id(VACCINATION_ID).unwrap().payload,
        original
    );

    // The same message in the other encoding is another body too.
    let error = publish_to(
        &store,
        EventType::Vaccinations,
        Some(FHIR_JSON),
        vaccination_json().as_bytes(),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(error, HubError::DuplicateConflict { .. }),
        "{error:?}"
    );
}

#[tokio::test]
async fn message_ids_are_compared_without_regard_to_case() {
    let store = MemoryEventStore::default();
    publish_to(
        &store,
        EventType::Vaccinations,
        Some(FHIR_XML),
        vaccination_xml().as_bytes(),
    )
    .await
    .unwrap();
    let upper = mutate(
        &vaccination_xml(),
        &format!("<id value=\"{VACCINATION_ID}\"/>"),
        &format!("<id value=\"{}\"/>", VACCINATION_ID.to_ascii_uppercase()),
    );
    let error = publish_to(
        &store,
        EventType::Vaccinations,
        Some(FHIR_XML),
        upper.as_bytes(),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(&error, HubError::DuplicateConflict { message_id } if message_id == VACCINATION_ID),
        "{error:?}"
    );
    assert_eq!(store.len(), 1);
}

// ---------------------------------------------------------------------------
// Onboarding and subscribing
// ---------------------------------------------------------------------------

#[derive(Default)]
struct Hub {
    subscribers: MemorySubscriberStore,
    provisioner: MemoryQueueProvisioner,
    subscriptions: MemorySubscriptionStore,
    publisher: MemoryPublisher,
    clients: MemoryClientStore,
    audit: MemoryAuditLog,
    register: MemoryRegisterStore,
    reference: MemoryReferenceData,
    relationships: hub::memory::MemoryRelationshipStore,
    /// What the subscribers' clients' registrations permit (the area basis
    /// of explicit subscriptions).
    permits: hub::basis::Permits,
}

impl Hub {
    async fn onboard(&self, ods: &str, event_types: &[EventType]) -> Subscriber {
        let codes: Vec<&str> = event_types.iter().map(|t| t.code()).collect();
        let client_id = format!("client-{}", uuid::Uuid::new_v4());
        let client = Client {
            client_id: client_id.clone(),
            ods_code: OdsCode::parse(ods).unwrap(),
            roles: BTreeSet::from([Role::Subscriber]),
            keys: Default::default(),
            enabled: true,
            publish_event_types: BTreeSet::new(),
            publish_for_ods: BTreeSet::new(),
            subscriber_id: None,
            subscribe_explicit: true,
            subscribe_generic: Default::default(),
            sensitivity_authority: false,
            relationship_sources: Default::default(),
            pchr: None,
        };
        self.clients.register(&client).await.unwrap();
        let body = json!({"clientId": client_id, "odsCode": ods, "name": format!("System of {ods}"), "eventTypes": codes});
        let request = OnboardRequest::parse(&body.to_string()).unwrap();
        onboard(
            &self.subscribers,
            &self.provisioner,
            &self.clients,
            request,
            NOW,
        )
        .await
        .unwrap()
    }

    async fn create(
        &self,
        body: &str,
        encoding: Encoding,
        now: OffsetDateTime,
    ) -> Result<Subscription, HubError> {
        let request = SubscriptionRequest::read(body, encoding, now)?;
        let ports = Adapters::new()
            .subscriptions(&self.subscriptions)
            .subscribers(&self.subscribers)
            .register(&self.register)
            .reference(&self.reference)
            .relationships(&self.relationships);
        create_subscription(&ports, request, &self.permits, DailyLimit::DEFAULT, now).await
    }

    /// Subscribes with explicit criteria, created at NOW.
    async fn subscribe(&self, subscriber: &Subscriber, criteria: &str) -> Subscription {
        self.subscribe_until(subscriber, criteria, None, NOW).await
    }

    async fn subscribe_until(
        &self,
        subscriber: &Subscriber,
        criteria: &str,
        end: Option<&str>,
        now: OffsetDateTime,
    ) -> Subscription {
        let body = subscription_json(subscriber.ods_code.as_str(), criteria, &subscriber.id, end);
        self.create(&body.to_string(), Encoding::Json, now)
            .await
            .unwrap_or_else(|error| panic!("{criteria}: {error}"))
    }

    async fn candidates(&self, patient: &str, event_type: EventType) -> Vec<Subscription> {
        self.subscriptions
            .explicit_candidates(NhsNumber::parse(patient).unwrap(), event_type)
            .await
            .unwrap()
    }

    async fn dispatch(&self, event: &StoredEvent, now: OffsetDateTime) -> Dispatched {
        let dispatcher = Dispatcher {
            ports: &Adapters::new()
                .subscriptions(&self.subscriptions)
                .publisher(&self.publisher)
                .audit(&self.audit)
                .register(&self.register)
                .reference(&self.reference)
                .relationships(&self.relationships)
                .stats(hub::memory::MemoryDeliveryStats::default())
                .events(MemoryEventStore::default())
                .embargoes(hub::memory::MemoryEmbargoStore::default()),
        };
        dispatcher.dispatch(event, now).await.unwrap()
    }
}

fn criteria_for(patient: &str, events: &[EventType], extra: &str) -> String {
    let mut text = format!(
        "/Bundle?type=message&Patient.identifier=http://fhir.nhs.net/Id/nhs-number|{patient}"
    );
    for event in events {
        text.push_str("&MessageHeader.event=");
        text.push_str(event.code());
    }
    text.push_str(extra);
    text
}

fn subscription_json(ods: &str, criteria: &str, endpoint: &str, end: Option<&str>) -> Value {
    let mut body = json!({
        "resourceType": "Subscription",
        "meta": {"profile": ["https://fhir.nhs.uk/STU3/StructureDefinition/EMS-Subscription-1"]},
        "status": "requested",
        "contact": [{"system": "url", "value": format!("{ODS_PREFIX}{ods}"), "use": "work"}],
        "reason": "Health visiting for the child",
        "criteria": criteria,
        "channel": {"type": "message", "endpoint": endpoint},
    });
    if let Some(end) = end {
        body["end"] = json!(end);
    }
    body
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('"', "&quot;")
        .replace('<', "&lt;")
}

fn subscription_xml(ods: &str, criteria: &str, endpoint: &str, end: Option<&str>) -> String {
    let end = end
        .map(|end| format!("<end value=\"{}\"/>", escape(end)))
        .unwrap_or_default();
    format!(
        "<Subscription xmlns=\"http://hl7.org/fhir\">\
           <meta><profile value=\"https://fhir.nhs.uk/STU3/StructureDefinition/EMS-Subscription-1\"/></meta>\
           <status value=\"requested\"/>\
           <contact><system value=\"url\"/><value value=\"{ODS_PREFIX}{ods}\"/><use value=\"work\"/></contact>\
           {end}\
           <reason value=\"Health visiting for the child\"/>\
           <criteria value=\"{}\"/>\
           <channel><type value=\"message\"/><endpoint value=\"{}\"/></channel>\
         </Subscription>",
        escape(criteria),
        escape(endpoint),
    )
}

#[tokio::test]
async fn onboarding_provisions_queues_and_records_the_subscriber() {
    let hub = Hub::default();
    let subscriber = hub
        .onboard(
            "A83627",
            &[EventType::Vaccinations, EventType::NewbornHearing],
        )
        .await;
    assert!(uuid_like(&subscriber.id), "{}", subscriber.id);
    assert_eq!(subscriber.ods_code, OdsCode::parse("A83627").unwrap());
    assert_eq!(subscriber.name, "System of A83627");
    assert_eq!(
        subscriber.event_types,
        BTreeSet::from([EventType::Vaccinations, EventType::NewbornHearing])
    );
    assert_eq!(subscriber.created_at, "2024-06-01T12:00:00Z");
    assert_eq!(
        subscriber.queues.queue_url,
        format!("memory://queues/{}", subscriber.id)
    );
    assert!(subscriber.may_receive(EventType::Vaccinations));
    assert!(!subscriber.may_receive(EventType::PdsChangeOfAddress));

    let provisioned = hub.provisioner.provisioned();
    assert_eq!(provisioned.len(), 1);
    assert_eq!(provisioned[0].0, subscriber.id);
    assert_eq!(
        provisioned[0].1.iter().copied().collect::<BTreeSet<_>>(),
        subscriber.event_types
    );
    assert_eq!(
        hub.subscribers.get(&subscriber.id).await.unwrap(),
        Some(subscriber.clone())
    );

    // A second subscriber is another id and another queue.
    let other = hub.onboard("B12345", &[EventType::Vaccinations]).await;
    assert_ne!(other.id, subscriber.id);
    assert_ne!(other.queues.queue_url, subscriber.queues.queue_url);
    assert_eq!(hub.provisioner.provisioned().len(), 2);
}

fn uuid_like(text: &str) -> bool {
    text.len() == 36
        && text.chars().enumerate().all(|(i, c)| {
            matches!(i, 8 | 13 | 18 | 23) == (c == '-') && (c == '-' || c.is_ascii_hexdigit())
        })
}

#[tokio::test]
async fn reads_a_subscription_request_alike_in_json_and_xml() {
    let criteria = criteria_for(
        PATIENT,
        &[EventType::Vaccinations, EventType::NewbornHearing],
        "&Patient.age=lt5&tag=team-1",
    );
    let end = "2025-01-01T00:00:00Z";
    let from_json = SubscriptionRequest::read(
        &subscription_json(
            "A83627",
            &criteria,
            "5f1e2d3c-0000-4000-8000-000000000001",
            Some(end),
        )
        .to_string(),
        Encoding::Json,
        NOW,
    )
    .unwrap();
    let from_xml = SubscriptionRequest::read(
        &subscription_xml(
            "A83627",
            &criteria,
            "5f1e2d3c-0000-4000-8000-000000000001",
            Some(end),
        ),
        Encoding::Xml,
        NOW,
    )
    .unwrap();
    assert_eq!(from_json, from_xml);
    assert_eq!(from_json.contact_ods.as_str(), "A83627");
    assert_eq!(from_json.reason, "Health visiting for the child");
    assert_eq!(from_json.end, Some(datetime!(2025-01-01 00:00:00 UTC)));
    assert_eq!(
        from_json.subscriber_id,
        "5f1e2d3c-0000-4000-8000-000000000001"
    );
    assert_eq!(from_json.criteria, Criteria::parse(&criteria).unwrap());

    // Criteria written with `&amp;` inside the XML attribute (escaped twice).
    let twice = subscription_xml(
        "A83627",
        &criteria.replace('&', "&amp;"),
        "5f1e2d3c-0000-4000-8000-000000000001",
        Some(end),
    );
    assert!(twice.contains("&amp;amp;"));
    assert_eq!(
        SubscriptionRequest::read(&twice, Encoding::Xml, NOW).unwrap(),
        from_json
    );
}

#[tokio::test]
async fn refuses_subscription_requests_that_cannot_be_read() {
    let criteria = criteria_for(PATIENT, &[EventType::Vaccinations], "");
    let good = subscription_json(
        "A83627",
        &criteria,
        "5f1e2d3c-0000-4000-8000-000000000001",
        None,
    );
    let with = |pointer: &str, value: Value| {
        let mut body = good.clone();
        *body.pointer_mut(pointer).unwrap() = value;
        body.to_string()
    };
    let plus = |key: &str, value: Value| {
        let mut body = good.clone();
        body[key] = value;
        body.to_string()
    };
    let cases: Vec<(&str, String, bool, &str)> = vec![
        ("id", plus("id", json!("abc")), true, "Subscription.id"),
        (
            "versionId",
            with("/meta", json!({"versionId": "1"})),
            true,
            "Subscription.meta.versionId",
        ),
        (
            "lastUpdated",
            with("/meta", json!({"lastUpdated": "2024-01-01T00:00:00Z"})),
            true,
            "Subscription.meta.lastUpdated",
        ),
        (
            "end in the past",
            plus("end", json!("2024-06-01T11:59:59Z")),
            true,
            "Subscription.end",
        ),
        (
            "end now",
            plus("end", json!("2024-06-01T12:00:00Z")),
            true,
            "Subscription.end",
        ),
        (
            "end without offset",
            plus("end", json!("2025-06-01T12:00:00")),
            true,
            "Subscription.end",
        ),
        (
            "status off",
            with("/status", json!("off")),
            true,
            "Subscription.status",
        ),
        (
            "contact not a directory URL",
            with("/contact/0/value", json!("A83627")),
            true,
            "Subscription.contact",
        ),
        (
            "contact ODS malformed",
            with("/contact/0/value", json!(format!("{ODS_PREFIX}a8"))),
            true,
            "Subscription.contact.value",
        ),
        (
            "no reason",
            with("/reason", json!("  ")),
            true,
            "Subscription.reason",
        ),
        (
            "channel type",
            with("/channel/type", json!("rest-hook")),
            true,
            "Subscription.channel.type",
        ),
        (
            "no endpoint",
            with("/channel/endpoint", json!("")),
            true,
            "Subscription.channel.endpoint",
        ),
        (
            "invalid criteria",
            with(
                "/criteria",
                json!(criteria_for("1112223330", &[EventType::Vaccinations], "")),
            ),
            true,
            "Subscription.criteria",
        ),
        (
            "not a Subscription",
            "{\"resourceType\": \"Patient\"}".to_owned(),
            false,
            "Subscription",
        ),
        ("not JSON", "{".to_owned(), false, "Subscription"),
    ];
    for (what, body, unprocessable, expression) in cases {
        let error = SubscriptionRequest::read(&body, Encoding::Json, NOW).unwrap_err();
        assert_eq!(
            refused_as_unprocessable(&error),
            unprocessable,
            "{what}: {error}"
        );
        assert_eq!(
            first_issue(&error)["expression"],
            json!([expression]),
            "{what}: {error}"
        );
    }

    // The same checks hold in XML.
    let with_id = subscription_xml(
        "A83627",
        &criteria,
        "5f1e2d3c-0000-4000-8000-000000000001",
        None,
    )
    .replace("<meta>", "<id value=\"abc\"/><meta>");
    let error = SubscriptionRequest::read(&with_id, Encoding::Xml, NOW).unwrap_err();
    assert_eq!(
        first_issue(&error)["expression"],
        json!(["Subscription.id"])
    );
    let with_version = subscription_xml(
        "A83627",
        &criteria,
        "5f1e2d3c-0000-4000-8000-000000000001",
        None,
    )
    .replace("<meta>", "<meta><versionId value=\"2\"/>");
    let error = SubscriptionRequest::read(&with_version, Encoding::Xml, NOW).unwrap_err();
    assert_eq!(
        first_issue(&error)["expression"],
        json!(["Subscription.meta.versionId"])
    );
    let past = subscription_xml(
        "A83627",
        &criteria,
        "5f1e2d3c-0000-4000-8000-000000000001",
        Some("2020-01-01T00:00:00+01:00"),
    );
    let error = SubscriptionRequest::read(&past, Encoding::Xml, NOW).unwrap_err();
    assert!(refused_as_unprocessable(&error), "{error:?}");
    assert_eq!(
        first_issue(&error)["expression"],
        json!(["Subscription.end"])
    );
}

#[tokio::test]
async fn creates_a_subscription_for_an_onboarded_subscriber() {
    let hub = Hub::default();
    let subscriber = hub
        .onboard(
            "A83627",
            &[EventType::Vaccinations, EventType::NewbornHearing],
        )
        .await;
    let criteria = format!(
        "/Bundle?type=message&amp;MessageHeader.event=vaccinations-1&amp;Patient.identifier=\
         http://fhir.nhs.net/Id/nhs-number%7C{PATIENT}&amp;MessageHeader.event=newborn-hearing-1"
    );
    let body = subscription_xml(
        "A83627",
        &criteria,
        &subscriber.id,
        Some("2025-06-01T12:00:00+01:00"),
    );
    let subscription = hub.create(&body, Encoding::Xml, NOW).await.unwrap();
    assert!(uuid_like(&subscription.id));
    assert_eq!(subscription.subscriber_id, subscriber.id);
    assert_eq!(subscription.contact_ods.as_str(), "A83627");
    assert_eq!(subscription.version_id, 1);
    assert_eq!(subscription.last_updated, "2024-06-01T12:00:00Z");
    assert_eq!(subscription.end.as_deref(), Some("2025-06-01T11:00:00Z"));
    // Kept in canonical form.
    assert_eq!(
        subscription.criteria.to_criteria_string(),
        criteria_for(
            PATIENT,
            &[EventType::NewbornHearing, EventType::Vaccinations],
            ""
        )
    );
    assert!(subscription.is_active(NOW));
    assert_eq!(
        hub.subscriptions.get(&subscription.id).await.unwrap(),
        Some(subscription.clone())
    );
    // Indexed under the patient for each of its event types.
    for event_type in [EventType::Vaccinations, EventType::NewbornHearing] {
        let candidates = hub.candidates(PATIENT, event_type).await;
        assert_eq!(candidates, vec![subscription.clone()], "{event_type}");
    }
    assert!(
        hub.candidates(OTHER_PATIENT, EventType::Vaccinations)
            .await
            .is_empty()
    );
    assert!(
        hub.candidates(PATIENT, EventType::NipeOutcome)
            .await
            .is_empty()
    );

    // The stored subscription renders as an active FHIR Subscription.
    let rendered = subscription.to_json(NOW);
    assert_eq!(rendered["status"], "active");
    assert_eq!(rendered["meta"]["versionId"], "1");
    assert_eq!(rendered["channel"]["endpoint"], json!(subscriber.id));
    assert_eq!(
        subscription.to_json(datetime!(2025-06-01 11:00:00 UTC))["status"],
        "off"
    );
}

#[tokio::test]
async fn refuses_subscriptions_the_subscriber_may_not_have() {
    let hub = Hub::default();
    let subscriber = hub.onboard("A83627", &[EventType::Vaccinations]).await;
    hub.onboard("B12345", &[EventType::NewbornHearing]).await;
    let vaccinations = criteria_for(PATIENT, &[EventType::Vaccinations], "");

    // Unknown subscriber.
    let body = subscription_json("A83627", &vaccinations, "no-such-subscriber", None);
    let error = hub
        .create(&body.to_string(), Encoding::Json, NOW)
        .await
        .unwrap_err();
    assert_refusal(
        &error,
        true,
        "INVALID_VALUE",
        Some("Subscription.channel.endpoint"),
        "unknown subscriber",
    );

    // The contact is another organisation (even an onboarded one).
    let body = subscription_json("B12345", &vaccinations, &subscriber.id, None);
    let error = hub
        .create(&body.to_string(), Encoding::Json, NOW)
        .await
        .unwrap_err();
    assert_refusal(
        &error,
        true,
        "INVALID_VALUE",
        Some("Subscription.contact"),
        "contact ODS",
    );

    // An event type the subscriber was not onboarded for, alone or with others.
    for events in [
        vec![EventType::NewbornHearing],
        vec![EventType::Vaccinations, EventType::NewbornHearing],
    ] {
        let body = subscription_json(
            "A83627",
            &criteria_for(PATIENT, &events, ""),
            &subscriber.id,
            None,
        );
        let error = hub
            .create(&body.to_string(), Encoding::Json, NOW)
            .await
            .unwrap_err();
        match &error {
            HubError::Criteria(criteria) => {
                assert_eq!(criteria.component, "MessageHeader.event");
                assert!(criteria.problem.contains("newborn-hearing-1"), "{criteria}");
            }
            other => panic!("{events:?}: {other:?}"),
        }
        assert_refusal(
            &error,
            true,
            "INVALID_PARAMETER",
            Some("Subscription.criteria"),
            "not onboarded",
        );
    }

    // Generic criteria are stored (they are matched once the child register
    // knows where each child is), and read back as they were given.
    let generic = "/Bundle?type=message&subscriptionRuleType=GP_GP_GP\
                   &Organization.identifier=A83627&MessageHeader.event=vaccinations-1";
    let body = subscription_json("A83627", generic, &subscriber.id, None);
    let stored = hub
        .create(&body.to_string(), Encoding::Json, NOW)
        .await
        .expect("a generic subscription is stored");
    assert!(matches!(
        stored.criteria.target,
        hub::criteria::Target::Generic { .. }
    ));

    // id and meta.versionId are the hub's; an end in the past is refused.
    let mut body = subscription_json("A83627", &vaccinations, &subscriber.id, None);
    body["id"] = json!("my-own-id");
    let error = hub
        .create(&body.to_string(), Encoding::Json, NOW)
        .await
        .unwrap_err();
    assert_refusal(&error, true, "INVALID_VALUE", Some("Subscription.id"), "id");
    let mut body = subscription_json("A83627", &vaccinations, &subscriber.id, None);
    body["meta"]["versionId"] = json!("3");
    let error = hub
        .create(&body.to_string(), Encoding::Json, NOW)
        .await
        .unwrap_err();
    assert_refusal(
        &error,
        true,
        "INVALID_VALUE",
        Some("Subscription.meta.versionId"),
        "versionId",
    );
    let body = subscription_json(
        "A83627",
        &vaccinations,
        &subscriber.id,
        Some("2024-05-31T12:00:00Z"),
    );
    let error = hub
        .create(&body.to_string(), Encoding::Json, NOW)
        .await
        .unwrap_err();
    assert_refusal(
        &error,
        true,
        "INVALID_VALUE",
        Some("Subscription.end"),
        "end",
    );

    // Nothing was stored by any refusal.
    for event_type in EventType::ALL {
        assert!(hub.candidates(PATIENT, *event_type).await.is_empty());
    }
}

// ---------------------------------------------------------------------------
// Dispatch
// ---------------------------------------------------------------------------

/// The (subscription id, tag) pairs a delivery names.
type Matches = BTreeSet<(String, Option<String>)>;

fn subscriptions_attribute(sent: &SentMessage) -> Matches {
    let value: Value = serde_json::from_str(sent.attribute("subscriptions").unwrap()).unwrap();
    value
        .as_array()
        .unwrap()
        .iter()
        .map(|entry| {
            let object = entry.as_object().unwrap();
            // An absent tag is left out, never sent empty.
            assert!(object.keys().all(|k| k == "id" || k == "tag"), "{entry}");
            assert_ne!(entry.get("tag"), Some(&json!("")), "{entry}");
            (
                entry["id"].as_str().unwrap().to_owned(),
                entry.get("tag").and_then(Value::as_str).map(str::to_owned),
            )
        })
        .collect()
}

fn matched_tags(sent: &SentMessage) -> BTreeSet<String> {
    subscriptions_attribute(sent)
        .into_iter()
        .filter_map(|(_, tag)| tag)
        .collect()
}

#[tokio::test]
async fn one_delivery_per_subscriber_with_every_matching_subscription() {
    let hub = Hub::default();
    let a = hub
        .onboard(
            "A83627",
            &[EventType::Vaccinations, EventType::NewbornHearing],
        )
        .await;
    let b = hub
        .onboard(
            "B12345",
            &[EventType::Vaccinations, EventType::NewbornHearing],
        )
        .await;
    let first = hub
        .subscribe(
            &a,
            &criteria_for(PATIENT, &[EventType::Vaccinations], "&tag=team-1"),
        )
        .await;
    let second = hub
        .subscribe(
            &a,
            &criteria_for(
                PATIENT,
                &[EventType::NewbornHearing, EventType::Vaccinations],
                "",
            ),
        )
        .await;
    // B subscribes to another patient, and to this patient's other events.
    hub.subscribe(
        &b,
        &criteria_for(OTHER_PATIENT, &[EventType::Vaccinations], ""),
    )
    .await;
    hub.subscribe(
        &b,
        &criteria_for(PATIENT, &[EventType::NewbornHearing], "&tag=b"),
    )
    .await;

    let body = vaccination_xml();
    let event = stored(EventType::Vaccinations, FHIR_XML, &body).await;
    assert_eq!(
        hub.dispatch(&event, NOW).await,
        Dispatched::Delivered { recipients: 1 }
    );
    let sent = hub.publisher.sent();
    assert_eq!(sent.len(), 1);
    let delivery = &sent[0];
    assert_eq!(delivery.event_type, EventType::Vaccinations);
    assert_eq!(
        delivery.attribute(SUBSCRIBER_ATTRIBUTE),
        Some(a.id.as_str())
    );
    assert_eq!(delivery.attribute("eventId"), Some(VACCINATION_ID));
    assert_eq!(delivery.attribute("eventType"), Some("vaccinations-1"));
    assert_eq!(delivery.attribute("lifecycle"), Some("new"));
    assert_eq!(delivery.attribute("contentType"), Some(FHIR_XML));
    assert_eq!(delivery.attribute("nhsNumber"), Some(PATIENT));
    assert_eq!(
        subscriptions_attribute(delivery),
        BTreeSet::from([
            (first.id.clone(), Some("team-1".to_owned())),
            (second.id.clone(), None),
        ])
    );
    // No attribute is empty (SNS refuses those) and none is repeated.
    let names: BTreeSet<&str> = delivery.attributes.iter().map(|(k, _)| *k).collect();
    assert_eq!(names.len(), delivery.attributes.len());
    assert!(delivery.attributes.iter().all(|(_, v)| !v.is_empty()));
    assert_eq!(delivery.body.as_bytes(), body.as_bytes());
}

#[tokio::test]
async fn two_matching_subscribers_each_get_their_own_copy() {
    let hub = Hub::default();
    let a = hub.onboard("A83627", &[EventType::Vaccinations]).await;
    let b = hub.onboard("B12345", &[EventType::Vaccinations]).await;
    let c = hub.onboard("C00001", &[EventType::Vaccinations]).await;
    let for_a = hub
        .subscribe(
            &a,
            &criteria_for(PATIENT, &[EventType::Vaccinations], "&tag=a"),
        )
        .await;
    let for_b = hub
        .subscribe(
            &b,
            &criteria_for(PATIENT, &[EventType::Vaccinations], "&tag=b"),
        )
        .await;
    // C's subscription is for someone else.
    hub.subscribe(
        &c,
        &criteria_for(OTHER_PATIENT, &[EventType::Vaccinations], ""),
    )
    .await;

    let body = vaccination_json();
    let event = stored(EventType::Vaccinations, FHIR_JSON, &body).await;
    assert_eq!(
        hub.dispatch(&event, NOW).await,
        Dispatched::Delivered { recipients: 2 }
    );
    let sent = hub.publisher.sent();
    assert_eq!(sent.len(), 2);
    let by_subscriber: Vec<(String, Matches)> = sent
        .iter()
        .map(|message| {
            (
                message.attribute(SUBSCRIBER_ATTRIBUTE).unwrap().to_owned(),
                subscriptions_attribute(message),
            )
        })
        .collect();
    let mut expected = vec![
        (
            a.id.clone(),
            BTreeSet::from([(for_a.id, Some("a".to_owned()))]),
        ),
        (
            b.id.clone(),
            BTreeSet::from([(for_b.id, Some("b".to_owned()))]),
        ),
    ];
    let mut actual = by_subscriber;
    expected.sort();
    actual.sort();
    assert_eq!(actual, expected);
    assert!(
        !sent
            .iter()
            .any(|m| m.attribute(SUBSCRIBER_ATTRIBUTE) == Some(c.id.as_str()))
    );
    for message in &sent {
        assert_eq!(message.attribute("contentType"), Some(FHIR_JSON));
        assert_eq!(message.body.as_bytes(), body.as_bytes());
    }
}

#[tokio::test]
async fn no_matching_subscription_means_no_delivery() {
    let hub = Hub::default();
    let a = hub
        .onboard(
            "A83627",
            &[EventType::Vaccinations, EventType::NewbornHearing],
        )
        .await;
    hub.subscribe(&a, &criteria_for(PATIENT, &[EventType::NewbornHearing], ""))
        .await;
    hub.subscribe(
        &a,
        &criteria_for(OTHER_PATIENT, &[EventType::Vaccinations], ""),
    )
    .await;
    let event = stored(EventType::Vaccinations, FHIR_XML, &vaccination_xml()).await;
    assert_eq!(
        hub.dispatch(&event, NOW).await,
        Dispatched::Delivered { recipients: 0 }
    );
    assert!(hub.publisher.sent().is_empty());
}

#[tokio::test]
async fn an_expired_subscription_does_not_match() {
    let hub = Hub::default();
    let a = hub.onboard("A83627", &[EventType::Vaccinations]).await;
    let b = hub.onboard("B12345", &[EventType::Vaccinations]).await;
    let end = NOW + Duration::hours(1);
    let ending = hub
        .subscribe_until(
            &a,
            &criteria_for(PATIENT, &[EventType::Vaccinations], ""),
            Some("2024-06-01T13:00:00Z"),
            NOW,
        )
        .await;
    let open = hub
        .subscribe(&b, &criteria_for(PATIENT, &[EventType::Vaccinations], ""))
        .await;
    let event = stored(EventType::Vaccinations, FHIR_XML, &vaccination_xml()).await;

    let recipients_at = |sent: Vec<SentMessage>| -> BTreeSet<String> {
        sent.iter()
            .map(|m| m.attribute(SUBSCRIBER_ATTRIBUTE).unwrap().to_owned())
            .collect()
    };

    // Still active a second before the end.
    assert_eq!(
        hub.dispatch(&event, end - Duration::seconds(1)).await,
        Dispatched::Delivered { recipients: 2 }
    );
    assert_eq!(
        recipients_at(hub.publisher.sent()),
        BTreeSet::from([a.id.clone(), b.id.clone()])
    );
    assert!(ending.is_active(end - Duration::seconds(1)));
    assert!(!ending.is_active(end));

    // At the end and after it, only the open subscription matches.
    for now in [end, end + Duration::days(30)] {
        let hub_after = Hub::default();
        hub_after.subscriptions.create(&ending).await.unwrap();
        hub_after.subscriptions.create(&open).await.unwrap();
        assert_eq!(
            hub_after.dispatch(&event, now).await,
            Dispatched::Delivered { recipients: 1 },
            "{now}"
        );
        assert_eq!(
            recipients_at(hub_after.publisher.sent()),
            BTreeSet::from([b.id.clone()])
        );
    }
}

#[tokio::test]
async fn age_filters_at_their_edges() {
    let hub = Hub::default();
    let a = hub.onboard("A83627", &[EventType::Vaccinations]).await;
    for (tag, filter) in [
        ("gt2", "&Patient.age=gt2"),
        ("gt3", "&Patient.age=gt3"),
        ("lt3", "&Patient.age=lt3"),
        ("lt4", "&Patient.age=lt4"),
        ("only3", "&Patient.age=gt2&Patient.age=lt4"),
        ("only2", "&Patient.age=gt1&Patient.age=lt3"),
        ("any", ""),
    ] {
        hub.subscribe(
            &a,
            &criteria_for(
                PATIENT,
                &[EventType::Vaccinations],
                &format!("{filter}&tag={tag}"),
            ),
        )
        .await;
    }
    // Each birth date and event time, and the tags that match.
    let cases = [
        // Third birthday on the event's day.
        (
            "2014-02-14T12:00:00+00:00",
            "2017-02-14T15:00:00+00:00",
            vec!["any", "gt2", "lt4", "only3"],
        ),
        // Third birthday the day after: still two.
        (
            "2014-02-15T12:00:00+00:00",
            "2017-02-14T15:00:00+00:00",
            vec!["any", "lt3", "lt4", "only2"],
        ),
        // Fourth birthday on the event's day (a birth date without a time).
        (
            "2013-02-14",
            "2017-02-14T15:00:00+00:00",
            vec!["any", "gt2", "gt3"],
        ),
        // Born on a leap day: still two on 28 February of a common year...
        (
            "2012-02-29",
            "2015-02-28T15:00:00+00:00",
            vec!["any", "lt3", "lt4", "only2"],
        ),
        // ...and three on 1 March.
        (
            "2012-02-29",
            "2015-03-01T15:00:00+00:00",
            vec!["any", "gt2", "lt4", "only3"],
        ),
        // Born after the event (as the unmodified example is): no age, so
        // only the subscription without an age filter matches.
        (
            "2017-10-02T12:00:00+00:00",
            "2017-02-14T15:00:00+00:00",
            vec!["any"],
        ),
    ];
    for (birth, timestamp, expected) in cases {
        let hub_sent_before = hub.publisher.sent().len();
        let body = vaccination_born(birth, timestamp);
        let event = stored(EventType::Vaccinations, FHIR_XML, &body).await;
        assert_eq!(
            hub.dispatch(&event, NOW).await,
            Dispatched::Delivered { recipients: 1 },
            "{birth}"
        );
        let sent = hub.publisher.sent();
        assert_eq!(sent.len(), hub_sent_before + 1, "{birth}");
        let tags = matched_tags(sent.last().unwrap());
        let expected: BTreeSet<String> = expected.into_iter().map(str::to_owned).collect();
        assert_eq!(tags, expected, "born {birth}");
    }
}

#[tokio::test]
async fn gp_registration_filters_use_the_patients_practice() {
    let hub = Hub::default();
    let a = hub.onboard("A83627", &[EventType::PdsChangeOfGp]).await;
    for (tag, filter) in [
        ("registered", "&GPRegistration=RegisteredOnly"),
        ("unregistered", "&GPRegistration=UnregisteredOnly"),
    ] {
        hub.subscribe(
            &a,
            &criteria_for(
                PATIENT,
                &[EventType::PdsChangeOfGp],
                &format!("{filter}&tag={tag}"),
            ),
        )
        .await;
    }
    let with_gp = xml_fixture("PDS-Change-Of-GP-ems-example");
    let event = stored(EventType::PdsChangeOfGp, FHIR_XML, &with_gp).await;
    assert!(event.gp_ods.is_some());
    assert_eq!(
        hub.dispatch(&event, NOW).await,
        Dispatched::Delivered { recipients: 1 }
    );
    assert_eq!(
        matched_tags(&hub.publisher.sent()[0]),
        BTreeSet::from(["registered".to_owned()])
    );
}

#[tokio::test]
async fn a_gp_filter_does_not_match_a_patient_with_no_practice_known() {
    // The newborn hearing delete example has no Patient entry at all: whether
    // the child is registered with a GP is unknown, and a GP filter must not
    // match (Criteria::filters_allow: "where a filter is set and the fact it
    // needs is unknown, the event does not match").
    let hub = Hub::default();
    let a = hub.onboard("A83627", &[EventType::NewbornHearing]).await;
    hub.subscribe(
        &a,
        &criteria_for(
            PATIENT,
            &[EventType::NewbornHearing],
            "&GPRegistration=RegisteredOnly",
        ),
    )
    .await;
    let event = stored(
        EventType::NewbornHearing,
        FHIR_XML,
        &xml_fixture("newborn-hearing-1-delete"),
    )
    .await;
    assert_eq!(event.lifecycle, Lifecycle::Delete);
    assert_eq!(
        hub.dispatch(&event, NOW).await,
        Dispatched::Delivered { recipients: 0 }
    );
    assert!(hub.publisher.sent().is_empty());
}

#[tokio::test]
async fn unregistered_only_does_not_match_a_patient_with_no_practice_known() {
    // dispatch.rs builds PatientAtEvent with has_gp: Some(event.gp_ods.is_some()),
    // so an event with no Patient entry counts as an unregistered patient and
    // an UnregisteredOnly subscription receives it.
    let hub = Hub::default();
    let a = hub.onboard("A83627", &[EventType::NewbornHearing]).await;
    hub.subscribe(
        &a,
        &criteria_for(
            PATIENT,
            &[EventType::NewbornHearing],
            "&GPRegistration=UnregisteredOnly",
        ),
    )
    .await;
    let event = stored(
        EventType::NewbornHearing,
        FHIR_XML,
        &xml_fixture("newborn-hearing-1-delete"),
    )
    .await;
    assert_eq!(
        hub.dispatch(&event, NOW).await,
        Dispatched::Delivered { recipients: 0 }
    );
    assert!(hub.publisher.sent().is_empty());
}

#[tokio::test]
async fn a_sensitive_patient_is_withheld_from_every_subscriber() {
    let hub = Hub::default();
    let a = hub.onboard("A83627", &[EventType::Vaccinations]).await;
    hub.subscribe(&a, &criteria_for(PATIENT, &[EventType::Vaccinations], ""))
        .await;
    for code in ["R", "V", "REDACTED"] {
        let event = stored(
            EventType::Vaccinations,
            FHIR_XML,
            &vaccination_with_security(code),
        )
        .await;
        assert!(event.sensitive, "{code}");
        assert_eq!(
            hub.dispatch(&event, NOW).await,
            Dispatched::Withheld,
            "{code}"
        );
    }
    assert!(hub.publisher.sent().is_empty());

    // The register now knows the child is sensitive: an event without the
    // label is withheld too (only PDS may clear the flag).
    let event = stored(EventType::Vaccinations, FHIR_XML, &vaccination_xml()).await;
    assert_eq!(hub.dispatch(&event, NOW).await, Dispatched::Withheld);
    assert!(hub.publisher.sent().is_empty());

    // For a child the register holds nothing against, it is delivered.
    let fresh = Hub::default();
    let a = fresh.onboard("A83627", &[EventType::Vaccinations]).await;
    fresh
        .subscribe(&a, &criteria_for(PATIENT, &[EventType::Vaccinations], ""))
        .await;
    assert_eq!(
        fresh.dispatch(&event, NOW).await,
        Dispatched::Delivered { recipients: 1 }
    );
}

#[tokio::test]
async fn an_event_without_an_nhs_number_reaches_no_explicit_subscription() {
    let hub = Hub::default();
    let a = hub
        .onboard("A83627", &[EventType::PdsBirthNotification])
        .await;
    hub.subscribe(
        &a,
        &criteria_for(PATIENT, &[EventType::PdsBirthNotification], ""),
    )
    .await;
    // A birth notification whose mother is unknown to PDS: no routing number.
    let xml = xml_fixture("BirthNotificationWithMother");
    let start = xml.find("<extension url=\"nhsNumber\">").unwrap();
    let end = start + xml[start..].find("</extension>").unwrap() + "</extension>".len();
    let without_number = format!("{}{}", &xml[..start], &xml[end..]);
    let event = stored(EventType::PdsBirthNotification, FHIR_XML, &without_number).await;
    assert_eq!(event.nhs_number, None);
    assert_eq!(
        hub.dispatch(&event, NOW).await,
        Dispatched::Delivered { recipients: 0 }
    );
    assert!(hub.publisher.sent().is_empty());
}

#[tokio::test]
async fn the_delivered_body_is_the_published_payload_byte_for_byte() {
    let hub = Hub::default();
    let a = hub.onboard("A83627", &[EventType::Vaccinations]).await;
    hub.subscribe(&a, &criteria_for(PATIENT, &[EventType::Vaccinations], ""))
        .await;
    // CRLF line ends, non-ASCII text, a comment and odd spacing all survive.
    let odd = mutate(&vaccination_xml(), "\n", "\r\n")
        .replacen("DAWKINS", "DAWKINS-Ó Briain", 1)
        .replacen(
            "<type value=\"message\"/>",
            "<!-- é -->  <type   value=\"message\" />",
            1,
        );
    for (content_type, body) in [
        (FHIR_XML, vaccination_xml()),
        (FHIR_JSON, vaccination_json()),
        (LEGACY_XML, odd),
    ] {
        let hub_sent_before = hub.publisher.sent().len();
        let event = stored(EventType::Vaccinations, content_type, &body).await;
        hub.dispatch(&event, NOW).await;
        let sent = hub.publisher.sent();
        assert_eq!(sent.len(), hub_sent_before + 1, "{content_type}");
        let delivered = sent.last().unwrap();
        assert_eq!(delivered.body.as_bytes(), body.as_bytes(), "{content_type}");
        assert_eq!(sha256_hex(&delivered.body), sha256_hex(&body));
    }
}

#[tokio::test]
async fn publish_then_dispatch_end_to_end() {
    let hub = Hub::default();
    let events = MemoryEventStore::default();
    let a = hub.onboard("A83627", &[EventType::Vaccinations]).await;
    let subscription = hub
        .subscribe(
            &a,
            &criteria_for(PATIENT, &[EventType::Vaccinations], "&tag=e2e"),
        )
        .await;
    let body = vaccination_xml();
    let outcome = publish_to(
        &events,
        EventType::Vaccinations,
        Some(FHIR_XML),
        body.as_bytes(),
    )
    .await
    .unwrap();
    assert!(matches!(outcome, PublishOutcome::Accepted { .. }));
    // A repeat is not stored again, so it would not be dispatched again.
    let repeat = publish_to(
        &events,
        EventType::Vaccinations,
        Some(FHIR_XML),
        body.as_bytes(),
    )
    .await
    .unwrap();
    assert!(matches!(repeat, PublishOutcome::Duplicate { .. }));
    assert_eq!(events.len(), 1);
    let event = events.by_message_id(VACCINATION_ID).unwrap();
    assert_eq!(
        hub.dispatch(&event, NOW).await,
        Dispatched::Delivered { recipients: 1 }
    );
    let sent = hub.publisher.sent();
    assert_eq!(sent.len(), 1);
    assert_eq!(
        subscriptions_attribute(&sent[0]),
        BTreeSet::from([(subscription.id, Some("e2e".to_owned()))])
    );
    assert_eq!(sent[0].body, body);
}

/// The hub sets the status: a create request says `requested`, as in NEMS.
#[tokio::test]
async fn a_create_request_carrying_a_status_the_hub_sets_is_refused() {
    for status in ["active", "off", "error"] {
        let body = json!({
            "resourceType": "Subscription",
            "status": status,
            "contact": [{"system": "url", "value": "https://directory.spineservices.nhs.uk/STU3/Organization/A83627"}],
            "reason": "care",
            "criteria": "/Bundle?type=message&Patient.identifier=http://fhir.nhs.net/Id/nhs-number|9912003888&MessageHeader.event=vaccinations-1",
            "channel": {"type": "message", "endpoint": "00000000-0000-4000-8000-000000000000"}
        });
        let error =
            hub::subscription::SubscriptionRequest::read(&body.to_string(), Encoding::Json, NOW)
                .unwrap_err();
        assert!(refused_as_unprocessable(&error), "{status}: {error:?}");
        assert_eq!(
            error.outcome().to_json()["issue"][0]["expression"],
            json!(["Subscription.status"]),
            "{status}"
        );
    }
}

/// Limits that keep one subscriber from making deliveries too large for SNS,
/// and requests from reaching the store with keys or items it would refuse.
#[tokio::test]
async fn subscription_requests_are_bounded() {
    use hub::app::subscription::create_subscription;
    use hub::subscription::{MAX_SUBSCRIPTIONS_PER_PATIENT_AND_TYPE, SubscriptionRequest};
    let hub = Hub::default();
    let (subscribers, subscriptions) = (&hub.subscribers, &hub.subscriptions);
    let subscriber = hub.onboard("A83627", &[EventType::Vaccinations]).await;
    let criteria = "/Bundle?type=message&Patient.identifier=http://fhir.nhs.net/Id/nhs-number|9912003888&MessageHeader.event=vaccinations-1";
    let body = |criteria: &str, endpoint: &str, reason: &str| {
        json!({
            "resourceType": "Subscription",
            "status": "requested",
            "contact": [{"system": "url", "value": "https://directory.spineservices.nhs.uk/STU3/Organization/A83627"}],
            "reason": reason,
            "criteria": criteria,
            "channel": {"type": "message", "endpoint": endpoint}
        })
        .to_string()
    };
    for _ in 0..MAX_SUBSCRIPTIONS_PER_PATIENT_AND_TYPE {
        let request =
            SubscriptionRequest::read(&body(criteria, &subscriber.id, "care"), Encoding::Json, NOW)
                .unwrap();
        create_subscription(
            &Adapters::new()
                .subscriptions(subscriptions)
                .subscribers(subscribers)
                .register(hub::memory::MemoryRegisterStore::default()),
            request,
            &Default::default(),
            DailyLimit::DEFAULT,
            NOW,
        )
        .await
        .unwrap();
    }
    let one_more =
        SubscriptionRequest::read(&body(criteria, &subscriber.id, "care"), Encoding::Json, NOW)
            .unwrap();
    let error = create_subscription(
        &Adapters::new()
            .subscriptions(subscriptions)
            .subscribers(subscribers)
            .register(hub::memory::MemoryRegisterStore::default()),
        one_more,
        &Default::default(),
        DailyLimit::DEFAULT,
        NOW,
    )
    .await
    .unwrap_err();
    assert!(refused_as_unprocessable(&error), "{error:?}");
    assert!(error.to_string().contains("already holds"), "{error}");

    for (request, element) in [
        (
            body(criteria, "not-a-uuid", "care"),
            "Subscription.channel.endpoint",
        ),
        (
            body(criteria, &"a".repeat(3000), "care"),
            "Subscription.channel.endpoint",
        ),
        (
            body(criteria, &subscriber.id, &"r".repeat(1001)),
            "Subscription.reason",
        ),
        (
            body(
                &format!("{criteria}&tag={}", "t".repeat(2000)),
                &subscriber.id,
                "care",
            ),
            "Subscription.criteria",
        ),
    ] {
        let error = SubscriptionRequest::read(&request, Encoding::Json, NOW).unwrap_err();
        assert!(refused_as_unprocessable(&error), "{element}: {error:?}");
        assert_eq!(
            error.outcome().to_json()["issue"][0]["expression"],
            json!([element])
        );
    }
}

// ---------------------------------------------------------------------------
// Generic subscriptions: the child register and the sample reference data
// ---------------------------------------------------------------------------

/// A hub whose reference data are the sample files of events/reference
/// (areas A, Leeds; B, Kirklees; C, County Durham).
fn hub_with_sample_areas() -> Hub {
    let file = |name: &str| {
        std::io::BufReader::new(
            std::fs::File::open(events_dir().join("reference").join(name)).unwrap(),
        )
    };
    let (reference, rejected) = MemoryReferenceData::load(
        file("sub-icb-sample.csv"),
        file("onspd-sample.csv"),
        file("epraccur-sample.csv"),
    )
    .unwrap();
    assert!(rejected.is_empty(), "{rejected:?}");
    Hub {
        reference,
        ..Hub::default()
    }
}

fn generic_criteria(rule: &str, code: &str, event_type: EventType, extra: &str) -> String {
    format!(
        "/Bundle?type=message&subscriptionRuleType={rule}&Organization.identifier={code}&MessageHeader.event={}{extra}",
        event_type.code()
    )
}

fn birth_in_area_a() -> String {
    std::fs::read_to_string(
        events_dir().join("derived/BirthNotificationWithMother-valid-mother.xml"),
    )
    .unwrap()
}

const BABY: &str = "9912003888";

fn recipients_of(hub: &Hub) -> BTreeSet<String> {
    hub.publisher
        .sent()
        .iter()
        .filter_map(|sent| sent.attribute(SUBSCRIBER_ATTRIBUTE).map(str::to_owned))
        .collect()
}

#[tokio::test]
async fn a_birth_reaches_the_generic_subscribers_of_the_babys_area_only() {
    let hub = hub_with_sample_areas();
    let birth = EventType::PdsBirthNotification;
    let chis_a = hub.onboard("RR8", &[birth]).await;
    let visitors_a = hub.onboard("RR9", &[birth]).await;
    let chis_b = hub.onboard("RX1", &[birth]).await;
    let country = hub.onboard("X26", &[birth]).await;
    hub.subscribe(
        &chis_a,
        &generic_criteria("CHO_POSTCODE_CCG", "15F", birth, ""),
    )
    .await;
    hub.subscribe(
        &visitors_a,
        &generic_criteria("UHV_POSTCODE_LACODE", "E08000035", birth, ""),
    )
    .await;
    hub.subscribe(
        &chis_b,
        &generic_criteria("CHO_POSTCODE_CCG", "X2C4Y", birth, ""),
    )
    .await;
    // Age-limited: a baby is younger than 1, not older than 5.
    hub.subscribe(
        &country,
        &generic_criteria("COUNTRYCODE", "E92000001", birth, "&Patient.age=gt5"),
    )
    .await;
    let event = stored(birth, FHIR_XML, &birth_in_area_a()).await;
    assert_eq!(
        hub.dispatch(&event, NOW).await,
        Dispatched::Delivered { recipients: 2 }
    );
    assert_eq!(
        recipients_of(&hub),
        BTreeSet::from([chis_a.id.clone(), visitors_a.id.clone()])
    );
    // The register holds the baby, at the birth address; not the mother.
    let baby = hub
        .register
        .record(NhsNumber::parse(BABY).unwrap())
        .unwrap();
    assert_eq!(
        baby.home_postcode
            .map(|field| field.value.as_str().to_owned()),
        Some("LS17 7DF".to_owned())
    );
    assert!(
        hub.register
            .record(NhsNumber::parse(OTHER_PATIENT).unwrap())
            .is_none()
    );
    // Each delivery is audited against the baby.
    let delivered: Vec<_> = hub
        .audit
        .records()
        .into_iter()
        .filter(|record| record.action == hub::audit::Action::Deliver)
        .collect();
    assert_eq!(delivered.len(), 2);
    assert!(
        delivered
            .iter()
            .all(|record| record.nhs_number.as_deref() == Some(BABY))
    );
}

#[tokio::test]
async fn later_events_reach_the_area_the_register_says_the_child_lives_in() {
    let hub = hub_with_sample_areas();
    let vaccinations = EventType::Vaccinations;
    let area_a = hub.onboard("RR8", &[vaccinations]).await;
    let area_c = hub.onboard("RX1", &[vaccinations]).await;
    hub.subscribe(
        &area_a,
        &generic_criteria("CHO_POSTCODE_CCG", "15F", vaccinations, ""),
    )
    .await;
    hub.subscribe(
        &area_c,
        &generic_criteria("CHO_POSTCODE_CCG", "84H", vaccinations, ""),
    )
    .await;
    // The birth puts the baby in A.
    let birth = stored(
        EventType::PdsBirthNotification,
        FHIR_XML,
        &birth_in_area_a(),
    )
    .await;
    hub.dispatch(&birth, NOW).await;
    // The vaccination example is about the same child, stated later, and
    // its own Patient entry gives a home address in C: the register, updated
    // by it, now says C, and so does the matching.
    let later = vaccination_xml().replace(
        r#"<lastUpdated value="2017-11-01T15:00:33+00:00"/>"#,
        r#"<lastUpdated value="2018-01-01T09:00:00+00:00"/>"#,
    );
    assert_ne!(later, vaccination_xml());
    let vaccination = stored(vaccinations, FHIR_XML, &later).await;
    assert_eq!(vaccination.nhs_number, NhsNumber::parse(BABY).ok());
    hub.dispatch(&vaccination, NOW).await;
    assert_eq!(recipients_of(&hub), BTreeSet::from([area_c.id.clone()]));
}

#[tokio::test]
async fn a_birth_to_a_mother_the_register_knows_to_be_sensitive_is_withheld() {
    let hub = hub_with_sample_areas();
    let birth = EventType::PdsBirthNotification;
    let chis_a = hub.onboard("RR8", &[birth]).await;
    hub.subscribe(
        &chis_a,
        &generic_criteria("CHO_POSTCODE_CCG", "15F", birth, ""),
    )
    .await;
    let mut flagged = hub::register::RegisterUpdate::new(
        NhsNumber::parse(OTHER_PATIENT).unwrap(),
        "pds-record-change-1/earlier",
        NOW,
    );
    flagged.sensitive = Some(true);
    hub::app::register::record_event(&hub.register, &hub.audit, flagged, NOW)
        .await
        .unwrap();
    let event = stored(birth, FHIR_XML, &birth_in_area_a()).await;
    assert_eq!(
        event.nhs_number,
        NhsNumber::parse(OTHER_PATIENT).ok(),
        "routed to the mother"
    );
    assert_eq!(hub.dispatch(&event, NOW).await, Dispatched::Withheld);
    assert!(hub.publisher.sent().is_empty());
}

#[tokio::test]
async fn a_sensitive_child_reaches_no_generic_subscriber() {
    let hub = hub_with_sample_areas();
    let vaccinations = EventType::Vaccinations;
    let country = hub.onboard("RR8", &[vaccinations]).await;
    hub.subscribe(
        &country,
        &generic_criteria("COUNTRYCODE", "E92000001", vaccinations, ""),
    )
    .await;
    let event = stored(vaccinations, FHIR_XML, &vaccination_with_security("R")).await;
    assert_eq!(hub.dispatch(&event, NOW).await, Dispatched::Withheld);
    assert!(hub.publisher.sent().is_empty());
}

/// A labelled message flags its child as it is accepted, not only when it
/// is dispatched: the events table's stream keeps no order between two
/// events of one child, so an unlabelled event accepted a moment later may
/// be dispatched first, and must already be withheld. The flag's change is
/// in the child's audit trail, and dispatching the labelled event later
/// does not record it again.
#[tokio::test]
async fn a_label_flags_the_child_as_it_is_accepted_before_any_dispatch() {
    let store = MemoryEventStore::default();
    let register = hub::memory::MemoryRegisterStore::default();
    let audit = MemoryAuditLog::default();
    let publish_now = async |body: &str| {
        publish(
            &store,
            &register,
            &audit,
            &publisher_of(body.as_bytes()),
            EventType::Vaccinations,
            Encoding::Xml,
            body,
            RECEIVED,
            Retention::DEFAULT,
        )
        .await
        .unwrap_or_else(|error| panic!("publish refused: {error}"))
    };
    let labelled = vaccination_with_security("R");
    let unlabelled = mutate(
        &vaccination_xml(),
        VACCINATION_ID,
        "0d9b0a2e-1c4f-4b7e-9a53-5f2d8c6e7a10",
    );

    let first = publish_now(&labelled).await;
    assert!(
        matches!(
            first,
            PublishOutcome::Accepted {
                sensitive: true,
                ..
            }
        ),
        "{first:?}"
    );
    let second = publish_now(&unlabelled).await;
    assert!(
        matches!(
            second,
            PublishOutcome::Accepted {
                sensitive: true,
                ..
            }
        ),
        "accepted after the label, before any dispatch: withheld, and said so: {second:?}"
    );
    let stored = store
        .by_message_id("0d9b0a2e-1c4f-4b7e-9a53-5f2d8c6e7a10")
        .expect("stored");
    assert!(stored.sensitive, "stored withheld");
    let changes = |audit: &MemoryAuditLog| {
        audit
            .records()
            .into_iter()
            .filter(|record| record.action == hub::audit::Action::SensitivityChange)
            .count()
    };
    assert_eq!(changes(&audit), 1, "the flag's change is audited once");

    // Dispatched in the wrong order: the unlabelled event first.
    let subscriptions = MemorySubscriptionStore::default();
    let publisher = MemoryPublisher::default();
    let dispatcher = Dispatcher {
        ports: &Adapters::new()
            .subscriptions(&subscriptions)
            .publisher(&publisher)
            .audit(&audit)
            .register(&register)
            .reference(MemoryReferenceData::default())
            .stats(hub::memory::MemoryDeliveryStats::default())
            .events(&store)
            .embargoes(hub::memory::MemoryEmbargoStore::default()),
    };
    assert_eq!(
        dispatcher.dispatch(&stored, NOW).await.unwrap(),
        Dispatched::Withheld
    );
    let labelled_event = store.by_message_id(VACCINATION_ID).expect("stored");
    assert_eq!(
        dispatcher.dispatch(&labelled_event, NOW).await.unwrap(),
        Dispatched::Withheld
    );
    assert_eq!(changes(&audit), 1, "dispatch finds the flag already set");
}

// ---------------------------------------------------------------------------
// The basis of explicit subscriptions (issue 20)
// ---------------------------------------------------------------------------

/// Registers PATIENT at `practice` in the hub's register, as an event long
/// before the examples would.
async fn registered_at(hub: &Hub, practice: &str) {
    let mut update = hub::register::RegisterUpdate::new(
        NhsNumber::parse(PATIENT).unwrap(),
        "registration-before-the-tests",
        datetime!(2000-01-01 00:00:00 UTC),
    );
    update.gp_practice = Some(Some(practice.to_owned()));
    hub::app::register::record_event(&hub.register, &hub.audit, update, NOW)
        .await
        .unwrap();
}

fn deliveries_to(hub: &Hub, subscriber: &Subscriber) -> usize {
    hub.publisher
        .sent()
        .iter()
        .filter(|sent| sent.attribute(SUBSCRIBER_ATTRIBUTE) == Some(subscriber.id.as_str()))
        .count()
}

/// A GP's explicit subscription rests on the register placing the child at
/// its practice. The change of GP that moves the child away still reaches
/// it (as NEMS sends a move to the place left), also when dispatch is
/// retried; then the subscription is off, says why, and receives nothing
/// more. A subscription on declared direct care goes on.
#[tokio::test]
async fn a_gps_subscription_ends_with_the_move_that_takes_the_child_away() {
    let hub = Hub::default();
    let types = [EventType::PdsChangeOfGp, EventType::Vaccinations];
    // The change-of-GP example moves the child from B85612 to B86056.
    registered_at(&hub, "B85612").await;
    let old_gp = hub.onboard("B85612", &types).await;
    let new_gp = hub.onboard("B86056", &types).await;
    let health_visitor = hub.onboard("RR8", &types).await;
    let criteria = criteria_for(PATIENT, &types, "");
    let old_gps = hub.subscribe(&old_gp, &criteria).await;
    let new_gps = hub.subscribe(&new_gp, &criteria).await;
    let visitors = hub.subscribe(&health_visitor, &criteria).await;
    assert_eq!(
        old_gps.basis,
        Some(hub::basis::Basis::RegisteredGp {
            practice: OdsCode::parse("B85612").unwrap()
        })
    );
    assert_eq!(new_gps.basis, Some(hub::basis::Basis::DeclaredDirectCare));
    assert_eq!(visitors.basis, Some(hub::basis::Basis::DeclaredDirectCare));

    let change = stored(
        EventType::PdsChangeOfGp,
        FHIR_XML,
        &xml_fixture("PDS-Change-Of-GP-ems-example"),
    )
    .await;
    assert_eq!(
        hub.dispatch(&change, NOW).await,
        Dispatched::Delivered { recipients: 3 }
    );
    // Each delivery's audit record names the basis it rests on.
    let basis_of = |subscriber_id: &str| {
        hub.audit
            .records()
            .into_iter()
            .find(|record| {
                record.action == hub::audit::Action::Deliver
                    && record.subscriber_id.as_deref() == Some(subscriber_id)
            })
            .and_then(|record| record.detail)
            .unwrap_or_default()
    };
    assert_eq!(
        basis_of(&old_gp.id),
        format!("basis: registered-gp B85612 ({})", old_gps.id)
    );
    assert_eq!(
        basis_of(&health_visitor.id),
        format!("basis: declared-direct-care ({})", visitors.id)
    );
    let ended = hub
        .subscriptions
        .get(&old_gps.id)
        .await
        .unwrap()
        .expect("the subscription is kept");
    let end = ended.ended.clone().expect("ended by the move");
    assert_eq!(end.reason, hub::basis::EndReason::GpChanged);
    assert_eq!(end.last_event.as_deref(), Some(change.event_key.as_str()));
    let shown = ended.to_json(NOW);
    assert_eq!(shown["status"], "off", "{shown}");
    assert!(
        shown["error"].as_str().unwrap().contains("B85612"),
        "{shown}"
    );
    assert!(ended.to_xml(NOW).contains("<error value=\"basis lost"));
    let lost: Vec<_> = hub
        .audit
        .records()
        .into_iter()
        .filter(|record| record.action == hub::audit::Action::BasisLost)
        .collect();
    assert_eq!(lost.len(), 1, "{lost:?}");
    assert_eq!(
        lost[0].subscription_id.as_deref(),
        Some(old_gps.id.as_str())
    );
    assert_eq!(lost[0].nhs_number.as_deref(), Some(PATIENT));
    // The copies dispatch reads are ended too.
    assert!(
        hub.candidates(PATIENT, EventType::Vaccinations)
            .await
            .iter()
            .any(|candidate| candidate.id == old_gps.id && candidate.ended.is_some())
    );

    // A retried dispatch of the move still delivers it to the practice left.
    hub.dispatch(&change, NOW).await;
    assert_eq!(deliveries_to(&hub, &old_gp), 2);
    assert_eq!(
        hub.audit
            .records()
            .iter()
            .filter(|record| record.action == hub::audit::Action::BasisLost)
            .count(),
        1,
        "one record of the end, however often dispatch is retried"
    );

    // Later events reach the others only.
    let vaccination = stored(EventType::Vaccinations, FHIR_XML, &vaccination_xml()).await;
    hub.dispatch(&vaccination, NOW).await;
    assert_eq!(deliveries_to(&hub, &old_gp), 2);
    assert_eq!(deliveries_to(&hub, &new_gp), 3);
    assert_eq!(deliveries_to(&hub, &health_visitor), 3);

    // The new practice's next subscription rests on the register; the old
    // practice may still declare direct care.
    assert_eq!(
        hub.subscribe(&new_gp, &criteria).await.basis,
        Some(hub::basis::Basis::RegisteredGp {
            practice: OdsCode::parse("B86056").unwrap()
        })
    );
    assert_eq!(
        hub.subscribe(&old_gp, &criteria).await.basis,
        Some(hub::basis::Basis::DeclaredDirectCare)
    );
}

/// A practice's subscription that names the move's event type but whose
/// filters keep the move from it still ends with the move: its basis is
/// judged whether or not the event is delivered to it.
#[tokio::test]
async fn a_move_ends_a_gps_subscription_whose_filters_keep_the_move_from_it() {
    let hub = Hub::default();
    let types = [EventType::PdsChangeOfGp, EventType::Vaccinations];
    registered_at(&hub, "B85612").await;
    let old_gp = hub.onboard("B85612", &types).await;
    let adults_only = hub
        .subscribe(&old_gp, &criteria_for(PATIENT, &types, "&Patient.age=gt90"))
        .await;
    assert!(matches!(
        adults_only.basis,
        Some(hub::basis::Basis::RegisteredGp { .. })
    ));
    let change = stored(
        EventType::PdsChangeOfGp,
        FHIR_XML,
        &xml_fixture("PDS-Change-Of-GP-ems-example"),
    )
    .await;
    hub.dispatch(&change, NOW).await;
    assert_eq!(
        deliveries_to(&hub, &old_gp),
        0,
        "the filter keeps the move from it"
    );
    let ended = hub
        .subscriptions
        .get(&adults_only.id)
        .await
        .unwrap()
        .and_then(|subscription| subscription.ended)
        .expect("ended by the move");
    assert_eq!(ended.reason, hub::basis::EndReason::GpChanged);
    assert_eq!(ended.last_event, None, "it never received the move");
}

/// An area service's explicit subscription rests on the area its client is
/// registered to serve (its generic-subscription grants) when the child
/// lives there; the event that shows the child has moved out still reaches
/// it, then it ends. A subscriber granted another area declares direct
/// care.
#[tokio::test]
async fn an_area_services_subscription_ends_when_the_child_moves_out_of_its_area() {
    let mut hub = hub_with_sample_areas();
    hub.permits.grants = hub::basis::Grants::from([(
        "CHO_POSTCODE_CCG".to_owned(),
        BTreeSet::from(["15F".to_owned()]),
    )]);
    let vaccinations = EventType::Vaccinations;
    // The birth puts the baby in area A (sub-ICB 15F).
    let birth = stored(
        EventType::PdsBirthNotification,
        FHIR_XML,
        &birth_in_area_a(),
    )
    .await;
    hub.dispatch(&birth, NOW).await;
    let area_a = hub.onboard("RR8", &[vaccinations]).await;
    let criteria = criteria_for(BABY, &[vaccinations], "");
    let subscription = hub.subscribe(&area_a, &criteria).await;
    assert_eq!(
        subscription.basis,
        Some(hub::basis::Basis::Area {
            rule: "CHO_POSTCODE_CCG".into(),
            code: "15F".into()
        })
    );
    // The vaccination gives a home in area C: it still reaches A, the area
    // the child has left, and ends A's subscription.
    let later = vaccination_xml().replace(
        r#"<lastUpdated value="2017-11-01T15:00:33+00:00"/>"#,
        r#"<lastUpdated value="2018-01-01T09:00:00+00:00"/>"#,
    );
    let vaccination = stored(vaccinations, FHIR_XML, &later).await;
    hub.dispatch(&vaccination, NOW).await;
    assert_eq!(deliveries_to(&hub, &area_a), 1);
    let ended = hub
        .subscriptions
        .get(&subscription.id)
        .await
        .unwrap()
        .unwrap();
    let end = ended.ended.expect("ended by the move out");
    assert_eq!(end.reason, hub::basis::EndReason::MovedOutOfArea);
    assert!(
        end.detail.contains("CHO_POSTCODE_CCG 15F"),
        "{}",
        end.detail
    );
    // Nothing more reaches it, and a new subscription declares direct care.
    let again = later
        .replace("2018-01-01T09:00:00", "2018-02-01T09:00:00")
        .replace(VACCINATION_ID, "0b1e7a52-3c4d-4e5f-8a9b-0c1d2e3f4a5b");
    assert!(!again.contains(VACCINATION_ID));
    let next = stored(vaccinations, FHIR_XML, &again).await;
    hub.dispatch(&next, NOW).await;
    assert_eq!(deliveries_to(&hub, &area_a), 1);
    assert_eq!(
        hub.subscribe(&area_a, &criteria).await.basis,
        Some(hub::basis::Basis::DeclaredDirectCare)
    );
}

/// A birth notification links the mother to the baby; a parent's app
/// acting for the mother subscribes to the baby through that link, and to
/// no other child; when it stops acting for her, the next event finds the
/// basis lost and the subscription ends.
#[tokio::test]
async fn a_mothers_app_subscribes_to_her_baby_through_the_birth_link() {
    let mut hub = hub_with_sample_areas();
    hub.permits.pchr = Some(hub::pchr::PchrRegistration {
        minimum_verification: hub::pchr::VerificationLevel::P9,
    });
    let birth = stored(
        EventType::PdsBirthNotification,
        FHIR_XML,
        &birth_in_area_a(),
    )
    .await;
    let mother = birth.nhs_number.expect("the birth is routed on the mother");
    let baby = NhsNumber::parse(BABY).unwrap();
    hub.dispatch(&birth, NOW).await;
    hub.dispatch(&birth, NOW).await;
    let links = hub.relationships.all();
    assert_eq!(links.len(), 1, "one link, however often dispatched");
    assert_eq!(
        (
            links[0].child_nhs,
            links[0].person_nhs,
            links[0].relationship_type.as_str()
        ),
        (baby, mother, "MTH")
    );
    assert_eq!(
        hub.audit
            .records()
            .iter()
            .filter(
                |record| record.action == hub::audit::Action::RelationshipChange
                    && record.nhs_number.as_deref() == Some(BABY)
            )
            .count(),
        1
    );

    let vaccinations = EventType::Vaccinations;
    let app = hub.onboard("Y05PCH", &[vaccinations]).await;
    let for_baby = subscription_json(
        "Y05PCH",
        &criteria_for(BABY, &[vaccinations], ""),
        &app.id,
        None,
    )
    .to_string();
    // Not yet acting for the mother: no basis.
    let refused = hub
        .create(&for_baby, Encoding::Json, NOW)
        .await
        .unwrap_err();
    assert!(format!("{refused:?}").contains("no basis"), "{refused:?}");
    let attest = |level| hub::pchr::ActedFor {
        subscriber_id: app.id.clone(),
        person: mother,
        verification_level: level,
        method: "nhs-login".into(),
        verified_at: "2024-06-01T10:00:00Z".into(),
        attested_at: "2024-06-01T10:00:01.000Z".into(),
        status: hub::pchr::ActingStatus::Active,
        ended_at: None,
    };
    // Acting for her below the app's minimum is no basis either.
    hub.relationships
        .act_for(&attest(hub::pchr::VerificationLevel::P5))
        .await
        .unwrap();
    assert!(hub.create(&for_baby, Encoding::Json, NOW).await.is_err());
    hub.relationships
        .act_for(&attest(hub::pchr::VerificationLevel::P9))
        .await
        .unwrap();
    let subscription = hub.create(&for_baby, Encoding::Json, NOW).await.unwrap();
    assert_eq!(
        subscription.basis,
        Some(hub::basis::Basis::Relationship { person: mother })
    );
    // VRS relates them too, then ends its relationship: the birth link
    // still holds, and so does the subscription.
    let vrs = Caller {
        client_id: "vrs-publisher".into(),
        ods_code: OdsCode::parse("X26").unwrap(),
        roles: BTreeSet::from([Role::RelationshipPublisher]),
        subscriber_id: None,
        publish_event_types: BTreeSet::new(),
        publish_for_ods: BTreeSet::new(),
        subscribe_explicit: false,
        subscribe_generic: Default::default(),
        sensitivity_authority: false,
        relationship_sources: BTreeSet::from(["uk.nhs.validated-relationships-service".to_owned()]),
        pchr: None,
    };
    let ports = Adapters::new()
        .relationships(&hub.relationships)
        .subscriptions(&hub.subscriptions)
        .audit(&hub.audit);
    for name in ["vrs-proxy-role-created-1", "vrs-proxy-role-deleted-1"] {
        let body = std::fs::read_to_string(events_dir().join(format!("relationships/{name}.json")))
            .unwrap();
        hub::app::relationship::publish_relationship_event(&ports, &vrs, &body, NOW)
            .await
            .unwrap();
    }
    let kept = hub
        .subscriptions
        .get(&subscription.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(kept.ended, None, "the birth link still relates them");

    // A child related to no one the app acts for stays out of reach.
    let other = subscription_json(
        "Y05PCH",
        &criteria_for(OTHER_PATIENT, &[vaccinations], ""),
        &app.id,
        None,
    )
    .to_string();
    assert!(hub.create(&other, Encoding::Json, NOW).await.is_err());

    let later = vaccination_xml().replace(
        r#"<lastUpdated value="2017-11-01T15:00:33+00:00"/>"#,
        r#"<lastUpdated value="2018-01-01T09:00:00+00:00"/>"#,
    );
    hub.dispatch(&stored(vaccinations, FHIR_XML, &later).await, NOW)
        .await;
    assert_eq!(deliveries_to(&hub, &app), 1);

    // The app stops acting for the mother: the next event ends the
    // subscription and does not reach it.
    assert!(
        hub.relationships
            .stop_acting_for(&app.id, mother, "2024-06-01T11:00:00.000Z")
            .await
            .unwrap()
    );
    let next = later
        .replace("2018-01-01T09:00:00", "2018-02-01T09:00:00")
        .replace(VACCINATION_ID, "0b1e7a52-3c4d-4e5f-8a9b-0c1d2e3f4a5b");
    hub.dispatch(&stored(vaccinations, FHIR_XML, &next).await, NOW)
        .await;
    assert_eq!(deliveries_to(&hub, &app), 1);
    let ended = hub
        .subscriptions
        .get(&subscription.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        ended.ended.map(|ended| ended.reason),
        Some(hub::basis::EndReason::RelationshipEnded)
    );
}
