//! In-memory adapters of the ports: real implementations, for unit tests
//! and benchmarks of the domain without AWS.
//!
//! One file per group of ports; every adapter is re-exported here.

use crate::ports::StoreError;

mod clients;
mod embargoes;
mod events;
mod messaging;
mod records;
mod reference;
mod relationships;
mod subscriptions;

pub use clients::{MemoryClientStore, MemoryUsedAssertionIds, PemSigningKey};
pub use embargoes::MemoryEmbargoStore;
pub use events::MemoryEventStore;
pub use messaging::{
    MemoryDeliveryStats, MemoryPublisher, MemoryQueueProvisioner, MemoryQueues, QueuedMessage,
    SentMessage,
};
pub use records::{MemoryAuditLog, MemoryRegisterStore, MemoryReplayStore};
pub use reference::MemoryReferenceData;
pub use relationships::MemoryRelationshipStore;
pub use subscriptions::{MemorySubscriberStore, MemorySubscriptionStore};

pub(crate) fn poisoned() -> StoreError {
    StoreError::Unavailable("in-memory store lock poisoned".into())
}

/// Every in-memory adapter, one per port: the `Ports` of the tests and
/// benchmarks. The hub's signing key is none until a test sets one (a
/// token asked for without it fails as an unconnected port would).
#[derive(Default)]
pub struct MemoryPorts {
    pub events: MemoryEventStore,
    pub subscriptions: MemorySubscriptionStore,
    pub subscribers: MemorySubscriberStore,
    pub publisher: MemoryPublisher,
    pub provisioner: MemoryQueueProvisioner,
    pub clients: MemoryClientStore,
    pub audit: MemoryAuditLog,
    pub replays: MemoryReplayStore,
    pub used_ids: MemoryUsedAssertionIds,
    pub register: MemoryRegisterStore,
    pub stats: MemoryDeliveryStats,
    pub queues: MemoryQueues,
    pub reference: MemoryReferenceData,
    pub signing_key: Option<PemSigningKey>,
    pub embargoes: MemoryEmbargoStore,
    pub relationships: MemoryRelationshipStore,
}

impl crate::ports::Ports for MemoryPorts {
    type Events = MemoryEventStore;
    type Subscriptions = MemorySubscriptionStore;
    type Subscribers = MemorySubscriberStore;
    type Publisher = MemoryPublisher;
    type Provisioner = MemoryQueueProvisioner;
    type Clients = MemoryClientStore;
    type Audit = MemoryAuditLog;
    type Replays = MemoryReplayStore;
    type UsedIds = MemoryUsedAssertionIds;
    type Register = MemoryRegisterStore;
    type Stats = MemoryDeliveryStats;
    type Queues = MemoryQueues;
    type Reference = MemoryReferenceData;
    type SigningKey = Option<PemSigningKey>;
    type Embargoes = MemoryEmbargoStore;
    type Relationships = MemoryRelationshipStore;

    fn events(&self) -> &MemoryEventStore {
        &self.events
    }

    fn subscriptions(&self) -> &MemorySubscriptionStore {
        &self.subscriptions
    }

    fn subscribers(&self) -> &MemorySubscriberStore {
        &self.subscribers
    }

    fn publisher(&self) -> &MemoryPublisher {
        &self.publisher
    }

    fn provisioner(&self) -> &MemoryQueueProvisioner {
        &self.provisioner
    }

    fn clients(&self) -> &MemoryClientStore {
        &self.clients
    }

    fn audit(&self) -> &MemoryAuditLog {
        &self.audit
    }

    fn replays(&self) -> &MemoryReplayStore {
        &self.replays
    }

    fn used_ids(&self) -> &MemoryUsedAssertionIds {
        &self.used_ids
    }

    fn register(&self) -> &MemoryRegisterStore {
        &self.register
    }

    fn stats(&self) -> &MemoryDeliveryStats {
        &self.stats
    }

    fn queues(&self) -> &MemoryQueues {
        &self.queues
    }

    fn reference(&self) -> &MemoryReferenceData {
        &self.reference
    }

    fn signing_key(&self) -> &Option<PemSigningKey> {
        &self.signing_key
    }

    fn embargoes(&self) -> &MemoryEmbargoStore {
        &self.embargoes
    }

    fn relationships(&self) -> &MemoryRelationshipStore {
        &self.relationships
    }
}
