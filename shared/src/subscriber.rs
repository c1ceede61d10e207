//! Subscribers: an organisation's system with one delivery queue, onboarded
//! by an operator for the event types it may receive.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::access::{AwsPrincipal, QueueAccess, QueueArn};
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
    /// The KMS grants that let the subscriber's principal decrypt its
    /// queue's and DLQ's messages.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub key_grants: Vec<String>,
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
    /// Whose queue it is, and who reads it.
    #[serde(default)]
    pub access: QueueAccess,
}

impl Subscriber {
    pub fn may_receive(&self, event_type: EventType) -> bool {
        self.is_active() && self.event_types.contains(&event_type)
    }

    pub fn is_active(&self) -> bool {
        self.offboarded_at.is_none()
    }

    /// The subscriber as the onboarding API shows it. A subscriber that owns
    /// its queue is also told what to set up on its side (`setup`).
    pub fn to_json(&self) -> serde_json::Value {
        let mut json = serde_json::json!({
            "id": self.id,
            "odsCode": self.ods_code,
            "name": self.name,
            "eventTypes": self.event_types,
            "queueUrl": self.queues.queue_url,
            "queueArn": self.queues.queue_arn,
            "access": self.access,
            "clientId": self.client_id,
            "createdAt": self.created_at,
            "offboardedAt": self.offboarded_at,
        });
        match &self.access {
            QueueAccess::HubOwned { .. } => {
                json["deadLetterQueueUrl"] = self.queues.dead_letter_queue_url.clone().into();
                json["deadLetterQueueArn"] = self.queues.dead_letter_queue_arn.clone().into();
            }
            QueueAccess::SubscriberOwned { queue_arn } => {
                let topics = self.queues.topic_arns();
                let topics: Vec<&str> = topics.iter().map(String::as_str).collect();
                json["setup"] = serde_json::json!({
                    "queuePolicy": crate::access::own_queue_policy(queue_arn, &topics),
                    "keyPolicyStatement": crate::access::own_queue_key_statement(&topics),
                    "confirmation": "SNS sends one SubscriptionConfirmation message per topic to the queue: \
                        confirm each (visit its SubscribeURL, or call sns:ConfirmSubscription with its Token) \
                        until GET /subscribers/{id}/status shows every topic subscription confirmed",
                    "redrive": "the queue's dead-letter queue, if any, is the subscriber's own",
                });
            }
        }
        json
    }
}

impl Queues {
    /// The topics the queue is subscribed to (a subscription's ARN is its
    /// topic's ARN and an id).
    pub fn topic_arns(&self) -> Vec<String> {
        self.topic_subscriptions
            .iter()
            .filter_map(|arn| arn.rsplit_once(':').map(|(topic, _)| topic.to_owned()))
            .collect()
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
    pub access: QueueAccess,
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
            aws_principal: Option<String>,
            queue_arn: Option<String>,
        }
        let raw: Raw = crate::fhir::from_json_unique(body).map_err(|error| {
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
        let event_types = parse_event_types(&codes)?;
        let access = match (raw.aws_principal, raw.queue_arn) {
            (Some(_), Some(_)) => {
                return Err(HubError::unprocessable(
                    "queueArn",
                    "give awsPrincipal (the hub's queue, read by that principal) or queueArn \
                     (a queue of the subscriber's own), not both",
                ));
            }
            (Some(principal), None) => QueueAccess::HubOwned {
                principal: Some(parse_principal(&principal)?),
            },
            (None, Some(queue_arn)) => QueueAccess::SubscriberOwned {
                queue_arn: QueueArn::parse(&queue_arn).ok_or_else(|| {
                    HubError::unprocessable(
                        "queueArn",
                        "queueArn is a standard SQS queue's ARN (arn:aws:sqs:<region>:<account>:<name>, not FIFO)",
                    )
                })?,
            },
            (None, None) => QueueAccess::HubOwned { principal: None },
        };
        Ok(OnboardRequest {
            client_id,
            ods_code,
            name,
            event_types,
            access,
        })
    }
}

fn parse_principal(text: &str) -> Result<AwsPrincipal, HubError> {
    AwsPrincipal::parse(text).ok_or_else(|| {
        HubError::unprocessable(
            "awsPrincipal",
            "awsPrincipal is a 12-digit AWS account id or an IAM role ARN (arn:aws:iam::<account>:role/<name>)",
        )
    })
}

fn parse_event_types(codes: &[String]) -> Result<BTreeSet<EventType>, HubError> {
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
    Ok(event_types)
}

/// `PATCH /subscribers/{id}`: what changes (absent: unchanged).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChangeRequest {
    pub event_types: Option<BTreeSet<EventType>>,
    /// Some(None): no principal of another account reads the queue any more.
    pub aws_principal: Option<Option<AwsPrincipal>>,
}

