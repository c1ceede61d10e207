//! The Lambda handlers fed the sample API Gateway events of events/apigw,
//! with the in-memory adapters: the translation between Lambda events and
//! the domain, without AWS.

use aws_lambda_events::apigw::ApiGatewayProxyRequest;
use aws_lambda_events::encodings::Body;
use e2e_tests::fixture;
use hub::EventType;
use hub::events::Retention;
use hub::lambda;
use hub::memory::{
    MemoryAuditLog, MemoryClientStore, MemoryEventStore, MemoryQueueProvisioner,
    MemorySubscriberStore, MemorySubscriptionStore,
};
use hub::ports::Adapters;
use hub::subscription::DailyLimit;

fn sample(name: &str) -> ApiGatewayProxyRequest {
    serde_json::from_str(&fixture(&format!("apigw/{name}.json")))
        .unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// The sample with the subscriber id put where the samples hold a
/// placeholder: in the body and in the caller the authorizer passed on.
fn for_subscriber(
    mut request: ApiGatewayProxyRequest,
    subscriber_id: &str,
) -> ApiGatewayProxyRequest {
    const PLACEHOLDER: &str = "REPLACE-WITH-SUBSCRIBER-ID";
    request.body = request
        .body
        .map(|body| body.replace(PLACEHOLDER, subscriber_id));
    if let Some(serde_json::Value::String(caller)) =
        request.request_context.authorizer.fields.get_mut("caller")
    {
        *caller = caller.replace(PLACEHOLDER, subscriber_id);
    }
    request
}

fn body_json(body: &Option<Body>) -> serde_json::Value {
    match body {
        Some(Body::Text(text)) => serde_json::from_str(text).unwrap(),
        other => panic!("expected a text body, got {other:?}"),
    }
}

#[tokio::test]
async fn every_sample_publish_event_is_accepted_then_seen_as_a_duplicate() {
    for &event_type in EventType::ALL {
        for encoding in ["xml", "json"] {
            let name = format!("publish-{event_type}-{encoding}");
            let ports = hub::memory::MemoryPorts::default();
            let (store, audit) = (&ports.events, &ports.audit);
            let request = sample(&name);
            let response = lambda::publish(&ports, event_type, &request, Retention::DEFAULT).await;
            assert_eq!(response.status_code, 202, "{name}: {:?}", response.body);
            assert_eq!(store.len(), 1, "{name}");
            let again = lambda::publish(&ports, event_type, &request, Retention::DEFAULT).await;
            assert_eq!(again.status_code, 200, "{name}");
            let statuses: Vec<u16> = audit.records().iter().map(|record| record.status).collect();
            assert_eq!(
                statuses,
                vec![202, 200],
                "{name}: both publishes are audited"
            );
            // The same body on another event type's route is refused.
            let other = EventType::ALL
                .iter()
                .copied()
                .find(|other| *other != event_type)
                .unwrap();
            assert_eq!(
                lambda::publish(&ports, other, &request, Retention::DEFAULT)
                    .await
                    .status_code,
                422,
                "{name}"
            );
        }
    }
}

#[tokio::test]
async fn onboarding_then_subscribing_then_reading_through_the_handlers() {
    let subscribers = MemorySubscriberStore::default();
    let provisioner = MemoryQueueProvisioner::default();
    let subscriptions = MemorySubscriptionStore::default();
    let clients = MemoryClientStore::default();
    let audit = MemoryAuditLog::default();
    clients
        .put(
            hub::auth::Client::from_registration(
                &serde_json::json!({
                    "clientId": "demo-subscriber-1",
                    "odsCode": "A83627",
                    "roles": ["subscriber"],
                    "keys": {"keys": [{"kty": "EC", "crv": "P-256", "kid": "k1",
                        "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU",
                        "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"}]},
                    "subscribeExplicit": true,
                })
                .to_string(),
            )
            .unwrap(),
        )
        .unwrap();

    let ports = Adapters::new()
        .subscribers(&subscribers)
        .provisioner(&provisioner)
        .clients(&clients)
        .audit(&audit)
        .subscriptions(&subscriptions)
        .register(hub::memory::MemoryRegisterStore::default());

    let onboarded = lambda::onboard(&ports, &sample("onboard-subscriber")).await;
    assert_eq!(onboarded.status_code, 201);
    let subscriber_id = body_json(&onboarded.body)["id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        provisioner.provisioned(),
        vec![(subscriber_id.clone(), vec![EventType::Vaccinations])]
    );

    let create = for_subscriber(sample("subscription-create"), &subscriber_id);
    let created = lambda::create_subscription(&ports, &create, DailyLimit::DEFAULT).await;
    assert_eq!(created.status_code, 201);
    let resource = body_json(&created.body);
    let id = resource["id"].as_str().unwrap().to_owned();
    assert_eq!(
        created.headers["location"],
        format!("/Subscription/{id}").as_str()
    );

    let mut read = for_subscriber(sample("subscription-read"), &subscriber_id);
    read.path_parameters.insert("id".into(), id);
    let found = lambda::read_subscription(&ports, &read).await;
    assert_eq!(found.status_code, 200);
    assert_eq!(body_json(&found.body), resource);

    let unknown = for_subscriber(sample("subscription-read"), &subscriber_id);
    let unknown = lambda::read_subscription(&ports, &unknown).await;
    assert_eq!(unknown.status_code, 404);

    let actions: Vec<(hub::audit::Action, u16)> = audit
        .records()
        .iter()
        .map(|record| (record.action, record.status))
        .collect();
    use hub::audit::Action;
    assert_eq!(
        actions,
        vec![
            (Action::Onboard, 201),
            (Action::SubscriptionCreate, 201),
            (Action::SubscriptionRead, 200),
            (Action::SubscriptionRead, 404),
        ]
    );
}

/// events/dynamodb/dispatch-vaccinations-1.json is the stream event dispatch
/// receives for the stored vaccination example. It is generated from the
/// fixture (HUB_WRITE_SAMPLES=1 rewrites it) and must match what the code
/// would store today.
#[tokio::test]
async fn the_sample_stream_event_is_current_and_dispatches_to_the_subscriber() {
    use aws_lambda_events::dynamodb::{Event, EventRecord, StreamRecord, StreamViewType};
    use hub::events::StoredEvent;
    use hub::memory::MemoryPublisher;
    use hub::ports::SubscriptionStore;
    use hub::subscription::Subscription;
    use hub::{Encoding, EventMessage};

    let body = fixture("nems/vaccinations-1-new.xml");
    let message = EventMessage::read(&body, Encoding::Xml).unwrap();
    let received_at = time::macros::datetime!(2026-01-05 09:30:00 UTC);
    let stored = StoredEvent::new(
        &message,
        Encoding::Xml,
        &body,
        received_at,
        hub::events::Retention::DEFAULT,
    );
    let mut change = StreamRecord::default();
    change.keys = serde_dynamo::to_item(serde_json::json!({"eventId": stored.event_id})).unwrap();
    change.new_image = serde_dynamo::to_item(&stored).unwrap();
    change.sequence_number = Some("100000000000000000001".into());
    change.size_bytes = i64::try_from(body.len()).unwrap();
    change.stream_view_type = Some(StreamViewType::NewImage);
    let mut record = EventRecord::default();
    record.aws_region = "eu-west-2".into();
    record.event_id = "1".into();
    record.event_name = "INSERT".into();
    record.event_source = Some("aws:dynamodb".into());
    record.event_version = Some("1.1".into());
    record.change = change;
    let mut event = Event::default();
    event.records = vec![record];
    // Items are hash maps: compare and write the sorted JSON value.
    let generated = serde_json::to_value(&event).unwrap();

    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../events/dynamodb/dispatch-vaccinations-1.json");
    if std::env::var_os("HUB_WRITE_SAMPLES").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(
            &path,
            serde_json::to_string_pretty(&generated).unwrap() + "\n",
        )
        .unwrap();
    }
    let on_disk =
        std::fs::read_to_string(&path).expect("run with HUB_WRITE_SAMPLES=1 to create the sample");
    let on_disk_value: serde_json::Value = serde_json::from_str(&on_disk).unwrap();
    assert!(
        on_disk_value == generated,
        "the sample is stale: rerun with HUB_WRITE_SAMPLES=1"
    );

    let subscriptions = MemorySubscriptionStore::default();
    let subscription = Subscription {
        id: "sub-1".into(),
        subscriber_id: "gp".into(),
        contact_ods: hub::subscriber::OdsCode::parse("A83627").unwrap(),
        reason: "care".into(),
        end: None,
        criteria: hub::criteria::Criteria::parse(
            "/Bundle?type=message&Patient.identifier=http://fhir.nhs.net/Id/nhs-number|9912003888&MessageHeader.event=vaccinations-1",
        )
        .unwrap(),
        version_id: 1,
        last_updated: "2026-01-01T00:00:00Z".into(),
        basis: None,
        ended: None,
        backfills: Vec::new(),
    };
    subscriptions.create(&subscription).await.unwrap();
    let publisher = MemoryPublisher::default();
    let sample: Event = serde_json::from_str(&on_disk).unwrap();
    let audit = MemoryAuditLog::default();
    let register = hub::memory::MemoryRegisterStore::default();
    let stats = hub::memory::MemoryDeliveryStats::default();
    let dispatcher = hub::app::dispatch::Dispatcher {
        ports: &Adapters::new()
            .subscriptions(&subscriptions)
            .publisher(&publisher)
            .audit(&audit)
            .register(&register)
            .reference(hub::memory::MemoryReferenceData::default())
            .stats(&stats)
            .events(MemoryEventStore::default())
            .embargoes(hub::memory::MemoryEmbargoStore::default()),
    };
    let response = lambda::dispatch_batch(&dispatcher, sample).await;
    assert!(response.batch_item_failures.is_empty());
    let sent = publisher.sent();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].body, body);
    assert_eq!(sent[0].attribute("subscriber"), Some("gp"));
    let delivered = audit.records();
    assert_eq!(delivered.len(), 1);
    assert_eq!(delivered[0].action, hub::audit::Action::Deliver);
    assert_eq!(delivered[0].subscriber_id.as_deref(), Some("gp"));
    assert_eq!(delivered[0].nhs_number.as_deref(), Some("9912003888"));
    // The message sent is counted for its recipient and event type.
    let counts = hub::ports::DeliveryStats::counts(&stats, "gp")
        .await
        .unwrap();
    assert_eq!(counts.len(), 1);
    assert_eq!(counts[0].event_type, EventType::Vaccinations);
    assert_eq!(counts[0].delivered, 1);
    assert!(counts[0].last_delivery_at.is_some());
}

