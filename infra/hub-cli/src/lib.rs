//! The hub's command line (`hub-cli`, src/main.rs) and what it is built on.
//!
//! [`subscriber`] is for subscriber systems written in Rust: it reads the
//! deliveries of a subscriber queue into typed values
//! ([`subscriber::Delivery`]) and polls a queue, deleting each message only
//! once the caller's handler has processed it ([`subscriber::Poller`]).
//! docs/subscribers.md describes the messages.
//!
//! [`api`] calls the hub's HTTP API as one client (signed JWT assertion,
//! access token, any route); [`config`] finds the hub's URL and the
//! client's key from flags, the environment or a profile.

pub mod api;
pub mod config;
pub mod subscriber;
