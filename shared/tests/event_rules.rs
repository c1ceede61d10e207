//! The rules of each event type (hub::message::rules) and the header rules of
//! hub::message that tests/pipeline.rs does not exercise. Each rule is broken
//! by one minimal mutation of a real example message, in XML and in JSON, and
//! the refusal must name the element at fault with the kind of problem; the
//! unmutated example is accepted in both encodings.

use std::path::PathBuf;

use hub::message::{EventMessage, MessageError, ProblemKind};
use hub::{Encoding, EventType, Lifecycle, NhsNumber};
use serde_json::{Map, Value, json};

const HEADER: &str = "Bundle.entry[0].resource.ofType(MessageHeader)";
const ROUTING_URL: &str =
    "https://fhir.nhs.uk/STU3/StructureDefinition/Extension-RoutingDemographics-1";
const LIFECYCLE_URL: &str =
    "https://fhir.nhs.uk/STU3/StructureDefinition/Extension-MessageEventType-1";
const DEATH_STATUS_URL: &str = "https://fhir.hl7.org.uk/STU3/StructureDefinition/Extension-CareConnect-DeathNotificationStatus-1";

/// The focus of the vaccination examples, and their Patient.
const IMMUNIZATION: &str = "Bundle.entry[1].resource.ofType(Immunization)";
const VACCINATION_PATIENT: &str = "Bundle.entry[3].resource.ofType(Patient)";
/// The focus of the professional contacts examples, and their Patient.
const EPISODE: &str = "Bundle.entry[3].resource.ofType(EpisodeOfCare)";
const CONTACTS_PATIENT: &str = "Bundle.entry[2].resource.ofType(Patient)";
/// The Patient of the PDS death notification and change of address examples.
const DEATH_PATIENT: &str = "Bundle.entry[2].resource.ofType(Patient)";
const ADDRESS_PATIENT: &str = "Bundle.entry[3].resource.ofType(Patient)";
/// The birth notification's baby (RelatedPerson.patient) and mother.
const BABY: &str = "Bundle.entry[4].resource.ofType(Patient)";
const BIRTH_NOTIFICATION: &str = "BirthNotificationWithMother-valid-mother";

/// XML anchors: text that occurs once, inside the resource it names.
const BABY_ID: &str = "<id value=\"dffd3330-dc21-11e7-9296-cec278b6b50a\"/>";
const RELATED_PERSON: &str = "<RelatedPerson>";

const PATIENT_NHS_NUMBER: &str = "9912003888";
/// A valid NHS number of someone else.
const OTHER_NHS_NUMBER: &str = "9449305552";

// ---------------------------------------------------------------------------
// Examples and their mutations
// ---------------------------------------------------------------------------

fn events_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../events")
}

/// One example message in both encodings, as mutated so far.
#[derive(Clone)]
struct Example {
    name: String,
    xml: String,
    json: String,
    xml_mutated: bool,
    json_mutated: bool,
}

impl Example {
    fn load(xml_dir: &str, json_dir: &str, name: &str) -> Self {
        let read = |path: String| {
            std::fs::read_to_string(events_dir().join(&path))
                .unwrap_or_else(|error| panic!("events/{path}: {error}"))
        };
        Example {
            name: name.to_owned(),
            xml: read(format!("{xml_dir}/{name}.xml")),
            json: read(format!("{json_dir}/{name}.json")),
            xml_mutated: false,
            json_mutated: false,
        }
    }

    /// An example of the NEMS specification (events/nems, events/nems-json).
    fn nems(name: &str) -> Self {
        Self::load("nems", "nems-json", name)
    }

    /// A derived example (events/derived).
    fn derived(name: &str) -> Self {
        Self::load("derived", "derived", name)
    }

    /// The XML form, edited as text.
    fn xml(mut self, edit: impl FnOnce(&str) -> String) -> Self {
        let edited = edit(&self.xml);
        assert_ne!(
            edited, self.xml,
            "{}: the XML edit changed nothing",
            self.name
        );
        self.xml = edited;
        self.xml_mutated = true;
        self
    }

    /// The JSON form, edited as a tree and written back.
    fn json(mut self, edit: impl FnOnce(&mut Value)) -> Self {
        let mut tree: Value = serde_json::from_str(&self.json).expect("the JSON example parses");
        let before = tree.clone();
        edit(&mut tree);
        assert_ne!(tree, before, "{}: the JSON edit changed nothing", self.name);
        self.json = serde_json::to_string_pretty(&tree).unwrap();
        self.json_mutated = true;
        self
    }

    fn read(&self, encoding: Encoding) -> Result<EventMessage, MessageError> {
        let body = match encoding {
            Encoding::Xml => &self.xml,
            Encoding::Json => &self.json,
        };
        EventMessage::read(body, encoding)
    }
}

/// The example is accepted in both encodings, and read alike.
#[track_caller]
fn assert_accepted(example: &Example) -> EventMessage {
    let [from_xml, from_json] = [Encoding::Xml, Encoding::Json].map(|encoding| {
        example.read(encoding).unwrap_or_else(|error| {
            panic!("{} as {encoding:?} must be accepted: {error}", example.name)
        })
    });
    assert_eq!(
        from_xml, from_json,
        "{}: XML and JSON are read differently",
        example.name
    );
    from_xml
}

/// The mutated example is refused in both encodings as invalid at
/// `expression`, with the same refusal in each.
#[track_caller]
fn assert_refused(example: &Example, expression: &str, kind: ProblemKind) {
    assert!(
        example.xml_mutated && example.json_mutated,
        "{}: mutate both encodings",
        example.name
    );
    let [from_xml, from_json] =
        [Encoding::Xml, Encoding::Json].map(|encoding| match example.read(encoding) {
            Err(MessageError::Invalid {
                expression: found,
                problem,
                kind: found_kind,
            }) => {
                assert_eq!(
                    (found.as_str(), found_kind),
                    (expression, kind),
                    "{} as {encoding:?}: {problem}",
                    example.name
                );
                assert!(!problem.is_empty());
                problem
            }
            other => panic!(
                "{} as {encoding:?}: expected a refusal at {expression}, got {other:?}",
                example.name
            ),
        });
    assert_eq!(
        from_xml, from_json,
        "{}: the encodings are refused for different reasons",
        example.name
    );
}

// XML edits. The target is located through an anchor that occurs once in the
// document; the edit stays inside the Bundle entry resource holding it.

/// The byte range of the resource holding `anchor`.
fn resource_range(xml: &str, anchor: &str) -> std::ops::Range<usize> {
    assert_eq!(
        xml.matches(anchor).count(),
        1,
        "the anchor {anchor:?} must occur exactly once"
    );
    let at = xml.find(anchor).unwrap();
    let start = xml[..at]
        .rfind("<resource>")
        .unwrap_or_else(|| panic!("{anchor:?} is not inside a resource"));
    let end = at + xml[at..].find("</resource>").unwrap();
    start..end
}

/// Positions in `text` where an element starts with `head` (`<tag`, or a
/// whole start tag ending in `>`).
fn element_starts(text: &str, head: &str) -> Vec<usize> {
    text.match_indices(head)
        .map(|(index, _)| index)
        .filter(|&index| {
            head.ends_with('>')
                || matches!(
                    text.as_bytes().get(index + head.len()),
                    Some(b' ' | b'>' | b'/' | b'\t' | b'\r' | b'\n')
                )
        })
        .collect()
}

/// Where the element starting at `start` ends (after its end tag), nested
/// elements of the same name included.
fn element_end(text: &str, start: usize) -> usize {
    let tag: String = text[start + 1..]
        .chars()
        .take_while(|c| !matches!(c, ' ' | '>' | '/' | '\t' | '\r' | '\n'))
        .collect();
    let open = format!("<{tag}");
    let close = format!("</{tag}>");
    let mut depth = 0usize;
    let mut at = start;
    loop {
        let next_open = element_starts(&text[at..], &open)
            .first()
            .map(|index| at + index);
        let next_close = text[at..].find(&close).map(|index| at + index);
        match (next_open, next_close) {
            (Some(open_at), close_at) if close_at.is_none_or(|close_at| open_at < close_at) => {
                let head_end = open_at + text[open_at..].find('>').unwrap();
                at = head_end + 1;
                if text.as_bytes()[head_end - 1] != b'/' {
                    depth += 1;
                } else if depth == 0 {
                    return at;
                }
            }
            (_, Some(close_at)) => {
                depth -= 1;
                at = close_at + close.len();
                if depth == 0 {
                    return at;
                }
            }
            _ => panic!("<{tag}> at {start} is not closed"),
        }
    }
}

