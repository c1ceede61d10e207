//! `hub-local run`: the whole local stack, in stages. Start the emulator
//! (and the fault proxy in front of it), create the template's resources,
//! start every function behind the local Lambda Runtime API, wire the
//! routes and stream mappings, serve the API, register the demo clients,
//! print where everything is, and wait for Ctrl-C.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use aws_sdk_sqs::types::QueueAttributeName;
use jsonwebtoken::EncodingKey;
use tokio::process::Child;
use tokio::task::JoinHandle;

use crate::demo::{self, DemoClient};
use crate::emulator::{emulator_config, emulator_endpoint, emulator_environment, moto_server};
use crate::resources::{create_kms_key, create_table, physical_name};
use crate::runtime::{Function, FunctionConfig};
use crate::template::{ACCOUNT_ID, API_ID, REGION, Resolved, RouteAuth, STACK_NAME, Template};
use crate::{api, faults, gateway, reference, streams};

/// The template's table of registered clients, where the demo clients go.
pub const CLIENTS_TABLE: &str = "ClientsTable";

/// What `hub-local run` was asked for.
#[derive(Debug, Clone)]
pub struct RunOptions {
    pub template: PathBuf,
    pub api_port: u16,
    pub emulator_port: u16,
    /// Fault rules (docs/reliability.md); None: no fault proxy.
    pub faults: Option<String>,
    /// The fault proxy's port; 0: any free port.
    pub fault_port: u16,
}

/// The template parameters the local stack sets instead of their defaults.
/// TokenEndpointUrl: client assertions name the token endpoint's URL as
/// their audience, and the token function must know it from its
/// configuration, never from the request (whose headers the caller
/// chooses). Locally that URL is plain http on loopback, as clients call it.
pub fn local_parameters(api_port: u16) -> BTreeMap<String, String> {
    BTreeMap::from([(
        "TokenEndpointUrl".to_owned(),
        demo::token_url(&format!("http://127.0.0.1:{api_port}")),
    )])
}

/// The emulator, and where the functions reach it.
struct Emulator {
    process: Child,
    /// hub-local's own set-up calls go here, straight to the emulator.
    endpoint: String,
    config: aws_config::SdkConfig,
    /// What the functions and the stream poller call: the emulator, or the
    /// fault proxy in front of it.
    function_endpoint: String,
    function_config: aws_config::SdkConfig,
    /// The fault proxy's admin URL, when there is one.
    fault_admin: Option<String>,
}

/// The template's resources as created: every Ref and GetAtt they answer,
/// the tables' streams, and the sample reference data's report.
struct Provisioned {
    resolved: Resolved,
    stream_arns: BTreeMap<String, String>,
    reference_loaded: Option<reference::Report>,
}

/// The demo clients as registered and onboarded, and the files written
/// for them.
struct DemoSetup {
    clients_table: Option<String>,
    onboarded: Vec<demo::Onboarded>,
    env_file: Option<PathBuf>,
    config_file: Option<PathBuf>,
}

