//! Reads template.yaml: the resources to create in the emulator, the
//! functions to run with their environment, their API routes, the API's
//! authorizers and gateway responses, and the stream event sources. Nothing
//! here is kept by hand elsewhere.
//!
//! Parameters take their defaults, except those the local stack overrides
//! (as `sam deploy --parameter-overrides` would): values that only the
//! running stack knows, such as the URL its API answers on.
//!
//! Conditions are evaluated once, on those parameter values: a resource
//! whose `Condition` is false is left out, and every `Fn::If` is replaced by
//! the branch it selects (an `AWS::NoValue` branch removes the property or
//! list item), before anything else reads the template. So the rest of the
//! local stack sees the template as CloudFormation would deploy it.

use std::collections::BTreeMap;
use std::path::Path;

use serde_norway::Value;

use crate::yaml::read_yaml;

pub const STACK_NAME: &str = "chhub-local";
pub const REGION: &str = "eu-west-2";
pub const ACCOUNT_ID: &str = "123456789012";
/// The local REST API's id: ten lower-case letters and digits, like API
/// Gateway's, so that method ARNs have the deployed shape.
pub const API_ID: &str = "chhublocal";

#[derive(Debug)]
pub struct Template {
    pub parameters: BTreeMap<String, String>,
    pub kms_keys: Vec<KmsKeySpec>,
    pub kms_aliases: Vec<KmsAliasSpec>,
    pub tables: Vec<TableSpec>,
    pub topics: Vec<NamedSpec>,
    pub queues: Vec<NamedSpec>,
    pub functions: Vec<FunctionSpec>,
    pub api: ApiSpec,
}

#[derive(Debug)]
pub struct TableSpec {
    pub logical_id: String,
    pub properties: Value,
}

#[derive(Debug)]
pub struct NamedSpec {
    pub logical_id: String,
    /// The resource's name property, unresolved (it may use !Sub).
    pub name: Option<Value>,
}

#[derive(Debug)]
pub struct KmsKeySpec {
    pub logical_id: String,
    pub properties: Value,
}

#[derive(Debug)]
pub struct KmsAliasSpec {
    pub logical_id: String,
    pub name: Value,
    pub target_key: Value,
}

/// Which authorizer guards a route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouteAuth {
    /// The API's DefaultAuthorizer, if it has one.
    Default,
    /// `Auth: {Authorizer: NONE}`: open.
    None,
    /// `Auth: {Authorizer: Name}`.
    Named(String),
}

#[derive(Debug, Clone)]
pub struct Route {
    pub method: String,
    pub path: String,
    pub auth: RouteAuth,
}

#[derive(Debug, Clone)]
pub struct StreamSource {
    pub table_logical_id: String,
    pub batch_size: usize,
    pub maximum_retry_attempts: u32,
    pub bisect_on_error: bool,
    pub report_batch_item_failures: bool,
    pub on_failure_queue: Option<String>,
}

#[derive(Debug)]
pub struct FunctionSpec {
    pub logical_id: String,
    /// The binary the function runs: Metadata.BuildProperties.Binary, else
    /// the last part of CodeUri (the crate's one binary).
    pub binary: String,
    pub timeout_seconds: u64,
    pub memory_mb: u64,
    pub environment: Vec<(String, Value)>,
    pub log_format: Option<String>,
    pub log_level: Option<Value>,
    pub routes: Vec<Route>,
    pub streams: Vec<StreamSource>,
}

/// The one REST API the local stack serves (AWS::Serverless::Api).
#[derive(Debug, Default)]
pub struct ApiSpec {
    pub logical_id: Option<String>,
    /// StageName, unresolved.
    pub stage_name: Option<Value>,
    pub default_authorizer: Option<String>,
    pub authorizers: BTreeMap<String, AuthorizerSpec>,
    pub gateway_responses: BTreeMap<String, GatewayResponseSpec>,
    /// AccessLogSetting.Format, unresolved: the local API prints one line
    /// in it per request.
    pub access_log_format: Option<Value>,
}

/// A Lambda TOKEN authorizer (SAM `Auth.Authorizers.<name>`).
#[derive(Debug, Clone)]
pub struct AuthorizerSpec {
    pub function_logical_id: String,
    /// The request header whose whole value is the authorizationToken.
    pub header: String,
}

