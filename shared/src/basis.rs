//! The basis of an explicit subscription: why the hub lets one subscriber
//! receive one child's events. It is chosen when the subscription is
//! created, recorded on it and in the audit trail, and judged again for
//! each event dispatched to it; when it no longer holds the subscription
//! ends, with a reason its owner reads (`status` off, `error`).

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::catalogue::EventType;
use crate::generic::{self, ChildLocation};
use crate::nhs_number::NhsNumber;
use crate::ods::OdsCode;
use crate::pchr::PchrRegistration;

/// Why a subscriber may have a child's events.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Basis {
    /// The child register places the child at the subscriber's practice.
    /// It lasts while the child stays registered there.
    RegisteredGp { practice: OdsCode },
    /// The child is at a place the subscriber is registered to serve: one
    /// of its client's generic-subscription grants (`subscribeGeneric`: a
    /// rule type and an organisation code, e.g. `CHO_POSTCODE_CCG` `15F`,
    /// the sub-ICB location of the child's home) selects the child, as a
    /// generic subscription of that rule would. It lasts while the child
    /// stays there.
    Area { rule: String, code: String },
    /// A parent's app (PCHR) acts for `person`, and the hub holds an active
    /// relationship between the child and that person (a VRS relationship,
    /// or the mother named in the child's birth notification). It lasts
    /// while both do.
    Relationship { person: NhsNumber },
    /// The subscriber declares that it cares for the child directly (NEMS's
    /// legitimate relationship, which the hub cannot check): it holds for
    /// as long as the subscription does, and discloses nothing accepted
    /// before the subscription's creation (`Subscription::discloses_from`).
    DeclaredDirectCare,
}

impl Basis {
    /// Its kind, as stored (`kind`) and counted.
    pub fn kind(&self) -> &'static str {
        match self {
            Basis::RegisteredGp { .. } => "registered-gp",
            Basis::Area { .. } => "area",
            Basis::Relationship { .. } => "relationship",
            Basis::DeclaredDirectCare => "declared-direct-care",
        }
    }

    /// The words the audit trail and the subscription's owner read.
    pub fn describe(&self) -> String {
        match self {
            Basis::RegisteredGp { practice } => format!("registered-gp {}", practice.as_str()),
            Basis::Area { rule, code } => format!("area {rule} {code}"),
            Basis::Relationship { person } => format!("relationship person={person}"),
            Basis::DeclaredDirectCare => "declared-direct-care".to_owned(),
        }
    }

    /// The basis a new explicit subscription rests on: its subscriber's
    /// practice when the register places the child there, else the first
    /// of the subscriber's grants (in `generic::RULE_TYPES` order) that
    /// selects where the child is now, else the subscriber's declaration of
    /// direct care.
    pub fn for_new_subscription(
        subscriber_ods: &OdsCode,
        registered_at: Option<&str>,
        grants: &Grants,
        child: &ChildLocation,
    ) -> Self {
        if registered_at == Some(subscriber_ods.as_str()) {
            return Basis::RegisteredGp {
                practice: subscriber_ods.clone(),
            };
        }
        generic::RULE_TYPES
            .into_iter()
            .find_map(|rule| {
                let code = generic::code_at(child, rule)?;
                granted(grants, rule.code(), code).then(|| Basis::Area {
                    rule: rule.code().to_owned(),
                    code: code.to_ascii_uppercase(),
                })
            })
            .unwrap_or(Basis::DeclaredDirectCare)
    }
}

/// A client's generic-subscription grants: rule type code to the
/// organisation codes it may name (`Client::subscribe_generic`).
pub type Grants = BTreeMap<String, BTreeSet<String>>;

/// What a client's registration lets its explicit subscriptions rest on,
/// beside its practice: the areas it serves (its grants), or, for a
/// parent's app, the people it acts for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Permits {
    pub grants: Grants,
    pub pchr: Option<PchrRegistration>,
}

