//! The development default: what `testrelay serve` runs with when there is no config file.
//! One project, `web`, delivered to a built-in webhook receiver (`/dev/sink`) that verifies
//! each signature exactly as a real receiver must, so a first `curl` shows the whole path
//! working. The dev API key and webhook secret are generated once and kept in the data dir.

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use std::collections::{BTreeMap, VecDeque};
use std::path::Path;
use std::sync::{Arc, Mutex};
use testrelay_domain::config::{
    ApiKeyConfig, Config, ConnectorConfig, NetworkConfig, ProjectConfig, SecretRef, ServerConfig,
    WebhookConfig, hash_api_key,
};
use testrelay_domain::delivery::signing::{WebhookSecret, verify};
use testrelay_domain::ids::{ConnectorName, KeyId, ProjectName};

pub const DEV_PROJECT: &str = "web";
pub const DEV_CONNECTOR: &str = "dev-sink";
const DEV_SECRET_NAME: &str = "dev-sink";
const KEEP_EVENTS: usize = 100;

/// Reads the dev API key from the data dir, creating it on first start.
fn dev_api_key(data_dir: &Path) -> Result<String, String> {
    let path = data_dir.join("dev-api-key");
    if let Ok(k) = std::fs::read_to_string(&path) {
        return Ok(k.trim().to_string());
    }
    std::fs::create_dir_all(data_dir).map_err(|e| format!("{}: {e}", data_dir.display()))?;
    let key = format!("trk_dev_{}", hex::encode(rand::random::<[u8; 20]>()));
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    let mut f = opts
        .open(&path)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    std::io::Write::write_all(&mut f, key.as_bytes()).map_err(|e| e.to_string())?;
    Ok(key)
}

/// Reads (or creates) the dev sink's signing secret.
pub fn dev_sink_secret(data_dir: &Path) -> Result<WebhookSecret, String> {
    let secrets = testrelay_embedded::FileSecretStore::new(crate::app::secrets_dir(data_dir));
    let path = crate::app::secrets_dir(data_dir).join(DEV_SECRET_NAME);
    if let Ok(text) = std::fs::read_to_string(&path) {
        return WebhookSecret::parse(&text).map_err(|e| format!("{}: {e}", path.display()));
    }
    let (secret, text) = WebhookSecret::generate();
    secrets
        .put(DEV_SECRET_NAME, &text)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(secret)
}

/// The dev configuration for a server reachable at `addr`, and the dev API key.
pub fn dev_config(data_dir: &Path, addr: std::net::SocketAddr) -> Result<(Config, String), String> {
    let key = dev_api_key(data_dir)?;
    dev_sink_secret(data_dir)?;
    let project = ProjectName::parse(DEV_PROJECT).expect("valid");
    let sink = ConnectorName::parse(DEV_CONNECTOR).expect("valid");
    let config = Config {
        server: ServerConfig {
            listen: addr.to_string(),
            data_dir: data_dir.to_path_buf(),
            ..ServerConfig::default()
        },
        api_keys: vec![ApiKeyConfig {
            id: KeyId::parse("dev").expect("valid"),
            sha256: hash_api_key(&key),
            projects: None,
            admin: true,
        }],
        projects: BTreeMap::from([(
            project,
            ProjectConfig {
                connectors: vec![sink.clone()],
                pipeline_quiet_minutes: 10,
                when: Default::default(),
                default_branch: "main".into(),
                history: Default::default(),
            },
        )]),
        connectors: BTreeMap::from([(
            sink,
            ConnectorConfig::Webhook(WebhookConfig {
                fallback: None,
                fallback_after_minutes: 60,
                url: format!("http://{addr}/dev/sink"),
                secret: SecretRef::Secret(DEV_SECRET_NAME.into()),
                timeout_ms: 5_000,
                allow_http: true,
                breaker: Default::default(),
                rate_limit: None,
                probe_url: None,
                parts: false,
            }),
        )]),
        // The dev sink is on loopback, which connectors refuse unless allowed.
        network: NetworkConfig {
            allow: vec![format!("{}/32", addr.ip())],
        },
        health: Default::default(),
        hooks: Default::default(),
    };
    config.validate().map_err(|e| e.to_string())?;
    Ok((config, key))
}

/// The built-in receiver: verifies Standard Webhooks signatures and keeps the last events.
#[derive(Clone)]
pub struct DevSink {
    secret: Arc<WebhookSecret>,
    events: Arc<Mutex<VecDeque<serde_json::Value>>>,
    received: Arc<std::sync::atomic::AtomicU64>,
}

impl DevSink {
    pub fn new(secret: WebhookSecret) -> Self {
        DevSink {
            secret: Arc::new(secret),
            events: Arc::default(),
            received: Arc::default(),
        }
    }

    pub fn router(&self) -> Router {
        Router::new()
            .route("/dev/sink", post(receive).get(list))
            .with_state(self.clone())
    }
}

async fn receive(State(sink): State<DevSink>, headers: HeaderMap, body: Bytes) -> Response {
    let h = |n: &str| headers.get(n).and_then(|v| v.to_str().ok()).unwrap_or("");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let secrets = std::slice::from_ref(sink.secret.as_ref());
    if let Err(e) = verify(
        secrets,
        h("webhook-id"),
        h("webhook-timestamp"),
        h("webhook-signature"),
        &body,
        now,
    ) {
        tracing::warn!(error = %e, "dev sink refused an event");
        return (StatusCode::UNAUTHORIZED, e.to_string()).into_response();
    }
    let event: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
    if event["type"] == "ping" {
        // The health check's probe: answered, not listed among the runs.
        return StatusCode::NO_CONTENT.into_response();
    }
    let d = &event["data"];
    tracing::info!(
        "dev sink: {} for run {} ({} tests, {} failed), signature ok",
        event["type"].as_str().unwrap_or("?"),
        d["run_id"].as_str().unwrap_or("?"),
        d["summary"]["total"],
        d["summary"]["failed"].as_u64().unwrap_or(0)
            + d["summary"]["errored"].as_u64().unwrap_or(0),
    );
    sink.received
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let mut events = sink.events.lock().expect("not poisoned");
    if events.len() == KEEP_EVENTS {
        events.pop_front();
    }
    events.push_back(serde_json::json!({"webhook_id": h("webhook-id"), "event": event}));
    StatusCode::NO_CONTENT.into_response()
}

/// `{"received": <verified events since start>, "events": [<the last 100>]}`.
async fn list(State(sink): State<DevSink>) -> Response {
    let events: Vec<_> = sink
        .events
        .lock()
        .expect("not poisoned")
        .iter()
        .cloned()
        .collect();
    let received = sink.received.load(std::sync::atomic::Ordering::Relaxed);
    axum::Json(serde_json::json!({"received": received, "events": events})).into_response()
}
