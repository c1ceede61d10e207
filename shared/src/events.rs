//! Publishing: a message is checked, then stored once under its
//! MessageHeader.id. Fan-out happens later, from the store's change stream.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;

use crate::catalogue::{EventType, Lifecycle};
use crate::fhir_time::{format_instant, parse_instant};
use crate::message::{Encoding, EventMessage, Identifier, Warning};
use crate::nhs_number::NhsNumber;

/// The largest message body the hub accepts, in bytes. A delivery is one SNS
/// message of at most 262 144 bytes, body and attributes together; 192 KiB
/// leaves 64 KiB for the attributes (the matching subscriptions and their
/// tags among them). A DynamoDB item (400 KB) holds it with room to spare.
pub const MAX_PAYLOAD_BYTES: usize = 192 * 1024;

/// An accepted event as the events table holds it. The same record reaches
/// dispatch through the table's stream, so it carries what routing needs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StoredEvent {
    /// The table key: `<event type>/<MessageHeader.id>`. Duplicates are
    /// detected per event type (see docs/architecture.md).
    pub event_key: String,
    /// MessageHeader.id, lower case.
    pub event_id: String,
    pub event_type: EventType,
    pub lifecycle: Lifecycle,
    pub content_type: String,
    /// The body exactly as published.
    pub payload: String,
    pub payload_sha256: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nhs_number: Option<NhsNumber>,
    /// The routed patient's date of birth, YYYY-MM-DD.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub birth_date: Option<String>,
    /// MessageHeader.timestamp (RFC 3339).
    pub timestamp: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_updated: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version_id: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub responsible_ods: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gp_ods: Option<String>,
    /// Whether the patient is registered with a GP; unknown (None) when the
    /// message has no Patient entry to say.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub registered_with_gp: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub home_postcode: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_postcode: Option<String>,
    /// Withheld: delivered to no one and left out of every read (history,
    /// event read, replay). Set when the message carries a confidentiality
    /// label, when the child was known sensitive as it was accepted, and by
    /// dispatch when it withholds the event; cleared only by an operator's
    /// release. Stored as `sensitive`.
    pub sensitive: bool,
    /// An unlabelled `pds-record-change-1` from a publisher holding the
    /// sensitivity-authority grant: the one kind of event that may clear a
    /// child's sensitive flag.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub clears_sensitivity: bool,
    pub received_at: String,
    /// What links versions of the focus resource (see [`focus_key`]); absent
    /// when the focus carries no business identifier.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub focus_identifier: Option<String>,
    /// Set by the store when the event arrived after a newer version of its
    /// focus resource, or deletes one the hub has never seen.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub out_of_order: Option<OutOfOrder>,
    /// The day the hub accepted it (UTC, YYYY-MM-DD): the partition of the
    /// index replays read in order of arrival.
    pub received_day: String,
    /// `<receivedAt with milliseconds>#<eventKey>`: orders a child's events
    /// and a day's events by arrival, uniquely.
    pub received_sort: String,
    /// When the event leaves the store (Unix seconds, DynamoDB's TTL).
    pub expires_at: i64,
}

impl StoredEvent {
    pub fn new(
        message: &EventMessage,
        encoding: Encoding,
        payload: &str,
        received_at: OffsetDateTime,
        retention: Retention,
    ) -> Self {
        let patient = message.patient.as_ref();
        let key = event_key(message.event_type, &message.message_id);
        StoredEvent {
            received_day: received_day(received_at),
            received_sort: received_sort(received_at, &key),
            expires_at: retention.expiry(received_at),
            focus_identifier: message
                .focus_identifiers
                .first()
                .map(|identifier| focus_key(message.event_type, message.nhs_number, identifier)),
            out_of_order: None,
            event_key: key,
            event_id: message.message_id.clone(),
            event_type: message.event_type,
            lifecycle: message.lifecycle,
            content_type: encoding.media_type().to_owned(),
            payload: payload.to_owned(),
            payload_sha256: sha256_hex(payload),
            nhs_number: message.nhs_number,
            birth_date: message
                .birth_date
                .or_else(|| patient.and_then(|p| p.birth_date))
                .map(|date| date.to_string()),
            timestamp: format_instant(message.timestamp),
            last_updated: message.last_updated.map(format_instant),
            version_id: message.version_id,
            responsible_ods: message.responsible_ods.clone(),
            gp_ods: patient.and_then(|p| p.gp_ods.clone()),
            registered_with_gp: patient.map(|p| p.has_gp),
            home_postcode: patient.and_then(|p| p.home_postcode.clone()),
            previous_postcode: patient.and_then(|p| p.previous_postcode.clone()),
            sensitive: message.sensitive,
            clears_sensitivity: false,
            received_at: format_instant(received_at),
        }
    }
}

