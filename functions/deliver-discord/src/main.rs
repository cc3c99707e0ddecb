//! The Discord delivery Lambda: SQS batches of Discord deliveries.

#[tokio::main]
async fn main() -> Result<(), testrelay_lambda::bootstrap::BoxError> {
    testrelay_lambda::deliver::main(testrelay_domain::config::ConnectorKind::Discord).await
}
