//! The connector port: one configured delivery target.

use super::ErrorClass;
use crate::config::ConnectorKind;
use crate::model::TestRun;
use async_trait::async_trait;
use std::time::Duration;

/// What a connector needs besides the run.
#[derive(Debug, Clone)]
pub struct DeliveryContext {
    /// Stable across retries of the same (run, connector): receivers dedupe on it.
    pub event_id: String,
    pub attempt: u32,
    pub now_ms: u64,
    /// Path of the run's status resource, e.g. `/v1/runs/01J...`.
    pub status_path: String,
}

/// What a successful delivery produced.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Delivered {
    pub status_code: Option<u16>,
    pub external_ref: Option<String>,
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
}

/// One configured target: a webhook endpoint, a Slack channel, a TestRail project...
#[async_trait]
pub trait Connector: Send + Sync {
    fn kind(&self) -> ConnectorKind;
    /// Delivers `run`. Must be safe to call again for the same `ctx.event_id` after any
    /// failure (receivers dedupe on the event id; multi-step connectors checkpoint).
    async fn deliver(
        &self,
        run: &TestRun,
        ctx: &DeliveryContext,
    ) -> Result<Delivered, DeliveryError>;
}
