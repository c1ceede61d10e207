//! An event message: a FHIR Bundle of type `message` whose first entry is a
//! MessageHeader. This module reads, in one place and for both encodings,
//! everything the hub routes on, and refuses a message that does not carry it.

use time::{Date, OffsetDateTime};

use crate::catalogue::{EVENT_TYPE_SYSTEM, EventType, Lifecycle};
use crate::fhir::{self, Element, ReadError};
use crate::fhir_time::{self, TimeError};
use crate::nhs_number::{NhsNumber, NhsNumberError};

pub mod rules;

pub const ROUTING_DEMOGRAPHICS_URL: &str =
    "https://fhir.nhs.uk/STU3/StructureDefinition/Extension-RoutingDemographics-1";
pub const MESSAGE_EVENT_TYPE_URL: &str =
    "https://fhir.nhs.uk/STU3/StructureDefinition/Extension-MessageEventType-1";
pub const NHS_NUMBER_SYSTEM: &str = "https://fhir.nhs.uk/Id/nhs-number";
pub const ODS_CODE_SYSTEM: &str = "https://fhir.nhs.uk/Id/ods-organization-code";
/// Organisations are also referenced by their Spine directory URL, which ends in the ODS code.
pub const ODS_DIRECTORY_PREFIX: &str = "https://directory.spineservices.nhs.uk/STU3/Organization/";

/// Confidentiality codes (Patient.meta.security) that mark a patient sensitive.
const SENSITIVE_CODES: [&str; 3] = ["R", "V", "REDACTED"];

const HEADER: &str = "Bundle.entry[0].resource.ofType(MessageHeader)";

/// The two FHIR encodings the hub accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Encoding {
    Xml,
    Json,
}

impl Encoding {
    /// The encoding a Content-Type header names. Both the FHIR R3 media types
    /// and the older `application/xml+fhir` forms that NEMS publishers send are
    /// understood; parameters such as charset are ignored.
    pub fn from_content_type(content_type: &str) -> Option<Self> {
        let media_type = content_type.split(';').next()?.trim().to_ascii_lowercase();
        match media_type.as_str() {
            "application/fhir+xml" | "application/xml+fhir" => Some(Encoding::Xml),
            "application/fhir+json" | "application/json+fhir" => Some(Encoding::Json),
            _ => None,
        }
    }

    pub fn media_type(self) -> &'static str {
        match self {
            Encoding::Xml => "application/fhir+xml",
            Encoding::Json => "application/fhir+json",
        }
    }

    pub fn read(self, body: &str) -> Result<Element<'_>, ReadError> {
        match self {
            Encoding::Xml => fhir::read_xml(body),
            Encoding::Json => fhir::read_json(body),
        }
    }
}

/// What is wrong with a message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MessageError {
    #[error(transparent)]
    Unreadable(#[from] ReadError),
    #[error("the body is a FHIR {found}, not a Bundle")]
    NotABundle { found: String },
    #[error("{expression}: {problem}")]
    Invalid {
        expression: String,
        problem: String,
        kind: ProblemKind,
    },
}

/// The nature of an invalid element, for the OperationOutcome's codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProblemKind {
    /// A mandatory element is absent.
    Missing,
    /// An element is present but its value is wrong.
    BadValue,
    /// An NHS number fails its check: a wrong-patient hazard.
    BadNhsNumber,
}

impl MessageError {
    pub(crate) fn missing(expression: impl Into<String>, what: &str) -> Self {
        MessageError::Invalid {
            expression: expression.into(),
            problem: format!("{what} is required"),
            kind: ProblemKind::Missing,
        }
    }

    pub(crate) fn bad_value(expression: impl Into<String>, problem: impl Into<String>) -> Self {
        MessageError::Invalid {
            expression: expression.into(),
            problem: problem.into(),
            kind: ProblemKind::BadValue,
        }
    }

    fn bad_time(expression: impl Into<String>, value: &str, error: TimeError) -> Self {
        Self::bad_value(expression, format!("'{value}' {error}"))
    }

    pub(crate) fn bad_nhs_number(expression: impl Into<String>, error: NhsNumberError) -> Self {
        MessageError::Invalid {
            expression: expression.into(),
            problem: format!("invalid NHS number: {error}"),
            kind: ProblemKind::BadNhsNumber,
        }
    }
}

