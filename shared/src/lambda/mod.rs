//! The Lambda side: start-up (tracing, SDK configuration) and the handlers
//! that translate API Gateway and DynamoDB stream events to and from the
//! domain. Every HTTP answer is built here, errors in one place
//! ([`error_response`]).
//!
//! One file per route group, each with its handlers and the `run_*` main of
//! each function (the binaries in functions/ only call one); start-up in
//! `runtime`, request and response helpers in `http`, every HTTP status and
//! OperationOutcome in `http_status`, the Lambda layer's own errors in
//! `request_error`. The public paths stay flat (`hub::lambda::publish`,
//! `hub::lambda::run_publish`, ...).

mod audit;
mod audited;
mod authorizer;
mod backfills;
mod children;
mod clients;
mod embargoes;
mod events;
mod http;
mod http_status;
mod people;
mod relationships;
mod replays;
mod request_error;
mod runtime;
mod stream;
mod subscribers;
mod subscriptions;
mod token;

pub use audit::{read_audit, run_read_audit};
pub use audited::{audited, caller_of};
pub use authorizer::{authorize, run_authorizer};
pub use backfills::{backfill, grant_backfill, revoke_backfill, run_backfill};
pub use children::{read_child, read_child_events, run_read_child, run_read_child_events};
pub use clients::{disable_client, register_client, run_disable_client, run_register_client};
pub use embargoes::{
    delete_embargo, list_embargoes, put_embargo, run_delete_embargo, run_embargo_release,
    run_list_embargoes, run_put_embargo,
};
pub use events::{
    publish, read_event, release_event, retention_from_env, run_publish, run_read_event,
    run_release_event,
};
pub use http::{fhir_response, header, response_encoding};
pub use http_status::{Answer, error_response};
pub use people::{
    PeopleOperation, attest_person, person_children, run_people, stop_acting_for_person,
};
pub use relationships::{
    publish_relationship, read_child_relationships, run_publish_relationship,
    run_read_child_relationships,
};
pub use replays::{read_replay, run_read_replay, run_start_replay, start_replay};
pub use request_error::{BodyError, FHIR_MEDIA_TYPES, RequestError};
pub use runtime::{
    Error, LambdaEvent, dynamodb_client, init_tracing, run, sdk_config, service_fn, sns_client,
};
pub use stream::{dispatch_batch, replay_batch, run_dispatch, run_replay_worker};
pub use subscribers::{
    change_subscriber, offboard, onboard, redrive, run_change_subscriber, run_offboard,
    run_onboard, run_redrive, run_subscriber_status, subscriber_status,
};
pub use subscriptions::{
    create_subscription, delete_subscription, list_subscriptions, read_subscription,
    run_create_subscription, run_delete_subscription, run_list_subscriptions,
    run_read_subscription,
};
pub use token::{CLIENT_ASSERTION_TYPE, run_token, token};
