//! Test support: start the emulator alone (adapter tests) or the whole local
//! hub (end-to-end tests) on free ports, and stop them when dropped.
//!
//! Both need what `infra/setup.sh` installs: the project venv's moto server
//! and a build of the binaries (`cargo build --workspace --bins`). Without
//! them the tests fail and say so; they never skip.

pub mod routing_model;
mod shared;

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

/// moto's server with the project's change (infra/emulator.py).
pub fn moto_server() -> PathBuf {
    venv_tool("hub-emulator")
}

/// A command of the project venv (infra/requirements.txt).
pub fn venv_tool(name: &str) -> PathBuf {
    require(
        repository().join(".venv/bin").join(name),
        "run infra/setup.sh (or infra/test.sh) to create the project venv",
    )
}

/// The API and emulator URLs hub-local prints as it starts. The tests give
/// it port 0 for both, so it binds free ports itself: a port a test picked
/// first could be taken by another test's stack before hub-local bound it.
#[derive(Default)]
struct StackAddresses {
    api: Option<String>,
    emulator: Option<String>,
}

impl StackAddresses {
    fn read(&mut self, line: &str) {
        let first_word = |rest: &str| rest.split_whitespace().next().map(str::to_owned);
        if let Some(rest) = line.strip_prefix("Hub API:") {
            self.api = first_word(rest);
        } else if let Some(rest) = line.strip_prefix("Emulator:") {
            self.emulator = first_word(rest);
        }
    }

    fn both(self) -> Option<(String, String)> {
        Some((self.api?, self.emulator?))
    }
}

pub fn fixture(relative: &str) -> String {
    let path = repository().join("events").join(relative);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The MessageHeader id of events/nems/vaccinations-1-new.xml.
pub const VACCINATION_HEADER_ID: &str = "85c8a1c5-a8a1-41c9-bb99-20956fa66218";

/// The message with a MessageHeader id of its own (its id's last group
/// replaced), so that tests sharing a stack may each publish the same
/// example without one being taken for a resend of another's.
pub fn as_new_message(message: &str, header_id: &str) -> String {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    let number = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let (stem, _) = header_id
        .rsplit_once('-')
        .unwrap_or_else(|| panic!("{header_id} is not a UUID"));
    message.replace(header_id, &format!("{stem}-{number:012x}"))
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
        // Port 0: the emulator binds a free port itself and reports it, so
        // no other test's process can take it in between.
        let (child, port) = hub_local::emulator::start_emulator(&moto_server(), 0)
            .await
            .unwrap_or_else(|error| panic!("starting the emulator: {error}"));
        let endpoint = format!("http://127.0.0.1:{port}");
        let config = sdk_config(&endpoint).await;
        Emulator {
            endpoint,
            config,
            child,
        }
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        stop(&mut self.child);
    }
}

/// A fault rule in force in the local hub, with the calls that matched it
/// and the calls it acted on.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct FaultCount {
    pub rule: String,
    pub calls: u64,
    pub hits: u64,
}

/// The demo clients every local hub registers (infra/hub-local/src/demo.rs).
pub const DEMO_PUBLISHER: &str = "demo-publisher";
pub const DEMO_OPERATOR: &str = "demo-operator";
pub const DEMO_SUBSCRIBER: &str = "demo-subscriber-1";

/// A token is fetched again once it is this old: the hub's live 300 s.
const TOKEN_REUSE: Duration = Duration::from_secs(200);

/// A client system as the tests act it: its id, its key id and its private
/// key.
#[derive(Clone)]
pub struct TestClient {
    pub client_id: String,
    pub kid: String,
    pub key: jsonwebtoken::EncodingKey,
}

impl TestClient {
    /// A client assertion for `token_url`, signed now.
    pub fn assertion(&self, token_url: &str) -> String {
        hub::auth::sign_client_assertion(
            &self.client_id,
            &self.kid,
            &self.key,
            jsonwebtoken::Algorithm::ES256,
            token_url,
            time::OffsetDateTime::now_utc(),
        )
        .expect("signing a client assertion")
    }
}

/// The committed test-only ES256 key (shared/tests/keys/client-ec.pem),
/// used by every client a test registers, each under its own client id.
pub fn test_key() -> jsonwebtoken::EncodingKey {
    let path = repository().join("shared/tests/keys/client-ec.pem");
    let pem = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    jsonwebtoken::EncodingKey::from_ec_pem(&pem).expect("the test key is a P-256 key")
}

