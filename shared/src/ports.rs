//! Ports: what the use cases (module `app`) need from storage, messaging,
//! reference data and the hub's signing key. The AWS adapters (module `aws`)
//! and the in-memory adapters (module `memory`) implement them. The ports
//! import only domain types; the value types a store answers with that the
//! domain also speaks of (`StoreError`, `Page`, `TopicSubscription`) live in
//! the domain and are re-exported here.

use std::future::Future;

use time::OffsetDateTime;

use crate::access::QueueAccess;
use crate::audit::{AuditQuery, AuditRecord};
use crate::auth::Client;
use crate::backfill::BackfillGrant;
use crate::basis::{Basis, Ended};
use crate::catalogue::EventType;
use crate::dispatch::Delivery;
use crate::events::{EventSummary, OutOfOrder, StoredEvent};
use crate::nhs_number::NhsNumber;
use crate::pchr::ActedFor;
use crate::reference::{Postcode, PostcodeArea, ReferenceAreas, practice_code};
pub use crate::relationship::Recorded;
use crate::relationship::{Relationship, RelationshipChange};
use crate::replay::{Admission, NotStarted, ReplayJob};
pub use crate::status::{SubscriptionState, TopicSubscription};
pub use crate::store::{BoxError, Page, StoreError};
use crate::subscriber::{Queues, Subscriber};
use crate::subscription::{DailyCount, Subscription};

mod by_ref;
mod connect;
mod unconnected;

pub use connect::{Adapters, Unconnected};

/// The result of offering an event to the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Insert {
    /// Stored now: it will be dispatched, flagged if it arrived out of
    /// order (see `events::place`).
    Stored { out_of_order: Option<OutOfOrder> },
    /// The same message (same id, same body) was stored before.
    Duplicate,
    /// The id was stored before with a different body.
    Conflict,
}

pub trait EventStore: Send + Sync {
    /// Stores the event unless one with its id exists (a conditional write),
    /// placing it among the versions of its focus resource in the same
    /// atomic step: it becomes the current version if it is the newest, and
    /// is stored flagged if it is out of order (`events::place`).
    fn insert(
        &self,
        event: &StoredEvent,
    ) -> impl Future<Output = Result<Insert, StoreError>> + Send;

    /// The event stored under `<event type>/<MessageHeader.id>`.
    fn get(
        &self,
        event_key: &str,
    ) -> impl Future<Output = Result<Option<StoredEvent>, StoreError>> + Send;

