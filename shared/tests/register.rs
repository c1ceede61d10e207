//! The child register: what each NEMS example message says about its child,
//! and how updates merge (newer wins, older never overwrites, any order and
//! any number of repeats give the same record).

use std::path::PathBuf;

use hub::NhsNumber;
use hub::fhir::read_xml;
use hub::message::EventMessage;
use hub::reference::Postcode;
use hub::register::{ChildRecord, DeathStatus, Field, Moved, RegisterUpdate, apply, moved_from};
use proptest::prelude::*;
use time::OffsetDateTime;
use time::macros::{date, datetime};

const CHILD: &str = "9912003888";
const OTHER_CHILD: &str = "9449305552";

fn nhs(number: &str) -> NhsNumber {
    NhsNumber::parse(number).unwrap()
}

fn postcode(text: &str) -> Postcode {
    Postcode::parse(text).unwrap()
}

/// The register update of an example message (path under events/).
fn update_of(example: &str) -> Option<RegisterUpdate> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../events")
        .join(example);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|_| panic!("{}", path.display()));
    let bundle = read_xml(&text).unwrap();
    let message = EventMessage::from_bundle(&bundle).unwrap_or_else(|e| panic!("{example}: {e}"));
    RegisterUpdate::from_message(&bundle, &message)
}

fn update(number: &str, key: &str, at: OffsetDateTime) -> RegisterUpdate {
    RegisterUpdate::new(nhs(number), key, at)
}

fn with_postcode(key: &str, at: OffsetDateTime, code: &str) -> RegisterUpdate {
    let mut update = update(CHILD, key, at);
    update.home_postcode = Some(postcode(code));
    update
}

fn home(record: &ChildRecord) -> Option<&str> {
    record
        .home_postcode
        .as_ref()
        .map(|field| field.value.as_str())
}

const LAST_UPDATED: OffsetDateTime = datetime!(2017-11-01 15:00:33 UTC);

// --- What each event type says ---------------------------------------------

#[test]
fn a_birth_notification_creates_the_babys_record_not_the_mothers() {
    let update = update_of("derived/BirthNotificationWithMother-valid-mother.xml").unwrap();
    // Routed on the mother (9449305552); the record is the baby's.
    assert_eq!(update.nhs_number, nhs(CHILD));
    assert_eq!(update.birth_date, Some(date!(2017 - 10 - 02)));
    // The baby's address has no use: it is the home address.
    assert_eq!(update.home_postcode, Some(postcode("LS17 7DF")));
    // B86056 is the mother's GP, not the baby's.
    assert_eq!(update.gp_practice, None);
    assert_eq!(update.sensitive, Some(false));
    assert_eq!(update.at, LAST_UPDATED);
    assert!(
        update
            .event_key
            .starts_with("pds-birth-notification-1/7165ecd5")
    );

    let record = apply(None, update);
    assert_eq!(record.nhs_number, nhs(CHILD));
    assert_eq!(
        record.birth_date.as_ref().map(|field| field.value),
        Some(date!(2017 - 10 - 02))
    );
    assert_eq!(home(&record), Some("LS17 7DF"));
    assert!(!record.is_sensitive());
    assert!(!record.is_dead());
}

#[test]
fn a_change_of_address_sets_the_home_postcode_and_reports_the_old_one() {
    let update = update_of("nems/PDS-Change-Of-Address-ems-example.xml").unwrap();
    assert_eq!(update.nhs_number, nhs(CHILD));
    assert_eq!(update.home_postcode, Some(postcode("LS17 7DF")));
    assert_eq!(update.previous_postcode, Some(postcode("WF14 0BQ")));
    assert_eq!(update.at, LAST_UPDATED);
    assert_eq!(
        moved_from(None, &update).from_postcode,
        Some(postcode("WF14 0BQ"))
    );
}

