//! Ending a subscription whose basis was lost, the one way every use case
//! does it: dispatch (a move), a relationship's end, an app that stops
//! acting for a person, and a client's narrowed registration.

use time::OffsetDateTime;

use crate::audit::AuditRecord;
use crate::basis::Ended;
use crate::metrics::{self, MetricRecord};
use crate::ports::{AuditLog, Ports, StoreError, SubscriptionStore};
use crate::subscription::Subscription;

/// Ends the subscription, audited first (one `BasisLost` record per
/// subscription, under its child for an explicit one, naming `reference`:
/// the event that showed the loss, or what else did), so that no end is ever without its
/// record and a retry writes the same record again. True when this call
/// ended it; false when it had already ended (a retry, or two causes
/// racing), which is counted once only.
pub async fn end_on_lost_basis<P: Ports>(
    ports: &P,
    reference: &str,
    subscription: &Subscription,
    ended: &Ended,
    now: OffsetDateTime,
) -> Result<bool, StoreError> {
    ports
        .audit()
        .record(&AuditRecord::basis_lost(
            reference,
            subscription,
            ended,
            now,
        ))
        .await?;
    let ended_now = ports.subscriptions().end(subscription, ended).await?;
    if ended_now {
        // Ids and the reason's kind only: the detail may name a person.
        tracing::info!(
            subscription_id = %subscription.id,
            subscriber_id = %subscription.subscriber_id,
            reason = ?ended.reason,
            "a subscription ended: its basis was lost"
        );
        MetricRecord::new().count(metrics::BASIS_LOST, 1).emit();
    }
    Ok(ended_now)
}