/// Replaces `from`, which occurs once in the resource holding `anchor`.
fn xml_replace(xml: &str, anchor: &str, from: &str, to: &str) -> String {
    let range = resource_range(xml, anchor);
    let scope = &xml[range.clone()];
    assert_eq!(
        scope.matches(from).count(),
        1,
        "{from:?} must occur once in the resource holding {anchor:?}"
    );
    let at = range.start + scope.find(from).unwrap();
    format!("{}{to}{}", &xml[..at], &xml[at + from.len()..])
}

/// Removes the one element starting with `head` in the resource holding `anchor`.
fn xml_remove(xml: &str, anchor: &str, head: &str) -> String {
    let range = resource_range(xml, anchor);
    let starts = element_starts(&xml[range.clone()], head);
    assert_eq!(
        starts.len(),
        1,
        "{head:?} must start one element of the resource holding {anchor:?}"
    );
    let start = range.start + starts[0];
    let end = element_end(xml, start);
    format!("{}{}", &xml[..start], &xml[end..])
}

/// Removes every element starting with `head` in the document but the first `keep`.
fn xml_remove_all(xml: &str, head: &str, keep: usize) -> String {
    let mut text = xml.to_owned();
    let mut removed = 0;
    while let Some(&start) = element_starts(&text, head).get(keep) {
        let end = element_end(&text, start);
        text.replace_range(start..end, "");
        removed += 1;
    }
    assert!(removed > 0, "no {head:?} to remove");
    text
}

/// Removes the Bundle entry holding `anchor`.
fn xml_remove_entry(xml: &str, anchor: &str) -> String {
    let range = resource_range(xml, anchor);
    let start = xml[..range.start].rfind("<entry>").unwrap();
    let end = range.end + xml[range.end..].find("</entry>").unwrap() + "</entry>".len();
    format!("{}{}", &xml[..start], &xml[end..])
}

// JSON edits.

/// The resource of Bundle.entry[index].
fn resource(bundle: &mut Value, index: usize) -> &mut Map<String, Value> {
    bundle["entry"][index]["resource"]
        .as_object_mut()
        .unwrap_or_else(|| panic!("Bundle.entry[{index}] has no resource"))
}

/// Removes a member that must be present.
fn take(object: &mut Map<String, Value>, key: &str) -> Value {
    object
        .remove(key)
        .unwrap_or_else(|| panic!("no {key:?} to remove"))
}

/// Replaces a member that must be present.
fn replace(object: &mut Map<String, Value>, key: &str, value: Value) {
    let old = object.insert(key.to_owned(), value.clone());
    assert!(
        old.is_some_and(|old| old != value),
        "{key:?} must be present and change"
    );
}

/// The extension with this url among the object's extensions.
fn extension<'a>(object: &'a mut Map<String, Value>, url: &str) -> &'a mut Map<String, Value> {
    object
        .get_mut("extension")
        .and_then(Value::as_array_mut)
        .into_iter()
        .flatten()
        .find(|extension| extension["url"] == url)
        .and_then(Value::as_object_mut)
        .unwrap_or_else(|| panic!("no extension {url}"))
}

/// The first element of an array member.
fn first<'a>(object: &'a mut Map<String, Value>, key: &str) -> &'a mut Map<String, Value> {
    object
        .get_mut(key)
        .and_then(|array| array.get_mut(0))
        .and_then(Value::as_object_mut)
        .unwrap_or_else(|| panic!("no {key}[0]"))
}

/// Removes Bundle.entry[index] and returns it.
fn remove_entry(bundle: &mut Value, index: usize) -> Value {
    bundle["entry"].as_array_mut().unwrap().remove(index)
}

fn header(bundle: &mut Value) -> &mut Map<String, Value> {
    resource(bundle, 0)
}

/// The routing NHS number's valueIdentifier of the header.
fn routing_identifier(bundle: &mut Value) -> &mut Map<String, Value> {
    let routing = extension(header(bundle), ROUTING_URL);
    extension(routing, "nhsNumber")
        .get_mut("valueIdentifier")
        .and_then(Value::as_object_mut)
        .unwrap()
}

fn nhs(number: &str) -> NhsNumber {
    NhsNumber::parse(number).unwrap()
}

// ---------------------------------------------------------------------------
// The examples as published
// ---------------------------------------------------------------------------

#[test]
fn the_examples_mutated_here_are_accepted_in_both_encodings() {
    for (example, event_type, lifecycle) in [
        (
            Example::nems("vaccinations-1-new"),
            EventType::Vaccinations,
            Lifecycle::New,
        ),
        (
            Example::nems("vaccinations-1-update"),
            EventType::Vaccinations,
            Lifecycle::Update,
        ),
        (
            Example::nems("vaccinations-1-delete"),
            EventType::Vaccinations,
            Lifecycle::Delete,
        ),
        (
            Example::nems("Professional-Contacts-1-new"),
            EventType::ProfessionalContacts,
            Lifecycle::New,
        ),
        (
            Example::nems("Professional-Contacts-1-delete"),
            EventType::ProfessionalContacts,
            Lifecycle::Delete,
        ),
        (
            Example::nems("blood-spot-test-outcome-1-new"),
            EventType::BloodSpotTestOutcome,
            Lifecycle::New,
        ),
        (
            Example::nems("blood-spot-test-outcome-1-delete"),
            EventType::BloodSpotTestOutcome,
            Lifecycle::Delete,
        ),
        (
            Example::nems("newborn-hearing-1-new"),
            EventType::NewbornHearing,
            Lifecycle::New,
        ),
        (
            Example::nems("newborn-hearing-1-delete"),
            EventType::NewbornHearing,
            Lifecycle::Delete,
        ),
        (
            Example::nems("nipe-outcome-1-new"),
            EventType::NipeOutcome,
            Lifecycle::New,
        ),
        (
            Example::nems("PDS-Change-Of-Address-ems-example"),
            EventType::PdsChangeOfAddress,
            Lifecycle::New,
        ),
        (
            Example::nems("PDS-Change-Of-GP-ems-example"),
            EventType::PdsChangeOfGp,
            Lifecycle::New,
        ),
        (
            Example::nems("PDS-Death-Notification-formal-ems-example"),
            EventType::PdsDeathNotification,
            Lifecycle::New,
        ),
        (
            Example::nems("PDS-Death-Notification-informal-ems-example"),
            EventType::PdsDeathNotification,
            Lifecycle::New,
        ),
        (
            Example::nems("PDS-Record-Change"),
            EventType::PdsRecordChange,
            Lifecycle::New,
        ),
        (
            Example::derived(BIRTH_NOTIFICATION),
            EventType::PdsBirthNotification,
            Lifecycle::New,
        ),
    ] {
        let message = assert_accepted(&example);
        assert_eq!(
            (message.event_type, message.lifecycle),
            (event_type, lifecycle),
            "{}",
            example.name
        );
    }
}

// ---------------------------------------------------------------------------
// The focus resource's business identifier
// ---------------------------------------------------------------------------

#[test]
fn an_update_or_delete_without_the_focus_identifier_is_refused() {
    for (name, anchor, index, focus) in [
        ("vaccinations-1-update", "<Immunization>", 1, IMMUNIZATION),
        ("vaccinations-1-delete", "<Immunization>", 1, IMMUNIZATION),
        (
            "Professional-Contacts-1-delete",
            "<EpisodeOfCare>",
            3,
            EPISODE,
        ),
        (
            "blood-spot-test-outcome-1-delete",
            "<Encounter>",
            2,
            "Bundle.entry[2].resource.ofType(Encounter)",
        ),
        (
            "newborn-hearing-1-delete",
            "<Encounter>",
            2,
            "Bundle.entry[2].resource.ofType(Encounter)",
        ),
    ] {
        let example = Example::nems(name);
        let message = assert_accepted(&example);
        assert_ne!(message.lifecycle, Lifecycle::New, "{name}");
        assert_eq!(message.focus_identifiers.len(), 1, "{name}");
        let without = example
            .xml(|xml| xml_remove(xml, anchor, "<identifier"))
            .json(|bundle| {
                take(resource(bundle, index), "identifier");
            });
        assert_refused(
            &without,
            &format!("{focus}.identifier"),
            ProblemKind::Missing,
        );
    }
}

