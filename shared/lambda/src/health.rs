//! The health function: an EventBridge Scheduler event (any payload) runs one round of
//! health checks; the report is the function's result (and is kept in the state store).

use crate::bootstrap::{BoxError, from_env, init_tracing};
use lambda_runtime::{LambdaEvent, service_fn};
use std::sync::Arc;
use testrelay_domain::health::{HealthReport, HealthService};

/// Built once per cold start.
pub async fn build() -> Result<HealthService, BoxError> {
    let app = from_env().await?;
    let connectors = app.connectors().await?;
    Ok(app.health_service(connectors))
}

/// One scheduled invocation.
pub async fn handle(health: &HealthService, _event: serde_json::Value) -> HealthReport {
    let report = health.check().await;
    tracing::info!(
        status = report.status.as_str(),
        connectors = report.connectors.len(),
        failing = report.connectors.iter().filter(|c| !c.ok).count(),
        "health checked"
    );
    report
}

pub async fn main() -> Result<(), BoxError> {
    init_tracing();
    let health = Arc::new(build().await?);
    lambda_runtime::run(service_fn(move |event: LambdaEvent<serde_json::Value>| {
        let h = health.clone();
        async move { Ok::<_, BoxError>(handle(&h, event.payload).await) }
    }))
    .await
}
