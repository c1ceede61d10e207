//! Hello world as an API Gateway REST (v1 proxy) handler, decoded by hand as
//! the hub does (shared/src/lambda/http.rs): lambda_runtime with
//! aws_lambda_events' ApiGatewayProxyRequest/Response. Reads a header, the
//! body as text (base64 when API Gateway says so) and a query parameter;
//! answers JSON. Twin of bench/lambda/hello-http (lambda_http).

use aws_lambda_events::apigw::{ApiGatewayProxyRequest, ApiGatewayProxyResponse};
use aws_lambda_events::encodings::Body;
use aws_lambda_events::http::{HeaderMap, HeaderValue};
use lambda_runtime::{Error, LambdaEvent, run, service_fn};

mod handler;

use handler::Refusal;

fn body_bytes(request: &ApiGatewayProxyRequest) -> Result<Vec<u8>, Refusal> {
    let body = request.body.as_deref().unwrap_or_default();
    if request.is_base64_encoded {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD
            .decode(body)
            .map_err(|_| Refusal::NotBase64)
    } else {
        Ok(body.as_bytes().to_vec())
    }
}

async fn handle(
    event: LambdaEvent<ApiGatewayProxyRequest>,
) -> Result<ApiGatewayProxyResponse, Error> {
    let request = event.payload;
    let client = request
        .headers
        .get("x-client")
        .and_then(|value| value.to_str().ok());
    let host = request
        .headers
        .get("host")
        .and_then(|value| value.to_str().ok());
    let name = request.query_string_parameters.first("name");
    let body = body_bytes(&request).and_then(handler::text);
    let (status, json) = handler::answer(client, host, name, body);
    let mut headers = HeaderMap::new();
    headers.insert(
        "content-type",
        HeaderValue::from_static("application/json; charset=utf-8"),
    );
    let mut response = ApiGatewayProxyResponse::default();
    response.status_code = i64::from(status);
    response.headers = headers;
    response.body = Some(Body::Text(json));
    Ok(response)
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    run(service_fn(handle)).await
}
