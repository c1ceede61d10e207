//! Release embargoes with the in-memory adapters: a blood spot outcome
//! reaches a GP at once and a parent's record (EPCHR) only after the delay;
//! until released it is absent from that subscriber's history, event reads
//! and replays; the release survives a failed publish and cancels what the
//! subscriber may no longer have.

mod batch;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicUsize, Ordering};

use e2e_tests::{api_answer, api_request, first_issue_expression};
use hub::app::dispatch::Dispatcher;
use hub::app::embargo::release_due;
use hub::app::replay::Replayer;
use hub::audit::Action;
use hub::auth::{Caller, Role};
use hub::catalogue::EventType;
use hub::criteria::{Criteria, ServiceType};
use hub::dispatch::Delivery;
use hub::embargo::{EmbargoSetting, HoldStatus};
use hub::events::{Retention, StoredEvent};
use hub::lambda;
use hub::memory::{MemoryPorts, MemoryPublisher};
use hub::ports::{
    Adapters, DeliveryPublisher, EmbargoStore, EventStore, ReplayStore, StoreError,
    SubscriberStore, SubscriptionStore,
};
use hub::replay::{Admission, ReplayRequest};
use hub::subscriber::{OdsCode, Queues, Subscriber};
use hub::subscription::Subscription;
use hub::{Encoding, EventMessage};
use serde_json::Value;
use time::macros::datetime;
use time::{Duration, OffsetDateTime};

const CHILD: &str = "9912003888";
const GP: &str = "gp-subscriber";
const PCHR: &str = "pchr-subscriber";
const FIXED: OffsetDateTime = datetime!(2026-03-02 09:00 UTC);

fn fixture(name: &str) -> String {
    std::fs::read_to_string(format!("{}/../events/{name}", env!("CARGO_MANIFEST_DIR")))
        .expect("a fixture")
}

/// The blood spot outcome, under id `n`, accepted at `at`.
fn blood_spot(n: usize, at: OffsetDateTime) -> StoredEvent {
    let original = fixture("nems/blood-spot-test-outcome-1-new.xml");
    let message = EventMessage::read(&original, Encoding::Xml).unwrap();
    let id = format!("00000000-0000-4000-8000-{n:012}");
    let body = original.replace(&message.message_id, &id);
    let message = EventMessage::read(&body, Encoding::Xml).unwrap();
    StoredEvent::new(&message, Encoding::Xml, &body, at, Retention::DEFAULT)
}

fn subscriber(id: &str, service_type: ServiceType) -> Subscriber {
    Subscriber {
        id: id.into(),
        ods_code: OdsCode::parse("A83627").unwrap(),
        name: id.into(),
        event_types: BTreeSet::from([EventType::BloodSpotTestOutcome]),
        queues: Queues {
            queue_url: format!("memory://{id}"),
            queue_arn: format!("arn:{id}"),
            dead_letter_queue_url: format!("memory://{id}-dlq"),
            dead_letter_queue_arn: format!("arn:{id}-dlq"),
            topic_subscriptions: Vec::new(),
            key_grants: Vec::new(),
        },
        created_at: "2025-01-01T00:00:00Z".into(),
        client_id: Some(id.into()),
        offboarded_at: None,
        access: Default::default(),
        service_type: Some(service_type),
    }
}

fn subscription(subscriber_id: &str, created: OffsetDateTime) -> Subscription {
    Subscription {
        id: format!("{subscriber_id}-subscription"),
        subscriber_id: subscriber_id.into(),
        contact_ods: OdsCode::parse("A83627").unwrap(),
        reason: "embargo test".into(),
        end: None,
        criteria: Criteria::parse(&format!(
            "/Bundle?type=message&Patient.identifier=http://fhir.nhs.net/Id/nhs-number|{CHILD}&MessageHeader.event=blood-spot-test-outcome-1"
        ))
        .unwrap(),
        version_id: 1,
        last_updated: hub::fhir_time::format_instant(created),
        basis: None,
        ended: None,
        backfills: Vec::new(),
    }
}

