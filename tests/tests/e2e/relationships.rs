//! Relationships through the local stack: a relationship publisher
//! registered for VRS records a mother and ends the relationship; an
//! operator reads it; the trail holds both under the child. What the
//! handler tier cannot show: the template's table, function, route and
//! environment serve it.

use e2e_tests::{DEMO_OPERATOR, Hub};
use serde_json::{Value, json};

const CHILD: &str = "9912003888";

fn sample(name: &str) -> String {
    let path = format!(
        "{}/../events/relationships/{name}.json",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

async fn post(hub: &Hub, token: &str, body: String) -> (u16, Value) {
    let response = hub
        .request(reqwest::Method::POST, "/relationship-events", token)
        .header("content-type", "application/fhir+json")
        .body(body)
        .send()
        .await
        .expect("POST /relationship-events");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread")]
async fn a_relationship_publisher_records_and_ends_a_relationship_that_operators_read() {
    let hub = Hub::shared().await;
    let publisher = hub
        .register_client(
            "relationship-publisher",
            "X26",
            json!({"relationshipSources": ["uk.nhs.validated-relationships-service"]}),
        )
        .await;
    let token = hub.token_for(&publisher).await;
    let created = sample("vrs-proxy-role-created-1");
    let (status, body) = post(&hub, &token, created.clone()).await;
    // Another run against the same shared stack already recorded it.
    assert!([200, 202].contains(&status), "{status} {body}");
    let (status, body) = post(&hub, &token, created).await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = post(&hub, &token, sample("vrs-proxy-role-deleted-1")).await;
    assert!([200, 202].contains(&status), "{status} {body}");

    let operator = hub.token(DEMO_OPERATOR).await;
    let response = hub
        .request(
            reqwest::Method::GET,
            &format!("/children/{CHILD}/relationships"),
            &operator,
        )
        .send()
        .await
        .expect("GET relationships");
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.expect("JSON");
    let ours: Vec<&Value> = body["relationships"]
        .as_array()
        .expect("a list")
        .iter()
        .filter(|relationship| {
            relationship["source"] == format!("vrs:{}", publisher.client_id).as_str()
        })
        .collect();
    assert_eq!(ours.len(), 1, "{body}");
    assert_eq!(ours[0]["relationshipType"], "MTH");
    assert_eq!(ours[0]["status"], "inactive");
    assert_eq!(ours[0]["active"], false);

    // The local stack's demo relationship publisher is registered for VRS.
    let demo = hub.token("demo-relationship-publisher").await;
    let (status, body) = post(&hub, &demo, sample("vrs-proxy-role-changed-1")).await;
    assert!([200, 202].contains(&status), "{status} {body}");

    // A subscriber may not publish relationships.
    let subscriber = hub.token("demo-subscriber-1").await;
    let (status, _) = post(&hub, &subscriber, sample("vrs-proxy-role-created-1")).await;
    assert_eq!(status, 403);

    let (status, trail) = hub.audit_of_patient(CHILD).await;
    assert_eq!(status, 200);
    let actions: Vec<&str> = trail["entries"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|entry| entry["action"].as_str())
        .collect();
    assert!(actions.contains(&"relationship-change"), "{trail}");
    assert!(actions.contains(&"relationship-read"), "{trail}");
}
