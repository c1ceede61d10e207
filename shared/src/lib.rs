//! The child health events hub: domain, use cases, ports and adapters.
//!
//! Imports go one way only, so that each layer can later become a crate of
//! its own (`structure.py` reports any import cycle between these modules):
//! - domain (every module not named below: catalogue, FHIR reading,
//!   validation, criteria, matching, the register's rules...): types and
//!   rules, no async, no ports, no environment; imports only other domain
//!   modules;
//! - `ports`: the traits of what the use cases read and write; imports the
//!   domain;
//! - `app`: the use cases, which take ports; imports ports and domain;
//! - adapters: `memory` (feature `memory`: tests, benchmarks and tools only,
//!   never the deployed functions), `aws` (feature `aws`: DynamoDB, SNS, SQS,
//!   KMS) and `lambda` (feature `lambda`: the translation between Lambda
//!   events and the use cases); they import everything below them.

pub mod access;
pub mod app;
pub mod audit;
pub mod auth;
pub mod auth_error;
pub mod backfill;
pub mod basis;
pub mod catalogue;
pub mod criteria;
pub mod dispatch;
pub mod embargo;
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
pub mod narrowing;
pub mod nhs_number;
pub mod ods;
pub mod outcome;
pub mod pchr;
pub mod ports;
pub mod reference;
pub mod register;
pub mod relationship;
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
