//! Parent and carer relationships: who is related to a child, as an
//! authorised source stated it (docs/proposals/appropriate-access.md,
//! sections 1 and 4). A relationship is the basis on which a personal child
//! health record (PCHR) acting for the person may later see the child's
//! events (crate::basis, `Basis::Relationship`).
//!
//! The sources: NHS England's Validated Relationships Service, whose events
//! reach the hub as MNS's hydrated signals ([`vrs`]); and a birth
//! notification, which links the mother it names to the baby
//! ([`RelationshipChange::birth_link`]).

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::fhir_time::{DateTimeValue, parse_date_time};
use crate::nhs_number::NhsNumber;

mod vrs;

pub use vrs::{VRS_SOURCE, read_vrs_signal};

/// The three relationship events MNS publishes for VRS.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum RelationshipEventType {
    #[serde(rename = "vrs-proxy-role-created-1")]
    Created,
    #[serde(rename = "vrs-proxy-role-changed-1")]
    Changed,
    #[serde(rename = "vrs-proxy-role-deleted-1")]
    Deleted,
}

impl RelationshipEventType {
    pub const ALL: [RelationshipEventType; 3] = [
        RelationshipEventType::Created,
        RelationshipEventType::Changed,
        RelationshipEventType::Deleted,
    ];

    pub fn code(self) -> &'static str {
        match self {
            RelationshipEventType::Created => "vrs-proxy-role-created-1",
            RelationshipEventType::Changed => "vrs-proxy-role-changed-1",
            RelationshipEventType::Deleted => "vrs-proxy-role-deleted-1",
        }
    }

    pub fn parse(code: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|known| known.code() == code)
    }

    /// The word of the audit detail: `vrs created MTH P9 ...`.
    pub fn verb(self) -> &'static str {
        match self {
            RelationshipEventType::Created => "created",
            RelationshipEventType::Changed => "changed",
            RelationshipEventType::Deleted => "deleted",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RelationshipStatus {
    Active,
    Inactive,
}

/// One link between a child and a person, as its source last stated it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Relationship {
    pub child_nhs: NhsNumber,
    pub person_nhs: NhsNumber,
    /// The v3-RoleCode of the person to the child: MTH, FTH, PRN, GUARD...
    pub relationship_type: String,
    /// The source's legal basis (VRS `England-NHSProxyLegalBasis`, e.g.
    /// `parental-responsibility`), when it states one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub legal_basis: Option<String>,
    /// Who stated it: `vrs:<client id>` for a relationship publisher.
    pub source: String,
    /// The source's own reference for it (the VRS Consent id).
    pub source_ref: String,
    /// The person's identity proofing level as the source states it (P9,
    /// P5), or `none`: never the hub's own judgement.
    pub verification_level: String,
    /// FHIR date or dateTime, as the source gave it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end: Option<String>,
    pub status: RelationshipStatus,
    /// The source's `meta.lastUpdated`, in [`sortable_instant`] form so that
    /// a store can order updates by comparing text.
    pub source_last_updated: String,
    /// The event that stated it: `<event type>/<Bundle.id>`.
    pub by_event: String,
    /// When the hub recorded it (audit::timestamp form).
    pub changed_at: String,
}

impl Relationship {
    /// Whether the relationship holds at `now`: active, and not past its end.
    pub fn is_active(&self, now: OffsetDateTime) -> bool {
        self.status == RelationshipStatus::Active
            && self
                .end
                .as_deref()
                .and_then(end_moment)
                .is_none_or(|end| end > now)
    }

    /// The relationship's sort key under its child: one relationship per
    /// person and source.
    pub fn key(&self) -> String {
        relationship_key(self.person_nhs, &self.source)
    }
}

/// `PERSON#<person>#<source>`: a relationship's key under its child.
pub fn relationship_key(person: NhsNumber, source: &str) -> String {
    format!("PERSON#{person}#{source}")
}

