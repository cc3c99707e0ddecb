//! The connector port: one configured delivery target.

use super::ErrorClass;
use crate::config::ConnectorKind;
use crate::report::model::TestRun;
use async_trait::async_trait;
use std::time::Duration;

/// What a connector needs besides the run.
#[derive(Debug, Clone)]
pub struct DeliveryContext {
    /// Stable across retries of the same (run, connector): receivers dedupe on it.
    pub event_id: String,
    pub attempt: u32,
    /// 0, or how many times the delivery was redriven from the dead-letter store.
    pub generation: u32,
    pub now_ms: u64,
    /// The run's status resource: `<server.public_url>/v1/runs/01J...`, or only the path
    /// when no public URL is configured.
    pub status_url: String,
}

/// What a successful delivery produced.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Delivered {
    pub status_code: Option<u16>,
    pub external_ref: Option<String>,
    /// Every step was completed by an earlier attempt: nothing was called this time.
    pub resumed: bool,
}

/// Why a delivery attempt failed, classified so that the delivery service knows whether
/// to retry, slow down or give up.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{detail}")]
pub struct DeliveryError {
    pub class: ErrorClass,
    pub status_code: Option<u16>,
    /// Safe to store and show: never contains secrets or request bodies.
    pub detail: String,
    /// What the target asked for (`Retry-After`), if anything.
    pub retry_after: Option<Duration>,
    /// Which of the connector's [other targets](Connector::other_targets) answered, when
    /// it was not its main one: that target's breaker takes the failure.
    pub target: Option<String>,
}

impl DeliveryError {
    /// The same error, as the answer of `target` (one of the connector's other targets).
    pub fn from_target(self, target: &str) -> Self {
        DeliveryError {
            target: Some(target.to_string()),
            ..self
        }
    }
}

/// Why a delivery stopped short of an outcome.
#[derive(Debug, thiserror::Error)]
pub enum StepError {
    /// The target said no, or could not be reached: an attempt that failed.
    #[error(transparent)]
    Failed(#[from] DeliveryError),
    /// Another worker holds this step's lease (a duplicate message in flight): not an
    /// attempt; look again after `retry_in`.
    #[error("another worker is delivering this step")]
    Busy { retry_in: Duration },
    /// testrelay's own store failed: not an attempt; retry the message.
    #[error(transparent)]
    Store(#[from] super::StoreError),
    /// A crash injected by a fault-injection test: stop here, settle nothing.
    #[error("injected crash")]
    Crashed,
}

/// One configured target: a webhook endpoint, a Slack channel, a TestRail project...
#[async_trait]
pub trait Connector: Send + Sync {
    fn kind(&self) -> ConnectorKind;
    /// The circuit-breaker key: connectors that reach the same system share it
    /// (e.g. `webhook:https://hooks.example.com:443`).
    fn target(&self) -> &str;
    fn breaker(&self) -> &crate::delivery::breaker::BreakerConfig;
    /// Targets besides [`target`](Connector::target) this connector calls, each with its
    /// own breaker (same settings) and rate limit: Xray Cloud beside a Jira site. A
    /// delivery waits while any of its targets' breakers is open.
    fn other_targets(&self) -> Vec<&str> {
        Vec::new()
    }
    /// Delivers `run`. Every externally visible effect must run inside `steps.once(..)`, so
    /// that a retry after a crash at any point resumes instead of repeating it.
    async fn deliver(
        &self,
        run: &TestRun,
        ctx: &DeliveryContext,
        steps: &crate::delivery::steps::Steps,
    ) -> Result<Delivered, StepError>;
    /// Checks that the target is reachable and accepts our credentials, without side
    /// effects (TestRail `get_project`, Jira `myself`, Slack `auth.test`, ...).
    async fn probe(&self) -> Result<Probe, DeliveryError>;
    /// Sends a health alert (status transitions) through this connector, when it can carry
    /// one (Slack, Teams, PagerDuty, webhooks).
    async fn alert(&self, alert: &crate::health::HealthAlert) -> Result<(), DeliveryError> {
        let _ = alert;
        Err(DeliveryError {
            class: super::ErrorClass::Permanent,
            status_code: None,
            detail: format!("a {} connector cannot carry alerts", self.kind().as_str()),
            retry_after: None,
            target: None,
        })
    }
}

/// A successful health probe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Probe {
    /// What was checked, e.g. `GET /rest/api/2/myself`.
    pub check: String,
    /// Anything worth showing (the account or project the credentials reach).
    pub detail: Option<String>,
}
