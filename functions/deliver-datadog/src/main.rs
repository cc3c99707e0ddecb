//! The Datadog delivery Lambda: SQS batches of Datadog deliveries.

#[tokio::main]
async fn main() -> Result<(), testrelay_lambda::bootstrap::BoxError> {
    testrelay_lambda::deliver::main(testrelay_domain::config::ConnectorKind::Datadog).await
}
