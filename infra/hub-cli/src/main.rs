//! `hub-cli`: the hub's command line, for publishers, subscribers and
//! operators. `hub-cli --help` lists the commands, `hub-cli COMMAND --help` each
//! one's options; docs/cli.md is the reference.
//!
//! The hub's URL and the client it acts as come from flags, then HUB_*
//! variables, then a profile of the config file (src/config.rs). Output is
//! a table or text for people (colours only on a terminal), JSON with
//! `--json`. Errors are one line on stderr and a non-zero exit status;
//! usage errors exit with 2.

mod commands;
mod output;
mod poll;
mod publish;

use std::error::Error;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use hub_cli::config::Profile;

#[derive(Debug, Parser)]
#[command(
    name = "hub-cli",
    version,
    about = "The Child Health Events Hub's command line",
    long_about = "The Child Health Events Hub's command line, for publishers, subscribers and operators.\n\n\
        The hub's URL and the client acting come from the options below, else the \
        variables HUB_URL, HUB_CLIENT_ID, HUB_KEY_FILE, HUB_KEY_ID, HUB_SUBSCRIBER_ID, \
        HUB_QUEUE_URL, HUB_EMULATOR, else the profile named by --profile or HUB_PROFILE \
        (else `default`) in the config file: HUB_CONFIG, else ~/.config/chhub/config.toml. \
        `hub-local run` writes .local/config.toml with a profile per demo client.\n\n\
        `hub-cli poll` reads a subscriber queue with AWS credentials: the standard AWS chain \
        (AWS_* variables, AWS_PROFILE, the shared files, a role), or the local stack's \
        emulator when the profile names one.",
    propagate_version = true
)]
struct Cli {
    #[command(flatten)]
    global: Global,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Args)]
struct Global {
    /// The config file's profile to use [default: HUB_PROFILE, else `default`]
    #[arg(long, global = true, value_name = "NAME")]
    profile: Option<String>,

    /// The hub's API URL (HUB_URL)
    #[arg(long, global = true, value_name = "URL")]
    url: Option<String>,

    /// The client id to act as (HUB_CLIENT_ID)
    #[arg(long, global = true, value_name = "ID")]
    client_id: Option<String>,

    /// The client's private key, PKCS#8 PEM: P-256 signs ES256, RSA RS512 (HUB_KEY_FILE)
    #[arg(long, global = true, value_name = "PATH")]
    key_file: Option<PathBuf>,

    /// The kid the client's key is registered under (HUB_KEY_ID) [default: <client id>-1]
    #[arg(long, global = true, value_name = "KID")]
    key_id: Option<String>,