/// A subscriber onboarded by a test, with the client that acts as it and
/// that client's access token.
pub struct Subscriber {
    pub id: String,
    pub queue_url: String,
    pub client: TestClient,
    pub token: String,
}

/// The whole local hub: emulator, functions, API and stream mapping, with
/// its own state directory (and so its own demo client keys).
pub struct Hub {
    pub api: String,
    pub emulator: String,
    pub config: aws_config::SdkConfig,
    pub http: reqwest::Client,
    pub state_dir: PathBuf,
    /// The fault proxy's admin URL, when the hub was started with faults.
    faults: Option<String>,
    tokens: std::sync::Mutex<std::collections::HashMap<String, (String, std::time::Instant)>>,
    /// The hub-local process when this handle started it (and stops it when
    /// dropped); None for a shared stack, which lives as long as the test
    /// binary.
    child: Option<Child>,
}

impl Hub {
    pub async fn start() -> Self {
        Hub::start_with(None, &[]).await
    }

    /// A hub whose hub-local process has these environment variables set
    /// (e.g. HUB_SCHEDULE_SECONDS, to run scheduled functions every second).
    pub async fn start_with_env(variables: &[(&str, &str)]) -> Self {
        Hub::start_with(None, variables).await
    }

    /// A hub whose functions and stream poller reach the emulator through
    /// the fault proxy, with these rules from the start (hub-local's
    /// `--faults`; "" for none yet). The demo subscribers are onboarded
    /// through it too, so rules that break onboarding stop the start-up:
    /// inject those with [`Hub::inject`] once it is up.
    pub async fn start_with_faults(rules: &str) -> Self {
        Hub::start_with(Some(rules), &[]).await
    }

