//! Dispatch: decides who receives an accepted event, and sends one message
//! per recipient however many of its subscriptions match.

use std::collections::BTreeMap;

use serde_json::json;
use time::{Date, OffsetDateTime};

use crate::audit::AuditRecord;
use crate::criteria::{PatientAtEvent, Target};
use crate::events::StoredEvent;
use crate::fhir_time::{parse_date, parse_instant};
use crate::generic;
use crate::nhs_number::NhsNumber;
use crate::ports::{
    AuditLog, DeliveryPublisher, DeliveryStats, EventStore, RegisterStore, StoreError,
    SubscriptionStore,
};
use crate::reference::{Postcode, ReferenceData};
use crate::register::{self, ChildRecord, Recorded};
use crate::subscription::Subscription;

/// The message attribute that SNS filter policies route on.
pub const SUBSCRIBER_ATTRIBUTE: &str = "subscriber";

/// One subscription of a recipient that matched the event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Match {
    pub subscription_id: String,
    pub tag: Option<String>,
}

/// One copy of the event for one subscriber.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    pub subscriber_id: String,
    pub matches: Vec<Match>,
    /// The replay this delivery is part of; None for a first delivery.
    pub replay_id: Option<String>,
}

impl Delivery {
    /// The message attributes the subscriber receives with the payload.
    /// SNS refuses empty attribute values, so absent facts are left out.
    pub fn attributes(&self, event: &StoredEvent) -> Vec<(&'static str, String)> {
        let subscriptions: Vec<_> = self
            .matches
            .iter()
            .map(|matched| match &matched.tag {
                Some(tag) => json!({"id": matched.subscription_id, "tag": tag}),
                None => json!({"id": matched.subscription_id}),
            })
            .collect();
        let mut attributes = vec![
            (SUBSCRIBER_ATTRIBUTE, self.subscriber_id.clone()),
            ("eventId", event.event_id.clone()),
            ("eventType", event.event_type.code().to_owned()),
            ("lifecycle", event.lifecycle.code().to_owned()),
            ("contentType", event.content_type.clone()),
            (
                "subscriptions",
                serde_json::Value::Array(subscriptions).to_string(),
            ),
        ];
        if let Some(nhs_number) = event.nhs_number {
            attributes.push(("nhsNumber", nhs_number.to_string()));
        }
        if let Some(flag) = event.out_of_order {
            attributes.push(("outOfOrder", flag.code().to_owned()));
        }
        if let Some(replay_id) = &self.replay_id {
            attributes.push(("replay", replay_id.clone()));
        }
        attributes
    }
}

/// Where an event goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// The child is sensitive: to no one.
    Withheld { patient: Option<NhsNumber> },
    /// One delivery per recipient (possibly none), about this patient.
    Deliver {
        deliveries: Vec<Delivery>,
        patient: Option<NhsNumber>,
    },
}

/// Whether routing records the event in the child register.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Registering {
    Record,
    ReadOnly,
}

/// What dispatch did with an event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Dispatched {
    /// The patient is sensitive: the event is kept, and delivered to no one.
    Withheld,
    Delivered {
        recipients: usize,
    },
}

/// What dispatch reads and writes: the subscriptions, the topics, the audit
/// trail, the child register, the reference data, the delivery counts and
/// the events (to mark one withheld).
pub struct Dispatcher<'a, S, P, A, G, R, D, E> {
    pub subscriptions: &'a S,
    pub publisher: &'a P,
    pub audit: &'a A,
    pub register: &'a G,
    pub reference: &'a R,
    pub stats: &'a D,
    pub events: &'a E,
}

