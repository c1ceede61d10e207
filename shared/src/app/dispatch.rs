//! Dispatch: routes an accepted event to the subscribers whose
//! subscriptions match it (the matching and batching rules are in
//! `crate::dispatch`).

use time::OffsetDateTime;

use super::embargo::BatchSettings;
use super::generic::locate;
use super::register::{preview, record_event};
use super::subscription::{RelationshipsHeld, explicit_for_child};
use crate::audit::AuditRecord;
use crate::basis::{self, Basis, Judgement, PlaceAtEvent, PracticeAtEvent};
use crate::catalogue::EventType;
use crate::criteria::{PatientAtEvent, Target};
use crate::dispatch::{
    ChildFacts, Delivery, Dispatched, Ending, Registering, Route, by_subscriber,
};
use crate::events::StoredEvent;
use crate::fhir_time::parse_instant;
use crate::generic::{self, ChildLocation};
use crate::ports::{
    AuditLog, DeliveryPublisher, DeliveryStats, EventStore, Ports, RegisterStore,
    RelationshipStore, StoreError, SubscriptionStore,
};
use crate::reference::Postcode;
use crate::register::{self, Recorded};
use crate::relationship::RelationshipChange;
use crate::subscription::Subscription;

/// What dispatch reads and writes: the subscriptions, the topics, the audit
/// trail, the child register, the reference data, the delivery counts and
/// the events (to mark one withheld).
pub struct Dispatcher<'a, P> {
    pub ports: &'a P,
}

