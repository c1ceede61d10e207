//! The audit trail: who did what, when, about which patient, and how it
//! ended. Every request the hub answers (refusals included) and every
//! delivery leaves one record. Records carry patient identifiers; the
//! application logs never do.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

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
    RegisterRead,
    AuditRead,
    Onboard,
    Offboard,
    ClientRegister,
    ClientDisable,
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

pub fn timestamp(at: OffsetDateTime) -> String {
    let at = at.to_offset(time::UtcOffset::UTC);
    let millis = at.replace_nanosecond(at.millisecond() as u32 * 1_000_000);
    millis
        .unwrap_or(at)
        .format(&Rfc3339)
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

    /// The record of one delivery: one per event and subscriber, whatever
    /// the number of dispatch attempts.
    pub fn delivery(
        event_key: &str,
        subscriber_id: &str,
        nhs_number: Option<NhsNumber>,
        at: OffsetDateTime,
    ) -> Self {
        AuditRecord {
            audit_id: delivery_id(event_key, subscriber_id),
            at: timestamp(at),
            client_id: HUB_ACTOR.to_owned(),
            ods_code: None,
            action: Action::Deliver,
            status: 200,
            nhs_number: nhs_number.map(|number| number.as_string()),
            event_key: Some(event_key.to_owned()),
            subscription_id: None,
            subscriber_id: Some(subscriber_id.to_owned()),
            detail: None,
        }
    }

    /// The record of an event delivered to no one because its patient is
    /// flagged sensitive.
    pub fn withheld(event_key: &str, nhs_number: Option<NhsNumber>, at: OffsetDateTime) -> Self {
        AuditRecord {
            audit_id: format!("withheld/{event_key}"),
            at: timestamp(at),
            client_id: HUB_ACTOR.to_owned(),
            ods_code: None,
            action: Action::Deliver,
            status: 204,
            nhs_number: nhs_number.map(|number| number.as_string()),
            event_key: Some(event_key.to_owned()),
            subscription_id: None,
            subscriber_id: None,
            detail: Some("withheld: the patient is flagged sensitive".to_owned()),
        }
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
