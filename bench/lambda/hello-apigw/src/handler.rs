//! The work both hello-world API Gateway handlers share (hello-apigw and,
//! through `#[path]`, hello-http): the body's size and UTF-8 checks, which
//! the hub keeps whatever decodes the request, and the JSON answer. Only the
//! decoding of the request differs between the two crates.

use serde_json::json;

/// The hub's limit for subscription and onboarding requests
/// (shared/src/lambda/http.rs, `MAX_REQUEST_BYTES`).
pub const MAX_REQUEST_BYTES: usize = 16 * 1024;

/// Why a body was not read.
pub enum Refusal {
    TooLarge(usize),
    NotText,
    // lambda_http decodes a base64 body itself: only hello-apigw builds it.
    #[allow(dead_code, reason = "unused in hello-http")]
    NotBase64,
}

/// The body as text, within the limit.
pub fn text(body: Vec<u8>) -> Result<String, Refusal> {
    if body.len() > MAX_REQUEST_BYTES {
        return Err(Refusal::TooLarge(body.len()));
    }
    String::from_utf8(body).map_err(|_| Refusal::NotText)
}

/// The status and JSON body of the answer.
pub fn answer(
    client: Option<&str>,
    host: Option<&str>,
    name: Option<&str>,
    body: Result<String, Refusal>,
) -> (u16, String) {
    // With the "url" feature the host is read as a URL, only so that both
    // twins link url and idna, as every hub function does (Cargo.toml).
    #[cfg(feature = "url")]
    let host = host.filter(|host| url::Url::parse(&format!("https://{host}/")).is_ok());
    let (status, value) = match body {
        Ok(text) => (
            200,
            json!({
                "hello": name.unwrap_or("world"),
                "client": client,
                "host": host,
                "bytes": text.len(),
                "words": text.split_whitespace().count(),
            }),
        ),
        Err(Refusal::TooLarge(size)) => (
            413,
            json!({ "error": "too large", "size": size, "limit": MAX_REQUEST_BYTES }),
        ),
        Err(Refusal::NotText) => (400, json!({ "error": "the body is not UTF-8" })),
        Err(Refusal::NotBase64) => (
            400,
            json!({ "error": "the body is marked base64 but is not" }),
        ),
    };
    (status, value.to_string())
}
