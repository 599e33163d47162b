//! [`RetryPolicy`]: the one backoff rule for everything that retries — job steps, downloads
//! from upstreams, reconnects to the queue — exponential, capped, with jitter.
//!
//! Pure: the caller supplies the random draw (`unit` in `[0, 1)`), so the rule is testable and
//! this crate needs no random source.

use std::time::Duration;

/// Exponential backoff with "equal" jitter: before retry `n` (1-based) wait a random time in
/// `[cap/2, cap]` with `cap = min(base · 2^(n-1), max)`. With `jitter: false` the wait is `cap`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Wait before the first retry (upper bound, with jitter).
    pub base: Duration,
    /// Longest wait.
    pub max: Duration,
    /// Whether waits are drawn from `[cap/2, cap]` (so that many clients retrying together
    /// spread out) or are exactly `cap`.
    pub jitter: bool,
}

impl RetryPolicy {
    /// A jittered policy from `base` to `max`.
    #[must_use]
    pub const fn new(base: Duration, max: Duration) -> Self {
        Self {
            base,
            max,
            jitter: true,
        }
    }

    /// Failed job steps: 4 s before the first retry, doubling, at most 5 minutes.
    pub const STEPS: Self = Self::new(Duration::from_secs(4), Duration::from_secs(300));

    /// Reconnecting to a backend: 500 ms, doubling, at most 10 s.
    pub const RECONNECT: Self = Self::new(Duration::from_millis(500), Duration::from_secs(10));

    /// The longest wait before retry `retry` (1-based; 0 counts as 1).
    #[must_use]
    pub fn cap(&self, retry: u32) -> Duration {
        let doublings = retry.saturating_sub(1).min(30);
        self.base
            .saturating_mul(2_u32.saturating_pow(doublings))
            .min(self.max)
    }

    /// The wait before retry `retry`, given a uniform draw `unit` in `[0, 1)`.
    #[must_use]
    pub fn delay(&self, retry: u32, unit: f64) -> Duration {
        let cap = self.cap(retry);
        if !self.jitter {
            return cap;
        }
        let half = cap / 2;
        half + (cap - half).mul_f64(unit.clamp(0.0, 1.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn waits_double_up_to_the_cap() {
        let p = RetryPolicy::new(Duration::from_millis(500), Duration::from_secs(30));
        let caps: Vec<u64> = (1..=8).map(|n| p.cap(n).as_millis() as u64).collect();
        assert_eq!(caps, [500, 1000, 2000, 4000, 8000, 16000, 30000, 30000]);
        assert_eq!(p.cap(0), p.cap(1));
        assert_eq!(p.cap(u32::MAX), Duration::from_secs(30));
        let fixed = RetryPolicy { jitter: false, ..p };
        assert_eq!(fixed.delay(3, 0.0), Duration::from_secs(2));
    }

    proptest! {
        #[test]
        fn jittered_waits_lie_in_the_upper_half_of_the_cap(retry in 0u32..40, unit in 0.0f64..1.0) {
            let p = RetryPolicy::STEPS;
            let (d, cap) = (p.delay(retry, unit), p.cap(retry));
            prop_assert!(d >= cap / 2 && d <= cap, "{d:?} outside [{:?}, {cap:?}]", cap / 2);
            prop_assert!(p.delay(retry, 0.0) <= d && d <= p.delay(retry, 0.999_999));
        }
    }
}