fn caller(subscriber_id: &str) -> Caller {
    Caller {
        client_id: subscriber_id.into(),
        ods_code: OdsCode::parse("A83627").unwrap(),
        roles: BTreeSet::from([Role::Subscriber]),
        subscriber_id: Some(subscriber_id.into()),
        publish_event_types: BTreeSet::new(),
        publish_for_ods: BTreeSet::new(),
        subscribe_explicit: true,
        subscribe_generic: BTreeMap::new(),
        sensitivity_authority: false,
        relationship_sources: Default::default(),
        pchr: None,
    }
}

fn setting(delay: &str) -> EmbargoSetting {
    EmbargoSetting {
        event_type: EventType::BloodSpotTestOutcome,
        service_type: ServiceType::Epchr,
        delay: delay.into(),
        reason: "the 42-day rule".into(),
        set_by: "operator".into(),
        set_at: "2026-01-01T00:00:00.000Z".into(),
    }
}

/// A hub with a GP and a parent's record (EPCHR) subscribed to the child's
/// blood spot outcomes since `created`, and the EPCHR embargo set.
async fn hub(created: OffsetDateTime, delay: &str) -> MemoryPorts {
    let ports = MemoryPorts::default();
    for (id, service_type) in [(GP, ServiceType::Gp), (PCHR, ServiceType::Epchr)] {
        ports
            .subscribers
            .create(&subscriber(id, service_type))
            .await
            .unwrap();
        ports
            .subscriptions
            .create(&subscription(id, created))
            .await
            .unwrap();
    }
    ports.embargoes.put_setting(&setting(delay)).await.unwrap();
    ports
}

async fn accept_and_dispatch(ports: &MemoryPorts, event: &StoredEvent, now: OffsetDateTime) {
    ports.events.insert(event).await.unwrap();
    Dispatcher { ports }.dispatch(event, now).await.unwrap();
}

fn recipients(publisher: &MemoryPublisher) -> Vec<String> {
    publisher
        .sent()
        .iter()
        .filter_map(|message| message.attribute("subscriber").map(str::to_owned))
        .collect()
}

fn delivered_to(ports: &MemoryPorts, subscriber_id: &str) -> bool {
    ports.audit.records().iter().any(|record| {
        record.action == Action::Deliver
            && record.status == 200
            && record.subscriber_id.as_deref() == Some(subscriber_id)
    })
}

async fn read_event(ports: &MemoryPorts, subscriber_id: &str, event: &StoredEvent) -> u16 {
    let request = api_request(
        Some(&caller(subscriber_id)),
        "application/fhir+json",
        None,
        &[("id", &event.event_id)],
    );
    api_answer(lambda::read_event(ports, &request).await).0
}

