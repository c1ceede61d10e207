//! Replay: `POST /Subscription/{id}/$replay` re-delivers to the
//! subscriber's queue every stored event of a window that the subscription
//! matches now, oldest first, each delivery marked with the replay's id.
//!
//! A replay is a job record that a worker advances in bounded steps. The
//! job's `position` says how far the scan has got: every event accepted at
//! or before it has been handled, and it is saved after each delivery, so a
//! step that fails part-way resumes after the last event it sent.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::audit::{self};
use crate::basis::Basis;
use crate::criteria::Target;
use crate::error::HubError;
use crate::events::{Retention, first_position};
use crate::fhir_time::parse_moment;
use crate::subscription::Subscription;

/// Events read per step: a step's work is bounded whatever the window.
pub const STEP_EVENTS: usize = 100;
/// Day partitions read per step, so that a long quiet window still makes
/// progress a step at a time.
pub const STEP_DAYS: usize = 62;
/// How long a finished job can still be read.
pub const JOB_DAYS_KEPT: i64 = 30;
/// Replays a subscriber may start per day (UTC), over all its
/// subscriptions: each re-sends a whole window to its queue.
pub const REPLAYS_PER_SUBSCRIBER_PER_DAY: u32 = 10;
/// The longest a running replay keeps its subscription from starting
/// another: a replay its worker stopped advancing (its stream records given
/// up on) must not block the subscription for good.
pub const RUNNING_HOLD_SECONDS: i64 = 24 * 3600;

/// Why a replay was not started. Neither refusal stores anything.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotStarted {
    /// Another replay of the subscription is running.
    AlreadyRunning,
    /// The subscriber has started its replays of the day.
    QuotaSpent,
}

/// What starting a replay checks and counts, all in one conditional write:
/// the subscription's running hold, and the subscriber's count of the day.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Admission {
    /// The key of the record that says which replay of the subscription is
    /// running (the replays table's key space; no replay id looks like it).
    pub hold_key: String,
    /// Unix seconds: a hold that ends before this no longer blocks.
    pub now: i64,
    pub hold_until: i64,
    /// The key of the subscriber's count of replays started this day.
    pub quota_key: String,
    pub per_day: u32,
    /// When the count's record may leave the store (Unix seconds).
    pub quota_expires_at: i64,
}

impl Admission {
    pub fn of(job: &ReplayJob, now: OffsetDateTime) -> Self {
        let day = now.to_offset(time::UtcOffset::UTC).date();
        Admission {
            hold_key: Self::hold_key_of(job),
            now: now.unix_timestamp(),
            hold_until: now.unix_timestamp().saturating_add(RUNNING_HOLD_SECONDS),
            quota_key: format!("quota#{}#{day}", job.subscriber_id),
            per_day: REPLAYS_PER_SUBSCRIBER_PER_DAY,
            quota_expires_at: now.unix_timestamp().saturating_add(2 * 86_400),
        }
    }

    /// The key of the hold a job of this subscription takes.
    pub fn hold_key_of(job: &ReplayJob) -> String {
        format!("running#{}", job.subscription_id)
    }
}

