//! A client of the hub's HTTP API: it signs the client's JWT assertion,
//! exchanges it for an access token (kept while it is young) and calls any
//! route with it. A refusal comes back as [`ApiError::Refused`] with the
//! OperationOutcome's reasons.

use std::time::{Duration, Instant};

use jsonwebtoken::{Algorithm, EncodingKey};
use reqwest::{Method, StatusCode};
use tokio::sync::Mutex;

/// The token endpoint's path.
pub const TOKEN_PATH: &str = "/oauth2/token";

/// The token endpoint of the API at `api`: the URL clients post to and the
/// audience their assertions name.
pub fn token_url(api: &str) -> String {
    format!("{}{TOKEN_PATH}", api.trim_end_matches('/'))
}

/// Tokens live 5 minutes; one is reused for 4, so that a request never
/// carries one about to expire.
const TOKEN_REUSE: Duration = Duration::from_secs(240);

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("no hub answers at {url}: start one (infra/run-local.sh) or check the URL")]
    Unreachable {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("{method} {url}")]
    Transport {
        method: Method,
        url: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("signing the client assertion: {0}")]
    Signing(String),
    #[error("the hub refused {what} ({status}): {}", .reasons.join("; "))]
    Refused {
        what: String,
        status: StatusCode,
        /// Each issue's diagnostics, with the element at fault when named.
        reasons: Vec<String>,
    },
    #[error("{what}: the hub's answer is not what was expected: {detail}")]
    Unexpected { what: String, detail: String },
}

/// A client's signing key and the `kid` it is registered under.
#[derive(Clone)]
pub struct ClientKey {
    pub client_id: String,
    pub key_id: String,
    pub key: EncodingKey,
    pub algorithm: Algorithm,
}

impl ClientKey {
    /// A key from PKCS#8 PEM: a P-256 key signs ES256, an RSA key RS512.
    pub fn from_pem(client_id: &str, key_id: &str, pem: &[u8]) -> Result<Self, String> {
        let (key, algorithm) = match EncodingKey::from_ec_pem(pem) {
            Ok(key) => (key, Algorithm::ES256),
            Err(_) => EncodingKey::from_rsa_pem(pem)
                .map(|key| (key, Algorithm::RS512))
                .map_err(|_| "not a PEM P-256 or RSA private key".to_owned())?,
        };
        Ok(Self {
            client_id: client_id.to_owned(),
            key_id: key_id.to_owned(),
            key,
            algorithm,
        })
    }
}

/// What the hub answered: its status, headers and body.
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub headers: reqwest::header::HeaderMap,
    pub body: String,
}

impl Answer {
    /// The body as JSON.
    pub fn json(&self, what: &str) -> Result<serde_json::Value, ApiError> {
        serde_json::from_str(&self.body).map_err(|e| ApiError::Unexpected {
            what: what.to_owned(),
            detail: format!("not JSON ({e})"),
        })
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|value| value.to_str().ok())
    }

    /// The reasons of an OperationOutcome body (each issue's diagnostics,
    /// with its expression), else the body itself.
    pub fn reasons(&self) -> Vec<String> {
        outcome_reasons(&self.body)
    }
}

/// Each issue of an OperationOutcome as "diagnostics (expression)"; a body
/// that is no OperationOutcome is its own single reason.
pub fn outcome_reasons(body: &str) -> Vec<String> {
    let parsed: Option<serde_json::Value> = serde_json::from_str(body).ok();
    let issues = parsed
        .as_ref()
        .filter(|value| value["resourceType"] == "OperationOutcome")
        .and_then(|value| value["issue"].as_array());
    let Some(issues) = issues else {
        let text = body.split_whitespace().collect::<Vec<_>>().join(" ");
        return vec![if text.is_empty() {
            "(no body)".to_owned()
        } else {
            text
        }];
    };
    issues
        .iter()
        .map(|issue| {
            let diagnostics = issue["diagnostics"]
                .as_str()
                .or_else(|| issue["details"]["text"].as_str())
                .or_else(|| issue["code"].as_str())
                .unwrap_or("(no diagnostics)");
            let expressions: Vec<&str> = issue["expression"]
                .as_array()
                .map(|list| list.iter().filter_map(|e| e.as_str()).collect())
                .unwrap_or_default();
            // The hub's own diagnostics already start with the element.
            if expressions
                .iter()
                .all(|expression| diagnostics.contains(expression))
            {
                diagnostics.to_owned()
            } else {
                format!("{diagnostics} ({})", expressions.join(", "))
            }
        })
        .collect()
}

