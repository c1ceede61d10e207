//! What each event type's NEMS page makes mandatory, beyond the header rules
//! of [`crate::message`]. Every refusal names the element at fault. The rules
//! and the page each comes from are listed in docs/events.md.

use crate::catalogue::{EventType, Lifecycle};
use crate::fhir::Element;
use crate::message::{
    EventMessage, MessageError, NHS_NUMBER_SYSTEM, Warning, patient_nhs_number, resolve, resources,
    routed_patient,
};
use crate::nhs_number::NhsNumber;

pub const DEATH_NOTIFICATION_STATUS_URL: &str = "https://fhir.hl7.org.uk/STU3/StructureDefinition/Extension-CareConnect-DeathNotificationStatus-1";
const DEATH_NOTIFICATION_CODES: [&str; 3] = ["1", "2", "U"];

/// The FHIRPath of a resource of the Bundle: `Bundle.entry[i].resource.ofType(T)`.
pub fn resource_path(bundle: &Element, resource: &Element) -> String {
    bundle
        .children("entry")
        .position(|entry| entry.resource().is_some_and(|r| std::ptr::eq(r, resource)))
        .map(|index| format!("Bundle.entry[{index}].resource.ofType({})", resource.name))
        .unwrap_or_else(|| format!("Bundle.entry.resource.ofType({})", resource.name))
}

/// The baby of a birth notification: the Patient the mother's RelatedPerson
/// points to (mother Patient.link -> RelatedPerson.patient -> baby).
pub fn birth_notification_baby<'a>(bundle: &'a Element<'a>) -> Option<&'a Element<'a>> {
    resources(bundle)
        .filter(|resource| resource.name == "RelatedPerson")
        .filter_map(|related| related.child("patient")?.value_of("reference"))
        .filter_map(|reference| resolve(bundle, reference))
        .find(|resource| resource.name == "Patient")
}

fn require<'a>(
    resource: &'a Element<'a>,
    name: &str,
    path: &str,
    what: &str,
) -> Result<&'a Element<'a>, MessageError> {
    resource
        .child(name)
        .ok_or_else(|| MessageError::missing(format!("{path}.{name}"), what))
}

/// A primitive element with a value: an XML element that carries only
/// extensions (a data-absent reason, say) has none, as in JSON.
fn require_value<'a>(
    resource: &'a Element<'a>,
    name: &str,
    path: &str,
    what: &str,
) -> Result<&'a str, MessageError> {
    match resource.value_of(name) {
        None => Err(MessageError::missing(format!("{path}.{name}"), what)),
        Some("") => Err(MessageError::bad_value(
            format!("{path}.{name}"),
            "is empty",
        )),
        Some(value) => Ok(value),
    }
}

/// A primitive of type date or dateTime, with a value of that type.
fn require_date(
    resource: &Element<'_>,
    name: &str,
    path: &str,
    what: &str,
) -> Result<(), MessageError> {
    let value = require_value(resource, name, path, what)?;
    crate::fhir_time::parse_date_time(value)
        .map(|_| ())
        .map_err(|error| {
            MessageError::bad_value(format!("{path}.{name}"), format!("'{value}' {error}"))
        })
}

fn has_official_name(patient: &Element) -> bool {
    patient.children("name").any(|name| {
        name.value_of("use").is_none_or(|usage| usage == "official")
            && (name.value_of("family").is_some() || name.child("given").is_some())
    })
}

