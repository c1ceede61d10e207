//! Scheduled functions (SAM `Type: Schedule` events): what EventBridge does
//! for the deployed stack, each function invoked at its rate with a
//! scheduled event. HUB_SCHEDULE_SECONDS, when set, replaces every rate
//! (the tests use 1, so a five-second embargo is released within seconds).

use std::time::Duration;

use crate::runtime::Function;

/// The environment variable that overrides every schedule's rate.
pub const SCHEDULE_SECONDS_VARIABLE: &str = "HUB_SCHEDULE_SECONDS";

/// One scheduled function: invoked every `every`, one run at a time (the
/// next waits for the last to answer), as a function with reserved
/// concurrency 1 is. A failed run is logged; the next one runs at its time.
pub struct Schedule {
    pub logical_id: String,
    pub every: Duration,
    pub function: Function,
}

impl Schedule {
    /// The interval: HUB_SCHEDULE_SECONDS when set to a whole number above
    /// zero, else the template's rate.
    pub fn interval(rate_seconds: u64) -> Duration {
        let overridden = std::env::var(SCHEDULE_SECONDS_VARIABLE)
            .ok()
            .and_then(|value| value.trim().parse::<u64>().ok())
            .filter(|seconds| *seconds > 0);
        Duration::from_secs(overridden.unwrap_or(rate_seconds))
    }

    pub async fn run(self) {
        let mut ticks = tokio::time::interval(self.every);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // The first tick is at once; EventBridge's first run is one period in.
        ticks.tick().await;
        loop {
            ticks.tick().await;
            let event = serde_json::json!({
                "version": "0",
                "id": uuid::Uuid::new_v4().to_string(),
                "detail-type": "Scheduled Event",
                "source": "aws.events",
                "account": crate::template::ACCOUNT_ID,
                "time": time::OffsetDateTime::now_utc()
                    .format(&time::format_description::well_known::Rfc3339)
                    .unwrap_or_default(),
                "region": crate::template::REGION,
                "resources": [],
                "detail": {},
            });
            let payload = serde_json::to_vec(&event).unwrap_or_default();
            if let Err(error) = self.function.invoke(payload).await {
                eprintln!("[hub] scheduled run of {} failed: {error}", self.logical_id);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::template::rate_seconds;

    #[test]
    fn rates_read_as_seconds() {
        assert_eq!(rate_seconds("rate(5 minutes)"), Some(300));
        assert_eq!(rate_seconds("rate(1 minute)"), Some(60));
        assert_eq!(rate_seconds("rate(2 hours)"), Some(7_200));
        assert_eq!(rate_seconds("cron(0 12 * * ? *)"), None);
        assert_eq!(rate_seconds("rate(0 minutes)"), None);
    }
}
