//! Renders a generated event as a FHIR XML message from the NEMS example it
//! is based on (events/nems, events/derived, events/nems-spec), changing
//! only ids, NHS numbers, dates, postcodes, practice codes, the responsible
//! organisation and labels, and leaving out the optional parts a variant
//! lacks (an `old` address, a finished registration, a new practice).

use std::collections::HashMap;
use std::sync::OnceLock;

use e2e_tests::fixture;
use e2e_tests::routing_model::{Event, EventKind, Lifecycle};
use time::Date;
use time::macros::date;

use super::generate::{Published, Publisher};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Template {
    BirthWithMother,
    BirthWithoutMother,
    ChangeOfAddress,
    ChangeOfGp,
    DeathFormal,
    DeathInformal,
    RecordChange,
    ProfessionalContactsNew,
    ProfessionalContactsDelete,
    BloodSpotNew,
    BloodSpotUpdate,
    BloodSpotDelete,
    NewbornHearingNew,
    NewbornHearingDelete,
    NipeNew,
    NipeUpdate,
    VaccinationsNew,
    VaccinationsUpdate,
    VaccinationsDelete,
}

use Template::*;

impl Template {
    fn file(self) -> &'static str {
        match self {
            BirthWithMother => "derived/BirthNotificationWithMother-valid-mother.xml",
            BirthWithoutMother => "nems-spec/BirthNotificationWithoutMother.xml",
            ChangeOfAddress => "nems/PDS-Change-Of-Address-ems-example.xml",
            ChangeOfGp => "nems/PDS-Change-Of-GP-ems-example.xml",
            DeathFormal => "nems/PDS-Death-Notification-formal-ems-example.xml",
            DeathInformal => "nems/PDS-Death-Notification-informal-ems-example.xml",
            RecordChange => "nems/PDS-Record-Change.xml",
            ProfessionalContactsNew => "nems/Professional-Contacts-1-new.xml",
            ProfessionalContactsDelete => "nems/Professional-Contacts-1-delete.xml",
            BloodSpotNew => "nems/blood-spot-test-outcome-1-new.xml",
            BloodSpotUpdate => "nems/blood-spot-test-outcome-1-update.xml",
            BloodSpotDelete => "nems/blood-spot-test-outcome-1-delete.xml",
            NewbornHearingNew => "nems/newborn-hearing-1-new.xml",
            NewbornHearingDelete => "nems/newborn-hearing-1-delete.xml",
            NipeNew => "nems/nipe-outcome-1-new.xml",
            NipeUpdate => "nems/nipe-outcome-1-update.xml",
            VaccinationsNew => "nems/vaccinations-1-new.xml",
            VaccinationsUpdate => "nems/vaccinations-1-update.xml",
            VaccinationsDelete => "nems/vaccinations-1-delete.xml",
        }
    }

    pub fn kind(self) -> EventKind {
        match self {
            BirthWithMother | BirthWithoutMother => EventKind::Birth,
            ChangeOfAddress => EventKind::ChangeOfAddress,
            ChangeOfGp => EventKind::ChangeOfGp,
            DeathFormal | DeathInformal => EventKind::Death,
            RecordChange => EventKind::RecordChange,
            ProfessionalContactsNew | ProfessionalContactsDelete => EventKind::ProfessionalContacts,
            BloodSpotNew | BloodSpotUpdate | BloodSpotDelete => EventKind::BloodSpot,
            NewbornHearingNew | NewbornHearingDelete => EventKind::NewbornHearing,
            NipeNew | NipeUpdate => EventKind::Nipe,
            VaccinationsNew | VaccinationsUpdate | VaccinationsDelete => EventKind::Vaccinations,
        }
    }

    /// As the example says it (screening updates are sent as `new`).
    pub fn lifecycle(self) -> Lifecycle {
        match self {
            ProfessionalContactsDelete
            | BloodSpotDelete
            | NewbornHearingDelete
            | VaccinationsDelete => Lifecycle::Delete,
            VaccinationsUpdate => Lifecycle::Update,
            _ => Lifecycle::New,
        }
    }

    pub fn is_first_version(self) -> bool {
        matches!(
            self,
            ProfessionalContactsNew | BloodSpotNew | NewbornHearingNew | NipeNew | VaccinationsNew
        )
    }

    pub fn is_clinical(self) -> bool {
        !matches!(
            self.kind(),
            EventKind::Birth
                | EventKind::ChangeOfAddress
                | EventKind::ChangeOfGp
                | EventKind::Death
                | EventKind::RecordChange
        )
    }

    /// The record change example has no MessageHeader.meta.
    pub fn has_last_updated(self) -> bool {
        self != RecordChange
    }

    /// MessageHeader.meta.versionId as the example has it.
    pub fn version_id(self) -> Option<u64> {
        matches!(
            self,
            BirthWithMother
                | BirthWithoutMother
                | ChangeOfAddress
                | ChangeOfGp
                | DeathFormal
                | DeathInformal
        )
        .then_some(1)
    }

    pub fn has_focus_identifier(self) -> bool {
        self.is_clinical()
    }

    /// The screening deletes carry no Patient entry.
    pub fn has_patient(self) -> bool {
        !matches!(self, BloodSpotDelete | NewbornHearingDelete)
    }

    /// The blood spot delete has no routing birthDateTime.
    pub fn has_routing_birth_date(self) -> bool {
        self != BloodSpotDelete
    }

    /// The routing birthDateTime of the birth without the mother (hers, as
    /// the example states it): the model must not take it for the baby's.
    pub fn routing_birth_date(self) -> Option<Date> {
        (self == BirthWithoutMother).then_some(date!(1990 - 09 - 09))
    }

    fn text(self) -> &'static str {
        static TEXTS: OnceLock<HashMap<Template, String>> = OnceLock::new();
        let texts = TEXTS.get_or_init(|| {
            [
                BirthWithMother,
                BirthWithoutMother,
                ChangeOfAddress,
                ChangeOfGp,
                DeathFormal,
                DeathInformal,
                RecordChange,
                ProfessionalContactsNew,
                ProfessionalContactsDelete,
                BloodSpotNew,
                BloodSpotUpdate,
                BloodSpotDelete,
                NewbornHearingNew,
                NewbornHearingDelete,
                NipeNew,
                NipeUpdate,
                VaccinationsNew,
                VaccinationsUpdate,
                VaccinationsDelete,
            ]
            .into_iter()
            .map(|template| (template, fixture(template.file())))
            .collect()
        });
        texts[&self].as_str()
    }
}

