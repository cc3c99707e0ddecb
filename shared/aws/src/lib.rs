//! AWS adapters: S3 for run blobs, DynamoDB for run records and idempotency records, SQS
//! for delivery queues (one per connector kind), Secrets Manager for credentials, SES for
//! email.
//!
//! SDK errors are matched on their typed variants (a failed condition is a decision, not an
//! outage) and only then mapped to domain errors.

mod dynamodb;
mod s3;
mod secrets;
mod ses;
mod sqs;

pub use dynamodb::{DynamoIdempotencyStore, DynamoRunStore, DynamoStateStore};
pub use s3::S3BlobStore;
pub use secrets::SecretsManagerStore;
pub use ses::SesMail;
pub use sqs::SqsDeadLetters;
pub use sqs::{SqsQueue, SqsStats};

use std::collections::HashMap;
use testrelay_domain::config::ConnectorKind;

/// Loads the SDK configuration once per cold start. `AWS_ENDPOINT_URL` (or a per-service
/// variant) points every client at a local emulator.
pub async fn sdk_config() -> aws_config::SdkConfig {
    aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await
}

/// Resource names, from the environment the deployment sets.
#[derive(Debug, Clone)]
pub struct Resources {
    pub bucket: String,
    pub runs_table: String,
    pub state_table: String,
    pub queues: HashMap<ConnectorKind, String>,
    pub dead_letter_queues: HashMap<ConnectorKind, String>,
}

impl Resources {
    /// `TESTRELAY_BUCKET`, `TESTRELAY_RUNS_TABLE`, `TESTRELAY_STATE_TABLE` and, per
    /// connector kind, `TESTRELAY_QUEUE_<KIND>` and `TESTRELAY_DLQ_<KIND>` (queue URLs); the
    /// error names every missing variable.
    pub fn from_env() -> Result<Self, String> {
        let mut missing = Vec::new();
        let mut var = |name: &str| {
            std::env::var(name).unwrap_or_else(|_| {
                missing.push(name.to_string());
                String::new()
            })
        };
        let bucket = var("TESTRELAY_BUCKET");
        let runs_table = var("TESTRELAY_RUNS_TABLE");
        let state_table = var("TESTRELAY_STATE_TABLE");
        let queues = ConnectorKind::ALL
            .into_iter()
            .map(|k| (k, var(&queue_env(k))))
            .collect();
        let dead_letter_queues = ConnectorKind::ALL
            .into_iter()
            .map(|k| {
                (
                    k,
                    var(&format!(
                        "TESTRELAY_DLQ_{}",
                        k.as_str().to_ascii_uppercase()
                    )),
                )
            })
            .collect();
        if missing.is_empty() {
            Ok(Resources {
                bucket,
                runs_table,
                state_table,
                queues,
                dead_letter_queues,
            })
        } else {
            Err(format!(
                "missing environment variables: {}",
                missing.join(", ")
            ))
        }
    }
}

/// The environment variable holding the queue URL of a connector kind.
pub fn queue_env(kind: ConnectorKind) -> String {
    format!("TESTRELAY_QUEUE_{}", kind.as_str().to_ascii_uppercase())
}

/// Whether S3's endpoint is overridden in `sdk` (a local engine, which then needs path-style
/// addressing): by `AWS_ENDPOINT_URL`, or per service (`AWS_ENDPOINT_URL_S3` or a service
/// config the caller built), read from the configuration rather than the process
/// environment so two engines can serve one process.
pub fn s3_endpoint_overridden(sdk: &aws_config::SdkConfig) -> bool {
    let key = aws_types::service_config::ServiceConfigKey::builder()
        .service_id("S3")
        .env("AWS_ENDPOINT_URL")
        .profile("endpoint_url")
        .build()
        .expect("service id, env and profile are set");
    sdk.endpoint_url().is_some()
        || sdk
            .service_config()
            .and_then(|c| c.load_config(key))
            .is_some()
}
