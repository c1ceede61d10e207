//! The domain of the child health events hub.
//!
//! The core (catalogue, FHIR reading, validation, criteria, matching) has no
//! AWS dependency and is tested with the in-memory adapters of `memory`
//! (feature `memory`, for tests and tools only).
//! The `aws` feature adds the DynamoDB, SNS and SQS adapters; the `lambda`
//! feature adds the translation between Lambda events and the domain.

pub mod access;
pub mod app;
pub mod audit;
pub mod auth;
pub mod auth_error;
pub mod catalogue;
pub mod criteria;
pub mod dispatch;
pub mod error;
pub mod events;
pub mod fhir;
pub mod fhir_time;
pub mod generic;
pub mod history;
#[cfg(any(test, feature = "memory"))]
pub mod memory;
pub mod message;
pub mod metrics;
pub mod nhs_number;
pub mod ods;
pub mod outcome;
pub mod ports;
pub mod reference;
pub mod register;
pub mod replay;
pub mod status;
pub mod store;
pub mod subscriber;
pub mod subscription;
pub mod text;

#[cfg(feature = "aws")]
pub mod aws;
#[cfg(feature = "lambda")]
pub mod lambda;

pub use catalogue::{EventType, Lifecycle};
pub use error::HubError;
pub use message::{Encoding, EventMessage};
pub use nhs_number::NhsNumber;