pub async fn run(options: RunOptions) -> Result<(), String> {
    let binaries = std::env::current_exe()
        .map_err(|e| e.to_string())?
        .parent()
        .map(Path::to_path_buf)
        .ok_or("cannot locate the function binaries")?;
    let state = demo::state_dir(&options.template);
    let demo_keys = demo::ensure_keys(&state)?;
    let api_listener = tokio::net::TcpListener::bind(("127.0.0.1", options.api_port))
        .await
        .map_err(|e| {
            format!(
                "port {} for the API: {e} (set HUB_API_PORT; 0: any free port)",
                options.api_port
            )
        })?;
    // Port 0 binds any free port; the template's token URL names the real one.
    let api_port = api_listener
        .local_addr()
        .map_err(|e| format!("the API's port: {e}"))?
        .port();
    let template = Template::load(&options.template, &local_parameters(api_port))?;

    let mut emulator = start_emulator(&options).await?;
    let provisioned = provision(&template, &options.template, &emulator.config).await?;
    let resolved = &provisioned.resolved;
    // SAM's default stage name when the API names none.
    let stage = match &template.api.stage_name {
        Some(stage) => resolved.resolve(stage)?,
        None => "Prod".to_owned(),
    };

    let (stop, stopping) = tokio::sync::watch::channel(false);
    let functions = start_functions(
        &template,
        resolved,
        &binaries,
        &emulator.function_endpoint,
        stopping,
    )
    .await?;
    let (routes, mappings) = wire(
        &template,
        &functions,
        &provisioned,
        &emulator.function_config,
    )?;
    for mapping in mappings {
        tokio::spawn(mapping.run());
    }
    for spec in &template.functions {
        for rate in &spec.schedules {
            let function = functions
                .get(&spec.logical_id)
                .ok_or("a function did not start")?
                .clone();
            tokio::spawn(
                crate::schedule::Schedule {
                    logical_id: spec.logical_id.clone(),
                    every: crate::schedule::Schedule::interval(*rate),
                    function,
                }
                .run(),
            );
        }
    }
    let route_count = routes.len();
    let has_token_route = routes
        .iter()
        .any(|route| route.resource == demo::TOKEN_PATH);
    let mut server = serve_api(&template, resolved, api_listener, routes, &stage)?;
    let api_url = format!("http://127.0.0.1:{api_port}");

    let demo = register_demo_clients(
        resolved,
        &emulator,
        &demo_keys,
        &state,
        &api_url,
        has_token_route,
    )
    .await?;

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
    print_summary(
        &template,
        &provisioned,
        &emulator,
        &demo,
        &demo_keys,
        &state,
    );

    wait_for_stop(&mut server, &mut emulator.process).await?;
    // Functions first, so none sees its runtime API vanish mid-request.
    let _ = stop.send(true);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let _ = emulator.process.kill().await;
    Ok(())
}

/// Starts the emulator, and the fault proxy in front of it when asked.
async fn start_emulator(options: &RunOptions) -> Result<Emulator, String> {
    let fault_rules = match &options.faults {
        Some(text) => Some(faults::Rule::parse_list(text)?),
        None => None,
    };
    let (process, port) =
        crate::emulator::start_emulator(&moto_server(&options.template)?, options.emulator_port)
            .await?;
    let endpoint = emulator_endpoint(port);
    let config = emulator_config(&endpoint).await;
    let (function_endpoint, fault_admin) = match fault_rules {
        Some(rules) => {
            let address = faults::start(
                faults::Faults::new(rules),
                endpoint.clone(),
                options.fault_port,
            )
            .await?;
            (
                format!("http://{address}"),
                Some(format!("http://{address}{}", faults::ADMIN_PATH)),
            )
        }
        None => (endpoint.clone(), None),
    };
    let function_config = emulator_config(&function_endpoint).await;
    Ok(Emulator {
        process,
        endpoint,
        config,
        function_endpoint,
        function_config,
        fault_admin,
    })
}

/// Creates the template's KMS keys and aliases, tables (with the sample
/// reference data), topics and queues, and names its functions, recording
/// what each Ref and GetAtt answers.
async fn provision(
    template: &Template,
    template_path: &Path,
    config: &aws_config::SdkConfig,
) -> Result<Provisioned, String> {
    let mut resolved = Resolved {
        parameters: template.parameters.clone(),
        ..Resolved::default()
    };
    create_keys(template, &mut resolved, &aws_sdk_kms::Client::new(config)).await?;
    let dynamodb = aws_sdk_dynamodb::Client::new(config);
    let stream_arns = create_tables(template, &mut resolved, &dynamodb).await?;
    let reference_loaded = load_sample_reference(&resolved, template_path, &dynamodb).await?;
    create_topics_and_queues(template, &mut resolved, config).await?;
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
    if let Some(api) = &template.api.logical_id {
        resolved.refs.insert(api.clone(), API_ID.into());
    }
    Ok(Provisioned {
        resolved,
        stream_arns,
        reference_loaded,
    })
}

