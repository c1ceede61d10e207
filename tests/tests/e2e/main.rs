//! The end-to-end tier: the whole local stack (emulator, every function as a
//! process, the API and stream mapping) driven over HTTP as publishers,
//! subscribers and operators would. Tests that change the stack itself
//! (fault injection, killed functions) start a stack of their own; the
//! others share one per module (`Hub::shared`).

mod auth;
mod backfill;
mod catalogue;
mod cli;
mod delivery_status;
mod embargo;
mod faults;
mod generic_scenarios;
mod history;
mod parents;
mod pipeline;
mod queue_access;
mod relationships;
mod replay;
mod routing_model;
mod routing_safety;
mod scenario;
mod schemathesis;
mod subscriptions;
