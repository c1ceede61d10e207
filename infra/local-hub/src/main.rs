//! `hub-local`: the hub on this machine, with no AWS account.
//!
//!   hub-local run [--template PATH] [--api-port N] [--emulator-port N]
//!       [--faults RULES] [--fault-port N]
//!   hub-local token CLIENT [--api URL]
//!   hub-local poll QUEUE_URL [--wait SECONDS] [--delete] [--emulator-port N]
//!   hub-local reference load --onspd FILE --epraccur FILE --sub-icb FILE
//!       [--table NAME] [--endpoint URL] [--region R] [--emulator-port N]
//!       [--in-flight N] [--progress-every N] [--create-table] [--check]
//!
//! `run` starts the moto emulator, creates the template's KMS keys, tables,
//! topics and queues in it, starts every function's real binary behind a
//! local Lambda Runtime API, serves the template's routes behind their
//! Lambda authorizer and runs the stream -> dispatch hand-off; then it
//! registers the demo clients and onboards the demo subscribers. It loads
//! the sample reference data of events/reference, so that generic
//! subscriptions match out of the box. Ctrl-C stops everything. `token`
//! prints an access token for a demo client. `poll` reads a subscriber's
//! queue. `reference load` loads postcode and practice reference data into
//! the running local stack, another emulator, or AWS (see reference.rs).

mod api;
mod authorizer;
mod demo;
mod faults;
mod gateway;
mod reference;
mod runtime;
mod streams;
mod template;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, GlobalSecondaryIndex, KeySchemaElement, KeyType, Projection,
    ProjectionType, ScalarAttributeType, StreamSpecification, StreamViewType,
};
use aws_sdk_sqs::types::{MessageSystemAttributeName, QueueAttributeName};
use serde_norway::Value;
use tokio::process::{Child, Command};

use crate::runtime::{Function, FunctionConfig};
use crate::template::{ACCOUNT_ID, API_ID, REGION, Resolved, RouteAuth, STACK_NAME, Template};

const DEFAULT_API_PORT: u16 = 3000;
const DEFAULT_EMULATOR_PORT: u16 = 4566;
/// The template's table of registered clients, where the demo clients go.
const CLIENTS_TABLE: &str = "ClientsTable";

#[tokio::main]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("run") => run(&args[1..]).await,
        Some("poll") => poll(&args[1..]).await,
        Some("token") => token(&args[1..]).await,
        Some("reference") => {
            let result = match port(
                &args,
                "--emulator-port",
                "HUB_EMULATOR_PORT",
                DEFAULT_EMULATOR_PORT,
            ) {
                Ok(port) => reference::command(&args[1..], port).await,
                Err(error) => Err(error),
            };
            return match result {
                Ok(code) => code,
                Err(error) => {
                    eprintln!("hub-local: {error}");
                    ExitCode::FAILURE
                }
            };
        }
        _ => {
            eprintln!("{}", usage());
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("hub-local: {error}");
            ExitCode::FAILURE
        }
    }
}

fn usage() -> &'static str {
    "usage:\n  hub-local run [--template PATH] [--api-port N] [--emulator-port N]\n      \
     [--faults RULES] [--fault-port N]\n  \
     hub-local token CLIENT [--api URL]\n  \
     hub-local poll QUEUE_URL [--wait SECONDS] [--delete] [--emulator-port N]\n  \
     hub-local reference load --onspd FILE --epraccur FILE --sub-icb FILE\n      \
     [--table NAME] [--endpoint URL] [--region R] [--emulator-port N]\n      \
     [--in-flight N] [--progress-every N] [--create-table] [--check]\n\n\
     Ports default to HUB_API_PORT / HUB_EMULATOR_PORT, else 3000 / 4566. The demo\n\
     clients' keys are in HUB_LOCAL_STATE_DIR, else .local beside template.yaml;\n\
     CLIENT is one of demo-publisher, demo-subscriber-1, demo-subscriber-2, demo-operator.\n\
     reference load writes to the local stack's ReferenceTable, to --table at --endpoint\n\
     (an emulator), or, given --table without --endpoint, to AWS (default credentials).\n\
     --faults (else HUB_FAULTS) puts a fault-injecting proxy between the functions and\n\
     the emulator, on --fault-port (else HUB_FAULT_PORT, else any free port); rules\n\
     such as 'sns:PublishBatch#2..4=error;dynamodb:*=slow:200ms' (docs/reliability.md)."
}

fn flag<'a>(args: &'a [String], name: &str) -> Option<&'a str> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .map(String::as_str)
}