const ODS_URL: &str = "https://directory.spineservices.nhs.uk/STU3/Organization/";

/// The position of `needle` at or after `from`; the template must have it.
fn find(body: &str, from: usize, needle: &str) -> usize {
    body[from..]
        .find(needle)
        .map(|at| from + at)
        .unwrap_or_else(|| panic!("the template lacks {needle:?} after byte {from}"))
}

/// `body` with the attribute value that follows the first `open` (ending in
/// `value="`) at or after `from` set to `value`.
fn set_after(body: &str, from: usize, open: &str, value: &str) -> String {
    let start = find(body, from, open) + open.len();
    let end = find(body, start, "\"");
    format!("{}{value}{}", &body[..start], &body[end..])
}

fn set_first(body: &str, open: &str, value: &str) -> String {
    set_after(body, 0, open, value)
}

/// The value of the first `open` attribute at or after `from`.
fn value_after<'a>(body: &'a str, from: usize, open: &str) -> &'a str {
    let start = find(body, from, open) + open.len();
    &body[start..find(body, start, "\"")]
}

/// `body` without the element that starts with the last `open` before
/// `inside` and ends with the first `close` after it.
fn remove_around(body: &str, inside: usize, open: &str, close: &str) -> String {
    let start = body[..inside]
        .rfind(open)
        .unwrap_or_else(|| panic!("no {open:?} before byte {inside}"));
    let end = find(body, inside, close) + close.len();
    format!("{}{}", &body[..start], &body[end..])
}

/// Applies `edit` to the text of the `nth` Patient resource.
fn edit_patient(body: &str, nth: usize, edit: impl FnOnce(&str) -> String) -> String {
    let mut start = 0;
    for _ in 0..=nth {
        start = find(body, start, "<Patient>") + 1;
    }
    start -= 1;
    let end = find(body, start, "</Patient>") + "</Patient>".len();
    format!(
        "{}{}{}",
        &body[..start],
        edit(&body[start..end]),
        &body[end..]
    )
}

fn date_time(date: Date, time_of_day: &str) -> String {
    format!("{date}T{time_of_day}+00:00")
}

fn instant(moment: time::OffsetDateTime) -> String {
    moment
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
        .replace('Z', "+00:00")
}

const SECURITY: [&str; 3] = ["R", "V", "REDACTED"];

/// A confidentiality label in the Patient's meta.
fn labelled(patient: &str, code: &str) -> String {
    let at = find(patient, 0, "</meta>");
    format!(
        "{}<security><system value=\"http://hl7.org/fhir/v3/Confidentiality\"/><code value=\"{code}\"/></security>{}",
        &patient[..at],
        &patient[at..]
    )
}

