//! Dispatch matching against 10, 10 000 and 1 000 000 stored subscriptions:
//! the cost of finding an event's recipients must not grow with them. The
//! store is the in-memory adapter, keyed as the DynamoDB one is; a counting
//! wrapper reports how many store requests each event costs.
//! Run: cargo bench -p hub --bench dispatch_scaling

use std::collections::BTreeSet;
use std::hint::black_box;
use std::sync::atomic::{AtomicUsize, Ordering};

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use hub::criteria::{AgeRange, Criteria, Target};
use hub::dispatch::recipients;
use hub::events::StoredEvent;
use hub::memory::MemorySubscriptionStore;
use hub::ports::{Page, StoreError, SubscriptionStore};
use hub::subscriber::OdsCode;
use hub::subscription::Subscription;
use hub::{Encoding, EventMessage, EventType, NhsNumber};

/// The n-th valid NHS number (the Modulus 11 check digit computed).
fn nhs_number(n: u64) -> NhsNumber {
    let mut candidate = n * 10;
    loop {
        let digits = format!("{:09}", candidate % 1_000_000_000);
        for check in 0..10 {
            if let Ok(number) = NhsNumber::parse(&format!("{digits}{check}")) {
                return number;
            }
        }
        candidate += 1;
    }
}

fn subscription(index: u64, nhs: NhsNumber, event_type: EventType) -> Subscription {
    Subscription {
        id: format!("00000000-0000-4000-8000-{index:012}"),
        subscriber_id: format!("subscriber-{}", index % 1000),
        contact_ods: OdsCode::parse("A83627").expect("ODS code"),
        reason: "benchmark".into(),
        end: None,
        criteria: Criteria {
            service_type: None,
            target: Target::Explicit(nhs),
            events: BTreeSet::from([event_type]),
            age: AgeRange::default(),
            gp_registration: None,
            tag: Some(format!("t{index}")),
        },
        version_id: 1,
        last_updated: "2026-01-01T00:00:00Z".into(),
    }
}

/// Counts the requests dispatch makes of the store.
struct Counting<'a> {
    inner: &'a MemorySubscriptionStore,
    requests: AtomicUsize,
}

impl SubscriptionStore for Counting<'_> {
    async fn create(&self, subscription: &Subscription) -> Result<(), StoreError> {
        self.inner.create(subscription).await
    }
    async fn delete(&self, subscription: &Subscription) -> Result<(), StoreError> {
        self.inner.delete(subscription).await
    }
    async fn list_by_subscriber(
        &self,
        id: &str,
        limit: usize,
        token: Option<&str>,
    ) -> Result<Page<Subscription>, StoreError> {
        self.inner.list_by_subscriber(id, limit, token).await
    }
    async fn get(&self, id: &str) -> Result<Option<Subscription>, StoreError> {
        self.inner.get(id).await
    }
    async fn explicit_candidates(
        &self,
        nhs: NhsNumber,
        event_type: EventType,
    ) -> Result<Vec<Subscription>, StoreError> {
        self.requests.fetch_add(1, Ordering::Relaxed);
        self.inner.explicit_candidates(nhs, event_type).await
    }
}

fn dispatch_scaling(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    let body = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../events/nems/vaccinations-1-new.xml"
    ))
    .expect("fixture");
    let message = EventMessage::read(&body, Encoding::Xml).expect("valid");
    let event = StoredEvent::new(
        &message,
        Encoding::Xml,
        &body,
        time::OffsetDateTime::UNIX_EPOCH,
    );
    let patient = message.nhs_number.expect("routed");
    let now = time::OffsetDateTime::now_utc();
    let mut group = c.benchmark_group("dispatch_recipients");
    for stored in [10u64, 10_000, 1_000_000] {
        let store = MemorySubscriptionStore::default();
        runtime.block_on(async {
            // Four subscriptions match (three subscribers); the rest are for
            // other patients and other event types.
            for index in 0..4 {
                let mut matching = subscription(index, patient, EventType::Vaccinations);
                matching.subscriber_id = format!("recipient-{}", index % 3);
                store.create(&matching).await.expect("stored");
            }
            for index in 4..stored {
                let event_type = EventType::ALL[(index % 10) as usize];
                store
                    .create(&subscription(index, nhs_number(index), event_type))
                    .await
                    .expect("stored");
            }
        });
        let counting = Counting {
            inner: &store,
            requests: AtomicUsize::new(0),
        };
        let found = runtime
            .block_on(recipients(&counting, &event, now))
            .expect("recipients");
        assert_eq!(found.len(), 3);
        assert_eq!(counting.requests.swap(0, Ordering::Relaxed), 1);
        eprintln!(
            "{stored} stored subscriptions: {} recipients, 1 store request per event",
            found.len()
        );
        group.bench_with_input(BenchmarkId::from_parameter(stored), &stored, |b, _| {
            b.iter(|| black_box(runtime.block_on(recipients(&store, black_box(&event), now))))
        });
    }
    group.finish();
}

criterion_group!(benches, dispatch_scaling);
criterion_main!(benches);