impl From<fhir::CardinalityError> for MessageError {
    fn from(error: fhir::CardinalityError) -> Self {
        MessageError::bad_value(error.expression, error.problem)
    }
}

/// A business identifier (system and value) of the focus resource: what links
/// an update or delete to the event it changes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identifier {
    pub system: String,
    pub value: String,
}

/// What the hub knows of the patient from the message's Patient entry.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PatientFacts {
    pub nhs_number: Option<NhsNumber>,
    pub birth_date: Option<Date>,
    pub home_postcode: Option<String>,
    /// The postcode of an address marked `old`: where the patient moved from.
    pub previous_postcode: Option<String>,
    pub gp_ods: Option<String>,
    /// The Patient names a general practitioner, whether or not its ODS code
    /// can be read: what a GP registration filter asks about.
    pub has_gp: bool,
    pub sensitive: bool,
}

/// The routing data of a valid event message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventMessage {
    /// MessageHeader.id, lower case: the key of duplicate detection.
    pub message_id: String,
    pub event_type: EventType,
    pub lifecycle: Lifecycle,
    /// The routing NHS number. Absent only for a birth notification whose
    /// mother is unknown to PDS.
    pub nhs_number: Option<NhsNumber>,
    /// The routed patient's date of birth (routing birthDateTime).
    pub birth_date: Option<Date>,
    pub timestamp: OffsetDateTime,
    pub last_updated: Option<OffsetDateTime>,
    pub version_id: Option<u64>,
    pub responsible_ods: Option<String>,
    pub focus_type: String,
    pub focus_identifiers: Vec<Identifier>,
    pub patient: Option<PatientFacts>,
    /// The child the event is about: the baby of a birth notification, else
    /// the routed patient.
    pub subject: Option<NhsNumber>,
    /// A Patient in the message carries a restricting confidentiality label.
    pub sensitive: bool,
    /// Defects the hub tolerates, reported back to the publisher.
    pub warnings: Vec<Warning>,
}

/// A defect that does not stop the message: it is accepted, and the
/// publisher's response says what was wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Warning {
    pub expression: String,
    pub problem: String,
}

impl EventMessage {
    /// Reads and checks a message in the given encoding.
    pub fn read(body: &str, encoding: Encoding) -> Result<Self, MessageError> {
        let bundle = encoding.read(body)?;
        Self::from_bundle(&bundle)
    }