async fn create_keys(
    template: &Template,
    resolved: &mut Resolved,
    kms: &aws_sdk_kms::Client,
) -> Result<(), String> {
    for key in &template.kms_keys {
        let (key_id, arn) = create_kms_key(kms, resolved, key).await?;
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
    Ok(())
}

/// Creates every table; returns the stream ARN of each table that has one.
async fn create_tables(
    template: &Template,
    resolved: &mut Resolved,
    dynamodb: &aws_sdk_dynamodb::Client,
) -> Result<BTreeMap<String, String>, String> {
    let mut stream_arns = BTreeMap::new();
    for table in &template.tables {
        let name = format!("{STACK_NAME}-{}", table.logical_id);
        let (arn, stream) = create_table(dynamodb, &name, &table.properties).await?;
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
    Ok(stream_arns)
}

/// The sample reference data, so that generic subscriptions match out of
/// the box; `hub-local reference load` replaces it with real files.
async fn load_sample_reference(
    resolved: &Resolved,
    template_path: &Path,
    dynamodb: &aws_sdk_dynamodb::Client,
) -> Result<Option<reference::Report>, String> {
    let Some(table) = resolved.refs.get(reference::REFERENCE_TABLE) else {
        return Ok(None);
    };
    let files = reference::Files::samples(template_path);
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
    Ok(Some(report))
}

async fn create_topics_and_queues(
    template: &Template,
    resolved: &mut Resolved,
    config: &aws_config::SdkConfig,
) -> Result<(), String> {
    let sns = aws_sdk_sns::Client::new(config);
    for topic in &template.topics {
        let name = physical_name(resolved, topic)?;
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
    let sqs = aws_sdk_sqs::Client::new(config);
    for queue in &template.queues {
        let name = physical_name(resolved, queue)?;
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
    Ok(())
}

/// Starts every function's binary behind its own Lambda Runtime API, with
/// the template's environment resolved against the created resources.
async fn start_functions(
    template: &Template,
    resolved: &Resolved,
    binaries: &Path,
    function_endpoint: &str,
    stopping: tokio::sync::watch::Receiver<bool>,
) -> Result<BTreeMap<String, Function>, String> {
    let mut functions = BTreeMap::new();
    for spec in &template.functions {
        let mut environment = emulator_environment(function_endpoint);
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
    Ok(functions)
}

/// Every API route (with its authorizer) and stream mapping of the
/// template, bound to the started functions.
fn wire(
    template: &Template,
    functions: &BTreeMap<String, Function>,
    provisioned: &Provisioned,
    function_config: &aws_config::SdkConfig,
) -> Result<(Vec<api::ApiRoute>, Vec<streams::StreamMapping>), String> {
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
            let stream_arn = provisioned
                .stream_arns
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
                    .and_then(|q| provisioned.resolved.refs.get(q).cloned()),
                source: source.clone(),
                stream_arn,
                function: function.clone(),
                streams: aws_sdk_dynamodbstreams::Client::new(function_config),
                sqs: aws_sdk_sqs::Client::new(function_config),
            });
        }
    }
    Ok((routes, mappings))
}

type Server = JoinHandle<std::io::Result<()>>;

/// Serves the routes as API Gateway would: stage, gateway responses and
/// access log from the template.
fn serve_api(
    template: &Template,
    resolved: &Resolved,
    listener: tokio::net::TcpListener,
    routes: Vec<api::ApiRoute>,
    stage: &str,
) -> Result<Server, String> {
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
        stage: stage.to_owned(),
        access_log_format,
    });
    Ok(tokio::spawn(async move {
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<std::net::SocketAddr>(),
        )
        .await
    }))
}