impl<P: Ports> Dispatcher<'_, P> {
    /// Routes one accepted event: records what it says of the child in the
    /// register, then delivers it to every subscriber with a matching
    /// explicit or generic subscription, unless the child is sensitive.
    pub async fn dispatch(
        &self,
        event: &StoredEvent,
        now: OffsetDateTime,
    ) -> Result<Dispatched, StoreError> {
        self.dispatch_in_batch(event, now, &BatchSettings::default())
            .await
    }

    /// Dispatches one event of an invocation's batch: the release embargo
    /// settings are read once for the whole batch.
    pub async fn dispatch_in_batch(
        &self,
        event: &StoredEvent,
        now: OffsetDateTime,
        settings: &BatchSettings,
    ) -> Result<Dispatched, StoreError> {
        let (deliveries, patient) = match self.route(event, now).await? {
            Route::Withheld { patient } => {
                self.ports
                    .audit()
                    .record(&AuditRecord::withheld(&event.event_key, patient, now))
                    .await?;
                // Withheld for good: clearing the child's flag later must not
                // open this event to history, event reads or replays.
                if !event.sensitive {
                    self.ports
                        .events()
                        .set_withheld(&event.event_key, true)
                        .await?;
                }
                return Ok(Dispatched::Withheld);
            }
            Route::Deliver {
                deliveries,
                patient,
                endings,
            } => {
                self.end_subscriptions(event, &endings, now).await?;
                // Those a release embargo delays are held, not sent.
                let deliveries = super::embargo::hold_embargoed(
                    self.ports, settings, event, deliveries, patient, now,
                )
                .await?;
                (deliveries, patient)
            }
        };
        if !deliveries.is_empty() {
            // Recorded first: a delivery record without the delivery is put
            // right by the retry, while a delivery without its record could
            // never be accounted for. Each record's id is fixed by the event
            // and the subscriber, so a retry does not duplicate it.
            let records: Vec<AuditRecord> = deliveries
                .iter()
                .map(|delivery| {
                    AuditRecord::delivery(&event.event_key, &delivery.subscriber_id, patient, now)
                        .detail(delivery.basis_detail())
                })
                .collect();
            self.ports.audit().record_all(&records).await?;
            self.ports.publisher().publish(event, &deliveries).await?;
            self.count_deliveries(event, &deliveries, now).await;
        }
        Ok(Dispatched::Delivered {
            recipients: deliveries.len(),
        })
    }

    /// Ends the subscriptions whose basis the event showed lost, before
    /// anything is published: a retried dispatch finds each ended with this
    /// event as its last, and delivers that event again rather than losing
    /// it. Each end is audited first (one record per subscription), so that
    /// no end is ever without its record.
    async fn end_subscriptions(
        &self,
        event: &StoredEvent,
        endings: &[Ending],
        now: OffsetDateTime,
    ) -> Result<(), StoreError> {
        for ending in endings {
            super::ending::end_on_lost_basis(
                self.ports,
                &event.event_key,
                &ending.subscription,
                &ending.ended,
                now,
            )
            .await?;
        }
        Ok(())
    }

    /// Adds the messages just sent to each recipient's delivery count
    /// (`GET /subscribers/{id}/status`). Counted after the publish, so a
    /// stream retry that sends again counts again: the count is of messages
    /// sent. A failure is logged, not returned: failing the event would
    /// make the stream send it again, a duplicate delivery of patient data
    /// for the sake of a counter.
    pub async fn count_deliveries(
        &self,
        event: &StoredEvent,
        deliveries: &[Delivery],
        now: OffsetDateTime,
    ) {
        let recipients: Vec<&str> = deliveries
            .iter()
            .map(|delivery| delivery.subscriber_id.as_str())
            .collect();
        let at = crate::audit::timestamp(now);
        if let Err(error) = self
            .ports
            .stats()
            .record_deliveries(event.event_type, &recipients, &at)
            .await
        {
            tracing::warn!(event_id = %event.event_id, error = %error, "the delivery counts could not be updated");
        }
    }

    /// Who receives an event: the register is updated first, then the
    /// explicit subscriptions of the routed patient and the generic ones of
    /// the child's place are read (a fixed number of keyed reads).
    pub async fn route(
        &self,
        event: &StoredEvent,
        now: OffsetDateTime,
    ) -> Result<Route, StoreError> {
        self.route_as(event, now, Registering::Record).await
    }

    /// Routes an event as `route` does, recording it in the register or
    /// only reading the register (a replay: the event was recorded when it
    /// was first dispatched, and moves nobody now).
    pub async fn route_as(
        &self,
        event: &StoredEvent,
        now: OffsetDateTime,
        registering: Registering,
    ) -> Result<Route, StoreError> {
        let mut children = Vec::new();
        for update in register::updates_for(event) {
            children.push(match registering {
                Registering::Record => {
                    record_event(self.ports.register(), self.ports.audit(), update, now).await?
                }
                Registering::ReadOnly => preview(self.ports.register(), update).await?,
            });
        }
        // The child the event is about: the baby of a birth notification,
        // else the routed patient.
        let child = children.first();
        // The audit trail files the event under the child it is about.
        let patient = child
            .map(|recorded| recorded.after.nhs_number)
            .or(event.nhs_number);
        let mut sensitive = event.sensitive
            || children
                .iter()
                .any(|recorded| recorded.after.is_sensitive());
        let routed_child = event.nhs_number.and_then(|routed| {
            children
                .iter()
                .find(|recorded| recorded.after.nhs_number == routed)
        });
        // The routed patient's practice before and after the event: what a
        // registered-GP basis is judged on.
        let mut practice: (Option<String>, Option<String>) = routed_child
            .map(|recorded| {
                let after = recorded.after.registration().flatten().map(str::to_owned);
                let before = recorded
                    .moved
                    .from_practice
                    .clone()
                    .or_else(|| after.clone());
                (before, after)
            })
            .unwrap_or_default();
        // The routed patient, when the register was not updated for them (the
        // mother of a birth, or a payload that could not be read again):
        // their known sensitivity counts too, as the message is about them.
        if let Some(routed) = event.nhs_number
            && !sensitive
            && routed_child.is_none()
        {
            let stored = self.ports.register().get(routed).await?;
            sensitive = stored
                .as_ref()
                .is_some_and(|record| record.value.is_sensitive());
            let registered = stored
                .as_ref()
                .and_then(|record| record.value.registration().flatten())
                .map(str::to_owned);
            practice = (registered.clone(), registered);
        }
        if sensitive {
            return Ok(Route::Withheld { patient });
        }
        if registering == Registering::Record {
            self.link_mother(event, child, now).await?;
        }
        let facts = ChildFacts::of(event, child.map(|recorded| &recorded.after));
        let at_event = facts.at_event(event, now);
        let location = self.locate(event, &facts, child).await?;
        let (before, after) = (
            generic::before_event(&location),
            generic::after_event(&location),
        );
        let place = PlaceAtEvent {
            practice: PracticeAtEvent {
                before: practice.0.as_deref(),
                after: practice.1.as_deref(),
            },
            before: &before,
            after: &after,
            related: false,
        };
        let (mut matched, mut endings) =
            explicit_matches(self.ports, event, &at_event, place, now).await?;
        // A move ends the practice's and area's subscriptions to the child
        // whatever event types they name: access ends with the basis, not
        // at the next event of their type.
        let moved = place.practice.before != place.practice.after || before != after;
        if registering == Registering::Record && moved {
            endings.extend(moved_away(self.ports, event, place, &endings, now).await?);
        }
        matched.extend(
            self.generic_matches(event, &location, &at_event, now)
                .await?,
        );
        Ok(Route::Deliver {
            deliveries: by_subscriber(matched),
            patient,
            endings,
        })
    }

    /// A birth notification links the mother it names to the baby (the
    /// relationship a mother's app subscribes to the baby through); never
    /// for a withheld birth (the caller returns first), never in a replay.
    /// Recorded and audited under the baby once, however often dispatch is
    /// retried.
    async fn link_mother(
        &self,
        event: &StoredEvent,
        baby: Option<&Recorded>,
        now: OffsetDateTime,
    ) -> Result<(), StoreError> {
        let (Some(baby), Some(mother)) = (baby, event.nhs_number) else {
            return Ok(());
        };
        let baby_nhs = baby.after.nhs_number;
        if event.event_type != EventType::PdsBirthNotification || baby_nhs == mother {
            return Ok(());
        }
        let stated_at = event.last_updated.as_deref().unwrap_or(&event.timestamp);
        let stated_at = parse_instant(stated_at).unwrap_or(now);
        let at = crate::audit::timestamp(now);
        let link = RelationshipChange::birth_link(
            baby_nhs,
            mother,
            baby.after.birth_date.as_ref().map(|field| field.value),
            &event.event_key,
            &event.payload_sha256,
            stated_at,
            &at,
        );
        let recorded = self.ports.relationships().record(&link).await?;
        if matches!(
            recorded,
            crate::relationship::Recorded::Created | crate::relationship::Recorded::Updated
        ) {
            self.ports
                .audit()
                .record(&AuditRecord::birth_link(
                    &event.event_key,
                    baby_nhs,
                    mother,
                    now,
                ))
                .await?;
        }
        Ok(())
    }

    /// The child's place: where the register says the child is (else what
    /// the message says), and, for a move, where the child was; resolved
    /// against the reference data in one lookup.
    async fn locate(
        &self,
        event: &StoredEvent,
        facts: &ChildFacts,
        child: Option<&Recorded>,
    ) -> Result<ChildLocation, StoreError> {
        let moved = child
            .map(|recorded| recorded.moved.clone())
            .unwrap_or_default();
        let previous_postcode = moved.from_postcode.or_else(|| {
            event
                .previous_postcode
                .as_deref()
                .and_then(|postcode| Postcode::parse(postcode).ok())
        });
        locate(
            self.ports.reference(),
            facts.postcode.as_ref(),
            previous_postcode.as_ref(),
            facts.practice.as_deref(),
            moved.from_practice.as_deref(),
        )
        .await
    }

    /// The generic subscriptions the child's place selects. At most ten
    /// keyed reads, however many subscriptions exist.
    async fn generic_matches(
        &self,
        event: &StoredEvent,
        location: &ChildLocation,
        at_event: &PatientAtEvent,
        now: OffsetDateTime,
    ) -> Result<Vec<Subscription>, StoreError> {
        let keys = generic::match_keys(location, event.event_type);
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        Ok(self
            .ports
            .subscriptions()
            .generic_candidates(&keys)
            .await?
            .into_iter()
            .filter(|subscription| {
                subscription.is_active(now)
                    && generic::matches(&subscription.criteria, location, event.event_type)
                    && subscription.criteria.filters_allow(at_event)
            })
            .collect())
    }
}

