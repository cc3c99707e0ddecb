//! The health Lambda: on an EventBridge Scheduler event, probes every connector and records
//! the picture (see `testrelay_lambda::health`).

#[tokio::main]
async fn main() -> Result<(), testrelay_lambda::bootstrap::BoxError> {
    testrelay_lambda::health::main().await
}
