//! Seeded worlds and event streams for the routing model: children in
//! several areas and countries, their mothers, ~20 subscribers with explicit
//! and generic subscriptions of every rule and filter (some ended or
//! deleted), and a stream of births, moves, GP changes and de-registrations,
//! deaths, record changes (labelled, cleared by the demographics service or
//! not by others), screening, contacts and vaccinations with their updates
//! and deletes, late events and duplicates.

use e2e_tests::routing_model::{
    Event, EventKind, Filters, Lifecycle, Mother, PatientEntry, Reference, Registration, Rule,
    Subscription, Target,
};
use time::macros::datetime;
use time::{Date, Duration, Month, OffsetDateTime};

use super::render::Template;

/// When dispatch runs: subscriptions ending before it are over.
pub const NOW: OffsetDateTime = datetime!(2026-06-01 12:00:00 UTC);
/// The first arrival; events arrive a minute apart (plus a second, so that
/// no arrival equals a stated time).
const FIRST_ARRIVAL: OffsetDateTime = datetime!(2026-01-01 00:00:01 UTC);
/// Stated times run from here, a few days apart.
const FIRST_STATED: OffsetDateTime = datetime!(2024-01-01 08:00:00 UTC);

/// A small deterministic PRNG (SplitMix64): the same seed gives the same
/// case on every machine.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed ^ 0x9e37_79b9_7f4a_7c15)
    }

    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    pub fn below(&mut self, bound: u64) -> u64 {
        self.next() % bound
    }

    pub fn range(&mut self, low: i64, high: i64) -> i64 {
        low + self.below((high - low + 1) as u64) as i64
    }

    /// True with this chance, in percent.
    pub fn percent(&mut self, chance: u64) -> bool {
        self.below(100) < chance
    }

    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }

    fn uuid(&mut self) -> String {
        let (a, b) = (self.next(), self.next());
        format!(
            "{:08x}-{:04x}-4{:03x}-8{:03x}-{:012x}",
            a >> 32,
            (a >> 16) & 0xffff,
            a & 0xfff,
            b >> 52,
            b & 0xffff_ffff_ffff
        )
    }

    /// A valid NHS number (Modulus 11), checked by the hub's own type.
    fn nhs_number(&mut self) -> String {
        loop {
            let digits: Vec<u32> = (0..9).map(|_| self.below(10) as u32).collect();
            let sum: u32 = digits
                .iter()
                .enumerate()
                .map(|(i, digit)| digit * (10 - i as u32))
                .sum();
            let check = match 11 - sum % 11 {
                11 => 0,
                10 => continue,
                check => check,
            };
            let number: String = digits
                .iter()
                .chain(std::iter::once(&check))
                .map(|digit| char::from_digit(*digit, 10).unwrap_or('0'))
                .collect();
            if digits[0] != 0 && hub::NhsNumber::parse(&number).is_ok() {
                return number;
            }
        }
    }

    fn date(&mut self, from_year: i32, to_year: i32) -> Date {
        let year = self.range(i64::from(from_year), i64::from(to_year)) as i32;
        let month = Month::try_from(self.range(1, 12) as u8).unwrap_or(Month::January);
        // The 29th of February is left out: a leap-day birthday's
        // anniversary is a convention the model does not decide.
        let day = self.range(1, 28) as u8;
        Date::from_calendar_date(year, month, day).unwrap_or(Date::MIN)
    }
}

/// Who publishes an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Publisher {
    /// The demographics service (ODS X26), holding the sensitivity-authority
    /// grant.
    Demographics,
    /// Another system publishing demographic record changes (ODS RX1).
    OtherDemographics,
    /// Screening, health visiting and GP systems.
    Clinical,
}

/// One publish: the model's view of the event and what renders it.
#[derive(Debug, Clone)]
pub struct Published {
    pub event: Event,
    pub template: Template,
    pub publisher: Publisher,
    /// A re-publish of an earlier event (same id, same body).
    pub duplicate: bool,
}

pub struct Case {
    pub seed: u64,
    pub subscriptions: Vec<Subscription>,
    pub stream: Vec<Published>,
}

pub const PRACTICES: [&str; 6] = ["A83627", "B86056", "B85612", "B86999", "W97999", "P81001"];
const SUB_ICBS: [&str; 5] = ["84H", "15F", "X2C4Y", "7A4", "03Q"];
const LOCAL_AUTHORITIES: [&str; 5] = [
    "E08000035",
    "E08000034",
    "E06000047",
    "W06000015",
    "S12000036",
];
const COUNTRIES: [&str; 6] = [
    "E92000001",
    "W92000004",
    "S92000003",
    "N92000002",
    "M83000003",
    "L93000001",
];
/// Focus identifiers are drawn from a small pool, so that children share
/// business identifiers (as the NEMS examples all use `abc1111`).
const IDENTIFIERS: [&str; 4] = ["abc1111", "abc2222", "abc3333", "abc4444"];
const FOCUS_SYSTEM: &str = "https://supplierABC/identifiers";