#[tokio::test]
async fn a_stream_record_that_is_not_an_event_is_reported_failed_and_stops_the_batch() {
    use aws_lambda_events::dynamodb::{Event, EventRecord};
    use hub::memory::MemoryPublisher;

    let mut broken = EventRecord::default();
    broken.event_name = "INSERT".into();
    broken.change.sequence_number = Some("7".into());
    broken.change.new_image = serde_dynamo::to_item(serde_json::json!({"eventId": "x"})).unwrap();
    let mut later = broken.clone();
    later.change.sequence_number = Some("8".into());
    let mut event = Event::default();
    event.records = vec![broken, later];
    let dispatcher = hub::app::dispatch::Dispatcher {
        ports: &Adapters::new()
            .subscriptions(MemorySubscriptionStore::default())
            .publisher(MemoryPublisher::default())
            .audit(MemoryAuditLog::default())
            .register(hub::memory::MemoryRegisterStore::default())
            .reference(hub::memory::MemoryReferenceData::default())
            .stats(hub::memory::MemoryDeliveryStats::default())
            .events(MemoryEventStore::default()),
    };
    let response = lambda::dispatch_batch(&dispatcher, event).await;
    let failed: Vec<_> = response
        .batch_item_failures
        .iter()
        .map(|f| f.item_identifier.clone())
        .collect();
    assert_eq!(
        failed,
        vec![Some("7".to_owned())],
        "the first failure only: the retry resumes there"
    );
}

