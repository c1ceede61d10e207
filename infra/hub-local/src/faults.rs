//! Fault injection between the local stack and the emulator: a proxy on
//! loopback that every function process (through AWS_ENDPOINT_URL) and the
//! stream poller call instead of moto. It recognises each call's service
//! and operation and, when a rule says so, fails it, holds it, drops its
//! connection or slows it down; otherwise it passes the call on unchanged.
//!
//! A rule is `service:Operation[~text][#calls]=action`:
//!
//! - service: `dynamodb`, `streams` (DynamoDB Streams), `sns`, `sqs`, `kms`
//!   or `*`; Operation: the API's name (`PutItem`, `TransactWriteItems`,
//!   `GetRecords`, `PublishBatch`, `ReceiveMessage`...) or `*`;
//! - `~text`: only calls whose request body holds the text (an event id, a
//!   table or queue name; SNS bodies are form-encoded);
//! - calls: `N` (the Nth matching call since the rule was set), `N..M`
//!   (inclusive), `N..` or `*` (every call, the default);
//! - action: `error` (500 InternalError), `unavailable` (503),
//!   `throttle` (400 ThrottlingException), `timeout[:DURATION]` (held,
//!   never passed on, then the connection closed; 60 s by default),
//!   `drop` (connection closed, not passed on), `drop-response` (passed
//!   on, then the connection closed: done, but the caller never hears),
//!   `slow:DURATION` (passed on after the delay). Durations: `800ms`, `2s`.
//!
//! Rules are separated by `;` or new lines. Every matching rule counts the
//! call; the first whose calls include it acts ("hits").
//!
//! The same port serves `/_faults`: GET lists the rules with their calls
//! and hits (JSON), PUT replaces them (body: rules as text), POST adds
//! them, DELETE removes them all.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde::Serialize;

/// The admin path: no AWS API uses it.
pub const ADMIN_PATH: &str = "/_faults";
const DEFAULT_HOLD: Duration = Duration::from_secs(60);

#[derive(Debug, Clone, PartialEq, Eq)]
enum Calls {
    Every,
    Range { from: u64, to: Option<u64> },
}

