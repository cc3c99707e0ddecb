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
