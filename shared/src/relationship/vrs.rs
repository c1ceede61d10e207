//! The reader of a VRS relationship event: MNS's hydrated signal, an R4
//! `Bundle` of type `history` holding [0] the `Parameters` of the
//! notification (`notification-event`, `additional-context` with
//! `event-type`, `source` and `subject`), [1] the `Consent` at its fullUrl
//! (the signal's focus), [2] the `RelatedPerson` with the relationship code
//! and, optionally, [3] the proxy's `Patient` with its identity proofing
//! level (docs/proposals/appropriate-access.md, section 4).
//!
//! Every element read must be there once: an element given twice, or as an
//! array where one value is meant, is refused, so that the hub and any other
//! reader of the same body cannot act on different values (the rule the
//! publish path applies with `fhir::check_cardinality`, whose table is
//! STU3's; these resources are R4).

use time::OffsetDateTime;

use super::{
    Relationship, RelationshipChange, RelationshipEventType, RelationshipStatus, end_moment,
    sortable_instant,
};
use crate::error::HubError;
use crate::events::sha256_hex;
use crate::fhir::{Element, read_json};
use crate::fhir_time::{parse_date_time, parse_instant};
use crate::nhs_number::NhsNumber;

/// The `source` of the Validated Relationships Service's events.
pub const VRS_SOURCE: &str = "uk.nhs.validated-relationships-service";

const NHS_NUMBER_SYSTEM: &str = "https://fhir.nhs.uk/Id/nhs-number";
const ROLE_CODE_SYSTEM: &str = "http://terminology.hl7.org/CodeSystem/v3-RoleCode";
const LEGAL_BASIS_SYSTEM: &str =
    "https://fhir.nhs.uk/England/CodeSystem/England-NHSProxyLegalBasis";
const PROOFING_LEVEL_SYSTEM: &str =
    "https://fhir.nhs.uk/England/CodeSystem/England-NHSIdentityProofingLevel";
/// The identity proofing levels of NHS login (P5, P9) and none proven (P0).
const PROOFING_LEVELS: [&str; 3] = ["P0", "P5", "P9"];