fn port(args: &[String], name: &str, env: &str, default: u16) -> Result<u16, String> {
    match flag(args, name)
        .map(str::to_owned)
        .or_else(|| std::env::var(env).ok())
    {
        Some(text) => text
            .parse()
            .map_err(|_| format!("{name}/{env}: '{text}' is not a port")),
        None => Ok(default),
    }
}

fn emulator_endpoint(port: u16) -> String {
    format!("http://127.0.0.1:{port}")
}

/// Credentials and region for the emulator: never the developer's own.
async fn emulator_config(endpoint: &str) -> aws_config::SdkConfig {
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .endpoint_url(endpoint)
        .region(aws_config::Region::new(REGION))
        .credentials_provider(aws_sdk_dynamodb::config::Credentials::new(
            "testing",
            "testing",
            None,
            None,
            "hub-local",
        ))
        .load()
        .await
}

fn emulator_environment(endpoint: &str) -> Vec<(String, String)> {
    vec![
        ("AWS_ENDPOINT_URL".into(), endpoint.into()),
        ("AWS_ACCESS_KEY_ID".into(), "testing".into()),
        ("AWS_SECRET_ACCESS_KEY".into(), "testing".into()),
        ("AWS_EC2_METADATA_DISABLED".into(), "true".into()),
    ]
}

fn find_template(args: &[String]) -> Result<PathBuf, String> {
    if let Some(path) = flag(args, "--template") {
        return Ok(PathBuf::from(path));
    }
    let mut directory = std::env::current_dir().map_err(|e| e.to_string())?;
    loop {
        let candidate = directory.join("template.yaml");
        if candidate.exists() {
            return Ok(candidate);
        }
        if !directory.pop() {
            return Err("no template.yaml here or above; pass --template".into());
        }
    }
}

/// The template parameters the local stack sets instead of their defaults.
/// TokenEndpointUrl: client assertions name the token endpoint's URL as
/// their audience, and the token function must know it from its
/// configuration, never from the request (whose headers the caller
/// chooses). Locally that URL is plain http on loopback, as clients call it.
fn local_parameters(api_port: u16) -> BTreeMap<String, String> {
    BTreeMap::from([(
        "TokenEndpointUrl".to_owned(),
        demo::token_url(&format!("http://127.0.0.1:{api_port}")),
    )])
}

/// The project's emulator: HUB_MOTO_SERVER, else .venv/bin/hub-emulator
/// beside the template (moto's server, see infra/emulator.py).
fn moto_server(template: &Path) -> Result<PathBuf, String> {
    if let Ok(path) = std::env::var("HUB_MOTO_SERVER") {
        return Ok(PathBuf::from(path));
    }
    let candidate = template
        .parent()
        .unwrap_or(Path::new("."))
        .join(".venv/bin/hub-emulator");
    if candidate.exists() {
        Ok(candidate)
    } else {
        Err(format!(
            "{} is missing: run infra/setup.sh (it creates the project venv with moto)",
            candidate.display()
        ))
    }
}

