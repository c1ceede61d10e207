//! The basis of an explicit subscription: why the hub lets one subscriber
//! receive one child's events. It is chosen when the subscription is
//! created, recorded on it and in the audit trail, and judged again for
//! each event dispatched to it; when it no longer holds the subscription
//! ends, with a reason its owner reads (`status` off, `error`).

use serde::{Deserialize, Serialize};

use crate::catalogue::EventType;
use crate::ods::OdsCode;

/// Why a subscriber may have a child's events.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Basis {
    /// The child register places the child at the subscriber's practice.
    /// It lasts while the child stays registered there.
    RegisteredGp { practice: OdsCode },
    /// The subscriber declares that it cares for the child directly (NEMS's
    /// legitimate relationship, which the hub cannot check): it holds for
    /// as long as the subscription does, and discloses nothing accepted
    /// before the subscription's creation (`Subscription::discloses_from`).
    DeclaredDirectCare,
}

impl Basis {
    /// The words the audit trail and the subscription's owner read.
    pub fn describe(&self) -> String {
        match self {
            Basis::RegisteredGp { practice } => format!("registered-gp {}", practice.as_str()),
            Basis::DeclaredDirectCare => "declared-direct-care".to_owned(),
        }
    }

    /// The basis a new explicit subscription rests on: its subscriber's
    /// practice when the register places the child there, else the
    /// subscriber's declaration of direct care.
    pub fn for_new_subscription(subscriber_ods: &OdsCode, registered_at: Option<&str>) -> Self {
        if registered_at == Some(subscriber_ods.as_str()) {
            Basis::RegisteredGp {
                practice: subscriber_ods.clone(),
            }
        } else {
            Basis::DeclaredDirectCare
        }
    }
}

/// Why a subscription stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum EndReason {
    /// The child is no longer registered at the subscriber's practice.
    GpChanged,
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
    practice: PracticeAtEvent<'_>,
    event_type: EventType,
    event_key: &str,
    at: &str,
) -> Judgement {
    let Basis::RegisteredGp { practice: ours } = basis else {
        return Judgement::Holds;
    };
    let ours = ours.as_str();
    let ended = |last_event: Option<&str>| Ended {
        at: at.to_owned(),
        reason: EndReason::GpChanged,
        last_event: last_event.map(str::to_owned),
        detail: format!(
            "basis lost: the child is no longer registered at {ours} (shown by {event_type} event {event_key})"
        ),
    };
    if practice.before != Some(ours) {
        Judgement::Lost(ended(None))
    } else if practice.after != Some(ours) {
        Judgement::HoldsForThisEvent(ended(Some(event_key)))
    } else {
        Judgement::Holds
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gp(code: &str) -> Basis {
        Basis::RegisteredGp {
            practice: OdsCode::parse(code).expect("an ODS code"),
        }
    }

    fn judged(basis: &Basis, before: Option<&str>, after: Option<&str>) -> Judgement {
        judge(
            basis,
            PracticeAtEvent { before, after },
            EventType::PdsChangeOfGp,
            "E1",
            "2026-12-07T10:00:00.000Z",
        )
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
    fn a_declared_basis_holds_wherever_the_child_is() {
        assert_eq!(
            judged(&Basis::DeclaredDirectCare, Some("B86056"), None),
            Judgement::Holds
        );
    }

    #[test]
    fn a_new_subscription_rests_on_the_register_when_it_places_the_child_at_the_subscriber() {
        let ours = OdsCode::parse("A83627").expect("an ODS code");
        assert_eq!(
            Basis::for_new_subscription(&ours, Some("A83627")),
            gp("A83627")
        );
        assert_eq!(
            Basis::for_new_subscription(&ours, Some("B86056")),
            Basis::DeclaredDirectCare
        );
        assert_eq!(
            Basis::for_new_subscription(&ours, None),
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
    }
}