#[test]
fn a_screening_vaccination_or_contact_new_without_the_focus_identifier_is_refused() {
    for (name, anchor, index, focus) in [
        ("vaccinations-1-new", "<Immunization>", 1, IMMUNIZATION),
        ("Professional-Contacts-1-new", "<EpisodeOfCare>", 3, EPISODE),
        (
            "blood-spot-test-outcome-1-new",
            "<Encounter>",
            16,
            "Bundle.entry[16].resource.ofType(Encounter)",
        ),
        (
            "newborn-hearing-1-new",
            "<Encounter>",
            4,
            "Bundle.entry[4].resource.ofType(Encounter)",
        ),
        (
            "nipe-outcome-1-new",
            "<Encounter>",
            8,
            "Bundle.entry[8].resource.ofType(Encounter)",
        ),
    ] {
        let example = Example::nems(name);
        assert_eq!(
            assert_accepted(&example).lifecycle,
            Lifecycle::New,
            "{name}"
        );
        let without = example
            .xml(|xml| xml_remove(xml, anchor, "<identifier"))
            .json(|bundle| {
                take(resource(bundle, index), "identifier");
            });
        assert_refused(
            &without,
            &format!("{focus}.identifier"),
            ProblemKind::Missing,
        );
    }
}

#[test]
fn a_focus_identifier_without_its_system_or_value_does_not_count() {
    let example = Example::nems("vaccinations-1-update");
    let without_system = example
        .clone()
        .xml(|xml| {
            xml_remove(
                xml,
                "<Immunization>",
                "<system value=\"https://supplierABC/identifiers\"/>",
            )
        })
        .json(|bundle| {
            take(first(resource(bundle, 1), "identifier"), "system");
        });
    assert_refused(
        &without_system,
        &format!("{IMMUNIZATION}.identifier"),
        ProblemKind::Missing,
    );
    let without_value = example
        .xml(|xml| xml_remove(xml, "<Immunization>", "<value value=\"abc1111\"/>"))
        .json(|bundle| {
            take(first(resource(bundle, 1), "identifier"), "value");
        });
    assert_refused(
        &without_value,
        &format!("{IMMUNIZATION}.identifier"),
        ProblemKind::Missing,
    );
}

#[test]
fn a_pds_new_event_needs_no_focus_identifier() {
    for name in [
        "PDS-Change-Of-Address-ems-example",
        "PDS-Change-Of-GP-ems-example",
        "PDS-Death-Notification-formal-ems-example",
    ] {
        let message = assert_accepted(&Example::nems(name));
        assert_eq!(message.focus_type, "Communication", "{name}");
        assert!(message.focus_identifiers.is_empty(), "{name}");
    }
    let message = assert_accepted(&Example::derived(BIRTH_NOTIFICATION));
    assert!(message.focus_identifiers.is_empty());
}

// ---------------------------------------------------------------------------
// Vaccinations
// ---------------------------------------------------------------------------

#[test]
fn a_vaccination_without_its_code_date_or_not_given_flag_is_refused() {
    for name in ["vaccinations-1-new", "vaccinations-1-update"] {
        for element in ["vaccineCode", "date", "notGiven"] {
            let without = Example::nems(name)
                .xml(|xml| xml_remove(xml, "<Immunization>", &format!("<{element}")))
                .json(|bundle| {
                    take(resource(bundle, 1), element);
                });
            assert_refused(
                &without,
                &format!("{IMMUNIZATION}.{element}"),
                ProblemKind::Missing,
            );
        }
    }
}

#[test]
fn not_given_must_be_true_or_false() {
    for value in ["yes", "FALSE", ""] {
        let mutated = Example::nems("vaccinations-1-new")
            .xml(|xml| {
                xml_replace(
                    xml,
                    "<Immunization>",
                    "<notGiven value=\"false\"/>",
                    &format!("<notGiven value=\"{value}\"/>"),
                )
            })
            .json(|bundle| replace(resource(bundle, 1), "notGiven", json!(value)));
        assert_refused(
            &mutated,
            &format!("{IMMUNIZATION}.notGiven"),
            ProblemKind::BadValue,
        );
    }
}

fn vaccination_not_given() -> Example {
    Example::nems("vaccinations-1-new")
        .xml(|xml| {
            xml_replace(
                xml,
                "<Immunization>",
                "<notGiven value=\"false\"/>",
                "<notGiven value=\"true\"/>",
            )
        })
        .json(|bundle| replace(resource(bundle, 1), "notGiven", json!(true)))
}

#[test]
fn a_vaccination_not_given_needs_a_reason_not_given() {
    // The example's explanation has a reason (why it was to be given), not a
    // reasonNotGiven.
    assert_refused(
        &vaccination_not_given(),
        &format!("{IMMUNIZATION}.explanation.reasonNotGiven"),
        ProblemKind::Missing,
    );
    let without_explanation = vaccination_not_given()
        .xml(|xml| xml_remove(xml, "<Immunization>", "<explanation"))
        .json(|bundle| {
            take(resource(bundle, 1), "explanation");
        });
    assert_refused(
        &without_explanation,
        &format!("{IMMUNIZATION}.explanation.reasonNotGiven"),
        ProblemKind::Missing,
    );
}

#[test]
fn a_vaccination_not_given_with_its_reason_is_accepted() {
    let with_reason = vaccination_not_given()
        .xml(|xml| {
            let opened = xml_replace(xml, "<Immunization>", "<reason>", "<reasonNotGiven>");
            xml_replace(&opened, "<Immunization>", "</reason>", "</reasonNotGiven>")
        })
        .json(|bundle| {
            let explanation = resource(bundle, 1)["explanation"].as_object_mut().unwrap();
            let reason = take(explanation, "reason");
            explanation.insert("reasonNotGiven".into(), reason);
        });
    let message = assert_accepted(&with_reason);
    assert_eq!(message.event_type, EventType::Vaccinations);
}

// ---------------------------------------------------------------------------
// PDS death notification
// ---------------------------------------------------------------------------

const DEATH_EXAMPLES: [&str; 2] = [
    "PDS-Death-Notification-formal-ems-example",
    "PDS-Death-Notification-informal-ems-example",
];

fn death_status_expression() -> String {
    format!("{DEATH_PATIENT}.extension('{DEATH_STATUS_URL}').extension('deathNotificationStatus')")
}

/// The death notification example with its status code set.
fn death_with_status(name: &str, code: &str) -> Example {
    let example = Example::nems(name);
    let current = if name.contains("informal") { "1" } else { "2" };
    example
        .xml(|xml| {
            let range = resource_range(xml, "<Patient>");
            let scope = &xml[range.clone()];
            let status = scope.find("url=\"deathNotificationStatus\"").unwrap();
            let from = format!("<code value=\"{current}\"/>");
            let at = range.start + status + scope[status..].find(&from).unwrap();
            format!(
                "{}<code value=\"{code}\"/>{}",
                &xml[..at],
                &xml[at + from.len()..]
            )
        })
        .json(|bundle| {
            let status = extension(
                extension(resource(bundle, 2), DEATH_STATUS_URL),
                "deathNotificationStatus",
            );
            let coding = status["valueCodeableConcept"]["coding"][0]
                .as_object_mut()
                .unwrap();
            assert_eq!(coding["code"], current);
            replace(coding, "code", json!(code));
        })
}

