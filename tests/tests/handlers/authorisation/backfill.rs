//! Issue 20: an operator's backfill grant opens a subscription's view to a
//! window before its creation (history, event reads, replay), audited,
//! until it expires or is revoked. Nothing else opens it.

use super::disclosure_floor::publish_vaccination;
use super::*;
use aws_lambda_events::http::Method;
use hub::ports::SubscriptionStore;
use time::{Duration, OffsetDateTime};

impl World {
    /// `POST /Subscription/{id}/$backfill` with these parameters.
    async fn grant_backfill(
        &self,
        caller: &Caller,
        subscription_id: &str,
        parameters: Value,
    ) -> (u16, Value) {
        let body = json!({"resourceType": "Parameters", "parameter": parameters}).to_string();
        let mut request = request(
            Some(caller),
            "application/fhir+json",
            Some(&body),
            &[("id", subscription_id)],
        );
        request.http_method = Method::POST;
        answer(lambda::backfill(self.ports(), &request).await)
    }

    /// `DELETE /Subscription/{id}/backfill/{grantId}`.
    async fn revoke_backfill(
        &self,
        caller: &Caller,
        subscription_id: &str,
        grant_id: &str,
    ) -> (u16, Value) {
        let mut request = request(
            Some(caller),
            "application/json",
            None,
            &[("id", subscription_id), ("grantId", grant_id)],
        );
        request.http_method = Method::DELETE;
        answer(lambda::backfill(self.ports(), &request).await)
    }

    /// Subscriber B (not the child's practice) subscribes: declared direct
    /// care. Its id.
    async fn b_subscribes_now(&self) -> String {
        let b = self.subscriber_b.subscriber_id.clone().unwrap();
        let (status, created) = self.subscribe(Some(&self.subscriber_b), &b).await;
        assert_eq!(status, 201, "{created}");
        created["id"].as_str().unwrap().to_owned()
    }

    /// A vaccination is published, then B subscribes, and an operator
    /// grants it the 30 days before (open for 7 more). The subscription's
    /// id and the grant.
    async fn b_subscribes_after_an_event_with_a_grant(&self) -> (String, Value) {
        publish_vaccination(self, VACCINATION_ID).await;
        a_moment_later().await;
        let subscription = self.b_subscribes_now().await;
        let (status, grant) = self
            .grant_backfill(
                &self.operator,
                &subscription,
                window(&days_from_now(-30), &days_from_now(7)),
            )
            .await;
        assert_eq!(status, 201, "{grant}");
        (subscription, grant)
    }

    /// What B sees: the history's total and whether the first event reads.
    async fn what_b_sees(&self) -> (Value, u16) {
        let (status, history) = self.read_child_events(Some(&self.subscriber_b)).await;
        assert_eq!(status, 200, "{history}");
        (
            history["total"].clone(),
            self.read_event(Some(&self.subscriber_b)).await,
        )
    }
}

fn days_from_now(days: i64) -> String {
    hub::audit::timestamp(OffsetDateTime::now_utc() + Duration::days(days))
}

fn window(since: &str, expires: &str) -> Value {
    json!([
        {"name": "reason", "valueString": "new to the health visiting caseload: the birth visit needs the newborn checks"},
        {"name": "since", "valueDateTime": since},
        {"name": "expires", "valueDateTime": expires},
    ])
}

fn field_of(outcome: &Value) -> &str {
    outcome["issue"][0]["expression"][0]
        .as_str()
        .unwrap_or_default()
}