impl StoredEvent {
    /// The version the hub compares: meta.lastUpdated (else the message's
    /// timestamp), then meta.versionId.
    fn version(&self) -> (OffsetDateTime, u64) {
        version_key(
            self.last_updated.as_deref().unwrap_or(&self.timestamp),
            self.version_id,
        )
    }

    /// Still held: not past its retention period (DynamoDB removes expired
    /// items lazily, so reads check too).
    pub fn is_live(&self, now: OffsetDateTime) -> bool {
        self.expires_at > now.unix_timestamp()
    }
}

fn version_key(last_updated: &str, version_id: Option<u64>) -> (OffsetDateTime, u64) {
    (
        parse_instant(last_updated).unwrap_or(OffsetDateTime::UNIX_EPOCH),
        version_id.unwrap_or(0),
    )
}

/// The business identifier that links an update or delete to what it
/// changes, scoped to the event type (suppliers reuse identifier values
/// across resource kinds: the NEMS vaccination and professional contact
/// examples share `https://supplierABC/identifiers|abc1111`) and to the
/// routed patient (and across children: one child's record must never make
/// another's event look out of date).
pub fn focus_key(
    event_type: EventType,
    nhs_number: Option<NhsNumber>,
    identifier: &Identifier,
) -> String {
    let patient = nhs_number
        .map(|number| number.to_string())
        .unwrap_or_default();
    format!(
        "{event_type}|{patient}|{}|{}",
        identifier.system, identifier.value
    )
}

/// Why a delivery is flagged out of order: a receiver that trusts the flag
/// needs no history of its own to discard it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OutOfOrder {
    /// Older than the version the hub already holds as current.
    OlderThanCurrent,
    /// A delete of a resource the hub has never seen.
    UnknownResource,
}

impl OutOfOrder {
    pub fn code(self) -> &'static str {
        match self {
            OutOfOrder::OlderThanCurrent => "older-than-current",
            OutOfOrder::UnknownResource => "unknown-resource",
        }
    }
}

/// The code as the delivery's `outOfOrder` attribute carries it.
impl FromStr for OutOfOrder {
    type Err = ();
    fn from_str(code: &str) -> Result<Self, Self::Err> {
        match code {
            "older-than-current" => Ok(OutOfOrder::OlderThanCurrent),
            "unknown-resource" => Ok(OutOfOrder::UnknownResource),
            _ => Err(()),
        }
    }
}

impl fmt::Display for OutOfOrder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

/// The version the hub holds as current for one focus identifier.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CurrentVersion {
    pub focus_identifier: String,
    pub event_key: String,
    pub lifecycle: Lifecycle,
    pub last_updated: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version_id: Option<u64>,
    /// The event's own expiry: the link goes when the version does.
    #[serde(default)]
    pub expires_at: i64,
}

impl CurrentVersion {
    pub fn of(event: &StoredEvent) -> Option<Self> {
        Some(CurrentVersion {
            focus_identifier: event.focus_identifier.clone()?,
            event_key: event.event_key.clone(),
            lifecycle: event.lifecycle,
            last_updated: event
                .last_updated
                .clone()
                .unwrap_or_else(|| event.timestamp.clone()),
            version_id: event.version_id,
            expires_at: event.expires_at,
        })
    }

    fn version(&self) -> (OffsetDateTime, u64) {
        version_key(&self.last_updated, self.version_id)
    }
}

/// Where a new event stands among the versions of its focus resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Placement {
    pub out_of_order: Option<OutOfOrder>,
    /// It is the newest version: the hub's current one from now on.
    pub becomes_current: bool,
}

/// Places an event against the current version of its focus resource.
/// An equal version (a re-publish under a new message id) leaves the first
/// one current and is not flagged.
pub fn place(event: &StoredEvent, current: Option<&CurrentVersion>) -> Placement {
    match current {
        None => Placement {
            out_of_order: (event.lifecycle == Lifecycle::Delete)
                .then_some(OutOfOrder::UnknownResource),
            becomes_current: true,
        },
        Some(current) => match event.version().cmp(&current.version()) {
            std::cmp::Ordering::Less => Placement {
                out_of_order: Some(OutOfOrder::OlderThanCurrent),
                becomes_current: false,
            },
            std::cmp::Ordering::Equal => Placement {
                out_of_order: None,
                becomes_current: false,
            },
            std::cmp::Ordering::Greater => Placement {
                out_of_order: None,
                becomes_current: true,
            },
        },
    }
}