#[test]
fn a_death_notification_without_its_status_is_refused() {
    for name in DEATH_EXAMPLES {
        // No DeathNotificationStatus extension on the Patient.
        let without_extension = Example::nems(name)
            .xml(|xml| {
                xml_remove(
                    xml,
                    "<Patient>",
                    &format!("<extension url=\"{DEATH_STATUS_URL}\">"),
                )
            })
            .json(|bundle| {
                let patient = resource(bundle, 2);
                let extensions = patient["extension"].as_array_mut().unwrap();
                let before = extensions.len();
                extensions.retain(|extension| extension["url"] != DEATH_STATUS_URL);
                assert_eq!(extensions.len(), before - 1);
            });
        assert_refused(
            &without_extension,
            &death_status_expression(),
            ProblemKind::Missing,
        );

        // The extension without its deathNotificationStatus part.
        let without_status = Example::nems(name)
            .xml(|xml| {
                xml_remove(
                    xml,
                    "<Patient>",
                    "<extension url=\"deathNotificationStatus\">",
                )
            })
            .json(|bundle| {
                let extensions = extension(resource(bundle, 2), DEATH_STATUS_URL)["extension"]
                    .as_array_mut()
                    .unwrap();
                extensions.retain(|extension| extension["url"] != "deathNotificationStatus");
            });
        assert_refused(
            &without_status,
            &death_status_expression(),
            ProblemKind::Missing,
        );
    }
}

#[test]
fn a_death_notification_status_other_than_1_2_or_u_is_refused() {
    for name in DEATH_EXAMPLES {
        for code in ["3", "u", "0", "formal"] {
            assert_refused(
                &death_with_status(name, code),
                &death_status_expression(),
                ProblemKind::BadValue,
            );
        }
    }
}

#[test]
fn death_notification_statuses_1_2_and_u_are_accepted() {
    // The formal example carries 2, the informal one 1.
    assert_accepted(&Example::nems(DEATH_EXAMPLES[0]));
    assert_accepted(&Example::nems(DEATH_EXAMPLES[1]));
    assert_accepted(&death_with_status(DEATH_EXAMPLES[0], "1"));
    assert_accepted(&death_with_status(DEATH_EXAMPLES[0], "U"));
    assert_accepted(&death_with_status(DEATH_EXAMPLES[1], "2"));
}

// ---------------------------------------------------------------------------
// PDS change of address
// ---------------------------------------------------------------------------

/// The home address of the change of address example's Patient.
fn home_address(bundle: &mut Value) -> &mut Map<String, Value> {
    resource(bundle, 3)["address"]
        .as_array_mut()
        .unwrap()
        .iter_mut()
        .find(|address| address["use"] == "home")
        .and_then(Value::as_object_mut)
        .unwrap()
}

#[test]
fn a_change_of_address_without_a_home_postcode_is_refused() {
    let example = Example::nems("PDS-Change-Of-Address-ems-example");
    let message = assert_accepted(&example);
    let patient = message.patient.unwrap();
    assert_eq!(patient.home_postcode.as_deref(), Some("LS17 7DF"));
    assert_eq!(patient.previous_postcode.as_deref(), Some("WF14 0BQ"));

    // The home address without its postcode: the old address's does not count.
    let without_postcode = example
        .clone()
        .xml(|xml| xml_remove(xml, "<Patient>", "<postalCode value=\"LS17 7DF\"/>"))
        .json(|bundle| {
            take(home_address(bundle), "postalCode");
        });
    assert_refused(
        &without_postcode,
        &format!("{ADDRESS_PATIENT}.address"),
        ProblemKind::Missing,
    );

    // The new address not marked home.
    let not_home = example
        .xml(|xml| {
            xml_replace(
                xml,
                "<Patient>",
                "<use value=\"home\"/>",
                "<use value=\"temp\"/>",
            )
        })
        .json(|bundle| replace(home_address(bundle), "use", json!("temp")));
    assert_refused(
        &not_home,
        &format!("{ADDRESS_PATIENT}.address"),
        ProblemKind::Missing,
    );
}

#[test]
fn a_change_of_address_patient_with_an_invalid_nhs_number_still_needs_a_home_postcode() {
    let unmatched = Example::nems("PDS-Change-Of-Address-ems-example")
        .xml(|xml| {
            let failing = xml_replace(
                xml,
                "<Patient>",
                &format!("<value value=\"{PATIENT_NHS_NUMBER}\"/>"),
                "<value value=\"9912003880\"/>",
            );
            xml_remove(&failing, "<Patient>", "<postalCode value=\"LS17 7DF\"/>")
        })
        .json(|bundle| {
            replace(
                first(resource(bundle, 3), "identifier"),
                "value",
                json!("9912003880"),
            );
            take(home_address(bundle), "postalCode");
        });
    assert_refused(
        &unmatched,
        &format!("{ADDRESS_PATIENT}.address"),
        ProblemKind::Missing,
    );
}

// ---------------------------------------------------------------------------
// Blood spot test outcome
// ---------------------------------------------------------------------------

const PROCEDURE_OUTCOME: &str = "Bundle.entry.resource.ofType(Procedure).outcome";

/// Removes the outcome of every Procedure but the first `keep`.
fn remove_procedure_outcomes(bundle: &mut Value, keep: usize) {
    let mut seen = 0;
    for entry in bundle["entry"].as_array_mut().unwrap() {
        let resource = entry["resource"].as_object_mut().unwrap();
        if resource["resourceType"] == "Procedure" {
            seen += 1;
            if seen > keep {
                take(resource, "outcome");
            }
        }
    }
    assert!(seen > keep);
}

#[test]
fn a_blood_spot_outcome_without_any_procedure_outcome_is_refused() {
    let example = Example::nems("blood-spot-test-outcome-1-new");
    let without_outcomes = example
        .clone()
        .xml(|xml| xml_remove_all(xml, "<outcome", 0))
        .json(|bundle| remove_procedure_outcomes(bundle, 0));
    assert_refused(&without_outcomes, PROCEDURE_OUTCOME, ProblemKind::Missing);

    let without_procedures = example
        .xml(|xml| {
            let mut text = xml.to_owned();
            while text.contains("<Procedure>") {
                let at = text.find("<Procedure>").unwrap();
                let start = text[..at].rfind("<entry>").unwrap();
                let end = at + text[at..].find("</entry>").unwrap() + "</entry>".len();
                text.replace_range(start..end, "");
            }
            text
        })
        .json(|bundle| {
            let entries = bundle["entry"].as_array_mut().unwrap();
            entries.retain(|entry| entry["resource"]["resourceType"] != "Procedure");
        });
    assert_refused(&without_procedures, PROCEDURE_OUTCOME, ProblemKind::Missing);
}

#[test]
fn one_procedure_outcome_is_enough_for_a_blood_spot_outcome() {
    let one_outcome = Example::nems("blood-spot-test-outcome-1-new")
        .xml(|xml| xml_remove_all(xml, "<outcome", 1))
        .json(|bundle| remove_procedure_outcomes(bundle, 1));
    assert_accepted(&one_outcome);
}

#[test]
fn a_blood_spot_delete_needs_no_procedure() {
    let example = Example::nems("blood-spot-test-outcome-1-delete");
    assert!(!example.xml.contains("<Procedure>"));
    let message = assert_accepted(&example);
    assert_eq!(message.lifecycle, Lifecycle::Delete);
}

// ---------------------------------------------------------------------------
// Professional contacts
// ---------------------------------------------------------------------------

#[test]
fn professional_contacts_without_status_or_managing_organisation_are_refused() {
    for name in [
        "Professional-Contacts-1-new",
        "Professional-Contacts-1-delete",
    ] {
        for element in ["status", "managingOrganization"] {
            let without = Example::nems(name)
                .xml(|xml| xml_remove(xml, "<EpisodeOfCare>", &format!("<{element}")))
                .json(|bundle| {
                    take(resource(bundle, 3), element);
                });
            assert_refused(
                &without,
                &format!("{EPISODE}.{element}"),
                ProblemKind::Missing,
            );
        }
    }
}

// ---------------------------------------------------------------------------
// PDS birth notification
// ---------------------------------------------------------------------------

fn birth_notification() -> Example {
    Example::derived(BIRTH_NOTIFICATION)
}

