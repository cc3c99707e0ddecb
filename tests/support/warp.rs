//! SQS with its timers on a manual clock. Messages really go through the SQS emulator
//! (send, receive, delete, change visibility), but delays and visibility timeouts run on
//! the test's [`ManualClock`]: a delayed send is held until the clock reaches it, and a
//! received message that is not settled by its deadline is made visible again. So a
//! fault-injection test covers hours of retries and crash recoveries without waiting.

use async_trait::async_trait;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use testrelay_aws::SqsQueue;
use testrelay_domain::config::ConnectorKind;
use testrelay_domain::ports::{
    Clock, DeliveryMessage, DeliveryQueue, ManualClock, QueueConsumer, Received, StoreError,
};

/// How long a message received through the warp stays hidden in SQS in real time: longer
/// than any test; the manual clock decides when it comes back.
const REAL_VISIBILITY: Duration = Duration::from_secs(600);

#[derive(Default)]
struct Timers {
    /// Delayed sends not yet in SQS: (due, message).
    pending: Vec<(u64, DeliveryMessage)>,
    /// Received, unsettled messages: receipt -> (kind, visible again at).
    in_flight: HashMap<String, (ConnectorKind, u64)>,
}

pub struct WarpQueue {
    inner: SqsQueue,
    clock: Arc<ManualClock>,
    timers: Mutex<Timers>,
}

impl WarpQueue {
    pub fn new(inner: SqsQueue, clock: Arc<ManualClock>) -> Self {
        WarpQueue {
            inner,
            clock,
            timers: Mutex::default(),
        }
    }

    /// The next time something becomes visible, if anything is waiting.
    pub fn next_due(&self) -> Option<u64> {
        let t = self.timers.lock().unwrap();
        let pending = t.pending.iter().map(|(due, _)| *due);
        let flying = t.in_flight.values().map(|(_, due)| *due);
        pending.chain(flying).min()
    }

    /// Sends what is due at the clock's time and makes expired receives visible again.
    pub async fn release_due(&self) -> Result<(), StoreError> {
        let now = self.clock.now_ms();
        let (sends, expired) = {
            let mut t = self.timers.lock().unwrap();
            let (due, later): (Vec<_>, Vec<_>) = t.pending.drain(..).partition(|(d, _)| *d <= now);
            t.pending = later;
            let expired: Vec<(String, ConnectorKind)> = t
                .in_flight
                .iter()
                .filter(|(_, (_, d))| *d <= now)
                .map(|(r, (k, _))| (r.clone(), *k))
                .collect();
            for (r, _) in &expired {
                t.in_flight.remove(r);
            }
            (due, expired)
        };
        for (_, m) in sends {
            self.inner.enqueue(&[m]).await?;
        }
        for (receipt, kind) in expired {
            self.inner
                .retry_later(kind, &receipt, Duration::ZERO)
                .await?;
        }
        Ok(())
    }
}

#[async_trait]
impl DeliveryQueue for WarpQueue {
    async fn enqueue(&self, messages: &[DeliveryMessage]) -> Result<(), StoreError> {
        self.inner.enqueue(messages).await
    }

    async fn enqueue_after(
        &self,
        message: &DeliveryMessage,
        delay: Duration,
    ) -> Result<(), StoreError> {
        if delay.is_zero() {
            return self.inner.enqueue(std::slice::from_ref(message)).await;
        }
        let due = self.clock.now_ms() + delay.as_millis() as u64;
        self.timers
            .lock()
            .unwrap()
            .pending
            .push((due, message.clone()));
        Ok(())
    }
}

#[async_trait]
impl QueueConsumer for WarpQueue {
    async fn receive(
        &self,
        kind: ConnectorKind,
        max: usize,
        visibility: Duration,
    ) -> Result<Vec<Received>, StoreError> {
        let got = self.inner.receive(kind, max, REAL_VISIBILITY).await?;
        let due = self.clock.now_ms() + visibility.as_millis() as u64;
        let mut t = self.timers.lock().unwrap();
        for r in &got {
            t.in_flight.insert(r.receipt.clone(), (kind, due));
        }
        Ok(got)
    }

    async fn ack(&self, kind: ConnectorKind, receipt: &str) -> Result<(), StoreError> {
        self.timers.lock().unwrap().in_flight.remove(receipt);
        self.inner.ack(kind, receipt).await
    }

    async fn retry_later(
        &self,
        kind: ConnectorKind,
        receipt: &str,
        delay: Duration,
    ) -> Result<(), StoreError> {
        let due = self.clock.now_ms() + delay.as_millis() as u64;
        self.timers
            .lock()
            .unwrap()
            .in_flight
            .insert(receipt.to_string(), (kind, due));
        Ok(())
    }
}

/// Delivers until nothing is left on `warp`: releases what is due, lets `dispatch` handle it
/// (answering how many messages it handled), and when nothing was due moves the manual clock
/// to the next due message. At most `max_rounds` rounds.
pub async fn settle<F, Fut>(
    warp: &WarpQueue,
    clock: &testrelay_domain::ports::ManualClock,
    max_rounds: usize,
    dispatch: F,
) where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = usize>,
{
    use testrelay_domain::ports::Clock;
    for round in 0.. {
        assert!(round < max_rounds, "not settled after {max_rounds} rounds");
        warp.release_due().await.unwrap();
        if dispatch().await > 0 {
            continue;
        }
        match warp.next_due() {
            Some(next) => clock.advance(std::time::Duration::from_millis(
                next.saturating_sub(clock.now_ms()).max(1),
            )),
            None => return,
        }
    }
}

/// `app`'s delivery and ingest ports with its queue on `warp` and its time on `clock`: the
/// AWS adapters as the fault-injection and pipeline tests drive them.
pub fn ports_on(
    app: &testrelay_lambda::bootstrap::AwsApp,
    warp: &Arc<WarpQueue>,
    clock: &Arc<ManualClock>,
    metrics: Arc<dyn testrelay_domain::health::metrics::Metrics>,
) -> (
    testrelay_domain::delivery::DeliveryPorts,
    testrelay_domain::ingest::Ports,
) {
    let delivery = testrelay_domain::delivery::DeliveryPorts {
        runs: Arc::new(app.runs.clone()),
        blobs: Arc::new(app.blobs.clone()),
        idempotency: Arc::new(app.idempotency.clone()),
        state: Arc::new(app.state.clone()),
        dead_letters: Arc::new(app.dead_letters.clone()),
        clock: clock.clone(),
        metrics,
    };
    let ingest = testrelay_domain::ingest::Ports {
        blobs: Arc::new(app.blobs.clone()),
        runs: Arc::new(app.runs.clone()),
        idempotency: Arc::new(app.idempotency.clone()),
        queue: warp.clone(),
        dead_letters: Arc::new(app.dead_letters.clone()),
        state: Arc::new(app.state.clone()),
        clock: clock.clone(),
        metrics: Arc::new(testrelay_domain::health::metrics::NoMetrics),
    };
    (delivery, ingest)
}
