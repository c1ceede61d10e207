//! The child register: what the hub has learnt about each child from the
//! events it accepted (home postcode, GP practice, death, sensitivity), so
//! that generic subscriptions can be matched by area and practice.
//!
//! Each fact is kept with the moment and the event that stated it, and is
//! replaced only by a later statement. Events arrive late, twice and out of
//! order (a retry, a redelivered stream record); because every field is
//! ordered by (moment, event key), applying the same updates in any order,
//! any number of times, leaves the same record.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use time::{Date, OffsetDateTime};
use tracing::warn;

use crate::catalogue::EventType;
use crate::events::{StoredEvent, event_key};
use crate::fhir::Element;
use crate::fhir_time;
use crate::message::rules::birth_notification_baby;
use crate::message::{Encoding, EventMessage, MessageError, patient_nhs_number, resources};
use crate::nhs_number::NhsNumber;
use crate::reference::{Postcode, ods_code};

/// One fact and who stated it when. Stored and shown as
/// `{"value": …, "changedAt": "<RFC 3339, UTC>", "byEvent": "<event key>"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Field<T> {
    pub value: T,
    /// The stating event's `meta.lastUpdated`, else its `timestamp`.
    #[serde(with = "stored_instant")]
    pub changed_at: OffsetDateTime,
    /// The stating event's key (`<event type>/<message id>`).
    pub by_event: String,
}

impl<T> Field<T> {
    fn map<U>(self, convert: impl FnOnce(T) -> U) -> Field<U> {
        Field {
            value: convert(self.value),
            changed_at: self.changed_at,
            by_event: self.by_event,
        }
    }

    /// Whether a statement made at `at` by `event` supersedes this one. Equal
    /// moments are ordered by event key, so that two events stamped alike
    /// settle the same way whichever arrives first.
    fn superseded_by(&self, at: OffsetDateTime, event: &str) -> bool {
        (self.changed_at, self.by_event.as_str()) < (at, event)
    }
}

/// The PDS death notification status (CareConnect-DeathNotificationStatus-1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DeathStatus {
    /// 1: reported, not yet confirmed by a death certificate.
    Informal,
    /// 2: confirmed by the registration of the death.
    Formal,
    /// U: a death notified in error, now withdrawn. Kept as a status rather
    /// than as "no death" so that a late copy of the withdrawn notification
    /// cannot mark the child dead again.
    Removed,
}

impl DeathStatus {
    pub fn code(self) -> &'static str {
        match self {
            DeathStatus::Informal => "1",
            DeathStatus::Formal => "2",
            DeathStatus::Removed => "U",
        }
    }

    pub fn from_code(code: &str) -> Option<Self> {
        match code {
            "1" => Some(DeathStatus::Informal),
            "2" => Some(DeathStatus::Formal),
            "U" => Some(DeathStatus::Removed),
            _ => None,
        }
    }

    pub fn is_dead(self) -> bool {
        matches!(self, DeathStatus::Informal | DeathStatus::Formal)
    }
}

/// Stored as its code, as PDS states it.
impl Serialize for DeathStatus {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.code())
    }
}

impl<'de> Deserialize<'de> for DeathStatus {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let code = String::deserialize(deserializer)?;
        DeathStatus::from_code(&code)
            .ok_or_else(|| serde::de::Error::custom("not a death notification status (1, 2 or U)"))
    }
}

/// What the register holds about one child. A field is None until an event
/// states it; a None field is left out of the stored form. Reading a stored
/// record checks every value again (NHS number, date, postcode, ODS code,
/// death status), as constructing one does.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ChildRecord {
    pub nhs_number: NhsNumber,
    /// YYYY-MM-DD.
    #[serde(default, skip_serializing_if = "Option::is_none", with = "stored_date")]
    pub birth_date: Option<Field<Date>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub home_postcode: Option<Field<Postcode>>,
    /// The GP practice's ODS code, upper case; `null` once a change of GP
    /// without a practice (a de-registration) said the child has none.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "stored_practice::deserialize"
    )]
    pub gp_practice: Option<Field<Option<String>>>,
    /// Its code: `1`, `2` or `U`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub death: Option<Field<DeathStatus>>,
    /// None until an event says: the register does not invent a "not
    /// sensitive" that no event stated, since such a default would also
    /// outrank a late event that says the child is sensitive.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sensitive: Option<Field<bool>>,
}

