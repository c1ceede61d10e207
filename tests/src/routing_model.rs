//! A reference model of routing: who receives which event, written from the
//! specification (the NEMS subscription and event pages under
//! /work/nems-spec/pages, docs/subscriptions.md) and the project's decisions
//! 1-5, not from the hub's code. It shares nothing with the hub's dispatch,
//! register, generic or criteria modules: plain data in, the set of
//! deliveries out, by linear scans. tests/tests/routing_model compares it
//! with the hub on generated worlds and event streams.
//!
//! Sources are cited as `[spec page: "phrase"]`, `[docs: section]` or
//! `[decision N]`; docs/subscriptions.md, "The routing rules, and where each
//! comes from", lists them all.

use std::collections::{BTreeMap, BTreeSet};

use time::{Date, OffsetDateTime};

/// The event types of the catalogue, by their MessageHeader.event code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum EventKind {
    Birth,
    ChangeOfAddress,
    ChangeOfGp,
    Death,
    RecordChange,
    BloodSpot,
    NewbornHearing,
    Nipe,
    ProfessionalContacts,
    Vaccinations,
}

impl EventKind {
    pub const ALL: [EventKind; 10] = [
        EventKind::Birth,
        EventKind::ChangeOfAddress,
        EventKind::ChangeOfGp,
        EventKind::Death,
        EventKind::RecordChange,
        EventKind::BloodSpot,
        EventKind::NewbornHearing,
        EventKind::Nipe,
        EventKind::ProfessionalContacts,
        EventKind::Vaccinations,
    ];

    pub fn code(self) -> &'static str {
        match self {
            EventKind::Birth => "pds-birth-notification-1",
            EventKind::ChangeOfAddress => "pds-change-of-address-1",
            EventKind::ChangeOfGp => "pds-change-of-gp-1",
            EventKind::Death => "pds-death-notification-1",
            EventKind::RecordChange => "pds-record-change-1",
            EventKind::BloodSpot => "blood-spot-test-outcome-1",
            EventKind::NewbornHearing => "newborn-hearing-1",
            EventKind::Nipe => "nipe-outcome-1",
            EventKind::ProfessionalContacts => "professional-contacts-1",
            EventKind::Vaccinations => "vaccinations-1",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lifecycle {
    New,
    Update,
    Delete,
}

impl Lifecycle {
    pub fn code(self) -> &'static str {
        match self {
            Lifecycle::New => "new",
            Lifecycle::Update => "update",
            Lifecycle::Delete => "delete",
        }
    }
}

// ---------------------------------------------------------------------------
// Reference data
// ---------------------------------------------------------------------------

/// Where a postcode lies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PostcodeArea {
    pub postcode: &'static str,
    pub local_authority: &'static str,
    /// Outside England the ONS lookup has no sub-ICB location.
    pub sub_icb: Option<&'static str>,
    pub country: &'static str,
}

/// Postcode -> areas, practice -> sub-ICB location.
#[derive(Debug, Clone)]
pub struct Reference {
    pub postcodes: Vec<PostcodeArea>,
    pub practices: Vec<(&'static str, &'static str)>,
}

impl Reference {
    /// The sample of events/reference, as its README's tables state it
    /// (written from the README, not read through the hub's loader, so that
    /// a loader defect shows as a disagreement).
    pub fn sample() -> Self {
        let area = |postcode, local_authority, sub_icb, country| PostcodeArea {
            postcode,
            local_authority,
            sub_icb,
            country,
        };
        const ENGLAND: &str = "E92000001";
        Reference {
            postcodes: vec![
                area("LS17 7DF", "E08000035", Some("15F"), ENGLAND),
                area("LS17 8AA", "E08000035", Some("15F"), ENGLAND),
                area("LS17 7DZ", "E08000035", Some("15F"), ENGLAND),
                area("WF14 0BQ", "E08000034", Some("X2C4Y"), ENGLAND),
                area("WF15 6QH", "E08000034", Some("X2C4Y"), ENGLAND),
                area("WF16 9AA", "E08000034", Some("X2C4Y"), ENGLAND),
                area("DH1 2TF", "E06000047", Some("84H"), ENGLAND),
                area("DH1 5TW", "E06000047", Some("84H"), ENGLAND),
                area("DH6 2TH", "E06000047", Some("84H"), ENGLAND),
                area("CF10 1EP", "W06000015", None, "W92000004"),
                area("EH1 1YZ", "S12000036", None, "S92000003"),
                area("BT1 5GS", "N09000003", None, "N92000002"),
                area("IM1 1AD", "M99999999", None, "M83000003"),
                area("GY1 1AA", "L99999999", None, "L93000001"),
            ],
            practices: vec![
                ("A83627", "84H"),
                ("B86056", "15F"),
                ("B85612", "X2C4Y"),
                ("B86999", "15F"),
                ("W97999", "7A4"),
            ],
        }
    }

