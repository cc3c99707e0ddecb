//! The metrics port. Lambda functions write CloudWatch Embedded Metric Format lines (no API
//! call on the hot path); `testrelay serve` keeps counters in memory.
//!
//! Names (namespace `testrelay`), each with the dimensions listed:
//! - `DeliveryOutcome` (Count; `Connector`, `Outcome` = delivered | retry | failed | deferred | dead_lettered | duplicate)
//! - `DeliveryLatency` (Milliseconds; `Connector`): one connector call
//! - `DeliveryAttempts` (Count; `Connector`): attempts a finished delivery took
//! - `BreakerTransition` (Count; `Target`, `To` = CLOSED | OPEN | HALF_OPEN)
//! - `BreakerStoreUnavailable` (Count; `Target`): delivered without the breaker
//! - `DeadLetters` (Count; `Connector`)

use std::collections::BTreeMap;
use std::sync::Mutex;

pub type Dims<'a> = &'a [(&'static str, &'a str)];

pub trait Metrics: Send + Sync {
    /// Adds `value` to a counter.
    fn count(&self, name: &'static str, dims: Dims<'_>, value: u64);
    /// Records a duration in milliseconds.
    fn millis(&self, name: &'static str, dims: Dims<'_>, value: f64);
}

/// Drops everything.
pub struct NoMetrics;

impl Metrics for NoMetrics {
    fn count(&self, _: &'static str, _: Dims<'_>, _: u64) {}
    fn millis(&self, _: &'static str, _: Dims<'_>, _: f64) {}
}

/// Counters and duration sums in memory, keyed by name and dimensions.
#[derive(Default)]
pub struct MemoryMetrics {
    counters: Mutex<BTreeMap<String, u64>>,
}

fn series(name: &str, dims: Dims<'_>) -> String {
    let mut key = name.to_string();
    for (k, v) in dims {
        key.push_str(&format!(",{k}={v}"));
    }
    key
}

impl MemoryMetrics {
    /// The counter `name` with exactly these dimensions (0 if never counted).
    pub fn get(&self, name: &str, dims: Dims<'_>) -> u64 {
        self.counters
            .lock()
            .expect("not poisoned")
            .get(&series(name, dims))
            .copied()
            .unwrap_or(0)
    }

    /// The sum of counter `name` over all its dimensions.
    pub fn total(&self, name: &str) -> u64 {
        let prefix = format!("{name},");
        self.counters
            .lock()
            .expect("not poisoned")
            .iter()
            .filter(|(k, _)| k.starts_with(&prefix) || k.as_str() == name)
            .map(|(_, v)| v)
            .sum()
    }
}

impl Metrics for MemoryMetrics {
    fn count(&self, name: &'static str, dims: Dims<'_>, value: u64) {
        *self
            .counters
            .lock()
            .expect("not poisoned")
            .entry(series(name, dims))
            .or_default() += value;
    }

    fn millis(&self, name: &'static str, dims: Dims<'_>, value: f64) {
        let mut c = self.counters.lock().expect("not poisoned");
        *c.entry(series(&format!("{name}_count"), dims)).or_default() += 1;
        *c.entry(series(&format!("{name}_sum_ms"), dims))
            .or_default() += value.round() as u64;
    }
}