/// Whether the grants name this rule and code (ODS and ONS codes, and rule
/// codes, are compared without regard to case, as generic criteria are).
pub(crate) fn granted(grants: &Grants, rule: &str, code: &str) -> bool {
    grants
        .iter()
        .filter(|(granted_rule, _)| granted_rule.eq_ignore_ascii_case(rule))
        .flat_map(|(_, codes)| codes)
        .any(|granted| granted.eq_ignore_ascii_case(code))
}

/// Why a subscription stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum EndReason {
    /// The child is no longer registered at the subscriber's practice.
    GpChanged,
    /// The child is no longer in the area the subscriber serves.
    MovedOutOfArea,
    /// The relationship between the child and the person ended, or the
    /// PCHR no longer acts for the person.
    RelationshipEnded,
    /// An operator replaced the client's registration with one that no
    /// longer gives the basis (a grant removed, explicit subscriptions no
    /// longer permitted, a parent's app's minimum identity level raised
    /// above the person's): `crate::narrowing`.
    RegistrationNarrowed,
}

/// A subscription's end: when, why, and the event that showed it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Ended {
    /// RFC 3339, UTC.
    pub at: String,
    pub reason: EndReason,
    /// The event that moved the child away, when the subscription received
    /// it as its last: a change of GP reaches the practice the child left
    /// (as NEMS sends a move to the place left), and a retried dispatch of
    /// that event still delivers it there.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_event: Option<String>,
    /// What the owner reads in the subscription's `error`.
    pub detail: String,
}

/// The child's practice before and after the event being dispatched: the
/// facts a registered-GP basis is judged on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PracticeAtEvent<'a> {
    /// Where the register placed the child when the event arrived (the
    /// practice a change of GP leaves).
    pub before: Option<&'a str>,
    /// Where the register places the child once the event is recorded.
    pub after: Option<&'a str>,
}

/// Where the child was when the event arrived and where it is once the
/// event is recorded: the facts a basis is judged on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PlaceAtEvent<'a> {
    pub practice: PracticeAtEvent<'a>,
    /// The areas and practice before the event (the place a move leaves).
    pub before: &'a ChildLocation,
    /// The areas and practice after it.
    pub after: &'a ChildLocation,
    /// For a relationship basis: whether the child's relationship with the
    /// person still holds, and the PCHR still acts for them (the app layer
    /// reads both; relationships do not change with the child's events).
    pub related: bool,
}

/// What a basis says of one event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Judgement {
    /// Deliver; the basis goes on.
    Holds,
    /// Deliver this event, the last: it ends the basis.
    HoldsForThisEvent(Ended),
    /// Deliver nothing: the basis had already gone.
    Lost(Ended),
}

