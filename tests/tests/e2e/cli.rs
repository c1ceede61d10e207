//! The `hub-cli` command line (infra/hub-cli) end to end, through the real
//! binary against the local stack: `hub-cli poll` reads a subscriber's queue
//! with the subscriber's own AWS credentials (the emulator's), shows, saves
//! and deletes deliveries; publishers publish folders; subscribers manage
//! subscriptions and replays; operators onboard, read and redrive, each
//! through the profiles `hub-local run` writes. The subscriber library's
//! poller deletes only what its handler took. Every command's `--help`
//! works.

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use aws_sdk_sqs::types::{MessageAttributeValue, QueueAttributeName};
use e2e_tests::{Emulator, Hub, REGION, fixture};
use hub_cli::subscriber::{Delivery, DeliveryError, Outcome, Poller, ReceiveOptions};

const PATIENT: &str = "9912003888";
const VACCINATION_NEW: &str = "85c8a1c5-a8a1-41c9-bb99-20956fa66218";

/// The `hub-cli` binary, as `cargo build --workspace --bins` builds it.
fn hub_binary() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target"));
    let binary = target.join("debug/hub-cli");
    assert!(
        binary.exists(),
        "{} is missing: run `cargo build --workspace --bins` (infra/test.sh does) before the end-to-end tests",
        binary.display()
    );
    binary
}

/// Runs `hub-cli` as a subscriber would, with AWS credentials and region in the
/// environment and AWS_ENDPOINT_URL at the emulator; nothing of the
/// developer's own AWS or hub set-up reaches it.
async fn run_hub(endpoint: Option<&str>, args: &[&str]) -> Output {
    run_with_config(None, endpoint, args).await
}

/// Runs `hub-cli --profile PROFILE ARGS` with the profiles the hub wrote.
async fn run_as(hub: &Hub, profile: &str, args: &[&str]) -> Output {
    let config = hub.state_dir.join("config.toml");
    let mut all = vec!["--profile", profile];
    all.extend_from_slice(args);
    run_with_config(Some(&config), None, &all).await
}

async fn run_with_config(config: Option<&Path>, endpoint: Option<&str>, args: &[&str]) -> Output {
    let mut command = tokio::process::Command::new(hub_binary());
    command.args(args);
    for (name, _) in std::env::vars_os() {
        let text = name.to_string_lossy();
        if text.starts_with("AWS_") || text.starts_with("HUB_") || name == "NO_COLOR" {
            command.env_remove(name);
        }
    }
    let nowhere = std::env::temp_dir().join("hub-cli-e2e-no-aws-files");
    command
        .env(
            "HUB_CONFIG",
            config.map_or_else(|| nowhere.join("hub.toml"), Path::to_path_buf),
        )
        .env("AWS_CONFIG_FILE", nowhere.join("config"))
        .env("AWS_SHARED_CREDENTIALS_FILE", nowhere.join("credentials"))
        .env("AWS_EC2_METADATA_DISABLED", "true");
    if let Some(endpoint) = endpoint {
        command
            .env("AWS_ENDPOINT_URL", endpoint)
            .env("AWS_ACCESS_KEY_ID", "testing")
            .env("AWS_SECRET_ACCESS_KEY", "testing")
            .env("AWS_REGION", REGION);
    }
    tokio::time::timeout(Duration::from_secs(60), command.output())
        .await
        .expect("hub-cli finishes within a minute")
        .expect("running hub")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// The JSON lines `hub-cli poll --json` printed.
fn json_lines(output: &Output) -> Vec<serde_json::Value> {
    assert!(output.status.success(), "hub-cli poll: {}", stderr(output));
    stdout(output)
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}")))
        .collect()
}

/// Messages on the queue, visible or in flight.
async fn queue_depth(sqs: &aws_sdk_sqs::Client, queue_url: &str) -> u64 {
    let attributes = sqs
        .get_queue_attributes()
        .queue_url(queue_url)
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
        .send()
        .await
        .expect("the queue's attributes")
        .attributes
        .unwrap_or_default();
    [
        QueueAttributeName::ApproximateNumberOfMessages,
        QueueAttributeName::ApproximateNumberOfMessagesNotVisible,
    ]
    .iter()
    .map(|name| {
        attributes
            .get(name)
            .and_then(|count| count.parse::<u64>().ok())
            .expect("a message count")
    })
    .sum()
}

