//! Delivery status of a subscriber: how many messages the hub sent it per
//! event type and when last, what waits in its queue and in its DLQ; and
//! the redrive that moves what its DLQ holds back to its queue.
//!
//! Counts are of messages sent: dispatch (and a replay) adds one per
//! subscriber after the SNS publish of an event succeeded. A stream retry that sends an event
//! again counts it again (the subscriber did receive it twice), and a count
//! that could not be written is not retried (a counter must never make the
//! hub deliver patient data a second time), so the counts are close, not
//! exact. Queue depths are SQS's approximate numbers.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{Value, json};

use crate::auth::{Caller, Role};
use crate::catalogue::EventType;
use crate::subscriber::Subscriber;

/// The deliveries of one event type to one subscriber.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryCount {
    pub event_type: EventType,
    pub delivered: u64,
    /// `audit::timestamp` form (UTC, milliseconds), so times compare as text.
    pub last_delivery_at: Option<String>,
}

/// What a queue holds, as SQS reports it (approximate numbers).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QueueDepth {
    /// Ready to be received.
    pub waiting: u64,
    /// Received and not yet deleted nor visible again.
    pub in_flight: u64,
    /// Sent with a delay that has not passed yet.
    pub delayed: u64,
    /// The queue no longer exists (deleted outside the hub): nothing can be
    /// delivered to it, and SNS sends what it cannot deliver to the hub's
    /// undelivered queue (docs/reliability.md).
    pub missing: bool,
}

/// How much one redrive request may move: API Gateway answers after 29 s,
/// so a request stops well before, and the caller asks again while
/// messages remain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RedriveLimits {
    pub max_messages: usize,
    pub max_duration: Duration,
}

/// At most 1 000 messages or 20 seconds, whichever comes first.
pub const REDRIVE_LIMITS: RedriveLimits = RedriveLimits {
    max_messages: 1_000,
    max_duration: Duration::from_secs(20),
};

/// What a redrive did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Redriven {
    /// Messages sent back to the queue and removed from the DLQ.
    pub moved: u64,
    /// Whether the DLQ still holds messages (visible or in flight) after it.
    pub remaining: bool,
}

/// A subscriber's delivery status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryStatus {
    pub subscriber_id: String,
    /// One per event type the subscriber was onboarded for or received,
    /// in catalogue order.
    pub counts: Vec<DeliveryCount>,
    /// None for a queue the subscriber owns: the hub cannot look into it.
    pub queue: Option<QueueDepth>,
    pub dead_letter_queue: Option<QueueDepth>,
    /// The queue's topic subscriptions and whether each is confirmed.
    pub topic_subscriptions: Vec<TopicSubscription>,
}

impl DeliveryStatus {
    /// Every event type the subscriber may receive (zero when nothing was
    /// sent yet) and every one it was sent, from the recorded counts.
    pub fn new(
        subscriber: &Subscriber,
        recorded: Vec<DeliveryCount>,
        queue: Option<QueueDepth>,
        dead_letter_queue: Option<QueueDepth>,
        topic_subscriptions: Vec<TopicSubscription>,
    ) -> Self {
        let mut counts: BTreeMap<EventType, DeliveryCount> = subscriber
            .event_types
            .iter()
            .map(|&event_type| {
                (
                    event_type,
                    DeliveryCount {
                        event_type,
                        delivered: 0,
                        last_delivery_at: None,
                    },
                )
            })
            .collect();
        for count in recorded {
            counts.insert(count.event_type, count);
        }
        DeliveryStatus {
            subscriber_id: subscriber.id.clone(),
            counts: counts.into_values().collect(),
            queue,
            dead_letter_queue,
            topic_subscriptions,
        }
    }

    /// The latest delivery of any event type.
    pub fn last_delivery_at(&self) -> Option<&str> {
        self.counts
            .iter()
            .filter_map(|count| count.last_delivery_at.as_deref())
            .max()
    }

