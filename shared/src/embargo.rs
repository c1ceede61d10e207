//! Release embargoes: operators set, per event type and the recipient's
//! registered service type, a delay before an event reaches that kind of
//! subscriber (a blood spot outcome reaches a parent's record 42 days after
//! the professionals were told). A held delivery waits in the embargo table
//! and is released by the `embargo-release` function; until then the event
//! is hidden from that subscriber's history, event reads and replays.

use serde::{Deserialize, Serialize};
use time::{Duration, OffsetDateTime};

use crate::catalogue::EventType;
use crate::criteria::ServiceType;
use crate::dispatch::Delivery;
use crate::fhir_time::parse_instant;

/// The longest delay an operator may set: the release function looks back
/// this far when it has no watermark yet.
pub const LONGEST_DELAY_DAYS: i64 = 366;

/// An ISO 8601 duration of days, hours, minutes and seconds (`P42D`,
/// `PT5S`, `P1DT12H`): what a setting's delay is written as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delay {
    text: String,
    duration: Duration,
}

impl Delay {
    /// The delay `text` names, or why it names none.
    pub fn parse(text: &str) -> Result<Delay, String> {
        let bad = || {
            format!(
                "'{text}' is not an ISO 8601 duration of days, hours, minutes and seconds (P42D, PT5S)"
            )
        };
        let rest = text.strip_prefix('P').ok_or_else(bad)?;
        let (days, time) = match rest.split_once('T') {
            Some((days, time)) if !time.is_empty() => (days, Some(time)),
            Some(_) => return Err(bad()),
            None => (rest, None),
        };
        let mut seconds: i64 = 0;
        let mut any = false;
        let mut add = |part: &str, units: &[(char, i64)]| -> Result<(), String> {
            let mut part = part;
            let mut allowed = units.iter();
            while !part.is_empty() {
                let end = part.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
                let number: i64 = part[..end].parse().map_err(|_| bad())?;
                let unit = part[end..].chars().next().ok_or_else(bad)?;
                // Units in order, each at most once.
                let scale = allowed
                    .find(|(name, _)| *name == unit)
                    .map(|(_, scale)| *scale)
                    .ok_or_else(bad)?;
                seconds = number
                    .checked_mul(scale)
                    .and_then(|value| seconds.checked_add(value))
                    .ok_or_else(bad)?;
                any = true;
                part = &part[end + 1..];
            }
            Ok(())
        };
        add(days, &[('D', 86_400)])?;
        if let Some(time) = time {
            add(time, &[('H', 3_600), ('M', 60), ('S', 1)])?;
        }
        if !any || seconds <= 0 {
            return Err(bad());
        }
        if seconds > LONGEST_DELAY_DAYS * 86_400 {
            return Err(format!("'{text}' is longer than {LONGEST_DELAY_DAYS} days"));
        }
        Ok(Delay {
            text: text.to_owned(),
            duration: Duration::seconds(seconds),
        })
    }

    pub fn text(&self) -> &str {
        &self.text
    }

    pub fn duration(&self) -> Duration {
        self.duration
    }
}

/// One operator's setting: events of `event_type` reach subscribers
/// registered as `service_type` only `delay` after the hub accepted them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EmbargoSetting {
    pub event_type: EventType,
    pub service_type: ServiceType,
    /// ISO 8601 (`Delay::parse` accepted it).
    pub delay: String,
    pub reason: String,
    pub set_by: String,
    pub set_at: String,
}

impl EmbargoSetting {
    /// The setting as `GET /embargoes` shows it.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "eventType": self.event_type.code(),
            "serviceType": self.service_type.code(),
            "delay": self.delay,
            "reason": self.reason,
            "setBy": self.set_by,
            "setAt": self.set_at,
        })
    }
}

/// The settings in effect.
#[derive(Debug, Clone, Default)]
pub struct Embargoes(pub Vec<EmbargoSetting>);

impl Embargoes {
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether any subscriber's copies of this event type may be held.
    pub fn covers(&self, event_type: EventType) -> bool {
        self.0
            .iter()
            .any(|setting| setting.event_type == event_type)
    }

