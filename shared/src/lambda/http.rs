//! Reading API Gateway requests (headers, bodies within their limits, path
//! and query parameters) and building their answers.

use aws_lambda_events::apigw::{ApiGatewayProxyRequest, ApiGatewayProxyResponse};
use aws_lambda_events::encodings::Body;
use aws_lambda_events::http::{HeaderMap, HeaderValue};

use crate::error::HubError;
use crate::message::Encoding;
use crate::subscription;

use super::request_error::{BodyError, RequestError};

pub fn header<'a>(request: &'a ApiGatewayProxyRequest, name: &str) -> Option<&'a str> {
    request
        .headers
        .get(name)
        .and_then(|value| value.to_str().ok())
}

/// The largest subscription or onboarding request the hub reads; a real one
/// is about 1 KB. Event messages have their own, larger limit.
pub(super) const MAX_REQUEST_BYTES: usize = 16 * 1024;

/// The body as text, refused (413) above `limit` bytes before it is read.
pub(super) fn limited_text_body(
    request: &ApiGatewayProxyRequest,
    limit: usize,
) -> Result<String, BodyError> {
    let body = body_bytes(request)?;
    text_within(&body, limit).map(str::to_owned)
}

/// A body as text, refused (413) above `limit` bytes before it is decoded,
/// so that a large body of garbage is refused for its size.
pub(super) fn text_within(body: &[u8], limit: usize) -> Result<&str, BodyError> {
    if body.len() > limit {
        return Err(BodyError::PayloadTooLarge {
            size: body.len(),
            limit,
        });
    }
    std::str::from_utf8(body).map_err(|_| BodyError::NotText)
}

pub(super) fn body_bytes(request: &ApiGatewayProxyRequest) -> Result<Vec<u8>, BodyError> {
    let body = request.body.as_deref().unwrap_or_default();
    if request.is_base64_encoded {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD
            .decode(body)
            .map_err(|_| BodyError::NotBase64)
    } else {
        Ok(body.as_bytes().to_vec())
    }
}

/// A JSON request body (operators' APIs), within the request size limit.
pub(super) fn json_body(request: &ApiGatewayProxyRequest) -> Result<String, BodyError> {
    let media_type = header(request, "content-type").unwrap_or_default();
    if !media_type
        .to_ascii_lowercase()
        .starts_with("application/json")
    {
        return Err(BodyError::unsupported_media_type(
            Some(media_type),
            "application/json",
        ));
    }
    limited_text_body(request, MAX_REQUEST_BYTES)
}

/// The encoding of the answer: what Accept asks for, else the encoding of
/// the request, else JSON.
pub fn response_encoding(request: &ApiGatewayProxyRequest) -> Encoding {
    let wants = |text: &str, needles: &[&str]| needles.iter().any(|needle| text.contains(needle));
    let xml = ["fhir+xml", "xml+fhir", "application/xml"];
    let json = ["fhir+json", "json+fhir", "application/json"];
    if let Some(accept) = header(request, "accept").map(str::to_ascii_lowercase) {
        if wants(&accept, &xml) {
            return Encoding::Xml;
        }
        if wants(&accept, &json) {
            return Encoding::Json;
        }
    }
    match header(request, "content-type").and_then(Encoding::from_content_type) {
        Some(Encoding::Xml) => Encoding::Xml,
        _ => Encoding::Json,
    }
}

