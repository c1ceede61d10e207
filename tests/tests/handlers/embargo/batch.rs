//! Dispatch reads the embargo settings once per invocation's batch of
//! stream records, not once per event, and afresh for the next batch.

use std::sync::atomic::{AtomicUsize, Ordering};

use aws_lambda_events::dynamodb::{Event, EventRecord};
use hub::app::dispatch::Dispatcher;
use hub::catalogue::EventType;
use hub::criteria::ServiceType;
use hub::embargo::{EmbargoSetting, Embargoes, Hold, HoldStatus};
use hub::events::StoredEvent;
use hub::lambda;
use hub::memory::{MemoryEmbargoStore, MemoryPorts};
use hub::ports::{Adapters, EmbargoStore, EventStore, Page, StoreError};
use time::{Duration, OffsetDateTime};

use super::{GP, blood_spot, hub, recipients};

/// The in-memory embargo store, counting its reads of the settings.
struct CountingSettings<'a> {
    inner: &'a MemoryEmbargoStore,
    reads: AtomicUsize,
}

impl EmbargoStore for CountingSettings<'_> {
    async fn settings(&self) -> Result<Embargoes, StoreError> {
        self.reads.fetch_add(1, Ordering::SeqCst);
        self.inner.settings().await
    }

    async fn put_setting(&self, setting: &EmbargoSetting) -> Result<(), StoreError> {
        self.inner.put_setting(setting).await
    }

    async fn remove_setting(
        &self,
        event_type: EventType,
        service_type: ServiceType,
        at: &str,
    ) -> Result<bool, StoreError> {
        self.inner
            .remove_setting(event_type, service_type, at)
            .await
    }

    async fn hold(&self, hold: &Hold) -> Result<bool, StoreError> {
        self.inner.hold(hold).await
    }

    async fn due(
        &self,
        day: &str,
        until: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Page<Hold>, StoreError> {
        self.inner.due(day, until, after, limit).await
    }

    async fn attempt_failed(&self, hold: &Hold, error: &str) -> Result<(), StoreError> {
        self.inner.attempt_failed(hold, error).await
    }

    async fn settle(
        &self,
        hold: &Hold,
        status: HoldStatus,
        detail: Option<&str>,
    ) -> Result<bool, StoreError> {
        self.inner.settle(hold, status, detail).await
    }

    async fn held(
        &self,
        keys: &[(String, String)],
    ) -> Result<std::collections::HashSet<(String, String)>, StoreError> {
        self.inner.held(keys).await
    }

    async fn watermark(&self) -> Result<Option<String>, StoreError> {
        self.inner.watermark().await
    }

    async fn set_watermark(&self, day: &str) -> Result<(), StoreError> {
        self.inner.set_watermark(day).await
    }
}

/// The stream batch that inserts these events (they are stored first).
async fn inserted(ports: &MemoryPorts, events: &[StoredEvent]) -> Event {
    let mut batch = Event::default();
    for (n, event) in events.iter().enumerate() {
        ports.events.insert(event).await.unwrap();
        let mut record = EventRecord::default();
        record.event_name = "INSERT".into();
        record.change.sequence_number = Some(n.to_string());
        record.change.new_image = serde_dynamo::to_item(event).unwrap();
        batch.records.push(record);
    }
    batch
}

#[tokio::test]
async fn dispatch_reads_the_settings_once_a_batch_and_again_for_the_next() {
    // dispatch_batch dispatches on the real clock.
    let now = OffsetDateTime::now_utc();
    let ports = hub(now - Duration::days(1), "P42D").await;
    let counting = CountingSettings {
        inner: &ports.embargoes,
        reads: AtomicUsize::new(0),
    };
    let with_counting = Adapters::new()
        .events(&ports.events)
        .subscriptions(&ports.subscriptions)
        .subscribers(&ports.subscribers)
        .publisher(&ports.publisher)
        .audit(&ports.audit)
        .register(&ports.register)
        .reference(&ports.reference)
        .relationships(&ports.relationships)
        .stats(&ports.stats)
        .embargoes(&counting);
    let dispatcher = Dispatcher {
        ports: &with_counting,
    };

    // Three events, each with recipients: one read of the settings.
    let events: Vec<StoredEvent> = (10..13)
        .map(|n| blood_spot(n, now - Duration::minutes(20 - n as i64)))
        .collect();
    let response = lambda::dispatch_batch(&dispatcher, inserted(&ports, &events).await).await;
    assert!(response.batch_item_failures.is_empty());
    assert_eq!(counting.reads.load(Ordering::SeqCst), 1);
    assert_eq!(recipients(&ports.publisher), vec![GP.to_owned(); 3]);
    assert_eq!(
        ports.embargoes.holds().len(),
        3,
        "the setting applied to each"
    );

    // The setting removed: the next invocation reads it again, and holds
    // nothing more.
    ports
        .embargoes
        .remove_setting(EventType::BloodSpotTestOutcome, ServiceType::Epchr, "now")
        .await
        .unwrap();
    let later = [blood_spot(13, now - Duration::minutes(1))];
    let response = lambda::dispatch_batch(&dispatcher, inserted(&ports, &later).await).await;
    assert!(response.batch_item_failures.is_empty());
    assert_eq!(counting.reads.load(Ordering::SeqCst), 2);
    assert_eq!(ports.embargoes.holds().len(), 3, "no setting: not held");
    assert_eq!(recipients(&ports.publisher).len(), 5, "GP and PCHR at once");
}
