//! Test support: start the emulator alone (adapter tests) or the whole local
//! hub (end-to-end tests) on free ports, and stop them when dropped.
//!
//! Both need what `infra/setup.sh` installs: the project venv's moto server
//! and a build of the binaries (`cargo build --workspace --bins`). Without
//! them the tests fail and say so; they never skip.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use aws_sdk_sqs::types::{Message, MessageSystemAttributeName};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

pub const REGION: &str = "eu-west-2";

fn repository() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repository().join("target"))
}

fn require(path: PathBuf, hint: &str) -> PathBuf {
    assert!(path.exists(), "{} is missing: {hint}", path.display());
    path
}

pub fn moto_server() -> PathBuf {
    require(
        repository().join(".venv/bin/moto_server"),
        "run infra/setup.sh (or infra/test.sh) to create the project venv",
    )
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|address| address.port())
        .expect("a free port on loopback")
}

pub fn fixture(relative: &str) -> String {
    let path = repository().join("events").join(relative);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// SDK configuration for the emulator at this endpoint.
pub async fn sdk_config(endpoint: &str) -> aws_config::SdkConfig {
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .endpoint_url(endpoint)
        .region(aws_config::Region::new(REGION))
        .credentials_provider(aws_sdk_sqs::config::Credentials::new(
            "testing", "testing", None, None, "tests",
        ))
        .load()
        .await
}

/// Asks the process to stop (SIGTERM) and gives it a moment to stop its
/// own children in order; kill_on_drop ends it if it has not.
fn stop(child: &mut Child) {
    if let Some(pid) = child.id() {
        // SAFETY: signalling our own child process.
        unsafe {
            libc::kill(pid as libc::pid_t, libc::SIGTERM);
        }
        for _ in 0..40 {
            if matches!(child.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// The moto emulator alone.
pub struct Emulator {
    pub endpoint: String,
    pub config: aws_config::SdkConfig,
    child: Child,
}

impl Emulator {
    pub async fn start() -> Self {
        let port = free_port();
        let child = Command::new(moto_server())
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("starting moto_server");
        for _ in 0..200 {
            if tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok()
            {
                let endpoint = format!("http://127.0.0.1:{port}");
                let config = sdk_config(&endpoint).await;
                return Emulator {
                    endpoint,
                    config,
                    child,
                };
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("moto did not start on port {port}");
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        stop(&mut self.child);
    }
}

/// The whole local hub: emulator, functions, API and stream mapping.
pub struct Hub {
    pub api: String,
    pub emulator: String,
    pub config: aws_config::SdkConfig,
    pub http: reqwest::Client,
    child: Child,
}

impl Hub {
    pub async fn start() -> Self {
        let binary = require(
            target_dir().join("debug/hub-local"),
            "run `cargo build --workspace --bins` (infra/test.sh does) before the end-to-end tests",
        );
        let (api_port, emulator_port) = (free_port(), free_port());
        let mut child = Command::new(binary)
            .args(["run", "--template"])
            .arg(repository().join("template.yaml"))
            .env("HUB_API_PORT", api_port.to_string())
            .env("HUB_EMULATOR_PORT", emulator_port.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("starting hub-local");
        let stdout = child.stdout.take().expect("hub-local's stdout");
        let mut lines = BufReader::new(stdout).lines();
        let ready = tokio::time::timeout(Duration::from_secs(60), async {
            while let Ok(Some(line)) = lines.next_line().await {
                if line.starts_with("Ready.") {
                    return true;
                }
            }
            false
        })
        .await;
        assert_eq!(ready, Ok(true), "the local hub did not become ready");
        // Keep draining its output so the hub never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        let emulator = format!("http://127.0.0.1:{emulator_port}");
        Hub {
            api: format!("http://127.0.0.1:{api_port}"),
            config: sdk_config(&emulator).await,
            emulator,
            http: reqwest::Client::new(),
            child,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.api)
    }

    pub fn sqs(&self) -> aws_sdk_sqs::Client {
        aws_sdk_sqs::Client::new(&self.config)
    }

    /// Onboards a subscriber; returns (id, queue URL).
    pub async fn onboard(&self, ods_code: &str, event_types: &[&str]) -> (String, String) {
        let response = self
            .http
            .post(self.url("/subscribers"))
            .header("content-type", "application/json")
            .body(serde_json::json!({"odsCode": ods_code, "name": format!("{ods_code} system"), "eventTypes": event_types}).to_string())
            .send()
            .await
            .expect("POST /subscribers");
        assert_eq!(response.status(), 201, "onboarding {ods_code}");
        let body: serde_json::Value = response.json().await.expect("onboarding answer");
        (
            body["id"].as_str().expect("id").to_owned(),
            body["queueUrl"].as_str().expect("queueUrl").to_owned(),
        )
    }

    /// Creates a subscription; returns the response status and body.
    pub async fn subscribe(
        &self,
        subscriber_id: &str,
        ods_code: &str,
        criteria: &str,
    ) -> (u16, serde_json::Value) {
        let resource = subscription_resource(subscriber_id, ods_code, criteria);
        let response = self
            .http
            .post(self.url("/Subscription"))
            .header("content-type", "application/fhir+json")
            .body(resource.to_string())
            .send()
            .await
            .expect("POST /Subscription");
        let status = response.status().as_u16();
        (status, response.json().await.expect("a JSON answer"))
    }

    /// Publishes a body; returns the status and the OperationOutcome (JSON).
    pub async fn publish(
        &self,
        event_type: &str,
        content_type: Option<&str>,
        body: &str,
    ) -> (u16, serde_json::Value) {
        let mut request = self
            .http
            .post(self.url(&format!("/events/{event_type}")))
            .header("accept", "application/fhir+json")
            .body(body.to_owned());
        if let Some(content_type) = content_type {
            request = request.header("content-type", content_type);
        }
        let response = request.send().await.expect("POST /events");
        let status = response.status().as_u16();
        (status, response.json().await.expect("an OperationOutcome"))
    }

    /// Everything that arrives on a queue within `window`.
    pub async fn drain(&self, queue_url: &str, window: Duration) -> Vec<Message> {
        receive_all(&self.sqs(), queue_url, window).await
    }
}

impl Drop for Hub {
    fn drop(&mut self) {
        stop(&mut self.child);
    }
}

pub fn subscription_resource(
    subscriber_id: &str,
    ods_code: &str,
    criteria: &str,
) -> serde_json::Value {
    serde_json::json!({
        "resourceType": "Subscription",
        "meta": {"profile": ["https://fhir.nhs.uk/STU3/StructureDefinition/EMS-Subscription-1"]},
        "status": "requested",
        "contact": [{"system": "url", "value": format!("https://directory.spineservices.nhs.uk/STU3/Organization/{ods_code}"), "use": "work"}],
        "reason": "Patient under our care",
        "criteria": criteria,
        "channel": {"type": "message", "endpoint": subscriber_id}
    })
}

/// Receives (and deletes) every message that arrives within `window`.
pub async fn receive_all(
    sqs: &aws_sdk_sqs::Client,
    queue_url: &str,
    window: Duration,
) -> Vec<Message> {
    let deadline = tokio::time::Instant::now() + window;
    let mut messages = Vec::new();
    while tokio::time::Instant::now() < deadline {
        let received = sqs
            .receive_message()
            .queue_url(queue_url)
            .max_number_of_messages(10)
            .wait_time_seconds(1)
            .message_attribute_names("All")
            .message_system_attribute_names(MessageSystemAttributeName::ApproximateReceiveCount)
            .send()
            .await
            .expect("receiving from the queue");
        for message in received.messages.unwrap_or_default() {
            if let Some(handle) = &message.receipt_handle {
                sqs.delete_message()
                    .queue_url(queue_url)
                    .receipt_handle(handle)
                    .send()
                    .await
                    .expect("deleting a message");
            }
            messages.push(message);
        }
    }
    messages
}

/// A message attribute's string value.
pub fn attribute<'a>(message: &'a Message, name: &str) -> Option<&'a str> {
    message
        .message_attributes
        .as_ref()?
        .get(name)?
        .string_value()
}

/// The expressions of an OperationOutcome's first issue.
pub fn first_issue_expression(outcome: &serde_json::Value) -> String {
    outcome["issue"][0]["expression"][0]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

/// What reached a queue, by (eventId attribute, body), with its event type;
/// fails the test if the same event arrived twice.
pub fn deliveries_by_event(
    messages: &[Message],
) -> std::collections::BTreeMap<(String, String), hub::EventType> {
    let mut received = std::collections::BTreeMap::new();
    for message in messages {
        let key = (
            attribute(message, "eventId")
                .expect("an eventId attribute")
                .to_owned(),
            message.body().expect("a body").to_owned(),
        );
        let event_type: hub::EventType = attribute(message, "eventType")
            .and_then(|code| code.parse().ok())
            .expect("a catalogue eventType attribute");
        assert!(
            received.insert(key, event_type).is_none(),
            "delivered twice"
        );
    }
    received
}
