//! Subscribers reach their own queue, and only it: a hub-owned queue read
//! by the subscriber's AWS principal, a change of principal or event types
//! that keeps what the queue holds, and a queue in the subscriber's own
//! account. The emulator enforces no IAM, so the policy documents and key
//! grants themselves are asserted.

use std::time::Duration;

use aws_sdk_sqs::types::QueueAttributeName;
use e2e_tests::{Hub, Subscriber, attribute, fixture};
use reqwest::Method;
use serde_json::{Value, json};

const PATIENT: &str = "9912003888";
const XML: &str = "application/fhir+xml";
const ROLE_A: &str = "arn:aws:iam::111122223333:role/chis-poller";
const ROLE_B: &str = "arn:aws:iam::444455556666:role/new-poller";

fn explicit(event_type: &str) -> String {
    format!(
        "/Bundle?type=message&Patient.identifier=http://fhir.nhs.net/Id/nhs-number|{PATIENT}&MessageHeader.event={event_type}"
    )
}

/// Onboards a new subscriber client of A83627 with the body's extra fields;
/// the status and the answer.
async fn onboard(
    hub: &Hub,
    event_types: &[&str],
    extra: Value,
) -> (u16, Value, e2e_tests::TestClient) {
    let client = hub
        .register_client("subscriber", "A83627", json!({"subscribeExplicit": true}))
        .await;
    let mut body = json!({
        "odsCode": "A83627",
        "name": "CHIS",
        "eventTypes": event_types,
        "clientId": client.client_id,
    });
    for (key, value) in extra.as_object().unwrap() {
        body[key] = value.clone();
    }
    let operator = hub.token("demo-operator").await;
    let response = hub
        .request(Method::POST, "/subscribers", &operator)
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or_default(), client)
}

async fn subscriber_of(hub: &Hub, answer: &Value, client: e2e_tests::TestClient) -> Subscriber {
    let token = hub.token_for(&client).await;
    Subscriber {
        id: answer["id"].as_str().unwrap().to_owned(),
        queue_url: answer["queueUrl"].as_str().unwrap().to_owned(),
        client,
        token,
    }
}

async fn change(hub: &Hub, token: &str, id: &str, body: Value) -> (u16, Value) {
    let response = hub
        .request(Method::PATCH, &format!("/subscribers/{id}"), token)
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or_default())
}

async fn policy(hub: &Hub, queue_url: &str) -> Value {
    let attributes = hub
        .sqs()
        .get_queue_attributes()
        .queue_url(queue_url)
        .attribute_names(QueueAttributeName::Policy)
        .send()
        .await
        .unwrap()
        .attributes
        .unwrap();
    serde_json::from_str(&attributes[&QueueAttributeName::Policy]).unwrap()
}

fn statement<'a>(policy: &'a Value, sid: &str) -> Option<&'a Value> {
    policy["Statement"]
        .as_array()
        .unwrap()
        .iter()
        .find(|statement| statement["Sid"] == sid)
}

/// The topic ARNs a policy lets deliver, sorted.
fn delivering_topics(policy: &Value) -> Vec<String> {
    let mut topics: Vec<String> =
        statement(policy, "HubTopicsDeliver").unwrap()["Condition"]["ArnEquals"]["aws:SourceArn"]
            .as_array()
            .unwrap()
            .iter()
            .map(|arn| arn.as_str().unwrap().to_owned())
            .collect();
    topics.sort();
    topics
}

async fn topic_arn(hub: &Hub, name: &str) -> String {
    let sns = aws_sdk_sns::Client::new(&hub.config);
    sns.list_topics()
        .send()
        .await
        .unwrap()
        .topics
        .unwrap_or_default()
        .into_iter()
        .filter_map(|topic| topic.topic_arn)
        .find(|arn| arn.ends_with(name))
        .unwrap()
}

