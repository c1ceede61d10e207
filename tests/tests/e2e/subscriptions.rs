//! The subscription API and its delivery semantics, end to end.

use std::collections::BTreeSet;
use std::time::Duration;

use e2e_tests::{Hub, Subscriber, attribute, first_issue_expression, fixture};
use reqwest::Method;

const PATIENT: &str = "9912003888";
const XML: &str = "application/fhir+xml";
const WINDOW: Duration = Duration::from_secs(6);

fn explicit(event_type: &str, extra: &str) -> String {
    format!(
        "/Bundle?type=message&Patient.identifier=http://fhir.nhs.net/Id/nhs-number|{PATIENT}&MessageHeader.event={event_type}{extra}"
    )
}

fn ids_and_tags(message: &aws_sdk_sqs::types::Message) -> BTreeSet<(String, Option<String>)> {
    let matches: serde_json::Value =
        serde_json::from_str(attribute(message, "subscriptions").unwrap()).unwrap();
    matches
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["id"].as_str().unwrap().to_owned(),
                m["tag"].as_str().map(str::to_owned),
            )
        })
        .collect()
}

/// Publishes the example vaccination (accepted) and checks that nothing
/// arrives on the queue.
async fn assert_a_vaccination_reaches_nothing(hub: &Hub, queue: &str) {
    let (status, _) = hub
        .publish(
            "vaccinations-1",
            Some(XML),
            &fixture("nems/vaccinations-1-new.xml"),
        )
        .await;
    assert_eq!(status, 202);
    assert!(
        hub.drain(queue, WINDOW).await.is_empty(),
        "nothing is delivered"
    );
}

