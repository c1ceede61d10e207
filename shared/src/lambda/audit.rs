//! `GET /audit`: the audit trail (operators).

use aws_lambda_events::apigw::{ApiGatewayProxyRequest, ApiGatewayProxyResponse};

use crate::audit::{Action, AuditQuery};
use crate::auth::{self, Role};
use crate::error::HubError;
use crate::message::Encoding;
use crate::nhs_number::NhsNumber;
use crate::ports::{Adapters, AuditLog, Ports};

use super::audited::audited;
use super::http::{page_size, respond};
use super::runtime::{Error, serve_api, start};

/// `GET /audit?patient=<NHS number>` or `GET /audit?client=<client id>`,
/// with `_count` and `_page`: the trail, newest first (operators).
pub async fn read_audit<P: Ports>(
    ports: &P,
    request: &ApiGatewayProxyRequest,
) -> ApiGatewayProxyResponse {
    let audit = ports.audit();
    audited(
        audit,
        request,
        Action::AuditRead,
        Encoding::Json,
        std::convert::identity,
        |caller, record| async move {
            caller.require(Role::Operator)?;
            let parameters = &request.query_string_parameters;
            let query = match (parameters.first("patient"), parameters.first("client")) {
                (Some(patient), None) => {
                    AuditQuery::Patient(NhsNumber::parse(patient).map_err(|_| {
                        HubError::bad_request("patient", "patient is a valid 10-digit NHS number")
                    })?)
                }
                (None, Some(client))
                    if !client.is_empty() && client.len() <= auth::MAX_CLIENT_ID_LENGTH =>
                {
                    AuditQuery::Client(client.to_owned())
                }
                _ => {
                    return Err(HubError::bad_request(
                        "patient",
                        "name exactly one of patient (an NHS number) or client (a client id)",
                    )
                    .into());
                }
            };
            let page_size = page_size(request)?;
            let page = audit
                .query(&query, page_size, parameters.first("_page"))
                .await?;
            let record = match &query {
                AuditQuery::Patient(nhs_number) => record.patient(Some(*nhs_number)),
                AuditQuery::Client(client_id) => record.detail(format!("client {client_id}")),
            };
            let body = serde_json::json!({
                "entries": page.items,
                "next": page.next,
            });
            Ok((
                respond(200, "application/json", body.to_string(), &[]),
                record,
            ))
        },
    )
    .await
}

/// The main of `GET /audit`.
pub async fn run_read_audit() -> Result<(), Error> {
    let aws = start().await;
    let ports = Adapters::new().audit(aws.audit()?);
    let ports = &ports;
    serve_api(move |request| async move { read_audit(ports, &request).await }).await
}
