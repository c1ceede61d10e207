//! Delivery status and redrive of a subscriber's queues (the view and its
//! limits are in `crate::status`).

use crate::auth::Caller;
use crate::error::HubError;
use crate::ports::{DeliveryStats, QueueMonitor, SubscriberStore};
use crate::status::{DeliveryStatus, RedriveLimits, Redriven, may_see};
use crate::subscriber::Subscriber;

/// The subscriber, if the caller may see it. Anyone else is told it does
/// not exist, as for another's subscriptions: which subscribers exist is
/// not their business.
pub async fn visible_subscriber<S: SubscriberStore>(
    subscribers: &S,
    caller: &Caller,
    subscriber_id: &str,
) -> Result<Subscriber, HubError> {
    let not_found = || HubError::NotFound(format!("subscriber {subscriber_id}"));
    if !may_see(caller, subscriber_id) {
        return Err(not_found());
    }
    subscribers.get(subscriber_id).await?.ok_or_else(not_found)
}

/// `GET /subscribers/{id}/status`: counts, then both queues' depths.
pub async fn status<S: SubscriberStore, D: DeliveryStats, Q: QueueMonitor>(
    subscribers: &S,
    stats: &D,
    queues: &Q,
    caller: &Caller,
    subscriber_id: &str,
) -> Result<DeliveryStatus, HubError> {
    let subscriber = visible_subscriber(subscribers, caller, subscriber_id).await?;
    let recorded = stats.counts(&subscriber.id).await?;
    let (queue, dead_letter_queue) = if subscriber.access.is_subscriber_owned() {
        (None, None)
    } else {
        (
            Some(queues.depth(&subscriber.queues.queue_url).await?),
            Some(
                queues
                    .depth(&subscriber.queues.dead_letter_queue_url)
                    .await?,
            ),
        )
    };
    let topic_subscriptions = queues.subscription_states(&subscriber.queues).await?;
    Ok(DeliveryStatus::new(
        &subscriber,
        recorded,
        queue,
        dead_letter_queue,
        topic_subscriptions,
    ))
}

/// `POST /subscribers/{id}/$redrive`: moves the DLQ's messages back to the
/// queue, within `limits`.
pub async fn redrive<S: SubscriberStore, Q: QueueMonitor>(
    subscribers: &S,
    queues: &Q,
    caller: &Caller,
    subscriber_id: &str,
    limits: RedriveLimits,
) -> Result<Redriven, HubError> {
    let subscriber = visible_subscriber(subscribers, caller, subscriber_id).await?;
    if subscriber.access.is_subscriber_owned() {
        return Err(HubError::unprocessable(
            "id",
            "the subscriber owns its queue: its dead-letter queue, if any, is redriven in its own account",
        ));
    }
    Ok(queues
        .redrive(
            &subscriber.queues.dead_letter_queue_url,
            &subscriber.queues.queue_url,
            limits,
        )
        .await?)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::auth::Role;
    use crate::catalogue::EventType;
    use crate::memory::{MemoryDeliveryStats, MemoryQueues, MemorySubscriberStore};
    use crate::status::tests::{ID, caller, subscriber};

    #[tokio::test]
    async fn status_and_redrive_read_the_subscribers_own_queues() {
        let subscribers = MemorySubscriberStore::default();
        subscribers.create(&subscriber()).await.unwrap();
        let stats = MemoryDeliveryStats::default();
        stats
            .record_deliveries(EventType::Vaccinations, &[ID], "2026-01-02T10:00:00.000Z")
            .await
            .unwrap();
        stats
            .record_deliveries(EventType::Vaccinations, &[ID], "2026-01-02T11:00:00.000Z")
            .await
            .unwrap();
        let queues = MemoryQueues::default();
        queues.push("memory://q", "one", &[("eventType", "vaccinations-1")]);
        for n in 0..3 {
            queues.push("memory://q-dlq", &format!("dead {n}"), &[("eventId", "x")]);
        }
        let subscriber_caller = caller(&[Role::Subscriber], Some(ID));
        let status = status(&subscribers, &stats, &queues, &subscriber_caller, ID)
            .await
            .unwrap();
        let vaccinations = &status.counts[1];
        assert_eq!(vaccinations.event_type, EventType::Vaccinations);
        assert_eq!(vaccinations.delivered, 2);
        assert_eq!(
            status.last_delivery_at(),
            Some("2026-01-02T11:00:00.000Z"),
            "the later time wins"
        );
        assert_eq!(status.queue.unwrap().waiting, 1);
        assert_eq!(status.dead_letter_queue.unwrap().waiting, 3);

        let stranger = caller(&[Role::Subscriber], Some("someone-else"));
        let refused = super::status(&subscribers, &stats, &queues, &stranger, ID).await;
        assert!(matches!(refused, Err(HubError::NotFound(_))));
        let missing = "0b7c3f61-2d7e-4f0a-8a55-0f7f7c9d1e22";
        let operator = caller(&[Role::Operator], None);
        let refused = super::status(&subscribers, &stats, &queues, &operator, missing).await;
        assert!(matches!(refused, Err(HubError::NotFound(_))));

        let limits = RedriveLimits {
            max_messages: 2,
            max_duration: Duration::from_secs(5),
        };
        let first = redrive(&subscribers, &queues, &operator, ID, limits)
            .await
            .unwrap();
        assert_eq!(
            first,
            Redriven {
                moved: 2,
                remaining: true
            }
        );
        let second = redrive(&subscribers, &queues, &operator, ID, limits)
            .await
            .unwrap();
        assert_eq!(
            second,
            Redriven {
                moved: 1,
                remaining: false
            }
        );
        let queue = queues.messages("memory://q");
        assert_eq!(queue.len(), 4);
        assert_eq!(queue[1].body, "dead 0", "in the order they left");
        assert_eq!(
            queue[1].attributes,
            [("eventId".to_owned(), "x".to_owned())]
        );
        assert!(queues.messages("memory://q-dlq").is_empty());
        assert!(matches!(
            redrive(&subscribers, &queues, &stranger, ID, limits).await,
            Err(HubError::NotFound(_))
        ));
    }
}
