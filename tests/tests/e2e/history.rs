//! Event lifecycle, reading events back, and a child's history, end to end
//! through the local stack with the NEMS example messages.

use std::time::Duration;

use e2e_tests::{Hub, Subscriber, attribute, fixture};
use reqwest::Method;

const PATIENT: &str = "9912003888";
const XML: &str = "application/fhir+xml";
const WINDOW: Duration = Duration::from_secs(5);

const VACCINATION_NEW: &str = "85c8a1c5-a8a1-41c9-bb99-20956fa66218";
const VACCINATION_UPDATE: &str = "8af8fec0-2599-47ad-9165-c163ca112612";
const VACCINATION_DELETE: &str = "3a9334c6-7872-41a8-969f-8fe4331d009c";
const CONTACT_NEW: &str = "6e825372-9b0a-11e8-9eb6-529269fb1459";
const CONTACT_DELETE: &str = "25139cbe-7c62-4277-b106-0d838c171376";

fn explicit(event_type: &str) -> String {
    format!(
        "/Bundle?type=message&Patient.identifier=http://fhir.nhs.net/Id/nhs-number|{PATIENT}&MessageHeader.event={event_type}"
    )
}

async fn subscriber_of(hub: &Hub, ods: &str, event_types: &[&str]) -> Subscriber {
    let subscriber = hub.onboard(ods, event_types).await;
    for event_type in event_types {
        let (status, body) = hub.subscribe(&subscriber, ods, &explicit(event_type)).await;
        assert_eq!(status, 201, "{body}");
    }
    subscriber
}

/// Publishes an example; returns the status and the OperationOutcome's
/// spine codes.
async fn publish(hub: &Hub, event_type: &str, file: &str) -> (u16, Vec<String>) {
    let (status, outcome) = hub
        .publish(event_type, Some(XML), &fixture(&format!("nems/{file}")))
        .await;
    let codes = outcome["issue"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|issue| issue["details"]["coding"][0]["code"].as_str())
        .map(str::to_owned)
        .collect();
    (status, codes)
}

/// The one message the queue receives, and its outOfOrder attribute.
async fn delivered_flag(hub: &Hub, subscriber: &Subscriber, event_id: &str) -> Option<String> {
    let messages = hub.drain(&subscriber.queue_url, WINDOW).await;
    assert_eq!(messages.len(), 1, "one delivery of {event_id}");
    assert_eq!(attribute(&messages[0], "eventId"), Some(event_id));
    attribute(&messages[0], "outOfOrder").map(str::to_owned)
}

async fn get(hub: &Hub, path: &str, token: &str, accept: &str) -> (u16, String) {
    let response = hub
        .request(Method::GET, path, token)
        .header("accept", accept)
        .send()
        .await
        .expect("GET");
    let status = response.status().as_u16();
    (status, response.text().await.unwrap_or_default())
}

async fn history(hub: &Hub, token: &str, query: &str) -> (u16, serde_json::Value) {
    let (status, body) = get(
        hub,
        &format!("/children/{PATIENT}/events{query}"),
        token,
        "application/fhir+json",
    )
    .await;
    (status, serde_json::from_str(&body).unwrap_or_default())
}