/// Signs an assertion as the client and exchanges it for an access token
/// at `<api>/oauth2/token`: the token endpoint's whole answer.
pub async fn request_token(
    http: &reqwest::Client,
    api: &str,
    client: &ClientKey,
) -> Result<serde_json::Value, ApiError> {
    let token_url = token_url(api);
    let assertion = hub::auth::sign_client_assertion(
        &client.client_id,
        &client.key_id,
        &client.key,
        client.algorithm,
        &token_url,
        time::OffsetDateTime::now_utc(),
    )
    .map_err(|e| ApiError::Signing(e.to_string()))?;
    let response = http
        .post(&token_url)
        .header("content-type", "application/x-www-form-urlencoded")
        .header("accept", "application/json")
        .body(hub::auth::token_request_form(&assertion))
        .send()
        .await
        .map_err(|source| transport_error(Method::POST, api, &token_url, source))?;
    let answer = read(response, &Method::POST, &token_url).await?;
    let what = format!("a token for {}", client.client_id);
    if !answer.status.is_success() {
        return Err(ApiError::Refused {
            what,
            status: answer.status,
            reasons: answer.reasons(),
        });
    }
    let json = answer.json(&what)?;
    if json["access_token"].as_str().is_none() {
        return Err(ApiError::Unexpected {
            what,
            detail: "no access_token".into(),
        });
    }
    Ok(json)
}

fn transport_error(method: Method, api: &str, url: &str, source: reqwest::Error) -> ApiError {
    if source.is_connect() {
        ApiError::Unreachable {
            url: api.to_owned(),
            source,
        }
    } else {
        ApiError::Transport {
            method,
            url: url.to_owned(),
            source,
        }
    }
}

async fn read(response: reqwest::Response, method: &Method, url: &str) -> Result<Answer, ApiError> {
    let status = response.status();
    let headers = response.headers().clone();
    let body = response
        .text()
        .await
        .map_err(|source| ApiError::Transport {
            method: method.clone(),
            url: url.to_owned(),
            source,
        })?;
    Ok(Answer {
        status,
        headers,
        body,
    })
}

/// The hub at one URL, as one client.
pub struct HubClient {
    http: reqwest::Client,
    url: String,
    key: ClientKey,
    token: Mutex<Option<(String, Instant)>>,
}

/// A request's body and its media type.
pub struct Body<'a> {
    pub content_type: &'a str,
    pub text: String,
}

impl HubClient {
    pub fn new(url: &str, key: ClientKey) -> Result<Self, ApiError> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()
            .map_err(|source| ApiError::Transport {
                method: Method::GET,
                url: url.to_owned(),
                source,
            })?;
        Ok(Self {
            http,
            url: url.trim_end_matches('/').to_owned(),
            key,
            token: Mutex::new(None),
        })
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn client_id(&self) -> &str {
        &self.key.client_id
    }

    /// The token endpoint's whole answer, for a new token.
    pub async fn new_token(&self) -> Result<serde_json::Value, ApiError> {
        request_token(&self.http, &self.url, &self.key).await
    }

