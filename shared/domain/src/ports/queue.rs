//! Delivery messages: publishing, consuming, dead letters.

use super::StoreError;
use crate::config::ConnectorKind;
use crate::ids::{ConnectorName, RunId};
use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// A delivery message: a reference to the run and the connector, never the report itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeliveryMessage {
    pub run_id: RunId,
    pub connector: ConnectorName,
    pub kind: ConnectorKind,
    /// 0 for the first delivery, +1 per redrive from the dead-letter store.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub generation: u32,
    /// Not to be handled before this time (Unix ms): a delay longer than the queue can hold
    /// (SQS: 15 minutes) is served in several hops.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_before_ms: Option<u64>,
    /// When the run was accepted (Unix ms), kept through retries, deferrals and redrives:
    /// how long a delivery has been waiting (the `UndeliveredAge` metric). Absent in
    /// messages written before it existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accepted_ms: Option<u64>,
    /// A fallback notice's: the connector it goes through (`connector` names the notice's
    /// delivery in the run).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub via: Option<ConnectorName>,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

impl DeliveryMessage {
    pub fn new(run_id: RunId, connector: ConnectorName, kind: ConnectorKind) -> Self {
        DeliveryMessage {
            run_id,
            connector,
            kind,
            generation: 0,
            not_before_ms: None,
            accepted_ms: None,
            via: None,
        }
    }

    /// The message of a run accepted at `accepted_ms`.
    pub fn accepted_at(mut self, accepted_ms: u64) -> Self {
        self.accepted_ms = Some(accepted_ms);
        self
    }
}

/// Publishing delivery messages: one SQS queue per connector kind in AWS, one SQLite table
/// locally.
#[async_trait]
pub trait DeliveryQueue: Send + Sync {
    /// Enqueues all messages durably, or fails; on failure some may have been enqueued (the
    /// delivery side is idempotent per run and connector).
    async fn enqueue(&self, messages: &[DeliveryMessage]) -> Result<(), StoreError>;
    /// Enqueues one message that becomes visible after `delay`. A delay longer than the
    /// queue can hold (SQS: 15 minutes) is served in hops: the message carries
    /// `not_before_ms` and is put back until then. Used for scheduled retries and breaker
    /// deferrals, which must not count as receives (they would push good messages to the
    /// dead-letter queue).
    async fn enqueue_after(
        &self,
        message: &DeliveryMessage,
        delay: Duration,
    ) -> Result<(), StoreError>;
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
    /// Makes the message visible again after `delay` (it counts as a receive).
    async fn retry_later(
        &self,
        kind: ConnectorKind,
        receipt: &str,
        delay: Duration,
    ) -> Result<(), StoreError>;
}

/// A delivery that failed for good, with why: what an operator reads before redriving it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeadLetter {
    pub message: DeliveryMessage,
    pub reason: String,
    pub attempts: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_status: Option<u16>,
    /// RFC 3339.
    pub at: String,
}

/// A dead letter as listed, with the handle that removes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Listed {
    pub handle: String,
    #[serde(flatten)]
    pub letter: DeadLetter,
}

/// Dead letters: the SQS dead-letter queue of each delivery queue in AWS (which also
/// receives what SQS moves there after `maxReceiveCount`), a table locally.
#[async_trait]
pub trait DeadLetterStore: Send + Sync {
    async fn put(&self, letter: &DeadLetter) -> Result<(), StoreError>;
    /// Up to `max` dead letters of `kind`, without removing them. The handles are valid
    /// for [`DeadLetterStore::remove`] for a few minutes.
    async fn list(&self, kind: ConnectorKind, max: usize) -> Result<Vec<Listed>, StoreError>;
    async fn remove(&self, kind: ConnectorKind, handle: &str) -> Result<(), StoreError>;
}

/// How a connector kind's queue is doing, for health checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct QueueDepth {
    /// Messages waiting (visible or delayed) or in flight.
    pub depth: u64,
    /// Age of the oldest waiting message, where the queue can tell (locally; not SQS).
    pub oldest_age_ms: Option<u64>,
    /// Messages in the dead-letter store.
    pub dead_letters: u64,
}

/// Queue statistics: SQS queue attributes in AWS, counts locally.
#[async_trait]
pub trait QueueStats: Send + Sync {
    async fn stats(&self, kind: ConnectorKind, now_ms: u64) -> Result<QueueDepth, StoreError>;
}
