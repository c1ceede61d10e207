//! The child register and a child's event history.

use aws_lambda_events::apigw::{ApiGatewayProxyRequest, ApiGatewayProxyResponse};

use time::OffsetDateTime;

use crate::app::subscription::RelationshipsHeld;
use crate::audit::{Action, AuditRecord};
use crate::auth::{Caller, Role};
use crate::basis::Basis;
use crate::catalogue::EventType;
use crate::error::HubError;
use crate::events::Retention;
use crate::history;
use crate::message::Encoding;
use crate::nhs_number::NhsNumber;
use crate::ports::{Adapters, EventStore, Ports, RegisterStore, SubscriptionStore};

use super::audited::audited;
use super::events::{event_reader_ports, retention_from_env};
use super::http::{fhir_response, respond, response_encoding};
use super::runtime::{Error, serve_api, start};

/// The NHS number of the path, for `GET /children/{nhsNumber}`.
pub(super) fn path_nhs_number(request: &ApiGatewayProxyRequest) -> Result<NhsNumber, HubError> {
    request
        .path_parameters
        .get("nhsNumber")
        .and_then(|number| NhsNumber::parse(number).ok())
        .ok_or_else(|| {
            HubError::bad_request("nhsNumber", "nhsNumber is a valid 10-digit NHS number")
        })
}

/// `GET /children/{nhsNumber}`: what the register holds about a child, each
/// fact with when and by which event it was stated (operators). A child the
/// register has learnt nothing about is not found.
pub async fn read_child<P: Ports>(
    ports: &P,
    request: &ApiGatewayProxyRequest,
) -> ApiGatewayProxyResponse {
    let (register, audit) = (ports.register(), ports.audit());
    // A refused or unanswered look-up is in the child's trail too.
    let on_refusal = |record: AuditRecord| record.patient(path_nhs_number(request).ok());
    audited(
        audit,
        request,
        Action::RegisterRead,
        Encoding::Json,
        on_refusal,
        |caller, record| async move {
            caller.require(Role::Operator)?;
            let nhs_number = path_nhs_number(request)?;
            let child = register.get(nhs_number).await?.ok_or_else(|| {
                HubError::NotFound("a register record for that NHS number".into())
            })?;
            let body = serde_json::to_string(&child.value).map_err(|error| {
                HubError::Store(crate::ports::StoreError::Unavailable(
                    format!("rendering a register record: {error}").into(),
                ))
            })?;
            Ok((
                respond(200, "application/json", body, &[]),
                record.patient(Some(nhs_number)),
            ))
        },
    )
    .await
}

/// `GET /children/{nhsNumber}/events`: the child's event history as a FHIR
/// searchset Bundle (history::HistoryQuery gives the parameters), for
/// operators, and for subscribers with an active explicit subscription for
/// the child, who see the event types those subscriptions name and nothing
/// of a child the hub knows to be sensitive.
pub async fn read_child_events<P: Ports>(
    ports: &P,
    request: &ApiGatewayProxyRequest,
    retention: Retention,
) -> ApiGatewayProxyResponse {
    let (events, register, audit) = (ports.events(), ports.register(), ports.audit());
    let encoding = response_encoding(request);
    let on_refusal = |record: AuditRecord| record.patient(path_nhs_number(request).ok());
    audited(
        audit,
        request,
        Action::HistoryRead,
        encoding,
        on_refusal,
        |caller, record| async move {
            let nhs_number = path_nhs_number(request)?;
            let parameters = &request.query_string_parameters;
            let query = history::HistoryQuery::parse(
                parameters.first("versions"),
                repeated(request, "eventType").into_iter(),
                repeated(request, "date").into_iter(),
                parameters.first("_count"),
                parameters.first("_page"),
            )?;
            let now = OffsetDateTime::now_utc();
            let (visible, include_sensitive) = if caller.has_role(Role::Operator) {
                (None, true)
            } else {
                let types =
                    subscribed_types(ports, &caller, nhs_number, EventType::ALL, now).await?;
                if types.is_empty() {
                    return Err(HubError::forbidden_element(
                        "nhsNumber",
                        "only operators, and subscribers with an active explicit subscription \
                         for this child, may read the child's events",
                    )
                    .into());
                }
                // What is withheld from delivery is withheld from history,
                // and answered before any event is read: the empty history
                // of a child the hub holds nothing of, in no more time.
                let child = register.get(nhs_number).await?;
                let sensitive = child
                    .as_ref()
                    .is_some_and(|child| child.value.is_sensitive());
                if sensitive {
                    let body =
                        history::searchset(nhs_number, &query, &[], 0, retention, now, encoding);
                    let record = record
                        .patient(Some(nhs_number))
                        .detail("withheld: the patient is flagged sensitive");
                    return Ok((fhir_response(200, encoding, body, &[]), record));
                }
                let registration = child.as_ref().and_then(|child| child.value.registration());
                let visible = history::for_practice(types, registration, caller.ods_code.as_str());
                (Some(visible), false)
            };
            let mut summaries = events.patient_events(nhs_number).await?;
            // What a release embargo still holds for the caller is not in
            // its history until released. Only what its bases admit can be
            // held for it, and only that is looked up.
            if let Some(visible) = visible.as_ref()
                && let Some(subscriber_id) = caller.subscriber_id.as_deref()
            {
                let shown: Vec<crate::app::embargo::Shown> = summaries
                    .iter()
                    .filter(|summary| {
                        history::admitted(visible, summary.event_type, &summary.received_sort)
                    })
                    .map(crate::app::embargo::Shown::from)
                    .collect();
                let hidden = crate::app::embargo::hidden(ports, subscriber_id, &shown, now).await?;
                summaries.retain(|summary| !hidden.contains(&summary.event_key));
            }
            let selected =
                history::select(&summaries, &query, visible.as_ref(), include_sensitive, now);
            let keys: Vec<String> = selected
                .iter()
                .skip(query.offset)
                .take(query.count)
                .map(|summary| summary.event_key.clone())
                .collect();
            let mut page = events.get_many(&keys).await?;
            page.sort_by_key(|event| {
                keys.iter()
                    .position(|key| *key == event.event_key)
                    .unwrap_or(usize::MAX)
            });
            let body = history::searchset(
                nhs_number,
                &query,
                &page,
                selected.len(),
                retention,
                now,
                encoding,
            );
            let record = match visible.as_ref() {
                Some(visible) => record.detail(history::describe(visible)),
                None => record,
            };
            Ok((
                fhir_response(200, encoding, body, &[]),
                record.patient(Some(nhs_number)),
            ))
        },
    )
    .await
}

