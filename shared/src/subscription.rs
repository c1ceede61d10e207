//! Subscriptions: FHIR Subscription resources (profile EMS-Subscription-1)
//! that say which events a subscriber wants.

use serde::{Deserialize, Serialize};
use serde_json::json;
use time::OffsetDateTime;

use crate::backfill::{self, BackfillGrant};
use crate::basis::{Basis, Ended};
use crate::criteria::Criteria;
use crate::error::HubError;
use crate::fhir::Element;
use crate::fhir_time::parse_instant;
use crate::message::{Encoding, ODS_DIRECTORY_PREFIX};
use crate::ods::OdsCode;
use crate::outcome::escape_xml;
use crate::store::Page;

const MAX_REASON_CHARS: usize = 1000;
const MAX_CRITERIA_CHARS: usize = 2000;
/// The most subscriptions one subscriber may hold for one patient and event
/// type: each is listed in every delivery's attributes, which must fit in
/// one SNS message beside the largest payload.
pub const MAX_SUBSCRIPTIONS_PER_PATIENT_AND_TYPE: usize = 20;

/// A subscriber's count of the explicit subscriptions it created in one
/// UTC day, kept by one conditional write: each opens a child's events to
/// it, so a burst (a client walking through NHS numbers) stops at a limit
/// and shows in the metrics, rather than being trusted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DailyCount {
    /// `COUNT#explicit#<subscriber>#<YYYY-MM-DD>`.
    pub key: String,
    pub per_day: u32,
    /// When the count may leave the store (Unix seconds): two days on.
    pub expires_at: i64,
}

impl DailyCount {
    pub fn explicit(subscriber_id: &str, limit: DailyLimit, now: OffsetDateTime) -> Self {
        let day = now.to_offset(time::UtcOffset::UTC).date();
        DailyCount {
            key: format!("COUNT#explicit#{subscriber_id}#{day}"),
            per_day: limit.per_day,
            expires_at: now.unix_timestamp().saturating_add(2 * 86_400),
        }
    }
}

/// How many explicit subscriptions one subscriber may create in a UTC day
/// (setting EXPLICIT_SUBSCRIPTIONS_PER_DAY).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DailyLimit {
    pub per_day: u32,
}

impl DailyLimit {
    /// A practice registering its new patients, or a health visiting team
    /// its caseload, stays well under it.
    pub const DEFAULT: DailyLimit = DailyLimit { per_day: 200 };

    /// From EXPLICIT_SUBSCRIPTIONS_PER_DAY (crate::text::whole_number_above_zero).
    pub fn from_setting(setting: Option<&str>) -> Result<Self, String> {
        Ok(crate::text::whole_number_above_zero(setting, "")?
            .map_or(Self::DEFAULT, |per_day| DailyLimit { per_day }))
    }
}

pub const SUBSCRIPTION_PROFILE: &str =
    "https://fhir.nhs.uk/STU3/StructureDefinition/EMS-Subscription-1";
/// The one delivery channel: a message on the subscriber's queue.
pub const CHANNEL_TYPE: &str = "message";

impl Serialize for Criteria {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.to_criteria_string())
    }
}

impl<'de> Deserialize<'de> for Criteria {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Criteria::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// A stored subscription. Its criteria are kept in canonical form.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Subscription {
    pub id: String,
    pub subscriber_id: String,
    pub contact_ods: OdsCode,
    pub reason: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end: Option<String>,
    pub criteria: Criteria,
    pub version_id: u32,
    pub last_updated: String,
    /// Why the subscriber may have the child's events (explicit
    /// subscriptions; a generic one's rule is its basis). None on an
    /// explicit subscription made before bases were recorded: it reads as
    /// declared direct care (`Subscription::basis`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub basis: Option<Basis>,
    /// Set when its basis was lost: it matches nothing after that.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ended: Option<Ended>,
    /// Operators' grants opening a window before its creation
    /// (crate::backfill): open, expired and revoked ones alike, for the
    /// trail.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub backfills: Vec<BackfillGrant>,
}

impl Subscription {
    /// Active until its end instant or the loss of its basis; `off` after.
    pub fn is_active(&self, now: OffsetDateTime) -> bool {
        self.ended.is_none() && self.before_end(now)
    }

    /// Whether dispatch gives it this event: while active, and, once its
    /// basis is lost, still the event that ended it (the move that reaches
    /// the practice left), so that a retried dispatch delivers it too.
    pub fn receives(&self, event_key: &str, now: OffsetDateTime) -> bool {
        match &self.ended {
            None => self.before_end(now),
            Some(ended) => ended.last_event.as_deref() == Some(event_key) && self.before_end(now),
        }
    }