struct Child {
    nhs_number: String,
    born: Date,
    postcode: String,
    practice: Option<String>,
    /// Not yet born: its birth notification comes first.
    unborn: bool,
    mother: Option<usize>,
    /// Focus identifiers of its resources, by event type.
    resources: Vec<(EventKind, String)>,
}

struct Person {
    nhs_number: String,
    born: Date,
}

/// What a case may contain. Everything by default; leaving out what one of
/// the decisions (docs/subscriptions.md, "The routing rules, and where each
/// comes from") governs helps tell a hub defect from a decision not yet
/// implemented (`ROUTING_EXCLUDE=1,3`).
#[derive(Debug, Clone, Copy)]
pub struct Scope {
    /// Decision 1: confidentiality labels.
    pub labels: bool,
    /// Decision 2: changes of GP without a new practice.
    pub deregistrations: bool,
    /// Decision 3: births without the mother's NHS number.
    pub births_without_mother: bool,
    /// Decision 4: focus identifiers shared between children.
    pub shared_identifiers: bool,
    /// Decision 5: age and registration filters.
    pub filters: bool,
}

impl Scope {
    pub const ALL: Scope = Scope {
        labels: true,
        deregistrations: true,
        births_without_mother: true,
        shared_identifiers: true,
        filters: true,
    };

    /// Everything but the decisions listed (`1,3`).
    pub fn excluding(decisions: &str) -> Scope {
        let excluded = |n: &str| decisions.split(',').any(|d| d.trim() == n);
        Scope {
            labels: !excluded("1"),
            deregistrations: !excluded("2"),
            births_without_mother: !excluded("3"),
            shared_identifiers: !excluded("4"),
            filters: !excluded("5"),
        }
    }
}

thread_local! {
    static SCOPE: std::cell::Cell<Scope> = const { std::cell::Cell::new(Scope::ALL) };
}

pub fn case_in(scope: Scope, seed: u64, events: usize) -> Case {
    SCOPE.with(|cell| cell.set(scope));
    let case = case(seed, events);
    SCOPE.with(|cell| cell.set(Scope::ALL));
    case
}

fn scope() -> Scope {
    SCOPE.with(|cell| cell.get())
}

