//! Deliveries, queues and their counts in memory: what SNS and SQS would hold.

use std::collections::HashMap;
use std::sync::Mutex;

use super::poisoned;
use crate::access::QueueAccess;
use crate::catalogue::EventType;
use crate::dispatch::Delivery;
use crate::events::StoredEvent;
use crate::ports::{
    DeliveryPublisher, QueueProvisioner, StoreError, SubscriptionState, TopicSubscription,
};
use crate::subscriber::Queues;

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
