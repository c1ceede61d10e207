//! The event catalogue: the NEMS event types the hub knows, and the lifecycle
//! of an event message.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// CodeSystem of MessageHeader.event.
pub const EVENT_TYPE_SYSTEM: &str = "https://fhir.nhs.uk/STU3/CodeSystem/EventType-1";

macro_rules! event_types {
    ($($variant:ident => $code:literal, $focus:literal, [$($lifecycle:ident),+];)+) => {
        /// A NEMS event type (MessageHeader.event.code).
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        pub enum EventType {
            $(#[serde(rename = $code)] $variant,)+
        }

        impl EventType {
            pub const ALL: &'static [EventType] = &[$(EventType::$variant),+];

            pub fn code(self) -> &'static str {
                match self { $(EventType::$variant => $code,)+ }
            }

            /// The resource type MessageHeader.focus must reference.
            pub fn focus_resource(self) -> &'static str {
                match self { $(EventType::$variant => $focus,)+ }
            }

            /// The lifecycle values a publisher may send for this type.
            pub fn allowed_lifecycles(self) -> &'static [Lifecycle] {
                match self { $(EventType::$variant => &[$(Lifecycle::$lifecycle),+],)+ }
            }

            /// Lifecycle values the type's page rules out but that published
            /// examples still use: accepted with a warning.
            pub fn tolerated_lifecycles(self) -> &'static [Lifecycle] {
                match self {
                    // Screening pages: "update will not be used... new shall
                    // be used instead"; older examples send update.
                    EventType::BloodSpotTestOutcome | EventType::NewbornHearing | EventType::NipeOutcome => {
                        &[Lifecycle::Update]
                    }
                    _ => &[],
                }
            }
        }

        impl FromStr for EventType {
            type Err = UnknownEventType;
            fn from_str(code: &str) -> Result<Self, Self::Err> {
                match code {
                    $($code => Ok(EventType::$variant),)+
                    _ => Err(UnknownEventType),
                }
            }
        }
    };
}

event_types! {
    PdsBirthNotification => "pds-birth-notification-1", "Communication", [New];
    PdsChangeOfAddress => "pds-change-of-address-1", "Communication", [New];
    PdsChangeOfGp => "pds-change-of-gp-1", "Communication", [New];
    PdsDeathNotification => "pds-death-notification-1", "Communication", [New];
    PdsRecordChange => "pds-record-change-1", "Patient", [New];
    BloodSpotTestOutcome => "blood-spot-test-outcome-1", "Encounter", [New, Delete];
    NewbornHearing => "newborn-hearing-1", "Encounter", [New, Delete];
    NipeOutcome => "nipe-outcome-1", "Encounter", [New, Delete];
    ProfessionalContacts => "professional-contacts-1", "EpisodeOfCare", [New, Update, Delete];
    Vaccinations => "vaccinations-1", "Immunization", [New, Update, Delete];
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("not an event type of the catalogue")]
pub struct UnknownEventType;

impl fmt::Display for EventType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

/// Extension-MessageEventType-1: what the message does to the focus resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
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

impl FromStr for Lifecycle {
    type Err = ();
    fn from_str(code: &str) -> Result<Self, Self::Err> {
        match code {
            "new" => Ok(Lifecycle::New),
            "update" => Ok(Lifecycle::Update),
            "delete" => Ok(Lifecycle::Delete),
            _ => Err(()),
        }
    }
}

impl fmt::Display for Lifecycle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_round_trips() {
        assert_eq!(EventType::ALL.len(), 10);
        for &event_type in EventType::ALL {
            assert_eq!(event_type.code().parse::<EventType>(), Ok(event_type));
            let json = serde_json::to_string(&event_type).unwrap();
            assert_eq!(json, format!("\"{}\"", event_type.code()));
        }
    }

    #[test]
    fn unknown_codes_are_refused() {
        assert!("vaccinations-2".parse::<EventType>().is_err());
        assert!("".parse::<EventType>().is_err());
    }

    #[test]
    fn pds_events_are_new_only() {
        assert_eq!(
            EventType::PdsChangeOfAddress.allowed_lifecycles(),
            &[Lifecycle::New]
        );
        assert!(
            EventType::Vaccinations
                .allowed_lifecycles()
                .contains(&Lifecycle::Update)
        );
    }
}
