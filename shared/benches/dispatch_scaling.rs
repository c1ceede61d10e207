//! Routing one event (`Dispatcher::route`: the register update, the explicit
//! candidates, the child's place in the reference data, the generic
//! candidates) against stores holding 10, 10 000 and 1 000 000 explicit and
//! generic subscriptions: the reads an event costs must not grow with them.
//!
//! The stores are the in-memory adapters, keyed as the DynamoDB ones are.
//! Each port is wrapped in a counting adapter; the benchmark asserts, at
//! every size, how many requests one event makes of each store (and how many
//! keys: the DynamoDB subscription adapter makes one Query per generic key),
//! and prints them.
//!
//! Beside `first/N` (the child not yet on the register: read and write it)
//! and `repeated/N` (the same event again: read only), `candidates/N` times
//! the subscription store's two reads alone and `updates_for` the payload
//! read again for the register, which is most of the route's time.
//!
//! Run: cargo bench -p hub --bench dispatch_scaling

use hub::ports::Adapters;
use std::collections::BTreeSet;
use std::hint::black_box;
use std::sync::atomic::{AtomicUsize, Ordering};

use criterion::{BatchSize, BenchmarkId, Criterion, criterion_group, criterion_main};
use hub::app::dispatch::Dispatcher;
use hub::criteria::{AgeRange, Criteria, GpRegistration, RuleType, Target};
use hub::dispatch::{Delivery, Route};
use hub::events::StoredEvent;
use hub::generic::RULE_TYPES;
use hub::memory::MemoryReferenceData;
use hub::memory::{MemoryAuditLog, MemoryPublisher, MemoryRegisterStore, MemorySubscriptionStore};
use hub::ports::ReferenceData;
use hub::ports::{Page, RegisterStore, StoreError, SubscriptionStore, Versioned};
use hub::reference::{Postcode, PostcodeArea, PracticeArea, ReferenceAreas};
use hub::register::ChildRecord;
use hub::subscriber::OdsCode;
use hub::subscription::Subscription;
use hub::{Encoding, EventMessage, EventType, NhsNumber};
use time::OffsetDateTime;
use time::macros::datetime;

/// Stored subscriptions, in total (the ones about the child included).
const SIZES: [usize; 3] = [10, 10_000, 1_000_000];

/// When the events are routed: after the ended subscription's end.
const NOW: OffsetDateTime = datetime!(2026-11-24 12:00 UTC);

// ---------------------------------------------------------------------------
// The event and the reference data

/// The child's place, as the reference data gives it.
const PRACTICE: &str = "A83627";
const PRACTICE_ICB: &str = "84H";
const POSTCODE: &str = "DH1 2TF";
const LOCAL_AUTHORITY: &str = "E06000047";
const POSTCODE_ICB: &str = "84H";
const ENGLAND: &str = "E92000001";

/// The NEMS vaccination example (Jack Dawkins, 9912003888, home postcode
/// DH1 2TF), with the child registered at the practice the message already
/// carries as an Organization (SILVERDALE FAMILY PRACTICE, A83627).
fn vaccination() -> StoredEvent {
    let body = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../events/nems/vaccinations-1-new.xml"
    ))
    .expect("fixture");
    assert_eq!(body.matches("</Patient>").count(), 1);
    let body = body.replace(
        "</Patient>",
        "<generalPractitioner>\
         <reference value=\"urn:uuid:3ff6d789-af64-4d9c-aa1d-0087d29e9e1c\"/>\
         </generalPractitioner></Patient>",
    );
    let message = EventMessage::read(&body, Encoding::Xml).expect("valid");
    let event = StoredEvent::new(
        &message,
        Encoding::Xml,
        &body,
        NOW,
        hub::events::Retention::DEFAULT,
    );
    assert_eq!(event.event_type, EventType::Vaccinations);
    assert_eq!(event.home_postcode.as_deref(), Some(POSTCODE));
    assert_eq!(event.gp_ods.as_deref(), Some(PRACTICE));
    event
}

fn area(local_authority: &str, icb_sub_location: Option<&str>, country: &str) -> PostcodeArea {
    PostcodeArea {
        local_authority: local_authority.into(),
        icb_sub_location: icb_sub_location.map(str::to_owned),
        country: country.into(),
    }
}