/// A gateway response (SAM `GatewayResponses.<TYPE>`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GatewayResponseSpec {
    pub status: Option<u16>,
    pub headers: Vec<(String, HeaderSource)>,
    /// Body templates by content type.
    pub templates: BTreeMap<String, String>,
}

/// Where a gateway response header's value comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeaderSource {
    /// `"'text'"`: the text.
    Static(String),
    /// `method.request.header.<name>`: the request's header.
    RequestHeader(String),
}

fn get<'a>(value: &'a Value, key: &str) -> Option<&'a Value> {
    value.as_mapping()?.get(key)
}

fn text(value: Option<&Value>) -> Option<String> {
    match value? {
        Value::String(text) => Some(text.clone()),
        Value::Number(number) => Some(number.to_string()),
        Value::Bool(flag) => Some(flag.to_string()),
        _ => None,
    }
}

/// An intrinsic function call, in its long form (`{Ref: X}`, `{Fn::Join:
/// ...}`, and `{Condition: X}` inside condition functions; [`read_yaml`]
/// has turned every short form into it). Returns its short name and
/// argument.
fn intrinsic(value: &Value) -> Option<(String, &Value)> {
    match value {
        Value::Mapping(mapping) if mapping.len() == 1 => {
            let (key, argument) = mapping.iter().next()?;
            let key = key.as_str()?;
            let name = match key {
                "Ref" | "Condition" => key,
                _ => key.strip_prefix("Fn::")?,
            };
            Some((name.to_owned(), argument))
        }
        _ => None,
    }
}

/// The logical id a `!GetAtt X.Attr` or `[X, Attr]` names.
fn get_att_target(value: &Value) -> Option<String> {
    let (name, inner) = intrinsic(value)?;
    if name != "GetAtt" {
        return None;
    }
    match inner {
        Value::String(path) => path.split('.').next().map(str::to_owned),
        Value::Sequence(parts) => text(parts.first()),
        _ => None,
    }
}

impl Template {
    /// Reads the template with `overrides` in place of those parameters'
    /// defaults.
    pub fn load(path: &Path, overrides: &BTreeMap<String, String>) -> Result<Self, String> {
        let source = std::fs::read_to_string(path)
            .map_err(|e| format!("reading {}: {e}", path.display()))?;
        Template::parse_with(&source, overrides).map_err(|e| format!("{}: {e}", path.display()))
    }

    /// Parses the template with every parameter at its default: what the
    /// tests read; `run` always has overrides.
    pub fn parse(source: &str) -> Result<Self, String> {
        Template::parse_with(source, &BTreeMap::new())
    }

