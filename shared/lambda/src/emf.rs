//! Metrics as CloudWatch Embedded Metric Format: one JSON line on stdout per data point,
//! which CloudWatch Logs turns into metrics. No API call on the hot path. Namespace
//! `testrelay`; the names and dimensions are listed in `testrelay_domain::health::metrics`.

use std::io::Write;
use testrelay_domain::health::metrics::{Dims, Metrics};
use testrelay_domain::ports::{Clock, SystemClock};

pub const NAMESPACE: &str = "testrelay";

/// Writes EMF lines to `out` (stdout on Lambda).
pub struct EmfMetrics<W: Write + Send> {
    out: std::sync::Mutex<W>,
    namespace: String,
}

impl EmfMetrics<std::io::Stdout> {
    /// On stdout, in the namespace `TESTRELAY_METRICS_NAMESPACE` (default `testrelay`; the
    /// SAM template sets `testrelay/<stage>`).
    pub fn stdout() -> Self {
        let namespace = std::env::var("TESTRELAY_METRICS_NAMESPACE")
            .ok()
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| NAMESPACE.to_string());
        EmfMetrics {
            out: std::sync::Mutex::new(std::io::stdout()),
            namespace,
        }
    }
}

impl<W: Write + Send> EmfMetrics<W> {
    pub fn new(out: W) -> Self {
        EmfMetrics {
            out: std::sync::Mutex::new(out),
            namespace: NAMESPACE.to_string(),
        }
    }

    pub fn into_inner(self) -> W {
        self.out.into_inner().expect("not poisoned")
    }

    fn emit(&self, name: &str, unit: &str, dims: Dims<'_>, value: serde_json::Value) {
        let names: Vec<&str> = dims.iter().map(|(k, _)| *k).collect();
        let mut line = serde_json::json!({
            "_aws": {
                "Timestamp": SystemClock.now_ms(),
                "CloudWatchMetrics": [{
                    "Namespace": self.namespace,
                    "Dimensions": [names],
                    "Metrics": [{"Name": name, "Unit": unit}],
                }],
            },
        });
        for (k, v) in dims {
            line[*k] = serde_json::Value::String(v.to_string());
        }
        line[name] = value;
        let mut out = self.out.lock().expect("not poisoned");
        let _ = writeln!(out, "{line}");
    }
}

impl<W: Write + Send> Metrics for EmfMetrics<W> {
    fn count(&self, name: &'static str, dims: Dims<'_>, value: u64) {
        self.emit(name, "Count", dims, value.into());
    }

    fn millis(&self, name: &'static str, dims: Dims<'_>, value: f64) {
        self.emit(name, "Milliseconds", dims, value.into());
    }

    fn gauge(&self, name: &'static str, dims: Dims<'_>, value: f64) {
        self.emit(name, "None", dims, value.into());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_valid_emf() {
        let m = EmfMetrics::new(Vec::new());
        m.count(
            "DeliveryOutcome",
            &[("Connector", "team"), ("Outcome", "delivered")],
            1,
        );
        m.millis("DeliveryLatency", &[("Connector", "team")], 12.5);
        let text = String::from_utf8(m.into_inner()).unwrap();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 2);
        let cw = &lines[0]["_aws"]["CloudWatchMetrics"][0];
        assert_eq!(cw["Namespace"], "testrelay");
        assert_eq!(
            cw["Dimensions"][0],
            serde_json::json!(["Connector", "Outcome"])
        );
        assert_eq!(cw["Metrics"][0]["Name"], "DeliveryOutcome");
        assert_eq!(lines[0]["DeliveryOutcome"], 1);
        assert_eq!(lines[0]["Outcome"], "delivered");
        assert_eq!(
            lines[1]["_aws"]["CloudWatchMetrics"][0]["Metrics"][0]["Unit"],
            "Milliseconds"
        );
        assert_eq!(lines[1]["DeliveryLatency"], 12.5);
    }
}