/// A few postcodes and practices, the child's among them.
fn reference_data() -> MemoryReferenceData {
    let mut data = MemoryReferenceData::default();
    for (postcode, area) in [
        (POSTCODE, area(LOCAL_AUTHORITY, Some(POSTCODE_ICB), ENGLAND)),
        ("DH6 2TH", area(LOCAL_AUTHORITY, Some("84H"), ENGLAND)),
        ("LS17 7DF", area("E08000035", Some("15F"), ENGLAND)),
        ("HD1 2JL", area("E08000034", Some("X2C4Y"), ENGLAND)),
        ("CF10 1EP", area("W06000015", None, "W92000004")),
    ] {
        data.insert_postcode(Postcode::parse(postcode).expect("postcode"), area);
    }
    for (practice, icb) in [
        (PRACTICE, PRACTICE_ICB),
        ("B86056", "15F"),
        ("B85005", "X2C4Y"),
        ("A83001", "84H"),
    ] {
        data.insert_practice(PracticeArea {
            practice: practice.into(),
            icb_sub_location: icb.into(),
        });
    }
    data
}

// ---------------------------------------------------------------------------
// The subscriptions

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

fn generic(rule: RuleType, organisation: &str) -> Target {
    Target::Generic {
        rule,
        organisation: Some(organisation.to_owned()),
    }
}

fn subscription(
    index: u64,
    subscriber_id: String,
    target: Target,
    event_type: EventType,
) -> Subscription {
    Subscription {
        id: format!("00000000-0000-4000-8000-{index:012}"),
        subscriber_id,
        contact_ods: OdsCode::parse(PRACTICE).expect("ODS code"),
        reason: "benchmark".into(),
        end: None,
        criteria: Criteria {
            service_type: None,
            target,
            events: BTreeSet::from([event_type]),
            age: AgeRange::default(),
            gp_registration: None,
            tag: Some(format!("t{index}")),
        },
        version_id: 1,
        last_updated: "2026-01-01T00:00:00Z".into(),
        basis: None,
        ended: None,
        backfills: Vec::new(),
    }
}

/// The ten subscriptions about the child: seven match (two explicit, five
/// generic, one of each rule type) for five subscribers; three do not (an
/// ended explicit one and an age-limited generic one, both read and then
/// filtered out, and one for another event type, never read).
fn about_the_child(patient: NhsNumber) -> Vec<Subscription> {
    const VACCINATIONS: EventType = EventType::Vaccinations;
    let explicit = Target::Explicit(patient);
    let mut ended = subscription(2, "ended".into(), explicit.clone(), VACCINATIONS);
    ended.end = Some("2020-01-01T00:00:00Z".into());
    let mut under_twos = subscription(
        8,
        "hv-under-twos".into(),
        generic(RuleType::UhvPostcodeLacode, LOCAL_AUTHORITY),
        VACCINATIONS,
    );
    under_twos.criteria.age.less_than = Some(2);
    let mut registered = subscription(
        5,
        "cho-84h".into(),
        generic(RuleType::ChoGpCcg, PRACTICE_ICB),
        VACCINATIONS,
    );
    registered.criteria.gp_registration = Some(GpRegistration::RegisteredOnly);
    vec![
        // Explicit and generic for one subscriber: one delivery, two matches.
        subscription(0, "gp-a83627".into(), explicit.clone(), VACCINATIONS),
        subscription(
            4,
            "gp-a83627".into(),
            generic(RuleType::GpGpGp, PRACTICE),
            VACCINATIONS,
        ),
        subscription(1, "chis-north-east".into(), explicit, VACCINATIONS),
        ended,
        // Two generic rules of one subscriber: one delivery, two matches.
        registered,
        subscription(
            6,
            "cho-84h".into(),
            generic(RuleType::ChoPostcodeCcg, POSTCODE_ICB),
            VACCINATIONS,
        ),
        subscription(
            7,
            "hv-county-durham".into(),
            generic(RuleType::UhvPostcodeLacode, LOCAL_AUTHORITY),
            VACCINATIONS,
        ),
        under_twos,
        subscription(
            9,
            "national-immunisations".into(),
            generic(RuleType::CountryCode, ENGLAND),
            VACCINATIONS,
        ),
        subscription(
            3,
            "gp-a83627".into(),
            generic(RuleType::GpGpGp, PRACTICE),
            EventType::NewbornHearing,
        ),
    ]
}