    /// Parses the template with `overrides` in place of those parameters'
    /// defaults, before anything (conditions included) reads them.
    pub fn parse_with(source: &str, overrides: &BTreeMap<String, String>) -> Result<Self, String> {
        let document = read_yaml(source)?;
        let declared = get(&document, "Parameters").and_then(Value::as_mapping);
        let mut parameters: BTreeMap<String, String> = declared
            .map(|parameters| {
                parameters
                    .iter()
                    .filter_map(|(name, spec)| {
                        Some((text(Some(name))?, text(get(spec, "Default"))?))
                    })
                    .collect()
            })
            .unwrap_or_default();
        for (name, value) in overrides {
            // An override of a parameter the template no longer declares
            // would silently stop applying: the stack would run, but not
            // as the local stack means it to.
            if !declared.is_some_and(|d| d.keys().any(|k| k.as_str() == Some(name))) {
                return Err(format!(
                    "the local stack sets parameter {name}, which the template does not declare"
                ));
            }
            // AllowedPattern and AllowedValues are not checked, for defaults
            // nor overrides: the local values may differ on purpose (plain
            // http on loopback where AWS would have https).
            parameters.insert(name.clone(), value.clone());
        }
        let conditions = evaluate_conditions(&document, &parameters)?;
        let select = |value: Option<&Value>| -> Result<Option<Value>, String> {
            match value {
                Some(value) => apply_conditions(value, &conditions),
                None => Ok(None),
            }
        };
        let globals = select(get(&document, "Globals"))?;
        let function_globals = globals.as_ref().and_then(|g| get(g, "Function"));
        let api_globals = globals.as_ref().and_then(|g| get(g, "Api"));
        let resources = get(&document, "Resources")
            .and_then(Value::as_mapping)
            .ok_or("the template has no Resources")?;

        let mut template = Template {
            parameters,
            kms_keys: Vec::new(),
            kms_aliases: Vec::new(),
            tables: Vec::new(),
            topics: Vec::new(),
            queues: Vec::new(),
            functions: Vec::new(),
            api: ApiSpec::default(),
        };
        for (logical_id, resource) in resources {
            let logical_id = text(Some(logical_id)).ok_or("a resource has no logical id")?;
            if let Some(condition) = text(get(resource, "Condition")) {
                let holds = conditions
                    .get(&condition)
                    .ok_or_else(|| format!("{logical_id}: no condition {condition}"))?;
                if !holds {
                    continue;
                }
            }
            let kind = text(get(resource, "Type")).unwrap_or_default();
            let properties = select(get(resource, "Properties"))?.unwrap_or(Value::Null);
            match kind.as_str() {
                "AWS::KMS::Key" => template.kms_keys.push(KmsKeySpec {
                    logical_id,
                    properties,
                }),
                "AWS::KMS::Alias" => template.kms_aliases.push(KmsAliasSpec {
                    name: get(&properties, "AliasName")
                        .cloned()
                        .ok_or_else(|| format!("{logical_id} has no AliasName"))?,
                    target_key: get(&properties, "TargetKeyId")
                        .cloned()
                        .ok_or_else(|| format!("{logical_id} has no TargetKeyId"))?,
                    logical_id,
                }),
                "AWS::DynamoDB::Table" => template.tables.push(TableSpec {
                    logical_id,
                    properties,
                }),
                "AWS::SNS::Topic" => template.topics.push(NamedSpec {
                    name: get(&properties, "TopicName").cloned(),
                    logical_id,
                }),
                "AWS::SQS::Queue" => template.queues.push(NamedSpec {
                    name: get(&properties, "QueueName").cloned(),
                    logical_id,
                }),
                "AWS::Serverless::Function" => {
                    template.functions.push(function_spec(
                        logical_id,
                        &properties,
                        get(resource, "Metadata"),
                        function_globals,
                    )?);
                }
                "AWS::Serverless::Api" => {
                    if let Some(other) = &template.api.logical_id {
                        return Err(format!(
                            "the local stack serves one API, and the template has {other} and {logical_id}"
                        ));
                    }
                    template.api = api_spec(logical_id, &properties, api_globals)?;
                }
                // Access policies (AWS::SNS::TopicPolicy, AWS::SQS::QueuePolicy,
                // IAM) restrict who may call what. Locally every process uses
                // the emulator's one set of credentials and moto does not
                // evaluate resource policies, so they would change nothing;
                // cfn-lint checks them. Other types (AWS::Logs::LogGroup, whose
                // lines the local stack prints instead) have no local part.
                _ => {}
            }
        }
        Ok(template)
    }
}

/// Every condition of the template, evaluated on the parameters' values.
fn evaluate_conditions(
    document: &Value,
    parameters: &BTreeMap<String, String>,
) -> Result<BTreeMap<String, bool>, String> {
    let Some(definitions) = get(document, "Conditions").and_then(Value::as_mapping) else {
        return Ok(BTreeMap::new());
    };
    let definitions: BTreeMap<String, &Value> = definitions
        .iter()
        .filter_map(|(name, definition)| Some((text(Some(name))?, definition)))
        .collect();
    let resolver = Resolved {
        parameters: parameters.clone(),
        ..Resolved::default()
    };
    let mut values = BTreeMap::new();
    for name in definitions.keys() {
        let value = condition(name, &definitions, &resolver, &mut values, 0)?;
        values.insert(name.clone(), value);
    }
    Ok(values)
}

fn condition(
    name: &str,
    definitions: &BTreeMap<String, &Value>,
    resolver: &Resolved,
    values: &mut BTreeMap<String, bool>,
    depth: usize,
) -> Result<bool, String> {
    if let Some(value) = values.get(name) {
        return Ok(*value);
    }
    // Conditions may name each other; a cycle would never end.
    if depth > definitions.len() {
        return Err(format!("condition {name} refers to itself"));
    }
    let definition = definitions
        .get(name)
        .ok_or_else(|| format!("no condition {name}"))?;
    let value = truth(definition, definitions, resolver, values, depth + 1)
        .map_err(|e| format!("condition {name}: {e}"))?;
    values.insert(name.to_owned(), value);
    Ok(value)
}

