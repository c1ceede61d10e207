//! The audit trail: who did what, when, about which patient, and how it
//! ended. Every request the hub answers (refusals included) and every
//! delivery leaves one record. Records carry patient identifiers; the
//! application logs never do.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::auth::Caller;
use crate::nhs_number::NhsNumber;

/// What was done.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Action {
    /// A token request at the token endpoint.
    Token,
    /// A request refused by the authorizer before any function ran.
    Authenticate,
    Publish,
    /// An event handed to a subscriber's queue.
    Deliver,
    SubscriptionCreate,
    SubscriptionRead,
    SubscriptionList,
    SubscriptionDelete,
    EventRead,
    HistoryRead,
    Replay,
    ReplayRead,
    RegisterRead,
    AuditRead,
    Onboard,
    Offboard,
    SubscriberChange,
    ClientRegister,
    ClientDisable,
    /// A subscriber's delivery counts and queue depths read.
    SubscriberStatus,
    /// A subscriber's DLQ moved back to its queue.
    Redrive,
    /// A child's sensitive flag set or cleared by an event.
    SensitivityChange,
    /// An operator released an event withheld while its child was flagged
    /// sensitive.
    Release,
    /// An explicit subscription ended because its basis was lost (the
    /// child left the subscriber's practice or area, or the relationship
    /// it rested on ended).
    BasisLost,
    /// A delivery held back by a release embargo (crate::embargo).
    EmbargoHold,
    /// A held delivery cancelled before its release: the subscription
    /// ended, or the child became sensitive.
    EmbargoCancel,
    /// An operator read the embargo settings.
    EmbargoRead,
    /// An operator set or changed an embargo setting.
    EmbargoSet,
    /// An operator removed an embargo setting.
    EmbargoRemove,
    /// A relationship between a child and a person stated by a relationship
    /// publisher (`POST /relationship-events`), recorded under the child.
    RelationshipChange,
    /// A child's relationships read (`GET /children/{nhsNumber}/relationships`).
    RelationshipRead,
    /// A parent's app attested a person it acts for, or stopped acting for
    /// them (`/subscribers/{id}/people/{nhsNumber}`), under the person.
    PersonActedFor,
    /// An operator opened a backfill grant on a subscription
    /// (crate::backfill): its reason, window and expiry in the detail.
    BackfillGrant,
    /// An operator revoked a backfill grant.
    BackfillRevoke,
}

/// One entry of the trail.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AuditRecord {
    /// Unique; a delivery's is derived from the event and the subscriber,
    /// so a retried dispatch records it once.
    pub audit_id: String,
    /// RFC 3339, UTC, to the millisecond: the trail's order.
    pub at: String,
    /// Who acted: the client, or the hub's dispatch for a delivery.
    pub client_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ods_code: Option<String>,
    pub action: Action,
    /// The HTTP status answered, or 200 for a delivery made.
    pub status: u16,
    /// The patient concerned, when there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nhs_number: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_key: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subscription_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subscriber_id: Option<String>,
    /// Why it was refused (the OperationOutcome's Spine code), or what else
    /// identifies the action (a route, a client id acted upon).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// The client id recorded for what the hub does on its own (deliveries).
pub const HUB_ACTOR: &str = "hub-dispatch";

/// The client id recorded for a request whose caller is unknown.
pub const ANONYMOUS: &str = "anonymous";

/// `at`: UTC with exactly three fractional digits, so that the trail sorts
/// as text (RFC 3339 as `fhir_time` writes it drops trailing zeros, and
/// `.1Z` would sort after `.15Z`).
pub fn timestamp(at: OffsetDateTime) -> String {
    const FORMAT: &[time::format_description::FormatItem<'static>] = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
    );
    at.to_offset(time::UtcOffset::UTC)
        .format(FORMAT)
        .unwrap_or_else(|_| at.unix_timestamp().to_string())
}