#[test]
fn the_birth_notification_routes_on_the_mother_and_checks_the_baby() {
    let message = assert_accepted(&birth_notification());
    assert_eq!(message.nhs_number, Some(nhs(OTHER_NHS_NUMBER)));
    let example = birth_notification();
    let bundle = Encoding::Xml.read(&example.xml).unwrap();
    let baby = hub::message::rules::birth_notification_baby(&bundle).expect("the baby");
    assert_eq!(hub::message::rules::resource_path(&bundle, baby), BABY);
}

/// Issue 18, item 1: a birth notification is about the baby and the
/// mother, and no one else.
#[test]
fn a_birth_notification_with_a_third_patient_is_refused() {
    const THIRD_CHILD: &str = "9434765919";
    let third = birth_notification()
        .xml(|xml| {
            xml.replace(
                "</Bundle>",
                &format!(
                    r#"<entry><resource><Patient><identifier><system value="https://fhir.nhs.uk/Id/nhs-number"/><value value="{THIRD_CHILD}"/></identifier><birthDate value="2017-10-02"/></Patient></resource></entry></Bundle>"#
                ),
            )
        })
        .json(|bundle| {
            bundle["entry"].as_array_mut().unwrap().push(json!({"resource": {
                "resourceType": "Patient",
                "identifier": [{"system": "https://fhir.nhs.uk/Id/nhs-number", "value": THIRD_CHILD}],
                "birthDate": "2017-10-02",
            }}));
        });
    assert_refused(
        &third,
        "Bundle.entry[20].resource.ofType(Patient)",
        ProblemKind::BadValue,
    );
    // The baby with a second NHS number, someone else's.
    let second_number = birth_notification()
        .xml(|xml| {
            xml_replace(
                xml,
                BABY_ID,
                BABY_ID,
                &format!(
                    r#"{BABY_ID}<identifier><system value="https://fhir.nhs.uk/Id/nhs-number"/><value value="{THIRD_CHILD}"/></identifier>"#
                ),
            )
        })
        .json(|bundle| {
            bundle["entry"][4]["resource"]["identifier"]
                .as_array_mut()
                .unwrap()
                .insert(0, json!({"system": "https://fhir.nhs.uk/Id/nhs-number", "value": THIRD_CHILD}));
        });
    assert_refused(
        &second_number,
        &format!("{BABY}.identifier.value"),
        ProblemKind::BadValue,
    );
}

#[test]
fn a_baby_with_an_invalid_nhs_number_is_refused() {
    for number in ["9912003889", "991200388", "99120038880"] {
        let invalid = birth_notification()
            .xml(|xml| {
                xml_replace(
                    xml,
                    BABY_ID,
                    &format!("<value value=\"{PATIENT_NHS_NUMBER}\"/>"),
                    &format!("<value value=\"{number}\"/>"),
                )
            })
            .json(|bundle| {
                replace(
                    first(resource(bundle, 4), "identifier"),
                    "value",
                    json!(number),
                )
            });
        assert_refused(
            &invalid,
            &format!("{BABY}.identifier.value"),
            ProblemKind::BadNhsNumber,
        );
    }
}

#[test]
fn a_baby_without_an_nhs_number_is_refused() {
    let without_identifier = birth_notification()
        .xml(|xml| xml_remove(xml, BABY_ID, "<identifier"))
        .json(|bundle| {
            take(resource(bundle, 4), "identifier");
        });
    assert_refused(
        &without_identifier,
        &format!("{BABY}.identifier"),
        ProblemKind::Missing,
    );

    // An identifier of another system is not an NHS number.
    let other_system = birth_notification()
        .xml(|xml| {
            xml_replace(
                xml,
                BABY_ID,
                "<system value=\"https://fhir.nhs.uk/Id/nhs-number\"/>",
                "<system value=\"https://example.org/Id/local\"/>",
            )
        })
        .json(|bundle| {
            replace(
                first(resource(bundle, 4), "identifier"),
                "system",
                json!("https://example.org/Id/local"),
            )
        });
    assert_refused(
        &other_system,
        &format!("{BABY}.identifier"),
        ProblemKind::Missing,
    );

    // The NHS number identifier without its value.
    let without_value = birth_notification()
        .xml(|xml| {
            xml_remove(
                xml,
                BABY_ID,
                &format!("<value value=\"{PATIENT_NHS_NUMBER}\"/>"),
            )
        })
        .json(|bundle| {
            take(first(resource(bundle, 4), "identifier"), "value");
        });
    assert_refused(
        &without_value,
        &format!("{BABY}.identifier"),
        ProblemKind::Missing,
    );
}

#[test]
fn a_baby_without_a_birth_date_is_refused() {
    let without = birth_notification()
        .xml(|xml| xml_remove(xml, BABY_ID, "<birthDate"))
        .json(|bundle| {
            let baby = resource(bundle, 4);
            take(baby, "birthDate");
            take(baby, "_birthDate");
        });
    assert_refused(&without, &format!("{BABY}.birthDate"), ProblemKind::Missing);
}

#[test]
fn a_birth_notification_without_the_baby_is_refused() {
    let expression = "Bundle.entry.resource.ofType(RelatedPerson).patient";
    // No RelatedPerson.
    let without_related_person = birth_notification()
        .xml(|xml| xml_remove_entry(xml, RELATED_PERSON))
        .json(|bundle| {
            let removed = remove_entry(bundle, 3);
            assert_eq!(removed["resource"]["resourceType"], "RelatedPerson");
        });
    assert_refused(&without_related_person, expression, ProblemKind::Missing);

    // A RelatedPerson whose patient is not in the Bundle.
    let elsewhere = "urn:uuid:00000000-0000-4000-8000-000000000000";
    let dangling = birth_notification()
        .xml(|xml| {
            xml_replace(
                xml,
                RELATED_PERSON,
                "urn:uuid:dffd3330-dc21-11e7-9296-cec278b6b50a",
                elsewhere,
            )
        })
        .json(|bundle| {
            let patient = resource(bundle, 3)["patient"].as_object_mut().unwrap();
            replace(patient, "reference", json!(elsewhere));
        });
    assert_refused(&dangling, expression, ProblemKind::Missing);

    // A RelatedPerson without its patient.
    let without_patient = birth_notification()
        .xml(|xml| xml_remove(xml, RELATED_PERSON, "<patient"))
        .json(|bundle| {
            take(resource(bundle, 3), "patient");
        });
    assert_refused(&without_patient, expression, ProblemKind::Missing);
}

#[test]
fn the_baby_may_be_referenced_by_type_and_id() {
    let relative = "Patient/dffd3330-dc21-11e7-9296-cec278b6b50a";
    let example = birth_notification()
        .xml(|xml| {
            xml_replace(
                xml,
                RELATED_PERSON,
                "urn:uuid:dffd3330-dc21-11e7-9296-cec278b6b50a",
                relative,
            )
        })
        .json(|bundle| {
            let patient = resource(bundle, 3)["patient"].as_object_mut().unwrap();
            replace(patient, "reference", json!(relative));
        });
    assert_accepted(&example);
    // ... and is then checked: a bad number through that reference is refused.
    let invalid = example
        .xml(|xml| {
            xml_replace(
                xml,
                BABY_ID,
                &format!("<value value=\"{PATIENT_NHS_NUMBER}\"/>"),
                "<value value=\"9912003889\"/>",
            )
        })
        .json(|bundle| {
            replace(
                first(resource(bundle, 4), "identifier"),
                "value",
                json!("9912003889"),
            )
        });
    assert_refused(
        &invalid,
        &format!("{BABY}.identifier.value"),
        ProblemKind::BadNhsNumber,
    );
}

// ---------------------------------------------------------------------------
// The routed Patient
// ---------------------------------------------------------------------------