/// (grantee, operations, the queue ARN its encryption context binds it to)
/// of every grant on every key.
async fn grants(hub: &Hub) -> Vec<(String, Vec<String>, String)> {
    let kms = aws_sdk_kms::Client::new(&hub.config);
    let mut found = Vec::new();
    for key in kms
        .list_keys()
        .send()
        .await
        .unwrap()
        .keys
        .unwrap_or_default()
    {
        let listed = kms
            .list_grants()
            .key_id(key.key_id.unwrap())
            .send()
            .await
            .unwrap();
        for grant in listed.grants.unwrap_or_default() {
            found.push((
                grant.grantee_principal.unwrap_or_default(),
                grant
                    .operations
                    .unwrap_or_default()
                    .iter()
                    .map(|operation| operation.as_str().to_owned())
                    .collect(),
                grant
                    .constraints
                    .and_then(|constraints| constraints.encryption_context_subset)
                    .and_then(|context| context.get("aws:sqs:arn").cloned())
                    .unwrap_or_default(),
            ));
        }
    }
    found.sort();
    found
}

#[tokio::test(flavor = "multi_thread")]
async fn a_hub_owned_queue_is_read_by_the_subscribers_own_principal_and_changes_keep_its_messages()
{
    let hub = Hub::start().await;
    let (status, answer, client) =
        onboard(&hub, &["vaccinations-1"], json!({"awsPrincipal": ROLE_A})).await;
    assert_eq!(status, 201, "{answer}");
    assert_eq!(
        answer["access"],
        json!({"mode": "hub-owned", "principal": ROLE_A})
    );
    let subscriber = subscriber_of(&hub, &answer, client).await;
    let queue_arn = answer["queueArn"].as_str().unwrap().to_owned();
    let dlq_arn = answer["deadLetterQueueArn"].as_str().unwrap().to_owned();
    let dlq_url = answer["deadLetterQueueUrl"].as_str().unwrap().to_owned();
    let vaccinations = topic_arn(&hub, "-vaccinations-1").await;
    let contacts = topic_arn(&hub, "-professional-contacts-1").await;

    // The queue: the topic of its one event type delivers; the principal
    // reads, deletes, holds and inspects; nothing without TLS.
    let queue_policy = policy(&hub, &subscriber.queue_url).await;
    assert_eq!(delivering_topics(&queue_policy), [vaccinations.as_str()]);
    let reads = statement(&queue_policy, "SubscriberReads").unwrap();
    assert_eq!(reads["Principal"]["AWS"], ROLE_A);
    assert_eq!(reads["Resource"], queue_arn.as_str());
    assert_eq!(
        reads["Action"],
        json!([
            "sqs:ReceiveMessage",
            "sqs:DeleteMessage",
            "sqs:ChangeMessageVisibility",
            "sqs:GetQueueAttributes"
        ])
    );
    let tls = statement(&queue_policy, "DenyInsecureTransport").unwrap();
    assert_eq!(tls["Condition"]["Bool"]["aws:SecureTransport"], "false");
    let dlq_policy = policy(&hub, &dlq_url).await;
    assert_eq!(
        statement(&dlq_policy, "SubscriberReads").unwrap()["Resource"],
        dlq_arn.as_str()
    );
    assert!(
        statement(&dlq_policy, "HubTopicsDeliver").is_none(),
        "SQS itself moves messages in"
    );
    // The hub's key: Decrypt only, one grant per queue's encryption context.
    assert_eq!(
        grants(&hub).await,
        [
            (
                ROLE_A.to_owned(),
                vec!["Decrypt".to_owned()],
                queue_arn.clone()
            ),
            (
                ROLE_A.to_owned(),
                vec!["Decrypt".to_owned()],
                dlq_arn.clone()
            ),
        ]
        .into_iter()
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect::<Vec<_>>()
    );

    // A delivery waits in the queue while the subscriber changes hands and
    // gains an event type.
    let (status, body) = hub
        .subscribe(&subscriber, "A83627", &explicit("vaccinations-1"))
        .await;
    assert_eq!(status, 201, "{body}");
    let (status, _) = hub
        .publish(
            "vaccinations-1",
            Some(XML),
            &fixture("nems/vaccinations-1-new.xml"),
        )
        .await;
    assert_eq!(status, 202);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let operator = hub.token("demo-operator").await;
    let (status, changed) = change(
        &hub,
        &operator,
        &subscriber.id,
        json!({"awsPrincipal": ROLE_B, "eventTypes": ["vaccinations-1", "professional-contacts-1"]}),
    )
    .await;
    assert_eq!(status, 200, "{changed}");
    assert_eq!(changed["access"]["principal"], ROLE_B);
    assert_eq!(
        changed["queueUrl"],
        subscriber.queue_url.as_str(),
        "the same queue"
    );
    let queue_policy = policy(&hub, &subscriber.queue_url).await;
    let mut both = vec![vaccinations.clone(), contacts.clone()];
    both.sort();
    assert_eq!(delivering_topics(&queue_policy), both);
    assert_eq!(
        statement(&queue_policy, "SubscriberReads").unwrap()["Principal"]["AWS"],
        ROLE_B
    );
    let granted = grants(&hub).await;
    assert!(
        granted.iter().all(|(grantee, _, _)| grantee == ROLE_B),
        "{granted:?}"
    );
    assert_eq!(granted.len(), 2);
    // The message that waited is still there.
    let waiting = hub
        .drain(&subscriber.queue_url, Duration::from_secs(2))
        .await;
    assert_eq!(waiting.len(), 1);
    assert_eq!(attribute(&waiting[0], "eventType"), Some("vaccinations-1"));
    // The new event type is delivered.
    let (status, body) = hub
        .subscribe(&subscriber, "A83627", &explicit("professional-contacts-1"))
        .await;
    assert_eq!(status, 201, "{body}");
    let (status, _) = hub
        .publish(
            "professional-contacts-1",
            Some(XML),
            &fixture("nems/Professional-Contacts-1-new.xml"),
        )
        .await;
    assert_eq!(status, 202);
    let delivered = hub
        .drain(&subscriber.queue_url, Duration::from_secs(4))
        .await;
    assert_eq!(delivered.len(), 1);
    assert_eq!(
        attribute(&delivered[0], "eventType"),
        Some("professional-contacts-1")
    );

    // Narrowing is refused while a subscription names the type removed.
    let (status, refused) = change(
        &hub,
        &operator,
        &subscriber.id,
        json!({"eventTypes": ["professional-contacts-1"]}),
    )
    .await;
    assert_eq!(status, 422, "{refused}");
    assert_eq!(refused["issue"][0]["expression"][0], "eventTypes");
    // Only operators change subscribers; bad bodies are named.
    assert_eq!(
        change(
            &hub,
            &subscriber.token,
            &subscriber.id,
            json!({"awsPrincipal": null})
        )
        .await
        .0,
        403
    );
    for (body, field) in [
        (
            json!({"queueArn": "arn:aws:sqs:eu-west-2:111122223333:q"}),
            "queueArn",
        ),
        (
            json!({"awsPrincipal": "arn:aws:iam::111122223333:user/alice"}),
            "awsPrincipal",
        ),
        (json!({"eventTypes": ["nonsense"]}), "eventTypes[0]"),
        (json!({}), "$"),
    ] {
        let (status, outcome) = change(&hub, &operator, &subscriber.id, body.clone()).await;
        assert!([400, 422].contains(&status), "{body}: {status}");
        assert_eq!(outcome["issue"][0]["expression"][0], field, "{body}");
    }
    // The principal can be removed: the hub's own account alone reads.
    let (status, _) = change(
        &hub,
        &operator,
        &subscriber.id,
        json!({"awsPrincipal": null}),
    )
    .await;
    assert_eq!(status, 200);
    assert!(
        statement(
            &policy(&hub, &subscriber.queue_url).await,
            "SubscriberReads"
        )
        .is_none()
    );
    assert!(grants(&hub).await.is_empty(), "every grant revoked");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_subscriber_owned_queue_is_subscribed_and_told_what_to_set_up() {
    let hub = Hub::start().await;
    // The subscriber's own queue (in the emulator's one account).
    let own = hub
        .sqs()
        .create_queue()
        .queue_name("chis-own-events")
        .send()
        .await
        .unwrap()
        .queue_url
        .unwrap();
    let own_arn = hub
        .sqs()
        .get_queue_attributes()
        .queue_url(&own)
        .attribute_names(QueueAttributeName::QueueArn)
        .send()
        .await
        .unwrap()
        .attributes
        .unwrap()[&QueueAttributeName::QueueArn]
        .clone();
    let (status, answer, client) =
        onboard(&hub, &["vaccinations-1"], json!({"queueArn": own_arn})).await;
    assert_eq!(status, 201, "{answer}");
    assert_eq!(
        answer["access"],
        json!({"mode": "subscriber-owned", "queueArn": own_arn})
    );
    assert_eq!(answer["queueArn"], own_arn.as_str());
    assert!(
        answer.get("deadLetterQueueUrl").is_none(),
        "its DLQ is its own"
    );
    let vaccinations = topic_arn(&hub, "-vaccinations-1").await;
    // What to paste: the queue policy, and the key policy statement.
    let setup = &answer["setup"];
    assert_eq!(
        delivering_topics(&setup["queuePolicy"]),
        [vaccinations.as_str()]
    );
    assert_eq!(
        statement(&setup["queuePolicy"], "HubTopicsDeliver").unwrap()["Resource"],
        own_arn.as_str()
    );
    assert!(statement(&setup["queuePolicy"], "DenyInsecureTransport").is_some());
    assert_eq!(
        setup["keyPolicyStatement"]["Principal"]["Service"],
        "sns.amazonaws.com"
    );
    assert_eq!(
        setup["keyPolicyStatement"]["Condition"]["ArnEquals"]["aws:SourceArn"],
        json!([vaccinations])
    );
    assert!(
        setup["confirmation"]
            .as_str()
            .unwrap()
            .contains("SubscriptionConfirmation")
    );

    // Its status: each topic subscription's state; no queue depth.
    let subscriber = subscriber_of(&hub, &answer, client).await;
    let response = hub
        .request(
            Method::GET,
            &format!("/subscribers/{}/status", subscriber.id),
            &subscriber.token,
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    let status_body: Value = response.json().await.unwrap();
    assert_eq!(status_body["queue"], Value::Null, "{status_body}");
    let subscriptions = status_body["topicSubscriptions"].as_array().unwrap();
    assert_eq!(subscriptions.len(), 1);
    assert_eq!(subscriptions[0]["eventType"], "vaccinations-1");
    // The emulator confirms at once; SNS would report pending-confirmation
    // until the queue's owner confirms.
    assert_eq!(subscriptions[0]["state"], "confirmed");
    let response = hub
        .request(
            Method::POST,
            &format!("/subscribers/{}/$redrive", subscriber.id),
            &subscriber.token,
        )
        .send()
        .await
        .unwrap();
    assert_eq!(
        response.status().as_u16(),
        422,
        "its DLQ is redriven in its own account"
    );

    // Deliveries reach its queue, raw, with the attributes.
    let (status, body) = hub
        .subscribe(&subscriber, "A83627", &explicit("vaccinations-1"))
        .await;
    assert_eq!(status, 201, "{body}");
    let (status, _) = hub
        .publish(
            "vaccinations-1",
            Some(XML),
            &fixture("nems/vaccinations-1-new.xml"),
        )
        .await;
    assert_eq!(status, 202);
    let delivered = hub.drain(&own, Duration::from_secs(4)).await;
    assert_eq!(delivered.len(), 1);
    assert_eq!(
        delivered[0].body(),
        Some(fixture("nems/vaccinations-1-new.xml").as_str())
    );
    assert_eq!(
        attribute(&delivered[0], "subscriber"),
        Some(subscriber.id.as_str())
    );

    // A principal cannot be given to a queue the subscriber owns; both at
    // once, or a FIFO queue, are refused at onboarding.
    let operator = hub.token("demo-operator").await;
    let (status, _) = change(
        &hub,
        &operator,
        &subscriber.id,
        json!({"awsPrincipal": ROLE_A}),
    )
    .await;
    assert_eq!(status, 422);
    for extra in [
        json!({"queueArn": own_arn, "awsPrincipal": ROLE_A}),
        json!({"queueArn": "arn:aws:sqs:eu-west-2:111122223333:events.fifo"}),
        json!({"awsPrincipal": "everyone"}),
    ] {
        let (status, outcome, _) = onboard(&hub, &["vaccinations-1"], extra.clone()).await;
        assert_eq!(status, 422, "{extra}: {outcome}");
    }
}
