//! Metrics as CloudWatch embedded metric format (EMF): one JSON line on
//! stdout per record, which CloudWatch Logs turns into metrics of the
//! stage's namespace. No agent and no API call: a function's log stream is
//! enough.
//!
//! A record holds numbers and, at most, the event type as its one dimension:
//! the builder takes an [`EventType`], never free text, so no NHS number,
//! message body or other patient detail can reach a metric line.
//!
//! The alarms and the dashboard of template.yaml name these metrics; the
//! template tests check that every metric they name is one of [`ALL`].

use std::io::Write as _;
use std::sync::OnceLock;

use serde_json::{Map, Value, json};

use crate::catalogue::EventType;

/// The environment variable naming the namespace (`ChildHealthEventsHub/<stage>`
/// in the template).
pub const NAMESPACE_VARIABLE: &str = "METRICS_NAMESPACE";
/// Where metrics go when the variable is unset (the local hub, tests).
pub const DEFAULT_NAMESPACE: &str = "ChildHealthEventsHub/local";
/// The one dimension a metric may carry.
pub const EVENT_TYPE_DIMENSION: &str = "EventType";

/// An event message stored for the first time (per event type).
pub const PUBLISH_ACCEPTED: &str = "PublishAccepted";
/// An event message already stored, answered without storing it again.
pub const PUBLISH_DUPLICATE: &str = "PublishDuplicate";
/// An event message refused with a 4xx (invalid, unauthorised, too large).
pub const PUBLISH_REJECTED: &str = "PublishRejected";
/// A publish that failed on the hub's side (5xx): the publisher retries.
pub const PUBLISH_FAILED: &str = "PublishFailed";
/// Time from the request reaching the function to its answer.
pub const PUBLISH_LATENCY: &str = "PublishLatency";
/// Messages sent to subscribers by dispatch (one per recipient).
pub const DELIVERIES: &str = "Deliveries";
/// Time from an event's acceptance to its dispatch.
pub const DISPATCH_DELAY: &str = "DispatchDelay";
/// Events not delivered because the patient is marked sensitive.
pub const DISPATCH_WITHHELD: &str = "DispatchWithheld";
/// Stream records dispatch failed on; each is retried, then sent to the
/// on-failure queue.
pub const DISPATCH_FAILURES: &str = "DispatchFailures";
/// Messages re-sent to a subscriber by a replay.
pub const REPLAY_DELIVERIES: &str = "ReplayDeliveries";
/// Replay steps that failed (retried from the job's last save).
pub const REPLAY_FAILURES: &str = "ReplayFailures";
/// Explicit subscriptions created (each opens a child's events to its
/// subscriber).
pub const EXPLICIT_SUBSCRIPTIONS_CREATED: &str = "ExplicitSubscriptionsCreated";
/// Explicit subscriptions refused because the subscriber reached its daily
/// limit.
pub const SUBSCRIPTION_LIMIT_REACHED: &str = "SubscriptionLimitReached";
/// Subscriptions ended because their basis was lost (a move at dispatch, a
/// relationship's end, a narrowed client registration).
pub const BASIS_LOST: &str = "BasisLost";
/// Deliveries held back by a release embargo.
pub const EMBARGO_HELD: &str = "EmbargoHeld";
/// Held deliveries released (published) by the release function.
pub const EMBARGO_RELEASED: &str = "EmbargoReleased";
/// Held deliveries the release function failed to release this run (kept
/// held, retried the next run); 1, with no dimension, for a run that failed
/// as a whole.
pub const EMBARGO_RELEASE_FAILURES: &str = "EmbargoReleaseFailures";
/// The age, after a release run, of the oldest hold it left held past its
/// release time (0 when none): written by every run, so that a release
/// failing for long shows how late it is, not only that it fails.
pub const EMBARGO_OVERDUE: &str = "EmbargoOverdue";

/// Every metric the hub emits.
pub const ALL: [&str; 18] = [
    PUBLISH_ACCEPTED,
    PUBLISH_DUPLICATE,
    PUBLISH_REJECTED,
    PUBLISH_FAILED,
    PUBLISH_LATENCY,
    DELIVERIES,
    DISPATCH_DELAY,
    DISPATCH_WITHHELD,
    DISPATCH_FAILURES,
    REPLAY_DELIVERIES,
    REPLAY_FAILURES,
    EXPLICIT_SUBSCRIPTIONS_CREATED,
    SUBSCRIPTION_LIMIT_REACHED,
    BASIS_LOST,
    EMBARGO_HELD,
    EMBARGO_RELEASED,
    EMBARGO_RELEASE_FAILURES,
    EMBARGO_OVERDUE,
];

/// The namespace of this process, set once at start-up from
/// METRICS_NAMESPACE by the Lambda layer ([`use_namespace`]).
static NAMESPACE: OnceLock<String> = OnceLock::new();

/// Sets the process's metric namespace (an unset or empty setting keeps
/// [`DEFAULT_NAMESPACE`]); the first call wins.
pub fn use_namespace(setting: Option<&str>) {
    let namespace = setting
        .filter(|namespace| !namespace.is_empty())
        .unwrap_or(DEFAULT_NAMESPACE);
    let _ = NAMESPACE.set(namespace.to_owned());
}

fn namespace() -> &'static str {
    NAMESPACE.get().map_or(DEFAULT_NAMESPACE, String::as_str)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    Count,
    Milliseconds,
    Seconds,
}

