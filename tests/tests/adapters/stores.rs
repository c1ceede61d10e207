//! The SDK adapters against the emulator: the same code that runs on AWS.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use e2e_tests::{Emulator, attribute, fixture, receive_all};
use hub::aws::{
    DynamoEventStore, DynamoSubscriberStore, DynamoSubscriptionStore, QueueSettings,
    SnsDeliveryPublisher, SqsQueueProvisioner,
};
use hub::criteria::Criteria;
use hub::dispatch::{Delivery, Match};
use hub::events::StoredEvent;
use hub::ports::{
    DeliveryPublisher, EventStore, Insert, QueueProvisioner, SubscriberStore, SubscriptionStore,
};
use hub::subscriber::{OdsCode, Subscriber};
use hub::subscription::Subscription;
use hub::{Encoding, EventMessage, EventType, NhsNumber};
use time::OffsetDateTime;

use e2e_tests::create_table as table;

fn stored_vaccination(body: &str) -> StoredEvent {
    let message = EventMessage::read(body, Encoding::Xml).unwrap();
    StoredEvent::new(
        &message,
        Encoding::Xml,
        body,
        OffsetDateTime::now_utc(),
        hub::events::Retention::DEFAULT,
    )
}

/// The events table with its two indexes, and the versions table, as
/// template.yaml declares them.
async fn event_tables(client: &aws_sdk_dynamodb::Client) {
    table(client, "EventsTable", "events").await;
    table(client, "VersionsTable", "versions").await;
}

