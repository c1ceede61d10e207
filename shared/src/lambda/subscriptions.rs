//! Subscriptions (subscribers): create, read, list, delete.

use aws_lambda_events::apigw::{ApiGatewayProxyRequest, ApiGatewayProxyResponse};
use time::OffsetDateTime;
use tracing::info;

use crate::audit::{Action, AuditRecord};
use crate::auth::Caller;
use crate::error::HubError;
use crate::message::Encoding;
use crate::ports::{Adapters, Ports, StoreError, SubscriptionStore};
use crate::subscription::{self, DailyLimit, Subscription, SubscriptionRequest};

use super::audited::{audited, refused_subscription};
use super::http::{
    MAX_REQUEST_BYTES, fhir_response, header, limited_text_body, page_size, path_id,
    response_encoding,
};
use super::request_error::{BodyError, FHIR_MEDIA_TYPES};
use super::runtime::{Error, serve_api, start};

/// `POST /Subscription`: create a subscription for the calling subscriber.
pub async fn create_subscription<P: Ports>(
    ports: &P,
    request: &ApiGatewayProxyRequest,
    limit: DailyLimit,
) -> ApiGatewayProxyResponse {
    let audit = ports.audit();
    let encoding = response_encoding(request);
    let on_refusal = |record: AuditRecord| {
        let patient = header(request, "content-type")
            .and_then(Encoding::from_content_type)
            .zip(limited_text_body(request, MAX_REQUEST_BYTES).ok())
            .and_then(|(encoding, body)| {
                SubscriptionRequest::read(&body, encoding, OffsetDateTime::now_utc()).ok()
            })
            .and_then(|request| request.criteria.target.patient());
        record.patient(patient)
    };
    audited(audit, request, Action::SubscriptionCreate, encoding, on_refusal, |caller, record| async move {
        let subscriber_id = caller.subscriber()?.to_owned();
        let now = OffsetDateTime::now_utc();
        let content_type = header(request, "content-type");
        let request_encoding = content_type
            .and_then(Encoding::from_content_type)
            .ok_or_else(|| {
                BodyError::unsupported_media_type(content_type, FHIR_MEDIA_TYPES)
            })?;
        let body = limited_text_body(request, MAX_REQUEST_BYTES)?;
        let subscription_request = SubscriptionRequest::read(&body, request_encoding, now)?;
        if subscription_request.subscriber_id != subscriber_id {
            return Err(HubError::forbidden_element(
                "Subscription.channel.endpoint",
                "a client may create subscriptions only for its own subscriber",
            ).into());
        }
        caller.may_subscribe(&subscription_request.criteria.target)?;
        let patient = subscription_request.criteria.target.patient();
        let subscription =
            crate::app::subscription::create_subscription(ports, subscription_request, &caller.permits(), limit, now)
                .await?;
        info!(subscription_id = %subscription.id, subscriber_id = %subscription.subscriber_id, "subscription created");
        let response = fhir_response(
            201,
            encoding,
            subscription.render(encoding, now),
            &[("location", format!("/Subscription/{}", subscription.id))],
        );
        let mut record = record
            .subscription(subscription.id.clone())
            .subscriber(subscriber_id)
            .patient(patient);
        if let Some(basis) = &subscription.basis {
            record = record.detail(format!("basis: {}", basis.describe()));
        }
        Ok((response, record))
    })
    .await
}

/// The subscription of the path, if the caller's subscriber owns it.
/// Another subscriber's is refused as not found: its existence is not the
/// caller's business.
pub(super) async fn own_subscription<S: SubscriptionStore>(
    subscriptions: &S,
    caller: &Caller,
    request: &ApiGatewayProxyRequest,
) -> Result<Subscription, HubError> {
    let subscriber_id = caller.subscriber()?;
    let subscription = named_subscription(subscriptions, request).await?;
    if subscription.subscriber_id == subscriber_id {
        Ok(subscription)
    } else {
        // Another's is as absent as one that does not exist.
        Err(HubError::NotFound(format!(
            "Subscription/{}",
            subscription.id
        )))
    }
}

/// The subscription the path names, whoever owns it (operators' routes).
pub(super) async fn named_subscription<S: SubscriptionStore>(
    subscriptions: &S,
    request: &ApiGatewayProxyRequest,
) -> Result<Subscription, HubError> {
    let id = path_id(request, "Subscription")?;
    subscriptions
        .get(id)
        .await?
        .ok_or_else(|| HubError::NotFound(format!("Subscription/{id}")))
}