    pub fn from_bundle(bundle: &Element) -> Result<Self, MessageError> {
        if bundle.name != "Bundle" {
            return Err(MessageError::NotABundle {
                found: bundle.name.to_string(),
            });
        }
        fhir::check_cardinality(bundle)?;
        match bundle.value_of("type") {
            Some("message") => {}
            Some(other) => {
                return Err(MessageError::bad_value(
                    "Bundle.type",
                    format!("must be 'message', not '{other}'"),
                ));
            }
            None => {
                return Err(MessageError::missing(
                    "Bundle.type",
                    "Bundle.type 'message'",
                ));
            }
        }
        let header = bundle
            .child("entry")
            .and_then(Element::resource)
            .filter(|resource| resource.name == "MessageHeader")
            .ok_or_else(|| {
                MessageError::missing(
                    "Bundle.entry[0].resource",
                    "a MessageHeader as the first entry",
                )
            })?;

        let message_id = read_message_id(header)?;
        let event_type = read_event_type(header)?;
        let mut warnings = Vec::new();
        let lifecycle = read_lifecycle(header, event_type, &mut warnings)?;
        let (nhs_number, birth_date) = read_routing_demographics(header, event_type)?;
        let timestamp = read_timestamp(header, &mut warnings)?;
        let meta = header.child("meta");
        let last_updated = meta
            .and_then(|meta| meta.value_of("lastUpdated"))
            .map(|value| {
                fhir_time::parse_instant(value).map_err(|error| {
                    MessageError::bad_time(format!("{HEADER}.meta.lastUpdated"), value, error)
                })
            })
            .transpose()?;
        let version_id = meta
            .and_then(|meta| meta.value_of("versionId"))
            .map(|value| {
                value.parse::<u64>().map_err(|_| {
                    MessageError::bad_value(
                        format!("{HEADER}.meta.versionId"),
                        format!("'{value}' is not a whole number"),
                    )
                })
            })
            .transpose()?;
        let responsible_ods = header
            .child("responsible")
            .and_then(|reference| organisation_code(bundle, reference));

        let focus_reference = header
            .child("focus")
            .and_then(|focus| focus.value_of("reference"))
            .ok_or_else(|| {
                MessageError::missing(format!("{HEADER}.focus.reference"), "the focus reference")
            })?;
        let focus = resolve(bundle, focus_reference).ok_or_else(|| {
            MessageError::bad_value(
                format!("{HEADER}.focus.reference"),
                format!("'{focus_reference}' does not resolve to an entry of the Bundle"),
            )
        })?;
        if focus.name != event_type.focus_resource() {
            return Err(MessageError::bad_value(
                format!("{HEADER}.focus.reference"),
                format!(
                    "the focus of a {} message must be a {}, not a {}",
                    event_type,
                    event_type.focus_resource(),
                    focus.name
                ),
            ));
        }
        let focus_identifiers = focus
            .children("identifier")
            .filter_map(|identifier| {
                Some(Identifier {
                    system: identifier.value_of("system")?.to_owned(),
                    value: identifier.value_of("value")?.to_owned(),
                })
            })
            .collect();

        let patients: Vec<&Element> = resources(bundle).filter(|r| r.name == "Patient").collect();
        let sensitive = patients.iter().any(|patient| is_sensitive(patient));
        let birth = event_type == EventType::PdsBirthNotification;
        // A birth without the mother's NHS number routes on the baby alone:
        // the mother's entry, if any, must not lend the baby her place.
        let routed_patient = routed_patient(bundle, nhs_number)
            .or_else(|| patients.first().copied())
            .filter(|_| !birth || nhs_number.is_some());
        let patient = routed_patient.map(|patient| patient_facts(bundle, patient));
        let subject = if birth {
            crate::message::rules::birth_notification_baby(bundle).and_then(patient_nhs_number)
        } else {
            nhs_number
        };

        let message = EventMessage {
            message_id,
            event_type,
            lifecycle,
            nhs_number,
            birth_date,
            timestamp,
            last_updated,
            version_id,
            responsible_ods,
            focus_type: focus.name.to_string(),
            focus_identifiers,
            patient,
            subject,
            sensitive,
            warnings,
        };
        let mut message = message;
        let tolerated = crate::message::rules::check(bundle, &message, focus)?;
        message.warnings.extend(tolerated);
        Ok(message)
    }
}

fn read_message_id(header: &Element) -> Result<String, MessageError> {
    let id = header
        .value_of("id")
        .ok_or_else(|| MessageError::missing(format!("{HEADER}.id"), "MessageHeader.id"))?;
    // The hyphenated form only: one message, one spelling of its key.
    if id.len() != 36 || uuid::Uuid::try_parse(id).is_err() {
        return Err(MessageError::bad_value(
            format!("{HEADER}.id"),
            format!("'{id}' is not a UUID"),
        ));
    }
    Ok(id.to_ascii_lowercase())
}

fn read_event_type(header: &Element) -> Result<EventType, MessageError> {
    let event = header
        .child("event")
        .ok_or_else(|| MessageError::missing(format!("{HEADER}.event"), "MessageHeader.event"))?;
    if let Some(system) = event.value_of("system")
        && system != EVENT_TYPE_SYSTEM
    {
        return Err(MessageError::bad_value(
            format!("{HEADER}.event.system"),
            format!("must be {EVENT_TYPE_SYSTEM}"),
        ));
    }
    let code = event
        .value_of("code")
        .ok_or_else(|| MessageError::missing(format!("{HEADER}.event.code"), "the event code"))?;
    code.parse().map_err(|_| {
        MessageError::bad_value(
            format!("{HEADER}.event.code"),
            format!("'{code}' is not an event type of the catalogue"),
        )
    })
}

