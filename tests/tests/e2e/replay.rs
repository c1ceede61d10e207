//! Replays end to end through the local stack: a subscriber replays a week
//! it missed (and a subscription made today replays nothing from before
//! it), and a replay whose worker crashes part-way resumes without
//! re-sending what it had sent.

use std::collections::BTreeMap;
use std::time::Duration;

use e2e_tests::{Hub, Subscriber, attribute, fixture};
use hub::aws::{DynamoEventStore, DynamoSubscriptionStore};
use hub::criteria::Criteria;
use hub::events::{Retention, StoredEvent};
use hub::ports::{EventStore, SubscriptionStore};
use hub::subscriber::OdsCode;
use hub::subscription::Subscription;
use hub::{Encoding, EventMessage};
use reqwest::Method;
use time::OffsetDateTime;

const PATIENT: &str = "9912003888";
const XML: &str = "application/fhir+xml";

fn explicit(event_type: &str) -> String {
    format!(
        "/Bundle?type=message&Patient.identifier=http://fhir.nhs.net/Id/nhs-number|{PATIENT}&MessageHeader.event={event_type}"
    )
}

/// An example under a fresh MessageHeader.id.
fn renamed(file: &str, n: usize) -> (String, String) {
    let body = fixture(file);
    let message = EventMessage::read(&body, Encoding::Xml).unwrap();
    let id = format!("00000000-0000-4000-8000-{n:012}");
    (id.clone(), body.replace(&message.message_id, &id))
}

/// Stores an event as if the hub had accepted it `days_ago`: the API can
/// only accept events now.
async fn accepted_days_ago(hub: &Hub, file: &str, n: usize, days_ago: i64) -> String {
    let (id, body) = renamed(file, n);
    let message = EventMessage::read(&body, Encoding::Xml).unwrap();
    let at = OffsetDateTime::now_utc() - time::Duration::days(days_ago);
    let event = StoredEvent::new(&message, Encoding::Xml, &body, at, Retention::DEFAULT);
    let store = DynamoEventStore::new(
        aws_sdk_dynamodb::Client::new(&hub.config),
        "chhub-local-EventsTable",
        "chhub-local-VersionsTable",
    );
    store.insert(&event).await.unwrap();
    id
}

/// Stores an explicit subscription as if the subscriber had made it
/// `days_ago`: the API can only create subscriptions now, and a
/// subscription replays nothing accepted before its creation.
async fn subscribed_days_ago(
    hub: &Hub,
    subscriber: &Subscriber,
    event_type: &str,
    days_ago: i64,
) -> String {
    let subscription = Subscription {
        // The form the hub issues (a UUID), unique to this instant.
        id: format!(
            "00000000-0000-4000-9000-{:012x}",
            OffsetDateTime::now_utc().unix_timestamp_nanos() & 0xffff_ffff_ffff
        ),
        subscriber_id: subscriber.id.clone(),
        contact_ods: OdsCode::parse("A83627").unwrap(),
        reason: "direct care".into(),
        end: None,
        criteria: Criteria::parse(&explicit(event_type)).unwrap(),
        version_id: 1,
        last_updated: hub::fhir_time::format_instant(
            OffsetDateTime::now_utc() - time::Duration::days(days_ago),
        ),
        basis: None,
        ended: None,
        backfills: Vec::new(),
    };
    DynamoSubscriptionStore::new(
        aws_sdk_dynamodb::Client::new(&hub.config),
        "chhub-local-SubscriptionsTable",
    )
    .create(&subscription)
    .await
    .unwrap();
    subscription.id
}

async fn start_replay(
    hub: &Hub,
    subscriber: &Subscriber,
    subscription: &str,
    query: &str,
) -> (u16, serde_json::Value, Option<String>) {
    let response = hub
        .request(
            Method::POST,
            &format!("/Subscription/{subscription}/$replay{query}"),
            &subscriber.token,
        )
        .send()
        .await
        .expect("POST $replay");
    let status = response.status().as_u16();
    let location = response
        .headers()
        .get("content-location")
        .and_then(|value| value.to_str().ok())
        .map(str::to_owned);
    (status, response.json().await.unwrap_or_default(), location)
}