/// The moment a Period's `end` stops holding: a dateTime at that moment, a
/// date at the end of that day (a Period's end date is inclusive). None for
/// text that is neither, or coarser than a day.
pub fn end_moment(end: &str) -> Option<OffsetDateTime> {
    match parse_date_time(end).ok()? {
        DateTimeValue::DateTime(moment) => Some(moment),
        DateTimeValue::Date(date) => date.next_day().map(|day| day.midnight().assume_utc()),
        DateTimeValue::Year(_) | DateTimeValue::YearMonth(..) => None,
    }
}

/// An instant in UTC with nine fractional digits: text whose order is the
/// order of the moments (RFC 3339 as `time` writes it drops a zero fraction,
/// so `...58Z` would sort after `...58.5Z`).
pub fn sortable_instant(moment: OffsetDateTime) -> String {
    let utc = moment.to_offset(time::UtcOffset::UTC);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:09}Z",
        utc.year(),
        u8::from(utc.month()),
        utc.day(),
        utc.hour(),
        utc.minute(),
        utc.second(),
        utc.nanosecond()
    )
}

/// A relationship event read and checked: what to record, and what the
/// store deduplicates it by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelationshipChange {
    pub relationship: Relationship,
    pub event_type: RelationshipEventType,
    /// The signal's `source` (`uk.nhs.validated-relationships-service`):
    /// with `bundle_id`, what identifies the event.
    pub event_source: String,
    pub bundle_id: String,
    /// The SHA-256 of the body as sent: the same id with another body is a
    /// conflict, with the same body a duplicate.
    pub body_sha256: String,
}

/// The source of the links birth notifications make.
pub const BIRTH_NOTIFICATION_SOURCE: &str = "birth-notification";

impl RelationshipChange {
    /// The link a birth notification makes between the mother it names and
    /// the baby: type MTH, legal basis `birth-mother`, verification level
    /// `none` (the demographics service states it; the mother's identity
    /// level is what her app attests), from the birth date. Keyed on the
    /// event, so a retried dispatch records it once.
    pub fn birth_link(
        baby: NhsNumber,
        mother: NhsNumber,
        birth_date: Option<time::Date>,
        event_key: &str,
        payload_sha256: &str,
        stated_at: OffsetDateTime,
        recorded_at: &str,
    ) -> Self {
        RelationshipChange {
            relationship: Relationship {
                child_nhs: baby,
                person_nhs: mother,
                relationship_type: "MTH".to_owned(),
                legal_basis: Some("birth-mother".to_owned()),
                source: BIRTH_NOTIFICATION_SOURCE.to_owned(),
                source_ref: event_key.to_owned(),
                verification_level: "none".to_owned(),
                start: birth_date.map(|date| date.to_string()),
                end: None,
                status: RelationshipStatus::Active,
                source_last_updated: sortable_instant(stated_at),
                by_event: event_key.to_owned(),
                changed_at: recorded_at.to_owned(),
            },
            event_type: RelationshipEventType::Created,
            event_source: BIRTH_NOTIFICATION_SOURCE.to_owned(),
            bundle_id: event_key.to_owned(),
            body_sha256: payload_sha256.to_owned(),
        }
    }

    /// `RELEVENT#<source>#<Bundle.id>`: the key of the event seen.
    pub fn event_key(&self) -> String {
        format!("RELEVENT#{}#{}", self.event_source, self.bundle_id)
    }

    /// The audit record's detail, under the child:
    /// `vrs created MTH P9 person=<nhs>`.
    pub fn audit_detail(&self) -> String {
        let relationship = &self.relationship;
        format!(
            "vrs {} {} {} person={}",
            self.event_type.verb(),
            relationship.relationship_type,
            relationship.verification_level,
            relationship.person_nhs
        )
    }
}

/// What the store did with a change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recorded {
    /// The first relationship between the child and the person from this
    /// source.
    Created,
    /// A newer statement of a relationship already held.
    Updated,
    /// The same event (same source, id and body) was recorded before.
    Duplicate,
    /// The event's id was recorded before with another body.
    Conflict,
    /// Older than the statement held (`sourceLastUpdated`): seen, recorded
    /// as seen, and ignored.
    OutOfOrder,
}

#[cfg(test)]
mod tests;