fn truth(
    expression: &Value,
    definitions: &BTreeMap<String, &Value>,
    resolver: &Resolved,
    values: &mut BTreeMap<String, bool>,
    depth: usize,
) -> Result<bool, String> {
    let (name, argument) =
        intrinsic(expression).ok_or_else(|| format!("not a condition function: {expression:?}"))?;
    let operands = || {
        argument
            .as_sequence()
            .ok_or_else(|| format!("!{name} takes a list"))
    };
    match name.as_str() {
        "Equals" => match operands()?.as_slice() {
            [left, right] => Ok(resolver.resolve(left)? == resolver.resolve(right)?),
            _ => Err("!Equals takes two values".into()),
        },
        "Not" => match operands()?.as_slice() {
            [inner] => Ok(!truth(inner, definitions, resolver, values, depth)?),
            _ => Err("!Not takes one condition".into()),
        },
        "And" | "Or" => {
            let mut results = Vec::new();
            for operand in operands()? {
                results.push(truth(operand, definitions, resolver, values, depth)?);
            }
            Ok(if name == "And" {
                results.iter().all(|r| *r)
            } else {
                results.iter().any(|r| *r)
            })
        }
        "Condition" => {
            let other = text(Some(argument)).ok_or("!Condition takes a name")?;
            condition(&other, definitions, resolver, values, depth)
        }
        other => Err(format!("!{other} is not a condition function")),
    }
}

/// The value with every `Fn::If` replaced by its selected branch; None when
/// the value is `AWS::NoValue`, which removes it from its mapping or list.
fn apply_conditions(
    value: &Value,
    conditions: &BTreeMap<String, bool>,
) -> Result<Option<Value>, String> {
    if let Some((name, argument)) = intrinsic(value) {
        match name.as_str() {
            "If" => {
                let [condition, when_true, when_false] = argument
                    .as_sequence()
                    .map(Vec::as_slice)
                    .unwrap_or_default()
                else {
                    return Err("!If takes [condition, value if true, value if false]".into());
                };
                let condition = text(Some(condition)).ok_or("!If names a condition")?;
                let holds = conditions
                    .get(&condition)
                    .ok_or_else(|| format!("!If: no condition {condition}"))?;
                let chosen = if *holds { when_true } else { when_false };
                return apply_conditions(chosen, conditions);
            }
            "Ref" if argument.as_str() == Some("AWS::NoValue") => return Ok(None),
            _ => {}
        }
    }
    Ok(Some(match value {
        Value::Mapping(mapping) => {
            let mut kept = serde_norway::Mapping::new();
            for (key, inner) in mapping {
                if let Some(inner) = apply_conditions(inner, conditions)? {
                    kept.insert(key.clone(), inner);
                }
            }
            Value::Mapping(kept)
        }
        Value::Sequence(items) => {
            let mut kept = Vec::new();
            for item in items {
                if let Some(item) = apply_conditions(item, conditions)? {
                    kept.push(item);
                }
            }
            Value::Sequence(kept)
        }
        scalar => scalar.clone(),
    }))
}

fn function_spec(
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
        logical_id,
    })
}

