//! Run records and the delivery state they carry.

use super::StoreError;
use crate::config::ConnectorKind;
use crate::ids::{ConnectorName, RunId};
use crate::report::model::{Format, RunMeta, Summary};
use async_trait::async_trait;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryState {
    /// Enqueued, not yet picked up.
    Queued,
    /// A worker is delivering it now.
    Delivering,
    /// The connector accepted it.
    Delivered,
    /// The last attempt failed transiently; another is scheduled at `next_attempt_at`.
    Retrying,
    /// The target's circuit breaker is open: waiting until `next_attempt_at` without using
    /// up an attempt.
    Deferred,
    /// Failed permanently or ran out of attempts; `last_error` says why. The message is in
    /// the dead-letter store and can be redriven.
    DeadLettered,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorClass {
    /// Timeouts, connection errors, 5xx, 408: the target's fault, worth retrying.
    Transient,
    /// 429: the target asks us to slow down.
    Throttled,
    /// Other 4xx, bad configuration: retrying cannot help.
    Permanent,
}

/// One try at delivering a run to one connector.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attempt {
    pub number: u32,
    /// RFC 3339.
    pub started_at: String,
    pub duration_ms: u64,
    pub ok: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_code: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_class: Option<ErrorClass>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The delivery of one run to one connector, as `GET /v1/runs/{id}` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeliveryRecord {
    pub connector: ConnectorName,
    pub kind: ConnectorKind,
    pub state: DeliveryState,
    #[serde(default)]
    pub attempts: Vec<Attempt>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_attempt_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// What the connector created (a message id, an issue key, ...), once it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_ref: Option<String>,
    /// How many times it was redriven from the dead-letter store.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub generation: u32,
    /// Attempts made before the last redrive (the retry schedule restarts after it).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub redrive_from: u32,
    /// A fallback notice: the connector whose delivery of this run failed, which this
    /// delivery tells about through [`DeliveryRecord::via`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notice_for: Option<ConnectorName>,
    /// The connector a fallback notice goes through.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub via: Option<ConnectorName>,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

impl DeliveryRecord {
    /// A delivery that has not been picked up yet.
    pub fn queued(connector: ConnectorName, kind: ConnectorKind) -> Self {
        DeliveryRecord {
            connector,
            kind,
            state: DeliveryState::Queued,
            attempts: Vec::new(),
            next_attempt_at: None,
            last_error: None,
            external_ref: None,
            generation: 0,
            redrive_from: 0,
            notice_for: None,
            via: None,
        }
    }
}

/// The record of an accepted run: metadata, counts and per-connector delivery state. The
/// full normalized report lives in the blob store under [`run_blob_key`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunRecord {
    pub run_id: RunId,
    pub received_at: String,
    pub meta: RunMeta,
    pub format: Format,
    pub summary: Summary,
    pub deliveries: Vec<DeliveryRecord>,
    /// Connectors of the project this run was not for, and why (routing rules).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub skipped: Vec<Skipped>,
    /// What changed against the base (new failures first, at most
    /// [`crate::history::RECORD_LIMIT`] tests listed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub changes: Option<crate::history::Changes>,
}

/// A connector a run was not enqueued for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Skipped {
    pub connector: ConnectorName,
    pub reason: String,
}

/// A change to one delivery: its new state and, when an attempt finished, that attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryUpdate {
    pub state: DeliveryState,
    pub attempt: Option<Attempt>,
    pub next_attempt_at: Option<String>,
    pub last_error: Option<String>,
    pub external_ref: Option<String>,
    /// Set when this update starts a redriven generation.
    pub redrive: Option<Redrive>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Redrive {
    pub generation: u32,
    pub redrive_from: u32,
}

impl DeliveryUpdate {
    /// An update to `state` that changes nothing else but what `state` implies.
    pub fn to(state: DeliveryState) -> Self {
        DeliveryUpdate {
            state,
            attempt: None,
            next_attempt_at: None,
            last_error: None,
            external_ref: None,
            redrive: None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Created {
    Created,
    /// A run with this id exists already; nothing was written.
    AlreadyExists,
}

/// Run records: DynamoDB in AWS, SQLite locally.
#[async_trait]
pub trait RunStore: Send + Sync {
    /// Writes the run and its deliveries only if no run with this id exists (a conditional
    /// write), so a retried request can never overwrite delivery progress.
    async fn create_run(&self, run: &RunRecord) -> Result<Created, StoreError>;
    /// Reads the run with all its deliveries (a strongly consistent read).
    async fn get_run(&self, id: &RunId) -> Result<Option<RunRecord>, StoreError>;
    /// Sets the state of one delivery and appends `update.attempt` to its attempts. Fields of
    /// the update that are `None` are cleared, except `external_ref`, which is kept once set.
    /// `Delivered` is final: an update of a delivered delivery is ignored (a late duplicate
    /// can never undo a delivery). `DeadLettered` is left only by an update that carries a
    /// `redrive` (a stale message cannot revive it). Fails if the run or the delivery does
    /// not exist.
    async fn update_delivery(
        &self,
        id: &RunId,
        connector: &ConnectorName,
        update: &DeliveryUpdate,
    ) -> Result<(), StoreError>;
    /// Adds `delivery` to run `id` (after its others) unless the run has a delivery of that
    /// connector already (a conditional write): true when this call added it.
    async fn add_delivery(&self, id: &RunId, delivery: &DeliveryRecord)
    -> Result<bool, StoreError>;
}
