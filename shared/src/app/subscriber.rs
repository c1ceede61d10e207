//! Onboarding, changing and offboarding subscribers (their records and
//! requests are in `crate::subscriber`).

use std::collections::BTreeSet;

use time::OffsetDateTime;

use crate::access::QueueAccess;
use crate::audit::{Action, AuditRecord};
use crate::auth::{Caller, Role};
use crate::catalogue::EventType;
use crate::error::HubError;
use crate::fhir_time::format_instant;
use crate::ports::{AuditLog, ClientStore, QueueProvisioner, SubscriberStore, SubscriptionStore};
use crate::subscriber::{ChangeRequest, OnboardRequest, Subscriber};

/// Changes what a subscriber may receive, who reads its queue and its
/// service type, without touching what its queue holds. Narrowing its
/// event types is refused while a subscription of its names a type being
/// removed: deleting them is the subscriber's decision, not a side effect.
/// A new service type applies to events dispatched after it, as a change
/// of embargo setting does: deliveries already held keep their release.
pub async fn change<R: SubscriberStore, S: SubscriptionStore, Q: QueueProvisioner>(
    subscribers: &R,
    subscriptions: &S,
    provisioner: &Q,
    subscriber_id: &str,
    change: ChangeRequest,
) -> Result<Subscriber, HubError> {
    let mut subscriber = subscribers
        .get(subscriber_id)
        .await?
        .filter(Subscriber::is_active)
        .ok_or_else(|| HubError::NotFound(format!("subscriber {subscriber_id}")))?;
    // Only a change of event types or principal touches the queues.
    let queues_change = change.event_types.is_some() || change.aws_principal.is_some();
    let event_types = change
        .event_types
        .unwrap_or_else(|| subscriber.event_types.clone());
    let removed: BTreeSet<EventType> = subscriber
        .event_types
        .difference(&event_types)
        .copied()
        .collect();
    if !removed.is_empty() {
        let mut blocking = Vec::new();
        let mut page_token = None;
        loop {
            let page = subscriptions
                .list_by_subscriber(subscriber_id, 100, page_token.as_deref())
                .await?;
            blocking.extend(
                page.items
                    .iter()
                    .filter(|subscription| {
                        subscription
                            .criteria
                            .events
                            .iter()
                            .any(|event_type| removed.contains(event_type))
                    })
                    .map(|subscription| subscription.id.clone()),
            );
            match page.next {
                Some(next) => page_token = Some(next),
                None => break,
            }
        }
        if !blocking.is_empty() {
            return Err(HubError::unprocessable(
                "eventTypes",
                format!(
                    "subscriptions {} name event types being removed: delete them first",
                    blocking.join(", ")
                ),
            ));
        }
    }
    let access = match (change.aws_principal, &subscriber.access) {
        (None, access) => access.clone(),
        (Some(principal), QueueAccess::HubOwned { .. }) => QueueAccess::HubOwned { principal },
        (Some(_), QueueAccess::SubscriberOwned { .. }) => {
            return Err(HubError::unprocessable(
                "awsPrincipal",
                "the subscriber owns its queue: who reads it is its own account's business",
            ));
        }
    };
    if queues_change {
        let types: Vec<EventType> = event_types.iter().copied().collect();
        subscriber.queues = provisioner
            .reconfigure(&subscriber.id, &subscriber.queues, &types, &access)
            .await?;
    }
    subscriber.event_types = event_types;
    subscriber.access = access;
    if let Some(service_type) = change.service_type {
        subscriber.service_type = Some(service_type);
    }
    subscribers.save(&subscriber).await?;
    Ok(subscriber)
}

/// Creates the subscriber's queues and topic subscriptions, records it, and
/// links the client that acts as it. The client must be registered as a
/// subscriber of the same organisation and not act as another subscriber.
pub async fn onboard<S: SubscriberStore, Q: QueueProvisioner, C: ClientStore>(
    store: &S,
    provisioner: &Q,
    clients: &C,
    request: OnboardRequest,
    now: OffsetDateTime,
) -> Result<Subscriber, HubError> {
    let client = clients
        .get(&request.client_id)
        .await?
        .filter(|client| client.enabled && client.roles.contains(&Role::Subscriber))
        .ok_or_else(|| {
            HubError::unprocessable(
                "clientId",
                "clientId names no enabled client registered with the subscriber role",
            )
        })?;
    if client.ods_code != request.ods_code {
        return Err(HubError::unprocessable(
            "odsCode",
            "odsCode is not the organisation the client is registered for",
        ));
    }
    if let Some(existing) = &client.subscriber_id {
        let active = store.get(existing).await?.is_some_and(|s| s.is_active());
        if active {
            return Err(HubError::unprocessable(
                "clientId",
                format!("the client already acts as subscriber {existing}"),
            ));
        }
    }
    let id = uuid::Uuid::new_v4().to_string();
    let event_types: Vec<EventType> = request.event_types.iter().copied().collect();
    let queues = provisioner
        .provision(&id, &event_types, &request.access)
        .await?;
    let subscriber = Subscriber {
        id,
        ods_code: request.ods_code,
        name: request.name,
        event_types: request.event_types,
        queues,
        created_at: format_instant(now),
        client_id: Some(client.client_id.clone()),
        offboarded_at: None,
        access: request.access,
        service_type: request.service_type,
    };
    store.create(&subscriber).await?;
    clients
        .link_subscriber(&client.client_id, &subscriber.id)
        .await?;
    Ok(subscriber)
}

/// Offboards a subscriber: its topic subscriptions go first (nothing new is
/// delivered), then every subscription of its, then its record is marked.
/// Its queues stay for [`QUEUE_GRACE_DAYS`] so it can read what was already
/// delivered. Offboarding twice is harmless.
///
/// Each subscription removed is audited as deleted by the operator, so that
/// the trail of every patient concerned shows the end of its subscription.
pub async fn offboard<
    R: SubscriberStore,
    S: SubscriptionStore,
    Q: QueueProvisioner,
    A: AuditLog,
>(
    subscribers: &R,
    subscriptions: &S,
    provisioner: &Q,
    audit: &A,
    operator: &Caller,
    subscriber_id: &str,
    now: OffsetDateTime,
) -> Result<Subscriber, HubError> {
    let mut subscriber = subscribers
        .get(subscriber_id)
        .await?
        .ok_or_else(|| HubError::NotFound(format!("subscriber {subscriber_id}")))?;
    provisioner.unsubscribe(&subscriber.queues).await?;
    // One pass through the listing, page by page: re-reading from the start
    // would find just-deleted items again while the index catches up.
    let mut page_token = None;
    loop {
        let page = subscriptions
            .list_by_subscriber(subscriber_id, 100, page_token.as_deref())
            .await?;
        for subscription in &page.items {
            // One write each (no batch): the permission to batch-write the
            // trail would also be one to delete from it.
            let record = AuditRecord::new(Some(operator), Action::SubscriptionDelete, 204, now)
                .subscription(subscription.id.clone())
                .subscriber(subscriber_id)
                .patient(subscription.criteria.target.patient())
                .detail("offboarding");
            audit.record(&record).await?;
            subscriptions.delete(subscription).await?;
        }
        match page.next {
            Some(next) => page_token = Some(next),
            None => break,
        }
    }
    if subscriber.offboarded_at.is_none() {
        let at = format_instant(now);
        subscribers.mark_offboarded(subscriber_id, &at).await?;
        subscriber.offboarded_at = Some(at);
    }
    Ok(subscriber)
}