/// The MessageHeader ids of a searchset's matches, in order.
fn message_ids(bundle: &serde_json::Value) -> Vec<String> {
    bundle["entry"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|entry| entry["search"]["mode"] == "match")
        .map(|entry| {
            entry["fullUrl"]
                .as_str()
                .and_then(|url| url.strip_prefix("/events/"))
                .and_then(|rest| rest.split('?').next())
                .unwrap_or_default()
                .to_owned()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn versions_are_linked_by_business_identifier_and_late_ones_are_flagged() {
    let hub = Hub::start().await;
    let gp = subscriber_of(
        &hub,
        "A83627",
        &["vaccinations-1", "professional-contacts-1"],
    )
    .await;

    // A vaccination: new, then its delete, then its update, which is older
    // than the delete (meta.lastUpdated 15:06:31 after 15:07:45).
    let (status, codes) = publish(&hub, "vaccinations-1", "vaccinations-1-new.xml").await;
    assert_eq!(
        (status, codes.contains(&"OUT_OF_ORDER".to_owned())),
        (202, false)
    );
    assert_eq!(delivered_flag(&hub, &gp, VACCINATION_NEW).await, None);
    let (status, _) = publish(&hub, "vaccinations-1", "vaccinations-1-delete.xml").await;
    assert_eq!(status, 202);
    assert_eq!(delivered_flag(&hub, &gp, VACCINATION_DELETE).await, None);
    let (status, codes) = publish(&hub, "vaccinations-1", "vaccinations-1-update.xml").await;
    assert_eq!(status, 202, "an out-of-order update is still accepted");
    assert!(codes.contains(&"OUT_OF_ORDER".to_owned()), "{codes:?}");
    assert_eq!(
        delivered_flag(&hub, &gp, VACCINATION_UPDATE)
            .await
            .as_deref(),
        Some("older-than-current")
    );

    // A professional contact: its delete first (the hub never saw the
    // contact), then the new one, older than the delete. Its identifier
    // is the vaccination's (abc1111) but of another event type: not linked.
    let (status, codes) = publish(
        &hub,
        "professional-contacts-1",
        "Professional-Contacts-1-delete.xml",
    )
    .await;
    assert_eq!(status, 202);
    assert!(codes.contains(&"OUT_OF_ORDER".to_owned()), "{codes:?}");
    assert_eq!(
        delivered_flag(&hub, &gp, CONTACT_DELETE).await.as_deref(),
        Some("unknown-resource")
    );
    let (status, _) = publish(
        &hub,
        "professional-contacts-1",
        "Professional-Contacts-1-new.xml",
    )
    .await;
    assert_eq!(status, 202);
    assert_eq!(
        delivered_flag(&hub, &gp, CONTACT_NEW).await.as_deref(),
        Some("older-than-current")
    );

    // The history: every version in order of arrival; the current view is
    // empty, as both resources' newest versions are deletes.
    let (status, all) = history(&hub, &gp.token, "?versions=all").await;
    assert_eq!(status, 200, "{all}");
    assert_eq!(all["resourceType"], "Bundle");
    assert_eq!(all["type"], "searchset");
    assert_eq!(all["total"], 5);
    assert_eq!(
        message_ids(&all),
        [
            VACCINATION_NEW,
            VACCINATION_DELETE,
            VACCINATION_UPDATE,
            CONTACT_DELETE,
            CONTACT_NEW
        ]
    );
    // Each entry is the message as published (XML, so a Binary in JSON).
    let first = &all["entry"][0]["resource"];
    assert_eq!(first["resourceType"], "Binary");
    assert_eq!(first["contentType"], XML);
    let (status, current) = history(&hub, &gp.token, "").await;
    assert_eq!(status, 200);
    assert_eq!(current["total"], 0, "{current}");
    assert!(message_ids(&current).is_empty());

    // Reading one event back, exactly as published.
    let (status, body) = get(
        &hub,
        &format!("/events/{VACCINATION_UPDATE}"),
        &gp.token,
        XML,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(body, fixture("nems/vaccinations-1-update.xml"));
    let operator = hub.token("demo-operator").await;
    let (status, _) = get(&hub, &format!("/events/{CONTACT_NEW}"), &operator, XML).await;
    assert_eq!(status, 200, "operators read any event");
    let stranger = hub.onboard("B85612", &["vaccinations-1"]).await;
    let (status, _) = get(
        &hub,
        &format!("/events/{VACCINATION_UPDATE}"),
        &stranger.token,
        XML,
    )
    .await;
    assert_eq!(status, 404, "not delivered to it: as if it did not exist");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_childs_history_is_filtered_paged_and_only_for_those_entitled() {
    let hub = Hub::start().await;
    // Health visitors subscribed to the child's vaccinations before any of
    // them was published.
    let health_visitors = subscriber_of(&hub, "A83627", &["vaccinations-1"]).await;
    // The vaccination new and update (current: the update), and a contact.
    for (event_type, file) in [
        ("vaccinations-1", "vaccinations-1-new.xml"),
        ("vaccinations-1", "vaccinations-1-update.xml"),
        ("professional-contacts-1", "Professional-Contacts-1-new.xml"),
    ] {
        assert_eq!(publish(&hub, event_type, file).await.0, 202);
    }
    let operator = hub.token("demo-operator").await;

    let (status, current) = history(&hub, &operator, "").await;
    assert_eq!(status, 200, "{current}");
    assert_eq!(message_ids(&current), [VACCINATION_UPDATE, CONTACT_NEW]);
    let (_, vaccinations) =
        history(&hub, &operator, "?versions=all&eventType=vaccinations-1").await;
    assert_eq!(
        message_ids(&vaccinations),
        [VACCINATION_NEW, VACCINATION_UPDATE]
    );
    // MessageHeader.timestamp: the vaccinations' 2017-02-14, the contact's
    // 2018-11-30.
    let (_, dated) = history(
        &hub,
        &operator,
        "?versions=all&date=ge2017-02-14&date=lt2017-02-15",
    )
    .await;
    assert_eq!(
        message_ids(&dated),
        [VACCINATION_NEW, VACCINATION_UPDATE],
        "{dated}"
    );
    let (_, later) = history(&hub, &operator, "?date=gt2017").await;
    assert_eq!(message_ids(&later), [CONTACT_NEW]);
    let (_, none) = history(&hub, &operator, "?date=gt2018").await;
    assert_eq!(none["total"], 0);

    // Paged: one at a time, following the next links.
    let (_, page) = history(&hub, &operator, "?versions=all&_count=1").await;
    assert_eq!(page["total"], 3);
    let mut seen = message_ids(&page);
    let mut next = page["link"]
        .as_array()
        .unwrap()
        .iter()
        .find(|link| link["relation"] == "next")
        .map(|link| link["url"].as_str().unwrap().to_owned());
    while let Some(url) = next {
        let (status, body) = get(&hub, &url, &operator, "application/fhir+json").await;
        assert_eq!(status, 200, "{body}");
        let page: serde_json::Value = serde_json::from_str(&body).unwrap();
        seen.extend(message_ids(&page));
        next = page["link"]
            .as_array()
            .unwrap()
            .iter()
            .find(|link| link["relation"] == "next")
            .map(|link| link["url"].as_str().unwrap().to_owned());
    }
    assert_eq!(seen, [VACCINATION_NEW, VACCINATION_UPDATE, CONTACT_NEW]);

    // XML: the messages themselves, embedded.
    let (status, xml) = get(&hub, &format!("/children/{PATIENT}/events"), &operator, XML).await;
    assert_eq!(status, 200);
    assert!(xml.starts_with("<Bundle xmlns=\"http://hl7.org/fhir\"><type value=\"searchset\"/>"));
    assert!(xml.contains(&format!("<id value=\"{VACCINATION_UPDATE}\"/>")));
    assert!(!xml.contains("<?xml"), "no declaration inside the Bundle");

    // A subscriber with an explicit subscription for the child sees the
    // types it subscribed to; one without is refused, naming the child.
    let (status, seen_by_subscriber) = history(&hub, &health_visitors.token, "?versions=all").await;
    assert_eq!(status, 200);
    assert_eq!(
        message_ids(&seen_by_subscriber),
        [VACCINATION_NEW, VACCINATION_UPDATE]
    );
    let stranger = hub.onboard("B85612", &["vaccinations-1"]).await;
    let (status, refused) = history(&hub, &stranger.token, "").await;
    assert_eq!(status, 403, "{refused}");
    assert_eq!(refused["issue"][0]["expression"][0], "nhsNumber");
    // A subscription made now opens nothing from before it: an empty
    // history, and the events delivered only to others are not found.
    let late = subscriber_of(&hub, "B86016", &["vaccinations-1"]).await;
    let (status, seen_late) = history(&hub, &late.token, "?versions=all").await;
    assert_eq!(status, 200, "{seen_late}");
    assert_eq!(seen_late["total"], 0, "{seen_late}");
    // What the history shows, the subscriber may read back; others may not.
    let path = format!("/events/{VACCINATION_NEW}");
    assert_eq!(get(&hub, &path, &health_visitors.token, XML).await.0, 200);
    assert_eq!(get(&hub, &path, &stranger.token, XML).await.0, 404);
    assert_eq!(get(&hub, &path, &late.token, XML).await.0, 404);
    let contact = format!("/events/{CONTACT_NEW}");
    assert_eq!(
        get(&hub, &contact, &health_visitors.token, XML).await.0,
        404,
        "not a type it subscribed to for the child"
    );

    // Bad parameters are named.
    for (query, parameter) in [
        ("?versions=some", "versions"),
        ("?eventType=nonsense", "eventType"),
        ("?date=yesterday", "date"),
        ("?_count=0", "_count"),
        ("?_page=x", "_page"),
    ] {
        let (status, outcome) = history(&hub, &operator, query).await;
        assert_eq!(status, 400, "{query}");
        assert_eq!(outcome["issue"][0]["expression"][0], parameter, "{query}");
    }
    // A page token beyond the end is an empty page, not an overflow.
    let (status, far) = history(&hub, &operator, "?_page=18446744073709551615").await;
    assert_eq!(status, 200, "{far}");
    assert!(message_ids(&far).is_empty());
    assert_eq!(far["total"], 2);
}

/// Issue 18, item 4: `date=le9999-12-31T23:59:59Z` (and ge, gt) once
/// panicked the function on its end-of-second arithmetic: a 502, and no
/// audit record. Now a 400 naming `date`, each in the child's trail.
#[tokio::test(flavor = "multi_thread")]
async fn a_date_at_the_end_of_year_9999_is_refused_naming_date_and_audited() {
    let hub = Hub::start().await;
    let subscriber = subscriber_of(&hub, "A83627", &["vaccinations-1"]).await;
    let prefixes = ["le", "ge", "gt", "eq", "lt", ""];
    for prefix in prefixes {
        let query = format!("?date={prefix}9999-12-31T23:59:59Z");
        let (status, outcome) = history(&hub, &subscriber.token, &query).await;
        assert_eq!(status, 400, "{query}: {outcome}");
        assert_eq!(outcome["issue"][0]["expression"][0], "date", "{query}");
    }
    let (status, trail) = hub.audit_of_patient(PATIENT).await;
    assert_eq!(status, 200, "{trail}");
    let refused = trail["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|entry| {
            entry["action"] == "history-read"
                && entry["status"] == 400
                && entry["clientId"] == subscriber.client.client_id.as_str()
        })
        .count();
    assert_eq!(refused, prefixes.len(), "{trail}");
}