    /// Marks a stored event withheld (`sensitive`) or releases it: dispatch
    /// withholds an event whose child it finds sensitive after the event was
    /// accepted; an operator releases one (`POST /events/{id}/$release`).
    /// Setting what is already set, or an event that no longer exists, is
    /// no error.
    fn set_withheld(
        &self,
        event_key: &str,
        withheld: bool,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// The events stored under these keys (at most 100), in no set order;
    /// keys with no event are left out.
    fn get_many(
        &self,
        event_keys: &[String],
    ) -> impl Future<Output = Result<Vec<StoredEvent>, StoreError>> + Send;

    /// Every stored event about this patient, without payloads, oldest
    /// arrival first.
    fn patient_events(
        &self,
        nhs_number: NhsNumber,
    ) -> impl Future<Output = Result<Vec<EventSummary>, StoreError>> + Send;

    /// The positions (`received_sort`: arrival time, '#', event key) of the
    /// events accepted on one day (YYYY-MM-DD), in order, after the
    /// position `after`, `limit` at most; `next` is set when more may follow.
    fn received_on(
        &self,
        day: &str,
        after: Option<&str>,
        limit: usize,
    ) -> impl Future<Output = Result<Page<String>, StoreError>> + Send;
}

pub trait SubscriptionStore: Send + Sync {
    /// Removes the subscription and its match items together.
    fn delete(
        &self,
        subscription: &Subscription,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// A subscriber's subscriptions, `limit` at a time, from the page the
    /// token names (an opaque token a previous page returned).
    fn list_by_subscriber(
        &self,
        subscriber_id: &str,
        limit: usize,
        page_token: Option<&str>,
    ) -> impl Future<Output = Result<Page<Subscription>, StoreError>> + Send;
    fn create(
        &self,
        subscription: &Subscription,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Counts one more explicit subscription on the subscriber's count of
    /// the day, atomically: false, and nothing counted, when the count has
    /// reached its limit.
    fn count_explicit(
        &self,
        count: &DailyCount,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    fn get(
        &self,
        id: &str,
    ) -> impl Future<Output = Result<Option<Subscription>, StoreError>> + Send;

    /// Records that the subscription's basis was lost, on it and on every
    /// copy dispatch reads, together: false, and nothing changed, when it
    /// had already ended (a retried dispatch, or two events racing). Never a
    /// delete: the owner still reads why it stopped.
    fn end(
        &self,
        subscription: &Subscription,
        ended: &Ended,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Records the basis of a subscription made before bases were recorded
    /// (the migration), on it and on every copy: false, and nothing
    /// changed, when it already had one.
    fn assign_basis(
        &self,
        subscription: &Subscription,
        basis: &Basis,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Records the subscription's backfill grants (crate::backfill), on it
    /// and on every copy, over the list it was read with: false, and
    /// nothing changed, when they changed since or it was deleted.
    fn replace_backfills(
        &self,
        subscription: &Subscription,
        grants: &[BackfillGrant],
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// The explicit subscriptions for one patient and event type: the only
    /// candidates an event can match, found with one keyed read.
    fn explicit_candidates(
        &self,
        nhs_number: NhsNumber,
        event_type: EventType,
    ) -> impl Future<Output = Result<Vec<Subscription>, StoreError>> + Send;

    /// The generic subscriptions stored under these keys
    /// (`generic::match_keys`: at most ten, one keyed read each).
    fn generic_candidates(
        &self,
        keys: &[String],
    ) -> impl Future<Output = Result<Vec<Subscription>, StoreError>> + Send;
}

pub trait SubscriberStore: Send + Sync {
    fn create(
        &self,
        subscriber: &Subscriber,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    fn get(&self, id: &str) -> impl Future<Output = Result<Option<Subscriber>, StoreError>> + Send;

    /// Replaces the record of an existing subscriber (a change of its event
    /// types or of who reads its queue).
    fn save(&self, subscriber: &Subscriber) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Records that the subscriber was offboarded (its record stays, for the
    /// audit trail and the queue's grace period).
    fn mark_offboarded(
        &self,
        id: &str,
        at: &str,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
}

/// Sends deliveries to the event type's topic, one message per recipient.
pub trait DeliveryPublisher: Send + Sync {
    fn publish(
        &self,
        event: &StoredEvent,
        deliveries: &[Delivery],
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
}

/// Creates a subscriber's queue and DLQ (or takes the queue it owns) and
/// wires them to the topics of the event types it may receive.
pub trait QueueProvisioner: Send + Sync {
    fn provision(
        &self,
        subscriber_id: &str,
        event_types: &[EventType],
        access: &QueueAccess,
    ) -> impl Future<Output = Result<Queues, StoreError>> + Send;

    /// Brings a subscriber's wiring to new event types and a new reader:
    /// topic subscriptions added (first) and removed, queue policies and
    /// key grants replaced. The queues, and what they hold, stay.
    fn reconfigure(
        &self,
        subscriber_id: &str,
        queues: &Queues,
        event_types: &[EventType],
        access: &QueueAccess,
    ) -> impl Future<Output = Result<Queues, StoreError>> + Send;

    /// Removes the queue's topic subscriptions: nothing more is delivered to
    /// it. The queues themselves stay, so nothing already delivered is lost.
    fn unsubscribe(&self, queues: &Queues) -> impl Future<Output = Result<(), StoreError>> + Send;
}

/// The client systems registered with the hub, by client id.
pub trait ClientStore: Send + Sync {
    fn get(
        &self,
        client_id: &str,
    ) -> impl Future<Output = Result<Option<Client>, StoreError>> + Send;

    /// Registers the client, or replaces its registration (new keys, new
    /// permissions) keeping the subscriber it is linked to. True when new.
    fn register(&self, client: &Client) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Disables the client: its tokens stop working at once. False when no
    /// such client is registered.
    fn disable(&self, client_id: &str) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Records that the client acts as this subscriber.
    fn link_subscriber(
        &self,
        client_id: &str,
        subscriber_id: &str,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
}

/// The audit trail. Records are only ever added.
pub trait AuditLog: Send + Sync {
    fn record(&self, record: &AuditRecord) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Several records at once (a dispatch's deliveries). Writing a record
    /// whose id exists leaves one record.
    fn record_all(
        &self,
        records: &[AuditRecord],
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    fn get(
        &self,
        audit_id: &str,
    ) -> impl Future<Output = Result<Option<AuditRecord>, StoreError>> + Send;

    /// A patient's or a client's records, newest first, a page at a time.
    fn query(
        &self,
        query: &AuditQuery,
        limit: usize,
        page_token: Option<&str>,
    ) -> impl Future<Output = Result<Page<AuditRecord>, StoreError>> + Send;
}

/// Replay jobs: started once, then saved by the worker step by step.
pub trait ReplayStore: Send + Sync {
    /// Stores the new job, holding its subscription (no other replay of it
    /// may start while the hold lasts) and counting it against its
    /// subscriber's quota of the day, as one conditional write: concurrent
    /// starts cannot both pass. A refusal stores nothing.
    fn start(
        &self,
        job: &ReplayJob,
        admission: &Admission,
    ) -> impl Future<Output = Result<Result<(), NotStarted>, StoreError>> + Send;

    /// Ends the hold the job took on its subscription, once the job is no
    /// longer running; nothing when another replay holds it now.
    fn release(&self, job: &ReplayJob) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// The job as last saved (a strongly consistent read).
    fn get(
        &self,
        replay_id: &str,
    ) -> impl Future<Output = Result<Option<ReplayJob>, StoreError>> + Send;

    /// Saves the job if the stored one is still at `job.revision - 1`;
    /// false when another save came first.
    fn save(&self, job: &ReplayJob) -> impl Future<Output = Result<bool, StoreError>> + Send;
}

/// Remembers the ids (`jti`) of the client assertions already exchanged, so
/// that a captured assertion cannot be exchanged a second time within its
/// lifetime. (Its table is the template's `ReplayTable`, REPLAY_TABLE: a
/// replayed assertion, nothing to do with the replay jobs of `ReplayStore`.)
pub trait UsedAssertionIds: Send + Sync {
    /// Records the client's `jti`; true when it was not seen before. The
    /// record may be forgotten after `expires_at`, when the assertion that
    /// carried it is refused as expired anyway.
    fn remember(
        &self,
        client_id: &str,
        jti: &str,
        expires_at: OffsetDateTime,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;
}

/// A stored value with the version it was read at: what a conditional
/// write checks against.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Versioned<T> {
    pub value: T,
    /// 1 for the first write, one more for each write after it.
    pub version: u64,
}

/// The child register: one record per NHS number. Dispatches run in
/// parallel (one per stream shard), so a record is written only if nobody
/// wrote it since it was read (optimistic locking on its version).
pub trait RegisterStore: Send + Sync {
    fn get(
        &self,
        nhs_number: NhsNumber,
    ) -> impl Future<Output = Result<Option<Versioned<crate::register::ChildRecord>>, StoreError>> + Send;

    /// Writes the record at version `expected_version + 1` (1 when None)
    /// if the stored version is still `expected_version` (None: no record
    /// may exist yet). False when it is not: another dispatch wrote the
    /// child meanwhile, and the caller reads again.
    fn put(
        &self,
        record: &crate::register::ChildRecord,
        expected_version: Option<u64>,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;
}

/// How many messages the hub sent each subscriber, per event type, and
/// when it last did (`status` module).
pub trait DeliveryStats: Send + Sync {
    /// Adds one delivery of `event_type` to the count of each subscriber,
    /// and makes `at` (audit::timestamp form) its last delivery time.
    fn record_deliveries(
        &self,
        event_type: EventType,
        subscriber_ids: &[&str],
        at: &str,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// A subscriber's counts, one per event type it was ever sent.
    fn counts(
        &self,
        subscriber_id: &str,
    ) -> impl Future<Output = Result<Vec<crate::status::DeliveryCount>, StoreError>> + Send;
}

/// Looks into subscriber queues: their depth, and moving what a DLQ holds
/// back to its queue.
pub trait QueueMonitor: Send + Sync {
    fn depth(
        &self,
        queue_url: &str,
    ) -> impl Future<Output = Result<crate::status::QueueDepth, StoreError>> + Send;

    /// Moves messages from the DLQ to the queue, bodies and message
    /// attributes unchanged, each sent before it is deleted from the DLQ
    /// (a failure in between leaves a copy in both, never in neither),
    /// until the DLQ is empty or a limit is reached.
    fn redrive(
        &self,
        dead_letter_queue_url: &str,
        queue_url: &str,
        limits: crate::status::RedriveLimits,
    ) -> impl Future<Output = Result<crate::status::Redriven, StoreError>> + Send;

    /// The state of each of the queue's topic subscriptions (a queue in
    /// another account is pending until its owner confirms).
    fn subscription_states(
        &self,
        queues: &Queues,
    ) -> impl Future<Output = Result<Vec<TopicSubscription>, StoreError>> + Send;
}

/// Looks up reference data. A failed lookup is an error, not `None`: an
/// unreachable table must fail (and retry) a dispatch, not pass for "unknown
/// postcode" and quietly deliver to no area subscriber.
pub trait ReferenceData: Send + Sync {
    /// The areas of a postcode, live or terminated; None if it is unknown.
    fn postcode_area(
        &self,
        postcode: &Postcode,
    ) -> impl Future<Output = Result<Option<PostcodeArea>, StoreError>> + Send;

    /// The sub-ICB location (ODS code) of a practice; None if it is unknown.
    fn practice_area(
        &self,
        ods_code: &str,
    ) -> impl Future<Output = Result<Option<String>, StoreError>> + Send;

    /// Several postcodes and practices at once (an event names at most two
    /// of each): the DynamoDB adapter answers with one BatchGetItem, so
    /// dispatch makes one reference read per event. This default asks the
    /// single lookups one after the other.
    fn locate_many(
        &self,
        postcodes: &[&Postcode],
        practices: &[&str],
    ) -> impl Future<Output = Result<ReferenceAreas, StoreError>> + Send {
        async move {
            let mut areas = ReferenceAreas::default();
            for postcode in postcodes {
                if let Some(area) = self.postcode_area(postcode).await? {
                    areas.postcodes.insert((*postcode).clone(), area);
                }
            }
            for practice in practices {
                if let Some(icb) = self.practice_area(practice).await? {
                    areas.practices.insert(practice_code(practice), icb);
                }
            }
            Ok(areas)
        }
    }
}

/// Release embargoes (crate::embargo): the operators' settings and the
/// deliveries held until their release.
pub trait EmbargoStore: Send + Sync {
    /// The settings in effect (one keyed read).
    fn settings(
        &self,
    ) -> impl Future<Output = Result<crate::embargo::Embargoes, StoreError>> + Send;

    /// Sets or replaces the setting of its event type and service type.
    fn put_setting(
        &self,
        setting: &crate::embargo::EmbargoSetting,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Ends the setting (kept, marked removed: functions delete nothing);
    /// false when none was in effect.
    fn remove_setting(
        &self,
        event_type: EventType,
        service_type: crate::criteria::ServiceType,
        at: &str,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Stores a new hold and its index item together, each only if absent:
    /// false, and nothing changed, when the delivery was held before (a
    /// retried dispatch).
    fn hold(
        &self,
        hold: &crate::embargo::Hold,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// The holds still held on `day` (YYYY-MM-DD) whose release is at or
    /// before `until` (audit::timestamp form), in order of release, after
    /// the hold whose `due_key` is `after`; `next` (a due key) is set when
    /// more may follow.
    fn due(
        &self,
        day: &str,
        until: &str,
        after: Option<&str>,
        limit: usize,
    ) -> impl Future<Output = Result<Page<crate::embargo::Hold>, StoreError>> + Send;

    /// Counts a failed attempt at releasing the hold, with why.
    fn attempt_failed(
        &self,
        hold: &crate::embargo::Hold,
        error: &str,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Marks a held hold released or cancelled, with its index item, only
    /// while it is held: false when it no longer was.
    fn settle(
        &self,
        hold: &crate::embargo::Hold,
        status: crate::embargo::HoldStatus,
        detail: Option<&str>,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Which of these (event key, subscriber id) pairs are still held (one
    /// batch read of the index items).
    fn held(
        &self,
        keys: &[(String, String)],
    ) -> impl Future<Output = Result<std::collections::HashSet<(String, String)>, StoreError>> + Send;

    /// The oldest day that may still hold held items; None before the first
    /// release run.
    fn watermark(&self) -> impl Future<Output = Result<Option<String>, StoreError>> + Send;

    fn set_watermark(&self, day: &str) -> impl Future<Output = Result<(), StoreError>> + Send;
}

/// Parent and carer relationships, and the relationship events seen
/// (docs/architecture.md, the relationships table).
pub trait RelationshipStore: Send + Sync {
    /// Records a relationship event: the event as seen (keyed on its source
    /// and Bundle.id, with the SHA-256 of its body) and the relationship it
    /// states, in one atomic step. The same event again is `Duplicate`, its
    /// id with another body `Conflict` (neither changes anything); a
    /// statement no newer than the one held (`sourceLastUpdated`) is
    /// recorded as seen and otherwise ignored (`OutOfOrder`).
    fn record(
        &self,
        change: &RelationshipChange,
    ) -> impl Future<Output = Result<Recorded, StoreError>> + Send;

    /// Every relationship held for the child, active or not.
    fn for_child(
        &self,
        child: NhsNumber,
    ) -> impl Future<Output = Result<Vec<Relationship>, StoreError>> + Send;

    /// The relationships between the child and the person, one per source.
    fn between(
        &self,
        child: NhsNumber,
        person: NhsNumber,
    ) -> impl Future<Output = Result<Vec<Relationship>, StoreError>> + Send;

    /// Every relationship held for the person, to any child (an index read:
    /// a change of a moment ago may be missing).
    fn children_of(
        &self,
        person: NhsNumber,
    ) -> impl Future<Output = Result<Vec<Relationship>, StoreError>> + Send;

    /// Records that a PCHR (its subscriber) acts for a person, replacing
    /// an earlier attestation of the same person.
    fn act_for(&self, acted: &ActedFor) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// The PCHR's attestation of the person, ended or not (a consistent
    /// read: an attestation ended a moment ago must not still count).
    fn acted_for(
        &self,
        subscriber_id: &str,
        person: NhsNumber,
    ) -> impl Future<Output = Result<Option<ActedFor>, StoreError>> + Send;

    /// Ends the PCHR's acting for the person (kept, for the trail): false
    /// when it was not acting for them.
    fn stop_acting_for(
        &self,
        subscriber_id: &str,
        person: NhsNumber,
        at: &str,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;
}

/// A key the hub signs its access tokens with: ES256. Deployed, a KMS key
/// whose private half never leaves KMS; in tests, a PEM key.
pub trait HubSigningKey: Send + Sync {
    /// The `kid` of the tokens it signs: its public key's thumbprint.
    fn key_id(&self) -> &str;

    /// The ES256 signature of `signing_input`, as JWS wants it: r || s.
    fn sign(
        &self,
        signing_input: &[u8],
    ) -> impl Future<Output = Result<Vec<u8>, StoreError>> + Send;
}

/// Every port a handler may need, one associated type each: a handler
/// takes one `P: Ports` instead of a type parameter per port. A function
/// builds an [`Adapters`] with the adapters it uses (the others are
/// [`Unconnected`]); tests use `memory::MemoryPorts`.
pub trait Ports: Send + Sync {
    type Events: EventStore;
    type Subscriptions: SubscriptionStore;
    type Subscribers: SubscriberStore;
    type Publisher: DeliveryPublisher;
    type Provisioner: QueueProvisioner;
    type Clients: ClientStore;
    type Audit: AuditLog;
    type Replays: ReplayStore;
    type UsedIds: UsedAssertionIds;
    type Register: RegisterStore;
    type Stats: DeliveryStats;
    type Queues: QueueMonitor;
    type Reference: ReferenceData;
    type SigningKey: HubSigningKey;
    type Embargoes: EmbargoStore;
    type Relationships: RelationshipStore;

    /// The accepted events.
    fn events(&self) -> &Self::Events;

    /// The subscriptions and their match items.
    fn subscriptions(&self) -> &Self::Subscriptions;

    /// The subscribers.
    fn subscribers(&self) -> &Self::Subscribers;

    /// The event types' topics.
    fn publisher(&self) -> &Self::Publisher;

    /// Creates and wires subscriber queues.
    fn provisioner(&self) -> &Self::Provisioner;

    /// The registered client systems.
    fn clients(&self) -> &Self::Clients;

    /// The audit trail.
    fn audit(&self) -> &Self::Audit;

    /// The replay jobs.
    fn replays(&self) -> &Self::Replays;

    /// The client assertion ids already exchanged.
    fn used_ids(&self) -> &Self::UsedIds;

    /// The child register.
    fn register(&self) -> &Self::Register;

    /// The delivery counts.
    fn stats(&self) -> &Self::Stats;

    /// Looks into subscriber queues.
    fn queues(&self) -> &Self::Queues;

    /// The reference data (postcodes, practices).
    fn reference(&self) -> &Self::Reference;

    /// The key the hub signs its access tokens with.
    fn signing_key(&self) -> &Self::SigningKey;

    /// The release embargoes and the held deliveries.
    fn embargoes(&self) -> &Self::Embargoes;
    /// The parent and carer relationships.
    fn relationships(&self) -> &Self::Relationships;
}
