//! Subscription criteria in the NEMS grammar:
//! `/Bundle?type=message&<component>&<component>...`

use std::collections::BTreeSet;
use std::fmt::Write as _;

use time::Date;

use crate::catalogue::EventType;
use crate::nhs_number::NhsNumber;
use crate::text::percent_decode;

/// The identifier system NEMS criteria use for NHS numbers.
pub const CRITERIA_NHS_NUMBER_SYSTEM: &str = "http://fhir.nhs.net/Id/nhs-number";
const ALTERNATIVE_NHS_NUMBER_SYSTEM: &str = "https://fhir.nhs.uk/Id/nhs-number";
pub const MAX_TAG_LENGTH: usize = 100;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("criteria component {component}: {problem}")]
pub struct CriteriaError {
    pub component: String,
    pub problem: String,
}

fn fail<T>(component: &str, problem: impl Into<String>) -> Result<T, CriteriaError> {
    Err(CriteriaError {
        component: component.to_owned(),
        problem: problem.into(),
    })
}

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "UPPERCASE")]
pub enum ServiceType {
    Gp,
    Cho,
    Uhv,
    Epchr,
}

impl ServiceType {
    pub fn code(self) -> &'static str {
        match self {
            ServiceType::Gp => "GP",
            ServiceType::Cho => "CHO",
            ServiceType::Uhv => "UHV",
            ServiceType::Epchr => "EPCHR",
        }
    }

    /// The service type a code names (`code`'s inverse).
    pub fn parse(code: &str) -> Option<ServiceType> {
        [
            ServiceType::Gp,
            ServiceType::Cho,
            ServiceType::Uhv,
            ServiceType::Epchr,
        ]
        .into_iter()
        .find(|service_type| service_type.code() == code)
    }

    /// `parse`, with the problem to name when the code is none of them.
    pub fn read(code: &str) -> Result<ServiceType, String> {
        ServiceType::parse(code).ok_or_else(|| format!("'{code}' is not GP, CHO, UHV or EPCHR"))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GpRegistration {
    RegisteredOnly,
    UnregisteredOnly,
}

impl GpRegistration {
    pub fn code(self) -> &'static str {
        match self {
            GpRegistration::RegisteredOnly => "RegisteredOnly",
            GpRegistration::UnregisteredOnly => "UnregisteredOnly",
        }
    }
}

/// How a generic subscription matches a patient's area or practice.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RuleType {
    GpGpGp,
    ChoGpCcg,
    ChoPostcodeCcg,
    UhvPostcodeLacode,
    CountryCode,
}

impl RuleType {
    pub fn code(self) -> &'static str {
        match self {
            RuleType::GpGpGp => "GP_GP_GP",
            RuleType::ChoGpCcg => "CHO_GP_CCG",
            RuleType::ChoPostcodeCcg => "CHO_POSTCODE_CCG",
            RuleType::UhvPostcodeLacode => "UHV_POSTCODE_LACODE",
            RuleType::CountryCode => "COUNTRYCODE",
        }
    }
}

/// Whom a subscription is about: one patient, or everyone a rule selects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Explicit(NhsNumber),
    Generic {
        rule: RuleType,
        organisation: Option<String>,
    },
}

impl Target {
    /// The patient of an explicit subscription; none for a generic one.
    pub fn patient(&self) -> Option<NhsNumber> {
        match self {
            Target::Explicit(nhs_number) => Some(*nhs_number),
            Target::Generic { .. } => None,
        }
    }
}

/// Age in whole years: `gtN` means older than N, `ltN` younger than N.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct AgeRange {
    pub greater_than: Option<u32>,
    pub less_than: Option<u32>,
}

impl AgeRange {
    pub fn is_unbounded(&self) -> bool {
        self.greater_than.is_none() && self.less_than.is_none()
    }