#[tokio::test]
async fn a_backfill_grant_opens_the_earlier_record_until_it_is_revoked() {
    let world = World::new().await;
    publish_vaccination(&world, VACCINATION_ID).await;
    a_moment_later().await;
    let subscription = world.b_subscribes_now().await;
    assert_eq!(
        world.what_b_sees().await,
        (json!(0), 404),
        "closed at first"
    );

    let since = days_from_now(-30);
    let (status, grant) = world
        .grant_backfill(
            &world.operator,
            &subscription,
            window(&since, &days_from_now(7)),
        )
        .await;
    assert_eq!(status, 201, "{grant}");
    assert_eq!(grant["status"], "open");
    let grant_id = grant["id"].as_str().unwrap().to_owned();
    let granted_since = grant["since"].as_str().unwrap().to_owned();
    assert_eq!(world.what_b_sees().await, (json!(1), 200), "opened");

    // The grant and the read it opened are in the trail, with the child.
    let records = world.audit.records();
    let granted = records
        .iter()
        .find(|record| record.action == Action::BackfillGrant && record.status == 201)
        .expect("the grant is audited");
    assert_eq!(granted.nhs_number.as_deref(), Some(PATIENT));
    assert_eq!(
        granted.subscription_id.as_deref(),
        Some(subscription.as_str())
    );
    let detail = granted.detail.as_deref().unwrap_or_default();
    assert!(
        detail.contains(&grant_id)
            && detail.contains("caseload")
            && detail.contains(&granted_since),
        "{detail}"
    );
    let read = records
        .iter()
        .rev()
        .find(|record| record.action == Action::HistoryRead && record.status == 200)
        .and_then(|record| record.detail.clone())
        .unwrap_or_default();
    assert!(read.contains("(backfill grant)"), "{read}");

    // A replay reaches back to the grant's start, not to 2026-01-01.
    let (status, job) = world
        .start_replay(Some(&world.subscriber_b), &subscription)
        .await;
    assert_eq!(status, 202, "{job}");
    let started = hub::fhir_time::parse_instant(job["since"].as_str().unwrap()).unwrap();
    assert_eq!(
        started,
        hub::fhir_time::parse_instant(&since).unwrap(),
        "{job}"
    );
    assert!(
        job["detail"]
            .as_str()
            .is_some_and(|detail| detail.contains("backfill grant")),
        "{job}"
    );

    let (status, revoked) = world
        .revoke_backfill(&world.operator, &subscription, &grant_id)
        .await;
    assert_eq!((status, revoked["status"].clone()), (200, json!("revoked")));
    assert_eq!(world.what_b_sees().await, (json!(0), 404), "closed again");
    assert!(world.audit.records().iter().any(|record| {
        record.action == Action::BackfillRevoke
            && record.status == 200
            && record.nhs_number.as_deref() == Some(PATIENT)
    }));
}

/// Starts B's replay while the grant is open, revokes the grant when
/// `revoke_first`, then runs the replay to its end. The messages it sent.
async fn replay_across_a_revocation(revoke_first: bool) -> usize {
    let world = World::new().await;
    let (subscription, grant) = world.b_subscribes_after_an_event_with_a_grant().await;
    let (status, job) = world
        .start_replay(Some(&world.subscriber_b), &subscription)
        .await;
    assert_eq!(status, 202, "{job}");
    if revoke_first {
        let grant_id = grant["id"].as_str().unwrap();
        let (status, _) = world
            .revoke_backfill(&world.operator, &subscription, grant_id)
            .await;
        assert_eq!(status, 200);
    }
    let before = world.stores.publisher.sent().len();
    let replay_id = job["id"].as_str().unwrap();
    let replayer = hub::app::replay::Replayer {
        ports: world.ports(),
    };
    let now = OffsetDateTime::now_utc();
    let mut done = replayer.step(replay_id, now).await.unwrap();
    while let Some(job) = done.filter(|job| job.status == hub::replay::ReplayStatus::Running) {
        done = replayer.step(&job.replay_id, now).await.unwrap();
    }
    world.stores.publisher.sent().len() - before
}

#[tokio::test]
async fn a_replay_stops_reaching_back_once_its_grant_is_revoked() {
    assert_eq!(
        replay_across_a_revocation(false).await,
        1,
        "with the grant open, the earlier event is replayed"
    );
    assert_eq!(
        replay_across_a_revocation(true).await,
        0,
        "revoked after the replay began: nothing before the creation"
    );
}

