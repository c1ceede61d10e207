//! Schemathesis (infra/requirements.txt) against the local API: requests
//! generated from openapi.yaml, valid and invalid, for every operation, as a
//! client holding every role. No answer may be a 5xx, nor differ from what
//! the description promises (status, content type, headers, body schema).
//! The seed is fixed and the examples bounded, so that a run is repeatable
//! and takes a couple of minutes.

use std::time::Duration;

use e2e_tests::{Hub, Subscriber, venv_tool};
use hub::EventType;
use tokio::process::Command;

const OPENAPI: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../openapi.yaml");
const ODS_CODE: &str = "A83627";
const NHS_NUMBER: &str = "9912003888";
/// The MessageHeader id of events/nems/vaccinations-1-new.xml.
const EVENT_ID: &str = "85c8a1c5-a8a1-41c9-bb99-20956fa66218";

/// Examples per operation and phase: enough to reach every parameter and
/// body schema, few enough for 31 operations to fit in the time limit.
const MAX_EXAMPLES: &str = "25";
const SEED: &str = "20261125";
/// Well inside the 5 minutes an access token lives (every request carries
/// the one token), and CI's patience.
const TIME_LIMIT: Duration = Duration::from_secs(150);

#[tokio::test(flavor = "multi_thread")]
async fn schemathesis_finds_no_server_error_and_no_answer_off_the_description() {
    let schemathesis = venv_tool("schemathesis");
    let hub = Hub::start().await;
    let every_event_type: Vec<&str> = EventType::ALL.iter().map(|t| t.code()).collect();
    let client = hub
        .register_client(
            "publisher",
            ODS_CODE,
            serde_json::json!({
                "roles": ["publisher", "subscriber", "operator", "relationship-publisher"],
                "relationshipSources": ["uk.nhs.validated-relationships-service"],
                "publishEventTypes": every_event_type,
                "publishForOds": [ODS_CODE],
                "subscribeExplicit": true,
                "subscribeGeneric": {"GP_GP_GP": [ODS_CODE]},
            }),
        )
        .await;
    let everything = hub
        .onboard_client(client, ODS_CODE, &every_event_type)
        .await;
    let config = existing_resources(&hub, &everything).await;
    let scratch = std::env::temp_dir().join(format!("schemathesis-{}", std::process::id()));
    std::fs::create_dir_all(&scratch).expect("a scratch directory for schemathesis");
    let config_file = scratch.join("schemathesis.toml");
    std::fs::write(&config_file, config).expect("writing the schemathesis config");
    let run = Command::new(schemathesis)
        // Its cache directory goes there too, not into the repository.
        .current_dir(&scratch)
        .arg("--config-file")
        .arg(&config_file)
        .arg("run")
        .arg(OPENAPI)
        .args(["--url", &hub.api])
        .args([
            "--header",
            &format!("Authorization: Bearer {}", everything.token),
        ])
        .args([
            "--checks",
            "not_a_server_error,status_code_conformance,content_type_conformance,\
             response_headers_conformance,response_schema_conformance",
        ])
        .args(["--phases", "examples,coverage,fuzzing"])
        .args(["--max-examples", MAX_EXAMPLES, "--seed", SEED])
        .args(["--workers", "1", "--request-timeout", "30"])
        .args(["--max-time", &(TIME_LIMIT.as_secs() - 30).to_string()])
        .arg("--report-dir")
        .arg(&scratch)
        .env("NO_COLOR", "1")
        .env("SCHEMATHESIS_TELEMETRY", "false")
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(TIME_LIMIT, run)
        .await
        .expect("schemathesis finished within its time limit")
        .expect("running schemathesis");
    let _ = std::fs::remove_dir_all(&scratch);
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    // The summary (operations, test cases, phases) for `--nocapture`.
    println!("{stdout}");
    assert!(
        output.status.success(),
        "schemathesis found problems ({}):\n{stdout}\n{stderr}",
        output.status
    );
    // A run that tested nothing would pass too: the summary must show tests.
    assert!(
        stdout.contains("passed") && !stdout.contains("No operations"),
        "schemathesis ran no tests:\n{stdout}\n{stderr}"
    );
}

/// A schemathesis config naming resources that exist, so that the
/// operations on one (`/subscribers/{id}`, `/Subscription/{id}`...) get past
/// the lookup to the code behind it; generated ids only ever find nothing.
/// Each delete gets a resource of its own, so that the others stay.
async fn existing_resources(hub: &Hub, everything: &Subscriber) -> String {
    let criteria = format!(
        "/Bundle?type=message&Patient.identifier=http://fhir.nhs.net/Id/nhs-number|{NHS_NUMBER}&MessageHeader.event=vaccinations-1"
    );
    let mut subscription_ids = Vec::new();
    for _ in 0..2 {
        let (status, resource) = hub.subscribe(everything, ODS_CODE, &criteria).await;
        assert_eq!(status, 201, "a subscription: {resource}");
        subscription_ids.push(resource["id"].as_str().expect("an id").to_owned());
    }
    let (status, outcome) = hub
        .publish(
            "vaccinations-1",
            Some("application/fhir+xml"),
            &e2e_tests::fixture("nems/vaccinations-1-new.xml"),
        )
        .await;
    assert_eq!(status, 202, "publishing: {outcome}");
    let doomed_subscriber = hub.onboard("RR8", &["vaccinations-1"]).await;
    let doomed_client = hub
        .register_client("publisher", ODS_CODE, serde_json::json!({}))
        .await;
    let operation = |method: &str, path: &str, name: &str, value: &str| {
        format!(
            "[[operations]]\ninclude-method = \"{method}\"\ninclude-path = \"{path}\"\nparameters = {{ \"path.{name}\" = \"{value}\" }}\n\n"
        )
    };
    let subscriber = everything.id.as_str();
    [
        operation("GET", "/subscribers/{id}/status", "id", subscriber),
        operation("PATCH", "/subscribers/{id}", "id", subscriber),
        operation("POST", "/subscribers/{id}/$redrive", "id", subscriber),
        operation("DELETE", "/subscribers/{id}", "id", &doomed_subscriber.id),
        operation("GET", "/Subscription/{id}", "id", &subscription_ids[0]),
        operation(
            "POST",
            "/Subscription/{id}/$replay",
            "id",
            &subscription_ids[0],
        ),
        operation("DELETE", "/Subscription/{id}", "id", &subscription_ids[1]),
        operation("DELETE", "/clients/{id}", "id", &doomed_client.client_id),
        operation("GET", "/events/{id}", "id", EVENT_ID),
        operation("GET", "/children/{nhsNumber}", "nhsNumber", NHS_NUMBER),
        operation(
            "GET",
            "/children/{nhsNumber}/events",
            "nhsNumber",
            NHS_NUMBER,
        ),
    ]
    .concat()
}