    async fn start_with(fault_rules: Option<&str>, variables: &[(&str, &str)]) -> Self {
        let binary = require(
            target_dir().join("debug/hub-local"),
            "run `cargo build --workspace --bins` (infra/test.sh does) before the end-to-end tests",
        );
        static STARTED: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let state_dir = std::env::temp_dir().join(format!(
            "hub-e2e-{}-{}",
            std::process::id(),
            STARTED.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        ));
        let mut command = Command::new(binary);
        command
            .args(["run", "--template"])
            .arg(repository().join("template.yaml"))
            .env("HUB_API_PORT", "0")
            .env("HUB_EMULATOR_PORT", "0")
            .env("HUB_LOCAL_STATE_DIR", &state_dir)
            .env_remove("HUB_FAULTS")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true);
        if let Some(rules) = fault_rules {
            command.args(["--faults", rules]);
        }
        command.envs(variables.iter().copied());
        let mut child = command.spawn().expect("starting hub-local");
        let stdout = child.stdout.take().expect("hub-local's stdout");
        let mut lines = BufReader::new(stdout).lines();
        // Start-up includes registering the demo clients and onboarding the
        // demo subscribers through the API; tests start many hubs at once.
        let mut faults = None;
        let mut addresses = StackAddresses::default();
        let ready = tokio::time::timeout(Duration::from_secs(120), async {
            while let Ok(Some(line)) = lines.next_line().await {
                if let Some(rest) = line.strip_prefix("Faults:") {
                    faults = rest.split_whitespace().next().map(str::to_owned);
                }
                addresses.read(&line);
                if line.starts_with("Ready.") {
                    return true;
                }
            }
            false
        })
        .await;
        let (Ok(true), Some((api, emulator))) = (ready, addresses.both()) else {
            stop(&mut child);
            let _ = std::fs::remove_dir_all(&state_dir);
            panic!("the local hub did not become ready");
        };
        if faults.is_some() != fault_rules.is_some() {
            stop(&mut child);
            let _ = std::fs::remove_dir_all(&state_dir);
            panic!("the local hub did not report its fault proxy");
        }
        // Keep draining its output so the hub never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Hub {
            api,
            config: sdk_config(&emulator).await,
            emulator,
            http: reqwest::Client::new(),
            state_dir,
            faults,
            tokens: Default::default(),
            child: Some(child),
        }
    }

    /// A handle on the stack shared by the tests of this binary that ask for
    /// it, started by the first of them. They run at the same time, so a
    /// test on the shared stack asserts nothing another could change: no
    /// queue, no child's history, no trail but its own clients'. A test that
    /// reads those, or changes the stack itself (faults, killed functions),
    /// starts its own with [`Hub::start`].
    pub async fn shared() -> Self {
        let stack = shared::stack().await;
        let emulator = stack.emulator.clone();
        Hub {
            api: stack.api.clone(),
            config: sdk_config(&emulator).await,
            emulator,
            http: reqwest::Client::new(),
            state_dir: stack.state_dir.clone(),
            faults: None,
            tokens: Default::default(),
            child: None,
        }
    }

    fn fault_admin(&self) -> &str {
        self.faults
            .as_deref()
            .expect("a hub started with Hub::start_with_faults")
    }

    async fn change_faults(&self, method: reqwest::Method, rules: &str) -> Vec<FaultCount> {
        let response = self
            .http
            .request(method, self.fault_admin())
            .body(rules.to_owned())
            .send()
            .await
            .expect("the fault proxy's admin endpoint");
        let status = response.status();
        let text = response.text().await.unwrap_or_default();
        assert_eq!(status, 200, "fault rules '{rules}': {text}");
        serde_json::from_str(&text).expect("the fault rules and their counts")
    }

    /// Adds fault rules (docs/reliability.md gives their form), each
    /// counting calls from now.
    pub async fn inject(&self, rules: &str) -> Vec<FaultCount> {
        self.change_faults(reqwest::Method::POST, rules).await
    }

    /// Replaces the fault rules with these ("" for none), each counting
    /// calls from now.
    pub async fn set_faults(&self, rules: &str) -> Vec<FaultCount> {
        self.change_faults(reqwest::Method::PUT, rules).await
    }

    /// Removes every fault rule: calls pass unchanged from now.
    pub async fn clear_faults(&self) {
        self.change_faults(reqwest::Method::DELETE, "").await;
    }

    /// The rules in force with their counts.
    pub async fn fault_counts(&self) -> Vec<FaultCount> {
        self.change_faults(reqwest::Method::GET, "").await
    }

    /// How many calls the rule (as it was written) acted on.
    pub async fn fault_hits(&self, rule: &str) -> u64 {
        self.fault_counts()
            .await
            .iter()
            .find(|count| count.rule == rule)
            .unwrap_or_else(|| panic!("no fault rule '{rule}' in force"))
            .hits
    }

    /// SDK configuration that goes through the fault proxy, as the
    /// functions do (a subscriber whose receives fail, say).
    pub async fn faulty_config(&self) -> aws_config::SdkConfig {
        let endpoint = self.fault_admin().trim_end_matches("/_faults").to_owned();
        sdk_config(&endpoint).await
    }

    /// Kills (SIGKILL) this hub's running instances of a function binary,
    /// as a crash would; the local stack starts it again for the next
    /// invocation. How many were killed.
    pub fn kill_function(&self, binary: &str) -> usize {
        let Some(hub_pid) = self.child.as_ref().and_then(Child::id) else {
            panic!("kill_function needs a hub of the test's own (Hub::start)");
        };
        let mut killed = 0;
        for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
            let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
                continue;
            };
            let parent = std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .ok()
                .and_then(|stat| {
                    // The command name may hold spaces: fields follow its ')'.
                    let fields = stat.rsplit_once(')')?.1.to_owned();
                    fields.split_whitespace().nth(1)?.parse::<u32>().ok()
                });
            let name = std::fs::read_link(format!("/proc/{pid}/exe"))
                .ok()
                .and_then(|exe| exe.file_name().map(|n| n.to_string_lossy().into_owned()));
            if parent == Some(hub_pid) && name.as_deref() == Some(binary) {
                // SAFETY: signalling a child of the hub this test started.
                if unsafe { libc::kill(pid, libc::SIGKILL) } == 0 {
                    killed += 1;
                }
            }
        }
        killed
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.api)
    }

    /// The token endpoint's URL: the audience of client assertions.
    pub fn token_url(&self) -> String {
        self.url("/oauth2/token")
    }

    pub fn sqs(&self) -> aws_sdk_sqs::Client {
        aws_sdk_sqs::Client::new(&self.config)
    }

    /// A request with the bearer token.
    pub fn request(
        &self,
        method: reqwest::Method,
        path: &str,
        token: &str,
    ) -> reqwest::RequestBuilder {
        self.http.request(method, self.url(path)).bearer_auth(token)
    }

    /// One of the demo clients the hub registered, with the key it made.
    pub fn demo_client(&self, name: &str) -> TestClient {
        let path = self.state_dir.join("clients").join(format!("{name}.pem"));
        let pem = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        TestClient {
            client_id: name.to_owned(),
            kid: format!("{name}-1"),
            key: jsonwebtoken::EncodingKey::from_ec_pem(&pem).expect("a demo client key"),
        }
    }

    /// POSTs a client assertion to the token endpoint, as it is.
    pub async fn exchange(&self, assertion: &str) -> reqwest::Response {
        self.http
            .post(self.token_url())
            .header("content-type", "application/x-www-form-urlencoded")
            .body(hub::auth::token_request_form(assertion))
            .send()
            .await
            .expect("POST /oauth2/token")
    }

    /// A fresh access token for the client.
    pub async fn token_for(&self, client: &TestClient) -> String {
        let response = self.exchange(&client.assertion(&self.token_url())).await;
        let status = response.status();
        let body: serde_json::Value = response.json().await.expect("a JSON token answer");
        assert_eq!(status, 200, "a token for {}: {body}", client.client_id);
        body["access_token"]
            .as_str()
            .expect("an access_token")
            .to_owned()
    }

    /// An access token for a demo client, reused while it is young.
    pub async fn token(&self, demo_client: &str) -> String {
        let cached = self
            .tokens
            .lock()
            .expect("the token cache")
            .get(demo_client)
            .filter(|(_, at)| at.elapsed() < TOKEN_REUSE)
            .map(|(token, _)| token.clone());
        if let Some(token) = cached {
            return token;
        }
        let token = self.token_for(&self.demo_client(demo_client)).await;
        self.tokens.lock().expect("the token cache").insert(
            demo_client.to_owned(),
            (token.clone(), std::time::Instant::now()),
        );
        token
    }

    /// POST /clients as the demo operator, with the body as given.
    pub async fn register(&self, registration: &serde_json::Value) -> reqwest::Response {
        let operator = self.token(DEMO_OPERATOR).await;
        self.request(reqwest::Method::POST, "/clients", &operator)
            .header("content-type", "application/json")
            .body(registration.to_string())
            .send()
            .await
            .expect("POST /clients")
    }

    /// Registers a new client (with the test key) for the role and
    /// organisation; `extra` adds or overrides registration fields
    /// (publishEventTypes, subscribeExplicit...).
    pub async fn register_client(
        &self,
        role: &str,
        ods_code: &str,
        extra: serde_json::Value,
    ) -> TestClient {
        let client_id = format!(
            "test-{role}-{}",
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or_default()
        );
        let kid = format!("{client_id}-key");
        let key = test_key();
        let jwk = hub::auth::public_jwk(&key, jsonwebtoken::Algorithm::ES256, &kid)
            .expect("the public JWK of the test key");
        let mut registration = serde_json::json!({
            "clientId": client_id,
            "odsCode": ods_code,
            "roles": [role],
            "keys": {"keys": [jwk]},
        });
        if let (Some(fields), Some(extra)) = (registration.as_object_mut(), extra.as_object()) {
            for (name, value) in extra {
                fields.insert(name.clone(), value.clone());
            }
        }
        let response = self.register(&registration).await;
        let status = response.status();
        let body = response.text().await.unwrap_or_default();
        assert_eq!(status, 201, "registering {client_id}: {body}");
        TestClient {
            client_id,
            kid,
            key,
        }
    }

    /// Registers a subscriber client of the organisation (explicit
    /// subscriptions, and GP_GP_GP ones for its own code), onboards it as
    /// the demo operator, and gets it a token.
    pub async fn onboard(&self, ods_code: &str, event_types: &[&str]) -> Subscriber {
        self.onboard_with(
            ods_code,
            event_types,
            serde_json::json!({
                "subscribeExplicit": true,
                "subscribeGeneric": {"GP_GP_GP": [ods_code]},
            }),
        )
        .await
    }

    /// Creates a subscription as the subscriber; returns the response
    /// status and body.
    pub async fn subscribe(
        &self,
        subscriber: &Subscriber,
        ods_code: &str,
        criteria: &str,
    ) -> (u16, serde_json::Value) {
        let resource = subscription_resource(&subscriber.id, ods_code, criteria);
        let response = self
            .request(reqwest::Method::POST, "/Subscription", &subscriber.token)
            .header("content-type", "application/fhir+json")
            .body(resource.to_string())
            .send()
            .await
            .expect("POST /Subscription");
        let status = response.status().as_u16();
        (status, response.json().await.expect("a JSON answer"))
    }

    /// Publishes a body as the demo publisher; returns the status and the
    /// OperationOutcome (JSON).
    pub async fn publish(
        &self,
        event_type: &str,
        content_type: Option<&str>,
        body: &str,
    ) -> (u16, serde_json::Value) {
        let token = self.token(DEMO_PUBLISHER).await;
        self.publish_as(&token, event_type, content_type, body)
            .await
    }

    /// Publishes a body with the token; returns the status and the
    /// OperationOutcome (JSON).
    pub async fn publish_as(
        &self,
        token: &str,
        event_type: &str,
        content_type: Option<&str>,
        body: &str,
    ) -> (u16, serde_json::Value) {
        let mut request = self
            .request(
                reqwest::Method::POST,
                &format!("/events/{event_type}"),
                token,
            )
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

    /// What arrives on a queue until at least `expected` messages have come
    /// (or `limit` has passed), and then for `window` more, to see any
    /// extra: a fixed window alone fails a busy machine whose emulator is
    /// slow to hand over many messages, not the hub.
    pub async fn drain_at_least(
        &self,
        queue_url: &str,
        expected: usize,
        limit: Duration,
        window: Duration,
    ) -> Vec<Message> {
        let sqs = self.sqs();
        let deadline = tokio::time::Instant::now() + limit;
        let mut messages = Vec::new();
        while messages.len() < expected && tokio::time::Instant::now() < deadline {
            messages.extend(receive_all(&sqs, queue_url, Duration::from_secs(1)).await);
        }
        messages.extend(receive_all(&sqs, queue_url, window).await);
        messages
    }
}

