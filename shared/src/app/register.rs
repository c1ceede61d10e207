//! Recording events in the stored child register (the merge rules are in
//! `crate::register`).

use time::OffsetDateTime;

use crate::audit::AuditRecord;
use crate::nhs_number::NhsNumber;
use crate::ports::{AuditLog, RegisterStore, StoreError};
use crate::register::{ChildRecord, Moved, Recorded, RegisterUpdate, apply, moved_from};

/// How many times [`record_event`] reads and writes again when another
/// dispatch wrote the same child in between. Only parallel dispatches of
/// events about one child collide, so a few attempts settle it; past them
/// the event's dispatch fails and the stream retries it later.
pub const MAX_RECORD_ATTEMPTS: usize = 5;

/// Applies one event's update to the stored register: reads the child's
/// record, merges the update ([`apply`]), and writes it back only if no one
/// wrote it since the read, reading again when someone did. An update that
/// changes nothing (a repeated or late event, or one that states no fact
/// about a child not yet on the register) is not written. Fails with
/// `StoreError::Unavailable` after [`MAX_RECORD_ATTEMPTS`] collisions, so
/// that the stream retries the event.
///
/// A write that sets or clears the child's sensitive flag is audited under
/// the child first (one record per event and child, however often it is
/// retried): a flag changed without its record could never be accounted
/// for.
pub async fn record_event<S: RegisterStore, A: AuditLog>(
    store: &S,
    audit: &A,
    update: RegisterUpdate,
    now: OffsetDateTime,
) -> Result<Recorded, StoreError> {
    for _ in 0..MAX_RECORD_ATTEMPTS {
        let stored = store.get(update.nhs_number).await?;
        let version = stored.as_ref().map(|stored| stored.version);
        let before = stored.map(|stored| stored.value);
        let moved = moved_from(before.as_ref(), &update);
        let after = apply(before.clone(), update.clone());
        let unchanged = match &before {
            Some(before) => *before == after,
            None => after == ChildRecord::new(update.nhs_number),
        };
        let flagged_before = before.as_ref().is_some_and(ChildRecord::is_sensitive);
        if !unchanged && flagged_before != after.is_sensitive() {
            audit
                .record(&AuditRecord::sensitivity_change(
                    &update.event_key,
                    update.nhs_number,
                    after.is_sensitive(),
                    now,
                ))
                .await?;
        }
        if unchanged || store.put(&after, version).await? {
            return Ok(Recorded {
                before,
                after,
                moved,
            });
        }
    }
    Err(StoreError::Unavailable(
        format!(
            "the child's register record changed under each of {MAX_RECORD_ATTEMPTS} attempts to write it"
        )
        .into(),
    ))
}

/// What recording the update would make of the child's record, without
/// writing it: the stored record with the update merged in (a late fact
/// still yields to a newer one), and no move, as nothing moves now.
pub async fn preview<S: RegisterStore>(
    store: &S,
    update: RegisterUpdate,
) -> Result<Recorded, StoreError> {
    let before = store
        .get(update.nhs_number)
        .await?
        .map(|stored| stored.value);
    let after = apply(before.clone(), update);
    Ok(Recorded {
        before,
        after,
        moved: Moved::default(),
    })
}

/// Whether the register flags any of these people sensitive: one read per
/// person, each once (a message's subject is often the routed patient).
pub async fn any_sensitive<R: RegisterStore>(
    register: &R,
    people: impl IntoIterator<Item = Option<NhsNumber>>,
) -> Result<bool, StoreError> {
    let mut read = Vec::new();
    for nhs_number in people.into_iter().flatten() {
        if read.contains(&nhs_number) {
            continue;
        }
        read.push(nhs_number);
        if register
            .get(nhs_number)
            .await?
            .is_some_and(|record| record.value.is_sensitive())
        {
            return Ok(true);
        }
    }
    Ok(false)
}
