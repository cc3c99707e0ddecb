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
//! - `RunsAccepted`, `TestsAccepted` (Count; no dimension): what ingest accepted
//! - `PipelinesCompleted` (Count; no dimension): pipeline completions delivered
//! - `HealthStatus` (None; `Scope` = overall, or `Connector`): 0 healthy, 1 degraded, 2 critical
//! - `ProbeLatency` (Milliseconds; `Connector`)
//! - `BreakerOpen` (None; `Target`): 1 while open; `BreakersOpenLongest` (None): minutes
//!   since the longest outage began (a breaker's first opening, through its re-openings and
//!   probes, until it closes)
//! - `UndeliveredAge` (None; `Connector`, and with no dimension for the alarm): seconds since
//!   the run was accepted, each time a delivery of it ends undelivered for now (retry,
//!   deferred, breaker open); 0 when one is delivered
//! - `HealthAlerts` (Count; `Outcome` = sent | failed)

use std::collections::BTreeMap;
use std::sync::Mutex;

pub type Dims<'a> = &'a [(&'static str, &'a str)];

pub trait Metrics: Send + Sync {
    /// Adds `value` to a counter.
    fn count(&self, name: &'static str, dims: Dims<'_>, value: u64);
    /// Records a duration in milliseconds.
    fn millis(&self, name: &'static str, dims: Dims<'_>, value: f64);
    /// Sets a level (health status, breaker open) to `value`.
    fn gauge(&self, name: &'static str, dims: Dims<'_>, value: f64);
}

/// Drops everything.
pub struct NoMetrics;

impl Metrics for NoMetrics {
    fn count(&self, _: &'static str, _: Dims<'_>, _: u64) {}
    fn millis(&self, _: &'static str, _: Dims<'_>, _: f64) {}
    fn gauge(&self, _: &'static str, _: Dims<'_>, _: f64) {}
}

/// Counters, duration sums and gauges in memory, keyed by name and dimensions; rendered in
/// the Prometheus text format on `GET /metrics` by `testrelay serve`.
#[derive(Default)]
pub struct MemoryMetrics {
    series: Mutex<BTreeMap<Key, Value>>,
}

