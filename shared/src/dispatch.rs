//! Dispatch: decides who receives an accepted event, and sends one message
//! per recipient however many of its subscriptions match.

use std::collections::BTreeMap;

use serde_json::json;
use time::OffsetDateTime;

use crate::audit::AuditRecord;
use crate::criteria::{PatientAtEvent, Target};
use crate::events::StoredEvent;
use crate::fhir_time::{parse_date, parse_instant};
use crate::ports::{AuditLog, DeliveryPublisher, StoreError, SubscriptionStore};

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
        attributes
    }
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

/// The recipients of an event, each with every subscription of its that matches.
pub async fn recipients<S: SubscriptionStore>(
    subscriptions: &S,
    event: &StoredEvent,
    now: OffsetDateTime,
) -> Result<Vec<Delivery>, StoreError> {
    let Some(nhs_number) = event.nhs_number else {
        // Without an NHS number only generic subscriptions could match.
        return Ok(Vec::new());
    };
    let patient = PatientAtEvent {
        birth_date: event
            .birth_date
            .as_deref()
            .and_then(|date| parse_date(date).ok())
            .and_then(|date| date.date()),
        event_date: parse_instant(&event.timestamp)
            .map(|moment| moment.date())
            .unwrap_or_else(|_| now.date()),
        has_gp: event.registered_with_gp,
    };
    let candidates = subscriptions
        .explicit_candidates(nhs_number, event.event_type)
        .await?;
    let mut by_subscriber: BTreeMap<String, Vec<Match>> = BTreeMap::new();
    for subscription in candidates {
        // The store's key already selects this patient; checking again costs
        // nothing and keeps a storage fault from delivering to the wrong party.
        let for_this_patient = subscription.criteria.target == Target::Explicit(nhs_number);
        if for_this_patient
            && subscription.is_active(now)
            && subscription.criteria.events.contains(&event.event_type)
            && subscription.criteria.filters_allow(&patient)
        {
            by_subscriber
                .entry(subscription.subscriber_id.clone())
                .or_default()
                .push(Match {
                    tag: subscription.tag().map(str::to_owned),
                    subscription_id: subscription.id,
                });
        }
    }
    Ok(by_subscriber
        .into_iter()
        .map(|(subscriber_id, matches)| Delivery {
            subscriber_id,
            matches,
        })
        .collect())
}

/// Routes one accepted event to its recipients.
pub async fn dispatch<S: SubscriptionStore, P: DeliveryPublisher, A: AuditLog>(
    subscriptions: &S,
    publisher: &P,
    audit: &A,
    event: &StoredEvent,
    now: OffsetDateTime,
) -> Result<Dispatched, StoreError> {
    if event.sensitive {
        audit
            .record(&AuditRecord::withheld(
                &event.event_key,
                event.nhs_number,
                now,
            ))
            .await?;
        return Ok(Dispatched::Withheld);
    }
    let deliveries = recipients(subscriptions, event, now).await?;
    if !deliveries.is_empty() {
        // Recorded first: a delivery record without the delivery is put
        // right by the retry, while a delivery without its record could
        // never be accounted for. Each record's id is fixed by the event and
        // the subscriber, so a retry does not duplicate it.
        let records: Vec<AuditRecord> = deliveries
            .iter()
            .map(|delivery| {
                AuditRecord::delivery(
                    &event.event_key,
                    &delivery.subscriber_id,
                    event.nhs_number,
                    now,
                )
            })
            .collect();
        audit.record_all(&records).await?;
        publisher.publish(event, &deliveries).await?;
    }
    Ok(Dispatched::Delivered {
        recipients: deliveries.len(),
    })
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
            received_at: "2026-01-01T00:00:00Z".into(),
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
