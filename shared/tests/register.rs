//! The child register: what each NEMS example message says about its child,
//! and how updates merge (newer wins, older never overwrites, any order and
//! any number of repeats give the same record).

use std::path::PathBuf;

use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use hub::app::register::{MAX_RECORD_ATTEMPTS, record_event};
use hub::events::StoredEvent;
use hub::fhir::read_xml;
use hub::memory::MemoryRegisterStore;
use hub::message::EventMessage;
use hub::ports::{RegisterStore, StoreError, Versioned};
use hub::reference::Postcode;
use hub::register::{
    ChildRecord, DeathStatus, Field, Moved, Recorded, RegisterUpdate, apply, moved_from,
    updates_for, updates_in,
};
use hub::{Encoding, NhsNumber};
use proptest::prelude::*;
use serde_json::json;
use time::OffsetDateTime;
use time::macros::{date, datetime};

/// Records an update as dispatch does; the audit trail of flag changes is
/// not what these tests are about.
async fn record<S: hub::ports::RegisterStore>(
    store: &S,
    update: hub::register::RegisterUpdate,
) -> Result<hub::register::Recorded, hub::ports::StoreError> {
    record_event(
        store,
        &hub::memory::MemoryAuditLog::default(),
        update,
        time::OffsetDateTime::now_utc(),
    )
    .await
}

const CHILD: &str = "9912003888";
const OTHER_CHILD: &str = "9449305552";

fn nhs(number: &str) -> NhsNumber {
    NhsNumber::parse(number).unwrap()
}

fn postcode(text: &str) -> Postcode {
    Postcode::parse(text).unwrap()
}

fn example(name: &str) -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../events")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|_| panic!("{}", path.display()))
}