/// Checks the rules of the message's event type; returns the defects it
/// tolerates, for the publisher's response.
pub(crate) fn check(
    bundle: &Element,
    message: &EventMessage,
    focus: &Element,
) -> Result<Vec<Warning>, MessageError> {
    let mut warnings = Vec::new();
    check_date_time_offsets(bundle)?;
    let focus_path = resource_path(bundle, focus);
    let event_type = message.event_type;
    let lifecycle = message.lifecycle;

    // Updates and deletes are linked to what they change by the focus
    // resource's business identifier; screening, vaccination and contact
    // events carry it on every message.
    let identifier_always = matches!(
        event_type,
        EventType::BloodSpotTestOutcome
            | EventType::NewbornHearing
            | EventType::NipeOutcome
            | EventType::Vaccinations
            | EventType::ProfessionalContacts
    );
    if (identifier_always || lifecycle != Lifecycle::New) && message.focus_identifiers.is_empty() {
        return Err(MessageError::missing(
            format!("{focus_path}.identifier"),
            "the focus resource's business identifier (system and value)",
        ));
    }

    if event_type == EventType::PdsBirthNotification {
        check_baby(bundle)?;
    } else {
        check_routed_patient(bundle, message, &mut warnings)?;
    }
    check_one_patient(bundle, message)?;

    let checked = match event_type {
        EventType::Vaccinations => check_immunization(focus, &focus_path),
        EventType::PdsDeathNotification => check_death_notification(bundle, message),
        EventType::PdsChangeOfAddress => check_home_address(bundle, message),
        EventType::BloodSpotTestOutcome if lifecycle == Lifecycle::New => {
            check_procedure_outcomes(bundle)
        }
        EventType::ProfessionalContacts => {
            require_value(focus, "status", &focus_path, "the EpisodeOfCare status")?;
            require(
                focus,
                "managingOrganization",
                &focus_path,
                "the managing organisation",
            )?;
            Ok(())
        }
        _ => Ok(()),
    };
    checked.map(|()| warnings)
}

/// The Patient the message routes on: present (a delete may omit it), with
/// the routing NHS number, an official name and a birth date. A Patient
/// entry with a valid NHS number of someone else is another patient, and is
/// refused. A Patient entry without a valid NHS number (as in the NEMS death
/// notification examples) cannot be matched either way: the message is
/// routed on its routing demographics and the publisher is warned.
fn check_routed_patient(
    bundle: &Element,
    message: &EventMessage,
    warnings: &mut Vec<Warning>,
) -> Result<(), MessageError> {
    let patients: Vec<&Element> = resources(bundle).filter(|r| r.name == "Patient").collect();
    if patients.is_empty() {
        if message.lifecycle == Lifecycle::Delete {
            return Ok(());
        }
        return Err(MessageError::missing(
            "Bundle.entry.resource.ofType(Patient)",
            "a Patient entry for the routed patient",
        ));
    }
    let Some(patient) = routed_patient(bundle, message.nhs_number) else {
        if let Some(other) = patients
            .iter()
            .copied()
            .find(|patient| patient_nhs_number(patient).is_some())
        {
            return Err(MessageError::bad_value(
                format!("{}.identifier", resource_path(bundle, other)),
                "the Patient entry's NHS number is not the routing NHS number: it is another patient",
            ));
        }
        warnings.push(Warning {
            expression: format!("{}.identifier", resource_path(bundle, patients[0])),
            problem:
                "no Patient entry carries a valid NHS number: the event is routed on the routing \
                      demographics alone"
                    .into(),
        });
        return Ok(());
    };
    let path = resource_path(bundle, patient);
    if !has_official_name(patient) {
        return Err(MessageError::missing(
            format!("{path}.name"),
            "the patient's official name",
        ));
    }
    require_date(patient, "birthDate", &path, "the patient's birth date")?;
    Ok(())
}

/// A birth notification's baby: a valid NHS number and a birth date.
fn check_baby(bundle: &Element) -> Result<(), MessageError> {
    let baby = birth_notification_baby(bundle).ok_or_else(|| {
        MessageError::missing(
            "Bundle.entry.resource.ofType(RelatedPerson).patient",
            "the baby (RelatedPerson.patient referencing the baby's Patient entry)",
        )
    })?;
    let path = resource_path(bundle, baby);
    let number = baby
        .children("identifier")
        .find(|identifier| identifier.value_of("system") == Some(NHS_NUMBER_SYSTEM))
        .and_then(|identifier| identifier.value_of("value"))
        .ok_or_else(|| {
            MessageError::missing(format!("{path}.identifier"), "the baby's NHS number")
        })?;
    NhsNumber::parse(number)
        .map_err(|error| MessageError::bad_nhs_number(format!("{path}.identifier.value"), error))?;
    require_date(baby, "birthDate", &path, "the baby's birth date")?;
    Ok(())
}

