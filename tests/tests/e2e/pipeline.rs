//! The whole pipe through the local stack: onboard, subscribe, publish,
//! and read what reaches each subscriber's queue from the emulator.

use std::time::Duration;

use aws_sdk_sqs::types::QueueAttributeName;
use e2e_tests::{DEMO_OPERATOR, DEMO_PUBLISHER, Hub, attribute, first_issue_expression, fixture};
use reqwest::Method;

const NHS_NUMBER: &str = "9912003888";
const XML: &str = "application/fhir+xml";
const JSON: &str = "application/fhir+json";
/// Long enough for dispatch to have run and for a duplicate to show up.
const DELIVERY_WINDOW: Duration = Duration::from_secs(6);

fn explicit(event_type: &str, tag: &str) -> String {
    format!(
        "/Bundle?type=message&Patient.identifier=http://fhir.nhs.net/Id/nhs-number|{NHS_NUMBER}&MessageHeader.event={event_type}&tag={tag}"
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn onboarding_creates_the_queue_its_dlq_and_filtered_topic_subscriptions() {
    let hub = Hub::start().await;
    let subscriber = hub.onboard("A83627", &["vaccinations-1"]).await;
    let (subscriber_id, queue_url) = (&subscriber.id, &subscriber.queue_url);

    let attributes = hub
        .sqs()
        .get_queue_attributes()
        .queue_url(queue_url)
        .attribute_names(QueueAttributeName::All)
        .send()
        .await
        .unwrap()
        .attributes
        .unwrap();
    let redrive: serde_json::Value =
        serde_json::from_str(&attributes[&QueueAttributeName::RedrivePolicy]).unwrap();
    assert!(
        redrive["deadLetterTargetArn"]
            .as_str()
            .unwrap()
            .ends_with("-dlq")
    );
    assert_eq!(
        redrive["maxReceiveCount"].to_string().trim_matches('"'),
        "5"
    );
    let queue_arn = &attributes[&QueueAttributeName::QueueArn];

    let sns = aws_sdk_sns::Client::new(&hub.config);
    let subscriptions = sns
        .list_subscriptions()
        .send()
        .await
        .unwrap()
        .subscriptions
        .unwrap();
    let ours: Vec<_> = subscriptions
        .iter()
        .filter(|s| s.endpoint() == Some(queue_arn))
        .collect();
    assert_eq!(ours.len(), 1, "subscribed to exactly the permitted topic");
    assert!(ours[0].topic_arn().unwrap().ends_with("vaccinations-1"));
    let details = sns
        .get_subscription_attributes()
        .subscription_arn(ours[0].subscription_arn().unwrap())
        .send()
        .await
        .unwrap()
        .attributes
        .unwrap();
    assert_eq!(details["RawMessageDelivery"], "true");
    let filter: serde_json::Value = serde_json::from_str(&details["FilterPolicy"]).unwrap();
    assert_eq!(filter, serde_json::json!({"subscriber": [subscriber_id]}));
}

#[tokio::test(flavor = "multi_thread")]
async fn onboarding_refuses_bad_requests() {
    let hub = Hub::shared().await;
    let operator = hub.token(DEMO_OPERATOR).await;
    let client = hub
        .register_client("subscriber", "A83627", serde_json::json!({}))
        .await;
    let client = &client.client_id;
    let publisher = DEMO_PUBLISHER;
    for (body, status, field) in [
        (
            format!(r#"{{"odsCode":"a1","name":"x","eventTypes":["vaccinations-1"],"clientId":"{client}"}}"#),
            422,
            "odsCode",
        ),
        (
            format!(r#"{{"odsCode":"A83627","name":"x","eventTypes":["vaccinations-9"],"clientId":"{client}"}}"#),
            422,
            "eventTypes[0]",
        ),
        (
            format!(r#"{{"odsCode":"A83627","name":"x","clientId":"{client}"}}"#),
            400,
            "eventTypes",
        ),
        ("not json".to_owned(), 400, "$"),
        (
            r#"{"odsCode":"A83627","name":"x","eventTypes":["vaccinations-1"]}"#.to_owned(),
            400,
            "clientId",
        ),
        // The client must be a registered subscriber of the same organisation.
        (
            format!(r#"{{"odsCode":"A83627","name":"x","eventTypes":["vaccinations-1"],"clientId":"{publisher}"}}"#),
            422,
            "clientId",
        ),
        (
            r#"{"odsCode":"A83627","name":"x","eventTypes":["vaccinations-1"],"clientId":"no-such-client"}"#.to_owned(),
            422,
            "clientId",
        ),
        (
            format!(r#"{{"odsCode":"RR8","name":"x","eventTypes":["vaccinations-1"],"clientId":"{client}"}}"#),
            422,
            "odsCode",
        ),
    ] {
        let response = hub
            .request(reqwest::Method::POST, "/subscribers", &operator)
            .header("content-type", "application/json")
            .body(body.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), status, "{body}");
        let outcome: serde_json::Value = response.json().await.unwrap();
        assert_eq!(first_issue_expression(&outcome), field, "{body}: {outcome}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_explicit_subscription_is_created_and_read_back() {
    let hub = Hub::shared().await;
    let subscriber = hub.onboard("A83627", &["vaccinations-1"]).await;
    let (status, created) = hub
        .subscribe(&subscriber, "A83627", &explicit("vaccinations-1", "gp"))
        .await;
    assert_eq!(status, 201);
    let id = created["id"].as_str().unwrap();
    assert_eq!(created["status"], "active");
    assert_eq!(created["meta"]["versionId"], "1");

    let read = hub
        .request(
            Method::GET,
            &format!("/Subscription/{id}"),
            &subscriber.token,
        )
        .send()
        .await
        .unwrap();
    assert_eq!(read.status(), 200);
    let read: serde_json::Value = read.json().await.unwrap();
    assert_eq!(read, created);

    let xml = hub
        .request(
            Method::GET,
            &format!("/Subscription/{id}"),
            &subscriber.token,
        )
        .header("accept", XML)
        .send()
        .await
        .unwrap();
    assert!(
        xml.text()
            .await
            .unwrap()
            .starts_with("<Subscription xmlns=\"http://hl7.org/fhir\">")
    );

    let missing = hub
        .request(Method::GET, "/Subscription/no-such-id", &subscriber.token)
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);

    // A malformed criteria string: the refusal names the component.
    let malformed = "/Bundle?type=message&Patient.identifier=http://fhir.nhs.net/Id/nhs-number|9912003889&MessageHeader.event=vaccinations-1";
    let (status, outcome) = hub.subscribe(&subscriber, "A83627", malformed).await;
    assert_eq!(status, 422);
    assert!(
        outcome["issue"][0]["diagnostics"]
            .as_str()
            .unwrap()
            .contains("Patient.identifier")
    );

    // A type the subscriber was not onboarded for.
    let (status, outcome) = hub
        .subscribe(
            &subscriber,
            "A83627",
            &explicit("pds-change-of-address-1", "x"),
        )
        .await;
    assert_eq!(status, 422);
    assert!(
        outcome["issue"][0]["diagnostics"]
            .as_str()
            .unwrap()
            .contains("MessageHeader.event")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_published_event_reaches_the_matching_subscriber_once_and_no_one_else() {
    let hub = Hub::start().await;
    let gp = hub.onboard("A83627", &["vaccinations-1"]).await;
    let other = hub.onboard("RR8", &["vaccinations-1"]).await;
    let (status, subscription) = hub
        .subscribe(&gp, "A83627", &explicit("vaccinations-1", "gp-care"))
        .await;
    assert_eq!(status, 201);

    let body = fixture("nems/vaccinations-1-new.xml");
    let (status, outcome) = hub.publish("vaccinations-1", Some(XML), &body).await;
    assert_eq!(status, 202, "{outcome}");
    assert_eq!(outcome["resourceType"], "OperationOutcome");

    let delivered = hub.drain(&gp.queue_url, DELIVERY_WINDOW).await;
    assert_eq!(delivered.len(), 1);
    let message = &delivered[0];
    assert_eq!(
        message.body(),
        Some(body.as_str()),
        "the payload arrives byte for byte"
    );
    assert_eq!(
        attribute(message, "eventId"),
        Some("85c8a1c5-a8a1-41c9-bb99-20956fa66218")
    );
    assert_eq!(attribute(message, "eventType"), Some("vaccinations-1"));
    assert_eq!(attribute(message, "lifecycle"), Some("new"));
    assert_eq!(attribute(message, "nhsNumber"), Some(NHS_NUMBER));
    assert_eq!(attribute(message, "contentType"), Some(XML));
    let matches: serde_json::Value =
        serde_json::from_str(attribute(message, "subscriptions").unwrap()).unwrap();
    assert_eq!(
        matches,
        serde_json::json!([{"id": subscription["id"], "tag": "gp-care"}])
    );
    assert!(
        hub.drain(&other.queue_url, Duration::from_secs(1))
            .await
            .is_empty(),
        "no match, no delivery"
    );

    // The same message again: a duplicate, not delivered twice.
    let (status, outcome) = hub.publish("vaccinations-1", Some(XML), &body).await;
    assert_eq!(status, 200);
    assert_eq!(
        outcome["issue"][0]["details"]["coding"][0]["code"],
        "DUPLICATE"
    );
    // The same id with another body: a conflict.
    let altered = body.replace("CCJN12M", "CCJN99X");
    let (status, outcome) = hub.publish("vaccinations-1", Some(XML), &altered).await;
    assert_eq!(status, 409);
    assert_eq!(
        first_issue_expression(&outcome),
        "Bundle.entry[0].resource.ofType(MessageHeader).id"
    );
    assert!(
        hub.drain(&gp.queue_url, DELIVERY_WINDOW).await.is_empty(),
        "nothing more was delivered"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_change_of_address_in_json_is_delivered_unchanged() {
    let hub = Hub::start().await;
    let chis = hub.onboard("RR8", &["pds-change-of-address-1"]).await;
    let (status, _) = hub
        .subscribe(&chis, "RR8", &explicit("pds-change-of-address-1", "chis"))
        .await;
    assert_eq!(status, 201);

    let body = fixture("nems-json/PDS-Change-Of-Address-ems-example.json");
    let (status, outcome) = hub
        .publish("pds-change-of-address-1", Some(JSON), &body)
        .await;
    assert_eq!(status, 202, "{outcome}");
    let delivered = hub.drain(&chis.queue_url, DELIVERY_WINDOW).await;
    assert_eq!(delivered.len(), 1);
    assert_eq!(delivered[0].body(), Some(body.as_str()));
    assert_eq!(attribute(&delivered[0], "contentType"), Some(JSON));
    assert_eq!(
        attribute(&delivered[0], "eventType"),
        Some("pds-change-of-address-1")
    );

    // Its XML form is a different message with the same MessageHeader.id.
    let xml = fixture("nems/PDS-Change-Of-Address-ems-example.xml");
    let (status, _) = hub
        .publish("pds-change-of-address-1", Some(XML), &xml)
        .await;
    assert_eq!(status, 409);
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_input_gets_a_4xx_operation_outcome_naming_the_fault() {
    let hub = Hub::shared().await;
    let vaccination = fixture("nems/vaccinations-1-new.xml");
    let header = "Bundle.entry[0].resource.ofType(MessageHeader)";
    let routing =
        "extension('https://fhir.nhs.uk/STU3/StructureDefinition/Extension-RoutingDemographics-1')";
    let cases: Vec<(&str, Option<&str>, String, u16, String)> = vec![
        (
            "not XML",
            Some(XML),
            "this is not xml".into(),
            400,
            String::new(),
        ),
        (
            "not a Bundle",
            Some(XML),
            r#"<Patient xmlns="http://hl7.org/fhir"><id value="x"/></Patient>"#.into(),
            400,
            String::new(),
        ),
        ("not JSON", Some(JSON), "{".into(), 400, String::new()),
        (
            "over the size limit",
            Some(XML),
            vaccination.replacen(
                "<Bundle",
                &format!(
                    "<!--{}--><Bundle",
                    "x".repeat(hub::events::MAX_PAYLOAD_BYTES)
                ),
                1,
            ),
            413,
            String::new(),
        ),
        (
            "no content type",
            None,
            vaccination.clone(),
            415,
            String::new(),
        ),
        (
            "wrong content type",
            Some("text/plain"),
            vaccination.clone(),
            415,
            String::new(),
        ),
        (
            "wrong event type for the path",
            Some(XML),
            fixture("nems/PDS-Change-Of-Address-ems-example.xml"),
            422,
            format!("{header}.event.code"),
        ),
        (
            "invalid NHS number",
            Some(XML),
            vaccination.replacen("9912003888", "9912003889", 1),
            422,
            format!("{header}.{routing}.extension('nhsNumber').valueIdentifier.value"),
        ),
        (
            "missing MessageHeader.id",
            Some(XML),
            vaccination.replacen(
                r#"<id value="85c8a1c5-a8a1-41c9-bb99-20956fa66218"/>"#,
                "",
                1,
            ),
            422,
            format!("{header}.id"),
        ),
        (
            "missing routing demographics",
            Some(XML),
            vaccination.replacen(
                "Extension-RoutingDemographics-1",
                "Extension-Something-Else-1",
                1,
            ),
            422,
            format!("{header}.{routing}"),
        ),
        (
            "missing lifecycle",
            Some(XML),
            vaccination.replacen(
                "Extension-MessageEventType-1",
                "Extension-Something-Else-1",
                1,
            ),
            422,
            format!(
                "{header}.extension('https://fhir.nhs.uk/STU3/StructureDefinition/Extension-MessageEventType-1')"
            ),
        ),
    ];
    for (name, content_type, body, status, expression) in cases {
        let (actual, outcome) = hub.publish("vaccinations-1", content_type, &body).await;
        assert_eq!(actual, status, "{name}: {outcome}");
        assert_eq!(outcome["resourceType"], "OperationOutcome", "{name}");
        assert_eq!(outcome["issue"][0]["severity"], "error", "{name}");
        if !expression.is_empty() {
            assert_eq!(first_issue_expression(&outcome), expression, "{name}");
        }
    }
    let unknown = hub
        .request(
            Method::GET,
            "/no/such/route",
            &hub.token(DEMO_PUBLISHER).await,
        )
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), 404);
}