pub fn case(seed: u64, events: usize) -> Case {
    let mut rng = Rng::new(seed);
    let reference = Reference::sample();
    let postcodes: Vec<&'static str> = reference.postcodes.iter().map(|a| a.postcode).collect();

    let mothers: Vec<Person> = (0..rng.range(1, 3))
        .map(|_| Person {
            nhs_number: rng.nhs_number(),
            born: rng.date(1980, 1999),
        })
        .collect();
    let mut children: Vec<Child> = (0..rng.range(3, 7))
        .map(|_| {
            let unborn = rng.percent(45);
            Child {
                nhs_number: rng.nhs_number(),
                born: rng.date(2017, 2023),
                postcode: rng.pick(&postcodes).to_string(),
                practice: (!unborn && rng.percent(60)).then(|| rng.pick(&PRACTICES).to_string()),
                unborn,
                mother: if rng.percent(75) || !scope().births_without_mother {
                    Some(rng.below(mothers.len() as u64) as usize)
                } else {
                    None
                },
                resources: Vec::new(),
            }
        })
        .collect();

    let subscriptions = subscriptions(&mut rng, &children, &mothers);

    // The events, in the order their facts were stated.
    let mut stated = FIRST_STATED;
    let mut stream: Vec<Published> = Vec::new();
    for _ in 0..events {
        stated += Duration::minutes(rng.range(60, 3 * 24 * 60));
        let unborn: Vec<usize> = (0..children.len())
            .filter(|&c| children[c].unborn)
            .collect();
        let born: Vec<usize> = (0..children.len())
            .filter(|&c| !children[c].unborn)
            .collect();
        let published = if !unborn.is_empty() && (born.is_empty() || rng.percent(25)) {
            let c = *rng.pick(&unborn);
            birth(&mut rng, &mut children[c], &mothers, &postcodes, stated)
        } else if rng.percent(8) {
            let mother = rng.pick(&mothers);
            record_change(&mut rng, &mother.nhs_number, mother.born, stated)
        } else {
            let c = *rng.pick(&born);
            child_event(&mut rng, &mut children[c], &postcodes, stated)
        };
        stream.push(published);
    }

    // Some arrive late: swapped with their successor, or held back a few
    // places. A birth stays before its baby's other events.
    for i in 1..stream.len() {
        let births = stream[i - 1].event.kind == EventKind::Birth
            || stream[i].event.kind == EventKind::Birth;
        if !births && rng.percent(15) {
            stream.swap(i - 1, i);
        }
    }
    if stream.len() > 6 && rng.percent(50) {
        let from = rng.below(stream.len() as u64 - 5) as usize;
        if stream[from].event.kind != EventKind::Birth {
            let held = stream.remove(from);
            let to = from + rng.range(2, 4) as usize;
            stream.insert(to.min(stream.len()), held);
        }
    }
    // Publishers resend.
    let mut with_duplicates = Vec::new();
    for published in stream {
        let again = rng.percent(5).then(|| Published {
            duplicate: true,
            ..published.clone()
        });
        with_duplicates.push(published);
        with_duplicates.extend(again);
    }
    for (i, published) in with_duplicates.iter_mut().enumerate() {
        published.event.received_at = FIRST_ARRIVAL + Duration::minutes(i as i64);
        // A few publishers' clocks run ahead: their stated time is capped at
        // arrival.
        if let Some(last_updated) = published.event.last_updated
            && last_updated >= datetime!(2027-01-01 00:00:00 UTC)
        {
            published.event.last_updated = Some(last_updated + Duration::minutes(i as i64));
        }
    }
    // A duplicate is the same body: it keeps the first publish's times.
    let mut firsts: Vec<Event> = Vec::new();
    for published in &mut with_duplicates {
        if published.duplicate {
            if let Some(first) = firsts
                .iter()
                .find(|first| first.message_id == published.event.message_id)
            {
                let received_at = published.event.received_at;
                published.event = Event {
                    received_at,
                    ..first.clone()
                };
            }
        } else {
            firsts.push(published.event.clone());
        }
    }
    Case {
        seed,
        subscriptions,
        stream: with_duplicates,
    }
}

fn subscriptions(rng: &mut Rng, children: &[Child], mothers: &[Person]) -> Vec<Subscription> {
    let people: Vec<&str> = children
        .iter()
        .map(|child| child.nhs_number.as_str())
        .chain(mothers.iter().map(|mother| mother.nhs_number.as_str()))
        .collect();
    let mut subscriptions = Vec::new();
    for subscriber in 0..20 {
        for _ in 0..rng.range(1, 4) {
            let target = if rng.percent(35) {
                let mut events: Vec<EventKind> = Vec::new();
                for _ in 0..rng.range(1, 3) {
                    let kind = *rng.pick(&EventKind::ALL);
                    if !events.contains(&kind) {
                        events.push(kind);
                    }
                }
                Target::Explicit {
                    nhs_number: rng.pick(&people).to_string(),
                    events,
                }
            } else {
                let rule = *rng.pick(&Rule::ALL);
                let codes: &[&str] = match rule {
                    Rule::GpGpGp => &PRACTICES,
                    Rule::ChoGpCcg => &SUB_ICBS,
                    Rule::ChoPostcodeCcg => &SUB_ICBS[..3],
                    Rule::UhvPostcodeLacode => &LOCAL_AUTHORITIES,
                    Rule::CountryCode => &COUNTRIES,
                };
                Target::Generic {
                    rule,
                    organisation: rng.pick(codes).to_string(),
                    event: *rng.pick(&EventKind::ALL),
                }
            };
            let mut filters = Filters::default();
            let with_filters = scope().filters;
            if rng.percent(25) && with_filters {
                filters.younger_than = Some(rng.range(1, 7) as u32);
            }
            if rng.percent(20) && with_filters {
                let older = rng.range(0, 5) as u32;
                // The criteria refuse an age range with no whole age in it.
                if filters
                    .younger_than
                    .is_none_or(|younger| younger > older + 1)
                {
                    filters.older_than = Some(older);
                }
            }
            if rng.percent(20) && with_filters {
                filters.registration = Some(if rng.percent(50) {
                    Registration::RegisteredOnly
                } else {
                    Registration::UnregisteredOnly
                });
            }
            let tag = match rng.below(10) {
                0..=1 => Some(format!("tag-{subscriber}")),
                2 => Some("site_1|area,b".to_owned()),
                _ => None,
            };
            let end = match rng.below(100) {
                0..=7 => Some(datetime!(2025-01-01 00:00:00 UTC)),
                8..=15 => Some(datetime!(2027-01-01 00:00:00 UTC)),
                _ => None,
            };
            subscriptions.push(Subscription {
                id: format!("s{:02}-{}", subscriber, subscriptions.len()),
                subscriber: format!("subscriber-{subscriber:02}"),
                target,
                filters,
                tag,
                end,
                deleted: rng.percent(6),
            });
        }
    }
    subscriptions
}

