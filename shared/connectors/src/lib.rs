//! Connectors: one module per vendor over a shared HTTP client. Each turns a canonical
//! [`TestRun`](testrelay_domain::model::TestRun) into the vendor's requests and classifies
//! the answer as success, transient, throttled or permanent.

pub mod http;
pub mod webhook;

use std::sync::Arc;
use testrelay_domain::config::{Config, ConnectorConfig};
use testrelay_domain::delivery::Connectors;
use testrelay_domain::ports::{SecretStore, resolve_secret};

/// Builds every configured connector, resolving its secrets once (per process, or per Lambda
/// cold start). Errors name the connector and the secret reference, never a value.
pub async fn build(config: &Config, secrets: &dyn SecretStore) -> Result<Connectors, String> {
    let client = http::client();
    let mut out = Connectors::new();
    for (name, cfg) in &config.connectors {
        let connector: Arc<dyn testrelay_domain::ports::Connector> = match cfg {
            ConnectorConfig::Webhook(w) => {
                let secret = resolve_secret(&w.secret, secrets)
                    .await
                    .map_err(|e| format!("connectors.{name}.secret ({}): {e}", w.secret))?;
                Arc::new(
                    webhook::WebhookConnector::new(client.clone(), w, &secret)
                        .map_err(|e| format!("connectors.{name}: {e}"))?,
                )
            }
        };
        out.insert(name.clone(), connector);
    }
    Ok(out)
}
