//! Replays with the in-memory adapters: the window, the subscription's
//! matching now, bounded steps, and resuming after a failure without
//! re-sending what was sent.

use hub::ports::Adapters;
use std::sync::atomic::{AtomicUsize, Ordering};

use hub::app::replay::Replayer;
use hub::criteria::Criteria;
use hub::dispatch::Delivery;
use hub::events::{Retention, StoredEvent};
use hub::memory::MemoryReferenceData;
use hub::memory::{
    MemoryAuditLog, MemoryDeliveryStats, MemoryEventStore, MemoryPublisher, MemoryRegisterStore,
    MemoryReplayStore, MemorySubscriptionStore,
};
use hub::ports::{DeliveryPublisher, EventStore, ReplayStore, StoreError, SubscriptionStore};
use hub::replay::{
    Admission, NotStarted, REPLAYS_PER_SUBSCRIBER_PER_DAY, RUNNING_HOLD_SECONDS, ReplayJob,
    ReplayRequest, ReplayStatus, quota_renews_in,
};
use hub::subscriber::OdsCode;
use hub::subscription::Subscription;
use hub::{Encoding, EventMessage};
use time::macros::datetime;
use time::{Duration, OffsetDateTime};

const NOW: OffsetDateTime = datetime!(2026-11-24 12:00 UTC);
const PATIENT: &str = "9912003888";

fn fixture(name: &str) -> String {
    std::fs::read_to_string(format!("{}/../events/{name}", env!("CARGO_MANIFEST_DIR")))
        .expect("a fixture")
}

/// The example message, under a fresh MessageHeader.id, accepted `ago`.
fn accepted(file: &str, ago: Duration, n: usize) -> StoredEvent {
    let original = fixture(file);
    let message = EventMessage::read(&original, Encoding::Xml).unwrap();
    let id = format!("00000000-0000-4000-8000-{n:012}");
    let body = original.replace(&message.message_id, &id);
    let message = EventMessage::read(&body, Encoding::Xml).unwrap();
    StoredEvent::new(
        &message,
        Encoding::Xml,
        &body,
        NOW - ago,
        Retention::DEFAULT,
    )
}

fn subscription(id: &str, criteria: &str) -> Subscription {
    Subscription {
        id: id.into(),
        subscriber_id: "late-joiner".into(),
        contact_ods: OdsCode::parse("A83627").unwrap(),
        reason: "replay test".into(),
        end: None,
        criteria: Criteria::parse(criteria).unwrap(),
        version_id: 1,
        // Created a month before NOW: an explicit subscription replays
        // nothing from before its creation (the last test here).
        last_updated: "2026-10-25T12:00:00Z".into(),
        basis: None,
        ended: None,
        backfills: Vec::new(),
    }
}

