//! The local worker loop: pulls delivery messages of one connector kind from a
//! [`QueueConsumer`] and runs them through the [`DeliveryService`], up to `concurrency` at a
//! time. On Lambda the SQS event source mapping plays this role and calls the same service.

use crate::config::ConnectorKind;
use crate::delivery::{DeliveryService, Disposition};
use crate::ports::{DeliveryQueue, QueueConsumer, Received};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{Notify, Semaphore, watch};

/// A message is hidden from other consumers this long while it is being delivered; longer
/// than any connector's timeout, so a live delivery is never handed out twice.
pub const VISIBILITY: Duration = Duration::from_secs(120);
/// With nothing to do, look again at least this often (for retries coming due).
pub const IDLE_POLL: Duration = Duration::from_millis(500);

#[derive(Clone)]
pub struct Worker {
    pub kind: ConnectorKind,
    pub consumer: Arc<dyn QueueConsumer>,
    /// Where scheduled retries and deferrals are put back.
    pub queue: Arc<dyn DeliveryQueue>,
    pub service: Arc<DeliveryService>,
    pub concurrency: usize,
}

impl Worker {
    async fn settle(&self, received: Received) {
        let disposition = self.service.handle(&received.message).await;
        let result = match disposition {
            Disposition::Done => self.consumer.ack(self.kind, &received.receipt).await,
            Disposition::Requeue(delay) => {
                match self.queue.enqueue_after(&received.message, delay).await {
                    Ok(()) => self.consumer.ack(self.kind, &received.receipt).await,
                    Err(e) => Err(e),
                }
            }
            Disposition::RetryIn(delay) => {
                self.consumer
                    .retry_later(self.kind, &received.receipt, delay)
                    .await
            }
            // Settle nothing: the visibility timeout brings the message back.
            Disposition::Crashed => Ok(()),
        };
        if let Err(e) = result {
            // The message reappears after its visibility timeout; delivery is idempotent.
            tracing::warn!(error = %e, run_id = %received.message.run_id, "could not settle a message");
        }
    }

    /// Handles every message visible now, and those that become visible meanwhile, then
    /// returns how many it handled. Tests use it instead of sleeping.
    pub async fn drain(&self) -> usize {
        let mut handled = 0;
        loop {
            let batch = match self
                .consumer
                .receive(self.kind, self.concurrency, VISIBILITY)
                .await
            {
                Ok(b) => b,
                Err(e) => {
                    tracing::warn!(error = %e, "queue receive failed");
                    return handled;
                }
            };
            if batch.is_empty() {
                return handled;
            }
            handled += batch.len();
            let mut set = tokio::task::JoinSet::new();
            for r in batch {
                let w = self.clone();
                set.spawn(async move { w.settle(r).await });
            }
            while set.join_next().await.is_some() {}
        }
    }

    /// Runs until `shutdown` turns true, keeping up to `concurrency` deliveries in flight.
    /// `wake` is notified by the local queue on every enqueue so that a new run is picked up
    /// at once rather than at the next poll.
    pub async fn run(self, wake: Arc<Notify>, mut shutdown: watch::Receiver<bool>) {
        let permits = Arc::new(Semaphore::new(self.concurrency));
        loop {
            if *shutdown.borrow() {
                break;
            }
            let free = permits.available_permits();
            let batch = if free == 0 {
                Vec::new()
            } else {
                match self.consumer.receive(self.kind, free, VISIBILITY).await {
                    Ok(b) => b,
                    Err(e) => {
                        tracing::warn!(error = %e, "queue receive failed");
                        Vec::new()
                    }
                }
            };
            if batch.is_empty() {
                tokio::select! {
                    _ = wake.notified() => {}
                    _ = tokio::time::sleep(IDLE_POLL) => {}
                    _ = shutdown.changed() => {}
                }
                continue;
            }
            for r in batch {
                let permit = permits.clone().acquire_owned().await.expect("never closed");
                let w = self.clone();
                let done = wake.clone();
                tokio::spawn(async move {
                    w.settle(r).await;
                    drop(permit);
                    // A freed slot may let a waiting message in.
                    done.notify_one();
                });
            }
        }
        // Let in-flight deliveries finish before returning.
        let _ = permits.acquire_many(self.concurrency as u32).await;
    }
}
