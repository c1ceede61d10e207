//! In-memory adapters of the ports: real implementations, for unit tests
//! and benchmarks of the domain without AWS.

use std::collections::hash_map::Entry;
use std::collections::{BTreeSet, HashMap};
use std::io::BufRead;
use std::sync::Mutex;

use time::OffsetDateTime;

use crate::access::QueueAccess;
use crate::audit::{AuditQuery, AuditRecord};
use crate::auth::Client;
use crate::catalogue::EventType;
use crate::criteria::Target;
use crate::dispatch::Delivery;
use crate::events::{CurrentVersion, EventSummary, StoredEvent, place};
use crate::nhs_number::NhsNumber;
use crate::ports::{
    AuditLog, ClientStore, DeliveryPublisher, EventStore, HubSigningKey, Insert, Page,
    QueueProvisioner, ReferenceData, ReplayGuard, ReplayStore, StoreError, SubscriberStore,
    SubscriptionState, SubscriptionStore, TopicSubscription,
};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, EncodingKey};

use crate::app::auth::HubSigner;
use crate::auth::{HubVerifier, KeyError};
use crate::reference::{
    Postcode, PostcodeArea, PracticeArea, ReferenceItem, ReferenceRows, Rejected, practice_code,
};
use crate::replay::{Admission, NotStarted, ReplayJob};
use crate::subscriber::{Queues, Subscriber};
use crate::subscription::Subscription;

fn poisoned() -> StoreError {
    StoreError::Unavailable("in-memory store lock poisoned".into())
}

#[derive(Default)]
pub struct MemoryEventStore {
    events: Mutex<HashMap<String, StoredEvent>>,
    /// Held under the events lock's protection: written only while it is held.
    current: Mutex<HashMap<String, CurrentVersion>>,
}

impl MemoryEventStore {
    /// The stored event with this MessageHeader.id (of any event type).
    pub fn by_message_id(&self, message_id: &str) -> Option<StoredEvent> {
        let events = self.events.lock().ok()?;
        events
            .values()
            .find(|event| event.event_id == message_id)
            .cloned()
    }

