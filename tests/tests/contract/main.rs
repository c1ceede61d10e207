//! The contract tier: template.yaml and openapi.yaml read as documents and
//! checked against what the code does (routes, permissions, alarms, the
//! OperationOutcome shapes). Nothing is started.

mod openapi;
mod template;
