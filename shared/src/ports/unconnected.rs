//! Every port for [`Unconnected`]: each call fails with a configuration
//! error naming the port.

use time::OffsetDateTime;

use super::connect::{Unconnected, not_connected};
use super::{
    AuditLog, ClientStore, DeliveryPublisher, DeliveryStats, EventStore, HubSigningKey, Insert,
    Page, QueueMonitor, QueueProvisioner, ReferenceData, RegisterStore, ReplayStore, StoreError,
    SubscriberStore, SubscriptionStore, TopicSubscription, UsedAssertionIds, Versioned,
};
use super::{Recorded, RelationshipStore};
use crate::access::QueueAccess;
use crate::audit::{AuditQuery, AuditRecord};
use crate::auth::Client;
use crate::backfill::BackfillGrant;
use crate::basis::{Basis, Ended};
use crate::catalogue::EventType;
use crate::dispatch::Delivery;
use crate::events::{EventSummary, StoredEvent};
use crate::nhs_number::NhsNumber;
use crate::pchr::ActedFor;
use crate::reference::{Postcode, PostcodeArea};
use crate::relationship::{Relationship, RelationshipChange};
use crate::replay::{Admission, NotStarted, ReplayJob};
use crate::subscriber::{Queues, Subscriber};
use crate::subscription::{DailyCount, Subscription};

impl EventStore for Unconnected {
    async fn insert(&self, _event: &StoredEvent) -> Result<Insert, StoreError> {
        Err(not_connected("EventStore"))
    }

    async fn get(&self, _event_key: &str) -> Result<Option<StoredEvent>, StoreError> {
        Err(not_connected("EventStore"))
    }

    async fn set_withheld(&self, _event_key: &str, _withheld: bool) -> Result<(), StoreError> {
        Err(not_connected("EventStore"))
    }

    async fn get_many(&self, _event_keys: &[String]) -> Result<Vec<StoredEvent>, StoreError> {
        Err(not_connected("EventStore"))
    }

    async fn patient_events(
        &self,
        _nhs_number: NhsNumber,
    ) -> Result<Vec<EventSummary>, StoreError> {
        Err(not_connected("EventStore"))
    }

    async fn received_on(
        &self,
        _day: &str,
        _after: Option<&str>,
        _limit: usize,
    ) -> Result<Page<String>, StoreError> {
        Err(not_connected("EventStore"))
    }
}

impl SubscriptionStore for Unconnected {
    async fn delete(&self, _subscription: &Subscription) -> Result<(), StoreError> {
        Err(not_connected("SubscriptionStore"))
    }

    async fn list_by_subscriber(
        &self,
        _subscriber_id: &str,
        _limit: usize,
        _page_token: Option<&str>,
    ) -> Result<Page<Subscription>, StoreError> {
        Err(not_connected("SubscriptionStore"))
    }

    async fn create(&self, _subscription: &Subscription) -> Result<(), StoreError> {
        Err(not_connected("SubscriptionStore"))
    }

    async fn count_explicit(&self, _count: &DailyCount) -> Result<bool, StoreError> {
        Err(not_connected("SubscriptionStore"))
    }

    async fn get(&self, _id: &str) -> Result<Option<Subscription>, StoreError> {
        Err(not_connected("SubscriptionStore"))
    }

    async fn end(&self, _subscription: &Subscription, _ended: &Ended) -> Result<bool, StoreError> {
        Err(not_connected("SubscriptionStore"))
    }

    async fn assign_basis(
        &self,
        _subscription: &Subscription,
        _basis: &Basis,
    ) -> Result<bool, StoreError> {
        Err(not_connected("SubscriptionStore"))
    }

    async fn replace_backfills(
        &self,
        _subscription: &Subscription,
        _grants: &[BackfillGrant],
    ) -> Result<bool, StoreError> {
        Err(not_connected("SubscriptionStore"))
    }

    async fn explicit_candidates(
        &self,
        _nhs_number: NhsNumber,
        _event_type: EventType,
    ) -> Result<Vec<Subscription>, StoreError> {
        Err(not_connected("SubscriptionStore"))
    }

    async fn generic_candidates(&self, _keys: &[String]) -> Result<Vec<Subscription>, StoreError> {
        Err(not_connected("SubscriptionStore"))
    }
}

impl SubscriberStore for Unconnected {
    async fn create(&self, _subscriber: &Subscriber) -> Result<(), StoreError> {
        Err(not_connected("SubscriberStore"))
    }

    async fn get(&self, _id: &str) -> Result<Option<Subscriber>, StoreError> {
        Err(not_connected("SubscriberStore"))
    }

