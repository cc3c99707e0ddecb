//! The Jira + Xray delivery Lambda: SQS batches of Jira + Xray deliveries.

#[tokio::main]
async fn main() -> Result<(), testrelay_lambda::bootstrap::BoxError> {
    testrelay_lambda::deliver::main(testrelay_domain::config::ConnectorKind::Jira).await
}
