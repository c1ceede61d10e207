//! `GET /children/{nhsNumber}` through its handler with the in-memory
//! adapters: operators only, every read audited with the child.

use hub::ports::Adapters;
use std::collections::{BTreeMap, BTreeSet};

use e2e_tests::{api_answer, api_request, first_issue_expression};
use hub::NhsNumber;
use hub::app::register::record_event;
use hub::audit::Action;
use hub::auth::{Caller, Role};
use hub::lambda;
use hub::memory::{MemoryAuditLog, MemoryRegisterStore};
use hub::reference::Postcode;
use hub::register::{DeathStatus, RegisterUpdate};
use hub::subscriber::OdsCode;
use serde_json::{Value, json};
use time::macros::{date, datetime};

const CHILD: &str = "9912003888";
/// A valid NHS number the register knows nothing about.
const UNKNOWN_CHILD: &str = "9449305552";

fn caller(client_id: &str, roles: &[Role]) -> Caller {
    Caller {
        client_id: client_id.into(),
        ods_code: OdsCode::parse("X26").unwrap(),
        roles: roles.iter().copied().collect(),
        subscriber_id: roles
            .contains(&Role::Subscriber)
            .then(|| "1b7a1c0e-4ac8-4a8e-9d6c-1a2b3c4d5e6f".to_owned()),
        publish_event_types: BTreeSet::new(),
        publish_for_ods: BTreeSet::new(),
        subscribe_explicit: false,
        subscribe_generic: BTreeMap::new(),
        sensitivity_authority: false,
        relationship_sources: Default::default(),
        pchr: None,
    }
}

struct World {
    register: MemoryRegisterStore,
    audit: MemoryAuditLog,
}

impl World {
    /// A register that knows one child: born, then registered with a GP.
    async fn new() -> World {
        let world = World {
            register: MemoryRegisterStore::default(),
            audit: MemoryAuditLog::default(),
        };
        let child = NhsNumber::parse(CHILD).unwrap();
        let mut birth = RegisterUpdate::new(
            child,
            "pds-birth-notification-1/a",
            datetime!(2020-01-01 9:30 UTC),
        );
        birth.birth_date = Some(date!(2019 - 12 - 31));
        birth.home_postcode = Some(Postcode::parse("LS17 7DF").unwrap());
        birth.sensitive = Some(false);
        let mut gp = RegisterUpdate::new(
            child,
            "pds-change-of-gp-1/b",
            datetime!(2020-02-01 0:00 UTC),
        );
        gp.gp_practice = Some(Some("B86056".into()));
        gp.death = Some(DeathStatus::Informal);
        for update in [birth, gp] {
            record_event(
                &world.register,
                &world.audit,
                update,
                time::OffsetDateTime::now_utc(),
            )
            .await
            .unwrap();
        }
        world
    }

    async fn read(&self, caller: Option<&Caller>, nhs_number: &str) -> (u16, Value) {
        let request = api_request(
            caller,
            "application/json",
            None,
            &[("nhsNumber", nhs_number)],
        );
        api_answer(
            lambda::read_child(
                &Adapters::new().register(&self.register).audit(&self.audit),
                &request,
            )
            .await,
        )
    }

    /// The last audit record: the read's.
    fn last_audit(&self) -> hub::audit::AuditRecord {
        self.audit.records().pop().expect("an audit record")
    }
}

