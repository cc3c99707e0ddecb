//! The ingest function: API Gateway HTTP API -> the shared axum Router.

use crate::bootstrap::{AwsApp, BoxError};
use std::sync::Arc;
use testrelay_domain::hook_ingest::HookSecrets;
use testrelay_domain::ingest::IngestService;

/// The router, with the `[hooks.*]` secrets resolved (Secrets Manager or env/file).
pub async fn router(app: &AwsApp) -> Result<axum::Router, BoxError> {
    let hooks = HookSecrets::resolve(&app.config, &app.secrets).await?;
    Ok(testrelay_api::router(Arc::new(
        IngestService::new(app.config.clone(), app.ports()).with_hooks(hooks),
    )))
}

/// Cold start: tracing, config, clients; then serve events until the runtime stops us.
pub async fn main() -> Result<(), BoxError> {
    crate::bootstrap::init_tracing();
    let app = crate::bootstrap::from_env().await?;
    lambda_http::run(router(&app).await?).await
}
