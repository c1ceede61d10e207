//! Replays: start one for a subscription, read its progress.

use aws_lambda_events::apigw::{ApiGatewayProxyRequest, ApiGatewayProxyResponse};
use time::OffsetDateTime;
use tracing::info;

use crate::app::subscription::relationship_holds;
use crate::audit::{Action, AuditRecord};
use crate::basis::Basis;
use crate::criteria::Target;
use crate::error::HubError;
use crate::events::Retention;
use crate::message::Encoding;
use crate::ports::{Adapters, Ports, ReplayStore};
use crate::replay;

use super::audited::{audited, refused_asking_for, refused_subscription};
use super::events::retention_from_env;
use super::http::{MOMENT_VALUES, parameter, parameters_body, path_id, respond, response_encoding};
use super::request_error::RequestError;
use super::runtime::{Error, serve_api, start};
use super::subscriptions::own_subscription;

/// `since` and `until` of a replay request: query parameters, or a FHIR
/// Parameters body (valueInstant, valueDateTime or valueDate).
fn replay_window(
    request: &ApiGatewayProxyRequest,
) -> Result<(Option<String>, Option<String>), RequestError> {
    let parameters = &request.query_string_parameters;
    let from_query = (
        parameters.first("since").map(str::to_owned),
        parameters.first("until").map(str::to_owned),
    );
    let Some(body) = parameters_body(request)? else {
        return Ok(from_query);
    };
    if from_query != (None, None) {
        return Err(HubError::bad_request(
            "Parameters",
            "give since and until either as query parameters or in a Parameters body, not both",
        )
        .into());
    }
    Ok((
        parameter(&body, "since", MOMENT_VALUES)?,
        parameter(&body, "until", MOMENT_VALUES)?,
    ))
}

/// `POST /Subscription/{id}/$replay`: starts re-delivering the window's
/// events the subscription matches now; answers at once with the replay.
pub async fn start_replay<P: Ports>(
    ports: &P,
    request: &ApiGatewayProxyRequest,
    retention: Retention,
) -> ApiGatewayProxyResponse {
    let (subscriptions, jobs, audit) = (ports.subscriptions(), ports.replays(), ports.audit());
    let encoding = response_encoding(request);
    audited(
        audit,
        request,
        Action::Replay,
        encoding,
        |record| refused_subscription(request, record),
        |caller, record| async move {
            let subscription = own_subscription(subscriptions, &caller, request).await?;
            let now = OffsetDateTime::now_utc();
            if !subscription.is_active(now) {
                let why = subscription
                    .ended
                    .as_ref()
                    .map(|ended| format!(" ({})", ended.detail))
                    .unwrap_or_default();
                return Err(HubError::unprocessable(
                    "Subscription.status",
                    format!("the subscription is off{why}: it matches nothing to replay"),
                )
                .into());
            }
            // A relationship ended since the last event: the replay's
            // steps would deliver nothing, so it is refused at once.
            if let (Basis::Relationship { person }, Target::Explicit(child)) =
                (subscription.basis(), &subscription.criteria.target)
                && !relationship_holds(ports, *child, person, &subscription.subscriber_id, now)
                    .await?
            {
                return Err(HubError::unprocessable(
                    "Subscription.status",
                    format!(
                        "basis lost: the child's relationship with person {person} ended, or the \
                         app no longer acts for them: nothing to replay"
                    ),
                )
                .into());
            }
            let (since, until) = replay_window(request)?;
            let window =
                replay::ReplayRequest::parse(since.as_deref(), until.as_deref(), retention, now)?;
            let job = window.job(&subscription, now);
            match jobs.start(&job, &replay::Admission::of(&job, now)).await? {
                Ok(()) => {}
                Err(replay::NotStarted::AlreadyRunning) => {
                    return Err(HubError::Conflict {
                        expression: "Subscription.id".into(),
                        problem: "a replay of this subscription is running: wait for it to \
                                  complete (GET its Content-Location) before starting another"
                            .into(),
                    }
                    .into());
                }
                Err(replay::NotStarted::QuotaSpent) => {
                    return Err(HubError::TooManyRequests {
                        problem: format!(
                            "the subscriber has started its {} replays of the day (UTC): \
                             try again after midnight UTC",
                            replay::REPLAYS_PER_SUBSCRIBER_PER_DAY
                        ),
                        retry_after_seconds: replay::quota_renews_in(now),
                    }
                    .into());
                }
            }
            info!(replay_id = %job.replay_id, subscription_id = %subscription.id, "replay started");
            let record = record
                .subscription(subscription.id.clone())
                .subscriber(subscription.subscriber_id.clone())
                .detail(format!("replay {}", job.replay_id));
            let response = respond(
                202,
                "application/json",
                job.to_json().to_string(),
                &[("content-location", format!("/replays/{}", job.replay_id))],
            );
            Ok((response, record))
        },
    )
    .await
}

/// `GET /replays/{id}`: a replay's progress, to its subscriber and operators.
pub async fn read_replay<P: Ports>(
    ports: &P,
    request: &ApiGatewayProxyRequest,
) -> ApiGatewayProxyResponse {
    let (jobs, audit) = (ports.replays(), ports.audit());
    // A refused read of an existing replay names its subscription and
    // subscriber too.
    let found_job: std::sync::OnceLock<(String, String)> = std::sync::OnceLock::new();
    let stored = &found_job;
    let on_refusal = |record: AuditRecord| {
        let record = refused_asking_for(request, "replay", record);
        match stored.get() {
            Some((subscription_id, subscriber_id)) => record
                .subscription(subscription_id.clone())
                .subscriber(subscriber_id.clone()),
            None => record,
        }
    };
    audited(
        audit,
        request,
        Action::ReplayRead,
        Encoding::Json,
        on_refusal,
        |caller, record| async move {
            let id = path_id(request, "replay")?;
            let job = jobs.get(id).await?;
            if let Some(job) = &job {
                let _ = stored.set((job.subscription_id.clone(), job.subscriber_id.clone()));
            }
            let job = job
                .filter(|job| replay::may_see(&caller, job))
                .ok_or_else(|| HubError::NotFound(format!("replay {id}")))?;
            let record = record
                .subscription(job.subscription_id.clone())
                .subscriber(job.subscriber_id.clone());
            Ok((
                respond(200, "application/json", job.to_json().to_string(), &[]),
                record,
            ))
        },
    )
    .await
}

/// The main of `POST /Subscription/{id}/$replay`.
pub async fn run_start_replay() -> Result<(), Error> {
    let aws = start().await;
    let ports = Adapters::new()
        .subscriptions(aws.subscriptions()?)
        .relationships(aws.relationships()?)
        .replays(aws.replays()?)
        .audit(aws.audit()?);
    let retention = retention_from_env()?;
    let ports = &ports;
    serve_api(move |request| async move { start_replay(ports, &request, retention).await }).await
}

/// The main of `GET /replays/{id}`.
pub async fn run_read_replay() -> Result<(), Error> {
    let aws = start().await;
    let ports = Adapters::new().replays(aws.replays()?).audit(aws.audit()?);
    let ports = &ports;
    serve_api(move |request| async move { read_replay(ports, &request).await }).await
}