/// A moment as RFC 3339 in UTC, read back with the same checks as a
/// message's instants.
mod stored_instant {
    use super::*;

    pub fn serialize<S: Serializer>(at: &OffsetDateTime, serializer: S) -> Result<S::Ok, S::Error> {
        let text = fhir_time::format_instant(*at);
        if text.is_empty() {
            return Err(serde::ser::Error::custom(
                "a moment outside years 1 to 9999",
            ));
        }
        serializer.serialize_str(&text)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<OffsetDateTime, D::Error> {
        let text = String::deserialize(deserializer)?;
        fhir_time::parse_instant(&text).map_err(serde::de::Error::custom)
    }
}

/// A date as YYYY-MM-DD (`time::Date` has no serde form of its own here).
mod stored_date {
    use super::*;

    const FORMAT: &[time::format_description::FormatItem<'static>] =
        time::macros::format_description!("[year]-[month]-[day]");

    struct Iso(Date);

    impl Serialize for Iso {
        fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
            let text = self.0.format(FORMAT).map_err(serde::ser::Error::custom)?;
            serializer.serialize_str(&text)
        }
    }

    impl<'de> Deserialize<'de> for Iso {
        fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
            let text = String::deserialize(deserializer)?;
            Date::parse(&text, FORMAT)
                .map(Iso)
                .map_err(|_| serde::de::Error::custom("not a date (YYYY-MM-DD)"))
        }
    }

    pub fn serialize<S: Serializer>(
        field: &Option<Field<Date>>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        field
            .clone()
            .map(|field| field.map(Iso))
            .serialize(serializer)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Option<Field<Date>>, D::Error> {
        let field = Option::<Field<Iso>>::deserialize(deserializer)?;
        Ok(field.map(|field| field.map(|Iso(date)| date)))
    }
}

/// A GP practice is read back only as a well-formed upper-case ODS code,
/// or null (no practice).
mod stored_practice {
    use super::*;

    struct Practice(String);

    impl<'de> Deserialize<'de> for Practice {
        fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
            let text = String::deserialize(deserializer)?;
            ods_code(&text)
                .filter(|code| *code == text)
                .map(Practice)
                .ok_or_else(|| serde::de::Error::custom("not an upper-case ODS code"))
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Option<Field<Option<String>>>, D::Error> {
        let field = Option::<Field<Option<Practice>>>::deserialize(deserializer)?;
        Ok(field.map(|field| field.map(|practice| practice.map(|Practice(code)| code))))
    }
}

impl ChildRecord {
    pub fn new(nhs_number: NhsNumber) -> Self {
        ChildRecord {
            nhs_number,
            birth_date: None,
            home_postcode: None,
            gp_practice: None,
            death: None,
            sensitive: None,
        }
    }

    pub fn is_sensitive(&self) -> bool {
        self.sensitive.as_ref().is_some_and(|field| field.value)
    }

    pub fn is_dead(&self) -> bool {
        self.death
            .as_ref()
            .is_some_and(|field| field.value.is_dead())
    }