fn check_immunization(immunization: &Element, path: &str) -> Result<(), MessageError> {
    require(immunization, "vaccineCode", path, "the vaccine code")?;
    require_date(immunization, "date", path, "the vaccination date")?;
    let not_given = require_value(immunization, "notGiven", path, "notGiven (true or false)")?;
    match not_given {
        "false" => Ok(()),
        "true" => {
            let reason = immunization
                .child("explanation")
                .and_then(|explanation| explanation.child("reasonNotGiven"));
            match reason {
                Some(_) => Ok(()),
                None => Err(MessageError::missing(
                    format!("{path}.explanation.reasonNotGiven"),
                    "a reason when the vaccination was not given",
                )),
            }
        }
        other => Err(MessageError::bad_value(
            format!("{path}.notGiven"),
            format!("'{other}' is not true or false"),
        )),
    }
}

/// The Patient a PDS event is about: the routed one, else (when none carries
/// a valid NHS number, which is tolerated) the first Patient entry.
fn subject_patient<'a>(
    bundle: &'a Element<'a>,
    message: &EventMessage,
    what: &str,
) -> Result<&'a Element<'a>, MessageError> {
    routed_patient(bundle, message.nhs_number)
        .or_else(|| resources(bundle).find(|r| r.name == "Patient"))
        .ok_or_else(|| MessageError::missing("Bundle.entry.resource.ofType(Patient)", what))
}

/// The code of a Patient's death notification status (1, 2 or U as sent).
pub(crate) fn death_notification_code<'a>(patient: &'a Element<'a>) -> Option<&'a str> {
    patient
        .extension(DEATH_NOTIFICATION_STATUS_URL)
        .and_then(|status| status.extension("deathNotificationStatus"))
        .and_then(|status| status.child("valueCodeableConcept"))
        .and_then(|concept| concept.child("coding"))
        .and_then(|coding| coding.value_of("code"))
}

/// The Patient whose death is notified: the routed one, else the only one.
fn check_death_notification(bundle: &Element, message: &EventMessage) -> Result<(), MessageError> {
    let patient = subject_patient(bundle, message, "the Patient whose death is notified")?;
    let path = resource_path(bundle, patient);
    let expression = format!(
        "{path}.extension('{DEATH_NOTIFICATION_STATUS_URL}').extension('deathNotificationStatus')"
    );
    let code = death_notification_code(patient)
        .ok_or_else(|| MessageError::missing(&expression, "the death notification status"))?;
    if !DEATH_NOTIFICATION_CODES.contains(&code) {
        return Err(MessageError::bad_value(
            expression,
            format!("'{code}' is not 1 (informal), 2 (formal) or U (removed)"),
        ));
    }
    Ok(())
}

fn check_home_address(bundle: &Element, message: &EventMessage) -> Result<(), MessageError> {
    let patient = subject_patient(bundle, message, "the Patient whose address changed")?;
    let has_home_postcode = patient.children("address").any(|address| {
        address.value_of("use") == Some("home") && address.value_of("postalCode").is_some()
    });
    if has_home_postcode {
        Ok(())
    } else {
        Err(MessageError::missing(
            format!("{}.address", resource_path(bundle, patient)),
            "the new home address (use 'home') with its postcode",
        ))
    }
}

fn check_procedure_outcomes(bundle: &Element) -> Result<(), MessageError> {
    let has_outcome = resources(bundle)
        .filter(|resource| resource.name == "Procedure")
        .any(|procedure| procedure.child("outcome").is_some());
    if has_outcome {
        Ok(())
    } else {
        Err(MessageError::missing(
            "Bundle.entry.resource.ofType(Procedure).outcome",
            "at least one Procedure with an outcome",
        ))
    }
}

/// Every dateTime or instant with a time carries a zone offset, wherever it
/// stands in the message.
fn check_date_time_offsets(bundle: &Element<'_>) -> Result<(), MessageError> {
    let offsetless = find_in_bundle(bundle, &|element| {
        element
            .value
            .as_deref()
            .filter(|value| looks_like_date_time(value) && !has_zone_offset(value))
            .map(str::to_owned)
    });
    match offsetless {
        None => Ok(()),
        Some((path, value)) => Err(MessageError::bad_value(
            path,
            format!("'{value}' has a time but no zone offset (Z or +hh:mm)"),
        )),
    }
}