fn read_lifecycle(
    header: &Element,
    event_type: EventType,
    warnings: &mut Vec<Warning>,
) -> Result<Lifecycle, MessageError> {
    let expression = format!("{HEADER}.extension('{MESSAGE_EVENT_TYPE_URL}')");
    let code = header
        .extension(MESSAGE_EVENT_TYPE_URL)
        .and_then(|extension| extension.child("valueCodeableConcept"))
        .and_then(|concept| concept.child("coding"))
        .and_then(|coding| coding.value_of("code"))
        .ok_or_else(|| {
            MessageError::missing(
                &expression,
                "the message event type (new, update or delete)",
            )
        })?;
    let lifecycle: Lifecycle = code.parse().map_err(|_| {
        MessageError::bad_value(
            &expression,
            format!("'{code}' is not new, update or delete"),
        )
    })?;
    if event_type.tolerated_lifecycles().contains(&lifecycle) {
        warnings.push(Warning {
            expression,
            problem: format!(
                "{event_type} publishers send updates as 'new'; accepted as '{lifecycle}'"
            ),
        });
        return Ok(lifecycle);
    }
    if !event_type.allowed_lifecycles().contains(&lifecycle) {
        let allowed: Vec<&str> = event_type
            .allowed_lifecycles()
            .iter()
            .map(|l| l.code())
            .collect();
        return Err(MessageError::bad_value(
            &expression,
            format!(
                "a {event_type} message may not be '{lifecycle}' (allowed: {})",
                allowed.join(", ")
            ),
        ));
    }
    Ok(lifecycle)
}

fn read_routing_demographics(
    header: &Element,
    event_type: EventType,
) -> Result<(Option<NhsNumber>, Option<Date>), MessageError> {
    let routing_path = format!("{HEADER}.extension('{ROUTING_DEMOGRAPHICS_URL}')");
    let Some(routing) = header.extension(ROUTING_DEMOGRAPHICS_URL) else {
        // NEMS pds_birth_notification_1: "If the birth was registered without
        // the mothers details this extension may not be included"; such a
        // birth reaches generic subscriptions of the baby's place only.
        if event_type == EventType::PdsBirthNotification {
            return Ok((None, None));
        }
        return Err(MessageError::missing(
            &routing_path,
            "the routing demographics extension",
        ));
    };

    let nhs_path = format!("{routing_path}.extension('nhsNumber').valueIdentifier.value");
    let nhs_number = match routing
        .extension("nhsNumber")
        .and_then(|extension| extension.child("valueIdentifier"))
    {
        Some(identifier) => {
            if let Some(system) = identifier.value_of("system")
                && system != NHS_NUMBER_SYSTEM
            {
                return Err(MessageError::bad_value(
                    format!("{routing_path}.extension('nhsNumber').valueIdentifier.system"),
                    format!("must be {NHS_NUMBER_SYSTEM}"),
                ));
            }
            let value = identifier
                .value_of("value")
                .ok_or_else(|| MessageError::missing(&nhs_path, "the routing NHS number"))?;
            Some(
                NhsNumber::parse(value)
                    .map_err(|error| MessageError::bad_nhs_number(&nhs_path, error)),
            )
            .transpose()?
        }
        // A birth notification for a mother unknown to PDS has no number.
        None if event_type == EventType::PdsBirthNotification => None,
        None => return Err(MessageError::missing(&nhs_path, "the routing NHS number")),
    };

    // A delete's routing demographics may carry the NHS number alone (the
    // NEMS screening delete examples do): name and birth date are checked
    // when present.
    let birth_path = format!("{routing_path}.extension('birthDateTime').valueDateTime");
    let birth_date = match routing
        .extension("birthDateTime")
        .and_then(|extension| extension.value_of("valueDateTime"))
    {
        Some(birth) => fhir_time::parse_date_time(birth)
            .map_err(|error| MessageError::bad_time(&birth_path, birth, error))?
            .date(),
        None => None,
    };
    Ok((nhs_number, birth_date))
}

fn read_timestamp(
    header: &Element,
    warnings: &mut Vec<Warning>,
) -> Result<OffsetDateTime, MessageError> {
    let expression = format!("{HEADER}.timestamp");
    let value = header
        .value_of("timestamp")
        .ok_or_else(|| MessageError::missing(&expression, "MessageHeader.timestamp"))?;
    let (timestamp, bad_offset) = fhir_time::parse_instant_allowing_bad_offset(value)
        .map_err(|error| MessageError::bad_time(&expression, value, error))?;
    if bad_offset {
        warnings.push(Warning {
            expression,
            problem: format!("'{value}' has a zone offset beyond ±14:00; the hub read it as UTC"),
        });
    }
    Ok(timestamp)
}

/// The resources of a Bundle's entries.
pub fn resources<'a>(bundle: &'a Element<'a>) -> impl Iterator<Item = &'a Element<'a>> {
    bundle.children("entry").filter_map(Element::resource)
}