    /// The practice the child is registered at. The outer None: no event
    /// has said; `Some(None)`: a de-registration said there is none.
    pub fn registration(&self) -> Option<Option<&str>> {
        self.gp_practice
            .as_ref()
            .map(|field| field.value.as_deref())
    }
}

/// What one event says about one child. A None field says nothing and
/// changes nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegisterUpdate {
    pub nhs_number: NhsNumber,
    pub event_key: String,
    /// The event's `meta.lastUpdated`, else its `timestamp`.
    pub at: OffsetDateTime,
    pub birth_date: Option<Date>,
    pub home_postcode: Option<Postcode>,
    /// Where the child lived before, as a change of address states it
    /// (address use `old`). Not stored: it tells dispatch which area the
    /// child left (see [`moved_from`]).
    pub previous_postcode: Option<Postcode>,
    /// `Some(None)`: a de-registration (a change of GP naming no practice).
    pub gp_practice: Option<Option<String>>,
    /// The practice a change of GP ends (the finished EpisodeOfCare's
    /// managing organisation). Not stored, like `previous_postcode`.
    pub previous_practice: Option<String>,
    pub death: Option<DeathStatus>,
    pub sensitive: Option<bool>,
}

impl RegisterUpdate {
    /// An update that says nothing yet.
    pub fn new(nhs_number: NhsNumber, event_key: impl Into<String>, at: OffsetDateTime) -> Self {
        RegisterUpdate {
            nhs_number,
            event_key: event_key.into(),
            at,
            birth_date: None,
            home_postcode: None,
            previous_postcode: None,
            gp_practice: None,
            previous_practice: None,
            death: None,
            sensitive: None,
        }
    }

    /// What a validated message says about its child, by event type:
    ///
    /// | Event | Updates |
    /// |---|---|
    /// | `pds-birth-notification-1` | creates the **baby's** record: NHS number, birth date, postcode of the baby's Patient entry (never the mother's) |
    /// | `pds-change-of-address-1` | home postcode; reports the `old` one |
    /// | `pds-change-of-gp-1` | GP practice, or none (a de-registration); reports the practice left |
    /// | `pds-death-notification-1` | death status: informal (1), formal (2), removed (U) |
    /// | `pds-record-change-1` | whatever its Patient carries: birth date, postcode, GP, death status |
    /// | any other | what its Patient entry carries: postcode, GP |
    ///
    /// Any message with a confidentiality label flags its child sensitive;
    /// no message read here clears the flag: only the demographics
    /// authority's unlabelled record change does, which [`updates_for`]
    /// knows from the stored event. None when the message names no child
    /// the register can key on.
    pub fn from_message(bundle: &Element, message: &EventMessage) -> Option<Self> {
        match message.event_type {
            EventType::PdsBirthNotification => Self::birth_notification(bundle, message),
            EventType::PdsChangeOfAddress => Self::change_of_address(message),
            EventType::PdsChangeOfGp => Self::change_of_gp(bundle, message),
            EventType::PdsDeathNotification => Self::death_notification(bundle, message),
            EventType::PdsRecordChange => Self::record_change(bundle, message),
            _ => Self::patient_entry(message),
        }
    }

    /// A birth notification routes on the mother (her NHS number, her
    /// Patient entry, her GP); the record it creates is the baby's, read
    /// from the Patient the mother's RelatedPerson points to. The baby's
    /// address is usually unlabelled, so an address with no `use` counts as
    /// home. A label on the mother flags the baby too: a sensitive mother's
    /// address is the baby's address.
    pub fn birth_notification(bundle: &Element, message: &EventMessage) -> Option<Self> {
        let baby = birth_notification_baby(bundle)?;
        let mut update = RegisterUpdate::new(
            patient_nhs_number(baby)?,
            event_key(message.event_type, &message.message_id),
            stated_at(message),
        );
        update.birth_date = baby
            .value_of("birthDate")
            .and_then(|value| fhir_time::parse_date(value).ok())
            .and_then(|value| value.date());
        update.home_postcode = home_postcode(baby);
        update.gp_practice = baby
            .children("generalPractitioner")
            .find_map(|reference| organisation_code(bundle, reference))
            .map(Some);
        update.sensitive = message.sensitive.then_some(true);
        Some(update)
    }