/// `GET /Subscription/{id}`.
pub async fn read_subscription<P: Ports>(
    ports: &P,
    request: &ApiGatewayProxyRequest,
) -> ApiGatewayProxyResponse {
    let (subscriptions, audit) = (ports.subscriptions(), ports.audit());
    let encoding = response_encoding(request);
    audited(
        audit,
        request,
        Action::SubscriptionRead,
        encoding,
        |record| refused_subscription(request, record),
        |caller, record| async move {
            let subscription = own_subscription(subscriptions, &caller, request).await?;
            let response = fhir_response(
                200,
                encoding,
                subscription.render(encoding, OffsetDateTime::now_utc()),
                &[],
            );
            let record = record
                .subscription(subscription.id.clone())
                .subscriber(subscription.subscriber_id.clone())
                .patient(subscription.criteria.target.patient());
            Ok((response, record))
        },
    )
    .await
}

/// `GET /Subscription?_count=..&_page=..`: the caller's subscriptions, a
/// searchset Bundle.
pub async fn list_subscriptions<P: Ports>(
    ports: &P,
    request: &ApiGatewayProxyRequest,
) -> ApiGatewayProxyResponse {
    let (subscriptions, audit) = (ports.subscriptions(), ports.audit());
    let encoding = response_encoding(request);
    audited(
        audit,
        request,
        Action::SubscriptionList,
        encoding,
        std::convert::identity,
        |caller, record| async move {
            let subscriber_id = caller.subscriber()?.to_owned();
            let page_size = page_size(request)?;
            let token = request.query_string_parameters.first("_page");
            let page = subscriptions
                .list_by_subscriber(&subscriber_id, page_size, token)
                .await?;
            let bundle =
                subscription::searchset(&page, page_size, encoding, OffsetDateTime::now_utc());
            Ok((
                fhir_response(200, encoding, bundle, &[]),
                record.subscriber(subscriber_id),
            ))
        },
    )
    .await
}

/// `DELETE /Subscription/{id}`: 204, and no delivery for it afterwards.
pub async fn delete_subscription<P: Ports>(
    ports: &P,
    request: &ApiGatewayProxyRequest,
) -> ApiGatewayProxyResponse {
    let (subscriptions, audit) = (ports.subscriptions(), ports.audit());
    let encoding = response_encoding(request);
    let on_refusal = |record| refused_subscription(request, record);
    audited(audit, request, Action::SubscriptionDelete, encoding, on_refusal, |caller, record| async move {
        let subscription = own_subscription(subscriptions, &caller, request).await?;
        subscriptions.delete(&subscription).await?;
        let deleted = subscription;
        info!(subscription_id = %deleted.id, subscriber_id = %deleted.subscriber_id, "subscription deleted");
        let mut response = ApiGatewayProxyResponse::default();
        response.status_code = 204;
        let record = record
            .subscription(deleted.id.clone())
            .subscriber(deleted.subscriber_id.clone())
            .patient(deleted.criteria.target.patient());
        Ok((response, record))
    })
    .await
}

/// The main of `POST /Subscription`.
pub async fn run_create_subscription() -> Result<(), Error> {
    let aws = start().await;
    let ports = Adapters::new()
        .subscriptions(aws.subscriptions()?)
        .subscribers(aws.subscribers()?)
        .register(aws.register()?)
        .reference(aws.reference()?)
        .relationships(aws.relationships()?)
        .audit(aws.audit()?);
    let limit = explicit_limit_from_env()?;
    let ports = &ports;
    serve_api(move |request| async move { create_subscription(ports, &request, limit).await }).await
}

/// EXPLICIT_SUBSCRIPTIONS_PER_DAY, read at start-up: a value set but
/// invalid fails the start, not the requests (absent, the default).
fn explicit_limit_from_env() -> Result<DailyLimit, StoreError> {
    let setting = std::env::var("EXPLICIT_SUBSCRIPTIONS_PER_DAY").ok();
    DailyLimit::from_setting(setting.as_deref()).map_err(|problem| {
        StoreError::Configuration(format!(
            "environment variable EXPLICIT_SUBSCRIPTIONS_PER_DAY: {problem}"
        ))
    })
}

/// The main of `GET /Subscription/{id}`.
pub async fn run_read_subscription() -> Result<(), Error> {
    let aws = start().await;
    let ports = Adapters::new()
        .subscriptions(aws.subscriptions()?)
        .audit(aws.audit()?);
    let ports = &ports;
    serve_api(move |request| async move { read_subscription(ports, &request).await }).await
}

/// The main of `GET /Subscription`.
pub async fn run_list_subscriptions() -> Result<(), Error> {
    let aws = start().await;
    let ports = Adapters::new()
        .subscriptions(aws.subscriptions()?)
        .audit(aws.audit()?);
    let ports = &ports;
    serve_api(move |request| async move { list_subscriptions(ports, &request).await }).await
}

/// The main of `DELETE /Subscription/{id}`.
pub async fn run_delete_subscription() -> Result<(), Error> {
    let aws = start().await;
    let ports = Adapters::new()
        .subscriptions(aws.subscriptions()?)
        .audit(aws.audit()?);
    let ports = &ports;
    serve_api(move |request| async move { delete_subscription(ports, &request).await }).await
}