/// A queue whose messages come back one second after a receive that did
/// not delete them.
async fn short_visibility(sqs: &aws_sdk_sqs::Client, queue_url: &str) {
    sqs.set_queue_attributes()
        .queue_url(queue_url)
        .attributes(QueueAttributeName::VisibilityTimeout, "1")
        .send()
        .await
        .expect("setting the visibility timeout");
}

#[tokio::test(flavor = "multi_thread")]
async fn hub_poll_shows_a_delivery_then_saves_and_deletes_it() {
    let hub = Hub::start().await;
    let gp = hub.onboard("A83627", &["vaccinations-1"]).await;
    let criteria = format!(
        "/Bundle?type=message&Patient.identifier=http://fhir.nhs.net/Id/nhs-number|{PATIENT}&MessageHeader.event=vaccinations-1&tag=gp-care"
    );
    let (status, subscription) = hub.subscribe(&gp, "A83627", &criteria).await;
    assert_eq!(status, 201, "{subscription}");
    let subscription_id = subscription["id"].as_str().expect("a subscription id");
    let sqs = hub.sqs();
    short_visibility(&sqs, &gp.queue_url).await;
    let body = fixture("nems/vaccinations-1-new.xml");
    let (status, outcome) = hub
        .publish("vaccinations-1", Some("application/fhir+xml"), &body)
        .await;
    assert_eq!(status, 202, "{outcome}");
    let endpoint = Some(hub.emulator.as_str());
    let queue = gp.queue_url.as_str();

    // Without --ack: the delivery as a JSON line, and it stays on the queue.
    let run = run_hub(
        endpoint,
        &[
            "poll",
            "--queue-url",
            queue,
            "--json",
            "--max",
            "1",
            "--wait",
            "10",
        ],
    )
    .await;
    let lines = json_lines(&run);
    assert_eq!(lines.len(), 1, "{}", stdout(&run));
    let shown = &lines[0];
    assert_eq!(shown["eventId"], VACCINATION_NEW);
    assert_eq!(shown["eventType"], "vaccinations-1");
    assert_eq!(shown["lifecycle"], "new");
    assert_eq!(shown["nhsNumber"], PATIENT);
    assert_eq!(
        shown["subscriptions"],
        serde_json::json!([{"id": subscription_id, "tag": "gp-care"}])
    );
    assert_eq!(shown["contentType"], "application/fhir+xml");
    assert_eq!(shown["subscriber"], gp.id.as_str());
    assert_eq!(shown["receiveCount"], 1);
    assert_eq!(shown["body"], body.as_str());
    assert!(shown.get("outOfOrder").is_none() && shown.get("replay").is_none());
    assert!(
        stderr(&run).contains("left on the queue"),
        "{}",
        stderr(&run)
    );
    assert_eq!(queue_depth(&sqs, queue).await, 1, "the message stays");

    // The table, once the message is visible again: no colours when stdout
    // is not a terminal.
    let run = run_hub(
        endpoint,
        &["poll", "--queue-url", queue, "--max", "1", "--wait", "10"],
    )
    .await;
    assert!(run.status.success(), "{}", stderr(&run));
    let table = stdout(&run);
    let rows: Vec<&str> = table.lines().collect();
    assert_eq!(rows.len(), 2, "a header and a row: {table}");
    assert!(rows[0].starts_with("EVENT TYPE"), "{table}");
    assert_eq!(
        rows[1].split_whitespace().collect::<Vec<_>>(),
        [
            "vaccinations-1",
            "new",
            PATIENT,
            VACCINATION_NEW,
            subscription_id,
            "(gp-care)"
        ],
        "{table}"
    );
    assert!(!table.contains('\x1b'), "{table:?}");
    assert_eq!(queue_depth(&sqs, queue).await, 1, "the message stays");

    // With --ack --save: the exact body in DIR/<eventType>-<eventId>.xml,
    // then the queue is empty.
    let dir = std::env::temp_dir().join(format!("hub-cli-e2e-{}-inbox", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let dir_text = dir.to_string_lossy().into_owned();
    let run = run_hub(
        endpoint,
        &[
            "poll",
            "--queue-url",
            queue,
            "--json",
            "--ack",
            "--save",
            &dir_text,
            "--max",
            "1",
            "--wait",
            "10",
        ],
    )
    .await;
    let lines = json_lines(&run);
    assert_eq!(lines.len(), 1, "{}", stdout(&run));
    assert_eq!(lines[0]["eventId"], VACCINATION_NEW);
    assert_eq!(
        lines[0]["receiveCount"], 3,
        "the same message, a third time"
    );
    let saved = std::fs::read(dir.join(format!("vaccinations-1-{VACCINATION_NEW}.xml")))
        .expect("the saved body");
    assert_eq!(saved, body.as_bytes(), "the body exactly as published");
    let files = std::fs::read_dir(&dir).expect("the save folder").count();
    assert_eq!(files, 1, "one file, no partial one");
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(queue_depth(&sqs, queue).await, 0, "deleted");

    // Nothing comes back: a short wait ends with no message.
    let run = run_hub(
        endpoint,
        &["poll", "--queue-url", queue, "--json", "--wait", "2"],
    )
    .await;
    assert_eq!(json_lines(&run), Vec::<serde_json::Value>::new());
    assert!(stderr(&run).contains("no messages"), "{}", stderr(&run));
}

#[tokio::test(flavor = "multi_thread")]
async fn hub_cli_and_its_poll_explain_themselves_and_fail_cleanly() {
    for args in [&["--help"][..], &["poll", "--help"], &["help", "poll"]] {
        let run = run_hub(None, args).await;
        assert!(run.status.success(), "{args:?}: {}", stderr(&run));
        assert!(stdout(&run).contains("Usage: hub-cli"), "{args:?}");
    }
    assert!(stdout(&run_hub(None, &["poll", "--help"]).await).contains("--queue-url <URL>"));

    // No queue anywhere: one line naming the three ways to give it.
    let run = run_hub(None, &["poll"]).await;
    assert_eq!(run.status.code(), Some(1), "{}", stderr(&run));
    assert!(
        stderr(&run).starts_with("hub-cli: no queue_url: give --queue-url, set HUB_QUEUE_URL, or set queue_url in a profile of "),
        "{}",
        stderr(&run)
    );
    // A usage error: exit status 2, and the usage.
    let run = run_hub(None, &["poll", "--queue-url", "my-queue"]).await;
    assert_eq!(run.status.code(), Some(2), "{}", stderr(&run));
    assert!(stderr(&run).contains("not a queue URL"), "{}", stderr(&run));

    // No region anywhere (and none in a local queue URL): one line, no panic.
    let queue = "http://127.0.0.1:9/000000000000/queue";
    let run = run_hub(None, &["poll", "--queue-url", queue]).await;
    assert_eq!(run.status.code(), Some(1));
    assert_eq!(
        stderr(&run).trim_end(),
        "hub-cli: no AWS region: give --region, set AWS_REGION, or set a region in your AWS profile"
    );

    // Nothing listening at the endpoint: one line naming the queue.
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a port");
        listener.local_addr().expect("its address").port()
    };
    let endpoint = format!("http://127.0.0.1:{closed}");
    let run = run_hub(
        Some(&endpoint),
        &["poll", "--queue-url", queue, "--wait", "0"],
    )
    .await;
    assert_eq!(run.status.code(), Some(1));
    let error = stderr(&run);
    assert_eq!(error.lines().count(), 1, "{error}");
    assert!(
        error.starts_with(&format!("hub-cli: receiving from {queue}: ")),
        "{error}"
    );
    assert!(!error.contains("panicked"), "{error}");
}

fn string(value: &str) -> MessageAttributeValue {
    MessageAttributeValue::builder()
        .data_type("String")
        .string_value(value)
        .build()
        .expect("a String attribute")
}

#[tokio::test(flavor = "multi_thread")]
async fn the_poller_deletes_a_message_only_once_its_handler_took_it() {
    let emulator = Emulator::start().await;
    let sqs = aws_sdk_sqs::Client::new(&emulator.config);
    let queue_url = sqs
        .create_queue()
        .queue_name("subscriber-queue")
        .send()
        .await
        .expect("a queue")
        .queue_url
        .expect("its URL");
    short_visibility(&sqs, &queue_url).await;
    let mut delivery = sqs
        .send_message()
        .queue_url(&queue_url)
        .message_body("<Bundle/>");
    for (name, value) in [
        ("eventId", VACCINATION_NEW),
        ("eventType", "vaccinations-1"),
        ("lifecycle", "update"),
        ("contentType", "application/fhir+xml"),
        ("subscriptions", r#"[{"id":"s-1"}]"#),
        ("outOfOrder", "older-than-current"),
    ] {
        delivery = delivery.message_attributes(name, string(value));
    }
    delivery.send().await.expect("sending a delivery");
    sqs.send_message()
        .queue_url(&queue_url)
        .message_body("not from the hub")
        .message_attributes("eventId", string(VACCINATION_NEW))
        .send()
        .await
        .expect("sending a stray message");

    let poller = Poller::new(sqs.clone(), &queue_url);
    let options = ReceiveOptions::default().wait(Duration::from_secs(5));
    let pause = Duration::from_millis(1500);

    // A handler that fails: nothing is deleted; the stray message is
    // reported, never handed to the handler.
    let mut handed = 0;
    let outcomes = poller
        .poll_once(options, async |_: &Delivery| {
            handed += 1;
            Err("the store is down")
        })
        .await
        .expect("a poll");
    assert_eq!((outcomes.len(), handed), (2, 1), "{outcomes:?}");
    for outcome in &outcomes {
        match outcome {
            Outcome::Failed { delivery, error } => {
                assert_eq!(delivery.event_id, VACCINATION_NEW);
                assert_eq!(
                    delivery.out_of_order,
                    Some(hub_cli::subscriber::OutOfOrder::OlderThanCurrent)
                );
                assert_eq!(*error, "the store is down");
            }
            Outcome::Malformed { error, .. } => {
                assert_eq!(*error, DeliveryError::Missing("eventType"));
            }
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(queue_depth(&sqs, &queue_url).await, 2);

    // Handled, but the poller told to keep what it handles: still there.
    tokio::time::sleep(pause).await;
    let keeping = poller.clone().delete_handled(false);
    let outcomes = keeping
        .poll_once(options, async |_: &Delivery| Ok::<(), ()>(()))
        .await
        .expect("a poll");
    assert!(
        outcomes
            .iter()
            .any(|o| matches!(o, Outcome::Handled { deleted: false, .. })),
        "{outcomes:?}"
    );
    assert_eq!(queue_depth(&sqs, &queue_url).await, 2);

    // Handled: deleted. The stray message stays for the dead-letter queue.
    tokio::time::sleep(pause).await;
    let outcomes = poller
        .poll_once(options, async |delivery: &Delivery| {
            assert_eq!(delivery.receive_count, Some(3));
            Ok::<(), ()>(())
        })
        .await
        .expect("a poll");
    assert_eq!(outcomes.len(), 2, "{outcomes:?}");
    assert!(
        outcomes
            .iter()
            .any(|o| matches!(o, Outcome::Handled { deleted: true, .. })),
        "{outcomes:?}"
    );
    assert_eq!(queue_depth(&sqs, &queue_url).await, 1);
}

/// The subcommands a `--help` lists under "Commands:" (without `help`).
fn subcommands(help: &str) -> Vec<String> {
    help.lines()
        .skip_while(|line| line.trim() != "Commands:")
        .skip(1)
        .take_while(|line| !line.trim().is_empty())
        .filter_map(|line| line.split_whitespace().next())
        .filter(|name| *name != "help")
        .map(str::to_owned)
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn every_command_explains_itself() {
    let mut pending = vec![Vec::<String>::new()];
    let mut seen = Vec::new();
    while let Some(path) = pending.pop() {
        let mut args: Vec<&str> = path.iter().map(String::as_str).collect();
        args.push("--help");
        let run = run_hub(None, &args).await;
        assert!(run.status.success(), "{args:?}: {}", stderr(&run));
        let help = stdout(&run);
        let usage = format!("Usage: hub-cli {}", path.join(" "));
        assert!(help.contains(usage.trim_end()), "{args:?}: {help}");
        for name in subcommands(&help) {
            let mut child = path.clone();
            child.push(name);
            pending.push(child);
        }
        seen.push(path.join(" "));
    }
    for command in [
        "token",
        "publish",
        "subscriptions create",
        "subscriptions list",
        "subscriptions delete",
        "poll",
        "replay",
        "replays",
        "events",
        "children",
        "audit",
        "clients register",
        "clients disable",
        "subscribers onboard",
        "subscribers offboard",
        "subscribers status",
        "subscribers redrive",
        "subscribers update",
        "reference load",
        "config",
    ] {
        assert!(seen.iter().any(|s| s == command), "{command} in {seen:?}");
    }
}

/// The repository's folder of the NEMS example messages.
fn examples() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../events/nems")
}

#[tokio::test(flavor = "multi_thread")]
async fn hub_publish_sends_a_folder_and_sums_up_what_the_hub_made_of_it() {
    let hub = Hub::start().await;
    let examples = examples();
    let count = std::fs::read_dir(&examples)
        .expect("the examples")
        .flatten()
        .filter(|entry| entry.path().extension().is_some_and(|ext| ext == "xml"))
        .count();
    assert!(count >= 19, "{count} examples");

    // Beside them: one example again (a duplicate), one the hub refuses,
    // one with no event type (never sent) and a file that is not a message.
    let extra = std::env::temp_dir().join(format!("hub-cli-e2e-{}-publish", std::process::id()));
    let _ = std::fs::remove_dir_all(&extra);
    std::fs::create_dir_all(&extra).expect("a folder");
    let vaccination = fixture("nems/vaccinations-1-new.xml");
    std::fs::write(extra.join("again.xml"), &vaccination).expect("a file");
    let document = vaccination
        .replacen("<type value=\"message\"/>", "<type value=\"document\"/>", 1)
        .replacen(VACCINATION_NEW, "0e6c1bd4-3b56-4ae5-b1a5-0f0f0f0f0f0f", 1);
    std::fs::write(extra.join("document.xml"), document).expect("a file");
    std::fs::write(
        extra.join("no-header.json"),
        r#"{"resourceType":"Bundle","type":"message"}"#,
    )
    .expect("a file");
    std::fs::write(
        extra.join("notes.txt"),
        "not published: neither .xml nor .json",
    )
    .expect("a file");
    let examples_text = examples.to_string_lossy().into_owned();
    let extra_text = extra.to_string_lossy().into_owned();

    let run = run_as(
        &hub,
        "local-publisher",
        &["--json", "publish", &examples_text, &extra_text],
    )
    .await;
    assert_eq!(
        run.status.code(),
        Some(1),
        "a rejection fails the run: {}",
        stderr(&run)
    );
    let summary: serde_json::Value = serde_json::from_slice(&run.stdout).expect("a JSON summary");
    // One of NHS Digital's examples is refused as published: its routing
    // NHS number fails the check digit (events/derived has it corrected).
    assert_eq!(summary["accepted"], count - 1, "{summary:#}");
    assert_eq!(summary["duplicate"], 1, "{summary:#}");
    assert_eq!(summary["rejected"], 3, "{summary:#}");
    let files = summary["files"].as_array().expect("files");
    assert_eq!(files.len(), count + 3, "notes.txt is not a message file");
    let by_name = |name: &str| {
        files
            .iter()
            .find(|file| file["file"].as_str().is_some_and(|f| f.ends_with(name)))
            .unwrap_or_else(|| panic!("{name} in {summary:#}"))
    };
    assert_eq!(by_name("again.xml")["status"], 200);
    let birth = by_name("BirthNotificationWithMother.xml");
    assert_eq!(birth["status"], 422, "{birth}");
    assert!(
        birth["reasons"][0]
            .as_str()
            .is_some_and(|r| r.contains("check digit") && r.contains("nhsNumber")),
        "{birth}"
    );
    let document = by_name("document.xml");
    assert_eq!(document["eventType"], "vaccinations-1");
    assert!(
        document["status"]
            .as_u64()
            .is_some_and(|s| (400..500).contains(&s)),
        "{document}"
    );
    assert!(
        document["reasons"][0]
            .as_str()
            .is_some_and(|r| r.contains("Bundle.type")),
        "the OperationOutcome names the field: {document}"
    );
    let no_header = by_name("no-header.json");
    assert_eq!(no_header["status"], serde_json::Value::Null, "never sent");
    assert!(
        no_header["reasons"][0]
            .as_str()
            .is_some_and(|r| r.starts_with("no event type"))
    );

    // Again, as a table: everything is a duplicate now, the rejections stay.
    let run = run_as(
        &hub,
        "local-publisher",
        &["publish", &examples_text, &extra_text],
    )
    .await;
    assert_eq!(run.status.code(), Some(1), "{}", stderr(&run));
    let text = stdout(&run);
    assert!(
        !text.contains('\x1b'),
        "no colours off a terminal: {text:?}"
    );
    assert_eq!(
        text.lines().filter(|l| l.starts_with("duplicate")).count(),
        count,
        "{text}"
    );
    assert!(
        text.contains("    "),
        "reasons indented under their file: {text}"
    );
    let last = text.lines().last().expect("a summary row");
    assert_eq!(
        last.split_whitespace().collect::<Vec<_>>(),
        [
            "0".to_owned(),
            count.to_string(),
            "3".into(),
            (count + 3).to_string()
        ],
        "{text}"
    );

    // Only good files: success.
    let good = examples.join("vaccinations-1-new.xml");
    let run = run_as(
        &hub,
        "local-publisher",
        &["publish", &good.to_string_lossy()],
    )
    .await;
    assert!(run.status.success(), "{}", stderr(&run));
    let _ = std::fs::remove_dir_all(&extra);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_subscriber_subscribes_polls_replays_and_unsubscribes_with_the_cli() {
    let hub = Hub::start().await;
    let gp = "local-subscriber-1";
    let criteria = format!(
        "/Bundle?type=message&Patient.identifier=http://fhir.nhs.net/Id/nhs-number|{PATIENT}&MessageHeader.event=vaccinations-1&tag=gp-care"
    );
    let run = run_as(
        &hub,
        gp,
        &["--json", "subscriptions", "create", "--criteria", &criteria],
    )
    .await;
    assert!(run.status.success(), "{}", stderr(&run));
    let created: serde_json::Value = serde_json::from_slice(&run.stdout).expect("JSON");
    let subscription = created["id"].as_str().expect("an id").to_owned();
    assert_eq!(created["status"], "active");

    let run = run_as(&hub, gp, &["subscriptions", "list"]).await;
    assert!(run.status.success(), "{}", stderr(&run));
    let table = stdout(&run);
    assert!(table.starts_with("ID"), "{table}");
    assert!(
        table
            .lines()
            .any(|l| l.starts_with(&subscription) && l.contains("active")),
        "{table}"
    );

    let example = examples().join("vaccinations-1-new.xml");
    let run = run_as(
        &hub,
        "local-publisher",
        &["publish", &example.to_string_lossy()],
    )
    .await;
    assert!(run.status.success(), "{}", stderr(&run));

    // The profile names the queue and the emulator: nothing else to give.
    let run = run_as(
        &hub,
        gp,
        &["--json", "poll", "--ack", "--max", "1", "--wait", "20"],
    )
    .await;
    let lines = json_lines(&run);
    assert_eq!(lines.len(), 1, "{}", stdout(&run));
    assert_eq!(lines[0]["eventId"], VACCINATION_NEW);
    assert_eq!(lines[0]["subscriptions"][0]["id"], subscription.as_str());
    assert!(lines[0].get("replay").is_none());

    let run = run_as(
        &hub,
        gp,
        &[
            "--json",
            "replay",
            &subscription,
            "--since",
            "2000-01-01",
            "--follow",
            "--timeout",
            "60",
        ],
    )
    .await;
    assert!(run.status.success(), "{}", stderr(&run));
    let job: serde_json::Value = serde_json::from_slice(&run.stdout).expect("JSON");
    assert_eq!(job["status"], "completed", "{job:#}");
    assert_eq!(job["delivered"], 1, "{job:#}");
    let replay = job["id"].as_str().expect("a replay id").to_owned();

    let run = run_as(&hub, gp, &["replays", &replay]).await;
    assert!(run.status.success(), "{}", stderr(&run));
    assert!(
        stdout(&run)
            .lines()
            .any(|l| l.starts_with("status") && l.ends_with("completed")),
        "{}",
        stdout(&run)
    );

    let run = run_as(&hub, gp, &["poll", "--ack", "--max", "1", "--wait", "20"]).await;
    assert!(run.status.success(), "{}", stderr(&run));
    assert!(
        stdout(&run).contains(&format!("replay={replay}")),
        "{}",
        stdout(&run)
    );

    let run = run_as(&hub, gp, &["subscriptions", "delete", &subscription]).await;
    assert!(run.status.success(), "{}", stderr(&run));
    assert_eq!(
        stdout(&run).trim(),
        format!("subscription {subscription} deleted")
    );
    let run = run_as(&hub, gp, &["--json", "subscriptions", "list"]).await;
    assert!(run.status.success(), "{}", stderr(&run));
    let list: serde_json::Value = serde_json::from_slice(&run.stdout).expect("JSON");
    assert_eq!(list, serde_json::json!([]));

    // A refusal: one line with the OperationOutcome's reason, exit 1.
    let run = run_as(
        &hub,
        gp,
        &[
            "subscriptions",
            "create",
            "--criteria",
            "/Bundle?type=message",
        ],
    )
    .await;
    assert_eq!(run.status.code(), Some(1));
    let error = stderr(&run);
    assert!(
        error.starts_with("hub-cli: the hub refused POST /Subscription (4"),
        "{error}"
    );
    assert_eq!(error.lines().count(), 1, "{error}");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_operator_onboards_reads_and_offboards_with_the_cli() {
    let hub = Hub::start().await;
    let operator = "local-operator";

    let run = run_as(&hub, operator, &["token"]).await;
    assert!(run.status.success(), "{}", stderr(&run));
    let token = stdout(&run).trim().to_owned();
    let response = hub
        .request(
            reqwest::Method::GET,
            &format!("/audit?patient={PATIENT}"),
            &token,
        )
        .send()
        .await
        .expect("GET /audit");
    assert_eq!(response.status(), 200, "the printed token works");

    // A new subscriber client, registered from a file, then onboarded.
    let client_id = format!("cli-subscriber-{}", std::process::id());
    let jwk = hub::auth::public_jwk(
        &e2e_tests::test_key(),
        jsonwebtoken::Algorithm::ES256,
        "k-1",
    )
    .expect("a JWK");
    let registration = serde_json::json!({
        "clientId": client_id,
        "odsCode": "Y12345",
        "roles": ["subscriber"],
        "keys": {"keys": [jwk]},
        "subscribeExplicit": true,
    });
    let file = std::env::temp_dir().join(format!("{client_id}.json"));
    std::fs::write(&file, registration.to_string()).expect("a registration file");
    let run = run_as(
        &hub,
        operator,
        &["clients", "register", &file.to_string_lossy()],
    )
    .await;
    assert!(run.status.success(), "{}", stderr(&run));
    assert_eq!(stdout(&run).trim(), format!("{client_id}: registered"));
    let _ = std::fs::remove_file(&file);

    let run = run_as(
        &hub,
        operator,
        &[
            "--json",
            "subscribers",
            "onboard",
            "--client",
            &client_id,
            "--ods",
            "Y12345",
            "--name",
            "CLI test team",
            "--event-types",
            "vaccinations-1,newborn-hearing-1",
        ],
    )
    .await;
    assert!(run.status.success(), "{}", stderr(&run));
    let onboarded: serde_json::Value = serde_json::from_slice(&run.stdout).expect("JSON");
    let subscriber = onboarded["id"].as_str().expect("an id").to_owned();
    assert_eq!(
        onboarded["eventTypes"],
        serde_json::json!(["newborn-hearing-1", "vaccinations-1"])
    );

    let run = run_as(
        &hub,
        operator,
        &[
            "--json",
            "subscribers",
            "update",
            &subscriber,
            "--event-types",
            "vaccinations-1",
        ],
    )
    .await;
    assert!(run.status.success(), "{}", stderr(&run));
    let changed: serde_json::Value = serde_json::from_slice(&run.stdout).expect("JSON");
    assert_eq!(changed["eventTypes"], serde_json::json!(["vaccinations-1"]));

    let run = run_as(&hub, operator, &["subscribers", "status", &subscriber]).await;
    assert!(run.status.success(), "{}", stderr(&run));
    let status = stdout(&run);
    assert!(status.contains("dead-letter queue  0 waiting"), "{status}");
    assert!(status.contains("EVENT TYPE"), "{status}");

    let run = run_as(
        &hub,
        operator,
        &["--json", "subscribers", "redrive", &subscriber],
    )
    .await;
    assert!(run.status.success(), "{}", stderr(&run));
    let redrive: serde_json::Value = serde_json::from_slice(&run.stdout).expect("JSON");
    assert_eq!(
        (redrive["moved"].as_u64(), redrive["remaining"].as_bool()),
        (Some(0), Some(false))
    );

    // Something to read: a published example, its child, its audit.
    let example = examples().join("vaccinations-1-new.xml");
    let run = run_as(
        &hub,
        "local-publisher",
        &["publish", &example.to_string_lossy()],
    )
    .await;
    assert!(run.status.success(), "{}", stderr(&run));
    let run = run_as(&hub, operator, &["events", VACCINATION_NEW]).await;
    assert!(run.status.success(), "{}", stderr(&run));
    assert_eq!(
        stdout(&run),
        fixture("nems/vaccinations-1-new.xml"),
        "as published"
    );
    let run = run_as(&hub, operator, &["children", PATIENT, "--events"]).await;
    assert!(run.status.success(), "{}", stderr(&run));
    assert!(
        stdout(&run)
            .lines()
            .any(|l| l.starts_with("vaccinations-1") && l.contains(VACCINATION_NEW)),
        "{}",
        stdout(&run)
    );
    let run = run_as(&hub, operator, &["--json", "children", PATIENT]).await;
    assert!(run.status.success(), "{}", stderr(&run));
    let record: serde_json::Value = serde_json::from_slice(&run.stdout).expect("JSON");
    assert_eq!(record["nhsNumber"], PATIENT);
    let run = run_as(&hub, operator, &["audit", "--patient", PATIENT]).await;
    assert!(run.status.success(), "{}", stderr(&run));
    let audit = stdout(&run);
    assert!(audit.starts_with("AT"), "{audit}");
    assert!(audit.contains("demo-publisher"), "{audit}");

    let run = run_as(&hub, operator, &["subscribers", "offboard", &subscriber]).await;
    assert!(run.status.success(), "{}", stderr(&run));
    assert!(stdout(&run).contains("kept 14 days"), "{}", stdout(&run));
    let run = run_as(&hub, operator, &["clients", "disable", &client_id]).await;
    assert!(run.status.success(), "{}", stderr(&run));

    // Not an operator: the hub's 403, one line, exit 1.
    let run = run_as(&hub, "local-publisher", &["audit", "--client", &client_id]).await;
    assert_eq!(run.status.code(), Some(1), "{}", stdout(&run));
    assert!(
        stderr(&run).starts_with("hub-cli: the hub refused GET /audit?client="),
        "{}",
        stderr(&run)
    );
    assert!(stderr(&run).contains("(403 Forbidden)"), "{}", stderr(&run));
}