    /// The application/json document of `GET /subscribers/{id}/status`.
    pub fn to_json(&self) -> Value {
        let event_types: Vec<Value> = self
            .counts
            .iter()
            .map(|count| {
                json!({
                    "eventType": count.event_type.code(),
                    "delivered": count.delivered,
                    "lastDeliveryAt": count.last_delivery_at,
                })
            })
            .collect();
        json!({
            "subscriberId": self.subscriber_id,
            "lastDeliveryAt": self.last_delivery_at(),
            "eventTypes": event_types,
            "queue": self.queue.as_ref().map(|queue| json!({
                "waiting": queue.waiting,
                "inFlight": queue.in_flight,
                "delayed": queue.delayed,
                "missing": queue.missing,
            })),
            "deadLetterQueue": self.dead_letter_queue.as_ref().map(|queue| json!({
                "waiting": queue.waiting,
                "missing": queue.missing,
            })),
            "topicSubscriptions": self.topic_subscriptions,
        })
    }
}

impl Redriven {
    /// The application/json document of `POST /subscribers/{id}/$redrive`.
    pub fn to_json(&self, subscriber_id: &str) -> Value {
        json!({
            "subscriberId": subscriber_id,
            "moved": self.moved,
            "remaining": self.remaining,
        })
    }
}

/// Whether the caller may see and act on this subscriber's queues: an
/// operator, or the subscriber itself.
pub fn may_see(caller: &Caller, subscriber_id: &str) -> bool {
    caller.has_role(Role::Operator)
        || (caller.has_role(Role::Subscriber)
            && caller.subscriber_id.as_deref() == Some(subscriber_id))
}

/// SQS SendMessageBatch takes at most ten entries. The whole batch (bodies
/// and attributes together) is kept to 256 KiB, the limit SQS long had and
/// still a safe bound now that it allows 1 MiB: a delivery is at most
/// 256 KiB (an SNS message), so any DLQ message fits one batch.
pub const SQS_BATCH_ENTRIES: usize = 10;
pub const SQS_BATCH_BYTES: usize = 262_144;

/// Consecutive ranges of messages of these sizes, each within both of
/// SendMessageBatch's limits. A message too large for any batch stands
/// alone (SQS then refuses it, and it stays in the DLQ).
pub fn send_batches(sizes: &[usize]) -> Vec<std::ops::Range<usize>> {
    let mut batches = Vec::new();
    let mut start = 0;
    let mut bytes = 0;
    for (index, &size) in sizes.iter().enumerate() {
        let full = index - start == SQS_BATCH_ENTRIES || bytes + size > SQS_BATCH_BYTES;
        if full && index > start {
            batches.push(start..index);
            start = index;
            bytes = 0;
        }
        bytes += size;
    }
    if start < sizes.len() {
        batches.push(start..sizes.len());
    }
    batches
}