impl<S, P, A, G, R, D, E> Dispatcher<'_, S, P, A, G, R, D, E>
where
    S: SubscriptionStore,
    P: DeliveryPublisher,
    A: AuditLog,
    G: RegisterStore,
    R: ReferenceData,
    D: DeliveryStats,
    E: EventStore,
{
    /// Routes one accepted event: records what it says of the child in the
    /// register, then delivers it to every subscriber with a matching
    /// explicit or generic subscription, unless the child is sensitive.
    pub async fn dispatch(
        &self,
        event: &StoredEvent,
        now: OffsetDateTime,
    ) -> Result<Dispatched, StoreError> {
        let (deliveries, patient) = match self.route(event, now).await? {
            Route::Withheld { patient } => {
                self.audit
                    .record(&AuditRecord::withheld(&event.event_key, patient, now))
                    .await?;
                // Withheld for good: clearing the child's flag later must not
                // open this event to history, event reads or replays.
                if !event.sensitive {
                    self.events.set_withheld(&event.event_key, true).await?;
                }
                return Ok(Dispatched::Withheld);
            }
            Route::Deliver {
                deliveries,
                patient,
            } => (deliveries, patient),
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
                })
                .collect();
            self.audit.record_all(&records).await?;
            self.publisher.publish(event, &deliveries).await?;
            self.count_deliveries(event, &deliveries, now).await;
        }
        Ok(Dispatched::Delivered {
            recipients: deliveries.len(),
        })
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
            .stats
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
                    register::record_event(self.register, self.audit, update, now).await?
                }
                Registering::ReadOnly => register::preview(self.register, update).await?,
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
        // The routed patient, when the register was not updated for them (the
        // mother of a birth, or a payload that could not be read again):
        // their known sensitivity counts too, as the message is about them.
        if let Some(routed) = event.nhs_number
            && !sensitive
            && !children
                .iter()
                .any(|recorded| recorded.after.nhs_number == routed)
        {
            sensitive = self
                .register
                .get(routed)
                .await?
                .is_some_and(|record| record.value.is_sensitive());
        }
        if sensitive {
            return Ok(Route::Withheld { patient });
        }
        let facts = ChildFacts::of(event, child.map(|recorded| &recorded.after));
        let at_event = facts.at_event(event, now);
        let mut matched = explicit_matches(self.subscriptions, event, &at_event, now).await?;
        matched.extend(
            self.generic_matches(event, &facts, child, &at_event, now)
                .await?,
        );
        Ok(Route::Deliver {
            deliveries: by_subscriber(matched),
            patient,
        })
    }

    /// The generic subscriptions the child's place selects: where the
    /// register says the child is (else what the message says), and, for a
    /// move, where the child was. At most ten keyed reads, however many
    /// subscriptions exist.
    async fn generic_matches(
        &self,
        event: &StoredEvent,
        facts: &ChildFacts,
        child: Option<&Recorded>,
        at_event: &PatientAtEvent,
        now: OffsetDateTime,
    ) -> Result<Vec<Subscription>, StoreError> {
        let moved = child
            .map(|recorded| recorded.moved.clone())
            .unwrap_or_default();
        let previous_postcode = moved.from_postcode.or_else(|| {
            event
                .previous_postcode
                .as_deref()
                .and_then(|postcode| Postcode::parse(postcode).ok())
        });
        let location = generic::locate(
            self.reference,
            facts.postcode.as_ref(),
            previous_postcode.as_ref(),
            facts.practice.as_deref(),
            moved.from_practice.as_deref(),
        )
        .await?;
        let keys = generic::match_keys(&location, event.event_type);
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        Ok(self
            .subscriptions
            .generic_candidates(&keys)
            .await?
            .into_iter()
            .filter(|subscription| {
                subscription.is_active(now)
                    && generic::matches(&subscription.criteria, &location, event.event_type)
                    && subscription.criteria.filters_allow(at_event)
            })
            .collect())
    }
}

/// What routing knows of the child an event is about: the register's facts
/// first (this event applied), else the message's. For a birth notification
/// the child is the baby, of whom the message's routed facts (the mother's)
/// say nothing, except that until the baby has a practice of its own the
/// birth reaches the practice the message names.
#[derive(Debug, Clone, PartialEq, Eq)]
struct ChildFacts {
    postcode: Option<Postcode>,
    practice: Option<String>,
    birth_date: Option<Date>,
    /// None: neither the register nor the message says.
    registered: Option<bool>,
}

