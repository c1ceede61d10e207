//! Subscriber queues' depths and topic subscriptions, and the redrive of
//! a DLQ.

use std::collections::BTreeMap;

use aws_sdk_sqs::types::QueueAttributeName;

use super::{unavailable, unavailable_because};
use crate::catalogue::EventType;
use crate::ports::{StoreError, SubscriptionState, TopicSubscription};
use crate::subscriber::Queues;

/// Subscriber queues through SQS: their depth, and the redrive of a DLQ
/// by receive, send and delete (the emulator has no StartMessageMoveTask,
/// and this way the bound of one request is the hub's own).
#[derive(Clone)]
pub struct SqsQueueMonitor {
    sqs: aws_sdk_sqs::Client,
    sns: Option<aws_sdk_sns::Client>,
    topics: BTreeMap<EventType, String>,
}

/// How long a message received from the DLQ stays invisible while it is
/// being moved; it reappears there if the move fails half way.
const REDRIVE_VISIBILITY_SECONDS: i32 = 60;

impl SqsQueueMonitor {
    pub fn new(sqs: aws_sdk_sqs::Client) -> Self {
        SqsQueueMonitor {
            sqs,
            sns: None,
            topics: BTreeMap::new(),
        }
    }

    /// Also reads the states of queues' topic subscriptions from SNS, and
    /// names each by the event type of its topic.
    pub fn with_subscriptions(
        mut self,
        sns: aws_sdk_sns::Client,
        topics: BTreeMap<EventType, String>,
    ) -> Self {
        self.sns = Some(sns);
        self.topics = topics;
        self
    }

    fn event_type_of(&self, subscription_arn: &str) -> Option<EventType> {
        let (topic, _) = subscription_arn.rsplit_once(':')?;
        self.topics
            .iter()
            .find(|(_, arn)| arn.as_str() == topic)
            .map(|(event_type, _)| *event_type)
    }

    /// Sends the messages to the queue, at most ten and 256 KiB a request,
    /// and deletes from the DLQ exactly those SQS accepted. The number
    /// moved, or an error naming how many could not be.
    async fn move_messages(
        &self,
        dead_letter_queue_url: &str,
        queue_url: &str,
        messages: &[aws_sdk_sqs::types::Message],
    ) -> Result<u64, StoreError> {
        use aws_sdk_sqs::types::{DeleteMessageBatchRequestEntry, SendMessageBatchRequestEntry};
        let sizes: Vec<usize> = messages.iter().map(message_size).collect();
        let mut moved = 0;
        for batch in crate::status::send_batches(&sizes) {
            let batch = &messages[batch];
            let entries = batch
                .iter()
                .enumerate()
                .map(|(index, message)| {
                    SendMessageBatchRequestEntry::builder()
                        .id(index.to_string())
                        .message_body(message.body().unwrap_or_default())
                        .set_message_attributes(message.message_attributes.clone())
                        .build()
                        .map_err(|error| unavailable("building a redrive entry", error))
                })
                .collect::<Result<Vec<_>, _>>()?;
            let sent = self
                .sqs
                .send_message_batch()
                .queue_url(queue_url)
                .set_entries(Some(entries))
                .send()
                .await
                .map_err(|error| unavailable("sending messages back to the queue", error))?;
            let deletions = sent
                .successful()
                .iter()
                .filter_map(|done| {
                    let message = done.id().parse::<usize>().ok().and_then(|i| batch.get(i))?;
                    DeleteMessageBatchRequestEntry::builder()
                        .id(done.id())
                        .receipt_handle(message.receipt_handle()?)
                        .build()
                        .ok()
                })
                .collect::<Vec<_>>();
            if !deletions.is_empty() {
                let deleted = self
                    .sqs
                    .delete_message_batch()
                    .queue_url(dead_letter_queue_url)
                    .set_entries(Some(deletions))
                    .send()
                    .await
                    .map_err(|error| {
                        unavailable("deleting redriven messages from the DLQ", error)
                    })?;
                if !deleted.failed().is_empty() {
                    return Err(unavailable_because(format!(
                        "{} messages were sent back to the queue but stay in the DLQ too",
                        deleted.failed().len()
                    )));
                }
            }
            moved += sent.successful().len() as u64;
            if !sent.failed().is_empty() {
                // Those stay in the DLQ, visible again after the timeout.
                return Err(unavailable_because(format!(
                    "{} messages could not be sent back to the queue ({moved} were moved)",
                    sent.failed().len()
                )));
            }
        }
        Ok(moved)
    }
}

