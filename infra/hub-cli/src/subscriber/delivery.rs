//! One delivery, read from an SQS message and its attributes.

use std::collections::HashMap;
use std::fmt;

use aws_sdk_sqs::types::{Message, MessageAttributeValue, MessageSystemAttributeName};
use hub::Encoding;
use hub::catalogue::Lifecycle;
use hub::events::OutOfOrder;
use hub::nhs_number::NhsNumber;
use serde::{Deserialize, Serialize, Serializer};

/// The names of the message attributes the hub sets on a delivery.
pub mod attribute {
    /// The subscriber's id (SNS routes on it).
    pub const SUBSCRIBER: &str = "subscriber";
    pub const EVENT_ID: &str = "eventId";
    pub const EVENT_TYPE: &str = "eventType";
    pub const LIFECYCLE: &str = "lifecycle";
    pub const CONTENT_TYPE: &str = "contentType";
    pub const SUBSCRIPTIONS: &str = "subscriptions";
    pub const NHS_NUMBER: &str = "nhsNumber";
    pub const OUT_OF_ORDER: &str = "outOfOrder";
    pub const REPLAY: &str = "replay";
}

/// The encoding of the body: the hub passes on the publisher's, and never
/// converts between them. Serialised, it is its media type ([`code`]).
///
/// [`code`]: ContentType::code
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ContentType {
    FhirXml,
    FhirJson,
}

impl ContentType {
    /// The hub's normalised media types, and the STU3 forms it normalises
    /// (`application/xml+fhir`, `application/json+fhir`); parameters such as
    /// `; charset=utf-8` and case are ignored: the hub's own reading
    /// ([`Encoding::from_content_type`]).
    pub fn from_code(code: &str) -> Option<Self> {
        Encoding::from_content_type(code).map(|encoding| match encoding {
            Encoding::Xml => Self::FhirXml,
            Encoding::Json => Self::FhirJson,
        })
    }

    /// The hub's normalised media type.
    pub fn code(self) -> &'static str {
        self.encoding().media_type()
    }

    /// The file extension for a body of this type: `xml` or `json`.
    pub fn extension(self) -> &'static str {
        match self {
            Self::FhirXml => "xml",
            Self::FhirJson => "json",
        }
    }

    fn encoding(self) -> Encoding {
        match self {
            Self::FhirXml => Encoding::Xml,
            Self::FhirJson => Encoding::Json,
        }
    }
}

impl fmt::Display for ContentType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

impl Serialize for ContentType {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.code())
    }
}

/// One of the subscriber's subscriptions that matched the event, with its
/// tag when it has one. Fields the hub may add later are ignored.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct SubscriptionMatch {
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tag: Option<String>,
}

/// One event delivered to a subscriber: the body exactly as published and
/// the hub's message attributes, typed. Serialised (JSON), it is one object
/// with the attributes' names; absent optional attributes are left out.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Delivery {
    /// The SQS message id (not the event's).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message_id: Option<String>,
    /// `MessageHeader.id`: a UUID, lower case. Deduplicate on
    /// `event_type` + `event_id`.
    pub event_id: String,
    /// The event type code, e.g. `vaccinations-1`: lower-case letters,
    /// digits and hyphens.
    pub event_type: String,
    pub lifecycle: Lifecycle,
    pub content_type: ContentType,
    /// Every subscription of the subscriber that matched (in a replay, the
    /// replayed one).
    pub subscriptions: Vec<SubscriptionMatch>,
    /// The routing NHS number, when the message has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nhs_number: Option<NhsNumber>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub out_of_order: Option<OutOfOrder>,
    /// The replay's id, when this delivery is part of one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replay: Option<String>,
    /// The subscriber's id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subscriber: Option<String>,
    /// How many times SQS has handed out this message, this time included,
    /// when the receive asked for it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub receive_count: Option<u32>,
    pub body: String,
}

/// Why a message is not a hub delivery.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DeliveryError {
    #[error("the message has no {0} attribute")]
    Missing(&'static str),
    #[error("the {0} attribute is not a string attribute")]
    NotAString(&'static str),
    #[error("the {attribute} attribute '{value}' is not {expected}")]
    Invalid {
        attribute: &'static str,
        /// The value, shortened to at most 80 characters.
        value: String,
        expected: &'static str,
    },
    #[error("the message has no body")]
    NoBody,
}

impl DeliveryError {
    fn invalid(attribute: &'static str, value: &str, expected: &'static str) -> Self {
        const LONGEST: usize = 80;
        let value = match value.char_indices().nth(LONGEST) {
            Some((end, _)) => format!("{}...", &value[..end]),
            None => value.to_owned(),
        };
        Self::Invalid {
            attribute,
            value,
            expected,
        }
    }
}

/// A message's string attributes, by name.
struct Attributes<'a>(Option<&'a HashMap<String, MessageAttributeValue>>);

