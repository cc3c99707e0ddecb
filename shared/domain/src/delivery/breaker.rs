//! The circuit breaker of one connector target, as a pure state machine: every decision is a
//! function of (state, outcome, now). The [`Breakers`](crate::delivery::breakers::Breakers) service
//! stores the state through the state-store port with conditional writes, so every delivery
//! instance (each Lambda, each local worker) shares one breaker per target.
//!
//! Policy:
//! - CLOSED counts transport failures (timeouts, connection errors, 5xx, 408) in a sliding
//!   window of time buckets. It opens when, with at least `min_calls` calls in the window,
//!   the failure rate reaches `failure_rate`, or after `consecutive_failures` failures in a
//!   row. Successes are counted only while the window holds a failure: a healthy target
//!   costs no write per delivery (the breaker is one shared item), and the rate is measured
//!   from the first failure in the window. 4xx other than 408/429 are the request's fault and count for nothing; 429 is
//!   throttling, handled by slowing down (Retry-After), and does not trip the breaker.
//! - OPEN refuses deliveries until the cool-down ends, then the first delivery to ask becomes
//!   the only probe: the breaker goes HALF_OPEN with a probe lease.
//! - HALF_OPEN refuses everyone but the probe. The probe's success closes the breaker (and
//!   resets the cool-down); its failure reopens it with twice the cool-down, capped. A probe
//!   that never reports back (a crashed worker) loses its lease, and the next delivery to ask
//!   becomes the probe.

use serde::{Deserialize, Serialize};
use std::time::Duration;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BreakerConfig {
    /// Length of the sliding window.
    #[serde(default = "defaults::window", with = "secs")]
    pub window: Duration,
    /// Number of time buckets the window is cut into.
    #[serde(default = "defaults::buckets")]
    pub buckets: u32,
    /// Calls in the window before the failure rate counts.
    #[serde(default = "defaults::min_calls")]
    pub min_calls: u32,
    /// Failure rate (0..1] that opens the breaker.
    #[serde(default = "defaults::failure_rate")]
    pub failure_rate: f64,
    /// Failures in a row that open the breaker whatever the rate.
    #[serde(default = "defaults::consecutive_failures")]
    pub consecutive_failures: u32,
    /// First cool-down; doubles after each failed probe.
    #[serde(default = "defaults::cooldown", with = "secs")]
    pub cooldown: Duration,
    #[serde(default = "defaults::max_cooldown", with = "secs")]
    pub max_cooldown: Duration,
    /// How long a granted probe holds HALF_OPEN before another may probe.
    #[serde(default = "defaults::probe_lease", with = "secs")]
    pub probe_lease: Duration,
}

mod defaults {
    use std::time::Duration;
    pub fn window() -> Duration {
        Duration::from_secs(60)
    }
    pub fn buckets() -> u32 {
        6
    }
    pub fn min_calls() -> u32 {
        10
    }
    pub fn failure_rate() -> f64 {
        0.5
    }
    pub fn consecutive_failures() -> u32 {
        5
    }
    pub fn cooldown() -> Duration {
        Duration::from_secs(30)
    }
    pub fn max_cooldown() -> Duration {
        Duration::from_secs(600)
    }
    pub fn probe_lease() -> Duration {
        Duration::from_secs(60)
    }
}

mod secs {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;
    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(d.as_secs())
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        u64::deserialize(d).map(Duration::from_secs)
    }
}

impl Default for BreakerConfig {
    fn default() -> Self {
        BreakerConfig {
            window: defaults::window(),
            buckets: defaults::buckets(),
            min_calls: defaults::min_calls(),
            failure_rate: defaults::failure_rate(),
            consecutive_failures: defaults::consecutive_failures(),
            cooldown: defaults::cooldown(),
            max_cooldown: defaults::max_cooldown(),
            probe_lease: defaults::probe_lease(),
        }
    }
}

impl BreakerConfig {
    /// Problems with the settings, for config validation.
    pub fn problems(&self) -> Vec<String> {
        let mut p = Vec::new();
        if self.buckets == 0 || self.window.as_millis() < self.buckets as u128 {
            p.push("window must be at least one second per bucket and buckets at least 1".into());
        }
        if !(self.failure_rate > 0.0 && self.failure_rate <= 1.0) {
            p.push("failure_rate must be in (0, 1]".into());
        }
        if self.consecutive_failures == 0 {
            p.push("consecutive_failures must be at least 1".into());
        }
        if self.cooldown.is_zero() || self.max_cooldown < self.cooldown {
            p.push("cooldown must be positive and at most max_cooldown".into());
        }
        if self.probe_lease.is_zero() {
            p.push("probe_lease must be positive".into());
        }
        p
    }