/// Judges a basis for one event. A registered-GP basis is judged on where
/// the child was when the event arrived, so the event that moves the child
/// away still reaches the practice left, and nothing after it does.
pub fn judge(
    basis: &Basis,
    place: PlaceAtEvent<'_>,
    event_type: EventType,
    event_key: &str,
    at: &str,
) -> Judgement {
    let (reason, lost, held_before, holds_after) = match basis {
        Basis::DeclaredDirectCare => return Judgement::Holds,
        Basis::RegisteredGp { practice: ours } => {
            let ours = ours.as_str();
            (
                EndReason::GpChanged,
                format!("the child is no longer registered at {ours}"),
                place.practice.before == Some(ours),
                place.practice.after == Some(ours),
            )
        }
        Basis::Relationship { person } => (
            EndReason::RelationshipEnded,
            format!(
                "the child's relationship with person {person} ended, or the app no longer acts for them"
            ),
            place.related,
            place.related,
        ),
        Basis::Area { rule, code } => {
            // An unknown rule selects nothing: never deliver on doubt.
            let rule_type = generic::RULE_TYPES
                .into_iter()
                .find(|known| known.code() == rule);
            let at_place = |location: &ChildLocation| {
                rule_type
                    .and_then(|rule| generic::code_at(location, rule))
                    .is_some_and(|found| found.eq_ignore_ascii_case(code))
            };
            (
                EndReason::MovedOutOfArea,
                format!("the child is no longer at {rule} {code}"),
                at_place(place.before),
                at_place(place.after),
            )
        }
    };
    let ended = |last_event: Option<&str>| Ended {
        at: at.to_owned(),
        reason,
        last_event: last_event.map(str::to_owned),
        detail: format!("basis lost: {lost} (shown by {event_type} event {event_key})"),
    };
    if !held_before {
        Judgement::Lost(ended(None))
    } else if !holds_after {
        Judgement::HoldsForThisEvent(ended(Some(event_key)))
    } else {
        Judgement::Holds
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reference::PostcodeArea;

    fn gp(code: &str) -> Basis {
        Basis::RegisteredGp {
            practice: OdsCode::parse(code).expect("an ODS code"),
        }
    }

    fn area(rule: &str, code: &str) -> Basis {
        Basis::Area {
            rule: rule.into(),
            code: code.into(),
        }
    }

    /// A child living in sub-ICB `sub_icb` and local authority `la`,
    /// registered at `practice`.
    fn living_in(sub_icb: &str, la: &str, practice: Option<&str>) -> ChildLocation {
        ChildLocation {
            postcode_area: Some(PostcodeArea {
                local_authority: la.into(),
                icb_sub_location: Some(sub_icb.into()),
                country: "E92000001".into(),
            }),
            practice: practice.map(str::to_owned),
            ..ChildLocation::default()
        }
    }

    fn judged_at(
        basis: &Basis,
        practice: (Option<&str>, Option<&str>),
        before: &ChildLocation,
        after: &ChildLocation,
    ) -> Judgement {
        judge(
            basis,
            PlaceAtEvent {
                practice: PracticeAtEvent {
                    before: practice.0,
                    after: practice.1,
                },
                before,
                after,
                related: false,
            },
            EventType::PdsChangeOfGp,
            "E1",
            "2026-12-07T10:00:00.000Z",
        )
    }

    fn judged(basis: &Basis, before: Option<&str>, after: Option<&str>) -> Judgement {
        let nowhere = ChildLocation::default();
        judged_at(basis, (before, after), &nowhere, &nowhere)
    }

    #[test]
    fn a_registered_gp_basis_holds_while_the_child_stays_and_ends_with_the_move() {
        let basis = gp("A83627");
        assert_eq!(
            judged(&basis, Some("A83627"), Some("A83627")),
            Judgement::Holds
        );
        let Judgement::HoldsForThisEvent(ended) = judged(&basis, Some("A83627"), Some("B86056"))
        else {
            panic!("the move should reach the practice left, as its last event");
        };
        assert_eq!(ended.reason, EndReason::GpChanged);
        assert_eq!(ended.last_event.as_deref(), Some("E1"));
        assert!(ended.detail.contains("A83627"), "{}", ended.detail);
        // A de-registration leaves the child at no practice.
        assert!(matches!(
            judged(&basis, Some("A83627"), None),
            Judgement::HoldsForThisEvent(_)
        ));
        let Judgement::Lost(ended) = judged(&basis, Some("B86056"), Some("B86056")) else {
            panic!("a child registered elsewhere should not reach the practice");
        };
        assert_eq!(ended.last_event, None);
        assert!(matches!(judged(&basis, None, None), Judgement::Lost(_)));
    }

    #[test]
    fn an_area_basis_holds_while_the_child_lives_there_and_ends_with_the_move_out() {
        let leeds = living_in("15F", "E08000035", Some("B86056"));
        let durham = living_in("84H", "E06000047", Some("A83627"));
        for basis in [
            area("CHO_POSTCODE_CCG", "15F"),
            area("UHV_POSTCODE_LACODE", "E08000035"),
            area("CHO_GP_CCG", "15F"),
            area("GP_GP_GP", "B86056"),
        ] {
            let leeds_practice_icb = ChildLocation {
                practice_icb: Some("15F".into()),
                ..leeds.clone()
            };
            let none = (None, None);
            assert_eq!(
                judged_at(&basis, none, &leeds_practice_icb, &leeds_practice_icb),
                Judgement::Holds,
                "{basis:?}"
            );
            let Judgement::HoldsForThisEvent(ended) =
                judged_at(&basis, none, &leeds_practice_icb, &durham)
            else {
                panic!("{basis:?}: the move out should reach the area left, as its last event");
            };
            assert_eq!(ended.reason, EndReason::MovedOutOfArea);
            assert!(matches!(
                judged_at(&basis, none, &durham, &durham),
                Judgement::Lost(_)
            ));
        }
        // A rule the hub does not know selects nothing.
        let leeds = living_in("15F", "E08000035", None);
        assert!(matches!(
            judged_at(&area("NO_SUCH_RULE", "15F"), (None, None), &leeds, &leeds),
            Judgement::Lost(_)
        ));
    }

    #[test]
    fn a_declared_basis_holds_wherever_the_child_is() {
        assert_eq!(
            judged(&Basis::DeclaredDirectCare, Some("B86056"), None),
            Judgement::Holds
        );
    }

    #[test]
    fn a_new_subscription_rests_on_the_register_then_the_grants_then_the_declaration() {
        let ours = OdsCode::parse("A83627").expect("an ODS code");
        let none = Grants::new();
        let nowhere = ChildLocation::default();
        assert_eq!(
            Basis::for_new_subscription(&ours, Some("A83627"), &none, &nowhere),
            gp("A83627")
        );
        assert_eq!(
            Basis::for_new_subscription(&ours, Some("B86056"), &none, &nowhere),
            Basis::DeclaredDirectCare
        );
        assert_eq!(
            Basis::for_new_subscription(&ours, None, &none, &nowhere),
            Basis::DeclaredDirectCare
        );
        let leeds = living_in("15F", "E08000035", Some("B86056"));
        let grants = Grants::from([
            (
                "uhv_postcode_lacode".to_owned(),
                ["e08000035".to_owned()].into(),
            ),
            ("CHO_POSTCODE_CCG".to_owned(), ["84H".to_owned()].into()),
        ]);
        assert_eq!(
            Basis::for_new_subscription(&ours, Some("B86056"), &grants, &leeds),
            area("UHV_POSTCODE_LACODE", "E08000035"),
            "a grant for the child's local authority, in any case"
        );
        let durham = living_in("84H", "E06000047", None);
        assert_eq!(
            Basis::for_new_subscription(&ours, None, &grants, &durham),
            area("CHO_POSTCODE_CCG", "84H")
        );
        let elsewhere = living_in("X2C4Y", "E06000001", None);
        assert_eq!(
            Basis::for_new_subscription(&ours, None, &grants, &elsewhere),
            Basis::DeclaredDirectCare
        );
    }

    #[test]
    fn a_basis_is_stored_with_its_kind() {
        let stored = serde_json::to_value(gp("A83627")).expect("serialises");
        assert_eq!(
            stored,
            serde_json::json!({"kind": "registered-gp", "practice": "A83627"})
        );
        let read: Basis =
            serde_json::from_value(serde_json::json!({"kind": "declared-direct-care"}))
                .expect("reads");
        assert_eq!(read, Basis::DeclaredDirectCare);
        let stored = serde_json::to_value(area("CHO_POSTCODE_CCG", "15F")).expect("serialises");
        assert_eq!(
            stored,
            serde_json::json!({"kind": "area", "rule": "CHO_POSTCODE_CCG", "code": "15F"})
        );
    }
}
