//! The five routing hazards of the clinical safety review, each as the end
//! to end scenario that showed it, through the local stack: every queue of
//! the scenario is watched, and must receive exactly what
//! docs/subscriptions.md ("The routing rules") says.
//!
//! 1. An unlabelled PDS event, from anyone but the demographics authority,
//!    leaves a sensitive flag set; the authority's record change clears it;
//!    events withheld meanwhile stay withheld.
//! 2. A change of GP without a practice (a de-registration) leaves the child
//!    unregistered.
//! 3. A birth notification without routing demographics is accepted and
//!    reaches the baby's area only.
//! 4. Another child's resource with the same business identifier does not
//!    make a child's event out of order.
//! 5. A GP registration filter reads the child's register record first.

use std::time::Duration;

use crate::scenario::*;
use e2e_tests::{Hub, Subscriber, attribute, fixture};
use serde_json::{Value, json};

const RECORD_CHANGE: &str = "pds-record-change-1";
/// The MessageHeader.id of the record change example.
const RECORD_CHANGE_ID: &str = "3cfdf880-13e9-4f6b-8299-53e96ef5ec02";

/// The record change example for the baby, with its own id, stated at
/// `stated` (its timestamp and a `meta.lastUpdated` added), and a
/// confidentiality label when `security` is given.
fn record_change(id: &str, stated: &str, security: Option<&str>) -> String {
    let body = fixture("nems/PDS-Record-Change.xml");
    let body = replace_exactly(&body, RECORD_CHANGE_ID, id, 2);
    let body = replace_exactly(
        &body,
        r#"<timestamp value="2019-11-01T15:00:00+00:00"/>"#,
        &format!(r#"<timestamp value="{stated}"/>"#),
        1,
    );
    let patient_profile = r#"<versionId value="1"/>
					<profile value="https://fhir.hl7.org.uk/STU3/StructureDefinition/CareConnect-Patient-1"/>"#;
    match security {
        Some(code) => replace_exactly(
            &body,
            patient_profile,
            &format!(
                r#"{patient_profile}<security><system value="http://hl7.org/fhir/v3/Confidentiality"/><code value="{code}"/></security>"#
            ),
            1,
        ),
        None => body,
    }
}

/// The change of GP example (the baby registers at A's practice, leaving
/// B's), with its own id, stated at `stated`.
fn change_of_gp(id: &str, stated: &str) -> String {
    let body = fixture("nems/PDS-Change-Of-GP-ems-example.xml");
    let body = replace_exactly(&body, PDS_EXAMPLE_ID, id, 2);
    let body = replace_exactly(
        &body,
        r#"<lastUpdated value="2017-11-01T15:00:33+00:00"/>"#,
        &format!(r#"<lastUpdated value="{stated}"/>"#),
        1,
    );
    replace_exactly(
        &body,
        r#"<timestamp value="2019-11-01T15:00:00+00:00"/>"#,
        &format!(r#"<timestamp value="{stated}"/>"#),
        1,
    )
}

/// A de-registration: the change of GP example whose Patient names no
/// practice and which names no practice left, so that only the register
/// can say where the child was registered.
fn de_registration(id: &str, stated: &str) -> String {
    let body = change_of_gp(id, stated);
    let body = cut_between(&body, "<generalPractitioner>", "</generalPractitioner>");
    cut_between(
        &body,
        r#"<status value="finished"/>"#,
        "</managingOrganization>",
    )
}

/// `body` without the first span from `start` to the end of `end`
/// (both must be there).
fn cut_between(body: &str, start: &str, end: &str) -> String {
    let from = body
        .find(start)
        .unwrap_or_else(|| panic!("{start} in the fixture"));
    let to = from
        + body[from..]
            .find(end)
            .unwrap_or_else(|| panic!("{end} after {start}"))
        + end.len();
    format!("{}{}", &body[..from], &body[to..])
}

/// An explicit subscription of the subscriber for the child and the event
/// types, returned as a party whose every event type maps to it.
async fn explicit_party(
    hub: &Hub,
    name: &'static str,
    subscriber: Subscriber,
    ods: &str,
    child: &str,
    event_types: &[&str],
    extra: &str,
) -> Party {
    let events: String = event_types
        .iter()
        .map(|event_type| format!("&MessageHeader.event={event_type}"))
        .collect();
    let criteria = format!(
        "/Bundle?type=message&Patient.identifier=http://fhir.nhs.net/Id/nhs-number|{child}{events}{extra}"
    );
    let id = subscribe(hub, &subscriber, ods, &criteria).await;
    Party {
        name,
        subscriber,
        subscriptions: event_types
            .iter()
            .map(|event_type| (event_type.to_string(), id.clone()))
            .collect(),
    }
}

fn is_withheld(outcome: &Value) -> bool {
    spine_codes(outcome).contains(&"SENSITIVE_PATIENT".to_owned())
}

/// The MessageHeader ids of a child's history as a subscriber reads it,
/// every version (the record changes are versions of one Patient).
async fn history_ids(hub: &Hub, subscriber: &Subscriber, child: &str) -> Vec<String> {
    let response = hub
        .request(
            reqwest::Method::GET,
            &format!("/children/{child}/events?versions=all"),
            &subscriber.token,
        )
        .header("accept", "application/fhir+json")
        .send()
        .await
        .expect("GET /children/{nhs}/events");
    assert_eq!(response.status().as_u16(), 200);
    let bundle: Value = response.json().await.expect("a Bundle");
    bundle["entry"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|entry| entry["search"]["mode"] == "match")
        .filter_map(|entry| {
            let url = entry["fullUrl"].as_str()?.strip_prefix("/events/")?;
            Some(url.split('?').next()?.to_owned())
        })
        .collect()
}

/// `POST /events/{id}/$release` as the demo operator: the status and the
/// OperationOutcome.
async fn release(hub: &Hub, event_type: &str, id: &str) -> (u16, Value) {
    let operator = hub.token(e2e_tests::DEMO_OPERATOR).await;
    let response = hub
        .request(
            reqwest::Method::POST,
            &format!("/events/{id}/$release?eventType={event_type}"),
            &operator,
        )
        .header("accept", "application/fhir+json")
        .send()
        .await
        .expect("POST /events/{id}/$release");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or_default())
}

/// The register's `sensitive` fact about the child.
async fn sensitive_fact(hub: &Hub, child: &str) -> Value {
    child_record(hub, child).await["sensitive"].clone()
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unlabelled_pds_event_leaves_a_sensitive_flag_set_until_the_authority_clears_it() {
    let hub = Hub::start().await;
    let types = [VACCINATION, ADDRESS, RECORD_CHANGE];
    let country = party(
        &hub,
        "England (generic)",
        "RY6",
        COUNTRYCODE,
        ENGLAND,
        &types,
        "",
    )
    .await;
    let gp_subscriber = hub.onboard(C_PRACTICE, &types).await;
    let gp = explicit_party(
        &hub,
        "GP (explicit)",
        gp_subscriber,
        C_PRACTICE,
        BABY,
        &types,
        "",
    )
    .await;

    // A labelled vaccination flags the child.
    let labelled = "5e0b2c1d-0000-4000-8000-000000000001";
    let outcome = publish(
        &hub,
        VACCINATION,
        &vaccination(
            labelled,
            BABY,
            "2017-10-02",
            "2018-02-10T10:00:00+00:00",
            Some(C_POSTCODE),
            Some("R"),
        ),
    )
    .await;
    assert!(is_withheld(&outcome), "{outcome}");
    let labelled = event_key(VACCINATION, labelled);
    wait_until_dispatched(&hub, BABY, &labelled).await;

    // A newer, unlabelled change of address from a publisher that is not the
    // demographics authority: withheld, and its 202 says so.
    let moved = "5e0b2c1d-0000-4000-8000-000000000002";
    let outcome = publish(
        &hub,
        ADDRESS,
        &change_of_address(moved, "2019-05-01T10:00:00+00:00", C_POSTCODE, A_POSTCODE),
    )
    .await;
    assert!(is_withheld(&outcome), "a 202 that says withheld: {outcome}");
    let moved = event_key(ADDRESS, moved);
    wait_until_dispatched(&hub, BABY, &moved).await;

    // A newer, unlabelled record change from the same publisher, granted
    // pds-record-change-1 but not the authority: withheld too.
    let not_authority = "5e0b2c1d-0000-4000-8000-000000000003";
    let outcome = publish(
        &hub,
        RECORD_CHANGE,
        &record_change(not_authority, "2019-06-01T10:00:00+00:00", None),
    )
    .await;
    assert!(is_withheld(&outcome), "{outcome}");
    let not_authority = event_key(RECORD_CHANGE, not_authority);
    wait_until_dispatched(&hub, BABY, &not_authority).await;
    assert_deliveries(
        &hub,
        "events of a child flagged sensitive",
        &[(&country, &[]), (&gp, &[])],
    )
    .await;
    assert_eq!(
        sensitive_fact(&hub, BABY).await,
        json!({"value": true, "changedAt": "2018-02-10T10:00:00Z", "byEvent": labelled})
    );

    // Nothing withheld can be released while the child is flagged.
    let (status, outcome) = release(&hub, ADDRESS, "5e0b2c1d-0000-4000-8000-000000000002").await;
    assert_eq!(status, 422, "{outcome}");

    // The demographics service (X26) holds the authority by default: its
    // unlabelled record change clears the flag, and is itself delivered.
    let authority = hub
        .register_client(
            "publisher",
            "X26",
            json!({"publishEventTypes": [RECORD_CHANGE], "publishForOds": ["X26"]}),
        )
        .await;
    let authority_token = hub.token_for(&authority).await;
    let cleared = "5e0b2c1d-0000-4000-8000-000000000004";
    let (status, outcome) = hub
        .publish_as(
            &authority_token,
            RECORD_CHANGE,
            Some("application/fhir+xml"),
            &record_change(cleared, "2019-07-01T10:00:00+00:00", None),
        )
        .await;
    assert_eq!(status, 202, "{outcome}");
    assert!(!is_withheld(&outcome), "{outcome}");
    let cleared = event_key(RECORD_CHANGE, cleared);
    assert_deliveries(
        &hub,
        "the authority's record change",
        &[(&country, &[&cleared]), (&gp, &[&cleared])],
    )
    .await;
    assert_eq!(
        sensitive_fact(&hub, BABY).await,
        json!({"value": false, "changedAt": "2019-07-01T10:00:00Z", "byEvent": cleared})
    );

    // What was withheld stays withheld: the subscriber's history shows only
    // the authority's record change.
    assert_eq!(
        history_ids(&hub, &gp.subscriber, BABY).await,
        ["5e0b2c1d-0000-4000-8000-000000000004"]
    );

    // An operator may release what was withheld only for the flag: the
    // record change that did not carry a label, not the labelled vaccination.
    let (status, outcome) =
        release(&hub, VACCINATION, "5e0b2c1d-0000-4000-8000-000000000001").await;
    assert_eq!(status, 422, "{outcome}");
    let (status, outcome) =
        release(&hub, RECORD_CHANGE, "5e0b2c1d-0000-4000-8000-000000000003").await;
    assert_eq!(status, 200, "{outcome}");
    let mut history = history_ids(&hub, &gp.subscriber, BABY).await;
    history.sort();
    assert_eq!(
        history,
        [
            "5e0b2c1d-0000-4000-8000-000000000003",
            "5e0b2c1d-0000-4000-8000-000000000004"
        ]
    );

    // Both changes of the flag, and the release, are in the child's trail.
    let (status, trail) = hub.audit_of_patient(BABY).await;
    assert_eq!(status, 200);
    let mut changes: Vec<(String, String)> = trail["entries"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|entry| entry["action"] == "sensitivity-change")
        .map(|entry| {
            (
                entry["eventKey"].as_str().unwrap_or_default().to_owned(),
                entry["detail"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    changes.sort();
    let mut expected = vec![
        (labelled.clone(), "flagged sensitive".to_owned()),
        (
            cleared.clone(),
            "sensitive flag cleared by the demographics authority".to_owned(),
        ),
    ];
    expected.sort();
    assert_eq!(changes, expected, "{trail}");
    let released = trail["entries"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|entry| {
            entry["action"] == "release"
                && entry["status"] == 200
                && entry["eventKey"] == not_authority.as_str()
        });
    assert!(released, "{trail}");

    // The child's events flow again.
    let later = "5e0b2c1d-0000-4000-8000-000000000005";
    let outcome = publish(
        &hub,
        VACCINATION,
        &vaccination(
            later,
            BABY,
            "2017-10-02",
            "2019-08-01T10:00:00+00:00",
            Some(A_POSTCODE),
            None,
        ),
    )
    .await;
    assert!(!is_withheld(&outcome), "{outcome}");
    let later = event_key(VACCINATION, later);
    assert_deliveries(
        &hub,
        "a vaccination after the flag was cleared",
        &[(&country, &[&later]), (&gp, &[&later])],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_de_registration_leaves_the_child_unregistered() {
    let hub = Hub::start().await;
    let types = [GP_CHANGE, VACCINATION];
    let gp_a = party(&hub, "GP A", A_PRACTICE, GP_GP_GP, A_PRACTICE, &types, "").await;
    let gp_b = party(&hub, "GP B", B_PRACTICE, GP_GP_GP, B_PRACTICE, &types, "").await;
    let chis_a = party(
        &hub,
        "CHIS A (by practice)",
        "RY6",
        CHO_GP_CCG,
        A_SUB_ICB,
        &types,
        "",
    )
    .await;
    // Receives every event of the child: what shows that dispatch has run
    // when no one else should receive an event.
    let subscriber = hub.onboard(C_PRACTICE, &types).await;
    let witness = explicit_party(
        &hub,
        "witness (explicit)",
        subscriber,
        C_PRACTICE,
        BABY,
        &types,
        "",
    )
    .await;

    let registered = "6e0b2c1d-0000-4000-8000-000000000001";
    publish(
        &hub,
        GP_CHANGE,
        &change_of_gp(registered, "2019-01-01T10:00:00+00:00"),
    )
    .await;
    let registered = event_key(GP_CHANGE, registered);
    assert_deliveries(
        &hub,
        "the registration at A (from B)",
        &[
            (&gp_a, &[&registered]),
            (&gp_b, &[&registered]),
            (&chis_a, &[&registered]),
            (&witness, &[&registered]),
        ],
    )
    .await;

    let left = "6e0b2c1d-0000-4000-8000-000000000002";
    publish(
        &hub,
        GP_CHANGE,
        &de_registration(left, "2019-02-01T10:00:00+00:00"),
    )
    .await;
    let left = event_key(GP_CHANGE, left);
    // The practice left hears of it; the register no longer places the
    // child at any practice.
    assert_deliveries(
        &hub,
        "the de-registration",
        &[
            (&gp_a, &[&left]),
            (&gp_b, &[]),
            (&chis_a, &[&left]),
            (&witness, &[&left]),
        ],
    )
    .await;
    let record = child_record(&hub, BABY).await;
    assert_eq!(record["gpPractice"]["value"], Value::Null, "{record}");
    assert_eq!(record["gpPractice"]["byEvent"], left.as_str(), "{record}");

    // A later vaccination whose Patient names no GP reaches no practice.
    let later = "6e0b2c1d-0000-4000-8000-000000000003";
    publish(
        &hub,
        VACCINATION,
        &vaccination(
            later,
            BABY,
            "2017-10-02",
            "2019-03-01T10:00:00+00:00",
            Some(A_POSTCODE),
            None,
        ),
    )
    .await;
    let later = event_key(VACCINATION, later);
    assert_deliveries(
        &hub,
        "a vaccination of the unregistered child",
        &[
            (&gp_a, &[]),
            (&gp_b, &[]),
            (&chis_a, &[]),
            (&witness, &[&later]),
        ],
    )
    .await;
}

/// The NEMS example of a birth registered without the mother's details,
/// without its routing demographics extension, the baby living in area A
/// and the mother registered at A's practice.
fn birth_without_routing_demographics() -> String {
    let body = fixture("nems-spec/BirthNotificationWithoutMother.xml");
    let routing = body
        .find("Extension-RoutingDemographics-1")
        .and_then(|at| body[..at].rfind("<extension"))
        .expect("the routing demographics extension");
    let next = body[routing..]
        .find("Extension-MessageEventType-1")
        .and_then(|at| body[routing..routing + at].rfind("<extension"))
        .expect("the message event type extension after it");
    let body = format!("{}{}", &body[..routing], &body[routing + next..]);
    // The example's responsible organisation is not among its entries:
    // named here by its Spine directory URL, as the other PDS examples do.
    let responsible = body
        .find("<responsible>")
        .expect("MessageHeader.responsible");
    let body = format!(
        "{}{}",
        &body[..responsible],
        body[responsible..].replacen(
            "urn:uuid:a324be21-5e41-4d83-9f1c-29f19ae3a2d1",
            "https://directory.spineservices.nhs.uk/STU3/Organization/X26",
            1
        )
    );
    let body = replace_exactly(
        &body,
        r#"<postalCode value="EX2 5SE"/>"#,
        &format!(r#"<postalCode value="{A_POSTCODE}"/>"#),
        1,
    );
    replace_exactly(
        &body,
        "Organization/E82025",
        &format!("Organization/{A_PRACTICE}"),
        1,
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn a_birth_without_routing_demographics_reaches_the_babys_area_only() {
    let hub = Hub::start().await;
    let births = [BIRTH];
    let chis_a = party(
        &hub,
        "CHIS A (postcode)",
        "RY6",
        CHO_POSTCODE_CCG,
        A_SUB_ICB,
        &births,
        "",
    )
    .await;
    let visiting_a = party(
        &hub,
        "health visiting A",
        "RY7",
        UHV_POSTCODE_LACODE,
        A_LOCAL_AUTHORITY,
        &births,
        "",
    )
    .await;
    let chis_b = party(
        &hub,
        "CHIS B (postcode)",
        "RY8",
        CHO_POSTCODE_CCG,
        B_SUB_ICB,
        &births,
        "",
    )
    .await;
    // The mother's practice and its area: her entry must not lend the baby
    // her place.
    let mothers_gp = party(
        &hub,
        "the mother's GP",
        A_PRACTICE,
        GP_GP_GP,
        A_PRACTICE,
        &births,
        "",
    )
    .await;
    let chis_a_by_practice = party(
        &hub,
        "CHIS A (practice)",
        "RY9",
        CHO_GP_CCG,
        A_SUB_ICB,
        &births,
        "",
    )
    .await;

    let (status, outcome) = hub
        .publish(
            BIRTH,
            Some("application/fhir+xml"),
            &birth_without_routing_demographics(),
        )
        .await;
    assert_eq!(status, 202, "{outcome}");
    let birth = event_key(BIRTH, "0e1d52a7-8ab1-4fc4-adf0-ecc75073f4c4");
    assert_deliveries(
        &hub,
        "a birth without routing demographics",
        &[
            (&chis_a, &[&birth]),
            (&visiting_a, &[&birth]),
            (&chis_b, &[]),
            (&mothers_gp, &[]),
            (&chis_a_by_practice, &[]),
        ],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn another_childs_resource_with_the_same_identifier_does_not_make_an_event_out_of_order() {
    let hub = Hub::start().await;
    let subscriber = hub.onboard(C_PRACTICE, &[VACCINATION]).await;
    let other = explicit_party(
        &hub,
        "GP of the other child",
        subscriber,
        C_PRACTICE,
        MOTHER,
        &[VACCINATION],
        "",
    )
    .await;

    // The NEMS vaccination example for BABY, then the same business
    // identifier for another child, stated earlier.
    publish(
        &hub,
        VACCINATION,
        &vaccination(
            "7e0b2c1d-0000-4000-8000-000000000001",
            BABY,
            "2017-10-02",
            "2019-01-01T10:00:00+00:00",
            Some(C_POSTCODE),
            None,
        ),
    )
    .await;
    let outcome = publish(
        &hub,
        VACCINATION,
        &vaccination(
            "7e0b2c1d-0000-4000-8000-000000000002",
            MOTHER,
            "2017-10-02",
            "2018-01-01T10:00:00+00:00",
            Some(C_POSTCODE),
            None,
        ),
    )
    .await;
    assert!(
        !spine_codes(&outcome).contains(&"OUT_OF_ORDER".to_owned()),
        "{outcome}"
    );
    let received = hub
        .drain(&other.subscriber.queue_url, Duration::from_secs(15))
        .await;
    assert_eq!(received.len(), 1, "one delivery to the other child's GP");
    assert_eq!(
        attribute(&received[0], "eventId"),
        Some("7e0b2c1d-0000-4000-8000-000000000002")
    );
    assert_eq!(attribute(&received[0], "outOfOrder"), None);
}

#[tokio::test(flavor = "multi_thread")]
async fn gp_registration_filters_read_the_childs_register_record() {
    let hub = Hub::start().await;
    let types = [VACCINATION];
    let registered_only = "&GPRegistration=RegisteredOnly";
    let unregistered_only = "&GPRegistration=UnregisteredOnly";
    let subscriber = hub.onboard(C_PRACTICE, &types).await;
    let explicit_registered = explicit_party(
        &hub,
        "explicit, registered only",
        subscriber,
        C_PRACTICE,
        BABY,
        &types,
        registered_only,
    )
    .await;
    let subscriber = hub.onboard(B_PRACTICE, &types).await;
    let explicit_unregistered = explicit_party(
        &hub,
        "explicit, unregistered only",
        subscriber,
        B_PRACTICE,
        BABY,
        &types,
        unregistered_only,
    )
    .await;
    let generic_registered = party(
        &hub,
        "GP A, registered only",
        A_PRACTICE,
        GP_GP_GP,
        A_PRACTICE,
        &types,
        registered_only,
    )
    .await;
    let generic_unregistered = party(
        &hub,
        "CHIS A, unregistered only",
        "RY6",
        CHO_POSTCODE_CCG,
        A_SUB_ICB,
        &types,
        unregistered_only,
    )
    .await;
    let subscriber = hub.onboard(A_PRACTICE, &[GP_CHANGE]).await;
    let witness = explicit_party(
        &hub,
        "witness (explicit)",
        subscriber,
        A_PRACTICE,
        BABY,
        &[GP_CHANGE],
        "",
    )
    .await;

    // The register holds the child at A's practice...
    let registered = "8e0b2c1d-0000-4000-8000-000000000001";
    publish(
        &hub,
        GP_CHANGE,
        &change_of_gp(registered, "2019-01-01T10:00:00+00:00"),
    )
    .await;
    let registered = event_key(GP_CHANGE, registered);
    assert_deliveries(&hub, "the registration", &[(&witness, &[&registered])]).await;

    // ... so a vaccination whose Patient names no GP is of a registered child.
    let vaccinated = "8e0b2c1d-0000-4000-8000-000000000002";
    publish(
        &hub,
        VACCINATION,
        &vaccination(
            vaccinated,
            BABY,
            "2017-10-02",
            "2019-02-01T10:00:00+00:00",
            Some(A_POSTCODE),
            None,
        ),
    )
    .await;
    let vaccinated = event_key(VACCINATION, vaccinated);
    assert_deliveries(
        &hub,
        "a vaccination naming no GP, of a child registered at A",
        &[
            (&explicit_registered, &[&vaccinated]),
            (&explicit_unregistered, &[]),
            (&generic_registered, &[&vaccinated]),
            (&generic_unregistered, &[]),
        ],
    )
    .await;
}
