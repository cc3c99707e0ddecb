//! DeliveryQueue + QueueConsumer contract: SQS and the SQLite queue.

use super::Fixture;
use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;
use testrelay_domain::config::ConnectorKind;
use testrelay_domain::ids::{ConnectorName, RunId};
use testrelay_domain::ports::{DeliveryMessage, DeliveryQueue, QueueConsumer, Received};

pub trait Queue: DeliveryQueue + QueueConsumer {}
impl<T: DeliveryQueue + QueueConsumer> Queue for T {}
type Port = Arc<dyn Queue>;

async fn embedded_port() -> Fixture<Port> {
    super::sqlite(|s| Arc::new(s) as Port)
}

async fn aws_port(engine: testrelay_tests::aws::Engine) -> Fixture<Port> {
    let sdk = testrelay_tests::aws::sdk_on(engine).await;
    let url = testrelay_tests::aws::queue(&sdk).await;
    Fixture {
        port: Arc::new(testrelay_aws::SqsQueue::new(
            &sdk,
            testrelay_tests::aws::queues(&url),
        )),
        _keep: None,
    }
}

const K: ConnectorKind = ConnectorKind::Webhook;
const HIDE: Duration = Duration::from_secs(60);

fn messages(n: usize) -> Vec<DeliveryMessage> {
    (0..n)
        .map(|i| {
            DeliveryMessage::new(
                RunId::new(1_700_000_000_000 + i as u64),
                ConnectorName::parse(&format!("c{i}")).unwrap(),
                K,
            )
        })
        .collect()
}

/// Receives until `n` messages arrived (SQS may answer with fewer than are visible).
async fn receive_n(q: &Port, n: usize) -> Vec<Received> {
    let mut got = Vec::new();
    for _ in 0..20 {
        got.extend(q.receive(K, 10, HIDE).await.unwrap());
        if got.len() >= n {
            break;
        }
    }
    got
}

async fn enqueue_receive_ack(q: &Port) {
    let sent = messages(13);
    q.enqueue(&sent).await.unwrap();
    let got = receive_n(q, 13).await;
    assert_eq!(
        got.len(),
        13,
        "batches past SQS's 10-per-call limit all arrive"
    );
    let ids: HashSet<_> = got.iter().map(|r| r.message.clone().connector).collect();
    assert_eq!(ids.len(), 13);
    assert!(got.iter().all(|r| r.receive_count == 1));
    assert!(
        q.receive(K, 10, HIDE).await.unwrap().is_empty(),
        "received messages are hidden"
    );
    for r in &got {
        q.ack(K, &r.receipt).await.unwrap();
    }
}

/// One message, received, handed back with `retry_later(0)` and received again: both receives.
async fn received_twice(q: &Port) -> (Received, Received) {
    q.enqueue(&messages(1)).await.unwrap();
    let first = receive_n(q, 1).await.remove(0);
    q.retry_later(K, &first.receipt, Duration::ZERO)
        .await
        .unwrap();
    (first, receive_n(q, 1).await.remove(0))
}

async fn retry_later_makes_it_visible_again(q: &Port) {
    let (first, second) = received_twice(q).await;
    assert_eq!(second.message, first.message);
    assert_eq!(second.receive_count, 2);
    q.ack(K, &second.receipt).await.unwrap();
    assert!(
        q.receive(K, 10, Duration::ZERO).await.unwrap().is_empty(),
        "acked for good"
    );
}

/// A receipt from an earlier receive settles nothing and is no error, and a receipt used twice
/// neither: the message is settled by whoever received it last. (AWS answers success to a
/// stale DeleteMessage and may keep the message; MiniStack answers ReceiptHandleIsInvalid;
/// moto deletes it.)
async fn stale_receipts_are_no_error(q: &Port) {
    let (first, second) = received_twice(q).await;
    q.ack(K, &first.receipt).await.unwrap();
    q.retry_later(K, &first.receipt, Duration::from_secs(5))
        .await
        .unwrap();
    q.ack(K, &second.receipt).await.unwrap();
    q.ack(K, &second.receipt).await.unwrap();
    assert!(
        q.receive(K, 10, Duration::ZERO).await.unwrap().is_empty(),
        "settled by its last holder"
    );
}

crate::contract!(enqueue_and_ack, enqueue_receive_ack);
crate::contract!(stale_receipts, stale_receipts_are_no_error);
crate::contract!(retry_later, retry_later_makes_it_visible_again);