impl AuditRecord {
    /// A record of `action` by `caller` (None: not authenticated).
    pub fn new(caller: Option<&Caller>, action: Action, status: u16, at: OffsetDateTime) -> Self {
        AuditRecord {
            audit_id: uuid::Uuid::new_v4().to_string(),
            at: timestamp(at),
            client_id: caller
                .map_or_else(|| ANONYMOUS.to_owned(), |caller| caller.client_id.clone()),
            ods_code: caller.map(|caller| caller.ods_code.as_str().to_owned()),
            action,
            status,
            nhs_number: None,
            event_key: None,
            subscription_id: None,
            subscriber_id: None,
            detail: None,
        }
    }

    /// A record of what the hub did on its own about an event: its id
    /// fixed by what it records, so a retried dispatch writes it once.
    fn by_hub(
        audit_id: String,
        action: Action,
        status: u16,
        event_key: &str,
        at: OffsetDateTime,
    ) -> Self {
        AuditRecord {
            audit_id,
            at: timestamp(at),
            client_id: HUB_ACTOR.to_owned(),
            ods_code: None,
            action,
            status,
            nhs_number: None,
            event_key: Some(event_key.to_owned()),
            subscription_id: None,
            subscriber_id: None,
            detail: None,
        }
    }

    /// The record of one delivery: one per event and subscriber, whatever
    /// the number of dispatch attempts.
    pub fn delivery(
        event_key: &str,
        subscriber_id: &str,
        nhs_number: Option<NhsNumber>,
        at: OffsetDateTime,
    ) -> Self {
        Self::by_hub(
            delivery_id(event_key, subscriber_id),
            Action::Deliver,
            200,
            event_key,
            at,
        )
        .patient(nhs_number)
        .subscriber(subscriber_id)
    }

    /// The record of an event delivered to no one because its patient is
    /// flagged sensitive.
    pub fn withheld(event_key: &str, nhs_number: Option<NhsNumber>, at: OffsetDateTime) -> Self {
        Self::by_hub(
            format!("withheld/{event_key}"),
            Action::Deliver,
            204,
            event_key,
            at,
        )
        .patient(nhs_number)
        .detail("withheld: the patient is flagged sensitive")
    }

    /// The record of a child's sensitive flag changed by an event: one per
    /// event and child, however often dispatch is retried.
    pub fn sensitivity_change(
        event_key: &str,
        nhs_number: NhsNumber,
        sensitive: bool,
        at: OffsetDateTime,
    ) -> Self {
        Self::by_hub(
            format!("sensitivity/{event_key}/{nhs_number}"),
            Action::SensitivityChange,
            200,
            event_key,
            at,
        )
        .patient(Some(nhs_number))
        .detail(if sensitive {
            "flagged sensitive"
        } else {
            "sensitive flag cleared by the demographics authority"
        })
    }

    /// The record of a subscription's end on the loss of its basis: one per
    /// subscription, written before the end, so a retried dispatch writes
    /// the same record and an end is never without one.
    pub fn basis_lost(
        event_key: &str,
        subscription: &crate::subscription::Subscription,
        ended: &crate::basis::Ended,
        at: OffsetDateTime,
    ) -> Self {
        Self::by_hub(
            format!("basis-lost/{}", subscription.id),
            Action::BasisLost,
            200,
            event_key,
            at,
        )
        .patient(subscription.criteria.target.patient())
        .subscription(subscription.id.clone())
        .subscriber(subscription.subscriber_id.clone())
        .detail(ended.detail.clone())
    }

    /// The record of a delivery held back by an embargo: one per event and
    /// subscriber, however often dispatch is retried. It grants no event
    /// read (only a `Deliver` record does).
    pub fn embargo_hold(
        (event_key, subscriber_id): (&str, &str),
        release_at: &str,
        nhs_number: Option<NhsNumber>,
        at: OffsetDateTime,
    ) -> Self {
        Self::by_hub(
            format!("embargo-hold/{event_key}/{subscriber_id}"),
            Action::EmbargoHold,
            202,
            event_key,
            at,
        )
        .patient(nhs_number)
        .subscriber(subscriber_id)
        .detail(format!("held until {release_at}"))
    }

