//! Receiving the hub's deliveries from a subscriber queue.
//!
//! Every delivery is one SQS message: the event as published in the body,
//! and what the hub knows about it in string message attributes
//! (docs/subscribers.md, section 2). [`Delivery::from_message`] reads one;
//! [`Poller`] long-polls a queue and hands each delivery to a handler.
//!
//! ```no_run
//! use hub_cli::subscriber::{Delivery, Outcome, Poller, ReceiveOptions};
//!
//! # async fn example() -> Result<(), hub_cli::subscriber::PollError> {
//! let config = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
//! let queue_url = "https://sqs.eu-west-2.amazonaws.com/123456789012/subscriber-queue";
//! let poller = Poller::new(aws_sdk_sqs::Client::new(&config), queue_url);
//! loop {
//!     let outcomes = poller
//!         .poll_once(ReceiveOptions::default(), async |delivery: &Delivery| {
//!             // Store the event: an Err leaves the message for redelivery.
//!             std::fs::write(delivery.file_name(), &delivery.body)
//!         })
//!         .await?;
//!     for outcome in outcomes {
//!         match outcome {
//!             Outcome::Handled { .. } => {}
//!             Outcome::Failed { delivery, error } => {
//!                 eprintln!("{}: {error}", delivery.event_id)
//!             }
//!             Outcome::Malformed { error, .. } => eprintln!("not a hub delivery: {error}"),
//!         }
//!     }
//! }
//! # }
//! ```

mod delivery;
mod poller;

pub use delivery::{ContentType, Delivery, DeliveryError, SubscriptionMatch, attribute};
// The hub's own domain types, as a delivery carries them.
pub use hub::catalogue::Lifecycle;
pub use hub::events::OutOfOrder;
pub use hub::nhs_number::NhsNumber;
pub use poller::{Outcome, PollError, Poller, ReceiveOptions};
