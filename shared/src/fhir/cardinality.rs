//! FHIR STU3 cardinality: the table of elements that may occur once, and
//! the check against it.

use std::collections::HashSet;

use super::*;

/// An element given more often than FHIR STU3 allows, or in a form
/// (a JSON array) that says it may repeat when it may not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CardinalityError {
    /// The FHIRPath of the element at fault.
    pub expression: String,
    pub problem: String,
}

/// Checks that no element of a resource that FHIR STU3 allows at most once
/// (0..1 or 1..1) is given twice, or as a JSON array: where the hub reads the
/// first and a subscriber's FHIR library the last, the two would act on
/// different messages. The types the hub reads are listed in [`singletons`];
/// every element, of whatever type, has at most one `id` and its extensions
/// are checked; a Bundle's entries have distinct fullUrls and `Type/id`s.
pub fn check_cardinality(resource: &Element<'_>) -> Result<(), CardinalityError> {
    check_resource(resource).map_err(|(mut segments, problem)| {
        segments.push(resource.name.to_string());
        segments.reverse();
        CardinalityError {
            expression: segments.join("."),
            problem,
        }
    })
}

/// A failed check: the path's segments, innermost first, and the problem.
type Refusal = (Vec<String>, String);

/// The elements every resource has at most once (Resource, DomainResource).
const RESOURCE_SINGLETONS: [&str; 5] = ["id", "meta", "implicitRules", "language", "text"];

/// The elements of a type that FHIR STU3 allows at most once, beyond those
/// of every resource and every element (`id`). A choice `value[x]` counts
/// every `valueString`, `valueIdentifier`... as one element.
#[rustfmt::skip]
fn singletons(type_name: &str) -> &'static [&'static str] {
    match type_name {
        "Bundle" => &["identifier", "type", "total", "signature"],
        "Bundle.entry" => &["fullUrl", "resource", "search", "request", "response"],
        "MessageHeader" => &[
            "event", "receiver", "sender", "timestamp", "enterer", "author", "source",
            "responsible", "reason", "response",
        ],
        "MessageHeader.source" => &["name", "software", "version", "contact", "endpoint"],
        "MessageHeader.destination" => &["name", "target", "endpoint"],
        "MessageHeader.response" => &["identifier", "code", "details"],
        "Patient" => &[
            "active", "gender", "birthDate", "deceased[x]", "maritalStatus",
            "multipleBirth[x]", "animal", "managingOrganization",
        ],
        "Patient.link" => &["other", "type"],
        "RelatedPerson" => &["active", "patient", "relationship", "gender", "birthDate", "period"],
        "Immunization" => &[
            "status", "notGiven", "vaccineCode", "patient", "encounter", "date",
            "primarySource", "reportOrigin", "location", "manufacturer", "lotNumber",
            "expirationDate", "site", "route", "doseQuantity", "explanation",
        ],
        "Encounter" => &[
            "status", "class", "priority", "subject", "appointment", "period", "length",
            "hospitalization", "serviceProvider", "partOf",
        ],
        "EpisodeOfCare" => &["status", "patient", "managingOrganization", "period", "careManager"],
        "Communication" => &[
            "status", "notDone", "notDoneReason", "subject", "context", "sent", "received",
            "sender",
        ],
        "Communication.payload" => &["content[x]"],
        "Procedure" => &[
            "status", "notDone", "notDoneReason", "category", "code", "subject", "context",
            "performed[x]", "location", "outcome",
        ],
        "Organization" => &["active", "name", "partOf"],
        "Subscription" => &["status", "end", "reason", "criteria", "error", "channel"],
        "Subscription.channel" => &["type", "endpoint", "payload"],
        "Meta" => &["versionId", "lastUpdated"],
        "Identifier" => &["use", "type", "system", "value", "period", "assigner"],
        "Coding" => &["system", "version", "code", "display", "userSelected"],
        "CodeableConcept" => &["text"],
        "Reference" => &["reference", "identifier", "display"],
        "Extension" => &["url", "value[x]"],
        "HumanName" => &["use", "text", "family", "period"],
        "Address" => &[
            "use", "type", "text", "city", "district", "state", "postalCode", "country",
            "period",
        ],
        "ContactPoint" => &["system", "value", "use", "rank", "period"],
        "Period" => &["start", "end"],
        "Narrative" => &["status", "div"],
        _ => &[],
    }
}