/// A message is about one patient: no Patient entry and no valid NHS
/// number anywhere in the Bundle but the routed patient's (a birth
/// notification's: the mother's and the baby's). Another child riding
/// along would reach the first one's subscribers, past the second's
/// confidentiality label and audit trail. A number failing its check digit
/// identifies no one; the Patient rules deal with it.
fn check_one_patient(bundle: &Element, message: &EventMessage) -> Result<(), MessageError> {
    let birth = message.event_type == EventType::PdsBirthNotification;
    let patients = || resources(bundle).filter(|resource| resource.name == "Patient");
    let is = |a: &Element, b: Option<&Element>| b.is_some_and(|b| std::ptr::eq(a, b));
    let baby = if birth {
        birth_notification_baby(bundle)
    } else {
        None
    };
    // The routed patient (a birth notification's mother): the one with the
    // routing number, else the first that is not the baby.
    let routed = routed_patient(bundle, message.nhs_number)
        .or_else(|| patients().find(|patient| !is(patient, baby)));
    if let Some(extra) = patients().find(|patient| !is(patient, baby) && !is(patient, routed)) {
        return Err(MessageError::bad_value(
            resource_path(bundle, extra),
            if birth {
                "a birth notification carries the baby and the mother, and no other Patient"
            } else {
                "a second Patient entry: a message is about one patient"
            },
        ));
    }
    // A mother unknown to PDS has no routing number; her entry may still
    // carry her own.
    let routed = [
        message
            .nhs_number
            .or_else(|| routed.and_then(patient_nhs_number)),
        baby.and_then(patient_nhs_number),
    ];
    let other = find_in_bundle(bundle, &|element| {
        (element.value_of("system") == Some(NHS_NUMBER_SYSTEM))
            .then(|| NhsNumber::parse(element.value_of("value")?).ok())
            .flatten()
            .filter(|number| !routed.contains(&Some(*number)))
    });
    match other {
        None => Ok(()),
        Some((path, _)) => Err(MessageError::bad_value(
            format!("{path}.value"),
            "an NHS number that is not the routed patient's: a message is about one patient",
        )),
    }
}

/// The first element of the Bundle, depth first, for which `find` answers:
/// its FHIRPath and the answer. The path is built only for the element found.
fn find_in_bundle<T>(
    bundle: &Element<'_>,
    find: &impl Fn(&Element<'_>) -> Option<T>,
) -> Option<(String, T)> {
    let (mut segments, found) = find_within(bundle, find)?;
    segments.push(bundle.name.to_string());
    segments.reverse();
    Some((segments.join("."), found))
}

/// What `find` answers for the element or its first descendant: the path
/// segments, innermost first, and the answer.
fn find_within<T>(
    element: &Element<'_>,
    find: &impl Fn(&Element<'_>) -> Option<T>,
) -> Option<(Vec<String>, T)> {
    if let Some(found) = find(element) {
        return Some((Vec::new(), found));
    }
    let mut entries = 0;
    for child in &element.children {
        let entry_index = entries;
        if child.name == "entry" {
            entries += 1;
        }
        if let Some((mut segments, found)) = find_within(child, find) {
            segments.push(if element.name == "Bundle" && child.name == "entry" {
                format!("entry[{entry_index}]")
            } else if element.name == "resource" {
                format!("ofType({})", child.name)
            } else {
                child.name.to_string()
            });
            return Some((segments, found));
        }
    }
    None
}

fn looks_like_date_time(value: &str) -> bool {
    let bytes = value.as_bytes();
    bytes.len() >= 13
        && bytes[..4].iter().all(u8::is_ascii_digit)
        && bytes[4] == b'-'
        && bytes[7] == b'-'
        && bytes[10] == b'T'
        && bytes[11].is_ascii_digit()
}

fn has_zone_offset(value: &str) -> bool {
    if value.ends_with('Z') {
        return true;
    }
    let bytes = value.as_bytes();
    let offset = &bytes[bytes.len().saturating_sub(6)..];
    offset.len() == 6
        && matches!(offset[0], b'+' | b'-')
        && offset[3] == b':'
        && [1, 2, 4, 5].iter().all(|&i| offset[i].is_ascii_digit())
}
