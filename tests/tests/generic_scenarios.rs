//! Generic (area and practice) subscriptions end to end: the scenarios of
//! issue 5 through the local stack and its sample reference data
//! (events/reference/README.md):
//!
//! | | Area A: Leeds | Area B: Kirklees | Area C: County Durham |
//! |---|---|---|---|
//! | Postcodes used | `LS17 7DF` | `WF15 6QH` | `DH1 2TF` |
//! | Local authority (`UHV_POSTCODE_LACODE`) | `E08000035` | `E08000034` | `E06000047` |
//! | Sub-ICB location (`CHO_POSTCODE_CCG`, `CHO_GP_CCG`) | `15F` | `X2C4Y` | `84H` |
//! | GP practice (`GP_GP_GP`) | `B86056` | `B85612` | `A83627` |
//!
//! Each test starts its own hub, onboards its subscribers ("parties"), each
//! with one subscription per event type, publishes as the demo publisher
//! and then says, for every party, exactly which events reach its queue:
//! it waits for the expected deliveries, keeps watching every queue a few
//! seconds more for any that should not come, and compares the lot.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use e2e_tests::{Hub, Subscriber, attribute, fixture};
use serde_json::{Value, json};

const XML: &str = "application/fhir+xml";

const BIRTH: &str = "pds-birth-notification-1";
const ADDRESS: &str = "pds-change-of-address-1";
const GP_CHANGE: &str = "pds-change-of-gp-1";
const VACCINATION: &str = "vaccinations-1";

const CHO_POSTCODE_CCG: &str = "CHO_POSTCODE_CCG";
const CHO_GP_CCG: &str = "CHO_GP_CCG";
const UHV_POSTCODE_LACODE: &str = "UHV_POSTCODE_LACODE";
const GP_GP_GP: &str = "GP_GP_GP";
const COUNTRYCODE: &str = "COUNTRYCODE";

const A_POSTCODE: &str = "LS17 7DF";
const A_SUB_ICB: &str = "15F";
const A_LOCAL_AUTHORITY: &str = "E08000035";
const A_PRACTICE: &str = "B86056";
const B_POSTCODE: &str = "WF15 6QH";
const B_SUB_ICB: &str = "X2C4Y";
const B_LOCAL_AUTHORITY: &str = "E08000034";
const B_PRACTICE: &str = "B85612";
const C_POSTCODE: &str = "DH1 2TF";
const C_SUB_ICB: &str = "84H";
const C_PRACTICE: &str = "A83627";
const ENGLAND: &str = "E92000001";
const WALES: &str = "W92000004";

/// The baby of the birth notification (and the patient of the other NEMS
/// examples), and its mother.
const BABY: &str = "9912003888";
const MOTHER: &str = "9449305552";
/// The MessageHeader.id of the birth notification example.
const BIRTH_ID: &str = "7165ecd5-4abb-4dbe-922b-7c7db71accd4";
/// The MessageHeader.id shared by the change of address and change of GP
/// examples.
const PDS_EXAMPLE_ID: &str = "3cfdf880-13e9-4f6b-8299-53e96ef5ec02";
const VACCINATION_ID: &str = "85c8a1c5-a8a1-41c9-bb99-20956fa66218";

/// At most this long for the expected deliveries to arrive (many hubs run
/// at once in the test suite).
const DEADLINE: Duration = Duration::from_secs(60);
/// Every queue is watched this long after the expected deliveries have
/// arrived, for any that should not come. Dispatch sends all the copies of
/// one event together, so a stray copy arrives with the expected ones.
const QUIET: Duration = Duration::from_secs(4);

// ---------------------------------------------------------------------------
// Messages
// ---------------------------------------------------------------------------

/// `body` with `from` replaced by `to`, which must occur `count` times (so
/// that a change to a fixture fails here rather than silently).
fn replace_exactly(body: &str, from: &str, to: &str, count: usize) -> String {
    assert_eq!(
        body.matches(from).count(),
        count,
        "expected {count} of {from:?} in the fixture"
    );
    body.replace(from, to)
}

fn event_key(event_type: &str, id: &str) -> String {
    format!("{event_type}/{id}")
}

