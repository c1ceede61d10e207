//! Subscribers: an organisation's system with one delivery queue, onboarded
//! by an operator for the event types it may receive.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::audit::{Action, AuditRecord};
use crate::auth::{Caller, Role};
use crate::catalogue::EventType;
use crate::error::HubError;
use crate::fhir_time::format_instant;
use crate::ports::{AuditLog, ClientStore, QueueProvisioner, SubscriberStore, SubscriptionStore};

/// An ODS organisation code: 3 to 10 upper-case letters and digits.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct OdsCode(String);

impl OdsCode {
    pub fn parse(text: &str) -> Option<Self> {
        let valid = (3..=10).contains(&text.len())
            && text
                .bytes()
                .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit());
        valid.then(|| OdsCode(text.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for OdsCode {
    type Error = String;
    fn try_from(text: String) -> Result<Self, Self::Error> {
        OdsCode::parse(&text).ok_or_else(|| format!("'{text}' is not an ODS code"))
    }
}

impl From<OdsCode> for String {
    fn from(code: OdsCode) -> Self {
        code.0
    }
}

/// The queues onboarding created for a subscriber.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Queues {
    pub queue_url: String,
    pub queue_arn: String,
    pub dead_letter_queue_url: String,
    pub dead_letter_queue_arn: String,
    /// The SNS subscriptions that feed the queue, one per event type.
    #[serde(default)]
    pub topic_subscriptions: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Subscriber {
    pub id: String,
    pub ods_code: OdsCode,
    pub name: String,
    pub event_types: BTreeSet<EventType>,
    #[serde(flatten)]
    pub queues: Queues,
    pub created_at: String,
    /// The registered client that acts as this subscriber.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    /// When the subscriber was offboarded; it receives nothing after that.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offboarded_at: Option<String>,
}

impl Subscriber {
    pub fn may_receive(&self, event_type: EventType) -> bool {
        self.is_active() && self.event_types.contains(&event_type)
    }

    pub fn is_active(&self) -> bool {
        self.offboarded_at.is_none()
    }

    /// The subscriber as the onboarding API shows it.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "id": self.id,
            "odsCode": self.ods_code,
            "name": self.name,
            "eventTypes": self.event_types,
            "queueUrl": self.queues.queue_url,
            "deadLetterQueueUrl": self.queues.dead_letter_queue_url,
            "clientId": self.client_id,
            "createdAt": self.created_at,
            "offboardedAt": self.offboarded_at,
        })
    }
}

/// `POST /subscribers`: who the subscriber is and what it may receive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OnboardRequest {
    /// The registered client (role subscriber) that will act as it.
    pub client_id: String,
    pub ods_code: OdsCode,
    pub name: String,
    pub event_types: BTreeSet<EventType>,
}

const MAX_NAME_LENGTH: usize = 200;

impl OnboardRequest {
    pub fn parse(body: &str) -> Result<Self, HubError> {
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase", deny_unknown_fields)]
        struct Raw {
            client_id: Option<String>,
            ods_code: Option<String>,
            name: Option<String>,
            event_types: Option<Vec<String>>,
        }
        let raw: Raw = serde_json::from_str(body).map_err(|error| {
            HubError::bad_request(
                "$",
                format!("the body is not a valid onboarding request: {error}"),
            )
        })?;
        let client_id = raw
            .client_id
            .filter(|id| !id.trim().is_empty())
            .ok_or_else(|| HubError::bad_request("clientId", "clientId is required"))?;
        if client_id.len() > crate::auth::MAX_CLIENT_ID_LENGTH {
            return Err(HubError::unprocessable("clientId", "clientId is too long"));
        }
        let ods_code = raw
            .ods_code
            .ok_or_else(|| HubError::bad_request("odsCode", "odsCode is required"))?;
        let ods_code = OdsCode::parse(&ods_code).ok_or_else(|| {
            HubError::unprocessable(
                "odsCode",
                format!("'{ods_code}' is not an ODS code (3 to 10 capitals and digits)"),
            )
        })?;
        let name = raw
            .name
            .map(|name| name.trim().to_owned())
            .unwrap_or_default();
        if name.is_empty() || name.chars().count() > MAX_NAME_LENGTH {
            return Err(HubError::unprocessable(
                "name",
                format!("name is required, at most {MAX_NAME_LENGTH} characters"),
            ));
        }
        let codes = raw
            .event_types
            .ok_or_else(|| HubError::bad_request("eventTypes", "eventTypes is required"))?;
        let mut event_types = BTreeSet::new();
        for (index, code) in codes.iter().enumerate() {
            let event_type = code.parse::<EventType>().map_err(|_| {
                HubError::unprocessable(
                    format!("eventTypes[{index}]"),
                    format!("'{code}' is not an event type of the catalogue"),
                )
            })?;
            event_types.insert(event_type);
        }
        if event_types.is_empty() {
            return Err(HubError::unprocessable(
                "eventTypes",
                "name at least one event type",
            ));
        }
        Ok(OnboardRequest {
            client_id,
            ods_code,
            name,
            event_types,
        })
    }
}