impl<'a> Attributes<'a> {
    fn optional(&self, name: &'static str) -> Result<Option<&'a str>, DeliveryError> {
        match self.0.and_then(|attributes| attributes.get(name)) {
            None => Ok(None),
            Some(value) => value
                .string_value()
                .map(Some)
                .ok_or(DeliveryError::NotAString(name)),
        }
    }

    /// An optional attribute parsed by `parse`.
    fn parsed<T>(
        &self,
        name: &'static str,
        expected: &'static str,
        parse: impl Fn(&str) -> Option<T>,
    ) -> Result<Option<T>, DeliveryError> {
        self.optional(name)?
            .map(|value| parse(value).ok_or_else(|| DeliveryError::invalid(name, value, expected)))
            .transpose()
    }

    /// A required attribute parsed by `parse`.
    fn parsed_required<T>(
        &self,
        name: &'static str,
        expected: &'static str,
        parse: impl Fn(&str) -> Option<T>,
    ) -> Result<T, DeliveryError> {
        self.parsed(name, expected, parse)?
            .ok_or(DeliveryError::Missing(name))
    }
}

/// A UUID in its hyphenated form (8-4-4-4-12 hexadecimal digits).
fn is_uuid(text: &str) -> bool {
    text.len() == 36
        && text.char_indices().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => c == '-',
            _ => c.is_ascii_hexdigit(),
        })
}

