//! Recording the relationship events a relationship publisher sends
//! (`POST /relationship-events`).

use time::OffsetDateTime;

use super::people::end_resting_on;
use super::subscription::related_now;
use crate::auth::{Caller, Role};
use crate::basis::{EndReason, Ended};
use crate::error::HubError;
use crate::ports::{Ports, Recorded, RelationshipStore};
use crate::relationship::{RelationshipChange, read_vrs_signal};

/// Where the signal names its source: what a 403 for a source not the
/// caller's points at.
pub const SOURCE_EXPRESSION: &str =
    "Parameters.parameter.where(name='additional-context').part.where(name='source')";

/// What became of a relationship event that was not refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelationshipOutcome {
    pub change: RelationshipChange,
    /// Never `Conflict`: that is refused (409).
    pub recorded: Recorded,
}

/// Reads the event (`body`, FHIR JSON), checks that the caller may publish
/// for its source, and records it. The role is checked before the body is
/// read: a client without it learns nothing of the body's rules. The same
/// event id with another body is refused as a conflict.
///
/// A relationship that no longer holds ends, at once, every subscription
/// that rested on it (`people::end_resting_on`); a repeat of the event ends
/// what a failed first attempt left.
pub async fn publish_relationship_event<P: Ports>(
    ports: &P,
    caller: &Caller,
    body: &str,
    now: OffsetDateTime,
) -> Result<RelationshipOutcome, HubError> {
    caller.require(Role::RelationshipPublisher)?;
    let change = read_vrs_signal(body, &caller.client_id, now)?;
    caller.may_publish_relationships(&change.event_source, SOURCE_EXPRESSION)?;
    let recorded = ports.relationships().record(&change).await?;
    if recorded == Recorded::Conflict {
        return Err(HubError::Conflict {
            expression: "Bundle.id".into(),
            problem: format!(
                "relationship event {} from {} was already received with a different body",
                change.bundle_id, change.event_source
            ),
        });
    }
    let relationship = &change.relationship;
    // Another source may still relate the two (a birth notification's link
    // beside a VRS relationship): the basis holds while any does.
    if recorded != Recorded::OutOfOrder
        && !relationship.is_active(now)
        && !related_now(ports, relationship.child_nhs, relationship.person_nhs, now).await?
    {
        let ended = Ended {
            at: crate::audit::timestamp(now),
            reason: EndReason::RelationshipEnded,
            last_event: None,
            detail: format!(
                "basis lost: the child's relationship with person {} ended ({})",
                relationship.person_nhs, relationship.by_event
            ),
        };
        end_resting_on(
            ports,
            None,
            relationship.child_nhs,
            relationship.person_nhs,
            &ended,
            &relationship.by_event,
            now,
        )
        .await?;
    }
    Ok(RelationshipOutcome { change, recorded })
}