impl ChildFacts {
    fn of(event: &StoredEvent, record: Option<&ChildRecord>) -> Self {
        // The message's Patient facts are the routed patient's: for another
        // child (the baby of a birth) only the register speaks.
        let routed = record.is_none_or(|record| Some(record.nhs_number) == event.nhs_number);
        let message_postcode = event
            .home_postcode
            .as_deref()
            .filter(|_| routed)
            .and_then(|postcode| Postcode::parse(postcode).ok());
        let postcode = record
            .and_then(|record| record.home_postcode.as_ref())
            .map(|field| field.value.clone())
            .or(message_postcode);
        let registration = record.and_then(ChildRecord::registration);
        let practice = match registration {
            Some(known) => known.map(str::to_owned),
            None => event.gp_ods.clone(),
        };
        let registered = match registration {
            Some(known) => Some(known.is_some()),
            None if routed => event.registered_with_gp,
            // A baby whose entry names no practice: unregistered, as its
            // entry says.
            None => Some(false),
        };
        let message_birth_date = event
            .birth_date
            .as_deref()
            .filter(|_| routed)
            .and_then(|date| parse_date(date).ok())
            .and_then(|date| date.date());
        let birth_date = record
            .and_then(|record| record.birth_date.as_ref())
            .map(|field| field.value)
            .or(message_birth_date);
        ChildFacts {
            postcode,
            practice,
            birth_date,
            registered,
        }
    }

    /// The child as a subscription's filters see it at the event.
    fn at_event(&self, event: &StoredEvent, now: OffsetDateTime) -> PatientAtEvent {
        PatientAtEvent {
            birth_date: self.birth_date,
            event_date: parse_instant(&event.timestamp)
                .map(|moment| moment.date())
                .unwrap_or_else(|_| now.date()),
            has_gp: self.registered,
        }
    }
}

/// The explicit subscriptions for the routed patient that the event matches.
async fn explicit_matches<S: SubscriptionStore>(
    subscriptions: &S,
    event: &StoredEvent,
    at_event: &PatientAtEvent,
    now: OffsetDateTime,
) -> Result<Vec<Subscription>, StoreError> {
    let Some(nhs_number) = event.nhs_number else {
        return Ok(Vec::new());
    };
    Ok(subscriptions
        .explicit_candidates(nhs_number, event.event_type)
        .await?
        .into_iter()
        .filter(|subscription| {
            // The store's key already selects this patient; checking again
            // costs nothing and keeps a storage fault from delivering to the
            // wrong party.
            subscription.criteria.target == Target::Explicit(nhs_number)
                && subscription.is_active(now)
                && subscription.criteria.events.contains(&event.event_type)
                && subscription.criteria.filters_allow(at_event)
        })
        .collect())
}

/// One delivery per subscriber, with each of its subscriptions that matched
/// once.
fn by_subscriber(matched: Vec<Subscription>) -> Vec<Delivery> {
    let mut by_subscriber: BTreeMap<String, BTreeMap<String, Match>> = BTreeMap::new();
    for subscription in matched {
        by_subscriber
            .entry(subscription.subscriber_id.clone())
            .or_default()
            .entry(subscription.id.clone())
            .or_insert_with(|| Match {
                tag: subscription.tag().map(str::to_owned),
                subscription_id: subscription.id,
            });
    }
    by_subscriber
        .into_iter()
        .map(|(subscriber_id, matches)| Delivery {
            subscriber_id,
            matches: matches.into_values().collect(),
            replay_id: None,
        })
        .collect()
}

/// SNS PublishBatch takes at most ten entries, and at most 262 144 bytes for
/// the whole batch, bodies and attributes together.
pub const SNS_BATCH_ENTRIES: usize = 10;
pub const SNS_BATCH_BYTES: usize = 262_144;