/// The times of an event stated at `stated`: its lastUpdated (if the
/// template has one; sometimes from a clock running ahead) and its
/// timestamp (sometimes on a birthday of the child, or the day before, to
/// try the age filters' edges).
fn times(
    rng: &mut Rng,
    template: Template,
    stated: OffsetDateTime,
    born: Date,
) -> (OffsetDateTime, Option<OffsetDateTime>) {
    let last_updated = template.has_last_updated().then(|| {
        if rng.percent(3) {
            datetime!(2027-01-01 00:00:00 UTC)
        } else {
            stated
        }
    });
    let timestamp = if last_updated.is_some() && rng.percent(20) {
        let year = stated.year() + rng.range(-1, 1) as i32;
        let birthday = born.replace_year(year).unwrap_or(born);
        let day = birthday - Duration::days(rng.range(0, 1));
        // Never before the birth: an age below nought is no one's.
        match day.with_hms(10, 0, 0) {
            Ok(moment) if day >= born => moment.assume_utc(),
            _ => stated + Duration::minutes(5),
        }
    } else if last_updated.is_some() {
        stated + Duration::minutes(5)
    } else {
        stated
    };
    (timestamp, last_updated)
}

fn label(rng: &mut Rng, chance: u64) -> bool {
    rng.percent(chance) && scope().labels
}

