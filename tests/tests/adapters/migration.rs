//! `hub-local migrate subscription-bases` against the emulator: explicit
//! subscriptions made before bases were recorded get the one that holds,
//! on every stored copy, once.

use e2e_tests::{Emulator, create_table};
use hub::aws::{DynamoRegisterStore, DynamoSubscriptionStore};
use hub::basis::Basis;
use hub::criteria::Criteria;
use hub::memory::MemoryAuditLog;
use hub::ports::SubscriptionStore;
use hub::register::RegisterUpdate;
use hub::subscriber::OdsCode;
use hub::subscription::Subscription;
use hub::{EventType, NhsNumber};
use hub_local::migrate::{Migrated, subscription_bases, summary};
use time::macros::datetime;

const CHILD: &str = "9912003888";

fn subscription(id: &str, ods: &str, criteria: &str) -> Subscription {
    Subscription {
        id: id.into(),
        subscriber_id: format!("subscriber-{ods}"),
        contact_ods: OdsCode::parse(ods).unwrap(),
        reason: "care".into(),
        end: None,
        criteria: Criteria::parse(criteria).unwrap(),
        version_id: 1,
        last_updated: "2026-01-01T00:00:00Z".into(),
        basis: None,
        ended: None,
        backfills: Vec::new(),
    }
}

fn explicit() -> String {
    format!(
        "/Bundle?type=message&Patient.identifier=http://fhir.nhs.net/Id/nhs-number|{CHILD}\
         &MessageHeader.event=vaccinations-1"
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn existing_explicit_subscriptions_get_the_basis_that_holds_once() {
    let emulator = Emulator::start().await;
    let client = aws_sdk_dynamodb::Client::new(&emulator.config);
    create_table(&client, "SubscriptionsTable", "subscriptions").await;
    create_table(&client, "RegisterTable", "register").await;
    let subscriptions = DynamoSubscriptionStore::new(client.clone(), "subscriptions");
    let register = DynamoRegisterStore::new(client, "register");
    let mut registration = RegisterUpdate::new(
        NhsNumber::parse(CHILD).unwrap(),
        "pds-change-of-gp-1/a",
        datetime!(2026-01-01 09:00 UTC),
    );
    registration.gp_practice = Some(Some("A83627".into()));
    hub::app::register::record_event(
        &register,
        &MemoryAuditLog::default(),
        registration,
        datetime!(2026-01-01 09:00 UTC),
    )
    .await
    .unwrap();

    let gp = subscription("gp", "A83627", &explicit());
    let visitor = subscription("visitor", "RR8", &explicit());
    let area = subscription(
        "area",
        "RR8",
        "/Bundle?type=message&subscriptionRuleType=CHO_POSTCODE_CCG&Organization.identifier=15F&MessageHeader.event=vaccinations-1",
    );
    let recorded = Subscription {
        id: "recorded".into(),
        basis: Some(Basis::DeclaredDirectCare),
        ..subscription("recorded", "A83627", &explicit())
    };
    for stored in [&gp, &visitor, &area, &recorded] {
        subscriptions.create(stored).await.unwrap();
    }

    let dry = subscription_bases(&subscriptions, &register, true)
        .await
        .unwrap();
    assert_eq!(subscriptions.get("gp").await.unwrap().unwrap().basis, None);
    let migrated = subscription_bases(&subscriptions, &register, false)
        .await
        .unwrap();
    assert_eq!(dry, migrated, "a dry run decides as the run does");
    assert_eq!(
        migrated,
        Migrated {
            assigned: [("declared-direct-care", 1), ("registered-gp", 1)].into(),
            already: 1,
            generic: 1,
        }
    );
    assert!(
        summary(&migrated, false).contains("1 declared-direct-care, 1 registered-gp"),
        "{}",
        summary(&migrated, false)
    );
    let gp_basis = Some(Basis::RegisteredGp {
        practice: OdsCode::parse("A83627").unwrap(),
    });
    assert_eq!(
        subscriptions.get("gp").await.unwrap().unwrap().basis,
        gp_basis
    );
    assert_eq!(
        subscriptions.get("visitor").await.unwrap().unwrap().basis,
        Some(Basis::DeclaredDirectCare)
    );
    assert_eq!(
        subscriptions.get("area").await.unwrap().unwrap().basis,
        None
    );
    // Dispatch reads the match items: they carry the basis too.
    let candidates = subscriptions
        .explicit_candidates(NhsNumber::parse(CHILD).unwrap(), EventType::Vaccinations)
        .await
        .unwrap();
    let gp_copy = candidates.iter().find(|candidate| candidate.id == "gp");
    assert_eq!(gp_copy.map(|copy| copy.basis.clone()), Some(gp_basis));

    // A second run finds nothing left to do.
    let again = subscription_bases(&subscriptions, &register, false)
        .await
        .unwrap();
    assert_eq!(
        again,
        Migrated {
            assigned: Default::default(),
            already: 3,
            generic: 1,
        }
    );
}
