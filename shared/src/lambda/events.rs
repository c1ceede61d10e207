//! `POST /events/{event-type}`, `GET /events/{id}` and
//! `POST /events/{id}/$release`.

use aws_lambda_events::apigw::{ApiGatewayProxyRequest, ApiGatewayProxyResponse};
use time::OffsetDateTime;
use tracing::info;

use crate::audit::{self, Action, AuditRecord};
use crate::auth::{Caller, Role};
use crate::catalogue::EventType;
use crate::error::HubError;
use crate::events::{self, MAX_PAYLOAD_BYTES, PublishOutcome, Retention, StoredEvent};
use crate::history;
use crate::message::Encoding;
use crate::metrics;
use crate::nhs_number::NhsNumber;
use crate::outcome::OperationOutcome;
use crate::ports::{Adapters, AuditLog, EventStore, Ports, RegisterStore, StoreError};

use super::audited::{audited, audited_outcome, refused_asking_for};
use super::children::subscribed_types;
use super::http::{body_bytes, fhir_response, header, respond, response_encoding, text_within};
use super::http_status::Answer;
use super::request_error::{BodyError, FHIR_MEDIA_TYPES, RequestError};
use super::runtime::{Aws, Error, LambdaEvent, run, serve_api, service_fn, start};

/// How long events are kept: EVENT_RETENTION_DAYS, read by the `run_*`
/// of each function that needs it, so that a value set but invalid fails
/// the function's start rather than its requests (absent, the default).
pub fn retention_from_env() -> Result<Retention, StoreError> {
    retention_of(std::env::var("EVENT_RETENTION_DAYS").ok().as_deref())
}

fn retention_of(setting: Option<&str>) -> Result<Retention, StoreError> {
    Retention::from_setting(setting).map_err(|problem| {
        StoreError::Configuration(format!(
            "environment variable EVENT_RETENTION_DAYS: {problem}"
        ))
    })
}

/// `POST /events/{event-type}`: validate, authorise, then store once.
pub async fn publish<P: Ports>(
    ports: &P,
    event_type: EventType,
    request: &ApiGatewayProxyRequest,
    retention: Retention,
) -> ApiGatewayProxyResponse {
    let (store, audit, register) = (ports.events(), ports.audit(), ports.register());
    let started = std::time::Instant::now();
    let encoding = response_encoding(request);
    let on_refusal = |record: AuditRecord| {
        let identified = body_bytes(request)
            .ok()
            .and_then(|body| events::identify(event_type, header(request, "content-type"), &body));
        match identified {
            Some((event_key, nhs_number)) => record.event(event_key).patient(nhs_number),
            None => record,
        }
    };
    let (response, outcome) = audited_outcome(audit, request, Action::Publish, encoding, on_refusal, |caller, record| async move {
        let body = body_bytes(request)?;
        // The event type before the body is read: a publisher learns
        // nothing of the body limits of a type it may not publish.
        caller.may_publish_type(event_type)?;
        let (message_encoding, text) = publish_body(header(request, "content-type"), &body)?;
        let outcome = crate::app::events::publish(
            store,
            register,
            audit,
            &caller,
            event_type,
            message_encoding,
            text,
            OffsetDateTime::now_utc(),
            retention,
        )
        .await?;
        let kind = match &outcome {
            PublishOutcome::Accepted { .. } => "accepted",
            PublishOutcome::Duplicate { .. } => "duplicate",
        };
        let status = outcome.status();
        info!(status, event_type = %event_type, event_id = outcome.event_id(), outcome = kind, "publish");
        let record = record
            .event(events::event_key(event_type, outcome.event_id()))
            .patient(outcome.nhs_number());
        let response = fhir_response(status, encoding, outcome.outcome().render(encoding), &[]);
        Ok((response, record, outcome))
    })
    .await;
    publish_metrics(event_type, outcome.as_ref(), started.elapsed()).emit();
    response
}

/// A published body as the message it holds: its encoding (a FHIR media
/// type, else 415), then its text (within the size limit, else 413, checked
/// before it is decoded; UTF-8, else 400).
fn publish_body<'a>(
    content_type: Option<&str>,
    body: &'a [u8],
) -> Result<(Encoding, &'a str), BodyError> {
    let encoding = content_type
        .and_then(Encoding::from_content_type)
        .ok_or_else(|| BodyError::unsupported_media_type(content_type, FHIR_MEDIA_TYPES))?;
    Ok((encoding, text_within(body, MAX_PAYLOAD_BYTES)?))
}

