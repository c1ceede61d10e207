//! `hub-local`: the hub on this machine, with no AWS account.
//!
//!   hub-local run [--template PATH] [--api-port N] [--emulator-port N]
//!       [--faults RULES] [--fault-port N]
//!   hub-local token CLIENT [--api URL]
//!   hub-local poll QUEUE_URL [--wait SECONDS] [--delete] [--emulator-port N]
//!   hub-local reference load --onspd FILE --epraccur FILE --sub-icb FILE
//!       [--table NAME] [--endpoint URL] [--region R] [--emulator-port N]
//!       [--in-flight N] [--progress-every N] [--create-table] [--check]
//!   hub-local migrate subscription-bases [--subscriptions-table NAME
//!       --register-table NAME] [--endpoint URL] [--region R]
//!       [--emulator-port N] [--dry-run]
//!
//! `run` starts the local stack (hub_local::stack) and loads the sample
//! reference data of events/reference, so that generic subscriptions match
//! out of the box. Ctrl-C stops everything. `token` prints an access token
//! for a demo client. `poll` reads a subscriber's queue. `reference load`
//! loads postcode and practice reference data into the running local stack,
//! another emulator, or AWS (see reference.rs).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;

use aws_sdk_sqs::types::MessageSystemAttributeName;
use clap::{Parser, Subcommand};

use hub_local::emulator::{DEFAULT_EMULATOR_PORT, emulator_config, emulator_endpoint};
use hub_local::{demo, migrate, reference, stack};

const DEFAULT_API_PORT: u16 = 3000;

#[derive(Parser)]
#[command(
    name = "hub-local",
    about = "The child health events hub on this machine, with no AWS account.",
    after_help = "Ports default to HUB_API_PORT / HUB_EMULATOR_PORT, else 3000 / 4566; port 0\n\
     takes any free port, printed at start-up (run only). The demo\n\
     clients' keys are in HUB_LOCAL_STATE_DIR, else .local beside template.yaml;\n\
     CLIENT is one of demo-publisher, demo-subscriber-1, demo-subscriber-2, demo-operator,\n\
     demo-relationship-publisher, demo-parent-app.\n\
     reference load writes to the local stack's ReferenceTable, to --table at --endpoint\n\
     (an emulator), or, given --table without --endpoint, to AWS (default credentials).\n\
     --faults (else HUB_FAULTS) puts a fault-injecting proxy between the functions and\n\
     the emulator, on --fault-port (else HUB_FAULT_PORT, else any free port); rules\n\
     such as 'sns:PublishBatch#2..4=error;dynamodb:*=slow:200ms' (docs/reliability.md)."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Start the local stack: emulator, resources, functions, API.
    Run {
        /// template.yaml (default: here or in a directory above).
        #[arg(long, value_name = "PATH")]
        template: Option<PathBuf>,
        #[arg(long, value_name = "N")]
        api_port: Option<u16>,
        #[arg(long, value_name = "N")]
        emulator_port: Option<u16>,
        /// Fault rules for a proxy between the functions and the emulator.
        #[arg(long, value_name = "RULES")]
        faults: Option<String>,
        #[arg(long, value_name = "N")]
        fault_port: Option<u16>,
    },
    /// Print an access token for a demo client.
    Token {
        client: String,
        /// The hub's URL (default: the local stack's).
        #[arg(long, value_name = "URL")]
        api: Option<String>,
        #[arg(long, value_name = "N")]
        api_port: Option<u16>,
        #[arg(long, value_name = "PATH")]
        template: Option<PathBuf>,
    },
    /// Read messages from a queue, one JSON line each.
    Poll {
        queue_url: String,
        /// Long-poll wait, 0 to 20 seconds.
        #[arg(long, value_name = "SECONDS", default_value_t = 5)]
        wait: i32,
        /// Delete what was read.
        #[arg(long)]
        delete: bool,
        #[arg(long, value_name = "N")]
        emulator_port: Option<u16>,
    },
    /// Reference data (postcodes and practices).
    Reference {
        #[command(subcommand)]
        command: ReferenceCommand,
    },
    /// One-off changes to stored data, run by operators.
    Migrate {
        #[command(subcommand)]
        command: MigrateCommand,
    },
}

