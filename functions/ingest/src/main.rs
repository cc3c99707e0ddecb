//! The ingest Lambda: API Gateway HTTP API -> validate, store, enqueue.

#[tokio::main]
async fn main() -> Result<(), testrelay_lambda::bootstrap::BoxError> {
    testrelay_lambda::ingest::main().await
}