    fn bucket_ms(&self) -> u64 {
        (self.window.as_millis() as u64 / self.buckets.max(1) as u64).max(1)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Phase {
    Closed,
    Open,
    HalfOpen,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bucket {
    pub start_ms: u64,
    pub successes: u32,
    pub failures: u32,
}

/// The stored state of one breaker.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BreakerState {
    pub phase: Phase,
    /// CLOSED: outcomes in the window, oldest first.
    #[serde(default)]
    pub buckets: Vec<Bucket>,
    #[serde(default)]
    pub consecutive_failures: u32,
    /// OPEN: refuse until then.
    #[serde(default)]
    pub open_until_ms: u64,
    /// The cool-down the next opening uses.
    pub cooldown_ms: u64,
    /// HALF_OPEN: the probe's lease.
    #[serde(default)]
    pub probe_until_ms: u64,
    /// When the current phase began.
    #[serde(default)]
    pub since_ms: u64,
    /// When the outage began: the first opening since the breaker was last CLOSED, kept
    /// through every re-opening and probe until it closes. The "open for N minutes" alarm
    /// measures from here (`since_ms` restarts at each re-opening, which a cool-down capped
    /// at 10 minutes would keep below any longer alarm threshold).
    #[serde(default)]
    pub outage_since_ms: Option<u64>,
}

impl BreakerState {
    pub fn closed(cfg: &BreakerConfig, now_ms: u64) -> Self {
        BreakerState {
            phase: Phase::Closed,
            buckets: Vec::new(),
            consecutive_failures: 0,
            open_until_ms: 0,
            cooldown_ms: cfg.cooldown.as_millis() as u64,
            probe_until_ms: 0,
            since_ms: now_ms,
            outage_since_ms: None,
        }
    }

    fn open(&self, cfg: &BreakerConfig, now_ms: u64, cooldown_ms: u64) -> Self {
        let cooldown_ms = cooldown_ms.min(cfg.max_cooldown.as_millis() as u64);
        BreakerState {
            phase: Phase::Open,
            buckets: Vec::new(),
            consecutive_failures: 0,
            open_until_ms: now_ms + cooldown_ms,
            cooldown_ms,
            probe_until_ms: 0,
            since_ms: now_ms,
            outage_since_ms: Some(self.outage_since_ms.unwrap_or(now_ms)),
        }
    }

    /// Calls and failures in the window ending at `now_ms`.
    pub fn window_counts(&self, cfg: &BreakerConfig, now_ms: u64) -> (u32, u32) {
        let horizon = now_ms.saturating_sub(cfg.window.as_millis() as u64);
        self.buckets
            .iter()
            .filter(|b| b.start_ms + cfg.bucket_ms() > horizon)
            .fold((0, 0), |(c, f), b| {
                (c + b.successes + b.failures, f + b.failures)
            })
    }
}

/// How a delivery attempt went, as far as the breaker cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    Success,
    /// Timeout, connection error, 5xx, 408: the target's fault.
    Failure,
    /// 429: slow down, do not trip.
    Throttled,
    /// Other 4xx: the request's fault; says nothing about the target.
    Neutral,
}

/// What the breaker says to a delivery that wants to call the target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    Allow,
    /// Allowed as the single HALF_OPEN probe; report its outcome with `probe = true`.
    Probe,
    /// Not now: try again at `retry_at_ms`. Not a delivery attempt.
    Reject {
        retry_at_ms: u64,
    },
}

/// The admission decision and, when it changes the breaker, the state to write (only if the
/// state read is still current: the write is conditional).
pub fn admit(
    state: &BreakerState,
    cfg: &BreakerConfig,
    now_ms: u64,
) -> (Admission, Option<BreakerState>) {
    match state.phase {
        Phase::Closed => (Admission::Allow, None),
        Phase::Open if now_ms < state.open_until_ms => (
            Admission::Reject {
                retry_at_ms: state.open_until_ms,
            },
            None,
        ),
        Phase::HalfOpen if now_ms < state.probe_until_ms => (
            Admission::Reject {
                retry_at_ms: state.probe_until_ms,
            },
            None,
        ),
        // Cool-down over, or the last probe's lease ran out: this caller probes.
        Phase::Open | Phase::HalfOpen => {
            let mut next = state.clone();
            next.phase = Phase::HalfOpen;
            next.probe_until_ms = now_ms + cfg.probe_lease.as_millis() as u64;
            if state.phase == Phase::Open {
                next.since_ms = now_ms;
            }
            (Admission::Probe, Some(next))
        }
    }
}

