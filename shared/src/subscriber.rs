//! Subscribers: an organisation's system with one delivery queue, onboarded
//! by an operator for the event types it may receive.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use crate::access::{AwsPrincipal, QueueAccess, QueueArn};
use crate::catalogue::EventType;
use crate::error::HubError;
pub use crate::ods::OdsCode;

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
    /// The kind of service it is, as registered at onboarding: what release
    /// embargoes are keyed on (crate::embargo). None: no embargo applies.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_type: Option<crate::criteria::ServiceType>,
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
        if let Some(service_type) = self.service_type {
            json["serviceType"] = service_type.code().into();
        }
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
    pub service_type: Option<crate::criteria::ServiceType>,
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
            service_type: Option<String>,
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
        let service_type = match raw.service_type {
            None => None,
            Some(code) => Some(
                crate::criteria::ServiceType::read(&code)
                    .map_err(|problem| HubError::unprocessable("serviceType", problem))?,
            ),
        };
        Ok(OnboardRequest {
            client_id,
            ods_code,
            name,
            event_types,
            access,
            service_type,
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
    /// What release embargoes apply to it from now on (set, never removed:
    /// a subscriber that could drop its service type could drop its
    /// embargoes).
    pub service_type: Option<crate::criteria::ServiceType>,
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
            .find(|key| !["eventTypes", "awsPrincipal", "serviceType"].contains(&key.as_str()))
        {
            return Err(HubError::bad_request(
                unknown.clone(),
                "only eventTypes, awsPrincipal and serviceType can change (a queue's mode is chosen at onboarding)",
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
        let service_type = match object.get("serviceType") {
            None => None,
            Some(serde_json::Value::String(code)) => Some(
                crate::criteria::ServiceType::read(code)
                    .map_err(|problem| HubError::unprocessable("serviceType", problem))?,
            ),
            Some(_) => {
                return Err(HubError::bad_request(
                    "serviceType",
                    "serviceType is GP, CHO, UHV or EPCHR (it can be changed, not removed)",
                ));
            }
        };
        if event_types.is_none() && aws_principal.is_none() && service_type.is_none() {
            return Err(HubError::bad_request(
                "$",
                "name eventTypes, awsPrincipal or serviceType to change",
            ));
        }
        Ok(ChangeRequest {
            event_types,
            aws_principal,
            service_type,
        })
    }
}

/// How long an offboarded subscriber's queues are kept: SQS keeps a message
/// at most 14 days, so after that nothing in flight can remain in them.
pub const QUEUE_GRACE_DAYS: i64 = 14;

#[cfg(test)]
mod service_type_tests {
    use super::*;

    fn onboarding(service_type: Option<&str>) -> Result<OnboardRequest, HubError> {
        let mut body = serde_json::json!({
            "clientId": "pchr", "odsCode": "A83627", "name": "PCHR",
            "eventTypes": ["blood-spot-test-outcome-1"],
        });
        if let Some(service_type) = service_type {
            body["serviceType"] = service_type.into();
        }
        OnboardRequest::parse(&body.to_string())
    }

    #[test]
    fn a_subscriber_is_registered_with_its_service_type_or_none() {
        use crate::criteria::ServiceType;
        assert_eq!(onboarding(None).unwrap().service_type, None);
        assert_eq!(
            onboarding(Some("EPCHR")).unwrap().service_type,
            Some(ServiceType::Epchr)
        );
        let refused = onboarding(Some("PARENT")).unwrap_err();
        assert!(refused.to_string().contains("serviceType"), "{refused}");
    }

    #[test]
    fn a_change_may_set_the_service_type_but_not_remove_it() {
        use crate::criteria::ServiceType;
        let change = ChangeRequest::parse(r#"{"serviceType": "EPCHR"}"#).unwrap();
        assert_eq!(change.service_type, Some(ServiceType::Epchr));
        assert_eq!((change.event_types, change.aws_principal), (None, None));
        assert_eq!(
            ChangeRequest::parse(r#"{"eventTypes": ["vaccinations-1"]}"#)
                .unwrap()
                .service_type,
            None
        );
        assert!(matches!(
            ChangeRequest::parse(r#"{"serviceType": "PARENT"}"#),
            Err(HubError::Unprocessable { expression, .. }) if expression == "serviceType"
        ));
        for removed in [r#"{"serviceType": null}"#, r#"{"serviceType": 3}"#] {
            assert!(matches!(
                ChangeRequest::parse(removed),
                Err(HubError::BadRequest { expression, .. }) if expression == "serviceType"
            ));
        }
    }
}