fn received(body: &str, at: OffsetDateTime) -> StoredEvent {
    let message = EventMessage::read(body, Encoding::Xml).unwrap();
    StoredEvent::new(
        &message,
        Encoding::Xml,
        body,
        at,
        hub::events::Retention::DEFAULT,
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn the_event_store_writes_once_and_tells_duplicates_from_conflicts() {
    let emulator = Emulator::start().await;
    let client = aws_sdk_dynamodb::Client::new(&emulator.config);
    event_tables(&client).await;
    let store = DynamoEventStore::new(client, "events", "versions");
    let body = fixture("nems/vaccinations-1-new.xml");
    let event = stored_vaccination(&body);
    assert_eq!(
        store.insert(&event).await.unwrap(),
        Insert::Stored { out_of_order: None }
    );
    assert_eq!(store.insert(&event).await.unwrap(), Insert::Duplicate);
    assert_eq!(
        store.get(&event.event_key).await.unwrap(),
        Some(event.clone())
    );
    assert_eq!(store.get("vaccinations-1/unknown").await.unwrap(), None);
    let altered = stored_vaccination(&body.replace("CCJN12M", "CCJN99X"));
    assert_eq!(altered.event_id, event.event_id);
    assert_eq!(store.insert(&altered).await.unwrap(), Insert::Conflict);
}

/// Dispatch marks an event withheld, an operator releases it: the flag is
/// written (SENSITIVE is a reserved word of DynamoDB's expressions), shows
/// in the child's timeline, and an expired or unknown event is not created.
#[tokio::test(flavor = "multi_thread")]
async fn the_event_store_marks_an_event_withheld_and_released() {
    let emulator = Emulator::start().await;
    let client = aws_sdk_dynamodb::Client::new(&emulator.config);
    event_tables(&client).await;
    let store = DynamoEventStore::new(client, "events", "versions");
    let event = stored_vaccination(&fixture("nems/vaccinations-1-new.xml"));
    assert!(!event.sensitive);
    store.insert(&event).await.unwrap();
    let patient = event.nhs_number.expect("routed on a patient");
    for withheld in [true, true, false] {
        store
            .set_withheld(&event.event_key, withheld)
            .await
            .unwrap();
        let stored = store.get(&event.event_key).await.unwrap().expect("stored");
        assert_eq!(stored.sensitive, withheld);
        let timeline = store.patient_events(patient).await.unwrap();
        assert_eq!(timeline.len(), 1);
        assert_eq!(timeline[0].sensitive, withheld);
    }
    store
        .set_withheld("vaccinations-1/unknown", true)
        .await
        .unwrap();
    assert_eq!(store.get("vaccinations-1/unknown").await.unwrap(), None);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_event_store_keeps_versions_and_reads_by_patient_and_by_day() {
    use hub::events::OutOfOrder;
    let emulator = Emulator::start().await;
    let client = aws_sdk_dynamodb::Client::new(&emulator.config);
    event_tables(&client).await;
    let store = DynamoEventStore::new(client, "events", "versions");
    let day_one = time::macros::datetime!(2026-11-20 23:59:59.5 UTC);
    let day_two = time::macros::datetime!(2026-11-21 00:00:01 UTC);
    let new = received(&fixture("nems/vaccinations-1-new.xml"), day_one);
    let delete = received(&fixture("nems/vaccinations-1-delete.xml"), day_two);
    let update = received(
        &fixture("nems/vaccinations-1-update.xml"),
        day_two + time::Duration::seconds(1),
    );
    assert_eq!(
        store.insert(&new).await.unwrap(),
        Insert::Stored { out_of_order: None }
    );
    assert_eq!(
        store.insert(&delete).await.unwrap(),
        Insert::Stored { out_of_order: None }
    );
    // Older than the delete, which is current: stored, flagged.
    assert_eq!(
        store.insert(&update).await.unwrap(),
        Insert::Stored {
            out_of_order: Some(OutOfOrder::OlderThanCurrent)
        }
    );
    assert_eq!(
        store
            .get(&update.event_key)
            .await
            .unwrap()
            .unwrap()
            .out_of_order,
        Some(OutOfOrder::OlderThanCurrent)
    );
    // A delete of a resource never seen.
    let contact_delete = received(&fixture("nems/Professional-Contacts-1-delete.xml"), day_two);
    assert_eq!(
        store.insert(&contact_delete).await.unwrap(),
        Insert::Stored {
            out_of_order: Some(OutOfOrder::UnknownResource)
        }
    );

    // The patient index: every event, in order of arrival (then of key),
    // without payloads.
    let patient = new.nhs_number.unwrap();
    let summaries = store.patient_events(patient).await.unwrap();
    let keys: Vec<&str> = summaries.iter().map(|s| s.event_key.as_str()).collect();
    assert_eq!(
        keys,
        [
            new.event_key.as_str(),
            contact_delete.event_key.as_str(),
            delete.event_key.as_str(),
            update.event_key.as_str()
        ]
    );
    assert_eq!(summaries[0], hub::events::EventSummary::of(&new));

    // The day index, a page at a time.
    let first = store.received_on("2026-11-20", None, 10).await.unwrap();
    assert_eq!(first.items, [new.received_sort.as_str()]);
    let page = store.received_on("2026-11-21", None, 2).await.unwrap();
    assert_eq!(page.items.len(), 2);
    let rest = store
        .received_on("2026-11-21", page.next.as_deref(), 2)
        .await
        .unwrap();
    assert_eq!(rest.items, [update.received_sort.as_str()]);
    assert!(
        store
            .received_on("2026-11-22", None, 10)
            .await
            .unwrap()
            .items
            .is_empty()
    );

    // Several at once, missing keys left out.
    let mut found = store
        .get_many(&[
            update.event_key.clone(),
            "vaccinations-1/none".into(),
            new.event_key.clone(),
        ])
        .await
        .unwrap();
    found.sort_by(|a, b| a.received_sort.cmp(&b.received_sort));
    assert_eq!(found.len(), 2);
    assert_eq!(found[0].payload, new.payload);
}

#[tokio::test(flavor = "multi_thread")]
async fn subscriptions_are_found_by_patient_and_event_type_with_one_query() {
    let emulator = Emulator::start().await;
    let client = aws_sdk_dynamodb::Client::new(&emulator.config);
    table(&client, "SubscriptionsTable", "subscriptions").await;
    table(&client, "SubscribersTable", "subscribers").await;
    let subscriptions = DynamoSubscriptionStore::new(client.clone(), "subscriptions");
    let subscription = Subscription {
        id: "sub-1".into(),
        subscriber_id: "subscriber-1".into(),
        contact_ods: OdsCode::parse("A83627").unwrap(),
        reason: "care".into(),
        end: None,
        criteria: Criteria::parse(
            "/Bundle?type=message&Patient.identifier=http://fhir.nhs.net/Id/nhs-number|9912003888\
             &MessageHeader.event=vaccinations-1&MessageHeader.event=pds-change-of-address-1&tag=t1",
        )
        .unwrap(),
        version_id: 1,
        last_updated: "2026-01-01T00:00:00Z".into(),
        basis: None,
        ended: None,
        backfills: Vec::new(),
    };
    subscriptions.create(&subscription).await.unwrap();
    assert_eq!(
        subscriptions.get("sub-1").await.unwrap(),
        Some(subscription.clone())
    );

    // A generic subscription is found under its one key, and only there;
    // once deleted, under none.
    let area = Subscription {
        id: "sub-area".into(),
        criteria: Criteria::parse(
            "/Bundle?type=message&subscriptionRuleType=CHO_POSTCODE_CCG&Organization.identifier=15F&MessageHeader.event=pds-birth-notification-1",
        )
        .unwrap(),
        ..subscription.clone()
    };
    subscriptions.create(&area).await.unwrap();
    let key = hub::generic::subscription_key(&area.criteria).unwrap();
    let other = "GENERIC#CHO_POSTCODE_CCG#X2C4Y#pds-birth-notification-1".to_owned();
    assert_eq!(
        subscriptions
            .generic_candidates(&[other.clone(), key.clone()])
            .await
            .unwrap(),
        vec![area.clone()]
    );
    subscriptions.delete(&area).await.unwrap();
    assert!(
        subscriptions
            .generic_candidates(&[key, other])
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(subscriptions.get("sub-2").await.unwrap(), None);
    let patient = NhsNumber::parse("9912003888").unwrap();
    let other = NhsNumber::parse("9449305552").unwrap();
    for event_type in [EventType::Vaccinations, EventType::PdsChangeOfAddress] {
        assert_eq!(
            subscriptions
                .explicit_candidates(patient, event_type)
                .await
                .unwrap(),
            vec![subscription.clone()]
        );
    }
    assert!(
        subscriptions
            .explicit_candidates(patient, EventType::NipeOutcome)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        subscriptions
            .explicit_candidates(other, EventType::Vaccinations)
            .await
            .unwrap()
            .is_empty()
    );

    // Listing by subscriber, a page at a time, and deleting.
    let mut second = subscription.clone();
    second.id = "sub-2".into();
    subscriptions.create(&second).await.unwrap();
    let first_page = subscriptions
        .list_by_subscriber("subscriber-1", 1, None)
        .await
        .unwrap();
    assert_eq!(first_page.items.len(), 1);
    let token = first_page.next.clone().expect("a second page");
    let second_page = subscriptions
        .list_by_subscriber("subscriber-1", 1, Some(&token))
        .await
        .unwrap();
    assert_eq!(second_page.items.len(), 1);
    assert_ne!(first_page.items[0].id, second_page.items[0].id);
    assert!(
        subscriptions
            .list_by_subscriber("subscriber-1", 1, Some("not-a-token"))
            .await
            .is_err()
    );
    // A token is good only for the listing it came from.
    assert_eq!(
        subscriptions
            .list_by_subscriber("subscriber-2", 1, Some(&token))
            .await,
        Err(hub::ports::StoreError::InvalidPageToken)
    );
    subscriptions.delete(&subscription).await.unwrap();
    assert_eq!(subscriptions.get("sub-1").await.unwrap(), None);
    assert_eq!(
        subscriptions
            .explicit_candidates(patient, EventType::Vaccinations)
            .await
            .unwrap(),
        vec![second.clone()],
        "the deleted subscription's match items went with it"
    );
    let listed = subscriptions
        .list_by_subscriber("subscriber-1", 10, None)
        .await
        .unwrap();
    assert_eq!(listed.items, vec![second]);

    let subscribers = DynamoSubscriberStore::new(client, "subscribers");
    let subscriber = Subscriber {
        id: "subscriber-1".into(),
        ods_code: OdsCode::parse("A83627").unwrap(),
        name: "GP".into(),
        event_types: BTreeSet::from([EventType::Vaccinations]),
        queues: hub::subscriber::Queues {
            queue_url: "u".into(),
            queue_arn: "a".into(),
            dead_letter_queue_url: "du".into(),
            dead_letter_queue_arn: "da".into(),
            topic_subscriptions: vec![],
            key_grants: vec![],
        },
        created_at: "2026-01-01T00:00:00Z".into(),
        client_id: Some("gp-system".into()),
        offboarded_at: None,
        service_type: None,
        access: hub::access::QueueAccess::HubOwned {
            principal: hub::access::AwsPrincipal::parse("111122223333"),
        },
    };
    subscribers.create(&subscriber).await.unwrap();
    assert_eq!(
        subscribers.get("subscriber-1").await.unwrap(),
        Some(subscriber.clone())
    );
    assert!(
        subscribers.create(&subscriber).await.is_err(),
        "a subscriber id is never overwritten"
    );
}

/// An explicit subscription of subscriber-1 to 9912003888's vaccinations
/// and one more event type, on this basis, made on 2026-01-01.
fn explicit_subscription(id: &str, other_event: &str, basis: hub::basis::Basis) -> Subscription {
    Subscription {
        id: id.into(),
        subscriber_id: "subscriber-1".into(),
        contact_ods: OdsCode::parse("B85612").unwrap(),
        reason: "care".into(),
        end: None,
        criteria: Criteria::parse(&format!(
            "/Bundle?type=message&Patient.identifier=http://fhir.nhs.net/Id/nhs-number|9912003888\
             &MessageHeader.event=vaccinations-1&MessageHeader.event={other_event}"
        ))
        .unwrap(),
        version_id: 1,
        last_updated: "2026-01-01T00:00:00Z".into(),
        basis: Some(basis),
        ended: None,
        backfills: Vec::new(),
    }
}

/// Ending a subscription on the loss of its basis changes its resource and
/// every copy dispatch reads, once; a deleted subscription stays deleted.
#[tokio::test(flavor = "multi_thread")]
async fn a_subscription_ends_once_on_every_item_and_a_deleted_one_stays_deleted() {
    let emulator = Emulator::start().await;
    let client = aws_sdk_dynamodb::Client::new(&emulator.config);
    table(&client, "SubscriptionsTable", "subscriptions").await;
    let subscriptions = DynamoSubscriptionStore::new(client.clone(), "subscriptions");
    let subscription = explicit_subscription(
        "sub-gp",
        "pds-change-of-gp-1",
        hub::basis::Basis::RegisteredGp {
            practice: OdsCode::parse("B85612").unwrap(),
        },
    );
    subscriptions.create(&subscription).await.unwrap();
    let ended = hub::basis::Ended {
        at: "2026-02-01T00:00:00.000Z".into(),
        reason: hub::basis::EndReason::GpChanged,
        last_event: Some("event-1".into()),
        detail: "basis lost: the child is no longer registered at B85612".into(),
    };
    assert!(subscriptions.end(&subscription, &ended).await.unwrap());
    let expected = Subscription {
        ended: Some(ended.clone()),
        ..subscription.clone()
    };
    stored_everywhere(&subscriptions, &expected).await;
    let patient = NhsNumber::parse("9912003888").unwrap();
    // A second end (a retried dispatch, a racing event) changes nothing.
    let later = hub::basis::Ended {
        at: "2026-03-01T00:00:00.000Z".into(),
        last_event: None,
        ..ended.clone()
    };
    assert!(!subscriptions.end(&subscription, &later).await.unwrap());
    assert_eq!(
        subscriptions.get("sub-gp").await.unwrap(),
        Some(expected.clone())
    );
    // Its owner may still delete it; ending it then writes nothing back.
    subscriptions.delete(&expected).await.unwrap();
    assert!(!subscriptions.end(&subscription, &ended).await.unwrap());
    assert_eq!(subscriptions.get("sub-gp").await.unwrap(), None);
    assert!(
        subscriptions
            .explicit_candidates(patient, EventType::Vaccinations)
            .await
            .unwrap()
            .is_empty()
    );
}

/// The subscription as stored: its resource, and the copy under each event
/// type it names, which dispatch reads.
async fn stored_everywhere(subscriptions: &DynamoSubscriptionStore, expected: &Subscription) {
    assert_eq!(
        subscriptions.get(&expected.id).await.unwrap(),
        Some(expected.clone())
    );
    let hub::criteria::Target::Explicit(patient) = expected.criteria.target else {
        panic!("an explicit subscription");
    };
    for event_type in &expected.criteria.events {
        assert_eq!(
            subscriptions
                .explicit_candidates(patient, *event_type)
                .await
                .unwrap(),
            vec![expected.clone()]
        );
    }
}

/// Backfill grants are written on every copy, over the list read: a writer
/// holding a stale list changes nothing, and a deleted subscription stays
/// deleted.
#[tokio::test]
async fn backfill_grants_change_every_copy_only_over_the_list_read() {
    let emulator = Emulator::start().await;
    let client = aws_sdk_dynamodb::Client::new(&emulator.config);
    table(&client, "SubscriptionsTable", "subscriptions").await;
    let subscriptions = DynamoSubscriptionStore::new(client.clone(), "subscriptions");
    let subscription = explicit_subscription(
        "sub-declared",
        "newborn-hearing-1",
        hub::basis::Basis::DeclaredDirectCare,
    );
    subscriptions.create(&subscription).await.unwrap();
    let grant = |id: &str| hub::backfill::BackfillGrant {
        id: id.into(),
        reason: "new to the caseload".into(),
        since: "2025-06-01T00:00:00.000Z".into(),
        expires: "2026-07-01T00:00:00.000Z".into(),
        granted_by: "operator".into(),
        granted_at: "2026-06-02T00:00:00.000Z".into(),
        revoked_at: None,
        revoked_by: None,
    };
    let first = vec![grant("grant-1")];
    assert!(
        subscriptions
            .replace_backfills(&subscription, &first)
            .await
            .unwrap()
    );
    let granted = Subscription {
        backfills: first.clone(),
        ..subscription.clone()
    };
    stored_everywhere(&subscriptions, &granted).await;
    let patient = NhsNumber::parse("9912003888").unwrap();
    // A writer that read the subscription before the first grant loses.
    assert!(
        !subscriptions
            .replace_backfills(&subscription, &[grant("grant-2")])
            .await
            .unwrap()
    );
    // One that read the granted list wins: a revocation.
    let mut revoked = first.clone();
    revoked[0].revoked_at = Some("2026-06-03T00:00:00.000Z".into());
    assert!(
        subscriptions
            .replace_backfills(&granted, &revoked)
            .await
            .unwrap()
    );
    assert_eq!(
        subscriptions
            .get("sub-declared")
            .await
            .unwrap()
            .map(|s| s.backfills),
        Some(revoked.clone())
    );
    subscriptions.delete(&granted).await.unwrap();
    let gone = Subscription {
        backfills: revoked,
        ..subscription.clone()
    };
    assert!(!subscriptions.replace_backfills(&gone, &[]).await.unwrap());
    assert_eq!(subscriptions.get("sub-declared").await.unwrap(), None);
    assert!(
        subscriptions
            .explicit_candidates(patient, EventType::Vaccinations)
            .await
            .unwrap()
            .is_empty()
    );
}

/// The daily count of explicit subscriptions: concurrent counts past the
/// limit let exactly the limit through, each subscriber and day apart, and
/// the count's item leaves a subscriber's listing alone.
#[tokio::test(flavor = "multi_thread")]
async fn explicit_subscriptions_are_counted_to_the_daily_limit_atomically() {
    let emulator = Emulator::start().await;
    let client = aws_sdk_dynamodb::Client::new(&emulator.config);
    table(&client, "SubscriptionsTable", "subscriptions").await;
    let store = DynamoSubscriptionStore::new(client.clone(), "subscriptions");
    let now = time::macros::datetime!(2026-12-07 10:00 UTC);
    let limit = hub::subscription::DailyLimit { per_day: 3 };
    let count = hub::subscription::DailyCount::explicit("subscriber-1", limit, now);
    let attempts: Vec<_> = (0..8)
        .map(|_| {
            let store = DynamoSubscriptionStore::new(client.clone(), "subscriptions");
            let count = count.clone();
            tokio::spawn(async move { store.count_explicit(&count).await })
        })
        .collect();
    let mut passed = 0;
    for attempt in attempts {
        if attempt.await.unwrap().unwrap() {
            passed += 1;
        }
    }
    assert_eq!(passed, 3, "exactly the limit");
    assert!(!store.count_explicit(&count).await.unwrap());
    let other = hub::subscription::DailyCount::explicit("subscriber-2", limit, now);
    assert!(store.count_explicit(&other).await.unwrap());
    let tomorrow = hub::subscription::DailyCount::explicit(
        "subscriber-1",
        limit,
        now + time::Duration::days(1),
    );
    assert!(store.count_explicit(&tomorrow).await.unwrap());
    let listed = store
        .list_by_subscriber("subscriber-1", 10, None)
        .await
        .unwrap();
    assert!(listed.items.is_empty(), "a count is no subscription");
}

#[tokio::test(flavor = "multi_thread")]
async fn provisioned_queues_receive_only_their_own_deliveries() {
    let emulator = Emulator::start().await;
    let sns = aws_sdk_sns::Client::new(&emulator.config);
    let sqs = aws_sdk_sqs::Client::new(&emulator.config);
    let topic = sns
        .create_topic()
        .name("vaccinations-1")
        .send()
        .await
        .unwrap()
        .topic_arn
        .unwrap();
    let topics = BTreeMap::from([(EventType::Vaccinations, topic)]);
    let undelivered_url = sqs
        .create_queue()
        .queue_name("undelivered")
        .send()
        .await
        .unwrap()
        .queue_url
        .unwrap();
    let undelivered_arn = queue_attributes(&sqs, &undelivered_url).await
        [&aws_sdk_sqs::types::QueueAttributeName::QueueArn]
        .clone();
    let provisioner = SqsQueueProvisioner::new(
        sqs.clone(),
        sns.clone(),
        aws_sdk_kms::Client::new(&emulator.config),
        topics.clone(),
        QueueSettings {
            name_prefix: "test-sub".into(),
            max_receive_count: 3,
            retention_seconds: 3600,
            kms_master_key_id: None,
            undelivered_queue_arn: Some(undelivered_arn.clone()),
        },
    );
    let first = provisioner
        .provision("first", &[EventType::Vaccinations], &Default::default())
        .await
        .unwrap();
    let second = provisioner
        .provision("second", &[EventType::Vaccinations], &Default::default())
        .await
        .unwrap();
    assert!(
        provisioner
            .provision("third", &[EventType::NipeOutcome], &Default::default())
            .await
            .is_err(),
        "no topic, no queue"
    );

    let publisher = SnsDeliveryPublisher::new(sns.clone(), topics);
    let body = fixture("nems/vaccinations-1-new.xml");
    let event = stored_vaccination(&body);
    // Eleven recipients: more than one PublishBatch call.
    let mut deliveries: Vec<Delivery> = (0..10)
        .map(|n| Delivery {
            subscriber_id: format!("nobody-{n}"),
            matches: vec![Match {
                subscription_id: format!("s{n}"),
                tag: None,
                basis: None,
            }],
            replay_id: None,
        })
        .collect();
    deliveries.push(Delivery {
        subscriber_id: "first".into(),
        matches: vec![
            Match {
                subscription_id: "s-a".into(),
                tag: Some("a".into()),
                basis: None,
            },
            Match {
                subscription_id: "s-b".into(),
                tag: None,
                basis: None,
            },
        ],
        replay_id: None,
    });
    publisher.publish(&event, &deliveries).await.unwrap();

    let received = receive_all(&sqs, &first.queue_url, Duration::from_secs(2)).await;
    assert_eq!(received.len(), 1);
    assert_eq!(received[0].body(), Some(body.as_str()));
    assert_eq!(attribute(&received[0], "subscriber"), Some("first"));
    assert_eq!(
        attribute(&received[0], "subscriptions"),
        Some(r#"[{"id":"s-a","tag":"a"},{"id":"s-b"}]"#)
    );
    assert!(
        receive_all(&sqs, &second.queue_url, Duration::from_secs(1))
            .await
            .is_empty()
    );

    // What SNS cannot deliver goes to the hub's undelivered queue.
    let subscription = sns
        .get_subscription_attributes()
        .subscription_arn(&first.topic_subscriptions[0])
        .send()
        .await
        .unwrap()
        .attributes
        .unwrap_or_default();
    let redrive: serde_json::Value = serde_json::from_str(&subscription["RedrivePolicy"]).unwrap();
    assert_eq!(redrive["deadLetterTargetArn"], undelivered_arn.as_str());

    // A subscriber's queue deleted outside the hub: publishing to it and to
    // another still succeeds, the other gets its copy, and the queue is
    // reported missing rather than failing the status.
    sqs.delete_queue()
        .queue_url(&second.queue_url)
        .send()
        .await
        .unwrap();
    let both: Vec<Delivery> = ["first", "second"]
        .iter()
        .map(|id| Delivery {
            subscriber_id: (*id).into(),
            matches: vec![Match {
                subscription_id: format!("s-{id}"),
                tag: None,
                basis: None,
            }],
            replay_id: None,
        })
        .collect();
    publisher.publish(&event, &both).await.unwrap();
    let received = receive_all(&sqs, &first.queue_url, Duration::from_secs(2)).await;
    assert_eq!(received.len(), 1);
    let monitor = hub::aws::SqsQueueMonitor::new(sqs.clone());
    let gone = hub::ports::QueueMonitor::depth(&monitor, &second.queue_url)
        .await
        .unwrap();
    assert!(gone.missing, "{gone:?}");
    let present = hub::ports::QueueMonitor::depth(&monitor, &first.queue_url)
        .await
        .unwrap();
    assert!(!present.missing);
}

/// The attributes SQS reports for a queue.
async fn queue_attributes(
    sqs: &aws_sdk_sqs::Client,
    queue_url: &str,
) -> std::collections::HashMap<aws_sdk_sqs::types::QueueAttributeName, String> {
    sqs.get_queue_attributes()
        .queue_url(queue_url)
        .attribute_names(aws_sdk_sqs::types::QueueAttributeName::All)
        .send()
        .await
        .unwrap()
        .attributes
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread")]
async fn provisioned_queues_are_encrypted_with_the_hub_key_and_refuse_plain_http() {
    use aws_sdk_sqs::types::QueueAttributeName;
    let emulator = Emulator::start().await;
    let sns = aws_sdk_sns::Client::new(&emulator.config);
    let sqs = aws_sdk_sqs::Client::new(&emulator.config);
    let topic = sns
        .create_topic()
        .name("vaccinations-1")
        .send()
        .await
        .unwrap()
        .topic_arn
        .unwrap();
    let provisioner = SqsQueueProvisioner::new(
        sqs.clone(),
        sns,
        aws_sdk_kms::Client::new(&emulator.config),
        BTreeMap::from([(EventType::Vaccinations, topic.clone())]),
        QueueSettings {
            name_prefix: "test-sub".into(),
            max_receive_count: 3,
            retention_seconds: 3600,
            kms_master_key_id: Some("alias/chhub-test-data".into()),
            undelivered_queue_arn: None,
        },
    );
    let queues = provisioner
        .provision("encrypted", &[EventType::Vaccinations], &Default::default())
        .await
        .unwrap();

    for (url, arn) in [
        (&queues.queue_url, &queues.queue_arn),
        (&queues.dead_letter_queue_url, &queues.dead_letter_queue_arn),
    ] {
        let attributes = queue_attributes(&sqs, url).await;
        assert_eq!(
            attributes
                .get(&QueueAttributeName::KmsMasterKeyId)
                .map(String::as_str),
            Some("alias/chhub-test-data"),
            "{url} is encrypted with the configured key"
        );
        let policy: serde_json::Value = serde_json::from_str(
            attributes
                .get(&QueueAttributeName::Policy)
                .unwrap_or_else(|| panic!("{url} has a policy")),
        )
        .unwrap();
        let statements = policy["Statement"].as_array().unwrap();
        assert!(
            statements.iter().any(|statement| {
                statement["Effect"] == "Deny"
                    && statement["Principal"] == "*"
                    && statement["Action"] == "sqs:*"
                    && statement["Resource"] == arn.as_str()
                    && statement["Condition"]["Bool"]["aws:SecureTransport"] == "false"
            }),
            "{url} refuses any access without TLS: {policy}"
        );
        let allows: Vec<_> = statements
            .iter()
            .filter(|statement| statement["Effect"] == "Allow")
            .collect();
        if url == &queues.queue_url {
            assert_eq!(allows.len(), 1, "only the topics may send: {policy}");
            assert_eq!(allows[0]["Principal"]["Service"], "sns.amazonaws.com");
            assert_eq!(allows[0]["Action"], "sqs:SendMessage");
            assert_eq!(
                allows[0]["Condition"]["ArnEquals"]["aws:SourceArn"],
                serde_json::json!([topic])
            );
        } else {
            assert!(allows.is_empty(), "nothing is allowed on the DLQ: {policy}");
        }
    }
}

/// A registered client with both test keys (shared/tests/keys, test-only).
fn registered_client() -> hub::auth::Client {
    use jsonwebtoken::jwk::{Jwk, JwkSet};
    use jsonwebtoken::{Algorithm, EncodingKey};
    let keys = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/tests/keys");
    let jwk = |file: &str, algorithm: Algorithm, kid: &str| {
        let pem = std::fs::read(keys.join(file)).unwrap();
        let key = match algorithm {
            Algorithm::RS512 => EncodingKey::from_rsa_pem(&pem).unwrap(),
            _ => EncodingKey::from_ec_pem(&pem).unwrap(),
        };
        let mut jwk = Jwk::from_encoding_key(&key, algorithm).unwrap();
        jwk.common.key_id = Some(kid.to_owned());
        jwk
    };
    hub::auth::Client {
        client_id: "publisher-1".into(),
        ods_code: OdsCode::parse("A83627").unwrap(),
        roles: BTreeSet::from([hub::auth::Role::Publisher]),
        keys: JwkSet {
            keys: vec![
                jwk("client-rsa.pem", Algorithm::RS512, "rsa-1"),
                jwk("client-ec.pem", Algorithm::ES256, "ec-1"),
            ],
        },
        enabled: true,
        publish_event_types: BTreeSet::from([EventType::Vaccinations]),
        publish_for_ods: BTreeSet::from(["A83627".to_owned()]),
        subscriber_id: None,
        subscribe_explicit: false,
        subscribe_generic: Default::default(),
        sensitivity_authority: false,
        relationship_sources: Default::default(),
        pchr: None,
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn clients_are_registered_and_read_back_with_their_keys() {
    use hub::ports::ClientStore;
    let emulator = Emulator::start().await;
    let client = aws_sdk_dynamodb::Client::new(&emulator.config);
    table(&client, "ClientsTable", "clients").await;
    let clients = hub::aws::DynamoClientStore::new(client, "clients");
    let registered = registered_client();
    clients.put(&registered).await.unwrap();
    assert_eq!(
        clients.get("publisher-1").await.unwrap(),
        Some(registered.clone())
    );
    assert_eq!(clients.get("nobody").await.unwrap(), None);
    // Re-registering replaces the keys (a rotation).
    let mut rotated = registered;
    rotated.keys.keys.truncate(1);
    clients.put(&rotated).await.unwrap();
    assert_eq!(
        clients
            .get("publisher-1")
            .await
            .unwrap()
            .unwrap()
            .keys
            .keys
            .len(),
        1
    );
    // Onboarding links a subscriber; a later re-registration keeps the link.
    clients
        .link_subscriber("publisher-1", "subscriber-1")
        .await
        .unwrap();
    assert!(!clients.register(&rotated).await.unwrap(), "not new");
    let read = clients.get("publisher-1").await.unwrap().unwrap();
    assert_eq!(read.subscriber_id.as_deref(), Some("subscriber-1"));
    assert!(read.enabled);
    // Disabling: the record stays, disabled; an unknown client is not created.
    assert!(clients.disable("publisher-1").await.unwrap());
    assert!(!clients.get("publisher-1").await.unwrap().unwrap().enabled);
    // A re-registration (a key rotation) does not undo the disabling.
    assert!(!clients.register(&rotated).await.unwrap());
    let read = clients.get("publisher-1").await.unwrap().unwrap();
    assert!(!read.enabled);
    assert_eq!(read.subscriber_id.as_deref(), Some("subscriber-1"));
    assert_eq!(read.keys, rotated.keys);
    // A new client registers enabled.
    let mut newcomer = registered_client();
    newcomer.client_id = "publisher-2".into();
    assert!(clients.register(&newcomer).await.unwrap(), "new");
    assert_eq!(clients.get("publisher-2").await.unwrap(), Some(newcomer));
    // A relationship publisher's sources are kept, and a re-registration
    // without them leaves none behind.
    let mut relay = registered_client();
    relay.client_id = "relay-1".into();
    relay.roles = BTreeSet::from([hub::auth::Role::RelationshipPublisher]);
    relay.relationship_sources = BTreeSet::from([hub::relationship::VRS_SOURCE.to_owned()]);
    assert!(clients.register(&relay).await.unwrap());
    assert_eq!(clients.get("relay-1").await.unwrap(), Some(relay.clone()));
    let mut narrowed = relay;
    narrowed.roles = BTreeSet::from([hub::auth::Role::Publisher]);
    narrowed.relationship_sources = BTreeSet::new();
    assert!(!clients.register(&narrowed).await.unwrap());
    assert_eq!(clients.get("relay-1").await.unwrap(), Some(narrowed));
    assert!(!clients.disable("nobody").await.unwrap());
    assert_eq!(clients.get("nobody").await.unwrap(), None);
    assert!(
        clients
            .link_subscriber("nobody", "subscriber-2")
            .await
            .is_err()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_audit_trail_is_written_once_per_record_and_queried_by_patient_and_client() {
    use hub::audit::{Action, AuditQuery, AuditRecord};
    use hub::ports::{AuditLog, StoreError};
    let emulator = Emulator::start().await;
    let client = aws_sdk_dynamodb::Client::new(&emulator.config);
    table(&client, "AuditTable", "audit").await;
    let audit = hub::aws::DynamoAuditLog::new(client, "audit");
    let patient = NhsNumber::parse("9912003888").unwrap();
    let start = OffsetDateTime::now_utc();
    let caller = hub::auth::Caller::of(&registered_client());
    for minute in 0..3 {
        let record = AuditRecord::new(
            Some(&caller),
            Action::Publish,
            202,
            start + time::Duration::minutes(minute),
        )
        .patient(Some(patient))
        .event(format!("vaccinations-1/{minute}"));
        audit.record(&record).await.unwrap();
    }
    // Deliveries: written in a batch, and once however often they are retried.
    let deliveries: Vec<AuditRecord> = (0..30)
        .map(|n| AuditRecord::delivery("vaccinations-1/0", &format!("subscriber-{n}"), None, start))
        .collect();
    audit.record_all(&deliveries).await.unwrap();
    audit.record_all(&deliveries).await.unwrap();
    let delivered = audit
        .get(&hub::audit::delivery_id("vaccinations-1/0", "subscriber-7"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(delivered.action, Action::Deliver);
    let hub_records = audit
        .query(&AuditQuery::Client(hub::audit::HUB_ACTOR.into()), 100, None)
        .await
        .unwrap();
    assert_eq!(hub_records.items.len(), 30);

    // By patient, newest first, two to a page.
    let first = audit
        .query(&AuditQuery::Patient(patient), 2, None)
        .await
        .unwrap();
    let keys: Vec<_> = first
        .items
        .iter()
        .map(|r| r.event_key.clone().unwrap())
        .collect();
    assert_eq!(keys, vec!["vaccinations-1/2", "vaccinations-1/1"]);
    let token = first.next.expect("a next page");
    let second = audit
        .query(&AuditQuery::Patient(patient), 2, Some(&token))
        .await
        .unwrap();
    assert_eq!(second.items.len(), 1);
    assert_eq!(
        second.items[0].event_key.as_deref(),
        Some("vaccinations-1/0")
    );
    // A page token is good only for the query that issued it.
    assert_eq!(
        audit
            .query(&AuditQuery::Client("publisher-1".into()), 2, Some(&token))
            .await,
        Err(StoreError::InvalidPageToken)
    );
    assert_eq!(
        audit
            .query(&AuditQuery::Patient(patient), 2, Some("not-a-token"))
            .await,
        Err(StoreError::InvalidPageToken)
    );
    let by_client = audit
        .query(&AuditQuery::Client("publisher-1".into()), 10, None)
        .await
        .unwrap();
    assert_eq!(by_client.items.len(), 3);
    assert_eq!(by_client.items[0].ods_code.as_deref(), Some("A83627"));
}

#[tokio::test(flavor = "multi_thread")]
async fn an_assertion_id_is_remembered_once() {
    use hub::ports::UsedAssertionIds;
    let emulator = Emulator::start().await;
    let client = aws_sdk_dynamodb::Client::new(&emulator.config);
    table(&client, "ReplayTable", "replays").await;
    let guard = hub::aws::DynamoUsedAssertionIds::new(client, "replays");
    let expires = OffsetDateTime::now_utc() + time::Duration::minutes(5);
    assert!(
        guard
            .remember("publisher-1", "jti-1", expires)
            .await
            .unwrap()
    );
    assert!(
        !guard
            .remember("publisher-1", "jti-1", expires)
            .await
            .unwrap(),
        "a replay"
    );
    assert!(
        guard
            .remember("publisher-2", "jti-1", expires)
            .await
            .unwrap(),
        "per client"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn delivery_counts_add_up_per_subscriber_and_event_type() {
    use hub::aws::DynamoDeliveryStats;
    use hub::ports::DeliveryStats;
    let emulator = Emulator::start().await;
    let client = aws_sdk_dynamodb::Client::new(&emulator.config);
    table(&client, "DeliveryStatsTable", "delivery-stats").await;
    let stats = DynamoDeliveryStats::new(client, "delivery-stats");
    assert!(stats.counts("a").await.unwrap().is_empty());
    // Twenty recipients: more than one round of concurrent updates.
    let many: Vec<String> = (0..20).map(|n| format!("s{n}")).collect();
    let mut recipients: Vec<&str> = many.iter().map(String::as_str).collect();
    recipients.push("a");
    stats
        .record_deliveries(
            EventType::Vaccinations,
            &recipients,
            "2026-01-01T10:00:00.000Z",
        )
        .await
        .unwrap();
    stats
        .record_deliveries(EventType::Vaccinations, &["a"], "2026-01-01T11:00:00.000Z")
        .await
        .unwrap();
    stats
        .record_deliveries(
            EventType::NipeOutcome,
            &["a", "b"],
            "2026-01-01T12:00:00.000Z",
        )
        .await
        .unwrap();
    let mut counts = stats.counts("a").await.unwrap();
    counts.sort_by_key(|count| count.event_type);
    let seen: Vec<(EventType, u64, Option<&str>)> = counts
        .iter()
        .map(|c| (c.event_type, c.delivered, c.last_delivery_at.as_deref()))
        .collect();
    assert_eq!(
        seen,
        [
            (EventType::NipeOutcome, 1, Some("2026-01-01T12:00:00.000Z")),
            (EventType::Vaccinations, 2, Some("2026-01-01T11:00:00.000Z")),
        ]
    );
    let s7 = stats.counts("s7").await.unwrap();
    assert_eq!(s7.len(), 1);
    assert_eq!(s7[0].delivered, 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_redrive_moves_bodies_and_attributes_back_within_its_limits() {
    use aws_sdk_sqs::types::MessageAttributeValue;
    use hub::aws::SqsQueueMonitor;
    use hub::ports::QueueMonitor;
    use hub::status::RedriveLimits;
    let emulator = Emulator::start().await;
    let sqs = aws_sdk_sqs::Client::new(&emulator.config);
    let create = |name: &'static str| {
        let sqs = sqs.clone();
        async move {
            sqs.create_queue()
                .queue_name(name)
                .send()
                .await
                .unwrap()
                .queue_url
                .unwrap()
        }
    };
    let queue = create("test-sub-x").await;
    let dead = create("test-sub-x-dlq").await;
    let monitor = SqsQueueMonitor::new(sqs.clone());
    // Small ones, and three of 150 000 bytes, which the adapter sends in
    // separate batches (hub::status::send_batches, unit-tested; the
    // emulator would take them together, as SQS now allows 1 MiB).
    let mut sent = BTreeMap::new();
    for n in 0..25 {
        let body = if n < 3 {
            format!("{n:03}{}", "x".repeat(150_000))
        } else {
            format!("{n:03} small")
        };
        sqs.send_message()
            .queue_url(&dead)
            .message_body(&body)
            .message_attributes(
                "eventId",
                MessageAttributeValue::builder()
                    .data_type("String")
                    .string_value(format!("event-{n}"))
                    .build()
                    .unwrap(),
            )
            .send()
            .await
            .unwrap();
        sent.insert(format!("event-{n}"), body);
    }
    let depth = monitor.depth(&dead).await.unwrap();
    assert_eq!(depth.waiting, 25);
    assert_eq!(monitor.depth(&queue).await.unwrap().waiting, 0);

    let limits = RedriveLimits {
        max_messages: 12,
        max_duration: Duration::from_secs(20),
    };
    let first = monitor.redrive(&dead, &queue, limits).await.unwrap();
    assert_eq!((first.moved, first.remaining), (12, true));
    assert_eq!(monitor.depth(&dead).await.unwrap().waiting, 13);
    assert_eq!(monitor.depth(&queue).await.unwrap().waiting, 12);
    let rest = monitor
        .redrive(&dead, &queue, hub::status::REDRIVE_LIMITS)
        .await
        .unwrap();
    assert_eq!((rest.moved, rest.remaining), (13, false));
    let empty = monitor
        .redrive(&dead, &queue, hub::status::REDRIVE_LIMITS)
        .await
        .unwrap();
    assert_eq!((empty.moved, empty.remaining), (0, false));

    let back = receive_all(&sqs, &queue, Duration::from_secs(2)).await;
    let received: BTreeMap<String, String> = back
        .iter()
        .map(|message| {
            (
                attribute(message, "eventId").unwrap().to_owned(),
                message.body().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        received, sent,
        "every message once, body and attribute intact"
    );
    assert_eq!(monitor.depth(&dead).await.unwrap().waiting, 0);
}
