//! The Lambda side: start-up (tracing, SDK configuration) and the handlers
//! that translate API Gateway and DynamoDB stream events to and from the
//! domain. Every HTTP answer is built here, errors in one place
//! ([`error_response`]).
//!
//! One file per route group; the public paths stay flat
//! (`hub::lambda::publish`, `hub::lambda::run_publish`, ...).

mod audit;
mod audited;
mod authorizer;
mod children;
mod clients;
mod events;
mod http;
mod http_status;
mod replays;
mod runtime;
mod stream;
mod subscribers;
mod subscriptions;
mod token;

pub use audit::read_audit;
pub use audited::{audited, caller_of};
pub use authorizer::authorize;
pub use children::{read_child, read_child_events};
pub use clients::{disable_client, register_client};
pub use events::{RETENTION, publish, read_event, release_event, run_publish};
pub use http::{fhir_response, header, response_encoding};
pub use http_status::error_response;
pub use replays::{read_replay, start_replay};
pub use runtime::{
    Error, LambdaEvent, dynamodb_client, init_tracing, run, sdk_config, service_fn, sns_client,
};
pub use stream::{dispatch_batch, replay_batch};
pub use subscribers::{change_subscriber, offboard, onboard, redrive, subscriber_status};
pub use subscriptions::{
    create_subscription, delete_subscription, list_subscriptions, read_subscription,
};
pub use token::{CLIENT_ASSERTION_TYPE, token};