impl Unit {
    fn name(self) -> &'static str {
        match self {
            Unit::Count => "Count",
            Unit::Milliseconds => "Milliseconds",
            Unit::Seconds => "Seconds",
        }
    }
}

/// Values observed together, written as one EMF line.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricRecord {
    event_type: Option<EventType>,
    values: Vec<(&'static str, Unit, f64)>,
}

impl MetricRecord {
    /// A record with no dimension.
    pub fn new() -> Self {
        Self {
            event_type: None,
            values: Vec::new(),
        }
    }

    /// A record whose metrics are per event type.
    pub fn for_event_type(event_type: EventType) -> Self {
        Self {
            event_type: Some(event_type),
            values: Vec::new(),
        }
    }

    pub fn count(mut self, name: &'static str, count: u64) -> Self {
        // Counts in one invocation are small; f64 holds them exactly.
        self.values.push((name, Unit::Count, count as f64));
        self
    }

    pub fn milliseconds(mut self, name: &'static str, duration: std::time::Duration) -> Self {
        self.values
            .push((name, Unit::Milliseconds, duration.as_secs_f64() * 1000.0));
        self
    }

    /// A value in whole seconds (ages of hours, where milliseconds would
    /// only be noise).
    pub fn seconds(mut self, name: &'static str, seconds: u64) -> Self {
        // f64 holds every age in seconds a hub could see exactly.
        self.values.push((name, Unit::Seconds, seconds as f64));
        self
    }

    /// The EMF document: `_aws` metadata naming the metrics, the dimension's
    /// value and each metric's value as root members.
    pub fn to_emf(&self, namespace: &str, timestamp_ms: i64) -> Value {
        let dimensions: Vec<&str> = self
            .event_type
            .map(|_| EVENT_TYPE_DIMENSION)
            .into_iter()
            .collect();
        let definitions: Vec<Value> = self
            .values
            .iter()
            .map(|(name, unit, _)| json!({"Name": name, "Unit": unit.name()}))
            .collect();
        let mut root = Map::new();
        root.insert(
            "_aws".into(),
            json!({
                "Timestamp": timestamp_ms,
                "CloudWatchMetrics": [{
                    "Namespace": namespace,
                    "Dimensions": [dimensions],
                    "Metrics": definitions,
                }],
            }),
        );
        if let Some(event_type) = self.event_type {
            root.insert(EVENT_TYPE_DIMENSION.into(), json!(event_type.code()));
        }
        for (name, _, value) in &self.values {
            root.insert((*name).into(), json!(value));
        }
        Value::Object(root)
    }

    /// Writes the record to stdout as one line, in the namespace of the
    /// process. A record with no value writes nothing.
    pub fn emit(&self) {
        if self.values.is_empty() {
            return;
        }
        let now = time::OffsetDateTime::now_utc();
        let timestamp_ms = i64::try_from(now.unix_timestamp_nanos() / 1_000_000).unwrap_or(0);
        let mut line = self.to_emf(namespace(), timestamp_ms).to_string();
        line.push('\n');
        // One write of the whole line, so that a log line of another task
        // cannot cut into it; a failed write loses a metric, never a request.
        let _ = std::io::stdout().lock().write_all(line.as_bytes());
    }
}

impl Default for MetricRecord {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_per_event_type_names_its_dimension_and_metrics() {
        let record = MetricRecord::for_event_type(EventType::PdsBirthNotification)
            .count(PUBLISH_ACCEPTED, 1)
            .milliseconds(PUBLISH_LATENCY, std::time::Duration::from_micros(12_500));
        let emf = record.to_emf("ChildHealthEventsHub/test", 1_700_000_000_000);
        assert_eq!(
            emf,
            json!({
                "_aws": {
                    "Timestamp": 1_700_000_000_000_i64,
                    "CloudWatchMetrics": [{
                        "Namespace": "ChildHealthEventsHub/test",
                        "Dimensions": [["EventType"]],
                        "Metrics": [
                            {"Name": "PublishAccepted", "Unit": "Count"},
                            {"Name": "PublishLatency", "Unit": "Milliseconds"},
                        ],
                    }],
                },
                "EventType": "pds-birth-notification-1",
                "PublishAccepted": 1.0,
                "PublishLatency": 12.5,
            })
        );
    }

    #[test]
    fn a_record_without_event_type_has_one_empty_dimension_set() {
        let emf = MetricRecord::new()
            .count(DISPATCH_FAILURES, 2)
            .to_emf("ns", 0);
        assert_eq!(
            emf["_aws"]["CloudWatchMetrics"][0]["Dimensions"],
            json!([[]])
        );
        assert_eq!(emf["DispatchFailures"], json!(2.0));
        assert!(emf.get(EVENT_TYPE_DIMENSION).is_none());
    }

    #[test]
    fn every_member_of_a_line_is_metadata_the_dimension_or_a_metric() {
        // Nothing else can be written: no identifier, no body.
        let emf = MetricRecord::for_event_type(EventType::Vaccinations)
            .count(DELIVERIES, 3)
            .milliseconds(DISPATCH_DELAY, std::time::Duration::from_millis(40))
            .to_emf("ns", 0);
        let object = emf.as_object().expect("an EMF document is an object");
        for key in object.keys() {
            assert!(
                key == "_aws" || key == EVENT_TYPE_DIMENSION || ALL.contains(&key.as_str()),
                "unexpected member {key}"
            );
        }
    }

    #[test]
    fn metric_names_are_distinct() {
        let mut names = ALL.to_vec();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), ALL.len());
    }
}
