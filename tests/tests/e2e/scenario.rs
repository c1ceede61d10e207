//! What the end-to-end routing scenarios share: the sample areas, the NEMS
//! examples adapted per scenario, subscribers with one subscription per
//! event type, and the check that each queue receives exactly what a
//! scenario expects (generic_scenarios.rs, routing_safety.rs).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use e2e_tests::{Hub, Subscriber, attribute, fixture};
use serde_json::{Value, json};

pub const XML: &str = "application/fhir+xml";

pub const BIRTH: &str = "pds-birth-notification-1";
pub const ADDRESS: &str = "pds-change-of-address-1";
pub const GP_CHANGE: &str = "pds-change-of-gp-1";
pub const VACCINATION: &str = "vaccinations-1";

pub const CHO_POSTCODE_CCG: &str = "CHO_POSTCODE_CCG";
pub const CHO_GP_CCG: &str = "CHO_GP_CCG";
pub const UHV_POSTCODE_LACODE: &str = "UHV_POSTCODE_LACODE";
pub const GP_GP_GP: &str = "GP_GP_GP";
pub const COUNTRYCODE: &str = "COUNTRYCODE";

pub const A_POSTCODE: &str = "LS17 7DF";
pub const A_SUB_ICB: &str = "15F";
pub const A_LOCAL_AUTHORITY: &str = "E08000035";
pub const A_PRACTICE: &str = "B86056";
pub const B_POSTCODE: &str = "WF15 6QH";
pub const B_SUB_ICB: &str = "X2C4Y";
pub const B_LOCAL_AUTHORITY: &str = "E08000034";
pub const B_PRACTICE: &str = "B85612";
pub const C_POSTCODE: &str = "DH1 2TF";
pub const C_SUB_ICB: &str = "84H";
pub const C_PRACTICE: &str = "A83627";
pub const ENGLAND: &str = "E92000001";
pub const WALES: &str = "W92000004";

/// The baby of the birth notification (and the patient of the other NEMS
/// examples), and its mother.
pub const BABY: &str = "9912003888";
pub const MOTHER: &str = "9449305552";
/// The MessageHeader.id of the birth notification example.
pub const BIRTH_ID: &str = "7165ecd5-4abb-4dbe-922b-7c7db71accd4";
/// The MessageHeader.id shared by the change of address and change of GP
/// examples.
pub const PDS_EXAMPLE_ID: &str = "3cfdf880-13e9-4f6b-8299-53e96ef5ec02";
pub const VACCINATION_ID: &str = "85c8a1c5-a8a1-41c9-bb99-20956fa66218";

/// At most this long for the expected deliveries to arrive (many hubs run
/// at once in the test suite).
pub const DEADLINE: Duration = Duration::from_secs(60);
/// Every queue is watched this long after the expected deliveries have
/// arrived, for any that should not come. Dispatch sends all the copies of
/// one event together, so a stray copy arrives with the expected ones.
pub const QUIET: Duration = Duration::from_secs(4);

// ---------------------------------------------------------------------------
// Messages
// ---------------------------------------------------------------------------

/// `body` with `from` replaced by `to`, which must occur `count` times (so
/// that a change to a fixture fails here rather than silently).
pub fn replace_exactly(body: &str, from: &str, to: &str, count: usize) -> String {
    assert_eq!(
        body.matches(from).count(),
        count,
        "expected {count} of {from:?} in the fixture"
    );
    body.replace(from, to)
}

pub fn event_key(event_type: &str, id: &str) -> String {
    format!("{event_type}/{id}")
}

/// The NEMS change of address example, for the baby, moving from one
/// postcode to another, with its own MessageHeader.id and its timestamp and
/// `meta.lastUpdated` both `stated` (RFC 3339). The Patient's birth date is
/// set to the baby's (2017-10-02), as PDS would state it.
pub fn change_of_address(id: &str, stated: &str, from: &str, to: &str) -> String {
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
pub fn vaccination(
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
pub fn without_patient_home_address(body: &str) -> String {
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
pub struct Party {
    pub name: &'static str,
    pub subscriber: Subscriber,
    /// Event type -> subscription id.
    pub subscriptions: BTreeMap<String, String>,
}

/// The criteria of a generic subscription.
pub fn generic(
    service: &str,
    rule: &str,
    organisation: &str,
    event_type: &str,
    extra: &str,
) -> String {
    format!(
        "/Bundle?type=message&serviceType={service}&subscriptionRuleType={rule}&Organization.identifier={organisation}&MessageHeader.event={event_type}{extra}"
    )
}

pub fn service_of(rule: &str) -> &'static str {
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
pub async fn party(
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

pub async fn subscribe(hub: &Hub, subscriber: &Subscriber, ods: &str, criteria: &str) -> String {
    let (status, body) = hub.subscribe(subscriber, ods, criteria).await;
    assert_eq!(status, 201, "{criteria}: {body}");
    assert_eq!(body["status"], "active", "{criteria}");
    body["id"].as_str().expect("a subscription id").to_owned()
}

/// Publishes as the demo publisher; the event must be accepted (202).
/// Returns the OperationOutcome.
pub async fn publish(hub: &Hub, event_type: &str, body: &str) -> Value {
    let (status, outcome) = hub.publish(event_type, Some(XML), body).await;
    assert_eq!(status, 202, "publishing {event_type}: {outcome}");
    outcome
}

pub fn spine_codes(outcome: &Value) -> Vec<String> {
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
pub type Deliveries = BTreeMap<&'static str, Vec<String>>;

/// Reads every party's queue until each has received what `expected` says
/// (or DEADLINE passes), then QUIET longer, and asserts that each received
/// exactly that: no event missing, none extra, none twice. Each delivery
/// must name, in its `subscriptions` attribute, exactly the party's
/// subscription for the event's type.
pub async fn assert_deliveries(hub: &Hub, what: &str, expected: &[(&Party, &[&str])]) {
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
pub async fn wait_until_dispatched(hub: &Hub, nhs_number: &str, key: &str) {
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
pub async fn child_record(hub: &Hub, nhs_number: &str) -> Value {
    let (status, record) = hub.read_child(nhs_number).await;
    assert_eq!(status, 200, "GET /children/{nhs_number}: {record}");
    assert_eq!(record["nhsNumber"], nhs_number);
    record
}
