//! What API Gateway does with a Lambda TOKEN authorizer (REST API), so the
//! deployed authorizer function runs unchanged:
//!
//! - a request without the identity header, or with an empty one, is
//!   refused (UNAUTHORIZED) without calling the authorizer;
//! - otherwise the authorizer gets `{"type": "TOKEN", "authorizationToken":
//!   <the whole header value>, "methodArn": ...}`;
//! - an answer whose policy allows `execute-api:Invoke` on the method ARN,
//!   with no statement denying it, lets the request through with the
//!   answer's context (and principalId) in `requestContext.authorizer`;
//!   anything else it answers is ACCESS_DENIED, rendered with that context;
//! - the error "Unauthorized" is UNAUTHORIZED; any other error, an answer
//!   that is not a valid policy, or a timeout is AUTHORIZER_FAILURE.
//!
//! There is no cache: each request calls the authorizer, which is what the
//! template's `ReauthorizeEvery: 0` asks of API Gateway.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::runtime::InvokeError;

/// The TOKEN authorizer's event.
pub fn token_event(authorization: &str, method_arn: &str) -> Value {
    serde_json::json!({
        "type": "TOKEN",
        "authorizationToken": authorization,
        "methodArn": method_arn,
    })
}

/// `arn:aws:execute-api:<region>:<account>:<api id>/<stage>/<METHOD>/<path>`,
/// the path being the one requested, without its leading slash.
pub fn method_arn(
    region: &str,
    account: &str,
    api_id: &str,
    stage: &str,
    method: &str,
    path: &str,
) -> String {
    format!(
        "arn:aws:execute-api:{region}:{account}:{api_id}/{stage}/{method}/{}",
        path.trim_start_matches('/')
    )
}

/// What API Gateway does after the authorizer answered.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// Call the function, with this `requestContext.authorizer`.
    Allow(BTreeMap<String, Value>),
    /// ACCESS_DENIED; the context is for `$context.authorizer.<key>`.
    Deny {
        context: BTreeMap<String, String>,
        explicit: bool,
    },
    /// UNAUTHORIZED: the authorizer failed with the error "Unauthorized".
    Unauthorized,
    /// AUTHORIZER_FAILURE; the detail is for the hub's log only.
    Failure(String),
}

impl Decision {
    /// `$context.error.message` of the gateway response, as API Gateway
    /// words it (None: API Gateway gives no message).
    pub fn message(&self) -> Option<&'static str> {
        match self {
            Decision::Deny { explicit: true, .. } => {
                Some("User is not authorized to access this resource with an explicit deny")
            }
            Decision::Deny { .. } => Some("User is not authorized to access this resource"),
            Decision::Unauthorized => Some("Unauthorized"),
            Decision::Allow(_) | Decision::Failure(_) => None,
        }
    }
}

/// Decides on the authorizer's answer (or failure) for the method ARN.
/// `latency_ms` is the authorizer's run time, which API Gateway passes on
/// as `integrationLatency`.
pub fn decide(answer: Result<&[u8], &InvokeError>, method_arn: &str, latency_ms: u64) -> Decision {
    let answer = match answer {
        Ok(answer) => answer,
        Err(InvokeError::Function(error)) => {
            // The Lambda runtime reports {"errorType", "errorMessage"}.
            let message = serde_json::from_str::<Value>(error)
                .ok()
                .and_then(|e| e["errorMessage"].as_str().map(str::to_owned));
            return if message.as_deref() == Some("Unauthorized") {
                Decision::Unauthorized
            } else {
                Decision::Failure(format!("the authorizer failed: {error}"))
            };
        }
        Err(error) => return Decision::Failure(format!("the authorizer failed: {error}")),
    };
    let answer: Value = match serde_json::from_slice(answer) {
        Ok(answer) => answer,
        Err(error) => {
            return Decision::Failure(format!("the authorizer's answer is not JSON: {error}"));
        }
    };
    match read_answer(&answer, method_arn) {
        Ok((effect, principal, context)) => match effect {
            Effect::Allow => {
                let mut fields: BTreeMap<String, Value> = context
                    .into_iter()
                    .map(|(key, value)| (key, Value::String(value)))
                    .collect();
                fields.insert("principalId".into(), Value::String(principal));
                fields.insert("integrationLatency".into(), Value::from(latency_ms));
                Decision::Allow(fields)
            }
            Effect::Deny | Effect::NotAllowed => {
                let mut context = context;
                context.insert("principalId".into(), principal);
                Decision::Deny {
                    context,
                    explicit: effect == Effect::Deny,
                }
            }
        },
        Err(problem) => Decision::Failure(format!("the authorizer's answer is invalid: {problem}")),
    }
}