/// The deliveries the event must produce (by subscriber, then subscription).
fn expected_deliveries() -> Vec<(&'static str, Vec<u64>)> {
    vec![
        ("chis-north-east", vec![1]),
        ("cho-84h", vec![5, 6]),
        ("gp-a83627", vec![0, 4]),
        ("hv-county-durham", vec![7]),
        ("national-immunisations", vec![9]),
    ]
}

/// The index-th of the other subscriptions, none of which can match the
/// event: alternately explicit, for other patients and every event type, and
/// generic, of every rule type and event type, for other organisations
/// (100 000 practices, 1 000 sub-ICB locations, 400 local authorities, and
/// for vaccinations the other three countries; England for the other event
/// types).
fn other(index: u64) -> Subscription {
    let subscriber = format!("subscriber-{}", index % 1000);
    let half = index / 2;
    if index.is_multiple_of(2) {
        let event_type = EventType::ALL[(half % 10) as usize];
        return subscription(
            index,
            subscriber,
            Target::Explicit(nhs_number(half)),
            event_type,
        );
    }
    let rule = RULE_TYPES[(half % 5) as usize];
    let event_type = EventType::ALL[((half / 5) % 10) as usize];
    let n = half / 50;
    let organisation = match rule {
        RuleType::GpGpGp => format!("P{:05}", n % 100_000),
        RuleType::ChoGpCcg | RuleType::ChoPostcodeCcg => format!("Z{:03}", n % 1000),
        RuleType::UhvPostcodeLacode => format!("E07{:06}", n % 400),
        RuleType::CountryCode if event_type == EventType::Vaccinations => {
            ["W92000004", "S92000003", "N92000002"][(n % 3) as usize].to_owned()
        }
        RuleType::CountryCode => {
            ["W92000004", "S92000003", "N92000002", ENGLAND][(n % 4) as usize].to_owned()
        }
    };
    subscription(index, subscriber, generic(rule, &organisation), event_type)
}

// ---------------------------------------------------------------------------
// Counting adapters

/// The requests made of the ports, and what they asked and returned.
#[derive(Default)]
struct Counters {
    explicit_queries: AtomicUsize,
    explicit_items: AtomicUsize,
    generic_calls: AtomicUsize,
    generic_keys: AtomicUsize,
    generic_keys_max: AtomicUsize,
    generic_items: AtomicUsize,
    other_subscription_calls: AtomicUsize,
    register_gets: AtomicUsize,
    register_puts: AtomicUsize,
    reference_batches: AtomicUsize,
    reference_postcodes: AtomicUsize,
    reference_practices: AtomicUsize,
    reference_single: AtomicUsize,
}

/// A snapshot of [`Counters`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Requests {
    explicit_queries: usize,
    explicit_items: usize,
    generic_calls: usize,
    generic_keys: usize,
    generic_keys_max: usize,
    generic_items: usize,
    other_subscription_calls: usize,
    register_gets: usize,
    register_puts: usize,
    reference_batches: usize,
    reference_postcodes: usize,
    reference_practices: usize,
    reference_single: usize,
}

impl Requests {
    /// Requests against DynamoDB: a Query for the explicit key and one per
    /// generic key, a GetItem (and a conditional PutItem) of the register,
    /// a BatchGetItem of the reference data.
    fn dynamodb(&self) -> usize {
        self.explicit_queries
            + self.generic_keys
            + self.register_gets
            + self.register_puts
            + self.reference_batches
            + self.reference_single
    }

    /// The requests of `events` events that each made these.
    fn times(self, events: usize) -> Requests {
        Requests {
            explicit_queries: self.explicit_queries * events,
            explicit_items: self.explicit_items * events,
            generic_calls: self.generic_calls * events,
            generic_keys: self.generic_keys * events,
            // The most keys one request asked for.
            generic_keys_max: if events == 0 {
                0
            } else {
                self.generic_keys_max
            },
            generic_items: self.generic_items * events,
            other_subscription_calls: self.other_subscription_calls * events,
            register_gets: self.register_gets * events,
            register_puts: self.register_puts * events,
            reference_batches: self.reference_batches * events,
            reference_postcodes: self.reference_postcodes * events,
            reference_practices: self.reference_practices * events,
            reference_single: self.reference_single * events,
        }
    }
}

