//! The ingest function: API Gateway HTTP API -> the shared axum Router.

use crate::bootstrap::{AwsApp, BoxError};
use std::sync::Arc;
use testrelay_domain::config::Config;
use testrelay_domain::ingest::IngestService;
use testrelay_domain::ingest::signatures::HookSecrets;

/// The largest body testrelay answers for on Lambda. A synchronous invocation carries at most
/// 6 MB (6,291,456 bytes) of event, and API Gateway puts a gzip body in it base64-encoded
/// (4/3 larger) beside the headers: a larger body is refused by Lambda before testrelay runs,
/// with API Gateway's own bare error. Up to here, testrelay answers itself (413
/// problem+json past `server.max_body_bytes`, which is held to this).
pub const LAMBDA_MAX_BODY_BYTES: usize = 4 * 1024 * 1024;

/// The router, with the `[hooks.*]` secrets resolved (Secrets Manager or env/file).
pub async fn router(app: &AwsApp) -> Result<axum::Router, BoxError> {
    let hooks = HookSecrets::resolve(&app.config, &app.secrets).await?;
    Ok(testrelay_api::router(Arc::new(
        IngestService::new(lambda_config(&app.config), app.ports()).with_hooks(hooks),
    )))
}

/// `config` with `server.max_body_bytes` held to what a Lambda invocation can carry.
fn lambda_config(config: &Arc<Config>) -> Arc<Config> {
    if config.server.max_body_bytes <= LAMBDA_MAX_BODY_BYTES {
        return config.clone();
    }
    tracing::info!(
        configured = config.server.max_body_bytes,
        on_lambda = LAMBDA_MAX_BODY_BYTES,
        "server.max_body_bytes held to what a Lambda invocation carries"
    );
    let mut held = (**config).clone();
    held.server.max_body_bytes = LAMBDA_MAX_BODY_BYTES;
    held.server.max_decompressed_bytes = held
        .server
        .max_decompressed_bytes
        .max(LAMBDA_MAX_BODY_BYTES);
    Arc::new(held)
}

/// Cold start: tracing, config, clients; then serve events until the runtime stops us.
pub async fn main() -> Result<(), BoxError> {
    crate::bootstrap::init_tracing();
    let app = crate::bootstrap::from_env().await?;
    lambda_http::run(router(&app).await?).await
}
