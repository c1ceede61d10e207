//! A child's event history: `GET /children/{nhsNumber}/events`. The hub
//! keeps every version of every event, so it can show what an e-Red Book
//! needs: the current version of each record, or all of them, filtered by
//! event type and date, a page at a time.

use std::collections::{BTreeMap, BTreeSet};

use base64::Engine;
use serde_json::json;
use time::{Date, Month, OffsetDateTime};

use crate::catalogue::EventType;
use crate::error::HubError;
use crate::events::{EventSummary, Retention, StoredEvent, current_versions, received_since};
use crate::fhir_time::{DateTimeValue, parse_date_time, parse_instant};
use crate::message::Encoding;
use crate::nhs_number::NhsNumber;
use crate::outcome::{OperationOutcome, escape_xml};
use crate::text::percent_encode;

/// The most events one page holds, and the default.
pub const MAX_PAGE_SIZE: usize = 100;
pub const DEFAULT_PAGE_SIZE: usize = 20;

/// Which versions of each record a history shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Versions {
    /// The newest version of each focus resource, none for a deleted one.
    Current,
    /// Every event, superseded and out-of-order ones and deletes included.
    All,
}

/// One `date` parameter: a FHIR search prefix and the range its value spans.
#[derive(Debug, Clone, PartialEq, Eq)]
struct DateBound {
    /// As given, for the links of other pages.
    text: String,
    prefix: Prefix,
    start: OffsetDateTime,
    end: OffsetDateTime,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Prefix {
    Eq,
    Gt,
    Ge,
    Lt,
    Le,
}

impl DateBound {
    fn parse(text: &str) -> Result<Self, HubError> {
        let bad = || {
            HubError::bad_request(
                "date",
                format!(
                    "'{text}' is not a date search value: an optional prefix (eq, gt, ge, lt, le) \
                     and a FHIR date or dateTime with a zone offset, e.g. ge2026-01-01"
                ),
            )
        };
        let (prefix, value) = match text.get(..2) {
            Some("eq") => (Prefix::Eq, &text[2..]),
            Some("gt") => (Prefix::Gt, &text[2..]),
            Some("ge") => (Prefix::Ge, &text[2..]),
            Some("lt") => (Prefix::Lt, &text[2..]),
            Some("le") => (Prefix::Le, &text[2..]),
            _ => (Prefix::Eq, text),
        };
        let (start, end) = span(parse_date_time(value).map_err(|_| bad())?).ok_or_else(bad)?;
        Ok(DateBound {
            text: text.to_owned(),
            prefix,
            start,
            end,
        })
    }

    fn admits(&self, moment: OffsetDateTime) -> bool {
        match self.prefix {
            Prefix::Eq => self.start <= moment && moment < self.end,
            Prefix::Gt => moment >= self.end,
            Prefix::Ge => moment >= self.start,
            Prefix::Lt => moment < self.start,
            Prefix::Le => moment < self.end,
        }
    }

    /// The earliest moment it admits, if it sets one.
    fn lower(&self) -> Option<OffsetDateTime> {
        match self.prefix {
            Prefix::Eq | Prefix::Ge => Some(self.start),
            Prefix::Gt => Some(self.end),
            Prefix::Lt | Prefix::Le => None,
        }
    }
}

/// The moments a value at its precision covers, [start, end).
fn span(value: DateTimeValue) -> Option<(OffsetDateTime, OffsetDateTime)> {
    let midnight = |date: Date| date.midnight().assume_utc();
    match value {
        // The last second of year 9999 has no end the hub can represent:
        // refused as a bad value, not overflowed.
        DateTimeValue::DateTime(moment) => {
            Some((moment, moment.checked_add(time::Duration::SECOND)?))
        }
        DateTimeValue::Date(date) => Some((midnight(date), midnight(date.next_day()?))),
        DateTimeValue::YearMonth(year, month) => {
            let first = Date::from_calendar_date(year, month, 1).ok()?;
            let next = match month {
                Month::December => {
                    Date::from_calendar_date(year.checked_add(1)?, Month::January, 1).ok()?
                }
                _ => Date::from_calendar_date(year, month.next(), 1).ok()?,
            };
            Some((midnight(first), midnight(next)))
        }
        DateTimeValue::Year(year) => Some((
            midnight(Date::from_calendar_date(year, Month::January, 1).ok()?),
            midnight(Date::from_calendar_date(year.checked_add(1)?, Month::January, 1).ok()?),
        )),
    }
}

/// What a history request asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryQuery {
    pub versions: Versions,
    /// None: every type the caller may see.
    pub event_types: Option<BTreeSet<EventType>>,
    dates: Vec<DateBound>,
    pub count: usize,
    pub offset: usize,
}