/// What one publish counts for: the outcome the publisher was answered
/// (stored, duplicate, refused for the publisher's fault, or failed for the
/// hub's: a 5xx, an accepted message whose audit record could not be written
/// included), and how long it took.
fn publish_metrics(
    event_type: EventType,
    outcome: Result<&PublishOutcome, &RequestError>,
    elapsed: std::time::Duration,
) -> metrics::MetricRecord {
    let outcome = match outcome {
        Ok(PublishOutcome::Accepted { .. }) => metrics::PUBLISH_ACCEPTED,
        Ok(PublishOutcome::Duplicate { .. }) => metrics::PUBLISH_DUPLICATE,
        Err(error) if error.status() < 500 => metrics::PUBLISH_REJECTED,
        Err(_) => metrics::PUBLISH_FAILED,
    };
    metrics::MetricRecord::for_event_type(event_type)
        .count(outcome, 1)
        .milliseconds(metrics::PUBLISH_LATENCY, elapsed)
}

/// The main of every publish function: one per event type.
pub async fn run_publish(event_type: EventType) -> Result<(), Error> {
    let aws = start().await;
    let ports = event_writer_ports(&aws)?;
    let retention = retention_from_env()?;
    let ports = &ports;
    run(service_fn(
        move |event: LambdaEvent<ApiGatewayProxyRequest>| async move {
            Ok::<_, Error>(publish(ports, event_type, &event.payload, retention).await)
        },
    ))
    .await
}

/// The `{id}` of an `/events/{id}` path: a MessageHeader.id, lower case.
/// Anything else is "not found", as an id that was never published.
fn path_message_id(request: &ApiGatewayProxyRequest) -> Result<String, HubError> {
    request
        .path_parameters
        .get("id")
        .map(|id| id.to_ascii_lowercase())
        .filter(|id| events::is_message_id(id))
        .ok_or_else(|| HubError::NotFound("that event".into()))
}

/// `GET /events/{id}` (MessageHeader.id; `?eventType=` picks one type when
/// an id was published under several): the stored message exactly as
/// published, to the publishing organisation, the subscribers it was
/// delivered to, and operators. Anyone else is answered 404.
pub async fn read_event<P: Ports>(
    ports: &P,
    request: &ApiGatewayProxyRequest,
) -> ApiGatewayProxyResponse {
    let (store, _subscriptions, _register, audit) = (
        ports.events(),
        ports.subscriptions(),
        ports.register(),
        ports.audit(),
    );
    let encoding = response_encoding(request);
    // A refused read of a stored event names the event and its patient, so
    // that probing for a child's events shows in the child's trail.
    let found_event: std::sync::OnceLock<(String, Option<NhsNumber>)> = std::sync::OnceLock::new();
    let stored = &found_event;
    let on_refusal = |record: AuditRecord| {
        let record = refused_asking_for(request, "event", record);
        match stored.get() {
            Some((event_key, patient)) => record.event(event_key.clone()).patient(*patient),
            None => record,
        }
    };
    audited(
        audit,
        request,
        Action::EventRead,
        encoding,
        on_refusal,
        |caller, record| async move {
            let id = path_message_id(request)?;
            let event_types = match request.query_string_parameters.first("eventType") {
                None => EventType::ALL.to_vec(),
                Some(code) => vec![code.parse::<EventType>().map_err(|_| {
                    HubError::bad_request(
                        "eventType",
                        format!("'{code}' is not an event type of the hub"),
                    )
                })?],
            };
            let keys: Vec<String> = event_types
                .iter()
                .map(|&event_type| events::event_key(event_type, &id))
                .collect();
            let now = OffsetDateTime::now_utc();
            let mut found = store.get_many(&keys).await?;
            found.sort_by(|a, b| a.event_key.cmp(&b.event_key));
            if let Some(event) = found.first() {
                let _ = stored.set((event.event_key.clone(), event.nhs_number));
            }
            let mut readable = Vec::new();
            for event in found {
                if event.is_live(now) && may_read_event(ports, &caller, &event, now).await? {
                    readable.push(event);
                }
            }
            // Refused as not found: whether an event exists for a patient is
            // itself patient information.
            let Some(event) = readable.first() else {
                return Err(HubError::NotFound(format!("event {id}")).into());
            };
            if readable.len() > 1 {
                let choices: Vec<&str> = readable
                    .iter()
                    .map(|event| event.event_type.code())
                    .collect();
                let outcome = OperationOutcome::information(
                    "MULTIPLE_MATCHES",
                    format!(
                        "event {id} was published as {}: name one with ?eventType=",
                        choices.join(" and ")
                    ),
                );
                let response = fhir_response(300, encoding, outcome.render(encoding), &[]);
                return Ok((
                    response,
                    record.detail(format!("event {id}: several types")),
                ));
            }
            let record = record
                .event(event.event_key.clone())
                .patient(event.nhs_number);
            let response = respond(200, &event.content_type, event.payload.clone(), &[]);
            Ok((response, record))
        },
    )
    .await
}