/// The demo clients: registered afresh (the emulator starts empty), then
/// the subscribers onboarded through the API as the operator; their ids,
/// queues and command-line profiles written to the state directory.
async fn register_demo_clients(
    resolved: &Resolved,
    emulator: &Emulator,
    demo_keys: &[(&'static DemoClient, EncodingKey)],
    state: &Path,
    api_url: &str,
    has_token_route: bool,
) -> Result<DemoSetup, String> {
    let mut onboarded = Vec::new();
    let clients_table = resolved.refs.get(CLIENTS_TABLE).cloned();
    if let Some(table) = &clients_table {
        let dynamodb = aws_sdk_dynamodb::Client::new(&emulator.config);
        let store = hub::aws::DynamoClientStore::new(dynamodb, table);
        for (client, key) in demo_keys {
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
            let token = demo::request_token(&http, api_url, demo::OPERATOR, operator_key).await?;
            for (client, _) in demo_keys {
                if client.role == hub::auth::Role::Subscriber {
                    onboarded.push(demo::onboard(&http, api_url, &token, client).await?);
                }
            }
        }
    }
    let env_file = if onboarded.is_empty() {
        None
    } else {
        Some(demo::write_env(state, &onboarded)?)
    };
    let config_file = if clients_table.is_some() && has_token_route {
        Some(demo::write_config(
            state,
            api_url,
            &emulator.endpoint,
            &onboarded,
        )?)
    } else {
        None
    };
    Ok(DemoSetup {
        clients_table,
        onboarded,
        env_file,
        config_file,
    })
}

/// Where the emulator, the fault proxy, the tables, the reference data and
/// the demo clients are.
fn print_summary(
    template: &Template,
    provisioned: &Provisioned,
    emulator: &Emulator,
    demo: &DemoSetup,
    demo_keys: &[(&'static DemoClient, EncodingKey)],
    state: &Path,
) {
    println!(
        "Emulator: {}   (moto; AWS_ACCESS_KEY_ID/SECRET 'testing', region {REGION})",
        emulator.endpoint
    );
    if let Some(admin) = &emulator.fault_admin {
        println!(
            "Faults:   {admin}   (the functions' AWS endpoint is {}; \
             GET lists the rules and their hits, PUT/POST/DELETE change them)",
            emulator.function_endpoint
        );
    }
    for (logical_id, name) in &provisioned.resolved.refs {
        if template.tables.iter().any(|t| &t.logical_id == logical_id) {
            println!("  table {logical_id}: {name}");
        }
    }
    if let Some(report) = &provisioned.reference_loaded {
        println!(
            "Reference data: the samples of events/reference ({} postcodes, {} practices; \
             `hub-local reference load` loads real files)",
            report.counts.postcodes, report.counts.practices
        );
    }
    if demo.clients_table.is_none() {
        println!("(the template has no {CLIENTS_TABLE}: no demo clients)");
        println!("Ready. Ctrl-C stops the hub and the emulator.");
        return;
    }
    println!(
        "Demo clients (private keys in {}; `hub-local token CLIENT` prints an access token):",
        state.join("clients").display()
    );
    for (client, _) in demo_keys {
        let role = client.role.name();
        match demo.onboarded.iter().find(|o| o.client == client.name) {
            Some(subscriber) => println!(
                "  {:<27} {role:<22} {:<7} subscriber {}  queue {}",
                client.name, subscriber.ods, subscriber.subscriber_id, subscriber.queue_url
            ),
            None => println!("  {:<27} {role:<22} {}", client.name, client.ods),
        }
    }
    if let Some(env_file) = &demo.env_file {
        println!(
            "  (their ids and queues, as shell variables: . {})",
            env_file.display()
        );
    }
    if let Some(config_file) = &demo.config_file {
        println!(
            "The hub command line's profiles for them (local-publisher, local-subscriber-1, ...):\n  \
             export HUB_CONFIG={}",
            std::path::absolute(config_file)
                .unwrap_or_else(|_| config_file.clone())
                .display()
        );
    }
    println!("Ready. Ctrl-C stops the hub and the emulator.");
}

/// Until Ctrl-C or SIGTERM; an error if the API server or the emulator
/// stopped on its own.
async fn wait_for_stop(server: &mut Server, emulator: &mut Child) -> Result<(), String> {
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(|e| e.to_string())?;
    tokio::select! {
        result = server => match result {
            Ok(Ok(())) => Ok(()),
            Ok(Err(error)) => Err(format!("the API server stopped: {error}")),
            Err(error) => Err(format!("the API server stopped: {error}")),
        },
        _ = tokio::signal::ctrl_c() => {
            println!("\nStopping.");
            Ok(())
        }
        _ = terminate.recv() => {
            println!("Stopping.");
            Ok(())
        }
        status = emulator.wait() => Err(format!("the emulator exited ({status:?})")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
