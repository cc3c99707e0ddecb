//! Health checks: every configured connector's target probed in parallel (each with a
//! timeout), testrelay's own queues and state store checked, the picture and a bounded
//! history per connector kept in the state store, an OPEN breaker moved to HALF_OPEN when
//! its target answers again, and an alert sent through the configured route when the
//! overall status CHANGES. Run by the health Lambda on a schedule and by a ticker in
//! `testrelay serve`; `GET /v1/health` shows the latest picture.

pub mod metrics;

use crate::config::{ConnectorKind, HealthConfig};
use crate::delivery::Connectors;
use crate::delivery::breaker::Phase;
use crate::delivery::breakers::Breakers;
use crate::health::metrics::Metrics;
use crate::ids::ConnectorName;
use crate::ports::{Clock, QueueStats, StateStore, StoreError, rfc3339};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The state-store key of the latest report.
pub const LATEST: &str = "health/latest";

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Overall {
    Healthy,
    Degraded,
    Critical,
}

impl Overall {
    /// 0, 1, 2: the `HealthStatus` metric.
    pub fn level(self) -> f64 {
        match self {
            Overall::Healthy => 0.0,
            Overall::Degraded => 1.0,
            Overall::Critical => 2.0,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Overall::Healthy => "HEALTHY",
            Overall::Degraded => "DEGRADED",
            Overall::Critical => "CRITICAL",
        }
    }
}

