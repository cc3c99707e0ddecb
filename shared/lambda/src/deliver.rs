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
use testrelay_aws::SqsQueue;
use testrelay_domain::config::ConnectorKind;
use testrelay_domain::delivery::{DeliveryService, Disposition};
use testrelay_domain::ports::{DeliveryMessage, DeliveryQueue, QueueConsumer};
use testrelay_domain::retry::RetryPolicy;

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

    /// Handles a batch; the records to retry are listed in the response.
    pub async fn handle_batch(&self, event: SqsEvent) -> SqsBatchResponse {
        // A batch holds at most 10 records: run them concurrently.
        let results = futures::future::join_all(event.records.iter().map(|r| self.record(r))).await;
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
        async move { Ok::<_, BoxError>(d.handle_batch(event.payload).await) }
    }))
    .await
}