    /// What a labelled message says of its child as soon as it is accepted:
    /// the child is sensitive, as of the message's statement (never later
    /// than its arrival). Recorded before the event is stored, so that no
    /// event about the child accepted after it, dispatched in whatever
    /// order, can be delivered. None for an unlabelled message.
    pub fn label_of(message: &EventMessage, received_at: OffsetDateTime) -> Option<Self> {
        if !message.sensitive {
            return None;
        }
        let mut update = RegisterUpdate::new(
            message.subject?,
            event_key(message.event_type, &message.message_id),
            stated_at(message).min(received_at),
        );
        update.sensitive = Some(true);
        Some(update)
    }

    /// Sets the home postcode and reports the one the child moved from.
    pub fn change_of_address(message: &EventMessage) -> Option<Self> {
        let mut update = Self::pds_patient(message)?;
        update.previous_postcode = message
            .patient
            .as_ref()
            .filter(|_| update.is_about(message))
            .and_then(|patient| patient.previous_postcode.as_deref())
            .and_then(|postcode| Postcode::parse(postcode).ok());
        Some(update)
    }

    /// Sets the GP practice and reports the practice whose registration
    /// ended (the `finished` EpisodeOfCare's managing organisation). A
    /// Patient without `generalPractitioner` is a de-registration (NEMS
    /// pds_change_of_gp_1: "In a de-registration scenario where a new GP is
    /// not applied to the patients record, this element will not be
    /// included"): the child has no practice from then on.
    pub fn change_of_gp(bundle: &Element, message: &EventMessage) -> Option<Self> {
        let mut update = Self::pds_patient(message)?;
        let deregistered = message
            .patient
            .as_ref()
            .filter(|_| update.is_about(message))
            .is_some_and(|patient| !patient.has_gp);
        if deregistered {
            update.gp_practice = Some(None);
        }
        update.previous_practice = resources(bundle)
            .filter(|resource| resource.name == "EpisodeOfCare")
            .filter(|episode| episode.value_of("status") == Some("finished"))
            .filter_map(|episode| episode.child("managingOrganization"))
            .find_map(|reference| organisation_code(bundle, reference));
        Some(update)
    }

    /// Records the death status of the routed Patient entry.
    pub fn death_notification(bundle: &Element, message: &EventMessage) -> Option<Self> {
        let mut update = Self::pds_patient(message)?;
        update.death = routed_patient(bundle, message).and_then(death_status);
        Some(update)
    }

    /// A record change carries the child's PDS record: what it holds is
    /// stated, including a death status when there is one.
    pub fn record_change(bundle: &Element, message: &EventMessage) -> Option<Self> {
        Self::death_notification(bundle, message)
    }

    /// Any other event: what its Patient entry carries.
    pub fn patient_entry(message: &EventMessage) -> Option<Self> {
        let mut update = Self::from_patient_facts(message)?;
        update.sensitive = message.sensitive.then_some(true);
        Some(update)
    }

    /// The facts of a PDS event's Patient entry, PDS being the authority on
    /// birth date.
    fn pds_patient(message: &EventMessage) -> Option<Self> {
        let mut update = Self::from_patient_facts(message)?;
        if let Some(patient) = message
            .patient
            .as_ref()
            .filter(|_| update.is_about(message))
        {
            update.birth_date = patient.birth_date;
        }
        Some(update)
    }

    /// Postcode and GP of the message's Patient entry, keyed on the routing
    /// NHS number. A Patient entry with another valid NHS number is another
    /// person (validation refuses it; checked again here because a fact put
    /// on the wrong child misroutes every later event about them).
    fn from_patient_facts(message: &EventMessage) -> Option<Self> {
        let mut update = RegisterUpdate::new(
            message.nhs_number?,
            event_key(message.event_type, &message.message_id),
            stated_at(message),
        );
        if let Some(patient) = message
            .patient
            .as_ref()
            .filter(|_| update.is_about(message))
        {
            update.home_postcode = patient
                .home_postcode
                .as_deref()
                .and_then(|postcode| Postcode::parse(postcode).ok());
            update.gp_practice = patient.gp_ods.as_deref().and_then(ods_code).map(Some);
        }
        // Any publisher's label flags the child: failing safe, whoever
        // says so.
        update.sensitive = message.sensitive.then_some(true);
        Some(update)
    }

