//! The relationships table's DynamoDB adapter against the emulator, and the
//! in-memory adapter through the same sequence: duplicates and conflicts
//! by (source, Bundle.id) and body, out-of-order statements recorded as
//! seen and ignored, and the reads by child, pair and person.

use aws_sdk_dynamodb::types::AttributeValue;
use e2e_tests::{Emulator, create_table};
use hub::NhsNumber;
use hub::aws::DynamoRelationshipStore;
use hub::memory::MemoryRelationshipStore;
use hub::ports::{Recorded, RelationshipStore};
use hub::relationship::{RelationshipChange, RelationshipStatus, read_vrs_signal};
use time::macros::datetime;

const TABLE: &str = "relationships";

fn sample(name: &str) -> String {
    let path = format!(
        "{}/../events/relationships/{name}.json",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn change(body: &str) -> RelationshipChange {
    read_vrs_signal(body, "vrs-publisher", datetime!(2026-12-07 12:00 UTC)).unwrap()
}

/// The created sample with its Bundle.id, Consent.meta.lastUpdated and
/// child or person changed.
fn variant(id: &str, last_updated: &str, child: Option<&str>, person: Option<&str>) -> String {
    let mut bundle: serde_json::Value =
        serde_json::from_str(&sample("vrs-proxy-role-created-1")).unwrap();
    bundle["id"] = id.into();
    bundle["entry"][1]["resource"]["meta"]["lastUpdated"] = last_updated.into();
    if let Some(child) = child {
        bundle["entry"][0]["resource"]["parameter"][3]["part"][2]["valueReference"]["identifier"]
            ["value"] = child.into();
        bundle["entry"][1]["resource"]["patient"]["identifier"]["value"] = child.into();
        bundle["entry"][2]["resource"]["patient"]["identifier"]["value"] = child.into();
    }
    if let Some(person) = person {
        bundle["entry"][1]["resource"]["performer"][0]["identifier"]["value"] = person.into();
        bundle["entry"][2]["resource"]["identifier"][0]["value"] = person.into();
        bundle["entry"][3]["resource"]["identifier"][0]["value"] = person.into();
    }
    bundle.to_string()
}

fn nhs(number: &str) -> NhsNumber {
    NhsNumber::parse(number).unwrap()
}

const CHILD: &str = "9912003888";
const MOTHER: &str = "9449305552";
const OTHER_CHILD: &str = "9434765919";
const FATHER: &str = "9000000009";

/// The whole sequence, on any adapter.
async fn the_sequence(store: &impl RelationshipStore) {
    let created = sample("vrs-proxy-role-created-1");
    assert_eq!(
        store.record(&change(&created)).await.unwrap(),
        Recorded::Created
    );
    assert_eq!(
        store.record(&change(&created)).await.unwrap(),
        Recorded::Duplicate
    );
    // The same id with another body: a conflict, and nothing changes.
    let mut other = change(&created);
    other.body_sha256 = "0".repeat(64);
    other.relationship.relationship_type = "FTH".into();
    assert_eq!(store.record(&other).await.unwrap(), Recorded::Conflict);
    let held = store.between(nhs(CHILD), nhs(MOTHER)).await.unwrap();
    assert_eq!(held.len(), 1);
    assert_eq!(held[0].relationship_type, "MTH");

    let changed = change(&sample("vrs-proxy-role-changed-1"));
    assert_eq!(store.record(&changed).await.unwrap(), Recorded::Updated);
    // A statement older than the one held is seen and ignored; seen again,
    // it is a duplicate.
    let stale = change(&variant(
        "5b0d1e09-2a6c-4b44-8f2d-4e9c1b8a6d00",
        "2026-12-07T09:30:00+00:00",
        None,
        None,
    ));
    assert_eq!(store.record(&stale).await.unwrap(), Recorded::OutOfOrder);
    assert_eq!(store.record(&stale).await.unwrap(), Recorded::Duplicate);
    let held = store.between(nhs(CHILD), nhs(MOTHER)).await.unwrap();
    assert_eq!(held, vec![changed.relationship.clone()]);
    assert_eq!(held[0].verification_level, "P5");

    let deleted = change(&sample("vrs-proxy-role-deleted-1"));
    assert_eq!(store.record(&deleted).await.unwrap(), Recorded::Updated);
    let held = store.between(nhs(CHILD), nhs(MOTHER)).await.unwrap();
    assert_eq!(held[0].status, RelationshipStatus::Inactive);

    // A father of the same child, and the mother's other child.
    let father = change(&variant(
        "a1d3c2b4-0000-4000-8000-000000000001",
        "2026-12-07T10:00:00+00:00",
        None,
        Some(FATHER),
    ));
    assert_eq!(store.record(&father).await.unwrap(), Recorded::Created);
    let sibling = change(&variant(
        "a1d3c2b4-0000-4000-8000-000000000002",
        "2026-12-07T10:00:00+00:00",
        Some(OTHER_CHILD),
        None,
    ));
    assert_eq!(store.record(&sibling).await.unwrap(), Recorded::Created);

    let mut people: Vec<String> = store
        .for_child(nhs(CHILD))
        .await
        .unwrap()
        .iter()
        .map(|relationship| relationship.person_nhs.as_string())
        .collect();
    people.sort();
    assert_eq!(people, [FATHER, MOTHER]);
    assert_eq!(
        store.between(nhs(CHILD), nhs(FATHER)).await.unwrap(),
        vec![father.relationship]
    );
    assert!(
        store
            .between(nhs(OTHER_CHILD), nhs(FATHER))
            .await
            .unwrap()
            .is_empty()
    );
    let mut children: Vec<String> = store
        .children_of(nhs(MOTHER))
        .await
        .unwrap()
        .iter()
        .map(|relationship| relationship.child_nhs.as_string())
        .collect();
    children.sort();
    assert_eq!(children, [OTHER_CHILD, CHILD]);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_memory_adapter_records_and_reads_relationships() {
    the_sequence(&MemoryRelationshipStore::default()).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_dynamodb_adapter_records_and_reads_relationships() {
    let emulator = Emulator::start().await;
    let client = aws_sdk_dynamodb::Client::new(&emulator.config);
    create_table(&client, "RelationshipsTable", TABLE).await;
    let store = DynamoRelationshipStore::new(client.clone(), TABLE);
    the_sequence(&store).await;

    // The stored form: the relationship under its child, the event seen
    // under its source and id.
    let item = client
        .get_item()
        .table_name(TABLE)
        .key("pk", AttributeValue::S(format!("CHILD#{CHILD}")))
        .key(
            "sk",
            AttributeValue::S(format!("PERSON#{MOTHER}#vrs:vrs-publisher")),
        )
        .send()
        .await
        .unwrap()
        .item
        .expect("the relationship item");
    assert_eq!(item["personNhs"].as_s().unwrap(), MOTHER);
    assert_eq!(item["status"].as_s().unwrap(), "inactive");
    assert_eq!(item["relationshipType"].as_s().unwrap(), "MTH");
    let seen = client
        .get_item()
        .table_name(TABLE)
        .key(
            "pk",
            AttributeValue::S(
                "RELEVENT#uk.nhs.validated-relationships-service#6c1e2f1a-3b7d-4c55-9a3e-5f0d2c9b7e11"
                    .into(),
            ),
        )
        .key("sk", AttributeValue::S("RELEVENT".into()))
        .send()
        .await
        .unwrap()
        .item
        .expect("the event seen");
    assert_eq!(
        seen["sha256"].as_s().unwrap(),
        &hub::events::sha256_hex(&sample("vrs-proxy-role-created-1"))
    );
    assert_eq!(
        seen["eventType"].as_s().unwrap(),
        "vrs-proxy-role-created-1"
    );
}
