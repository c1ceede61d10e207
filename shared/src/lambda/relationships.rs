//! `POST /relationship-events`: parent and carer relationships, from
//! relationship publishers; `GET /children/{nhsNumber}/relationships`: a
//! child's, for operators.

use aws_lambda_events::apigw::{ApiGatewayProxyRequest, ApiGatewayProxyResponse};
use time::OffsetDateTime;
use tracing::info;

use crate::app::relationship::publish_relationship_event;
use crate::audit::{Action, AuditRecord};
use crate::auth::Role;
use crate::message::Encoding;
use crate::ports::{Adapters, Ports, Recorded, RelationshipStore};
use crate::relationship::read_vrs_signal;

use super::audited::audited;
use super::children::path_nhs_number;
use super::http::{body_bytes, fhir_response, header, respond, text_within};
use super::http_status::Answer;
use super::request_error::BodyError;
use super::runtime::{Error, serve_api, start};

/// The largest relationship event the hub reads: an MNS hydrated signal is
/// about 3 KB.
const MAX_RELATIONSHIP_EVENT_BYTES: usize = 64 * 1024;

/// The media type of a relationship event: FHIR JSON only (MNS's signals
/// are JSON).
const RELATIONSHIP_MEDIA_TYPE: &str = "application/fhir+json";

/// The body as FHIR JSON text: a JSON media type (else 415), within the size
/// limit (else 413), UTF-8 (else 400).
fn relationship_body<'a>(content_type: Option<&str>, body: &'a [u8]) -> Result<&'a str, BodyError> {
    match content_type.and_then(Encoding::from_content_type) {
        Some(Encoding::Json) => Ok(text_within(body, MAX_RELATIONSHIP_EVENT_BYTES)?),
        _ => Err(BodyError::unsupported_media_type(
            content_type,
            RELATIONSHIP_MEDIA_TYPE,
        )),
    }
}

/// `POST /relationship-events`: a relationship publisher's VRS event (an MNS
/// hydrated signal), recorded under the child: 202 when recorded, 200 when
/// seen before or older than what the hub holds, 409 for its id with another
/// body; audited under the child, naming the person.
pub async fn publish_relationship<P: Ports>(
    ports: &P,
    request: &ApiGatewayProxyRequest,
) -> ApiGatewayProxyResponse {
    let audit = ports.audit();
    // A refused event that still reads (a source not the caller's, a
    // conflict) is in the child's trail too.
    let on_refusal = |record: AuditRecord| {
        let read = body_bytes(request).ok().and_then(|body| {
            let text = relationship_body(header(request, "content-type"), &body).ok()?;
            read_vrs_signal(text, &record.client_id, OffsetDateTime::now_utc()).ok()
        });
        match read {
            Some(change) => record
                .patient(Some(change.relationship.child_nhs))
                .event(change.relationship.by_event),
            None => record,
        }
    };
    audited(
        audit,
        request,
        Action::RelationshipChange,
        Encoding::Json,
        on_refusal,
        |caller, record| async move {
            let body = body_bytes(request)?;
            let text = relationship_body(header(request, "content-type"), &body)?;
            let outcome =
                publish_relationship_event(ports, &caller, text, OffsetDateTime::now_utc())
                    .await?;
            let kind = match outcome.recorded {
                Recorded::Created => "created",
                Recorded::Updated => "updated",
                Recorded::Duplicate => "duplicate",
                Recorded::OutOfOrder => "out-of-order",
                Recorded::Conflict => "conflict",
            };
            let status = outcome.status();
            info!(status, bundle_id = %outcome.change.bundle_id, outcome = kind, "relationship event");
            let relationship = &outcome.change.relationship;
            let detail = match outcome.recorded {
                Recorded::Created | Recorded::Updated => outcome.change.audit_detail(),
                _ => format!("{} {kind}", outcome.change.audit_detail()),
            };
            let record = record
                .patient(Some(relationship.child_nhs))
                .event(relationship.by_event.clone())
                .detail(detail);
            let response = fhir_response(
                status,
                Encoding::Json,
                outcome.outcome().render(Encoding::Json),
                &[],
            );
            Ok((response, record))
        },
    )
    .await
}

/// `GET /children/{nhsNumber}/relationships`: every relationship the hub
/// holds for the child, active or not, each with whether it holds now
/// (operators; audited under the child). A child with none has an empty
/// list: the hub cannot tell a child without relationships from one it
/// has never heard of.
pub async fn read_child_relationships<P: Ports>(
    ports: &P,
    request: &ApiGatewayProxyRequest,
) -> ApiGatewayProxyResponse {
    let (relationships, audit) = (ports.relationships(), ports.audit());
    let on_refusal = |record: AuditRecord| record.patient(path_nhs_number(request).ok());
    audited(
        audit,
        request,
        Action::RelationshipRead,
        Encoding::Json,
        on_refusal,
        |caller, record| async move {
            caller.require(Role::Operator)?;
            let child = path_nhs_number(request)?;
            let now = OffsetDateTime::now_utc();
            let held = relationships.for_child(child).await?;
            let listed: Vec<serde_json::Value> = held
                .iter()
                .map(|relationship| {
                    let mut json = serde_json::to_value(relationship).unwrap_or_default();
                    json["active"] = relationship.is_active(now).into();
                    json
                })
                .collect();
            let body = serde_json::json!({"nhsNumber": child, "relationships": listed});
            Ok((
                respond(200, "application/json", body.to_string(), &[]),
                record
                    .patient(Some(child))
                    .detail(format!("{} relationships", held.len())),
            ))
        },
    )
    .await
}

/// The main of `GET /children/{nhsNumber}/relationships`.
pub async fn run_read_child_relationships() -> Result<(), Error> {
    let aws = start().await;
    let ports = Adapters::new()
        .relationships(aws.relationships()?)
        .audit(aws.audit()?);
    let ports = &ports;
    serve_api(move |request| async move { read_child_relationships(ports, &request).await }).await
}

/// The main of `POST /relationship-events`.
pub async fn run_publish_relationship() -> Result<(), Error> {
    let aws = start().await;
    let ports = Adapters::new()
        .relationships(aws.relationships()?)
        .subscriptions(aws.subscriptions()?)
        .audit(aws.audit()?);
    let ports = &ports;
    serve_api(move |request| async move { publish_relationship(ports, &request).await }).await
}
