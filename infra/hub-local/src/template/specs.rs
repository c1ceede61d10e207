//! The specs read from the template's resources: functions, the API and
//! its gateway responses.

use std::collections::BTreeMap;

use serde_norway::Value;

use super::*;

pub(super) fn function_spec(
    logical_id: String,
    properties: &Value,
    metadata: Option<&Value>,
    globals: Option<&Value>,
) -> Result<FunctionSpec, String> {
    let setting = |key: &str| get(properties, key).or_else(|| globals.and_then(|g| get(g, key)));
    let code_uri =
        text(get(properties, "CodeUri")).ok_or_else(|| format!("{logical_id} has no CodeUri"))?;
    // As SAM's rust-cargolambda build names it: BuildProperties.Binary, else
    // the crate's own binary (its directory's name here).
    let binary = text(
        metadata
            .and_then(|m| get(m, "BuildProperties"))
            .and_then(|b| get(b, "Binary")),
    )
    .unwrap_or_else(|| {
        code_uri
            .trim_end_matches('/')
            .rsplit('/')
            .next()
            .unwrap_or_default()
            .to_owned()
    });
    let mut environment: BTreeMap<String, Value> = BTreeMap::new();
    for source in [globals, Some(properties)].into_iter().flatten() {
        if let Some(variables) = get(source, "Environment")
            .and_then(|e| get(e, "Variables"))
            .and_then(Value::as_mapping)
        {
            for (name, value) in variables {
                if let Some(name) = text(Some(name)) {
                    environment.insert(name, value.clone());
                }
            }
        }
    }
    let logging = setting("LoggingConfig");
    let mut routes = Vec::new();
    let mut streams = Vec::new();
    let mut schedules = Vec::new();
    if let Some(events) = get(properties, "Events").and_then(Value::as_mapping) {
        for event in events.values() {
            let event_properties = get(event, "Properties");
            let property = |key: &str| event_properties.and_then(|p| get(p, key));
            match text(get(event, "Type")).as_deref() {
                Some("Api") => routes.push(Route {
                    method: text(property("Method")).unwrap_or_default().to_ascii_uppercase(),
                    path: text(property("Path")).unwrap_or_default(),
                    auth: match property("Auth").and_then(|a| text(get(a, "Authorizer"))) {
                        None => RouteAuth::Default,
                        Some(name) if name == "NONE" => RouteAuth::None,
                        Some(name) => RouteAuth::Named(name),
                    },
                }),
                Some("DynamoDB") => streams.push(StreamSource {
                    table_logical_id: property("Stream")
                        .and_then(get_att_target)
                        .ok_or_else(|| format!("{logical_id}: a DynamoDB event needs Stream: !GetAtt Table.StreamArn"))?,
                    batch_size: text(property("BatchSize")).and_then(|b| b.parse().ok()).unwrap_or(100),
                    maximum_retry_attempts: text(property("MaximumRetryAttempts"))
                        .and_then(|m| m.parse().ok())
                        .unwrap_or(10),
                    bisect_on_error: text(property("BisectBatchOnFunctionError")).as_deref() == Some("true"),
                    report_batch_item_failures: property("FunctionResponseTypes")
                        .and_then(Value::as_sequence)
                        .is_some_and(|types| types.iter().any(|t| text(Some(t)).as_deref() == Some("ReportBatchItemFailures"))),
                    on_failure_queue: property("DestinationConfig")
                        .and_then(|d| get(d, "OnFailure"))
                        .and_then(|o| get(o, "Destination"))
                        .and_then(get_att_target),
                }),
                Some("Schedule") => {
                    let expression = text(property("Schedule")).unwrap_or_default();
                    schedules.push(rate_seconds(&expression).ok_or_else(
                        || format!("{logical_id}: only rate(...) schedules run locally, not {expression}"),
                    )?);
                }
                _ => {}
            }
        }
    }
    Ok(FunctionSpec {
        binary,
        timeout_seconds: text(setting("Timeout"))
            .and_then(|t| t.parse().ok())
            .unwrap_or(3),
        memory_mb: text(setting("MemorySize"))
            .and_then(|m| m.parse().ok())
            .unwrap_or(128),
        environment: environment.into_iter().collect(),
        log_format: logging.and_then(|l| text(get(l, "LogFormat"))),
        log_level: logging.and_then(|l| get(l, "ApplicationLogLevel")).cloned(),
        routes,
        streams,
        schedules,
        logical_id,
    })
}

