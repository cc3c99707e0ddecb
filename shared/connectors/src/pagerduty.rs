//! PagerDuty Events API v2: a run with NEW failures (failing where its base passed) triggers
//! an alert under a stable `dedup_key` (`{project}:{branch}:{suite}` by default), so every
//! such run of the same line adds to one incident; the first run after it in which nothing
//! new or still failing is left (the base's failures fixed) resolves the incident. Failures
//! that were failing already, flaky ones and quarantined ones page no one.
//! `trigger_on = "failure"`: any failed run triggers, a passing one resolves (also what a run
//! without a classification gets).
//!
//! The dedup key makes a repeated trigger or resolve harmless. Which action was sent last
//! per key is kept in the state store: a green run sends a resolve only when something is
//! open, and a run older than the last one acted on (out-of-order delivery) sends nothing.

use crate::http::json;
use crate::{Base, Env};
use async_trait::async_trait;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::sync::Arc;
use testrelay_domain::config::{ConnectorConfig, PagerDutyConfig, TriggerOn};
use testrelay_domain::delivery::steps::Steps;
use testrelay_domain::health::{HealthAlert, Overall};
use testrelay_domain::ids::ConnectorName;
use testrelay_domain::ports::{
    Connector, Delivered, DeliveryContext, DeliveryError, Probe, StateStore, StepError,
};
use testrelay_domain::report::model::{RunOutcome, TestRun};
use testrelay_domain::report::render;

/// PagerDuty's limits: summary 1024 characters, dedup_key 255.
pub const MAX_SUMMARY: usize = 1024;
pub const MAX_DEDUP: usize = 255;
/// Failures listed in `custom_details`.
pub const MAX_LISTED: usize = 20;

pub struct PagerDuty {
    base: Base,
    name: ConnectorName,
    routing_key: SecretString,
    url: String,
    config: PagerDutyConfig,
    state: Arc<dyn StateStore>,
}

/// The last action sent for a dedup key.
#[derive(Debug, Serialize, Deserialize)]
struct Last {
    action: String,
    received_at: String,
    run_id: String,
}

#[derive(Deserialize)]
struct Accepted {
    #[serde(default)]
    dedup_key: Option<String>,
}

impl PagerDuty {
    pub fn new(
        name: &ConnectorName,
        cfg: &ConnectorConfig,
        c: &PagerDutyConfig,
        routing_key: SecretString,
        env: &Env,
    ) -> Result<Self, String> {
        use sha2::Digest;
        // PagerDuty limits per routing key; the key itself never appears in a target name.
        let key_id = hex::encode(&sha2::Sha256::digest(routing_key.expose_secret())[..6]);
        Ok(PagerDuty {
            base: Base::new(env.http.clone(), format!("pagerduty:{key_id}"), cfg),
            name: name.clone(),
            routing_key,
            url: format!("{}/v2/enqueue", c.url.trim_end_matches('/')),
            config: c.clone(),
            state: env.state.clone(),
        })
    }

    pub fn dedup_key(&self, run: &TestRun) -> String {
        let key = render::fill(
            &self.config.dedup_key,
            run,
            &[("suite", &self.config.suite)],
        );
        render::cut(&key, MAX_DEDUP)
    }

    fn state_key(&self, dedup: &str) -> String {
        format!("pagerduty/{}/{dedup}", self.name)
    }

    async fn send(&self, event: &Value) -> Result<String, DeliveryError> {
        let request = self.base.http.client().post(&self.url).json(event);
        let answer: Accepted = json(self.base.send(request).await?, "PagerDuty").await?;
        Ok(answer.dedup_key.unwrap_or_default())
    }

    /// Records the action sent, unless a newer run's is already recorded.
    async fn remember(&self, dedup: &str, run: &TestRun, action: &str) -> Result<(), StepError> {
        let key = self.state_key(dedup);
        for _ in 0..8 {
            let current = self.state.load(&key).await?;
            if let Some(c) = &current
                && let Ok(last) = serde_json::from_str::<Last>(&c.value)
                && last.received_at > run.received_at
            {
                return Ok(());
            }
            let value = serde_json::to_string(&Last {
                action: action.into(),
                received_at: run.received_at.clone(),
                run_id: run.run_id.to_string(),
            })
            .expect("serialisable");
            if self
                .state
                .save(&key, &value, current.map(|c| c.version))
                .await?
            {
                return Ok(());
            }
        }
        Ok(())
    }
}

#[async_trait]
impl Connector for PagerDuty {
    crate::basics!(Pagerduty);