/// Operators; the publishing organisation's own systems; a subscriber the
/// event was delivered to (its delivery's audit record says so), or that
/// may see it in the child's history (an active explicit subscription for
/// the child and the event type, the child not sensitive).
async fn may_read_event<P: Ports>(
    ports: &P,
    caller: &Caller,
    event: &StoredEvent,
    now: OffsetDateTime,
) -> Result<bool, HubError> {
    let (register, audit) = (ports.register(), ports.audit());
    if caller.has_role(Role::Operator) {
        return Ok(true);
    }
    if caller.may_publish_type(event.event_type).is_ok()
        && caller
            .may_publish_for(event.responsible_ods.as_deref())
            .is_ok()
    {
        return Ok(true);
    }
    let Some(subscriber_id) = caller
        .subscriber_id
        .as_deref()
        .filter(|_| caller.has_role(Role::Subscriber))
    else {
        return Ok(false);
    };
    if audit
        .get(&audit::delivery_id(&event.event_key, subscriber_id))
        .await?
        .is_some()
    {
        return Ok(true);
    }
    let Some(nhs_number) = event.nhs_number.filter(|_| !event.sensitive) else {
        return Ok(false);
    };
    // Beyond what was delivered to it, a subscription discloses only what
    // arrived since its creation, unless the child is registered at the
    // subscriber's practice: never an event delivered only to others.
    let subscribed = subscribed_types(ports, caller, nhs_number, &[event.event_type], now).await?;
    if subscribed.is_empty() {
        // No subscription for the child: the register need not be read.
        return Ok(false);
    }
    let child = register.get(nhs_number).await?;
    if child
        .as_ref()
        .is_some_and(|child| child.value.is_sensitive())
    {
        return Ok(false);
    }
    let registration = child.as_ref().and_then(|child| child.value.registration());
    let visible = history::for_practice(subscribed, registration, caller.ods_code.as_str());
    if !visible
        .get(&event.event_type)
        .is_some_and(|basis| basis.admits(&event.received_sort))
    {
        return Ok(false);
    }
    // An event a release embargo still holds for this subscriber is not
    // disclosed through its subscription either.
    let shown = [crate::app::embargo::Shown::from(event)];
    let hidden = crate::app::embargo::hidden(ports, subscriber_id, &shown, now).await?;
    Ok(hidden.is_empty())
}

/// `POST /events/{id}/$release?eventType=CODE` (operators): releases an
/// event withheld while its child was flagged sensitive, once the flag is
/// cleared (crate::app::events::release). The release is in the child's audit trail.
pub async fn release_event<P: Ports>(
    ports: &P,
    request: &ApiGatewayProxyRequest,
) -> ApiGatewayProxyResponse {
    let (store, register, audit) = (ports.events(), ports.register(), ports.audit());
    let encoding = response_encoding(request);
    audited(
        audit,
        request,
        Action::Release,
        encoding,
        std::convert::identity,
        |caller, record| async move {
            caller.require(Role::Operator)?;
            let id = path_message_id(request)?;
            let code = request
                .query_string_parameters
                .first("eventType")
                .ok_or_else(|| {
                    HubError::bad_request(
                        "eventType",
                        "name the event type of the event to release",
                    )
                })?;
            let event_type = code.parse::<EventType>().map_err(|_| {
                HubError::bad_request(
                    "eventType",
                    format!("'{code}' is not an event type of the hub"),
                )
            })?;
            let event_key = events::event_key(event_type, &id);
            let record = record.event(event_key.clone());
            let child =
                crate::app::events::release(store, register, &event_key, OffsetDateTime::now_utc())
                    .await?;
            info!(event_id = %id, event_type = %event_type, "released");
            let outcome = OperationOutcome::information(
                "RELEASED",
                format!("event {id} is released: readable and replayable by those it concerns"),
            );
            Ok((
                fhir_response(200, encoding, outcome.render(encoding), &[]),
                record.patient(child),
            ))
        },
    )
    .await
}

