//! The ports: every piece of I/O the services need, as small traits over domain types.
//! Each has an AWS adapter and an embedded adapter, held to the same contract by one test
//! suite (`tests/it/contract_*.rs`) run against both.

use crate::config::ConnectorKind;
use crate::ids::{ConnectorName, RunId};
use crate::model::{Format, RunMeta, Summary, TestRun};
use async_trait::async_trait;
use bytes::Bytes;
use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// A store or queue could not be reached or answered with an error. Retrying later may work;
/// the request or message that hit it must not be acknowledged.
#[derive(Debug, thiserror::Error)]
#[error("{backend}: {message}")]
pub struct StoreError {
    pub backend: &'static str,
    pub message: String,
}

impl StoreError {
    pub fn new(backend: &'static str, message: impl std::fmt::Display) -> Self {
        StoreError {
            backend,
            message: message.to_string(),
        }
    }
}

/// Opaque bytes by key: S3 in AWS, files in the data directory locally.
#[async_trait]
pub trait BlobStore: Send + Sync {
    /// Stores `bytes` under `key`, replacing what was there. Durable once it returns.
    async fn put(&self, key: &str, bytes: Bytes) -> Result<(), StoreError>;
    /// `None` when nothing is stored under `key`.
    async fn get(&self, key: &str) -> Result<Option<Bytes>, StoreError>;
}

/// Where a run's normalized report lives in the blob store.
pub fn run_blob_key(id: &RunId) -> String {
    format!("runs/{id}.json")
}

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
    /// Failed permanently or ran out of attempts; `last_error` says why.
    Failed,
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
}

/// A change to one delivery: its new state and, when an attempt finished, that attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryUpdate {
    pub state: DeliveryState,
    pub attempt: Option<Attempt>,
    pub next_attempt_at: Option<String>,
    pub last_error: Option<String>,
    pub external_ref: Option<String>,
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
    /// Fails if the run or the delivery does not exist.
    async fn update_delivery(
        &self,
        id: &RunId,
        connector: &ConnectorName,
        update: &DeliveryUpdate,
    ) -> Result<(), StoreError>;
}

/// What a claim on an idempotency key found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// The caller now holds the key until `lease_until`: do the work, then `complete`.
    Acquired,
    /// Another caller holds a live lease.
    InProgress { fingerprint: String },
    /// The work was done; here is what it produced.
    Completed {
        fingerprint: String,
        response: String,
    },
}

/// Idempotency records: a claim with a lease, completion with the result, expiry (TTL).
/// DynamoDB conditional writes in AWS, SQLite transactions locally.
#[async_trait]
pub trait IdempotencyStore: Send + Sync {
    /// Claims `key` for `fingerprint` (a hash of the request). Succeeds when no live record
    /// exists: none at all, one past `expires_at_ms`, or an in-progress one whose lease ran
    /// out (its holder crashed). Exactly one of any number of concurrent claimers acquires.
    async fn claim(
        &self,
        key: &str,
        fingerprint: &str,
        now_ms: u64,
        lease_until_ms: u64,
        expires_at_ms: u64,
    ) -> Result<Claim, StoreError>;
    /// Marks the key completed with `response`, kept until `expires_at_ms`.
    async fn complete(
        &self,
        key: &str,
        fingerprint: &str,
        response: &str,
        expires_at_ms: u64,
    ) -> Result<(), StoreError>;
    /// Drops an in-progress claim, so that a rejected request leaves nothing behind.
    async fn release(&self, key: &str) -> Result<(), StoreError>;
}

/// A document and the version it was read at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Versioned {
    pub version: u64,
    pub value: String,
}

/// Small shared documents with optimistic concurrency (breaker states; later health
/// records): DynamoDB conditional writes in AWS, SQLite transactions locally.
#[async_trait]
pub trait StateStore: Send + Sync {
    async fn load(&self, key: &str) -> Result<Option<Versioned>, StoreError>;
    /// Writes `value` as version `expected + 1`, or as version 1 when `expected` is `None`
    /// (the key must not exist). Returns false, writing nothing, when the stored version is
    /// not `expected`: someone else wrote first; reload and decide again.
    async fn save(&self, key: &str, value: &str, expected: Option<u64>)
    -> Result<bool, StoreError>;
}