impl Calls {
    fn includes(&self, call: u64) -> bool {
        match self {
            Calls::Every => true,
            Calls::Range { from, to } => call >= *from && to.is_none_or(|to| call <= to),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Action {
    Error,
    Unavailable,
    Throttle,
    Timeout(Duration),
    Drop,
    DropResponse,
    Slow(Duration),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    text: String,
    service: String,
    operation: String,
    filter: Option<String>,
    calls: Calls,
    action: Action,
}

fn duration(text: &str) -> Result<Duration, String> {
    let (number, unit) = match text.strip_suffix("ms") {
        Some(number) => (number, Duration::from_millis(1)),
        None => match text.strip_suffix('s') {
            Some(number) => (number, Duration::from_secs(1)),
            None => return Err(format!("'{text}' is not a duration (800ms, 2s)")),
        },
    };
    let count: u32 = number
        .parse()
        .map_err(|_| format!("'{text}' is not a duration (800ms, 2s)"))?;
    Ok(unit * count)
}

fn call_number(text: &str) -> Result<u64, String> {
    text.parse::<u64>()
        .ok()
        .filter(|n| *n > 0)
        .ok_or_else(|| format!("'{text}' is not a call number (1, 2, ...)"))
}

impl Rule {
    pub fn parse(text: &str) -> Result<Rule, String> {
        let text = text.trim();
        let bad = |why: &str| format!("fault rule '{text}': {why}");
        let (target, action) = text
            .split_once('=')
            .ok_or_else(|| bad("expected service:Operation[#calls]=action"))?;
        let action = match action.trim() {
            "error" => Action::Error,
            "unavailable" => Action::Unavailable,
            "throttle" => Action::Throttle,
            "timeout" => Action::Timeout(DEFAULT_HOLD),
            "drop" => Action::Drop,
            "drop-response" => Action::DropResponse,
            other => match other.split_once(':') {
                Some(("timeout", hold)) => Action::Timeout(duration(hold).map_err(|e| bad(&e))?),
                Some(("slow", delay)) => Action::Slow(duration(delay).map_err(|e| bad(&e))?),
                _ => return Err(bad(&format!("unknown action '{other}'"))),
            },
        };
        let (target, calls) = match target.split_once('#') {
            None => (target, Calls::Every),
            Some((target, "*")) => (target, Calls::Every),
            Some((target, calls)) => {
                let calls = match calls.split_once("..") {
                    None => {
                        let n = call_number(calls).map_err(|e| bad(&e))?;
                        Calls::Range {
                            from: n,
                            to: Some(n),
                        }
                    }
                    Some((from, to)) => Calls::Range {
                        from: call_number(from).map_err(|e| bad(&e))?,
                        to: if to.is_empty() {
                            None
                        } else {
                            Some(call_number(to).map_err(|e| bad(&e))?)
                        },
                    },
                };
                if let Calls::Range { from, to: Some(to) } = calls
                    && to < from
                {
                    return Err(bad("the range ends before it starts"));
                }
                (target, calls)
            }
        };
        let (target, filter) = match target.split_once('~') {
            Some((target, filter)) if !filter.is_empty() => (target, Some(filter.to_owned())),
            Some(_) => return Err(bad("'~' needs the text to look for")),
            None => (target, None),
        };
        let (service, operation) = target
            .split_once(':')
            .ok_or_else(|| bad("expected service:Operation"))?;
        let service = service.trim();
        if !matches!(
            service,
            "dynamodb" | "streams" | "sns" | "sqs" | "kms" | "*"
        ) {
            return Err(bad(&format!(
                "unknown service '{service}' (dynamodb, streams, sns, sqs, kms, *)"
            )));
        }
        let operation = operation.trim();
        if operation.is_empty()
            || !operation
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '*')
        {
            return Err(bad("expected an operation name or *"));
        }
        Ok(Rule {
            text: text.to_owned(),
            service: service.to_owned(),
            operation: operation.to_owned(),
            filter,
            calls,
            action,
        })
    }

    /// Rules separated by `;` or new lines; blank ones are skipped.
    pub fn parse_list(text: &str) -> Result<Vec<Rule>, String> {
        text.split([';', '\n'])
            .filter(|rule| !rule.trim().is_empty())
            .map(Rule::parse)
            .collect()
    }

    fn matches(&self, call: &Call, body: &[u8]) -> bool {
        (self.service == "*" || self.service == call.service)
            && (self.operation == "*" || self.operation == call.operation)
            && self.filter.as_ref().is_none_or(|filter| {
                body.windows(filter.len())
                    .any(|window| window == filter.as_bytes())
            })
    }
}

/// The service and operation of one AWS call.
#[derive(Debug, PartialEq, Eq)]
struct Call {
    service: String,
    operation: String,
}

/// JSON protocols name the operation in X-Amz-Target (its prefix names the
/// service); query protocols in the form's Action, the service in the
/// SigV4 credential scope.
fn recognise(target: Option<&str>, authorization: Option<&str>, body: &[u8]) -> Call {
    if let Some((prefix, operation)) = target.and_then(|t| t.split_once('.')) {
        let service = match prefix {
            p if p.starts_with("DynamoDBStreams_") => "streams",
            p if p.starts_with("DynamoDB_") => "dynamodb",
            "AmazonSQS" => "sqs",
            "TrentService" => "kms",
            other => other,
        };
        return Call {
            service: service.to_owned(),
            operation: operation.to_owned(),
        };
    }
    let service = authorization
        .and_then(|header| header.split("Credential=").nth(1))
        .and_then(|credential| credential.split('/').nth(3))
        .unwrap_or("unknown");
    let operation = String::from_utf8_lossy(body)
        .split('&')
        .find_map(|pair| pair.strip_prefix("Action=").map(str::to_owned))
        .unwrap_or_else(|| "unknown".to_owned());
    Call {
        service: service.to_owned(),
        operation,
    }
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct RuleCount {
    pub rule: String,
    /// Calls that matched the rule since it was set.
    pub calls: u64,
    /// Of those, the calls it acted on.
    pub hits: u64,
}

struct Counted {
    rule: Rule,
    calls: u64,
    hits: u64,
}

/// The rules in force, with their counts.
#[derive(Default, Clone)]
pub struct Faults {
    rules: Arc<Mutex<Vec<Counted>>>,
}

impl Faults {
    pub fn new(rules: Vec<Rule>) -> Faults {
        let faults = Faults::default();
        faults.add(rules);
        faults
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Counted>> {
        // A poisoned lock only means a panic elsewhere; the counts stay usable.
        self.rules
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub fn add(&self, rules: Vec<Rule>) {
        self.lock().extend(rules.into_iter().map(|rule| Counted {
            rule,
            calls: 0,
            hits: 0,
        }));
    }

    pub fn replace(&self, rules: Vec<Rule>) {
        self.lock().clear();
        self.add(rules);
    }

    pub fn counts(&self) -> Vec<RuleCount> {
        self.lock()
            .iter()
            .map(|counted| RuleCount {
                rule: counted.rule.text.clone(),
                calls: counted.calls,
                hits: counted.hits,
            })
            .collect()
    }

    /// Counts the call against every matching rule; the action of the first
    /// rule that acts on it.
    fn decide(&self, call: &Call, body: &[u8]) -> Option<Action> {
        let mut action = None;
        for counted in self.lock().iter_mut() {
            if !counted.rule.matches(call, body) {
                continue;
            }
            counted.calls += 1;
            if action.is_none() && counted.rule.calls.includes(counted.calls) {
                counted.hits += 1;
                action = Some(counted.rule.action.clone());
            }
        }
        action
    }
}

/// An error as the service would answer it: JSON for the JSON protocols,
/// XML for SNS's query protocol.
fn aws_error(
    call: &Call,
    status: StatusCode,
    code: &'static str,
    message: &str,
) -> Response<Full<Bytes>> {
    let (content_type, body) = if call.service == "sns" {
        (
            "text/xml",
            format!(
                "<ErrorResponse xmlns=\"http://sns.amazonaws.com/doc/2010-03-31/\"><Error><Type>{}</Type><Code>{code}</Code><Message>{message}</Message></Error><RequestId>injected-fault</RequestId></ErrorResponse>",
                if status.is_server_error() {
                    "Receiver"
                } else {
                    "Sender"
                }
            ),
        )
    } else {
        (
            "application/x-amz-json-1.0",
            serde_json::json!({"__type": code, "message": message}).to_string(),
        )
    };
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static(content_type),
    );
    response.headers_mut().insert(
        "x-amzn-errortype",
        hyper::header::HeaderValue::from_static(code),
    );
    response
}

/// Why the proxy closes a connection instead of answering.
#[derive(Debug)]
struct Dropped;

impl std::fmt::Display for Dropped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("connection dropped by a fault rule")
    }
}

impl std::error::Error for Dropped {}

struct Proxy {
    faults: Faults,
    upstream: String,
    client: reqwest::Client,
}

/// Starts the proxy in front of `upstream` (the emulator's endpoint); its
/// address.
pub async fn start(faults: Faults, upstream: String, port: u16) -> Result<SocketAddr, String> {
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .map_err(|e| format!("port {port} for the fault proxy: {e} (set HUB_FAULT_PORT)"))?;
    let address = listener.local_addr().map_err(|e| e.to_string())?;
    let proxy = Arc::new(Proxy {
        faults,
        upstream,
        client: reqwest::Client::new(),
    });
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let proxy = proxy.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |request| {
                    let proxy = proxy.clone();
                    async move { proxy.handle(request).await }
                });
                // A dropped connection ends here, as intended.
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    Ok(address)
}

fn text_response(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response
}

impl Proxy {
    async fn handle(&self, request: Request<Incoming>) -> Result<Response<Full<Bytes>>, Dropped> {
        let (parts, body) = request.into_parts();
        let body = match body.collect().await {
            Ok(collected) => collected.to_bytes(),
            Err(_) => return Err(Dropped),
        };
        if parts.uri.path() == ADMIN_PATH {
            return Ok(self.admin(&parts.method, &body));
        }
        let header = |name: &str| parts.headers.get(name).and_then(|v| v.to_str().ok());
        let call = recognise(header("x-amz-target"), header("authorization"), &body);
        let action = self.faults.decide(&call, &body);
        match action {
            None => {}
            Some(Action::Error) => {
                return Ok(aws_error(
                    &call,
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "InternalFailure",
                    "injected fault: internal error",
                ));
            }
            Some(Action::Unavailable) => {
                return Ok(aws_error(
                    &call,
                    StatusCode::SERVICE_UNAVAILABLE,
                    "ServiceUnavailable",
                    "injected fault: service unavailable",
                ));
            }
            Some(Action::Throttle) => {
                return Ok(aws_error(
                    &call,
                    StatusCode::BAD_REQUEST,
                    "ThrottlingException",
                    "injected fault: rate exceeded",
                ));
            }
            Some(Action::Timeout(hold)) => {
                tokio::time::sleep(hold).await;
                return Err(Dropped);
            }
            Some(Action::Drop) => return Err(Dropped),
            Some(Action::Slow(delay)) => tokio::time::sleep(delay).await,
            Some(Action::DropResponse) => {
                let _ = self.forward(&parts, body).await;
                return Err(Dropped);
            }
        }
        self.forward(&parts, body).await
    }

