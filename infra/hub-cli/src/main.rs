//! `hub`: the hub's command line. For now, for subscribers:
//!
//!   hub poll --queue-url URL [--profile NAME] [--region REGION] [--ack]
//!       [--save DIR] [--max N] [--wait SECONDS] [--json]
//!
//! AWS credentials, region and endpoint come from the AWS chain (options,
//! then AWS_* variables, then the profile, ...); AWS_ENDPOINT_URL points it
//! at an emulator such as the local stack's. Errors are one line on stderr
//! and a non-zero exit status; usage errors exit with 2.

mod output;
mod poll;

use std::error::Error;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "hub",
    version,
    about = "The Child Health Events Hub's command line",
    long_about = "The Child Health Events Hub's command line.\n\n\
        AWS credentials and region come from the standard AWS chain: options, then \
        AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY / AWS_SESSION_TOKEN, AWS_PROFILE, \
        AWS_REGION, the shared config and credentials files, and the container or \
        instance role. AWS_ENDPOINT_URL sends every request to another endpoint (an \
        emulator such as the local stack's).",
    propagate_version = true
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
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
}

#[derive(Debug, Args)]
#[command(after_help = "Examples:\n  \
    hub poll --queue-url \"$QUEUE\"                     # show what is waiting\n  \
    hub poll --queue-url \"$QUEUE\" --ack --save inbox  # save each body, then delete it\n  \
    hub poll --queue-url \"$QUEUE\" --json --wait 60    # JSON lines until a minute passes without one")]
pub struct PollArgs {
    /// Your queue's URL: the queueUrl of your onboarding
    #[arg(long, value_name = "URL", value_parser = queue_url)]
    pub queue_url: String,

    /// The AWS profile to use [default: AWS_PROFILE, else the default chain]
    #[arg(long, value_name = "NAME")]
    pub profile: Option<String>,

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

    /// Print one JSON object per message (its attributes, receive count and
    /// body) instead of the table
    #[arg(long)]
    pub json: bool,
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
    let result = match cli.command {
        Command::Poll(args) => runtime.block_on(poll::run(args)),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => fail(&*error),
    }
}

/// Prints the error and its causes on one line.
fn fail(error: &dyn Error) -> ExitCode {
    eprintln!("hub: {}", one_line(error));
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
    fn poll_needs_a_queue_url_and_takes_every_option() {
        assert!(Cli::try_parse_from(["hub", "poll"]).is_err());
        let cli = Cli::try_parse_from([
            "hub",
            "poll",
            "--queue-url",
            "http://localhost/000000000000/q",
            "--profile",
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
        let Command::Poll(args) = cli.command;
        assert_eq!(args.queue_url, "http://localhost/000000000000/q");
        assert_eq!(args.profile.as_deref(), Some("gp"));
        assert_eq!(args.region.as_deref(), Some("eu-west-2"));
        assert!(args.ack && args.json);
        assert_eq!(args.save, Some(PathBuf::from("inbox")));
        assert_eq!((args.max, args.wait), (Some(3), Some(0)));
        let url = "https://sqs.eu-west-2.amazonaws.com/123456789012/q";
        assert!(Cli::try_parse_from(["hub", "poll", "--queue-url", url]).is_ok());
        assert!(Cli::try_parse_from(["hub", "poll", "--queue-url", url, "--max", "0"]).is_err());
        assert!(Cli::try_parse_from(["hub", "poll", "--queue-url", url, "--wait", "x"]).is_err());
        for bad in [
            "q",
            "sqs.eu-west-2.amazonaws.com/1/q",
            "https://host/q",
            "https:///1/q",
        ] {
            assert!(
                Cli::try_parse_from(["hub", "poll", "--queue-url", bad]).is_err(),
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