    /// What a delivery through it rests on, for the audit trail: an
    /// explicit subscription's basis, or a generic one's rule and place.
    pub fn basis_words(&self) -> String {
        match &self.criteria.target {
            crate::criteria::Target::Explicit(_) => self.basis().describe(),
            _ => format!(
                "generic {}",
                crate::generic::subscription_key(&self.criteria).unwrap_or_default()
            ),
        }
    }

    /// The basis of an explicit subscription, declared direct care when
    /// none was recorded.
    pub fn basis(&self) -> Basis {
        self.basis.clone().unwrap_or(Basis::DeclaredDirectCare)
    }

    fn before_end(&self, now: OffsetDateTime) -> bool {
        match self.end.as_deref().map(parse_instant) {
            None => true,
            Some(Ok(end)) => now < end,
            // An unreadable end is treated as past: never deliver on doubt.
            Some(Err(_)) => false,
        }
    }

    pub fn tag(&self) -> Option<&str> {
        self.criteria.tag.as_deref()
    }

    /// The first moment whose events this subscription may disclose beyond
    /// what it was delivered: its creation, or the start of an operator's
    /// open backfill grant when that is earlier. Such a subscription rests
    /// on a basis that says nothing of the child's past with the
    /// subscriber (declared direct care, which the hub cannot check; an
    /// area; a relationship), so it sees what happens from its creation on:
    /// no history, event read or replay of anything accepted before it,
    /// unless a grant opens it. Subscriptions are never changed in place, so
    /// `lastUpdated` is the creation instant; an unreadable one discloses
    /// nothing (never on doubt).
    pub fn discloses_from(&self, now: OffsetDateTime) -> OffsetDateTime {
        let created = self.created_at();
        match backfill::earliest_open(&self.backfills, now) {
            Some(since) => since.min(created),
            None => created,
        }
    }

    /// Whether an open backfill grant reaches before the creation.
    pub fn is_backfilled(&self, now: OffsetDateTime) -> bool {
        self.discloses_from(now) < self.created_at()
    }

    /// When it was created (`lastUpdated`; the latest moment when unreadable).
    pub fn created_at(&self) -> OffsetDateTime {
        parse_instant(&self.last_updated)
            .unwrap_or_else(|_| time::PrimitiveDateTime::MAX.assume_utc())
    }

    fn status(&self, now: OffsetDateTime) -> &'static str {
        if self.is_active(now) { "active" } else { "off" }
    }

    pub fn to_json(&self, now: OffsetDateTime) -> serde_json::Value {
        let mut resource = json!({
            "resourceType": "Subscription",
            "id": self.id,
            "meta": {
                "versionId": self.version_id.to_string(),
                "lastUpdated": self.last_updated,
                "profile": [SUBSCRIPTION_PROFILE],
            },
            "status": self.status(now),
            "contact": [{
                "system": "url",
                "value": format!("{ODS_DIRECTORY_PREFIX}{}", self.contact_ods.as_str()),
                "use": "work",
            }],
            "reason": self.reason,
            "criteria": self.criteria.to_criteria_string(),
            "channel": {"type": CHANNEL_TYPE, "endpoint": self.subscriber_id},
        });
        if let Some(end) = &self.end {
            resource["end"] = json!(end);
        }
        if let Some(ended) = &self.ended {
            resource["error"] = json!(ended.detail);
        }
        resource
    }

    pub fn to_xml(&self, now: OffsetDateTime) -> String {
        let mut xml = format!(
            "<Subscription xmlns=\"http://hl7.org/fhir\"><id value=\"{id}\"/><meta><versionId value=\"{version}\"/>\
             <lastUpdated value=\"{updated}\"/><profile value=\"{SUBSCRIPTION_PROFILE}\"/></meta>\
             <status value=\"{status}\"/><contact><system value=\"url\"/><value value=\"{ODS_DIRECTORY_PREFIX}{ods}\"/>\
             <use value=\"work\"/></contact>",
            id = escape_xml(&self.id),
            version = self.version_id,
            updated = escape_xml(&self.last_updated),
            status = self.status(now),
            ods = escape_xml(self.contact_ods.as_str()),
        );
        if let Some(end) = &self.end {
            xml.push_str(&format!("<end value=\"{}\"/>", escape_xml(end)));
        }
        xml.push_str(&format!("<reason value=\"{}\"/>", escape_xml(&self.reason)));
        xml.push_str(&format!(
            "<criteria value=\"{}\"/>",
            escape_xml(&self.criteria.to_criteria_string())
        ));
        if let Some(ended) = &self.ended {
            xml.push_str(&format!("<error value=\"{}\"/>", escape_xml(&ended.detail)));
        }
        xml.push_str(&format!(
            "<channel><type value=\"{CHANNEL_TYPE}\"/>\
             <endpoint value=\"{}\"/></channel></Subscription>",
            escape_xml(&self.subscriber_id),
        ));
        xml
    }

    pub fn render(&self, encoding: Encoding, now: OffsetDateTime) -> String {
        match encoding {
            Encoding::Json => self.to_json(now).to_string(),
            Encoding::Xml => self.to_xml(now),
        }
    }
}

