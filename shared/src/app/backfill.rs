//! Operators' backfill grants on a subscription (crate::backfill): opening
//! one, revoking one.

use time::OffsetDateTime;

use crate::backfill::{BackfillGrant, BackfillRequest, MAX_GRANTS};
use crate::basis::Basis;
use crate::criteria::Target;
use crate::error::HubError;
use crate::ports::{Ports, SubscriptionStore};
use crate::subscription::Subscription;

/// Opens a grant on the subscription: only on an active explicit one whose
/// basis keeps it from the child's earlier record, and only for a window
/// that starts before its creation.
pub async fn grant<P: Ports>(
    ports: &P,
    subscription: &Subscription,
    request: &BackfillRequest,
    granted_by: &str,
    now: OffsetDateTime,
) -> Result<BackfillGrant, HubError> {
    if !matches!(subscription.criteria.target, Target::Explicit(_)) {
        return Err(HubError::unprocessable(
            "Subscription.criteria",
            "a generic subscription has no window to open: a backfill grant is for a named child",
        ));
    }
    if !subscription.is_active(now) {
        return Err(HubError::unprocessable(
            "Subscription.status",
            "the subscription is off: it discloses nothing, so there is nothing to open",
        ));
    }
    if let Basis::RegisteredGp { .. } = subscription.basis() {
        return Err(HubError::unprocessable(
            "Subscription.basis",
            "the subscription rests on the child's registration at the practice, which already \
             sees the child's whole retained record",
        ));
    }
    let created = subscription.created_at();
    if request.since >= created {
        return Err(HubError::unprocessable(
            "Parameters.since",
            format!(
                "since must be before the subscription's creation ({}): it sees what follows anyway",
                crate::audit::timestamp(created)
            ),
        ));
    }
    if subscription.backfills.len() >= MAX_GRANTS {
        return Err(HubError::unprocessable(
            "Subscription.id",
            format!(
                "the subscription holds {MAX_GRANTS} backfill grants, the most it keeps: \
                 make the subscription again to start afresh"
            ),
        ));
    }
    let grant = request.grant(granted_by, now);
    let mut grants = subscription.backfills.clone();
    grants.push(grant.clone());
    replace(ports, subscription, &grants).await?;
    Ok(grant)
}

/// Revokes one grant: the grant as it now stands (already revoked ones are
/// left as they were), or None when the subscription has no such grant.
pub async fn revoke<P: Ports>(
    ports: &P,
    subscription: &Subscription,
    grant_id: &str,
    revoked_by: &str,
    now: OffsetDateTime,
) -> Result<Option<BackfillGrant>, HubError> {
    let Some(found) = subscription
        .backfills
        .iter()
        .position(|grant| grant.id == grant_id)
    else {
        return Ok(None);
    };
    if subscription.backfills[found].revoked_at.is_some() {
        return Ok(Some(subscription.backfills[found].clone()));
    }
    let mut grants = subscription.backfills.clone();
    grants[found].revoked_at = Some(crate::fhir_time::format_instant(now));
    grants[found].revoked_by = Some(revoked_by.to_owned());
    replace(ports, subscription, &grants).await?;
    Ok(Some(grants[found].clone()))
}

async fn replace<P: Ports>(
    ports: &P,
    subscription: &Subscription,
    grants: &[BackfillGrant],
) -> Result<(), HubError> {
    if ports
        .subscriptions()
        .replace_backfills(subscription, grants)
        .await?
    {
        Ok(())
    } else {
        Err(HubError::Conflict {
            expression: "Subscription.id".into(),
            problem: "the subscription changed (or was deleted) while the grant was written: \
                      read it again and retry"
                .into(),
        })
    }
}
