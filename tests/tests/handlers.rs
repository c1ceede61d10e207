//! The Lambda handlers fed the sample API Gateway events of events/apigw,
//! with the in-memory adapters: the translation between Lambda events and
//! the domain, without AWS.

use aws_lambda_events::apigw::ApiGatewayProxyRequest;
use aws_lambda_events::encodings::Body;
use e2e_tests::fixture;
use hub::EventType;
use hub::lambda;
use hub::memory::{
    MemoryEventStore, MemoryQueueProvisioner, MemorySubscriberStore, MemorySubscriptionStore,
};

fn sample(name: &str) -> ApiGatewayProxyRequest {
    serde_json::from_str(&fixture(&format!("apigw/{name}.json")))
        .unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn body_json(body: &Option<Body>) -> serde_json::Value {
    match body {
        Some(Body::Text(text)) => serde_json::from_str(text).unwrap(),
        other => panic!("expected a text body, got {other:?}"),
    }
}

#[tokio::test]
async fn every_sample_publish_event_is_accepted_then_seen_as_a_duplicate() {
    for (name, event_type) in [
        ("publish-vaccinations-1-xml", EventType::Vaccinations),
        ("publish-vaccinations-1-json", EventType::Vaccinations),
        (
            "publish-pds-change-of-address-1-xml",
            EventType::PdsChangeOfAddress,
        ),
        (
            "publish-pds-change-of-address-1-json",
            EventType::PdsChangeOfAddress,
        ),
    ] {
        let store = MemoryEventStore::default();
        let request = sample(name);
        let response = lambda::publish(&store, event_type, &request).await;
        assert_eq!(response.status_code, 202, "{name}");
        assert_eq!(store.len(), 1, "{name}");
        let again = lambda::publish(&store, event_type, &request).await;
        assert_eq!(again.status_code, 200, "{name}");
        // The same body on the other event type's route is refused.
        let other = if event_type == EventType::Vaccinations {
            EventType::PdsChangeOfAddress
        } else {
            EventType::Vaccinations
        };
        assert_eq!(
            lambda::publish(&store, other, &request).await.status_code,
            422,
            "{name}"
        );
    }
}

#[tokio::test]
async fn onboarding_then_subscribing_then_reading_through_the_handlers() {
    let subscribers = MemorySubscriberStore::default();
    let provisioner = MemoryQueueProvisioner::default();
    let subscriptions = MemorySubscriptionStore::default();

    let onboarded =
        lambda::onboard(&subscribers, &provisioner, &sample("onboard-subscriber")).await;
    assert_eq!(onboarded.status_code, 201);
    let subscriber_id = body_json(&onboarded.body)["id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        provisioner.provisioned(),
        vec![(subscriber_id.clone(), vec![EventType::Vaccinations])]
    );

    let mut create = sample("subscription-create");
    create.body = create
        .body
        .map(|body| body.replace("REPLACE-WITH-SUBSCRIBER-ID", &subscriber_id));
    let created = lambda::create_subscription(&subscriptions, &subscribers, &create).await;
    assert_eq!(created.status_code, 201);
    let resource = body_json(&created.body);
    let id = resource["id"].as_str().unwrap().to_owned();
    assert_eq!(
        created.headers["location"],
        format!("/Subscription/{id}").as_str()
    );

    let mut read = sample("subscription-read");
    read.path_parameters.insert("id".into(), id);
    let found = lambda::read_subscription(&subscriptions, &read).await;
    assert_eq!(found.status_code, 200);
    assert_eq!(body_json(&found.body), resource);

    let unknown = lambda::read_subscription(&subscriptions, &sample("subscription-read")).await;
    assert_eq!(unknown.status_code, 404);
}
