//! The delivery service: what happens to one delivery message, the same on Lambda (an SQS
//! record) and locally (a row of the embedded queue).
//!
//! Per message: load the run record; skip deliveries already finished (a duplicate message);
//! mark it delivering; call the connector; record the attempt. A transient failure schedules
//! a retry ([`RetryPolicy`]); a permanent one, or running out of retries, marks it failed
//! with the reason. The circuit breaker and dead-letter store slot in here later.

use crate::ids::ConnectorName;
use crate::model::TestRun;
use crate::ports::{
    Attempt, BlobStore, Clock, Connector, DeliveryContext, DeliveryError, DeliveryMessage,
    DeliveryState, DeliveryUpdate, ErrorClass, RunStore, StoreError, rfc3339, run_blob_key,
};
use crate::retry::RetryPolicy;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

/// What the queue should do with the message once the service is done with it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disposition {
    /// Delete it: delivered, failed for good, or nothing left to do.
    Done,
    /// Keep it and make it visible again after this delay.
    RetryIn(Duration),
}

/// When testrelay's own stores fail, the message is simply tried again this much later.
pub const STORE_RETRY: Duration = Duration::from_secs(30);

pub type Connectors = HashMap<ConnectorName, Arc<dyn Connector>>;

pub struct DeliveryService {
    runs: Arc<dyn RunStore>,
    blobs: Arc<dyn BlobStore>,
    clock: Arc<dyn Clock>,
    connectors: Connectors,
    policy: RetryPolicy,
}

impl DeliveryService {
    pub fn new(
        runs: Arc<dyn RunStore>,
        blobs: Arc<dyn BlobStore>,
        clock: Arc<dyn Clock>,
        connectors: Connectors,
        policy: RetryPolicy,
    ) -> Self {
        DeliveryService {
            runs,
            blobs,
            clock,
            connectors,
            policy,
        }
    }

    /// Handles one message; never panics on bad input, and never loses a message: anything
    /// unexpected from testrelay's own stores means "try again later".
    pub async fn handle(&self, msg: &DeliveryMessage) -> Disposition {
        match self.try_handle(msg).await {
            Ok(d) => d,
            Err(e) => {
                tracing::warn!(run_id = %msg.run_id, connector = %msg.connector, error = %e, "store error; will retry the message");
                Disposition::RetryIn(STORE_RETRY)
            }
        }
    }

    async fn try_handle(&self, msg: &DeliveryMessage) -> Result<Disposition, StoreError> {
        let Some(record) = self.runs.get_run(&msg.run_id).await? else {
            tracing::error!(run_id = %msg.run_id, "message for an unknown run; dropping it");
            return Ok(Disposition::Done);
        };
        let Some(delivery) = record
            .deliveries
            .iter()
            .find(|d| d.connector == msg.connector)
        else {
            tracing::error!(run_id = %msg.run_id, connector = %msg.connector, "message for a delivery the run does not have; dropping it");
            return Ok(Disposition::Done);
        };
        if matches!(
            delivery.state,
            DeliveryState::Delivered | DeliveryState::Failed
        ) {
            tracing::info!(run_id = %msg.run_id, connector = %msg.connector, state = ?delivery.state, "duplicate message; already finished");
            return Ok(Disposition::Done);
        }
        let attempt = delivery.attempts.len() as u32 + 1;
        let started = self.clock.now_ms();
        let Some(connector) = self.connectors.get(&msg.connector) else {
            let error = DeliveryError {
                class: ErrorClass::Permanent,
                status_code: None,
                detail: format!(
                    "connector {:?} is not configured here",
                    msg.connector.as_str()
                ),
                retry_after: None,
            };
            return self.finish(msg, attempt, started, Err(error)).await;
        };
        self.runs
            .update_delivery(
                &msg.run_id,
                &msg.connector,
                &DeliveryUpdate {
                    state: DeliveryState::Delivering,
                    attempt: None,
                    next_attempt_at: None,
                    last_error: delivery.last_error.clone(),
                    external_ref: None,
                },
            )
            .await?;
        let run = match self.blobs.get(&run_blob_key(&msg.run_id)).await? {
            Some(bytes) => serde_json::from_slice::<TestRun>(&bytes).map_err(|e| {
                StoreError::new("blob store", format!("stored run unreadable: {e}"))
            })?,
            None => {
                let error = DeliveryError {
                    class: ErrorClass::Permanent,
                    status_code: None,
                    detail: "the stored report is missing".into(),
                    retry_after: None,
                };
                return self.finish(msg, attempt, started, Err(error)).await;
            }
        };
        let ctx = DeliveryContext {
            event_id: format!("evt_{}_{}", msg.run_id, msg.connector),
            attempt,
            now_ms: started,
            status_path: format!("/v1/runs/{}", msg.run_id),
        };
        let result = connector.deliver(&run, &ctx).await;
        self.finish(msg, attempt, started, result).await
    }

    async fn finish(
        &self,
        msg: &DeliveryMessage,
        number: u32,
        started: u64,
        result: Result<crate::ports::Delivered, DeliveryError>,
    ) -> Result<Disposition, StoreError> {
        let now = self.clock.now_ms();
        let mut attempt = Attempt {
            number,
            started_at: rfc3339(started),
            duration_ms: now.saturating_sub(started),
            ok: result.is_ok(),
            status_code: None,
            error_class: None,
            error: None,
        };
        let (update, disposition) = match result {
            Ok(delivered) => {
                attempt.status_code = delivered.status_code;
                tracing::info!(run_id = %msg.run_id, connector = %msg.connector, attempt = number, "delivered");
                (
                    DeliveryUpdate {
                        state: DeliveryState::Delivered,
                        attempt: Some(attempt),
                        next_attempt_at: None,
                        last_error: None,
                        external_ref: delivered.external_ref,
                    },
                    Disposition::Done,
                )
            }
            Err(e) => {
                attempt.status_code = e.status_code;
                attempt.error_class = Some(e.class);
                attempt.error = Some(e.detail.clone());
                let delay = match e.class {
                    ErrorClass::Permanent => None,
                    ErrorClass::Transient | ErrorClass::Throttled => {
                        self.policy
                            .delay_after(number, e.retry_after, rand::random::<f64>())
                    }
                };
                match delay {
                    Some(delay) => {
                        tracing::warn!(run_id = %msg.run_id, connector = %msg.connector, attempt = number, error = %e.detail, retry_in_ms = delay.as_millis() as u64, "delivery failed; will retry");
                        (
                            DeliveryUpdate {
                                state: DeliveryState::Retrying,
                                attempt: Some(attempt),
                                next_attempt_at: Some(rfc3339(now + delay.as_millis() as u64)),
                                last_error: Some(e.detail),
                                external_ref: None,
                            },
                            Disposition::RetryIn(delay),
                        )
                    }
                    None => {
                        let reason = if e.class == ErrorClass::Permanent {
                            e.detail
                        } else {
                            format!("gave up after {number} attempts: {}", e.detail)
                        };
                        tracing::error!(run_id = %msg.run_id, connector = %msg.connector, attempt = number, error = %reason, "delivery failed for good");
                        (
                            DeliveryUpdate {
                                state: DeliveryState::Failed,
                                attempt: Some(attempt),
                                next_attempt_at: None,
                                last_error: Some(reason),
                                external_ref: None,
                            },
                            Disposition::Done,
                        )
                    }
                }
            }
        };
        self.runs
            .update_delivery(&msg.run_id, &msg.connector, &update)
            .await?;
        Ok(disposition)
    }
}