#[derive(Subcommand)]
enum MigrateCommand {
    /// Record a basis on each explicit subscription made without one.
    SubscriptionBases(migrate::BasesArgs),
}

#[derive(Subcommand)]
enum ReferenceCommand {
    /// Load the reference files into the reference table.
    Load(reference::LoadArgs),
}

#[tokio::main]
async fn main() -> ExitCode {
    let result = match Cli::parse().command {
        Command::Run {
            template,
            api_port,
            emulator_port,
            faults,
            fault_port,
        } => run(template, api_port, emulator_port, faults, fault_port).await,
        Command::Token {
            client,
            api,
            api_port,
            template,
        } => token(&client, api, api_port, template).await,
        Command::Poll {
            queue_url,
            wait,
            delete,
            emulator_port,
        } => poll(&queue_url, wait, delete, emulator_port).await,
        Command::Reference {
            command: ReferenceCommand::Load(args),
        } => match port(
            args.emulator_port,
            "HUB_EMULATOR_PORT",
            DEFAULT_EMULATOR_PORT,
        ) {
            Ok(emulator_port) => reference::command(args, emulator_port).await,
            Err(error) => Err(error),
        },
        Command::Migrate {
            command: MigrateCommand::SubscriptionBases(args),
        } => match port(
            args.emulator_port,
            "HUB_EMULATOR_PORT",
            DEFAULT_EMULATOR_PORT,
        ) {
            Ok(emulator_port) => migrate::command(args, emulator_port).await,
            Err(error) => Err(error),
        },
    };
    match result {
        Ok(code) => code,
        Err(error) => {
            eprintln!("hub-local: {error}");
            ExitCode::FAILURE
        }
    }
}

/// A port: the flag, else the environment variable, else the default.
fn port(flag: Option<u16>, env: &str, default: u16) -> Result<u16, String> {
    if let Some(port) = flag {
        return Ok(port);
    }
    match std::env::var(env) {
        Ok(text) => text
            .parse()
            .map_err(|_| format!("{env}: '{text}' is not a port")),
        Err(_) => Ok(default),
    }
}

/// The template: --template, else template.yaml here or in a directory above.
fn find_template(flag: Option<PathBuf>) -> Result<PathBuf, String> {
    if let Some(path) = flag {
        return Ok(path);
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

async fn run(
    template: Option<PathBuf>,
    api_port: Option<u16>,
    emulator_port: Option<u16>,
    faults: Option<String>,
    fault_port: Option<u16>,
) -> Result<ExitCode, String> {
    let options = stack::RunOptions {
        api_port: port(api_port, "HUB_API_PORT", DEFAULT_API_PORT)?,
        emulator_port: port(emulator_port, "HUB_EMULATOR_PORT", DEFAULT_EMULATOR_PORT)?,
        template: find_template(template)?,
        faults: faults.or_else(|| std::env::var("HUB_FAULTS").ok()),
        fault_port: port(fault_port, "HUB_FAULT_PORT", 0)?,
    };
    stack::run(options).await?;
    Ok(ExitCode::SUCCESS)
}

/// Prints an access token for a demo client: signs a client assertion with
/// its key and exchanges it at the running hub's token endpoint.
async fn token(
    client: &str,
    api: Option<String>,
    api_port: Option<u16>,
    template: Option<PathBuf>,
) -> Result<ExitCode, String> {
    let api = match api {
        Some(api) => api.trim_end_matches('/').to_owned(),
        None => format!(
            "http://127.0.0.1:{}",
            port(api_port, "HUB_API_PORT", DEFAULT_API_PORT)?
        ),
    };
    let state = demo::state_dir(&find_template(template)?);
    let key = demo::read_key(&state, client)?;
    let token = demo::request_token(&reqwest::Client::new(), &api, client, &key).await?;
    println!("{token}");
    Ok(ExitCode::SUCCESS)
}

/// Reads messages from a queue and prints each as one JSON line: the body,
/// the message attributes and the receive count.
async fn poll(
    queue_url: &str,
    wait: i32,
    delete: bool,
    emulator_port: Option<u16>,
) -> Result<ExitCode, String> {
    let emulator_port = port(emulator_port, "HUB_EMULATOR_PORT", DEFAULT_EMULATOR_PORT)?;
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
    Ok(ExitCode::SUCCESS)
}