/// Creates the subscriber's queues and topic subscriptions, records it, and
/// links the client that acts as it. The client must be registered as a
/// subscriber of the same organisation and not act as another subscriber.
pub async fn onboard<S: SubscriberStore, Q: QueueProvisioner, C: ClientStore>(
    store: &S,
    provisioner: &Q,
    clients: &C,
    request: OnboardRequest,
    now: OffsetDateTime,
) -> Result<Subscriber, HubError> {
    let client = clients
        .get(&request.client_id)
        .await?
        .filter(|client| client.enabled && client.roles.contains(&Role::Subscriber))
        .ok_or_else(|| {
            HubError::unprocessable(
                "clientId",
                "clientId names no enabled client registered with the subscriber role",
            )
        })?;
    if client.ods_code != request.ods_code {
        return Err(HubError::unprocessable(
            "odsCode",
            "odsCode is not the organisation the client is registered for",
        ));
    }
    if let Some(existing) = &client.subscriber_id {
        let active = store.get(existing).await?.is_some_and(|s| s.is_active());
        if active {
            return Err(HubError::unprocessable(
                "clientId",
                format!("the client already acts as subscriber {existing}"),
            ));
        }
    }
    let id = uuid::Uuid::new_v4().to_string();
    let event_types: Vec<EventType> = request.event_types.iter().copied().collect();
    let queues = provisioner.provision(&id, &event_types).await?;
    let subscriber = Subscriber {
        id,
        ods_code: request.ods_code,
        name: request.name,
        event_types: request.event_types,
        queues,
        created_at: format_instant(now),
        client_id: Some(client.client_id.clone()),
        offboarded_at: None,
    };
    store.create(&subscriber).await?;
    clients
        .link_subscriber(&client.client_id, &subscriber.id)
        .await?;
    Ok(subscriber)
}

/// How long an offboarded subscriber's queues are kept: SQS keeps a message
/// at most 14 days, so after that nothing in flight can remain in them.
pub const QUEUE_GRACE_DAYS: i64 = 14;

/// Offboards a subscriber: its topic subscriptions go first (nothing new is
/// delivered), then every subscription of its, then its record is marked.
/// Its queues stay for [`QUEUE_GRACE_DAYS`] so it can read what was already
/// delivered. Offboarding twice is harmless.
///
/// Each subscription removed is audited as deleted by the operator, so that
/// the trail of every patient concerned shows the end of its subscription.
pub async fn offboard<
    R: SubscriberStore,
    S: SubscriptionStore,
    Q: QueueProvisioner,
    A: AuditLog,
>(
    subscribers: &R,
    subscriptions: &S,
    provisioner: &Q,
    audit: &A,
    operator: &Caller,
    subscriber_id: &str,
    now: OffsetDateTime,
) -> Result<Subscriber, HubError> {
    let mut subscriber = subscribers
        .get(subscriber_id)
        .await?
        .ok_or_else(|| HubError::NotFound(format!("subscriber {subscriber_id}")))?;
    provisioner.unsubscribe(&subscriber.queues).await?;
    // One pass through the listing, page by page: re-reading from the start
    // would find just-deleted items again while the index catches up.
    let mut page_token = None;
    loop {
        let page = subscriptions
            .list_by_subscriber(subscriber_id, 100, page_token.as_deref())
            .await?;
        for subscription in &page.items {
            // One write each (no batch): the permission to batch-write the
            // trail would also be one to delete from it.
            let record = AuditRecord::new(Some(operator), Action::SubscriptionDelete, 204, now)
                .subscription(subscription.id.clone())
                .subscriber(subscriber_id)
                .patient(subscription.criteria.target.patient())
                .detail("offboarding");
            audit.record(&record).await?;
            subscriptions.delete(subscription).await?;
        }
        match page.next {
            Some(next) => page_token = Some(next),
            None => break,
        }
    }
    if subscriber.offboarded_at.is_none() {
        let at = format_instant(now);
        subscribers.mark_offboarded(subscriber_id, &at).await?;
        subscriber.offboarded_at = Some(at);
    }
    Ok(subscriber)
}
