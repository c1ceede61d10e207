//! Dispatch: decides who receives an accepted event, and sends one message
//! per recipient however many of its subscriptions match.

use std::collections::BTreeMap;

use serde_json::json;
use time::{Date, OffsetDateTime};

use crate::criteria::PatientAtEvent;
use crate::events::StoredEvent;
use crate::fhir_time::{parse_date, parse_instant};
use crate::nhs_number::NhsNumber;
use crate::reference::Postcode;
use crate::register::ChildRecord;
use crate::subscription::Subscription;

/// The message attribute that SNS filter policies route on.
pub const SUBSCRIBER_ATTRIBUTE: &str = "subscriber";

/// One subscription of a recipient that matched the event.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Match {
    pub subscription_id: String,
    pub tag: Option<String>,
    /// What the delivery rests on through this subscription
    /// (`Subscription::basis_words`), for the audit trail; never sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub basis: Option<String>,
}

/// One copy of the event for one subscriber.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Delivery {
    pub subscriber_id: String,
    pub matches: Vec<Match>,
    /// The replay this delivery is part of; None for a first delivery.
    pub replay_id: Option<String>,
}

impl Delivery {
    /// The basis of each subscription it goes through, for its audit
    /// record: `basis: registered-gp A83627 (<subscription id>); ...`.
    pub fn basis_detail(&self) -> String {
        let each: Vec<String> = self
            .matches
            .iter()
            .map(|matched| {
                format!(
                    "{} ({})",
                    matched.basis.as_deref().unwrap_or("unrecorded"),
                    matched.subscription_id
                )
            })
            .collect();
        format!("basis: {}", each.join("; "))
    }

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

/// A subscription whose basis an event showed lost, and its end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ending {
    pub subscription: Subscription,
    pub ended: crate::basis::Ended,
}

/// Where an event goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// The child is sensitive: to no one.
    Withheld { patient: Option<NhsNumber> },
    /// One delivery per recipient (possibly none), about this patient; and
    /// the subscriptions whose basis the event ends (dispatch records their
    /// end; a replay, which changes nothing, ignores them).
    Deliver {
        deliveries: Vec<Delivery>,
        patient: Option<NhsNumber>,
        endings: Vec<Ending>,
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

/// What routing knows of the child an event is about: the register's facts
/// first (this event applied), else the message's. For a birth notification
/// the child is the baby, of whom the message's routed facts (the mother's)
/// say nothing, except that until the baby has a practice of its own the
/// birth reaches the practice the message names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChildFacts {
    pub postcode: Option<Postcode>,
    pub practice: Option<String>,
    pub birth_date: Option<Date>,
    /// None: neither the register nor the message says.
    pub registered: Option<bool>,
}

impl ChildFacts {
    pub fn of(event: &StoredEvent, record: Option<&ChildRecord>) -> Self {
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
    pub fn at_event(&self, event: &StoredEvent, now: OffsetDateTime) -> PatientAtEvent {
        PatientAtEvent {
            birth_date: self.birth_date,
            event_date: parse_instant(&event.timestamp)
                .map(|moment| moment.date())
                .unwrap_or_else(|_| now.date()),
            has_gp: self.registered,
        }
    }
}

/// One delivery per subscriber, with each of its subscriptions that matched
/// once.
pub fn by_subscriber(matched: Vec<Subscription>) -> Vec<Delivery> {
    let mut by_subscriber: BTreeMap<String, BTreeMap<String, Match>> = BTreeMap::new();
    for subscription in matched {
        by_subscriber
            .entry(subscription.subscriber_id.clone())
            .or_default()
            .entry(subscription.id.clone())
            .or_insert_with(|| Match {
                tag: subscription.tag().map(str::to_owned),
                basis: Some(subscription.basis_words()),
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
                    basis: None,
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
