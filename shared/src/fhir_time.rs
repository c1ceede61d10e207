//! FHIR date, dateTime and instant values. A dateTime with a time must carry
//! a zone offset: without one, the moment it names is ambiguous.

use time::format_description::well_known::Rfc3339;
use time::{Date, Month, OffsetDateTime};

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TimeError {
    #[error("is not a FHIR date (YYYY, YYYY-MM or YYYY-MM-DD)")]
    NotADate,
    #[error("has a time but no zone offset (Z or +hh:mm)")]
    NoOffset,
    #[error("is not a valid FHIR dateTime")]
    NotADateTime,
    #[error("is not an instant (YYYY-MM-DDThh:mm:ss with seconds and a zone offset)")]
    NotAnInstant,
}

/// A FHIR dateTime at the precision it was given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DateTimeValue {
    Year(i32),
    YearMonth(i32, Month),
    Date(Date),
    DateTime(OffsetDateTime),
}

impl DateTimeValue {
    /// The calendar date, when the value is precise to the day.
    pub fn date(&self) -> Option<Date> {
        match self {
            DateTimeValue::Date(date) => Some(*date),
            DateTimeValue::DateTime(moment) => Some(moment.date()),
            DateTimeValue::Year(_) | DateTimeValue::YearMonth(..) => None,
        }
    }
}

/// A FHIR instant, dateTime precise to the second, or date (its first
/// moment, UTC): where a window starts or ends (replays, backfill grants).
/// None for anything else, a year or a month included.
pub fn parse_moment(text: &str) -> Option<OffsetDateTime> {
    match parse_date_time(text).ok()? {
        DateTimeValue::DateTime(moment) => Some(moment),
        DateTimeValue::Date(date) => Some(date.midnight().assume_utc()),
        DateTimeValue::Year(_) | DateTimeValue::YearMonth(..) => None,
    }
}

pub fn parse_instant(text: &str) -> Result<OffsetDateTime, TimeError> {
    if !text.contains('T') {
        return Err(TimeError::NotAnInstant);
    }
    if !has_offset(text) {
        return Err(TimeError::NoOffset);
    }
    let moment = OffsetDateTime::parse(text, &Rfc3339).map_err(|_| TimeError::NotAnInstant)?;
    // A moment whose UTC form falls outside years 1 to 9999 cannot be stored
    // or compared as the hub does; refusing it here keeps it from panicking later.
    in_utc_range(moment).ok_or(TimeError::NotAnInstant)
}

fn in_utc_range(moment: OffsetDateTime) -> Option<OffsetDateTime> {
    moment
        .checked_to_offset(time::UtcOffset::UTC)
        .filter(|utc| (1..=9999).contains(&utc.year()))
        .map(|_| moment)
}

/// An instant whose zone offset is out of range (beyond ±14:00, as in one of
/// the NEMS examples, `+58:00`) but otherwise well formed: the moment is read
/// as if the offset were zero, and the caller is told so it can warn.
pub fn parse_instant_allowing_bad_offset(text: &str) -> Result<(OffsetDateTime, bool), TimeError> {
    match parse_instant(text) {
        Ok(moment) if moment.offset().whole_hours().abs() <= 14 => Ok((moment, false)),
        result => {
            let offset = text.get(text.len().saturating_sub(6)..).unwrap_or_default();
            let offset_shaped = offset.len() == 6
                && matches!(offset.as_bytes()[0], b'+' | b'-')
                && offset.as_bytes()[3] == b':'
                && offset
                    .bytes()
                    .enumerate()
                    .all(|(i, b)| i == 0 || i == 3 || b.is_ascii_digit());
            // Only an offset beyond ±14 hours takes this path; any other failure
            // stands.
            let beyond_range = offset_shaped
                && offset
                    .get(1..3)
                    .and_then(|hours| hours.parse::<u8>().ok())
                    .is_some_and(|hours| hours > 14);
            if !beyond_range {
                return result.map(|moment| (moment, false));
            }
            let local = &text[..text.len() - 6];
            let moment = parse_instant(&format!("{local}+00:00"))?;
            Ok((moment, true))
        }
    }
}

pub fn parse_date(text: &str) -> Result<DateTimeValue, TimeError> {
    let mut parts = text.splitn(3, '-');
    let year = parts.next().ok_or(TimeError::NotADate)?;
    if year.len() != 4 || !year.bytes().all(|b| b.is_ascii_digit()) {
        return Err(TimeError::NotADate);
    }
    let year: i32 = year.parse().map_err(|_| TimeError::NotADate)?;
    let Some(month) = parts.next() else {
        return Ok(DateTimeValue::Year(year));
    };
    let month = two_digits(month)
        .and_then(|m| Month::try_from(m).ok())
        .ok_or(TimeError::NotADate)?;
    let Some(day) = parts.next() else {
        return Ok(DateTimeValue::YearMonth(year, month));
    };
    let day = two_digits(day).ok_or(TimeError::NotADate)?;
    Date::from_calendar_date(year, month, day)
        .map(DateTimeValue::Date)
        .map_err(|_| TimeError::NotADate)
}