/// Reads and checks a relationship event published by `client_id`, at
/// `now`. Every refusal names the element at fault: 400 for a body that is
/// not a FHIR resource, 422 for one that breaks a rule.
pub fn read_vrs_signal(
    body: &str,
    client_id: &str,
    now: OffsetDateTime,
) -> Result<RelationshipChange, HubError> {
    let bundle =
        read_json(body).map_err(|error| HubError::bad_request("Bundle", error.to_string()))?;
    if bundle.name != "Bundle" {
        return Err(HubError::unprocessable(
            "Bundle",
            format!("the body is a {}, not a Bundle", bundle.name),
        ));
    }
    let bundle_id = fhir_id(value(&bundle, "id", "Bundle.id")?, "Bundle.id")?;
    if value(&bundle, "type", "Bundle.type")? != "history" {
        return Err(HubError::unprocessable(
            "Bundle.type",
            "a relationship event is a Bundle of type history (an MNS signal)",
        ));
    }
    let entries: Vec<&Element> = bundle.children("entry").collect();
    if !(3..=4).contains(&entries.len()) {
        return Err(HubError::unprocessable(
            "Bundle.entry",
            "a relationship event has 3 or 4 entries: Parameters, Consent, RelatedPerson and \
             optionally the person's Patient",
        ));
    }
    let parameters = entry_resource(entries[0], 0, "Parameters")?;
    let consent = entry_resource(entries[1], 1, "Consent")?;
    let related = entry_resource(entries[2], 2, "RelatedPerson")?;
    let patient = entries
        .get(3)
        .map(|entry| entry_resource(entry, 3, "Patient"))
        .transpose()?;

    let signal = read_parameters(parameters)?;
    let consent_url = value(entries[1], "fullUrl", "Bundle.entry[1].fullUrl")?;
    if signal.focus != consent_url {
        return Err(HubError::unprocessable(
            "Parameters.parameter.where(name='notification-event').part.where(name='focus')",
            "the signal's focus is not the Consent's fullUrl (entry 1)",
        ));
    }

    let consent_id = fhir_id(value(consent, "id", "Consent.id")?, "Consent.id")?;
    let child = nhs_identifier(
        one(consent, "patient", "Consent.patient")?,
        "Consent.patient",
    )?;
    if child != signal.subject {
        return Err(HubError::unprocessable(
            "Consent.patient",
            "the Consent's patient is not the signal's subject",
        ));
    }
    let mut performers = consent.children("performer");
    let (Some(performer), None) = (performers.next(), performers.next()) else {
        return Err(HubError::unprocessable(
            "Consent.performer",
            "a relationship Consent names exactly one performer: the person related to the child",
        ));
    };
    let person = nhs_identifier(performer, "Consent.performer[0]")?;
    if person == child {
        return Err(HubError::unprocessable(
            "Consent.performer[0]",
            "the person related to the child is the child",
        ));
    }
    let meta = one(consent, "meta", "Consent.meta")?;
    let last_updated = value(meta, "lastUpdated", "Consent.meta.lastUpdated")?;
    let last_updated = parse_instant(last_updated).map_err(|error| {
        HubError::unprocessable(
            "Consent.meta.lastUpdated",
            format!("'{last_updated}' {error}"),
        )
    })?;
    let consent_status = value(consent, "status", "Consent.status")?;
    let legal_basis = optional(consent, "policyRule", "Consent.policyRule")?
        .map(|rule| coded(rule, LEGAL_BASIS_SYSTEM, "Consent.policyRule"))
        .transpose()?;
    let period = optional(consent, "provision", "Consent.provision")?
        .map(|provision| optional(provision, "period", "Consent.provision.period"))
        .transpose()?
        .flatten();
    let start = period
        .map(|period| period_date(period, "start", "Consent.provision.period.start"))
        .transpose()?
        .flatten();
    let end = period
        .map(|period| period_date(period, "end", "Consent.provision.period.end"))
        .transpose()?
        .flatten();

    let relationship_type = read_related_person(related, child, person)?;
    let verification_level = match patient {
        Some(patient) => proofing_level(patient, person)?,
        None => "none".to_owned(),
    };

    let ended = end
        .as_deref()
        .and_then(end_moment)
        .is_some_and(|end| end <= now);
    let inactive =
        signal.event_type == RelationshipEventType::Deleted || consent_status != "active" || ended;
    // An inactive relationship ends: when its source said, else when the
    // source last changed it.
    let end = match end {
        None if inactive => Some(crate::fhir_time::format_instant(last_updated)),
        end => end,
    };
    let relationship = Relationship {
        child_nhs: child,
        person_nhs: person,
        relationship_type,
        legal_basis,
        source: format!("vrs:{client_id}"),
        source_ref: consent_id.to_owned(),
        verification_level,
        start,
        end,
        status: if inactive {
            RelationshipStatus::Inactive
        } else {
            RelationshipStatus::Active
        },
        source_last_updated: sortable_instant(last_updated),
        by_event: format!("{}/{bundle_id}", signal.event_type.code()),
        changed_at: crate::audit::timestamp(now),
    };
    Ok(RelationshipChange {
        relationship,
        event_type: signal.event_type,
        event_source: signal.source,
        bundle_id: bundle_id.to_owned(),
        body_sha256: sha256_hex(body),
    })
}

/// What the signal's Parameters say.
struct Signal {
    event_type: RelationshipEventType,
    source: String,
    subject: NhsNumber,
    focus: String,
}

