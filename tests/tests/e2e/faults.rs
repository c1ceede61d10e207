//! Fault injection, end to end: each test makes one step of the pipe fail
//! (the publish's write, the stream poller's reads, dispatch's reads and
//! SNS publishes, dispatch itself, a subscriber's receive) through the
//! local hub's fault proxy, keeps its own record of what must happen (the
//! events it got a 202 for, and which subscriber must get which from the
//! subscriptions it created itself) and compares that record with what
//! the queues and the dispatch on-failure queue hold: every accepted event
//! delivered at least once to every matching subscriber and to no one
//! else, repeats only as identical copies under the same event id, nothing
//! given up that should have been delivered, nothing dropped.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use aws_sdk_sqs::types::{Message, MessageSystemAttributeName};
use e2e_tests::{Hub, Subscriber, attribute, fixture};
use hub::{Encoding, EventMessage};

const PATIENT: &str = "9912003888";
const OTHER_PATIENT: &str = "9912003896";
const XML: &str = "application/fhir+xml";
const EVENT_TYPE: &str = "vaccinations-1";
/// How long a test waits for what it expects: retries back off for up to
/// about 25 s before a record is given up.
const DELIVERY_DEADLINE: Duration = Duration::from_secs(90);

fn explicit(patient: &str) -> String {
    format!(
        "/Bundle?type=message&Patient.identifier=http://fhir.nhs.net/Id/nhs-number|{patient}&MessageHeader.event={EVENT_TYPE}"
    )
}