    pub fn contains(&self, age: u32) -> bool {
        self.greater_than.is_none_or(|bound| age > bound)
            && self.less_than.is_none_or(|bound| age < bound)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Criteria {
    pub service_type: Option<ServiceType>,
    pub target: Target,
    pub events: BTreeSet<EventType>,
    pub age: AgeRange,
    pub gp_registration: Option<GpRegistration>,
    pub tag: Option<String>,
}

/// What matching needs to know of an event's patient.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PatientAtEvent {
    pub birth_date: Option<Date>,
    pub event_date: Date,
    pub has_gp: Option<bool>,
}

impl Criteria {
    pub fn parse(text: &str) -> Result<Self, CriteriaError> {
        let text = text.trim();
        let query = text
            .strip_prefix("/Bundle?")
            .or_else(|| text.strip_prefix("Bundle?"));
        let Some(query) = query else {
            return fail("/Bundle", "criteria must start with /Bundle?type=message");
        };
        let query = query.replace("&amp;", "&");

        let mut message_type_seen = false;
        let mut service_type = None;
        let mut nhs_number = None;
        let mut events = BTreeSet::new();
        let mut age = AgeRange::default();
        let mut age_count = 0;
        let mut gp_registration = None;
        let mut rule = None;
        let mut organisation = None;
        let mut tag = None;

        for component in query.split('&').filter(|c| !c.is_empty()) {
            let Some((raw_key, raw_value)) = component.split_once('=') else {
                return fail(component, "a component is written name=value");
            };
            let key = percent_decode(raw_key).ok_or_else(|| bad_encoding(raw_key))?;
            let value = percent_decode(raw_value).ok_or_else(|| bad_encoding(raw_key))?;
            let key = key.as_str();
            match key {
                "type" => {
                    once(key, message_type_seen)?;
                    if value != "message" {
                        return fail(key, "must be type=message");
                    }
                    message_type_seen = true;
                }
                "serviceType" => {
                    once(key, service_type.is_some())?;
                    service_type = Some(match ServiceType::read(&value) {
                        Ok(service_type) => service_type,
                        Err(problem) => return fail(key, problem),
                    });
                }
                "Patient.identifier" => {
                    once(key, nhs_number.is_some())?;
                    let Some((system, number)) = value.split_once('|') else {
                        return fail(
                            key,
                            format!("must be {CRITERIA_NHS_NUMBER_SYSTEM}|<NHS number>"),
                        );
                    };
                    if system != CRITERIA_NHS_NUMBER_SYSTEM
                        && system != ALTERNATIVE_NHS_NUMBER_SYSTEM
                    {
                        return fail(
                            key,
                            format!("the identifier system must be {CRITERIA_NHS_NUMBER_SYSTEM}"),
                        );
                    }
                    match NhsNumber::parse(number) {
                        Ok(number) => nhs_number = Some(number),
                        Err(error) => return fail(key, format!("invalid NHS number: {error}")),
                    }
                }
                "MessageHeader.event" => {
                    let Ok(event_type) = value.parse::<EventType>() else {
                        return fail(
                            key,
                            format!("'{value}' is not an event type of the catalogue"),
                        );
                    };
                    if !events.insert(event_type) {
                        return fail(key, format!("'{value}' is given twice"));
                    }
                }
                "Patient.age" => {
                    age_count += 1;
                    if age_count > 2 {
                        return fail(key, "may be given at most twice (one lt, one gt)");
                    }
                    let (bound, digits) = match (value.strip_prefix("lt"), value.strip_prefix("gt"))
                    {
                        (Some(digits), _) => ("lt", digits),
                        (_, Some(digits)) => ("gt", digits),
                        _ => return fail(key, format!("'{value}' is not ltN or gtN")),
                    };
                    let years = match digits.parse::<u32>() {
                        Ok(years)
                            if digits.len() <= 3 && digits.bytes().all(|b| b.is_ascii_digit()) =>
                        {
                            years
                        }
                        _ => {
                            return fail(
                                key,
                                format!("'{value}' is not ltN or gtN with N whole years"),
                            );
                        }
                    };
                    let slot = if bound == "lt" {
                        &mut age.less_than
                    } else {
                        &mut age.greater_than
                    };
                    if slot.replace(years).is_some() {
                        return fail(key, format!("'{bound}' is given twice"));
                    }
                }
                "GPRegistration" => {
                    once(key, gp_registration.is_some())?;
                    gp_registration = Some(match value.as_str() {
                        "RegisteredOnly" => GpRegistration::RegisteredOnly,
                        "UnregisteredOnly" => GpRegistration::UnregisteredOnly,
                        _ => {
                            return fail(
                                key,
                                format!("'{value}' is not RegisteredOnly or UnregisteredOnly"),
                            );
                        }
                    });
                }
                "subscriptionRuleType" => {
                    once(key, rule.is_some())?;
                    rule = Some(match value.as_str() {
                        "GP_GP_GP" => RuleType::GpGpGp,
                        "CHO_GP_CCG" => RuleType::ChoGpCcg,
                        "CHO_POSTCODE_CCG" => RuleType::ChoPostcodeCcg,
                        "UHV_POSTCODE_LACODE" => RuleType::UhvPostcodeLacode,
                        "COUNTRYCODE" => RuleType::CountryCode,
                        _ => return fail(key, format!("'{value}' is not a known rule type")),
                    });
                }
                "Organization.identifier" => {
                    once(key, organisation.is_some())?;
                    if value.is_empty()
                        || value.len() > 20
                        || !value.bytes().all(|b| b.is_ascii_alphanumeric())
                    {
                        return fail(
                            key,
                            format!("'{value}' is not an organisation or area code"),
                        );
                    }
                    organisation = Some(value);
                }
                "tag" => {
                    once(key, tag.is_some())?;
                    if value.is_empty() || value.len() > MAX_TAG_LENGTH {
                        return fail(key, format!("must be 1 to {MAX_TAG_LENGTH} characters"));
                    }
                    if !value.bytes().all(is_tag_byte) {
                        return fail(key, "may contain only A-Z a-z 0-9 - _ | ,");
                    }
                    tag = Some(value);
                }
                other => return fail(other, "is not a component of the NEMS criteria grammar"),
            }
        }

        if !message_type_seen {
            return fail("type", "type=message is required");
        }
        if events.is_empty() {
            return fail("MessageHeader.event", "at least one event type is required");
        }
        if age.less_than == Some(0) {
            return fail("Patient.age", "lt0 matches no age");
        }
        if let (Some(over), Some(under)) = (age.greater_than, age.less_than)
            && under <= over + 1
        {
            return fail(
                "Patient.age",
                format!("gt{over} and lt{under} leave no whole age between them"),
            );
        }
        let target = match (nhs_number, rule) {
            (Some(_), Some(_)) => {
                return fail(
                    "subscriptionRuleType",
                    "an explicit subscription (Patient.identifier) takes no rule type",
                );
            }
            (Some(number), None) => {
                if organisation.is_some() {
                    return fail(
                        "Organization.identifier",
                        "an explicit subscription takes no organisation",
                    );
                }
                Target::Explicit(number)
            }
            (None, Some(rule)) => {
                if events.len() > 1 {
                    return fail(
                        "MessageHeader.event",
                        "a generic subscription names exactly one event type",
                    );
                }
                Target::Generic { rule, organisation }
            }
            (None, None) => {
                return fail(
                    "Patient.identifier",
                    "either Patient.identifier (explicit) or subscriptionRuleType (generic) is required",
                );
            }
        };
        Ok(Criteria {
            service_type,
            target,
            events,
            age,
            gp_registration,
            tag,
        })
    }