impl std::fmt::Display for Requests {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "explicit {} request ({} items); generic {} request with {} keys ({} items); \
             register {} get + {} put; reference {} batch ({} postcode, {} practice) + {} single; \
             {} DynamoDB requests",
            self.explicit_queries,
            self.explicit_items,
            self.generic_calls,
            self.generic_keys,
            self.generic_items,
            self.register_gets,
            self.register_puts,
            self.reference_batches,
            self.reference_postcodes,
            self.reference_practices,
            self.reference_single,
            self.dynamodb()
        )
    }
}

impl Counters {
    fn add(counter: &AtomicUsize, n: usize) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    /// The counts since the last take, and starts again from zero.
    fn take(&self) -> Requests {
        let take = |counter: &AtomicUsize| counter.swap(0, Ordering::Relaxed);
        Requests {
            explicit_queries: take(&self.explicit_queries),
            explicit_items: take(&self.explicit_items),
            generic_calls: take(&self.generic_calls),
            generic_keys: take(&self.generic_keys),
            generic_keys_max: take(&self.generic_keys_max),
            generic_items: take(&self.generic_items),
            other_subscription_calls: take(&self.other_subscription_calls),
            register_gets: take(&self.register_gets),
            register_puts: take(&self.register_puts),
            reference_batches: take(&self.reference_batches),
            reference_postcodes: take(&self.reference_postcodes),
            reference_practices: take(&self.reference_practices),
            reference_single: take(&self.reference_single),
        }
    }
}

struct CountingSubscriptions<'a, S> {
    inner: &'a S,
    counters: &'a Counters,
}

impl<S: SubscriptionStore> SubscriptionStore for CountingSubscriptions<'_, S> {
    async fn create(&self, subscription: &Subscription) -> Result<(), StoreError> {
        Counters::add(&self.counters.other_subscription_calls, 1);
        self.inner.create(subscription).await
    }

    async fn count_explicit(
        &self,
        count: &hub::subscription::DailyCount,
    ) -> Result<bool, StoreError> {
        Counters::add(&self.counters.other_subscription_calls, 1);
        self.inner.count_explicit(count).await
    }

    async fn delete(&self, subscription: &Subscription) -> Result<(), StoreError> {
        Counters::add(&self.counters.other_subscription_calls, 1);
        self.inner.delete(subscription).await
    }

    async fn list_by_subscriber(
        &self,
        subscriber_id: &str,
        limit: usize,
        page_token: Option<&str>,
    ) -> Result<Page<Subscription>, StoreError> {
        Counters::add(&self.counters.other_subscription_calls, 1);
        self.inner
            .list_by_subscriber(subscriber_id, limit, page_token)
            .await
    }

    async fn get(&self, id: &str) -> Result<Option<Subscription>, StoreError> {
        Counters::add(&self.counters.other_subscription_calls, 1);
        self.inner.get(id).await
    }

    async fn end(
        &self,
        subscription: &Subscription,
        ended: &hub::basis::Ended,
    ) -> Result<bool, StoreError> {
        Counters::add(&self.counters.other_subscription_calls, 1);
        self.inner.end(subscription, ended).await
    }

    async fn assign_basis(
        &self,
        subscription: &Subscription,
        basis: &hub::basis::Basis,
    ) -> Result<bool, StoreError> {
        Counters::add(&self.counters.other_subscription_calls, 1);
        self.inner.assign_basis(subscription, basis).await
    }

    async fn replace_backfills(
        &self,
        subscription: &Subscription,
        grants: &[hub::backfill::BackfillGrant],
    ) -> Result<bool, StoreError> {
        Counters::add(&self.counters.other_subscription_calls, 1);
        self.inner.replace_backfills(subscription, grants).await
    }

    async fn explicit_candidates(
        &self,
        nhs_number: NhsNumber,
        event_type: EventType,
    ) -> Result<Vec<Subscription>, StoreError> {
        Counters::add(&self.counters.explicit_queries, 1);
        let found = self
            .inner
            .explicit_candidates(nhs_number, event_type)
            .await?;
        Counters::add(&self.counters.explicit_items, found.len());
        Ok(found)
    }

    async fn generic_candidates(&self, keys: &[String]) -> Result<Vec<Subscription>, StoreError> {
        Counters::add(&self.counters.generic_calls, 1);
        Counters::add(&self.counters.generic_keys, keys.len());
        self.counters
            .generic_keys_max
            .fetch_max(keys.len(), Ordering::Relaxed);
        let found = self.inner.generic_candidates(keys).await?;
        Counters::add(&self.counters.generic_items, found.len());
        Ok(found)
    }
}