/// The status and redrive samples, for a subscriber onboarded from the
/// onboarding sample: the operator sees the counts and the queues, and a
/// redrive empties the DLQ into the queue.
#[tokio::test]
async fn the_status_and_redrive_samples_answer_for_an_onboarded_subscriber() {
    use hub::memory::{MemoryDeliveryStats, MemoryQueues};
    use hub::ports::DeliveryStats;

    let subscribers = MemorySubscriberStore::default();
    let provisioner = MemoryQueueProvisioner::default();
    let clients = MemoryClientStore::default();
    let audit = MemoryAuditLog::default();
    clients
        .put(
            hub::auth::Client::from_registration(
                &serde_json::json!({
                    "clientId": "demo-subscriber-1",
                    "odsCode": "A83627",
                    "roles": ["subscriber"],
                    "keys": {"keys": [{"kty": "EC", "crv": "P-256", "kid": "k1",
                        "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU",
                        "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"}]},
                })
                .to_string(),
            )
            .unwrap(),
        )
        .unwrap();
    let stats = MemoryDeliveryStats::default();
    let queues = MemoryQueues::default();
    let ports = Adapters::new()
        .subscribers(&subscribers)
        .provisioner(&provisioner)
        .clients(&clients)
        .audit(&audit)
        .stats(&stats)
        .queues(&queues);
    let onboarded = lambda::onboard(&ports, &sample("onboard-subscriber")).await;
    assert_eq!(onboarded.status_code, 201);
    let id = body_json(&onboarded.body)["id"]
        .as_str()
        .unwrap()
        .to_owned();
    stats
        .record_deliveries(EventType::Vaccinations, &[&id], "2026-01-05T09:30:00.000Z")
        .await
        .unwrap();
    let dead_letter_queue = format!("memory://queues/{id}-dlq");
    queues.push(&dead_letter_queue, "parked", &[("eventId", "e1")]);

    let for_id = |name: &str| {
        let mut request = sample(name);
        request.path_parameters.insert("id".into(), id.clone());
        request
    };
    let status = lambda::subscriber_status(&ports, &for_id("subscriber-status")).await;
    assert_eq!(status.status_code, 200);
    let status = body_json(&status.body);
    assert_eq!(status["eventTypes"][0]["delivered"], 1);
    assert_eq!(status["lastDeliveryAt"], "2026-01-05T09:30:00.000Z");
    assert_eq!(status["deadLetterQueue"]["waiting"], 1);

    let moved = lambda::redrive(&ports, &for_id("subscriber-redrive")).await;
    assert_eq!(moved.status_code, 200);
    assert_eq!(
        body_json(&moved.body),
        serde_json::json!({"subscriberId": id, "moved": 1, "remaining": false})
    );
    assert_eq!(queues.messages(&format!("memory://queues/{id}")).len(), 1);
    assert!(queues.messages(&dead_letter_queue).is_empty());

    // As they are, the samples name a subscriber this hub never onboarded.
    let unknown = lambda::redrive(&ports, &sample("subscriber-redrive")).await;
    assert_eq!(unknown.status_code, 404);
}
