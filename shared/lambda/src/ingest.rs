//! The ingest function: API Gateway HTTP API -> the shared axum Router.

use crate::bootstrap::{AwsApp, BoxError};
use std::sync::Arc;
use testrelay_domain::ingest::IngestService;

pub fn router(app: &AwsApp) -> axum::Router {
    testrelay_api::router(Arc::new(IngestService::new(
        app.config.clone(),
        app.ports(),
    )))
}

/// Cold start: tracing, config, clients; then serve events until the runtime stops us.
pub async fn main() -> Result<(), BoxError> {
    crate::bootstrap::init_tracing();
    let app = crate::bootstrap::from_env().await?;
    lambda_http::run(router(&app)).await
}
