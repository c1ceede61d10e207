//! Authentication and audit around every API operation.

use aws_lambda_events::apigw::{ApiGatewayProxyRequest, ApiGatewayProxyResponse};
use std::future::Future;
use time::OffsetDateTime;
use tracing::error;

use crate::audit::{Action, AuditRecord};
use crate::auth::{AuthError, Caller};
use crate::error::HubError;
use crate::message::Encoding;
use crate::ports::AuditLog;

use super::http_status::{Answer, error_response};
use super::request_error::RequestError;

/// The caller the authorizer established. A request without one reached a
/// function that API Gateway should have protected: refused, never served.
pub fn caller_of(request: &ApiGatewayProxyRequest) -> Result<Caller, HubError> {
    Caller::from_context(&request.request_context.authorizer.fields)
        .ok_or(HubError::Unauthenticated(AuthError::NoToken))
}

/// Runs an API operation for its authenticated caller and records it in the
/// audit trail, refusals included. The operation gets the record to fill in
/// (patient, event, subscription) and returns it with its answer.
///
/// A success whose audit record cannot be written is answered 503: nothing
/// is returned that the trail does not show. A refusal is answered as it
/// is, and the failed write is logged.
///
/// `on_refusal` adds to a refusal's record what the request shows of the
/// patient, so that a refused attempt appears in the patient's trail too.
pub async fn audited<A, R, F, Fut>(
    audit: &A,
    request: &ApiGatewayProxyRequest,
    action: Action,
    encoding: Encoding,
    on_refusal: R,
    operation: F,
) -> ApiGatewayProxyResponse
where
    A: AuditLog,
    R: FnOnce(AuditRecord) -> AuditRecord,
    F: FnOnce(Caller, AuditRecord) -> Fut,
    Fut: Future<Output = Result<(ApiGatewayProxyResponse, AuditRecord), RequestError>>,
{
    let answered = |caller, record| {
        let answer = operation(caller, record);
        async move {
            answer
                .await
                .map(|(response, record)| (response, record, ()))
        }
    };
    let (response, _) =
        audited_outcome(audit, request, action, encoding, on_refusal, answered).await;
    response
}

/// [`audited`], for an operation whose result the handler needs once it is
/// answered (a publish counts its outcome): the result, or the refusal the
/// answer was built from, a success the trail could not record included.
pub(super) async fn audited_outcome<A, R, F, Fut, T>(
    audit: &A,
    request: &ApiGatewayProxyRequest,
    action: Action,
    encoding: Encoding,
    on_refusal: R,
    operation: F,
) -> (ApiGatewayProxyResponse, Result<T, RequestError>)
where
    A: AuditLog,
    R: FnOnce(AuditRecord) -> AuditRecord,
    F: FnOnce(Caller, AuditRecord) -> Fut,
    Fut: Future<Output = Result<(ApiGatewayProxyResponse, AuditRecord, T), RequestError>>,
{
    let caller = caller_of(request);
    let record = AuditRecord::new(caller.as_ref().ok(), action, 0, OffsetDateTime::now_utc());
    let authenticated = caller.is_ok();
    let outcome = match caller {
        // Boxed: the operations' futures nest deeply enough to overflow the
        // compiler's layout queries when inlined into the handler's future.
        Ok(caller) => unwinding(Box::pin(operation(caller, record.clone())))
            .await
            .unwrap_or_else(|| {
                Err(HubError::Internal(format!("the {action:?} operation panicked")).into())
            }),
        Err(error) => Err(error.into()),
    };
    let (response, record, result) = match outcome {
        Ok((response, record, value)) => (response, record, Ok(value)),
        Err(error) => {
            let refused = record.detail(refusal_detail(&error));
            // The body of a request from no one is not read at all.
            let refused = if authenticated {
                on_refusal(refused)
            } else {
                refused
            };
            (error_response(&error, encoding), refused, Err(error))
        }
    };
    match finish_audited(audit, record, response).await {
        Ok(response) => (response, result),
        Err(error) => (error_response(&error, encoding), Err(error)),
    }
}

/// The future's output, or None when it panicked: an operation's bug still
/// leaves its audit record and a FHIR answer. (Where panics abort instead
/// of unwinding, as in the release profile, nothing is caught; API
/// Gateway's access log still names the client.)
async fn unwinding<F: Future + Unpin>(mut future: F) -> Option<F::Output> {
    std::future::poll_fn(|context| {
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            std::pin::Pin::new(&mut future).poll(context)
        })) {
            Ok(std::task::Poll::Ready(output)) => std::task::Poll::Ready(Some(output)),
            Ok(std::task::Poll::Pending) => std::task::Poll::Pending,
            Err(_) => std::task::Poll::Ready(None),
        }
    })
    .await
}

/// What a refusal's audit record says of it: the authentication failure by
/// name, else the OperationOutcome's code.
pub(super) fn refusal_detail(error: &RequestError) -> String {
    match error {
        RequestError::Hub(HubError::Unauthenticated(refusal)) => refusal.name().to_owned(),
        other => other
            .outcome()
            .issues
            .first()
            .map_or_else(String::new, |issue| issue.spine_code.to_owned()),
    }
}

/// Writes the request's audit record, with the status answered, and returns
/// the answer, or the failure to record a success (answered 503).
pub(super) async fn finish_audited<A: AuditLog>(
    audit: &A,
    mut record: AuditRecord,
    response: ApiGatewayProxyResponse,
) -> Result<ApiGatewayProxyResponse, RequestError> {
    record.status = u16::try_from(response.status_code).unwrap_or_default();
    if let Err(error) = audit.record(&record).await {
        error!(error = %error, audit_id = %record.audit_id, "the audit record could not be written");
        if record.status < 400 {
            return Err(HubError::Store(error).into());
        }
    }
    Ok(response)
}

/// The `{id}` of the path as the caller sent it, for a refusal's audit
/// record: probing for ids shows in the trail. Capped: the hub's ids are 36
/// characters, and the record is not the place for a caller's essay.
fn asked_id(request: &ApiGatewayProxyRequest) -> Option<String> {
    const KEPT: usize = 64;
    request
        .path_parameters
        .get("id")
        .map(|id| id.chars().take(KEPT).collect())
}

/// A refused request's record, naming the subscription it asked for.
pub(super) fn refused_subscription(
    request: &ApiGatewayProxyRequest,
    record: AuditRecord,
) -> AuditRecord {
    match asked_id(request) {
        Some(id) => record.subscription(id),
        None => record,
    }
}

/// A refused request's record, naming the subscriber it asked about.
pub(super) fn refused_subscriber(
    request: &ApiGatewayProxyRequest,
    record: AuditRecord,
) -> AuditRecord {
    match asked_id(request) {
        Some(id) => record.subscriber(id),
        None => record,
    }
}

/// A refused request's record, its detail (the refusal's code) followed by
/// what it asked for: `<what> <id>`, for targets the record has no field
/// of (an event id of no known type, a replay).
pub(super) fn refused_asking_for(
    request: &ApiGatewayProxyRequest,
    what: &str,
    record: AuditRecord,
) -> AuditRecord {
    let Some(id) = asked_id(request) else {
        return record;
    };
    let detail = match &record.detail {
        Some(code) => format!("{code} {what} {id}"),
        None => format!("{what} {id}"),
    };
    record.detail(detail)
}