#[tokio::test]
async fn an_expired_grant_opens_nothing() {
    let world = World::new().await;
    let (subscription_id, _) = world.b_subscribes_after_an_event_with_a_grant().await;
    assert_eq!(world.what_b_sees().await, (json!(1), 200));

    // The grant as it would stand once its expiry has passed.
    let subscription = world
        .subscriptions
        .get(&subscription_id)
        .await
        .unwrap()
        .unwrap();
    let mut grants = subscription.backfills.clone();
    grants[0].expires = days_from_now(-1);
    assert!(
        world
            .subscriptions
            .replace_backfills(&subscription, &grants)
            .await
            .unwrap()
    );
    assert_eq!(world.what_b_sees().await, (json!(0), 404));
}

#[tokio::test]
async fn only_operators_grant_a_backfill_and_a_bad_one_names_its_field() {
    let world = World::new().await;
    publish_vaccination(&world, VACCINATION_ID).await;
    a_moment_later().await;
    let subscription = world.b_subscribes_now().await;
    let good = window(&days_from_now(-30), &days_from_now(7));

    let (status, _) = world
        .grant_backfill(&world.subscriber_b, &subscription, good.clone())
        .await;
    assert_eq!(status, 403, "a subscriber does not open its own window");
    let unknown = "11111111-2222-4333-8444-555555555555";
    assert_eq!(
        world.grant_backfill(&world.operator, unknown, good).await.0,
        404
    );

    let refused = [
        (
            json!([{"name": "since", "valueDate": "2026-01-01"}, {"name": "expires", "valueDateTime": days_from_now(7)}]),
            400,
            "Parameters.reason",
        ),
        (
            window("2026-01", &days_from_now(7)),
            400,
            "Parameters.since",
        ),
        (
            window(&days_from_now(-30), &days_from_now(91)),
            400,
            "Parameters.expires",
        ),
        (
            window(&days_from_now(1), &days_from_now(7)),
            422,
            "Parameters.since",
        ),
        (
            json!([
                {"name": "reason", "valueString": "twice"},
                {"name": "since", "valueDate": "2026-01-01"},
                {"name": "since", "valueDate": "2025-01-01"},
                {"name": "expires", "valueDateTime": days_from_now(7)},
            ]),
            400,
            "Parameters.parameter.where(name='since')",
        ),
    ];
    for (parameters, expected, field) in refused {
        let (status, outcome) = world
            .grant_backfill(&world.operator, &subscription, parameters.clone())
            .await;
        assert_eq!(
            (status, field_of(&outcome)),
            (expected, field),
            "{parameters}"
        );
    }
    assert_eq!(world.what_b_sees().await, (json!(0), 404), "nothing opened");

    let (status, outcome) = world
        .revoke_backfill(&world.operator, &subscription, "no-such-grant")
        .await;
    assert_eq!(status, 404, "{outcome}");
}

#[tokio::test]
async fn the_registered_gp_needs_no_backfill() {
    let world = World::new().await;
    let mut update = hub::register::RegisterUpdate::new(
        hub::NhsNumber::parse(PATIENT).unwrap(),
        "pds-change-of-gp-1/A83627",
        OffsetDateTime::now_utc(),
    );
    update.gp_practice = Some(Some("A83627".to_owned()));
    record_in_register(&world, update).await;
    let a = world.subscriber_a.subscriber_id.clone().unwrap();
    let (status, created) = world.subscribe(Some(&world.subscriber_a), &a).await;
    assert_eq!(status, 201, "{created}");
    let (status, outcome) = world
        .grant_backfill(
            &world.operator,
            created["id"].as_str().unwrap(),
            window(&days_from_now(-30), &days_from_now(7)),
        )
        .await;
    assert_eq!(
        (status, field_of(&outcome)),
        (422, "Subscription.basis"),
        "{outcome}"
    );
}
