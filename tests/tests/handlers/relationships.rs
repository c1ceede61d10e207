//! `POST /relationship-events` through its handler with the in-memory
//! adapters: relationship publishers only, for their own sources; recorded,
//! duplicate, conflict and out of order; every answer audited under the
//! child.

use std::collections::{BTreeMap, BTreeSet};

use e2e_tests::{api_answer, api_request, first_issue_expression};
use hub::NhsNumber;
use hub::audit::{Action, AuditRecord};
use hub::auth::{Caller, Role};
use hub::lambda;
use hub::memory::{MemoryAuditLog, MemoryRelationshipStore};
use hub::ports::{Adapters, RelationshipStore};
use hub::relationship::RelationshipStatus;
use hub::subscriber::OdsCode;
use serde_json::{Value, json};

const CHILD: &str = "9912003888";
const MOTHER: &str = "9449305552";
const VRS: &str = "uk.nhs.validated-relationships-service";

fn sample(name: &str) -> String {
    let path = format!(
        "{}/../events/relationships/{name}.json",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn caller(roles: &[Role], sources: &[&str]) -> Caller {
    Caller {
        client_id: "vrs-publisher".into(),
        ods_code: OdsCode::parse("X26").unwrap(),
        roles: roles.iter().copied().collect(),
        subscriber_id: None,
        publish_event_types: BTreeSet::new(),
        publish_for_ods: BTreeSet::new(),
        subscribe_explicit: false,
        subscribe_generic: BTreeMap::new(),
        sensitivity_authority: false,
        relationship_sources: sources.iter().map(|source| (*source).to_owned()).collect(),
        pchr: None,
    }
}

fn publisher() -> Caller {
    caller(&[Role::RelationshipPublisher], &[VRS])
}

#[derive(Default)]
struct World {
    relationships: MemoryRelationshipStore,
    /// Where a relationship that ended ends its subscriptions.
    subscriptions: hub::memory::MemorySubscriptionStore,
    audit: MemoryAuditLog,
}

impl World {
    async fn publish_as(&self, caller: &Caller, content_type: &str, body: &str) -> (u16, Value) {
        let request = api_request(Some(caller), content_type, Some(body), &[]);
        api_answer(
            lambda::publish_relationship(
                &Adapters::new()
                    .relationships(&self.relationships)
                    .subscriptions(&self.subscriptions)
                    .audit(&self.audit),
                &request,
            )
            .await,
        )
    }

    async fn publish(&self, body: &str) -> (u16, Value) {
        self.publish_as(&publisher(), "application/fhir+json", body)
            .await
    }

    fn last_audit(&self) -> AuditRecord {
        self.audit.records().pop().expect("an audit record")
    }

    async fn held(&self) -> Vec<hub::relationship::Relationship> {
        self.relationships
            .between(
                NhsNumber::parse(CHILD).unwrap(),
                NhsNumber::parse(MOTHER).unwrap(),
            )
            .await
            .unwrap()
    }
}

fn spine_code(outcome: &Value) -> &str {
    outcome["issue"][0]["details"]["coding"][0]["code"]
        .as_str()
        .unwrap_or_default()
}

#[tokio::test]
async fn a_created_event_is_recorded_and_audited_under_the_child() {
    let world = World::default();
    let (status, body) = world.publish(&sample("vrs-proxy-role-created-1")).await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(spine_code(&body), "ACCEPTED", "{body}");
    let held = world.held().await;
    assert_eq!(held.len(), 1);
    assert_eq!(held[0].relationship_type, "MTH");
    assert_eq!(held[0].source, "vrs:vrs-publisher");
    let record = world.last_audit();
    assert_eq!(record.action, Action::RelationshipChange);
    assert_eq!(record.status, 202);
    assert_eq!(record.nhs_number.as_deref(), Some(CHILD));
    assert_eq!(
        record.detail.as_deref(),
        Some("vrs created MTH P9 person=9449305552")
    );
    assert_eq!(
        record.event_key.as_deref(),
        Some("vrs-proxy-role-created-1/6c1e2f1a-3b7d-4c55-9a3e-5f0d2c9b7e11")
    );
}

#[tokio::test]
async fn vrs_events_dedupe_conflict_and_out_of_order() {
    let world = World::default();
    let created = sample("vrs-proxy-role-created-1");
    assert_eq!(world.publish(&created).await.0, 202);
    let (status, body) = world.publish(&created).await;
    assert_eq!((status, spine_code(&body)), (200, "DUPLICATE"), "{body}");
    assert!(world.last_audit().detail.unwrap().ends_with(" duplicate"));

    // The same Bundle.id with another body.
    let mut other: Value = serde_json::from_str(&created).unwrap();
    other["timestamp"] = json!("2026-12-07T09:00:01+00:00");
    let (status, body) = world.publish(&other.to_string()).await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(first_issue_expression(&body), "Bundle.id");
    let refused = world.last_audit();
    assert_eq!(refused.status, 409);
    assert_eq!(refused.nhs_number.as_deref(), Some(CHILD));

    let (status, _) = world.publish(&sample("vrs-proxy-role-changed-1")).await;
    assert_eq!(status, 202);
    // An older statement under a new id: seen, and ignored.
    let mut stale: Value = serde_json::from_str(&created).unwrap();
    stale["id"] = json!("5b0d1e09-2a6c-4b44-8f2d-4e9c1b8a6d00");
    stale["entry"][3]["resource"]["meta"]["security"][0]["code"] = json!("P0");
    let (status, body) = world.publish(&stale.to_string()).await;
    assert_eq!((status, spine_code(&body)), (200, "OUT_OF_ORDER"), "{body}");
    assert_eq!(body["issue"][0]["severity"], "information");
    assert_eq!(world.held().await[0].verification_level, "P5");

    let (status, _) = world.publish(&sample("vrs-proxy-role-deleted-1")).await;
    assert_eq!(status, 202);
    let held = world.held().await;
    assert_eq!(held[0].status, RelationshipStatus::Inactive);
    assert_eq!(
        world.last_audit().detail.as_deref(),
        Some("vrs deleted MTH P9 person=9449305552")
    );
}

#[tokio::test]
async fn only_relationship_publishers_for_their_source() {
    let world = World::default();
    let created = sample("vrs-proxy-role-created-1");
    for (who, refused) in [
        ("a publisher", caller(&[Role::Publisher], &[])),
        ("an operator", caller(&[Role::Operator], &[])),
        (
            "a publisher of another source",
            caller(&[Role::RelationshipPublisher], &["uk.nhs.other-source"]),
        ),
    ] {
        let (status, body) = world
            .publish_as(&refused, "application/fhir+json", &created)
            .await;
        assert_eq!(status, 403, "{who}: {body}");
        assert_eq!(world.last_audit().status, 403, "{who}");
    }
    let (_, body) = world
        .publish_as(
            &caller(&[Role::RelationshipPublisher], &["uk.nhs.other-source"]),
            "application/fhir+json",
            &created,
        )
        .await;
    assert_eq!(
        first_issue_expression(&body),
        "Parameters.parameter.where(name='additional-context').part.where(name='source')"
    );
    // The refused source's attempt is in the child's trail.
    assert_eq!(world.last_audit().nhs_number.as_deref(), Some(CHILD));
    assert!(world.held().await.is_empty());
}

#[tokio::test]
async fn subject_and_consent_patient_must_agree() {
    let world = World::default();
    let mut bundle: Value = serde_json::from_str(&sample("vrs-proxy-role-created-1")).unwrap();
    bundle["entry"][0]["resource"]["parameter"][3]["part"][2]["valueReference"]["identifier"]["value"] =
        json!("9434765919");
    let (status, body) = world.publish(&bundle.to_string()).await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(first_issue_expression(&body), "Consent.patient");
    assert!(world.held().await.is_empty());
    assert_eq!(world.last_audit().status, 422);
}

#[tokio::test]
async fn only_fhir_json_within_the_limit_is_read() {
    let world = World::default();
    let created = sample("vrs-proxy-role-created-1");
    let (status, _) = world
        .publish_as(&publisher(), "application/fhir+xml", &created)
        .await;
    assert_eq!(status, 415);
    let (status, _) = world.publish_as(&publisher(), "text/plain", &created).await;
    assert_eq!(status, 415);
    let padded = format!("{created}{}", " ".repeat(64 * 1024));
    let (status, _) = world.publish(&padded).await;
    assert_eq!(status, 413);
    let (status, body) = world.publish("{").await;
    assert_eq!(status, 400, "{body}");
    assert!(world.held().await.is_empty());
}

#[tokio::test]
async fn no_caller_is_refused_and_nothing_read() {
    let world = World::default();
    let request = api_request(
        None,
        "application/fhir+json",
        Some(&sample("vrs-proxy-role-created-1")),
        &[],
    );
    let (status, _) = api_answer(
        lambda::publish_relationship(
            &Adapters::new()
                .relationships(&world.relationships)
                .audit(&world.audit),
            &request,
        )
        .await,
    );
    assert_eq!(status, 401);
    assert_eq!(world.last_audit().nhs_number, None);
    assert!(world.held().await.is_empty());
}

impl World {
    async fn read_as(&self, caller: Option<&Caller>, nhs_number: &str) -> (u16, Value) {
        let request = api_request(
            caller,
            "application/json",
            None,
            &[("nhsNumber", nhs_number)],
        );
        api_answer(
            lambda::read_child_relationships(
                &Adapters::new()
                    .relationships(&self.relationships)
                    .audit(&self.audit),
                &request,
            )
            .await,
        )
    }
}

#[tokio::test]
async fn an_operator_reads_a_childs_relationships_audited_under_the_child() {
    let world = World::default();
    world.publish(&sample("vrs-proxy-role-created-1")).await;
    let operator = caller(&[Role::Operator], &[]);
    let (status, body) = world.read_as(Some(&operator), CHILD).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["nhsNumber"], CHILD);
    let listed = &body["relationships"][0];
    assert_eq!(listed["personNhs"], MOTHER);
    assert_eq!(listed["relationshipType"], "MTH");
    assert_eq!(listed["verificationLevel"], "P9");
    assert_eq!(listed["status"], "active");
    assert_eq!(listed["active"], true);
    let record = world.last_audit();
    assert_eq!(record.action, Action::RelationshipRead);
    assert_eq!(record.nhs_number.as_deref(), Some(CHILD));
    assert_eq!(record.status, 200);

    // Ended: listed, no longer active.
    world.publish(&sample("vrs-proxy-role-deleted-1")).await;
    let (_, body) = world.read_as(Some(&operator), CHILD).await;
    assert_eq!(body["relationships"][0]["status"], "inactive");
    assert_eq!(body["relationships"][0]["active"], false);

    // A child with none: an empty list.
    let (status, body) = world.read_as(Some(&operator), "9434765919").await;
    assert_eq!(status, 200);
    assert_eq!(body["relationships"], json!([]));
}

#[tokio::test]
async fn only_operators_read_relationships() {
    let world = World::default();
    world.publish(&sample("vrs-proxy-role-created-1")).await;
    for refused in [publisher(), caller(&[Role::Subscriber], &[])] {
        let (status, body) = world.read_as(Some(&refused), CHILD).await;
        assert_eq!(status, 403, "{body}");
        let record = world.last_audit();
        assert_eq!(record.status, 403);
        assert_eq!(record.nhs_number.as_deref(), Some(CHILD));
    }
    let operator = caller(&[Role::Operator], &[]);
    let (status, body) = world.read_as(Some(&operator), "9912003889").await;
    assert_eq!(status, 400);
    assert_eq!(first_issue_expression(&body), "nhsNumber");
}