impl HistoryQuery {
    /// From the query parameters, each value in the order given:
    /// `versions=current|all`, `eventType` (repeated or comma-separated),
    /// `date` (repeated, with prefixes), `_count`, `_page`.
    pub fn parse<'a>(
        versions: Option<&str>,
        event_types: impl Iterator<Item = &'a str>,
        dates: impl Iterator<Item = &'a str>,
        count: Option<&str>,
        page: Option<&str>,
    ) -> Result<Self, HubError> {
        let versions = match versions {
            None | Some("current") => Versions::Current,
            Some("all") => Versions::All,
            Some(other) => {
                return Err(HubError::bad_request(
                    "versions",
                    format!("versions is 'current' or 'all', not '{other}'"),
                ));
            }
        };
        let mut types = BTreeSet::new();
        for code in event_types.flat_map(|value| value.split(',')) {
            types.insert(code.trim().parse::<EventType>().map_err(|_| {
                HubError::bad_request(
                    "eventType",
                    format!("'{code}' is not an event type of the hub"),
                )
            })?);
        }
        let dates = dates.map(DateBound::parse).collect::<Result<Vec<_>, _>>()?;
        let count = match count {
            None => DEFAULT_PAGE_SIZE,
            Some(text) => text
                .parse::<usize>()
                .ok()
                .filter(|count| (1..=MAX_PAGE_SIZE).contains(count))
                .ok_or_else(|| {
                    HubError::bad_request(
                        "_count",
                        format!("_count is a whole number from 1 to {MAX_PAGE_SIZE}"),
                    )
                })?,
        };
        let offset = match page {
            None => 0,
            Some(text) => text.parse::<usize>().map_err(|_| {
                HubError::bad_request(
                    "_page",
                    "_page is a page token from a previous page's next link",
                )
            })?,
        };
        Ok(HistoryQuery {
            versions,
            event_types: (!types.is_empty()).then_some(types),
            dates,
            count,
            offset,
        })
    }

    /// The query string that asks for the same, at another page.
    fn url(&self, nhs_number: NhsNumber, offset: usize) -> String {
        let mut url = format!(
            "/children/{nhs_number}/events?versions={}",
            match self.versions {
                Versions::Current => "current",
                Versions::All => "all",
            }
        );
        if let Some(types) = &self.event_types {
            let codes: Vec<&str> = types.iter().map(|t| t.code()).collect();
            url.push_str(&format!("&eventType={}", codes.join(",")));
        }
        for bound in &self.dates {
            url.push_str(&format!("&date={}", percent_encode(&bound.text)));
        }
        url.push_str(&format!("&_count={}", self.count));
        if offset > 0 {
            url.push_str(&format!("&_page={offset}"));
        }
        url
    }
}

/// What a subscriber may see of a child's events beyond those delivered to
/// it, by the basis it sees them on (crate::basis): from when.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Visibility {
    /// The register says the child is registered at the subscriber's
    /// practice: the child's whole retained record, which follows the child
    /// to its new practice.
    RegisteredGp,
    /// Declared direct care, which the hub cannot check: what arrived
    /// since the subscription's creation, or since the start of an
    /// operator's open backfill grant (`backfill`)
    /// (crate::subscription::Subscription::discloses_from).
    DeclaredDirectCare {
        from: OffsetDateTime,
        backfill: bool,
    },
}

impl Visibility {
    /// Whether the event at this position (`received_sort`) is disclosed.
    pub fn admits(&self, received_sort: &str) -> bool {
        match self {
            Visibility::RegisteredGp => true,
            Visibility::DeclaredDirectCare { from, .. } => received_since(received_sort, *from),
        }
    }
}

/// What a subscriber may see of a child's history: the event types its
/// explicit subscriptions name, each on its basis.
pub type VisibleFrom = BTreeMap<EventType, Visibility>;

/// Whether an event of this type, at this position, is one the subscriber
/// may see.
pub fn admitted(visible: &VisibleFrom, event_type: EventType, received_sort: &str) -> bool {
    visible
        .get(&event_type)
        .is_some_and(|basis| basis.admits(received_sort))
}

/// The basis of a read, for its audit record: `basis: registered GP`, or
/// `basis: declared direct care since <the earliest start>`, with
/// `(backfill grant)` when an operator's grant opened that start.
pub fn describe(visible: &VisibleFrom) -> String {
    // None (the registered GP's whole record) orders before any moment.
    let earliest = visible
        .values()
        .map(|basis| match basis {
            Visibility::RegisteredGp => None,
            Visibility::DeclaredDirectCare { from, backfill } => Some((*from, *backfill)),
        })
        .min();
    match earliest {
        Some(Some((from, backfill))) => format!(
            "basis: declared direct care since {}{}",
            crate::audit::timestamp(from),
            if backfill { " (backfill grant)" } else { "" }
        ),
        Some(None) => "basis: registered GP".to_owned(),
        None => "basis: none".to_owned(),
    }
}