/// Every value of a query parameter that may be repeated: API Gateway keeps
/// only the last one in `queryStringParameters`.
fn repeated<'a>(request: &'a ApiGatewayProxyRequest, name: &str) -> Vec<&'a str> {
    request
        .multi_value_query_string_parameters
        .all(name)
        .or_else(|| request.query_string_parameters.all(name))
        .unwrap_or_default()
}

/// Which of these event types the caller's active explicit subscriptions
/// for the child name, each as declared direct care from the creation of
/// the earliest of them (or an open backfill grant's earlier start) (history::for_practice then lifts that for the
/// child's registered GP): one keyed read per event type, together. A
/// subscription resting on a relationship counts only while the
/// relationship and the app's acting for the person hold (one check per
/// person).
pub(super) async fn subscribed_types<P: Ports>(
    ports: &P,
    caller: &Caller,
    nhs_number: NhsNumber,
    event_types: &[EventType],
    now: OffsetDateTime,
) -> Result<history::VisibleFrom, HubError> {
    let subscriber_id = caller.subscriber()?;
    let subscriptions = ports.subscriptions();
    let found = futures_util::future::try_join_all(
        event_types
            .iter()
            .map(|&event_type| subscriptions.explicit_candidates(nhs_number, event_type)),
    )
    .await?;
    let mut holding = RelationshipsHeld::default();
    let mut visible = history::VisibleFrom::new();
    for (event_type, candidates) in event_types.iter().zip(found) {
        let mut earliest: Option<(OffsetDateTime, bool)> = None;
        for subscription in candidates.iter().filter(|subscription| {
            subscription.subscriber_id == subscriber_id
                && subscription.is_active(now)
                && subscription.criteria.target == crate::criteria::Target::Explicit(nhs_number)
                && subscription.criteria.events.contains(event_type)
        }) {
            if let Basis::Relationship { person } = subscription.basis() {
                let holds = holding
                    .holds(ports, nhs_number, person, subscriber_id, now)
                    .await?;
                if !holds {
                    continue;
                }
            }
            let from = (
                subscription.discloses_from(now),
                subscription.is_backfilled(now),
            );
            earliest = Some(earliest.map_or(from, |earliest| earliest.min(from)));
        }
        if let Some((from, backfill)) = earliest {
            visible.insert(
                *event_type,
                history::Visibility::DeclaredDirectCare { from, backfill },
            );
        }
    }
    Ok(visible)
}

/// The main of `GET /children/{nhsNumber}`.
pub async fn run_read_child() -> Result<(), Error> {
    let aws = start().await;
    let ports = Adapters::new()
        .register(aws.register()?)
        .audit(aws.audit()?);
    let ports = &ports;
    serve_api(move |request| async move { read_child(ports, &request).await }).await
}

/// The main of `GET /children/{nhsNumber}/events`.
pub async fn run_read_child_events() -> Result<(), Error> {
    let aws = start().await;
    let ports = event_reader_ports(&aws)?;
    let retention = retention_from_env()?;
    let ports = &ports;
    serve_api(move |request| async move { read_child_events(ports, &request, retention).await })
        .await
}
