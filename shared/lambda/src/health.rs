//! The health function: an EventBridge Scheduler event (any payload) runs one round of
//! health checks and the pipeline sweep (pipelines quiet for their project's period
//! complete; completions a crash interrupted are finished); the health report is the
//! function's result (and is kept in the state store).

use crate::bootstrap::{BoxError, from_env, init_tracing};
use lambda_runtime::{LambdaEvent, service_fn};
use std::sync::Arc;
use testrelay_domain::health::{HealthReport, HealthService};
use testrelay_domain::ingest::IngestService;

/// What a scheduled invocation runs, built once per cold start.
pub struct Scheduled {
    pub health: HealthService,
    pub pipelines: IngestService,
}

pub async fn build() -> Result<Scheduled, BoxError> {
    let app = from_env().await?;
    let connectors = app.connectors().await?;
    Ok(Scheduled {
        health: app.health_service(connectors),
        pipelines: IngestService::new(app.config.clone(), app.ports()),
    })
}

/// One scheduled invocation.
pub async fn handle(s: &Scheduled, _event: serde_json::Value) -> HealthReport {
    match s.pipelines.sweep_pipelines().await {
        Ok(n) if n > 0 => tracing::info!(completed = n, "quiet pipelines completed"),
        Ok(_) => {}
        Err(e) => tracing::warn!(error = %e, "pipeline sweep failed; the next schedule retries"),
    }
    let health = &s.health;
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
