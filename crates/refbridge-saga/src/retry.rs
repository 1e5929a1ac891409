//! When to try again.

use std::time::Duration;

use rand::Rng;

/// The longest `Retry-After` honoured as given; a larger one is taken as this.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(900);

#[derive(Debug, Clone)]
pub struct RetryPolicy {
    /// First wait.
    pub base: Duration,
    /// Longest wait.
    pub cap: Duration,
    /// Attempts of one step before the send pauses for a human.
    pub max_attempts: u32,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            base: Duration::from_millis(500),
            cap: Duration::from_secs(300),
            max_attempts: 12,
        }
    }
}

impl RetryPolicy {
    /// Exponential backoff for the `attempt`-th try (1-based), with "equal jitter": half the
    /// delay is fixed, the other half random, so retries of many referrals spread out.
    pub fn backoff(&self, attempt: u32) -> Duration {
        let exp = self
            .base
            .saturating_mul(1u32 << attempt.saturating_sub(1).min(20));
        let d = exp.min(self.cap);
        let half = d / 2;
        let jitter = rand::rng().random_range(0..=half.as_millis() as u64);
        half + Duration::from_millis(jitter)
    }

    /// The wait the server asked for wins over our own schedule (and over our cap: asking
    /// again sooner would only be refused again), up to [`MAX_RETRY_AFTER`].
    pub fn wait(&self, attempt: u32, retry_after: Option<Duration>) -> Duration {
        match retry_after {
            Some(d) => d.min(MAX_RETRY_AFTER),
            None => self.backoff(attempt),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_within_bounds_and_is_capped() {
        let p = RetryPolicy {
            base: Duration::from_millis(100),
            cap: Duration::from_secs(1),
            max_attempts: 5,
        };
        for attempt in 1..=10 {
            let expected =
                (Duration::from_millis(100) * (1 << (attempt - 1))).min(Duration::from_secs(1));
            for _ in 0..50 {
                let d = p.backoff(attempt);
                assert!(
                    d >= expected / 2 && d <= expected,
                    "attempt {attempt}: {d:?}"
                );
            }
        }
    }

    #[test]
    fn retry_after_wins() {
        let p = RetryPolicy::default();
        assert_eq!(
            p.wait(1, Some(Duration::from_secs(7))),
            Duration::from_secs(7)
        );
        assert_eq!(p.wait(1, Some(Duration::from_secs(7200))), MAX_RETRY_AFTER);
        let small_cap = RetryPolicy {
            cap: Duration::from_millis(100),
            ..RetryPolicy::default()
        };
        assert_eq!(
            small_cap.wait(1, Some(Duration::from_secs(2))),
            Duration::from_secs(2)
        );
    }
}
