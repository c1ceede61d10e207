//! The hub and the model of the bases on a few steps each: rules the random
//! worlds rarely reach, and disagreements reduced. A disagreement is
//! ignored while the lead decides which side is right; run it with
//! `cargo test -p e2e-tests --test handlers routing_bases::scenarios -- --ignored`.

use e2e_tests::routing_model::bases::{self, Judged, Kind, Level, Step, Subscriber};
use e2e_tests::routing_model::{Event, EventKind, PatientEntry, Reference, Rule};
use std::collections::BTreeMap;
use time::macros::{date, datetime};
use time::{Duration, OffsetDateTime};

use super::generate::{NOW, Published, Publisher};
use super::render::Template;
use super::{World, sample_reference, through_the_hub};

const CHILD: &str = "9912003888";

/// The child's event on day `day` (stated then, arrived in that order).
fn scripted(
    template: Template,
    id: &str,
    postcode: &str,
    old: Option<&str>,
    day: i64,
) -> Published {
    let stated: OffsetDateTime = datetime!(2024-01-01 08:00:00 UTC) + Duration::days(day);
    let born = date!(2021 - 10 - 04);
    Published {
        event: Event {
            message_id: id.to_owned(),
            kind: template.kind(),
            lifecycle: template.lifecycle(),
            by_sensitivity_authority: !template.is_clinical(),
            routing_nhs_number: Some(CHILD.to_owned()),
            routing_birth_date: template.has_routing_birth_date().then_some(born),
            timestamp: stated + Duration::minutes(5),
            last_updated: template.has_last_updated().then_some(stated),
            version_id: template.version_id(),
            focus_identifier: template
                .has_focus_identifier()
                .then(|| "https://supplierABC/identifiers|abc1111".to_owned()),
            received_at: datetime!(2026-01-01 00:00:01 UTC) + Duration::minutes(day),
            patient: template.has_patient().then(|| PatientEntry {
                nhs_number: CHILD.to_owned(),
                birth_date: Some(born),
                home_postcode: Some(postcode.to_owned()),
                gp: None,
                labelled: false,
            }),
            mother: None,
            old_postcode: old.map(str::to_owned),
            previous_practice: None,
        },
        template,
        publisher: if template.is_clinical() {
            Publisher::Clinical
        } else {
            Publisher::Demographics
        },
        duplicate: false,
    }
}

/// docs/subscriptions.md, "The basis of an explicit subscription, and its
/// end": an `area` basis ends "with the event that moves the child out",
/// and the subscription "stays ended even if the child comes back";
/// "Dispatch judges the basis for every event". An area subscription to
/// newborn-hearing-1 alone is ended by a change of address out of the area,
/// and when the child comes back it receives nothing. (Found by this
/// comparison: the hub once judged a subscription only on events of the
/// types it names.)
#[tokio::test]
async fn a_move_out_ends_an_area_subscription_that_does_not_name_moves() {
    let subscribers = vec![Subscriber {
        id: "area".into(),
        ods: "RX1".into(),
        kind: Kind::Area(vec![(Rule::CountryCode, "E92000001".into())]),
    }];
    let events = [
        scripted(
            Template::ChangeOfAddress,
            "00000000-0000-4000-8000-000000000001",
            "LS17 7DF",
            Some("WF15 6QH"),
            1,
        ),
        scripted(
            Template::ChangeOfAddress,
            "00000000-0000-4000-8000-000000000002",
            "IM1 1AD",
            Some("LS17 7DF"),
            2,
        ),
        scripted(
            Template::ChangeOfAddress,
            "00000000-0000-4000-8000-000000000003",
            "LS17 7DF",
            Some("IM1 1AD"),
            3,
        ),
        scripted(
            Template::NewbornHearingNew,
            "00000000-0000-4000-8000-000000000004",
            "LS17 7DF",
            None,
            4,
        ),
    ];
    let mut steps = vec![Step::Publish(Box::new(events[0].event.clone()))];
    steps.push(Step::Subscribe {
        id: "s1".into(),
        subscriber: "area".into(),
        nhs_number: CHILD.into(),
        events: vec![EventKind::NewbornHearing],
    });
    let mut published = BTreeMap::from([(0, events[0].clone())]);
    for event in &events[1..] {
        published.insert(steps.len(), event.clone());
        steps.push(Step::Publish(Box::new(event.event.clone())));
    }
    let world = World {
        seed: 0,
        subscribers,
        steps,
        published,
    };
    let expected = bases::run(
        &Reference::sample(),
        &world.subscribers,
        &world.steps,
        Judged::EveryEvent,
        NOW,
    );
    assert_eq!(expected.bases.len(), 1, "{:?}", expected.bases);
    let got = through_the_hub(&world, &sample_reference()).await;
    assert_eq!(
        got.deliveries, expected.deliveries,
        "the model delivers nothing"
    );
}

/// The world of these steps, its events published in order.
fn world_of(subscribers: Vec<Subscriber>, steps: Vec<Step>, events: &[Published]) -> World {
    let mut published = BTreeMap::new();
    let mut next = events.iter();
    for (index, step) in steps.iter().enumerate() {
        if let Step::Publish(_) = step
            && let Some(event) = next.next()
        {
            published.insert(index, event.clone());
        }
    }
    World {
        seed: 0,
        subscribers,
        steps,
        published,
    }
}

/// docs/subscribers.md 8a: a relationship the source ends ends the
/// subscriptions through it "at once"; docs/subscriptions.md: it "stays
/// ended even if the child comes back". Made again before the child's next
/// event, it does not revive the subscription; a new one may be made.
#[tokio::test]
async fn a_relationship_ended_and_made_again_leaves_its_subscription_ended() {
    const PERSON: &str = "9449305552";
    let subscribers = vec![Subscriber {
        id: "app".into(),
        ods: "Y0001".into(),
        kind: Kind::Pchr(Level::P9),
    }];
    let events = [
        scripted(
            Template::VaccinationsNew,
            "00000000-0000-4000-8000-000000000011",
            "LS17 7DF",
            None,
            1,
        ),
        scripted(
            Template::NipeNew,
            "00000000-0000-4000-8000-000000000012",
            "LS17 7DF",
            None,
            2,
        ),
    ];
    let relationship = |active| Step::Relationship {
        child: CHILD.into(),
        person: PERSON.into(),
        active,
    };
    let subscribe = |id: &str| Step::Subscribe {
        id: id.into(),
        subscriber: "app".into(),
        nhs_number: CHILD.into(),
        events: vec![EventKind::Vaccinations, EventKind::Nipe],
    };
    let steps = vec![
        Step::Attest {
            subscriber: "app".into(),
            person: PERSON.into(),
            level: Level::P9,
        },
        relationship(true),
        subscribe("s1"),
        Step::Publish(Box::new(events[0].event.clone())),
        relationship(false),
        relationship(true),
        subscribe("s2"),
        Step::Publish(Box::new(events[1].event.clone())),
    ];
    let world = world_of(subscribers, steps, &events);
    let expected = bases::run(
        &Reference::sample(),
        &world.subscribers,
        &world.steps,
        Judged::NamedEvents,
        NOW,
    );
    assert_eq!(expected.deliveries.len(), 2, "{:?}", expected.deliveries);
    let got = through_the_hub(&world, &sample_reference()).await;
    assert_eq!(got.deliveries, expected.deliveries);
    assert_eq!(got.refused, expected.refused);
}
