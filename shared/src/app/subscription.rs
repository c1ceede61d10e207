//! Creating subscriptions (the Subscription resource and its rules are in
//! `crate::subscription`).

use time::OffsetDateTime;

use super::generic::locate;
use crate::basis::{Basis, Grants, Permits};
use crate::criteria::CriteriaError;
use crate::criteria::Target;
use crate::error::HubError;
use crate::fhir_time::format_instant;
use crate::generic::ChildLocation;
use crate::metrics::{self, MetricRecord};
use crate::nhs_number::NhsNumber;
use crate::ods::OdsCode;
use crate::pchr::VerificationLevel;
use crate::ports::{
    Ports, RegisterStore, RelationshipStore, StoreError, SubscriberStore, SubscriptionStore,
};
use crate::subscription::{
    DailyCount, DailyLimit, MAX_SUBSCRIPTIONS_PER_PATIENT_AND_TYPE, Subscription,
    SubscriptionRequest,
};

/// Checks a request against its subscriber and stores the subscription;
/// an explicit one also counts on the subscriber's limit of the day, and
/// records its basis (`basis_now`), given the grants of the caller's
/// client.
pub async fn create_subscription<P: Ports>(
    ports: &P,
    request: SubscriptionRequest,
    permits: &Permits,
    limit: DailyLimit,
    now: OffsetDateTime,
) -> Result<Subscription, HubError> {
    let (subscriptions, subscribers) = (ports.subscriptions(), ports.subscribers());
    let subscriber = subscribers
        .get(&request.subscriber_id)
        .await?
        .ok_or_else(|| {
            HubError::unprocessable(
                "Subscription.channel.endpoint",
                format!("'{}' is not an onboarded subscriber", request.subscriber_id),
            )
        })?;
    if subscriber.ods_code != request.contact_ods {
        return Err(HubError::unprocessable(
            "Subscription.contact",
            format!(
                "the contact's ODS code {} is not the subscriber's ({})",
                request.contact_ods.as_str(),
                subscriber.ods_code.as_str()
            ),
        ));
    }
    if !subscriber.is_active() {
        return Err(HubError::unprocessable(
            "Subscription.channel.endpoint",
            format!("subscriber {} was offboarded", subscriber.id),
        ));
    }
    if let Some(refused) = request
        .criteria
        .events
        .iter()
        .find(|event| !subscriber.may_receive(**event))
    {
        return Err(HubError::Criteria(CriteriaError {
            component: "MessageHeader.event".into(),
            problem: format!("the subscriber is not onboarded for {refused}"),
        }));
    }
    for &event_type in &request.criteria.events {
        if let Target::Explicit(nhs_number) = request.criteria.target {
            let held = subscriptions
                .explicit_candidates(nhs_number, event_type)
                .await?
                .iter()
                .filter(|existing| existing.subscriber_id == subscriber.id)
                .count();
            if held >= MAX_SUBSCRIPTIONS_PER_PATIENT_AND_TYPE {
                return Err(HubError::unprocessable(
                    "Subscription.criteria",
                    format!(
                        "the subscriber already holds {MAX_SUBSCRIPTIONS_PER_PATIENT_AND_TYPE} subscriptions \
                         for this patient and {event_type}"
                    ),
                ));
            }
        }
    }
    let basis = match (&request.criteria.target, permits.pchr) {
        (&Target::Explicit(nhs_number), Some(pchr)) => Some(
            relationship_basis(
                ports,
                nhs_number,
                &subscriber.id,
                pchr.minimum_verification,
                now,
            )
            .await?
            .ok_or_else(|| {
                HubError::forbidden_element(
                    "Subscription.criteria",
                    format!(
                        "no basis: the child is related to no one this app acts for at {} or above \
                             (PUT /subscribers/{}/people/{{nhsNumber}}, then \
                             GET .../children lists the children it may subscribe to)",
                        pchr.minimum_verification.code(),
                        subscriber.id
                    ),
                )
            })?,
        ),
        (&Target::Explicit(nhs_number), None) => {
            Some(basis_now(ports, nhs_number, &subscriber.ods_code, &permits.grants).await?)
        }
        (Target::Generic { .. }, _) => None,
    };
    if matches!(request.criteria.target, Target::Explicit(_)) {
        // Counted last, so that a refused request spends nothing; a store
        // failure after it spends one place, never grants one.
        let count = DailyCount::explicit(&subscriber.id, limit, now);
        if !subscriptions.count_explicit(&count).await? {
            MetricRecord::new()
                .count(metrics::SUBSCRIPTION_LIMIT_REACHED, 1)
                .emit();
            return Err(HubError::TooManyRequests {
                problem: format!(
                    "the subscriber has created its {} explicit subscriptions of the day (UTC): \
                     try again after midnight UTC, or ask the service desk",
                    limit.per_day
                ),
                retry_after_seconds: crate::replay::quota_renews_in(now),
            });
        }
        MetricRecord::new()
            .count(metrics::EXPLICIT_SUBSCRIPTIONS_CREATED, 1)
            .emit();
    }
    let subscription = Subscription {
        id: uuid::Uuid::new_v4().to_string(),
        subscriber_id: subscriber.id,
        contact_ods: request.contact_ods,
        reason: request.reason,
        end: request.end.map(format_instant),
        criteria: request.criteria,
        version_id: 1,
        last_updated: format_instant(now),
        basis,
        ended: None,
        backfills: Vec::new(),
    };
    subscriptions.create(&subscription).await?;
    Ok(subscription)
}