/// The NEMS vaccination example under a fresh MessageHeader.id, unique
/// across the tests of this run.
fn fresh_event() -> (String, String) {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    let body = fixture("nems/vaccinations-1-new.xml");
    let message = EventMessage::read(&body, Encoding::Xml).expect("the example reads");
    let id = format!(
        "{:08x}-0000-4000-8000-{:012x}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    );
    let body = body.replace(&message.message_id, &id);
    (id, body)
}

/// A subscriber onboarded for vaccinations with an explicit subscription
/// to the child.
async fn subscribed(hub: &Hub, ods_code: &str, patient: &str) -> Subscriber {
    let subscriber = hub.onboard(ods_code, &[EVENT_TYPE]).await;
    let (status, body) = hub
        .subscribe(&subscriber, ods_code, &explicit(patient))
        .await;
    assert_eq!(status, 201, "{body}");
    subscriber
}

/// Publishes a fresh event and requires the 202; its id.
async fn accepted(hub: &Hub) -> String {
    let (id, body) = fresh_event();
    let (status, outcome) = hub.publish(EVENT_TYPE, Some(XML), &body).await;
    assert_eq!(status, 202, "{outcome}");
    id
}

/// One queue's deliveries: per event id, every copy's body.
type Copies = BTreeMap<String, Vec<String>>;

async fn receive_into(sqs: &aws_sdk_sqs::Client, queue_url: &str, copies: &mut Copies) {
    let received = sqs
        .receive_message()
        .queue_url(queue_url)
        .max_number_of_messages(10)
        .wait_time_seconds(1)
        .message_attribute_names("All")
        .send()
        .await
        .expect("receiving from a queue");
    for message in received.messages.unwrap_or_default() {
        record_copy(&message, copies);
        if let Some(handle) = &message.receipt_handle {
            sqs.delete_message()
                .queue_url(queue_url)
                .receipt_handle(handle)
                .send()
                .await
                .expect("deleting a message");
        }
    }
}

fn record_copy(message: &Message, copies: &mut Copies) {
    let id = attribute(message, "eventId").expect("an eventId attribute");
    copies
        .entry(id.to_owned())
        .or_default()
        .push(message.body().expect("a body").to_owned());
}

/// Reads every queue until each holds the events the test expects there
/// (or the deadline passes), then a little longer for anything extra;
/// asserts that each queue got exactly its expected events, at least once
/// each, and that repeated copies are identical. The copies, by queue.
async fn assert_delivered(hub: &Hub, expected: &[(&Subscriber, BTreeSet<String>)]) -> Vec<Copies> {
    let sqs = hub.sqs();
    let mut copies: Vec<Copies> = vec![Copies::new(); expected.len()];
    let covered = |copies: &[Copies]| {
        expected
            .iter()
            .zip(copies)
            .all(|((_, wanted), got)| wanted.iter().all(|id| got.contains_key(id)))
    };
    let deadline = tokio::time::Instant::now() + DELIVERY_DEADLINE;
    while !covered(&copies) && tokio::time::Instant::now() < deadline {
        for ((subscriber, _), got) in expected.iter().zip(copies.iter_mut()) {
            receive_into(&sqs, &subscriber.queue_url, got).await;
        }
    }
    // Stragglers: a copy that should not exist arrives late, if at all.
    for _ in 0..3 {
        for ((subscriber, _), got) in expected.iter().zip(copies.iter_mut()) {
            receive_into(&sqs, &subscriber.queue_url, got).await;
        }
    }
    for ((subscriber, wanted), got) in expected.iter().zip(&copies) {
        let ids: BTreeSet<String> = got.keys().cloned().collect();
        assert_eq!(&ids, wanted, "the events {} received", subscriber.id);
        for (id, bodies) in got {
            assert!(
                bodies.iter().all(|body| body == &bodies[0]),
                "the copies of {id} differ"
            );
        }
    }
    copies
}

/// The URL of the hub's own queue whose name ends so.
async fn hub_queue(hub: &Hub, suffix: &str) -> String {
    let queues = hub
        .sqs()
        .list_queues()
        .send()
        .await
        .expect("listing the queues")
        .queue_urls
        .unwrap_or_default();
    queues
        .into_iter()
        .find(|url| url.ends_with(suffix))
        .unwrap_or_else(|| panic!("a queue named *{suffix}"))
}

/// Everything the dispatch on-failure queue holds, as JSON.
async fn given_up(hub: &Hub) -> Vec<serde_json::Value> {
    let queue = hub_queue(hub, "-dispatch-failures").await;
    hub.drain(&queue, Duration::from_secs(2))
        .await
        .iter()
        .map(|message| {
            serde_json::from_str(message.body().unwrap_or_default())
                .expect("an on-failure record is JSON")
        })
        .collect()
}

/// Waits until the rule has acted on at least `hits` calls.
async fn wait_for_hits(hub: &Hub, rule: &str, hits: u64) {
    for _ in 0..600 {
        if hub.fault_hits(rule).await >= hits {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the fault '{rule}' did not act {hits} time(s) within 30 s");
}

/// Holds the stream poller's reads while it publishes `count` events, so
/// that they reach dispatch as one batch, then replaces the fault rules
/// with `then` and lets the poller read. The events' ids, in order.
async fn as_one_batch(hub: &Hub, count: usize, then: &str) -> Vec<String> {
    let hold = "streams:GetRecords=error";
    hub.inject(hold).await;
    let mut ids = Vec::new();
    for _ in 0..count {
        ids.push(accepted(hub).await);
    }
    // A read that failed after the last write: the poller has not read them.
    let seen = hub.fault_hits(hold).await;
    wait_for_hits(hub, hold, seen + 1).await;
    hub.set_faults(then).await;
    ids
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failed_event_write_is_a_5xx_the_publisher_may_retry_and_nothing_half_stored() {
    let hub = Hub::start_with_faults("").await;
    let gp = subscribed(&hub, "A83627", PATIENT).await;
    let bystander = subscribed(&hub, "Y12345", OTHER_PATIENT).await;

    // The write fails on every attempt the SDK makes: the publisher is told
    // to retry, and the event is nowhere.
    let failing = "dynamodb:*~EventsTable#1..3=error";
    hub.inject(failing).await;
    let (id, body) = fresh_event();
    let (status, outcome) = hub.publish(EVENT_TYPE, Some(XML), &body).await;
    assert!(status >= 500, "{status}: {outcome}");
    assert_eq!(outcome["resourceType"], "OperationOutcome", "{outcome}");
    assert_eq!(hub.fault_hits(failing).await, 3);
    let operator = hub.token(e2e_tests::DEMO_OPERATOR).await;
    let read = hub
        .request(
            reqwest::Method::GET,
            &format!("/events/{id}?eventType={EVENT_TYPE}"),
            &operator,
        )
        .send()
        .await
        .expect("GET /events/{id}");
    assert_eq!(read.status(), 404, "nothing is stored after a failed write");

    // The retry is accepted, and delivered once.
    let (status, outcome) = hub.publish(EVENT_TYPE, Some(XML), &body).await;
    assert_eq!(status, 202, "{outcome}");

    // The write is done but its answer lost, on every attempt: a 5xx again,
    // yet the event is stored; the publisher's retry is a duplicate.
    let lost = "dynamodb:*~EventsTable#1..3=drop-response";
    hub.set_faults(lost).await;
    let (second, second_body) = fresh_event();
    let (status, outcome) = hub.publish(EVENT_TYPE, Some(XML), &second_body).await;
    assert!(status >= 500, "{status}: {outcome}");
    assert_eq!(hub.fault_hits(lost).await, 3);
    let (status, outcome) = hub.publish(EVENT_TYPE, Some(XML), &second_body).await;
    assert_eq!(status, 200, "a duplicate of what was stored: {outcome}");

    let copies = assert_delivered(
        &hub,
        &[
            (&gp, BTreeSet::from([id, second])),
            (&bystander, BTreeSet::new()),
        ],
    )
    .await;
    assert!(
        copies[0].values().all(|bodies| bodies.len() == 1),
        "each stored once, delivered once: {:?}",
        copies[0]
    );
    assert!(given_up(&hub).await.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn stream_reads_that_fail_delay_delivery_and_lose_nothing() {
    let hub = Hub::start_with_faults("").await;
    let gp = subscribed(&hub, "A83627", PATIENT).await;
    let bystander = subscribed(&hub, "Y12345", OTHER_PATIENT).await;

    let failing = "streams:GetRecords=unavailable";
    hub.inject(failing).await;
    let mut ids = BTreeSet::new();
    for _ in 0..3 {
        ids.insert(accepted(&hub).await);
    }
    wait_for_hits(&hub, failing, 5).await;
    assert!(
        hub.drain(&gp.queue_url, Duration::from_secs(1))
            .await
            .is_empty(),
        "nothing is dispatched while the stream cannot be read"
    );
    hub.clear_faults().await;

    assert_delivered(&hub, &[(&gp, ids), (&bystander, BTreeSet::new())]).await;
    assert!(given_up(&hub).await.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn dispatch_reads_that_fail_are_retried_until_delivered() {
    let hub = Hub::start_with_faults("").await;
    let gp = subscribed(&hub, "A83627", PATIENT).await;
    let bystander = subscribed(&hub, "Y12345", OTHER_PATIENT).await;

    // More failures than the SDK's own three attempts: dispatch itself
    // fails the record, and the stream retries it.
    let subscriptions = "dynamodb:Query~SubscriptionsTable#1..4=error";
    let register = "dynamodb:GetItem~RegisterTable#1..4=throttle";
    let ids = as_one_batch(&hub, 3, &format!("{register};{subscriptions}")).await;

    assert_delivered(
        &hub,
        &[
            (&gp, ids.into_iter().collect()),
            (&bystander, BTreeSet::new()),
        ],
    )
    .await;
    assert_eq!(hub.fault_hits(register).await, 4);
    assert_eq!(hub.fault_hits(subscriptions).await, 4);
    assert!(given_up(&hub).await.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn an_sns_publish_that_fails_for_several_recipients_is_retried_for_each() {
    let hub = Hub::start_with_faults("").await;
    let gp = subscribed(&hub, "A83627", PATIENT).await;
    let health_visitors = subscribed(&hub, "Y12345", PATIENT).await;
    let bystander = subscribed(&hub, "B86041", OTHER_PATIENT).await;

    let failing = "sns:PublishBatch#1..5=error";
    let ids: BTreeSet<String> = as_one_batch(&hub, 2, failing).await.into_iter().collect();

    assert_delivered(
        &hub,
        &[
            (&gp, ids.clone()),
            (&health_visitors, ids),
            (&bystander, BTreeSet::new()),
        ],
    )
    .await;
    assert_eq!(hub.fault_hits(failing).await, 5);
    assert!(given_up(&hub).await.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn dispatch_killed_mid_batch_delivers_the_whole_batch_on_retry() {
    let hub = Hub::start_with_faults("").await;
    let gp = subscribed(&hub, "A83627", PATIENT).await;
    let bystander = subscribed(&hub, "Y12345", OTHER_PATIENT).await;

    // Each publish takes a while, so the kill lands between two of them.
    let slow = "sns:PublishBatch=slow:700ms";
    let ids = as_one_batch(&hub, 6, slow).await;
    wait_for_hits(&hub, slow, 2).await;
    assert!(hub.kill_function("dispatch") > 0, "dispatch was running");
    let sent_before_kill = hub.fault_hits(slow).await;
    assert!(sent_before_kill < ids.len() as u64, "killed mid-batch");
    hub.clear_faults().await;

    let copies = assert_delivered(
        &hub,
        &[
            (&gp, ids.iter().cloned().collect()),
            (&bystander, BTreeSet::new()),
        ],
    )
    .await;
    // Only what was published before the kill may come twice; the rest of
    // the batch comes once.
    let repeated: Vec<&String> = copies[0]
        .iter()
        .filter(|(_, bodies)| bodies.len() > 1)
        .map(|(id, _)| id)
        .collect();
    let published_before: Vec<&String> = ids.iter().take(sent_before_kill as usize).collect();
    assert!(
        repeated.iter().all(|id| published_before.contains(id)),
        "repeated {repeated:?}, published before the kill {published_before:?}"
    );
    assert!(given_up(&hub).await.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_poison_record_is_isolated_and_given_up_with_what_redrives_it() {
    let hub = Hub::start_with_faults("").await;
    let gp = subscribed(&hub, "A83627", PATIENT).await;
    let bystander = subscribed(&hub, "Y12345", OTHER_PATIENT).await;

    // The second of five events can never be published.
    let (poison, poison_body) = fresh_event();
    hub.inject("streams:GetRecords=error").await;
    let before = accepted(&hub).await;
    let (status, outcome) = hub.publish(EVENT_TYPE, Some(XML), &poison_body).await;
    assert_eq!(status, 202, "{outcome}");
    let mut after = Vec::new();
    for _ in 0..3 {
        after.push(accepted(&hub).await);
    }
    let failing = format!("sns:PublishBatch~{poison}=error");
    let seen = hub.fault_hits("streams:GetRecords=error").await;
    wait_for_hits(&hub, "streams:GetRecords=error", seen + 1).await;
    hub.set_faults(&failing).await;

    let mut expected: BTreeSet<String> = after.into_iter().collect();
    expected.insert(before);
    assert_delivered(&hub, &[(&gp, expected), (&bystander, BTreeSet::new())]).await;

    // Given up alone, once its retries are spent.
    let mut records = Vec::new();
    for _ in 0..60 {
        records.extend(given_up(&hub).await);
        if !records.is_empty() {
            break;
        }
    }
    assert_eq!(records.len(), 1, "{records:?}");
    let info = &records[0]["DDBStreamBatchInfo"];
    assert_eq!(info["batchSize"], 1, "{info}");
    assert_eq!(
        records[0]["requestContext"]["condition"],
        "RetryAttemptsExhausted"
    );
    assert!(
        hub.fault_hits(&failing).await > 1,
        "retried before giving up"
    );

    // The record names the stream position of the event: read there, it
    // gives the key of the event, which is still in the table to dispatch
    // again.
    let streams = aws_sdk_dynamodbstreams::Client::new(&hub.config);
    let iterator = streams
        .get_shard_iterator()
        .stream_arn(info["streamArn"].as_str().expect("streamArn"))
        .shard_id(info["shardId"].as_str().expect("shardId"))
        .shard_iterator_type(aws_sdk_dynamodbstreams::types::ShardIteratorType::AtSequenceNumber)
        .sequence_number(
            info["startSequenceNumber"]
                .as_str()
                .expect("startSequenceNumber"),
        )
        .send()
        .await
        .expect("an iterator at the failed record")
        .shard_iterator
        .expect("a shard iterator");
    let records = streams
        .get_records()
        .shard_iterator(iterator)
        .limit(1)
        .send()
        .await
        .expect("the failed record")
        .records
        .unwrap_or_default();
    let key = records
        .first()
        .and_then(|record| record.dynamodb.as_ref()?.keys.as_ref()?.get("eventKey"))
        .and_then(|value| value.as_s().ok())
        .expect("the failed record's event key")
        .clone();
    assert_eq!(key, format!("{EVENT_TYPE}/{poison}"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_receive_whose_answer_is_lost_is_received_again() {
    let hub = Hub::start_with_faults("").await;
    let gp = subscribed(&hub, "A83627", PATIENT).await;
    let id = accepted(&hub).await;

    // Wait until it is in the queue, without receiving it.
    let sqs = hub.sqs();
    for _ in 0..300 {
        let depth = sqs
            .get_queue_attributes()
            .queue_url(&gp.queue_url)
            .attribute_names(aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessages)
            .send()
            .await
            .expect("the queue's depth")
            .attributes
            .and_then(|attributes| {
                attributes
                    .get(&aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessages)
                    .cloned()
            });
        if depth.as_deref() == Some("1") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // The subscriber's receive takes the message, and the answer is lost;
    // its next receives fail outright. The message comes back once its
    // visibility timeout ends.
    let lost = "sqs:ReceiveMessage#1=drop-response";
    let failing = "sqs:ReceiveMessage#2..4=error";
    hub.set_faults(&format!("{lost};{failing}")).await;
    let subscriber_sqs = aws_sdk_sqs::Client::new(&hub.faulty_config().await);
    let mut failed_receives = 0;
    let mut received = Vec::new();
    let deadline = tokio::time::Instant::now() + DELIVERY_DEADLINE;
    while received.is_empty() && tokio::time::Instant::now() < deadline {
        match subscriber_sqs
            .receive_message()
            .queue_url(&gp.queue_url)
            .wait_time_seconds(1)
            .message_attribute_names("All")
            .message_system_attribute_names(MessageSystemAttributeName::ApproximateReceiveCount)
            .send()
            .await
        {
            Ok(output) => received.extend(output.messages.unwrap_or_default()),
            Err(_) => failed_receives += 1,
        }
    }
    assert!(failed_receives >= 1, "the subscriber saw its receives fail");
    assert_eq!(hub.fault_hits(lost).await, 1);
    assert_eq!(received.len(), 1, "{received:?}");
    assert_eq!(attribute(&received[0], "eventId"), Some(id.as_str()));
    let receive_count = received[0]
        .attributes
        .as_ref()
        .and_then(|a| a.get(&MessageSystemAttributeName::ApproximateReceiveCount))
        .cloned();
    assert_eq!(
        receive_count.as_deref(),
        Some("2"),
        "received before, answer lost"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_deleted_subscriber_queue_holds_up_no_one_else_and_is_reported() {
    let hub = Hub::start_with_faults("").await;
    let gp = subscribed(&hub, "A83627", PATIENT).await;
    let health_visitors = subscribed(&hub, "Y12345", PATIENT).await;

    // Its topic subscriptions keep what SNS cannot deliver to it.
    let status = subscriber_status(&hub, &gp).await;
    let undelivered = hub_queue(&hub, "-undelivered").await;
    let undelivered_arn = hub
        .sqs()
        .get_queue_attributes()
        .queue_url(&undelivered)
        .attribute_names(aws_sdk_sqs::types::QueueAttributeName::QueueArn)
        .send()
        .await
        .expect("its attributes")
        .attributes
        .and_then(|mut a| a.remove(&aws_sdk_sqs::types::QueueAttributeName::QueueArn))
        .expect("its ARN");
    let sns = aws_sdk_sns::Client::new(&hub.config);
    let topic_subscriptions = status["topicSubscriptions"]
        .as_array()
        .expect("topicSubscriptions");
    assert!(!topic_subscriptions.is_empty(), "{status}");
    for subscription in topic_subscriptions {
        let attributes = sns
            .get_subscription_attributes()
            .subscription_arn(subscription["subscriptionArn"].as_str().expect("an ARN"))
            .send()
            .await
            .expect("the topic subscription's attributes")
            .attributes
            .unwrap_or_default();
        let redrive: serde_json::Value = serde_json::from_str(
            attributes
                .get("RedrivePolicy")
                .expect("a redrive policy on the topic subscription"),
        )
        .expect("a JSON redrive policy");
        assert_eq!(redrive["deadLetterTargetArn"], undelivered_arn.as_str());
    }

    hub.sqs()
        .delete_queue()
        .queue_url(&gp.queue_url)
        .send()
        .await
        .expect("deleting the subscriber's queue");
    let id = accepted(&hub).await;
    assert_delivered(&hub, &[(&health_visitors, BTreeSet::from([id]))]).await;
    assert!(given_up(&hub).await.is_empty(), "dispatch did not fail");
    let status = subscriber_status(&hub, &gp).await;
    assert_eq!(status["queue"]["missing"], true, "{status}");
    assert_eq!(
        subscriber_status(&hub, &health_visitors).await["queue"]["missing"],
        false
    );
}

/// GET /subscribers/{id}/status as the subscriber; requires a 200.
async fn subscriber_status(hub: &Hub, subscriber: &Subscriber) -> serde_json::Value {
    let response = hub
        .request(
            reqwest::Method::GET,
            &format!("/subscribers/{}/status", subscriber.id),
            &subscriber.token,
        )
        .send()
        .await
        .expect("GET /subscribers/{id}/status");
    let status = response.status();
    let body: serde_json::Value = response.json().await.expect("a JSON status");
    assert_eq!(status, 200, "{body}");
    body
}