    async fn forward(
        &self,
        parts: &hyper::http::request::Parts,
        body: Bytes,
    ) -> Result<Response<Full<Bytes>>, Dropped> {
        let path = parts
            .uri
            .path_and_query()
            .map(|p| p.as_str())
            .unwrap_or("/");
        let mut request = self
            .client
            .request(parts.method.clone(), format!("{}{path}", self.upstream));
        for (name, value) in &parts.headers {
            if name != hyper::header::HOST && name != hyper::header::CONTENT_LENGTH {
                request = request.header(name, value);
            }
        }
        // The emulator being unreachable looks, to the caller, as it would.
        let answer = request.body(body).send().await.map_err(|_| Dropped)?;
        let mut response = Response::builder().status(answer.status());
        for (name, value) in answer.headers() {
            if name != hyper::header::CONTENT_LENGTH
                && name != hyper::header::TRANSFER_ENCODING
                && name != hyper::header::CONNECTION
            {
                response = response.header(name, value);
            }
        }
        let bytes = answer.bytes().await.map_err(|_| Dropped)?;
        response.body(Full::new(bytes)).map_err(|_| Dropped)
    }

    fn admin(&self, method: &Method, body: &[u8]) -> Response<Full<Bytes>> {
        let rules = || Rule::parse_list(&String::from_utf8_lossy(body));
        let changed = match *method {
            Method::GET => Ok(()),
            Method::PUT => rules().map(|rules| self.faults.replace(rules)),
            Method::POST => rules().map(|rules| self.faults.add(rules)),
            Method::DELETE => {
                self.faults.replace(Vec::new());
                Ok(())
            }
            _ => {
                return text_response(
                    StatusCode::METHOD_NOT_ALLOWED,
                    "GET, PUT, POST or DELETE\n".into(),
                );
            }
        };
        match changed {
            Ok(()) => {
                let mut response = text_response(
                    StatusCode::OK,
                    serde_json::to_string(&self.faults.counts()).unwrap_or_default(),
                );
                response.headers_mut().insert(
                    hyper::header::CONTENT_TYPE,
                    hyper::header::HeaderValue::from_static("application/json"),
                );
                response
            }
            Err(error) => text_response(StatusCode::BAD_REQUEST, format!("{error}\n")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(service: &str, operation: &str) -> Call {
        Call {
            service: service.into(),
            operation: operation.into(),
        }
    }

    #[test]
    fn rules_read_service_operation_filter_calls_and_action() {
        let rule = Rule::parse("sns:PublishBatch~abc-123#2..4=slow:800ms").unwrap();
        assert_eq!(rule.service, "sns");
        assert_eq!(rule.operation, "PublishBatch");
        assert_eq!(rule.filter.as_deref(), Some("abc-123"));
        assert_eq!(
            rule.calls,
            Calls::Range {
                from: 2,
                to: Some(4)
            }
        );
        assert_eq!(rule.action, Action::Slow(Duration::from_millis(800)));
        let every = Rule::parse("dynamodb:*=timeout:2s").unwrap();
        assert_eq!(every.calls, Calls::Every);
        assert_eq!(every.action, Action::Timeout(Duration::from_secs(2)));
        let open = Rule::parse("sqs:ReceiveMessage#3..=drop").unwrap();
        assert_eq!(open.calls, Calls::Range { from: 3, to: None });
        assert_eq!(
            Rule::parse_list("sqs:*#1=error; streams:GetRecords=unavailable\n\n")
                .unwrap()
                .len(),
            2
        );
    }

    #[test]
    fn bad_rules_are_refused_saying_why() {
        for (text, why) in [
            ("sns:Publish", "expected service:Operation"),
            ("sns=error", "expected service:Operation"),
            ("s3:GetObject=error", "unknown service"),
            ("sns:Publish=explode", "unknown action"),
            ("sns:Publish#0=error", "call number"),
            ("sns:Publish#4..2=error", "ends before it starts"),
            ("sns:Publish=slow:fast", "not a duration"),
            ("sns:Publish~=error", "needs the text"),
        ] {
            let error = Rule::parse(text).unwrap_err();
            assert!(error.contains(why), "{text}: {error}");
        }
    }

    #[test]
    fn calls_are_recognised_by_target_or_action_and_scope() {
        assert_eq!(
            recognise(Some("DynamoDB_20120810.TransactWriteItems"), None, b"{}"),
            call("dynamodb", "TransactWriteItems")
        );
        assert_eq!(
            recognise(Some("DynamoDBStreams_20120810.GetRecords"), None, b"{}"),
            call("streams", "GetRecords")
        );
        assert_eq!(
            recognise(Some("AmazonSQS.ReceiveMessage"), None, b"{}"),
            call("sqs", "ReceiveMessage")
        );
        let authorization = "AWS4-HMAC-SHA256 Credential=testing/20261125/eu-west-2/sns/aws4_request, SignedHeaders=host, Signature=0";
        assert_eq!(
            recognise(
                None,
                Some(authorization),
                b"Action=PublishBatch&Version=2010-03-31"
            ),
            call("sns", "PublishBatch")
        );
    }

    #[test]
    fn the_nth_matching_call_is_hit_and_every_match_is_counted() {
        let faults = Faults::new(
            Rule::parse_list("sns:PublishBatch~poison#2=error;sns:*=slow:1ms").unwrap(),
        );
        let publish = call("sns", "PublishBatch");
        assert_eq!(
            faults.decide(&publish, b"x=poison"),
            Some(Action::Slow(Duration::from_millis(1)))
        );
        assert_eq!(
            faults.decide(&publish, b"x=other"),
            Some(Action::Slow(Duration::from_millis(1)))
        );
        assert_eq!(faults.decide(&publish, b"x=poison"), Some(Action::Error));
        assert_eq!(faults.decide(&call("sqs", "SendMessage"), b""), None);
        let counts = faults.counts();
        assert_eq!((counts[0].calls, counts[0].hits), (2, 1));
        assert_eq!((counts[1].calls, counts[1].hits), (3, 2));
        faults.replace(Vec::new());
        assert!(faults.counts().is_empty());
        assert_eq!(faults.decide(&publish, b"x=poison"), None);
    }
}