fn read_parameters(parameters: &Element) -> Result<Signal, HubError> {
    let context = parameter(parameters, "additional-context")?;
    let event_type = part_value(context, "additional-context", "event-type", "valueString")?;
    let event_type = RelationshipEventType::parse(event_type).ok_or_else(|| {
        HubError::unprocessable(
            part_path("additional-context", "event-type"),
            format!(
                "'{event_type}' is not a relationship event type: {}",
                RelationshipEventType::ALL
                    .map(RelationshipEventType::code)
                    .join(", ")
            ),
        )
    })?;
    let source = part_value(context, "additional-context", "source", "valueUri")?;
    if source.is_empty() || source.len() > 128 {
        return Err(HubError::unprocessable(
            part_path("additional-context", "source"),
            "the source is 1 to 128 characters",
        ));
    }
    let subject_path = part_path("additional-context", "subject");
    let subject = part(context, "additional-context", "subject")?;
    let subject = nhs_identifier(
        one(subject, "valueReference", &subject_path)?,
        &subject_path,
    )?;
    let event = parameter(parameters, "notification-event")?;
    let focus_path = part_path("notification-event", "focus");
    let focus = part(event, "notification-event", "focus")?;
    let focus = value(
        one(focus, "valueReference", &focus_path)?,
        "reference",
        &focus_path,
    )?;
    Ok(Signal {
        event_type,
        source: source.to_owned(),
        subject,
        focus: focus.to_owned(),
    })
}

fn parameter_path(name: &str) -> String {
    format!("Parameters.parameter.where(name='{name}')")
}

fn part_path(parameter: &str, part: &str) -> String {
    format!("{}.part.where(name='{part}')", parameter_path(parameter))
}

/// The one element among `elements` whose `name` is `name`.
fn named<'e, 'a>(
    mut elements: impl Iterator<Item = &'e Element<'a>>,
    name: &str,
    path: &str,
) -> Result<&'e Element<'a>, HubError> {
    let mut found = elements
        .by_ref()
        .filter(|element| element.value_of("name") == Some(name));
    match (found.next(), found.next()) {
        (Some(element), None) => Ok(element),
        (None, _) => Err(HubError::unprocessable(path, "is missing")),
        (Some(_), Some(_)) => Err(HubError::unprocessable(
            path,
            "is given more than once; the hub reads one",
        )),
    }
}

fn parameter<'e, 'a>(parameters: &'e Element<'a>, name: &str) -> Result<&'e Element<'a>, HubError> {
    named(
        parameters.children("parameter"),
        name,
        &parameter_path(name),
    )
}

fn part<'e, 'a>(
    parameter: &'e Element<'a>,
    parameter_name: &str,
    name: &str,
) -> Result<&'e Element<'a>, HubError> {
    named(
        parameter.children("part"),
        name,
        &part_path(parameter_name, name),
    )
}

fn part_value<'e>(
    parameter: &'e Element<'_>,
    parameter_name: &str,
    name: &str,
    value_name: &str,
) -> Result<&'e str, HubError> {
    let path = part_path(parameter_name, name);
    value(part(parameter, parameter_name, name)?, value_name, &path)
}

/// The resource of entry `index`, which must be a `expected`.
fn entry_resource<'e, 'a>(
    entry: &'e Element<'a>,
    index: usize,
    expected: &str,
) -> Result<&'e Element<'a>, HubError> {
    let path = format!("Bundle.entry[{index}].resource");
    let holder = one(entry, "resource", &path)?;
    match holder.children.as_slice() {
        [resource] if resource.name == expected => Ok(resource),
        _ => Err(HubError::unprocessable(
            path,
            format!("entry {index} of a relationship event holds one {expected}"),
        )),
    }
}

/// The child `name` of `parent`, given at most once and not as an array.
fn optional<'e, 'a>(
    parent: &'e Element<'a>,
    name: &str,
    path: &str,
) -> Result<Option<&'e Element<'a>>, HubError> {
    let mut found = parent.children.iter().filter(|child| child.name == name);
    match (found.next(), found.next()) {
        (None, _) => Ok(None),
        (Some(_), Some(_)) => Err(HubError::unprocessable(
            path,
            "is given more than once; FHIR allows it once",
        )),
        (Some(element), None) if element.json_array_item => Err(HubError::unprocessable(
            path,
            "is a JSON array; FHIR allows one value, written without an array",
        )),
        (Some(element), None) => Ok(Some(element)),
    }
}

