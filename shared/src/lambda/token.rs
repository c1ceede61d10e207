//! `POST /oauth2/token`: a client assertion in, a hub access token out.

use aws_lambda_events::apigw::{ApiGatewayProxyRequest, ApiGatewayProxyResponse};
use time::OffsetDateTime;
use tracing::info;

use crate::app::auth::HubSigner;
use crate::audit::{Action, AuditRecord};
use crate::error::HubError;
use crate::message::Encoding;
use crate::ports::{Adapters, Ports};
use crate::text;

use super::audited::{finish_audited, refusal_detail};
use super::authorizer::naming_client;
use super::http::{MAX_REQUEST_BYTES, header, limited_text_body, respond};
use super::http_status::error_response;
use super::request_error::{BodyError, RequestError};

pub use crate::auth::CLIENT_ASSERTION_TYPE;

use super::runtime::{Error, serve_api, start};

/// The URL of the token endpoint, which client assertions must name as
/// their audience: configured (a custom domain needs it), else the URL API
/// Gateway received the request on. Nothing here comes from a header the
/// caller could set.
fn token_endpoint_url(request: &ApiGatewayProxyRequest, configured: Option<&str>) -> String {
    if let Some(url) = configured.filter(|url| !url.is_empty()) {
        return url.to_owned();
    }
    let context = &request.request_context;
    format!(
        "https://{}{}",
        context.domain_name.as_deref().unwrap_or_default(),
        context.path.as_deref().unwrap_or("/oauth2/token")
    )
}

/// `POST /oauth2/token`: client credentials with a signed JWT assertion
/// (RFC 7523). Answers `{access_token, expires_in, token_type}`.
pub async fn token<P: Ports>(
    ports: &P,
    configured_url: Option<&str>,
    request: &ApiGatewayProxyRequest,
) -> ApiGatewayProxyResponse {
    let (clients, used_ids, audit) = (ports.clients(), ports.used_ids(), ports.audit());
    let signer = &HubSigner::new(ports.signing_key());
    let now = OffsetDateTime::now_utc();
    let assertion = async {
        let media_type = header(request, "content-type").unwrap_or_default();
        if !media_type
            .to_ascii_lowercase()
            .starts_with("application/x-www-form-urlencoded")
        {
            return Err(BodyError::unsupported_media_type(
                Some(media_type),
                "application/x-www-form-urlencoded",
            )
            .into());
        }
        let body = limited_text_body(request, MAX_REQUEST_BYTES)?;
        let fields = text::form_fields(&body)
            .ok_or_else(|| HubError::bad_request("$", "the form body is not URL-encoded"))?;
        let field = |name: &str| {
            fields
                .iter()
                .find(|(key, _)| key == name)
                .map(|(_, value)| value.clone())
        };
        if field("grant_type").as_deref() != Some("client_credentials") {
            return Err(HubError::bad_request(
                "grant_type",
                "grant_type must be client_credentials",
            )
            .into());
        }
        if field("client_assertion_type").as_deref() != Some(CLIENT_ASSERTION_TYPE) {
            return Err(HubError::bad_request(
                "client_assertion_type",
                format!("client_assertion_type must be {CLIENT_ASSERTION_TYPE}"),
            )
            .into());
        }
        let assertion = field("client_assertion").ok_or_else(|| {
            HubError::bad_request("client_assertion", "client_assertion is required")
        })?;
        Ok::<_, RequestError>(assertion)
    }
    .await;
    let issued = match assertion {
        Ok(assertion) => {
            let url = token_endpoint_url(request, configured_url);
            crate::app::auth::exchange(&assertion, clients, used_ids, &url, signer, now)
                .await
                .map_err(|refusal| (RequestError::from(refusal.reason.clone()), Some(refusal)))
        }
        Err(error) => Err((error, None)),
    };
    let record = AuditRecord::new(None, Action::Token, 0, now);
    let (response, record) = match issued {
        Ok(access) => {
            info!(client_id = %access.client_id, "access token issued");
            let body = serde_json::json!({
                "access_token": access.token,
                // A string, as NHS England's token endpoints answer it.
                "expires_in": access.expires_in.to_string(),
                "token_type": "Bearer",
                "issued_at": (now.unix_timestamp() * 1000).to_string(),
            });
            let response = respond(
                200,
                "application/json",
                body.to_string(),
                &[("cache-control", "no-store".to_owned())],
            );
            let record = AuditRecord {
                client_id: access.client_id,
                ods_code: Some(access.ods_code.as_str().to_owned()),
                ..record
            };
            (response, record)
        }
        Err((error, refusal)) => {
            let record = record.detail(refusal_detail(&error));
            let record = match &refusal {
                Some(refusal) => naming_client(record, refusal),
                None => record,
            };
            (error_response(&error, Encoding::Json), record)
        }
    };
    finish_audited(audit, record, response)
        .await
        .unwrap_or_else(|error| error_response(&error, Encoding::Json))
}

/// The main of `POST /oauth2/token`.
pub async fn run_token() -> Result<(), Error> {
    let aws = start().await;
    let ports = Adapters::new()
        .clients(aws.clients()?)
        .used_ids(aws.used_ids()?)
        .audit(aws.audit()?)
        .signing_key(aws.signing_key().await?);
    let configured_url = std::env::var("TOKEN_ENDPOINT_URL").ok();
    let (ports, configured_url) = (&ports, configured_url.as_deref());
    serve_api(move |request| async move { token(ports, configured_url, &request).await }).await
}
