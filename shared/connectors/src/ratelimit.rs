//! Per-target rate limiting: a token bucket per target (GCRA form: one "theoretical arrival
//! time" per key), shared by every connector of the process that talks to that target, and
//! paused when the target says so (429 with `Retry-After` / `X-RateLimit-Reset`).
//!
//! It is per process: locally that is all of testrelay; on Lambda each connector's function
//! runs with a small reserved concurrency, so the per-instance budget is the configured limit
//! divided by that concurrency (see infra/README.md).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;
use testrelay_domain::config::RateLimit;
use tokio::time::Instant;

#[derive(Default)]
pub struct RateLimiter {
    buckets: Mutex<HashMap<String, Bucket>>,
}

struct Bucket {
    /// When the bucket will be full again if nothing else is taken.
    tat: Instant,
    paused_until: Option<Instant>,
}

impl RateLimiter {
    /// Takes a slot for one request to `key` and says how long to wait before sending it.
    /// When the wait would exceed `max_wait`, nothing is taken and `Err(wait)` says when to
    /// come back.
    pub fn reserve(
        &self,
        key: &str,
        limit: RateLimit,
        max_wait: Duration,
    ) -> Result<Duration, Duration> {
        let now = Instant::now();
        let interval = Duration::from_secs(60).div_f64(limit.per_minute.max(1) as f64);
        let tolerance = interval * limit.burst.saturating_sub(1);
        let mut buckets = self.buckets.lock().expect("rate limiter lock");
        let bucket = buckets.entry(key.to_string()).or_insert(Bucket {
            tat: now,
            paused_until: None,
        });
        let paused = bucket.paused_until.filter(|&p| p > now);
        let base = bucket.tat.max(now).max(paused.unwrap_or(now));
        let slot = base
            .checked_sub(tolerance)
            .unwrap_or(now)
            .max(now)
            .max(paused.unwrap_or(now));
        let wait = slot - now;
        if wait > max_wait {
            return Err(wait);
        }
        bucket.tat = base + interval;
        Ok(wait)
    }

    /// The target asked us to stop for `pause`: nothing to `key` leaves before then.
    pub fn pause(&self, key: &str, pause: Duration) {
        let until = Instant::now() + pause;
        let mut buckets = self.buckets.lock().expect("rate limiter lock");
        let bucket = buckets.entry(key.to_string()).or_insert(Bucket {
            tat: Instant::now(),
            paused_until: None,
        });
        bucket.paused_until = Some(bucket.paused_until.map_or(until, |p| p.max(until)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: Duration = Duration::from_secs(3600);

    #[tokio::test(start_paused = true)]
    async fn a_burst_then_the_rate() {
        let l = RateLimiter::default();
        let limit = RateLimit::new(60, 3);
        let waits: Vec<_> = (0..6)
            .map(|_| l.reserve("t", limit, HOUR).unwrap().as_millis())
            .collect();
        assert_eq!(waits, vec![0, 0, 0, 1000, 2000, 3000]);
        // Other targets have their own bucket.
        assert_eq!(l.reserve("u", limit, HOUR).unwrap(), Duration::ZERO);
        // Too long a wait takes nothing.
        assert_eq!(
            l.reserve("t", limit, Duration::from_secs(1)),
            Err(Duration::from_secs(4))
        );
        tokio::time::advance(Duration::from_secs(10)).await;
        assert_eq!(l.reserve("t", limit, HOUR).unwrap(), Duration::ZERO);
    }

    #[tokio::test(start_paused = true)]
    async fn a_pause_holds_everything_back() {
        let l = RateLimiter::default();
        let limit = RateLimit::new(600, 5);
        l.pause("t", Duration::from_secs(30));
        assert_eq!(
            l.reserve("t", limit, HOUR).unwrap(),
            Duration::from_secs(30)
        );
        // The next request is held back too: a wait past max_wait takes no slot.
        assert_eq!(
            l.reserve("t", limit, Duration::from_secs(1)),
            Err(Duration::from_secs(30))
        );
        tokio::time::advance(Duration::from_secs(31)).await;
        assert!(l.reserve("t", limit, HOUR).unwrap() < Duration::from_millis(200));
    }
}