/// The type of a child element, for the types of [`singletons`]; `Element`
/// (only `id` and extensions checked) for the rest.
fn child_type(parent: &str, child: &str) -> &'static str {
    match (parent, child) {
        (_, "extension" | "modifierExtension") => "Extension",
        (_, "meta") => "Meta",
        (_, "identifier") if parent != "MessageHeader.response" => "Identifier",
        (_, "coding") => "Coding",
        (_, "period") => "Period",
        (_, "address") => "Address",
        (_, "telecom") | ("Subscription" | "MessageHeader.source", "contact") => "ContactPoint",
        (_, "text") => "Narrative",
        ("Bundle", "entry") => "Bundle.entry",
        ("MessageHeader", "event") | ("Encounter", "class") => "Coding",
        ("MessageHeader", "source") => "MessageHeader.source",
        ("MessageHeader", "destination") => "MessageHeader.destination",
        ("MessageHeader", "response") => "MessageHeader.response",
        ("Patient" | "RelatedPerson", "name") => "HumanName",
        ("Patient", "link") => "Patient.link",
        ("Communication", "payload") => "Communication.payload",
        ("Subscription", "channel") => "Subscription.channel",
        (
            "MessageHeader",
            "receiver" | "sender" | "enterer" | "author" | "responsible" | "focus",
        )
        | ("MessageHeader.destination", "target")
        | ("Patient", "generalPractitioner" | "managingOrganization")
        | ("Patient.link", "other")
        | ("RelatedPerson", "patient")
        | ("Immunization", "patient" | "encounter" | "location" | "manufacturer")
        | ("Encounter", "subject" | "serviceProvider" | "partOf" | "episodeOfCare")
        | ("EpisodeOfCare", "patient" | "managingOrganization" | "careManager")
        | ("Communication", "subject" | "recipient" | "context" | "sender" | "topic")
        | ("Procedure", "subject" | "context" | "location")
        | ("Organization", "partOf")
        | ("Identifier", "assigner")
        | ("Extension", "valueReference") => "Reference",
        ("Immunization", "vaccineCode" | "site" | "route" | "reportOrigin")
        | ("Procedure", "outcome" | "code" | "category" | "notDoneReason")
        | ("Communication", "notDoneReason")
        | ("RelatedPerson", "relationship")
        | ("Patient", "maritalStatus")
        | ("Identifier", "type")
        | ("Extension", "valueCodeableConcept") => "CodeableConcept",
        ("Extension", "valueIdentifier") => "Identifier",
        ("Extension", "valueCoding") => "Coding",
        ("Extension", "valueHumanName") => "HumanName",
        _ => "Element",
    }
}

/// The child names a singleton counts: `value[x]` matches `valueString`.
fn is_occurrence(singleton: &str, name: &str) -> bool {
    match singleton.strip_suffix("[x]") {
        Some(prefix) => name
            .strip_prefix(prefix)
            .is_some_and(|rest| rest.starts_with(|c: char| c.is_ascii_uppercase())),
        None => name == singleton,
    }
}

fn check_singletons(element: &Element<'_>, names: &[&str]) -> Result<(), Refusal> {
    for &singleton in names {
        let mut occurrences = element
            .children
            .iter()
            .filter(|child| is_occurrence(singleton, &child.name));
        let Some(first) = occurrences.next() else {
            continue;
        };
        if let Some(second) = occurrences.next() {
            let problem = if second.name == first.name {
                "is given more than once; FHIR allows it once".to_owned()
            } else {
                format!(
                    "is given as both {} and {}; FHIR allows one",
                    first.name, second.name
                )
            };
            return Err((vec![second.name.to_string()], problem));
        }
        if first.json_array_item {
            return Err((
                vec![first.name.to_string()],
                "is a JSON array; FHIR allows one value, written without an array".to_owned(),
            ));
        }
    }
    Ok(())
}

fn check_resource(resource: &Element<'_>) -> Result<(), Refusal> {
    check_singletons(resource, &RESOURCE_SINGLETONS)?;
    check_element(resource, &resource.name)?;
    if resource.name == "Bundle" {
        check_entries_distinct(resource)?;
    }
    Ok(())
}

fn check_element(element: &Element<'_>, type_name: &str) -> Result<(), Refusal> {
    check_singletons(element, &["id"])?;
    check_singletons(element, singletons(type_name))?;
    let mut entries = 0;
    for child in &element.children {
        let segment = |child: &Element<'_>| {
            if type_name == "Bundle" && child.name == "entry" {
                format!("entry[{entries}]")
            } else {
                child.name.to_string()
            }
        };
        let checked = if is_resource_holder(type_name, &child.name) {
            check_holder(child)
        } else {
            check_element(child, child_type(type_name, &child.name))
        };
        checked.map_err(|(mut segments, problem)| {
            segments.push(segment(child));
            (segments, problem)
        })?;
        if child.name == "entry" {
            entries += 1;
        }
    }
    Ok(())
}

fn is_resource_holder(parent_type: &str, name: &str) -> bool {
    (parent_type == "Bundle.entry" && name == "resource") || name == "contained"
}

/// An entry's `resource` (or a `contained`): exactly one resource.
fn check_holder(holder: &Element<'_>) -> Result<(), Refusal> {
    match holder.children.as_slice() {
        [resource] => check_resource(resource).map_err(|(mut segments, problem)| {
            segments.push(format!("ofType({})", resource.name));
            (segments, problem)
        }),
        _ => Err((
            Vec::new(),
            format!("holds {} resources; FHIR allows one", holder.children.len()),
        )),
    }
}

/// References resolve by fullUrl or `Type/id`: two entries answering to the
/// same one would let the hub and a subscriber resolve it differently.
fn check_entries_distinct(bundle: &Element<'_>) -> Result<(), Refusal> {
    let mut full_urls = HashSet::new();
    let mut type_ids = HashSet::new();
    for (index, entry) in bundle.children("entry").enumerate() {
        if let Some(full_url) = entry.value_of("fullUrl")
            && !full_urls.insert(full_url)
        {
            return Err((
                vec!["fullUrl".to_owned(), format!("entry[{index}]")],
                format!("'{full_url}' is the fullUrl of an earlier entry"),
            ));
        }
        if let Some(resource) = entry.resource()
            && let Some(id) = resource.value_of("id")
            && !type_ids.insert((resource.name.as_ref(), id))
        {
            return Err((
                vec![
                    "id".to_owned(),
                    format!("ofType({})", resource.name),
                    "resource".to_owned(),
                    format!("entry[{index}]"),
                ],
                format!(
                    "'{}/{id}' is the type and id of an earlier entry",
                    resource.name
                ),
            ));
        }
    }
    Ok(())
}