/// The bytes one delivery adds to a batch: the body, and each attribute's
/// name, type ("String") and value.
pub fn delivery_size(event: &StoredEvent, delivery: &Delivery) -> usize {
    event.payload.len()
        + delivery
            .attributes(event)
            .iter()
            .map(|(name, value)| name.len() + "String".len() + value.len())
            .sum::<usize>()
}

/// Deliveries grouped into PublishBatch calls that respect both limits, in
/// order. A delivery too large for any batch stands alone: SNS then refuses
/// it, and the event is retried and finally parked, never silently dropped.
pub fn batches<'a>(event: &StoredEvent, deliveries: &'a [Delivery]) -> Vec<&'a [Delivery]> {
    let mut batches = Vec::new();
    let mut start = 0;
    let mut bytes = 0;
    for (index, delivery) in deliveries.iter().enumerate() {
        let size = delivery_size(event, delivery);
        let full = index - start == SNS_BATCH_ENTRIES || bytes + size > SNS_BATCH_BYTES;
        if full && index > start {
            batches.push(&deliveries[start..index]);
            start = index;
            bytes = 0;
        }
        bytes += size;
    }
    if start < deliveries.len() {
        batches.push(&deliveries[start..]);
    }
    batches
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalogue::{EventType, Lifecycle};

    fn event(payload_bytes: usize) -> StoredEvent {
        StoredEvent {
            event_key: "vaccinations-1/x".into(),
            event_id: "x".into(),
            event_type: EventType::Vaccinations,
            lifecycle: Lifecycle::New,
            content_type: "application/fhir+xml".into(),
            payload: "x".repeat(payload_bytes),
            payload_sha256: String::new(),
            nhs_number: None,
            birth_date: None,
            timestamp: "2026-01-01T00:00:00Z".into(),
            last_updated: None,
            version_id: None,
            responsible_ods: None,
            gp_ods: None,
            registered_with_gp: None,
            home_postcode: None,
            previous_postcode: None,
            sensitive: false,
            clears_sensitivity: false,
            received_at: "2026-01-01T00:00:00Z".into(),
            focus_identifier: None,
            out_of_order: None,
            received_day: "2026-01-01".into(),
            received_sort: "2026-01-01T00:00:00.000Z#vaccinations-1/x".into(),
            expires_at: i64::MAX,
        }
    }

    fn deliveries(count: usize) -> Vec<Delivery> {
        (0..count)
            .map(|n| Delivery {
                subscriber_id: format!("subscriber-{n}"),
                matches: vec![Match {
                    subscription_id: format!("subscription-{n}"),
                    tag: None,
                }],
                replay_id: None,
            })
            .collect()
    }

    #[test]
    fn small_messages_go_ten_to_a_batch() {
        let all = deliveries(21);
        let sizes: Vec<usize> = batches(&event(1_000), &all)
            .iter()
            .map(|b| b.len())
            .collect();
        assert_eq!(sizes, [10, 10, 1]);
    }

    #[test]
    fn large_messages_go_as_many_as_fit_in_256_kib() {
        let all = deliveries(3);
        let large = event(100_000);
        let grouped = batches(&large, &all);
        assert_eq!(grouped.iter().map(|b| b.len()).collect::<Vec<_>>(), [2, 1]);
        for batch in &grouped {
            let bytes: usize = batch.iter().map(|d| delivery_size(&large, d)).sum();
            assert!(bytes <= SNS_BATCH_BYTES);
        }
        // The largest body the hub accepts still goes one to a batch.
        let largest = event(crate::events::MAX_PAYLOAD_BYTES);
        let grouped = batches(&largest, &all);
        assert_eq!(grouped.len(), 3);
        assert!(delivery_size(&largest, &all[0]) <= SNS_BATCH_BYTES);
    }

    #[test]
    fn nothing_is_left_out() {
        assert!(batches(&event(10), &[]).is_empty());
        let all = deliveries(37);
        let total: usize = batches(&event(30_000), &all).iter().map(|b| b.len()).sum();
        assert_eq!(total, 37);
    }
}