/// One topic subscription of a subscriber's queue, as SNS reports it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TopicSubscription {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub event_type: Option<EventType>,
    pub subscription_arn: String,
    pub state: SubscriptionState,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum SubscriptionState {
    Confirmed,
    /// A queue in another account: its owner has not yet confirmed.
    PendingConfirmation,
    /// SNS no longer knows it (removed outside the hub).
    Missing,
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::auth::Client;
    use crate::subscriber::{OdsCode, Queues};
    use std::collections::BTreeSet;

    pub(crate) const ID: &str = "5d1b7a3e-5c3f-4d8c-9a43-3b1f6f1c2a10";

    pub(crate) fn subscriber() -> Subscriber {
        Subscriber {
            id: ID.into(),
            ods_code: OdsCode::parse("A83627").unwrap(),
            name: "GP".into(),
            event_types: BTreeSet::from([EventType::Vaccinations, EventType::NipeOutcome]),
            queues: Queues {
                queue_url: "memory://q".into(),
                queue_arn: "arn:q".into(),
                dead_letter_queue_url: "memory://q-dlq".into(),
                dead_letter_queue_arn: "arn:q-dlq".into(),
                topic_subscriptions: Vec::new(),
                key_grants: Vec::new(),
            },
            created_at: "2026-01-01T00:00:00Z".into(),
            client_id: Some("gp".into()),
            offboarded_at: None,
            access: Default::default(),
            service_type: None,
        }
    }

    pub(crate) fn caller(roles: &[Role], subscriber_id: Option<&str>) -> Caller {
        Caller::of(&Client {
            client_id: "someone".into(),
            ods_code: OdsCode::parse("A83627").unwrap(),
            roles: roles.iter().copied().collect(),
            keys: jsonwebtoken::jwk::JwkSet { keys: Vec::new() },
            enabled: true,
            publish_event_types: BTreeSet::new(),
            publish_for_ods: BTreeSet::new(),
            subscriber_id: subscriber_id.map(str::to_owned),
            subscribe_explicit: false,
            subscribe_generic: BTreeMap::new(),
            sensitivity_authority: false,
            relationship_sources: Default::default(),
            pchr: None,
        })
    }

    #[test]
    fn the_document_lists_every_permitted_type_and_the_latest_delivery() {
        let recorded = vec![
            DeliveryCount {
                event_type: EventType::Vaccinations,
                delivered: 3,
                last_delivery_at: Some("2026-01-02T10:00:00.000Z".into()),
            },
            // Sent before the subscriber's types were narrowed: still shown.
            DeliveryCount {
                event_type: EventType::PdsChangeOfGp,
                delivered: 1,
                last_delivery_at: Some("2026-01-03T09:00:00.000Z".into()),
            },
        ];
        let queue = QueueDepth {
            waiting: 2,
            in_flight: 1,
            delayed: 0,
            missing: false,
        };
        let dlq = QueueDepth {
            waiting: 4,
            ..QueueDepth::default()
        };
        let confirmed = TopicSubscription {
            event_type: Some(EventType::Vaccinations),
            subscription_arn: "arn:aws:sns:eu-west-2:1:vaccinations:s".into(),
            state: SubscriptionState::Confirmed,
        };
        let status = DeliveryStatus::new(
            &subscriber(),
            recorded,
            Some(queue),
            Some(dlq),
            vec![confirmed],
        );
        assert_eq!(
            status.to_json(),
            json!({
                "subscriberId": ID,
                "lastDeliveryAt": "2026-01-03T09:00:00.000Z",
                "eventTypes": [
                    {"eventType": "pds-change-of-gp-1", "delivered": 1, "lastDeliveryAt": "2026-01-03T09:00:00.000Z"},
                    {"eventType": "nipe-outcome-1", "delivered": 0, "lastDeliveryAt": null},
                    {"eventType": "vaccinations-1", "delivered": 3, "lastDeliveryAt": "2026-01-02T10:00:00.000Z"},
                ],
                "queue": {"waiting": 2, "inFlight": 1, "delayed": 0, "missing": false},
                "deadLetterQueue": {"waiting": 4, "missing": false},
                "topicSubscriptions": [{
                    "eventType": "vaccinations-1",
                    "subscriptionArn": "arn:aws:sns:eu-west-2:1:vaccinations:s",
                    "state": "confirmed",
                }],
            })
        );
        let empty = DeliveryStatus::new(&subscriber(), Vec::new(), None, None, Vec::new());
        assert_eq!(empty.to_json()["lastDeliveryAt"], Value::Null);
        assert_eq!(
            empty.to_json()["queue"],
            Value::Null,
            "a queue the hub cannot see"
        );
    }

    #[test]
    fn operators_and_the_subscriber_itself_see_it_no_one_else() {
        assert!(may_see(&caller(&[Role::Operator], None), ID));
        assert!(may_see(&caller(&[Role::Subscriber], Some(ID)), ID));
        let other = "0b7c3f61-2d7e-4f0a-8a55-0f7f7c9d1e22";
        assert!(!may_see(&caller(&[Role::Subscriber], Some(other)), ID));
        assert!(!may_see(&caller(&[Role::Subscriber], None), ID));
        // The subscriber id without the role is not enough.
        assert!(!may_see(&caller(&[Role::Publisher], Some(ID)), ID));
    }

    #[test]
    fn send_batches_keep_to_ten_messages_and_256_kib() {
        assert!(send_batches(&[]).is_empty());
        assert_eq!(send_batches(&[100; 21]), [0..10, 10..20, 20..21]);
        assert_eq!(
            send_batches(&[100_000, 100_000, 100_000]),
            [0..2, 2..3],
            "two large messages fill a batch"
        );
        assert_eq!(send_batches(&[300_000, 10]), [0..1, 1..2]);
    }
}