/// How long the hub keeps an event (the EventRetentionDays parameter).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    pub days: u32,
}

impl Retention {
    /// 2 190 days (six years): the Healthy Child Programme runs from birth to
    /// five, so an e-Red Book's timeline and a late joiner's replay can reach
    /// back to the birth of any child in it, with a year's margin; the hub is
    /// not the record of care (GP and CHIS systems are), so it keeps no more.
    pub const DEFAULT: Retention = Retention { days: 2190 };

    /// From a setting of whole days (the EVENT_RETENTION_DAYS environment
    /// variable, which the Lambda layer reads at start-up); the default
    /// when there is none (absent or empty). A setting that is not a whole
    /// number of days above zero is refused, not replaced by the default:
    /// an operator who set it meant something else.
    pub fn from_setting(days: Option<&str>) -> Result<Self, String> {
        Ok(crate::text::whole_number_above_zero(days, "of days ")?
            .map_or(Self::DEFAULT, |days| Retention { days }))
    }

    pub fn expiry(self, received_at: OffsetDateTime) -> i64 {
        received_at.unix_timestamp() + i64::from(self.days) * 86_400
    }

    /// The oldest arrival time still held at `now`.
    pub fn horizon(self, now: OffsetDateTime) -> OffsetDateTime {
        now - time::Duration::days(i64::from(self.days))
    }
}

pub fn received_day(at: OffsetDateTime) -> String {
    crate::audit::timestamp(at)[..10].to_owned()
}

/// Fixed-width, so that text order is time order.
pub fn received_sort(at: OffsetDateTime, event_key: &str) -> String {
    format!("{}#{event_key}", crate::audit::timestamp(at))
}

/// The first position (a `received_sort` prefix) surely accepted at or after
/// `from`: positions hold milliseconds, so `from` is rounded up, and an
/// event in the same millisecond counts as before it (never on doubt).
pub fn first_position(from: OffsetDateTime) -> String {
    let rounded_up = from
        .checked_add(time::Duration::nanoseconds(999_999))
        .unwrap_or(from);
    crate::audit::timestamp(rounded_up)
}

/// Whether the event at this position (`received_sort`) was accepted at or
/// after `from` (first_position).
pub fn received_since(received_sort: &str, from: OffsetDateTime) -> bool {
    received_sort >= first_position(from).as_str()
}

/// What the patient index holds of an event: enough to build a timeline
/// (which versions are current, which match a filter) before any payload
/// is read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EventSummary {
    pub event_key: String,
    pub event_type: EventType,
    pub lifecycle: Lifecycle,
    pub timestamp: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_updated: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version_id: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub focus_identifier: Option<String>,
    pub sensitive: bool,
    pub received_sort: String,
    pub expires_at: i64,
}

impl EventSummary {
    pub fn of(event: &StoredEvent) -> Self {
        EventSummary {
            event_key: event.event_key.clone(),
            event_type: event.event_type,
            lifecycle: event.lifecycle,
            timestamp: event.timestamp.clone(),
            last_updated: event.last_updated.clone(),
            version_id: event.version_id,
            focus_identifier: event.focus_identifier.clone(),
            sensitive: event.sensitive,
            received_sort: event.received_sort.clone(),
            expires_at: event.expires_at,
        }
    }

    fn version(&self) -> (OffsetDateTime, u64) {
        version_key(
            self.last_updated.as_deref().unwrap_or(&self.timestamp),
            self.version_id,
        )
    }

    pub fn is_live(&self, now: OffsetDateTime) -> bool {
        self.expires_at > now.unix_timestamp()
    }
}

/// The current versions among a child's events, in their order: for each
/// focus identifier the newest version (the first to arrive among equals),
/// left out when that version is a delete; an event without an identifier
/// is a version of its own. The same rule as [`place`], so a timeline
/// agrees with the flags deliveries carried.
pub fn current_versions(events: &[EventSummary]) -> Vec<&EventSummary> {
    let mut newest: std::collections::HashMap<&str, &EventSummary> =
        std::collections::HashMap::new();
    for event in events {
        if let Some(identifier) = event.focus_identifier.as_deref() {
            let entry = newest.entry(identifier).or_insert(event);
            if event.version() > entry.version()
                || (event.version() == entry.version() && event.received_sort < entry.received_sort)
            {
                *entry = event;
            }
        }
    }
    events
        .iter()
        .filter(|event| match event.focus_identifier.as_deref() {
            None => true,
            Some(identifier) => newest.get(identifier).is_some_and(|current| {
                current.event_key == event.event_key && event.lifecycle != Lifecycle::Delete
            }),
        })
        .collect()
}

