//! `hub-cli poll`: show (and optionally save and delete) the deliveries waiting
//! in a subscriber queue, with the subscriber's own AWS credentials, or the
//! local stack's emulator when the profile names one.

use std::error::Error;
use std::fs;
use std::io;
use std::path::Path;
use std::time::{Duration, Instant};

use aws_config::{BehaviorVersion, Region};
use hub_cli::config::Settings;
use hub_cli::subscriber::{Delivery, Outcome, Poller, ReceiveOptions};

use crate::PollArgs;
use crate::output::{Colours, Output};

pub async fn run(args: PollArgs, settings: &Settings, json: bool) -> Result<(), Box<dyn Error>> {
    let queue_url = match &args.queue_url {
        Some(url) => url.clone(),
        None => {
            let url = settings.require("queue_url", &settings.profile.queue_url)?;
            crate::queue_url(url).map_err(|e| format!("queue_url {url}: {e}"))?
        }
    };
    if let Some(dir) = &args.save {
        // Before receiving anything: a message is never received for nothing.
        fs::create_dir_all(dir).map_err(|e| format!("--save: creating {}: {e}", dir.display()))?;
    }
    let sqs = sqs_client(&args, &queue_url, settings.profile.emulator.as_deref()).await?;
    let poller = Poller::new(sqs, &queue_url).delete_handled(args.ack);
    let mut output = if json {
        Output::json(io::stdout())
    } else {
        Output::table(io::stdout(), Colours::for_stdout())
    };
    let idle = args.wait.map(Duration::from_secs);
    let mut tally = Tally::default();
    let mut last_message = Instant::now();
    loop {
        let mut options = ReceiveOptions::default();
        if let Some(max) = args.max {
            let left = max.saturating_sub(tally.received());
            options = options.max_messages(usize::try_from(left).unwrap_or(usize::MAX));
        }
        if let Some(idle) = idle {
            options = options.wait(idle.saturating_sub(last_message.elapsed()));
        }
        let outcomes = poller
            .poll_once(options, async |delivery: &Delivery| -> Result<(), String> {
                if let Some(dir) = &args.save {
                    save(dir, delivery)?;
                }
                output
                    .show(delivery)
                    .map_err(|e| format!("writing to stdout: {e}"))
            })
            .await?;
        if !outcomes.is_empty() {
            last_message = Instant::now();
        }
        let any = !outcomes.is_empty();
        tally.count(outcomes);
        if tally.failures.is_some()
            || args.max.is_some_and(|max| tally.received() >= max)
            || idle.is_none_or(|idle| !any && last_message.elapsed() >= idle)
        {
            break;
        }
    }
    tally.finish(args.ack)
}

/// What became of the messages received so far.
#[derive(Default)]
struct Tally {
    handled: u64,
    malformed: u64,
    /// The first failure, and how many there were.
    failures: Option<(String, u64)>,
}

impl Tally {
    fn received(&self) -> u64 {
        self.handled + self.malformed + self.failures.as_ref().map_or(0, |(_, count)| *count)
    }

    fn count(&mut self, outcomes: Vec<Outcome<String>>) {
        for outcome in outcomes {
            match outcome {
                Outcome::Handled { .. } => self.handled += 1,
                Outcome::Failed { delivery, error } => match &mut self.failures {
                    Some((_, count)) => *count += 1,
                    None => {
                        self.failures = Some((
                            format!(
                                "{} {} was left on the queue: {error}",
                                delivery.event_type, delivery.event_id
                            ),
                            1,
                        ))
                    }
                },
                Outcome::Malformed { message_id, error } => {
                    self.malformed += 1;
                    eprintln!(
                        "hub-cli: message {} is not a hub delivery ({error}): left on the queue",
                        message_id.as_deref().unwrap_or("without an id")
                    );
                }
            }
        }
    }

    /// The summary on stderr, or the error the run ends with.
    fn finish(self, ack: bool) -> Result<(), Box<dyn Error>> {
        if let Some((first, count)) = self.failures {
            return Err(match count {
                1 => first,
                _ => format!("{first} (and {} more)", count - 1),
            }
            .into());
        }
        if self.malformed > 0 {
            return Err(format!(
                "{} message(s) were not hub deliveries and were left on the queue \
                 (after the queue's maximum receive count they move to its dead-letter queue)",
                self.malformed
            )
            .into());
        }
        let plural = if self.handled == 1 { "" } else { "s" };
        match (self.handled, ack) {
            (0, _) => eprintln!("no messages"),
            (n, true) => eprintln!("{n} message{plural}, deleted"),
            (n, false) => eprintln!(
                "{n} message{plural}, left on the queue (visible again after the visibility timeout; --ack deletes)"
            ),
        }
        Ok(())
    }
}