    /// How long an event of this type waits for a subscriber of this
    /// service type; None: not at all. A setting whose delay no longer
    /// parses holds nothing back rather than failing every dispatch; the
    /// route refuses such a delay, so only a hand-edited item has one.
    pub fn delay(&self, event_type: EventType, service_type: ServiceType) -> Option<Duration> {
        self.0
            .iter()
            .find(|setting| {
                setting.event_type == event_type && setting.service_type == service_type
            })
            .and_then(|setting| Delay::parse(&setting.delay).ok())
            .map(|delay| delay.duration())
    }
}

/// When an event was accepted, from its `received_sort` position
/// (`<receivedAt>#<eventKey>`): the embargo's clock, set by the hub and
/// not by the publisher.
pub fn accepted_at(received_sort: &str) -> Option<OffsetDateTime> {
    let at = received_sort.split('#').next()?;
    parse_instant(at).ok()
}

/// When an event accepted at `received_sort` is released after `delay`;
/// None when its position does not read (never held then: it cannot be
/// timed).
pub fn release_at(received_sort: &str, delay: Duration) -> Option<OffsetDateTime> {
    accepted_at(received_sort).and_then(|at| at.checked_add(delay))
}

/// How many whole seconds past `release_at` (a hold's, audit::timestamp
/// form) `now` is; 0 when not yet past. A time that does not read counts
/// as not past: only a hand-edited item has one, and its failures are
/// counted by `EmbargoReleaseFailures` each run.
pub fn overdue_seconds(release_at: &str, now: OffsetDateTime) -> u64 {
    parse_instant(release_at)
        .ok()
        .and_then(|at| u64::try_from((now - at).whole_seconds()).ok())
        .unwrap_or(0)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum HoldStatus {
    Held,
    Released,
    /// Not delivered: the subscription ended or the child became sensitive
    /// before the release.
    Cancelled,
}

/// A delivery held back until `release_at`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Hold {
    pub event_key: String,
    pub event_type: EventType,
    pub subscriber_id: String,
    /// What is published on release.
    pub delivery: Delivery,
    /// The child the event is about: for the audit trail, and the check
    /// that the child has not become sensitive before the release.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub patient: Option<crate::nhs_number::NhsNumber>,
    /// audit::timestamp form, so that text order is time order.
    pub release_at: String,
    pub status: HoldStatus,
    pub attempts: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// When the item may go (the event's own expiry).
    pub expires_at: i64,
}

impl Hold {
    /// The day (YYYY-MM-DD) the release falls on: the partition the
    /// release function queries.
    pub fn release_day(&self) -> &str {
        self.release_at.get(..10).unwrap_or(&self.release_at)
    }

    /// The hold's place among its day's holds: in order of release.
    pub fn due_key(&self) -> String {
        format!(
            "{}#{}#{}",
            self.release_at, self.event_key, self.subscriber_id
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_read_as_iso_8601_durations_of_days_and_time() {
        assert_eq!(Delay::parse("P42D").unwrap().duration(), Duration::days(42));
        assert_eq!(
            Delay::parse("PT5S").unwrap().duration(),
            Duration::seconds(5)
        );
        assert_eq!(
            Delay::parse("P1DT2H3M4S").unwrap().duration(),
            Duration::seconds(86_400 + 7_200 + 180 + 4)
        );
        for bad in [
            "", "P", "PT", "42D", "P42", "PT5S1H", "P1W", "P-1D", "P0D", "P400D", "PT5.5S",
        ] {
            assert!(Delay::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_release_is_timed_from_acceptance() {
        let at = release_at(
            "2026-01-01T10:00:00.000Z#blood-spot-test-outcome-1/x",
            Duration::days(42),
        )
        .unwrap();
        assert_eq!(at, time::macros::datetime!(2026-02-12 10:00 UTC));
        assert_eq!(crate::replay::next_day("2026-02-28").unwrap(), "2026-03-01");
    }

    #[test]
    fn a_hold_is_overdue_by_the_whole_seconds_past_its_release() {
        let now = time::macros::datetime!(2026-02-12 11:00:30.900 UTC);
        assert_eq!(overdue_seconds("2026-02-12T10:00:00.000Z", now), 3_630);
        assert_eq!(overdue_seconds("2026-02-12T11:00:30.900Z", now), 0);
        assert_eq!(overdue_seconds("2026-02-12T12:00:00.000Z", now), 0);
        assert_eq!(overdue_seconds("not a time", now), 0);
    }
}
