//! The bases of explicit subscriptions, added to the reference model: who
//! may subscribe to a child, on what basis, and when that basis ends.
//! Written from the docs only, not the hub's code: docs/subscriptions.md,
//! "The basis of an explicit subscription, and its end" (cited `[bases:
//! ...]`), docs/subscribers.md section 8a (`[8a: ...]`) and
//! docs/relationships.md, "What relationships open" (`[relationships:
//! ...]`). The events' routing and the register are the parent model's.
//!
//! Out of scope (each an ambiguity or a case the generator leaves out, see
//! tests/tests/handlers/routing_bases.rs): births among a subscription's
//! event types (a birth is routed on the mother, [bases: "an `area`
//! subscription to the mother is judged on the baby's home"]), labels,
//! filters, two people acted for by one app, a VRS link between a mother
//! and her baby beside the birth link, and a re-attestation at another
//! level.

use std::collections::{BTreeMap, BTreeSet};

use time::OffsetDateTime;

use super::{
    Delivery, Event, EventKind, Moved, Places, Reference, Register, Rule, out_of_order, record,
    selects,
};

/// NHS login identity levels, lowest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    P5,
    P9,
}

impl Level {
    pub fn code(self) -> &'static str {
        match self {
            Level::P5 => "P5",
            Level::P9 => "P9",
        }
    }
}

/// What a subscriber's client registration says it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    /// A GP practice (its ODS code a practice of the reference), no grants.
    Practice,
    /// An area service with generic-subscription grants (rule, code).
    Area(Vec<(Rule, String)>),
    /// A parent's app registered with `pchr` and this minimum level.
    Pchr(Level),
    /// Any other subscriber: no grants, not a practice.
    Other,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscriber {
    pub id: String,
    pub ods: String,
    pub kind: Kind,
}