/// The NEMS change of address example, for the baby, moving from one
/// postcode to another, with its own MessageHeader.id and its timestamp and
/// `meta.lastUpdated` both `stated` (RFC 3339). The Patient's birth date is
/// set to the baby's (2017-10-02), as PDS would state it.
fn change_of_address(id: &str, stated: &str, from: &str, to: &str) -> String {
    let body = fixture("nems/PDS-Change-Of-Address-ems-example.xml");
    let body = replace_exactly(&body, PDS_EXAMPLE_ID, id, 2);
    let body = replace_exactly(
        &body,
        r#"<lastUpdated value="2017-11-01T15:00:33+00:00"/>"#,
        &format!(r#"<lastUpdated value="{stated}"/>"#),
        1,
    );
    let body = replace_exactly(
        &body,
        r#"<timestamp value="2019-11-01T15:00:00+00:00"/>"#,
        &format!(r#"<timestamp value="{stated}"/>"#),
        1,
    );
    // The old address is WF14 0BQ, the home one LS17 7DF; through
    // placeholders, since either may be the other's replacement.
    let body = replace_exactly(&body, r#"<postalCode value="WF14 0BQ"/>"#, "@OLD@", 1);
    let body = replace_exactly(&body, r#"<postalCode value="LS17 7DF"/>"#, "@HOME@", 1);
    let body = body
        .replace("@OLD@", &format!(r#"<postalCode value="{from}"/>"#))
        .replace("@HOME@", &format!(r#"<postalCode value="{to}"/>"#));
    let body = replace_exactly(
        &body,
        r#"<birthDate value="2019-10-02">"#,
        r#"<birthDate value="2017-10-02">"#,
        1,
    );
    let body = replace_exactly(
        &body,
        "2019-10-02T20:12:00+00:00",
        "2017-10-02T20:12:00+00:00",
        1,
    );
    assert!(body.contains(&format!(r#"<value value="{BABY}"/>"#)));
    body
}

/// A vaccination for `nhs_number` (the NEMS example adapted), with its own
/// MessageHeader.id, the child's birth date (routing demographics and
/// Patient entry), its timestamp and `meta.lastUpdated` both `stated`, the
/// Patient's home postcode (`None`: no address at all, so only the register
/// can place the child) and, if given, a confidentiality code on the Patient
/// (`meta.security`, as shared/tests/pipeline.rs does).
fn vaccination(
    id: &str,
    nhs_number: &str,
    birth_date: &str,
    stated: &str,
    postcode: Option<&str>,
    security: Option<&str>,
) -> String {
    let body = fixture("nems/vaccinations-1-new.xml");
    let body = replace_exactly(&body, VACCINATION_ID, id, 2);
    let body = replace_exactly(&body, BABY, nhs_number, 2);
    // The routing birthDateTime and the Patient's birth time.
    let body = replace_exactly(
        &body,
        "2017-10-02T12:00:00+00:00",
        &format!("{birth_date}T12:00:00+00:00"),
        2,
    );
    let body = replace_exactly(
        &body,
        r#"<birthDate value="2013-10-12">"#,
        &format!(r#"<birthDate value="{birth_date}">"#),
        1,
    );
    let body = replace_exactly(
        &body,
        r#"<lastUpdated value="2017-11-01T15:00:33+00:00"/>"#,
        &format!(r#"<lastUpdated value="{stated}"/>"#),
        1,
    );
    let body = replace_exactly(
        &body,
        r#"<timestamp value="2017-02-14T15:00:00+00:00"/>"#,
        &format!(r#"<timestamp value="{stated}"/>"#),
        1,
    );
    let body = match postcode {
        Some(postcode) => replace_exactly(
            &body,
            r#"<postalCode value="DH1 2TF"/>"#,
            &format!(r#"<postalCode value="{postcode}"/>"#),
            1,
        ),
        None => without_patient_home_address(&body),
    };
    match security {
        Some(code) => {
            let profile = r#"<profile value="https://fhir.hl7.org.uk/STU3/StructureDefinition/CareConnect-Patient-1"/>"#;
            replace_exactly(
                &body,
                profile,
                &format!(
                    r#"{profile}<security><system value="http://hl7.org/fhir/v3/Confidentiality"/><code value="{code}"/></security>"#
                ),
                1,
            )
        }
        None => body,
    }
}

/// The vaccination example without its Patient's home address (the only
/// address with `use` home; the Organization's has none).
fn without_patient_home_address(body: &str) -> String {
    let home = body
        .find(r#"<use value="home"/>"#)
        .expect("the Patient's home address");
    let start = body[..home].rfind("<address>").expect("its <address>");
    let end = home + body[home..].find("</address>").expect("its </address>") + "</address>".len();
    assert!(body[start..end].contains("DH1 2TF"));
    format!("{}{}", &body[..start], &body[end..])
}

// ---------------------------------------------------------------------------
// Subscribers
// ---------------------------------------------------------------------------

/// A subscriber onboarded for a test, with its one subscription per event
/// type.
struct Party {
    name: &'static str,
    subscriber: Subscriber,
    /// Event type -> subscription id.
    subscriptions: BTreeMap<String, String>,
}

/// The criteria of a generic subscription.
fn generic(service: &str, rule: &str, organisation: &str, event_type: &str, extra: &str) -> String {
    format!(
        "/Bundle?type=message&serviceType={service}&subscriptionRuleType={rule}&Organization.identifier={organisation}&MessageHeader.event={event_type}{extra}"
    )
}

fn service_of(rule: &str) -> &'static str {
    match rule {
        GP_GP_GP => "GP",
        UHV_POSTCODE_LACODE => "UHV",
        _ => "CHO",
    }
}

/// Onboards a subscriber of organisation `ods`, registered for generic
/// subscriptions of `rule` for `organisation` only, and gives it one generic
/// subscription per event type (`extra`: more criteria components, such as
/// an age filter).
async fn party(
    hub: &Hub,
    name: &'static str,
    ods: &str,
    rule: &str,
    organisation: &str,
    event_types: &[&str],
    extra: &str,
) -> Party {
    let subscriber = hub
        .onboard_with(
            ods,
            event_types,
            json!({"subscribeGeneric": {rule: [organisation]}}),
        )
        .await;
    let mut subscriptions = BTreeMap::new();
    for event_type in event_types {
        let criteria = generic(service_of(rule), rule, organisation, event_type, extra);
        subscriptions.insert(
            event_type.to_string(),
            subscribe(hub, &subscriber, ods, &criteria).await,
        );
    }
    Party {
        name,
        subscriber,
        subscriptions,
    }
}

async fn subscribe(hub: &Hub, subscriber: &Subscriber, ods: &str, criteria: &str) -> String {
    let (status, body) = hub.subscribe(subscriber, ods, criteria).await;
    assert_eq!(status, 201, "{criteria}: {body}");
    assert_eq!(body["status"], "active", "{criteria}");
    body["id"].as_str().expect("a subscription id").to_owned()
}

/// Publishes as the demo publisher; the event must be accepted (202).
/// Returns the OperationOutcome.
async fn publish(hub: &Hub, event_type: &str, body: &str) -> Value {
    let (status, outcome) = hub.publish(event_type, Some(XML), body).await;
    assert_eq!(status, 202, "publishing {event_type}: {outcome}");
    outcome
}

fn spine_codes(outcome: &Value) -> Vec<String> {
    outcome["issue"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|issue| issue["details"]["coding"][0]["code"].as_str())
        .map(str::to_owned)
        .collect()
}

// ---------------------------------------------------------------------------
// Deliveries
// ---------------------------------------------------------------------------

/// Which events reached each party: party name -> sorted event keys
/// (`<event type>/<MessageHeader.id>`), one per delivery.
type Deliveries = BTreeMap<&'static str, Vec<String>>;

/// Reads every party's queue until each has received what `expected` says
/// (or DEADLINE passes), then QUIET longer, and asserts that each received
/// exactly that: no event missing, none extra, none twice. Each delivery
/// must name, in its `subscriptions` attribute, exactly the party's
/// subscription for the event's type.
async fn assert_deliveries(hub: &Hub, what: &str, expected: &[(&Party, &[&str])]) {
    let wanted: Deliveries = expected
        .iter()
        .map(|(party, keys)| {
            let mut keys: Vec<String> = keys.iter().map(|key| key.to_string()).collect();
            keys.sort();
            (party.name, keys)
        })
        .collect();
    assert_eq!(wanted.len(), expected.len(), "party names are distinct");
    let sqs = hub.sqs();
    let mut received: Deliveries = expected
        .iter()
        .map(|(party, _)| (party.name, Vec::new()))
        .collect();
    let start = tokio::time::Instant::now();
    let mut quiet_from: Option<tokio::time::Instant> = None;
    loop {
        for (party, _) in expected {
            let answer = sqs
                .receive_message()
                .queue_url(&party.subscriber.queue_url)
                .max_number_of_messages(10)
                .wait_time_seconds(0)
                .message_attribute_names("All")
                .send()
                .await
                .expect("receiving from a queue");
            for message in answer.messages.unwrap_or_default() {
                if let Some(handle) = &message.receipt_handle {
                    sqs.delete_message()
                        .queue_url(&party.subscriber.queue_url)
                        .receipt_handle(handle)
                        .send()
                        .await
                        .expect("deleting a message");
                }
                let event_type = attribute(&message, "eventType").expect("an eventType attribute");
                let event_id = attribute(&message, "eventId").expect("an eventId attribute");
                let matched: Value = serde_json::from_str(
                    attribute(&message, "subscriptions").expect("a subscriptions attribute"),
                )
                .expect("subscriptions is JSON");
                let matched: BTreeSet<&str> = matched
                    .as_array()
                    .expect("subscriptions is a list")
                    .iter()
                    .filter_map(|matched| matched["id"].as_str())
                    .collect();
                let own: BTreeSet<&str> = party
                    .subscriptions
                    .get(event_type)
                    .map(String::as_str)
                    .into_iter()
                    .collect();
                assert_eq!(
                    matched, own,
                    "{what}: {} received {event_type}/{event_id} for subscriptions {matched:?}, not its own {own:?}",
                    party.name
                );
                let keys = received.get_mut(party.name).expect("a watched party");
                keys.push(event_key(event_type, event_id));
                keys.sort();
            }
        }
        let complete = wanted.iter().all(|(name, keys)| {
            let got = &received[name];
            keys.iter().all(|key| got.contains(key))
        });
        let now = tokio::time::Instant::now();
        match quiet_from {
            None if complete => quiet_from = Some(now),
            Some(since) if now - since >= QUIET => break,
            _ if now - start >= DEADLINE => break,
            _ => {}
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert_eq!(
        received, wanted,
        "{what}: the deliveries observed (left) against those expected (right)"
    );
}

/// Waits until the patient's audit trail holds a `deliver` record of the
/// event (a delivery or its withholding): dispatch has run. Used before
/// checking that an event reached no one, which the queues alone cannot
/// tell from an event not yet dispatched.
async fn wait_until_dispatched(hub: &Hub, nhs_number: &str, key: &str) {
    let start = tokio::time::Instant::now();
    loop {
        let (status, trail) = hub.audit_of_patient(nhs_number).await;
        assert_eq!(status, 200, "{trail}");
        let dispatched = trail["entries"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|entry| entry["eventKey"] == key && entry["action"] == "deliver");
        if dispatched {
            return;
        }
        assert!(
            start.elapsed() < DEADLINE,
            "{key} was not dispatched within {DEADLINE:?}: {trail}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// The child's register record as the demo operator reads it (200).
async fn child_record(hub: &Hub, nhs_number: &str) -> Value {
    let (status, record) = hub.read_child(nhs_number).await;
    assert_eq!(status, 200, "GET /children/{nhs_number}: {record}");
    assert_eq!(record["nhsNumber"], nhs_number);
    record
}

// ---------------------------------------------------------------------------
// Scenarios
// ---------------------------------------------------------------------------

/// The NEMS birth notification (with the mother's valid NHS number): the
/// baby 9912003888 lives at LS17 7DF, area A; the message routes on the
/// mother 9449305552, who has no address in it.
#[tokio::test(flavor = "multi_thread")]
async fn a_birth_in_area_a_reaches_as_chis_and_health_visiting_and_not_bs() {
    let hub = Hub::start().await;
    let chis_a = party(
        &hub,
        "CHIS A",
        "RY6",
        CHO_POSTCODE_CCG,
        A_SUB_ICB,
        &[BIRTH],
        "",
    )
    .await;
    let visiting_a = party(
        &hub,
        "health visiting A",
        "RXF",
        UHV_POSTCODE_LACODE,
        A_LOCAL_AUTHORITY,
        &[BIRTH],
        "",
    )
    .await;
    let chis_b = party(
        &hub,
        "CHIS B",
        "RXG",
        CHO_POSTCODE_CCG,
        B_SUB_ICB,
        &[BIRTH],
        "",
    )
    .await;
    let visiting_b = party(
        &hub,
        "health visiting B",
        "RWY",
        UHV_POSTCODE_LACODE,
        B_LOCAL_AUTHORITY,
        &[BIRTH],
        "",
    )
    .await;
    let england = party(
        &hub,
        "England-wide",
        "X24",
        COUNTRYCODE,
        ENGLAND,
        &[BIRTH],
        "",
    )
    .await;
    let wales = party(&hub, "Wales-wide", "X25", COUNTRYCODE, WALES, &[BIRTH], "").await;

    let body = fixture("derived/BirthNotificationWithMother-valid-mother.xml");
    assert!(body.contains(&format!(r#"<postalCode value="{A_POSTCODE}"/>"#)));
    publish(&hub, BIRTH, &body).await;

    let birth = event_key(BIRTH, BIRTH_ID);
    assert_deliveries(
        &hub,
        "a birth in area A",
        &[
            (&chis_a, &[&birth]),
            (&visiting_a, &[&birth]),
            (&england, &[&birth]),
            (&chis_b, &[]),
            (&visiting_b, &[]),
            (&wales, &[]),
        ],
    )
    .await;

    // The record is the baby's, at the baby's home postcode, stated by the
    // birth notification as of its meta.lastUpdated.
    let record = child_record(&hub, BABY).await;
    assert_eq!(
        record["homePostcode"],
        json!({"value": A_POSTCODE, "changedAt": "2017-11-01T15:00:33Z", "byEvent": birth}),
        "{record}"
    );
    assert_eq!(record["birthDate"]["value"], "2017-10-02", "{record}");
    // The mother, on whom the message routes, is not on the register.
    let (status, answer) = hub.read_child(MOTHER).await;
    assert_eq!(status, 404, "the mother is not on the register: {answer}");
}

/// Born in A; moves from A (LS17 7DF) to B (WF15 6QH): the change of address
/// reaches the postcode subscribers of both areas. A later vaccination,
/// whose Patient entry carries no address, is placed by the register alone:
/// it reaches B's subscribers only.
#[tokio::test(flavor = "multi_thread")]
async fn the_baby_moves_from_a_to_b_both_areas_hear_of_it_and_later_events_go_to_b_only() {
    let hub = Hub::start().await;
    let types = [BIRTH, ADDRESS, VACCINATION];
    let chis_a = party(
        &hub,
        "CHIS A",
        "RY6",
        CHO_POSTCODE_CCG,
        A_SUB_ICB,
        &types,
        "",
    )
    .await;
    let visiting_a = party(
        &hub,
        "health visiting A",
        "RXF",
        UHV_POSTCODE_LACODE,
        A_LOCAL_AUTHORITY,
        &types,
        "",
    )
    .await;
    let chis_b = party(
        &hub,
        "CHIS B",
        "RXG",
        CHO_POSTCODE_CCG,
        B_SUB_ICB,
        &types,
        "",
    )
    .await;
    let visiting_b = party(
        &hub,
        "health visiting B",
        "RWY",
        UHV_POSTCODE_LACODE,
        B_LOCAL_AUTHORITY,
        &types,
        "",
    )
    .await;

    // 1. Born in A.
    publish(
        &hub,
        BIRTH,
        &fixture("derived/BirthNotificationWithMother-valid-mother.xml"),
    )
    .await;
    let birth = event_key(BIRTH, BIRTH_ID);
    assert_deliveries(
        &hub,
        "the birth in A",
        &[
            (&chis_a, &[&birth]),
            (&visiting_a, &[&birth]),
            (&chis_b, &[]),
            (&visiting_b, &[]),
        ],
    )
    .await;

    // 2. Moves from A to B, after the birth notification's lastUpdated.
    let move_id = "0b7e5c1a-2d3f-4a6b-9c8d-1e2f3a4b5c01";
    publish(
        &hub,
        ADDRESS,
        &change_of_address(move_id, "2018-03-01T10:00:00+00:00", A_POSTCODE, B_POSTCODE),
    )
    .await;
    let moved = event_key(ADDRESS, move_id);
    assert_deliveries(
        &hub,
        "the move from A to B",
        &[
            (&chis_a, &[&moved]),
            (&visiting_a, &[&moved]),
            (&chis_b, &[&moved]),
            (&visiting_b, &[&moved]),
        ],
    )
    .await;
    let record = child_record(&hub, BABY).await;
    assert_eq!(
        record["homePostcode"],
        json!({"value": B_POSTCODE, "changedAt": "2018-03-01T10:00:00Z", "byEvent": moved}),
        "{record}"
    );

    // 3. A vaccination that says nothing of where the child lives.
    let vaccination_id = "0b7e5c1a-2d3f-4a6b-9c8d-1e2f3a4b5c02";
    publish(
        &hub,
        VACCINATION,
        &vaccination(
            vaccination_id,
            BABY,
            "2017-10-02",
            "2018-04-01T10:00:00+00:00",
            None,
            None,
        ),
    )
    .await;
    let vaccinated = event_key(VACCINATION, vaccination_id);
    assert_deliveries(
        &hub,
        "a vaccination after the move",
        &[
            (&chis_a, &[]),
            (&visiting_a, &[]),
            (&chis_b, &[&vaccinated]),
            (&visiting_b, &[&vaccinated]),
        ],
    )
    .await;
    // It did not move the child.
    let record = child_record(&hub, BABY).await;
    assert_eq!(record["homePostcode"]["value"], B_POSTCODE, "{record}");
}

/// The NEMS change of GP example: the child (at LS17 7DF, area A) moves from
/// B85612 (area B's practice, sub-ICB X2C4Y) to B86056 (area A's, 15F). The
/// practice rules of both practices match; the postcode rules match the
/// child's home only (a change of GP is not a move of address). A later
/// vaccination goes to the new practice only.
#[tokio::test(flavor = "multi_thread")]
async fn a_change_of_gp_reaches_the_old_and_the_new_practice_and_later_events_the_new_one() {
    let hub = Hub::start().await;
    let types = [GP_CHANGE, VACCINATION];
    let new_gp = party(
        &hub,
        "new GP B86056",
        A_PRACTICE,
        GP_GP_GP,
        A_PRACTICE,
        &types,
        "",
    )
    .await;
    let old_gp = party(
        &hub,
        "old GP B85612",
        B_PRACTICE,
        GP_GP_GP,
        B_PRACTICE,
        &types,
        "",
    )
    .await;
    let other_gp = party(
        &hub,
        "other GP A83627",
        C_PRACTICE,
        GP_GP_GP,
        C_PRACTICE,
        &types,
        "",
    )
    .await;
    let new_ccg = party(
        &hub,
        "CHIS by practice 15F",
        "RY6",
        CHO_GP_CCG,
        A_SUB_ICB,
        &types,
        "",
    )
    .await;
    let old_ccg = party(
        &hub,
        "CHIS by practice X2C4Y",
        "RXG",
        CHO_GP_CCG,
        B_SUB_ICB,
        &types,
        "",
    )
    .await;
    let home_chis = party(
        &hub,
        "CHIS by postcode 15F",
        "RXF",
        CHO_POSTCODE_CCG,
        A_SUB_ICB,
        &[GP_CHANGE],
        "",
    )
    .await;
    let b_chis = party(
        &hub,
        "CHIS by postcode X2C4Y",
        "RWY",
        CHO_POSTCODE_CCG,
        B_SUB_ICB,
        &[GP_CHANGE],
        "",
    )
    .await;

    let body = fixture("nems/PDS-Change-Of-GP-ems-example.xml");
    publish(&hub, GP_CHANGE, &body).await;
    let changed = event_key(GP_CHANGE, PDS_EXAMPLE_ID);
    assert_deliveries(
        &hub,
        "the change of GP from B85612 to B86056",
        &[
            (&new_gp, &[&changed]),
            (&old_gp, &[&changed]),
            (&new_ccg, &[&changed]),
            (&old_ccg, &[&changed]),
            (&home_chis, &[&changed]),
            (&other_gp, &[]),
            (&b_chis, &[]),
        ],
    )
    .await;
    let record = child_record(&hub, BABY).await;
    assert_eq!(record["gpPractice"]["value"], A_PRACTICE, "{record}");
    assert_eq!(record["homePostcode"]["value"], A_POSTCODE, "{record}");

    // A later vaccination whose Patient names no GP and no address: the
    // register's practice places it.
    let vaccination_id = "0b7e5c1a-2d3f-4a6b-9c8d-1e2f3a4b5c03";
    publish(
        &hub,
        VACCINATION,
        &vaccination(
            vaccination_id,
            BABY,
            "2017-10-02",
            "2018-01-15T10:00:00+00:00",
            None,
            None,
        ),
    )
    .await;
    let vaccinated = event_key(VACCINATION, vaccination_id);
    assert_deliveries(
        &hub,
        "a vaccination after the change of GP",
        &[
            (&new_gp, &[&vaccinated]),
            (&new_ccg, &[&vaccinated]),
            (&old_gp, &[]),
            (&old_ccg, &[]),
            (&other_gp, &[]),
        ],
    )
    .await;
}

/// Three children of area C vaccinated on 2025-06-01: one aged 2, one who
/// turns 5 that day, one aged 10. `Patient.age=lt5` takes the first only,
/// `gt5` the last only: ages are whole years on the event's date.
#[tokio::test(flavor = "multi_thread")]
async fn age_limited_rules_select_by_the_childs_age_on_the_events_date() {
    let hub = Hub::start().await;
    let under_fives = party(
        &hub,
        "under-fives (lt5)",
        "RY6",
        CHO_POSTCODE_CCG,
        C_SUB_ICB,
        &[VACCINATION],
        "&Patient.age=lt5",
    )
    .await;
    let over_fives = party(
        &hub,
        "over-fives (gt5)",
        "RXG",
        CHO_POSTCODE_CCG,
        C_SUB_ICB,
        &[VACCINATION],
        "&Patient.age=gt5",
    )
    .await;
    let everyone = party(
        &hub,
        "all ages",
        "RXF",
        CHO_POSTCODE_CCG,
        C_SUB_ICB,
        &[VACCINATION],
        "",
    )
    .await;

    let on = "2025-06-01T10:00:00+00:00";
    let children = [
        (
            "9434765919",
            "2023-06-01",
            "5a0c7e4e-1b2d-4c3e-8f4a-000000000002",
        ),
        (
            "9434765927",
            "2020-06-01",
            "5a0c7e4e-1b2d-4c3e-8f4a-000000000005",
        ),
        (
            "9434765935",
            "2015-01-01",
            "5a0c7e4e-1b2d-4c3e-8f4a-000000000010",
        ),
    ];
    for (nhs_number, birth_date, id) in children {
        publish(
            &hub,
            VACCINATION,
            &vaccination(id, nhs_number, birth_date, on, Some(C_POSTCODE), None),
        )
        .await;
    }
    let [aged_2, aged_5, aged_10] = children.map(|(_, _, id)| event_key(VACCINATION, id));
    assert_deliveries(
        &hub,
        "vaccinations of children aged 2, 5 and 10",
        &[
            (&under_fives, &[&aged_2]),
            (&over_fives, &[&aged_10]),
            (&everyone, &[&aged_2, &aged_5, &aged_10]),
        ],
    )
    .await;
}

/// A vaccination whose Patient carries the confidentiality code R. First, a
/// plain vaccination shows that both the GP's explicit subscription and
/// area C's generic one select the child; then the sensitive one reaches
/// neither, the publisher is told so, and the audit trail shows it withheld.
/// The flag stays on the register: a later vaccination without the label is
/// withheld too (only a PDS event can clear it, shared/src/register.rs).
#[tokio::test(flavor = "multi_thread")]
async fn a_sensitive_child_is_delivered_to_no_one_and_the_withholding_is_audited() {
    let hub = Hub::start().await;
    let gp_subscriber = hub.onboard(C_PRACTICE, &[VACCINATION]).await;
    let explicit = format!(
        "/Bundle?type=message&Patient.identifier=http://fhir.nhs.net/Id/nhs-number|{BABY}&MessageHeader.event={VACCINATION}"
    );
    let explicit_id = subscribe(&hub, &gp_subscriber, C_PRACTICE, &explicit).await;
    let gp = Party {
        name: "GP A83627 (explicit)",
        subscriber: gp_subscriber,
        subscriptions: BTreeMap::from([(VACCINATION.to_owned(), explicit_id)]),
    };
    let chis_c = party(
        &hub,
        "CHIS C (generic)",
        "RY6",
        CHO_POSTCODE_CCG,
        C_SUB_ICB,
        &[VACCINATION],
        "",
    )
    .await;

    let plain_id = "7d1e0f2a-3b4c-4d5e-8f60-000000000001";
    let outcome = publish(
        &hub,
        VACCINATION,
        &vaccination(
            plain_id,
            BABY,
            "2017-10-02",
            "2018-01-10T10:00:00+00:00",
            Some(C_POSTCODE),
            None,
        ),
    )
    .await;
    assert!(
        !spine_codes(&outcome).contains(&"SENSITIVE_PATIENT".to_owned()),
        "{outcome}"
    );
    let plain = event_key(VACCINATION, plain_id);
    assert_deliveries(
        &hub,
        "a vaccination of a child not flagged sensitive",
        &[(&gp, &[&plain]), (&chis_c, &[&plain])],
    )
    .await;

    let sensitive_id = "7d1e0f2a-3b4c-4d5e-8f60-000000000002";
    let outcome = publish(
        &hub,
        VACCINATION,
        &vaccination(
            sensitive_id,
            BABY,
            "2017-10-02",
            "2018-02-10T10:00:00+00:00",
            Some(C_POSTCODE),
            Some("R"),
        ),
    )
    .await;
    assert!(
        spine_codes(&outcome).contains(&"SENSITIVE_PATIENT".to_owned()),
        "the publisher is told: {outcome}"
    );
    let sensitive = event_key(VACCINATION, sensitive_id);
    wait_until_dispatched(&hub, BABY, &sensitive).await;
    assert_deliveries(
        &hub,
        "a vaccination of a sensitive child",
        &[(&gp, &[]), (&chis_c, &[])],
    )
    .await;

    let later_id = "7d1e0f2a-3b4c-4d5e-8f60-000000000003";
    let outcome = publish(
        &hub,
        VACCINATION,
        &vaccination(
            later_id,
            BABY,
            "2017-10-02",
            "2018-03-10T10:00:00+00:00",
            Some(C_POSTCODE),
            None,
        ),
    )
    .await;
    // The register already knows: the publisher is told, as for a label.
    assert!(
        spine_codes(&outcome).contains(&"SENSITIVE_PATIENT".to_owned()),
        "{outcome}"
    );
    let later = event_key(VACCINATION, later_id);
    wait_until_dispatched(&hub, BABY, &later).await;
    assert_deliveries(
        &hub,
        "a later, unlabelled vaccination of the child flagged sensitive",
        &[(&gp, &[]), (&chis_c, &[])],
    )
    .await;
    let record = child_record(&hub, BABY).await;
    assert_eq!(
        record["sensitive"],
        json!({"value": true, "changedAt": "2018-02-10T10:00:00Z", "byEvent": sensitive}),
        "{record}"
    );

    // The trail: each publish accepted; the plain event delivered to both
    // subscribers; the two others withheld and delivered to no one.
    let (status, trail) = hub.audit_of_patient(BABY).await;
    assert_eq!(status, 200, "{trail}");
    let entries = trail["entries"].as_array().expect("entries");
    let of = |key: &str| -> Vec<(String, u64, Option<String>)> {
        let mut found: Vec<_> = entries
            .iter()
            .filter(|entry| entry["eventKey"] == key)
            .map(|entry| {
                (
                    entry["action"].as_str().unwrap_or_default().to_owned(),
                    entry["status"].as_u64().unwrap_or_default(),
                    entry["subscriberId"].as_str().map(str::to_owned),
                )
            })
            .collect();
        found.sort();
        found
    };
    let mut delivered_plain = vec![
        ("deliver".to_owned(), 200, Some(gp.subscriber.id.clone())),
        (
            "deliver".to_owned(),
            200,
            Some(chis_c.subscriber.id.clone()),
        ),
        ("publish".to_owned(), 202, None),
    ];
    delivered_plain.sort();
    assert_eq!(of(&plain), delivered_plain, "{trail}");
    for withheld in [&sensitive, &later] {
        assert_eq!(
            of(withheld),
            [
                ("deliver".to_owned(), 204, None),
                ("publish".to_owned(), 202, None)
            ],
            "{withheld}: {trail}"
        );
        let record = entries
            .iter()
            .find(|entry| entry["eventKey"] == withheld.as_str() && entry["action"] == "deliver")
            .expect("the withholding record");
        assert_eq!(record["nhsNumber"], BABY);
        assert!(
            record["detail"]
                .as_str()
                .is_some_and(|detail| detail.contains("withheld")),
            "{record}"
        );
    }
}

/// Two changes of address for one child, published in the wrong order:
///
/// - NEWER, lastUpdated 2019-05-01: from A (LS17 7DF) to B (WF15 6QH),
///   published first. The register is empty: the child is recorded in B,
///   and the move reaches A (left) and B (new home), not C.
/// - OLDER, lastUpdated 2018-02-01: from C (DH1 2TF) to A (LS17 7DF),
///   published second. It must not move the child back to A: the register
///   still says B, as of NEWER.
///
/// Where OLDER goes is what shared/src/dispatch.rs does: the postcode rules
/// of a change of address match the register's current place (B: the late
/// event does not change it) and the place the message names as left (C).
/// So OLDER reaches B and C, and not A, the home it names (already out of
/// date: A heard from NEWER that the child left).
#[tokio::test(flavor = "multi_thread")]
async fn a_late_change_of_address_does_not_overwrite_the_register() {
    let hub = Hub::start().await;
    let chis_a = party(
        &hub,
        "CHIS A",
        "RY6",
        CHO_POSTCODE_CCG,
        A_SUB_ICB,
        &[ADDRESS],
        "",
    )
    .await;
    let chis_b = party(
        &hub,
        "CHIS B",
        "RXG",
        CHO_POSTCODE_CCG,
        B_SUB_ICB,
        &[ADDRESS],
        "",
    )
    .await;
    let chis_c = party(
        &hub,
        "CHIS C",
        "RXF",
        CHO_POSTCODE_CCG,
        C_SUB_ICB,
        &[ADDRESS],
        "",
    )
    .await;

    let newer_id = "9c2d4e6f-8a0b-4c1d-9e2f-000000002019";
    publish(
        &hub,
        ADDRESS,
        &change_of_address(
            newer_id,
            "2019-05-01T09:00:00+00:00",
            A_POSTCODE,
            B_POSTCODE,
        ),
    )
    .await;
    let newer = event_key(ADDRESS, newer_id);
    assert_deliveries(
        &hub,
        "the newer move, A to B, published first",
        &[(&chis_a, &[&newer]), (&chis_b, &[&newer]), (&chis_c, &[])],
    )
    .await;
    let expected_home =
        json!({"value": B_POSTCODE, "changedAt": "2019-05-01T09:00:00Z", "byEvent": newer});
    let record = child_record(&hub, BABY).await;
    assert_eq!(record["homePostcode"], expected_home, "{record}");

    let older_id = "9c2d4e6f-8a0b-4c1d-9e2f-000000002018";
    publish(
        &hub,
        ADDRESS,
        &change_of_address(
            older_id,
            "2018-02-01T09:00:00+00:00",
            C_POSTCODE,
            A_POSTCODE,
        ),
    )
    .await;
    let older = event_key(ADDRESS, older_id);
    assert_deliveries(
        &hub,
        "the older move, C to A, published second",
        &[(&chis_a, &[]), (&chis_b, &[&older]), (&chis_c, &[&older])],
    )
    .await;
    let record = child_record(&hub, BABY).await;
    assert_eq!(
        record["homePostcode"], expected_home,
        "the late event did not overwrite the register: {record}"
    );
}
