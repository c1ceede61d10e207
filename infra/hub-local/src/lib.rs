//! The local stack behind `hub-local` (src/main.rs), and what the tests
//! share with it: the one reader of template.yaml ([`yaml::read_yaml`],
//! [`template::Template`]) and the creation of the template's tables
//! ([`resources::create_template_table`]), so that the template is the
//! only source of the tables' schemas.
//!
//! `run` ([`stack::run`]) starts the moto emulator, creates the template's
//! KMS keys, tables, topics and queues in it, starts every function's real
//! binary behind a local Lambda Runtime API, serves the template's routes
//! behind their Lambda authorizer and runs the stream -> dispatch hand-off;
//! then it registers the demo clients and onboards the demo subscribers.

pub mod api;
pub mod authorizer;
pub mod demo;
pub mod emulator;
pub mod faults;
pub mod gateway;
pub mod migrate;
pub mod reference;
pub mod resources;
pub mod runtime;
pub mod schedule;
pub mod stack;
pub mod streams;
pub mod template;
pub mod yaml;