/// The basis an explicit subscription of the subscriber at `ods_code`, with
/// these grants, rests on now (`Basis::for_new_subscription`): one keyed
/// register read, and, for a client with grants, one reference lookup of
/// where the register places the child.
pub async fn basis_now<P: Ports>(
    ports: &P,
    nhs_number: NhsNumber,
    ods_code: &OdsCode,
    grants: &Grants,
) -> Result<Basis, StoreError> {
    let child = ports
        .register()
        .get(nhs_number)
        .await?
        .map(|child| child.value);
    let practice = child
        .as_ref()
        .and_then(|child| child.registration().flatten());
    let location = match &child {
        Some(child) if !grants.is_empty() => {
            let postcode = child.home_postcode.as_ref().map(|field| &field.value);
            locate(ports.reference(), postcode, None, practice, None).await?
        }
        _ => ChildLocation::default(),
    };
    Ok(Basis::for_new_subscription(
        ods_code, practice, grants, &location,
    ))
}

/// The relationship a parent's app (its subscriber) may subscribe to a
/// child through: an active relationship between the child and a person the
/// app acts for at the identity level it requires, the best attested
/// person first. None when there is none.
pub async fn relationship_basis<P: Ports>(
    ports: &P,
    child: NhsNumber,
    subscriber_id: &str,
    minimum: VerificationLevel,
    now: OffsetDateTime,
) -> Result<Option<Basis>, StoreError> {
    let mut best: Option<(VerificationLevel, NhsNumber)> = None;
    for relationship in ports.relationships().for_child(child).await? {
        if !relationship.is_active(now) {
            continue;
        }
        let person = relationship.person_nhs;
        let Some(acted) = ports
            .relationships()
            .acted_for(subscriber_id, person)
            .await?
        else {
            continue;
        };
        if acted.holds(minimum) && best.is_none_or(|(level, _)| acted.verification_level > level) {
            best = Some((acted.verification_level, person));
        }
    }
    Ok(best.map(|(_, person)| Basis::Relationship { person }))
}

