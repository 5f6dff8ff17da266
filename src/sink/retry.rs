//! How patiently the sink retries a transient Weaviate failure inside one call.
//!
//! The waits come from the crate's one [`Backoff`](crate::backoff::Backoff). The pipeline adds its
//! own outer loop: after [`RetryPolicy::max_attempts`] the sink gives up and returns a transient
//! error, and the pipeline retries (with the same backoff) while it holds the database position.

use std::time::Duration;

use crate::backoff::Backoff;

/// How many times, and how patiently, the sink retries a transient failure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in total, the first one included (at least 1).
    pub max_attempts: u32,
    /// The waits between attempts.
    pub backoff: Backoff,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 5,
            backoff: Backoff::new(Duration::from_millis(100), Duration::from_secs(5)),
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

    /// How long to wait after failed attempt number `attempt` (1-based); see [`Backoff::delay`].
    pub fn backoff(&self, attempt: u32, retry_after: Option<Duration>) -> Duration {
        self.backoff.delay(attempt, retry_after)
    }

    /// `max_attempts`, treating 0 as 1.
    pub(crate) fn attempts(&self) -> u32 {
        self.max_attempts.max(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_attempts_means_one() {
        let p = RetryPolicy {
            max_attempts: 0,
            ..RetryPolicy::default()
        };
        assert_eq!(p.attempts(), 1);
        assert_eq!(RetryPolicy::none().attempts(), 1);
    }
}
