//! Everything a function does once per cold start, before the first event.

use std::sync::Arc;
use testrelay_aws::{
    DynamoIdempotencyStore, DynamoRunStore, DynamoStateStore, Resources, S3BlobStore,
    SecretsManagerStore, SqsDeadLetters, SqsQueue, SqsStats,
};
use testrelay_domain::config::{Config, ConnectorKind};
use testrelay_domain::delivery::retry::RetryPolicy;
use testrelay_domain::delivery::{Connectors, DeliveryPorts, DeliveryService};
use testrelay_domain::health::metrics::Metrics;
use testrelay_domain::ingest::Ports;
use testrelay_domain::ports::SystemClock;

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// JSON log lines without colours or timestamps (CloudWatch adds its own).
pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .json()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_target(false)
        .without_time()
        .with_current_span(false)
        .try_init();
}

/// The AWS adapters, built once.
#[derive(Clone)]
pub struct AwsApp {
    pub config: Arc<Config>,
    pub blobs: S3BlobStore,
    pub runs: DynamoRunStore,
    pub idempotency: DynamoIdempotencyStore,
    pub queue: SqsQueue,
    pub dead_letters: SqsDeadLetters,
    pub stats: SqsStats,
    pub state: DynamoStateStore,
    pub secrets: SecretsManagerStore,
    pub metrics: Arc<dyn Metrics>,
    /// How many instances of this function may run at once (`TESTRELAY_DELIVERY_CONCURRENCY`,
    /// the template's `<Kind>Concurrency`): each keeps to that share of every target's rate
    /// limit, so together they keep to the vendor's. 1 when unset.
    pub delivery_concurrency: u32,
    /// For the clients made per connector (SES in a connector's region).
    pub sdk: aws_config::SdkConfig,
}

impl AwsApp {
    pub fn new(config: Config, sdk: &aws_config::SdkConfig, resources: Resources) -> Self {
        AwsApp {
            config: Arc::new(config),
            blobs: S3BlobStore::new(sdk, resources.bucket),
            runs: DynamoRunStore::new(sdk, resources.runs_table),
            idempotency: DynamoIdempotencyStore::new(sdk, resources.state_table.clone()),
            state: DynamoStateStore::new(sdk, resources.state_table),
            stats: SqsStats::new(
                sdk,
                resources.queues.clone(),
                resources.dead_letter_queues.clone(),
            ),
            queue: SqsQueue::new(sdk, resources.queues),
            dead_letters: SqsDeadLetters::new(sdk, resources.dead_letter_queues),
            secrets: SecretsManagerStore::new(sdk),
            metrics: Arc::new(crate::emf::EmfMetrics::stdout()),
            delivery_concurrency: 1,
            sdk: sdk.clone(),
        }
    }

    pub fn ports(&self) -> Ports {
        Ports {
            blobs: Arc::new(self.blobs.clone()),
            runs: Arc::new(self.runs.clone()),
            idempotency: Arc::new(self.idempotency.clone()),
            queue: Arc::new(self.queue.clone()),
            dead_letters: Arc::new(self.dead_letters.clone()),
            state: Arc::new(self.state.clone()),
            clock: Arc::new(SystemClock),
            metrics: self.metrics.clone(),
        }
    }

    /// Resolves connector secrets through Secrets Manager (or env/file references).
    pub async fn connectors(&self) -> Result<Connectors, String> {
        testrelay_connectors::build(&self.config, &self.secrets, &self.connector_env()).await
    }

    /// Only the connectors of `kind` (a delivery function's), reading only their secrets.
    pub async fn connectors_of(&self, kind: ConnectorKind) -> Result<Connectors, String> {
        testrelay_connectors::build_kind(&self.config, &self.secrets, &self.connector_env(), kind)
            .await
    }

    fn connector_env(&self) -> testrelay_connectors::Env {
        testrelay_connectors::Env::new(
            &self.config,
            Arc::new(self.state.clone()),
            Arc::new(SystemClock),
        )
        .shared_by(self.delivery_concurrency)
        .with_ses(ses_transports(self.sdk.clone()))
    }

    pub fn delivery_ports(&self) -> DeliveryPorts {
        DeliveryPorts {
            runs: Arc::new(self.runs.clone()),
            blobs: Arc::new(self.blobs.clone()),
            idempotency: Arc::new(self.idempotency.clone()),
            state: Arc::new(self.state.clone()),
            dead_letters: Arc::new(self.dead_letters.clone()),
            clock: Arc::new(SystemClock),
            metrics: self.metrics.clone(),
        }
    }

    pub fn health_service(
        &self,
        connectors: Connectors,
    ) -> testrelay_domain::health::HealthService {
        testrelay_domain::health::HealthService::new(
            connectors,
            Arc::new(self.state.clone()),
            Arc::new(self.stats.clone()),
            Arc::new(SystemClock),
            self.metrics.clone(),
            self.config.health.clone(),
        )
    }

    pub fn delivery_service(&self, connectors: Connectors, policy: RetryPolicy) -> DeliveryService {
        DeliveryService::new(self.delivery_ports(), connectors, policy)
            .with_public_url(self.config.server.public_url.clone())
            .with_fallbacks(&self.config, Arc::new(self.queue.clone()))
    }
}

/// Email connectors set to `ses` send through SES v2 in their region.
pub fn ses_transports(sdk: aws_config::SdkConfig) -> testrelay_connectors::email::SesTransports {
    Arc::new(move |c, sender| Arc::new(testrelay_aws::SesMail::new(&sdk, c, sender)))
}

/// `TESTRELAY_DELIVERY_CONCURRENCY`: a whole number from 1, or 1 when unset.
fn delivery_concurrency_from_env() -> Result<u32, String> {
    match std::env::var("TESTRELAY_DELIVERY_CONCURRENCY") {
        Err(_) => Ok(1),
        Ok(v) => match v.trim().parse::<u32>() {
            Ok(n) if n >= 1 => Ok(n),
            _ => Err(format!(
                "TESTRELAY_DELIVERY_CONCURRENCY must be a whole number from 1, not {v:?}"
            )),
        },
    }
}

/// `TESTRELAY_RUN_RETENTION_DAYS`: days after which run records expire (the table's TTL),
/// or none when unset.
fn run_retention_days_from_env() -> Result<Option<u64>, String> {
    match std::env::var("TESTRELAY_RUN_RETENTION_DAYS") {
        Err(_) => Ok(None),
        Ok(v) => match v.trim().parse::<u64>() {
            Ok(d) if d >= 1 => Ok(Some(d)),
            _ => Err(format!(
                "TESTRELAY_RUN_RETENTION_DAYS must be a whole number of days from 1, not {v:?}"
            )),
        },
    }
}

/// Configuration (see [`crate::config_source`]), resource names (`Resources::from_env`) and
/// the SDK's default chain, from the environment; the error says what is missing.
pub async fn from_env() -> Result<AwsApp, BoxError> {
    let source = crate::config_source::ConfigSource::from_env()?;
    let sdk = testrelay_aws::sdk_config().await;
    let config = source.load(&sdk).await?;
    let mut app = AwsApp::new(config, &sdk, Resources::from_env()?);
    app.delivery_concurrency = delivery_concurrency_from_env()?;
    if let Some(days) = run_retention_days_from_env()? {
        app.runs = app
            .runs
            .with_retention(std::time::Duration::from_secs(days * 24 * 60 * 60));
    }
    Ok(app)
}