/// The Patient's NHS number, birth date, home postcode, label.
fn patient_facts(
    patient: &str,
    nhs_number: Option<&str>,
    born: Option<Date>,
    postcode: Option<&str>,
    label: Option<&str>,
) -> String {
    let mut patient = patient.to_owned();
    if let Some(nhs_number) = nhs_number {
        let system = find(&patient, 0, "https://fhir.nhs.uk/Id/nhs-number\"/>");
        patient = set_after(&patient, system, "<value value=\"", nhs_number);
    }
    if let Some(born) = born {
        // The generic requirements make Patient.birthDate 1..1; the death
        // notification examples lack it.
        if !patient.contains("<birthDate") {
            let at = find(&patient, 0, "<gender ");
            let at = find(&patient, at, "/>") + 2;
            patient = format!(
                "{}<birthDate value=\"\"/>{}",
                &patient[..at],
                &patient[at..]
            );
        }
        patient = set_first(&patient, "<birthDate value=\"", &born.to_string());
        if let Some(at) = patient.find("patient-birthTime") {
            patient = set_after(
                &patient,
                at,
                "<valueDateTime value=\"",
                &date_time(born, "08:00:00"),
            );
        }
    }
    if let Some(postcode) = postcode {
        let home = patient.find("<use value=\"home\"/>").unwrap_or(0);
        patient = set_after(&patient, home, "<postalCode value=\"", postcode);
    }
    if let Some(code) = label {
        patient = labelled(&patient, code);
    }
    patient
}

/// The message body of a generated event.
pub fn render(published: &Published) -> String {
    let event = &published.event;
    let template = published.template;
    let label = |seed: &str| SECURITY[seed.len() % SECURITY.len()];
    let mut body = template.text().to_owned();

    // MessageHeader: id (and every reference to it), times, routing.
    let header = find(&body, 0, "<MessageHeader>");
    let old_id = value_after(&body, header, "<id value=\"").to_owned();
    body = body.replace(&old_id, &event.message_id);
    if let Some(last_updated) = event.last_updated {
        body = set_after(
            &body,
            header,
            "<lastUpdated value=\"",
            &instant(last_updated),
        );
    }
    body = set_after(
        &body,
        header,
        "<timestamp value=\"",
        &instant(event.timestamp),
    );
    if let Some(routing) = &event.routing_nhs_number {
        let at = find(&body, header, "<extension url=\"nhsNumber\">");
        body = set_after(&body, at, "<value value=\"", routing);
    }
    if let Some(born) = event.routing_birth_date {
        let at = find(&body, header, "<extension url=\"birthDateTime\">");
        let old = value_after(&body, at, "<valueDateTime value=\"");
        let value = if old.contains('T') {
            date_time(born, "12:00:00")
        } else {
            born.to_string()
        };
        body = set_after(&body, at, "<valueDateTime value=\"", &value);
    }

    // The child's Patient entry: the baby's in a birth (after the mother's).
    if let Some(patient) = &event.patient {
        let nth = usize::from(event.kind == EventKind::Birth);
        let label = patient.labelled.then(|| label(&event.message_id));
        body = edit_patient(&body, nth, |text| {
            let mut text = patient_facts(
                text,
                Some(&patient.nhs_number),
                patient.birth_date,
                patient.home_postcode.as_deref(),
                label,
            );
            match (template, &patient.gp) {
                (ChangeOfGp, None) => {
                    let at = find(&text, 0, "<generalPractitioner>");
                    text = remove_around(
                        &text,
                        at + "<generalPractitioner>".len(),
                        "<generalPractitioner>",
                        "</generalPractitioner>",
                    );
                }
                (ChangeOfGp, Some(_)) => {}
                (_, Some(gp)) => {
                    let at = find(&text, 0, "</Patient>");
                    text = format!(
                        "{}<generalPractitioner><reference value=\"{ODS_URL}{gp}\"/></generalPractitioner>{}",
                        &text[..at],
                        &text[at..]
                    );
                }
                (_, None) => {}
            }
            if template == ChangeOfAddress {
                match &event.old_postcode {
                    Some(old) => {
                        let at = find(&text, 0, "<use value=\"old\"/>");
                        text = set_after(&text, at, "<postalCode value=\"", old);
                    }
                    None => {
                        let at = find(&text, 0, "<use value=\"old\"/>");
                        text = remove_around(&text, at, "<address>", "</address>");
                    }
                }
            }
            text
        });
    }

    // The practices of a change of GP: the new one's Organization, the
    // finished registration's.
    if template == ChangeOfGp {
        // Through placeholders: either code may be the other's replacement.
        body = body
            .replace("<value value=\"B86056\"/>", "@NEW-GP@")
            .replace("<value value=\"B85612\"/>", "@PREVIOUS-GP@");
        let code = |code: &str| format!("<value value=\"{code}\"/>");
        if let Some(Some(gp)) = event.patient.as_ref().map(|patient| &patient.gp) {
            body = body.replace("@NEW-GP@", &code(gp));
        }
        body = body.replace("@NEW-GP@", &code("B86056"));
        match &event.previous_practice {
            Some(previous) => body = body.replace("@PREVIOUS-GP@", &code(previous)),
            None => {
                let at = find(&body, 0, "<EpisodeOfCare>");
                body = remove_around(&body, at, "<entry>", "</entry>");
                body = body.replace("@PREVIOUS-GP@", &code("B85612"));
            }
        }
    }

    // The mother's Patient entry of a birth.
    if let Some(mother) = &event.mother {
        let label = mother
            .labelled
            .then(|| label(&format!("{}m", event.message_id)));
        body = edit_patient(&body, 0, |text| {
            let mut text = patient_facts(
                text,
                mother.nhs_number.as_deref(),
                event
                    .routing_birth_date
                    .filter(|_| mother.nhs_number.is_some()),
                None,
                label,
            );
            let at = find(&text, 0, "<generalPractitioner>");
            match &mother.gp {
                Some(gp) => {
                    let reference = value_after(&text, at, "<reference value=\"").to_owned();
                    text = text.replace(&reference, &format!("{ODS_URL}{gp}"));
                }
                None => {
                    text = remove_around(
                        &text,
                        at + "<generalPractitioner>".len(),
                        "<generalPractitioner>",
                        "</generalPractitioner>",
                    );
                }
            }
            text
        });
    }

    if let Some(identifier) = &event.focus_identifier
        && let Some((_, value)) = identifier.split_once('|')
        && template.is_clinical()
    {
        body = body.replace("abc1111", value);
    }

    // Who is responsible: another system's record change names itself; the
    // birth without the mother names the demographics service by its
    // directory address (the example's reference resolves to no entry).
    if published.publisher == Publisher::OtherDemographics {
        body = body.replace(&format!("{ODS_URL}X26"), &format!("{ODS_URL}RX1"));
    }
    if template == BirthWithoutMother {
        body = body.replace(
            "urn:uuid:a324be21-5e41-4d83-9f1c-29f19ae3a2d1",
            &format!("{ODS_URL}X26"),
        );
    }
    body
}

