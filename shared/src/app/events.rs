//! Publishing and releasing events: the use cases over the event store, the
//! register and the audit trail (the rules they apply are in `crate::events`).

use time::OffsetDateTime;

use super::register::record_event;
use crate::auth::Caller;
use crate::catalogue::EventType;
use crate::error::HubError;
use crate::events::{PublishOutcome, Retention, StoredEvent};
use crate::message::{Encoding, EventMessage};
use crate::nhs_number::NhsNumber;
use crate::ports::{AuditLog, EventStore, Insert, RegisterStore, StoreError};
use crate::register::RegisterUpdate;

/// Whether the register already holds the child an event is about (or, for
/// a birth, its mother) as sensitive: such an event is stored withheld, so
/// that the publisher's answer and every later read agree with dispatch.
async fn known_sensitive<R: RegisterStore>(
    register: &R,
    message: &EventMessage,
) -> Result<bool, StoreError> {
    super::register::any_sensitive(register, [message.subject, message.nhs_number]).await
}

/// `POST /events/{id}/$release`: an operator releases an event withheld
/// while its child was flagged sensitive, once the demographics authority
/// has cleared the flag. It becomes readable in the child's history, by
/// `GET /events/{id}` and by replays; it is not sent again on its own. An
/// event whose message itself carries a confidentiality label is never
/// released. Returns the child the event is about (a birth's baby), whose
/// audit trail records the release.
pub async fn release<S: EventStore, R: RegisterStore>(
    store: &S,
    register: &R,
    event_key: &str,
    now: OffsetDateTime,
) -> Result<Option<NhsNumber>, HubError> {
    let event = store
        .get(event_key)
        .await?
        .filter(|event| event.is_live(now))
        .ok_or_else(|| HubError::NotFound(format!("event {event_key}")))?;
    if !event.sensitive {
        return Err(HubError::unprocessable(
            "id",
            "the event is not withheld: there is nothing to release",
        ));
    }
    // Read again as at its publish; a payload that no longer reads is not
    // released, as nothing can be said of its labels.
    let message = Encoding::from_content_type(&event.content_type)
        .and_then(|encoding| EventMessage::read(&event.payload, encoding).ok())
        .filter(|message| !message.sensitive)
        .ok_or_else(|| {
            HubError::unprocessable(
                "id",
                "the message carries a confidentiality label: it stays withheld",
            )
        })?;
    if known_sensitive(register, &message).await? {
        return Err(HubError::unprocessable(
            "id",
            "the child is still flagged sensitive: only the demographics authority clears the flag",
        ));
    }
    store.set_withheld(event_key, false).await?;
    Ok(message.subject.or(event.nhs_number))
}

/// Checks a published message and stores it once, if its publisher may
/// publish it: the event type before the message is read, the organisation
/// it names responsible once it is. The message arrives as text in its
/// encoding: its media type, size and characters are the Lambda layer's to
/// check (lambda/events.rs), which checks the event type first too, so that
/// a publisher learns nothing of a type it may not publish.
#[allow(clippy::too_many_arguments)]
pub async fn publish<S: EventStore, R: RegisterStore, A: AuditLog>(
    store: &S,
    register: &R,
    audit: &A,
    publisher: &Caller,
    expected: EventType,
    encoding: Encoding,
    text: &str,
    received_at: OffsetDateTime,
    retention: Retention,
) -> Result<PublishOutcome, HubError> {
    publisher.may_publish_type(expected)?;
    let message = EventMessage::read(text, encoding)?;
    if message.event_type != expected {
        return Err(HubError::EventTypeMismatch {
            expected,
            found: message.event_type,
        });
    }
    publisher.may_publish_for(message.responsible_ods.as_deref())?;
    // A label flags the child before the event is stored: events accepted
    // after it are then stored withheld, whichever is dispatched first.
    if let Some(label) = RegisterUpdate::label_of(&message, received_at) {
        record_event(register, audit, label, received_at).await?;
    }
    let mut event = StoredEvent::new(&message, encoding, text, received_at, retention);
    event.clears_sensitivity = publisher.sensitivity_authority
        && message.event_type == EventType::PdsRecordChange
        && !message.sensitive;
    // The event that may clear the flag is not withheld for the flag it
    // clears; dispatch still withholds it if a newer statement keeps it set.
    if !event.sensitive && !event.clears_sensitivity {
        event.sensitive = known_sensitive(register, &message).await?;
    }
    match store.insert(&event).await? {
        Insert::Stored { out_of_order } => Ok(PublishOutcome::Accepted {
            event_id: event.event_id,
            nhs_number: event.nhs_number,
            sensitive: event.sensitive,
            warnings: message.warnings,
            out_of_order,
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
