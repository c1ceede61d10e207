//! Release embargoes (operators): `GET /embargoes`, `PUT` and `DELETE
//! /embargoes/{eventType}/{serviceType}`; and the scheduled function that
//! releases held deliveries when due (`embargo-release`).

use aws_lambda_events::apigw::{ApiGatewayProxyRequest, ApiGatewayProxyResponse};
use serde::Deserialize;
use time::OffsetDateTime;

use crate::audit::{Action, timestamp};
use crate::auth::Role;
use crate::catalogue::EventType;
use crate::criteria::ServiceType;
use crate::embargo::{Delay, EmbargoSetting};
use crate::error::HubError;
use crate::message::Encoding;
use crate::ports::{Adapters, EmbargoStore, Ports};

use super::audited::audited;
use super::http::{json_body, respond};
use super::runtime::{Error, LambdaEvent, run, serve_api, service_fn, start};

/// The longest reason an operator may give.
const MAX_REASON_LENGTH: usize = 500;

/// The setting's key from the path: an event type of the catalogue and a
/// service type.
fn path_key(request: &ApiGatewayProxyRequest) -> Result<(EventType, ServiceType), HubError> {
    let parameter = |name: &str| {
        request
            .path_parameters
            .get(name)
            .map(String::as_str)
            .unwrap_or_default()
    };
    let code = parameter("eventType");
    let event_type = code.parse::<EventType>().map_err(|_| {
        HubError::unprocessable(
            "eventType",
            format!("'{code}' is not an event type of the catalogue"),
        )
    })?;
    let code = parameter("serviceType");
    let service_type = ServiceType::read(code)
        .map_err(|problem| HubError::unprocessable("serviceType", problem))?;
    Ok((event_type, service_type))
}

/// The body of a `PUT`: `{"delay": "P42D", "reason": "..."}`.
fn setting_body(body: &str) -> Result<(Delay, String), HubError> {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Raw {
        delay: Option<String>,
        reason: Option<String>,
    }
    let raw: Raw = crate::fhir::from_json_unique(body).map_err(|error| {
        HubError::bad_request("$", format!("the body is not an embargo setting: {error}"))
    })?;
    let delay = raw
        .delay
        .ok_or_else(|| HubError::bad_request("delay", "delay is required"))?;
    let delay =
        Delay::parse(&delay).map_err(|problem| HubError::unprocessable("delay", problem))?;
    let reason = raw
        .reason
        .map(|reason| reason.trim().to_owned())
        .unwrap_or_default();
    if reason.is_empty() || reason.chars().count() > MAX_REASON_LENGTH {
        return Err(HubError::unprocessable(
            "reason",
            format!("reason is required, at most {MAX_REASON_LENGTH} characters"),
        ));
    }
    Ok((delay, reason))
}

/// `GET /embargoes` (operators): the settings in effect.
pub async fn list_embargoes<P: Ports>(
    ports: &P,
    request: &ApiGatewayProxyRequest,
) -> ApiGatewayProxyResponse {
    let (embargoes, audit) = (ports.embargoes(), ports.audit());
    audited(
        audit,
        request,
        Action::EmbargoRead,
        Encoding::Json,
        std::convert::identity,
        |caller, record| async move {
            caller.require(Role::Operator)?;
            let settings = embargoes.settings().await?;
            let listed: Vec<serde_json::Value> =
                settings.0.iter().map(EmbargoSetting::to_json).collect();
            let body = serde_json::json!({ "embargoes": listed });
            Ok((
                respond(200, "application/json", body.to_string(), &[]),
                record,
            ))
        },
    )
    .await
}

/// `PUT /embargoes/{eventType}/{serviceType}` (operators): sets or changes
/// a delay. It applies to events dispatched after it; existing holds keep
/// their release time.
pub async fn put_embargo<P: Ports>(
    ports: &P,
    request: &ApiGatewayProxyRequest,
) -> ApiGatewayProxyResponse {
    let (embargoes, audit) = (ports.embargoes(), ports.audit());
    audited(
        audit,
        request,
        Action::EmbargoSet,
        Encoding::Json,
        std::convert::identity,
        |caller, record| async move {
            caller.require(Role::Operator)?;
            let (event_type, service_type) = path_key(request)?;
            let (delay, reason) = setting_body(&json_body(request)?)?;
            let setting = EmbargoSetting {
                event_type,
                service_type,
                delay: delay.text().to_owned(),
                reason,
                set_by: caller.client_id.clone(),
                set_at: timestamp(OffsetDateTime::now_utc()),
            };
            embargoes.put_setting(&setting).await?;
            tracing::info!(
                event_type = event_type.code(),
                service_type = service_type.code(),
                delay = delay.text(),
                "embargo set"
            );
            let detail = format!(
                "{} to {}: {} ({})",
                event_type.code(),
                service_type.code(),
                setting.delay,
                setting.reason
            );
            Ok((
                respond(200, "application/json", setting.to_json().to_string(), &[]),
                record.detail(detail),
            ))
        },
    )
    .await
}