/// Whether a relationship basis still holds: the child's relationship with
/// the person is active and the app still acts for them (its level was
/// checked when it attested the person, and again when it subscribed).
pub async fn relationship_holds<P: Ports>(
    ports: &P,
    child: NhsNumber,
    person: NhsNumber,
    subscriber_id: &str,
    now: OffsetDateTime,
) -> Result<bool, StoreError> {
    if !related_now(ports, child, person, now).await? {
        return Ok(false);
    }
    super::people::acting(ports, subscriber_id, person).await
}

/// [`relationship_holds`] for one child, read once per person and app
/// however many of the app's subscriptions rest on that person (tagged
/// ones, say): for one event's dispatch or one read.
#[derive(Debug, Default)]
pub struct RelationshipsHeld(std::collections::BTreeMap<(NhsNumber, String), bool>);

impl RelationshipsHeld {
    pub async fn holds<P: Ports>(
        &mut self,
        ports: &P,
        child: NhsNumber,
        person: NhsNumber,
        subscriber_id: &str,
        now: OffsetDateTime,
    ) -> Result<bool, StoreError> {
        let key = (person, subscriber_id.to_owned());
        if let Some(holds) = self.0.get(&key) {
            return Ok(*holds);
        }
        let holds = relationship_holds(ports, child, person, subscriber_id, now).await?;
        self.0.insert(key, holds);
        Ok(holds)
    }
}

/// Every explicit subscription to the child, whatever event types it
/// names, each once: one keyed read per event type, together (the store
/// keeps a copy under each type a subscription names).
pub async fn explicit_for_child<P: Ports>(
    ports: &P,
    child: NhsNumber,
) -> Result<Vec<Subscription>, StoreError> {
    let subscriptions = ports.subscriptions();
    let found = futures_util::future::try_join_all(
        crate::catalogue::EventType::ALL
            .iter()
            .map(|&event_type| subscriptions.explicit_candidates(child, event_type)),
    )
    .await?;
    let mut seen = std::collections::BTreeSet::new();
    Ok(found
        .into_iter()
        .flatten()
        .filter(|subscription| {
            subscription.criteria.target == Target::Explicit(child)
                && seen.insert(subscription.id.clone())
        })
        .collect())
}

/// Whether any source relates the child and the person now (a VRS
/// relationship, a birth notification's link): one keyed read.
pub async fn related_now<P: Ports>(
    ports: &P,
    child: NhsNumber,
    person: NhsNumber,
    now: OffsetDateTime,
) -> Result<bool, StoreError> {
    Ok(ports
        .relationships()
        .between(child, person)
        .await?
        .iter()
        .any(|relationship| relationship.is_active(now)))
}

/// The basis the migration would give the subscription ([`migrate_basis`]),
/// written nowhere: what a dry run counts. None for a generic one or one
/// that has a basis.
pub async fn basis_to_migrate<P: Ports>(
    ports: &P,
    subscription: &Subscription,
) -> Result<Option<Basis>, StoreError> {
    let Target::Explicit(nhs_number) = subscription.criteria.target else {
        return Ok(None);
    };
    if subscription.basis.is_some() {
        return Ok(None);
    }
    Ok(Some(
        basis_now(ports, nhs_number, &subscription.contact_ods, &Grants::new()).await?,
    ))
}

/// The migration of one subscription made before bases were recorded: an
/// explicit one without a basis gets the one that holds now, as if created
/// now (registered-gp when the register places the child at its contact's
/// practice, else declared-direct-care, which is how such a subscription
/// has been read until then). None when there is nothing to record: a
/// generic one, one that has a basis, or one another run recorded first.
///
/// The grants of the subscription's client are not at hand offline, so an
/// area basis is not found here: such a subscription reads as declared
/// direct care, as before, until it is made again.
pub async fn migrate_basis<P: Ports>(
    ports: &P,
    subscription: &Subscription,
) -> Result<Option<Basis>, StoreError> {
    let Some(basis) = basis_to_migrate(ports, subscription).await? else {
        return Ok(None);
    };
    Ok(ports
        .subscriptions()
        .assign_basis(subscription, &basis)
        .await?
        .then_some(basis))
}