fn explicit_vaccinations() -> Subscription {
    subscription(
        "explicit",
        &format!(
            "/Bundle?type=message&Patient.identifier=http://fhir.nhs.net/Id/nhs-number|{PATIENT}&MessageHeader.event=vaccinations-1"
        ),
    )
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

struct World {
    events: MemoryEventStore,
    subscriptions: MemorySubscriptionStore,
    audit: MemoryAuditLog,
    register: MemoryRegisterStore,
    reference: MemoryReferenceData,
    jobs: MemoryReplayStore,
    stats: MemoryDeliveryStats,
}

impl World {
    async fn new(stored: &[StoredEvent], subscription: &Subscription) -> Self {
        let world = World {
            events: MemoryEventStore::default(),
            subscriptions: MemorySubscriptionStore::default(),
            audit: MemoryAuditLog::default(),
            register: MemoryRegisterStore::default(),
            reference: MemoryReferenceData::default(),
            jobs: MemoryReplayStore::default(),
            stats: MemoryDeliveryStats::default(),
        };
        for event in stored {
            world.events.insert(event).await.unwrap();
        }
        world.subscriptions.create(subscription).await.unwrap();
        world
    }

    async fn start(&self, subscription: &Subscription, since: Duration) -> ReplayJob {
        let since = (NOW - since)
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap();
        let request = ReplayRequest::parse(Some(&since), None, Retention::DEFAULT, NOW).unwrap();
        let job = request.job(subscription, NOW);
        self.jobs
            .start(&job, &hub::replay::Admission::of(&job, NOW))
            .await
            .unwrap()
            .unwrap();
        job
    }

    /// One step of a replay that has room to finish in it, through a
    /// publisher of its own: the job after it and what was sent.
    async fn one_step(&self, job: &ReplayJob) -> (ReplayJob, MemoryPublisher) {
        let publisher = MemoryPublisher::default();
        let done = self
            .step(&publisher, &job.replay_id, NOW)
            .await
            .unwrap()
            .unwrap();
        (done, publisher)
    }

    /// One step of the replay, sending through `publisher`.
    async fn step<P: DeliveryPublisher>(
        &self,
        publisher: &P,
        replay_id: &str,
        now: time::OffsetDateTime,
    ) -> Result<Option<hub::replay::ReplayJob>, StoreError> {
        let ports = Adapters::new()
            .events(&self.events)
            .subscriptions(&self.subscriptions)
            .publisher(publisher)
            .audit(&self.audit)
            .register(&self.register)
            .reference(&self.reference)
            .replays(&self.jobs)
            .stats(&self.stats)
            .embargoes(hub::memory::MemoryEmbargoStore::default());
        Replayer { ports: &ports }.step(replay_id, now).await
    }
}

/// The eventId and replay attributes of what was sent, in order.
fn sent_ids(publisher: &MemoryPublisher) -> Vec<(String, String)> {
    publisher
        .sent()
        .iter()
        .map(|message| {
            let value = |name: &str| {
                message
                    .attributes
                    .iter()
                    .find(|(attribute, _)| *attribute == name)
                    .map(|(_, value)| value.clone())
                    .unwrap_or_default()
            };
            (value("eventId"), value("replay"))
        })
        .collect()
}

#[tokio::test]
async fn a_late_joiner_replays_a_week_of_its_childs_events_oldest_first() {
    let stored = [
        accepted("nems/vaccinations-1-new.xml", Duration::days(8), 1),
        accepted("nems/vaccinations-1-new.xml", Duration::days(6), 2),
        // Another event type: the subscription does not ask for it.
        accepted("nems/Professional-Contacts-1-new.xml", Duration::days(5), 3),
        accepted("nems/vaccinations-1-update.xml", Duration::days(3), 4),
        accepted("nems/vaccinations-1-new.xml", Duration::hours(1), 5),
    ];
    let subscription = explicit_vaccinations();
    let world = World::new(&stored, &subscription).await;
    let job = world.start(&subscription, Duration::days(7)).await;
    let (done, publisher) = world.one_step(&job).await;
    assert_eq!(done.status, ReplayStatus::Completed);
    assert_eq!((done.scanned, done.delivered), (3, 3));
    let expected: Vec<(String, String)> = [&stored[1], &stored[3], &stored[4]]
        .iter()
        .map(|event| (event.event_id.clone(), job.replay_id.clone()))
        .collect();
    assert_eq!(sent_ids(&publisher), expected);
    // Another step of a finished replay sends nothing more.
    world.step(&publisher, &job.replay_id, NOW).await.unwrap();
    assert_eq!(publisher.sent().len(), 3);
}

#[tokio::test]
async fn a_replay_interrupted_by_a_failure_resumes_without_resending() {
    let stored: Vec<StoredEvent> = (0..5)
        .map(|n| {
            accepted(
                "nems/vaccinations-1-new.xml",
                Duration::hours(10 - n as i64),
                n,
            )
        })
        .collect();
    let subscription = explicit_vaccinations();
    let world = World::new(&stored, &subscription).await;
    let job = world.start(&subscription, Duration::days(1)).await;
    let publisher = FailingOnce {
        inner: MemoryPublisher::default(),
        calls: AtomicUsize::new(0),
        fail_at: 3,
    };
    let failed = world.step(&publisher, &job.replay_id, NOW).await;
    assert!(
        failed.is_err(),
        "the third send fails, and the step with it"
    );
    let saved = world.jobs.get(&job.replay_id).await.unwrap().unwrap();
    assert_eq!(saved.status, ReplayStatus::Running);
    assert_eq!(saved.delivered, 2, "progress was saved after each send");
    assert_eq!(sent_ids(&publisher.inner).len(), 2);

    let resumed = world
        .step(&publisher, &job.replay_id, NOW)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(resumed.status, ReplayStatus::Completed);
    assert_eq!(resumed.delivered, 5);
    let ids: Vec<String> = sent_ids(&publisher.inner)
        .into_iter()
        .map(|(id, _)| id)
        .collect();
    let expected: Vec<String> = stored.iter().map(|event| event.event_id.clone()).collect();
    assert_eq!(ids, expected, "each event once, oldest first");
}

#[tokio::test]
async fn a_generic_subscription_replays_day_by_day_in_bounded_steps() {
    // More events than one step reads, over several days.
    let events: Vec<StoredEvent> = (0..130)
        .map(|n| {
            accepted(
                "nems/PDS-Change-Of-GP-ems-example.xml",
                Duration::hours(130 - n as i64),
                n,
            )
        })
        .collect();
    let practice = events[0].gp_ods.clone().expect("the example names a GP");
    let subscription = subscription(
        "generic",
        &format!(
            "/Bundle?type=message&serviceType=GP&subscriptionRuleType=GP_GP_GP&Organization.identifier={practice}&MessageHeader.event=pds-change-of-gp-1"
        ),
    );
    let world = World::new(&events, &subscription).await;
    let job = world.start(&subscription, Duration::days(30)).await;
    let publisher = MemoryPublisher::default();
    let first = world
        .step(&publisher, &job.replay_id, NOW)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(first.status, ReplayStatus::Running, "a step is bounded");
    assert_eq!(first.scanned, hub::replay::STEP_EVENTS as u64);
    let mut steps = 1;
    loop {
        let job = world
            .step(&publisher, &job.replay_id, NOW)
            .await
            .unwrap()
            .unwrap();
        steps += 1;
        if job.status == ReplayStatus::Completed {
            assert_eq!((job.scanned, job.delivered), (130, 130));
            break;
        }
        assert!(steps < 10, "the replay finishes");
    }
    let ids: Vec<String> = sent_ids(&publisher).into_iter().map(|(id, _)| id).collect();
    let expected: Vec<String> = events.iter().map(|event| event.event_id.clone()).collect();
    assert_eq!(ids, expected);
}

#[tokio::test]
async fn a_replay_stops_when_its_subscription_is_deleted_and_reaches_back_no_further_than_retention()
 {
    let subscription = explicit_vaccinations();
    let world = World::new(
        &[accepted(
            "nems/vaccinations-1-new.xml",
            Duration::hours(1),
            1,
        )],
        &subscription,
    )
    .await;
    let job = world.start(&subscription, Duration::days(1)).await;
    world.subscriptions.delete(&subscription).await.unwrap();
    let publisher = MemoryPublisher::default();
    let stopped = world
        .step(&publisher, &job.replay_id, NOW)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stopped.status, ReplayStatus::Stopped);
    assert!(publisher.sent().is_empty());

    let long_ago = ReplayRequest::parse(Some("2001-01-01"), None, Retention::DEFAULT, NOW).unwrap();
    assert_eq!(long_ago.since, Retention::DEFAULT.horizon(NOW));
    assert!(long_ago.clamped.is_some());
    for (since, until) in [
        (None, None),
        (Some("yesterday"), None),
        (Some("2026-11-24T13:00:00Z"), None),
        (Some("2026-11-20"), Some("2026-11-19")),
    ] {
        assert!(
            ReplayRequest::parse(since, until, Retention::DEFAULT, NOW).is_err(),
            "{since:?} {until:?}"
        );
    }
}

