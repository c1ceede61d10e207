//! The API Gateway TOKEN authorizer.

use aws_lambda_events::apigw::{
    ApiGatewayCustomAuthorizerPolicy, ApiGatewayCustomAuthorizerRequest,
    ApiGatewayCustomAuthorizerResponse,
};
use aws_lambda_events::iam::{IamPolicyEffect, IamPolicyStatement};
use time::OffsetDateTime;
use tracing::{error, warn};

use super::http_status::Answer;
use super::runtime::{Error, LambdaEvent, run, service_fn, start};
use crate::audit::{self, Action, AuditRecord};
use crate::auth::{AuthError, HubKeys, Refusal};
use crate::ports::{Adapters, AuditLog, Ports};

/// The authorizer's policy: the whole API for an authenticated caller (the
/// functions decide what each role may do), nothing otherwise.
fn policy(effect: IamPolicyEffect, method_arn: &str) -> ApiGatewayCustomAuthorizerPolicy {
    // arn:aws:execute-api:region:account:api/stage/METHOD/path: every
    // method and path of the same API and stage.
    let resource = method_arn
        .splitn(3, '/')
        .take(2)
        .collect::<Vec<_>>()
        .join("/");
    let mut statement = IamPolicyStatement::default();
    statement.action = vec!["execute-api:Invoke".to_owned()];
    statement.effect = effect;
    statement.resource = vec![format!("{resource}/*/*")];
    let mut policy = ApiGatewayCustomAuthorizerPolicy::default();
    policy.version = Some("2012-10-17".to_owned());
    policy.statement = vec![statement];
    policy
}

/// The API Gateway TOKEN authorizer. A valid token of an enabled client is
/// allowed, with the caller in the context; anything else is denied, with
/// the reason in the context for the gateway response (fixed texts only).
/// When the hub cannot decide (a store is down) it fails, which API Gateway
/// answers 503. `keys` are the hub's public keys, values read once at init
/// (`HubKeys` is not a port: nothing is asked of a service per request).
pub async fn authorize<P: Ports>(
    ports: &P,
    keys: &(dyn HubKeys + Sync),
    request: &ApiGatewayCustomAuthorizerRequest,
) -> Result<ApiGatewayCustomAuthorizerResponse, Error> {
    let (clients, audit) = (ports.clients(), ports.audit());
    let method_arn = request.method_arn.as_deref().unwrap_or_default();
    let now = OffsetDateTime::now_utc();
    let authenticated =
        crate::app::auth::authenticate(request.authorization_token.as_deref(), keys, clients, now)
            .await;
    let mut response = ApiGatewayCustomAuthorizerResponse::default();
    match authenticated {
        Ok(caller) => {
            response.principal_id = Some(caller.client_id.clone());
            response.policy_document = policy(IamPolicyEffect::Allow, method_arn);
            response.context = serde_json::to_value(caller.to_context())?;
        }
        // Whatever kept the hub from deciding, the gateway answers the
        // failure with its own status (template.yaml, AUTHORIZER_FAILURE).
        Err(Refusal {
            reason: AuthError::Unavailable(detail) | AuthError::Failed(detail),
            ..
        }) => {
            error!(error = %detail, "authentication could not complete");
            return Err(detail.into());
        }
        Err(refusal) => {
            warn!(
                reason = refusal.reason.name(),
                "request refused by the authorizer"
            );
            let outcome = refusal.reason.outcome();
            let issue = outcome.issues.first();
            let route = method_arn.splitn(3, '/').nth(2).unwrap_or_default();
            let record = AuditRecord::new(None, Action::Authenticate, refusal.reason.status(), now)
                .detail(format!("{} {route}", refusal.reason.name()));
            audit.record(&naming_client(record, &refusal)).await?;
            response.principal_id = Some(audit::ANONYMOUS.to_owned());
            response.policy_document = policy(IamPolicyEffect::Deny, method_arn);
            response.context = serde_json::json!({
                "code": issue.map_or("security", |issue| issue.code),
                "diagnostics": issue.map_or_else(String::new, |issue| issue.diagnostics.clone()),
            });
        }
    }
    Ok(response)
}

/// A refusal's audit record filed under the client the token or assertion
/// names, so that an operator looking into that client sees the attempts
/// made in its name: marked as a claim unless the refusal came after the
/// signature was checked.
pub(super) fn naming_client(mut record: AuditRecord, refusal: &Refusal) -> AuditRecord {
    if let Some(client_id) = &refusal.client_id {
        record.client_id = client_id.clone();
        if !refusal.verified {
            record.detail = record
                .detail
                .map(|detail| format!("{detail} (claimed, unverified)"));
        }
    }
    record
}

/// The main of the API's TOKEN authorizer.
pub async fn run_authorizer() -> Result<(), Error> {
    let aws = start().await;
    let ports = Adapters::new().clients(aws.clients()?).audit(aws.audit()?);
    let keys = aws.verifiers().await?;
    let (ports, keys) = (&ports, &keys);
    run(service_fn(move |event: LambdaEvent<_>| async move {
        authorize(ports, keys, &event.payload).await
    }))
    .await
}