/// The entry a reference points at: by fullUrl, or by `Type/id` for a
/// relative or absolute RESTful reference.
pub fn resolve<'a>(bundle: &'a Element<'a>, reference: &str) -> Option<&'a Element<'a>> {
    let by_full_url = bundle
        .children("entry")
        .find(|entry| entry.value_of("fullUrl") == Some(reference))
        .and_then(Element::resource);
    by_full_url.or_else(|| {
        let mut segments = reference.rsplit('/');
        let id = segments.next()?;
        let resource_type = segments.next()?;
        resources(bundle)
            .find(|resource| resource.name == resource_type && resource.value_of("id") == Some(id))
    })
}

/// The ODS code of the organisation a reference names: the referenced
/// Organization's ODS identifier, the reference's own identifier, or the code
/// at the end of a Spine directory URL.
pub(crate) fn organisation_code(bundle: &Element, reference: &Element) -> Option<String> {
    if let Some(target) = reference.value_of("reference") {
        if let Some(code) = target
            .strip_prefix(ODS_DIRECTORY_PREFIX)
            .filter(|code| !code.is_empty())
        {
            return Some(code.to_owned());
        }
        if let Some(code) = resolve(bundle, target).and_then(ods_identifier) {
            return Some(code);
        }
    }
    reference.child("identifier").and_then(|identifier| {
        (identifier.value_of("system") == Some(ODS_CODE_SYSTEM))
            .then(|| identifier.value_of("value").map(str::to_owned))
            .flatten()
    })
}

pub(crate) fn ods_identifier(organisation: &Element) -> Option<String> {
    organisation
        .children("identifier")
        .find(|identifier| identifier.value_of("system") == Some(ODS_CODE_SYSTEM))
        .and_then(|identifier| identifier.value_of("value"))
        .map(str::to_owned)
}

/// The Patient entry that carries the routing NHS number (a valid one).
pub(crate) fn routed_patient<'a>(
    bundle: &'a Element<'a>,
    nhs_number: Option<NhsNumber>,
) -> Option<&'a Element<'a>> {
    let nhs_number = nhs_number?;
    resources(bundle)
        .filter(|resource| resource.name == "Patient")
        .find(|patient| patient_nhs_number(patient) == Some(nhs_number))
}

pub(crate) fn patient_nhs_number(patient: &Element) -> Option<NhsNumber> {
    patient
        .children("identifier")
        .find(|identifier| identifier.value_of("system") == Some(NHS_NUMBER_SYSTEM))
        .and_then(|identifier| identifier.value_of("value"))
        .and_then(|value| NhsNumber::parse(value).ok())
}

fn is_sensitive(patient: &Element) -> bool {
    patient
        .child("meta")
        .into_iter()
        .flat_map(|meta| meta.children("security"))
        .filter_map(|coding| coding.value_of("code"))
        .any(|code| SENSITIVE_CODES.contains(&code))
}

/// The postcode of the Patient's home address: use `home`, else the first
/// address without a use (the one place that decides where a child lives).
pub(crate) fn home_postcode<'a>(patient: &'a Element<'a>) -> Option<&'a str> {
    let addresses = || patient.children("address");
    addresses()
        .find(|address| address.value_of("use") == Some("home"))
        .or_else(|| addresses().find(|address| address.value_of("use").is_none()))
        .and_then(|address| address.value_of("postalCode"))
}

fn patient_facts(bundle: &Element, patient: &Element) -> PatientFacts {
    let postcode_of = |wanted: &str| {
        patient
            .children("address")
            .find(|address| address.value_of("use") == Some(wanted))
            .and_then(|address| address.value_of("postalCode"))
            .map(str::to_owned)
    };
    PatientFacts {
        nhs_number: patient_nhs_number(patient),
        birth_date: patient
            .value_of("birthDate")
            .and_then(|value| fhir_time::parse_date(value).ok())
            .and_then(|value| value.date()),
        home_postcode: home_postcode(patient).map(str::to_owned),
        previous_postcode: postcode_of("old"),
        gp_ods: patient
            .children("generalPractitioner")
            .find_map(|reference| organisation_code(bundle, reference)),
        has_gp: patient.child("generalPractitioner").is_some(),
        sensitive: is_sensitive(patient),
    }
}