/// The state after an outcome, or `None` when it does not change.
pub fn record(
    state: &BreakerState,
    cfg: &BreakerConfig,
    signal: Signal,
    probe: bool,
    now_ms: u64,
) -> Option<BreakerState> {
    match (state.phase, probe) {
        (Phase::HalfOpen, true) => Some(match signal {
            Signal::Failure => state.open(cfg, now_ms, state.cooldown_ms.saturating_mul(2)),
            // The target answered: it is reachable again.
            Signal::Success | Signal::Throttled | Signal::Neutral => {
                BreakerState::closed(cfg, now_ms)
            }
        }),
        (Phase::Closed, _) => record_closed(state, cfg, signal, now_ms),
        // A delivery admitted before the breaker opened, or a probe whose lease was taken
        // over: its outcome is stale.
        _ => None,
    }
}

fn record_closed(
    state: &BreakerState,
    cfg: &BreakerConfig,
    signal: Signal,
    now_ms: u64,
) -> Option<BreakerState> {
    let (success, failure) = match signal {
        Signal::Success => (1, 0),
        Signal::Failure => (0, 1),
        Signal::Throttled | Signal::Neutral => return None,
    };
    if success == 1 && state.consecutive_failures == 0 && state.window_counts(cfg, now_ms).1 == 0 {
        return None;
    }
    let mut next = state.clone();
    let bucket_ms = cfg.bucket_ms();
    let start = now_ms - now_ms % bucket_ms;
    let horizon = now_ms.saturating_sub(cfg.window.as_millis() as u64);
    next.buckets.retain(|b| b.start_ms + bucket_ms > horizon);
    match next.buckets.last_mut() {
        Some(b) if b.start_ms == start => {
            b.successes += success;
            b.failures += failure;
        }
        _ => next.buckets.push(Bucket {
            start_ms: start,
            successes: success,
            failures: failure,
        }),
    }
    next.consecutive_failures = if failure == 1 {
        state.consecutive_failures + 1
    } else {
        0
    };
    let (calls, failures) = next.window_counts(cfg, now_ms);
    let rate_trips = calls >= cfg.min_calls && failures as f64 >= cfg.failure_rate * calls as f64;
    if failure == 1 && (rate_trips || next.consecutive_failures >= cfg.consecutive_failures) {
        return Some(state.open(cfg, now_ms, cfg.cooldown.as_millis() as u64));
    }
    Some(next)
}