/// A metric name and its dimensions.
type Key = (&'static str, Vec<(String, String)>);

#[derive(Debug, Clone, Copy)]
enum Value {
    Counter(u64),
    Millis { count: u64, sum: f64 },
    Gauge(f64),
}

fn key(name: &'static str, dims: Dims<'_>) -> Key {
    (
        name,
        dims.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    )
}

impl MemoryMetrics {
    /// The counter `name` with exactly these dimensions (0 if never counted).
    pub fn get(&self, name: &'static str, dims: Dims<'_>) -> u64 {
        match self
            .series
            .lock()
            .expect("not poisoned")
            .get(&key(name, dims))
        {
            Some(Value::Counter(n)) => *n,
            _ => 0,
        }
    }

    /// The gauge `name` with exactly these dimensions.
    pub fn gauge_value(&self, name: &'static str, dims: Dims<'_>) -> Option<f64> {
        match self
            .series
            .lock()
            .expect("not poisoned")
            .get(&key(name, dims))
        {
            Some(Value::Gauge(v)) => Some(*v),
            _ => None,
        }
    }

    /// The sum of counter `name` over all its dimensions.
    pub fn total(&self, name: &str) -> u64 {
        self.series
            .lock()
            .expect("not poisoned")
            .iter()
            .filter(|((n, _), _)| *n == name)
            .map(|(_, v)| match v {
                Value::Counter(n) => *n,
                _ => 0,
            })
            .sum()
    }

    /// Everything in the Prometheus text exposition format (0.0.4): counters as
    /// `testrelay_<name>_total`, durations as summaries `testrelay_<name>_ms` (`_sum`,
    /// `_count`), gauges as `testrelay_<name>`; dimensions become labels.
    pub fn prometheus(&self) -> String {
        let series = self.series.lock().expect("not poisoned");
        let mut out = String::new();
        let mut last = "";
        for ((name, dims), value) in series.iter() {
            let base = format!("testrelay_{}", snake(name));
            let (family, kind) = match value {
                Value::Counter(_) => (format!("{base}_total"), "counter"),
                Value::Millis { .. } => (format!("{base}_ms"), "summary"),
                Value::Gauge(_) => (base, "gauge"),
            };
            if *name != last {
                out.push_str(&format!("# TYPE {family} {kind}\n"));
                last = name;
            }
            let labels = labels(dims);
            match value {
                Value::Counter(n) => out.push_str(&format!("{family}{labels} {n}\n")),
                Value::Gauge(v) => out.push_str(&format!("{family}{labels} {v}\n")),
                Value::Millis { count, sum } => {
                    out.push_str(&format!("{family}_sum{labels} {sum}\n"));
                    out.push_str(&format!("{family}_count{labels} {count}\n"));
                }
            }
        }
        out
    }
}

/// `DeliveryOutcome` -> `delivery_outcome`.
fn snake(name: &str) -> String {
    let mut out = String::new();
    for (i, c) in name.chars().enumerate() {
        if c.is_ascii_uppercase() {
            if i > 0 {
                out.push('_');
            }
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

fn labels(dims: &[(String, String)]) -> String {
    if dims.is_empty() {
        return String::new();
    }
    let parts: Vec<String> = dims
        .iter()
        .map(|(k, v)| {
            let v = v
                .replace('\\', "\\\\")
                .replace('"', "\\\"")
                .replace('\n', "\\n");
            format!("{}=\"{v}\"", snake(k))
        })
        .collect();
    format!("{{{}}}", parts.join(","))
}

impl Metrics for MemoryMetrics {
    fn count(&self, name: &'static str, dims: Dims<'_>, value: u64) {
        let mut s = self.series.lock().expect("not poisoned");
        let v = s.entry(key(name, dims)).or_insert(Value::Counter(0));
        if let Value::Counter(n) = v {
            *n += value;
        }
    }

    fn millis(&self, name: &'static str, dims: Dims<'_>, value: f64) {
        let mut s = self.series.lock().expect("not poisoned");
        let v = s
            .entry(key(name, dims))
            .or_insert(Value::Millis { count: 0, sum: 0.0 });
        if let Value::Millis { count, sum } = v {
            *count += 1;
            *sum += value;
        }
    }

    fn gauge(&self, name: &'static str, dims: Dims<'_>, value: f64) {
        self.series
            .lock()
            .expect("not poisoned")
            .insert(key(name, dims), Value::Gauge(value));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prometheus_text() {
        let m = MemoryMetrics::default();
        m.count(
            "DeliveryOutcome",
            &[("Connector", "hook"), ("Outcome", "delivered")],
            2,
        );
        m.count(
            "DeliveryOutcome",
            &[("Connector", "hook"), ("Outcome", "retry")],
            1,
        );
        m.millis("DeliveryLatency", &[("Connector", "hook")], 12.5);
        m.millis("DeliveryLatency", &[("Connector", "hook")], 7.5);
        m.gauge("HealthStatus", &[("Scope", "overall")], 1.0);
        m.gauge("HealthStatus", &[("Scope", "overall")], 2.0);
        m.count("RunsAccepted", &[], 3);
        m.gauge(
            "BreakerOpen",
            &[("Target", "webhook:https://a\"b:443")],
            0.0,
        );
        assert_eq!(
            m.prometheus(),
            "# TYPE testrelay_breaker_open gauge\n\
             testrelay_breaker_open{target=\"webhook:https://a\\\"b:443\"} 0\n\
             # TYPE testrelay_delivery_latency_ms summary\n\
             testrelay_delivery_latency_ms_sum{connector=\"hook\"} 20\n\
             testrelay_delivery_latency_ms_count{connector=\"hook\"} 2\n\
             # TYPE testrelay_delivery_outcome_total counter\n\
             testrelay_delivery_outcome_total{connector=\"hook\",outcome=\"delivered\"} 2\n\
             testrelay_delivery_outcome_total{connector=\"hook\",outcome=\"retry\"} 1\n\
             # TYPE testrelay_health_status gauge\n\
             testrelay_health_status{scope=\"overall\"} 2\n\
             # TYPE testrelay_runs_accepted_total counter\n\
             testrelay_runs_accepted_total 3\n"
        );
        assert_eq!(m.total("DeliveryOutcome"), 3);
        assert_eq!(
            m.gauge_value("HealthStatus", &[("Scope", "overall")]),
            Some(2.0)
        );
    }
}