/// One probe of one connector, as kept in its history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Check {
    pub at: String,
    pub ok: bool,
    pub latency_ms: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConnectorHealth {
    pub connector: ConnectorName,
    pub kind: ConnectorKind,
    pub target: String,
    pub critical: bool,
    pub ok: bool,
    pub latency_ms: u64,
    pub checked_at: String,
    /// What the probe did, e.g. `GET /rest/api/2/myself`.
    pub check: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_success_at: Option<String>,
    pub consecutive_failures: u32,
    /// The target's circuit breaker: CLOSED, OPEN or HALF_OPEN.
    pub breaker: Phase,
    /// Newest last.
    pub history: Vec<Check>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QueueHealth {
    pub kind: ConnectorKind,
    pub depth: u64,
    /// Locally; SQS does not report it (the dashboard and an alarm watch it there).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oldest_age_s: Option<u64>,
    pub dead_letters: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SystemHealth {
    pub state_store: bool,
    pub queues: Vec<QueueHealth>,
    /// What made the system part degraded or critical, in words.
    pub problems: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HealthReport {
    pub status: Overall,
    pub checked_at: String,
    pub connectors: Vec<ConnectorHealth>,
    pub system: SystemHealth,
}

/// What an alert route is told on a transition.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HealthAlert {
    pub status: Overall,
    pub previous: Overall,
    pub at: String,
    /// One line per problem (`jira (critical): timed out after 10000 ms`); empty when healthy.
    pub problems: Vec<String>,
    /// The title instead of the health one: a fallback notice's (see
    /// [`crate::delivery::fallback`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub headline: Option<String>,
}

impl HealthAlert {
    /// The problems a message shows: the first 20, each cut to `max` bytes.
    pub fn shown_problems(&self, max: usize) -> impl Iterator<Item = String> + '_ {
        self.problems
            .iter()
            .take(20)
            .map(move |p| crate::report::render::cut(p, max))
    }

    pub fn title(&self) -> String {
        if let Some(h) = &self.headline {
            return h.clone();
        }
        format!(
            "testrelay health: {} (was {})",
            self.status.as_str(),
            self.previous.as_str()
        )
    }
}

pub struct HealthService {
    connectors: Connectors,
    state: Arc<dyn StateStore>,
    queues: Arc<dyn QueueStats>,
    breakers: Breakers,
    clock: Arc<dyn Clock>,
    metrics: Arc<dyn Metrics>,
    config: HealthConfig,
}

/// The probe of one connector.
struct Probed {
    name: ConnectorName,
    result: Result<crate::ports::Probe, String>,
    latency_ms: u64,
}

impl HealthService {
    pub fn new(
        connectors: Connectors,
        state: Arc<dyn StateStore>,
        queues: Arc<dyn QueueStats>,
        clock: Arc<dyn Clock>,
        metrics: Arc<dyn Metrics>,
        config: HealthConfig,
    ) -> Self {
        HealthService {
            breakers: Breakers::new(state.clone(), clock.clone(), metrics.clone()),
            connectors,
            state,
            queues,
            clock,
            metrics,
            config,
        }
    }

    pub fn interval(&self) -> Duration {
        Duration::from_secs(self.config.interval_s)
    }

    async fn probe_all(&self) -> Vec<Probed> {
        let timeout = Duration::from_millis(self.config.timeout_ms);
        let probes = self.connectors.iter().map(|(name, c)| async move {
            let start = Instant::now();
            let result = match tokio::time::timeout(timeout, c.probe()).await {
                Ok(Ok(p)) => Ok(p),
                Ok(Err(e)) => Err(e.detail),
                Err(_) => Err(format!("timed out after {} ms", timeout.as_millis())),
            };
            Probed {
                name: name.clone(),
                result,
                latency_ms: start.elapsed().as_millis() as u64,
            }
        });
        futures::future::join_all(probes).await
    }

    /// Runs one round of checks, records it, and alerts on a transition.
    pub async fn check(&self) -> HealthReport {
        let now = self.clock.now_ms();
        let at = rfc3339(now);
        let (previous, version, store_ok) = match self.state.load(LATEST).await {
            Ok(Some(v)) => (
                serde_json::from_str::<HealthReport>(&v.value).ok(),
                Some(v.version),
                true,
            ),
            Ok(None) => (None, None, true),
            Err(e) => {
                tracing::warn!(error = %e, "health: state store unreachable");
                (None, None, false)
            }
        };
        let before: BTreeMap<&ConnectorName, &ConnectorHealth> = previous
            .iter()
            .flat_map(|p| p.connectors.iter().map(|c| (&c.connector, c)))
            .collect();
        let mut connectors = Vec::new();
        for p in self.probe_all().await {
            let c = &self.connectors[&p.name];
            let prev = before.get(&p.name);
            let ok = p.result.is_ok();
            // The connector's breaker phase is its worst target's (Jira and Xray Cloud).
            let mut breaker = Phase::Closed;
            for target in crate::delivery::targets(c.as_ref()) {
                if ok {
                    // A target that answers again need not wait out its breaker's cool-down.
                    self.breakers.target_healthy(target, c.breaker()).await;
                }
                if let Ok((s, _)) = self.breakers.load(target, c.breaker()).await {
                    breaker = worse(breaker, s.phase);
                }
            }
            let mut history = prev.map(|p| p.history.clone()).unwrap_or_default();
            history.push(Check {
                at: at.clone(),
                ok,
                latency_ms: p.latency_ms,
                error: p.result.as_ref().err().cloned(),
            });
            let excess = history.len().saturating_sub(self.config.history);
            history.drain(..excess);
            let (check, detail, error) = match p.result {
                Ok(probe) => (probe.check, probe.detail, None),
                Err(e) => (String::new(), None, Some(e)),
            };
            connectors.push(ConnectorHealth {
                kind: c.kind(),
                target: c.target().to_string(),
                critical: self.config.critical.contains(&p.name),
                ok,
                latency_ms: p.latency_ms,
                checked_at: at.clone(),
                check,
                detail,
                error,
                last_success_at: if ok {
                    Some(at.clone())
                } else {
                    prev.and_then(|p| p.last_success_at.clone())
                },
                consecutive_failures: if ok {
                    0
                } else {
                    prev.map_or(0, |p| p.consecutive_failures) + 1
                },
                breaker,
                history,
                connector: p.name,
            });
        }
        let system = self.system(store_ok, now).await;
        let status = overall(&connectors, &system);
        let report = HealthReport {
            status,
            checked_at: at.clone(),
            connectors,
            system,
        };
        self.emit(&report, now).await;
        let saved = self
            .state
            .save(
                LATEST,
                &serde_json::to_string(&report).expect("serialisable"),
                version,
            )
            .await;
        // Only the checker whose write won alerts: concurrent checks send one alert.
        let previous_status = previous.map_or(Overall::Healthy, |p| p.status);
        if matches!(saved, Ok(true)) && previous_status != status {
            self.alert(&report, previous_status).await;
        }
        report
    }

    async fn system(&self, store_ok: bool, now: u64) -> SystemHealth {
        let mut problems = Vec::new();
        if !store_ok {
            problems.push("state store unreachable".to_string());
        }
        let kinds: std::collections::BTreeSet<ConnectorKind> =
            self.connectors.values().map(|c| c.kind()).collect();
        let mut queues = Vec::new();
        for kind in kinds {
            match self.queues.stats(kind, now).await {
                Ok(s) => {
                    let oldest_age_s = s.oldest_age_ms.map(|ms| ms / 1000);
                    if let Some(age) = oldest_age_s.filter(|&a| a > self.config.max_queue_age_s) {
                        problems.push(format!(
                            "{} queue: oldest message is {age} s old",
                            kind.as_str()
                        ));
                    }
                    if s.dead_letters > 0 {
                        problems.push(format!(
                            "{} dead-letter queue holds {}",
                            kind.as_str(),
                            s.dead_letters
                        ));
                    }
                    queues.push(QueueHealth {
                        kind,
                        depth: s.depth,
                        oldest_age_s,
                        dead_letters: s.dead_letters,
                    });
                }
                Err(e) => problems.push(format!("{} queue unreachable: {e}", kind.as_str())),
            }
        }
        SystemHealth {
            state_store: store_ok,
            queues,
            problems,
        }
    }

    async fn emit(&self, report: &HealthReport, now: u64) {
        let m = &self.metrics;
        m.gauge(
            "HealthStatus",
            &[("Scope", "overall")],
            report.status.level(),
        );
        let mut longest_open_min = 0.0f64;
        for c in &report.connectors {
            let level = match (c.ok, c.critical) {
                (true, _) => 0.0,
                (false, false) => 1.0,
                (false, true) => 2.0,
            };
            m.gauge(
                "HealthStatus",
                &[("Connector", c.connector.as_str())],
                level,
            );
            m.millis(
                "ProbeLatency",
                &[("Connector", c.connector.as_str())],
                c.latency_ms as f64,
            );
            let open = c.breaker == Phase::Open;
            m.gauge(
                "BreakerOpen",
                &[("Target", &c.target)],
                if open { 1.0 } else { 0.0 },
            );
            // An outage lasts from the breaker's first opening until it closes again,
            // through every re-opening and probe in between.
            if c.breaker != Phase::Closed {
                let connector = &self.connectors[&c.connector];
                for target in crate::delivery::targets(connector.as_ref()) {
                    if let Ok((s, _)) = self.breakers.load(target, connector.breaker()).await
                        && s.phase != Phase::Closed
                    {
                        let since = s.outage_since_ms.unwrap_or(s.since_ms);
                        longest_open_min =
                            longest_open_min.max(now.saturating_sub(since) as f64 / 60_000.0);
                    }
                }
            }
        }
        m.gauge("BreakersOpenLongest", &[], longest_open_min);
    }

    async fn alert(&self, report: &HealthReport, previous: Overall) {
        let Some(route) = &self.config.alert else {
            return;
        };
        let Some(connector) = self.connectors.get(route) else {
            return;
        };
        let alert = HealthAlert {
            status: report.status,
            previous,
            at: report.checked_at.clone(),
            problems: problems(report),
            headline: None,
        };
        match connector.alert(&alert).await {
            Ok(()) => {
                tracing::info!(
                    status = report.status.as_str(),
                    previous = previous.as_str(),
                    "health transition alerted"
                );
                self.metrics
                    .count("HealthAlerts", &[("Outcome", "sent")], 1);
            }
            Err(e) => {
                tracing::error!(error = %e, "health alert failed");
                self.metrics
                    .count("HealthAlerts", &[("Outcome", "failed")], 1);
            }
        }
    }

    /// The latest report, if a check ran.
    pub async fn latest(state: &dyn StateStore) -> Result<Option<HealthReport>, StoreError> {
        Ok(state
            .load(LATEST)
            .await?
            .and_then(|v| serde_json::from_str(&v.value).ok()))
    }
}

/// CRITICAL when a critical connector fails or the state store is unreachable; DEGRADED when
/// any other connector fails or a queue is backed up or holds dead letters.
pub fn overall(connectors: &[ConnectorHealth], system: &SystemHealth) -> Overall {
    if !system.state_store || connectors.iter().any(|c| !c.ok && c.critical) {
        Overall::Critical
    } else if connectors.iter().any(|c| !c.ok) || !system.problems.is_empty() {
        Overall::Degraded
    } else {
        Overall::Healthy
    }
}

fn problems(report: &HealthReport) -> Vec<String> {
    let mut out: Vec<String> = report
        .connectors
        .iter()
        .filter(|c| !c.ok)
        .map(|c| {
            format!(
                "{}{}: {}",
                c.connector,
                if c.critical { " (critical)" } else { "" },
                c.error.as_deref().unwrap_or("failing")
            )
        })
        .collect();
    out.extend(report.system.problems.iter().cloned());
    out
}

/// The worse of two breaker phases: OPEN, then HALF_OPEN, then CLOSED.
fn worse(a: Phase, b: Phase) -> Phase {
    let rank = |p: Phase| match p {
        Phase::Closed => 0,
        Phase::HalfOpen => 1,
        Phase::Open => 2,
    };
    if rank(b) > rank(a) { b } else { a }
}