#[test]
fn a_patient_entry_with_another_valid_nhs_number_is_refused() {
    for (name, index, patient) in [
        ("vaccinations-1-new", 3, VACCINATION_PATIENT),
        ("vaccinations-1-delete", 3, VACCINATION_PATIENT),
        ("Professional-Contacts-1-new", 2, CONTACTS_PATIENT),
        ("PDS-Change-Of-Address-ems-example", 3, ADDRESS_PATIENT),
        (
            "PDS-Record-Change",
            1,
            "Bundle.entry[1].resource.ofType(Patient)",
        ),
    ] {
        let other = Example::nems(name)
            .xml(|xml| {
                let range = resource_range(xml, "<Patient>");
                let scope = &xml[range.clone()];
                let system = scope
                    .find("<system value=\"https://fhir.nhs.uk/Id/nhs-number\"/>")
                    .unwrap();
                let from = format!("<value value=\"{PATIENT_NHS_NUMBER}\"/>");
                let at = range.start + system + scope[system..].find(&from).unwrap();
                format!(
                    "{}<value value=\"{OTHER_NHS_NUMBER}\"/>{}",
                    &xml[..at],
                    &xml[at + from.len()..]
                )
            })
            .json(|bundle| {
                let identifier = first(resource(bundle, index), "identifier");
                assert_eq!(identifier["value"], PATIENT_NHS_NUMBER);
                replace(identifier, "value", json!(OTHER_NHS_NUMBER));
            });
        assert_refused(
            &other,
            &format!("{patient}.identifier"),
            ProblemKind::BadValue,
        );
    }
}

#[test]
fn the_routed_patient_needs_an_official_name() {
    let example = Example::nems("vaccinations-1-new");
    let expression = format!("{VACCINATION_PATIENT}.name");

    let without_name = example
        .clone()
        .xml(|xml| xml_remove(xml, "<Patient>", "<name"))
        .json(|bundle| {
            take(resource(bundle, 3), "name");
        });
    assert_refused(&without_name, &expression, ProblemKind::Missing);

    let usual_only = example
        .clone()
        .xml(|xml| {
            xml_replace(
                xml,
                "<Patient>",
                "<use value=\"official\"/>",
                "<use value=\"usual\"/>",
            )
        })
        .json(|bundle| replace(first(resource(bundle, 3), "name"), "use", json!("usual")));
    assert_refused(&usual_only, &expression, ProblemKind::Missing);

    // An official name with neither family nor given name.
    let empty = example
        .clone()
        .xml(|xml| {
            let no_family = xml_remove(xml, "<Patient>", "<family");
            xml_remove(&no_family, "<Patient>", "<given")
        })
        .json(|bundle| {
            let name = first(resource(bundle, 3), "name");
            take(name, "family");
            take(name, "given");
        });
    assert_refused(&empty, &expression, ProblemKind::Missing);

    // A name without a use is taken as official; a family name alone will do.
    let unmarked = example
        .xml(|xml| {
            let no_use = xml_remove(xml, "<Patient>", "<use value=\"official\"/>");
            xml_remove(&no_use, "<Patient>", "<given")
        })
        .json(|bundle| {
            let name = first(resource(bundle, 3), "name");
            take(name, "use");
            take(name, "given");
        });
    assert_accepted(&unmarked);
}

#[test]
fn the_routed_patient_needs_a_birth_date() {
    let without = Example::nems("vaccinations-1-new")
        .xml(|xml| xml_remove(xml, "<Patient>", "<birthDate"))
        .json(|bundle| {
            let patient = resource(bundle, 3);
            take(patient, "birthDate");
            take(patient, "_birthDate");
        });
    assert_refused(
        &without,
        &format!("{VACCINATION_PATIENT}.birthDate"),
        ProblemKind::Missing,
    );
}

#[test]
fn a_birth_date_with_no_value_is_refused_in_both_encodings() {
    let absent = "http://hl7.org/fhir/StructureDefinition/data-absent-reason";
    let without_value = Example::nems("vaccinations-1-new")
        .xml(|xml| {
            xml_replace(
                xml,
                "<Patient>",
                "<birthDate value=\"2013-10-12\">",
                &format!(
                    "<birthDate><extension url=\"{absent}\"><valueCode value=\"unknown\"/></extension>"
                ),
            )
        })
        .json(|bundle| {
            let patient = resource(bundle, 3);
            take(patient, "birthDate");
            let extensions = patient["_birthDate"]["extension"].as_array_mut().unwrap();
            extensions.push(json!({"url": absent, "valueCode": "unknown"}));
        });
    assert_refused(
        &without_value,
        &format!("{VACCINATION_PATIENT}.birthDate"),
        ProblemKind::Missing,
    );
}

#[test]
fn a_new_event_without_a_patient_is_refused() {
    for (name, index) in [
        ("vaccinations-1-new", 3),
        ("Professional-Contacts-1-new", 2),
        ("PDS-Change-Of-Address-ems-example", 3),
    ] {
        let without = Example::nems(name)
            .xml(|xml| xml_remove_entry(xml, "<Patient>"))
            .json(|bundle| {
                let removed = remove_entry(bundle, index);
                assert_eq!(removed["resource"]["resourceType"], "Patient");
            });
        assert_refused(
            &without,
            "Bundle.entry.resource.ofType(Patient)",
            ProblemKind::Missing,
        );
    }
}

#[test]
fn a_delete_without_a_patient_is_accepted() {
    let example = Example::nems("newborn-hearing-1-delete");
    assert!(!example.xml.contains("<Patient>"));
    let message = assert_accepted(&example);
    assert_eq!(message.lifecycle, Lifecycle::Delete);
    assert_eq!(message.patient, None);
    assert_eq!(message.nhs_number, Some(nhs(PATIENT_NHS_NUMBER)));

    let without = Example::nems("vaccinations-1-delete")
        .xml(|xml| xml_remove_entry(xml, "<Patient>"))
        .json(|bundle| {
            let removed = remove_entry(bundle, 3);
            assert_eq!(removed["resource"]["resourceType"], "Patient");
        });
    let message = assert_accepted(&without);
    assert_eq!(message.patient, None);
}

#[test]
fn a_death_notification_patient_without_a_valid_nhs_number_is_tolerated_with_a_warning() {
    for name in DEATH_EXAMPLES {
        let example = Example::nems(name);
        assert!(example.xml.contains("<value value=\"6101231234\"/>"));
        let message = assert_accepted(&example);
        assert_eq!(message.nhs_number, Some(nhs(PATIENT_NHS_NUMBER)), "{name}");
        assert_eq!(message.warnings.len(), 1, "{name}: {:?}", message.warnings);
        assert_eq!(
            message.warnings[0].expression,
            format!("{DEATH_PATIENT}.identifier"),
            "{name}"
        );
        assert!(!message.warnings[0].problem.is_empty());
    }
}

#[test]
fn a_patient_without_a_valid_nhs_number_is_tolerated_with_a_warning() {
    // A number failing its check digit.
    let failing = Example::nems("vaccinations-1-new")
        .xml(|xml| {
            xml_replace(
                xml,
                "<Patient>",
                &format!("<value value=\"{PATIENT_NHS_NUMBER}\"/>"),
                "<value value=\"9912003880\"/>",
            )
        })
        .json(|bundle| {
            replace(
                first(resource(bundle, 3), "identifier"),
                "value",
                json!("9912003880"),
            )
        });
    // No NHS number at all.
    let absent = Example::nems("vaccinations-1-new")
        .xml(|xml| xml_remove(xml, "<Patient>", "<identifier"))
        .json(|bundle| {
            take(resource(bundle, 3), "identifier");
        });
    for example in [failing, absent] {
        let message = assert_accepted(&example);
        let expressions: Vec<&str> = message
            .warnings
            .iter()
            .map(|warning| warning.expression.as_str())
            .collect();
        let expected = format!("{VACCINATION_PATIENT}.identifier");
        assert_eq!(expressions, [expected.as_str()]);
    }
}

// ---------------------------------------------------------------------------
// Zone offsets of every dateTime with a time
// ---------------------------------------------------------------------------

/// The vaccination example with Immunization.date set.
fn vaccination_dated(date: &str) -> Example {
    Example::nems("vaccinations-1-new")
        .xml(|xml| {
            xml_replace(
                xml,
                "<Immunization>",
                "<date value=\"2017-02-14T12:00:00+00:00\">",
                &format!("<date value=\"{date}\">"),
            )
        })
        .json(|bundle| replace(resource(bundle, 1), "date", json!(date)))
}