/// The ends a move makes of the routed patient's registered-GP and area
/// subscriptions that `explicit_matches` did not judge: those that do not
/// name the event's type, and those that do but whose filters keep this
/// event from them. They never receive the move, and end with it. One
/// keyed read per event type, together, on a move only.
async fn moved_away<P: Ports>(
    ports: &P,
    event: &StoredEvent,
    place: PlaceAtEvent<'_>,
    already: &[Ending],
    now: OffsetDateTime,
) -> Result<Vec<Ending>, StoreError> {
    let Some(nhs_number) = event.nhs_number else {
        return Ok(Vec::new());
    };
    let at = crate::audit::timestamp(now);
    let mut endings = Vec::new();
    for subscription in explicit_for_child(ports, nhs_number).await? {
        let placed = matches!(
            subscription.basis(),
            Basis::RegisteredGp { .. } | Basis::Area { .. }
        );
        let ending_already = already
            .iter()
            .any(|ending| ending.subscription.id == subscription.id);
        if !placed || subscription.ended.is_some() || ending_already {
            continue;
        }
        // One explicit_matches found holding is judged alike here: the
        // same basis on the same place.
        let judgement = basis::judge(
            &subscription.basis(),
            place,
            event.event_type,
            &event.event_key,
            &at,
        );
        if let Judgement::HoldsForThisEvent(ended) | Judgement::Lost(ended) = judgement {
            endings.push(Ending {
                subscription,
                ended: crate::basis::Ended {
                    last_event: None,
                    ..ended
                },
            });
        }
    }
    Ok(endings)
}

