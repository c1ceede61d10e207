//! The `hub` command line (infra/hub-cli) end to end: `hub poll` reads a
//! subscriber's queue of the local stack with the subscriber's own AWS
//! credentials (the emulator's), shows, saves and deletes deliveries; and
//! the subscriber library's poller deletes only what its handler took.

use std::path::PathBuf;
use std::process::Output;
use std::time::Duration;

use aws_sdk_sqs::types::{MessageAttributeValue, QueueAttributeName};
use e2e_tests::{Emulator, Hub, REGION, fixture};
use hub_cli::subscriber::{Delivery, DeliveryError, Outcome, Poller, ReceiveOptions};

const PATIENT: &str = "9912003888";
const VACCINATION_NEW: &str = "85c8a1c5-a8a1-41c9-bb99-20956fa66218";

/// The `hub` binary, as `cargo build --workspace --bins` builds it.
fn hub_binary() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target"));
    let binary = target.join("debug/hub");
    assert!(
        binary.exists(),
        "{} is missing: run `cargo build --workspace --bins` (infra/test.sh does) before the end-to-end tests",
        binary.display()
    );
    binary
}

/// Runs `hub` as a subscriber would, with AWS credentials and region in the
/// environment and AWS_ENDPOINT_URL at the emulator; nothing of the
/// developer's own AWS set-up reaches it.
async fn run_hub(endpoint: Option<&str>, args: &[&str]) -> Output {
    let mut command = tokio::process::Command::new(hub_binary());
    command.args(args);
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("AWS_") || name == "NO_COLOR" {
            command.env_remove(name);
        }
    }
    let nowhere = std::env::temp_dir().join("hub-cli-e2e-no-aws-files");
    command
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
        .expect("hub finishes within a minute")
        .expect("running hub")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// The JSON lines `hub poll --json` printed.
fn json_lines(output: &Output) -> Vec<serde_json::Value> {
    assert!(output.status.success(), "hub poll: {}", stderr(output));
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
async fn hub_and_hub_poll_explain_themselves_and_fail_cleanly() {
    for args in [&["--help"][..], &["poll", "--help"], &["help", "poll"]] {
        let run = run_hub(None, args).await;
        assert!(run.status.success(), "{args:?}: {}", stderr(&run));
        assert!(stdout(&run).contains("Usage: hub"), "{args:?}");
    }
    assert!(stdout(&run_hub(None, &["poll", "--help"]).await).contains("--queue-url <URL>"));

    // A usage error: exit status 2, and the usage.
    let run = run_hub(None, &["poll"]).await;
    assert_eq!(run.status.code(), Some(2), "{}", stderr(&run));
    assert!(stderr(&run).contains("--queue-url"), "{}", stderr(&run));
    assert!(stderr(&run).contains("Usage: hub poll"), "{}", stderr(&run));
    let run = run_hub(None, &["poll", "--queue-url", "my-queue"]).await;
    assert_eq!(run.status.code(), Some(2), "{}", stderr(&run));
    assert!(stderr(&run).contains("not a queue URL"), "{}", stderr(&run));

    // No region anywhere (and none in a local queue URL): one line, no panic.
    let queue = "http://127.0.0.1:9/000000000000/queue";
    let run = run_hub(None, &["poll", "--queue-url", queue]).await;
    assert_eq!(run.status.code(), Some(1));
    assert_eq!(
        stderr(&run).trim_end(),
        "hub: no AWS region: give --region, set AWS_REGION, or set a region in your AWS profile"
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
        error.starts_with(&format!("hub: receiving from {queue}: ")),
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