/// The register update of an example message (path under events/).
fn update_of(example: &str) -> Option<RegisterUpdate> {
    let text = self::example(example);
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
    // Only the demographics authority says a child is not sensitive.
    assert_eq!(update.sensitive, None);
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
    assert_eq!(update.gp_practice, Some(Some("B86056".to_owned())));
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
        record.gp_practice.as_ref().and_then(|f| f.value.as_deref()),
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
    late.gp_practice = Some(Some("B85612".into()));
    let after = apply(Some(newer), late);
    assert_eq!(home(&after), Some("LS17 7DF"));
    assert_eq!(after.home_postcode.as_ref().unwrap().by_event, "new");
    // The late event still fills a field nothing newer has stated.
    assert_eq!(
        after.gp_practice.as_ref().and_then(|f| f.value.as_deref()),
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
            update.gp_practice = practice.map(|code| Some(code.to_owned()));
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

// --- The stored form -----------------------------------------------------------

/// A record with every field stated.
fn full_record() -> ChildRecord {
    let mut birth = update(
        CHILD,
        "pds-birth-notification-1/a",
        datetime!(2020-01-01 9:30 UTC),
    );
    birth.birth_date = Some(date!(2019 - 12 - 31));
    birth.home_postcode = Some(postcode("LS17 7DF"));
    birth.sensitive = Some(false);
    let mut gp = update(
        CHILD,
        "pds-change-of-gp-1/b",
        datetime!(2020-02-01 10:00:00.25 +01:00),
    );
    gp.gp_practice = Some(Some("B86056".into()));
    let mut death = update(
        CHILD,
        "pds-death-notification-1/c",
        datetime!(2021-03-01 0:00 UTC),
    );
    death.death = Some(DeathStatus::Informal);
    [gp, death]
        .into_iter()
        .fold(apply(None, birth), |record, update| {
            apply(Some(record), update)
        })
}

#[test]
fn a_record_is_stored_in_camel_case_with_codes_dates_and_utc_instants() {
    let record = full_record();
    let stored = serde_json::to_value(&record).unwrap();
    assert_eq!(
        stored,
        json!({
            "nhsNumber": CHILD,
            "birthDate": {"value": "2019-12-31", "changedAt": "2020-01-01T09:30:00Z", "byEvent": "pds-birth-notification-1/a"},
            "homePostcode": {"value": "LS17 7DF", "changedAt": "2020-01-01T09:30:00Z", "byEvent": "pds-birth-notification-1/a"},
            "gpPractice": {"value": "B86056", "changedAt": "2020-02-01T09:00:00.25Z", "byEvent": "pds-change-of-gp-1/b"},
            "death": {"value": "1", "changedAt": "2021-03-01T00:00:00Z", "byEvent": "pds-death-notification-1/c"},
            "sensitive": {"value": false, "changedAt": "2020-01-01T09:30:00Z", "byEvent": "pds-birth-notification-1/a"},
        })
    );
    let read: ChildRecord = serde_json::from_value(stored).unwrap();
    assert_eq!(read, record);

    // Fields no event stated are left out, and read back as None.
    let bare = ChildRecord::new(nhs(CHILD));
    let stored = serde_json::to_value(&bare).unwrap();
    assert_eq!(stored, json!({"nhsNumber": CHILD}));
    assert_eq!(serde_json::from_value::<ChildRecord>(stored).unwrap(), bare);
}

#[test]
fn a_stored_record_is_checked_when_read() {
    let good = serde_json::to_value(full_record()).unwrap();
    let spoilt = |pointer: &str, value: serde_json::Value| {
        let mut stored = good.clone();
        *stored.pointer_mut(pointer).unwrap() = value;
        serde_json::from_value::<ChildRecord>(stored)
    };
    assert!(spoilt("/nhsNumber", json!("9912003889")).is_err());
    assert!(spoilt("/birthDate/value", json!("2019-02-30")).is_err());
    assert!(spoilt("/birthDate/value", json!("2019")).is_err());
    assert!(spoilt("/homePostcode/value", json!("not a postcode")).is_err());
    assert!(spoilt("/gpPractice/value", json!("b86056")).is_err());
    assert!(spoilt("/gpPractice/value", json!("B8-056")).is_err());
    assert!(spoilt("/death/value", json!("3")).is_err());
    assert!(spoilt("/death/value", json!(1)).is_err());
    assert!(spoilt("/sensitive/changedAt", json!("2020-01-01T09:30:00")).is_err());
    assert!(spoilt("/sensitive/value", json!("false")).is_err());
    for status in ["1", "2", "U"] {
        let read = spoilt("/death/value", json!(status)).unwrap();
        assert_eq!(read.death.unwrap().value.code(), status);
    }
}

// --- What a stored event says ------------------------------------------------------

fn stored(name: &str, encoding: Encoding) -> StoredEvent {
    let payload = example(name);
    let message = EventMessage::read(&payload, encoding).unwrap();
    StoredEvent::new(
        &message,
        encoding,
        &payload,
        OffsetDateTime::now_utc(),
        hub::events::Retention::DEFAULT,
    )
}

#[test]
fn a_stored_birth_notification_updates_the_baby_in_either_encoding() {
    for (name, encoding) in [
        (
            "derived/BirthNotificationWithMother-valid-mother.xml",
            Encoding::Xml,
        ),
        (
            "derived/BirthNotificationWithMother-valid-mother.json",
            Encoding::Json,
        ),
    ] {
        let event = stored(name, encoding);
        // Routed on the mother; the update is the baby's.
        assert_eq!(event.nhs_number, Some(nhs(OTHER_CHILD)), "{name}");
        let updates = updates_for(&event);
        assert_eq!(updates.len(), 1, "{name}");
        assert_eq!(updates[0].nhs_number, nhs(CHILD), "{name}");
        assert_eq!(updates[0].birth_date, Some(date!(2017 - 10 - 02)), "{name}");
        assert_eq!(
            updates[0].home_postcode,
            Some(postcode("LS17 7DF")),
            "{name}"
        );
        assert_eq!(updates[0].event_key, event.event_key, "{name}");
        assert_eq!(
            updates_in(&event.payload, encoding).unwrap(),
            updates,
            "{name}"
        );
    }
}

#[test]
fn other_stored_events_update_the_routed_patient() {
    for (name, encoding) in [
        ("nems/vaccinations-1-new.xml", Encoding::Xml),
        ("nems/PDS-Change-Of-Address-ems-example.xml", Encoding::Xml),
        (
            "nems-json/PDS-Change-Of-Address-ems-example.json",
            Encoding::Json,
        ),
    ] {
        let event = stored(name, encoding);
        let updates = updates_for(&event);
        assert_eq!(updates.len(), 1, "{name}");
        assert_eq!(Some(updates[0].nhs_number), event.nhs_number, "{name}");
        assert_eq!(updates[0].event_key, event.event_key, "{name}");
    }
    // The two encodings of one message say the same.
    let xml = updates_for(&stored(
        "nems/PDS-Change-Of-Address-ems-example.xml",
        Encoding::Xml,
    ));
    let json = updates_for(&stored(
        "nems-json/PDS-Change-Of-Address-ems-example.json",
        Encoding::Json,
    ));
    assert_eq!(xml, json);
}

#[test]
fn a_stored_event_that_no_longer_reads_says_nothing() {
    let mut event = stored("nems/vaccinations-1-new.xml", Encoding::Xml);
    event.content_type = "text/plain".into();
    assert!(updates_for(&event).is_empty());
    let mut event = stored("nems/vaccinations-1-new.xml", Encoding::Xml);
    event.payload = "<Bundle".into();
    assert!(updates_for(&event).is_empty());
    assert!(updates_in("{}", Encoding::Json).is_err());
}

// --- Recording events in the stored register ----------------------------------------

fn block_on<F: std::future::Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
        .block_on(future)
}

async fn version(store: &impl RegisterStore, number: &str) -> Option<u64> {
    store
        .get(nhs(number))
        .await
        .unwrap()
        .map(|stored| stored.version)
}

#[tokio::test]
async fn recording_a_birth_creates_the_record() {
    let store = MemoryRegisterStore::default();
    let event = stored(
        "derived/BirthNotificationWithMother-valid-mother.xml",
        Encoding::Xml,
    );
    let update = updates_for(&event).remove(0);
    let recorded = record(&store, update.clone()).await.unwrap();
    assert_eq!(recorded.before, None);
    assert_eq!(recorded.after, apply(None, update));
    assert_eq!(recorded.moved, Moved::default());
    assert_eq!(store.record(nhs(CHILD)), Some(recorded.after));
    assert_eq!(version(&store, CHILD).await, Some(1));
    assert_eq!(store.record(nhs(OTHER_CHILD)), None, "not the mother's");
}

#[tokio::test]
async fn a_move_is_recorded_with_the_place_left() {
    let store = MemoryRegisterStore::default();
    record(
        &store,
        with_postcode("a", datetime!(2020-01-01 0:00 UTC), "WF14 0BQ"),
    )
    .await
    .unwrap();
    let recorded = record(
        &store,
        with_postcode("b", datetime!(2020-06-01 0:00 UTC), "LS17 7DF"),
    )
    .await
    .unwrap();
    assert_eq!(recorded.before.as_ref().and_then(home), Some("WF14 0BQ"));
    assert_eq!(home(&recorded.after), Some("LS17 7DF"));
    assert_eq!(recorded.moved.from_postcode, Some(postcode("WF14 0BQ")));
    assert_eq!(store.record(nhs(CHILD)), Some(recorded.after));
    assert_eq!(version(&store, CHILD).await, Some(2));
}

#[tokio::test]
async fn a_repeated_or_late_event_is_not_written_again() {
    let store = MemoryRegisterStore::default();
    let newer = with_postcode("new", datetime!(2020-06-01 0:00 UTC), "LS17 7DF");
    let first = record(&store, newer.clone()).await.unwrap();
    let again = record(&store, newer).await.unwrap();
    assert_eq!(again.before, Some(first.after.clone()));
    assert_eq!(again.after, first.after);
    let late = record(
        &store,
        with_postcode("old", datetime!(2020-01-01 0:00 UTC), "WF14 0BQ"),
    )
    .await
    .unwrap();
    assert_eq!(late.after, first.after);
    assert_eq!(late.moved, Moved::default());
    assert_eq!(version(&store, CHILD).await, Some(1), "written once");
}

#[tokio::test]
async fn an_event_that_states_nothing_puts_no_one_on_the_register() {
    let store = MemoryRegisterStore::default();
    let empty = update(CHILD, "empty", datetime!(2020-01-01 0:00 UTC));
    let recorded = record(&store, empty).await.unwrap();
    assert_eq!(recorded.before, None);
    assert_eq!(recorded.after, ChildRecord::new(nhs(CHILD)));
    assert!(store.is_empty());
}

/// A register that another dispatch writes to between a read and the write
/// that follows it: `interference` updates, one after each of the first
/// reads.
struct Contended {
    inner: MemoryRegisterStore,
    interference: Mutex<Vec<RegisterUpdate>>,
    puts: AtomicUsize,
}

impl Contended {
    fn new(inner: MemoryRegisterStore, interference: Vec<RegisterUpdate>) -> Self {
        Contended {
            inner,
            interference: Mutex::new(interference),
            puts: AtomicUsize::new(0),
        }
    }
}

impl RegisterStore for Contended {
    async fn get(
        &self,
        nhs_number: NhsNumber,
    ) -> Result<Option<Versioned<ChildRecord>>, StoreError> {
        let read = self.inner.get(nhs_number).await?;
        let next = self.interference.lock().unwrap().pop();
        if let Some(other) = next {
            let stored = self.inner.get(nhs_number).await?;
            let version = stored.as_ref().map(|stored| stored.version);
            let record = apply(stored.map(|stored| stored.value), other);
            assert!(self.inner.put(&record, version).await?);
        }
        Ok(read)
    }

    async fn put(
        &self,
        record: &ChildRecord,
        expected_version: Option<u64>,
    ) -> Result<bool, StoreError> {
        self.puts.fetch_add(1, Ordering::SeqCst);
        self.inner.put(record, expected_version).await
    }
}

#[tokio::test]
async fn a_write_that_lost_a_race_reads_again_and_keeps_both_changes() {
    let mut gp = update(CHILD, "gp", datetime!(2020-03-01 0:00 UTC));
    gp.gp_practice = Some(Some("B86056".into()));
    // The other dispatch creates the record between our read and our write.
    let store = Contended::new(MemoryRegisterStore::default(), vec![gp]);
    let recorded = record(
        &store,
        with_postcode("address", datetime!(2020-02-01 0:00 UTC), "LS17 7DF"),
    )
    .await
    .unwrap();
    assert_eq!(
        store.puts.load(Ordering::SeqCst),
        2,
        "one refused, one written"
    );
    let stored = store.inner.record(nhs(CHILD)).unwrap();
    assert_eq!(stored, recorded.after);
    assert_eq!(home(&stored), Some("LS17 7DF"));
    assert_eq!(
        stored
            .gp_practice
            .as_ref()
            .and_then(|field| field.value.as_deref()),
        Some("B86056")
    );
    // `before` is the record the write was finally based on.
    assert_eq!(
        recorded
            .before
            .as_ref()
            .and_then(|record| record.gp_practice.clone())
            .and_then(|field| field.value),
        Some("B86056".to_owned())
    );
    assert_eq!(version(&store.inner, CHILD).await, Some(2));
}

#[tokio::test]
async fn a_record_that_keeps_changing_fails_the_event_for_a_retry() {
    let interference = (0..MAX_RECORD_ATTEMPTS)
        .map(|day| {
            with_postcode(
                &format!("other-{day}"),
                datetime!(2019-01-01 0:00 UTC) + time::Duration::days(day as i64),
                "WF14 0BQ",
            )
        })
        .collect();
    let store = Contended::new(MemoryRegisterStore::default(), interference);
    let mut gp = update(CHILD, "gp", datetime!(2020-03-01 0:00 UTC));
    gp.gp_practice = Some(Some("B86056".into()));
    let result = record(&store, gp).await;
    assert!(
        matches!(result, Err(StoreError::Unavailable(_))),
        "{result:?}"
    );
    assert_eq!(store.puts.load(Ordering::SeqCst), MAX_RECORD_ATTEMPTS);
    assert_eq!(
        store.inner.record(nhs(CHILD)).unwrap().gp_practice,
        None,
        "nothing of the failed event was written"
    );
}

fn recorded_through_store(updates: &[RegisterUpdate]) -> (Option<ChildRecord>, Vec<Recorded>) {
    block_on(async {
        let store = MemoryRegisterStore::default();
        let mut recorded = Vec::new();
        for update in updates {
            recorded.push(record(&store, update.clone()).await.unwrap());
        }
        (store.record(nhs(CHILD)), recorded)
    })
}

proptest! {
    #[test]
    fn the_stored_register_is_the_same_whatever_the_order_and_repeats(
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
        let (in_order, _) = recorded_through_store(&events);
        let (out_of_order, recorded) = recorded_through_store(&reordered);
        prop_assert_eq!(&in_order, &out_of_order);
        // What is stored is what merging in memory gives, less a record of
        // no facts, which is never written.
        let merged = replay(&events).filter(|record| *record != ChildRecord::new(nhs(CHILD)));
        prop_assert_eq!(&in_order, &merged);
        // Each step reports what it read and what it left.
        for pair in recorded.windows(2) {
            let left = Some(pair[0].after.clone()).filter(|record| *record != ChildRecord::new(nhs(CHILD)));
            prop_assert_eq!(&pair[1].before, &left);
        }
    }
}