/// The visibility of a subscriber at the practice `ods_code`: every type on
/// the registered-GP basis when the register places the child there.
pub fn for_practice(
    visible: VisibleFrom,
    registration: Option<Option<&str>>,
    ods_code: &str,
) -> VisibleFrom {
    if registration.flatten() != Some(ods_code) {
        return visible;
    }
    visible
        .into_keys()
        .map(|event_type| (event_type, Visibility::RegisteredGp))
        .collect()
}

/// The events of a child a caller sees, in order of arrival: live ones, of
/// the types it may see and accepted since it may see them (None: all),
/// without sensitive ones unless it may see them, then the versions and
/// filters the query asks for.
pub fn select<'a>(
    events: &'a [EventSummary],
    query: &HistoryQuery,
    visible: Option<&VisibleFrom>,
    include_sensitive: bool,
    now: OffsetDateTime,
) -> Vec<&'a EventSummary> {
    let versions: Vec<&EventSummary> = match query.versions {
        Versions::All => events.iter().collect(),
        Versions::Current => current_versions(events),
    };
    versions
        .into_iter()
        .filter(|event| event.is_live(now))
        .filter(|event| include_sensitive || !event.sensitive)
        .filter(|event| {
            visible.is_none_or(|visible| admitted(visible, event.event_type, &event.received_sort))
        })
        .filter(|event| {
            query
                .event_types
                .as_ref()
                .is_none_or(|types| types.contains(&event.event_type))
        })
        .filter(|event| {
            query.dates.is_empty()
                || parse_instant(&event.timestamp)
                    .is_ok_and(|moment| query.dates.iter().all(|bound| bound.admits(moment)))
        })
        .collect()
}

/// A page of a child's history as a FHIR searchset Bundle: each entry the
/// event message as published when the response's encoding is the
/// message's own, else a Binary holding it; and, when the request reaches
/// back beyond what the hub still holds, an OperationOutcome saying so.
pub fn searchset(
    nhs_number: NhsNumber,
    query: &HistoryQuery,
    page: &[StoredEvent],
    total: usize,
    retention: Retention,
    now: OffsetDateTime,
    encoding: Encoding,
) -> String {
    let self_url = query.url(nhs_number, query.offset);
    let next_offset = query.offset.saturating_add(query.count);
    let next_url = (next_offset < total).then(|| query.url(nhs_number, next_offset));
    let horizon = retention.horizon(now);
    let lower = query.dates.iter().filter_map(DateBound::lower).max();
    let expired_note = lower.is_none_or(|lower| lower < horizon).then(|| {
        OperationOutcome::information(
            "OUT_OF_RANGE",
            format!(
                "events the hub accepted before {} are past the retention period ({} days) and are no longer held",
                crate::audit::timestamp(horizon),
                retention.days
            ),
        )
    });
    let full_url = |event: &StoredEvent| {
        format!(
            "/events/{}?eventType={}",
            event.event_id,
            event.event_type.code()
        )
    };
    match encoding {
        Encoding::Json => {
            let mut links = vec![json!({"relation": "self", "url": self_url})];
            if let Some(next) = &next_url {
                links.push(json!({"relation": "next", "url": next}));
            }
            let mut entries: Vec<serde_json::Value> = page
                .iter()
                .map(|event| {
                    json!({
                        "fullUrl": full_url(event),
                        "resource": json_resource(event),
                        "search": {"mode": "match"},
                    })
                })
                .collect();
            if let Some(note) = &expired_note {
                entries.push(json!({"resource": note.to_json(), "search": {"mode": "outcome"}}));
            }
            json!({
                "resourceType": "Bundle",
                "type": "searchset",
                "total": total,
                "link": links,
                "entry": entries,
            })
            .to_string()
        }
        Encoding::Xml => {
            let mut xml = format!(
                "<Bundle xmlns=\"http://hl7.org/fhir\"><type value=\"searchset\"/><total value=\"{total}\"/>"
            );
            let mut link = |relation: &str, url: &str| {
                xml.push_str(&format!(
                    "<link><relation value=\"{relation}\"/><url value=\"{}\"/></link>",
                    escape_xml(url)
                ));
            };
            link("self", &self_url);
            if let Some(next) = &next_url {
                link("next", next);
            }
            for event in page {
                xml.push_str(&format!(
                    "<entry><fullUrl value=\"{}\"/><resource>{}</resource><search><mode value=\"match\"/></search></entry>",
                    escape_xml(&full_url(event)),
                    xml_resource(event)
                ));
            }
            if let Some(note) = &expired_note {
                xml.push_str(&format!(
                    "<entry><resource>{}</resource><search><mode value=\"outcome\"/></search></entry>",
                    note.render(Encoding::Xml)
                ));
            }
            xml.push_str("</Bundle>");
            xml
        }
    }
}