/// Seconds until the subscriber's quota renews: the next midnight, UTC.
pub fn quota_renews_in(now: OffsetDateTime) -> u64 {
    let now = now.to_offset(time::UtcOffset::UTC);
    now.date()
        .next_day()
        .map(|tomorrow| tomorrow.midnight().assume_utc() - now)
        .and_then(|wait| u64::try_from(wait.whole_seconds()).ok())
        .unwrap_or(86_400)
        .max(1)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ReplayStatus {
    Running,
    Completed,
    /// Ended early: the subscription was deleted or ended meanwhile.
    Stopped,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReplayJob {
    pub replay_id: String,
    pub subscription_id: String,
    pub subscriber_id: String,
    /// The window, on the time the hub accepted each event: since <= t < until.
    pub since: String,
    pub until: String,
    pub status: ReplayStatus,
    /// Events of the window read so far, and how many were re-delivered.
    pub scanned: u64,
    pub delivered: u64,
    /// Everything accepted at or before this `receivedSort` position (or
    /// before this day, when it is a bare YYYY-MM-DD) has been handled.
    pub position: String,
    /// Incremented by each save: a save that finds another was made since
    /// its read is refused.
    pub revision: u64,
    pub requested_at: String,
    pub updated_at: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completed_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// When the job record leaves the store (Unix seconds).
    pub expires_at: i64,
}

impl ReplayJob {
    pub fn to_json(&self) -> serde_json::Value {
        let mut json = serde_json::json!({
            "id": self.replay_id,
            "subscription": format!("Subscription/{}", self.subscription_id),
            "status": self.status,
            "since": self.since,
            "until": self.until,
            "scanned": self.scanned,
            "delivered": self.delivered,
            "requestedAt": self.requested_at,
            "updatedAt": self.updated_at,
        });
        if let Some(completed_at) = &self.completed_at {
            json["completedAt"] = completed_at.clone().into();
        }
        if let Some(detail) = &self.detail {
            json["detail"] = detail.clone().into();
        }
        json
    }
}

/// A checked replay request: the window, clamped to what the hub holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplayRequest {
    pub since: OffsetDateTime,
    pub until: OffsetDateTime,
    /// Set when `since` reached back past the retention period.
    pub clamped: Option<String>,
}

impl ReplayRequest {
    /// `since` (required) and `until` (default now), each a FHIR instant,
    /// dateTime or date (a date is its first moment, UTC).
    pub fn parse(
        since: Option<&str>,
        until: Option<&str>,
        retention: Retention,
        now: OffsetDateTime,
    ) -> Result<Self, HubError> {
        let moment = |name: &str, text: &str| {
            let bad = || {
                HubError::bad_request(
                    name,
                    format!("{name} is a FHIR instant or date, e.g. 2026-11-01T00:00:00Z"),
                )
            };
            parse_moment(text).ok_or_else(bad)
        };
        let since = since
            .ok_or_else(|| {
                HubError::bad_request("since", "since is required: where the replay starts")
            })
            .and_then(|text| moment("since", text))?;
        let until = match until {
            Some(text) => moment("until", text)?.min(now),
            None => now,
        };
        if since >= until {
            return Err(HubError::bad_request(
                "since",
                "since must be before until (and before now)",
            ));
        }
        let horizon = retention.horizon(now);
        let clamped = (since < horizon).then(|| {
            format!(
                "events accepted before {} are past the retention period ({} days): the replay starts there",
                audit::timestamp(horizon),
                retention.days
            )
        });
        Ok(ReplayRequest {
            since: since.max(horizon),
            until,
            clamped,
        })
    }

    /// The job replaying this window to the subscription. Its window starts
    /// no earlier than the subscription's [`disclosure_floor`]. One on the
    /// registered-GP basis replays the window asked for: the record follows
    /// the child, and each step judges the basis again on the register
    /// (app::dispatch), so a child who has moved away replays nothing to the
    /// practice left.
    pub fn job(&self, subscription: &Subscription, now: OffsetDateTime) -> ReplayJob {
        let floor = disclosure_floor(subscription, now).filter(|from| *from > self.since);
        let detail = match floor {
            Some(from) => Some(format!(
                "events accepted before {} ({}) are not disclosed to it: the replay starts there",
                if subscription.is_backfilled(now) {
                    "the start of its backfill grant"
                } else {
                    "the subscription's creation"
                },
                audit::timestamp(from)
            )),
            None => self.clamped.clone(),
        };
        let since = floor.map_or_else(|| audit::timestamp(self.since), first_position);
        ReplayJob {
            replay_id: uuid::Uuid::new_v4().to_string(),
            subscription_id: subscription.id.clone(),
            subscriber_id: subscription.subscriber_id.clone(),
            position: since.clone(),
            since,
            until: audit::timestamp(self.until),
            status: ReplayStatus::Running,
            scanned: 0,
            delivered: 0,
            revision: 0,
            requested_at: audit::timestamp(now),
            updated_at: audit::timestamp(now),
            completed_at: None,
            detail,
            expires_at: now.unix_timestamp() + JOB_DAYS_KEPT * 86_400,
        }
    }
}

/// The first moment a replay may deliver from to this subscription now, for
/// an explicit subscription whose basis says nothing of the child's past
/// (declared direct care, an area, a relationship): its creation, or an
/// operator's open backfill grant's start (Subscription::discloses_from).
/// None for the registered GP and for generic subscriptions. Asked when the
/// job is made and again at every step, so a grant that expires or is
/// revoked during a replay stops opening it from the next step on.
pub fn disclosure_floor(
    subscription: &Subscription,
    now: OffsetDateTime,
) -> Option<OffsetDateTime> {
    let limited = matches!(subscription.criteria.target, Target::Explicit(_))
        && !matches!(subscription.basis(), Basis::RegisteredGp { .. });
    limited.then(|| subscription.discloses_from(now))
}

/// The day after a YYYY-MM-DD day.
pub fn next_day(day: &str) -> Option<String> {
    let format = time::macros::format_description!("[year]-[month]-[day]");
    let date = time::Date::parse(day, &format).ok()?.next_day()?;
    date.format(&format).ok()
}

/// Whether the caller may act on a replay of this subscriber's: the
/// subscriber itself, or an operator.
pub fn may_see(caller: &crate::auth::Caller, job: &ReplayJob) -> bool {
    caller.has_role(crate::auth::Role::Operator)
        || (caller.has_role(crate::auth::Role::Subscriber)
            && caller.subscriber_id.as_deref() == Some(job.subscriber_id.as_str()))
}
