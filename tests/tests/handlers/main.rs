//! The handler tier: every Lambda handler fed API Gateway and stream events,
//! with the in-memory adapters. No emulator, no processes: these run in
//! seconds and say whether a route answers what it should to whom.

mod authorisation;
mod children;
mod embargo;
mod hostile_input;
mod publish_body;
mod relationships;
mod routing_bases;
mod sample_events;