/// The event as one line, for a failing case's story.
pub fn describe(published: &Published) -> String {
    let event: &Event = &published.event;
    let mut line = format!(
        "{} {} {} id={} arrived={} ts={} lu={}",
        event.kind.code(),
        event.lifecycle.code(),
        match published.publisher {
            Publisher::Demographics => "by=X26(authority)",
            Publisher::OtherDemographics => "by=RX1",
            Publisher::Clinical => "by=clinical",
        },
        event.message_id,
        instant(event.received_at),
        instant(event.timestamp),
        event
            .last_updated
            .map(instant)
            .unwrap_or_else(|| "-".into()),
    );
    if let Some(routing) = &event.routing_nhs_number {
        line.push_str(&format!(" routing={routing}"));
    }
    if let Some(patient) = &event.patient {
        line.push_str(&format!(
            " patient={} born={} postcode={} gp={}{}",
            patient.nhs_number,
            patient
                .birth_date
                .map(|d| d.to_string())
                .unwrap_or_else(|| "-".into()),
            patient.home_postcode.as_deref().unwrap_or("-"),
            patient.gp.as_deref().unwrap_or("-"),
            if patient.labelled { " LABELLED" } else { "" },
        ));
    } else {
        line.push_str(" (no Patient entry)");
    }
    if let Some(mother) = &event.mother {
        line.push_str(&format!(
            " mother={} mother-gp={}{}",
            mother.nhs_number.as_deref().unwrap_or("-"),
            mother.gp.as_deref().unwrap_or("-"),
            if mother.labelled {
                " MOTHER-LABELLED"
            } else {
                ""
            },
        ));
    }
    if event.kind == EventKind::ChangeOfAddress {
        line.push_str(&format!(
            " old={}",
            event.old_postcode.as_deref().unwrap_or("-")
        ));
    }
    if event.kind == EventKind::ChangeOfGp {
        line.push_str(&format!(
            " previous-gp={}",
            event.previous_practice.as_deref().unwrap_or("-")
        ));
    }
    if let Some(focus) = &event.focus_identifier {
        line.push_str(&format!(" focus={focus}"));
    }
    if published.duplicate {
        line.push_str(" DUPLICATE");
    }
    line
}