    pub fn len(&self) -> usize {
        self.events.lock().map(|events| events.len()).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl EventStore for MemoryEventStore {
    async fn set_withheld(&self, event_key: &str, withheld: bool) -> Result<(), StoreError> {
        let mut events = self.events.lock().map_err(|_| poisoned())?;
        if let Some(event) = events.get_mut(event_key) {
            event.sensitive = withheld;
        }
        Ok(())
    }

    async fn insert(&self, event: &StoredEvent) -> Result<Insert, StoreError> {
        let mut events = self.events.lock().map_err(|_| poisoned())?;
        match events.get(&event.event_key) {
            Some(existing) if existing.payload_sha256 == event.payload_sha256 => {
                Ok(Insert::Duplicate)
            }
            Some(_) => Ok(Insert::Conflict),
            None => {
                let mut current = self.current.lock().map_err(|_| poisoned())?;
                let mut stored = event.clone();
                if let Some(identifier) = event.focus_identifier.as_deref() {
                    let placement = place(event, current.get(identifier));
                    stored.out_of_order = placement.out_of_order;
                    if placement.becomes_current
                        && let Some(version) = CurrentVersion::of(event)
                    {
                        current.insert(identifier.to_owned(), version);
                    }
                }
                let out_of_order = stored.out_of_order;
                events.insert(event.event_key.clone(), stored);
                Ok(Insert::Stored { out_of_order })
            }
        }
    }

    async fn get_many(&self, event_keys: &[String]) -> Result<Vec<StoredEvent>, StoreError> {
        let events = self.events.lock().map_err(|_| poisoned())?;
        Ok(event_keys
            .iter()
            .filter_map(|key| events.get(key).cloned())
            .collect())
    }

    async fn patient_events(&self, nhs_number: NhsNumber) -> Result<Vec<EventSummary>, StoreError> {
        let events = self.events.lock().map_err(|_| poisoned())?;
        let mut found: Vec<EventSummary> = events
            .values()
            .filter(|event| event.nhs_number == Some(nhs_number))
            .map(EventSummary::of)
            .collect();
        found.sort_by(|a, b| a.received_sort.cmp(&b.received_sort));
        Ok(found)
    }

    async fn received_on(
        &self,
        day: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Page<String>, StoreError> {
        let events = self.events.lock().map_err(|_| poisoned())?;
        let mut found: Vec<&StoredEvent> = events
            .values()
            .filter(|event| {
                event.received_day == day
                    && after.is_none_or(|after| event.received_sort.as_str() > after)
            })
            .collect();
        found.sort_by(|a, b| a.received_sort.cmp(&b.received_sort));
        let more = found.len() > limit;
        found.truncate(limit);
        Ok(Page {
            next: more
                .then(|| found.last().map(|event| event.received_sort.clone()))
                .flatten(),
            items: found
                .into_iter()
                .map(|event| event.received_sort.clone())
                .collect(),
        })
    }

    async fn get(&self, event_key: &str) -> Result<Option<StoredEvent>, StoreError> {
        Ok(self
            .events
            .lock()
            .map_err(|_| poisoned())?
            .get(event_key)
            .cloned())
    }
}

/// Subscriptions by id, with an index by (NHS number, event type): the same
/// keyed access the DynamoDB adapter offers.
#[derive(Default)]
pub struct MemorySubscriptionStore {
    inner: Mutex<SubscriptionIndex>,
}

#[derive(Default)]
struct SubscriptionIndex {
    by_id: HashMap<String, Subscription>,
    explicit: HashMap<(NhsNumber, EventType), Vec<String>>,
    generic: HashMap<String, Vec<String>>,
    by_subscriber: HashMap<String, BTreeSet<String>>,
}

impl SubscriptionStore for MemorySubscriptionStore {
    async fn create(&self, subscription: &Subscription) -> Result<(), StoreError> {
        let mut inner = self.inner.lock().map_err(|_| poisoned())?;
        if let Target::Explicit(nhs_number) = subscription.criteria.target {
            for event_type in &subscription.criteria.events {
                inner
                    .explicit
                    .entry((nhs_number, *event_type))
                    .or_default()
                    .push(subscription.id.clone());
            }
        }
        if let Some(key) = crate::generic::subscription_key(&subscription.criteria) {
            inner
                .generic
                .entry(key)
                .or_default()
                .push(subscription.id.clone());
        }
        inner
            .by_subscriber
            .entry(subscription.subscriber_id.clone())
            .or_default()
            .insert(subscription.id.clone());
        inner
            .by_id
            .insert(subscription.id.clone(), subscription.clone());
        Ok(())
    }

    async fn delete(&self, subscription: &Subscription) -> Result<(), StoreError> {
        let mut inner = self.inner.lock().map_err(|_| poisoned())?;
        inner.by_id.remove(&subscription.id);
        if let Target::Explicit(nhs_number) = subscription.criteria.target {
            for event_type in &subscription.criteria.events {
                if let Some(ids) = inner.explicit.get_mut(&(nhs_number, *event_type)) {
                    ids.retain(|id| *id != subscription.id);
                }
            }
        }
        if let Some(key) = crate::generic::subscription_key(&subscription.criteria)
            && let Some(ids) = inner.generic.get_mut(&key)
        {
            ids.retain(|id| *id != subscription.id);
        }
        if let Some(ids) = inner.by_subscriber.get_mut(&subscription.subscriber_id) {
            ids.remove(&subscription.id);
        }
        Ok(())
    }

    async fn list_by_subscriber(
        &self,
        subscriber_id: &str,
        limit: usize,
        page_token: Option<&str>,
    ) -> Result<Page<Subscription>, StoreError> {
        let inner = self.inner.lock().map_err(|_| poisoned())?;
        let ids = inner.by_subscriber.get(subscriber_id);
        let after = page_token.unwrap_or_default();
        let mut items: Vec<Subscription> = ids
            .into_iter()
            .flatten()
            .filter(|id| id.as_str() > after)
            .take(limit + 1)
            .filter_map(|id| inner.by_id.get(id).cloned())
            .collect();
        let next = if items.len() > limit {
            items.truncate(limit);
            items.last().map(|last| last.id.clone())
        } else {
            None
        };
        Ok(Page { items, next })
    }

    async fn get(&self, id: &str) -> Result<Option<Subscription>, StoreError> {
        Ok(self
            .inner
            .lock()
            .map_err(|_| poisoned())?
            .by_id
            .get(id)
            .cloned())
    }

    async fn explicit_candidates(
        &self,
        nhs_number: NhsNumber,
        event_type: EventType,
    ) -> Result<Vec<Subscription>, StoreError> {
        let inner = self.inner.lock().map_err(|_| poisoned())?;
        Ok(inner
            .explicit
            .get(&(nhs_number, event_type))
            .into_iter()
            .flatten()
            .filter_map(|id| inner.by_id.get(id).cloned())
            .collect())
    }

    async fn generic_candidates(&self, keys: &[String]) -> Result<Vec<Subscription>, StoreError> {
        let inner = self.inner.lock().map_err(|_| poisoned())?;
        Ok(keys
            .iter()
            .filter_map(|key| inner.generic.get(key))
            .flatten()
            .filter_map(|id| inner.by_id.get(id).cloned())
            .collect())
    }
}

#[derive(Default)]
pub struct MemorySubscriberStore {
    subscribers: Mutex<HashMap<String, Subscriber>>,
}

impl SubscriberStore for MemorySubscriberStore {
    async fn create(&self, subscriber: &Subscriber) -> Result<(), StoreError> {
        self.subscribers
            .lock()
            .map_err(|_| poisoned())?
            .insert(subscriber.id.clone(), subscriber.clone());
        Ok(())
    }

    async fn get(&self, id: &str) -> Result<Option<Subscriber>, StoreError> {
        Ok(self
            .subscribers
            .lock()
            .map_err(|_| poisoned())?
            .get(id)
            .cloned())
    }

    async fn save(&self, subscriber: &Subscriber) -> Result<(), StoreError> {
        let mut subscribers = self.subscribers.lock().map_err(|_| poisoned())?;
        match subscribers.get(&subscriber.id) {
            Some(stored) if stored.offboarded_at.is_none() => {
                subscribers.insert(subscriber.id.clone(), subscriber.clone());
                Ok(())
            }
            _ => Err(StoreError::Unavailable(
                "the subscriber was offboarded while it was being changed".into(),
            )),
        }
    }

    async fn mark_offboarded(&self, id: &str, at: &str) -> Result<(), StoreError> {
        if let Some(subscriber) = self.subscribers.lock().map_err(|_| poisoned())?.get_mut(id) {
            subscriber.offboarded_at = Some(at.to_owned());
        }
        Ok(())
    }
}

/// A sent message: the event and the attributes one recipient got.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SentMessage {
    pub event_type: EventType,
    pub body: String,
    pub attributes: Vec<(&'static str, String)>,
}

impl SentMessage {
    pub fn attribute(&self, name: &str) -> Option<&str> {
        self.attributes
            .iter()
            .find(|(key, _)| *key == name)
            .map(|(_, value)| value.as_str())
    }
}

/// Records what would have been published to SNS.
#[derive(Default)]
pub struct MemoryPublisher {
    sent: Mutex<Vec<SentMessage>>,
}

impl MemoryPublisher {
    pub fn sent(&self) -> Vec<SentMessage> {
        self.sent
            .lock()
            .map(|sent| sent.clone())
            .unwrap_or_default()
    }
}

impl DeliveryPublisher for MemoryPublisher {
    async fn publish(
        &self,
        event: &StoredEvent,
        deliveries: &[Delivery],
    ) -> Result<(), StoreError> {
        let mut sent = self.sent.lock().map_err(|_| poisoned())?;
        for delivery in deliveries {
            sent.push(SentMessage {
                event_type: event.event_type,
                body: event.payload.clone(),
                attributes: delivery.attributes(event),
            });
        }
        Ok(())
    }
}

/// Hands out queue names without creating anything.
#[derive(Default)]
pub struct MemoryQueueProvisioner {
    provisioned: Mutex<Vec<(String, Vec<EventType>)>>,
    unsubscribed: Mutex<Vec<String>>,
}

impl MemoryQueueProvisioner {
    /// The queue URLs whose topic subscriptions were removed.
    pub fn unsubscribed(&self) -> Vec<String> {
        self.unsubscribed
            .lock()
            .map(|u| u.clone())
            .unwrap_or_default()
    }
    pub fn provisioned(&self) -> Vec<(String, Vec<EventType>)> {
        self.provisioned
            .lock()
            .map(|p| p.clone())
            .unwrap_or_default()
    }
}

impl QueueProvisioner for MemoryQueueProvisioner {
    async fn provision(
        &self,
        subscriber_id: &str,
        event_types: &[EventType],
        access: &QueueAccess,
    ) -> Result<Queues, StoreError> {
        self.provisioned
            .lock()
            .map_err(|_| poisoned())?
            .push((subscriber_id.to_owned(), event_types.to_vec()));
        let topic_subscriptions = event_types
            .iter()
            .map(|event_type| format!("arn:memory:sns:{event_type}:{subscriber_id}"))
            .collect();
        Ok(match access {
            QueueAccess::SubscriberOwned { queue_arn } => Queues {
                queue_url: queue_arn.url(),
                queue_arn: queue_arn.arn().to_owned(),
                dead_letter_queue_url: String::new(),
                dead_letter_queue_arn: String::new(),
                topic_subscriptions,
                key_grants: Vec::new(),
            },
            QueueAccess::HubOwned { principal } => Queues {
                queue_url: format!("memory://queues/{subscriber_id}"),
                queue_arn: format!("arn:memory:sqs:{subscriber_id}"),
                dead_letter_queue_url: format!("memory://queues/{subscriber_id}-dlq"),
                dead_letter_queue_arn: format!("arn:memory:sqs:{subscriber_id}-dlq"),
                topic_subscriptions,
                key_grants: principal
                    .iter()
                    .map(|principal| format!("grant:{}", principal.arn()))
                    .collect(),
            },
        })
    }

    async fn reconfigure(
        &self,
        subscriber_id: &str,
        queues: &Queues,
        event_types: &[EventType],
        access: &QueueAccess,
    ) -> Result<Queues, StoreError> {
        Ok(Queues {
            topic_subscriptions: event_types
                .iter()
                .map(|event_type| format!("arn:memory:sns:{event_type}:{subscriber_id}"))
                .collect(),
            key_grants: access
                .principal()
                .iter()
                .map(|principal| format!("grant:{}", principal.arn()))
                .collect(),
            ..queues.clone()
        })
    }

    async fn unsubscribe(&self, queues: &Queues) -> Result<(), StoreError> {
        self.unsubscribed
            .lock()
            .map_err(|_| poisoned())?
            .push(queues.queue_url.clone());
        Ok(())
    }
}

/// Registered clients, put in by the test or the local stack that uses it.
#[derive(Default)]
pub struct MemoryClientStore {
    clients: Mutex<HashMap<String, Client>>,
}

impl MemoryClientStore {
    /// Registers the client, replacing any registered under its id.
    pub fn put(&self, client: Client) -> Result<(), StoreError> {
        self.clients
            .lock()
            .map_err(|_| poisoned())?
            .insert(client.client_id.clone(), client);
        Ok(())
    }
}

impl ClientStore for MemoryClientStore {
    async fn get(&self, client_id: &str) -> Result<Option<Client>, StoreError> {
        Ok(self
            .clients
            .lock()
            .map_err(|_| poisoned())?
            .get(client_id)
            .cloned())
    }

    async fn register(&self, client: &Client) -> Result<bool, StoreError> {
        let mut clients = self.clients.lock().map_err(|_| poisoned())?;
        let mut registered = client.clone();
        let existing = clients.get(&client.client_id);
        if let Some(existing) = existing {
            // As the DynamoDB adapter: the link stays, and a disabled client
            // stays disabled.
            registered.subscriber_id = existing.subscriber_id.clone();
            registered.enabled = existing.enabled;
        }
        let created = existing.is_none();
        clients.insert(client.client_id.clone(), registered);
        Ok(created)
    }

    async fn disable(&self, client_id: &str) -> Result<bool, StoreError> {
        let mut clients = self.clients.lock().map_err(|_| poisoned())?;
        Ok(clients
            .get_mut(client_id)
            .map(|client| client.enabled = false)
            .is_some())
    }

    async fn link_subscriber(
        &self,
        client_id: &str,
        subscriber_id: &str,
    ) -> Result<(), StoreError> {
        let mut clients = self.clients.lock().map_err(|_| poisoned())?;
        match clients.get_mut(client_id) {
            Some(client) => {
                client.subscriber_id = Some(subscriber_id.to_owned());
                Ok(())
            }
            None => Err(StoreError::Unavailable(format!(
                "no client {client_id} to link"
            ))),
        }
    }
}

/// The audit trail in memory, in the order written.
#[derive(Default)]
pub struct MemoryAuditLog {
    records: Mutex<Vec<AuditRecord>>,
}

impl MemoryAuditLog {
    pub fn records(&self) -> Vec<AuditRecord> {
        self.records
            .lock()
            .map(|records| records.clone())
            .unwrap_or_default()
    }
}

impl AuditLog for MemoryAuditLog {
    async fn record(&self, record: &AuditRecord) -> Result<(), StoreError> {
        self.record_all(std::slice::from_ref(record)).await
    }

    async fn record_all(&self, new: &[AuditRecord]) -> Result<(), StoreError> {
        let mut records = self.records.lock().map_err(|_| poisoned())?;
        for record in new {
            records.retain(|existing| existing.audit_id != record.audit_id);
            records.push(record.clone());
        }
        Ok(())
    }

    async fn get(&self, audit_id: &str) -> Result<Option<AuditRecord>, StoreError> {
        let records = self.records.lock().map_err(|_| poisoned())?;
        Ok(records
            .iter()
            .find(|record| record.audit_id == audit_id)
            .cloned())
    }

    async fn query(
        &self,
        query: &AuditQuery,
        limit: usize,
        page_token: Option<&str>,
    ) -> Result<Page<AuditRecord>, StoreError> {
        let records = self.records.lock().map_err(|_| poisoned())?;
        let mut matching: Vec<AuditRecord> = records
            .iter()
            .filter(|record| match query {
                AuditQuery::Patient(nhs_number) => {
                    record.nhs_number.as_deref() == Some(nhs_number.as_string().as_str())
                }
                AuditQuery::Client(client_id) => &record.client_id == client_id,
            })
            .cloned()
            .collect();
        matching.sort_by(|a, b| b.at.cmp(&a.at));
        let start = match page_token {
            None => 0,
            Some(token) => token
                .parse::<usize>()
                .ok()
                .filter(|start| *start <= matching.len())
                .ok_or(StoreError::InvalidPageToken)?,
        };
        let end = start.saturating_add(limit.max(1)).min(matching.len());
        let next = (end < matching.len()).then(|| end.to_string());
        Ok(Page {
            items: matching[start..end].to_vec(),
            next,
        })
    }
}

/// The (client id, jti) pairs seen, each with the time it may be forgotten.
#[derive(Default)]
pub struct MemoryReplayGuard {
    seen: Mutex<HashMap<(String, String), OffsetDateTime>>,
}

impl MemoryReplayGuard {
    /// Drops the records whose assertions have expired. Nothing calls it on
    /// its own: the guard takes no clock, so a test with a fixed `now` never
    /// loses a record it still needs.
    pub fn forget_expired(&self, now: OffsetDateTime) {
        if let Ok(mut seen) = self.seen.lock() {
            seen.retain(|_, expires_at| *expires_at > now);
        }
    }

    pub fn len(&self) -> usize {
        self.seen.lock().map(|seen| seen.len()).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl ReplayGuard for MemoryReplayGuard {
    async fn remember(
        &self,
        client_id: &str,
        jti: &str,
        expires_at: OffsetDateTime,
    ) -> Result<bool, StoreError> {
        let mut seen = self.seen.lock().map_err(|_| poisoned())?;
        match seen.entry((client_id.to_owned(), jti.to_owned())) {
            Entry::Occupied(_) => Ok(false),
            Entry::Vacant(entry) => {
                entry.insert(expires_at);
                Ok(true)
            }
        }
    }
}

/// The child register in memory, with the DynamoDB adapter's versioned
/// conditional write.
#[derive(Default)]
pub struct MemoryRegisterStore {
    records: Mutex<HashMap<NhsNumber, crate::ports::Versioned<crate::register::ChildRecord>>>,
}

impl MemoryRegisterStore {
    /// The child's record as stored, if any.
    pub fn record(&self, nhs_number: NhsNumber) -> Option<crate::register::ChildRecord> {
        let records = self.records.lock().ok()?;
        records.get(&nhs_number).map(|stored| stored.value.clone())
    }

    pub fn len(&self) -> usize {
        self.records
            .lock()
            .map(|records| records.len())
            .unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl crate::ports::RegisterStore for MemoryRegisterStore {
    async fn get(
        &self,
        nhs_number: NhsNumber,
    ) -> Result<Option<crate::ports::Versioned<crate::register::ChildRecord>>, StoreError> {
        Ok(self
            .records
            .lock()
            .map_err(|_| poisoned())?
            .get(&nhs_number)
            .cloned())
    }

    async fn put(
        &self,
        record: &crate::register::ChildRecord,
        expected_version: Option<u64>,
    ) -> Result<bool, StoreError> {
        let mut records = self.records.lock().map_err(|_| poisoned())?;
        let stored_version = records.get(&record.nhs_number).map(|stored| stored.version);
        if stored_version != expected_version {
            return Ok(false);
        }
        records.insert(
            record.nhs_number,
            crate::ports::Versioned {
                value: record.clone(),
                version: expected_version.map_or(1, |version| version + 1),
            },
        );
        Ok(true)
    }
}

/// Replay jobs by id, with the holds on subscriptions and the quota counts
/// the DynamoDB table keeps beside them.
#[derive(Default)]
pub struct MemoryReplayStore {
    records: Mutex<ReplayRecords>,
}

#[derive(Default)]
struct ReplayRecords {
    jobs: HashMap<String, ReplayJob>,
    /// Hold key: (the replay holding it, until when).
    holds: HashMap<String, (String, i64)>,
    /// Quota key: replays started.
    started: HashMap<String, u32>,
}

impl MemoryReplayStore {
    /// The replay holding a subscription, if any (whatever its hold's age).
    pub fn holder(&self, subscription_id: &str) -> Option<String> {
        let records = self.records.lock().ok()?;
        records
            .holds
            .get(&format!("running#{subscription_id}"))
            .map(|(replay_id, _)| replay_id.clone())
    }
}

impl ReplayStore for MemoryReplayStore {
    async fn start(
        &self,
        job: &ReplayJob,
        admission: &Admission,
    ) -> Result<Result<(), NotStarted>, StoreError> {
        let mut records = self.records.lock().map_err(|_| poisoned())?;
        let held = records
            .holds
            .get(&admission.hold_key)
            .is_some_and(|(_, until)| *until >= admission.now);
        if held {
            return Ok(Err(NotStarted::AlreadyRunning));
        }
        let started = records
            .started
            .get(&admission.quota_key)
            .copied()
            .unwrap_or(0);
        if started >= admission.per_day {
            return Ok(Err(NotStarted::QuotaSpent));
        }
        records
            .started
            .insert(admission.quota_key.clone(), started + 1);
        records.holds.insert(
            admission.hold_key.clone(),
            (job.replay_id.clone(), admission.hold_until),
        );
        records.jobs.insert(job.replay_id.clone(), job.clone());
        Ok(Ok(()))
    }

    async fn release(&self, job: &ReplayJob) -> Result<(), StoreError> {
        let mut records = self.records.lock().map_err(|_| poisoned())?;
        let key = Admission::hold_key_of(job);
        if records
            .holds
            .get(&key)
            .is_some_and(|(replay_id, _)| *replay_id == job.replay_id)
        {
            records.holds.remove(&key);
        }
        Ok(())
    }

    async fn get(&self, replay_id: &str) -> Result<Option<ReplayJob>, StoreError> {
        Ok(self
            .records
            .lock()
            .map_err(|_| poisoned())?
            .jobs
            .get(replay_id)
            .cloned())
    }

    async fn save(&self, job: &ReplayJob) -> Result<bool, StoreError> {
        let mut records = self.records.lock().map_err(|_| poisoned())?;
        let jobs = &mut records.jobs;
        match jobs.get(&job.replay_id) {
            Some(stored) if stored.revision + 1 == job.revision => {
                jobs.insert(job.replay_id.clone(), job.clone());
                Ok(true)
            }
            _ => Ok(false),
        }
    }
}

/// Delivery counts per (subscriber, event type), as the DynamoDB table
/// keeps them.
#[derive(Default)]
pub struct MemoryDeliveryStats {
    counts: Mutex<std::collections::BTreeMap<(String, EventType), (u64, String)>>,
}

impl crate::ports::DeliveryStats for MemoryDeliveryStats {
    async fn record_deliveries(
        &self,
        event_type: EventType,
        subscriber_ids: &[&str],
        at: &str,
    ) -> Result<(), StoreError> {
        let mut counts = self.counts.lock().map_err(|_| poisoned())?;
        for subscriber_id in subscriber_ids {
            let entry = counts
                .entry(((*subscriber_id).to_owned(), event_type))
                .or_insert((0, String::new()));
            entry.0 += 1;
            // As the DynamoDB adapter does: the last write sets the time.
            entry.1 = at.to_owned();
        }
        Ok(())
    }

    async fn counts(
        &self,
        subscriber_id: &str,
    ) -> Result<Vec<crate::status::DeliveryCount>, StoreError> {
        Ok(self
            .counts
            .lock()
            .map_err(|_| poisoned())?
            .iter()
            .filter(|((owner, _), _)| owner == subscriber_id)
            .map(
                |((_, event_type), (delivered, at))| crate::status::DeliveryCount {
                    event_type: *event_type,
                    delivered: *delivered,
                    last_delivery_at: Some(at.clone()),
                },
            )
            .collect())
    }
}

/// A message in a [`MemoryQueues`] queue: its body and string attributes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueuedMessage {
    pub body: String,
    pub attributes: Vec<(String, String)>,
}

/// Queues by URL, each a list of messages: what a test puts in and what a
/// redrive moves. Every message is visible (nothing in flight or delayed).
#[derive(Default)]
pub struct MemoryQueues {
    queues: Mutex<HashMap<String, std::collections::VecDeque<QueuedMessage>>>,
}

impl MemoryQueues {
    pub fn push(&self, queue_url: &str, body: &str, attributes: &[(&str, &str)]) {
        if let Ok(mut queues) = self.queues.lock() {
            queues
                .entry(queue_url.to_owned())
                .or_default()
                .push_back(QueuedMessage {
                    body: body.to_owned(),
                    attributes: attributes
                        .iter()
                        .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
                        .collect(),
                });
        }
    }

    pub fn messages(&self, queue_url: &str) -> Vec<QueuedMessage> {
        self.queues
            .lock()
            .ok()
            .and_then(|queues| queues.get(queue_url).cloned())
            .map(Vec::from)
            .unwrap_or_default()
    }
}

impl crate::ports::QueueMonitor for MemoryQueues {
    async fn depth(&self, queue_url: &str) -> Result<crate::status::QueueDepth, StoreError> {
        let queues = self.queues.lock().map_err(|_| poisoned())?;
        Ok(crate::status::QueueDepth {
            waiting: queues.get(queue_url).map_or(0, |queue| queue.len() as u64),
            ..Default::default()
        })
    }

    async fn redrive(
        &self,
        dead_letter_queue_url: &str,
        queue_url: &str,
        limits: crate::status::RedriveLimits,
    ) -> Result<crate::status::Redriven, StoreError> {
        let mut queues = self.queues.lock().map_err(|_| poisoned())?;
        let dead = queues.entry(dead_letter_queue_url.to_owned()).or_default();
        let count = dead.len().min(limits.max_messages);
        let moved: Vec<QueuedMessage> = dead.drain(..count).collect();
        let remaining = !dead.is_empty();
        queues
            .entry(queue_url.to_owned())
            .or_default()
            .extend(moved);
        Ok(crate::status::Redriven {
            moved: count as u64,
            remaining,
        })
    }

    async fn subscription_states(
        &self,
        queues: &Queues,
    ) -> Result<Vec<TopicSubscription>, StoreError> {
        Ok(queues
            .topic_subscriptions
            .iter()
            .map(|arn| TopicSubscription {
                event_type: arn.split(':').nth(3).and_then(|code| code.parse().ok()),
                subscription_arn: arn.clone(),
                state: SubscriptionState::Confirmed,
            })
            .collect())
    }
}

/// Reference data held in maps: filled before use (by a test, or from the
/// sample files), then shared read-only.
#[derive(Debug, Default, Clone)]
pub struct MemoryReferenceData {
    postcodes: HashMap<Postcode, PostcodeArea>,
    practices: HashMap<String, String>,
}

impl MemoryReferenceData {
    pub fn insert_postcode(&mut self, postcode: Postcode, area: PostcodeArea) {
        self.postcodes.insert(postcode, area);
    }

    pub fn insert_practice(&mut self, practice: PracticeArea) {
        self.practices
            .insert(practice_code(&practice.practice), practice.icb_sub_location);
    }

    pub fn insert(&mut self, item: ReferenceItem) {
        match item {
            ReferenceItem::Postcode { postcode, area, .. } => self.insert_postcode(postcode, area),
            ReferenceItem::Practice(practice) => self.insert_practice(practice),
        }
    }

    /// Loads a sub-ICB lookup, an ONSPD file and an `epraccur.csv` file as
    /// [`ReferenceRows`] reads them, keeping every good row; the rejections
    /// are the bad rows. Only what [`ReferenceRows::open`] refuses is an
    /// `Err`.
    pub fn load(
        sub_icb: impl BufRead,
        onspd: impl BufRead,
        epraccur: impl BufRead,
    ) -> Result<(Self, Vec<Rejected>), Rejected> {
        let mut data = MemoryReferenceData::default();
        let mut rejected = Vec::new();
        for row in ReferenceRows::open(sub_icb, onspd, epraccur)? {
            match row {
                Ok(item) => data.insert(item),
                Err(error) => rejected.push(error),
            }
        }
        Ok((data, rejected))
    }

    pub fn postcode_count(&self) -> usize {
        self.postcodes.len()
    }

    pub fn practice_count(&self) -> usize {
        self.practices.len()
    }
}

impl ReferenceData for MemoryReferenceData {
    async fn postcode_area(&self, postcode: &Postcode) -> Result<Option<PostcodeArea>, StoreError> {
        Ok(self.postcodes.get(postcode).cloned())
    }

    async fn practice_area(&self, ods_code: &str) -> Result<Option<String>, StoreError> {
        Ok(self.practices.get(&practice_code(ods_code)).cloned())
    }
}

/// A hub signing key held in memory, read from PEM.
#[derive(Debug, Clone)]
pub struct PemSigningKey {
    key: EncodingKey,
    verifier: HubVerifier,
}

impl PemSigningKey {
    /// A PKCS#8 PEM P-256 private key and its public key. The public key is
    /// checked against the private one, so a mix-up of keys fails at
    /// start-up rather than on every call.
    pub fn from_pem(private_key_pem: &[u8], public_key_pem: &[u8]) -> Result<Self, KeyError> {
        let key =
            EncodingKey::from_ec_pem(private_key_pem).map_err(|_| KeyError::NotEs256PrivateKey)?;
        let derived = Jwk::from_encoding_key(&key, Algorithm::ES256)
            .map_err(|_| KeyError::NotEs256PrivateKey)?;
        let verifier = HubVerifier::from_public_pem(public_key_pem)?;
        if derived.algorithm != verifier.jwk().algorithm {
            return Err(KeyError::NotAPair);
        }
        Ok(PemSigningKey { key, verifier })
    }
}

impl HubSigningKey for PemSigningKey {
    fn key_id(&self) -> &str {
        self.verifier.key_id()
    }

    async fn sign(&self, signing_input: &[u8]) -> Result<Vec<u8>, StoreError> {
        let signature = jsonwebtoken::crypto::sign(signing_input, &self.key, Algorithm::ES256)
            .map_err(|error| StoreError::Unavailable(format!("signing failed: {error}")))?;
        URL_SAFE_NO_PAD
            .decode(signature)
            .map_err(|error| StoreError::Unavailable(format!("signing failed: {error}")))
    }
}

impl HubSigner<PemSigningKey> {
    pub fn from_pem(private_key_pem: &[u8], public_key_pem: &[u8]) -> Result<Self, KeyError> {
        PemSigningKey::from_pem(private_key_pem, public_key_pem).map(HubSigner::new)
    }

    /// The verifier of the tokens this signer issues.
    pub fn verifier(&self) -> &HubVerifier {
        &self.key().verifier
    }
}