/// A `POST /Subscription` body, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubscriptionRequest {
    pub contact_ods: OdsCode,
    pub reason: String,
    pub end: Option<OffsetDateTime>,
    pub criteria: Criteria,
    pub subscriber_id: String,
}

impl SubscriptionRequest {
    pub fn read(body: &str, encoding: Encoding, now: OffsetDateTime) -> Result<Self, HubError> {
        let resource = encoding
            .read(body)
            .map_err(|error| HubError::bad_request("Subscription", error.to_string()))?;
        Self::from_resource(&resource, now)
    }

    fn from_resource(resource: &Element, now: OffsetDateTime) -> Result<Self, HubError> {
        if resource.name != "Subscription" {
            return Err(HubError::bad_request(
                "Subscription",
                format!("the body is a FHIR {}, not a Subscription", resource.name),
            ));
        }
        crate::fhir::check_cardinality(resource)
            .map_err(|error| HubError::unprocessable(error.expression, error.problem))?;
        let set_by_hub = |expression: &str| {
            HubError::unprocessable(
                expression,
                "is set by the hub and must not be sent on create",
            )
        };
        if resource.child("id").is_some() {
            return Err(set_by_hub("Subscription.id"));
        }
        if let Some(meta) = resource.child("meta") {
            if meta.child("versionId").is_some() {
                return Err(set_by_hub("Subscription.meta.versionId"));
            }
            if meta.child("lastUpdated").is_some() {
                return Err(set_by_hub("Subscription.meta.lastUpdated"));
            }
        }
        match resource.value_of("status") {
            Some("requested") => {}
            Some(other) => {
                return Err(HubError::unprocessable(
                    "Subscription.status",
                    format!("'{other}' is not 'requested'; the hub sets the status"),
                ));
            }
            None => {
                return Err(HubError::unprocessable(
                    "Subscription.status",
                    "status 'requested' is required",
                ));
            }
        }
        let contact_ods = resource
            .children("contact")
            .filter(|contact| contact.value_of("system") == Some("url"))
            .find_map(|contact| contact.value_of("value")?.strip_prefix(ODS_DIRECTORY_PREFIX))
            .ok_or_else(|| {
                HubError::unprocessable(
                    "Subscription.contact",
                    format!("a contact with system 'url' and value {ODS_DIRECTORY_PREFIX}<ODS code> is required"),
                )
            })?;
        let contact_ods = OdsCode::parse(contact_ods).ok_or_else(|| {
            HubError::unprocessable(
                "Subscription.contact.value",
                format!("'{contact_ods}' is not an ODS code"),
            )
        })?;
        let reason = resource
            .value_of("reason")
            .filter(|reason| reason.chars().count() <= MAX_REASON_CHARS)
            .map(str::trim)
            .filter(|reason| !reason.is_empty())
            .ok_or_else(|| {
                HubError::unprocessable(
                    "Subscription.reason",
                    format!("a reason of at most {MAX_REASON_CHARS} characters is required"),
                )
            })?
            .to_owned();
        let end = resource
            .value_of("end")
            .map(|end| {
                let end = parse_instant(end).map_err(|error| {
                    HubError::unprocessable("Subscription.end", format!("'{end}' {error}"))
                })?;
                if end <= now {
                    return Err(HubError::unprocessable(
                        "Subscription.end",
                        "the end is in the past",
                    ));
                }
                Ok(end)
            })
            .transpose()?;
        let criteria = resource.value_of("criteria").ok_or_else(|| {
            HubError::unprocessable("Subscription.criteria", "criteria are required")
        })?;
        if criteria.chars().count() > MAX_CRITERIA_CHARS {
            return Err(HubError::unprocessable(
                "Subscription.criteria",
                format!("criteria are at most {MAX_CRITERIA_CHARS} characters"),
            ));
        }
        let criteria = Criteria::parse(criteria)?;
        let channel = resource.child("channel").ok_or_else(|| {
            HubError::unprocessable("Subscription.channel", "a channel is required")
        })?;
        match channel.value_of("type") {
            Some(CHANNEL_TYPE) => {}
            _ => {
                return Err(HubError::unprocessable(
                    "Subscription.channel.type",
                    format!(
                        "the channel type must be '{CHANNEL_TYPE}' (delivery to the subscriber's queue)"
                    ),
                ));
            }
        }
        let subscriber_id = channel
            .value_of("endpoint")
            .filter(|endpoint| uuid::Uuid::try_parse(endpoint).is_ok())
            .ok_or_else(|| {
                HubError::unprocessable(
                    "Subscription.channel.endpoint",
                    "the endpoint must be the subscriber id the hub issued (a UUID)",
                )
            })?
            .to_owned();
        Ok(SubscriptionRequest {
            contact_ods,
            reason,
            end,
            criteria,
            subscriber_id,
        })
    }
}