/// The event ids in the subscriber's history of the child.
async fn history(ports: &MemoryPorts, subscriber_id: &str) -> Vec<String> {
    let request = api_request(
        Some(&caller(subscriber_id)),
        "application/fhir+json",
        None,
        &[("nhsNumber", CHILD)],
    );
    let (status, body) =
        api_answer(lambda::read_child_events(ports, &request, Retention::DEFAULT).await);
    assert_eq!(status, 200, "{body}");
    body["entry"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .filter_map(|entry| {
            entry
                .to_string()
                .find("00000000-0000-4000-8000-")
                .map(|at| {
                    let text = entry.to_string();
                    text[at..at + 36].to_owned()
                })
        })
        .collect()
}

/// How many messages a replay of the subscriber's subscription sends.
async fn replayed(ports: &MemoryPorts, subscriber_id: &str, since: OffsetDateTime) -> usize {
    let now = OffsetDateTime::now_utc();
    let since = hub::fhir_time::format_instant(since);
    let request = ReplayRequest::parse(Some(&since), None, Retention::DEFAULT, now).unwrap();
    let subscription = ports
        .subscriptions
        .get(&format!("{subscriber_id}-subscription"))
        .await
        .unwrap()
        .unwrap();
    let job = request.job(&subscription, now);
    ports
        .replays
        .start(&job, &Admission::of(&job, now))
        .await
        .unwrap()
        .unwrap();
    let before = ports.publisher.sent().len();
    let mut done = Replayer { ports }.step(&job.replay_id, now).await.unwrap();
    while done
        .as_ref()
        .is_some_and(|job| job.status == hub::replay::ReplayStatus::Running)
    {
        done = Replayer { ports }.step(&job.replay_id, now).await.unwrap();
    }
    ports.publisher.sent().len() - before
}

#[tokio::test]
async fn a_blood_spot_outcome_reaches_a_gp_at_once_and_a_parents_record_after_the_delay() {
    // Accepted 43 days ago (the read handlers use the real clock), so the
    // 42 days have passed but the release has not run yet.
    let now = OffsetDateTime::now_utc();
    let accepted = now - Duration::days(43);
    let ports = hub(accepted - Duration::days(10), "P42D").await;
    let event = blood_spot(1, accepted);
    accept_and_dispatch(&ports, &event, accepted + Duration::minutes(1)).await;

    assert_eq!(recipients(&ports.publisher), vec![GP.to_owned()]);
    assert!(delivered_to(&ports, GP));
    assert!(
        !delivered_to(&ports, PCHR),
        "a held delivery has no Deliver record"
    );
    let holds = ports.embargoes.holds();
    assert_eq!(holds.len(), 1);
    assert_eq!(holds[0].subscriber_id, PCHR);
    assert_eq!(
        holds[0].release_at,
        hub::audit::timestamp(accepted + Duration::days(42))
    );
    assert!(
        ports
            .audit
            .records()
            .iter()
            .any(|record| record.action == Action::EmbargoHold)
    );

    // Held: absent from the parent's record's reads, present in the GP's.
    assert_eq!(read_event(&ports, GP, &event).await, 200);
    assert_eq!(read_event(&ports, PCHR, &event).await, 404);
    assert_eq!(history(&ports, GP).await, vec![event.event_id.clone()]);
    assert!(history(&ports, PCHR).await.is_empty());
    assert_eq!(
        replayed(&ports, PCHR, accepted - Duration::days(1)).await,
        0
    );
    assert_eq!(replayed(&ports, GP, accepted - Duration::days(1)).await, 1);

    // A run before the release time releases nothing.
    let early = release_due(&ports, accepted + Duration::days(41))
        .await
        .unwrap();
    assert_eq!(early.released, 0);
    assert_eq!(recipients(&ports.publisher), vec![GP.to_owned(); 2]);

    let run = release_due(&ports, now).await.unwrap();
    assert_eq!(run.released, 1, "{run:?}");
    assert_eq!(
        recipients(&ports.publisher).last().map(String::as_str),
        Some(PCHR)
    );
    assert!(delivered_to(&ports, PCHR));
    assert_eq!(ports.embargoes.holds()[0].status, HoldStatus::Released);
    assert_eq!(read_event(&ports, PCHR, &event).await, 200);
    assert_eq!(history(&ports, PCHR).await, vec![event.event_id.clone()]);

    // Released once: a second run sends nothing more.
    let again = release_due(&ports, now).await.unwrap();
    assert_eq!(again.released, 0);
}

#[tokio::test]
async fn an_event_still_within_its_delay_is_hidden_though_never_held_for_the_subscriber() {
    // Accepted an hour ago, before the parent's record subscribed: never
    // held for it, yet its history and event reads wait for the delay.
    let now = OffsetDateTime::now_utc();
    let ports = hub(now - Duration::days(1), "P42D").await;
    let event = blood_spot(2, now - Duration::hours(1));
    ports.events.insert(&event).await.unwrap();
    assert!(history(&ports, PCHR).await.is_empty());
    assert_eq!(read_event(&ports, PCHR, &event).await, 404);
    assert_eq!(history(&ports, GP).await, vec![event.event_id.clone()]);
}

/// A publisher that fails its `fail_at`-th call (1-based), once.
struct FailingOnce {
    inner: MemoryPublisher,
    calls: AtomicUsize,
    fail_at: usize,
}

impl DeliveryPublisher for FailingOnce {
    async fn publish(
        &self,
        event: &StoredEvent,
        deliveries: &[Delivery],
    ) -> Result<(), StoreError> {
        if self.calls.fetch_add(1, Ordering::SeqCst) + 1 == self.fail_at {
            return Err(StoreError::Unavailable("SNS is down".into()));
        }
        self.inner.publish(event, deliveries).await
    }
}

#[tokio::test]
async fn a_release_whose_publish_fails_stays_held_and_is_released_by_the_next_run() {
    let ports = hub(FIXED - Duration::days(1), "PT5S").await;
    let event = blood_spot(3, FIXED);
    accept_and_dispatch(&ports, &event, FIXED).await;
    assert_eq!(ports.embargoes.holds().len(), 1);
    let publisher = FailingOnce {
        inner: MemoryPublisher::default(),
        calls: AtomicUsize::new(0),
        fail_at: 1,
    };
    let run = |now| {
        let with_failing = Adapters::new()
            .events(&ports.events)
            .subscriptions(&ports.subscriptions)
            .subscribers(&ports.subscribers)
            .publisher(&publisher)
            .audit(&ports.audit)
            .register(&ports.register)
            .stats(&ports.stats)
            .embargoes(&ports.embargoes);
        async move { release_due(&with_failing, now).await.unwrap() }
    };
    let first = run(FIXED + Duration::seconds(10)).await;
    assert_eq!(first.failed, 1);
    // Due at FIXED + 5 s and left held: five seconds overdue.
    assert_eq!(first.overdue_seconds, 5, "{first:?}");
    let hold = &ports.embargoes.holds()[0];
    assert_eq!(hold.status, HoldStatus::Held, "nothing is lost");
    assert_eq!(hold.attempts, 1);
    assert!(hold.last_error.as_deref().unwrap().contains("SNS is down"));
    assert!(publisher.inner.sent().is_empty());
    // The attempt is in the trail, under the release's own record...
    assert!(ports.audit.records().iter().any(|record| {
        record.action == Action::Deliver
            && record.audit_id.starts_with("embargo-release/")
            && record.subscriber_id.as_deref() == Some(PCHR)
    }));
    // ...but not received, so not readable: no event read, no history.
    assert_eq!(read_event(&ports, PCHR, &event).await, 404);
    assert!(history(&ports, PCHR).await.is_empty());

    // The next run, a day later: the watermark stayed at the failed day.
    let second = run(FIXED + Duration::days(1)).await;
    assert_eq!(second.released, 1, "{second:?}");
    assert_eq!(second.overdue_seconds, 0, "nothing left held");
    assert_eq!(recipients(&publisher.inner), vec![PCHR.to_owned()]);
    let hold = &ports.embargoes.holds()[0];
    assert_eq!(hold.status, HoldStatus::Released);
    assert_eq!(hold.attempts, 2);
    assert_eq!(read_event(&ports, PCHR, &event).await, 200);
    assert_eq!(history(&ports, PCHR).await, vec![event.event_id.clone()]);
}

/// A publisher whose every call fails.
struct Down;

impl DeliveryPublisher for Down {
    async fn publish(&self, _: &StoredEvent, _: &[Delivery]) -> Result<(), StoreError> {
        Err(StoreError::Unavailable("SNS is down".into()))
    }
}

#[tokio::test]
async fn each_release_run_reports_how_overdue_the_oldest_hold_it_left_is() {
    let ports = hub(FIXED - Duration::days(1), "PT5S").await;
    let older = blood_spot(8, FIXED);
    let newer = blood_spot(9, FIXED + Duration::minutes(1));
    accept_and_dispatch(&ports, &older, FIXED).await;
    accept_and_dispatch(&ports, &newer, FIXED + Duration::minutes(1)).await;
    let with_sns_down = Adapters::new()
        .events(&ports.events)
        .subscriptions(&ports.subscriptions)
        .subscribers(&ports.subscribers)
        .publisher(&Down)
        .audit(&ports.audit)
        .register(&ports.register)
        .stats(&ports.stats)
        .embargoes(&ports.embargoes);
    let run = release_due(&with_sns_down, FIXED + Duration::hours(1))
        .await
        .unwrap();
    assert_eq!(run.failed, 2, "{run:?}");
    // The older hold was due at FIXED + 5 s: an hour less five seconds.
    assert_eq!(run.overdue_seconds, 3_595, "{run:?}");
    // SNS back: the next run leaves nothing overdue.
    let run = release_due(&ports, FIXED + Duration::hours(2))
        .await
        .unwrap();
    assert_eq!((run.released, run.overdue_seconds), (2, 0), "{run:?}");
}

#[tokio::test]
async fn a_hold_is_cancelled_when_the_subscription_ended_before_its_release() {
    let ports = hub(FIXED - Duration::days(1), "PT5S").await;
    let event = blood_spot(4, FIXED);
    accept_and_dispatch(&ports, &event, FIXED).await;
    let subscription = ports
        .subscriptions
        .get(&format!("{PCHR}-subscription"))
        .await
        .unwrap()
        .unwrap();
    ports.subscriptions.delete(&subscription).await.unwrap();
    let run = release_due(&ports, FIXED + Duration::minutes(5))
        .await
        .unwrap();
    assert_eq!(run.cancelled, 1, "{run:?}");
    assert_eq!(run.released, 0);
    assert_eq!(recipients(&ports.publisher), vec![GP.to_owned()]);
    assert_eq!(ports.embargoes.holds()[0].status, HoldStatus::Cancelled);
    assert!(!delivered_to(&ports, PCHR));
    assert!(ports.audit.records().iter().any(|record| {
        record.action == Action::EmbargoCancel && record.subscriber_id.as_deref() == Some(PCHR)
    }));
}

#[tokio::test]
async fn a_change_of_setting_applies_to_later_events_and_leaves_existing_holds() {
    let ports = hub(FIXED - Duration::days(1), "P42D").await;
    let first = blood_spot(5, FIXED);
    accept_and_dispatch(&ports, &first, FIXED).await;
    // Shortened to five seconds, then removed.
    ports.embargoes.put_setting(&setting("PT5S")).await.unwrap();
    let second = blood_spot(6, FIXED + Duration::minutes(1));
    accept_and_dispatch(&ports, &second, FIXED + Duration::minutes(1)).await;
    let holds = ports.embargoes.holds();
    assert_eq!(holds.len(), 2);
    let run = release_due(&ports, FIXED + Duration::days(1))
        .await
        .unwrap();
    assert_eq!(run.released, 1, "only the later event's hold is due");
    let held: Vec<_> = ports
        .embargoes
        .holds()
        .into_iter()
        .filter(|hold| hold.status == HoldStatus::Held)
        .collect();
    assert_eq!(held.len(), 1);
    assert_eq!(held[0].event_key, first.event_key);
    ports
        .embargoes
        .remove_setting(EventType::BloodSpotTestOutcome, ServiceType::Epchr, "now")
        .await
        .unwrap();
    let third = blood_spot(7, FIXED + Duration::days(2));
    accept_and_dispatch(&ports, &third, FIXED + Duration::days(2)).await;
    assert_eq!(ports.embargoes.holds().len(), 2, "no setting: not held");
    let run = release_due(&ports, FIXED + Duration::days(43))
        .await
        .unwrap();
    assert_eq!(run.released, 1, "the existing hold kept its time");
}

fn operator() -> Caller {
    let mut operator = caller("operator");
    operator.subscriber_id = None;
    operator.roles = BTreeSet::from([Role::Operator]);
    operator
}

async fn put(ports: &MemoryPorts, who: &Caller, service_type: &str, body: &str) -> (u16, Value) {
    let request = api_request(
        Some(who),
        "application/json",
        Some(body),
        &[
            ("eventType", "blood-spot-test-outcome-1"),
            ("serviceType", service_type),
        ],
    );
    api_answer(lambda::put_embargo(ports, &request).await)
}

#[tokio::test]
async fn operators_set_list_and_end_embargoes_and_each_change_is_audited() {
    let ports = MemoryPorts::default();
    let body = r#"{"delay": "P42D", "reason": "the 42-day rule"}"#;
    let (status, _) = put(&ports, &caller(PCHR), "EPCHR", body).await;
    assert_eq!(status, 403, "operators only");
    let (status, outcome) = put(&ports, &operator(), "PARENT", body).await;
    assert_eq!(
        (status, first_issue_expression(&outcome).as_str()),
        (422, "serviceType")
    );
    for bad in [
        r#"{"delay": "42 days", "reason": "r"}"#,
        r#"{"delay": "P0D", "reason": "r"}"#,
    ] {
        let (status, outcome) = put(&ports, &operator(), "EPCHR", bad).await;
        assert_eq!(
            (status, first_issue_expression(&outcome).as_str()),
            (422, "delay")
        );
    }
    let (status, outcome) = put(
        &ports,
        &operator(),
        "EPCHR",
        r#"{"delay": "P42D", "reason": " "}"#,
    )
    .await;
    assert_eq!(
        (status, first_issue_expression(&outcome).as_str()),
        (422, "reason")
    );
    assert!(ports.embargoes.settings().await.unwrap().is_empty());

    let (status, setting) = put(&ports, &operator(), "EPCHR", body).await;
    assert_eq!(status, 200, "{setting}");
    assert_eq!(setting["delay"], "P42D");
    assert_eq!(setting["setBy"], "operator");
    let request = api_request(Some(&operator()), "application/json", None, &[]);
    let (status, listed) = api_answer(lambda::list_embargoes(&ports, &request).await);
    assert_eq!(status, 200);
    assert_eq!(listed["embargoes"][0]["serviceType"], "EPCHR");

    let delete = || {
        api_request(
            Some(&operator()),
            "application/json",
            None,
            &[
                ("eventType", "blood-spot-test-outcome-1"),
                ("serviceType", "EPCHR"),
            ],
        )
    };
    assert_eq!(
        api_answer(lambda::delete_embargo(&ports, &delete()).await).0,
        204
    );
    assert_eq!(
        api_answer(lambda::delete_embargo(&ports, &delete()).await).0,
        404
    );
    assert!(ports.embargoes.settings().await.unwrap().is_empty());
    let actions: Vec<Action> = ports
        .audit
        .records()
        .iter()
        .filter(|record| record.status < 300)
        .map(|record| record.action)
        .collect();
    assert_eq!(
        actions,
        [
            Action::EmbargoSet,
            Action::EmbargoRead,
            Action::EmbargoRemove
        ]
    );
}

#[tokio::test]
async fn an_operator_changes_a_subscribers_service_type_and_later_events_follow_it() {
    // A second GP, under a subscriber id as onboarding makes them.
    const OTHER_GP: &str = "2b8f3a52-4c1e-4d1a-9f4e-0c6a1d2e3f40";
    let ports = hub(FIXED - Duration::days(1), "PT5S").await;
    ports
        .subscribers
        .create(&subscriber(OTHER_GP, ServiceType::Gp))
        .await
        .unwrap();
    ports
        .subscriptions
        .create(&subscription(OTHER_GP, FIXED - Duration::days(1)))
        .await
        .unwrap();
    let change = |who: &Caller, body: &str| {
        let request = api_request(
            Some(who),
            "application/json",
            Some(body),
            &[("id", OTHER_GP)],
        );
        let ports = &ports;
        async move { api_answer(lambda::change_subscriber(ports, &request).await) }
    };
    let (status, _) = change(&caller(OTHER_GP), r#"{"serviceType": "EPCHR"}"#).await;
    assert_eq!(status, 403, "operators only");
    let (status, outcome) = change(&operator(), r#"{"serviceType": "PARENT"}"#).await;
    assert_eq!(
        (status, first_issue_expression(&outcome).as_str()),
        (422, "serviceType")
    );
    let (status, outcome) = change(&operator(), r#"{"serviceType": null}"#).await;
    assert_eq!(
        (status, first_issue_expression(&outcome).as_str()),
        (400, "serviceType"),
        "a service type is changed, never removed"
    );

    let (status, changed) = change(&operator(), r#"{"serviceType": "EPCHR"}"#).await;
    assert_eq!(status, 200, "{changed}");
    assert_eq!(changed["serviceType"], "EPCHR");
    assert!(ports.audit.records().iter().any(|record| {
        record.action == Action::SubscriberChange
            && record.status == 200
            && record
                .detail
                .as_deref()
                .is_some_and(|detail| detail.contains("serviceType EPCHR"))
    }));
    // Its copy is now held as the parent's record's is; the other GP's not.
    accept_and_dispatch(&ports, &blood_spot(14, FIXED), FIXED).await;
    assert_eq!(recipients(&ports.publisher), [GP]);
    let mut held: Vec<String> = ports
        .embargoes
        .holds()
        .into_iter()
        .map(|hold| hold.subscriber_id)
        .collect();
    held.sort();
    assert_eq!(held, [OTHER_GP, PCHR]);
}
