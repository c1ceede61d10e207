//! Subscribers (operators; status and redrive also the subscriber itself):
//! onboard, offboard, change, delivery status, DLQ redrive.

use aws_lambda_events::apigw::{ApiGatewayProxyRequest, ApiGatewayProxyResponse};
use time::OffsetDateTime;
use tracing::info;

use crate::audit::Action;
use crate::auth::Role;
use crate::message::Encoding;
use crate::ports::{Adapters, Ports, StoreError};
use crate::subscriber::{self, OnboardRequest};

use super::audited::{audited, refused_subscriber};
use super::http::{json_body, path_id, respond};
use super::runtime::{Aws, Error, serve_api, start};

/// `POST /subscribers`: onboard a subscriber for a registered client.
pub async fn onboard<P: Ports>(
    ports: &P,
    request: &ApiGatewayProxyRequest,
) -> ApiGatewayProxyResponse {
    let (store, provisioner, clients, audit) = (
        ports.subscribers(),
        ports.provisioner(),
        ports.clients(),
        ports.audit(),
    );
    audited(
        audit,
        request,
        Action::Onboard,
        Encoding::Json,
        std::convert::identity,
        |caller, record| async move {
            caller.require(Role::Operator)?;
            let body = json_body(request)?;
            let onboard_request = OnboardRequest::parse(&body)?;
            let subscriber = crate::app::subscriber::onboard(
                store,
                provisioner,
                clients,
                onboard_request,
                OffsetDateTime::now_utc(),
            )
            .await?;
            info!(subscriber_id = %subscriber.id, "subscriber onboarded");
            let response = respond(
                201,
                "application/json",
                subscriber.to_json().to_string(),
                &[("location", format!("/subscribers/{}", subscriber.id))],
            );
            let record = record.subscriber(subscriber.id.clone()).detail(format!(
                "client {}",
                subscriber.client_id.unwrap_or_default()
            ));
            Ok((response, record))
        },
    )
    .await
}

/// `DELETE /subscribers/{id}`: offboard a subscriber (operators).
pub async fn offboard<P: Ports>(
    ports: &P,
    request: &ApiGatewayProxyRequest,
) -> ApiGatewayProxyResponse {
    let (subscribers, subscriptions, provisioner, audit) = (
        ports.subscribers(),
        ports.subscriptions(),
        ports.provisioner(),
        ports.audit(),
    );
    audited(
        audit,
        request,
        Action::Offboard,
        Encoding::Json,
        std::convert::identity,
        |caller, record| async move {
            caller.require(Role::Operator)?;
            let id = path_id(request, "subscriber")?;
            let subscriber = crate::app::subscriber::offboard(
                subscribers,
                subscriptions,
                provisioner,
                audit,
                &caller,
                id,
                OffsetDateTime::now_utc(),
            )
            .await?;
            info!(subscriber_id = %subscriber.id, "subscriber offboarded");
            let mut body = subscriber.to_json();
            body["queueKeptForDays"] = serde_json::json!(subscriber::QUEUE_GRACE_DAYS);
            let response = respond(200, "application/json", body.to_string(), &[]);
            Ok((response, record.subscriber(subscriber.id)))
        },
    )
    .await
}

/// `PATCH /subscribers/{id}`: change the event types a subscriber may
/// receive, the AWS principal that reads its queue, or its service type
/// (what release embargoes apply to it) (operators). Its queues, and what
/// they hold, stay.
pub async fn change_subscriber<P: Ports>(
    ports: &P,
    request: &ApiGatewayProxyRequest,
) -> ApiGatewayProxyResponse {
    let (subscribers, subscriptions, provisioner, audit) = (
        ports.subscribers(),
        ports.subscriptions(),
        ports.provisioner(),
        ports.audit(),
    );
    audited(
        audit,
        request,
        Action::SubscriberChange,
        Encoding::Json,
        std::convert::identity,
        |caller, record| async move {
            caller.require(Role::Operator)?;
            let id = path_id(request, "subscriber")?;
            let change = subscriber::ChangeRequest::parse(&json_body(request)?)?;
            let detail = format!(
                "eventTypes {}, awsPrincipal {}, serviceType {}",
                if change.event_types.is_some() {
                    "changed"
                } else {
                    "kept"
                },
                if change.aws_principal.is_some() {
                    "changed"
                } else {
                    "kept"
                },
                // The new type itself: what embargoes it moves the
                // subscriber into or out of.
                change
                    .service_type
                    .map_or("kept", |service_type| service_type.code()),
            );
            let subscriber =
                crate::app::subscriber::change(subscribers, subscriptions, provisioner, id, change)
                    .await?;
            info!(subscriber_id = %subscriber.id, "subscriber changed");
            let response = respond(
                200,
                "application/json",
                subscriber.to_json().to_string(),
                &[],
            );
            Ok((response, record.subscriber(subscriber.id).detail(detail)))
        },
    )
    .await
}