    /// The criteria in canonical form: parsing it gives back the same criteria.
    pub fn to_criteria_string(&self) -> String {
        let mut text = String::from("/Bundle?type=message");
        if let Some(service_type) = self.service_type {
            let _ = write!(text, "&serviceType={}", service_type.code());
        }
        match &self.target {
            Target::Explicit(number) => {
                let _ = write!(
                    text,
                    "&Patient.identifier={CRITERIA_NHS_NUMBER_SYSTEM}|{number}"
                );
            }
            Target::Generic { rule, .. } => {
                let _ = write!(text, "&subscriptionRuleType={}", rule.code());
            }
        }
        if let Target::Generic {
            organisation: Some(code),
            ..
        } = &self.target
        {
            let _ = write!(text, "&Organization.identifier={code}");
        }
        for event in &self.events {
            let _ = write!(text, "&MessageHeader.event={event}");
        }
        if let Some(over) = self.age.greater_than {
            let _ = write!(text, "&Patient.age=gt{over}");
        }
        if let Some(under) = self.age.less_than {
            let _ = write!(text, "&Patient.age=lt{under}");
        }
        if let Some(registration) = self.gp_registration {
            let _ = write!(text, "&GPRegistration={}", registration.code());
        }
        if let Some(tag) = &self.tag {
            let _ = write!(text, "&tag={tag}");
        }
        text
    }

    /// Whether the age and GP registration filters let this event through.
    /// Where a filter is set and the fact it needs is unknown, the event does
    /// not match: a filter is a promise about what the subscriber receives.
    pub fn filters_allow(&self, patient: &PatientAtEvent) -> bool {
        if !self.age.is_unbounded() {
            let Some(age) = patient
                .birth_date
                .and_then(|birth| age_in_years(birth, patient.event_date))
            else {
                return false;
            };
            if !self.age.contains(age) {
                return false;
            }
        }
        match self.gp_registration {
            None => true,
            Some(GpRegistration::RegisteredOnly) => patient.has_gp == Some(true),
            Some(GpRegistration::UnregisteredOnly) => patient.has_gp == Some(false),
        }
    }
}

/// Age in completed years on a date; None before birth.
pub fn age_in_years(birth: Date, on: Date) -> Option<u32> {
    let mut years = on.year() - birth.year();
    if (on.month() as u8, on.day()) < (birth.month() as u8, birth.day()) {
        years -= 1;
    }
    u32::try_from(years).ok()
}

fn once(component: &str, seen: bool) -> Result<(), CriteriaError> {
    if seen {
        fail(component, "may be given only once")
    } else {
        Ok(())
    }
}

fn is_tag_byte(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'|' | b',')
}

fn bad_encoding(component: &str) -> CriteriaError {
    CriteriaError {
        component: component.to_owned(),
        problem: "has a malformed %-escape or is not UTF-8".into(),
    }
}