    fn postcode(&self, postcode: &str) -> Option<&PostcodeArea> {
        self.postcodes.iter().find(|area| area.postcode == postcode)
    }

    fn practice_sub_icb(&self, practice: &str) -> Option<&'static str> {
        self.practices
            .iter()
            .find(|(code, _)| *code == practice)
            .map(|(_, sub_icb)| *sub_icb)
    }
}

// ---------------------------------------------------------------------------
// Subscriptions
// ---------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rule {
    GpGpGp,
    ChoGpCcg,
    ChoPostcodeCcg,
    UhvPostcodeLacode,
    CountryCode,
}

impl Rule {
    pub const ALL: [Rule; 5] = [
        Rule::GpGpGp,
        Rule::ChoGpCcg,
        Rule::ChoPostcodeCcg,
        Rule::UhvPostcodeLacode,
        Rule::CountryCode,
    ];

    pub fn code(self) -> &'static str {
        match self {
            Rule::GpGpGp => "GP_GP_GP",
            Rule::ChoGpCcg => "CHO_GP_CCG",
            Rule::ChoPostcodeCcg => "CHO_POSTCODE_CCG",
            Rule::UhvPostcodeLacode => "UHV_POSTCODE_LACODE",
            Rule::CountryCode => "COUNTRYCODE",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Registration {
    RegisteredOnly,
    UnregisteredOnly,
}

impl Registration {
    pub fn code(self) -> &'static str {
        match self {
            Registration::RegisteredOnly => "RegisteredOnly",
            Registration::UnregisteredOnly => "UnregisteredOnly",
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filters {
    /// `Patient.age=ltN`
    pub younger_than: Option<u32>,
    /// `Patient.age=gtN`
    pub older_than: Option<u32>,
    pub registration: Option<Registration>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Explicit {
        nhs_number: String,
        events: Vec<EventKind>,
    },
    Generic {
        rule: Rule,
        organisation: String,
        event: EventKind,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscription {
    pub id: String,
    pub subscriber: String,
    pub target: Target,
    pub filters: Filters,
    pub tag: Option<String>,
    pub end: Option<OffsetDateTime>,
    pub deleted: bool,
}

impl Subscription {
    /// [explore_subscriptions: "Explicit subscriptions for a patient should be
    /// stopped ... removing the explicit subscription using the Delete
    /// Subscription API interaction or by including the `end` element"];
    /// [docs: Creating a subscription, "After `end` the subscription matches
    /// nothing"], [docs: Reading, listing, deleting, "nothing is delivered for
    /// it from then on"].
    fn is_active(&self, now: OffsetDateTime) -> bool {
        !self.deleted && self.end.is_none_or(|end| now < end)
    }
}

// ---------------------------------------------------------------------------
// Events
// ---------------------------------------------------------------------------

/// What a message's Patient entry says of the child (for a birth, of the
/// baby).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PatientEntry {
    pub nhs_number: String,
    pub birth_date: Option<Date>,
    pub home_postcode: Option<String>,
    /// The practice `generalPractitioner` names.
    pub gp: Option<String>,
    /// meta.security carries a confidentiality code R, V or REDACTED.
    pub labelled: bool,
}

/// The mother's Patient entry of a birth notification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mother {
    /// Absent when the birth was registered without her NHS number.
    pub nhs_number: Option<String>,
    pub gp: Option<String>,
    pub labelled: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub message_id: String,
    pub kind: EventKind,
    pub lifecycle: Lifecycle,
    /// Published by a client holding the sensitivity-authority grant (the
    /// demographics service).
    pub by_sensitivity_authority: bool,
    pub routing_nhs_number: Option<String>,
    pub routing_birth_date: Option<Date>,
    pub timestamp: OffsetDateTime,
    pub last_updated: Option<OffsetDateTime>,
    pub version_id: Option<u64>,
    /// The focus resource's business identifier, `system|value`.
    pub focus_identifier: Option<String>,
    pub received_at: OffsetDateTime,
    /// The child's Patient entry (for a birth, the baby's); None when the
    /// message has none (the screening deletes).
    pub patient: Option<PatientEntry>,
    pub mother: Option<Mother>,
    /// Change of address: the postcode of the address marked `old`.
    pub old_postcode: Option<String>,
    /// Change of GP: the managing organisation of the finished EpisodeOfCare.
    pub previous_practice: Option<String>,
}

impl Event {
    /// The child the event is about: for a birth the baby, else the routed
    /// patient. [pds_birth_notification: the baby "is linked to the mother
    /// through the CareConnect-RelatedPerson-1 resource"]; [docs: Where the
    /// child is, "a birth notification creates the **baby's** record (not
    /// the mother's)"].
    pub fn child(&self) -> Option<&str> {
        match self.kind {
            EventKind::Birth => self.patient.as_ref().map(|baby| baby.nhs_number.as_str()),
            _ => self.routing_nhs_number.as_deref(),
        }
    }

    /// When the event states its facts: meta.lastUpdated, else the
    /// timestamp, never later than its arrival. [rule 3 of the brief];
    /// [pds_change_of_gp: "the last event message as indicated by the
    /// `meta.lastUpdated` element ... should be considered the source of
    /// truth"]; [docs: Known limits, "capped at the time the hub received
    /// it"].
    fn stated_at(&self) -> OffsetDateTime {
        self.last_updated
            .unwrap_or(self.timestamp)
            .min(self.received_at)
    }

    /// [decision 1]: any Patient of the message carries a label.
    fn labelled(&self) -> bool {
        self.patient
            .as_ref()
            .is_some_and(|patient| patient.labelled)
            || self.mother.as_ref().is_some_and(|mother| mother.labelled)
    }
}

// ---------------------------------------------------------------------------
// Deliveries
// ---------------------------------------------------------------------------

/// One message on one subscriber's queue.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Delivery {
    pub subscriber: String,
    pub event_id: String,
    /// Every matching subscription of the subscriber: id and tag.
    pub subscriptions: BTreeSet<(String, Option<String>)>,
    pub out_of_order: Option<&'static str>,
}

// ---------------------------------------------------------------------------
// The register: what the hub knows of each child
// ---------------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq, Eq)]
enum Practice {
    At(String),
    /// [decision 2]: a change of GP without a generalPractitioner.
    Deregistered,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Stated<T> {
    value: T,
    at: OffsetDateTime,
}

#[derive(Debug, Clone, Default)]
struct Register {
    postcode: Option<Stated<String>>,
    practice: Option<Stated<Practice>>,
    /// Stated by the demographics service only: its events' Patient entries
    /// (the baby's, for a birth). [register: "PDS being the authority on
    /// birth date"; docs/subscriptions.md, Where the child is].
    birth_date: Option<Stated<Date>>,
    /// [decision 1]: the newest labelled statement about the child.
    labelled_at: Option<OffsetDateTime>,
    /// [decision 1]: the newest unlabelled record change from the
    /// sensitivity authority.
    cleared_at: Option<OffsetDateTime>,
}

impl Register {
    /// [decision 1]: a label flags the child; only the authority's unlabelled
    /// record change clears it, and only if newer than the label. Both
    /// compared by when they were stated, as every fact of the register is
    /// (rule 3), so the answer does not depend on the order of arrival: a
    /// label older than the authority's latest word arrives stale.
    fn is_sensitive(&self) -> bool {
        self.labelled_at
            .is_some_and(|labelled| self.cleared_at.is_none_or(|cleared| cleared <= labelled))
    }

    /// A fact replaces the register's only if stated later. [docs: Where the
    /// child is, "A late event (older `meta.lastUpdated`) never overwrites
    /// newer facts"]. Returns the value it replaced, if it did replace one.
    fn state<T: Clone>(slot: &mut Option<Stated<T>>, value: T, at: OffsetDateTime) -> Replaced<T> {
        match slot {
            Some(current) if current.at >= at => Replaced::No,
            _ => {
                let previous = slot.replace(Stated { value, at });
                Replaced::Yes(previous.map(|previous| previous.value))
            }
        }
    }

    fn practice_code(&self) -> Option<&str> {
        match self.practice.as_ref().map(|stated| &stated.value) {
            Some(Practice::At(code)) => Some(code),
            _ => None,
        }
    }
}

enum Replaced<T> {
    No,
    Yes(Option<T>),
}

impl<T> Replaced<T> {
    fn previous(self) -> Option<T> {
        match self {
            Replaced::Yes(previous) => previous,
            Replaced::No => None,
        }
    }
}

/// Everything the hub would deliver for this stream of events, published in
/// this order (each dispatched before the next arrives), to these
/// subscriptions, dispatched at `now`.
pub fn deliveries(
    reference: &Reference,
    subscriptions: &[Subscription],
    events: &[Event],
    now: OffsetDateTime,
) -> Vec<Delivery> {
    let mut registers: BTreeMap<String, Register> = BTreeMap::new();
    let mut versions: BTreeMap<(EventKind, String, String), (OffsetDateTime, u64)> =
        BTreeMap::new();
    let mut accepted: BTreeSet<(EventKind, String)> = BTreeSet::new();
    let mut delivered = Vec::new();

    for event in events {
        // Rule 7: [docs: Delivery, "we do (by MessageHeader.id)"], the
        // duplicate "is not delivered again".
        if !accepted.insert((event.kind, event.message_id.clone())) {
            continue;
        }
        let out_of_order = out_of_order(&mut versions, event);
        let Some(child) = event.child().map(str::to_owned) else {
            // Every generated event names its child.
            continue;
        };
        let moved = record(&mut registers, &child, event);
        let register = registers.get(&child).cloned().unwrap_or_default();

        // [decision 1]: a sensitive child's events reach no one; a birth is
        // also withheld when the mother is known sensitive.
        let mother_sensitive = event.kind == EventKind::Birth
            && event
                .routing_nhs_number
                .as_ref()
                .and_then(|mother| registers.get(mother))
                .is_some_and(Register::is_sensitive);
        // A labelled message is itself never delivered, even when its label
        // is older than the authority's latest word.
        if event.labelled() || register.is_sensitive() || mother_sensitive {
            continue;
        }

        let places = places(&register, event, moved);
        let mut matched: BTreeMap<&str, BTreeSet<(String, Option<String>)>> = BTreeMap::new();
        for subscription in subscriptions {
            if subscription.is_active(now)
                && targets(subscription, event, &places, reference)
                && filters_allow(&subscription.filters, &register, event)
            {
                matched
                    .entry(subscription.subscriber.as_str())
                    .or_default()
                    .insert((subscription.id.clone(), subscription.tag.clone()));
            }
        }
        // Rule 7: [explore_subscriptions: "the NEMS will only send one copy
        // of the event message to the receiving mailbox"]; [docs: Delivery,
        // "the delivery names every matching subscription and its tag"].
        for (subscriber, subscriptions) in matched {
            delivered.push(Delivery {
                subscriber: subscriber.to_owned(),
                event_id: event.message_id.clone(),
                subscriptions,
                out_of_order,
            });
        }
    }
    delivered.sort();
    delivered
}

/// [decision 4]: versions of one child's resource are compared under (event
/// type, routing NHS number, focus identifier); an older one is flagged, as
/// is a delete of a resource never seen. [explore, event message: "Updates
/// and deletes resend the whole payload; the focus resource's `identifier`
/// links them"; receivers "order by `meta.lastUpdated` / `meta.versionId`"].
fn out_of_order(
    versions: &mut BTreeMap<(EventKind, String, String), (OffsetDateTime, u64)>,
    event: &Event,
) -> Option<&'static str> {
    let identifier = event.focus_identifier.clone()?;
    let routing = event.routing_nhs_number.clone().unwrap_or_default();
    let version = (
        event.last_updated.unwrap_or(event.timestamp),
        event.version_id.unwrap_or(0),
    );
    match versions.get(&(event.kind, routing.clone(), identifier.clone())) {
        None => {
            versions.insert((event.kind, routing, identifier), version);
            (event.lifecycle == Lifecycle::Delete).then_some("unknown-resource")
        }
        Some(current) if version < *current => Some("older-than-current"),
        Some(current) => {
            if version > *current {
                versions.insert((event.kind, routing, identifier), version);
            }
            None
        }
    }
}

/// What a move left behind: the place the register held before this event
/// replaced it.
#[derive(Default)]
struct Moved {
    postcode_left: Option<String>,
    practice_left: Option<String>,
}

/// Rule 3: the register learns what the event states of the child, each
/// fact only if newer than what it holds. Decision 1: labels flag the child,
/// an unlabelled record change from the sensitivity authority clears it.
fn record(registers: &mut BTreeMap<String, Register>, child: &str, event: &Event) -> Moved {
    let at = event.stated_at();
    let register = registers.entry(child.to_owned()).or_default();
    let mut moved = Moved::default();

    // The child's birth date, as the demographics service states it in its
    // events' Patient entries (a birth's: the baby's).
    let from_demographics = matches!(
        event.kind,
        EventKind::Birth
            | EventKind::ChangeOfAddress
            | EventKind::ChangeOfGp
            | EventKind::Death
            | EventKind::RecordChange
    );
    if from_demographics && let Some(born) = event.patient.as_ref().and_then(|p| p.birth_date) {
        let _ = Register::state(&mut register.birth_date, born, at);
    }

    if let Some(patient) = &event.patient {
        // [explore_subscriptions: "The NEMS matches the patients home
        // postcode"]; [pds_change_of_address: "Current address post code"].
        if let Some(postcode) = &patient.home_postcode {
            moved.postcode_left =
                Register::state(&mut register.postcode, postcode.clone(), at).previous();
        }
        // [pds_change_of_gp: "generalPractitioner ... the new GP Practice";
        // "In a de-registration scenario where a new GP is not applied to the
        // patients record, this element will not be included"] and
        // [decision 2]: only a change of GP states that there is none.
        let practice = match (&patient.gp, event.kind) {
            (Some(code), _) => Some(Practice::At(code.clone())),
            (None, EventKind::ChangeOfGp) => Some(Practice::Deregistered),
            (None, _) => None,
        };
        if let Some(practice) = practice {
            moved.practice_left = match Register::state(&mut register.practice, practice, at) {
                Replaced::Yes(Some(Practice::At(previous))) => Some(previous),
                _ => None,
            };
        }
    }

    if event.labelled() {
        register.labelled_at = register.labelled_at.max(Some(at));
    } else if event.kind == EventKind::RecordChange && event.by_sensitivity_authority {
        register.cleared_at = register.cleared_at.max(Some(at));
    }
    moved
}

/// The postcodes and practices the event's generic rules are matched on.
struct Places {
    postcodes: Vec<String>,
    practices: Vec<String>,
}

/// Rule 3: the child's place is the register's (which now includes this
/// event). A change of address also reaches the area left, a change of GP
/// the practice left; a birth uses the mother's practice until the baby has
/// its own.
fn places(register: &Register, event: &Event, moved: Moved) -> Places {
    let mut postcodes: Vec<String> = register
        .postcode
        .iter()
        .map(|stated| stated.value.clone())
        .collect();
    let mut practices: Vec<String> = register
        .practice_code()
        .map(str::to_owned)
        .into_iter()
        .collect();
    match event.kind {
        // [docs: Moves, "A change of address reaches the postcode rules ...
        // of both the area left and the area arrived in"]; the area left is the `old`
        // address [pds_change_of_address: "Previous address post code"],
        // else the postcode this event replaced in the register. A late one
        // replaces nothing: its stale destination is not reached [docs:
        // Moves].
        EventKind::ChangeOfAddress => {
            postcodes.extend(event.old_postcode.clone().or(moved.postcode_left));
        }
        // [docs: Moves, "a change of GP reaches the practice rules ... of
        // both practices"]; the practice left is the finished EpisodeOfCare's
        // [pds_change_of_gp: "managingOrganization | The previous GP
        // practice"], else the practice it replaced. [decision 2]: a
        // de-registration still reaches the practice left.
        EventKind::ChangeOfGp => {
            practices.extend(event.previous_practice.clone().or(moved.practice_left));
        }
        // [docs: A baby's practice, "Until an event names the baby's own GP,
        // a birth notification is matched on the practice its message names
        // (the mother's)"], except without the mother's NHS number [rule 3
        // of the brief: "then the baby's own facts only"].
        EventKind::Birth if practices.is_empty() => {
            if let Some(mother) = &event.mother
                && mother.nhs_number.is_some()
            {
                practices.extend(mother.gp.clone());
            }
        }
        _ => {}
    }
    postcodes.dedup();
    practices.dedup();
    Places {
        postcodes,
        practices,
    }
}

/// Rules 1 and 2: the subscription names the event and selects the child.
fn targets(
    subscription: &Subscription,
    event: &Event,
    places: &Places,
    reference: &Reference,
) -> bool {
    match &subscription.target {
        // [explore_create_subscription: "Patient.identifier ... The
        // [IDENTIFIER] is the NHS Number for the patient"; "MessageHeader.event
        // ... 1..*"]; [pds_birth_notification: "Event messages which are
        // published without a mothers NHS number ... will not be sent to any
        // subscriber based on explicit subscriptions"]: the routing number is
        // then absent and equals no subscription's.
        Target::Explicit { nhs_number, events } => {
            events.contains(&event.kind)
                && event.routing_nhs_number.as_deref() == Some(nhs_number.as_str())
        }
        // [explore_create_subscription: "MessageHeader.event ... 1..1" for a
        // generic subscription; subscriptionRuleType definitions].
        Target::Generic {
            rule,
            organisation,
            event: kind,
        } => *kind == event.kind && selects(*rule, organisation, places, reference),
    }
}

/// [explore_create_subscription, subscriptionRuleType]: each rule compares
/// one attribute of the child's postcode or practice with the code.
fn selects(rule: Rule, organisation: &str, places: &Places, reference: &Reference) -> bool {
    let areas = || {
        places
            .postcodes
            .iter()
            .filter_map(|postcode| reference.postcode(postcode))
    };
    match rule {
        // "GP_GP_GP - This will be a match if the patients registered GP
        // matches the GP Practice code"
        Rule::GpGpGp => places
            .practices
            .iter()
            .any(|practice| practice == organisation),
        // "CHO_GP_CCG - ... the ICB sub location code responsible for the
        // geographical location of the patients registered GP matches"
        Rule::ChoGpCcg => places
            .practices
            .iter()
            .any(|practice| reference.practice_sub_icb(practice) == Some(organisation)),
        // "CHO_POSTCODE_CCG - ... the ICB sub location code responsible for
        // the geographical location of the patients postcode matches"
        Rule::ChoPostcodeCcg => areas().any(|area| area.sub_icb == Some(organisation)),
        // "UHV_POSTCODE_LACODE - ... the Local Authority Code responsible for
        // the geographical location of the patients post code matches"
        Rule::UhvPostcodeLacode => areas().any(|area| area.local_authority == organisation),
        // "COUNTRYCODE - ... a match for any patients in the country
        // specified"
        Rule::CountryCode => areas().any(|area| area.country == organisation),
    }
}

/// Rule 4, [decision 5]: filters are judged on the register first, else on
/// the message; an unknown fact matches no filter.
fn filters_allow(filters: &Filters, register: &Register, event: &Event) -> bool {
    let age = age(register, event);
    // [explore_create_subscription: "Patient.age ... the age of the patient
    // (in years)"; "lt14", "gt5"]; [docs: criteria grammar, "age in whole
    // years on the event's date (MessageHeader.timestamp)"].
    let younger = filters
        .younger_than
        .is_none_or(|limit| age.is_some_and(|age| age < i64::from(limit)));
    let older = filters
        .older_than
        .is_none_or(|limit| age.is_some_and(|age| age > i64::from(limit)));
    // [explore_create_subscription: "RegisteredOnly - matches patients who
    // are registered with a GP", "UnregisteredOnly - matches patients who are
    // NOT registered with a GP"].
    let registration = match filters.registration {
        None => true,
        Some(wanted) => registered(register, event)
            .is_some_and(|registered| registered == (wanted == Registration::RegisteredOnly)),
    };
    younger && older && registration
}

/// Completed years at the date of MessageHeader.timestamp, from the child's
/// birth date: the register's, else the routing one (not for a birth: it is
/// the mother's), else the Patient entry's.
fn age(register: &Register, event: &Event) -> Option<i64> {
    let routing = if event.kind == EventKind::Birth {
        None
    } else {
        event.routing_birth_date
    };
    let born = register
        .birth_date
        .as_ref()
        .map(|stated| stated.value)
        .or(routing)
        .or(event
            .patient
            .as_ref()
            .and_then(|patient| patient.birth_date))?;
    let on = event.timestamp.date();
    let mut years = i64::from(on.year()) - i64::from(born.year());
    if (on.month() as u8, on.day()) < (born.month() as u8, born.day()) {
        years -= 1;
    }
    Some(years)
}

/// Registered when the register holds a practice; unregistered when it says
/// de-registered, or knows nothing of a GP and the message's Patient entry
/// names none; unknown without a Patient entry or a register fact.
fn registered(register: &Register, event: &Event) -> Option<bool> {
    match register.practice.as_ref().map(|stated| &stated.value) {
        Some(Practice::At(_)) => Some(true),
        Some(Practice::Deregistered) => Some(false),
        None => event.patient.as_ref().map(|patient| patient.gp.is_some()),
    }
}

pub mod bases;