    /// Print the hub's answers as JSON (one object, or one per line) instead of tables
    #[arg(long, global = true)]
    json: bool,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Print an access token for the client (valid 5 minutes)
    ///
    /// Signs a JWT client assertion with the client's key and exchanges it at
    /// POST /oauth2/token. With --json, the token endpoint's whole answer.
    #[command(
        after_help = "Example:\n  curl -H \"authorization: Bearer $(hub-cli --profile local-operator token)\" \"$HUB_URL/audit?patient=9912003888\""
    )]
    Token,

    /// Publish event messages: files, or every .xml and .json file of folders
    ///
    /// Each file's encoding is read from its content (XML or JSON) and its
    /// route from its MessageHeader's event type. Prints one line per file
    /// (a progress bar on a terminal) and a summary: accepted, duplicate,
    /// rejected with the hub's reasons. Exits 1 if any file was rejected.
    #[command(after_help = "Examples:\n  \
        hub-cli --profile local-publisher publish events/nems                 # every example\n  \
        hub-cli --profile local-publisher publish events/nems/vaccinations-1-new.xml")]
    Publish(publish::PublishArgs),

    /// Create, list, read and delete your subscriptions (subscribers)
    #[command(subcommand)]
    Subscriptions(commands::Subscriptions),

    /// Read the deliveries waiting in your subscriber queue
    ///
    /// Long-polls your queue with your own AWS credentials and shows each
    /// delivery: its event type, lifecycle (with the out-of-order flag and the
    /// replay id when set), NHS number, the subscriptions of yours that
    /// matched, and its event id. By default one long poll (up to 20 seconds,
    /// up to 10 messages), and the messages stay on the queue.
    ///
    /// Every receive counts towards your queue's maximum receive count: a
    /// message received that many times without being deleted (by --ack or by
    /// your own system) moves to your dead-letter queue.
    Poll(PollArgs),

    /// Replay a window of stored events to one of your subscriptions
    ///
    /// Re-sends the events the hub accepted in [since, until) that the
    /// subscription matches now, flagged with the replay's id. --follow
    /// waits for the replay to finish, showing its progress.
    #[command(
        after_help = "Example:\n  hub-cli --profile local-subscriber-1 replay SUBSCRIPTION_ID --since 2020-01-01 --follow"
    )]
    Replay(commands::ReplayArgs),

    /// Show a replay's progress
    Replays(commands::ReplayIdArgs),

    /// Read an event back, as it was published
    Events(commands::EventArgs),

    /// Read a child's register record, or with --events the child's events
    Children(commands::ChildrenArgs),

    /// Read the audit trail of a patient or of a client (operators)
    Audit(commands::AuditArgs),

    /// Register and disable clients (operators)
    #[command(subcommand)]
    Clients(commands::Clients),

    /// Onboard, change, offboard subscribers; their status; redrive their DLQ
    #[command(subcommand)]
    Subscribers(commands::Subscribers),

    /// Load reference data (postcodes, practices) into the reference table (operators)
    #[command(subcommand)]
    Reference(commands::Reference),

    /// Print the settings in force (URL, client, key file, ...) and where the config file is
    Config,
}

#[derive(Debug, Args)]
#[command(after_help = "Examples:\n  \
    hub-cli --profile local-subscriber-1 poll                  # the profile's queue, once\n  \
    hub-cli poll --queue-url \"$QUEUE\" --ack --save inbox       # save each body, then delete it\n  \
    hub-cli poll --queue-url \"$QUEUE\" --json --wait 60         # JSON lines until a minute passes without one")]
pub struct PollArgs {
    /// Your queue's URL: the queueUrl of your onboarding [default: HUB_QUEUE_URL, else the profile's queue_url]
    #[arg(long, value_name = "URL", value_parser = queue_url)]
    pub queue_url: Option<String>,

    /// The AWS profile to use [default: AWS_PROFILE, else the default chain]
    #[arg(long, value_name = "NAME")]
    pub aws_profile: Option<String>,

    /// The AWS region [default: AWS_REGION, else the profile's, else the queue URL's]
    #[arg(long, value_name = "REGION")]
    pub region: Option<String>,

    /// Delete each message once it has been shown (and saved, with --save).
    /// Without it, messages stay on the queue and become visible again after
    /// their visibility timeout
    #[arg(long)]
    pub ack: bool,

    /// Write each body, as published, to DIR/<eventType>-<eventId>.<xml|json>
    /// (DIR is created if need be)
    #[arg(long, value_name = "DIR")]
    pub save: Option<PathBuf>,

    /// Stop after N messages
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub max: Option<u64>,

    /// Keep polling; stop once this long has passed without a message
    /// [default: stop after one long poll]
    #[arg(long, value_name = "SECONDS", value_parser = clap::value_parser!(u64).range(0..=86_400))]
    pub wait: Option<u64>,
}

/// A queue URL: http(s)://HOST/ACCOUNT/NAME.
fn queue_url(text: &str) -> Result<String, String> {
    let path = text
        .strip_prefix("https://")
        .or_else(|| text.strip_prefix("http://"))
        .and_then(|rest| rest.split_once('/'))
        .filter(|(host, path)| !host.is_empty() && path.trim_matches('/').contains('/'));
    match path {
        Some(_) => Ok(text.to_owned()),
        None => Err("not a queue URL (https://sqs.REGION.amazonaws.com/ACCOUNT/NAME)".to_owned()),
    }
}