    /// The record of a held delivery's release, written before its publish
    /// under an id of its own: it grants no event read (the `Deliver`
    /// record written once the publish succeeded does), yet a run stopped
    /// after the publish still leaves the release in the trail.
    pub fn embargo_release(
        (event_key, subscriber_id): (&str, &str),
        nhs_number: Option<NhsNumber>,
        detail: String,
        at: OffsetDateTime,
    ) -> Self {
        Self::by_hub(
            format!("embargo-release/{event_key}/{subscriber_id}"),
            Action::Deliver,
            200,
            event_key,
            at,
        )
        .patient(nhs_number)
        .subscriber(subscriber_id)
        .detail(detail)
    }

    /// The record of a held delivery cancelled before its release, with why.
    pub fn embargo_cancel(
        (event_key, subscriber_id): (&str, &str),
        nhs_number: Option<NhsNumber>,
        reason: &str,
        at: OffsetDateTime,
    ) -> Self {
        Self::by_hub(
            format!("embargo-cancel/{event_key}/{subscriber_id}"),
            Action::EmbargoCancel,
            204,
            event_key,
            at,
        )
        .patient(nhs_number)
        .subscriber(subscriber_id)
        .detail(reason)
    }

    /// The record of the mother-baby link a birth notification made, under
    /// the baby: one per event, however often dispatch is retried.
    pub fn birth_link(
        event_key: &str,
        baby: NhsNumber,
        mother: NhsNumber,
        at: OffsetDateTime,
    ) -> Self {
        Self::by_hub(
            format!("birth-link/{event_key}"),
            Action::RelationshipChange,
            200,
            event_key,
            at,
        )
        .patient(Some(baby))
        .detail(format!("birth-notification linked MTH person={mother}"))
    }

    /// The same record under another id (a replay's delivery is a record
    /// of its own beside the first delivery's).
    pub fn with_id(mut self, audit_id: impl Into<String>) -> Self {
        self.audit_id = audit_id.into();
        self
    }

    pub fn patient(mut self, nhs_number: Option<NhsNumber>) -> Self {
        self.nhs_number = nhs_number.map(|number| number.as_string());
        self
    }

    pub fn event(mut self, event_key: impl Into<String>) -> Self {
        self.event_key = Some(event_key.into());
        self
    }

    pub fn subscription(mut self, subscription_id: impl Into<String>) -> Self {
        self.subscription_id = Some(subscription_id.into());
        self
    }

    pub fn subscriber(mut self, subscriber_id: impl Into<String>) -> Self {
        self.subscriber_id = Some(subscriber_id.into());
        self
    }

    pub fn detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = Some(detail.into());
        self
    }
}

/// The id of the record of an event's delivery to a subscriber: what a read
/// of the event checks.
pub fn delivery_id(event_key: &str, subscriber_id: &str) -> String {
    format!("delivery/{event_key}/{subscriber_id}")
}

/// Whose records an operator asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuditQuery {
    Patient(NhsNumber),
    Client(String),
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn times_sort_as_text_whatever_their_fraction() {
        let times = [
            datetime!(2026-01-01 10:00:00 UTC),
            datetime!(2026-01-01 10:00:00.1 UTC),
            datetime!(2026-01-01 10:00:00.15 UTC),
            datetime!(2026-01-01 10:00:00.999 UTC),
            datetime!(2026-01-01 11:00:00.5 +01:00),
            datetime!(2026-01-01 10:00:01 UTC),
        ];
        let written: Vec<String> = times.iter().map(|at| timestamp(*at)).collect();
        assert_eq!(written[0], "2026-01-01T10:00:00.000Z");
        assert_eq!(written[4], "2026-01-01T10:00:00.500Z");
        let mut sorted = written.clone();
        sorted.sort();
        let by_time: Vec<String> = {
            let mut times = times.to_vec();
            times.sort();
            times.iter().map(|at| timestamp(*at)).collect()
        };
        assert_eq!(sorted, by_time);
    }
}
