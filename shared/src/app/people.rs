//! The people a parent's app (PCHR) acts for: attesting one, ending it
//! (which ends the subscriptions that rested on it), and listing the
//! children a person is related to, which the app may subscribe to.

use time::OffsetDateTime;

use crate::audit;
use crate::basis::{Basis, EndReason, Ended};
use crate::nhs_number::NhsNumber;
use crate::pchr::{ActedFor, ActingStatus, Attestation};
use crate::ports::{Ports, RelationshipStore, StoreError};
use crate::relationship::Relationship;

/// Records that the app (its subscriber) acts for the person, as attested.
pub async fn attest<P: Ports>(
    ports: &P,
    subscriber_id: &str,
    person: NhsNumber,
    attestation: Attestation,
    now: OffsetDateTime,
) -> Result<ActedFor, StoreError> {
    let acted = ActedFor {
        subscriber_id: subscriber_id.to_owned(),
        person,
        verification_level: attestation.verification_level,
        method: attestation.method,
        verified_at: attestation.verified_at,
        attested_at: audit::timestamp(now),
        status: ActingStatus::Active,
        ended_at: None,
    };
    ports.relationships().act_for(&acted).await?;
    Ok(acted)
}

/// Ends the app's acting for the person, then every subscription of the
/// app that rested on a relationship with them: the number ended, or None
/// when the app was not acting for the person.
pub async fn stop_acting<P: Ports>(
    ports: &P,
    subscriber_id: &str,
    person: NhsNumber,
    now: OffsetDateTime,
) -> Result<Option<usize>, StoreError> {
    let at = audit::timestamp(now);
    if !acting(ports, subscriber_id, person).await? {
        return Ok(None);
    }
    // Subscriptions first: a failure here leaves the acting in place, and
    // the app's retry ends what is left. Each basis is also judged at every
    // use, so nothing is disclosed meanwhile on an acting about to end.
    let mut ended = 0;
    let reference = format!("stop-acting/{subscriber_id}/{person}");
    let end = Ended {
        at: at.clone(),
        reason: EndReason::RelationshipEnded,
        last_event: None,
        detail: format!("basis lost: the app no longer acts for person {person}"),
    };
    // A child related through several sources (a VRS record beside a birth
    // link), or through an ended relationship too, is swept once.
    let children: std::collections::BTreeSet<NhsNumber> = ports
        .relationships()
        .children_of(person)
        .await?
        .iter()
        .map(|relationship| relationship.child_nhs)
        .collect();
    for child in children {
        ended += end_resting_on(
            ports,
            Some(subscriber_id),
            child,
            person,
            &end,
            &reference,
            now,
        )
        .await?;
    }
    ports
        .relationships()
        .stop_acting_for(subscriber_id, person, &at)
        .await?;
    Ok(Some(ended))
}

/// Whether the app (its subscriber) acts for the person now.
pub(crate) async fn acting<P: Ports>(
    ports: &P,
    subscriber_id: &str,
    person: NhsNumber,
) -> Result<bool, StoreError> {
    Ok(ports
        .relationships()
        .acted_for(subscriber_id, person)
        .await?
        .is_some_and(|acted| acted.status == ActingStatus::Active))
}

/// Ends the explicit subscriptions for the child that rest on a
/// relationship with the person (only the subscriber's, when one is
/// named), each audited first (`BasisLost`, one record per subscription):
/// how many it ended. One keyed read per event type.
pub async fn end_resting_on<P: Ports>(
    ports: &P,
    subscriber_id: Option<&str>,
    child: NhsNumber,
    person: NhsNumber,
    ended: &Ended,
    reference: &str,
    now: OffsetDateTime,
) -> Result<usize, StoreError> {
    let mut count = 0;
    for subscription in super::subscription::explicit_for_child(ports, child).await? {
        let rests_on_person = subscription.basis() == Basis::Relationship { person };
        let owned = subscriber_id.is_none_or(|id| subscription.subscriber_id == id);
        if !rests_on_person || !owned || subscription.ended.is_some() {
            continue;
        }
        if super::ending::end_on_lost_basis(ports, reference, &subscription, ended, now).await? {
            count += 1;
        }
    }
    Ok(count)
}

/// The children the person is actively related to, when the app acts for
/// them (None otherwise: the app learns nothing of a person it does not act
/// for).
pub async fn children<P: Ports>(
    ports: &P,
    subscriber_id: &str,
    person: NhsNumber,
    now: OffsetDateTime,
) -> Result<Option<Vec<Relationship>>, StoreError> {
    if !acting(ports, subscriber_id, person).await? {
        return Ok(None);
    }
    let mut related: Vec<Relationship> = ports
        .relationships()
        .children_of(person)
        .await?
        .into_iter()
        .filter(|relationship| relationship.is_active(now))
        .collect();
    related.sort_by_key(|relationship| relationship.child_nhs);
    Ok(Some(related))
}