pub fn parse_date_time(text: &str) -> Result<DateTimeValue, TimeError> {
    if !text.contains('T') {
        return parse_date(text);
    }
    if !has_offset(text) {
        return Err(TimeError::NoOffset);
    }
    OffsetDateTime::parse(text, &Rfc3339)
        .ok()
        .and_then(in_utc_range)
        .map(DateTimeValue::DateTime)
        .ok_or(TimeError::NotADateTime)
}

fn two_digits(text: &str) -> Option<u8> {
    if text.len() == 2 && text.bytes().all(|b| b.is_ascii_digit()) {
        text.parse().ok()
    } else {
        None
    }
}

fn has_offset(text: &str) -> bool {
    let Some((_, time)) = text.split_once('T') else {
        return false;
    };
    time.ends_with('Z') || time.contains('+') || time.contains('-')
}

/// Formats an instant as FHIR writes it (RFC 3339, UTC).
pub fn format_instant(moment: OffsetDateTime) -> String {
    moment
        .checked_to_offset(time::UtcOffset::UTC)
        .and_then(|utc| utc.format(&Rfc3339).ok())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::{date, datetime};

    #[test]
    fn instants_need_seconds_and_an_offset() {
        assert_eq!(
            parse_instant("2017-11-01T15:00:33+00:00"),
            Ok(datetime!(2017-11-01 15:00:33 UTC))
        );
        assert!(parse_instant("2017-11-01T15:00:33.123Z").is_ok());
        assert_eq!(
            parse_instant("2017-11-01T15:00:33"),
            Err(TimeError::NoOffset)
        );
        assert_eq!(parse_instant("2017-11-01"), Err(TimeError::NotAnInstant));
        assert_eq!(
            parse_instant("2017-11-01T15:00+00:00"),
            Err(TimeError::NotAnInstant)
        );
        assert_eq!(
            parse_instant("2017-13-01T15:00:00Z"),
            Err(TimeError::NotAnInstant)
        );
    }

    #[test]
    fn an_out_of_range_offset_is_read_as_zero_and_reported() {
        assert_eq!(
            parse_instant_allowing_bad_offset("2017-11-01T16:02:04+58:00"),
            Ok((datetime!(2017-11-01 16:02:04 UTC), true))
        );
        assert_eq!(
            parse_instant_allowing_bad_offset("2017-11-01T16:02:04+01:00"),
            Ok((datetime!(2017-11-01 16:02:04 +1), false))
        );
        assert_eq!(
            parse_instant_allowing_bad_offset("2017-11-01T16:02:04"),
            Err(TimeError::NoOffset)
        );
        assert!(parse_instant_allowing_bad_offset("2017-11-01T16:02+58:00").is_err());
    }

    #[test]
    fn moments_beyond_year_9999_in_utc_are_refused_not_panicked_on() {
        assert_eq!(
            parse_instant("9999-12-31T23:59:59-01:00"),
            Err(TimeError::NotAnInstant)
        );
        assert_eq!(
            parse_date_time("9999-12-31T23:59:59-01:00"),
            Err(TimeError::NotADateTime)
        );
        assert!(parse_instant_allowing_bad_offset("9999-12-31T23:59:59-01:00").is_err());
        assert!(parse_instant("9999-12-31T23:59:59+01:00").is_ok());
        assert_eq!(
            format_instant(datetime!(9999-12-31 23:59:59 +1)),
            "9999-12-31T22:59:59Z"
        );
    }

    #[test]
    fn dates_at_every_precision() {
        assert_eq!(parse_date("2013"), Ok(DateTimeValue::Year(2013)));
        assert_eq!(
            parse_date("2013-10"),
            Ok(DateTimeValue::YearMonth(2013, Month::October))
        );
        assert_eq!(
            parse_date("2013-10-12"),
            Ok(DateTimeValue::Date(date!(2013 - 10 - 12)))
        );
        for bad in [
            "13",
            "2013-1",
            "2013-10-32",
            "2013-02-30",
            "2013-10-12T",
            "abcd",
            "",
        ] {
            assert!(parse_date(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn date_times_with_a_time_need_an_offset() {
        assert_eq!(
            parse_date_time("2017-10-02T12:00:00+01:00").unwrap().date(),
            Some(date!(2017 - 10 - 02))
        );
        assert_eq!(
            parse_date_time("2017-10-02T12:00:00"),
            Err(TimeError::NoOffset)
        );
        assert_eq!(parse_date_time("2017-10").unwrap().date(), None);
    }
}
