//! Client systems (operators): register and disable.

use aws_lambda_events::apigw::{ApiGatewayProxyRequest, ApiGatewayProxyResponse};
use time::OffsetDateTime;
use tracing::info;

use crate::app::narrowing;
use crate::audit::Action;
use crate::auth::{self, Client, Role};
use crate::error::HubError;
use crate::message::Encoding;
use crate::ports::{Adapters, ClientStore, Ports};

use super::audited::audited;
use super::http::{json_body, respond};
use super::runtime::{Error, serve_api, start};

/// `POST /clients`: register a client system, or replace its registration
/// (operators). 201 when new, 200 when replaced. A replacement that
/// narrows what the client was registered for then ends the subscriptions
/// of its subscriber whose basis the new registration no longer gives
/// (`app::narrowing::register`).
pub async fn register_client<P: Ports>(
    ports: &P,
    request: &ApiGatewayProxyRequest,
) -> ApiGatewayProxyResponse {
    audited(
        ports.audit(),
        request,
        Action::ClientRegister,
        Encoding::Json,
        std::convert::identity,
        |caller, record| async move {
            caller.require(Role::Operator)?;
            let body = json_body(request)?;
            let client = Client::from_registration(&body)?;
            let narrowing::Registered {
                created,
                client: registered,
                ended,
            } = narrowing::register(ports, &client, OffsetDateTime::now_utc()).await?;
            info!(client_id = %registered.client_id, created, ended, "client registered");
            let response = respond(
                if created { 201 } else { 200 },
                "application/json",
                registered.to_json().to_string(),
                &[("location", format!("/clients/{}", registered.client_id))],
            );
            Ok((
                response,
                record.detail(if ended > 0 {
                    format!(
                        "client {}; registration narrowed: {ended} subscriptions ended",
                        registered.client_id
                    )
                } else {
                    format!("client {}", registered.client_id)
                }),
            ))
        },
    )
    .await
}

/// `DELETE /clients/{id}`: disable a client (operators). Its tokens stop
/// working at once; its registration stays for the audit trail.
pub async fn disable_client<P: Ports>(
    ports: &P,
    request: &ApiGatewayProxyRequest,
) -> ApiGatewayProxyResponse {
    let (clients, audit) = (ports.clients(), ports.audit());
    audited(
        audit,
        request,
        Action::ClientDisable,
        Encoding::Json,
        std::convert::identity,
        |caller, record| async move {
            caller.require(Role::Operator)?;
            let id = request
                .path_parameters
                .get("id")
                .map(String::as_str)
                .filter(|id| !id.is_empty() && id.len() <= auth::MAX_CLIENT_ID_LENGTH)
                .ok_or_else(|| HubError::NotFound("that client".into()))?;
            if !clients.disable(id).await? {
                return Err(HubError::NotFound(format!("client {id}")).into());
            }
            info!(client_id = %id, "client disabled");
            let mut response = ApiGatewayProxyResponse::default();
            response.status_code = 204;
            Ok((response, record.detail(format!("client {id}"))))
        },
    )
    .await
}

/// The main of `POST /clients`.
pub async fn run_register_client() -> Result<(), Error> {
    let aws = start().await;
    let ports = Adapters::new()
        .clients(aws.clients()?)
        .audit(aws.audit()?)
        .subscriptions(aws.subscriptions()?)
        .relationships(aws.relationships()?);
    let ports = &ports;
    serve_api(move |request| async move { register_client(ports, &request).await }).await
}

/// The main of `DELETE /clients/{id}`.
pub async fn run_disable_client() -> Result<(), Error> {
    let aws = start().await;
    let ports = Adapters::new().clients(aws.clients()?).audit(aws.audit()?);
    let ports = &ports;
    serve_api(move |request| async move { disable_client(ports, &request).await }).await
}