/// An event type code: lower-case letters, digits and hyphens, starting
/// with a letter, at most 64 characters.
fn is_event_type(text: &str) -> bool {
    text.len() <= 64
        && text.starts_with(|c: char| c.is_ascii_lowercase())
        && text
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

/// An identifier the hub made: 1 to 128 visible ASCII characters.
fn is_identifier(text: &str) -> bool {
    (1..=128).contains(&text.len()) && text.chars().all(|c| c.is_ascii_graphic())
}

fn subscriptions(text: &str) -> Option<Vec<SubscriptionMatch>> {
    let matches: Vec<SubscriptionMatch> = serde_json::from_str(text).ok()?;
    matches
        .iter()
        .all(|matched| {
            is_identifier(&matched.id) && matched.tag.as_deref().is_none_or(|tag| !tag.is_empty())
        })
        .then_some(matches)
}

impl Delivery {
    /// Reads a received message. It needs the message's attributes (receive
    /// with `MessageAttributeNames=All`); the receive count is read when the
    /// `ApproximateReceiveCount` system attribute was asked for. A message
    /// that lacks a required attribute, or holds a value the hub never
    /// sends, is an error naming the attribute.
    pub fn from_message(message: &Message) -> Result<Self, DeliveryError> {
        let attributes = Attributes(message.message_attributes());
        let identifier = |value: &str| is_identifier(value).then(|| value.to_owned());
        Ok(Delivery {
            message_id: message.message_id().map(str::to_owned),
            event_id: attributes.parsed_required(attribute::EVENT_ID, "a UUID", |value| {
                is_uuid(value).then(|| value.to_owned())
            })?,
            event_type: attributes.parsed_required(
                attribute::EVENT_TYPE,
                "an event type code",
                |value| is_event_type(value).then(|| value.to_owned()),
            )?,
            lifecycle: attributes.parsed_required(
                attribute::LIFECYCLE,
                "new, update or delete",
                |value| value.parse::<Lifecycle>().ok(),
            )?,
            content_type: attributes.parsed_required(
                attribute::CONTENT_TYPE,
                "application/fhir+xml or application/fhir+json",
                ContentType::from_code,
            )?,
            subscriptions: attributes.parsed_required(
                attribute::SUBSCRIPTIONS,
                "a JSON list of {\"id\", \"tag\"} objects",
                subscriptions,
            )?,
            nhs_number: attributes.parsed(attribute::NHS_NUMBER, "an NHS number", |value| {
                NhsNumber::parse(value).ok()
            })?,
            out_of_order: attributes.parsed(
                attribute::OUT_OF_ORDER,
                "older-than-current or unknown-resource",
                |value| value.parse::<OutOfOrder>().ok(),
            )?,
            replay: attributes.parsed(attribute::REPLAY, "a replay id", identifier)?,
            subscriber: attributes.parsed(attribute::SUBSCRIBER, "a subscriber id", identifier)?,
            receive_count: message
                .attributes()
                .and_then(|system| system.get(&MessageSystemAttributeName::ApproximateReceiveCount))
                .and_then(|count| count.parse().ok()),
            body: message.body().ok_or(DeliveryError::NoBody)?.to_owned(),
        })
    }

    /// `<eventType>-<eventId>.<xml|json>`: a file name unique to the event
    /// (event type and id identify an event), safe on any file system.
    pub fn file_name(&self) -> String {
        format!(
            "{}-{}.{}",
            self.event_type,
            self.event_id,
            self.content_type.extension()
        )
    }

    /// Whether the subscription matched this event.
    pub fn matched(&self, subscription_id: &str) -> bool {
        self.subscriptions
            .iter()
            .any(|matched| matched.id == subscription_id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EVENT_ID: &str = "85c8a1c5-a8a1-41c9-bb99-20956fa66218";
    const BODY: &str = "<Bundle xmlns=\"http://hl7.org/fhir\"/>";

    fn string(value: &str) -> MessageAttributeValue {
        MessageAttributeValue::builder()
            .data_type("String")
            .string_value(value)
            .build()
            .expect("a data type")
    }

    fn message(attributes: &[(&str, &str)]) -> Message {
        let mut builder = Message::builder()
            .message_id("m-1")
            .body(BODY)
            .attributes(MessageSystemAttributeName::ApproximateReceiveCount, "2");
        for (name, value) in attributes {
            builder = builder.message_attributes(*name, string(value));
        }
        builder.build()
    }

    /// What the hub sends for a first delivery of the NEMS vaccination.
    fn required() -> Vec<(&'static str, &'static str)> {
        vec![
            ("subscriber", "0e5b0c33-7a51-4b8f-9c2e-5d0c4f1a8b27"),
            ("eventId", EVENT_ID),
            ("eventType", "vaccinations-1"),
            ("lifecycle", "new"),
            ("contentType", "application/fhir+xml"),
            (
                "subscriptions",
                r#"[{"id":"6f66aa3e-0001","tag":"gp-care"},{"id":"81a2bb4f-0002"}]"#,
            ),
        ]
    }

    fn with(changes: &[(&'static str, &'static str)]) -> Message {
        let mut attributes = required();
        for (name, value) in changes {
            attributes.retain(|(existing, _)| existing != name);
            attributes.push((name, value));
        }
        message(&attributes)
    }

    fn without(name: &str) -> Message {
        let mut attributes = required();
        attributes.retain(|(existing, _)| *existing != name);
        message(&attributes)
    }

    #[test]
    fn a_first_delivery_is_read_with_typed_values() {
        let delivery = Delivery::from_message(&with(&[("nhsNumber", "9912003888")])).unwrap();
        assert_eq!(
            delivery,
            Delivery {
                message_id: Some("m-1".into()),
                event_id: EVENT_ID.into(),
                event_type: "vaccinations-1".into(),
                lifecycle: Lifecycle::New,
                content_type: ContentType::FhirXml,
                subscriptions: vec![
                    SubscriptionMatch {
                        id: "6f66aa3e-0001".into(),
                        tag: Some("gp-care".into())
                    },
                    SubscriptionMatch {
                        id: "81a2bb4f-0002".into(),
                        tag: None
                    },
                ],
                nhs_number: NhsNumber::parse("9912003888").ok(),
                out_of_order: None,
                replay: None,
                subscriber: Some("0e5b0c33-7a51-4b8f-9c2e-5d0c4f1a8b27".into()),
                receive_count: Some(2),
                body: BODY.into(),
            }
        );
        assert_eq!(
            delivery.file_name(),
            format!("vaccinations-1-{EVENT_ID}.xml")
        );
        assert!(delivery.matched("81a2bb4f-0002"));
        assert!(!delivery.matched("81a2bb4f"));
    }

    #[test]
    fn the_optional_attributes_are_read_when_present() {
        let delivery = Delivery::from_message(&with(&[
            ("lifecycle", "delete"),
            ("contentType", "application/json+fhir; charset=utf-8"),
            ("outOfOrder", "unknown-resource"),
            ("replay", "4d1c9a8e-6b7f-4c2d-9e0a-1b2c3d4e5f60"),
        ]))
        .unwrap();
        assert_eq!(delivery.lifecycle, Lifecycle::Delete);
        assert_eq!(delivery.content_type, ContentType::FhirJson);
        assert_eq!(delivery.out_of_order, Some(OutOfOrder::UnknownResource));
        assert_eq!(
            delivery.replay.as_deref(),
            Some("4d1c9a8e-6b7f-4c2d-9e0a-1b2c3d4e5f60")
        );
        assert_eq!(delivery.nhs_number, None, "a birth may have none");
        assert!(delivery.file_name().ends_with(".json"));

        let flagged = with(&[
            ("lifecycle", "update"),
            ("outOfOrder", "older-than-current"),
        ]);
        let delivery = Delivery::from_message(&flagged).unwrap();
        assert_eq!(delivery.out_of_order, Some(OutOfOrder::OlderThanCurrent));
        assert_eq!(delivery.lifecycle, Lifecycle::Update);
    }

    #[test]
    fn a_missing_required_attribute_is_named() {
        for name in [
            "eventId",
            "eventType",
            "lifecycle",
            "contentType",
            "subscriptions",
        ] {
            assert_eq!(
                Delivery::from_message(&without(name)),
                Err(DeliveryError::Missing(name)),
                "{name}"
            );
        }
        // The subscriber attribute is for SNS's routing: not needed here.
        assert!(Delivery::from_message(&without("subscriber")).is_ok());
        // What the hub may add later is ignored.
        let extended = with(&[
            ("subscriptions", r#"[{"id":"s-1","since":"2025-01-01"}]"#),
            ("priority", "high"),
        ]);
        let delivery = Delivery::from_message(&extended).unwrap();
        assert_eq!(delivery.subscriptions[0].id, "s-1");
    }

    #[test]
    fn a_message_without_attributes_or_body_is_an_error() {
        let bare = Message::builder().message_id("m-2").body(BODY).build();
        assert_eq!(
            Delivery::from_message(&bare),
            Err(DeliveryError::Missing("eventId"))
        );
        let mut no_body = with(&[]);
        no_body.body = None;
        assert_eq!(Delivery::from_message(&no_body), Err(DeliveryError::NoBody));
    }

    #[test]
    fn values_the_hub_never_sends_are_errors_naming_the_attribute() {
        let cases: &[(&str, &str)] = &[
            ("eventId", "not-a-uuid"),
            ("eventId", "85c8a1c5a8a141c9bb9920956fa66218"),
            ("eventId", ""),
            ("eventType", "../../etc/passwd"),
            ("eventType", "Vaccinations-1"),
            ("eventType", ""),
            ("lifecycle", "created"),
            ("lifecycle", "NEW"),
            ("contentType", "text/plain"),
            ("subscriptions", "not json"),
            ("subscriptions", r#"{"id":"s-1"}"#),
            ("subscriptions", r#"[{"tag":"gp-care"}]"#),
            ("subscriptions", r#"[{"id":""}]"#),
            ("subscriptions", r#"[{"id":"s-1","tag":""}]"#),
            ("nhsNumber", "9912003889"),
            ("nhsNumber", "991200388"),
            ("nhsNumber", "99120O3888"),
            ("outOfOrder", "late"),
            ("replay", ""),
            ("replay", "has space"),
        ];
        for (name, value) in cases {
            match Delivery::from_message(&with(&[(name, value)])) {
                Err(DeliveryError::Invalid { attribute, .. }) => assert_eq!(attribute, *name),
                other => panic!("{name}={value:?}: {other:?}"),
            }
        }
    }

    #[test]
    fn a_binary_attribute_is_not_a_string() {
        let mut message = with(&[]);
        message.message_attributes.get_or_insert_default().insert(
            "lifecycle".into(),
            MessageAttributeValue::builder()
                .data_type("Binary")
                .binary_value(aws_sdk_sqs::primitives::Blob::new(b"new".to_vec()))
                .build()
                .unwrap(),
        );
        assert_eq!(
            Delivery::from_message(&message),
            Err(DeliveryError::NotAString("lifecycle"))
        );
    }

    #[test]
    fn an_invalid_value_is_shortened_in_the_error() {
        let long = "x".repeat(500);
        let message = message(
            &required()
                .into_iter()
                .map(|(name, value)| {
                    if name == "subscriptions" {
                        (name, long.as_str())
                    } else {
                        (name, value)
                    }
                })
                .collect::<Vec<_>>(),
        );
        let error = Delivery::from_message(&message).unwrap_err().to_string();
        assert!(
            error.starts_with("the subscriptions attribute 'xxx"),
            "{error}"
        );
        assert!(error.len() < 200, "{error}");
    }

    #[test]
    fn a_delivery_serialises_with_the_attribute_names() {
        let delivery = Delivery::from_message(&with(&[
            ("nhsNumber", "9912003888"),
            ("outOfOrder", "older-than-current"),
        ]))
        .unwrap();
        let json = serde_json::to_value(&delivery).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "messageId": "m-1",
                "eventId": EVENT_ID,
                "eventType": "vaccinations-1",
                "lifecycle": "new",
                "contentType": "application/fhir+xml",
                "subscriptions": [{"id": "6f66aa3e-0001", "tag": "gp-care"}, {"id": "81a2bb4f-0002"}],
                "nhsNumber": "9912003888",
                "outOfOrder": "older-than-current",
                "subscriber": "0e5b0c33-7a51-4b8f-9c2e-5d0c4f1a8b27",
                "receiveCount": 2,
                "body": BODY,
            })
        );
    }
}
