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

use std::collections::BTreeMap;

use crate::scenario::*;
use e2e_tests::{Hub, fixture};
use serde_json::json;

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
    // The labelled vaccination also flagged the child: a record of its own.
    assert_eq!(
        of(&sensitive),
        [
            ("deliver".to_owned(), 204, None),
            ("publish".to_owned(), 202, None),
            ("sensitivity-change".to_owned(), 200, None),
        ],
        "{sensitive}: {trail}"
    );
    assert_eq!(
        of(&later),
        [
            ("deliver".to_owned(), 204, None),
            ("publish".to_owned(), 202, None)
        ],
        "{later}: {trail}"
    );
    for withheld in [&sensitive, &later] {
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