/// The main of `GET /events/{id}`.
pub async fn run_read_event() -> Result<(), Error> {
    let aws = start().await;
    let ports = event_reader_ports(&aws)?;
    let ports = &ports;
    serve_api(move |request| async move { read_event(ports, &request).await }).await
}

/// The main of `POST /events/{id}/$release`.
pub async fn run_release_event() -> Result<(), Error> {
    let aws = start().await;
    let ports = event_writer_ports(&aws)?;
    let ports = &ports;
    serve_api(move |request| async move { release_event(ports, &request).await }).await
}

/// The ports of a function that stores or withholds events: the events,
/// the child register and the audit trail.
fn event_writer_ports(aws: &Aws) -> Result<impl Ports, StoreError> {
    Ok(Adapters::new()
        .events(aws.events()?)
        .register(aws.register()?)
        .audit(aws.audit()?))
}

/// The ports of a function that reads events for a caller: the events, the
/// subscriptions and the register that decide what it may see, and the
/// audit trail.
pub(super) fn event_reader_ports(aws: &Aws) -> Result<impl Ports, StoreError> {
    Ok(Adapters::new()
        .events(aws.events()?)
        .subscriptions(aws.subscriptions()?)
        .register(aws.register()?)
        .relationships(aws.relationships()?)
        .audit(aws.audit()?)
        .subscribers(aws.subscribers()?)
        .embargoes(aws.embargoes()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A retention set but invalid is a configuration error naming the
    /// variable, which fails the function's start; none is the default.
    #[test]
    fn a_retention_set_but_invalid_names_its_variable() {
        assert_eq!(retention_of(None).unwrap(), Retention::DEFAULT);
        let StoreError::Configuration(text) = retention_of(Some("0")).unwrap_err() else {
            panic!("not a configuration error");
        };
        assert!(text.contains("EVENT_RETENTION_DAYS"), "{text}");
    }

    #[test]
    fn a_publish_counts_for_the_outcome_it_was_answered() {
        let accepted = PublishOutcome::Accepted {
            event_id: "e".into(),
            nhs_number: None,
            sensitive: false,
            warnings: Vec::new(),
            out_of_order: None,
        };
        let duplicate = PublishOutcome::Duplicate {
            event_id: "e".into(),
            nhs_number: None,
        };
        let bad_request = HubError::bad_request("$", "bad").into();
        let too_large = BodyError::PayloadTooLarge { size: 2, limit: 1 }.into();
        let internal = HubError::Internal("bug".into()).into();
        let unavailable = HubError::Store(StoreError::Unavailable("down".into())).into();
        for (case, outcome, metric) in [
            ("accepted", Ok(&accepted), metrics::PUBLISH_ACCEPTED),
            ("duplicate", Ok(&duplicate), metrics::PUBLISH_DUPLICATE),
            ("400", Err(&bad_request), metrics::PUBLISH_REJECTED),
            ("413", Err(&too_large), metrics::PUBLISH_REJECTED),
            ("500", Err(&internal), metrics::PUBLISH_FAILED),
            ("503", Err(&unavailable), metrics::PUBLISH_FAILED),
        ] {
            let emf = publish_metrics(
                EventType::NewbornHearing,
                outcome,
                std::time::Duration::from_millis(7),
            )
            .to_emf("ns", 0);
            assert_eq!(emf[metric], 1.0, "{case}: {emf}");
            assert_eq!(emf[metrics::PUBLISH_LATENCY], 7.0, "{case}");
            assert_eq!(emf[metrics::EVENT_TYPE_DIMENSION], "newborn-hearing-1");
            let counted = [
                metrics::PUBLISH_ACCEPTED,
                metrics::PUBLISH_DUPLICATE,
                metrics::PUBLISH_REJECTED,
                metrics::PUBLISH_FAILED,
            ]
            .iter()
            .filter(|name| emf.get(**name).is_some())
            .count();
            assert_eq!(counted, 1, "{case}: one outcome only");
        }
    }
}
