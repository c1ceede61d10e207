//! Backfill grants (operators): `POST /Subscription/{id}/$backfill` opens
//! one, `DELETE /Subscription/{id}/backfill/{grantId}` revokes it.

use aws_lambda_events::apigw::{ApiGatewayProxyRequest, ApiGatewayProxyResponse};
use aws_lambda_events::http::Method;
use time::OffsetDateTime;
use tracing::info;

use crate::app;
use crate::audit::Action;
use crate::auth::Role;
use crate::backfill::BackfillRequest;
use crate::error::HubError;
use crate::message::Encoding;
use crate::ports::{Adapters, Ports};

use super::audited::{audited, refused_subscription};
use super::http::{MOMENT_VALUES, parameter, parameters_body, respond};
use super::runtime::{Error, serve_api, start};
use super::subscriptions::named_subscription;

/// Either route, by its method: one function serves both, with one role.
pub async fn backfill<P: Ports>(
    ports: &P,
    request: &ApiGatewayProxyRequest,
) -> ApiGatewayProxyResponse {
    if request.http_method == Method::DELETE {
        revoke_backfill(ports, request).await
    } else {
        grant_backfill(ports, request).await
    }
}

/// `POST /Subscription/{id}/$backfill`: a Parameters body with `reason`
/// (valueString), `since` and `expires` (valueInstant, valueDateTime or
/// valueDate). 201 with the grant.
pub async fn grant_backfill<P: Ports>(
    ports: &P,
    request: &ApiGatewayProxyRequest,
) -> ApiGatewayProxyResponse {
    audited(
        ports.audit(),
        request,
        Action::BackfillGrant,
        Encoding::Json,
        |record| refused_subscription(request, record),
        |caller, record| async move {
            caller.require(Role::Operator)?;
            let subscription = named_subscription(ports.subscriptions(), request).await?;
            let body = parameters_body(request)?.ok_or_else(|| {
                HubError::bad_request(
                    "Parameters",
                    "the body is a FHIR Parameters resource with reason, since and expires",
                )
            })?;
            let now = OffsetDateTime::now_utc();
            let asked = BackfillRequest::parse(
                parameter(&body, "reason", &["valueString"])?.as_deref(),
                parameter(&body, "since", MOMENT_VALUES)?.as_deref(),
                parameter(&body, "expires", MOMENT_VALUES)?.as_deref(),
                now,
            )?;
            let grant =
                app::backfill::grant(ports, &subscription, &asked, &caller.client_id, now).await?;
            info!(subscription_id = %subscription.id, grant_id = %grant.id, "backfill granted");
            let response = respond(
                201,
                "application/json",
                grant.to_json(&subscription.id, now).to_string(),
                &[(
                    "location",
                    format!("/Subscription/{}/backfill/{}", subscription.id, grant.id),
                )],
            );
            let record = record
                .subscription(subscription.id.clone())
                .subscriber(subscription.subscriber_id.clone())
                .patient(subscription.criteria.target.patient())
                .detail(grant.describe());
            Ok((response, record))
        },
    )
    .await
}

/// `DELETE /Subscription/{id}/backfill/{grantId}`: 200 with the grant, now
/// revoked (again, when it already was).
pub async fn revoke_backfill<P: Ports>(
    ports: &P,
    request: &ApiGatewayProxyRequest,
) -> ApiGatewayProxyResponse {
    audited(
        ports.audit(),
        request,
        Action::BackfillRevoke,
        Encoding::Json,
        |record| refused_subscription(request, record),
        |caller, record| async move {
            caller.require(Role::Operator)?;
            let subscription = named_subscription(ports.subscriptions(), request).await?;
            let grant_id = request
                .path_parameters
                .get("grantId")
                .map(String::as_str)
                .unwrap_or_default();
            let now = OffsetDateTime::now_utc();
            let grant =
                app::backfill::revoke(ports, &subscription, grant_id, &caller.client_id, now)
                    .await?
                    .ok_or_else(|| {
                        HubError::NotFound(format!(
                            "backfill grant {grant_id} of Subscription/{}",
                            subscription.id
                        ))
                    })?;
            info!(subscription_id = %subscription.id, grant_id = %grant.id, "backfill revoked");
            let response = respond(
                200,
                "application/json",
                grant.to_json(&subscription.id, now).to_string(),
                &[],
            );
            let record = record
                .subscription(subscription.id.clone())
                .subscriber(subscription.subscriber_id.clone())
                .patient(subscription.criteria.target.patient())
                .detail(format!("backfill {} revoked", grant.id));
            Ok((response, record))
        },
    )
    .await
}

/// The main of `POST /Subscription/{id}/$backfill` and `DELETE
/// /Subscription/{id}/backfill/{grantId}`.
pub async fn run_backfill() -> Result<(), Error> {
    let aws = start().await;
    let ports = Adapters::new()
        .subscriptions(aws.subscriptions()?)
        .audit(aws.audit()?);
    let ports = &ports;
    serve_api(move |request| async move { backfill(ports, &request).await }).await
}
