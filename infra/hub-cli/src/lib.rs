//! The hub's command line (`hub`, src/main.rs) and what it is built on.
//!
//! [`subscriber`] is for subscriber systems written in Rust: it reads the
//! deliveries of a subscriber queue into typed values
//! ([`subscriber::Delivery`]) and polls a queue, deleting each message only
//! once the caller's handler has processed it ([`subscriber::Poller`]).
//! docs/subscribers.md describes the messages.

pub mod subscriber;
