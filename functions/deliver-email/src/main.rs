//! The email delivery Lambda: SQS batches of email deliveries (SMTP or SES).

#[tokio::main]
async fn main() -> Result<(), testrelay_lambda::bootstrap::BoxError> {
    testrelay_lambda::deliver::main(testrelay_domain::config::ConnectorKind::Email).await
}