    async fn save(&self, _subscriber: &Subscriber) -> Result<(), StoreError> {
        Err(not_connected("SubscriberStore"))
    }

    async fn mark_offboarded(&self, _id: &str, _at: &str) -> Result<(), StoreError> {
        Err(not_connected("SubscriberStore"))
    }
}

impl DeliveryPublisher for Unconnected {
    async fn publish(
        &self,
        _event: &StoredEvent,
        _deliveries: &[Delivery],
    ) -> Result<(), StoreError> {
        Err(not_connected("DeliveryPublisher"))
    }
}

impl QueueProvisioner for Unconnected {
    async fn provision(
        &self,
        _subscriber_id: &str,
        _event_types: &[EventType],
        _access: &QueueAccess,
    ) -> Result<Queues, StoreError> {
        Err(not_connected("QueueProvisioner"))
    }

    async fn reconfigure(
        &self,
        _subscriber_id: &str,
        _queues: &Queues,
        _event_types: &[EventType],
        _access: &QueueAccess,
    ) -> Result<Queues, StoreError> {
        Err(not_connected("QueueProvisioner"))
    }

    async fn unsubscribe(&self, _queues: &Queues) -> Result<(), StoreError> {
        Err(not_connected("QueueProvisioner"))
    }
}

impl ClientStore for Unconnected {
    async fn get(&self, _client_id: &str) -> Result<Option<Client>, StoreError> {
        Err(not_connected("ClientStore"))
    }

    async fn register(&self, _client: &Client) -> Result<bool, StoreError> {
        Err(not_connected("ClientStore"))
    }

    async fn disable(&self, _client_id: &str) -> Result<bool, StoreError> {
        Err(not_connected("ClientStore"))
    }

    async fn link_subscriber(
        &self,
        _client_id: &str,
        _subscriber_id: &str,
    ) -> Result<(), StoreError> {
        Err(not_connected("ClientStore"))
    }
}

impl AuditLog for Unconnected {
    async fn record(&self, _record: &AuditRecord) -> Result<(), StoreError> {
        Err(not_connected("AuditLog"))
    }

    async fn record_all(&self, _records: &[AuditRecord]) -> Result<(), StoreError> {
        Err(not_connected("AuditLog"))
    }

    async fn get(&self, _audit_id: &str) -> Result<Option<AuditRecord>, StoreError> {
        Err(not_connected("AuditLog"))
    }

    async fn query(
        &self,
        _query: &AuditQuery,
        _limit: usize,
        _page_token: Option<&str>,
    ) -> Result<Page<AuditRecord>, StoreError> {
        Err(not_connected("AuditLog"))
    }
}

impl ReplayStore for Unconnected {
    async fn start(
        &self,
        _job: &ReplayJob,
        _admission: &Admission,
    ) -> Result<Result<(), NotStarted>, StoreError> {
        Err(not_connected("ReplayStore"))
    }

    async fn release(&self, _job: &ReplayJob) -> Result<(), StoreError> {
        Err(not_connected("ReplayStore"))
    }

    async fn get(&self, _replay_id: &str) -> Result<Option<ReplayJob>, StoreError> {
        Err(not_connected("ReplayStore"))
    }

    async fn save(&self, _job: &ReplayJob) -> Result<bool, StoreError> {
        Err(not_connected("ReplayStore"))
    }
}

impl UsedAssertionIds for Unconnected {
    async fn remember(
        &self,
        _client_id: &str,
        _jti: &str,
        _expires_at: OffsetDateTime,
    ) -> Result<bool, StoreError> {
        Err(not_connected("UsedAssertionIds"))
    }
}

impl RegisterStore for Unconnected {
    async fn get(
        &self,
        _nhs_number: NhsNumber,
    ) -> Result<Option<Versioned<crate::register::ChildRecord>>, StoreError> {
        Err(not_connected("RegisterStore"))
    }

    async fn put(
        &self,
        _record: &crate::register::ChildRecord,
        _expected_version: Option<u64>,
    ) -> Result<bool, StoreError> {
        Err(not_connected("RegisterStore"))
    }
}

impl DeliveryStats for Unconnected {
    async fn record_deliveries(
        &self,
        _event_type: EventType,
        _subscriber_ids: &[&str],
        _at: &str,
    ) -> Result<(), StoreError> {
        Err(not_connected("DeliveryStats"))
    }

    async fn counts(
        &self,
        _subscriber_id: &str,
    ) -> Result<Vec<crate::status::DeliveryCount>, StoreError> {
        Err(not_connected("DeliveryStats"))
    }
}

