//! Long-polling a subscriber queue, deleting what has been handled.

use std::time::Duration;

use aws_sdk_sqs::error::SdkError;
use aws_sdk_sqs::operation::delete_message::DeleteMessageError;
use aws_sdk_sqs::operation::receive_message::ReceiveMessageError;
use aws_sdk_sqs::types::MessageSystemAttributeName;

use super::delivery::{Delivery, DeliveryError};

/// The most messages one ReceiveMessage returns.
const MOST_MESSAGES: u8 = 10;
/// The longest wait SQS allows a long poll.
const LONGEST_WAIT: Duration = Duration::from_secs(20);

/// How one receive asks: up to how many messages, waiting how long for the
/// first. The default is the longest poll of the most messages: 10, 20 s.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReceiveOptions {
    max_messages: u8,
    wait: Duration,
}

impl Default for ReceiveOptions {
    fn default() -> Self {
        Self {
            max_messages: MOST_MESSAGES,
            wait: LONGEST_WAIT,
        }
    }
}

impl ReceiveOptions {
    /// At most this many messages (kept within 1 to 10).
    pub fn max_messages(mut self, count: usize) -> Self {
        self.max_messages = u8::try_from(count.clamp(1, MOST_MESSAGES.into())).unwrap_or(1);
        self
    }

    /// Wait up to this long for a message (rounded up to whole seconds, at
    /// most 20; zero is a short poll).
    pub fn wait(mut self, wait: Duration) -> Self {
        let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
        self.wait = Duration::from_secs(seconds).min(LONGEST_WAIT);
        self
    }

    fn wait_seconds(&self) -> i32 {
        // At most 20: always fits.
        i32::try_from(self.wait.as_secs()).unwrap_or(20)
    }
}

/// What became of one received message.
#[derive(Debug)]
pub enum Outcome<E> {
    /// The handler returned Ok. `deleted` tells whether the poller then
    /// deleted the message (see [`Poller::delete_handled`]).
    Handled { delivery: Delivery, deleted: bool },
    /// The handler returned an error: the message is left on the queue and
    /// becomes visible again after its visibility timeout; after the
    /// queue's maximum receive count SQS moves it to the dead-letter queue.
    Failed { delivery: Delivery, error: E },
    /// The message is not a hub delivery (a required attribute is missing
    /// or invalid). The handler did not see it; it is left on the queue like
    /// a failed one.
    Malformed {
        message_id: Option<String>,
        error: DeliveryError,
    },
}

impl<E> Outcome<E> {
    /// The delivery, unless the message was malformed.
    pub fn delivery(&self) -> Option<&Delivery> {
        match self {
            Self::Handled { delivery, .. } | Self::Failed { delivery, .. } => Some(delivery),
            Self::Malformed { .. } => None,
        }
    }

    pub fn is_handled(&self) -> bool {
        matches!(self, Self::Handled { .. })
    }
}

/// Why a poll failed as a whole.
#[derive(Debug, thiserror::Error)]
pub enum PollError {
    #[error("receiving from {queue_url}")]
    Receive {
        queue_url: String,
        #[source]
        source: SdkError<ReceiveMessageError>,
    },
    /// The handler had processed the message: it will be delivered again.
    #[error("deleting message {message_id} (event {event_id}) from {queue_url}")]
    Delete {
        queue_url: String,
        message_id: String,
        event_id: String,
        #[source]
        source: SdkError<DeleteMessageError>,
    },
}

/// Polls one subscriber queue. Each receive asks for every message
/// attribute and the receive count; each message is read into a
/// [`Delivery`] and handed to the caller's handler, then deleted only if
/// the handler returned Ok (unless [`Poller::delete_handled`] is off).
#[derive(Debug, Clone)]
pub struct Poller {
    sqs: aws_sdk_sqs::Client,
    queue_url: String,
    delete_handled: bool,
}

impl Poller {
    pub fn new(sqs: aws_sdk_sqs::Client, queue_url: impl Into<String>) -> Self {
        Self {
            sqs,
            queue_url: queue_url.into(),
            delete_handled: true,
        }
    }

    /// Whether a message the handler returned Ok for is deleted (the
    /// default). Off, every message is left on the queue: a browse that
    /// still counts as a receive towards the dead-letter queue.
    pub fn delete_handled(mut self, delete: bool) -> Self {
        self.delete_handled = delete;
        self
    }

    pub fn queue_url(&self) -> &str {
        &self.queue_url
    }

    /// One receive: hands each message received to `handler`, one at a
    /// time in the order received, and returns what became of each. A
    /// failed receive, or a failed delete of a handled message, ends the
    /// poll with an error; the messages not yet handled become visible
    /// again after their visibility timeout.
    pub async fn poll_once<E>(
        &self,
        options: ReceiveOptions,
        mut handler: impl AsyncFnMut(&Delivery) -> Result<(), E>,
    ) -> Result<Vec<Outcome<E>>, PollError> {
        let received = self
            .sqs
            .receive_message()
            .queue_url(&self.queue_url)
            .max_number_of_messages(i32::from(options.max_messages))
            .wait_time_seconds(options.wait_seconds())
            .message_attribute_names("All")
            .message_system_attribute_names(MessageSystemAttributeName::ApproximateReceiveCount)
            .send()
            .await
            .map_err(|source| PollError::Receive {
                queue_url: self.queue_url.clone(),
                source,
            })?;
        let mut outcomes = Vec::new();
        for message in received.messages.unwrap_or_default() {
            let delivery = match Delivery::from_message(&message) {
                Ok(delivery) => delivery,
                Err(error) => {
                    outcomes.push(Outcome::Malformed {
                        message_id: message.message_id,
                        error,
                    });
                    continue;
                }
            };
            if let Err(error) = handler(&delivery).await {
                outcomes.push(Outcome::Failed { delivery, error });
                continue;
            }
            let deleted = match (self.delete_handled, message.receipt_handle()) {
                (true, Some(handle)) => {
                    self.sqs
                        .delete_message()
                        .queue_url(&self.queue_url)
                        .receipt_handle(handle)
                        .send()
                        .await
                        .map_err(|source| PollError::Delete {
                            queue_url: self.queue_url.clone(),
                            message_id: delivery.message_id.clone().unwrap_or_default(),
                            event_id: delivery.event_id.clone(),
                            source,
                        })?;
                    true
                }
                _ => false,
            };
            outcomes.push(Outcome::Handled { delivery, deleted });
        }
        Ok(outcomes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn receive_options_stay_within_what_sqs_accepts() {
        let default = ReceiveOptions::default();
        assert_eq!((default.max_messages, default.wait_seconds()), (10, 20));
        let options = ReceiveOptions::default()
            .max_messages(0)
            .wait(Duration::from_secs(600));
        assert_eq!((options.max_messages, options.wait_seconds()), (1, 20));
        let options = ReceiveOptions::default()
            .max_messages(1000)
            .wait(Duration::from_millis(1500));
        assert_eq!((options.max_messages, options.wait_seconds()), (10, 2));
        let options = ReceiveOptions::default()
            .max_messages(3)
            .wait(Duration::ZERO);
        assert_eq!((options.max_messages, options.wait_seconds()), (3, 0));
    }
}