fn stored_encoding(event: &StoredEvent) -> Option<Encoding> {
    Encoding::from_content_type(&event.content_type)
}

fn binary(event: &StoredEvent) -> (String, String) {
    (
        event.content_type.clone(),
        base64::engine::general_purpose::STANDARD.encode(event.payload.as_bytes()),
    )
}

fn json_resource(event: &StoredEvent) -> serde_json::Value {
    if stored_encoding(event) == Some(Encoding::Json)
        && let Ok(value) = serde_json::from_str(&event.payload)
    {
        return value;
    }
    let (content_type, data) = binary(event);
    json!({"resourceType": "Binary", "contentType": content_type, "data": data})
}

fn xml_resource(event: &StoredEvent) -> String {
    if stored_encoding(event) == Some(Encoding::Xml) {
        return without_declaration(&event.payload).to_owned();
    }
    let (content_type, data) = binary(event);
    format!(
        "<Binary xmlns=\"http://hl7.org/fhir\"><contentType value=\"{}\"/><data value=\"{data}\"/></Binary>",
        escape_xml(&content_type)
    )
}

/// The document without its XML declaration, which may only open a
/// document, not sit inside another.
fn without_declaration(payload: &str) -> &str {
    let trimmed = payload.trim_start_matches('\u{feff}').trim_start();
    match trimmed.strip_prefix("<?xml") {
        Some(rest) => rest
            .find("?>")
            .map_or(trimmed, |end| rest[end + 2..].trim_start()),
        None => trimmed,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Only the practice the register names lifts the creation floor; a
    /// de-registration (no practice) or no registration at all leaves it.
    #[test]
    fn the_registered_practice_alone_sees_before_its_subscription() {
        let from = time::macros::datetime!(2026-12-07 10:00 UTC);
        let declared = VisibleFrom::from([(
            EventType::Vaccinations,
            Visibility::DeclaredDirectCare {
                from,
                backfill: false,
            },
        )]);
        let lifted = for_practice(declared.clone(), Some(Some("A83627")), "A83627");
        assert_eq!(lifted[&EventType::Vaccinations], Visibility::RegisteredGp);
        assert_eq!(describe(&lifted), "basis: registered GP");
        for registration in [Some(Some("B82001")), Some(None), None] {
            assert_eq!(
                for_practice(declared.clone(), registration, "A83627"),
                declared
            );
        }
        assert_eq!(
            describe(&declared),
            "basis: declared direct care since 2026-12-07T10:00:00.000Z"
        );
        let before = "2026-12-07T09:59:59.999Z#vaccinations-1/a";
        assert!(!declared[&EventType::Vaccinations].admits(before));
        assert!(lifted[&EventType::Vaccinations].admits(before));
    }

    fn dated(date: &str) -> Result<HistoryQuery, HubError> {
        HistoryQuery::parse(None, std::iter::empty(), std::iter::once(date), None, None)
    }

    #[test]
    fn a_date_at_the_end_of_year_9999_is_a_bad_date_not_an_overflow() {
        for prefix in ["", "eq", "gt", "ge", "lt", "le"] {
            for value in [
                "9999-12-31T23:59:59Z",
                "9999-12-31T23:59:59.999Z",
                "9999-12-31",
                "9999-12",
                "9999",
            ] {
                let text = format!("{prefix}{value}");
                match dated(&text) {
                    // A value whose end the hub can still represent.
                    Ok(query) => assert_eq!(query.dates.len(), 1, "{text}"),
                    Err(error) => {
                        assert!(
                            matches!(&error, HubError::BadRequest { expression, .. } if expression == "date"),
                            "{text}: {error:?}"
                        );
                    }
                }
            }
        }
        // The last second itself has no end within the years the hub
        // handles: refused, whatever the prefix.
        for prefix in ["", "eq", "gt", "ge", "lt", "le"] {
            assert!(
                dated(&format!("{prefix}9999-12-31T23:59:59Z")).is_err(),
                "{prefix}"
            );
        }
        // The day before is an ordinary date.
        assert!(dated("le9999-12-30T23:59:59Z").is_ok());
    }
}
