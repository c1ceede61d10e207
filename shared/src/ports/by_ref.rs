//! Every port for a reference to an adapter: an `Adapters` set may borrow
//! adapters it does not own (the replay worker's single subscription, a
//! test's stores). Each call is the adapter's own, default methods included.

use std::future::Future;

use time::OffsetDateTime;

use crate::backfill::BackfillGrant;
use crate::basis::{Basis, Ended};
use crate::pchr::ActedFor;

use super::{
    AuditLog, ClientStore, DeliveryPublisher, DeliveryStats, EventStore, HubSigningKey, Insert,
    Page, QueueMonitor, QueueProvisioner, ReferenceData, RegisterStore, ReplayStore, StoreError,
    SubscriberStore, SubscriptionStore, TopicSubscription, UsedAssertionIds, Versioned,
};
use super::{Recorded, RelationshipStore};
use crate::access::QueueAccess;
use crate::audit::{AuditQuery, AuditRecord};
use crate::auth::Client;
use crate::catalogue::EventType;
use crate::dispatch::Delivery;
use crate::events::{EventSummary, StoredEvent};
use crate::nhs_number::NhsNumber;
use crate::reference::{Postcode, PostcodeArea, ReferenceAreas};
use crate::relationship::{Relationship, RelationshipChange};
use crate::replay::{Admission, NotStarted, ReplayJob};
use crate::subscriber::{Queues, Subscriber};
use crate::subscription::{DailyCount, Subscription};

impl<T: EventStore + ?Sized> EventStore for &T {
    fn insert(
        &self,
        event: &StoredEvent,
    ) -> impl Future<Output = Result<Insert, StoreError>> + Send {
        (**self).insert(event)
    }

    fn get(
        &self,
        event_key: &str,
    ) -> impl Future<Output = Result<Option<StoredEvent>, StoreError>> + Send {
        (**self).get(event_key)
    }

    fn set_withheld(
        &self,
        event_key: &str,
        withheld: bool,
    ) -> impl Future<Output = Result<(), StoreError>> + Send {
        (**self).set_withheld(event_key, withheld)
    }

    fn get_many(
        &self,
        event_keys: &[String],
    ) -> impl Future<Output = Result<Vec<StoredEvent>, StoreError>> + Send {
        (**self).get_many(event_keys)
    }

    fn patient_events(
        &self,
        nhs_number: NhsNumber,
    ) -> impl Future<Output = Result<Vec<EventSummary>, StoreError>> + Send {
        (**self).patient_events(nhs_number)
    }

    fn received_on(
        &self,
        day: &str,
        after: Option<&str>,
        limit: usize,
    ) -> impl Future<Output = Result<Page<String>, StoreError>> + Send {
        (**self).received_on(day, after, limit)
    }
}

impl<T: SubscriptionStore + ?Sized> SubscriptionStore for &T {
    fn delete(
        &self,
        subscription: &Subscription,
    ) -> impl Future<Output = Result<(), StoreError>> + Send {
        (**self).delete(subscription)
    }

    fn list_by_subscriber(
        &self,
        subscriber_id: &str,
        limit: usize,
        page_token: Option<&str>,
    ) -> impl Future<Output = Result<Page<Subscription>, StoreError>> + Send {
        (**self).list_by_subscriber(subscriber_id, limit, page_token)
    }

    fn create(
        &self,
        subscription: &Subscription,
    ) -> impl Future<Output = Result<(), StoreError>> + Send {
        (**self).create(subscription)
    }