impl QueueMonitor for Unconnected {
    async fn depth(&self, _queue_url: &str) -> Result<crate::status::QueueDepth, StoreError> {
        Err(not_connected("QueueMonitor"))
    }

    async fn redrive(
        &self,
        _dead_letter_queue_url: &str,
        _queue_url: &str,
        _limits: crate::status::RedriveLimits,
    ) -> Result<crate::status::Redriven, StoreError> {
        Err(not_connected("QueueMonitor"))
    }

    async fn subscription_states(
        &self,
        _queues: &Queues,
    ) -> Result<Vec<TopicSubscription>, StoreError> {
        Err(not_connected("QueueMonitor"))
    }
}

impl ReferenceData for Unconnected {
    async fn postcode_area(
        &self,
        _postcode: &Postcode,
    ) -> Result<Option<PostcodeArea>, StoreError> {
        Err(not_connected("ReferenceData"))
    }

    async fn practice_area(&self, _ods_code: &str) -> Result<Option<String>, StoreError> {
        Err(not_connected("ReferenceData"))
    }
}

impl HubSigningKey for Unconnected {
    /// No key: no token it could sign names one.
    fn key_id(&self) -> &str {
        ""
    }

    async fn sign(&self, _signing_input: &[u8]) -> Result<Vec<u8>, StoreError> {
        Err(not_connected("HubSigningKey"))
    }
}

impl super::EmbargoStore for Unconnected {
    async fn settings(&self) -> Result<crate::embargo::Embargoes, StoreError> {
        Err(not_connected("EmbargoStore"))
    }

    async fn put_setting(
        &self,
        _setting: &crate::embargo::EmbargoSetting,
    ) -> Result<(), StoreError> {
        Err(not_connected("EmbargoStore"))
    }

    async fn remove_setting(
        &self,
        _event_type: EventType,
        _service_type: crate::criteria::ServiceType,
        _at: &str,
    ) -> Result<bool, StoreError> {
        Err(not_connected("EmbargoStore"))
    }

    async fn hold(&self, _hold: &crate::embargo::Hold) -> Result<bool, StoreError> {
        Err(not_connected("EmbargoStore"))
    }

    async fn due(
        &self,
        _day: &str,
        _until: &str,
        _after: Option<&str>,
        _limit: usize,
    ) -> Result<Page<crate::embargo::Hold>, StoreError> {
        Err(not_connected("EmbargoStore"))
    }

    async fn attempt_failed(
        &self,
        _hold: &crate::embargo::Hold,
        _error: &str,
    ) -> Result<(), StoreError> {
        Err(not_connected("EmbargoStore"))
    }

    async fn settle(
        &self,
        _hold: &crate::embargo::Hold,
        _status: crate::embargo::HoldStatus,
        _detail: Option<&str>,
    ) -> Result<bool, StoreError> {
        Err(not_connected("EmbargoStore"))
    }

    async fn held(
        &self,
        _keys: &[(String, String)],
    ) -> Result<std::collections::HashSet<(String, String)>, StoreError> {
        Err(not_connected("EmbargoStore"))
    }

    async fn watermark(&self) -> Result<Option<String>, StoreError> {
        Err(not_connected("EmbargoStore"))
    }

    async fn set_watermark(&self, _day: &str) -> Result<(), StoreError> {
        Err(not_connected("EmbargoStore"))
    }
}

impl RelationshipStore for Unconnected {
    async fn record(&self, _change: &RelationshipChange) -> Result<Recorded, StoreError> {
        Err(not_connected("RelationshipStore"))
    }

    async fn for_child(&self, _child: NhsNumber) -> Result<Vec<Relationship>, StoreError> {
        Err(not_connected("RelationshipStore"))
    }

    async fn between(
        &self,
        _child: NhsNumber,
        _person: NhsNumber,
    ) -> Result<Vec<Relationship>, StoreError> {
        Err(not_connected("RelationshipStore"))
    }

    async fn children_of(&self, _person: NhsNumber) -> Result<Vec<Relationship>, StoreError> {
        Err(not_connected("RelationshipStore"))
    }

    async fn act_for(&self, _acted: &ActedFor) -> Result<(), StoreError> {
        Err(not_connected("RelationshipStore"))
    }

    async fn acted_for(
        &self,
        _subscriber_id: &str,
        _person: NhsNumber,
    ) -> Result<Option<ActedFor>, StoreError> {
        Err(not_connected("RelationshipStore"))
    }

    async fn stop_acting_for(
        &self,
        _subscriber_id: &str,
        _person: NhsNumber,
        _at: &str,
    ) -> Result<bool, StoreError> {
        Err(not_connected("RelationshipStore"))
    }
}