fn api_spec(
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

/// What `!Ref` and `!GetAtt` resolve to once the resources exist.
#[derive(Debug, Default)]
pub struct Resolved {
    pub parameters: BTreeMap<String, String>,
    pub refs: BTreeMap<String, String>,
    pub attributes: BTreeMap<(String, String), String>,
}

impl Resolved {
    fn pseudo(&self, name: &str) -> Option<String> {
        match name {
            "AWS::Region" => Some(REGION.into()),
            "AWS::AccountId" => Some(ACCOUNT_ID.into()),
            "AWS::StackName" => Some(STACK_NAME.into()),
            "AWS::StackId" => Some(format!(
                "arn:aws:cloudformation:{REGION}:{ACCOUNT_ID}:stack/{STACK_NAME}/00000000-0000-0000-0000-000000000000"
            )),
            "AWS::Partition" => Some("aws".into()),
            "AWS::URLSuffix" => Some("amazonaws.com".into()),
            _ => None,
        }
    }

    fn reference(&self, name: &str) -> Result<String, String> {
        self.parameters
            .get(name)
            .or_else(|| self.refs.get(name))
            .cloned()
            .or_else(|| self.pseudo(name))
            .ok_or_else(|| format!("!Ref {name}: no such parameter or resource"))
    }

    fn attribute(&self, path: &str) -> Result<String, String> {
        let (id, attribute) = path
            .split_once('.')
            .ok_or_else(|| format!("!GetAtt {path}: expected Resource.Attribute"))?;
        self.attributes
            .get(&(id.to_owned(), attribute.to_owned()))
            .cloned()
            .ok_or_else(|| format!("!GetAtt {path}: not known locally"))
    }

    fn substitute(
        &self,
        pattern: &str,
        variables: &BTreeMap<String, String>,
    ) -> Result<String, String> {
        let mut out = String::new();
        let mut rest = pattern;
        while let Some(start) = rest.find("${") {
            out.push_str(&rest[..start]);
            let end = rest[start..]
                .find('}')
                .ok_or_else(|| format!("!Sub {pattern}: unclosed ${{"))?;
            let name = &rest[start + 2..start + end];
            let value = if let Some(literal) = name.strip_prefix('!') {
                // ${!Name} is the literal text ${Name}.
                format!("${{{literal}}}")
            } else if let Some(value) = variables.get(name) {
                value.clone()
            } else if name.contains('.') && !name.starts_with("AWS::") {
                self.attribute(name)?
            } else {
                self.reference(name)?
            };
            out.push_str(&value);
            rest = &rest[start + end + 1..];
        }
        out.push_str(rest);
        Ok(out)
    }

    /// Resolves a template value to text: a scalar, or one of the
    /// intrinsics the local stack knows (!Ref, !Sub, !GetAtt, !Join,
    /// !Select; !If and conditions were applied when the template was read).
    pub fn resolve(&self, value: &Value) -> Result<String, String> {
        if let Value::String(_) | Value::Number(_) | Value::Bool(_) = value {
            return text(Some(value)).ok_or_else(|| "bad scalar".into());
        }
        let (name, argument) =
            intrinsic(value).ok_or_else(|| format!("cannot resolve {value:?}"))?;
        match (name.as_str(), argument) {
            ("Ref", Value::String(name)) => self.reference(name),
            ("Sub", Value::String(pattern)) => self.substitute(pattern, &BTreeMap::new()),
            ("Sub", Value::Sequence(parts)) => {
                let [Value::String(pattern), variables] = parts.as_slice() else {
                    return Err("!Sub takes a pattern, or [pattern, {variables}]".into());
                };
                let mut resolved = BTreeMap::new();
                for (key, inner) in variables.as_mapping().into_iter().flatten() {
                    let key = text(Some(key)).ok_or("a !Sub variable has no name")?;
                    resolved.insert(key, self.resolve(inner)?);
                }
                self.substitute(pattern, &resolved)
            }
            ("GetAtt", Value::String(path)) => self.attribute(path),
            ("GetAtt", Value::Sequence(parts)) => {
                let parts: Vec<String> = parts.iter().filter_map(|p| text(Some(p))).collect();
                self.attribute(&parts.join("."))
            }
            ("Join", Value::Sequence(parts)) => {
                let [separator, Value::Sequence(items)] = parts.as_slice() else {
                    return Err("!Join takes [separator, [values]]".into());
                };
                let separator = text(Some(separator)).ok_or("!Join: bad separator")?;
                let items = items
                    .iter()
                    .map(|item| self.resolve(item))
                    .collect::<Result<Vec<_>, _>>()?;
                Ok(items.join(&separator))
            }
            ("Select", Value::Sequence(parts)) => {
                let [index, Value::Sequence(items)] = parts.as_slice() else {
                    return Err("!Select takes [index, [values]]".into());
                };
                let index: usize = self
                    .resolve(index)?
                    .parse()
                    .map_err(|_| "!Select: the index is not a number")?;
                let item = items.get(index).ok_or("!Select: index out of range")?;
                self.resolve(item)
            }
            (other, _) => Err(format!("the local stack does not resolve !{other} here")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEMPLATE: &str = r#"
Parameters:
  Stage:
    Type: String
    Default: dev
  UseCmk:
    Type: String
    Default: "false"
Conditions:
  IsDev: !Equals [!Ref Stage, dev]
  IsProd: !Not [!Condition IsDev]
  WithCmk: !And [!Equals ["true", !Ref UseCmk], !Condition IsDev]
  Either:
    Fn::Or:
      - Condition: IsProd
      - !Equals [!Ref "AWS::Region", eu-west-2]
Globals:
  Function:
    Timeout: 10
    Environment:
      Variables:
        STAGE: !Ref Stage
Resources:
  HubApi:
    Type: AWS::Serverless::Api
    Properties:
      StageName: !Ref Stage
      AccessLogSetting:
        DestinationArn: !GetAtt ApiAccessLogs.Arn
        Format: '{"requestId":"$context.requestId","status":"$context.status"}'
      MethodSettings:
        - ResourcePath: "/*"
          HttpMethod: "*"
          ThrottlingBurstLimit: 10
      Auth:
        DefaultAuthorizer: HubTokenAuthorizer
        Authorizers:
          HubTokenAuthorizer:
            FunctionArn: !GetAtt AuthorizerFunction.Arn
            Identity:
              Header: Authorization
              ReauthorizeEvery: 0
      GatewayResponses:
        UNAUTHORIZED:
          StatusCode: 401
          ResponseParameters:
            Headers:
              Content-Type: "'application/fhir+json'"
              X-Request: method.request.header.x-request
          ResponseTemplates:
            application/json: '{"code":"$context.authorizer.code"}'
  ApiAccessLogs:
    Type: AWS::Logs::LogGroup
    Properties:
      RetentionInDays: 30
  HubSigningKey:
    Type: AWS::KMS::Key
    Properties:
      KeySpec: ECC_NIST_P256
      KeyUsage: SIGN_VERIFY
  HubSigningKeyAlias:
    Type: AWS::KMS::Alias
    Properties:
      AliasName: !Sub "alias/chhub-${Stage}-signing"
      TargetKeyId: !Ref HubSigningKey
  ProdOnlyTable:
    Type: AWS::DynamoDB::Table
    Condition: IsProd
    Properties: {}
  Table:
    Type: AWS::DynamoDB::Table
    Properties:
      SSESpecification: !If
        - WithCmk
        - {SSEEnabled: true, SSEType: KMS, KMSMasterKeyId: !Ref HubDataKey}
        - !Ref AWS::NoValue
      TimeToLiveSpecification: {AttributeName: expiresAt, Enabled: true}
  TopicPolicy:
    Type: AWS::SNS::TopicPolicy
    Properties: {}
  TokenFunction:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: functions/token
      Environment:
        Variables:
          KEY: !If [IsDev, !Ref HubSigningKeyAlias, !Ref AWS::NoValue]
          GONE: !If [IsProd, x, !Ref AWS::NoValue]
          JOINED: !Join [",", [a, !Ref Stage, !If [IsProd, c, !Ref AWS::NoValue]]]
          PICKED: !Select [1, [x, !Sub ["${Name}-y", {Name: !Ref Stage}]]]
          EITHER: !If [Either, yes, no]
      Events:
        Token:
          Type: Api
          Properties:
            RestApiId: !Ref HubApi
            Path: /oauth2/token
            Method: post
            Auth:
              Authorizer: NONE
  AuthorizerFunction:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: functions/authorizer
  ReadFunction:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: functions/read
      Events:
        Read:
          Type: Api
          Properties:
            Path: /things/{id}
            Method: get
"#;

    fn environment(template: &Template, function: &str) -> BTreeMap<String, Value> {
        template
            .functions
            .iter()
            .find(|f| f.logical_id == function)
            .unwrap()
            .environment
            .iter()
            .cloned()
            .collect()
    }

    #[test]
    fn conditions_select_resources_and_branches() {
        let template = Template::parse(TEMPLATE).unwrap();
        assert_eq!(
            template
                .tables
                .iter()
                .map(|t| t.logical_id.as_str())
                .collect::<Vec<_>>(),
            ["Table"],
            "the prod-only table is left out"
        );
        let table = &template.tables[0].properties;
        assert!(
            get(table, "SSESpecification").is_none(),
            "NoValue removes it"
        );
        assert!(get(table, "TimeToLiveSpecification").is_some());

        let mut resolved = Resolved {
            parameters: template.parameters.clone(),
            ..Resolved::default()
        };
        resolved.refs.insert(
            "HubSigningKeyAlias".into(),
            "alias/chhub-dev-signing".into(),
        );
        let environment = environment(&template, "TokenFunction");
        assert!(!environment.contains_key("GONE"));
        let value = |name: &str| resolved.resolve(&environment[name]).unwrap();
        assert_eq!(value("KEY"), "alias/chhub-dev-signing");
        assert_eq!(value("STAGE"), "dev");
        assert_eq!(value("JOINED"), "a,dev");
        assert_eq!(value("PICKED"), "dev-y");
        assert_eq!(value("EITHER"), "yes");
    }

    #[test]
    fn kms_keys_aliases_and_the_api_are_read() {
        let template = Template::parse(TEMPLATE).unwrap();
        assert_eq!(template.kms_keys[0].logical_id, "HubSigningKey");
        assert_eq!(
            get(&template.kms_keys[0].properties, "KeySpec").and_then(Value::as_str),
            Some("ECC_NIST_P256")
        );
        let resolved = Resolved {
            parameters: template.parameters.clone(),
            ..Resolved::default()
        };
        assert_eq!(
            resolved.resolve(&template.kms_aliases[0].name).unwrap(),
            "alias/chhub-dev-signing"
        );

        let api = &template.api;
        assert_eq!(api.logical_id.as_deref(), Some("HubApi"));
        assert_eq!(
            api.default_authorizer.as_deref(),
            Some("HubTokenAuthorizer")
        );
        let authorizer = &api.authorizers["HubTokenAuthorizer"];
        assert_eq!(authorizer.function_logical_id, "AuthorizerFunction");
        assert_eq!(authorizer.header, "Authorization");
        let unauthorized = &api.gateway_responses["UNAUTHORIZED"];
        assert_eq!(unauthorized.status, Some(401));
        assert_eq!(
            unauthorized.headers,
            [
                (
                    "Content-Type".to_owned(),
                    HeaderSource::Static("application/fhir+json".into())
                ),
                (
                    "X-Request".to_owned(),
                    HeaderSource::RequestHeader("x-request".into())
                ),
            ]
        );
        assert_eq!(
            unauthorized.templates["application/json"],
            r#"{"code":"$context.authorizer.code"}"#
        );

        let route = |function: &str| {
            template
                .functions
                .iter()
                .find(|f| f.logical_id == function)
                .unwrap()
                .routes[0]
                .clone()
        };
        assert_eq!(
            resolved
                .resolve(api.access_log_format.as_ref().unwrap())
                .unwrap(),
            r#"{"requestId":"$context.requestId","status":"$context.status"}"#
        );
        assert_eq!(route("TokenFunction").auth, RouteAuth::None);
        assert_eq!(route("ReadFunction").auth, RouteAuth::Default);
    }

    #[test]
    fn a_condition_cycle_or_unknown_condition_is_an_error() {
        let cycle = "Conditions:\n  A: !Condition B\n  B: !Not [!Condition A]\nResources: {}\n";
        assert!(Template::parse(cycle).is_err());
        let unknown = "Resources:\n  T:\n    Type: AWS::DynamoDB::Table\n    Condition: Nope\n";
        assert!(Template::parse(unknown).is_err());
    }

    #[test]
    fn the_project_template_reads() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../template.yaml");
        let template = Template::load(&path, &BTreeMap::new()).unwrap();
        assert!(!template.functions.is_empty());
    }

    #[test]
    fn overrides_replace_defaults_before_conditions_are_evaluated() {
        let overrides = BTreeMap::from([("Stage".to_owned(), "prod".to_owned())]);
        let template = Template::parse_with(TEMPLATE, &overrides).unwrap();
        assert_eq!(template.parameters["Stage"], "prod");
        assert_eq!(template.parameters["UseCmk"], "false", "the default");
        assert!(
            template
                .tables
                .iter()
                .any(|t| t.logical_id == "ProdOnlyTable"),
            "IsProd holds"
        );
        let environment = environment(&template, "TokenFunction");
        assert!(!environment.contains_key("KEY"), "IsDev does not");
        assert!(environment.contains_key("GONE"));

        let unknown = BTreeMap::from([("Nope".to_owned(), "x".to_owned())]);
        let error = Template::parse_with(TEMPLATE, &unknown).unwrap_err();
        assert!(error.contains("Nope"), "{error}");
    }
}