#[derive(Debug, PartialEq, Eq)]
enum Effect {
    Allow,
    /// A statement denies the method: it wins over any Allow.
    Deny,
    /// No statement allows it.
    NotAllowed,
}

type Answer = (Effect, String, BTreeMap<String, String>);

/// The effect of the answer's policy on the method, its principalId and its
/// context, each value as the text API Gateway passes on.
fn read_answer(answer: &Value, method_arn: &str) -> Result<Answer, String> {
    let principal = match &answer["principalId"] {
        Value::String(principal) => principal.clone(),
        Value::Null => return Err("no principalId".into()),
        other => other.to_string(),
    };
    let mut context = BTreeMap::new();
    match &answer["context"] {
        Value::Null => {}
        Value::Object(entries) => {
            for (key, value) in entries {
                let text = match value {
                    Value::String(text) => text.clone(),
                    Value::Number(_) | Value::Bool(_) => value.to_string(),
                    Value::Null => continue,
                    // API Gateway refuses nested values in the context.
                    _ => return Err(format!("context.{key} is not a string, number or boolean")),
                };
                context.insert(key.clone(), text);
            }
        }
        _ => return Err("context is not an object".into()),
    }
    let statements = match &answer["policyDocument"]["Statement"] {
        Value::Array(statements) => statements.clone(),
        statement @ Value::Object(_) => vec![statement.clone()],
        _ => return Err("policyDocument.Statement is missing".into()),
    };
    let mut allowed = false;
    for statement in &statements {
        let applies = one_or_many(&statement["Action"])?
            .iter()
            .any(|action| glob(&action.to_ascii_lowercase(), "execute-api:invoke"))
            && one_or_many(&statement["Resource"])?
                .iter()
                .any(|resource| glob(resource, method_arn));
        match statement["Effect"].as_str() {
            Some("Allow") => allowed |= applies,
            Some("Deny") if applies => return Ok((Effect::Deny, principal, context)),
            Some("Deny") => {}
            _ => return Err("a statement's Effect is neither Allow nor Deny".into()),
        }
    }
    let effect = if allowed {
        Effect::Allow
    } else {
        Effect::NotAllowed
    };
    Ok((effect, principal, context))
}

fn one_or_many(value: &Value) -> Result<Vec<String>, String> {
    match value {
        Value::String(one) => Ok(vec![one.clone()]),
        Value::Array(many) => many
            .iter()
            .map(|v| v.as_str().map(str::to_owned).ok_or("not a string".into()))
            .collect(),
        _ => Err("a statement lacks its Action or Resource".into()),
    }
}

/// IAM's wildcard match: `*` any run of characters, `?` any one.
fn glob(pattern: &str, text: &str) -> bool {
    let (pattern, text): (Vec<char>, Vec<char>) =
        (pattern.chars().collect(), text.chars().collect());
    let (mut p, mut t) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        if p < pattern.len() && (pattern[p] == '?' || pattern[p] == text[t]) {
            p += 1;
            t += 1;
        } else if p < pattern.len() && pattern[p] == '*' {
            star = Some((p, t));
            p += 1;
        } else if let Some((star_p, star_t)) = star {
            p = star_p + 1;
            t = star_t + 1;
            star = Some((star_p, star_t + 1));
        } else {
            return false;
        }
    }
    pattern[p..].iter().all(|c| *c == '*')
}

#[cfg(test)]
mod tests {
    use super::*;

    const ARN: &str =
        "arn:aws:execute-api:eu-west-2:123456789012:chhublocal/dev/GET/Subscription/abc";

    fn answer(effect: &str, resource: &str) -> Vec<u8> {
        serde_json::json!({
            "principalId": "demo-subscriber-1",
            "policyDocument": {
                "Version": "2012-10-17",
                "Statement": [{"Action": "execute-api:Invoke", "Effect": effect, "Resource": resource}]
            },
            "context": {"caller": "{\"clientId\":\"demo-subscriber-1\"}", "clientId": "demo-subscriber-1", "n": 3, "b": true}
        })
        .to_string()
        .into_bytes()
    }