    fn is_about(&self, message: &EventMessage) -> bool {
        message
            .patient
            .as_ref()
            .and_then(|patient| patient.nhs_number)
            .is_none_or(|number| number == self.nhs_number)
    }
}

/// When an event states its facts: `meta.lastUpdated`, else `timestamp`.
fn stated_at(message: &EventMessage) -> OffsetDateTime {
    message.last_updated.unwrap_or(message.timestamp)
}

/// The routed Patient entry, else (when none carries the routing number) the
/// first: the same choice as [`EventMessage`]'s patient facts.
fn routed_patient<'a>(bundle: &'a Element<'a>, message: &EventMessage) -> Option<&'a Element<'a>> {
    let routing = message.nhs_number?;
    crate::message::routed_patient(bundle, Some(routing))
        .or_else(|| resources(bundle).find(|resource| resource.name == "Patient"))
        // A Patient with another valid NHS number is another person.
        .filter(|patient| patient_nhs_number(patient).is_none_or(|number| number == routing))
}

fn death_status(patient: &Element) -> Option<DeathStatus> {
    crate::message::rules::death_notification_code(patient).and_then(DeathStatus::from_code)
}

fn home_postcode(patient: &Element) -> Option<Postcode> {
    crate::message::home_postcode(patient).and_then(|postcode| Postcode::parse(postcode).ok())
}

/// The ODS code of a referenced organisation, when it is a well-formed one.
fn organisation_code(bundle: &Element, reference: &Element) -> Option<String> {
    crate::message::organisation_code(bundle, reference).and_then(|code| ods_code(&code))
}

/// Applies what one event says to the child's record (None: the child is not
/// on the register yet, and the update creates the record). Each field
/// changes only when the update is later than the statement it holds, so a
/// late event never overwrites newer data and a repeated event changes
/// nothing. An update about another child leaves the record as it was.
pub fn apply(record: Option<ChildRecord>, update: RegisterUpdate) -> ChildRecord {
    let mut record = match record {
        Some(record) if record.nhs_number != update.nhs_number => return record,
        Some(record) => record,
        None => ChildRecord::new(update.nhs_number),
    };
    let at = update.at;
    let event = update.event_key.as_str();
    merge(&mut record.birth_date, update.birth_date, at, event);
    merge(&mut record.home_postcode, update.home_postcode, at, event);
    merge(&mut record.gp_practice, update.gp_practice, at, event);
    merge(&mut record.death, update.death, at, event);
    merge_sensitive(&mut record.sensitive, update.sensitive, at, event);
    record
}

/// The sensitive flag is the latest statement, as any other fact, except
/// that of two statements made at the same moment the flag wins: failing
/// safe, whichever arrives first.
fn merge_sensitive(
    slot: &mut Option<Field<bool>>,
    value: Option<bool>,
    at: OffsetDateTime,
    event: &str,
) {
    let Some(value) = value else {
        return;
    };
    let newer = slot.as_ref().is_none_or(|field| {
        (field.changed_at, field.value, field.by_event.as_str()) < (at, value, event)
    });
    if newer {
        *slot = Some(Field {
            value,
            changed_at: at,
            by_event: event.to_owned(),
        });
    }
}

fn merge<T>(slot: &mut Option<Field<T>>, value: Option<T>, at: OffsetDateTime, event: &str) {
    let Some(value) = value else {
        return;
    };
    if slot
        .as_ref()
        .is_none_or(|field| field.superseded_by(at, event))
    {
        *slot = Some(Field {
            value,
            changed_at: at,
            by_event: event.to_owned(),
        });
    }
}

/// Where a child moved from, for matching the subscribers of the place left.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Moved {
    pub from_postcode: Option<Postcode>,
    pub from_practice: Option<String>,
}

