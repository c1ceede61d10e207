//! Backfill grants: an operator opens a subscription's view of a child's
//! events to a window before its creation.
//!
//! A subscription that does not rest on the child's registration at the
//! subscriber's practice (declared direct care, an area service, a parent's
//! app) discloses nothing accepted before its creation
//! (`Subscription::discloses_from`). When a clinician needs the earlier
//! record (a child newly on a health visiting caseload, say), an operator
//! grants a backfill: a stated reason, the start of the window (which runs
//! to the subscription's creation) and an expiry, each audited. While the
//! grant is open, history, event reads and replays reach back to its start;
//! after its expiry or revocation they no longer do.

use serde::{Deserialize, Serialize};
use serde_json::json;
use time::{Duration, OffsetDateTime};

use crate::error::HubError;
use crate::fhir_time::{format_instant, parse_instant, parse_moment};

pub const MAX_REASON_CHARS: usize = 1000;
/// The longest a grant stays open: long enough for a clinician to catch up
/// on a child's record, short enough that a forgotten grant closes itself.
pub const MAX_OPEN_DAYS: i64 = 90;
/// The most grants one subscription keeps (open, expired or revoked): each
/// is stored inside every copy of the subscription.
pub const MAX_GRANTS: usize = 10;

/// One operator's grant, stored inside the subscription it opens.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BackfillGrant {
    pub id: String,
    pub reason: String,
    /// The window's start (an instant); it runs to the subscription's
    /// creation, after which the subscription sees its events anyway.
    pub since: String,
    pub expires: String,
    /// The operator's client id.
    pub granted_by: String,
    pub granted_at: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked_by: Option<String>,
}

impl BackfillGrant {
    /// The window's start while the grant is open: not revoked and not
    /// expired. An unreadable instant opens nothing (never on doubt).
    pub fn opens_from(&self, now: OffsetDateTime) -> Option<OffsetDateTime> {
        if self.revoked_at.is_some() {
            return None;
        }
        let expires = parse_instant(&self.expires).ok()?;
        (now < expires)
            .then(|| parse_instant(&self.since).ok())
            .flatten()
    }

    pub fn status(&self, now: OffsetDateTime) -> &'static str {
        if self.revoked_at.is_some() {
            "revoked"
        } else if self.opens_from(now).is_some() {
            "open"
        } else {
            "expired"
        }
    }

    /// The grant as operators read it.
    pub fn to_json(&self, subscription_id: &str, now: OffsetDateTime) -> serde_json::Value {
        let mut grant = json!({
            "id": self.id,
            "subscription": format!("Subscription/{subscription_id}"),
            "status": self.status(now),
            "reason": self.reason,
            "since": self.since,
            "expires": self.expires,
            "grantedBy": self.granted_by,
            "grantedAt": self.granted_at,
        });
        if let Some(revoked_at) = &self.revoked_at {
            grant["revokedAt"] = json!(revoked_at);
        }
        if let Some(revoked_by) = &self.revoked_by {
            grant["revokedBy"] = json!(revoked_by);
        }
        grant
    }

    /// What the audit trail says of it.
    pub fn describe(&self) -> String {
        format!(
            "backfill {} since {} expires {}: {}",
            self.id, self.since, self.expires, self.reason
        )
    }
}

/// The earliest start among a subscription's open grants.
pub fn earliest_open(grants: &[BackfillGrant], now: OffsetDateTime) -> Option<OffsetDateTime> {
    grants
        .iter()
        .filter_map(|grant| grant.opens_from(now))
        .min()
}

/// An operator's request for a grant, checked: a reason, a start and an
/// expiry within `MAX_OPEN_DAYS`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackfillRequest {
    pub reason: String,
    pub since: OffsetDateTime,
    pub expires: OffsetDateTime,
}

impl BackfillRequest {
    pub fn parse(
        reason: Option<&str>,
        since: Option<&str>,
        expires: Option<&str>,
        now: OffsetDateTime,
    ) -> Result<Self, HubError> {
        let reason = reason.map(str::trim).unwrap_or_default();
        if reason.is_empty() {
            return Err(HubError::bad_request(
                "Parameters.reason",
                "reason is required: why the subscriber needs the earlier record",
            ));
        }
        if reason.chars().count() > MAX_REASON_CHARS {
            return Err(HubError::bad_request(
                "Parameters.reason",
                format!("reason is at most {MAX_REASON_CHARS} characters"),
            ));
        }
        let since = moment("since", since)?;
        let expires = moment("expires", expires)?;
        if expires <= now {
            return Err(HubError::bad_request(
                "Parameters.expires",
                "expires must be in the future",
            ));
        }
        if expires > now + Duration::days(MAX_OPEN_DAYS) {
            return Err(HubError::bad_request(
                "Parameters.expires",
                format!("a backfill grant is open for at most {MAX_OPEN_DAYS} days"),
            ));
        }
        Ok(BackfillRequest {
            reason: reason.to_owned(),
            since,
            expires,
        })
    }

