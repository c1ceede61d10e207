//! Dispatch: decides who receives an accepted event, and sends one message
//! per recipient however many of its subscriptions match.

use std::collections::BTreeMap;

use serde_json::json;
use time::OffsetDateTime;

use crate::criteria::{PatientAtEvent, Target};
use crate::events::StoredEvent;
use crate::fhir_time::{parse_date, parse_instant};
use crate::ports::{DeliveryPublisher, StoreError, SubscriptionStore};

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
pub async fn dispatch<S: SubscriptionStore, P: DeliveryPublisher>(
    subscriptions: &S,
    publisher: &P,
    event: &StoredEvent,
    now: OffsetDateTime,
) -> Result<Dispatched, StoreError> {
    if event.sensitive {
        return Ok(Dispatched::Withheld);
    }
    let deliveries = recipients(subscriptions, event, now).await?;
    if !deliveries.is_empty() {
        publisher.publish(event, &deliveries).await?;
    }
    Ok(Dispatched::Delivered {
        recipients: deliveries.len(),
    })
}
