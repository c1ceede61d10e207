//! The one retry policy of the adapters' own loops. The SDK retries each
//! call by itself (throttling, timeouts); these loops retry what a call that
//! succeeded left undone (items a batch left unprocessed, SNS entries that
//! failed) or a transaction a concurrent one cancelled. Each pause doubles,
//! from 25-50 ms before the second attempt up to 0.8-1.6 s, with jitter
//! ("equal jitter": half the ceiling fixed, half random) so that concurrent
//! callers that met the same throttling or the same conflict spread out
//! rather than try again in step.

use std::time::Duration;

use aws_sdk_dynamodb::config::{AsyncSleep, SharedAsyncSleep};

/// The ceiling of the first pause's range, doubled at each retry.
const BASE: Duration = Duration::from_millis(25);
/// Doublings after which the ceiling stops growing (25 ms << 6 = 1.6 s).
const MAX_DOUBLINGS: u32 = 6;

/// The pause before retry number `retry` (1 before the second attempt):
/// between half the ceiling and the ceiling, `random` picking where.
pub(super) fn delay(retry: u32, random: u64) -> Duration {
    let ceiling = BASE * (1 << retry.clamp(1, MAX_DOUBLINGS));
    let half = ceiling / 2;
    let nanos = u64::try_from(half.as_nanos()).unwrap_or(u64::MAX).max(1);
    half + Duration::from_nanos(random % nanos)
}

/// Random bits for the jitter: a v4 UUID's, the random source already in
/// the tree.
fn random() -> u64 {
    let bits = uuid::Uuid::new_v4().as_u128();
    (bits >> 64) as u64 ^ bits as u64
}

/// The attempts of one loop: `while attempts.next().await { ... }` runs the
/// body at most `limit` times, pausing before each run but the first.
pub(super) struct Attempts {
    made: u32,
    limit: u32,
    /// The client's sleep (the SDK's configuration carries one under a
    /// Tokio runtime); without one, attempts follow at once.
    sleep: Option<SharedAsyncSleep>,
}

impl Attempts {
    pub(super) fn new(limit: u32, sleep: Option<SharedAsyncSleep>) -> Self {
        Attempts {
            made: 0,
            limit,
            sleep,
        }
    }

    /// Whether another attempt may be made, after the pause before it.
    pub(super) async fn next(&mut self) -> bool {
        if self.made >= self.limit {
            return false;
        }
        if self.made > 0
            && let Some(sleep) = &self.sleep
        {
            sleep.sleep(delay(self.made, random())).await;
        }
        self.made += 1;
        true
    }

    /// How many attempts were made.
    pub(super) fn made(&self) -> u32 {
        self.made
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use aws_sdk_dynamodb::config::Sleep;

    use super::*;

    #[test]
    fn each_pause_lies_between_half_its_ceiling_and_its_ceiling() {
        for retry in 1..=20u32 {
            let ceiling = Duration::from_millis(25 << retry.min(6));
            for random in [0, 1, 7, 12_345_678_901, u64::MAX / 3, u64::MAX] {
                let pause = delay(retry, random);
                assert!(
                    pause >= ceiling / 2 && pause < ceiling,
                    "retry {retry}: {pause:?} outside [{:?}, {ceiling:?})",
                    ceiling / 2
                );
            }
        }
        assert_eq!(delay(1, 0), Duration::from_millis(25));
        assert!(delay(100, u64::MAX) < Duration::from_millis(1600));
        // Retry 0 does not happen (the first attempt never waits), but is
        // no shorter than retry 1 if asked.
        assert!(delay(0, 0) >= Duration::from_millis(25));
    }

    #[test]
    fn the_jitter_spreads_pauses() {
        let pauses: std::collections::BTreeSet<Duration> =
            (0..32).map(|_| delay(3, random())).collect();
        assert!(pauses.len() > 16, "{pauses:?}");
    }

    /// A sleep that records each pause asked for and returns at once.
    #[derive(Debug, Default, Clone)]
    struct Recorded(Arc<Mutex<Vec<Duration>>>);

    impl AsyncSleep for Recorded {
        fn sleep(&self, duration: Duration) -> Sleep {
            if let Ok(mut pauses) = self.0.lock() {
                pauses.push(duration);
            }
            Sleep::new(async {})
        }
    }

    #[test]
    fn attempts_run_up_to_the_limit_and_pause_before_all_but_the_first() {
        let recorded = Recorded::default();
        let mut attempts = Attempts::new(4, Some(SharedAsyncSleep::new(recorded.clone())));
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let mut runs = 0;
        runtime.block_on(async {
            while attempts.next().await {
                runs += 1;
            }
        });
        assert_eq!(runs, 4);
        assert_eq!(attempts.made(), 4);
        let pauses = recorded.0.lock().unwrap().clone();
        assert_eq!(pauses.len(), 3);
        for (retry, pause) in (1u32..).zip(&pauses) {
            assert!(*pause >= Duration::from_millis(25 << retry) / 2);
            assert!(*pause < Duration::from_millis(25 << retry));
        }
        // No more once spent.
        assert!(!runtime.block_on(attempts.next()));
    }

    #[test]
    fn without_a_sleep_attempts_follow_at_once() {
        let mut attempts = Attempts::new(3, None);
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let started = std::time::Instant::now();
        let runs = runtime.block_on(async {
            let mut runs = 0;
            while attempts.next().await {
                runs += 1;
            }
            runs
        });
        assert_eq!(runs, 3);
        assert!(started.elapsed() < Duration::from_millis(25));
    }
}