/// The child `name` of `parent`, given exactly once.
fn one<'e, 'a>(
    parent: &'e Element<'a>,
    name: &str,
    path: &str,
) -> Result<&'e Element<'a>, HubError> {
    optional(parent, name, path)?.ok_or_else(|| HubError::unprocessable(path, "is missing"))
}

/// The primitive value of the child `name`, given once and not empty.
fn value<'e>(parent: &'e Element<'_>, name: &str, path: &str) -> Result<&'e str, HubError> {
    one(parent, name, path)?
        .value
        .as_deref()
        .filter(|text| !text.trim().is_empty())
        .ok_or_else(|| HubError::unprocessable(path, "has no value"))
}

/// A FHIR id: 1 to 64 letters, digits, '-' and '.'.
fn fhir_id<'t>(id: &'t str, path: &str) -> Result<&'t str, HubError> {
    let valid = id.len() <= 64
        && id
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || byte == b'-' || byte == b'.');
    if valid {
        Ok(id)
    } else {
        Err(HubError::unprocessable(
            path,
            "is not a FHIR id (1 to 64 letters, digits, '-' and '.')",
        ))
    }
}

/// The NHS number of a Reference's (or resource's) `identifier`.
fn nhs_identifier(holder: &Element, path: &str) -> Result<NhsNumber, HubError> {
    let path = format!("{path}.identifier");
    let identifier = one(holder, "identifier", &path)?;
    if value(identifier, "system", &format!("{path}.system"))? != NHS_NUMBER_SYSTEM {
        return Err(HubError::unprocessable(
            format!("{path}.system"),
            format!("the identifier is an NHS number ({NHS_NUMBER_SYSTEM})"),
        ));
    }
    let value_path = format!("{path}.value");
    let number = value(identifier, "value", &value_path)?;
    NhsNumber::parse(number).map_err(|error| HubError::unprocessable(value_path, error.to_string()))
}

/// The NHS number among a resource's identifiers (which may repeat):
/// none, or exactly one.
fn resource_nhs_number(resource: &Element, path: &str) -> Result<Option<NhsNumber>, HubError> {
    let mut numbers = Vec::new();
    for identifier in resource.children("identifier") {
        if optional(identifier, "system", &format!("{path}.system"))?
            .and_then(|element| element.value.as_deref())
            == Some(NHS_NUMBER_SYSTEM)
        {
            let value_path = format!("{path}.value");
            let number = value(identifier, "value", &value_path)?;
            numbers.push(
                NhsNumber::parse(number)
                    .map_err(|error| HubError::unprocessable(&value_path, error.to_string()))?,
            );
        }
    }
    match numbers.as_slice() {
        [] => Ok(None),
        [number] => Ok(Some(*number)),
        _ => Err(HubError::unprocessable(
            path,
            "holds more than one NHS number; the hub reads one",
        )),
    }
}

/// The code of the one coding of `system` in a CodeableConcept.
fn coded(concept: &Element, system: &str, path: &str) -> Result<String, HubError> {
    let codes = codes_of(std::iter::once(concept), system, path)?;
    single_code(codes, system, path)
}

/// Every code of `system` among the codings of these CodeableConcepts.
fn codes_of<'e, 'a: 'e>(
    concepts: impl Iterator<Item = &'e Element<'a>>,
    system: &str,
    path: &str,
) -> Result<Vec<String>, HubError> {
    let mut codes = Vec::new();
    for concept in concepts {
        for coding in concept.children("coding") {
            if optional(coding, "system", &format!("{path}.coding.system"))?
                .and_then(|element| element.value.as_deref())
                == Some(system)
            {
                codes.push(value(coding, "code", &format!("{path}.coding.code"))?.to_owned());
            }
        }
    }
    Ok(codes)
}