    fn count_explicit(
        &self,
        count: &DailyCount,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send {
        (**self).count_explicit(count)
    }

    fn get(
        &self,
        id: &str,
    ) -> impl Future<Output = Result<Option<Subscription>, StoreError>> + Send {
        (**self).get(id)
    }

    fn end(
        &self,
        subscription: &Subscription,
        ended: &Ended,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send {
        (**self).end(subscription, ended)
    }

    fn assign_basis(
        &self,
        subscription: &Subscription,
        basis: &Basis,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send {
        (**self).assign_basis(subscription, basis)
    }

    fn replace_backfills(
        &self,
        subscription: &Subscription,
        grants: &[BackfillGrant],
    ) -> impl Future<Output = Result<bool, StoreError>> + Send {
        (**self).replace_backfills(subscription, grants)
    }

    fn explicit_candidates(
        &self,
        nhs_number: NhsNumber,
        event_type: EventType,
    ) -> impl Future<Output = Result<Vec<Subscription>, StoreError>> + Send {
        (**self).explicit_candidates(nhs_number, event_type)
    }

    fn generic_candidates(
        &self,
        keys: &[String],
    ) -> impl Future<Output = Result<Vec<Subscription>, StoreError>> + Send {
        (**self).generic_candidates(keys)
    }
}

impl<T: SubscriberStore + ?Sized> SubscriberStore for &T {
    fn create(
        &self,
        subscriber: &Subscriber,
    ) -> impl Future<Output = Result<(), StoreError>> + Send {
        (**self).create(subscriber)
    }

    fn get(&self, id: &str) -> impl Future<Output = Result<Option<Subscriber>, StoreError>> + Send {
        (**self).get(id)
    }

    fn save(&self, subscriber: &Subscriber) -> impl Future<Output = Result<(), StoreError>> + Send {
        (**self).save(subscriber)
    }

    fn mark_offboarded(
        &self,
        id: &str,
        at: &str,
    ) -> impl Future<Output = Result<(), StoreError>> + Send {
        (**self).mark_offboarded(id, at)
    }
}

impl<T: DeliveryPublisher + ?Sized> DeliveryPublisher for &T {
    fn publish(
        &self,
        event: &StoredEvent,
        deliveries: &[Delivery],
    ) -> impl Future<Output = Result<(), StoreError>> + Send {
        (**self).publish(event, deliveries)
    }
}

impl<T: QueueProvisioner + ?Sized> QueueProvisioner for &T {
    fn provision(
        &self,
        subscriber_id: &str,
        event_types: &[EventType],
        access: &QueueAccess,
    ) -> impl Future<Output = Result<Queues, StoreError>> + Send {
        (**self).provision(subscriber_id, event_types, access)
    }

    fn reconfigure(
        &self,
        subscriber_id: &str,
        queues: &Queues,
        event_types: &[EventType],
        access: &QueueAccess,
    ) -> impl Future<Output = Result<Queues, StoreError>> + Send {
        (**self).reconfigure(subscriber_id, queues, event_types, access)
    }

    fn unsubscribe(&self, queues: &Queues) -> impl Future<Output = Result<(), StoreError>> + Send {
        (**self).unsubscribe(queues)
    }
}

impl<T: ClientStore + ?Sized> ClientStore for &T {
    fn get(
        &self,
        client_id: &str,
    ) -> impl Future<Output = Result<Option<Client>, StoreError>> + Send {
        (**self).get(client_id)
    }

    fn register(&self, client: &Client) -> impl Future<Output = Result<bool, StoreError>> + Send {
        (**self).register(client)
    }

    fn disable(&self, client_id: &str) -> impl Future<Output = Result<bool, StoreError>> + Send {
        (**self).disable(client_id)
    }

    fn link_subscriber(
        &self,
        client_id: &str,
        subscriber_id: &str,
    ) -> impl Future<Output = Result<(), StoreError>> + Send {
        (**self).link_subscriber(client_id, subscriber_id)
    }
}

impl<T: AuditLog + ?Sized> AuditLog for &T {
    fn record(&self, record: &AuditRecord) -> impl Future<Output = Result<(), StoreError>> + Send {
        (**self).record(record)
    }

    fn record_all(
        &self,
        records: &[AuditRecord],
    ) -> impl Future<Output = Result<(), StoreError>> + Send {
        (**self).record_all(records)
    }

    fn get(
        &self,
        audit_id: &str,
    ) -> impl Future<Output = Result<Option<AuditRecord>, StoreError>> + Send {
        (**self).get(audit_id)
    }

    fn query(
        &self,
        query: &AuditQuery,
        limit: usize,
        page_token: Option<&str>,
    ) -> impl Future<Output = Result<Page<AuditRecord>, StoreError>> + Send {
        (**self).query(query, limit, page_token)
    }
}

impl<T: ReplayStore + ?Sized> ReplayStore for &T {
    fn start(
        &self,
        job: &ReplayJob,
        admission: &Admission,
    ) -> impl Future<Output = Result<Result<(), NotStarted>, StoreError>> + Send {
        (**self).start(job, admission)
    }

    fn release(&self, job: &ReplayJob) -> impl Future<Output = Result<(), StoreError>> + Send {
        (**self).release(job)
    }

    fn get(
        &self,
        replay_id: &str,
    ) -> impl Future<Output = Result<Option<ReplayJob>, StoreError>> + Send {
        (**self).get(replay_id)
    }

    fn save(&self, job: &ReplayJob) -> impl Future<Output = Result<bool, StoreError>> + Send {
        (**self).save(job)
    }
}

impl<T: UsedAssertionIds + ?Sized> UsedAssertionIds for &T {
    fn remember(
        &self,
        client_id: &str,
        jti: &str,
        expires_at: OffsetDateTime,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send {
        (**self).remember(client_id, jti, expires_at)
    }
}

impl<T: RegisterStore + ?Sized> RegisterStore for &T {
    fn get(
        &self,
        nhs_number: NhsNumber,
    ) -> impl Future<Output = Result<Option<Versioned<crate::register::ChildRecord>>, StoreError>> + Send
    {
        (**self).get(nhs_number)
    }

    fn put(
        &self,
        record: &crate::register::ChildRecord,
        expected_version: Option<u64>,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send {
        (**self).put(record, expected_version)
    }
}

impl<T: DeliveryStats + ?Sized> DeliveryStats for &T {
    fn record_deliveries(
        &self,
        event_type: EventType,
        subscriber_ids: &[&str],
        at: &str,
    ) -> impl Future<Output = Result<(), StoreError>> + Send {
        (**self).record_deliveries(event_type, subscriber_ids, at)
    }

    fn counts(
        &self,
        subscriber_id: &str,
    ) -> impl Future<Output = Result<Vec<crate::status::DeliveryCount>, StoreError>> + Send {
        (**self).counts(subscriber_id)
    }
}

impl<T: QueueMonitor + ?Sized> QueueMonitor for &T {
    fn depth(
        &self,
        queue_url: &str,
    ) -> impl Future<Output = Result<crate::status::QueueDepth, StoreError>> + Send {
        (**self).depth(queue_url)
    }

    fn redrive(
        &self,
        dead_letter_queue_url: &str,
        queue_url: &str,
        limits: crate::status::RedriveLimits,
    ) -> impl Future<Output = Result<crate::status::Redriven, StoreError>> + Send {
        (**self).redrive(dead_letter_queue_url, queue_url, limits)
    }

    fn subscription_states(
        &self,
        queues: &Queues,
    ) -> impl Future<Output = Result<Vec<TopicSubscription>, StoreError>> + Send {
        (**self).subscription_states(queues)
    }
}

impl<T: ReferenceData + ?Sized> ReferenceData for &T {
    fn postcode_area(
        &self,
        postcode: &Postcode,
    ) -> impl Future<Output = Result<Option<PostcodeArea>, StoreError>> + Send {
        (**self).postcode_area(postcode)
    }

    fn practice_area(
        &self,
        ods_code: &str,
    ) -> impl Future<Output = Result<Option<String>, StoreError>> + Send {
        (**self).practice_area(ods_code)
    }

    fn locate_many(
        &self,
        postcodes: &[&Postcode],
        practices: &[&str],
    ) -> impl Future<Output = Result<ReferenceAreas, StoreError>> + Send {
        (**self).locate_many(postcodes, practices)
    }
}

impl<T: HubSigningKey + ?Sized> HubSigningKey for &T {
    fn key_id(&self) -> &str {
        (**self).key_id()
    }

    fn sign(
        &self,
        signing_input: &[u8],
    ) -> impl Future<Output = Result<Vec<u8>, StoreError>> + Send {
        (**self).sign(signing_input)
    }
}

impl<T: super::EmbargoStore + ?Sized> super::EmbargoStore for &T {
    fn settings(
        &self,
    ) -> impl Future<Output = Result<crate::embargo::Embargoes, StoreError>> + Send {
        (**self).settings()
    }

    fn put_setting(
        &self,
        setting: &crate::embargo::EmbargoSetting,
    ) -> impl Future<Output = Result<(), StoreError>> + Send {
        (**self).put_setting(setting)
    }

    fn remove_setting(
        &self,
        event_type: EventType,
        service_type: crate::criteria::ServiceType,
        at: &str,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send {
        (**self).remove_setting(event_type, service_type, at)
    }

    fn hold(
        &self,
        hold: &crate::embargo::Hold,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send {
        (**self).hold(hold)
    }

    fn due(
        &self,
        day: &str,
        until: &str,
        after: Option<&str>,
        limit: usize,
    ) -> impl Future<Output = Result<Page<crate::embargo::Hold>, StoreError>> + Send {
        (**self).due(day, until, after, limit)
    }

    fn attempt_failed(
        &self,
        hold: &crate::embargo::Hold,
        error: &str,
    ) -> impl Future<Output = Result<(), StoreError>> + Send {
        (**self).attempt_failed(hold, error)
    }

    fn settle(
        &self,
        hold: &crate::embargo::Hold,
        status: crate::embargo::HoldStatus,
        detail: Option<&str>,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send {
        (**self).settle(hold, status, detail)
    }

    fn held(
        &self,
        keys: &[(String, String)],
    ) -> impl Future<Output = Result<std::collections::HashSet<(String, String)>, StoreError>> + Send
    {
        (**self).held(keys)
    }

    fn watermark(&self) -> impl Future<Output = Result<Option<String>, StoreError>> + Send {
        (**self).watermark()
    }

    fn set_watermark(&self, day: &str) -> impl Future<Output = Result<(), StoreError>> + Send {
        (**self).set_watermark(day)
    }
}

impl<T: RelationshipStore + ?Sized> RelationshipStore for &T {
    fn record(
        &self,
        change: &RelationshipChange,
    ) -> impl Future<Output = Result<Recorded, StoreError>> + Send {
        (**self).record(change)
    }

    fn for_child(
        &self,
        child: NhsNumber,
    ) -> impl Future<Output = Result<Vec<Relationship>, StoreError>> + Send {
        (**self).for_child(child)
    }

    fn between(
        &self,
        child: NhsNumber,
        person: NhsNumber,
    ) -> impl Future<Output = Result<Vec<Relationship>, StoreError>> + Send {
        (**self).between(child, person)
    }

    fn children_of(
        &self,
        person: NhsNumber,
    ) -> impl Future<Output = Result<Vec<Relationship>, StoreError>> + Send {
        (**self).children_of(person)
    }

    fn act_for(&self, acted: &ActedFor) -> impl Future<Output = Result<(), StoreError>> + Send {
        (**self).act_for(acted)
    }

    fn acted_for(
        &self,
        subscriber_id: &str,
        person: NhsNumber,
    ) -> impl Future<Output = Result<Option<ActedFor>, StoreError>> + Send {
        (**self).acted_for(subscriber_id, person)
    }

    fn stop_acting_for(
        &self,
        subscriber_id: &str,
        person: NhsNumber,
        at: &str,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send {
        (**self).stop_acting_for(subscriber_id, person, at)
    }
}
