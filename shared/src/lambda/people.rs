//! The people a parent's app (PCHR) acts for:
//! `PUT`/`DELETE /subscribers/{id}/people/{nhsNumber}` and
//! `GET /subscribers/{id}/people/{nhsNumber}/children`. Only the app
//! itself (a client registered with `pchr`, linked to subscriber `{id}`)
//! may call them; each is audited under the person.

use aws_lambda_events::apigw::{ApiGatewayProxyRequest, ApiGatewayProxyResponse};
use time::OffsetDateTime;
use tracing::info;

use crate::app::people;
use crate::audit::{Action, AuditRecord};
use crate::auth::{Caller, Role};
use crate::error::HubError;
use crate::message::Encoding;
use crate::pchr::{Attestation, PchrRegistration};
use crate::ports::{Adapters, AuditLog, Ports, StoreError};

use super::audited::audited;
use super::children::path_nhs_number;
use super::http::{json_body, path_id, respond};
use super::runtime::{Error, serve_api, start};

/// The caller's registration as a parent's app acting through subscriber
/// `{id}` of the path: another subscriber's path is not found (its people
/// are not the caller's business); a client that is no PCHR is forbidden.
fn own_app<'a>(
    caller: &'a Caller,
    request: &ApiGatewayProxyRequest,
) -> Result<(&'a str, PchrRegistration), HubError> {
    caller.require(Role::Subscriber)?;
    let pchr = caller.pchr.ok_or_else(|| {
        HubError::forbidden("only a parent's app (a client registered with pchr) acts for people")
    })?;
    let id = path_id(request, "subscriber")?;
    let own = caller.subscriber()?;
    if id != own {
        return Err(HubError::NotFound("that subscriber".into()));
    }
    Ok((own, pchr))
}

/// The person of the path, for the audit record of a refusal.
fn refused_person(request: &ApiGatewayProxyRequest, record: AuditRecord) -> AuditRecord {
    record.patient(path_nhs_number(request).ok())
}

/// `PUT /subscribers/{id}/people/{nhsNumber}`: the app acts for the person,
/// verified as the body says (`verificationLevel` at or above the app's
/// `minimumVerification`, `method`, `verifiedAt`): 200 with what was
/// recorded; a second PUT replaces the first.
pub async fn attest_person<P: Ports>(
    ports: &P,
    request: &ApiGatewayProxyRequest,
) -> ApiGatewayProxyResponse {
    audited(
        ports.audit(),
        request,
        Action::PersonActedFor,
        Encoding::Json,
        |record| refused_person(request, record),
        |caller, record| async move {
            let (subscriber_id, pchr) = own_app(&caller, request)?;
            let person = path_nhs_number(request)?;
            let body = json_body(request)?;
            let attestation = Attestation::read(&body, pchr.minimum_verification)?;
            let acted = people::attest(
                ports,
                subscriber_id,
                person,
                attestation,
                OffsetDateTime::now_utc(),
            )
            .await?;
            info!(subscriber_id, "a person acted for was attested");
            let body = serde_json::to_string(&acted).map_err(|error| {
                StoreError::Corrupt(format!("rendering a person acted for: {error}"))
            })?;
            let record = record
                .patient(Some(person))
                .subscriber(subscriber_id)
                .detail(format!(
                    "acts for {} ({})",
                    acted.verification_level.code(),
                    acted.method
                ));
            Ok((respond(200, "application/json", body, &[]), record))
        },
    )
    .await
}

/// `DELETE /subscribers/{id}/people/{nhsNumber}`: the app no longer acts
/// for the person; every subscription of the app that rested on a
/// relationship with them ends (`status` off, `error` says why): 204, or
/// 404 when it was not acting for them.
pub async fn stop_acting_for_person<P: Ports>(
    ports: &P,
    request: &ApiGatewayProxyRequest,
) -> ApiGatewayProxyResponse {
    audited(
        ports.audit(),
        request,
        Action::PersonActedFor,
        Encoding::Json,
        |record| refused_person(request, record),
        |caller, record| async move {
            let (subscriber_id, _) = own_app(&caller, request)?;
            let person = path_nhs_number(request)?;
            let ended =
                people::stop_acting(ports, subscriber_id, person, OffsetDateTime::now_utc())
                    .await?
                    .ok_or_else(|| HubError::NotFound("a person this app acts for".into()))?;
            info!(subscriber_id, ended, "a person acted for was ended");
            let record = record
                .patient(Some(person))
                .subscriber(subscriber_id)
                .detail(format!("stopped acting; {ended} subscriptions ended"));
            Ok((respond(204, "application/json", String::new(), &[]), record))
        },
    )
    .await
}

/// `GET /subscribers/{id}/people/{nhsNumber}/children`: the children the
/// person is actively related to, which the app may subscribe to (404 for
/// a person it does not act for). Each child is in the audit trail, under
/// the child.
pub async fn person_children<P: Ports>(
    ports: &P,
    request: &ApiGatewayProxyRequest,
) -> ApiGatewayProxyResponse {
    audited(
        ports.audit(),
        request,
        Action::RelationshipRead,
        Encoding::Json,
        |record| refused_person(request, record),
        |caller, record| async move {
            let (subscriber_id, _) = own_app(&caller, request)?;
            let person = path_nhs_number(request)?;
            let now = OffsetDateTime::now_utc();
            let related = people::children(ports, subscriber_id, person, now)
                .await?
                .ok_or_else(|| HubError::NotFound("a person this app acts for".into()))?;
            let per_child: Vec<AuditRecord> = related
                .iter()
                .map(|relationship| {
                    AuditRecord::new(Some(&caller), Action::RelationshipRead, 200, now)
                        .patient(Some(relationship.child_nhs))
                        .subscriber(subscriber_id)
                        .detail(format!(
                            "listed to the app acting for person {person} ({})",
                            relationship.relationship_type
                        ))
                })
                .collect();
            ports.audit().record_all(&per_child).await?;
            let children: Vec<serde_json::Value> = related
                .iter()
                .map(|relationship| {
                    serde_json::json!({
                        "nhsNumber": relationship.child_nhs,
                        "relationshipType": relationship.relationship_type,
                        "source": relationship.source,
                        "since": relationship.start,
                    })
                })
                .collect();
            let body = serde_json::json!({"person": person, "children": children});
            let record = record
                .patient(Some(person))
                .subscriber(subscriber_id)
                .detail(format!("{} children", children.len()));
            Ok((
                respond(200, "application/json", body.to_string(), &[]),
                record,
            ))
        },
    )
    .await
}

/// The main of the people functions: one binary, deployed once per
/// operation (`PEOPLE_OPERATION`: attest, end or children).
pub async fn run_people(operation: PeopleOperation) -> Result<(), Error> {
    let aws = start().await;
    let ports = Adapters::new()
        .relationships(aws.relationships()?)
        .subscriptions(aws.subscriptions()?)
        .audit(aws.audit()?);
    let ports = &ports;
    serve_api(move |request| async move {
        match operation {
            PeopleOperation::Attest => attest_person(ports, &request).await,
            PeopleOperation::End => stop_acting_for_person(ports, &request).await,
            PeopleOperation::Children => person_children(ports, &request).await,
        }
    })
    .await
}

/// Which of the people routes a function serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeopleOperation {
    Attest,
    End,
    Children,
}

impl PeopleOperation {
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "attest" => Some(PeopleOperation::Attest),
            "end" => Some(PeopleOperation::End),
            "children" => Some(PeopleOperation::Children),
            _ => None,
        }
    }
}