/// A FHIR id as MessageHeader.id holds it (lower case): 1 to 64 letters,
/// digits, '-' or '.'. Nothing else can name a stored event.
pub fn is_message_id(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && id.bytes().all(|byte| {
            byte.is_ascii_lowercase() || byte.is_ascii_digit() || byte == b'-' || byte == b'.'
        })
}

/// The key an event is stored and deduplicated under.
pub fn event_key(event_type: EventType, message_id: &str) -> String {
    format!("{event_type}/{message_id}")
}

pub fn sha256_hex(text: &str) -> String {
    Sha256::digest(text.as_bytes())
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

/// What became of a publish that was not refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PublishOutcome {
    /// Durably stored; it will be delivered to every matching subscriber,
    /// unless the patient is sensitive.
    Accepted {
        event_id: String,
        nhs_number: Option<NhsNumber>,
        sensitive: bool,
        warnings: Vec<Warning>,
        out_of_order: Option<OutOfOrder>,
    },
    /// Already stored with the same body; nothing more happens.
    Duplicate {
        event_id: String,
        nhs_number: Option<NhsNumber>,
    },
}

impl PublishOutcome {
    pub fn event_id(&self) -> &str {
        match self {
            PublishOutcome::Accepted { event_id, .. }
            | PublishOutcome::Duplicate { event_id, .. } => event_id,
        }
    }

    pub fn nhs_number(&self) -> Option<NhsNumber> {
        match self {
            PublishOutcome::Accepted { nhs_number, .. }
            | PublishOutcome::Duplicate { nhs_number, .. } => *nhs_number,
        }
    }
}

/// The event key and routing NHS number of a message that was refused, if
/// it can be read: so that a refused attempt appears in the patient's audit
/// trail too.
pub fn identify(
    event_type: EventType,
    content_type: Option<&str>,
    body: &[u8],
) -> Option<(String, Option<NhsNumber>)> {
    let encoding = content_type.and_then(Encoding::from_content_type)?;
    if body.len() > MAX_PAYLOAD_BYTES {
        return None;
    }
    let message = EventMessage::read(std::str::from_utf8(body).ok()?, encoding).ok()?;
    Some((
        event_key(event_type, &message.message_id),
        message.nhs_number,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A subscription created part-way through a millisecond sees nothing
    /// of that millisecond: positions cannot say which came first.
    #[test]
    fn a_position_in_the_creation_millisecond_counts_as_before_it() {
        let created = time::macros::datetime!(2026-12-07 10:00:00.123_400 UTC);
        assert_eq!(first_position(created), "2026-12-07T10:00:00.124Z");
        assert!(!received_since(
            "2026-12-07T10:00:00.123Z#vaccinations-1/a",
            created
        ));
        assert!(received_since(
            "2026-12-07T10:00:00.124Z#vaccinations-1/b",
            created
        ));
        let exact = time::macros::datetime!(2026-12-07 10:00:00.123 UTC);
        assert!(received_since(
            "2026-12-07T10:00:00.123Z#vaccinations-1/c",
            exact
        ));
        // The end of time (an unreadable creation) admits nothing, and
        // does not overflow.
        let end = time::PrimitiveDateTime::MAX.assume_utc();
        assert!(!received_since(
            "9999-12-31T23:59:59.998Z#vaccinations-1/d",
            end
        ));
    }

    /// No setting keeps the default; a setting that is no whole number of
    /// days above zero is refused, never taken for the default.
    #[test]
    fn a_retention_setting_is_days_above_zero_or_refused() {
        assert_eq!(Retention::from_setting(None), Ok(Retention::DEFAULT));
        assert_eq!(Retention::from_setting(Some("")), Ok(Retention::DEFAULT));
        assert_eq!(
            Retention::from_setting(Some("30")),
            Ok(Retention { days: 30 })
        );
        for bad in ["0", "-1", "six years", "2190.5", "99999999999"] {
            let problem = Retention::from_setting(Some(bad)).unwrap_err();
            assert!(problem.contains(bad), "{problem}");
        }
    }

    #[test]
    fn out_of_order_codes_round_trip() {
        for flag in [OutOfOrder::OlderThanCurrent, OutOfOrder::UnknownResource] {
            assert_eq!(flag.code().parse::<OutOfOrder>(), Ok(flag));
            assert_eq!(flag.to_string(), flag.code());
            let json = serde_json::to_string(&flag).unwrap();
            assert_eq!(json, format!("\"{}\"", flag.code()));
        }
        for unknown in ["late", "Older-Than-Current", "older_than_current", ""] {
            assert_eq!(unknown.parse::<OutOfOrder>(), Err(()), "{unknown:?}");
        }
    }
}
