//! Composition of the local process: embedded adapters, connectors, the ingest service and
//! one worker per connector kind, wired the same way the Lambda functions wire theirs.

use axum::Router;
use std::path::PathBuf;
use std::sync::Arc;
use testrelay_domain::config::{Config, ConnectorKind};
use testrelay_domain::delivery::retry::RetryPolicy;
use testrelay_domain::delivery::steps::Faults;
use testrelay_domain::delivery::worker::Worker;
use testrelay_domain::delivery::{DeliveryPorts, DeliveryService};
use testrelay_domain::health::HealthService;
use testrelay_domain::health::metrics::MemoryMetrics;
use testrelay_domain::ingest::{IngestService, Ports};
use testrelay_domain::ports::Clock;
use testrelay_embedded::{FileBlobStore, FileSecretStore, SqliteStore};
use tokio::sync::watch;

pub struct App {
    pub config: Arc<Config>,
    pub router: Router,
    pub store: SqliteStore,
    pub workers: Vec<Worker>,
    pub metrics: Arc<MemoryMetrics>,
    pub delivery: Arc<DeliveryService>,
    pub health: Arc<HealthService>,
    pub ingest: Arc<IngestService>,
}

/// Paths inside the data directory.
pub fn db_path(data_dir: &std::path::Path) -> PathBuf {
    data_dir.join("testrelay.db")
}
pub fn secrets_dir(data_dir: &std::path::Path) -> PathBuf {
    data_dir.join("secrets")
}

impl App {
    /// Opens the data directory and builds everything; fails with a message that names what
    /// is wrong (an unreadable data dir, a missing secret).
    pub async fn build(
        config: Config,
        clock: Arc<dyn Clock>,
        policy: RetryPolicy,
    ) -> Result<App, String> {
        Self::build_with_faults(config, clock, policy, None).await
    }

    /// As [`App::build`], with crashes injected into deliveries (fault-injection tests).
    pub async fn build_with_faults(
        config: Config,
        clock: Arc<dyn Clock>,
        policy: RetryPolicy,
        faults: Option<Arc<dyn Faults>>,
    ) -> Result<App, String> {
        let config = Arc::new(config);
        let dir = &config.server.data_dir;
        let store = SqliteStore::open(&db_path(dir), clock.clone())
            .map_err(|e| format!("data directory {}: {e}", dir.display()))?;
        let blobs = Arc::new(FileBlobStore::new(dir.join("blobs")));
        let secrets = FileSecretStore::new(secrets_dir(dir));
        let env = testrelay_connectors::Env::new(&config, Arc::new(store.clone()), clock.clone());
        let connectors = testrelay_connectors::build(&config, &secrets, &env).await?;
        let metrics = Arc::new(MemoryMetrics::default());
        let ports = Ports {
            blobs: blobs.clone(),
            runs: Arc::new(store.clone()),
            idempotency: Arc::new(store.clone()),
            queue: Arc::new(store.clone()),
            dead_letters: Arc::new(store.clone()),
            state: Arc::new(store.clone()),
            clock: clock.clone(),
            metrics: metrics.clone(),
        };
        let hooks =
            testrelay_domain::ingest::signatures::HookSecrets::resolve(&config, &secrets).await?;
        let ingest = Arc::new(IngestService::new(config.clone(), ports).with_hooks(hooks));
        let delivery_ports = DeliveryPorts {
            runs: Arc::new(store.clone()),
            blobs,
            idempotency: Arc::new(store.clone()),
            state: Arc::new(store.clone()),
            dead_letters: Arc::new(store.clone()),
            clock: clock.clone(),
            metrics: metrics.clone(),
        };
        let health = Arc::new(HealthService::new(
            connectors.clone(),
            Arc::new(store.clone()),
            Arc::new(store.clone()),
            clock.clone(),
            metrics.clone(),
            config.health.clone(),
        ));
        let mut delivery = DeliveryService::new(delivery_ports, connectors, policy)
            .with_public_url(config.server.public_url.clone())
            .with_fallbacks(&config, Arc::new(store.clone()));
        if let Some(f) = faults {
            delivery = delivery.with_faults(f);
        }
        let delivery = Arc::new(delivery);
        let workers = ConnectorKind::ALL
            .into_iter()
            .map(|kind| Worker {
                kind,
                consumer: Arc::new(store.clone()),
                queue: Arc::new(store.clone()),
                service: delivery.clone(),
                concurrency: config.server.delivery_concurrency,
            })
            .collect();
        let prometheus = metrics.clone();
        let router = testrelay_api::router(ingest.clone()).route(
            "/metrics",
            axum::routing::get(move || {
                let text = prometheus.prometheus();
                async move {
                    (
                        [(
                            axum::http::header::CONTENT_TYPE,
                            "text/plain; version=0.0.4; charset=utf-8",
                        )],
                        text,
                    )
                }
            }),
        );
        Ok(App {
            router,
            health,
            config,
            store,
            workers,
            metrics,
            delivery,
            ingest,
        })
    }

    /// Starts the workers in the background; they stop when `shutdown` turns true.
    pub fn spawn_workers(
        &self,
        shutdown: watch::Receiver<bool>,
    ) -> Vec<tokio::task::JoinHandle<()>> {
        self.workers
            .iter()
            .cloned()
            .map(|w| tokio::spawn(w.run(self.store.wake(), shutdown.clone())))
            .collect()
    }

    /// Runs the health checks and the pipeline sweep now and then every `[health]
    /// interval_s` until `shutdown`.
    pub fn spawn_health(&self, mut shutdown: watch::Receiver<bool>) -> tokio::task::JoinHandle<()> {
        let health = self.health.clone();
        let ingest = self.ingest.clone();
        tokio::spawn(async move {
            loop {
                if let Err(e) = ingest.sweep_pipelines().await {
                    tracing::warn!(error = %e, "pipeline sweep failed; the next round retries");
                }
                let report = health.check().await;
                tracing::debug!(status = report.status.as_str(), "health checked");
                tokio::select! {
                    _ = tokio::time::sleep(health.interval()) => {}
                    _ = shutdown.changed() => return,
                }
            }
        })
    }

    /// Delivers everything that is due now, synchronously; returns how many messages it
    /// handled. Tests call this instead of waiting.
    pub async fn dispatch_all_pending(&self) -> usize {
        let mut total = 0;
        for w in &self.workers {
            total += w.drain().await;
        }
        total
    }
}