/// Starts a replay of the last day at `now`, as the handler does: the
/// store's answer (stored, or why not).
async fn try_start(
    jobs: &MemoryReplayStore,
    subscription: &Subscription,
    now: OffsetDateTime,
) -> (ReplayJob, Result<(), NotStarted>) {
    let since = (now - Duration::days(1))
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    let job = ReplayRequest::parse(Some(&since), None, Retention::DEFAULT, now)
        .unwrap()
        .job(subscription, now);
    let started = jobs.start(&job, &Admission::of(&job, now)).await.unwrap();
    (job, started)
}

#[tokio::test]
async fn one_replay_runs_per_subscription_and_a_subscriber_starts_a_bounded_number_a_day() {
    let subscription = explicit_vaccinations();
    let world = World::new(&[], &subscription).await;
    let (first, started) = try_start(&world.jobs, &subscription, NOW).await;
    assert_eq!(started, Ok(()));
    // A second while the first runs is refused, and stores nothing.
    let (second, refused) = try_start(&world.jobs, &subscription, NOW).await;
    assert_eq!(refused, Err(NotStarted::AlreadyRunning));
    assert!(world.jobs.get(&second.replay_id).await.unwrap().is_none());
    // The first completes: its hold ends with it.
    let publisher = MemoryPublisher::default();
    let done = world
        .step(&publisher, &first.replay_id, NOW)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(done.status, ReplayStatus::Completed);
    assert_eq!(world.jobs.holder(&subscription.id), None);
    assert_eq!(try_start(&world.jobs, &subscription, NOW).await.1, Ok(()));

    // A replay whose worker stopped advancing it blocks its subscription
    // for a day at most.
    let stuck = subscription_of_another_id(&subscription, "stuck");
    assert_eq!(try_start(&world.jobs, &stuck, NOW).await.1, Ok(()));
    let later = NOW + Duration::seconds(RUNNING_HOLD_SECONDS - 1);
    assert_eq!(
        try_start(&world.jobs, &stuck, later).await.1,
        Err(NotStarted::AlreadyRunning)
    );

    // Three started so far today; the subscriber's other subscriptions
    // start the rest of its day's quota, then no more until midnight UTC.
    for n in 3..REPLAYS_PER_SUBSCRIBER_PER_DAY {
        let other = subscription_of_another_id(&subscription, &format!("other-{n}"));
        assert_eq!(try_start(&world.jobs, &other, NOW).await.1, Ok(()), "{n}");
    }
    let one_more = subscription_of_another_id(&subscription, "one-more");
    assert_eq!(
        try_start(&world.jobs, &one_more, NOW).await.1,
        Err(NotStarted::QuotaSpent)
    );
    assert_eq!(quota_renews_in(NOW), 12 * 3600, "NOW is noon UTC");
    let tomorrow = datetime!(2026-11-25 00:00:01 UTC);
    assert_eq!(try_start(&world.jobs, &one_more, tomorrow).await.1, Ok(()));
}