/// A delivery message: a reference to the run and the connector, never the report itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeliveryMessage {
    pub run_id: RunId,
    pub connector: ConnectorName,
    pub kind: ConnectorKind,
}

/// Publishing delivery messages: one SQS queue per connector kind in AWS, one SQLite table
/// locally.
#[async_trait]
pub trait DeliveryQueue: Send + Sync {
    /// Enqueues all messages durably, or fails; on failure some may have been enqueued (the
    /// delivery side is idempotent per run and connector).
    async fn enqueue(&self, messages: &[DeliveryMessage]) -> Result<(), StoreError>;
}

/// A message taken from the queue, invisible to other consumers until its visibility
/// timeout passes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Received {
    pub message: DeliveryMessage,
    /// Proof of this receive; needed to ack or delay it.
    pub receipt: String,
    /// 1 on the first receive.
    pub receive_count: u32,
}

/// Consuming delivery messages: what the local worker loop does itself and what the Lambda
/// event source mapping does for the SQS queues.
#[async_trait]
pub trait QueueConsumer: Send + Sync {
    /// Up to `max` visible messages of `kind`, hidden from others for `visibility`.
    async fn receive(
        &self,
        kind: ConnectorKind,
        max: usize,
        visibility: Duration,
    ) -> Result<Vec<Received>, StoreError>;
    /// Removes a handled message.
    async fn ack(&self, kind: ConnectorKind, receipt: &str) -> Result<(), StoreError>;
    /// Makes the message visible again after `delay`.
    async fn retry_later(
        &self,
        kind: ConnectorKind,
        receipt: &str,
        delay: Duration,
    ) -> Result<(), StoreError>;
}

#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("secret {0:?} does not exist")]
    NotFound(String),
    #[error("secret store: {0}")]
    Unavailable(String),
}

/// Secret values by name: Secrets Manager in AWS, `<data_dir>/secrets/<name>` locally.
#[async_trait]
pub trait SecretStore: Send + Sync {
    async fn get(&self, name: &str) -> Result<SecretString, SecretError>;
}

/// The time, injected so that tests control it.
pub trait Clock: Send + Sync {
    fn now_ms(&self) -> u64;
}

#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0)
    }
}

/// A clock that moves only when told to.
#[derive(Debug, Default)]
pub struct ManualClock(std::sync::atomic::AtomicU64);

impl ManualClock {
    pub fn new(now_ms: u64) -> Self {
        ManualClock(std::sync::atomic::AtomicU64::new(now_ms))
    }
    pub fn advance(&self, by: Duration) {
        self.0
            .fetch_add(by.as_millis() as u64, std::sync::atomic::Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> u64 {
        self.0.load(std::sync::atomic::Ordering::SeqCst)
    }
}

/// RFC 3339 with milliseconds, UTC.
pub fn rfc3339(ms: u64) -> String {
    let t = time::OffsetDateTime::from_unix_timestamp_nanos(ms as i128 * 1_000_000)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    t.format(&time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
    ))
    .unwrap_or_default()
}

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

/// Reads a configured secret: environment and files directly, names through the store.
pub async fn resolve_secret(
    reference: &crate::config::SecretRef,
    store: &dyn SecretStore,
) -> Result<SecretString, SecretError> {
    use crate::config::SecretRef;
    match reference {
        SecretRef::Env(var) => std::env::var(var)
            .map(|v| SecretString::from(v.trim().to_string()))
            .map_err(|_| SecretError::NotFound(format!("env:{var}"))),
        SecretRef::File(path) => std::fs::read_to_string(path)
            .map(|v| SecretString::from(v.trim().to_string()))
            .map_err(|e| SecretError::NotFound(format!("file:{} ({})", path.display(), e.kind()))),
        SecretRef::Secret(name) => store.get(name).await,
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn rfc3339_is_utc_millis() {
        assert_eq!(
            super::rfc3339(1_700_000_000_123),
            "2023-11-14T22:13:20.123Z"
        );
    }
}
