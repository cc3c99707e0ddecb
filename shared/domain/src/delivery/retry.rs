//! When to try a failed delivery again.
//!
//! Default schedule, after the first attempt fails: 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h
//! (the schedule of the best-known webhook sender), each with +-20 % jitter so that retries
//! after an outage do not arrive all at once. A `Retry-After` from the target wins when it
//! asks for longer, clamped to one hour. After the last retry the delivery fails for good.

use std::time::Duration;

#[derive(Debug, Clone, PartialEq)]
pub struct RetryPolicy {
    /// Delay before retry 1, 2, ...; its length is the number of retries.
    pub schedule: Vec<Duration>,
    /// Fraction of each delay added or removed at random (0.2 = +-20 %).
    pub jitter: f64,
    /// Longest `Retry-After` honoured.
    pub max_retry_after: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        let s = Duration::from_secs;
        RetryPolicy {
            schedule: vec![s(5), s(300), s(1800), s(7200), s(18000), s(36000), s(36000)],
            jitter: 0.2,
            max_retry_after: s(3600),
        }
    }
}

impl RetryPolicy {
    /// All attempts, the first included.
    pub fn max_attempts(&self) -> u32 {
        self.schedule.len() as u32 + 1
    }

    /// The delay after failed attempt number `attempt` (1-based), or `None` when that was
    /// the last one. `unit` in [0, 1) picks the jitter (random in production, fixed in tests).
    pub fn delay_after(
        &self,
        attempt: u32,
        retry_after: Option<Duration>,
        unit: f64,
    ) -> Option<Duration> {
        let base = *self.schedule.get(attempt.checked_sub(1)? as usize)?;
        let factor = 1.0 + self.jitter * (2.0 * unit.clamp(0.0, 1.0) - 1.0);
        let jittered = base.mul_f64(factor.max(0.0));
        let asked = retry_after.map(|r| r.min(self.max_retry_after));
        Some(asked.map_or(jittered, |a| a.max(jittered)))
    }

    /// The delay after the target throttled us for the `throttles`-th time (0-based) in
    /// this generation: what it asked for (`Retry-After` / `X-RateLimit-Reset`, clamped),
    /// else 5 s doubling up to 10 minutes, with jitter.
    pub fn after_throttle(
        &self,
        throttles: u32,
        retry_after: Option<Duration>,
        unit: f64,
    ) -> Duration {
        if let Some(asked) = retry_after {
            return asked.min(self.max_retry_after).max(Duration::from_secs(1));
        }
        let base = Duration::from_secs(5 << throttles.min(7)).min(Duration::from_secs(600));
        let factor = 1.0 + self.jitter * (2.0 * unit.clamp(0.0, 1.0) - 1.0);
        base.mul_f64(factor.max(0.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn throttles_wait_as_asked_or_back_off() {
        let p = RetryPolicy::default();
        let s = Duration::from_secs;
        assert_eq!(p.after_throttle(0, Some(s(7)), 0.5), s(7));
        assert_eq!(p.after_throttle(3, Some(s(86_400)), 0.5), s(3600));
        assert_eq!(p.after_throttle(0, None, 0.5), s(5));
        assert_eq!(p.after_throttle(2, None, 0.5), s(20));
        assert_eq!(p.after_throttle(30, None, 0.5), s(600));
    }

    #[test]
    fn follows_the_schedule_with_bounded_jitter() {
        let p = RetryPolicy::default();
        assert_eq!(p.max_attempts(), 8);
        assert_eq!(p.delay_after(1, None, 0.5), Some(Duration::from_secs(5)));
        assert_eq!(p.delay_after(1, None, 0.0), Some(Duration::from_secs(4)));
        assert_eq!(p.delay_after(2, None, 1.0), Some(Duration::from_secs(360)));
        assert_eq!(p.delay_after(8, None, 0.5), None);
        assert_eq!(p.delay_after(0, None, 0.5), None);
    }

    #[test]
    fn retry_after_wins_when_longer_and_is_clamped() {
        let p = RetryPolicy::default();
        let d = |s| Some(Duration::from_secs(s));
        assert_eq!(p.delay_after(1, d(60), 0.5), d(60));
        assert_eq!(p.delay_after(1, d(1), 0.5), d(5));
        assert_eq!(p.delay_after(1, d(99_999), 0.5), d(3600));
    }
}