fn main() -> ExitCode {
    // Help and version exit 0; usage errors print the usage and exit 2.
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => return fail(&error),
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(error) => fail(&*error),
    }
}

async fn run(cli: Cli) -> Result<ExitCode, Box<dyn Error>> {
    let env = |name: &str| std::env::var(name).ok();
    let flags = Profile {
        url: cli.global.url,
        client_id: cli.global.client_id,
        key_file: cli.global.key_file,
        key_id: cli.global.key_id,
        ..Profile::default()
    };
    let settings = hub_cli::config::Settings::resolve(&flags, cli.global.profile.as_deref(), &env)?;
    let json = cli.global.json;
    let ok = Ok(ExitCode::SUCCESS);
    match cli.command {
        Command::Poll(args) => poll::run(args, &settings, json)
            .await
            .map(|()| ExitCode::SUCCESS),
        Command::Publish(args) => publish::run(args, &commands::client(&settings)?, json).await,
        Command::Reference(command) => commands::reference(command),
        Command::Config => commands::show_config(&settings, json).and(ok),
        command => {
            let hub = commands::client(&settings)?;
            commands::run(command, &hub, &settings, json).await.and(ok)
        }
    }
}

/// Prints the error and its causes on one line.
fn fail(error: &dyn Error) -> ExitCode {
    eprintln!("hub-cli: {}", one_line(error));
    ExitCode::FAILURE
}

/// The error and its sources, joined by ": ", each said once, on one line.
fn one_line(error: &dyn Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut next = Some(error);
    while let Some(error) = next {
        let text = error
            .to_string()
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ");
        // Some errors repeat their source's text in their own.
        if !text.is_empty() && !parts.iter().any(|part| part.contains(&text)) {
            parts.push(text);
        }
        next = error.source();
    }
    parts.join(": ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn poll_takes_every_option() {
        let cli = Cli::try_parse_from([
            "hub-cli",
            "poll",
            "--queue-url",
            "http://localhost/000000000000/q",
            "--aws-profile",
            "gp",
            "--region",
            "eu-west-2",
            "--ack",
            "--save",
            "inbox",
            "--max",
            "3",
            "--wait",
            "0",
            "--json",
        ])
        .unwrap();
        let Command::Poll(args) = cli.command else {
            panic!("not poll: {:?}", cli.command)
        };
        assert_eq!(
            args.queue_url.as_deref(),
            Some("http://localhost/000000000000/q")
        );
        assert_eq!(args.aws_profile.as_deref(), Some("gp"));
        assert_eq!(args.region.as_deref(), Some("eu-west-2"));
        assert!(args.ack && cli.global.json);
        assert_eq!(args.save, Some(PathBuf::from("inbox")));
        assert_eq!((args.max, args.wait), (Some(3), Some(0)));
        let url = "https://sqs.eu-west-2.amazonaws.com/123456789012/q";
        assert!(Cli::try_parse_from(["hub-cli", "poll", "--queue-url", url]).is_ok());
        assert!(
            Cli::try_parse_from(["hub-cli", "poll", "--queue-url", url, "--max", "0"]).is_err()
        );
        assert!(
            Cli::try_parse_from(["hub-cli", "poll", "--queue-url", url, "--wait", "x"]).is_err()
        );
        for bad in [
            "q",
            "sqs.eu-west-2.amazonaws.com/1/q",
            "https://host/q",
            "https:///1/q",
        ] {
            assert!(
                Cli::try_parse_from(["hub-cli", "poll", "--queue-url", bad]).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn an_error_and_its_causes_make_one_line() {
        #[derive(Debug, thiserror::Error)]
        #[error("receiving from q")]
        struct Outer(#[source] Inner);
        #[derive(Debug, thiserror::Error)]
        #[error("dispatch failure:\n  connection refused")]
        struct Inner(#[source] std::io::Error);
        let error = Outer(Inner(std::io::Error::other("connection refused")));
        assert_eq!(
            one_line(&error),
            "receiving from q: dispatch failure: connection refused"
        );
    }
}