fn birth(
    rng: &mut Rng,
    child: &mut Child,
    mothers: &[Person],
    postcodes: &[&'static str],
    stated: OffsetDateTime,
) -> Published {
    child.unborn = false;
    child.born = stated.date();
    child.postcode = rng.pick(postcodes).to_string();
    let with_mother = child.mother.is_some() && (rng.percent(85) || !scope().births_without_mother);
    let template = if with_mother {
        Template::BirthWithMother
    } else {
        Template::BirthWithoutMother
    };
    let (timestamp, last_updated) = times(rng, template, stated, child.born);
    let mother = child.mother.map(|m| &mothers[m]);
    let mother_gp = rng.percent(70).then(|| rng.pick(&PRACTICES).to_string());
    let (routing_nhs_number, routing_birth_date, mother) = match (with_mother, mother) {
        (true, Some(mother)) => (
            Some(mother.nhs_number.clone()),
            Some(mother.born),
            Mother {
                nhs_number: Some(mother.nhs_number.clone()),
                gp: mother_gp,
                labelled: label(rng, 4),
            },
        ),
        _ => (
            None,
            Template::BirthWithoutMother.routing_birth_date(),
            Mother {
                nhs_number: None,
                gp: mother_gp,
                labelled: false,
            },
        ),
    };
    Published {
        event: Event {
            message_id: rng.uuid(),
            kind: EventKind::Birth,
            lifecycle: Lifecycle::New,
            by_sensitivity_authority: true,
            routing_nhs_number,
            routing_birth_date,
            timestamp,
            last_updated,
            version_id: template.version_id(),
            focus_identifier: None,
            received_at: FIRST_ARRIVAL,
            patient: Some(PatientEntry {
                nhs_number: child.nhs_number.clone(),
                birth_date: Some(child.born),
                home_postcode: Some(child.postcode.clone()),
                gp: None,
                labelled: label(rng, 5),
            }),
            mother: Some(mother),
            old_postcode: None,
            previous_practice: None,
        },
        template,
        publisher: Publisher::Demographics,
        duplicate: false,
    }
}

fn record_change(rng: &mut Rng, nhs_number: &str, born: Date, stated: OffsetDateTime) -> Published {
    let template = Template::RecordChange;
    let (timestamp, last_updated) = times(rng, template, stated, born);
    let publisher = if rng.percent(70) {
        Publisher::Demographics
    } else {
        Publisher::OtherDemographics
    };
    Published {
        event: Event {
            message_id: rng.uuid(),
            kind: EventKind::RecordChange,
            lifecycle: Lifecycle::New,
            by_sensitivity_authority: publisher == Publisher::Demographics,
            routing_nhs_number: Some(nhs_number.to_owned()),
            routing_birth_date: Some(born),
            timestamp,
            last_updated,
            version_id: template.version_id(),
            focus_identifier: Some(format!("https://fhir.nhs.uk/Id/nhs-number|{nhs_number}")),
            received_at: FIRST_ARRIVAL,
            patient: Some(PatientEntry {
                nhs_number: nhs_number.to_owned(),
                birth_date: Some(born),
                home_postcode: None,
                gp: None,
                labelled: label(rng, 35),
            }),
            mother: None,
            old_postcode: None,
            previous_practice: None,
        },
        template,
        publisher,
        duplicate: false,
    }
}

fn child_event(
    rng: &mut Rng,
    child: &mut Child,
    postcodes: &[&'static str],
    stated: OffsetDateTime,
) -> Published {
    let roll = rng.below(100);
    if roll < 10 {
        return record_change(rng, &child.nhs_number.clone(), child.born, stated);
    }
    let mut old_postcode = None;
    let mut previous_practice = None;
    let template = match roll {
        10..=24 => {
            let old = child.postcode.clone();
            while child.postcode == old {
                child.postcode = rng.pick(postcodes).to_string();
            }
            old_postcode = rng.percent(85).then_some(old);
            Template::ChangeOfAddress
        }
        25..=37 => {
            let previous = child.practice.take();
            child.practice = if rng.percent(20) && scope().deregistrations {
                None
            } else {
                let mut next = rng.pick(&PRACTICES).to_string();
                while Some(&next) == previous.as_ref() {
                    next = rng.pick(&PRACTICES).to_string();
                }
                Some(next)
            };
            previous_practice = previous.filter(|_| rng.percent(85));
            Template::ChangeOfGp
        }
        38..=40 => *rng.pick(&[Template::DeathFormal, Template::DeathInformal]),
        41..=62 => *rng.pick(&[
            Template::VaccinationsNew,
            Template::VaccinationsUpdate,
            Template::VaccinationsDelete,
        ]),
        63..=72 => *rng.pick(&[
            Template::ProfessionalContactsNew,
            Template::ProfessionalContactsDelete,
        ]),
        73..=82 => *rng.pick(&[
            Template::BloodSpotNew,
            Template::BloodSpotUpdate,
            Template::BloodSpotDelete,
        ]),
        83..=90 => *rng.pick(&[Template::NewbornHearingNew, Template::NewbornHearingDelete]),
        _ => *rng.pick(&[Template::NipeNew, Template::NipeUpdate]),
    };
    let kind = template.kind();
    let lifecycle = template.lifecycle();
    // An update or delete names a resource of the child (or, now and then,
    // one never seen); a new one takes an identifier from the shared pool.
    let focus_identifier = template.has_focus_identifier().then(|| {
        let known: Vec<String> = child
            .resources
            .iter()
            .filter(|(k, _)| *k == kind)
            .map(|(_, identifier)| identifier.clone())
            .collect();
        let identifier = if template.is_first_version() || known.is_empty() || rng.percent(15) {
            let identifier = *rng.pick(&IDENTIFIERS);
            if scope().shared_identifiers {
                identifier.to_owned()
            } else {
                // Each child's own: its NHS number in the value.
                format!("{identifier}-{}", child.nhs_number)
            }
        } else {
            rng.pick(&known).clone()
        };
        if template.is_first_version() {
            child.resources.push((kind, identifier.clone()));
        }
        format!("{FOCUS_SYSTEM}|{identifier}")
    });
    let (timestamp, last_updated) = times(rng, template, stated, child.born);
    let patient = template.has_patient().then(|| PatientEntry {
        nhs_number: child.nhs_number.clone(),
        birth_date: Some(child.born),
        home_postcode: Some(child.postcode.clone()),
        gp: match template {
            Template::ChangeOfGp => child.practice.clone(),
            // Clinical systems sometimes name the child's practice.
            _ if template.is_clinical() && rng.percent(30) => child.practice.clone(),
            _ => None,
        },
        labelled: label(rng, 5),
    });
    Published {
        event: Event {
            message_id: rng.uuid(),
            kind,
            lifecycle,
            by_sensitivity_authority: !template.is_clinical(),
            routing_nhs_number: Some(child.nhs_number.clone()),
            routing_birth_date: template.has_routing_birth_date().then_some(child.born),
            timestamp,
            last_updated,
            version_id: template.version_id(),
            focus_identifier,
            received_at: FIRST_ARRIVAL,
            patient,
            mother: None,
            old_postcode,
            previous_practice,
        },
        template,
        publisher: if template.is_clinical() {
            Publisher::Clinical
        } else {
            Publisher::Demographics
        },
        duplicate: false,
    }
}