impl Drop for Hub {
    fn drop(&mut self) {
        if let Some(child) = self.child.as_mut() {
            stop(child);
            let _ = std::fs::remove_dir_all(&self.state_dir);
        }
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

/// A request as API Gateway passes it on to a function after the authorizer
/// allowed `caller` (None: no authorizer context, a route it did not guard).
/// For the handler tests, which call the handlers with in-memory adapters.
pub fn api_request(
    caller: Option<&hub::auth::Caller>,
    content_type: &str,
    body: Option<&str>,
    path_parameters: &[(&str, &str)],
) -> aws_lambda_events::apigw::ApiGatewayProxyRequest {
    use aws_lambda_events::http::HeaderValue;
    let mut request = aws_lambda_events::apigw::ApiGatewayProxyRequest::default();
    let value = HeaderValue::from_str(content_type).expect("a header value");
    request.headers.insert("content-type", value.clone());
    request.headers.insert("accept", value);
    request.body = body.map(str::to_owned);
    request.path_parameters = path_parameters
        .iter()
        .map(|(name, value)| (name.to_string(), value.to_string()))
        .collect();
    if let Some(caller) = caller {
        request.request_context.authorizer.fields = caller
            .to_context()
            .into_iter()
            .map(|(key, value)| (key, serde_json::Value::String(value)))
            .collect();
    }
    request
}

/// A handler's answer: its status, and its body as JSON (Null when it has
/// none or it is not JSON).
pub fn api_answer(
    response: aws_lambda_events::apigw::ApiGatewayProxyResponse,
) -> (u16, serde_json::Value) {
    let body = match &response.body {
        Some(aws_lambda_events::encodings::Body::Text(text)) => {
            serde_json::from_str(text).unwrap_or(serde_json::Value::Null)
        }
        _ => serde_json::Value::Null,
    };
    (
        u16::try_from(response.status_code).expect("an HTTP status"),
        body,
    )
}

/// The template, as hub-local reads it.
pub fn template() -> &'static hub_local::template::Template {
    static TEMPLATE: std::sync::OnceLock<hub_local::template::Template> =
        std::sync::OnceLock::new();
    TEMPLATE.get_or_init(|| {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../template.yaml");
        let source = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path}: {e}"));
        hub_local::template::Template::parse(&source).unwrap_or_else(|e| panic!("{path}: {e}"))
    })
}

