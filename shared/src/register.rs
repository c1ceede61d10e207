//! The child register: what the hub has learnt about each child from the
//! events it accepted (home postcode, GP practice, death, sensitivity), so
//! that generic subscriptions can be matched by area and practice.
//!
//! Each fact is kept with the moment and the event that stated it, and is
//! replaced only by a later statement. Events arrive late, twice and out of
//! order (a retry, a redelivered stream record); because every field is
//! ordered by (moment, event key), applying the same updates in any order,
//! any number of times, leaves the same record.

use time::{Date, OffsetDateTime};

use crate::catalogue::EventType;
use crate::events::event_key;
use crate::fhir::Element;
use crate::fhir_time;
use crate::message::{EventMessage, patient_nhs_number, resources};
use crate::nhs_number::NhsNumber;
use crate::reference::{Postcode, ods_code};
use crate::rules::birth_notification_baby;

/// One fact and who stated it when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Field<T> {
    pub value: T,
    /// The stating event's `meta.lastUpdated`, else its `timestamp`.
    pub changed_at: OffsetDateTime,
    /// The stating event's key (`<event type>/<message id>`).
    pub by_event: String,
}

impl<T> Field<T> {
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

/// What the register holds about one child. A field is None until an event
/// states it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChildRecord {
    pub nhs_number: NhsNumber,
    pub birth_date: Option<Field<Date>>,
    pub home_postcode: Option<Field<Postcode>>,
    /// The GP practice's ODS code, upper case.
    pub gp_practice: Option<Field<String>>,
    pub death: Option<Field<DeathStatus>>,
    /// None until an event says: the register does not invent a "not
    /// sensitive" that no event stated, since such a default would also
    /// outrank a late event that says the child is sensitive.
    pub sensitive: Option<Field<bool>>,
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
    pub gp_practice: Option<String>,
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
    /// | `pds-change-of-gp-1` | GP practice; reports the practice left |
    /// | `pds-death-notification-1` | death status: informal (1), formal (2), removed (U) |
    /// | `pds-record-change-1` | whatever its Patient carries: birth date, postcode, GP, death status |
    /// | any other | what its Patient entry carries: postcode, GP, sensitive (set only) |
    ///
    /// PDS events state sensitivity either way; other publishers can only
    /// raise it (see [`RegisterUpdate::patient_entry`]). None when the
    /// message names no child the register can key on.
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
    /// home. Sensitivity is the message's: a sensitive mother's address is
    /// the baby's address.
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
            .find_map(|reference| organisation_code(bundle, reference));
        update.sensitive = Some(message.sensitive);
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
    /// ended (the `finished` EpisodeOfCare's managing organisation).
    pub fn change_of_gp(bundle: &Element, message: &EventMessage) -> Option<Self> {
        let mut update = Self::pds_patient(message)?;
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

    /// Any other event: what its Patient entry carries. Such publishers are
    /// not the authority on sensitivity and their Patient entries often carry
    /// no security label at all, so their messages can mark a child
    /// sensitive but never clear the flag: only a PDS event can.
    pub fn patient_entry(message: &EventMessage) -> Option<Self> {
        let mut update = Self::from_patient_facts(message)?;
        update.sensitive = message.sensitive.then_some(true);
        Some(update)
    }

    /// The facts of a PDS event's Patient entry, PDS being the authority on
    /// birth date and sensitivity.
    fn pds_patient(message: &EventMessage) -> Option<Self> {
        let mut update = Self::from_patient_facts(message)?;
        if let Some(patient) = message
            .patient
            .as_ref()
            .filter(|_| update.is_about(message))
        {
            update.birth_date = patient.birth_date;
            update.sensitive = Some(message.sensitive);
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
            update.gp_practice = patient.gp_ods.as_deref().and_then(ods_code);
        }
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
    crate::rules::death_notification_code(patient).and_then(DeathStatus::from_code)
}

/// The postcode of the Patient's home address: use `home`, else the first
/// address without a use.
fn home_postcode(patient: &Element) -> Option<Postcode> {
    let addresses = || patient.children("address");
    addresses()
        .find(|address| address.value_of("use") == Some("home"))
        .or_else(|| addresses().find(|address| address.value_of("use").is_none()))
        .and_then(|address| address.value_of("postalCode"))
        .and_then(|postcode| Postcode::parse(postcode).ok())
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
    merge(&mut record.sensitive, update.sensitive, at, event);
    record
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
        }),
    }
}