/// One step of a world's story, in the order the hub sees them.
#[derive(Debug, Clone)]
pub enum Step {
    Publish(Box<Event>),
    /// `POST /Subscription` of an explicit subscription.
    Subscribe {
        id: String,
        subscriber: String,
        nhs_number: String,
        events: Vec<EventKind>,
    },
    /// A VRS relationship event: created (`active`) or deleted.
    Relationship {
        child: String,
        person: String,
        active: bool,
    },
    Attest {
        subscriber: String,
        person: String,
        level: Level,
    },
    StopActing {
        subscriber: String,
        person: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Basis {
    RegisteredGp(String),
    Area(Rule, String),
    Relationship(String),
    Declared,
}

/// The deliveries, the creations refused, and each created subscription's
/// basis.
#[derive(Debug, Default)]
pub struct Outcome {
    pub deliveries: Vec<Delivery>,
    pub refused: BTreeSet<String>,
    pub bases: BTreeMap<String, Basis>,
    /// The subscriptions whose basis ended.
    pub ended: BTreeSet<String>,
}

struct Held {
    id: String,
    subscriber: String,
    nhs_number: String,
    events: Vec<EventKind>,
    basis: Basis,
    ended: bool,
}

#[derive(Default)]
struct State {
    registers: BTreeMap<String, Register>,
    /// (child, person, source) -> active. [relationships: a VRS deletion
    /// "does not end a birth-notification link (different sources)"].
    relationships: BTreeMap<(String, String, &'static str), bool>,
    /// (subscriber, person) -> the attested level while acting.
    acting: BTreeMap<(String, String), Level>,
    held: Vec<Held>,
}

const VRS: &str = "vrs";
const BIRTH: &str = "birth-notification";

impl State {
    /// [8a: "an active relationship between the child and a person it acts
    /// for" at or above its `minimumVerification`; "the hub finds the
    /// relationship ... (the best attested first)"].
    fn person_for(&self, subscriber: &str, child: &str, minimum: Level) -> Option<String> {
        self.acting
            .iter()
            .filter(|((app, person), level)| {
                app == subscriber && **level >= minimum && self.related(child, person)
            })
            .max_by_key(|(_, level)| **level)
            .map(|((_, person), _)| person.clone())
    }

    fn related(&self, child: &str, person: &str) -> bool {
        self.relationships
            .iter()
            .any(|((c, p, _), active)| *active && c == child && p == person)
    }
}

/// The register's places of the child (no move: the basis is chosen and
/// judged on where the child is, [bases: "the register's home postcode and
/// practice, through the reference data"]).
fn places_of(register: Option<&Register>) -> Places {
    Places {
        postcodes: register
            .and_then(|r| r.postcode.as_ref())
            .map(|stated| stated.value.clone())
            .into_iter()
            .collect(),
        practices: register
            .and_then(|r| r.practice_code())
            .map(str::to_owned)
            .into_iter()
            .collect(),
    }
}

/// [bases, table]: `registered-gp` when the register places the child at
/// the subscriber's ODS code; else `area`, the first grant that selects the
/// child in the order GP_GP_GP, CHO_GP_CCG, CHO_POSTCODE_CCG,
/// UHV_POSTCODE_LACODE, COUNTRYCODE; else `declared-direct-care`. A parent's
/// app: only `relationship` [8a: "A parent's app has no `subscribeGeneric`
/// grants ... nor declare direct care"; "Without one the answer is `403`"].
fn basis_for(
    state: &State,
    subscriber: &Subscriber,
    child: &str,
    reference: &Reference,
) -> Option<Basis> {
    if let Kind::Pchr(minimum) = subscriber.kind {
        return state
            .person_for(&subscriber.id, child, minimum)
            .map(Basis::Relationship);
    }
    let register = state.registers.get(child);
    if register.and_then(Register::practice_code) == Some(subscriber.ods.as_str()) {
        return Some(Basis::RegisteredGp(subscriber.ods.clone()));
    }
    if let Kind::Area(grants) = &subscriber.kind {
        let places = places_of(register);
        for rule in Rule::ALL {
            if let Some((_, code)) = grants
                .iter()
                .find(|(granted, code)| *granted == rule && selects(rule, code, &places, reference))
            {
                return Some(Basis::Area(rule, code.clone()));
            }
        }
    }
    Some(Basis::Declared)
}

/// Whether a place basis holds where the child is (or was).
fn place_holds(basis: &Basis, places: &Places, reference: &Reference) -> bool {
    match basis {
        Basis::RegisteredGp(practice) => places.practices.iter().any(|p| p == practice),
        Basis::Area(rule, code) => selects(*rule, code, places, reference),
        Basis::Relationship(_) | Basis::Declared => true,
    }
}

/// Where the child was when the event arrived. [bases: "judged on where the
/// child was when the event arrived"; the moving event is still received
/// "as NEMS sends a move to the place left"]: the place the event leaves,
/// as routing defines it ([docs: Moves]: a change of address's `old`
/// address, a change of GP's finished EpisodeOfCare, else what the event
/// replaced in the register), else the register's place before it. The
/// docs do not say which counts when the message's previous place differs
/// from the register's (a late or out-of-order move): this reads it as
/// routing does (reported to the lead).
fn place_left(before: Option<&Register>, event: &Event, moved: Moved) -> Places {
    let mut places = places_of(before);
    let named_practice = match event.kind {
        EventKind::ChangeOfGp => event.previous_practice.clone(),
        _ => None,
    };
    if let Some(practice) = named_practice.or(moved.practice_left) {
        places.practices = vec![practice];
    }
    let named_postcode = match event.kind {
        EventKind::ChangeOfAddress => event.old_postcode.clone(),
        _ => None,
    };
    if let Some(postcode) = named_postcode.or(moved.postcode_left) {
        places.postcodes = vec![postcode];
    }
    places
}

/// Which events judge a subscription's basis. [bases: "Dispatch judges the
/// basis for every event"; an `area` basis ends "with the event that moves
/// the child out"; it "stays ended even if the child comes back"]: every
/// event about the child (`EveryEvent`). The hub judges a subscription only
/// on the events of the types it names (`NamedEvents`), so a move it does
/// not name leaves it open, and it receives again when the child comes
/// back (tests/tests/handlers/routing_bases/scenarios.rs). The docs can
/// be read either way ("every event" it is matched against); reported to
/// the lead.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Judged {
    EveryEvent,
    NamedEvents,
}

/// Runs the story.
pub fn run(
    reference: &Reference,
    subscribers: &[Subscriber],
    steps: &[Step],
    judged: Judged,
    now: OffsetDateTime,
) -> Outcome {
    let _ = now;
    let mut state = State::default();
    let mut outcome = Outcome::default();
    let mut versions = BTreeMap::new();
    let mut accepted: BTreeSet<(EventKind, String)> = BTreeSet::new();
    let minimum = |id: &str| {
        subscribers.iter().find_map(|s| match s.kind {
            Kind::Pchr(minimum) if s.id == id => Some(minimum),
            _ => None,
        })
    };

    for step in steps {
        match step {
            Step::Subscribe {
                id,
                subscriber,
                nhs_number,
                events,
            } => {
                let Some(owner) = subscribers.iter().find(|s| &s.id == subscriber) else {
                    continue;
                };
                match basis_for(&state, owner, nhs_number, reference) {
                    Some(basis) => {
                        outcome.bases.insert(id.clone(), basis.clone());
                        state.held.push(Held {
                            id: id.clone(),
                            subscriber: subscriber.clone(),
                            nhs_number: nhs_number.clone(),
                            events: events.clone(),
                            basis,
                            ended: false,
                        });
                    }
                    None => {
                        outcome.refused.insert(id.clone());
                    }
                }
            }
            // [8a: "the source ends the relationship (a VRS
            // `vrs-proxy-role-deleted-1` ...): your subscriptions to that
            // child through that person end at once"]; [bases: "stays ended
            // even if the child comes back"].
            Step::Relationship {
                child,
                person,
                active,
            } => {
                state
                    .relationships
                    .insert((child.clone(), person.clone(), VRS), *active);
                if !*active && !state.related(child, person) {
                    for held in &mut state.held {
                        if held.nhs_number == *child
                            && held.basis == Basis::Relationship(person.clone())
                        {
                            held.ended = true;
                        }
                    }
                }
            }
            // [8a: "Attesting again replaces the attestation"].
            Step::Attest {
                subscriber,
                person,
                level,
            } => {
                state
                    .acting
                    .insert((subscriber.clone(), person.clone()), *level);
            }
            // [8a: "you stop acting for the person ... ends every
            // subscription you held through them"].
            Step::StopActing { subscriber, person } => {
                if state
                    .acting
                    .remove(&(subscriber.clone(), person.clone()))
                    .is_some()
                {
                    for held in &mut state.held {
                        if held.subscriber == *subscriber
                            && held.basis == Basis::Relationship(person.clone())
                        {
                            held.ended = true;
                        }
                    }
                }
            }
            Step::Publish(event) => {
                if !accepted.insert((event.kind, event.message_id.clone())) {
                    continue;
                }
                let out_of_order = out_of_order(&mut versions, event);
                let Some(child) = event.child().map(str::to_owned) else {
                    continue;
                };
                // [bases: "judged on where the child was when the event
                // arrived"]: the register before this event.
                let before = state.registers.get(&child).cloned();
                let moved = record(&mut state.registers, &child, event);
                let before = place_left(before.as_ref(), event, moved);
                let after = places_of(state.registers.get(&child));
                // [relationships: "a birth notification links the mother it
                // names to the baby"].
                if event.kind == EventKind::Birth
                    && let Some(mother) = &event.routing_nhs_number
                    && *mother != child
                {
                    state
                        .relationships
                        .insert((child.clone(), mother.clone(), BIRTH), true);
                }
                let mut matched: BTreeMap<String, BTreeSet<(String, Option<String>)>> =
                    BTreeMap::new();
                for index in 0..state.held.len() {
                    let held = &state.held[index];
                    let judged_here =
                        judged == Judged::EveryEvent || held.events.contains(&event.kind);
                    if held.ended
                        || !judged_here
                        || event.routing_nhs_number.as_deref() != Some(&held.nhs_number)
                    {
                        continue;
                    }
                    let holds = match &held.basis {
                        // [8a: "Each delivery ... checks that the
                        // relationship is still active and that you still act
                        // for the person"]; [bases: ends "at the child's next
                        // event"].
                        Basis::Relationship(person) => {
                            state.related(&held.nhs_number, person)
                                && minimum(&held.subscriber).is_some_and(|minimum| {
                                    state
                                        .acting
                                        .get(&(held.subscriber.clone(), person.clone()))
                                        .is_some_and(|level| *level >= minimum)
                                })
                        }
                        // [bases: `registered-gp`/`area` "with the event that
                        // moves the child away ..., which it still
                        // receives"].
                        place => place_holds(place, &before, reference),
                    };
                    if !holds {
                        state.held[index].ended = true;
                        continue;
                    }
                    if held.events.contains(&event.kind) {
                        matched
                            .entry(held.subscriber.clone())
                            .or_default()
                            .insert((held.id.clone(), None));
                    }
                }
                // [bases: "When an event shows the basis lost, the
                // subscription ends at once ... and stays ended even if the
                // child comes back"].
                for held in &mut state.held {
                    if !held.ended
                        && (judged == Judged::EveryEvent || held.events.contains(&event.kind))
                        && event.routing_nhs_number.as_deref() == Some(&held.nhs_number)
                        && !place_holds(&held.basis, &after, reference)
                    {
                        held.ended = true;
                    }
                }
                for (subscriber, subscriptions) in matched {
                    outcome.deliveries.push(Delivery {
                        subscriber,
                        event_id: event.message_id.clone(),
                        subscriptions,
                        out_of_order,
                    });
                }
            }
        }
    }
    outcome.deliveries.sort();
    outcome.ended = state
        .held
        .iter()
        .filter(|held| held.ended)
        .map(|held| held.id.clone())
        .collect();
    outcome
}
