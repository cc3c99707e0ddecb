//! All integration tests in one binary (one link, shared helpers in `testrelay-tests`).
//! Contract suites run every port's contract against the embedded adapter and the AWS one
//! (on moto and on DynamoDB Local + MiniStack); the other modules drive the whole system.

mod alarms;
mod channel_flow;
pub(crate) mod connectors;
mod contract;
mod fallback;
mod fault_injection;
mod health;
mod history;
mod hooks;
mod hostile;
mod lambda;
mod local_flow;
mod pipeline_flow;
mod pipeline_scale;
mod pipelines;
mod send;
mod vendor_text;
mod webhook;

/// `on_engines!(scenario)` runs `async fn scenario(engine: Engine)` as the tests
/// `scenario::moto` and `scenario::dynamodb_local` (DynamoDB Local + MiniStack).
#[macro_export]
macro_rules! on_engines {
    ($name:ident) => {
        mod $name {
            #[tokio::test]
            async fn moto() {
                super::$name(testrelay_tests::aws::Engine::Moto).await;
            }
            #[tokio::test]
            async fn dynamodb_local() {
                super::$name(testrelay_tests::aws::Engine::DynamoDbLocal).await;
            }
        }
    };
}
