//! DeadLetterStore contract: the SQS dead-letter queues and the SQLite table.

use super::Fixture;
use std::sync::Arc;
use testrelay_domain::config::ConnectorKind;
use testrelay_domain::delivery::ERROR_DETAIL_CAP;
use testrelay_domain::ids::{ConnectorName, RunId};
use testrelay_domain::ports::{DeadLetter, DeadLetterStore, DeliveryMessage};

type Port = Arc<dyn DeadLetterStore>;

async fn embedded_port() -> Fixture<Port> {
    super::sqlite(|s| Arc::new(s) as Port)
}

async fn aws_port(engine: testrelay_tests::aws::Engine) -> Fixture<Port> {
    let sdk = testrelay_tests::aws::sdk_on(engine).await;
    let (_, dlq) = testrelay_tests::aws::queue_with_dlq(&sdk).await;
    Fixture {
        port: Arc::new(testrelay_aws::SqsDeadLetters::new(
            &sdk,
            testrelay_tests::aws::queues(&dlq),
        )),
        _keep: None,
    }
}

const K: ConnectorKind = ConnectorKind::Slack;

fn letter(i: u64, reason: String) -> DeadLetter {
    DeadLetter {
        message: DeliveryMessage::new(
            RunId::new(1_700_000_000_000 + i),
            ConnectorName::parse(&format!("c{i}")).unwrap(),
            K,
        ),
        reason,
        attempts: 3,
        last_status: Some(200),
        at: "2026-11-28T10:00:00.000Z".into(),
    }
}

/// A reason as long as the delivery service keeps, made of what a vendor's error text may
/// hold: every control character, U+FFFE and U+FFFF (which SQS refuses in a body as they
/// are), quotes, backslashes, and text from beyond the Basic Multilingual Plane.
fn hostile_reason() -> String {
    let mut text: String = (0u32..0x20).filter_map(char::from_u32).collect();
    text.push_str("\u{FFFE}\u{FFFF}\u{FFFD}\"\\ 🦀 ");
    testrelay_domain::report::render::cut(&text.repeat(ERROR_DETAIL_CAP), ERROR_DETAIL_CAP)
}

async fn any_reason_round_trips(store: &Port) {
    let sent = [letter(1, hostile_reason()), letter(2, "HTTP 400".into())];
    for l in &sent {
        store.put(l).await.unwrap();
    }
    let listed = store.list(K, 10).await.unwrap();
    let mut got: Vec<_> = listed.iter().map(|l| l.letter.clone()).collect();
    got.sort_by(|a, b| a.message.run_id.cmp(&b.message.run_id));
    assert_eq!(
        got, sent,
        "every dead letter, its reason exactly as written"
    );
    for l in &listed {
        store.remove(K, &l.handle).await.unwrap();
        // A handle already used settles nothing more, and is no error (a redrive retried).
        store.remove(K, &l.handle).await.unwrap();
    }
    assert!(store.list(K, 10).await.unwrap().is_empty());
}

crate::contract!(reasons, any_reason_round_trips);

/// SQS's own redrive (AWS adapters only: the embedded queue has no receive limit): a
/// message received `maxReceiveCount` (10) times without being settled — a crash loop — is
/// moved to the dead-letter queue by SQS, and listed as a dead letter saying so.
async fn sqs_moves_a_crash_loop_to_the_dead_letters(engine: testrelay_tests::aws::Engine) {
    use std::time::Duration;
    use testrelay_domain::ports::{DeliveryQueue, QueueConsumer};
    let sdk = testrelay_tests::aws::sdk_on(engine).await;
    let (url, dlq) = testrelay_tests::aws::queue_with_dlq(&sdk).await;
    let queue = testrelay_aws::SqsQueue::new(&sdk, testrelay_tests::aws::queues(&url));
    let dead = testrelay_aws::SqsDeadLetters::new(&sdk, testrelay_tests::aws::queues(&dlq));
    let sent = letter(7, String::new()).message;
    queue.enqueue(std::slice::from_ref(&sent)).await.unwrap();
    let mut receives = 0;
    for _ in 0..40 {
        let got = queue.receive(K, 10, Duration::ZERO).await.unwrap();
        if got.is_empty() && receives >= 10 {
            break;
        }
        receives += got.len();
    }
    assert_eq!(receives, 10, "received maxReceiveCount times, then moved");
    let listed = dead.list(K, 10).await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].letter.message, sent);
    assert!(
        listed[0]
            .letter
            .reason
            .starts_with("moved to the dead-letter queue by SQS after"),
        "{}",
        listed[0].letter.reason
    );
    dead.remove(K, &listed[0].handle).await.unwrap();
}

crate::on_engines!(sqs_moves_a_crash_loop_to_the_dead_letters);