pub(super) fn api_spec(
    logical_id: String,
    properties: &Value,
    globals: Option<&Value>,
) -> Result<ApiSpec, String> {
    let setting = |key: &str| get(properties, key).or_else(|| globals.and_then(|g| get(g, key)));
    let mut api = ApiSpec {
        stage_name: setting("StageName").cloned(),
        ..ApiSpec::default()
    };
    if let Some(auth) = setting("Auth") {
        api.default_authorizer = text(get(auth, "DefaultAuthorizer")).filter(|a| a != "NONE");
        for (name, authorizer) in get(auth, "Authorizers")
            .and_then(Value::as_mapping)
            .into_iter()
            .flatten()
        {
            let name = text(Some(name)).ok_or("an authorizer has no name")?;
            let what = |detail: &str| format!("{logical_id}: authorizer {name}: {detail}");
            let payload = text(get(authorizer, "FunctionPayloadType"));
            if payload.as_deref().is_some_and(|p| p != "TOKEN") {
                return Err(what("the local stack emulates TOKEN authorizers only"));
            }
            let function_logical_id = get(authorizer, "FunctionArn")
                .and_then(get_att_target)
                .ok_or_else(|| what("FunctionArn must be !GetAtt <Function>.Arn"))?;
            let identity = get(authorizer, "Identity");
            let header = identity
                .and_then(|i| text(get(i, "Header")))
                .unwrap_or_else(|| "Authorization".into());
            // Caching (ReauthorizeEvery) and ValidationExpression are not
            // emulated: every request reaches the authorizer, which is what
            // ReauthorizeEvery: 0 asks for.
            if identity.is_some_and(|i| get(i, "ValidationExpression").is_some()) {
                eprintln!(
                    "[hub] {}: Identity.ValidationExpression is not checked locally",
                    what("")
                );
            }
            api.authorizers.insert(
                name,
                AuthorizerSpec {
                    function_logical_id,
                    header,
                },
            );
        }
        if let Some(default) = &api.default_authorizer
            && !api.authorizers.contains_key(default)
        {
            return Err(format!(
                "{logical_id}: DefaultAuthorizer {default} is not among its Authorizers"
            ));
        }
    }
    for (kind, response) in setting("GatewayResponses")
        .and_then(Value::as_mapping)
        .into_iter()
        .flatten()
    {
        let kind = text(Some(kind)).ok_or("a gateway response has no type")?;
        let spec = gateway_response_spec(response)
            .map_err(|e| format!("{logical_id}: gateway response {kind}: {e}"))?;
        api.gateway_responses.insert(kind, spec);
    }
    // Deployed, access log lines go to AccessLogSetting.DestinationArn (a
    // log group, which the local stack does not create: the `_` arm of
    // Template::parse); locally they go to stdout. MethodSettings
    // (throttling, execution logs, metrics) change no answer the API gives,
    // so they are not read.
    api.access_log_format = setting("AccessLogSetting")
        .and_then(|s| get(s, "Format"))
        .cloned();
    api.logical_id = Some(logical_id);
    Ok(api)
}

/// One gateway response, in SAM's form (`ResponseParameters: {Headers:
/// {Name: "'value'"}}`) or CloudFormation's
/// (`gatewayresponse.header.Name: "'value'"`).
fn gateway_response_spec(response: &Value) -> Result<GatewayResponseSpec, String> {
    let status = match text(get(response, "StatusCode")) {
        Some(code) => Some(
            code.parse::<u16>()
                .ok()
                .filter(|c| (100..600).contains(c))
                .ok_or_else(|| format!("StatusCode {code} is not an HTTP status"))?,
        ),
        None => None,
    };
    let mut headers = Vec::new();
    let parameters = get(response, "ResponseParameters").and_then(Value::as_mapping);
    let mut add = |name: &str, mapping: &Value| -> Result<(), String> {
        let mapping =
            text(Some(mapping)).ok_or_else(|| format!("header {name}: the value must be text"))?;
        let source = if let Some(quoted) = mapping
            .strip_prefix('\'')
            .and_then(|m| m.strip_suffix('\''))
        {
            HeaderSource::Static(quoted.to_owned())
        } else if let Some(header) = mapping.strip_prefix("method.request.header.") {
            HeaderSource::RequestHeader(header.to_owned())
        } else {
            return Err(format!(
                "header {name}: the local stack supports 'static' values and method.request.header.* only, not {mapping}"
            ));
        };
        headers.push((name.to_owned(), source));
        Ok(())
    };
    for (key, value) in parameters.into_iter().flatten() {
        let key = text(Some(key)).unwrap_or_default();
        if key == "Headers" {
            for (name, mapping) in value.as_mapping().into_iter().flatten() {
                add(&text(Some(name)).unwrap_or_default(), mapping)?;
            }
        } else if let Some(name) = key.strip_prefix("gatewayresponse.header.") {
            add(name, value)?;
        }
        // Paths and QueryStrings would only apply to the method request of
        // an integration; a gateway response has no use for them.
    }
    let templates = get(response, "ResponseTemplates")
        .and_then(Value::as_mapping)
        .into_iter()
        .flatten()
        .filter_map(|(content_type, body)| Some((text(Some(content_type))?, text(Some(body))?)))
        .collect();
    Ok(GatewayResponseSpec {
        status,
        headers,
        templates,
    })
}

/// The seconds between runs of `rate(<n> <unit>)`; None for any other
/// expression (cron expressions are not run locally).
pub fn rate_seconds(expression: &str) -> Option<u64> {
    let inner = expression.trim().strip_prefix("rate(")?.strip_suffix(')')?;
    let (count, unit) = inner.trim().split_once(' ')?;
    let count: u64 = count.parse().ok()?;
    let scale = match unit.trim() {
        "minute" | "minutes" => 60,
        "hour" | "hours" => 3_600,
        "day" | "days" => 86_400,
        _ => return None,
    };
    count.checked_mul(scale).filter(|seconds| *seconds > 0)
}
