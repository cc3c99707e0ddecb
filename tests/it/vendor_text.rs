//! Whatever text a vendor puts in its error, a delivery keeps a bounded copy that every store
//! takes: DynamoDB refuses items over 400 KB, SQS bodies over 256 KiB or holding U+FFFE /
//! U+FFFF. On the AWS adapters, on moto and on DynamoDB Local + MiniStack.

use std::sync::Arc;
use std::time::Duration;
use testrelay_domain::config::ConnectorKind;
use testrelay_domain::delivery::breaker::BreakerConfig;
use testrelay_domain::delivery::retry::RetryPolicy;
use testrelay_domain::delivery::steps::Steps;
use testrelay_domain::delivery::{Disposition, ERROR_DETAIL_CAP};
use testrelay_domain::ids::ConnectorName;
use testrelay_domain::ports::{
    Connector, DeadLetterStore, Delivered, DeliveryContext, DeliveryError, DeliveryState,
    ErrorClass, Probe, QueueConsumer, RunStore, StepError,
};
use testrelay_domain::report::model::TestRun;
use testrelay_tests::aws::Engine;
use testrelay_tests::receiver::Receiver;

/// A target that answers every delivery with 300 KiB of error text.
struct Rambling(BreakerConfig);

fn rambling_text() -> String {
    "Ungültige Anfrage \u{FFFF}\u{FFFE}\0\"\\ 🦀 ".repeat(10_000)
}

#[async_trait::async_trait]
impl Connector for Rambling {
    fn kind(&self) -> ConnectorKind {
        ConnectorKind::Webhook
    }
    fn target(&self) -> &str {
        "webhook:rambling"
    }
    fn breaker(&self) -> &BreakerConfig {
        &self.0
    }
    async fn deliver(
        &self,
        _run: &TestRun,
        _ctx: &DeliveryContext,
        _steps: &Steps,
    ) -> Result<Delivered, StepError> {
        Err(StepError::Failed(DeliveryError {
            class: ErrorClass::Permanent,
            status_code: Some(400),
            detail: rambling_text(),
            retry_after: None,
            target: None,
        }))
    }
    async fn probe(&self) -> Result<Probe, DeliveryError> {
        unreachable!("not probed here")
    }
}

async fn a_rambling_vendor_is_dead_lettered_with_a_bounded_reason(engine: Engine) {
    let receiver = Receiver::start(200).await;
    let (_stack, app) = crate::lambda::app_on(&receiver, engine).await;
    let id = crate::lambda::ingest(&app).await;
    let name = ConnectorName::parse("team-hook").unwrap();
    let service = app.delivery_service(
        [(
            name.clone(),
            Arc::new(Rambling(BreakerConfig::default())) as Arc<dyn Connector>,
        )]
        .into(),
        RetryPolicy::default(),
    );
    let received = app
        .queue
        .receive(ConnectorKind::Webhook, 10, Duration::from_secs(30))
        .await
        .unwrap();
    assert_eq!(received.len(), 1);
    assert!(matches!(
        service.handle(&received[0].message).await,
        Disposition::Done
    ));

    let run = app.runs.get_run(&id).await.unwrap().unwrap();
    let d = run.deliveries.iter().find(|d| d.connector == name).unwrap();
    assert_eq!(d.state, DeliveryState::DeadLettered);
    let kept = d.last_error.as_deref().unwrap();
    assert!(
        kept.len() <= ERROR_DETAIL_CAP + '…'.len_utf8(),
        "{}",
        kept.len()
    );
    assert!(rambling_text().starts_with(kept.trim_end_matches('…')));
    assert_eq!(d.attempts[0].error.as_deref(), Some(kept));
    let letters = app
        .dead_letters
        .list(ConnectorKind::Webhook, 10)
        .await
        .unwrap();
    assert_eq!(letters.len(), 1, "the dead letter reached the DLQ");
    assert_eq!(letters[0].letter.reason, kept, "with the same text, intact");
}

crate::on_engines!(a_rambling_vendor_is_dead_lettered_with_a_bounded_reason);
