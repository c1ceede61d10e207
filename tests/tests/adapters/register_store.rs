//! The child register's DynamoDB adapter against the emulator: conditional
//! writes on the record's version, and the stored form of a full record.

use aws_sdk_dynamodb::types::AttributeValue;
use e2e_tests::{Emulator, create_table};
use hub::NhsNumber;
use hub::app::register::record_event;
use hub::aws::DynamoRegisterStore;
use hub::ports::RegisterStore;
use hub::reference::Postcode;
use hub::register::{ChildRecord, DeathStatus, RegisterUpdate, apply};
use time::macros::{date, datetime};

const TABLE: &str = "register";
const CHILD: &str = "9912003888";

fn child() -> NhsNumber {
    NhsNumber::parse(CHILD).unwrap()
}

async fn register(emulator: &Emulator) -> (DynamoRegisterStore, aws_sdk_dynamodb::Client) {
    let client = aws_sdk_dynamodb::Client::new(&emulator.config);
    create_table(&client, "RegisterTable", TABLE).await;
    (DynamoRegisterStore::new(client.clone(), TABLE), client)
}

/// A record with every field stated, by three events.
fn full_record() -> ChildRecord {
    let mut birth = RegisterUpdate::new(
        child(),
        "pds-birth-notification-1/a",
        datetime!(2020-01-01 9:30 UTC),
    );
    birth.birth_date = Some(date!(2019 - 12 - 31));
    birth.home_postcode = Some(Postcode::parse("LS17 7DF").unwrap());
    birth.sensitive = Some(true);
    let mut gp = RegisterUpdate::new(
        child(),
        "pds-change-of-gp-1/b",
        datetime!(2020-02-01 10:00:00.125 +01:00),
    );
    gp.gp_practice = Some(Some("B86056".into()));
    let mut death = RegisterUpdate::new(
        child(),
        "pds-death-notification-1/c",
        datetime!(2021-03-01 0:00 UTC),
    );
    death.death = Some(DeathStatus::Removed);
    let record = apply(Some(apply(Some(apply(None, birth)), gp)), death);
    assert!(record.birth_date.is_some() && record.gp_practice.is_some() && record.death.is_some());
    record
}

#[tokio::test(flavor = "multi_thread")]
async fn a_record_is_written_only_over_the_version_it_was_read_at() {
    let emulator = Emulator::start().await;
    let (store, _) = register(&emulator).await;
    let record = full_record();

    assert_eq!(store.get(child()).await.unwrap(), None);
    // A version that does not exist yet: nothing written.
    assert!(!store.put(&record, Some(1)).await.unwrap());
    assert_eq!(store.get(child()).await.unwrap(), None);

    // The first write expects no record.
    assert!(store.put(&record, None).await.unwrap());
    let stored = store.get(child()).await.unwrap().unwrap();
    assert_eq!(stored.version, 1);
    assert_eq!(stored.value, record);
    // A second "first" write loses.
    assert!(!store.put(&ChildRecord::new(child()), None).await.unwrap());

    // Two dispatches read version 1; the first to write wins, the other is
    // told so and must read again.
    let mut moved = record.clone();
    moved.home_postcode.as_mut().unwrap().value = Postcode::parse("WF14 0BQ").unwrap();
    assert!(store.put(&moved, Some(1)).await.unwrap());
    assert!(!store.put(&record, Some(1)).await.unwrap());
    assert!(!store.put(&record, Some(3)).await.unwrap());
    let stored = store.get(child()).await.unwrap().unwrap();
    assert_eq!(stored.version, 2);
    assert_eq!(stored.value, moved);
    assert!(store.put(&record, Some(2)).await.unwrap());
    assert_eq!(store.get(child()).await.unwrap().unwrap().version, 3);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_full_record_round_trips_in_its_stored_form() {
    let emulator = Emulator::start().await;
    let (store, client) = register(&emulator).await;
    let record = full_record();
    assert!(store.put(&record, None).await.unwrap());
    assert_eq!(store.get(child()).await.unwrap().unwrap().value, record);

    let item = client
        .get_item()
        .table_name(TABLE)
        .key("nhsNumber", AttributeValue::S(CHILD.into()))
        .send()
        .await
        .unwrap()
        .item
        .unwrap();
    let field = |name: &str, part: &str| item[name].as_m().unwrap()[part].clone();
    assert_eq!(item["version"], AttributeValue::N("1".into()));
    assert_eq!(
        field("birthDate", "value"),
        AttributeValue::S("2019-12-31".into())
    );
    assert_eq!(
        field("homePostcode", "value"),
        AttributeValue::S("LS17 7DF".into())
    );
    assert_eq!(
        field("gpPractice", "value"),
        AttributeValue::S("B86056".into())
    );
    assert_eq!(
        field("gpPractice", "changedAt"),
        AttributeValue::S("2020-02-01T09:00:00.125Z".into())
    );
    assert_eq!(
        field("gpPractice", "byEvent"),
        AttributeValue::S("pds-change-of-gp-1/b".into())
    );
    assert_eq!(field("death", "value"), AttributeValue::S("U".into()));
    assert_eq!(field("sensitive", "value"), AttributeValue::Bool(true));

    // A record of one fact leaves the others out.
    let other = NhsNumber::parse("9449305552").unwrap();
    let mut update = RegisterUpdate::new(other, "e", datetime!(2020-01-01 0:00 UTC));
    update.gp_practice = Some(Some("A83627".into()));
    let sparse = apply(None, update);
    assert!(store.put(&sparse, None).await.unwrap());
    let item = client
        .get_item()
        .table_name(TABLE)
        .key("nhsNumber", AttributeValue::S("9449305552".into()))
        .send()
        .await
        .unwrap()
        .item
        .unwrap();
    let mut names: Vec<&str> = item.keys().map(String::as_str).collect();
    names.sort_unstable();
    assert_eq!(names, ["gpPractice", "nhsNumber", "version"]);
    assert_eq!(store.get(other).await.unwrap().unwrap().value, sparse);
}

#[tokio::test(flavor = "multi_thread")]
async fn events_are_recorded_through_the_adapter() {
    let emulator = Emulator::start().await;
    let (store, _) = register(&emulator).await;
    let at_home = |key: &str, at, postcode: &str| {
        let mut update = RegisterUpdate::new(child(), key, at);
        update.home_postcode = Some(Postcode::parse(postcode).unwrap());
        update
    };
    let first = record_event(
        &store,
        &hub::memory::MemoryAuditLog::default(),
        at_home("a", datetime!(2020-01-01 0:00 UTC), "WF14 0BQ"),
        time::OffsetDateTime::now_utc(),
    )
    .await
    .unwrap();
    assert_eq!(first.before, None);
    let moved = record_event(
        &store,
        &hub::memory::MemoryAuditLog::default(),
        at_home("b", datetime!(2020-06-01 0:00 UTC), "LS17 7DF"),
        time::OffsetDateTime::now_utc(),
    )
    .await
    .unwrap();
    assert_eq!(moved.before, Some(first.after));
    assert_eq!(moved.moved.from_postcode, Postcode::parse("WF14 0BQ").ok());
    // A late event changes nothing and is not written.
    let late = record_event(
        &store,
        &hub::memory::MemoryAuditLog::default(),
        at_home("c", datetime!(2019-06-01 0:00 UTC), "DH1 2TF"),
        time::OffsetDateTime::now_utc(),
    )
    .await
    .unwrap();
    assert_eq!(late.after, moved.after);
    let stored = store.get(child()).await.unwrap().unwrap();
    assert_eq!(stored.version, 2);
    assert_eq!(stored.value, moved.after);
}