/// The template's table `logical_id` (e.g. "EventsTable"), created under
/// `name` as hub-local creates it for the local stack: keys, indexes,
/// stream and TTL from template.yaml, the one source of the tables'
/// schemas (adapter tests against the emulator).
pub async fn create_table(client: &aws_sdk_dynamodb::Client, logical_id: &str, name: &str) {
    hub_local::resources::create_template_table(client, template(), logical_id, name)
        .await
        .unwrap_or_else(|e| panic!("creating {logical_id} as {name}: {e}"));
}

impl Hub {
    /// Registers a subscriber client of the organisation with the
    /// registration fields in `registration` (e.g. `{"subscribeGeneric":
    /// {"CHO_POSTCODE_CCG": ["15F"]}}`, `{"subscribeExplicit": true}`),
    /// onboards it for the event types as the demo operator, and gets it a
    /// token. Unlike [`Hub::onboard`], it grants nothing it is not given.
    pub async fn onboard_with(
        &self,
        ods_code: &str,
        event_types: &[&str],
        registration: serde_json::Value,
    ) -> Subscriber {
        let client = self
            .register_client("subscriber", ods_code, registration)
            .await;
        self.onboard_client(client, ods_code, event_types).await
    }

    /// Onboards an already registered subscriber client of the organisation
    /// for the event types as the demo operator, and gets it a token.
    pub async fn onboard_client(
        &self,
        client: TestClient,
        ods_code: &str,
        event_types: &[&str],
    ) -> Subscriber {
        let operator = self.token(DEMO_OPERATOR).await;
        let response = self
            .request(reqwest::Method::POST, "/subscribers", &operator)
            .header("content-type", "application/json")
            .body(
                serde_json::json!({
                    "odsCode": ods_code,
                    "name": format!("{ods_code} system"),
                    "eventTypes": event_types,
                    "clientId": client.client_id,
                })
                .to_string(),
            )
            .send()
            .await
            .expect("POST /subscribers");
        let status = response.status();
        let body: serde_json::Value = response.json().await.expect("onboarding answer");
        assert_eq!(status, 201, "onboarding {ods_code}: {body}");
        let token = self.token_for(&client).await;
        Subscriber {
            id: body["id"].as_str().expect("id").to_owned(),
            queue_url: body["queueUrl"].as_str().expect("queueUrl").to_owned(),
            client,
            token,
        }
    }

