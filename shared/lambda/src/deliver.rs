//! Delivery functions: an SQS batch of delivery messages for one connector kind.
//!
//! Each record is handled on its own and reported in `batchItemFailures` when it must come
//! back: one slow or failing run never fails its neighbours. A retry is scheduled by
//! changing the record's visibility timeout to the retry delay before reporting it failed;
//! an unreadable record is reported failed as it is, so SQS moves it to the dead-letter
//! queue after `maxReceiveCount`.

use crate::bootstrap::BoxError;
use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent, SqsMessage};
use lambda_runtime::{LambdaEvent, service_fn};
use std::sync::Arc;
use std::time::Duration;
use testrelay_aws::SqsQueue;
use testrelay_domain::config::ConnectorKind;
use testrelay_domain::delivery::retry::RetryPolicy;
use testrelay_domain::delivery::{DeliveryService, Disposition};
use testrelay_domain::ports::{Clock, DeliveryMessage, DeliveryQueue, QueueConsumer, SystemClock};

/// The time an invocation has left, from its deadline (epoch milliseconds, as Lambda's
/// Runtime API gives it). A deadline that is not in the future is no deadline we can keep
/// to (cargo lambda's emulator sends a duration, 600000): the function's timeout applies.
pub fn budget(deadline_ms: u64, now_ms: u64) -> Duration {
    if deadline_ms > now_ms {
        Duration::from_millis(deadline_ms - now_ms)
    } else {
        Duration::MAX
    }
}

/// Kept back from the invocation's deadline to answer: the batch response, and the
/// records stopped short listed in it.
pub const DEADLINE_MARGIN: Duration = Duration::from_secs(3);

pub struct Deliverer {
    pub kind: ConnectorKind,
    pub service: Arc<DeliveryService>,
    pub queue: Arc<SqsQueue>,
}

impl Deliverer {
    async fn record(&self, record: &SqsMessage) -> bool {
        let Some(message) = record
            .body
            .as_deref()
            .and_then(|b| serde_json::from_str::<DeliveryMessage>(b).ok())
        else {
            tracing::error!(message_id = ?record.message_id, "unreadable delivery message");
            return false;
        };
        if message.kind != self.kind {
            tracing::error!(run_id = %message.run_id, kind = message.kind.as_str(), "message for another connector kind");
            return false;
        }
        let receipt = record.receipt_handle.as_deref().unwrap_or_default();
        let delay = match self.service.handle(&message).await {
            Disposition::Done => return true,
            // A fresh delayed message replaces this one (which Lambda then deletes), so
            // scheduled retries do not count towards the DLQ's maxReceiveCount.
            Disposition::Requeue(delay) => match self.queue.enqueue_after(&message, delay).await {
                Ok(()) => return true,
                Err(e) => {
                    tracing::warn!(run_id = %message.run_id, error = %e, "could not requeue; retrying the message");
                    testrelay_domain::delivery::STORE_RETRY
                }
            },
            Disposition::RetryIn(delay) => delay,
            Disposition::Crashed => return false,
        };
        if let Err(e) = self.queue.retry_later(self.kind, receipt, delay).await {
            // It comes back after the queue's own visibility timeout instead.
            tracing::warn!(run_id = %message.run_id, error = %e, "could not delay the retry");
        }
        false
    }

    /// Handles a batch with no deadline (tests, tools); see [`Deliverer::handle_batch_within`].
    pub async fn handle_batch(&self, event: SqsEvent) -> SqsBatchResponse {
        self.handle_batch_within(event, Duration::MAX).await
    }

    /// Handles a batch within `budget` (the invocation's remaining time); the records to
    /// retry are listed in the response. A record still running (or still waiting for its
    /// rate-limit slot) when the budget less [`DEADLINE_MARGIN`] runs out is stopped, its
    /// call dropped, and listed for retry: it comes back after the queue's visibility
    /// timeout and resumes from its recorded steps. So no call outlives the invocation, and a
    /// timeout never makes every record of the batch count a receive towards the DLQ.
    pub async fn handle_batch_within(&self, event: SqsEvent, budget: Duration) -> SqsBatchResponse {
        let cut = budget.saturating_sub(DEADLINE_MARGIN);
        // A batch holds at most 10 records: run them concurrently.
        let results = futures::future::join_all(event.records.iter().map(|r| async move {
            match tokio::time::timeout(cut, self.record(r)).await {
                Ok(ok) => ok,
                Err(_) => {
                    tracing::warn!(message_id = ?r.message_id, "stopped at the invocation's deadline; it comes back");
                    false
                }
            }
        }))
        .await;
        let mut response = SqsBatchResponse::default();
        for (record, ok) in event.records.iter().zip(results) {
            if !ok {
                response.add_failure(record.message_id.clone().unwrap_or_default());
            }
        }
        response
    }
}

/// Cold start for the delivery function of `kind`.
pub async fn build(kind: ConnectorKind) -> Result<Deliverer, BoxError> {
    build_with(
        &crate::bootstrap::from_env().await?,
        kind,
        RetryPolicy::default(),
    )
    .await
}

/// The delivery function of `kind` on given adapters.
pub async fn build_with(
    app: &crate::bootstrap::AwsApp,
    kind: ConnectorKind,
    policy: RetryPolicy,
) -> Result<Deliverer, BoxError> {
    let connectors = app.connectors_of(kind).await?;
    Ok(Deliverer {
        kind,
        service: Arc::new(app.delivery_service(connectors, policy)),
        queue: Arc::new(app.queue.clone()),
    })
}

pub async fn main(kind: ConnectorKind) -> Result<(), BoxError> {
    crate::bootstrap::init_tracing();
    let deliverer = Arc::new(build(kind).await?);
    lambda_runtime::run(service_fn(move |event: LambdaEvent<SqsEvent>| {
        let d = deliverer.clone();
        async move {
            let budget = budget(event.context.deadline, SystemClock.now_ms());
            Ok::<_, BoxError>(d.handle_batch_within(event.payload, budget).await)
        }
    }))
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_budget_is_the_time_to_the_deadline_when_there_is_one() {
        let now = 1_795_341_600_000;
        assert_eq!(budget(now + 42_000, now), Duration::from_secs(42));
        assert_eq!(
            budget(600_000, now),
            Duration::MAX,
            "a duration, not a time"
        );
        assert_eq!(budget(now, now), Duration::MAX);
    }
}