/// The postcode and practice an update moves the child away from: what the
/// message states (the `old` address, the finished GP registration), else
/// what the register held before, when the update replaces it.
pub fn moved_from(before: Option<&ChildRecord>, update: &RegisterUpdate) -> Moved {
    let before = before.filter(|record| record.nhs_number == update.nhs_number);
    fn replaced<T: Clone + PartialEq>(
        held: Option<&Field<T>>,
        new: Option<&T>,
        update: &RegisterUpdate,
    ) -> Option<T> {
        let held = held?;
        let new = new?;
        (held.value != *new && held.superseded_by(update.at, &update.event_key))
            .then(|| held.value.clone())
    }
    Moved {
        from_postcode: update.previous_postcode.clone().or_else(|| {
            replaced(
                before.and_then(|record| record.home_postcode.as_ref()),
                update.home_postcode.as_ref(),
                update,
            )
        }),
        from_practice: update.previous_practice.clone().or_else(|| {
            replaced(
                before.and_then(|record| record.gp_practice.as_ref()),
                update.gp_practice.as_ref(),
                update,
            )
            .flatten()
        }),
    }
}

// ---------------------------------------------------------------------------
// Recording events in the stored register

/// What recording one event did to its child's record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recorded {
    /// The record as read (None: the child was not on the register).
    pub before: Option<ChildRecord>,
    /// The record with the event applied: what the register holds now.
    pub after: ChildRecord,
    /// Where the event moves the child from (see [`moved_from`]).
    pub moved: Moved,
}

/// What a stored event says about the child register: the update of
/// [`RegisterUpdate::from_message`] (a birth notification's is the baby's,
/// any other event's the routed patient's), read again from the payload as
/// it was published. Empty when the event names no child the register can
/// key on.
///
/// The payload was validated when it was published, so a payload that no
/// longer reads (a stricter rule since, an unknown content type) says
/// nothing: retrying could not change that, and failing would hold up every
/// later event of the stream behind it. It is logged, without content.
pub fn updates_for(event: &StoredEvent) -> Vec<RegisterUpdate> {
    let read = Encoding::from_content_type(&event.content_type)
        .ok_or_else(|| "the stored content type is not a FHIR encoding".to_owned())
        .and_then(|encoding| {
            updates_in(&event.payload, encoding).map_err(|error| match error {
                // The element at fault, never the value.
                MessageError::Invalid { expression, .. } => format!("invalid at {expression}"),
                MessageError::NotABundle { .. } => "not a Bundle".to_owned(),
                MessageError::Unreadable(_) => "unreadable".to_owned(),
            })
        });
    let mut updates = read.unwrap_or_else(|problem| {
        warn!(
            event_key = %event.event_key,
            problem = %problem,
            "the stored event cannot be read again: the register is not updated"
        );
        Vec::new()
    });
    // A statement cannot be newer than its arrival: a publisher's clock set
    // ahead must not make its facts outrank every later event.
    if let Ok(received) = fhir_time::parse_instant(&event.received_at) {
        for update in &mut updates {
            update.at = update.at.min(received);
        }
    }
    // The demographics authority's unlabelled record change says the
    // routed child is no longer sensitive; no other event can say so.
    if event.clears_sensitivity {
        for update in &mut updates {
            if update.sensitive.is_none() && Some(update.nhs_number) == event.nhs_number {
                update.sensitive = Some(false);
            }
        }
    }
    updates
}

/// What an event message says about the child register, from its text in
/// its encoding (the one place that turns a payload into register updates).
pub fn updates_in(payload: &str, encoding: Encoding) -> Result<Vec<RegisterUpdate>, MessageError> {
    let bundle = encoding.read(payload)?;
    let message = EventMessage::from_bundle(&bundle)?;
    Ok(RegisterUpdate::from_message(&bundle, &message)
        .into_iter()
        .collect())
}