/// `DELETE /embargoes/{eventType}/{serviceType}` (operators): ends a
/// setting; what it holds already is still released at its time.
pub async fn delete_embargo<P: Ports>(
    ports: &P,
    request: &ApiGatewayProxyRequest,
) -> ApiGatewayProxyResponse {
    let (embargoes, audit) = (ports.embargoes(), ports.audit());
    audited(
        audit,
        request,
        Action::EmbargoRemove,
        Encoding::Json,
        std::convert::identity,
        |caller, record| async move {
            caller.require(Role::Operator)?;
            let (event_type, service_type) = path_key(request)?;
            let at = timestamp(OffsetDateTime::now_utc());
            if !embargoes
                .remove_setting(event_type, service_type, &at)
                .await?
            {
                return Err(HubError::NotFound(format!(
                    "an embargo of {} for {}",
                    event_type.code(),
                    service_type.code()
                ))
                .into());
            }
            let mut response = ApiGatewayProxyResponse::default();
            response.status_code = 204;
            let detail = format!("{} to {}", event_type.code(), service_type.code());
            Ok((response, record.detail(detail)))
        },
    )
    .await
}

/// The three settings routes, each its own function with the same ports.
#[derive(Clone, Copy)]
enum SettingsRoute {
    List,
    Put,
    Delete,
}

async fn serve_settings(route: SettingsRoute) -> Result<(), Error> {
    let aws = start().await;
    let ports = Adapters::new()
        .embargoes(aws.embargoes()?)
        .audit(aws.audit()?);
    let ports = &ports;
    serve_api(move |request| async move {
        match route {
            SettingsRoute::List => list_embargoes(ports, &request).await,
            SettingsRoute::Put => put_embargo(ports, &request).await,
            SettingsRoute::Delete => delete_embargo(ports, &request).await,
        }
    })
    .await
}

/// The main of `GET /embargoes`.
pub async fn run_list_embargoes() -> Result<(), Error> {
    serve_settings(SettingsRoute::List).await
}

/// The main of `PUT /embargoes/{eventType}/{serviceType}`.
pub async fn run_put_embargo() -> Result<(), Error> {
    serve_settings(SettingsRoute::Put).await
}

/// The main of `DELETE /embargoes/{eventType}/{serviceType}`.
pub async fn run_delete_embargo() -> Result<(), Error> {
    serve_settings(SettingsRoute::Delete).await
}

/// The main of `embargo-release`, invoked by its schedule: one run
/// releases what is due. A hold that fails stays held for the next run and
/// does not fail the invocation (a retried invocation would only run again
/// what the next schedule runs); a store that cannot be read does.
pub async fn run_embargo_release() -> Result<(), Error> {
    let aws = start().await;
    let ports = Adapters::new()
        .events(aws.events()?)
        .subscriptions(aws.subscriptions()?)
        .register(aws.register()?)
        .stats(aws.stats()?)
        .audit(aws.audit()?)
        .publisher(aws.publisher().await?)
        .embargoes(aws.embargoes()?);
    let ports = &ports;
    run(service_fn(
        move |_: LambdaEvent<serde_json::Value>| async move {
            let done =
                match crate::app::embargo::release_due(ports, OffsetDateTime::now_utc()).await {
                    Ok(done) => done,
                    Err(error) => {
                        // A run that cannot read or write the embargo table
                        // releases nothing and writes no EmbargoOverdue, and
                        // still counts as an invocation: counted as a failure,
                        // so that embargo-release-failures fires if it lasts.
                        crate::metrics::MetricRecord::new()
                            .count(crate::metrics::EMBARGO_RELEASE_FAILURES, 1)
                            .emit();
                        return Err(error.into());
                    }
                };
            tracing::info!(
                released = done.released,
                cancelled = done.cancelled,
                failed = done.failed,
                overdue_seconds = done.overdue_seconds,
                "embargo release run"
            );
            Ok::<_, Error>(serde_json::json!({
                "released": done.released,
                "cancelled": done.cancelled,
                "failed": done.failed,
                "overdueSeconds": done.overdue_seconds,
            }))
        },
    ))
    .await
}
