//! Publishing: a message is checked, then stored once under its
//! MessageHeader.id. Fan-out happens later, from the store's change stream.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;

use crate::auth::Caller;
use crate::catalogue::{EventType, Lifecycle};
use crate::error::HubError;
use crate::fhir_time::format_instant;
use crate::message::{Encoding, EventMessage, Warning};
use crate::nhs_number::NhsNumber;
use crate::outcome::{Issue, OperationOutcome, Severity};
use crate::ports::{EventStore, Insert, RegisterStore, StoreError};

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
    pub sensitive: bool,
    pub received_at: String,
}

impl StoredEvent {
    pub fn new(
        message: &EventMessage,
        encoding: Encoding,
        payload: &str,
        received_at: OffsetDateTime,
    ) -> Self {
        let patient = message.patient.as_ref();
        StoredEvent {
            event_key: event_key(message.event_type, &message.message_id),
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
            received_at: format_instant(received_at),
        }
    }
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
    },
    /// Already stored with the same body; nothing more happens.
    Duplicate {
        event_id: String,
        nhs_number: Option<NhsNumber>,
    },
}

impl PublishOutcome {
    pub fn status(&self) -> u16 {
        match self {
            PublishOutcome::Accepted { .. } => 202,
            PublishOutcome::Duplicate { .. } => 200,
        }
    }

    pub fn outcome(&self) -> OperationOutcome {
        match self {
            PublishOutcome::Accepted {
                event_id,
                sensitive,
                warnings,
                ..
            } => {
                let mut accepted = OperationOutcome::information(
                    "ACCEPTED",
                    format!("event {event_id} accepted for delivery"),
                );
                for warning in warnings {
                    accepted = accepted.with(Issue {
                        severity: Severity::Warning,
                        code: "value",
                        spine_code: "INVALID_VALUE",
                        diagnostics: warning.problem.clone(),
                        expression: vec![warning.expression.clone()],
                    });
                }
                if *sensitive {
                    accepted.with(Issue {
                        severity: Severity::Warning,
                        code: "suppressed",
                        spine_code: "SENSITIVE_PATIENT",
                        diagnostics:
                            "the patient is flagged sensitive: the event is kept and audited \
                                      but delivered to no subscriber"
                                .into(),
                        expression: Vec::new(),
                    })
                } else {
                    accepted
                }
            }
            PublishOutcome::Duplicate { event_id, .. } => OperationOutcome::information(
                "DUPLICATE",
                format!("event {event_id} was already accepted; it is not delivered again"),
            ),
        }
    }
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

/// An accepted event whose message carries no confidentiality label, about
/// a child the register already knows to be sensitive: it will be withheld
/// all the same, and the publisher's answer must say so.
pub async fn note_known_sensitivity<R: RegisterStore>(
    outcome: PublishOutcome,
    register: &R,
) -> Result<PublishOutcome, StoreError> {
    match outcome {
        PublishOutcome::Accepted {
            event_id,
            nhs_number: Some(nhs_number),
            sensitive: false,
            warnings,
        } => {
            let sensitive = register
                .get(nhs_number)
                .await?
                .is_some_and(|record| record.value.is_sensitive());
            Ok(PublishOutcome::Accepted {
                event_id,
                nhs_number: Some(nhs_number),
                sensitive,
                warnings,
            })
        }
        other => Ok(other),
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

/// Checks a published body and stores it once, if its publisher may
/// publish it: the event type before the body is read, the organisation
/// it names responsible once it is.
pub async fn publish<S: EventStore>(
    store: &S,
    publisher: &Caller,
    expected: EventType,
    content_type: Option<&str>,
    body: &[u8],
    received_at: OffsetDateTime,
) -> Result<PublishOutcome, HubError> {
    publisher.may_publish_type(expected)?;
    let encoding = content_type
        .and_then(Encoding::from_content_type)
        .ok_or_else(|| {
            HubError::unsupported_media_type(content_type, crate::error::FHIR_MEDIA_TYPES)
        })?;
    if body.len() > MAX_PAYLOAD_BYTES {
        return Err(HubError::PayloadTooLarge {
            size: body.len(),
            limit: MAX_PAYLOAD_BYTES,
        });
    }
    let text = std::str::from_utf8(body).map_err(|_| HubError::NotText)?;
    let message = EventMessage::read(text, encoding)?;
    if message.event_type != expected {
        return Err(HubError::EventTypeMismatch {
            expected,
            found: message.event_type,
        });
    }
    publisher.may_publish_for(message.responsible_ods.as_deref())?;
    let event = StoredEvent::new(&message, encoding, text, received_at);
    match store.insert(&event).await? {
        Insert::Stored => Ok(PublishOutcome::Accepted {
            event_id: event.event_id,
            nhs_number: event.nhs_number,
            sensitive: event.sensitive,
            warnings: message.warnings,
        }),
        Insert::Duplicate => Ok(PublishOutcome::Duplicate {
            event_id: event.event_id,
            nhs_number: event.nhs_number,
        }),
        Insert::Conflict => Err(HubError::DuplicateConflict {
            message_id: event.event_id,
        }),
    }
}
