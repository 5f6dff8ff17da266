//! The one backoff policy of vecsync: capped exponential backoff with "equal jitter".
//!
//! Every retry loop in the crate (Weaviate requests, the pipeline holding its position while
//! Weaviate or the embedder is down, MariaDB reconnects, the remote embedder) waits through
//! [`Backoff::delay`], so they all behave alike: the wait after failed attempt `n` is a random
//! duration in `[c/2, c]` with `c = initial * 2^(n-1)` capped at `max`. Jitter keeps several
//! vecsync instances (or many requests of one) from hammering a recovering server in lockstep;
//! the lower half-bound means a retry never fires at once. A server's `Retry-After` raises the
//! wait, still within `max`.

use std::time::Duration;

use rand::Rng;

/// How patiently to retry: the first wait's cap and the largest wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// The cap of the wait after the first failed attempt.
    pub initial: Duration,
    /// No wait is longer than this, whatever the attempt or a `Retry-After` says.
    pub max: Duration,
}

impl Backoff {
    /// A policy starting at `initial` and doubling up to `max`.
    pub const fn new(initial: Duration, max: Duration) -> Self {
        Backoff { initial, max }
    }

    /// The cap of the wait after failed attempt number `attempt` (1-based):
    /// `initial * 2^(attempt-1)`, never above `max`.
    pub fn ceiling(&self, attempt: u32) -> Duration {
        let exp = attempt.saturating_sub(1).min(31);
        self.initial.saturating_mul(1u32 << exp).min(self.max)
    }

    /// How long to wait after failed attempt number `attempt` (1-based): a random duration in
    /// `[ceiling/2, ceiling]`. A `Retry-After` from the server raises it, within `max`.
    pub fn delay(&self, attempt: u32, retry_after: Option<Duration>) -> Duration {
        let ceiling = self.ceiling(attempt);
        let half = ceiling / 2;
        let jitter = rand::rng().random_range(Duration::ZERO..=ceiling - half);
        let wait = half + jitter;
        match retry_after {
            Some(server) => wait.max(server).min(self.max),
            None => wait,
        }
    }
}

/// Counts the failures of one retry loop and hands out the waits between them.
#[derive(Debug, Clone)]
pub struct Attempts {
    policy: Backoff,
    failures: u32,
}

impl Attempts {
    pub fn new(policy: Backoff) -> Self {
        Attempts {
            policy,
            failures: 0,
        }
    }

    /// Record a failure and return how long to wait before the next attempt.
    pub fn fail(&mut self, retry_after: Option<Duration>) -> Duration {
        self.failures = self.failures.saturating_add(1);
        self.policy.delay(self.failures, retry_after)
    }

    /// Failures since the last success (or the start).
    pub fn failures(&self) -> u32 {
        self.failures
    }

    /// Forget the failures: the operation succeeded (or made progress).
    pub fn reset(&mut self) {
        self.failures = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> Backoff {
        Backoff::new(Duration::from_millis(100), Duration::from_secs(1))
    }

    #[test]
    fn ceiling_doubles_then_caps() {
        let p = policy();
        assert_eq!(p.ceiling(1), Duration::from_millis(100));
        assert_eq!(p.ceiling(2), Duration::from_millis(200));
        assert_eq!(p.ceiling(3), Duration::from_millis(400));
        assert_eq!(p.ceiling(4), Duration::from_millis(800));
        assert_eq!(p.ceiling(5), Duration::from_secs(1));
        assert_eq!(p.ceiling(u32::MAX), Duration::from_secs(1));
        // Attempt 0 is treated as the first.
        assert_eq!(p.ceiling(0), Duration::from_millis(100));
    }

    #[test]
    fn delay_stays_between_half_and_full_ceiling() {
        let p = policy();
        for attempt in 1..12 {
            for _ in 0..50 {
                let d = p.delay(attempt, None);
                let c = p.ceiling(attempt);
                assert!(d >= c / 2 && d <= c, "attempt {attempt}: {d:?} vs {c:?}");
            }
        }
    }

    #[test]
    fn retry_after_raises_the_wait_but_not_past_the_cap() {
        let p = policy();
        assert!(p.delay(1, Some(Duration::from_millis(700))) >= Duration::from_millis(700));
        assert_eq!(
            p.delay(1, Some(Duration::from_secs(60))),
            Duration::from_secs(1)
        );
    }

    #[test]
    fn attempts_count_failures_and_reset() {
        let mut a = Attempts::new(policy());
        let first = a.fail(None);
        assert!(first <= Duration::from_millis(100) && first >= Duration::from_millis(50));
        for _ in 0..10 {
            a.fail(None);
        }
        assert_eq!(a.failures(), 11);
        assert!(a.fail(None) >= Duration::from_millis(500));
        a.reset();
        assert_eq!(a.failures(), 0);
        assert!(a.fail(None) <= Duration::from_millis(100));
    }
}