/// The one code found: none, or two that differ, leave the meaning unclear.
fn single_code(mut codes: Vec<String>, system: &str, path: &str) -> Result<String, HubError> {
    codes.sort();
    codes.dedup();
    match codes.as_slice() {
        [code] if code.len() <= 64 => Ok(code.clone()),
        [] => Err(HubError::unprocessable(
            path,
            format!("has no coding of {system}"),
        )),
        _ => Err(HubError::unprocessable(
            path,
            format!("has more than one code of {system}; the hub reads one"),
        )),
    }
}

/// A Period's `start` or `end`: a FHIR date or dateTime precise to the day.
fn period_date(period: &Element, name: &str, path: &str) -> Result<Option<String>, HubError> {
    let Some(element) = optional(period, name, path)? else {
        return Ok(None);
    };
    let text = element
        .value
        .as_deref()
        .ok_or_else(|| HubError::unprocessable(path, "has no value"))?;
    let precise = parse_date_time(text)
        .map_err(|error| HubError::unprocessable(path, format!("'{text}' {error}")))?;
    if precise.date().is_none() {
        return Err(HubError::unprocessable(
            path,
            "is a date precise to the day, or a dateTime",
        ));
    }
    Ok(Some(text.to_owned()))
}

/// The RelatedPerson's relationship code (v3-RoleCode), checking that it
/// speaks of the same child and person as the Consent.
fn read_related_person(
    related: &Element,
    child: NhsNumber,
    person: NhsNumber,
) -> Result<String, HubError> {
    if resource_nhs_number(related, "RelatedPerson.identifier")?
        .is_some_and(|named| named != person)
    {
        return Err(HubError::unprocessable(
            "RelatedPerson.identifier",
            "the RelatedPerson is not the Consent's performer",
        ));
    }
    if let Some(patient) = optional(related, "patient", "RelatedPerson.patient")?
        && nhs_identifier(patient, "RelatedPerson.patient")? != child
    {
        return Err(HubError::unprocessable(
            "RelatedPerson.patient",
            "the RelatedPerson's patient is not the Consent's patient",
        ));
    }
    let codes = codes_of(
        related.children("relationship"),
        ROLE_CODE_SYSTEM,
        "RelatedPerson.relationship",
    )?;
    single_code(codes, ROLE_CODE_SYSTEM, "RelatedPerson.relationship")
}

/// The person's identity proofing level, from their Patient's
/// `meta.security`; `none` when it states none.
fn proofing_level(patient: &Element, person: NhsNumber) -> Result<String, HubError> {
    if resource_nhs_number(patient, "Patient.identifier")? != Some(person) {
        return Err(HubError::unprocessable(
            "Patient.identifier",
            "the Patient is not the Consent's performer",
        ));
    }
    let Some(meta) = optional(patient, "meta", "Patient.meta")? else {
        return Ok("none".to_owned());
    };
    let mut levels = Vec::new();
    for security in meta.children("security") {
        if optional(security, "system", "Patient.meta.security.system")?
            .and_then(|element| element.value.as_deref())
            == Some(PROOFING_LEVEL_SYSTEM)
        {
            levels.push(value(security, "code", "Patient.meta.security.code")?.to_owned());
        }
    }
    if levels.is_empty() {
        return Ok("none".to_owned());
    }
    let level = single_code(levels, PROOFING_LEVEL_SYSTEM, "Patient.meta.security")?;
    if PROOFING_LEVELS.contains(&level.as_str()) {
        Ok(level)
    } else {
        Err(HubError::unprocessable(
            "Patient.meta.security.code",
            format!("'{level}' is not an identity proofing level (P0, P5, P9)"),
        ))
    }
}