/// The most subscriptions one page of a listing holds, and the default.
pub const MAX_PAGE_SIZE: usize = 100;
pub const DEFAULT_PAGE_SIZE: usize = 50;

/// A page of a subscriber's subscriptions as a FHIR searchset Bundle.
pub fn searchset(
    page: &Page<Subscription>,
    page_size: usize,
    encoding: Encoding,
    now: OffsetDateTime,
) -> String {
    let self_url = format!("/Subscription?_count={page_size}");
    let next_url = page
        .next
        .as_ref()
        .map(|token| format!("{self_url}&_page={token}"));
    match encoding {
        Encoding::Json => {
            let mut links = vec![json!({"relation": "self", "url": self_url})];
            if let Some(next) = &next_url {
                links.push(json!({"relation": "next", "url": next}));
            }
            let entries: Vec<_> = page
                .items
                .iter()
                .map(|subscription| {
                    json!({
                        "fullUrl": format!("/Subscription/{}", subscription.id),
                        "resource": subscription.to_json(now),
                        "search": {"mode": "match"},
                    })
                })
                .collect();
            json!({
                "resourceType": "Bundle",
                "type": "searchset",
                "link": links,
                "entry": entries,
            })
            .to_string()
        }
        Encoding::Xml => {
            let mut xml =
                String::from("<Bundle xmlns=\"http://hl7.org/fhir\"><type value=\"searchset\"/>");
            let mut link = |relation: &str, url: &str| {
                xml.push_str(&format!(
                    "<link><relation value=\"{relation}\"/><url value=\"{}\"/></link>",
                    escape_xml(url)
                ));
            };
            link("self", &self_url);
            if let Some(next) = &next_url {
                link("next", next);
            }
            for subscription in &page.items {
                xml.push_str(&format!(
                    "<entry><fullUrl value=\"/Subscription/{}\"/><resource>{}</resource><search><mode value=\"match\"/></search></entry>",
                    escape_xml(&subscription.id),
                    subscription.to_xml(now)
                ));
            }
            xml.push_str("</Bundle>");
            xml
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The setting is a whole number above zero, or absent (the default);
    /// anything else is refused, never taken for the default.
    #[test]
    fn the_daily_limit_is_a_number_above_zero_or_refused() {
        assert_eq!(DailyLimit::from_setting(None), Ok(DailyLimit::DEFAULT));
        assert_eq!(DailyLimit::from_setting(Some(" ")), Ok(DailyLimit::DEFAULT));
        assert_eq!(
            DailyLimit::from_setting(Some("50")),
            Ok(DailyLimit { per_day: 50 })
        );
        for refused in ["0", "-1", "ten", "2.5"] {
            assert!(
                DailyLimit::from_setting(Some(refused)).is_err(),
                "{refused}"
            );
        }
    }

    /// One count per subscriber and UTC day, kept two days.
    #[test]
    fn a_daily_count_is_keyed_by_subscriber_and_utc_day() {
        let late_evening = time::macros::datetime!(2026-12-07 23:30 -01:00);
        let count = DailyCount::explicit("sub-1", DailyLimit::DEFAULT, late_evening);
        assert_eq!(count.key, "COUNT#explicit#sub-1#2026-12-08");
        assert_eq!(count.per_day, 200);
        assert_eq!(count.expires_at, late_evening.unix_timestamp() + 2 * 86_400);
    }
}