async fn create(hub: &Hub, subscriber: &Subscriber, ods: &str, criteria: &str) -> String {
    let (status, body) = hub.subscribe(subscriber, ods, criteria).await;
    assert_eq!(status, 201, "{criteria}: {body}");
    body["id"].as_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn overlapping_subscriptions_give_one_delivery_per_subscriber_naming_every_match() {
    let hub = Hub::start().await;
    let gp = hub.onboard("A83627", &["vaccinations-1"]).await;
    let chis = hub.onboard("RR8", &["vaccinations-1"]).await;
    let other = hub.onboard("X26", &["vaccinations-1"]).await;
    let gp_first = create(
        &hub,
        &gp,
        "A83627",
        &explicit("vaccinations-1", "&tag=gp-care"),
    )
    .await;
    let gp_second = create(
        &hub,
        &gp,
        "A83627",
        &explicit("vaccinations-1", "&serviceType=GP"),
    )
    .await;
    let chis_only = create(&hub, &chis, "RR8", &explicit("vaccinations-1", "&tag=chis")).await;
    let someone_else = "/Bundle?type=message&Patient.identifier=http://fhir.nhs.net/Id/nhs-number|9449305552&MessageHeader.event=vaccinations-1";
    create(&hub, &other, "X26", someone_else).await;

    let (status, _) = hub
        .publish(
            "vaccinations-1",
            Some(XML),
            &fixture("nems/vaccinations-1-new.xml"),
        )
        .await;
    assert_eq!(status, 202);

    let to_gp = hub.drain(&gp.queue_url, WINDOW).await;
    assert_eq!(to_gp.len(), 1, "one copy however many subscriptions match");
    assert_eq!(
        ids_and_tags(&to_gp[0]),
        BTreeSet::from([(gp_first, Some("gp-care".to_owned())), (gp_second, None)])
    );
    let to_chis = hub.drain(&chis.queue_url, Duration::from_secs(1)).await;
    assert_eq!(to_chis.len(), 1);
    assert_eq!(
        ids_and_tags(&to_chis[0]),
        BTreeSet::from([(chis_only, Some("chis".to_owned()))])
    );
    assert!(
        hub.drain(&other.queue_url, Duration::from_secs(1))
            .await
            .is_empty()
    );
}

/// The change of address routes on a child born 2017-10-02 (its Patient's
/// birth date, 2019-10-02 in the NEMS example, set to the same: filters
/// read the child's register record first, and a PDS event states the birth
/// date); its timestamp is 2019-11-01: the child is 2 on the event's date.
#[tokio::test(flavor = "multi_thread")]
async fn age_bounds_apply_on_the_events_date_at_their_edges() {
    let hub = Hub::start().await;
    let chis = hub.onboard("RR8", &["pds-change-of-address-1"]).await;
    let code = "pds-change-of-address-1";
    let older_than_1 = create(&hub, &chis, "RR8", &explicit(code, "&Patient.age=gt1")).await;
    let _older_than_2 = create(&hub, &chis, "RR8", &explicit(code, "&Patient.age=gt2")).await;
    let younger_than_3 = create(&hub, &chis, "RR8", &explicit(code, "&Patient.age=lt3")).await;
    let _younger_than_2 = create(&hub, &chis, "RR8", &explicit(code, "&Patient.age=lt2")).await;
    let between = create(
        &hub,
        &chis,
        "RR8",
        &explicit(code, "&Patient.age=gt1&Patient.age=lt3"),
    )
    .await;

    let body = fixture("nems/PDS-Change-Of-Address-ems-example.xml").replace(
        r#"<birthDate value="2019-10-02">"#,
        r#"<birthDate value="2017-10-02">"#,
    );
    assert_eq!(hub.publish(code, Some(XML), &body).await.0, 202);
    let delivered = hub.drain(&chis.queue_url, WINDOW).await;
    assert_eq!(delivered.len(), 1);
    let matched: BTreeSet<String> = ids_and_tags(&delivered[0])
        .into_iter()
        .map(|(id, _)| id)
        .collect();
    assert_eq!(
        matched,
        BTreeSet::from([older_than_1, younger_than_3, between])
    );

    // An inconsistent range is refused, naming the component.
    let (status, outcome) = hub
        .subscribe(
            &chis,
            "RR8",
            &explicit(code, "&Patient.age=gt2&Patient.age=lt3"),
        )
        .await;
    assert_eq!(status, 422);
    assert!(
        outcome["issue"][0]["diagnostics"]
            .as_str()
            .unwrap()
            .contains("Patient.age")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_expired_subscription_is_off_and_matches_nothing() {
    let hub = Hub::start().await;
    let gp = hub.onboard("A83627", &["vaccinations-1"]).await;
    let end = time::OffsetDateTime::now_utc() + time::Duration::seconds(2);
    let mut resource =
        e2e_tests::subscription_resource(&gp.id, "A83627", &explicit("vaccinations-1", ""));
    resource["end"] = serde_json::json!(hub::fhir_time::format_instant(end));
    let response = hub
        .request(Method::POST, "/Subscription", &gp.token)
        .header("content-type", "application/fhir+json")
        .body(resource.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let created: serde_json::Value = response.json().await.unwrap();
    assert_eq!(created["status"], "active");
    tokio::time::sleep(Duration::from_secs(3)).await;

    let read: serde_json::Value = hub
        .request(
            Method::GET,
            &format!("/Subscription/{}", created["id"].as_str().unwrap()),
            &gp.token,
        )
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(read["status"], "off");
    // An ended subscription delivers nothing.
    assert_a_vaccination_reaches_nothing(&hub, &gp.queue_url).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_deleted_subscription_is_gone_and_delivers_nothing() {
    let hub = Hub::start().await;
    let gp = hub.onboard("A83627", &["vaccinations-1"]).await;
    let id = create(&hub, &gp, "A83627", &explicit("vaccinations-1", "")).await;
    let deleted = hub
        .request(Method::DELETE, &format!("/Subscription/{id}"), &gp.token)
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), 204);
    assert_eq!(
        hub.request(Method::GET, &format!("/Subscription/{id}"), &gp.token)
            .send()
            .await
            .unwrap()
            .status(),
        404
    );
    assert_eq!(
        hub.request(Method::DELETE, &format!("/Subscription/{id}"), &gp.token)
            .send()
            .await
            .unwrap()
            .status(),
        404
    );
    assert_a_vaccination_reaches_nothing(&hub, &gp.queue_url).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_subscriber_is_refused_event_types_it_was_not_onboarded_for() {
    let hub = Hub::start().await;
    let gp = hub.onboard("A83627", &["vaccinations-1"]).await;
    let (status, outcome) = hub
        .subscribe(&gp, "A83627", &explicit("pds-change-of-address-1", ""))
        .await;
    assert_eq!(status, 422);
    assert_eq!(first_issue_expression(&outcome), "Subscription.criteria");
    assert!(
        outcome["issue"][0]["diagnostics"]
            .as_str()
            .unwrap()
            .contains("not onboarded")
    );
    // And its queue is not wired to that type's topic: nothing can arrive.
    assert_eq!(
        hub.publish(
            "pds-change-of-address-1",
            Some(XML),
            &fixture("nems/PDS-Change-Of-Address-ems-example.xml")
        )
        .await
        .0,
        202
    );
    assert!(
        hub.drain(&gp.queue_url, Duration::from_secs(3))
            .await
            .is_empty()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn subscriptions_are_listed_a_page_at_a_time_in_json_and_xml() {
    let hub = Hub::shared().await;
    let gp = hub.onboard("A83627", &["vaccinations-1"]).await;
    let chis = hub.onboard("RR8", &["vaccinations-1"]).await;
    let mut mine = BTreeSet::new();
    for tag in ["a", "b", "c"] {
        mine.insert(
            create(
                &hub,
                &gp,
                "A83627",
                &explicit("vaccinations-1", &format!("&tag={tag}")),
            )
            .await,
        );
    }
    create(&hub, &chis, "RR8", &explicit("vaccinations-1", "")).await;

    let mut listed = BTreeSet::new();
    // The caller's own subscriptions: the subscriber is the caller's.
    let mut url = "/Subscription?_count=2".to_owned();
    let mut pages = 0;
    loop {
        let page: serde_json::Value = hub
            .request(Method::GET, &url, &gp.token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(page["resourceType"], "Bundle");
        assert_eq!(page["type"], "searchset");
        pages += 1;
        for entry in page["entry"].as_array().unwrap() {
            assert_eq!(
                entry["resource"]["channel"]["endpoint"],
                gp.id.as_str(),
                "only the caller's"
            );
            listed.insert(entry["resource"]["id"].as_str().unwrap().to_owned());
        }
        let next = page["link"]
            .as_array()
            .unwrap()
            .iter()
            .find(|l| l["relation"] == "next");
        match next {
            Some(link) => url = link["url"].as_str().unwrap().to_owned(),
            None => break,
        }
        assert!(pages < 10);
    }
    assert_eq!(listed, mine);
    assert!(pages >= 2, "three subscriptions at two a page");

    let xml = hub
        .request(Method::GET, "/Subscription", &gp.token)
        .header("accept", XML)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let bundle = hub::fhir::read_xml(&xml).unwrap();
    assert_eq!(bundle.value_of("type"), Some("searchset"));
    assert_eq!(bundle.children("entry").count(), 3);

    for (query, field) in [
        ("_count=0", "_count"),
        ("_count=101", "_count"),
        ("_page=bogus", "_page"),
    ] {
        let response = hub
            .request(Method::GET, &format!("/Subscription?{query}"), &gp.token)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 400, "{query}");
        let outcome: serde_json::Value = response.json().await.unwrap();
        assert_eq!(first_issue_expression(&outcome), field, "{query}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn subscriptions_are_created_in_xml_and_generic_ones_are_stored() {
    let hub = Hub::shared().await;
    let gp = hub.onboard("A83627", &["vaccinations-1"]).await;
    let criteria = explicit("vaccinations-1", "&tag=xml").replace('&', "&amp;");
    let xml = format!(
        r#"<Subscription xmlns="http://hl7.org/fhir"><status value="requested"/><contact><system value="url"/><value value="https://directory.spineservices.nhs.uk/STU3/Organization/A83627"/></contact><reason value="care"/><criteria value="{criteria}"/><channel><type value="message"/><endpoint value="{}"/></channel></Subscription>"#,
        gp.id
    );
    let response = hub
        .request(Method::POST, "/Subscription", &gp.token)
        .header("content-type", XML)
        .body(xml)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    assert!(response.text().await.unwrap().starts_with("<Subscription"));

    let generic = "/Bundle?type=message&subscriptionRuleType=GP_GP_GP&Organization.identifier=A83627&MessageHeader.event=vaccinations-1";
    let id = create(&hub, &gp, "A83627", generic).await;
    let read: serde_json::Value = hub
        .request(Method::GET, &format!("/Subscription/{id}"), &gp.token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        read["criteria"],
        "/Bundle?type=message&subscriptionRuleType=GP_GP_GP&Organization.identifier=A83627&MessageHeader.event=vaccinations-1"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_offboarded_subscriber_gets_nothing_more_and_keeps_its_queue() {
    let hub = Hub::start().await;
    let gp = hub.onboard("A83627", &["vaccinations-1"]).await;
    create(&hub, &gp, "A83627", &explicit("vaccinations-1", "")).await;
    let operator = hub.token(e2e_tests::DEMO_OPERATOR).await;

    let response = hub
        .request(
            Method::DELETE,
            &format!("/subscribers/{}", gp.id),
            &operator,
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let body: serde_json::Value = response.json().await.unwrap();
    assert!(body["offboardedAt"].is_string());
    assert_eq!(body["queueKeptForDays"], 14);

    let listed: serde_json::Value = hub
        .request(Method::GET, "/Subscription", &gp.token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        listed["entry"].as_array().unwrap().len(),
        0,
        "its subscriptions are gone"
    );
    let (status, _) = hub
        .subscribe(&gp, "A83627", &explicit("vaccinations-1", ""))
        .await;
    assert_eq!(status, 422, "no new subscriptions");

    assert_a_vaccination_reaches_nothing(&hub, &gp.queue_url).await;
    // The queue is still there to read.
    hub.sqs()
        .get_queue_attributes()
        .queue_url(&gp.queue_url)
        .send()
        .await
        .expect("the queue is kept");
    // Offboarding again is harmless; an unknown subscriber is 404.
    assert_eq!(
        hub.request(
            Method::DELETE,
            &format!("/subscribers/{}", gp.id),
            &operator
        )
        .send()
        .await
        .unwrap()
        .status(),
        200
    );
    let unknown = "00000000-0000-4000-8000-000000000000";
    assert_eq!(
        hub.request(
            Method::DELETE,
            &format!("/subscribers/{unknown}"),
            &operator
        )
        .send()
        .await
        .unwrap()
        .status(),
        404
    );
}