    /// GET /children/{nhsNumber} as the demo operator: the status and the
    /// body as JSON (Null when it is not JSON).
    pub async fn read_child(&self, nhs_number: &str) -> (u16, serde_json::Value) {
        let operator = self.token(DEMO_OPERATOR).await;
        let response = self
            .request(
                reqwest::Method::GET,
                &format!("/children/{nhs_number}"),
                &operator,
            )
            .send()
            .await
            .expect("GET /children");
        let status = response.status().as_u16();
        let text = response.text().await.unwrap_or_default();
        (
            status,
            serde_json::from_str(&text).unwrap_or(serde_json::Value::Null),
        )
    }

    /// GET /audit?patient={nhsNumber} as the demo operator (first page, the
    /// largest): the status and the body as JSON.
    pub async fn audit_of_patient(&self, nhs_number: &str) -> (u16, serde_json::Value) {
        let operator = self.token(DEMO_OPERATOR).await;
        let response = self
            .request(
                reqwest::Method::GET,
                &format!("/audit?patient={nhs_number}&_count=100"),
                &operator,
            )
            .send()
            .await
            .expect("GET /audit");
        let status = response.status().as_u16();
        let text = response.text().await.unwrap_or_default();
        (
            status,
            serde_json::from_str(&text).unwrap_or(serde_json::Value::Null),
        )
    }
}

/// A YAML file (template.yaml, openapi.yaml) as JSON, with CloudFormation's
/// short tags (`!Ref X`, `!GetAtt X.Arn`, `!Sub ...`) in their long forms
/// (`{"Ref": X}`, `{"Fn::GetAtt": [X, "Arn"]}`, `{"Fn::Sub": ...}`), so that
/// each check handles one form only: hub-local's reader, the one the local
/// stack runs the template with.
pub fn read_yaml(path: &str) -> serde_json::Value {
    let source = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    hub_local::yaml::read_json(&source).unwrap_or_else(|e| panic!("{path}: {e}"))
}