struct CountingRegister<'a, G> {
    inner: &'a G,
    counters: &'a Counters,
}

impl<G: RegisterStore> RegisterStore for CountingRegister<'_, G> {
    async fn get(
        &self,
        nhs_number: NhsNumber,
    ) -> Result<Option<Versioned<ChildRecord>>, StoreError> {
        Counters::add(&self.counters.register_gets, 1);
        self.inner.get(nhs_number).await
    }

    async fn put(
        &self,
        record: &ChildRecord,
        expected_version: Option<u64>,
    ) -> Result<bool, StoreError> {
        Counters::add(&self.counters.register_puts, 1);
        self.inner.put(record, expected_version).await
    }
}

struct CountingReference<'a, R> {
    inner: &'a R,
    counters: &'a Counters,
}

impl<R: ReferenceData> ReferenceData for CountingReference<'_, R> {
    async fn postcode_area(&self, postcode: &Postcode) -> Result<Option<PostcodeArea>, StoreError> {
        Counters::add(&self.counters.reference_single, 1);
        self.inner.postcode_area(postcode).await
    }

    async fn practice_area(&self, ods_code: &str) -> Result<Option<String>, StoreError> {
        Counters::add(&self.counters.reference_single, 1);
        self.inner.practice_area(ods_code).await
    }

    async fn locate_many(
        &self,
        postcodes: &[&Postcode],
        practices: &[&str],
    ) -> Result<ReferenceAreas, StoreError> {
        Counters::add(&self.counters.reference_batches, 1);
        Counters::add(&self.counters.reference_postcodes, postcodes.len());
        Counters::add(&self.counters.reference_practices, practices.len());
        self.inner.locate_many(postcodes, practices).await
    }
}

// ---------------------------------------------------------------------------
// The benchmark

/// Whom the route delivers to: (subscriber, subscription ids).
fn recipients(route: &Route) -> Vec<(String, Vec<String>)> {
    let Route::Deliver { deliveries, .. } = route else {
        panic!("the child is not sensitive: {route:?}");
    };
    deliveries
        .iter()
        .map(|delivery: &Delivery| {
            let ids = delivery.matches.iter().map(|m| m.subscription_id.clone());
            (delivery.subscriber_id.clone(), ids.collect())
        })
        .collect()
}

/// The requests one event must make, whatever the number of subscriptions.
fn expected_requests(first: bool) -> Requests {
    Requests {
        explicit_queries: 1,
        explicit_items: 3,
        generic_calls: 1,
        generic_keys: 5,
        generic_keys_max: 5,
        generic_items: 6,
        other_subscription_calls: 0,
        register_gets: 1,
        register_puts: usize::from(first),
        reference_batches: 1,
        reference_postcodes: 1,
        reference_practices: 1,
        reference_single: 0,
    }
}

/// The process's resident memory, in MiB (Linux).
fn resident_mib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|line| line.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024)
}