async fn start_emulator(moto: &Path, port: u16) -> Result<Child, String> {
    if tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_ok()
    {
        return Err(format!(
            "port {port} is already in use: stop what holds it or set HUB_EMULATOR_PORT"
        ));
    }
    let mut command = Command::new(moto);
    command
        .args(["-H", "127.0.0.1", "-p", &port.to_string()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true);
    runtime::end_with_the_hub(&mut command);
    let child = command
        .spawn()
        .map_err(|e| format!("starting {}: {e}", moto.display()))?;
    for _ in 0..300 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            return Ok(child);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Err(format!("the emulator did not start on port {port}"))
}

fn attribute_type(text: &str) -> ScalarAttributeType {
    match text {
        "N" => ScalarAttributeType::N,
        "B" => ScalarAttributeType::B,
        _ => ScalarAttributeType::S,
    }
}

async fn create_table(
    client: &aws_sdk_dynamodb::Client,
    name: &str,
    properties: &Value,
) -> Result<(String, Option<String>), String> {
    let list = |key: &str| {
        properties
            .get(key)
            .and_then(Value::as_sequence)
            .cloned()
            .unwrap_or_default()
    };
    let field = |value: &Value, key: &str| {
        value
            .get(key)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned()
    };
    let mut request = client
        .create_table()
        .table_name(name)
        .billing_mode(BillingMode::PayPerRequest);
    for definition in list("AttributeDefinitions") {
        request = request.attribute_definitions(
            AttributeDefinition::builder()
                .attribute_name(field(&definition, "AttributeName"))
                .attribute_type(attribute_type(&field(&definition, "AttributeType")))
                .build()
                .map_err(|e| e.to_string())?,
        );
    }
    let key_schema = |keys: &[Value]| {
        keys.iter()
            .map(|key| {
                let key_type = if field(key, "KeyType") == "RANGE" {
                    KeyType::Range
                } else {
                    KeyType::Hash
                };
                KeySchemaElement::builder()
                    .attribute_name(field(key, "AttributeName"))
                    .key_type(key_type)
                    .build()
                    .map_err(|e| e.to_string())
            })
            .collect::<Result<Vec<_>, String>>()
    };
    request = request.set_key_schema(Some(key_schema(&list("KeySchema"))?));
    for index in list("GlobalSecondaryIndexes") {
        let keys = index
            .get("KeySchema")
            .and_then(Value::as_sequence)
            .cloned()
            .unwrap_or_default();
        let projection = index
            .get("Projection")
            .map(|p| field(p, "ProjectionType"))
            .unwrap_or_default();
        let included: Vec<String> = index
            .get("Projection")
            .and_then(|p| p.get("NonKeyAttributes"))
            .and_then(Value::as_sequence)
            .map(|names| {
                names
                    .iter()
                    .filter_map(|name| name.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        request = request.global_secondary_indexes(
            GlobalSecondaryIndex::builder()
                .index_name(field(&index, "IndexName"))
                .set_key_schema(Some(key_schema(&keys)?))
                .projection(
                    Projection::builder()
                        .projection_type(ProjectionType::from(projection.as_str()))
                        .set_non_key_attributes((!included.is_empty()).then_some(included))
                        .build(),
                )
                .build()
                .map_err(|e| e.to_string())?,
        );
    }
    if let Some(view) = properties
        .get("StreamSpecification")
        .map(|s| field(s, "StreamViewType"))
    {
        request = request.stream_specification(
            StreamSpecification::builder()
                .stream_enabled(true)
                .stream_view_type(StreamViewType::from(view.as_str()))
                .build()
                .map_err(|e| e.to_string())?,
        );
    }
    let created = request.send().await.map_err(|e| {
        format!(
            "creating table {name}: {}",
            aws_sdk_dynamodb::error::DisplayErrorContext(e)
        )
    })?;
    let description = created.table_description;
    let arn = description
        .as_ref()
        .and_then(|d| d.table_arn.clone())
        .unwrap_or_default();
    let stream = description.and_then(|d| d.latest_stream_arn);
    // TTL is switched on as the template asks, though moto never deletes
    // expired items: nothing in the hub may depend on TTL for correctness
    // (the replay guard refuses a used jti whether or not its record is
    // gone), so a local run that keeps them behaves the same.
    // PointInTimeRecoverySpecification and SSESpecification are not
    // applied: they protect data at rest in AWS and change no behaviour.
    if let Some(ttl) = properties.get("TimeToLiveSpecification")
        && ttl.get("Enabled").and_then(Value::as_bool) == Some(true)
    {
        let specification = aws_sdk_dynamodb::types::TimeToLiveSpecification::builder()
            .attribute_name(field(ttl, "AttributeName"))
            .enabled(true)
            .build()
            .map_err(|e| e.to_string())?;
        client
            .update_time_to_live()
            .table_name(name)
            .time_to_live_specification(specification)
            .send()
            .await
            .map_err(|e| {
                format!(
                    "enabling TTL on {name}: {}",
                    aws_sdk_dynamodb::error::DisplayErrorContext(e)
                )
            })?;
    }
    Ok((arn, stream))
}

/// Creates a KMS key as the template describes it; returns (KeyId, Arn).
/// moto signs and verifies for real (ECC_NIST_P256 with ECDSA_SHA_256 among
/// others) and answers GetPublicKey, so the token function signs with it
/// as it does in AWS. The KeyPolicy is not passed on: moto evaluates key
/// policies only for Deny statements on DescribeKey, and locally every
/// process holds the same credentials, so it would restrict nothing.
async fn create_kms_key(
    kms: &aws_sdk_kms::Client,
    resolved: &Resolved,
    spec: &template::KmsKeySpec,
) -> Result<(String, String), String> {
    use aws_sdk_kms::types::{KeySpec, KeyUsageType};
    let property = |key: &str| -> Result<Option<String>, String> {
        spec.properties
            .get(key)
            .map(|value| resolved.resolve(value))
            .transpose()
            .map_err(|e| format!("{}: {key}: {e}", spec.logical_id))
    };
    let mut request = kms.create_key().description(
        property("Description")?.unwrap_or_else(|| format!("{STACK_NAME} {}", spec.logical_id)),
    );
    if let Some(key_spec) = property("KeySpec")? {
        request = request.key_spec(KeySpec::from(key_spec.as_str()));
    }
    if let Some(usage) = property("KeyUsage")? {
        request = request.key_usage(KeyUsageType::from(usage.as_str()));
    }
    let metadata = request
        .send()
        .await
        .map_err(|e| {
            format!(
                "creating KMS key {}: {}",
                spec.logical_id,
                aws_sdk_kms::error::DisplayErrorContext(e)
            )
        })?
        .key_metadata
        .ok_or_else(|| format!("creating KMS key {}: no metadata", spec.logical_id))?;
    Ok((metadata.key_id, metadata.arn.unwrap_or_default()))
}

/// The name a topic or queue gets: the template's own, else one made as
/// CloudFormation makes them, from the stack and the logical id.
fn physical_name(resolved: &Resolved, spec: &template::NamedSpec) -> Result<String, String> {
    match &spec.name {
        Some(name) => resolved.resolve(name),
        None => Ok(format!("{STACK_NAME}-{}", spec.logical_id)),
    }
}

async fn run(args: &[String]) -> Result<(), String> {
    let api_port = port(args, "--api-port", "HUB_API_PORT", DEFAULT_API_PORT)?;
    let emulator_port = port(
        args,
        "--emulator-port",
        "HUB_EMULATOR_PORT",
        DEFAULT_EMULATOR_PORT,
    )?;
    let template_path = find_template(args)?;
    let template = Template::load(&template_path, &local_parameters(api_port))?;
    let binaries = std::env::current_exe()
        .map_err(|e| e.to_string())?
        .parent()
        .map(Path::to_path_buf)
        .ok_or("cannot locate the function binaries")?;
    let state = demo::state_dir(&template_path);
    let demo_keys = demo::ensure_keys(&state)?;

    let api_listener = tokio::net::TcpListener::bind(("127.0.0.1", api_port))
        .await
        .map_err(|e| format!("port {api_port} for the API: {e} (set HUB_API_PORT)"))?;
    let fault_rules = match flag(args, "--faults")
        .map(str::to_owned)
        .or_else(|| std::env::var("HUB_FAULTS").ok())
    {
        Some(text) => Some(faults::Rule::parse_list(&text)?),
        None => None,
    };
    let fault_port = port(args, "--fault-port", "HUB_FAULT_PORT", 0)?;
    let endpoint = emulator_endpoint(emulator_port);
    let mut emulator = start_emulator(&moto_server(&template_path)?, emulator_port).await?;
    let config = emulator_config(&endpoint).await;
    // What the functions and the stream poller call: the emulator, or the
    // fault proxy in front of it. hub-local's own set-up calls go direct.
    let (function_endpoint, fault_admin) = match fault_rules {
        Some(rules) => {
            let address =
                faults::start(faults::Faults::new(rules), endpoint.clone(), fault_port).await?;
            (
                format!("http://{address}"),
                Some(format!("http://{address}{}", faults::ADMIN_PATH)),
            )
        }
        None => (endpoint.clone(), None),
    };
    let function_config = emulator_config(&function_endpoint).await;
    let dynamodb = aws_sdk_dynamodb::Client::new(&config);
    let sns = aws_sdk_sns::Client::new(&config);
    let sqs = aws_sdk_sqs::Client::new(&config);
    let kms = aws_sdk_kms::Client::new(&config);

    let mut resolved = Resolved {
        parameters: template.parameters.clone(),
        ..Resolved::default()
    };
    for key in &template.kms_keys {
        let (key_id, arn) = create_kms_key(&kms, &resolved, key).await?;
        resolved.refs.insert(key.logical_id.clone(), key_id.clone());
        resolved
            .attributes
            .insert((key.logical_id.clone(), "KeyId".into()), key_id);
        resolved
            .attributes
            .insert((key.logical_id.clone(), "Arn".into()), arn);
    }
    for alias in &template.kms_aliases {
        let name = resolved.resolve(&alias.name)?;
        let target = resolved.resolve(&alias.target_key)?;
        kms.create_alias()
            .alias_name(&name)
            .target_key_id(target)
            .send()
            .await
            .map_err(|e| {
                format!(
                    "creating KMS alias {name}: {}",
                    aws_sdk_kms::error::DisplayErrorContext(e)
                )
            })?;
        resolved.refs.insert(alias.logical_id.clone(), name);
    }
    let mut stream_arns = BTreeMap::new();
    for table in &template.tables {
        let name = format!("{STACK_NAME}-{}", table.logical_id);
        let (arn, stream) = create_table(&dynamodb, &name, &table.properties).await?;
        resolved.refs.insert(table.logical_id.clone(), name);
        resolved
            .attributes
            .insert((table.logical_id.clone(), "Arn".into()), arn);
        if let Some(stream) = stream {
            resolved.attributes.insert(
                (table.logical_id.clone(), "StreamArn".into()),
                stream.clone(),
            );
            stream_arns.insert(table.logical_id.clone(), stream);
        }
    }
    // The sample reference data, so that generic subscriptions match out of
    // the box; `hub-local reference load` replaces it with real files.
    let reference_loaded = match resolved.refs.get(reference::REFERENCE_TABLE) {
        Some(table) => {
            let files = reference::Files::samples(&template_path);
            let report = reference::load(
                Some(&hub::aws::DynamoReferenceData::new(dynamodb.clone(), table)),
                &files,
                &reference::Options {
                    progress_every: None,
                    ..reference::Options::default()
                },
            )
            .await
            .map_err(|error| format!("loading the sample reference data: {error}"))?;
            if report.counts.rejected_total() > 0 {
                return Err(format!(
                    "the sample reference data has rejected rows:\n{}",
                    reference::summary(&report)
                ));
            }
            Some(report)
        }
        None => None,
    };
    for topic in &template.topics {
        let name = physical_name(&resolved, topic)?;
        let arn = sns
            .create_topic()
            .name(&name)
            .send()
            .await
            .map_err(|e| format!("creating topic {name}: {e}"))?
            .topic_arn
            .unwrap_or_default();
        resolved.refs.insert(topic.logical_id.clone(), arn.clone());
        resolved
            .attributes
            .insert((topic.logical_id.clone(), "TopicArn".into()), arn);
    }
    for queue in &template.queues {
        let name = physical_name(&resolved, queue)?;
        let url = sqs
            .create_queue()
            .queue_name(&name)
            .send()
            .await
            .map_err(|e| format!("creating queue {name}: {e}"))?
            .queue_url
            .unwrap_or_default();
        let arn = sqs
            .get_queue_attributes()
            .queue_url(&url)
            .attribute_names(QueueAttributeName::QueueArn)
            .send()
            .await
            .map_err(|e| e.to_string())?
            .attributes
            .and_then(|mut a| a.remove(&QueueAttributeName::QueueArn))
            .unwrap_or_default();
        resolved.refs.insert(queue.logical_id.clone(), url);
        resolved
            .attributes
            .insert((queue.logical_id.clone(), "Arn".into()), arn);
    }
    for function in &template.functions {
        resolved
            .refs
            .insert(function.logical_id.clone(), function.logical_id.clone());
        resolved.attributes.insert(
            (function.logical_id.clone(), "Arn".into()),
            format!(
                "arn:aws:lambda:{REGION}:{ACCOUNT_ID}:function:{}",
                function.logical_id
            ),
        );
    }
    // SAM's default stage name when the API names none.
    let stage = match &template.api.stage_name {
        Some(stage) => resolved.resolve(stage)?,
        None => "Prod".to_owned(),
    };
    if let Some(api) = &template.api.logical_id {
        resolved.refs.insert(api.clone(), API_ID.into());
    }

    let (stop, stopping) = tokio::sync::watch::channel(false);
    let mut functions = BTreeMap::new();
    for spec in &template.functions {
        let mut environment = emulator_environment(&function_endpoint);
        for (name, value) in &spec.environment {
            environment.push((
                name.clone(),
                resolved
                    .resolve(value)
                    .map_err(|e| format!("{}: {name}: {e}", spec.logical_id))?,
            ));
        }
        if let Some(format) = &spec.log_format {
            environment.push(("AWS_LAMBDA_LOG_FORMAT".into(), format.to_ascii_uppercase()));
        }
        if let Some(level) = &spec.log_level {
            environment.push(("AWS_LAMBDA_LOG_LEVEL".into(), resolved.resolve(level)?));
        }
        let function = Function::start(FunctionConfig {
            stopping: stopping.clone(),
            name: spec.logical_id.clone(),
            binary: binaries.join(&spec.binary),
            timeout: Duration::from_secs(spec.timeout_seconds),
            memory_mb: spec.memory_mb,
            environment,
        })
        .await?;
        functions.insert(spec.logical_id.clone(), function);
    }

    let mut routes = Vec::new();
    let mut mappings = Vec::new();
    for spec in &template.functions {
        let function = functions
            .get(&spec.logical_id)
            .ok_or("a function did not start")?;
        for route in &spec.routes {
            let authorizer = match &route.auth {
                RouteAuth::None => None,
                RouteAuth::Default => template.api.default_authorizer.clone(),
                RouteAuth::Named(name) => Some(name.clone()),
            };
            let authorizer = match authorizer {
                None => None,
                Some(name) => {
                    let what = format!("{} {} {}", spec.logical_id, route.method, route.path);
                    let authorizer = template
                        .api
                        .authorizers
                        .get(&name)
                        .ok_or_else(|| format!("{what}: no authorizer {name}"))?;
                    let function = functions
                        .get(&authorizer.function_logical_id)
                        .ok_or_else(|| {
                            format!(
                                "{what}: authorizer {name}: no function {}",
                                authorizer.function_logical_id
                            )
                        })?
                        .clone();
                    Some(api::RouteAuthorizer {
                        name,
                        header: authorizer.header.to_ascii_lowercase(),
                        function,
                    })
                }
            };
            routes.push(api::ApiRoute {
                method: route
                    .method
                    .parse()
                    .map_err(|_| format!("bad method {}", route.method))?,
                resource: route.path.clone(),
                function: function.clone(),
                authorizer,
            });
        }
        for source in &spec.streams {
            let stream_arn = stream_arns
                .get(&source.table_logical_id)
                .cloned()
                .ok_or_else(|| {
                    format!(
                        "{}: table {} has no stream",
                        spec.logical_id, source.table_logical_id
                    )
                })?;
            mappings.push(streams::StreamMapping {
                on_failure_queue_url: source
                    .on_failure_queue
                    .as_ref()
                    .and_then(|q| resolved.refs.get(q).cloned()),
                source: source.clone(),
                stream_arn,
                function: function.clone(),
                streams: aws_sdk_dynamodbstreams::Client::new(&function_config),
                sqs: aws_sdk_sqs::Client::new(&function_config),
            });
        }
    }
    for mapping in mappings {
        tokio::spawn(mapping.run());
    }
    let route_count = routes.len();
    let has_token_route = routes
        .iter()
        .any(|route| route.resource == demo::TOKEN_PATH);
    let access_log_format = template
        .api
        .access_log_format
        .as_ref()
        .map(|format| resolved.resolve(format))
        .transpose()
        .map_err(|e| format!("AccessLogSetting.Format: {e}"))?;
    let app = api::router(api::Api {
        routes,
        gateway_responses: gateway::GatewayResponses::new(template.api.gateway_responses.clone()),
        stage: stage.clone(),
        access_log_format,
    });
    let mut server = tokio::spawn(async move {
        axum::serve(
            api_listener,
            app.into_make_service_with_connect_info::<std::net::SocketAddr>(),
        )
        .await
    });
    let api_url = format!("http://127.0.0.1:{api_port}");

    // The demo clients: registered afresh (the emulator starts empty), then
    // the subscribers onboarded through the API as the operator.
    let mut onboarded = Vec::new();
    let clients_table = resolved.refs.get(CLIENTS_TABLE).cloned();
    if let Some(table) = &clients_table {
        let store = hub::aws::DynamoClientStore::new(dynamodb.clone(), table);
        for (client, key) in &demo_keys {
            store
                .put(&demo::registration(client, key)?)
                .await
                .map_err(|e| format!("registering {}: {e}", client.name))?;
        }
        if has_token_route {
            let http = reqwest::Client::new();
            let operator_key = &demo_keys
                .iter()
                .find(|(client, _)| client.name == demo::OPERATOR)
                .ok_or("no demo operator")?
                .1;
            let token = demo::request_token(&http, &api_url, demo::OPERATOR, operator_key).await?;
            for (client, _) in &demo_keys {
                if client.role == hub::auth::Role::Subscriber {
                    onboarded.push(demo::onboard(&http, &api_url, &token, client).await?);
                }
            }
        }
    }

    let env_file = if onboarded.is_empty() {
        None
    } else {
        Some(demo::write_env(&state, &onboarded)?)
    };
    let config_file = if clients_table.is_some() && has_token_route {
        Some(demo::write_config(&state, &api_url, &endpoint, &onboarded)?)
    } else {
        None
    };

    println!(
        "Child health events hub, running locally ({} functions, {route_count} routes).",
        template.functions.len()
    );
    println!("Hub API:  {api_url}   (stage {stage})");
    if has_token_route {
        println!(
            "Token:    {}   (the audience of client assertions)",
            demo::token_url(&api_url)
        );
    }
    println!("Emulator: {endpoint}   (moto; AWS_ACCESS_KEY_ID/SECRET 'testing', region {REGION})");
    if let Some(admin) = &fault_admin {
        println!(
            "Faults:   {admin}   (the functions' AWS endpoint is {function_endpoint}; \
             GET lists the rules and their hits, PUT/POST/DELETE change them)"
        );
    }
    for (logical_id, name) in &resolved.refs {
        if template.tables.iter().any(|t| &t.logical_id == logical_id) {
            println!("  table {logical_id}: {name}");
        }
    }
    if let Some(report) = &reference_loaded {
        println!(
            "Reference data: the samples of events/reference ({} postcodes, {} practices; \
             `hub-local reference load` loads real files)",
            report.counts.postcodes, report.counts.practices
        );
    }
    if clients_table.is_some() {
        println!(
            "Demo clients (private keys in {}; `hub-local token CLIENT` prints an access token):",
            state.join("clients").display()
        );
        for (client, _) in &demo_keys {
            let role = client.role.name();
            match onboarded.iter().find(|o| o.client == client.name) {
                Some(subscriber) => println!(
                    "  {:<18} {role:<10} {:<7} subscriber {}  queue {}",
                    client.name, subscriber.ods, subscriber.subscriber_id, subscriber.queue_url
                ),
                None => println!("  {:<18} {role:<10} {}", client.name, client.ods),
            }
        }
        if let Some(env_file) = env_file {
            println!(
                "  (their ids and queues, as shell variables: . {})",
                env_file.display()
            );
        }
        if let Some(config_file) = config_file {
            println!(
                "The hub command line's profiles for them (local-publisher, local-subscriber-1, ...):\n  \
                 export HUB_CONFIG={}",
                std::path::absolute(&config_file)
                    .unwrap_or(config_file)
                    .display()
            );
        }
    } else {
        println!("(the template has no {CLIENTS_TABLE}: no demo clients)");
    }
    println!("Ready. Ctrl-C stops the hub and the emulator.");

    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(|e| e.to_string())?;
    tokio::select! {
        result = &mut server => match result {
            Ok(Ok(())) => {}
            Ok(Err(error)) => return Err(format!("the API server stopped: {error}")),
            Err(error) => return Err(format!("the API server stopped: {error}")),
        },
        _ = tokio::signal::ctrl_c() => println!("\nStopping."),
        _ = terminate.recv() => println!("Stopping."),
        status = emulator.wait() => return Err(format!("the emulator exited ({status:?})")),
    }
    // Functions first, so none sees its runtime API vanish mid-request.
    let _ = stop.send(true);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let _ = emulator.kill().await;
    Ok(())
}

/// Prints an access token for a demo client: signs a client assertion with
/// its key and exchanges it at the running hub's token endpoint.
async fn token(args: &[String]) -> Result<(), String> {
    let client = args
        .first()
        .filter(|a| !a.starts_with("--"))
        .ok_or_else(|| usage().to_owned())?;
    let api = match flag(args, "--api") {
        Some(api) => api.trim_end_matches('/').to_owned(),
        None => format!(
            "http://127.0.0.1:{}",
            port(args, "--api-port", "HUB_API_PORT", DEFAULT_API_PORT)?
        ),
    };
    let state = demo::state_dir(&find_template(args)?);
    let key = demo::read_key(&state, client)?;
    let token = demo::request_token(&reqwest::Client::new(), &api, client, &key).await?;
    println!("{token}");
    Ok(())
}

/// Reads messages from a queue and prints each as one JSON line: the body,
/// the message attributes and the receive count.
async fn poll(args: &[String]) -> Result<(), String> {
    let queue_url = args
        .first()
        .filter(|a| !a.starts_with("--"))
        .ok_or_else(|| usage().to_owned())?;
    let emulator_port = port(
        args,
        "--emulator-port",
        "HUB_EMULATOR_PORT",
        DEFAULT_EMULATOR_PORT,
    )?;
    let wait: i32 = flag(args, "--wait")
        .map(str::parse)
        .transpose()
        .map_err(|_| "--wait takes seconds")?
        .unwrap_or(5);
    let delete = args.iter().any(|a| a == "--delete");
    let config = emulator_config(&emulator_endpoint(emulator_port)).await;
    let sqs = aws_sdk_sqs::Client::new(&config);
    let received = sqs
        .receive_message()
        .queue_url(queue_url)
        .max_number_of_messages(10)
        .wait_time_seconds(wait.clamp(0, 20))
        .message_attribute_names("All")
        .message_system_attribute_names(MessageSystemAttributeName::ApproximateReceiveCount)
        .send()
        .await
        .map_err(|e| {
            format!(
                "receiving from {queue_url}: {}",
                aws_sdk_sqs::error::DisplayErrorContext(e)
            )
        })?;
    let messages = received.messages.unwrap_or_default();
    for message in &messages {
        let attributes: BTreeMap<String, String> = message
            .message_attributes
            .clone()
            .unwrap_or_default()
            .into_iter()
            .filter_map(|(name, value)| Some((name, value.string_value?)))
            .collect();
        let line = serde_json::json!({
            "messageId": message.message_id,
            "attributes": attributes,
            "body": message.body,
        });
        println!("{line}");
        if delete && let Some(handle) = &message.receipt_handle {
            sqs.delete_message()
                .queue_url(queue_url)
                .receipt_handle(handle)
                .send()
                .await
                .map_err(|e| format!("deleting a message: {e}"))?;
        }
    }
    eprintln!(
        "{} message(s){}",
        messages.len(),
        if delete { ", deleted" } else { "" }
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn free_port() -> u16 {
        std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .map(|address| address.port())
            .unwrap()
    }

    /// The token function is told the URL clients call, so that the
    /// audience it checks never comes from the request.
    #[test]
    fn the_token_function_gets_the_local_token_url() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../template.yaml");
        let template = Template::load(&path, &local_parameters(3123)).unwrap();
        let resolved = Resolved {
            parameters: template.parameters.clone(),
            ..Resolved::default()
        };
        let function = template
            .functions
            .iter()
            .find(|f| f.routes.iter().any(|r| r.path == demo::TOKEN_PATH))
            .expect("a token route");
        let (_, value) = function
            .environment
            .iter()
            .find(|(name, _)| name == "TOKEN_ENDPOINT_URL")
            .expect("TOKEN_ENDPOINT_URL");
        assert_eq!(
            resolved.resolve(value).unwrap(),
            "http://127.0.0.1:3123/oauth2/token"
        );
    }

    /// The template's signing key, made in the project's moto as `run`
    /// makes it, signs hub access tokens through KMS (by its alias) that
    /// verify with the public key KMS gives out.
    #[tokio::test(flavor = "multi_thread")]
    async fn a_p256_kms_key_in_moto_signs_verifiable_access_tokens() {
        let template = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../template.yaml");
        let port = free_port();
        let mut emulator = start_emulator(&moto_server(&template).unwrap(), port)
            .await
            .unwrap();
        let kms = aws_sdk_kms::Client::new(&emulator_config(&emulator_endpoint(port)).await);
        let parsed = Template::parse(
            "Resources:\n  Signing:\n    Type: AWS::KMS::Key\n    Properties:\n      KeySpec: ECC_NIST_P256\n      KeyUsage: SIGN_VERIFY\n      KeyPolicy: {}\n  Data:\n    Type: AWS::KMS::Key\n",
        )
        .unwrap();
        let resolved = Resolved::default();
        let (key_id, arn) = create_kms_key(&kms, &resolved, &parsed.kms_keys[0])
            .await
            .unwrap();
        assert!(arn.ends_with(&key_id), "{arn}");
        create_kms_key(&kms, &resolved, &parsed.kms_keys[1])
            .await
            .unwrap();
        kms.create_alias()
            .alias_name("alias/test-signing")
            .target_key_id(&key_id)
            .send()
            .await
            .unwrap();

        let signing = hub::aws::KmsSigningKey::load(kms.clone(), "alias/test-signing")
            .await
            .unwrap();
        let signer = hub::app::auth::HubSigner::new(signing);
        let pem = demo::generate_private_key_pem().unwrap();
        let key = jsonwebtoken::EncodingKey::from_ec_pem(pem.as_bytes()).unwrap();
        let client = demo::registration(&demo::DEMO_CLIENTS[0], &key).unwrap();
        let now = time::OffsetDateTime::now_utc();
        let issued = signer.issue(&client, now).await.unwrap();
        let verifier = hub::aws::kms_verifier(&kms, &key_id).await.unwrap();
        let subject = hub::auth::verify_access_token(&issued.token, &verifier, now).unwrap();
        assert_eq!(subject.client_id, "demo-publisher");
        let _ = emulator.kill().await;
    }
}