    /// An access token, reused while it is young.
    pub async fn token(&self) -> Result<String, ApiError> {
        let mut cached = self.token.lock().await;
        if let Some((token, at)) = cached.as_ref()
            && at.elapsed() < TOKEN_REUSE
        {
            return Ok(token.clone());
        }
        let answer = self.new_token().await?;
        let token = answer["access_token"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        *cached = Some((token.clone(), Instant::now()));
        Ok(token)
    }

    /// Sends a request with the client's token; any status comes back as
    /// an [`Answer`].
    pub async fn send(
        &self,
        method: Method,
        path_and_query: &str,
        body: Option<Body<'_>>,
    ) -> Result<Answer, ApiError> {
        let token = self.token().await?;
        let url = format!("{}{path_and_query}", self.url);
        let mut request = self
            .http
            .request(method.clone(), &url)
            .bearer_auth(token)
            .header("accept", "application/fhir+json, application/json");
        if let Some(body) = body {
            request = request
                .header("content-type", body.content_type)
                .body(body.text);
        }
        let response = request
            .send()
            .await
            .map_err(|source| transport_error(method.clone(), &self.url, &url, source))?;
        read(response, &method, &url).await
    }

    /// Sends a request and expects one of `expected`: else the refusal,
    /// with its reasons.
    pub async fn call(
        &self,
        method: Method,
        path_and_query: &str,
        body: Option<Body<'_>>,
        expected: &[StatusCode],
    ) -> Result<Answer, ApiError> {
        let what = format!("{method} {path_and_query}");
        let answer = self.send(method, path_and_query, body).await?;
        if expected.contains(&answer.status) {
            Ok(answer)
        } else {
            Err(ApiError::Refused {
                what,
                status: answer.status,
                reasons: answer.reasons(),
            })
        }
    }

    /// A JSON request expecting a JSON answer with a status of `expected`.
    pub async fn json(
        &self,
        method: Method,
        path_and_query: &str,
        body: Option<&serde_json::Value>,
        expected: &[StatusCode],
    ) -> Result<serde_json::Value, ApiError> {
        let body = body.map(|value| Body {
            content_type: "application/json",
            text: value.to_string(),
        });
        let what = format!("{method} {path_and_query}");
        let answer = self.call(method, path_and_query, body, expected).await?;
        if answer.body.trim().is_empty() {
            return Ok(serde_json::Value::Null);
        }
        answer.json(&what)
    }
}

/// A path segment, percent-encoded: ids come from the command line.
pub fn segment(text: &str) -> String {
    hub::text::percent_encode(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_operation_outcome_gives_each_issue_and_its_element() {
        let body = r#"{"resourceType":"OperationOutcome","issue":[
            {"severity":"error","code":"invalid","diagnostics":"must be 'message'","expression":["Bundle.type"]},
            {"severity":"error","code":"forbidden"},
            {"severity":"error","code":"invalid","diagnostics":"Bundle.id: missing","expression":["Bundle.id"]}]}"#;
        assert_eq!(
            outcome_reasons(body),
            [
                "must be 'message' (Bundle.type)",
                "forbidden",
                "Bundle.id: missing"
            ]
        );
        assert_eq!(outcome_reasons("  not\n json "), ["not json"]);
        assert_eq!(outcome_reasons(""), ["(no body)"]);
    }

    #[test]
    fn segments_are_percent_encoded() {
        assert_eq!(segment("abc-1_2.3~"), "abc-1_2.3~");
        assert_eq!(segment("a/b?c d"), "a%2Fb%3Fc%20d");
    }

    #[test]
    fn a_key_is_read_as_p256_or_rsa() {
        let pem = std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../shared/tests/keys/client-ec.pem"
        ))
        .unwrap();
        let key = ClientKey::from_pem("c", "c-1", &pem).unwrap();
        assert_eq!(key.algorithm, Algorithm::ES256);
        let pem = std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../shared/tests/keys/client-rsa.pem"
        ))
        .unwrap();
        let key = ClientKey::from_pem("c", "c-1", &pem).unwrap();
        assert_eq!(key.algorithm, Algorithm::RS512);
        assert!(ClientKey::from_pem("c", "c-1", b"nonsense").is_err());
    }
}
