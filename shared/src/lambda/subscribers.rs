//! Subscribers (operators; status and redrive also the subscriber itself):
//! onboard, offboard, change, delivery status, DLQ redrive.

use aws_lambda_events::apigw::{ApiGatewayProxyRequest, ApiGatewayProxyResponse};
use time::OffsetDateTime;
use tracing::info;

use crate::audit::Action;
use crate::auth::Role;
use crate::aws::{
    DynamoAuditLog, DynamoClientStore, DynamoDeliveryStats, DynamoSubscriberStore,
    DynamoSubscriptionStore, SqsQueueMonitor, SqsQueueProvisioner, required_env,
    topic_arns_from_env,
};
use crate::message::Encoding;
use crate::ports::{AuditLog, ClientStore, QueueProvisioner, SubscriberStore, SubscriptionStore};
use crate::subscriber::{self, OnboardRequest};

use super::audited::{audited, refused_subscriber};
use super::http::{json_body, path_id, respond};
use super::runtime::{Error, serve_api, start};

/// `POST /subscribers`: onboard a subscriber for a registered client.
pub async fn onboard<S: SubscriberStore, Q: QueueProvisioner, C: ClientStore, A: AuditLog>(
    store: &S,
    provisioner: &Q,
    clients: &C,
    audit: &A,
    request: &ApiGatewayProxyRequest,
) -> ApiGatewayProxyResponse {
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
pub async fn offboard<
    R: SubscriberStore,
    S: SubscriptionStore,
    Q: QueueProvisioner,
    A: AuditLog,
>(
    subscribers: &R,
    subscriptions: &S,
    provisioner: &Q,
    audit: &A,
    request: &ApiGatewayProxyRequest,
) -> ApiGatewayProxyResponse {
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
/// receive or the AWS principal that reads its queue (operators). Its
/// queues, and what they hold, stay.
pub async fn change_subscriber<
    R: SubscriberStore,
    S: SubscriptionStore,
    Q: QueueProvisioner,
    A: AuditLog,
>(
    subscribers: &R,
    subscriptions: &S,
    provisioner: &Q,
    audit: &A,
    request: &ApiGatewayProxyRequest,
) -> ApiGatewayProxyResponse {
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
                "eventTypes {}, awsPrincipal {}",
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
pub async fn subscriber_status<
    S: SubscriberStore,
    D: crate::ports::DeliveryStats,
    Q: crate::ports::QueueMonitor,
    A: AuditLog,
>(
    subscribers: &S,
    stats: &D,
    queues: &Q,
    audit: &A,
    request: &ApiGatewayProxyRequest,
) -> ApiGatewayProxyResponse {
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
pub async fn redrive<S: SubscriberStore, Q: crate::ports::QueueMonitor, A: AuditLog>(
    subscribers: &S,
    queues: &Q,
    audit: &A,
    request: &ApiGatewayProxyRequest,
) -> ApiGatewayProxyResponse {
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
    let (config, dynamodb) = start().await;
    let subscribers =
        DynamoSubscriberStore::new(dynamodb.clone(), required_env("SUBSCRIBERS_TABLE")?);
    let provisioner = SqsQueueProvisioner::from_env(&config)?;
    let clients = DynamoClientStore::new(dynamodb.clone(), required_env("CLIENTS_TABLE")?);
    let audit = DynamoAuditLog::from_env(dynamodb)?;
    let (subscribers, provisioner, clients, audit) = (&subscribers, &provisioner, &clients, &audit);
    serve_api(move |request| async move {
        onboard(subscribers, provisioner, clients, audit, &request).await
    })
    .await
}

/// The main of `DELETE /subscribers/{id}`.
pub async fn run_offboard() -> Result<(), Error> {
    let (config, dynamodb) = start().await;
    let subscribers =
        DynamoSubscriberStore::new(dynamodb.clone(), required_env("SUBSCRIBERS_TABLE")?);
    let subscriptions =
        DynamoSubscriptionStore::new(dynamodb.clone(), required_env("SUBSCRIPTIONS_TABLE")?);
    let provisioner = SqsQueueProvisioner::from_env(&config)?;
    let audit = DynamoAuditLog::from_env(dynamodb)?;
    let (subscribers, subscriptions, provisioner, audit) =
        (&subscribers, &subscriptions, &provisioner, &audit);
    serve_api(move |request| async move {
        offboard(subscribers, subscriptions, provisioner, audit, &request).await
    })
    .await
}

/// The main of `PATCH /subscribers/{id}`.
pub async fn run_change_subscriber() -> Result<(), Error> {
    let (config, dynamodb) = start().await;
    let subscribers =
        DynamoSubscriberStore::new(dynamodb.clone(), required_env("SUBSCRIBERS_TABLE")?);
    let subscriptions =
        DynamoSubscriptionStore::new(dynamodb.clone(), required_env("SUBSCRIPTIONS_TABLE")?);
    let provisioner = SqsQueueProvisioner::from_env(&config)?;
    let audit = DynamoAuditLog::from_env(dynamodb)?;
    let (subscribers, subscriptions, provisioner, audit) =
        (&subscribers, &subscriptions, &provisioner, &audit);
    serve_api(move |request| async move {
        change_subscriber(subscribers, subscriptions, provisioner, audit, &request).await
    })
    .await
}

/// The main of `GET /subscribers/{id}/status`.
pub async fn run_subscriber_status() -> Result<(), Error> {
    let (config, dynamodb) = start().await;
    let subscribers =
        DynamoSubscriberStore::new(dynamodb.clone(), required_env("SUBSCRIBERS_TABLE")?);
    let stats = DynamoDeliveryStats::from_env(dynamodb.clone())?;
    let queues = SqsQueueMonitor::new(aws_sdk_sqs::Client::new(&config))
        .with_subscriptions(aws_sdk_sns::Client::new(&config), topic_arns_from_env()?);
    let audit = DynamoAuditLog::from_env(dynamodb)?;
    let (subscribers, stats, queues, audit) = (&subscribers, &stats, &queues, &audit);
    serve_api(move |request| async move {
        subscriber_status(subscribers, stats, queues, audit, &request).await
    })
    .await
}

/// The main of `POST /subscribers/{id}/$redrive`.
pub async fn run_redrive() -> Result<(), Error> {
    let (config, dynamodb) = start().await;
    let subscribers =
        DynamoSubscriberStore::new(dynamodb.clone(), required_env("SUBSCRIBERS_TABLE")?);
    let queues = SqsQueueMonitor::new(aws_sdk_sqs::Client::new(&config));
    let audit = DynamoAuditLog::from_env(dynamodb)?;
    let (subscribers, queues, audit) = (&subscribers, &queues, &audit);
    serve_api(move |request| async move { redrive(subscribers, queues, audit, &request).await })
        .await
}
