//! The Microsoft Teams delivery Lambda: SQS batches of Microsoft Teams deliveries.

#[tokio::main]
async fn main() -> Result<(), testrelay_lambda::bootstrap::BoxError> {
    testrelay_lambda::deliver::main(testrelay_domain::config::ConnectorKind::Teams).await
}
