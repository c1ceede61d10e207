//! Reads template.yaml: the resources to create in the emulator, the
//! functions to run with their environment, their API routes and their
//! stream event sources. Nothing here is kept by hand elsewhere.

use std::collections::BTreeMap;
use std::path::Path;

use serde_norway::Value;

pub const STACK_NAME: &str = "chhub-local";
pub const REGION: &str = "eu-west-2";
pub const ACCOUNT_ID: &str = "123456789012";

#[derive(Debug)]
pub struct Template {
    pub parameters: BTreeMap<String, String>,
    pub tables: Vec<TableSpec>,
    pub topics: Vec<NamedSpec>,
    pub queues: Vec<NamedSpec>,
    pub functions: Vec<FunctionSpec>,
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

#[derive(Debug, Clone)]
pub struct Route {
    pub method: String,
    pub path: String,
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
    /// The binary the function's crate builds (the last part of CodeUri).
    pub binary: String,
    pub timeout_seconds: u64,
    pub memory_mb: u64,
    pub environment: Vec<(String, Value)>,
    pub log_format: Option<String>,
    pub log_level: Option<Value>,
    pub routes: Vec<Route>,
    pub streams: Vec<StreamSource>,
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

/// The logical id a `!GetAtt X.Attr` or `[X, Attr]` names.
fn get_att_target(value: &Value) -> Option<String> {
    let inner = match value {
        Value::Tagged(tagged) => &tagged.value,
        other => get(other, "Fn::GetAtt")?,
    };
    match inner {
        Value::String(path) => path.split('.').next().map(str::to_owned),
        Value::Sequence(parts) => text(parts.first()),
        _ => None,
    }
}

impl Template {
    pub fn load(path: &Path) -> Result<Self, String> {
        let source = std::fs::read_to_string(path)
            .map_err(|e| format!("reading {}: {e}", path.display()))?;
        let document: Value = serde_norway::from_str(&source)
            .map_err(|e| format!("parsing {}: {e}", path.display()))?;
        let parameters = get(&document, "Parameters")
            .and_then(Value::as_mapping)
            .map(|parameters| {
                parameters
                    .iter()
                    .filter_map(|(name, spec)| {
                        Some((text(Some(name))?, text(get(spec, "Default"))?))
                    })
                    .collect()
            })
            .unwrap_or_default();
        let globals = get(&document, "Globals").and_then(|g| get(g, "Function"));
        let resources = get(&document, "Resources")
            .and_then(Value::as_mapping)
            .ok_or("the template has no Resources")?;

        let mut template = Template {
            parameters,
            tables: Vec::new(),
            topics: Vec::new(),
            queues: Vec::new(),
            functions: Vec::new(),
        };
        for (logical_id, resource) in resources {
            let logical_id = text(Some(logical_id)).ok_or("a resource has no logical id")?;
            let kind = text(get(resource, "Type")).unwrap_or_default();
            let properties = get(resource, "Properties").cloned().unwrap_or(Value::Null);
            match kind.as_str() {
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
                    template
                        .functions
                        .push(function_spec(logical_id, &properties, globals)?);
                }
                _ => {}
            }
        }
        Ok(template)
    }
}

fn function_spec(
    logical_id: String,
    properties: &Value,
    globals: Option<&Value>,
) -> Result<FunctionSpec, String> {
    let setting = |key: &str| get(properties, key).or_else(|| globals.and_then(|g| get(g, key)));
    let code_uri =
        text(get(properties, "CodeUri")).ok_or_else(|| format!("{logical_id} has no CodeUri"))?;
    let binary = code_uri
        .trim_end_matches('/')
        .rsplit('/')
        .next()
        .unwrap_or_default()
        .to_owned();
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

    fn substitute(&self, pattern: &str) -> Result<String, String> {
        let mut out = String::new();
        let mut rest = pattern;
        while let Some(start) = rest.find("${") {
            out.push_str(&rest[..start]);
            let end = rest[start..]
                .find('}')
                .ok_or_else(|| format!("!Sub {pattern}: unclosed ${{"))?;
            let name = &rest[start + 2..start + end];
            let value = if name.contains('.') && !name.starts_with("AWS::") {
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
    /// intrinsics this template uses (!Ref, !Sub, !GetAtt).
    pub fn resolve(&self, value: &Value) -> Result<String, String> {
        match value {
            Value::String(_) | Value::Number(_) | Value::Bool(_) => {
                text(Some(value)).ok_or_else(|| "bad scalar".into())
            }
            Value::Tagged(tagged) => {
                let tag = tagged.tag.to_string();
                match (tag.trim_start_matches('!'), &tagged.value) {
                    ("Ref", Value::String(name)) => self.reference(name),
                    ("Sub", Value::String(pattern)) => self.substitute(pattern),
                    ("GetAtt", Value::String(path)) => self.attribute(path),
                    ("GetAtt", Value::Sequence(parts)) => {
                        let parts: Vec<String> =
                            parts.iter().filter_map(|p| text(Some(p))).collect();
                        self.attribute(&parts.join("."))
                    }
                    (other, _) => Err(format!("the local stack does not resolve !{other}")),
                }
            }
            Value::Mapping(mapping) if mapping.len() == 1 => {
                let (key, inner) = mapping.iter().next().ok_or("empty mapping")?;
                let tag = match text(Some(key)).as_deref() {
                    Some("Ref") => "Ref",
                    Some("Fn::Sub") => "Sub",
                    Some("Fn::GetAtt") => "GetAtt",
                    _ => return Err(format!("cannot resolve {value:?}")),
                };
                self.resolve(&Value::Tagged(Box::new(serde_norway::value::TaggedValue {
                    tag: serde_norway::value::Tag::new(tag),
                    value: inner.clone(),
                })))
            }
            other => Err(format!("cannot resolve {other:?}")),
        }
    }
}
