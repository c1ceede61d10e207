//! The embargo store against the emulator: settings, the hold transaction
//! (once, however often dispatch retries), the due query by day and time,
//! settling only what is held, and the index the read paths use.

use e2e_tests::{Emulator, create_table};
use hub::aws::DynamoEmbargoStore;
use hub::criteria::ServiceType;
use hub::dispatch::{Delivery, Match};
use hub::embargo::{EmbargoSetting, Hold, HoldStatus};
use hub::ports::EmbargoStore;
use hub::{EventType, NhsNumber};

fn hold(event: &str, subscriber: &str, release_at: &str) -> Hold {
    Hold {
        event_key: format!("blood-spot-test-outcome-1/{event}"),
        event_type: EventType::BloodSpotTestOutcome,
        subscriber_id: subscriber.into(),
        delivery: Delivery {
            subscriber_id: subscriber.into(),
            matches: vec![Match {
                subscription_id: format!("{subscriber}-subscription"),
                tag: Some("tag".into()),
                basis: None,
            }],
            replay_id: None,
        },
        patient: Some(NhsNumber::parse("9912003888").unwrap()),
        release_at: release_at.into(),
        status: HoldStatus::Held,
        attempts: 0,
        last_error: None,
        expires_at: 4_102_444_800,
    }
}

fn pair(hold: &Hold) -> (String, String) {
    (hold.event_key.clone(), hold.subscriber_id.clone())
}

#[tokio::test(flavor = "multi_thread")]
async fn holds_are_written_once_found_when_due_and_settled_only_while_held() {
    let emulator = Emulator::start().await;
    let client = aws_sdk_dynamodb::Client::new(&emulator.config);
    create_table(&client, "EmbargoTable", "embargoes").await;
    let store = DynamoEmbargoStore::new(client, "embargoes");

    // Settings: set, replaced, removed (kept, marked).
    let mut setting = EmbargoSetting {
        event_type: EventType::BloodSpotTestOutcome,
        service_type: ServiceType::Epchr,
        delay: "P42D".into(),
        reason: "the 42-day rule".into(),
        set_by: "operator".into(),
        set_at: "2026-01-01T00:00:00.000Z".into(),
    };
    store.put_setting(&setting).await.unwrap();
    setting.delay = "PT5S".into();
    store.put_setting(&setting).await.unwrap();
    assert_eq!(store.settings().await.unwrap().0, vec![setting.clone()]);
    assert!(
        store
            .remove_setting(EventType::BloodSpotTestOutcome, ServiceType::Epchr, "now")
            .await
            .unwrap()
    );
    assert!(store.settings().await.unwrap().is_empty());
    assert!(
        !store
            .remove_setting(EventType::BloodSpotTestOutcome, ServiceType::Epchr, "now")
            .await
            .unwrap(),
        "nothing left to remove"
    );

    let early = hold("a", "pchr", "2026-03-02T09:00:05.000Z");
    let later = hold("b", "pchr", "2026-03-02T18:00:00.000Z");
    let next_day = hold("c", "pchr", "2026-03-03T09:00:00.000Z");
    for held in [&early, &later, &next_day] {
        assert!(store.hold(held).await.unwrap());
    }
    assert!(
        !store.hold(&early).await.unwrap(),
        "a retried hold is no new hold"
    );

    let due = store
        .due("2026-03-02", "2026-03-02T12:00:00.000Z", None, 10)
        .await
        .unwrap();
    assert_eq!(due.items, vec![early.clone()]);
    assert_eq!(due.next, None);
    let whole_day = store
        .due("2026-03-02", "2026-03-03T00:00:00.000Z", None, 1)
        .await
        .unwrap();
    assert_eq!(whole_day.items, vec![early.clone()]);
    let rest = store
        .due(
            "2026-03-02",
            "2026-03-03T00:00:00.000Z",
            whole_day.next.as_deref(),
            1,
        )
        .await
        .unwrap();
    assert_eq!(rest.items, vec![later.clone()]);

    let held = store
        .held(&[pair(&early), pair(&later), ("other".into(), "pchr".into())])
        .await
        .unwrap();
    assert_eq!(held.len(), 2);

    store.attempt_failed(&early, "SNS is down").await.unwrap();
    assert!(
        store
            .settle(&early, HoldStatus::Released, None)
            .await
            .unwrap()
    );
    assert!(
        !store
            .settle(&early, HoldStatus::Released, None)
            .await
            .unwrap(),
        "released once"
    );
    assert!(
        store
            .settle(
                &later,
                HoldStatus::Cancelled,
                Some("the subscription ended")
            )
            .await
            .unwrap()
    );
    let due = store
        .due("2026-03-02", "2026-03-03T00:00:00.000Z", None, 10)
        .await
        .unwrap();
    assert!(due.items.is_empty(), "settled holds are not due again");
    let held = store
        .held(&[pair(&early), pair(&later), pair(&next_day)])
        .await
        .unwrap();
    assert_eq!(held.into_iter().collect::<Vec<_>>(), vec![pair(&next_day)]);

    assert_eq!(store.watermark().await.unwrap(), None);
    store.set_watermark("2026-03-02").await.unwrap();
    assert_eq!(
        store.watermark().await.unwrap().as_deref(),
        Some("2026-03-02")
    );
}