pub(super) fn respond(
    status: u16,
    content_type: &str,
    body: String,
    extra_headers: &[(&'static str, String)],
) -> ApiGatewayProxyResponse {
    let mut headers = HeaderMap::new();
    if let Ok(value) = HeaderValue::from_str(&format!("{content_type}; charset=utf-8")) {
        headers.insert("content-type", value);
    }
    for (name, value) in extra_headers {
        if let Ok(value) = HeaderValue::from_str(value) {
            headers.insert(*name, value);
        }
    }
    let mut response = ApiGatewayProxyResponse::default();
    response.status_code = i64::from(status);
    response.headers = headers;
    response.body = Some(Body::Text(body));
    response
}

pub fn fhir_response(
    status: u16,
    encoding: Encoding,
    body: String,
    extra_headers: &[(&'static str, String)],
) -> ApiGatewayProxyResponse {
    respond(status, encoding.media_type(), body, extra_headers)
}

/// A FHIR Parameters resource in JSON, the body of an operation
/// (`$replay`, `$backfill`): None when the body is empty.
pub(super) fn parameters_body(
    request: &ApiGatewayProxyRequest,
) -> Result<Option<serde_json::Value>, RequestError> {
    let body = body_bytes(request)?;
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    let media_type = header(request, "content-type").unwrap_or_default();
    let json = media_type.to_ascii_lowercase();
    if !(json.starts_with("application/fhir+json") || json.starts_with("application/json")) {
        return Err(BodyError::unsupported_media_type(
            Some(media_type),
            "application/fhir+json (a Parameters resource)",
        )
        .into());
    }
    let body = text_within(&body, MAX_REQUEST_BYTES)?;
    let value: serde_json::Value = crate::fhir::from_json_unique(body).map_err(|error| {
        HubError::bad_request(
            "Parameters",
            format!("the body is not a FHIR Parameters resource in JSON: {error}"),
        )
    })?;
    if value["resourceType"] != "Parameters" {
        return Err(HubError::bad_request(
            "Parameters",
            "the body is a FHIR Parameters resource in JSON",
        )
        .into());
    }
    Ok(Some(value))
}

/// The value fields a moment may be given in.
pub(super) const MOMENT_VALUES: &[&str] = &["valueInstant", "valueDateTime", "valueDate"];

/// The parameter of that name, as the first of these value fields it has.
/// A name given twice is refused: which one counts would be a guess.
pub(super) fn parameter(
    parameters: &serde_json::Value,
    name: &str,
    fields: &[&str],
) -> Result<Option<String>, HubError> {
    let mut named = parameters["parameter"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .filter(|parameter| parameter["name"] == name);
    let Some(found) = named.next() else {
        return Ok(None);
    };
    if named.next().is_some() {
        return Err(HubError::bad_request(
            format!("Parameters.parameter.where(name='{name}')"),
            format!("{name} is given more than once"),
        ));
    }
    Ok(fields
        .iter()
        .find_map(|field| found[*field].as_str().map(str::to_owned)))
}

/// The `{id}` of the path. Ids the hub issues are UUIDs: anything else
/// cannot exist, and must not reach DynamoDB, which refuses keys over 2 KB
/// with an error rather than a miss.
pub(super) fn path_id<'a>(
    request: &'a ApiGatewayProxyRequest,
    what: &str,
) -> Result<&'a str, HubError> {
    request
        .path_parameters
        .get("id")
        .map(String::as_str)
        // The hub's ids are lower-case hyphenated: another spelling of one
        // would read as a miss anyway.
        .filter(|id| {
            uuid::Uuid::try_parse(id).is_ok_and(|uuid| uuid.hyphenated().to_string() == *id)
        })
        .ok_or_else(|| HubError::NotFound(format!("that {what}")))
}

/// `_count`: from 1 to the largest page, the default when absent.
pub(super) fn page_size(request: &ApiGatewayProxyRequest) -> Result<usize, HubError> {
    match request.query_string_parameters.first("_count") {
        None => Ok(subscription::DEFAULT_PAGE_SIZE),
        Some(count) => count
            .parse::<usize>()
            .ok()
            .filter(|count| (1..=subscription::MAX_PAGE_SIZE).contains(count))
            .ok_or_else(|| {
                HubError::bad_request(
                    "_count",
                    format!(
                        "_count is a whole number from 1 to {}",
                        subscription::MAX_PAGE_SIZE
                    ),
                )
            }),
    }
}