    pub fn grant(&self, granted_by: &str, now: OffsetDateTime) -> BackfillGrant {
        BackfillGrant {
            id: uuid::Uuid::new_v4().to_string(),
            reason: self.reason.clone(),
            since: format_instant(self.since),
            expires: format_instant(self.expires),
            granted_by: granted_by.to_owned(),
            granted_at: format_instant(now),
            revoked_at: None,
            revoked_by: None,
        }
    }
}

/// An instant, a dateTime with a time, or a date (its midnight, UTC).
fn moment(name: &str, text: Option<&str>) -> Result<OffsetDateTime, HubError> {
    let field = format!("Parameters.{name}");
    let text = text.ok_or_else(|| HubError::bad_request(&field, format!("{name} is required")))?;
    let bad = || {
        HubError::bad_request(
            &field,
            format!("{name} must be an instant, a dateTime with a time zone, or a date"),
        )
    };
    parse_moment(text).ok_or_else(bad)
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    const NOW: OffsetDateTime = datetime!(2026-12-07 12:00 UTC);

    fn request(since: &str, expires: &str) -> Result<BackfillRequest, HubError> {
        BackfillRequest::parse(Some("new to caseload"), Some(since), Some(expires), NOW)
    }

    #[test]
    fn a_grant_opens_its_window_until_it_expires_or_is_revoked() {
        let mut grant = request("2026-01-01", "2026-12-14T12:00:00Z")
            .unwrap()
            .grant("ops", NOW);
        assert_eq!(grant.opens_from(NOW), Some(datetime!(2026-01-01 0:00 UTC)));
        assert_eq!(grant.status(NOW), "open");
        assert_eq!(grant.opens_from(datetime!(2026-12-14 12:00 UTC)), None);
        assert_eq!(grant.status(datetime!(2026-12-15 0:00 UTC)), "expired");
        grant.revoked_at = Some("2026-12-08T00:00:00Z".into());
        assert_eq!(grant.opens_from(NOW), None);
        assert_eq!(grant.status(NOW), "revoked");
    }

    #[test]
    fn the_earliest_open_grant_sets_the_start() {
        let early = request("2025-06-01", "2026-12-08")
            .unwrap()
            .grant("ops", NOW);
        let late = request("2026-06-01", "2027-01-01")
            .unwrap()
            .grant("ops", NOW);
        let grants = [early, late];
        assert_eq!(
            earliest_open(&grants, NOW),
            Some(datetime!(2025-06-01 0:00 UTC))
        );
        // The early one has expired a day on: the later start is left.
        assert_eq!(
            earliest_open(&grants, datetime!(2026-12-09 0:00 UTC)),
            Some(datetime!(2026-06-01 0:00 UTC))
        );
    }

    #[test]
    fn a_request_needs_a_reason_a_start_and_a_near_expiry() {
        let field = |result: Result<BackfillRequest, HubError>| match result {
            Err(HubError::BadRequest { expression, .. }) => expression,
            other => panic!("expected a bad request, got {other:?}"),
        };
        assert_eq!(
            field(BackfillRequest::parse(
                Some("  "),
                Some("2026-01-01"),
                Some("2026-12-08"),
                NOW
            )),
            "Parameters.reason"
        );
        assert_eq!(
            field(BackfillRequest::parse(
                Some("why"),
                None,
                Some("2026-12-08"),
                NOW
            )),
            "Parameters.since"
        );
        assert_eq!(field(request("2026-01", "2026-12-08")), "Parameters.since");
        assert_eq!(
            field(request("2026-01-01", "2026-12-07T11:00:00Z")),
            "Parameters.expires"
        );
        assert_eq!(
            field(request("2026-01-01", "2027-06-01")),
            "Parameters.expires"
        );
        assert!(request("2026-01-01T08:30:00+01:00", "2027-03-07").is_ok());
    }
}