#[test]
fn a_change_of_gp_sets_the_practice_and_reports_the_one_left() {
    let update = update_of("nems/PDS-Change-Of-GP-ems-example.xml").unwrap();
    assert_eq!(update.gp_practice.as_deref(), Some("B86056"));
    assert_eq!(update.previous_practice.as_deref(), Some("B85612"));
    assert_eq!(update.home_postcode, Some(postcode("LS17 7DF")));
    assert_eq!(
        moved_from(None, &update),
        Moved {
            from_postcode: None,
            from_practice: Some("B85612".into()),
        }
    );
    let record = apply(None, update);
    assert_eq!(
        record.gp_practice.as_ref().map(|f| f.value.as_str()),
        Some("B86056")
    );
}

#[test]
fn death_notifications_record_their_status() {
    for (example, status) in [
        (
            "nems/PDS-Death-Notification-informal-ems-example.xml",
            DeathStatus::Informal,
        ),
        (
            "nems/PDS-Death-Notification-formal-ems-example.xml",
            DeathStatus::Formal,
        ),
        (
            "nems-spec/PDS-Death-Notification-removed-ems-example.xml",
            DeathStatus::Removed,
        ),
    ] {
        let update = update_of(example).unwrap();
        assert_eq!(update.nhs_number, nhs(CHILD), "{example}");
        assert_eq!(update.death, Some(status), "{example}");
        let record = apply(None, update);
        assert_eq!(
            record.is_dead(),
            status != DeathStatus::Removed,
            "{example}"
        );
    }
}

#[test]
fn a_record_change_updates_what_it_carries() {
    let update = update_of("nems/PDS-Record-Change.xml").unwrap();
    assert_eq!(update.birth_date, Some(date!(2017 - 10 - 02)));
    // No address, no GP in the example: nothing said, nothing changed.
    assert_eq!(update.home_postcode, None);
    assert_eq!(update.gp_practice, None);
    assert_eq!(update.death, None);
    // No meta.lastUpdated: the timestamp is the moment.
    assert_eq!(update.at, datetime!(2019-11-01 15:00:00 UTC));

    let before = apply(
        None,
        with_postcode("earlier", datetime!(2018-01-01 0:00 UTC), "DH1 2TF"),
    );
    let after = apply(Some(before), update);
    assert_eq!(home(&after), Some("DH1 2TF"));
    assert!(after.birth_date.is_some());
}

#[test]
fn any_message_s_patient_entry_may_carry_a_postcode() {
    let update = update_of("nems/vaccinations-1-new.xml").unwrap();
    assert_eq!(update.home_postcode, Some(postcode("DH1 2TF")));
    // Only PDS states birth dates and clears sensitivity.
    assert_eq!(update.birth_date, None);
    assert_eq!(update.sensitive, None);
}

#[test]
fn death_status_codes_round_trip() {
    for status in [
        DeathStatus::Informal,
        DeathStatus::Formal,
        DeathStatus::Removed,
    ] {
        assert_eq!(DeathStatus::from_code(status.code()), Some(status));
    }
    assert_eq!(DeathStatus::from_code("3"), None);
    assert_eq!(DeathStatus::from_code("u"), None);
}

// --- Merging ----------------------------------------------------------------

#[test]
fn a_newer_statement_replaces_an_older_one() {
    let first = apply(
        None,
        with_postcode("a", datetime!(2020-01-01 0:00 UTC), "WF14 0BQ"),
    );
    let second = apply(
        Some(first),
        with_postcode("b", datetime!(2020-06-01 0:00 UTC), "LS17 7DF"),
    );
    assert_eq!(
        second.home_postcode,
        Some(Field {
            value: postcode("LS17 7DF"),
            changed_at: datetime!(2020-06-01 0:00 UTC),
            by_event: "b".into(),
        })
    );
}

