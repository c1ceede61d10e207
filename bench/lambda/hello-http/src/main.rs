//! Hello world as an API Gateway REST (v1 proxy) handler on lambda_http:
//! the same handler as bench/lambda/hello-apigw (its src/handler.rs), with
//! lambda_http decoding the request (headers, base64 body, query string)
//! into an `http::Request` and encoding the `http::Response`.

use lambda_http::{Body, Error, Request, RequestExt, Response, run, service_fn};

#[path = "../../hello-apigw/src/handler.rs"]
mod handler;

async fn handle(request: Request) -> Result<Response<Body>, Error> {
    let (parts, body) = request.into_parts();
    let client = parts
        .headers
        .get("x-client")
        .and_then(|value| value.to_str().ok());
    let host = parts
        .headers
        .get("host")
        .and_then(|value| value.to_str().ok());
    let query = parts.query_string_parameters_ref();
    let name = query.and_then(|query| query.first("name"));
    // lambda_http has already decoded a base64 body into Binary.
    let body = match body {
        Body::Empty => Ok(String::new()),
        Body::Text(text) => handler::text(text.into_bytes()),
        Body::Binary(bytes) => handler::text(bytes),
        _ => Ok(String::new()),
    };
    let (status, json) = handler::answer(client, host, name, body);
    Ok(Response::builder()
        .status(status)
        .header("content-type", "application/json; charset=utf-8")
        .body(Body::Text(json))?)
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    run(service_fn(handle)).await
}
