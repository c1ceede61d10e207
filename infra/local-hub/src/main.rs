//! `hub-local`: the hub on this machine, with no AWS account.
//!
//!   hub-local run [--template PATH] [--api-port N] [--emulator-port N]
//!   hub-local poll QUEUE_URL [--wait SECONDS] [--delete] [--emulator-port N]
//!
//! `run` starts the moto emulator, creates the template's tables, topics and
//! queues in it, starts every function's real binary behind a local Lambda
//! Runtime API, serves the template's routes and runs the stream -> dispatch
//! hand-off. Ctrl-C stops everything. `poll` reads a subscriber's queue.

mod api;
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
use crate::template::{REGION, Resolved, STACK_NAME, Template};

const DEFAULT_API_PORT: u16 = 3000;
const DEFAULT_EMULATOR_PORT: u16 = 4566;

#[tokio::main]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("run") => run(&args[1..]).await,
        Some("poll") => poll(&args[1..]).await,
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
    "usage:\n  hub-local run [--template PATH] [--api-port N] [--emulator-port N]\n  \
     hub-local poll QUEUE_URL [--wait SECONDS] [--delete] [--emulator-port N]\n\n\
     Ports default to HUB_API_PORT / HUB_EMULATOR_PORT, else 3000 / 4566."
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

/// The project's moto server: HUB_MOTO_SERVER, else .venv/bin/moto_server
/// beside the template.
fn moto_server(template: &Path) -> Result<PathBuf, String> {
    if let Ok(path) = std::env::var("HUB_MOTO_SERVER") {
        return Ok(PathBuf::from(path));
    }
    let candidate = template
        .parent()
        .unwrap_or(Path::new("."))
        .join(".venv/bin/moto_server");
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
    // SAFETY: prctl is async-signal-safe; the emulator dies with the hub.
    unsafe {
        command.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
            Ok(())
        });
    }
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
        request = request.global_secondary_indexes(
            GlobalSecondaryIndex::builder()
                .index_name(field(&index, "IndexName"))
                .set_key_schema(Some(key_schema(&keys)?))
                .projection(
                    Projection::builder()
                        .projection_type(ProjectionType::from(projection.as_str()))
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
    Ok((arn, stream))
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
    let template = Template::load(&template_path)?;
    let binaries = std::env::current_exe()
        .map_err(|e| e.to_string())?
        .parent()
        .map(Path::to_path_buf)
        .ok_or("cannot locate the function binaries")?;

    let api_listener = tokio::net::TcpListener::bind(("127.0.0.1", api_port))
        .await
        .map_err(|e| format!("port {api_port} for the API: {e} (set HUB_API_PORT)"))?;
    let endpoint = emulator_endpoint(emulator_port);
    let mut emulator = start_emulator(&moto_server(&template_path)?, emulator_port).await?;
    let config = emulator_config(&endpoint).await;
    let dynamodb = aws_sdk_dynamodb::Client::new(&config);
    let sns = aws_sdk_sns::Client::new(&config);
    let sqs = aws_sdk_sqs::Client::new(&config);

    let mut resolved = Resolved {
        parameters: template.parameters.clone(),
        ..Resolved::default()
    };
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
    }

    let (stop, stopping) = tokio::sync::watch::channel(false);
    let mut routes = Vec::new();
    let mut mappings = Vec::new();
    for spec in &template.functions {
        let mut environment = emulator_environment(&endpoint);
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
        for route in &spec.routes {
            routes.push(api::ApiRoute {
                method: route
                    .method
                    .parse()
                    .map_err(|_| format!("bad method {}", route.method))?,
                resource: route.path.clone(),
                function: function.clone(),
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
                streams: aws_sdk_dynamodbstreams::Client::new(&config),
                sqs: sqs.clone(),
            });
        }
    }
    for mapping in mappings {
        tokio::spawn(mapping.run());
    }
    let route_count = routes.len();
    let server = axum::serve(api_listener, api::router(routes));

    println!(
        "Child health events hub, running locally ({} functions, {route_count} routes).",
        template.functions.len()
    );
    println!("Hub API:  http://127.0.0.1:{api_port}");
    println!("Emulator: {endpoint}   (moto; AWS_ACCESS_KEY_ID/SECRET 'testing', region {REGION})");
    for (logical_id, name) in &resolved.refs {
        if template.tables.iter().any(|t| &t.logical_id == logical_id) {
            println!("  table {logical_id}: {name}");
        }
    }
    println!("Ready. Ctrl-C stops the hub and the emulator.");

    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(|e| e.to_string())?;
    tokio::select! {
        result = server => result.map_err(|e| format!("the API server stopped: {e}"))?,
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