#[test]
fn a_late_event_never_overwrites_newer_data() {
    let newer = apply(
        None,
        with_postcode("new", datetime!(2020-06-01 0:00 UTC), "LS17 7DF"),
    );
    let mut late = with_postcode("old", datetime!(2020-01-01 0:00 UTC), "WF14 0BQ");
    late.gp_practice = Some("B85612".into());
    let after = apply(Some(newer), late);
    assert_eq!(home(&after), Some("LS17 7DF"));
    assert_eq!(after.home_postcode.as_ref().unwrap().by_event, "new");
    // The late event still fills a field nothing newer has stated.
    assert_eq!(
        after.gp_practice.as_ref().map(|f| f.value.as_str()),
        Some("B85612")
    );
}

#[test]
fn equal_moments_settle_by_event_key_whatever_the_order() {
    let at = datetime!(2020-06-01 0:00 UTC);
    let a = with_postcode("pds-change-of-address-1/aaa", at, "WF14 0BQ");
    let b = with_postcode("pds-change-of-address-1/bbb", at, "LS17 7DF");
    let one = apply(Some(apply(None, a.clone())), b.clone());
    let other = apply(Some(apply(None, b)), a);
    assert_eq!(one, other);
    assert_eq!(home(&one), Some("LS17 7DF"));
}

#[test]
fn applying_the_same_event_again_changes_nothing() {
    let update = update_of("nems/PDS-Change-Of-GP-ems-example.xml").unwrap();
    let once = apply(None, update.clone());
    let twice = apply(Some(once.clone()), update);
    assert_eq!(once, twice);
}

#[test]
fn an_update_about_another_child_leaves_the_record_alone() {
    let record = apply(
        None,
        with_postcode("a", datetime!(2020-01-01 0:00 UTC), "LS17 7DF"),
    );
    let mut other = update(OTHER_CHILD, "b", datetime!(2021-01-01 0:00 UTC));
    other.home_postcode = Some(postcode("WF14 0BQ"));
    assert_eq!(apply(Some(record.clone()), other), record);
}

#[test]
fn death_statuses_follow_each_other_and_a_removal_is_not_undone_by_a_late_notice() {
    let death = |key: &str, at: OffsetDateTime, status: DeathStatus| {
        let mut update = update(CHILD, key, at);
        update.death = Some(status);
        update
    };
    let informal = death(
        "informal",
        datetime!(2020-01-02 0:00 UTC),
        DeathStatus::Informal,
    );
    let formal = death(
        "formal",
        datetime!(2020-01-05 0:00 UTC),
        DeathStatus::Formal,
    );
    let removed = death(
        "removed",
        datetime!(2020-01-09 0:00 UTC),
        DeathStatus::Removed,
    );

    let record = apply(None, informal.clone());
    assert!(record.is_dead());
    let record = apply(Some(record), formal);
    assert_eq!(record.death.as_ref().unwrap().value, DeathStatus::Formal);
    let record = apply(Some(record), removed);
    assert!(!record.is_dead());
    // The informal notice redelivered late does not mark the child dead again.
    let record = apply(Some(record), informal);
    assert_eq!(record.death.as_ref().unwrap().value, DeathStatus::Removed);
    assert!(!record.is_dead());
}

#[test]
fn only_pds_clears_the_sensitive_flag() {
    let sensitive = {
        let mut update = update(CHILD, "pds", datetime!(2020-01-01 0:00 UTC));
        update.sensitive = Some(true);
        update
    };
    let record = apply(None, sensitive);
    assert!(record.is_sensitive());

    // A later vaccination whose Patient entry has no security label says
    // nothing about sensitivity.
    let vaccination = update_of("nems/vaccinations-1-new.xml").unwrap();
    assert_eq!(vaccination.sensitive, None);
    let mut later = vaccination;
    later.at = datetime!(2021-01-01 0:00 UTC);
    let record = apply(Some(record), later);
    assert!(record.is_sensitive());

    // A later PDS event does clear it.
    let mut cleared = update(CHILD, "pds-later", datetime!(2022-01-01 0:00 UTC));
    cleared.sensitive = Some(false);
    let record = apply(Some(record), cleared);
    assert!(!record.is_sensitive());
}