/// The bytes SendMessageBatch counts for a message: its body, and each
/// attribute's name, type and value.
fn message_size(message: &aws_sdk_sqs::types::Message) -> usize {
    let attributes: usize = message
        .message_attributes()
        .map(|attributes| {
            attributes
                .iter()
                .map(|(name, value)| {
                    name.len()
                        + value.data_type().len()
                        + value.string_value().map_or(0, str::len)
                        + value.binary_value().map_or(0, |blob| blob.as_ref().len())
                })
                .sum()
        })
        .unwrap_or_default();
    message.body().map_or(0, str::len) + attributes
}

impl crate::ports::QueueMonitor for SqsQueueMonitor {
    async fn depth(&self, queue_url: &str) -> Result<crate::status::QueueDepth, StoreError> {
        let read = self
            .sqs
            .get_queue_attributes()
            .queue_url(queue_url)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesDelayed)
            .send()
            .await;
        let attributes = match read {
            Ok(output) => output.attributes.unwrap_or_default(),
            // Deleted outside the hub: a state to report, not a failure.
            Err(error)
                if error
                    .as_service_error()
                    .is_some_and(|e| e.is_queue_does_not_exist()) =>
            {
                return Ok(crate::status::QueueDepth {
                    missing: true,
                    ..Default::default()
                });
            }
            Err(error) => {
                return Err(unavailable("reading a queue's depth", error));
            }
        };
        let number = |name: QueueAttributeName| {
            attributes
                .get(&name)
                .and_then(|value| value.parse::<u64>().ok())
                .unwrap_or_default()
        };
        Ok(crate::status::QueueDepth {
            waiting: number(QueueAttributeName::ApproximateNumberOfMessages),
            in_flight: number(QueueAttributeName::ApproximateNumberOfMessagesNotVisible),
            delayed: number(QueueAttributeName::ApproximateNumberOfMessagesDelayed),
            missing: false,
        })
    }

    async fn redrive(
        &self,
        dead_letter_queue_url: &str,
        queue_url: &str,
        limits: crate::status::RedriveLimits,
    ) -> Result<crate::status::Redriven, StoreError> {
        let started = std::time::Instant::now();
        let mut moved: u64 = 0;
        loop {
            let left = limits
                .max_messages
                .saturating_sub(usize::try_from(moved).unwrap_or(usize::MAX));
            if left == 0 || started.elapsed() >= limits.max_duration {
                break;
            }
            let received = self
                .sqs
                .receive_message()
                .queue_url(dead_letter_queue_url)
                .max_number_of_messages(i32::try_from(left.min(10)).unwrap_or(10))
                .visibility_timeout(REDRIVE_VISIBILITY_SECONDS)
                // A short wait: SQS's short polls may answer empty while a
                // few messages remain on other servers.
                .wait_time_seconds(1)
                .message_attribute_names("All")
                .send()
                .await
                .map_err(|error| unavailable("receiving from the DLQ", error))?
                .messages
                .unwrap_or_default();
            if received.is_empty() {
                break;
            }
            moved += self
                .move_messages(dead_letter_queue_url, queue_url, &received)
                .await?;
        }
        let left = self.depth(dead_letter_queue_url).await?;
        Ok(crate::status::Redriven {
            moved,
            remaining: left.waiting + left.in_flight + left.delayed > 0,
        })
    }

    async fn subscription_states(
        &self,
        queues: &Queues,
    ) -> Result<Vec<TopicSubscription>, StoreError> {
        let mut states = Vec::with_capacity(queues.topic_subscriptions.len());
        for subscription_arn in &queues.topic_subscriptions {
            let Some(sns) = &self.sns else {
                return Err(StoreError::Configuration(
                    "the queue monitor was built without an SNS client".into(),
                ));
            };
            let read = sns
                .get_subscription_attributes()
                .subscription_arn(subscription_arn)
                .send()
                .await;
            let state = match read {
                Ok(output) => {
                    let pending = output
                        .attributes
                        .as_ref()
                        .and_then(|attributes| attributes.get("PendingConfirmation"))
                        .is_some_and(|value| value == "true");
                    if pending {
                        SubscriptionState::PendingConfirmation
                    } else {
                        SubscriptionState::Confirmed
                    }
                }
                Err(error)
                    if error
                        .as_service_error()
                        .is_some_and(|e| e.is_not_found_exception()) =>
                {
                    SubscriptionState::Missing
                }
                Err(error) => return Err(unavailable("reading a topic subscription", error)),
            };
            states.push(TopicSubscription {
                event_type: self.event_type_of(subscription_arn),
                subscription_arn: subscription_arn.clone(),
                state,
            });
        }
        Ok(states)
    }
}