/// The explicit subscriptions for the routed patient that the event matches
/// and whose basis holds for it; and the ends of those whose basis the
/// event shows lost (`basis::judge`).
async fn explicit_matches<P: Ports>(
    ports: &P,
    event: &StoredEvent,
    at_event: &PatientAtEvent,
    place: PlaceAtEvent<'_>,
    now: OffsetDateTime,
) -> Result<(Vec<Subscription>, Vec<Ending>), StoreError> {
    let Some(nhs_number) = event.nhs_number else {
        return Ok((Vec::new(), Vec::new()));
    };
    let at = crate::audit::timestamp(now);
    let mut matched = Vec::new();
    let mut endings = Vec::new();
    let mut holding = RelationshipsHeld::default();
    for subscription in ports
        .subscriptions()
        .explicit_candidates(nhs_number, event.event_type)
        .await?
    {
        // The store's key already selects this patient; checking again
        // costs nothing and keeps a storage fault from delivering to the
        // wrong party.
        let candidate = subscription.criteria.target == Target::Explicit(nhs_number)
            && subscription.receives(&event.event_key, now)
            && subscription.criteria.events.contains(&event.event_type)
            && subscription.criteria.filters_allow(at_event);
        if !candidate {
            continue;
        }
        if subscription.ended.is_some() {
            // Ended by this very event, which it still receives.
            matched.push(subscription);
            continue;
        }
        let basis = subscription.basis();
        // Relationships do not change with the child's events: read whether
        // one still holds only for the subscriptions resting on one.
        let related = match &basis {
            Basis::Relationship { person } => {
                holding
                    .holds(ports, nhs_number, *person, &subscription.subscriber_id, now)
                    .await?
            }
            _ => false,
        };
        match basis::judge(
            &basis,
            PlaceAtEvent { related, ..place },
            event.event_type,
            &event.event_key,
            &at,
        ) {
            Judgement::Holds => matched.push(subscription),
            Judgement::HoldsForThisEvent(ended) => {
                endings.push(Ending {
                    subscription: subscription.clone(),
                    ended,
                });
                matched.push(subscription);
            }
            Judgement::Lost(ended) => endings.push(Ending {
                subscription,
                ended,
            }),
        }
    }
    Ok((matched, endings))
}