#[test]
fn a_record_states_nothing_no_event_stated() {
    let record = apply(None, update(CHILD, "empty", datetime!(2020-01-01 0:00 UTC)));
    assert_eq!(record, ChildRecord::new(nhs(CHILD)));
    assert!(!record.is_sensitive());
}

#[test]
fn the_place_moved_from_comes_from_the_message_else_from_the_register() {
    let before = apply(
        None,
        with_postcode("a", datetime!(2020-01-01 0:00 UTC), "WF14 0BQ"),
    );
    // The message names no old address: the register's postcode is the one left.
    let moving = with_postcode("b", datetime!(2020-06-01 0:00 UTC), "LS17 7DF");
    assert_eq!(
        moved_from(Some(&before), &moving).from_postcode,
        Some(postcode("WF14 0BQ"))
    );
    // A late event moves no one: the register already holds newer data.
    let late = with_postcode("c", datetime!(2019-06-01 0:00 UTC), "LS17 7DF");
    assert_eq!(moved_from(Some(&before), &late), Moved::default());
    // The same postcode again is no move.
    let same = with_postcode("d", datetime!(2020-09-01 0:00 UTC), "WF14 0BQ");
    assert_eq!(moved_from(Some(&before), &same).from_postcode, None);
    // The message's own old address wins over the register's.
    let mut stated = moving.clone();
    stated.previous_postcode = Some(postcode("DH1 2TF"));
    assert_eq!(
        moved_from(Some(&before), &stated).from_postcode,
        Some(postcode("DH1 2TF"))
    );
}

// --- Any order, any repeats ---------------------------------------------------

fn arbitrary_update() -> impl Strategy<Value = RegisterUpdate> {
    let postcodes = prop::option::of(prop::sample::select(vec![
        "LS17 7DF", "WF14 0BQ", "DH1 2TF",
    ]));
    let practices = prop::option::of(prop::sample::select(vec!["A83627", "B86056", "B85612"]));
    let deaths = prop::option::of(prop::sample::select(vec![
        DeathStatus::Informal,
        DeathStatus::Formal,
        DeathStatus::Removed,
    ]));
    (
        0i64..6,
        0u8..4,
        postcodes,
        practices,
        deaths,
        prop::option::of(any::<bool>()),
    )
        .prop_map(|(day, key, postcode, practice, death, sensitive)| {
            let mut update = update(
                CHILD,
                &format!("event-{key}"),
                datetime!(2020-01-01 0:00 UTC) + time::Duration::days(day),
            );
            update.home_postcode = postcode.map(|code| Postcode::parse(code).unwrap());
            update.gp_practice = practice.map(str::to_owned);
            update.death = death;
            update.sensitive = sensitive;
            update
        })
}

/// The updates as one event each: the same key always says the same thing
/// at the same moment, as a redelivered event does.
fn as_events(updates: Vec<RegisterUpdate>) -> Vec<RegisterUpdate> {
    let mut seen: Vec<RegisterUpdate> = Vec::new();
    updates
        .into_iter()
        .map(|update| {
            match seen
                .iter()
                .find(|earlier| earlier.event_key == update.event_key)
            {
                Some(earlier) => earlier.clone(),
                None => {
                    seen.push(update.clone());
                    update
                }
            }
        })
        .collect()
}

fn replay(updates: &[RegisterUpdate]) -> Option<ChildRecord> {
    updates
        .iter()
        .cloned()
        .fold(None, |record, update| Some(apply(record, update)))
}

proptest! {
    #[test]
    fn any_order_and_any_repeats_give_the_same_record(
        updates in prop::collection::vec(arbitrary_update(), 1..8),
        shuffle in any::<prop::sample::Index>(),
        repeat in any::<prop::sample::Index>(),
    ) {
        let events = as_events(updates);
        let mut reordered = events.clone();
        let len = reordered.len();
        reordered.rotate_left(shuffle.index(len));
        reordered.reverse();
        reordered.push(events[repeat.index(len)].clone());
        prop_assert_eq!(replay(&events), replay(&reordered));
    }
}
