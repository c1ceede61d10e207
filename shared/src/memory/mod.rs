//! In-memory adapters of the ports: real implementations, for unit tests
//! and benchmarks of the domain without AWS.
//!
//! One file per group of ports; every adapter is re-exported here.

use crate::ports::StoreError;

mod clients;
mod events;
mod messaging;
mod records;
mod reference;
mod subscriptions;

pub use clients::{MemoryClientStore, MemoryUsedAssertionIds, PemSigningKey};
pub use events::MemoryEventStore;
pub use messaging::{
    MemoryDeliveryStats, MemoryPublisher, MemoryQueueProvisioner, MemoryQueues, QueuedMessage,
    SentMessage,
};
pub use records::{MemoryAuditLog, MemoryRegisterStore, MemoryReplayStore};
pub use reference::MemoryReferenceData;
pub use subscriptions::{MemorySubscriberStore, MemorySubscriptionStore};

pub(crate) fn poisoned() -> StoreError {
    StoreError::Unavailable("in-memory store lock poisoned".into())
}