/// Writes the body to DIR/<eventType>-<eventId>.<xml|json>, through a
/// temporary file so that the named file is only ever complete.
fn save(dir: &Path, delivery: &Delivery) -> Result<(), String> {
    let name = delivery.file_name();
    let path = dir.join(&name);
    let partial = dir.join(format!(".{name}.part"));
    fs::write(&partial, &delivery.body)
        .and_then(|()| fs::rename(&partial, &path))
        .map_err(|e| {
            let _ = fs::remove_file(&partial);
            format!("saving to {}: {e}", path.display())
        })
}

/// The emulator's region and its fixed, not secret, credentials (moto
/// takes any): the local stack's.
const EMULATOR_REGION: &str = "eu-west-2";

/// The SQS client, from the AWS chain with --aws-profile and --region on
/// top; or, given the local stack's emulator, its endpoint and credentials.
async fn sqs_client(
    args: &PollArgs,
    queue_url: &str,
    emulator: Option<&str>,
) -> Result<aws_sdk_sqs::Client, String> {
    let mut loader = aws_config::defaults(BehaviorVersion::latest());
    if let Some(endpoint) = emulator {
        loader = loader
            .endpoint_url(endpoint)
            .region(Region::new(EMULATOR_REGION))
            .credentials_provider(aws_sdk_sqs::config::Credentials::new(
                "testing", "testing", None, None, "emulator",
            ));
    }
    if let Some(profile) = &args.aws_profile {
        loader = loader.profile_name(profile);
    }
    if let Some(region) = &args.region {
        loader = loader.region(Region::new(region.clone()));
    }
    let config = loader.load().await;
    let mut sqs = aws_sdk_sqs::config::Builder::from(&config);
    if config.region().is_none() {
        let region = region_of_queue_url(queue_url).ok_or(
            "no AWS region: give --region, set AWS_REGION, or set a region in your AWS profile",
        )?;
        sqs = sqs.region(Region::new(region));
    }
    Ok(aws_sdk_sqs::Client::from_conf(sqs.build()))
}

/// The region in an AWS queue URL: https://sqs.REGION.amazonaws.com/... or
/// the legacy https://REGION.queue.amazonaws.com/...
fn region_of_queue_url(url: &str) -> Option<String> {
    let host = url.split_once("://")?.1.split(['/', ':']).next()?;
    let labels: Vec<&str> = host.split('.').collect();
    match labels.as_slice() {
        ["sqs", region, "amazonaws", ..] | [region, "queue", "amazonaws", ..] => {
            Some((*region).to_owned())
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_region_is_read_from_an_aws_queue_url() {
        assert_eq!(
            region_of_queue_url("https://sqs.eu-west-2.amazonaws.com/123456789012/q").as_deref(),
            Some("eu-west-2")
        );
        assert_eq!(
            region_of_queue_url("https://eu-west-1.queue.amazonaws.com/123456789012/q").as_deref(),
            Some("eu-west-1")
        );
        assert_eq!(
            region_of_queue_url("http://127.0.0.1:4566/123456789012/q"),
            None
        );
        assert_eq!(region_of_queue_url("not a url"), None);
    }

    #[test]
    fn a_body_is_saved_whole_under_its_event() {
        let dir = std::env::temp_dir().join(format!("hub-cli-save-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let delivery = Delivery {
            message_id: None,
            event_id: "85c8a1c5-a8a1-41c9-bb99-20956fa66218".into(),
            event_type: "vaccinations-1".into(),
            lifecycle: hub_cli::subscriber::Lifecycle::New,
            content_type: hub_cli::subscriber::ContentType::FhirJson,
            subscriptions: Vec::new(),
            nhs_number: None,
            out_of_order: None,
            replay: None,
            subscriber: None,
            receive_count: None,
            body: "{\"resourceType\":\"Bundle\"}".into(),
        };
        save(&dir, &delivery).unwrap();
        let path = dir.join("vaccinations-1-85c8a1c5-a8a1-41c9-bb99-20956fa66218.json");
        assert_eq!(fs::read_to_string(&path).unwrap(), delivery.body);
        let names: Vec<_> = fs::read_dir(&dir).unwrap().flatten().collect();
        assert_eq!(names.len(), 1, "no partial file is left");
        // Into a folder that is gone: an error naming the file.
        fs::remove_dir_all(&dir).unwrap();
        let error = save(&dir, &delivery).unwrap_err();
        assert!(error.starts_with("saving to "), "{error}");
    }
}