async fn replay_status(hub: &Hub, token: &str, location: &str) -> (u16, serde_json::Value) {
    let response = hub
        .request(Method::GET, location, token)
        .send()
        .await
        .expect("GET /replays");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or_default())
}

/// Polls the replay until it is no longer running.
async fn finished(hub: &Hub, subscriber: &Subscriber, location: &str) -> serde_json::Value {
    for _ in 0..300 {
        let (status, job) = replay_status(hub, &subscriber.token, location).await;
        assert_eq!(status, 200, "{job}");
        if job["status"] != "running" {
            return job;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the replay did not finish within 30 s");
}

async fn subscribe(hub: &Hub, subscriber: &Subscriber, event_type: &str) -> String {
    let (status, body) = hub
        .subscribe(subscriber, "A83627", &explicit(event_type))
        .await;
    assert_eq!(status, 201, "{body}");
    body["id"].as_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_subscriber_replays_the_week_it_missed() {
    let hub = Hub::start().await;
    // Before the subscriber exists: one event eight days ago, one three
    // days ago, and two published now (a vaccination and a contact).
    let too_old = accepted_days_ago(&hub, "nems/vaccinations-1-update.xml", 1, 8).await;
    let recent = accepted_days_ago(&hub, "nems/vaccinations-1-delete.xml", 2, 3).await;
    let (status, _) = hub
        .publish(
            "vaccinations-1",
            Some(XML),
            &fixture("nems/vaccinations-1-new.xml"),
        )
        .await;
    assert_eq!(status, 202);
    let (status, _) = hub
        .publish(
            "professional-contacts-1",
            Some(XML),
            &fixture("nems/Professional-Contacts-1-new.xml"),
        )
        .await;
    assert_eq!(status, 202);

    let late = hub
        .onboard("A83627", &["vaccinations-1", "professional-contacts-1"])
        .await;
    // Its subscription dates from ten days ago, but it holds none of the
    // week's messages (as when a subscriber's own store was lost).
    let vaccinations = subscribed_days_ago(&hub, &late, "vaccinations-1", 10).await;
    assert!(
        hub.drain(&late.queue_url, Duration::from_secs(2))
            .await
            .is_empty()
    );

    let since = (OffsetDateTime::now_utc() - time::Duration::days(7))
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap()
        .replace('+', "%2B");
    let (status, job, location) =
        start_replay(&hub, &late, &vaccinations, &format!("?since={since}")).await;
    assert_eq!(status, 202, "{job}");
    let location = location.expect("Content-Location names the replay");
    assert_eq!(
        location,
        format!("/replays/{}", job["id"].as_str().unwrap())
    );
    let done = finished(&hub, &late, &location).await;
    assert_eq!(done["status"], "completed", "{done}");
    assert_eq!(
        (done["scanned"].as_u64(), done["delivered"].as_u64()),
        (Some(2), Some(2))
    );

    // The vaccinations of the week, oldest first, marked as the replay's;
    // not the one eight days old, not the contact (another subscription).
    let messages = hub.drain(&late.queue_url, Duration::from_secs(3)).await;
    let ids: Vec<&str> = messages
        .iter()
        .map(|m| attribute(m, "eventId").unwrap())
        .collect();
    assert_eq!(ids.len(), 2);
    assert!(ids.contains(&recent.as_str()));
    assert!(ids.contains(&"85c8a1c5-a8a1-41c9-bb99-20956fa66218"));
    assert!(!ids.contains(&too_old.as_str()));
    for message in &messages {
        assert_eq!(attribute(message, "replay"), job["id"].as_str());
        assert_eq!(
            message.body(),
            Some(fixture("nems/vaccinations-1-new.xml").as_str())
                .filter(|_| attribute(message, "eventId") != Some(recent.as_str()))
                .or(message.body())
        );
    }

    // Replayed is delivered: the subscriber may now read the event back.
    let response = hub
        .request(Method::GET, &format!("/events/{recent}"), &late.token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);

    // The replay is the subscriber's (and operators') business only.
    let other = hub.onboard("B85612", &["vaccinations-1"]).await;
    assert_eq!(replay_status(&hub, &other.token, &location).await.0, 404);
    let operator = hub.token("demo-operator").await;
    assert_eq!(replay_status(&hub, &operator, &location).await.0, 200);
    let (status, _, _) =
        start_replay(&hub, &other, &vaccinations, &format!("?since={since}")).await;
    assert_eq!(status, 404, "another's subscription");
    for (query, parameter) in [
        ("", "since"),
        ("?since=last-week", "since"),
        ("?since=2026-01-02&until=2026-01-01", "since"),
    ] {
        let (status, outcome, _) = start_replay(&hub, &late, &vaccinations, query).await;
        assert_eq!(status, 400, "{query}: {outcome}");
        assert_eq!(outcome["issue"][0]["expression"][0], parameter);
    }

    // A subscription made today rests on declared direct care: its replay
    // starts at its creation, and sends nothing of the week before it.
    let today = hub.onboard("B86016", &["vaccinations-1"]).await;
    let (status, made_now) = hub
        .subscribe(&today, "B86016", &explicit("vaccinations-1"))
        .await;
    assert_eq!(status, 201, "{made_now}");
    let made_now = made_now["id"].as_str().unwrap();
    let (status, job, location) =
        start_replay(&hub, &today, made_now, &format!("?since={since}")).await;
    assert_eq!(status, 202, "{job}");
    assert!(
        job["detail"]
            .as_str()
            .is_some_and(|detail| detail.contains("before the subscription's creation")),
        "{job}"
    );
    let done = finished(&hub, &today, &location.unwrap()).await;
    assert_eq!(done["delivered"].as_u64(), Some(0), "{done}");
    assert!(
        hub.drain(&today.queue_url, Duration::from_secs(2))
            .await
            .is_empty()
    );
    let response = hub
        .request(Method::GET, &format!("/events/{recent}"), &today.token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 404, "delivered only to another");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_replay_whose_worker_crashes_resumes_without_resending() {
    const EVENTS: usize = 150;
    let hub = Hub::start().await;
    let mut published = Vec::new();
    for n in 0..EVENTS {
        let (id, body) = renamed("nems/vaccinations-1-new.xml", n);
        let (status, outcome) = hub.publish("vaccinations-1", Some(XML), &body).await;
        assert_eq!(status, 202, "{outcome}");
        published.push(id);
    }
    let late = hub.onboard("A83627", &["vaccinations-1"]).await;
    let subscription = subscribed_days_ago(&hub, &late, "vaccinations-1", 1).await;
    let (status, job, location) =
        start_replay(&hub, &late, &subscription, "?since=2026-01-01").await;
    assert_eq!(status, 202, "{job}");
    let location = location.unwrap();

    // Kill the worker as soon as it has sent something, mid-replay.
    let mut killed_at = None;
    for _ in 0..600 {
        let (_, progress) = replay_status(&hub, &late.token, &location).await;
        let delivered = progress["delivered"].as_u64().unwrap_or(0);
        if delivered > 0 {
            assert_eq!(progress["status"], "running", "killed part-way: {progress}");
            assert!(
                hub.kill_function("replay-worker") > 0,
                "the worker is running"
            );
            killed_at = Some(delivered);
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let killed_at = killed_at.expect("the replay started sending");
    assert!(killed_at < EVENTS as u64);

    let done = finished(&hub, &late, &location).await;
    assert_eq!(done["status"], "completed", "{done}");
    let messages = hub
        .drain_at_least(
            &late.queue_url,
            EVENTS,
            Duration::from_secs(60),
            Duration::from_secs(3),
        )
        .await;
    let mut copies: BTreeMap<String, usize> = BTreeMap::new();
    for message in &messages {
        assert_eq!(attribute(message, "replay"), job["id"].as_str());
        *copies
            .entry(attribute(message, "eventId").unwrap().to_owned())
            .or_default() += 1;
    }
    // Every event at least once; at most the one in flight at the crash
    // twice (sent, then killed before its progress was saved).
    let expected: std::collections::BTreeSet<&String> = published.iter().collect();
    let got: std::collections::BTreeSet<&String> = copies.keys().collect();
    assert_eq!(got, expected);
    let repeated = copies.values().filter(|&&count| count > 1).count();
    assert!(repeated <= 1, "{repeated} events sent twice");
    assert_eq!(messages.len(), EVENTS + repeated);
}

/// Issue 18, item 7: twenty concurrent `$replay` calls on one subscription
/// were all accepted, each re-sending its whole window. One runs, the
/// others are refused with 409; and a subscriber starts a bounded number
/// of replays a day (429, with Retry-After, beyond it).
#[tokio::test(flavor = "multi_thread")]
async fn concurrent_replays_of_a_subscription_start_one_and_a_subscriber_has_a_daily_quota() {
    const EVENTS: usize = 120;
    let hub = Hub::start().await;
    // Enough events that the first replay is still running while the
    // others arrive.
    for n in 0..EVENTS {
        accepted_days_ago(&hub, "nems/vaccinations-1-new.xml", 1000 + n, 1).await;
    }
    let late = hub.onboard("A83627", &["vaccinations-1"]).await;
    let subscription = subscribed_days_ago(&hub, &late, "vaccinations-1", 2).await;
    let attempts: Vec<_> = (0..20)
        .map(|_| {
            let request = hub.request(
                Method::POST,
                &format!("/Subscription/{subscription}/$replay?since=2026-01-01"),
                &late.token,
            );
            tokio::spawn(async move {
                let response = request.send().await.expect("POST $replay");
                let status = response.status().as_u16();
                let location = response
                    .headers()
                    .get("content-location")
                    .and_then(|value| value.to_str().ok())
                    .map(str::to_owned);
                let body: serde_json::Value = response.json().await.unwrap_or_default();
                (status, body, location)
            })
        })
        .collect();
    let mut answers = Vec::new();
    for attempt in attempts {
        answers.push(attempt.await.expect("the request's task"));
    }
    let started: Vec<&(u16, serde_json::Value, Option<String>)> = answers
        .iter()
        .filter(|(status, _, _)| *status == 202)
        .collect();
    assert_eq!(started.len(), 1, "one replay runs: {answers:?}");
    for (status, outcome, _) in answers.iter().filter(|(status, _, _)| *status != 202) {
        assert_eq!(*status, 409, "{outcome}");
        assert_eq!(outcome["issue"][0]["code"], "conflict", "{outcome}");
    }
    let location = started[0].2.clone().expect("Content-Location");
    let done = finished(&hub, &late, &location).await;
    assert_eq!(done["status"], "completed", "{done}");
    // Each event once, by the one replay: the refused attempts sent nothing.
    assert_eq!(done["delivered"].as_u64(), Some(EVENTS as u64), "{done}");
    let messages = hub.drain(&late.queue_url, Duration::from_secs(2)).await;
    assert!(!messages.is_empty());
    assert!(
        messages
            .iter()
            .filter_map(|message| attribute(message, "replay"))
            .all(|id| Some(id) == started[0].1["id"].as_str()),
        "only the one replay's copies"
    );

    // Once it has completed, the subscription may replay again (its hold
    // is released just after the job is saved as completed).
    let empty_window = "?since=2026-01-01&until=2026-01-02";
    let mut again = 0;
    for _ in 0..20 {
        again = start_replay(&hub, &late, &subscription, empty_window)
            .await
            .0;
        if again != 409 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(again, 202);

    // Two started today; its other subscriptions start the rest of the
    // day's quota, then no more.
    for n in 2..hub::replay::REPLAYS_PER_SUBSCRIBER_PER_DAY {
        let other = subscribe(&hub, &late, "vaccinations-1").await;
        let (status, body, _) = start_replay(&hub, &late, &other, empty_window).await;
        assert_eq!(status, 202, "replay {n}: {body}");
    }
    let one_more = subscribe(&hub, &late, "vaccinations-1").await;
    let response = hub
        .request(
            Method::POST,
            &format!("/Subscription/{one_more}/$replay{empty_window}"),
            &late.token,
        )
        .send()
        .await
        .expect("POST $replay");
    assert_eq!(response.status().as_u16(), 429);
    let retry_after: u64 = response
        .headers()
        .get("retry-after")
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse().ok())
        .expect("Retry-After in seconds");
    assert!((1..=86_400).contains(&retry_after), "{retry_after}");
    let outcome: serde_json::Value = response.json().await.unwrap();
    assert_eq!(outcome["issue"][0]["code"], "throttled", "{outcome}");
}