#[test]
fn a_date_time_without_its_offset_is_refused_where_it_stands() {
    assert_refused(
        &vaccination_dated("2017-02-14T12:00:00"),
        &format!("{IMMUNIZATION}.date"),
        ProblemKind::BadValue,
    );
    assert_refused(
        &vaccination_dated("2017-02-14T12:00"),
        &format!("{IMMUNIZATION}.date"),
        ProblemKind::BadValue,
    );
    // An offset must be Z or +hh:mm / -hh:mm.
    assert_refused(
        &vaccination_dated("2017-02-14T12:00:00+0000"),
        &format!("{IMMUNIZATION}.date"),
        ProblemKind::BadValue,
    );
    assert_refused(
        &vaccination_dated("2017-02-14T12:00:00.123"),
        &format!("{IMMUNIZATION}.date"),
        ProblemKind::BadValue,
    );
}

#[test]
fn a_date_or_a_date_time_with_its_offset_is_accepted() {
    for date in [
        "2017-02-14",
        "2017-02",
        "2017",
        "2017-02-14T12:00:00Z",
        "2017-02-14T12:00:00.5Z",
        "2017-02-14T07:00:00-05:00",
        "2017-02-14T13:00:00+01:00",
    ] {
        assert_accepted(&vaccination_dated(date));
    }
}

#[test]
fn nested_date_times_without_an_offset_are_refused_at_their_path() {
    // An extension of a primitive: the Patient's birth time.
    let birth_time = Example::nems("vaccinations-1-new")
        .xml(|xml| {
            xml_replace(
                xml,
                "<Patient>",
                "<valueDateTime value=\"2017-10-02T12:00:00+00:00\"/>",
                "<valueDateTime value=\"2017-10-02T12:00:00\"/>",
            )
        })
        .json(|bundle| {
            let birth_time = resource(bundle, 3)["_birthDate"]["extension"][0]
                .as_object_mut()
                .unwrap();
            replace(birth_time, "valueDateTime", json!("2017-10-02T12:00:00"));
        });
    assert_refused(
        &birth_time,
        &format!("{VACCINATION_PATIENT}.birthDate.extension.valueDateTime"),
        ProblemKind::BadValue,
    );

    // An extension within an extension: the death's system effective date.
    let effective = Example::nems(DEATH_EXAMPLES[0])
        .xml(|xml| {
            xml_replace(
                xml,
                "<Patient>",
                "<valueDateTime value=\"2017-11-03T00:00:00+00:00\"/>",
                "<valueDateTime value=\"2017-11-03T00:00:00\"/>",
            )
        })
        .json(|bundle| {
            let effective = extension(
                extension(resource(bundle, 2), DEATH_STATUS_URL),
                "systemEffectiveDate",
            );
            replace(effective, "valueDateTime", json!("2017-11-03T00:00:00"));
        });
    assert_refused(
        &effective,
        &format!("{DEATH_PATIENT}.extension.extension.valueDateTime"),
        ProblemKind::BadValue,
    );

    // A period's start.
    let start = Example::nems("Professional-Contacts-1-new")
        .xml(|xml| {
            xml_replace(
                xml,
                "<EpisodeOfCare>",
                "<start value=\"2018-11-01T09:00:00+00:00\"/>",
                "<start value=\"2018-11-01T09:00:00\"/>",
            )
        })
        .json(|bundle| {
            let period = resource(bundle, 3)["period"].as_object_mut().unwrap();
            replace(period, "start", json!("2018-11-01T09:00:00"));
        });
    assert_refused(
        &start,
        &format!("{EPISODE}.period.start"),
        ProblemKind::BadValue,
    );
}

// ---------------------------------------------------------------------------
// Header rules of hub::message not exercised by tests/pipeline.rs
// ---------------------------------------------------------------------------

fn vaccination() -> Example {
    Example::nems("vaccinations-1-new")
}

const MESSAGE_HEADER: &str = "<MessageHeader>";

#[test]
fn the_bundle_must_be_of_type_message() {
    let without = vaccination()
        .xml(|xml| xml.replacen("<type value=\"message\"/>", "", 1))
        .json(|bundle| {
            take(bundle.as_object_mut().unwrap(), "type");
        });
    assert_refused(&without, "Bundle.type", ProblemKind::Missing);

    let collection = vaccination()
        .xml(|xml| {
            xml.replacen(
                "<type value=\"message\"/>",
                "<type value=\"collection\"/>",
                1,
            )
        })
        .json(|bundle| replace(bundle.as_object_mut().unwrap(), "type", json!("collection")));
    assert_refused(&collection, "Bundle.type", ProblemKind::BadValue);
}

#[test]
fn the_message_header_must_be_the_first_entry() {
    let moved = vaccination()
        .xml(|xml| {
            let range = resource_range(xml, MESSAGE_HEADER);
            let start = xml[..range.start].rfind("<entry>").unwrap();
            let end = range.end + xml[range.end..].find("</entry>").unwrap() + "</entry>".len();
            let entry = &xml[start..end];
            let rest = format!("{}{}", &xml[..start], &xml[end..]);
            rest.replacen("</Bundle>", &format!("{entry}</Bundle>"), 1)
        })
        .json(|bundle| {
            let header = remove_entry(bundle, 0);
            bundle["entry"].as_array_mut().unwrap().push(header);
        });
    assert_refused(&moved, "Bundle.entry[0].resource", ProblemKind::Missing);
}

#[test]
fn the_event_must_be_coded_in_the_nems_event_type_system() {
    let without_event = vaccination()
        .xml(|xml| xml_remove(xml, MESSAGE_HEADER, "<event"))
        .json(|bundle| {
            take(header(bundle), "event");
        });
    assert_refused(
        &without_event,
        &format!("{HEADER}.event"),
        ProblemKind::Missing,
    );

    let without_code = vaccination()
        .xml(|xml| xml_remove(xml, MESSAGE_HEADER, "<code value=\"vaccinations-1\"/>"))
        .json(|bundle| {
            take(header(bundle)["event"].as_object_mut().unwrap(), "code");
        });
    assert_refused(
        &without_code,
        &format!("{HEADER}.event.code"),
        ProblemKind::Missing,
    );

    let other_system = "https://example.org/CodeSystem/EventType";
    let wrong_system = vaccination()
        .xml(|xml| {
            xml_replace(
                xml,
                MESSAGE_HEADER,
                "<system value=\"https://fhir.nhs.uk/STU3/CodeSystem/EventType-1\"/>",
                &format!("<system value=\"{other_system}\"/>"),
            )
        })
        .json(|bundle| {
            let event = header(bundle)["event"].as_object_mut().unwrap();
            replace(event, "system", json!(other_system));
        });
    assert_refused(
        &wrong_system,
        &format!("{HEADER}.event.system"),
        ProblemKind::BadValue,
    );

    // The system may be left out.
    let without_system = vaccination()
        .xml(|xml| {
            xml_remove(
                xml,
                MESSAGE_HEADER,
                "<system value=\"https://fhir.nhs.uk/STU3/CodeSystem/EventType-1\"/>",
            )
        })
        .json(|bundle| {
            take(header(bundle)["event"].as_object_mut().unwrap(), "system");
        });
    assert_accepted(&without_system);
}

/// The example with its lifecycle code (MessageEventType) set.
fn with_lifecycle(name: &str, from: &str, to: &str) -> Example {
    Example::nems(name)
        .xml(|xml| {
            xml_replace(
                xml,
                MESSAGE_HEADER,
                &format!("<code value=\"{from}\"/>"),
                &format!("<code value=\"{to}\"/>"),
            )
        })
        .json(|bundle| {
            let coding = extension(header(bundle), LIFECYCLE_URL)["valueCodeableConcept"]["coding"]
                [0]
            .as_object_mut()
            .unwrap();
            assert_eq!(coding["code"], from);
            replace(coding, "code", json!(to));
        })
}