impl ChangeRequest {
    pub fn parse(body: &str) -> Result<Self, HubError> {
        let value: serde_json::Value = crate::fhir::from_json_unique(body).map_err(|error| {
            HubError::bad_request("$", format!("the body is not a JSON object: {error}"))
        })?;
        let object = value
            .as_object()
            .ok_or_else(|| HubError::bad_request("$", "the body is a JSON object"))?;
        if let Some(unknown) = object
            .keys()
            .find(|key| !["eventTypes", "awsPrincipal"].contains(&key.as_str()))
        {
            return Err(HubError::bad_request(
                unknown.clone(),
                "only eventTypes and awsPrincipal can change (a queue's mode is chosen at onboarding)",
            ));
        }
        let event_types = match object.get("eventTypes") {
            None => None,
            Some(value) => {
                let codes: Vec<String> = serde_json::from_value(value.clone()).map_err(|_| {
                    HubError::bad_request("eventTypes", "eventTypes is a list of event type codes")
                })?;
                Some(parse_event_types(&codes)?)
            }
        };
        let aws_principal = match object.get("awsPrincipal") {
            None => None,
            Some(serde_json::Value::Null) => Some(None),
            Some(serde_json::Value::String(text)) => Some(Some(parse_principal(text)?)),
            Some(_) => {
                return Err(HubError::bad_request(
                    "awsPrincipal",
                    "awsPrincipal is a string, or null to remove it",
                ));
            }
        };
        if event_types.is_none() && aws_principal.is_none() {
            return Err(HubError::bad_request(
                "$",
                "name eventTypes or awsPrincipal to change",
            ));
        }
        Ok(ChangeRequest {
            event_types,
            aws_principal,
        })
    }
}

/// Changes what a subscriber may receive and who reads its queue, without
/// touching what its queue holds. Narrowing its event types is refused
/// while a subscription of its names a type being removed: deleting them
/// is the subscriber's decision, not a side effect.
pub async fn change<R: SubscriberStore, S: SubscriptionStore, Q: QueueProvisioner>(
    subscribers: &R,
    subscriptions: &S,
    provisioner: &Q,
    subscriber_id: &str,
    change: ChangeRequest,
) -> Result<Subscriber, HubError> {
    let mut subscriber = subscribers
        .get(subscriber_id)
        .await?
        .filter(Subscriber::is_active)
        .ok_or_else(|| HubError::NotFound(format!("subscriber {subscriber_id}")))?;
    let event_types = change
        .event_types
        .unwrap_or_else(|| subscriber.event_types.clone());
    let removed: BTreeSet<EventType> = subscriber
        .event_types
        .difference(&event_types)
        .copied()
        .collect();
    if !removed.is_empty() {
        let mut blocking = Vec::new();
        let mut page_token = None;
        loop {
            let page = subscriptions
                .list_by_subscriber(subscriber_id, 100, page_token.as_deref())
                .await?;
            blocking.extend(
                page.items
                    .iter()
                    .filter(|subscription| {
                        subscription
                            .criteria
                            .events
                            .iter()
                            .any(|event_type| removed.contains(event_type))
                    })
                    .map(|subscription| subscription.id.clone()),
            );
            match page.next {
                Some(next) => page_token = Some(next),
                None => break,
            }
        }
        if !blocking.is_empty() {
            return Err(HubError::unprocessable(
                "eventTypes",
                format!(
                    "subscriptions {} name event types being removed: delete them first",
                    blocking.join(", ")
                ),
            ));
        }
    }
    let access = match (change.aws_principal, &subscriber.access) {
        (None, access) => access.clone(),
        (Some(principal), QueueAccess::HubOwned { .. }) => QueueAccess::HubOwned { principal },
        (Some(_), QueueAccess::SubscriberOwned { .. }) => {
            return Err(HubError::unprocessable(
                "awsPrincipal",
                "the subscriber owns its queue: who reads it is its own account's business",
            ));
        }
    };
    let types: Vec<EventType> = event_types.iter().copied().collect();
    subscriber.queues = provisioner
        .reconfigure(&subscriber.id, &subscriber.queues, &types, &access)
        .await?;
    subscriber.event_types = event_types;
    subscriber.access = access;
    subscribers.save(&subscriber).await?;
    Ok(subscriber)
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
    let queues = provisioner
        .provision(&id, &event_types, &request.access)
        .await?;
    let subscriber = Subscriber {
        id,
        ods_code: request.ods_code,
        name: request.name,
        event_types: request.event_types,
        queues,
        created_at: format_instant(now),
        client_id: Some(client.client_id.clone()),
        offboarded_at: None,
        access: request.access,
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