fn subscription_of_another_id(subscription: &Subscription, id: &str) -> Subscription {
    Subscription {
        id: id.into(),
        ..subscription.clone()
    }
}

#[tokio::test]
async fn an_explicit_subscription_replays_nothing_accepted_before_its_creation() {
    let stored = [
        accepted("nems/vaccinations-1-new.xml", Duration::days(5), 1),
        accepted("nems/vaccinations-1-new.xml", Duration::days(1), 2),
    ];
    let mut subscription = explicit_vaccinations();
    subscription.last_updated = "2026-11-21T12:00:00Z".into();
    let world = World::new(&stored, &subscription).await;
    let job = world.start(&subscription, Duration::days(7)).await;
    assert_eq!(
        job.since, "2026-11-21T12:00:00.000Z",
        "moved up to its creation"
    );
    assert!(
        job.detail
            .as_deref()
            .is_some_and(|detail| detail.contains("before the subscription's creation")),
        "{:?}",
        job.detail
    );
    let (done, publisher) = world.one_step(&job).await;
    assert_eq!(done.status, ReplayStatus::Completed);
    let expected = vec![(stored[1].event_id.clone(), job.replay_id.clone())];
    assert_eq!(sent_ids(&publisher), expected, "only what came after it");

    // A generic subscription's rule is its basis: its window is as asked.
    let generic = subscription_created_now_generic();
    let request = ReplayRequest::parse(Some("2026-11-17"), None, Retention::DEFAULT, NOW).unwrap();
    assert_eq!(request.job(&generic, NOW).since, "2026-11-17T00:00:00.000Z");
}

fn subscription_created_now_generic() -> Subscription {
    let mut generic = subscription(
        "generic-now",
        "/Bundle?type=message&serviceType=GP&subscriptionRuleType=GP_GP_GP&Organization.identifier=A83627&MessageHeader.event=pds-change-of-gp-1",
    );
    generic.last_updated = "2026-11-24T12:00:00Z".into();
    generic
}

/// The child's registered GP replays the window it asks for, from before
/// its subscription's creation, while the register keeps the child at its
/// practice; once the child has moved away, each step finds the basis lost
/// and the replay delivers nothing.
#[tokio::test]
async fn a_registered_gps_subscription_replays_before_its_creation_while_the_child_stays() {
    let stored = [
        accepted("nems/vaccinations-1-new.xml", Duration::days(5), 1),
        accepted("nems/vaccinations-1-new.xml", Duration::days(1), 2),
    ];
    let mut subscription = explicit_vaccinations();
    subscription.last_updated = "2026-11-21T12:00:00Z".into();
    subscription.basis = Some(hub::basis::Basis::RegisteredGp {
        practice: OdsCode::parse("A83627").unwrap(),
    });
    for (practice, replayed) in [("A83627", 2), ("B86056", 0)] {
        let world = World::new(&stored, &subscription).await;
        let mut registration = hub::register::RegisterUpdate::new(
            hub::NhsNumber::parse(PATIENT).unwrap(),
            "registration",
            NOW - Duration::hours(1),
        );
        registration.gp_practice = Some(Some(practice.to_owned()));
        hub::app::register::record_event(&world.register, &world.audit, registration, NOW)
            .await
            .unwrap();
        let job = world.start(&subscription, Duration::days(7)).await;
        assert_eq!(
            job.since, "2026-11-17T12:00:00.000Z",
            "the window asked for"
        );
        let (done, publisher) = world.one_step(&job).await;
        assert_eq!(done.status, ReplayStatus::Completed);
        assert_eq!(
            sent_ids(&publisher).len(),
            replayed,
            "registered at {practice}"
        );
    }
}