#[tokio::test]
async fn an_operator_reads_the_childs_record_with_when_and_by_which_event() {
    let world = World::new().await;
    let operator = caller("operator", &[Role::Operator]);
    let (status, body) = world.read(Some(&operator), CHILD).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body,
        json!({
            "nhsNumber": CHILD,
            "birthDate": {"value": "2019-12-31", "changedAt": "2020-01-01T09:30:00Z", "byEvent": "pds-birth-notification-1/a"},
            "homePostcode": {"value": "LS17 7DF", "changedAt": "2020-01-01T09:30:00Z", "byEvent": "pds-birth-notification-1/a"},
            "gpPractice": {"value": "B86056", "changedAt": "2020-02-01T00:00:00Z", "byEvent": "pds-change-of-gp-1/b"},
            "death": {"value": "1", "changedAt": "2020-02-01T00:00:00Z", "byEvent": "pds-change-of-gp-1/b"},
            "sensitive": {"value": false, "changedAt": "2020-01-01T09:30:00Z", "byEvent": "pds-birth-notification-1/a"},
        })
    );
    let audited = world.last_audit();
    assert_eq!(audited.action, Action::RegisterRead);
    assert_eq!(audited.status, 200);
    assert_eq!(audited.client_id, "operator");
    assert_eq!(audited.nhs_number.as_deref(), Some(CHILD));
}

#[tokio::test]
async fn only_operators_read_the_register() {
    let world = World::new().await;
    let publisher = caller("publisher", &[Role::Publisher]);
    let subscriber = caller("subscriber", &[Role::Subscriber]);
    for (who, caller, expected) in [
        ("nobody", None, 401),
        ("a publisher", Some(&publisher), 403),
        ("a subscriber", Some(&subscriber), 403),
    ] {
        let (status, body) = world.read(caller, CHILD).await;
        assert_eq!(status, expected, "{who}: {body}");
        assert_eq!(body["resourceType"], "OperationOutcome", "{who}");
        assert!(body.get("homePostcode").is_none(), "{who}");
        let audited = world.last_audit();
        assert_eq!(audited.action, Action::RegisterRead, "{who}");
        assert_eq!(audited.status, expected, "{who}");
        if caller.is_some() {
            // A refused look-up is in the child's trail.
            assert_eq!(audited.nhs_number.as_deref(), Some(CHILD), "{who}");
        } else {
            // Nothing of an unauthenticated request is read.
            assert_eq!(audited.nhs_number, None, "{who}");
        }
    }
    let both = caller("both", &[Role::Subscriber, Role::Operator]);
    assert_eq!(world.read(Some(&both), CHILD).await.0, 200);
}

#[tokio::test]
async fn an_invalid_nhs_number_is_a_bad_request_naming_it() {
    let world = World::new().await;
    let operator = caller("operator", &[Role::Operator]);
    for invalid in ["9912003889", "991200388", "99120038880", "abcdefghij", ""] {
        let (status, body) = world.read(Some(&operator), invalid).await;
        assert_eq!(status, 400, "{invalid}: {body}");
        assert_eq!(first_issue_expression(&body), "nhsNumber", "{invalid}");
        let audited = world.last_audit();
        assert_eq!(audited.status, 400);
        assert_eq!(audited.nhs_number, None);
    }
    // No path parameter at all.
    let request = api_request(Some(&operator), "application/json", None, &[]);
    let (status, body) = api_answer(
        lambda::read_child(
            &Adapters::new()
                .register(&world.register)
                .audit(&world.audit),
            &request,
        )
        .await,
    );
    assert_eq!(status, 400);
    assert_eq!(first_issue_expression(&body), "nhsNumber");
}

#[tokio::test]
async fn a_child_not_on_the_register_is_not_found_and_the_look_up_audited() {
    let world = World::new().await;
    let operator = caller("operator", &[Role::Operator]);
    let (status, body) = world.read(Some(&operator), UNKNOWN_CHILD).await;
    assert_eq!(status, 404, "{body}");
    assert_eq!(body["issue"][0]["code"], "not-found");
    assert!(
        !body.to_string().contains(UNKNOWN_CHILD),
        "the answer does not repeat the number"
    );
    let audited = world.last_audit();
    assert_eq!(audited.action, Action::RegisterRead);
    assert_eq!(audited.status, 404);
    assert_eq!(audited.nhs_number.as_deref(), Some(UNKNOWN_CHILD));
}