fn dispatch_scaling(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    let event = vaccination();
    let patient = event.nhs_number.expect("routed");
    let reference = reference_data();
    let publisher = MemoryPublisher::default();
    let audit = MemoryAuditLog::default();
    let expected: Vec<(String, Vec<String>)> = expected_deliveries()
        .into_iter()
        .map(|(subscriber, ids)| {
            let ids = ids
                .into_iter()
                .map(|index| format!("00000000-0000-4000-8000-{index:012}"))
                .collect();
            (subscriber.to_owned(), ids)
        })
        .collect();

    let mut group = c.benchmark_group("dispatch_route");
    // The part of routing that reads no store and does not depend on the
    // number of subscriptions: reading the payload again for the register.
    group.bench_function("updates_for", |b| {
        b.iter(|| hub::register::updates_for(black_box(&event)))
    });
    // The keys the child's place gives (one per rule type).
    let postcode = Postcode::parse(POSTCODE).expect("postcode");
    let location = runtime
        .block_on(hub::app::generic::locate(
            &reference,
            Some(&postcode),
            None,
            Some(PRACTICE),
            None,
        ))
        .expect("located");
    let keys = hub::generic::match_keys(&location, EventType::Vaccinations);
    assert_eq!(keys.len(), RULE_TYPES.len(), "{keys:?}");
    for stored in SIZES {
        let started = std::time::Instant::now();
        let store = MemorySubscriptionStore::default();
        let handful = about_the_child(patient);
        assert!(handful.len() <= stored);
        runtime.block_on(async {
            for subscription in &handful {
                store.create(subscription).await.expect("stored");
            }
            for index in handful.len() as u64..stored as u64 {
                let other = other(index);
                // Stored under a key (an explicit or a generic one), as a
                // subscription that can match some event is.
                assert!(
                    other.criteria.target.patient().is_some()
                        || hub::generic::subscription_key(&other.criteria).is_some()
                );
                store.create(&other).await.expect("stored");
            }
        });
        eprintln!(
            "{stored} subscriptions ({} about the child, the rest half explicit, half generic): \
             stored in {:.1} s, process resident memory {} MiB",
            handful.len(),
            started.elapsed().as_secs_f64(),
            resident_mib().map_or("?".to_owned(), |mib| mib.to_string()),
        );

        let counters = Counters::default();
        let subscriptions = CountingSubscriptions {
            inner: &store,
            counters: &counters,
        };
        let counted_reference = CountingReference {
            inner: &reference,
            counters: &counters,
        };
        let route_with = |register: &MemoryRegisterStore| {
            let register = CountingRegister {
                inner: register,
                counters: &counters,
            };
            let dispatcher = Dispatcher {
                ports: &Adapters::new()
                    .subscriptions(&subscriptions)
                    .publisher(&publisher)
                    .audit(&audit)
                    .register(&register)
                    .reference(&counted_reference)
                    .stats(hub::memory::MemoryDeliveryStats::default())
                    .events(hub::memory::MemoryEventStore::default()),
            };
            runtime
                .block_on(dispatcher.route(black_box(&event), NOW))
                .expect("routed")
        };

        // The first event about the child writes the register; a repeated
        // one only reads it. Both reach the same five subscribers.
        let register = MemoryRegisterStore::default();
        for (first, label) in [(true, "first event"), (false, "repeated event")] {
            let route = route_with(&register);
            assert_eq!(recipients(&route), expected, "{stored}: {label}");
            let requests = counters.take();
            assert_eq!(requests, expected_requests(first), "{stored}: {label}");
            eprintln!(
                "{stored} subscriptions, {label}: {} deliveries; {requests}",
                expected.len()
            );
        }
        let record = register.record(patient).expect("on the register");
        assert_eq!(record.registration(), Some(Some(PRACTICE)));

        // The store reads alone: the explicit candidates and the generic
        // candidates under the child's five keys.
        group.bench_with_input(BenchmarkId::new("candidates", stored), &stored, |b, _| {
            b.iter(|| {
                runtime.block_on(async {
                    let explicit = store
                        .explicit_candidates(black_box(patient), EventType::Vaccinations)
                        .await
                        .expect("read");
                    let generic = store
                        .generic_candidates(black_box(&keys))
                        .await
                        .expect("read");
                    assert_eq!((explicit.len(), generic.len()), (3, 6));
                    (explicit, generic)
                })
            })
        });

        group.bench_with_input(BenchmarkId::new("repeated", stored), &stored, |b, _| {
            b.iter(|| route_with(&register))
        });
        // Every iteration made the requests of one event (none when the
        // benchmark was filtered out).
        let total = counters.take();
        assert_eq!(
            total,
            expected_requests(false).times(total.register_gets),
            "{stored}: repeated"
        );

        group.bench_with_input(BenchmarkId::new("first", stored), &stored, |b, _| {
            b.iter_batched(
                MemoryRegisterStore::default,
                |register| {
                    let route = route_with(&register);
                    // Dropped after the measurement.
                    (route, register)
                },
                BatchSize::SmallInput,
            )
        });
        let total = counters.take();
        assert_eq!(
            total,
            expected_requests(true).times(total.register_gets),
            "{stored}: first"
        );
    }
    group.finish();
}

criterion_group!(benches, dispatch_scaling);
criterion_main!(benches);
