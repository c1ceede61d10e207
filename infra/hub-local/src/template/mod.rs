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

mod conditions;
mod resolve;
mod specs;

use conditions::*;
pub use resolve::*;
pub use specs::rate_seconds;
use specs::*;

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
    /// The seconds between runs of each `Type: Schedule` event's
    /// `rate(...)` (crate::schedule).
    pub schedules: Vec<u64>,
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

#[cfg(test)]
mod tests;