    async fn deliver(
        &self,
        run: &TestRun,
        ctx: &DeliveryContext,
        steps: &Steps,
    ) -> Result<Delivered, StepError> {
        let dedup = self.dedup_key(run);
        let failed = run.summary.outcome() == RunOutcome::Failed;
        let (trigger, clear, nothing_new) = match (&run.changes, self.config.trigger_on) {
            (Some(c), TriggerOn::NewFailures) => (
                c.counts.new > 0,
                c.counts.new == 0 && c.counts.still_failing == 0,
                "no new failures",
            ),
            _ => (failed, !failed, "nothing open to resolve"),
        };
        let last = self
            .state
            .load(&self.state_key(&dedup))
            .await?
            .and_then(|v| serde_json::from_str::<Last>(&v.value).ok());
        let newer_seen = last
            .as_ref()
            .is_some_and(|l| l.received_at > run.received_at && l.run_id != run.run_id.to_string());
        let open = last.as_ref().is_some_and(|l| l.action == "trigger");
        let action = match (trigger, newer_seen) {
            (_, true) => None,
            (true, false) => Some("trigger"),
            (false, false) if clear && self.config.resolve && open => Some("resolve"),
            (false, false) => None,
        };
        let Some(action) = action else {
            let why = if newer_seen {
                "a newer run was already sent for this dedup key"
            } else if !clear && open {
                "still failing; the incident stays open"
            } else if failed {
                nothing_new
            } else {
                "nothing open to resolve"
            };
            return Ok(Delivered {
                status_code: None,
                external_ref: Some(format!("pagerduty:{dedup} (no event: {why})")),
                resumed: false,
            });
        };
        let event = event(
            run,
            ctx,
            &self.config,
            self.routing_key.expose_secret(),
            &dedup,
            action,
        );
        let step = steps.once(action, |_| self.send(&event)).await?;
        self.remember(&dedup, run, action).await?;
        Ok(Delivered {
            status_code: Some(202),
            external_ref: Some(format!("pagerduty:{dedup} ({action})")),
            resumed: step.resumed,
        })
    }

    /// DEGRADED and CRITICAL trigger (warning / critical) under one dedup key, HEALTHY
    /// resolves it.
    async fn alert(&self, alert: &HealthAlert) -> Result<(), DeliveryError> {
        let dedup = format!("testrelay-health:{}", self.name);
        let mut event = json!({
            "routing_key": self.routing_key.expose_secret(),
            "dedup_key": dedup,
        });
        match alert.status {
            Overall::Healthy => event["event_action"] = json!("resolve"),
            status => {
                event["event_action"] = json!("trigger");
                event["payload"] = json!({
                    "summary": render::cut(&alert.title(), MAX_SUMMARY),
                    "source": "testrelay",
                    "severity": if status == Overall::Critical { "critical" } else { "warning" },
                    "timestamp": alert.at,
                    "component": "testrelay",
                    "class": "health",
                    "custom_details": { "problems": alert.problems },
                });
            }
        }
        self.send(&event).await.map(|_| ())
    }

    /// The Events API has no read-only call: this checks that it answers at all (any HTTP
    /// answer below 500 to a GET of the enqueue URL), not the routing key.
    async fn probe(&self) -> Result<Probe, DeliveryError> {
        crate::http::unlimited(async {
            let request = self.base.http.client().get(&self.url);
            match self.base.send(request).await {
                Ok(_) => {}
                Err(e) if e.status_code.is_some_and(|c| c < 500 && c != 429) => {}
                Err(e) => return Err(e),
            }
            Ok(Probe {
                check: "GET /v2/enqueue (reachability; the routing key cannot be checked)".into(),
                detail: None,
            })
        })
        .await
    }
}

/// The Events API v2 body.
pub fn event(
    run: &TestRun,
    ctx: &DeliveryContext,
    c: &PagerDutyConfig,
    routing_key: &str,
    dedup: &str,
    action: &str,
) -> Value {
    let mut e = json!({
        "routing_key": routing_key,
        "event_action": action,
        "dedup_key": dedup,
    });
    if action == "resolve" {
        return e;
    }
    let severity = if run.summary.errored > 0 {
        &c.severity.errored
    } else {
        &c.severity.failed
    };
    let failures: Vec<Value> = render::classified_failures(run)
        .into_iter()
        .take(MAX_LISTED)
        .map(|(suite, case, class)| {
            let mut f = json!({"test": render::cut(&render::title(suite, case), 300),
                               "reason": render::reason(case, 500)});
            if let Some(class) = class {
                f["class"] = json!(class);
            }
            f
        })
        .collect();
    let total = render::failure_count(run);
    let lead = render::changes_line(run).unwrap_or_else(|| render::headline(run));
    let summary = format!("{}: {}", render::context(run), lead);
    e["payload"] = json!({
        "summary": render::cut(&summary, MAX_SUMMARY),
        "source": run.meta.build_url.clone().unwrap_or_else(|| format!("testrelay/{}", run.meta.project)),
        "severity": severity,
        "timestamp": run.received_at,
        "component": run.meta.project,
        "group": run.meta.branch.clone().unwrap_or_else(|| "-".into()),
        "class": "tests",
        "custom_details": {
            "counts": run.summary,
            "commit": run.meta.commit,
            "environment": run.meta.environment,
            "failures": failures,
            "failures_not_listed": total.saturating_sub(MAX_LISTED as u64),
            "run_status": ctx.status_url,
        }
    });
    if let Some(c) = &run.changes {
        e["payload"]["custom_details"]["changes"] = json!({"counts": c.counts, "base": c.base});
    }
    let mut links = Vec::new();
    if ctx.status_url.starts_with("http") {
        links.push(json!({"href": ctx.status_url, "text": "Run status"}));
    }
    if let Some(b) = run
        .meta
        .build_url
        .as_deref()
        .filter(|b| b.starts_with("http"))
    {
        links.push(json!({"href": b, "text": "Build"}));
    }
    e["links"] = json!(links);
    e["client"] = json!("testrelay");
    e
}