#[test]
fn a_lifecycle_the_event_type_does_not_allow_is_refused() {
    let expression = format!("{HEADER}.extension('{LIFECYCLE_URL}')");
    for (name, from, to) in [
        ("PDS-Change-Of-Address-ems-example", "new", "delete"),
        ("PDS-Death-Notification-formal-ems-example", "new", "update"),
        ("PDS-Record-Change", "new", "delete"),
    ] {
        assert_refused(
            &with_lifecycle(name, from, to),
            &expression,
            ProblemKind::BadValue,
        );
    }
    // Known codes only, and in lower case.
    assert_refused(
        &with_lifecycle("vaccinations-1-new", "new", "New"),
        &expression,
        ProblemKind::BadValue,
    );
    // Allowed: a vaccination may be new, update or delete.
    let updated = with_lifecycle("vaccinations-1-new", "new", "update");
    assert_eq!(assert_accepted(&updated).lifecycle, Lifecycle::Update);
    assert!(assert_accepted(&updated).warnings.is_empty());
}

#[test]
fn a_screening_update_is_accepted_with_a_warning_that_updates_are_sent_as_new() {
    let expression = format!("{HEADER}.extension('{LIFECYCLE_URL}')");
    for name in [
        "blood-spot-test-outcome-1-new",
        "newborn-hearing-1-new",
        "nipe-outcome-1-new",
    ] {
        let message = assert_accepted(&with_lifecycle(name, "new", "update"));
        assert_eq!(message.lifecycle, Lifecycle::Update, "{name}");
        assert_eq!(message.warnings.len(), 1, "{name}");
        assert_eq!(message.warnings[0].expression, expression, "{name}");
    }
}

#[test]
fn the_routing_nhs_number_must_be_present_and_of_the_nhs_number_system() {
    let routing = format!("{HEADER}.extension('{ROUTING_URL}').extension('nhsNumber')");

    let without = vaccination()
        .xml(|xml| xml_remove(xml, MESSAGE_HEADER, "<extension url=\"nhsNumber\">"))
        .json(|bundle| {
            let routing = extension(header(bundle), ROUTING_URL);
            let extensions = routing["extension"].as_array_mut().unwrap();
            extensions.retain(|extension| extension["url"] != "nhsNumber");
        });
    assert_refused(
        &without,
        &format!("{routing}.valueIdentifier.value"),
        ProblemKind::Missing,
    );

    let without_value = vaccination()
        .xml(|xml| {
            xml_remove(
                xml,
                MESSAGE_HEADER,
                &format!("<value value=\"{PATIENT_NHS_NUMBER}\"/>"),
            )
        })
        .json(|bundle| {
            take(routing_identifier(bundle), "value");
        });
    assert_refused(
        &without_value,
        &format!("{routing}.valueIdentifier.value"),
        ProblemKind::Missing,
    );

    let old_system = "http://fhir.nhs.net/Id/nhs-number";
    let wrong_system = vaccination()
        .xml(|xml| {
            xml_replace(
                xml,
                MESSAGE_HEADER,
                "<system value=\"https://fhir.nhs.uk/Id/nhs-number\"/>",
                &format!("<system value=\"{old_system}\"/>"),
            )
        })
        .json(|bundle| replace(routing_identifier(bundle), "system", json!(old_system)));
    assert_refused(
        &wrong_system,
        &format!("{routing}.valueIdentifier.system"),
        ProblemKind::BadValue,
    );
}

#[test]
fn a_birth_notification_for_a_mother_unknown_to_pds_has_no_routing_nhs_number() {
    let unknown_mother = birth_notification()
        .xml(|xml| xml_remove(xml, MESSAGE_HEADER, "<extension url=\"nhsNumber\">"))
        .json(|bundle| {
            let routing = extension(header(bundle), ROUTING_URL);
            let extensions = routing["extension"].as_array_mut().unwrap();
            extensions.retain(|extension| extension["url"] != "nhsNumber");
        });
    let message = assert_accepted(&unknown_mother);
    assert_eq!(message.event_type, EventType::PdsBirthNotification);
    assert_eq!(message.nhs_number, None);
}

#[test]
fn the_routing_birth_date_time_must_be_a_fhir_date_time_with_an_offset() {
    let expression =
        format!("{HEADER}.extension('{ROUTING_URL}').extension('birthDateTime').valueDateTime");
    let born = |value: &'static str| {
        vaccination()
            .xml(move |xml| {
                xml_replace(
                    xml,
                    MESSAGE_HEADER,
                    "<valueDateTime value=\"2017-10-02T12:00:00+00:00\"/>",
                    &format!("<valueDateTime value=\"{value}\"/>"),
                )
            })
            .json(move |bundle| {
                let routing = extension(header(bundle), ROUTING_URL);
                let birth = extension(routing, "birthDateTime");
                replace(birth, "valueDateTime", json!(value));
            })
    };
    for value in ["2017-10-02T12:00:00", "2017-13-02", "02/10/2017"] {
        assert_refused(&born(value), &expression, ProblemKind::BadValue);
    }
    let message = assert_accepted(&born("2017-10-02"));
    assert_eq!(
        message.birth_date.map(|date| date.to_string()).as_deref(),
        Some("2017-10-02")
    );
}

#[test]
fn the_message_header_needs_a_timestamp() {
    let without = vaccination()
        .xml(|xml| xml_remove(xml, MESSAGE_HEADER, "<timestamp"))
        .json(|bundle| {
            take(header(bundle), "timestamp");
        });
    assert_refused(
        &without,
        &format!("{HEADER}.timestamp"),
        ProblemKind::Missing,
    );
}

#[test]
fn the_header_meta_must_be_well_formed() {
    let last_updated = vaccination()
        .xml(|xml| {
            xml_replace(
                xml,
                MESSAGE_HEADER,
                "<lastUpdated value=\"2017-11-01T15:00:33+00:00\"/>",
                "<lastUpdated value=\"2017-11-01T15:00:33\"/>",
            )
        })
        .json(|bundle| {
            let meta = header(bundle)["meta"].as_object_mut().unwrap();
            replace(meta, "lastUpdated", json!("2017-11-01T15:00:33"));
        });
    assert_refused(
        &last_updated,
        &format!("{HEADER}.meta.lastUpdated"),
        ProblemKind::BadValue,
    );

    let version = |value: &'static str| {
        vaccination()
            .xml(move |xml| {
                xml_replace(
                    xml,
                    MESSAGE_HEADER,
                    "<lastUpdated value=",
                    &format!("<versionId value=\"{value}\"/><lastUpdated value="),
                )
            })
            .json(move |bundle| {
                let meta = header(bundle)["meta"].as_object_mut().unwrap();
                meta.insert("versionId".into(), json!(value));
            })
    };
    for value in ["one", "-1", "1.5"] {
        assert_refused(
            &version(value),
            &format!("{HEADER}.meta.versionId"),
            ProblemKind::BadValue,
        );
    }
    assert_eq!(assert_accepted(&version("7")).version_id, Some(7));
}

#[test]
fn the_focus_must_resolve_to_a_resource_of_the_event_types_focus_type() {
    let expression = format!("{HEADER}.focus.reference");
    let focus = "urn:uuid:076db265-8799-4dda-9418-e2a4d6d1c0d0";
    let refocused = |to: &'static str| {
        vaccination()
            .xml(move |xml| {
                xml_replace(
                    xml,
                    MESSAGE_HEADER,
                    &format!("<reference value=\"{focus}\"/>"),
                    &format!("<reference value=\"{to}\"/>"),
                )
            })
            .json(move |bundle| {
                let reference = first(header(bundle), "focus");
                replace(reference, "reference", json!(to));
            })
    };

    let without = vaccination()
        .xml(|xml| xml_remove(xml, MESSAGE_HEADER, "<focus"))
        .json(|bundle| {
            take(header(bundle), "focus");
        });
    assert_refused(&without, &expression, ProblemKind::Missing);

    // Not in the Bundle.
    assert_refused(
        &refocused("urn:uuid:00000000-0000-4000-8000-000000000000"),
        &expression,
        ProblemKind::BadValue,
    );
    // The Patient: a vaccination's focus is an Immunization.
    assert_refused(
        &refocused("urn:uuid:5d5845f3-398f-474b-af59-14882fc7b0ca"),
        &expression,
        ProblemKind::BadValue,
    );
    // By type and id, it resolves.
    let message = assert_accepted(&refocused(
        "Immunization/076db265-8799-4dda-9418-e2a4d6d1c0d0",
    ));
    assert_eq!(message.focus_type, "Immunization");
    assert_eq!(message.focus_identifiers[0].value, "abc1111");
}