/// An OPEN breaker whose target a health check reached again goes HALF_OPEN at once: the
/// next delivery probes without waiting for the cool-down.
pub fn target_healthy(state: &BreakerState, now_ms: u64) -> Option<BreakerState> {
    (state.phase == Phase::Open && now_ms < state.open_until_ms).then(|| BreakerState {
        phase: Phase::HalfOpen,
        probe_until_ms: 0,
        since_ms: now_ms,
        ..state.clone()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: u64 = 1_000_000;

    fn cfg() -> BreakerConfig {
        BreakerConfig::default()
    }

    fn feed(mut s: BreakerState, signals: &[Signal], now: u64) -> BreakerState {
        for sig in signals {
            if let Some(n) = record(&s, &cfg(), *sig, false, now) {
                s = n;
            }
        }
        s
    }

    #[test]
    fn consecutive_failures_open_it() {
        let s = feed(BreakerState::closed(&cfg(), T), &[Signal::Failure; 4], T);
        assert_eq!(s.phase, Phase::Closed);
        let s = feed(s, &[Signal::Failure], T);
        assert_eq!(s.phase, Phase::Open);
        assert_eq!(s.open_until_ms, T + 30_000);
    }

    #[test]
    fn an_outage_lasts_from_the_first_opening_until_it_closes() {
        let open = feed(BreakerState::closed(&cfg(), T), &[Signal::Failure; 5], T);
        assert_eq!(open.outage_since_ms, Some(T));
        // The cool-down ends: a probe, which fails: open again, the outage goes on.
        let later = open.open_until_ms;
        let (_, probing) = admit(&open, &cfg(), later);
        let probing = probing.unwrap();
        let reopened = record(&probing, &cfg(), Signal::Failure, true, later).unwrap();
        assert_eq!(reopened.phase, Phase::Open);
        assert_eq!(reopened.since_ms, later, "the phase restarts");
        assert_eq!(reopened.outage_since_ms, Some(T), "the outage does not");
        let (_, probing) = admit(&reopened, &cfg(), reopened.open_until_ms);
        let closed = record(
            &probing.unwrap(),
            &cfg(),
            Signal::Success,
            true,
            reopened.open_until_ms,
        )
        .unwrap();
        assert_eq!(
            (closed.phase, closed.outage_since_ms),
            (Phase::Closed, None)
        );
    }

    #[test]
    fn failure_rate_opens_it_after_min_calls() {
        use Signal::*;
        // Alternating: never 5 in a row, but a 50 % rate once 10 calls are in.
        let seq = [
            Failure, Success, Failure, Success, Failure, Success, Failure, Success, Failure,
        ];
        let s = feed(BreakerState::closed(&cfg(), T), &seq, T);
        assert_eq!(s.phase, Phase::Closed, "9 calls are below min_calls");
        let s = feed(s, &[Success, Failure], T);
        assert_eq!(s.phase, Phase::Open, "6 of 11");
    }

    #[test]
    fn old_failures_leave_the_window() {
        let s = feed(BreakerState::closed(&cfg(), T), &[Signal::Failure; 4], T);
        let s = feed(s, &[Signal::Success; 6], T + 70_000);
        assert_eq!(
            s.window_counts(&cfg(), T + 70_000),
            (1, 0),
            "the old bucket left the window; the first success reset the streak, the rest were not written"
        );
        assert_eq!(s.consecutive_failures, 0);
    }

    #[test]
    fn a_healthy_target_costs_no_writes() {
        let s = BreakerState::closed(&cfg(), T);
        assert_eq!(record(&s, &cfg(), Signal::Success, false, T), None);
        let s = feed(s, &[Signal::Failure], T);
        let s2 = record(&s, &cfg(), Signal::Success, false, T)
            .expect("counted while a failure is in the window");
        assert_eq!(s2.window_counts(&cfg(), T), (2, 1));
    }

    #[test]
    fn client_errors_and_throttling_do_not_count() {
        let s = BreakerState::closed(&cfg(), T);
        assert_eq!(record(&s, &cfg(), Signal::Neutral, false, T), None);
        assert_eq!(record(&s, &cfg(), Signal::Throttled, false, T), None);
        let s = feed(
            s,
            &[
                Signal::Failure,
                Signal::Failure,
                Signal::Neutral,
                Signal::Failure,
                Signal::Throttled,
                Signal::Failure,
            ],
            T,
        );
        assert_eq!(
            s.consecutive_failures, 4,
            "4xx and 429 neither count nor reset"
        );
    }

    #[test]
    fn open_rejects_then_grants_one_probe() {
        let open = feed(BreakerState::closed(&cfg(), T), &[Signal::Failure; 5], T);
        assert_eq!(
            admit(&open, &cfg(), T + 1).0,
            Admission::Reject {
                retry_at_ms: T + 30_000
            }
        );
        let (a, next) = admit(&open, &cfg(), T + 30_000);
        assert_eq!(a, Admission::Probe);
        let half = next.unwrap();
        assert_eq!(half.phase, Phase::HalfOpen);
        assert_eq!(
            admit(&half, &cfg(), T + 30_001).0,
            Admission::Reject {
                retry_at_ms: T + 90_000
            }
        );
        // The probe's holder crashed: after its lease, someone else probes.
        assert_eq!(admit(&half, &cfg(), T + 90_000).0, Admission::Probe);
    }

    #[test]
    fn probe_outcome_closes_or_reopens_longer_capped() {
        let mut s = feed(BreakerState::closed(&cfg(), T), &[Signal::Failure; 5], T);
        let mut now = T;
        let mut cooldowns = Vec::new();
        for _ in 0..7 {
            now = s.open_until_ms;
            let (_, half) = admit(&s, &cfg(), now);
            s = record(&half.unwrap(), &cfg(), Signal::Failure, true, now).unwrap();
            cooldowns.push((s.open_until_ms - now) / 1000);
        }
        assert_eq!(cooldowns, [60, 120, 240, 480, 600, 600, 600]);
        let (_, half) = admit(&s, &cfg(), s.open_until_ms);
        let closed = record(&half.unwrap(), &cfg(), Signal::Success, true, now).unwrap();
        assert_eq!(closed.phase, Phase::Closed);
        assert_eq!(closed.cooldown_ms, 30_000, "success resets the cool-down");
    }

    #[test]
    fn stale_outcomes_change_nothing() {
        let open = feed(BreakerState::closed(&cfg(), T), &[Signal::Failure; 5], T);
        assert_eq!(record(&open, &cfg(), Signal::Failure, false, T + 1), None);
        assert_eq!(record(&open, &cfg(), Signal::Success, false, T + 1), None);
    }

    #[test]
    fn a_healthy_target_skips_the_rest_of_the_cooldown() {
        let open = feed(BreakerState::closed(&cfg(), T), &[Signal::Failure; 5], T);
        let half = target_healthy(&open, T + 1).unwrap();
        assert_eq!(admit(&half, &cfg(), T + 2).0, Admission::Probe);
    }
}
