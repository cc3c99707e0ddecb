//! QueueStats contract: SQS queue attributes and SQLite counts report the same depths.

use super::Fixture;
use std::sync::Arc;
use std::time::Duration;
use testrelay_domain::config::ConnectorKind;
use testrelay_domain::ids::{ConnectorName, RunId};
use testrelay_domain::ports::{
    Clock, DeadLetter, DeadLetterStore, DeliveryMessage, DeliveryQueue, QueueConsumer, QueueStats,
    SystemClock,
};

/// The three ports over one queue and its dead-letter store.
#[derive(Clone)]
pub struct Port {
    queue: Arc<dyn DeliveryQueue>,
    consumer: Arc<dyn QueueConsumer>,
    dead: Arc<dyn DeadLetterStore>,
    stats: Arc<dyn QueueStats>,
}

async fn embedded_port() -> Fixture<Port> {
    let f = super::sqlite(Arc::new);
    let s = f.port.as_ref().clone();
    Fixture {
        port: Port {
            queue: Arc::new(s.clone()),
            consumer: Arc::new(s.clone()),
            dead: Arc::new(s.clone()),
            stats: Arc::new(s),
        },
        _keep: f._keep,
    }
}

async fn aws_port(engine: testrelay_tests::aws::Engine) -> Fixture<Port> {
    let sdk = testrelay_tests::aws::sdk_on(engine).await;
    let (url, dlq) = testrelay_tests::aws::queue_with_dlq(&sdk).await;
    let queues = testrelay_tests::aws::queues(&url);
    let dlqs = testrelay_tests::aws::queues(&dlq);
    Fixture {
        port: Port {
            queue: Arc::new(testrelay_aws::SqsQueue::new(&sdk, queues.clone())),
            consumer: Arc::new(testrelay_aws::SqsQueue::new(&sdk, queues.clone())),
            dead: Arc::new(testrelay_aws::SqsDeadLetters::new(&sdk, dlqs.clone())),
            stats: Arc::new(testrelay_aws::SqsStats::new(&sdk, queues, dlqs)),
        },
        _keep: None,
    }
}

const K: ConnectorKind = ConnectorKind::Webhook;

fn message(i: u64) -> DeliveryMessage {
    DeliveryMessage::new(
        RunId::new(1_700_000_000_000 + i),
        ConnectorName::parse(&format!("c{i}")).unwrap(),
        K,
    )
}

async fn depths(p: &Port) {
    let now = SystemClock.now_ms();
    let empty = p.stats.stats(K, now).await.unwrap();
    assert_eq!((empty.depth, empty.dead_letters), (0, 0));
    p.queue.enqueue(&[message(1), message(2)]).await.unwrap();
    p.queue
        .enqueue_after(&message(3), Duration::from_secs(600))
        .await
        .unwrap();
    // Received and not yet settled: still counted (in flight).
    let got = p
        .consumer
        .receive(K, 1, Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(got.len(), 1);
    p.dead
        .put(&DeadLetter {
            message: message(4),
            reason: "HTTP 400".into(),
            attempts: 1,
            last_status: Some(400),
            at: "2026-11-22T10:00:00.000Z".into(),
        })
        .await
        .unwrap();
    let s = p.stats.stats(K, SystemClock.now_ms()).await.unwrap();
    assert_eq!(s.depth, 3, "due, in flight and delayed messages all count");
    assert_eq!(s.dead_letters, 1);
    if let Some(age) = s.oldest_age_ms {
        assert!(age < 60_000, "{age}");
    }
}

crate::contract!(queue_depths, depths);
