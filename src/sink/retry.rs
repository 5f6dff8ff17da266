//! Capped exponential backoff with jitter for transient Weaviate failures.
//!
//! Jitter keeps several vecsync instances (or many retried requests) from hammering a recovering
//! Weaviate in lockstep. The pipeline adds its own outer loop: after [`RetryPolicy::max_attempts`]
//! the sink gives up and returns a transient error, and the pipeline retries forever while it
//! holds the database position.

use std::time::Duration;

use rand::Rng;

/// How many times, and how patiently, the sink retries a transient failure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in total, the first one included (at least 1).
    pub max_attempts: u32,
    /// The backoff before the second attempt.
    pub initial_backoff: Duration,
    /// No backoff is longer than this, whatever the attempt or a `Retry-After` header says.
    pub max_backoff: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 5,
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(5),
        }
    }
}

impl RetryPolicy {
    /// A policy that never retries (one attempt).
    pub fn none() -> Self {
        RetryPolicy {
            max_attempts: 1,
            ..RetryPolicy::default()
        }
    }

    /// The cap of the backoff after failed attempt number `attempt` (1-based):
    /// `initial * 2^(attempt-1)`, never above `max_backoff`.
    pub fn ceiling(&self, attempt: u32) -> Duration {
        let exp = attempt.saturating_sub(1).min(31);
        self.initial_backoff
            .saturating_mul(1u32 << exp)
            .min(self.max_backoff)
    }

    /// How long to wait after failed attempt number `attempt` (1-based): a random duration in
    /// `[ceiling/2, ceiling]` ("equal jitter": never retries at once, never waits longer than the
    /// cap). A `Retry-After` from the server raises the wait, still within `max_backoff`.
    pub fn backoff(&self, attempt: u32, retry_after: Option<Duration>) -> Duration {
        let ceiling = self.ceiling(attempt);
        let half = ceiling / 2;
        let jitter = rand::rng().random_range(Duration::ZERO..=ceiling - half);
        let wait = half + jitter;
        match retry_after {
            Some(server) => wait.max(server).min(self.max_backoff),
            None => wait,
        }
    }

    /// `max_attempts`, treating 0 as 1.
    pub(crate) fn attempts(&self) -> u32 {
        self.max_attempts.max(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> RetryPolicy {
        RetryPolicy {
            max_attempts: 10,
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(1),
        }
    }

    #[test]
    fn ceiling_doubles_then_caps() {
        let p = policy();
        assert_eq!(p.ceiling(1), Duration::from_millis(100));
        assert_eq!(p.ceiling(2), Duration::from_millis(200));
        assert_eq!(p.ceiling(3), Duration::from_millis(400));
        assert_eq!(p.ceiling(4), Duration::from_millis(800));
        assert_eq!(p.ceiling(5), Duration::from_secs(1));
        assert_eq!(p.ceiling(1000), Duration::from_secs(1));
    }

    #[test]
    fn backoff_stays_between_half_and_full_ceiling() {
        let p = policy();
        for attempt in 1..12 {
            for _ in 0..50 {
                let b = p.backoff(attempt, None);
                let c = p.ceiling(attempt);
                assert!(b >= c / 2 && b <= c, "attempt {attempt}: {b:?} vs {c:?}");
            }
        }
    }

    #[test]
    fn retry_after_raises_the_wait_but_not_past_the_cap() {
        let p = policy();
        assert!(p.backoff(1, Some(Duration::from_millis(700))) >= Duration::from_millis(700));
        assert_eq!(
            p.backoff(1, Some(Duration::from_secs(60))),
            Duration::from_secs(1)
        );
    }

    #[test]
    fn zero_attempts_means_one() {
        let p = RetryPolicy {
            max_attempts: 0,
            ..policy()
        };
        assert_eq!(p.attempts(), 1);
    }
}