/// `GET /subscribers/{id}/status`: messages sent per event type, the last
/// delivery, and what waits in the queue and its DLQ (operators, or the
/// subscriber itself; anyone else is told it does not exist).
pub async fn subscriber_status<P: Ports>(
    ports: &P,
    request: &ApiGatewayProxyRequest,
) -> ApiGatewayProxyResponse {
    let (subscribers, stats, queues, audit) = (
        ports.subscribers(),
        ports.stats(),
        ports.queues(),
        ports.audit(),
    );
    audited(
        audit,
        request,
        Action::SubscriberStatus,
        Encoding::Json,
        |record| refused_subscriber(request, record),
        |caller, record| async move {
            let id = path_id(request, "subscriber")?;
            let status =
                crate::app::status::status(subscribers, stats, queues, &caller, id).await?;
            info!(subscriber_id = %id, "delivery status read");
            let response = respond(200, "application/json", status.to_json().to_string(), &[]);
            Ok((response, record.subscriber(id)))
        },
    )
    .await
}

/// `POST /subscribers/{id}/$redrive`: moves the messages of the
/// subscriber's DLQ back to its queue, at most [`crate::status::REDRIVE_LIMITS`]
/// a request; the answer says how many moved and whether some remain
/// (operators, or the subscriber itself).
pub async fn redrive<P: Ports>(
    ports: &P,
    request: &ApiGatewayProxyRequest,
) -> ApiGatewayProxyResponse {
    let (subscribers, queues, audit) = (ports.subscribers(), ports.queues(), ports.audit());
    audited(
        audit,
        request,
        Action::Redrive,
        Encoding::Json,
        |record| refused_subscriber(request, record),
        |caller, record| async move {
            let id = path_id(request, "subscriber")?;
            let redriven = crate::app::status::redrive(
                subscribers,
                queues,
                &caller,
                id,
                crate::status::REDRIVE_LIMITS,
            )
            .await?;
            info!(subscriber_id = %id, moved = redriven.moved, remaining = redriven.remaining, "DLQ redriven");
            let response = respond(
                200,
                "application/json",
                redriven.to_json(id).to_string(),
                &[],
            );
            let record = record
                .subscriber(id)
                .detail(format!("moved {}", redriven.moved));
            Ok((response, record))
        },
    )
    .await
}

/// The main of `POST /subscribers`.
pub async fn run_onboard() -> Result<(), Error> {
    let aws = start().await;
    let ports = Adapters::new()
        .subscribers(aws.subscribers()?)
        .provisioner(aws.provisioner()?)
        .clients(aws.clients()?)
        .audit(aws.audit()?);
    let ports = &ports;
    serve_api(move |request| async move { onboard(ports, &request).await }).await
}

/// The main of `DELETE /subscribers/{id}`.
pub async fn run_offboard() -> Result<(), Error> {
    let aws = start().await;
    let ports = subscriber_wiring(&aws)?;
    let ports = &ports;
    serve_api(move |request| async move { offboard(ports, &request).await }).await
}

/// The main of `PATCH /subscribers/{id}`.
pub async fn run_change_subscriber() -> Result<(), Error> {
    let aws = start().await;
    let ports = subscriber_wiring(&aws)?;
    let ports = &ports;
    serve_api(move |request| async move { change_subscriber(ports, &request).await }).await
}

/// The main of `GET /subscribers/{id}/status`.
pub async fn run_subscriber_status() -> Result<(), Error> {
    let aws = start().await;
    let ports = Adapters::new()
        .subscribers(aws.subscribers()?)
        .stats(aws.stats()?)
        .queues(aws.queues_with_subscriptions()?)
        .audit(aws.audit()?);
    let ports = &ports;
    serve_api(move |request| async move { subscriber_status(ports, &request).await }).await
}

/// The main of `POST /subscribers/{id}/$redrive`.
pub async fn run_redrive() -> Result<(), Error> {
    let aws = start().await;
    let ports = Adapters::new()
        .subscribers(aws.subscribers()?)
        .queues(aws.queues())
        .audit(aws.audit()?);
    let ports = &ports;
    serve_api(move |request| async move { redrive(ports, &request).await }).await
}

/// The ports of offboarding and of changing a subscriber: its record, its
/// subscriptions and its queues' wiring.
fn subscriber_wiring(aws: &Aws) -> Result<impl Ports, StoreError> {
    Ok(Adapters::new()
        .subscribers(aws.subscribers()?)
        .subscriptions(aws.subscriptions()?)
        .provisioner(aws.provisioner()?)
        .audit(aws.audit()?))
}