    #[test]
    fn the_method_arn_has_the_deployed_shape() {
        assert_eq!(
            method_arn(
                "eu-west-2",
                "123456789012",
                "chhublocal",
                "dev",
                "GET",
                "/Subscription/abc"
            ),
            ARN
        );
        assert_eq!(
            token_event("Bearer x", ARN),
            serde_json::json!({"type": "TOKEN", "authorizationToken": "Bearer x", "methodArn": ARN})
        );
    }

    #[test]
    fn an_allow_for_a_matching_pattern_passes_the_context_on_as_text() {
        let pattern = "arn:aws:execute-api:eu-west-2:123456789012:chhublocal/dev/*/*";
        let Decision::Allow(fields) = decide(Ok(&answer("Allow", pattern)), ARN, 7) else {
            panic!("expected Allow");
        };
        assert_eq!(fields["principalId"], "demo-subscriber-1");
        assert_eq!(fields["clientId"], "demo-subscriber-1");
        assert_eq!(fields["caller"], "{\"clientId\":\"demo-subscriber-1\"}");
        assert_eq!(fields["n"], "3");
        assert_eq!(fields["b"], "true");
        assert_eq!(fields["integrationLatency"], 7);
    }

    #[test]
    fn an_allow_for_another_method_or_stage_is_not_enough() {
        for pattern in [
            "arn:aws:execute-api:eu-west-2:123456789012:chhublocal/dev/POST/*",
            "arn:aws:execute-api:eu-west-2:123456789012:chhublocal/prod/*/*",
            "arn:aws:execute-api:eu-west-2:123456789012:otherapi/dev/*/*",
        ] {
            assert!(
                matches!(
                    decide(Ok(&answer("Allow", pattern)), ARN, 0),
                    Decision::Deny {
                        explicit: false,
                        ..
                    }
                ),
                "{pattern}"
            );
        }
    }

    #[test]
    fn a_deny_is_refused_with_its_context_and_wins_over_an_allow() {
        let Decision::Deny { context, explicit } = decide(Ok(&answer("Deny", "*")), ARN, 0) else {
            panic!("expected Deny");
        };
        assert!(explicit);
        assert_eq!(context["clientId"], "demo-subscriber-1");
        assert_eq!(context["principalId"], "demo-subscriber-1");

        let both = serde_json::json!({
            "principalId": "x",
            "policyDocument": {"Statement": [
                {"Action": "execute-api:*", "Effect": "Allow", "Resource": ["*"]},
                {"Action": ["execute-api:Invoke"], "Effect": "Deny", "Resource": ARN}
            ]}
        });
        assert!(matches!(
            decide(Ok(both.to_string().as_bytes()), ARN, 0),
            Decision::Deny { explicit: true, .. }
        ));
    }

    #[test]
    fn errors_and_unreadable_answers_are_failures_except_unauthorized() {
        let unauthorized =
            InvokeError::Function(r#"{"errorType":"Error","errorMessage":"Unauthorized"}"#.into());
        assert_eq!(decide(Err(&unauthorized), ARN, 0), Decision::Unauthorized);
        let other = InvokeError::Function(r#"{"errorType":"Error","errorMessage":"boom"}"#.into());
        assert!(matches!(decide(Err(&other), ARN, 0), Decision::Failure(_)));
        let timeout = InvokeError::Runtime("timed out".into());
        assert!(matches!(
            decide(Err(&timeout), ARN, 0),
            Decision::Failure(_)
        ));
        for bad in [
            "not json".to_owned(),
            serde_json::json!({"policyDocument": {"Statement": []}}).to_string(),
            serde_json::json!({"principalId": "x"}).to_string(),
            serde_json::json!({"principalId": "x", "policyDocument": {"Statement": [{"Effect": "Maybe", "Action": "*", "Resource": "*"}]}}).to_string(),
            serde_json::json!({"principalId": "x", "policyDocument": {"Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}, "context": {"nested": {"a": 1}}}).to_string(),
        ] {
            assert!(
                matches!(decide(Ok(bad.as_bytes()), ARN, 0), Decision::Failure(_)),
                "{bad}"
            );
        }
    }

    #[test]
    fn wildcards_match_as_iam_does() {
        assert!(glob("*", ""));
        assert!(glob("a*c", "abbbc"));
        assert!(glob("a?c", "abc"));
        assert!(!glob("a?c", "ac"));
        assert!(glob("arn:*/dev/*/*", "arn:x/dev/GET/Subscription/abc"));
        assert!(!glob("arn:*/dev/GET/x", "arn:x/dev/GET/xy"));
    }
}
