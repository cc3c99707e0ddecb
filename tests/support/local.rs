//! `spawn_app()`: the local process (API + embedded store + webhook connector) on a random
//! loopback port, with a fresh data directory and a wiremock receiver.

use crate::receiver::Receiver;
use std::collections::BTreeMap;
use std::sync::Arc;
use testrelay_cli::app::App;
use testrelay_domain::config::{
    ApiKeyConfig, Config, ConnectorConfig, NetworkConfig, ProjectConfig, SecretRef, ServerConfig,
    WebhookConfig, hash_api_key,
};
use testrelay_domain::delivery::retry::RetryPolicy;
use testrelay_domain::ids::{ConnectorName, KeyId, ProjectName};
use testrelay_domain::ports::{Clock, SystemClock};

pub const API_KEY: &str = "trk_test_key_for_integration_tests";
/// May list and redrive dead letters.
pub const ADMIN_KEY: &str = "trk_test_admin_key_for_integration_tests";
pub const PROJECT: &str = "web";
pub const CONNECTOR: &str = "hook";

pub struct TestApp {
    pub app: App,
    pub base: String,
    pub client: reqwest::Client,
    pub receiver: Receiver,
    pub dir: tempfile::TempDir,
}

/// A config with one project routed to one webhook at `url` whose secret is `secret_name`
/// in the data directory's secret store.
pub fn config(dir: &std::path::Path, url: &str) -> Config {
    Config {
        server: ServerConfig {
            listen: "127.0.0.1:0".into(),
            data_dir: dir.to_path_buf(),
            ..ServerConfig::default()
        },
        api_keys: vec![
            ApiKeyConfig {
                id: KeyId::parse("ci").unwrap(),
                sha256: hash_api_key(API_KEY),
                projects: Some(vec![ProjectName::parse(PROJECT).unwrap()]),
                admin: false,
            },
            ApiKeyConfig {
                id: KeyId::parse("ops").unwrap(),
                sha256: hash_api_key(ADMIN_KEY),
                projects: Some(vec![]),
                admin: true,
            },
        ],
        projects: BTreeMap::from([
            (
                ProjectName::parse(PROJECT).unwrap(),
                ProjectConfig {
                    connectors: vec![ConnectorName::parse(CONNECTOR).unwrap()],
                    pipeline_quiet_minutes: 10,
                    when: Default::default(),
                    default_branch: "main".into(),
                    history: Default::default(),
                },
            ),
            (
                ProjectName::parse("quiet").unwrap(),
                ProjectConfig {
                    connectors: vec![],
                    pipeline_quiet_minutes: 10,
                    when: Default::default(),
                    default_branch: "main".into(),
                    history: Default::default(),
                },
            ),
        ]),
        connectors: BTreeMap::from([(
            ConnectorName::parse(CONNECTOR).unwrap(),
            ConnectorConfig::Webhook(WebhookConfig {
                fallback: None,
                fallback_after_minutes: 60,
                url: url.to_string(),
                secret: SecretRef::Secret("hook-secret".into()),
                timeout_ms: 5_000,
                allow_http: true,
                breaker: Default::default(),
                rate_limit: None,
                probe_url: None,
                parts: false,
            }),
        )]),
        // Test receivers listen on loopback.
        network: NetworkConfig {
            allow: vec!["127.0.0.0/8".into()],
        },
        health: Default::default(),
        hooks: Default::default(),
    }
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(200, Arc::new(SystemClock), RetryPolicy::default()).await
}

/// The app with a receiver answering `status`, on `clock`, retrying per `policy`.
pub async fn spawn_app_with(status: u16, clock: Arc<dyn Clock>, policy: RetryPolicy) -> TestApp {
    spawn_app_config(status, clock, policy, |_| {}).await
}

/// As [`spawn_app_with`], with the config changed by `edit` first.
pub async fn spawn_app_config(
    status: u16,
    clock: Arc<dyn Clock>,
    policy: RetryPolicy,
    edit: impl FnOnce(&mut Config),
) -> TestApp {
    spawn_app_secrets(status, clock, policy, edit, &[]).await
}

/// As [`spawn_app_config`], with more `(name, value)` secrets in the data directory.
pub async fn spawn_app_secrets(
    status: u16,
    clock: Arc<dyn Clock>,
    policy: RetryPolicy,
    edit: impl FnOnce(&mut Config),
    secrets: &[(&str, &str)],
) -> TestApp {
    let receiver = Receiver::start(status).await;
    let dir = tempfile::tempdir().unwrap();
    let store =
        testrelay_embedded::FileSecretStore::new(testrelay_cli::app::secrets_dir(dir.path()));
    store.put("hook-secret", &receiver.secret_text).unwrap();
    for (name, value) in secrets {
        store.put(name, value).unwrap();
    }
    let mut config = config(dir.path(), &receiver.url());
    edit(&mut config);
    let app = App::build(config, clock, policy).await.expect("app builds");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let router = app.router.clone();
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    TestApp {
        app,
        base: format!("http://{addr}"),
        client: reqwest::Client::new(),
        receiver,
        dir,
    }
}

impl TestApp {
    /// POSTs `body` to /v1/reports with `query` and the test API key.
    pub async fn post_report(
        &self,
        query: &str,
        body: impl Into<reqwest::Body>,
    ) -> reqwest::Response {
        self.client
            .post(format!("{}/v1/reports?{query}", self.base))
            .bearer_auth(API_KEY)
            .body(body)
            .send()
            .await
            .unwrap()
    }

    /// POSTs `body` to /v1/reports with `query`, the test API key and extra `headers`.
    pub async fn post_with(
        &self,
        query: &str,
        headers: &[(&str, &str)],
        body: impl Into<reqwest::Body>,
    ) -> reqwest::Response {
        let mut req = self
            .client
            .post(format!("{}/v1/reports?{query}", self.base))
            .bearer_auth(API_KEY);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        req.body(body).send().await.unwrap()
    }

    pub async fn get_run(&self, id: &str) -> reqwest::Response {
        self.client
            .get(format!("{}/v1/runs/{id}", self.base))
            .bearer_auth(API_KEY)
            .send()
            .await
            .unwrap()
    }

    /// Calls an admin route (`GET`/`POST` `path`, which may carry a query) with `key`.
    pub async fn admin(&self, method: &str, path: &str, key: &str) -> reqwest::Response {
        let url = format!("{}{path}", self.base);
        let req = match method {
            "GET" => self.client.get(url),
            _ => self.client.post(url),
        };
        req.bearer_auth(key).send().await.unwrap()
    }

    pub async fn dispatch_all_pending(&self) -> usize {
        self.app.dispatch_all_pending().await
    }

    /// Files under the blob directory: what a request stored.
    pub fn stored_blobs(&self) -> usize {
        let dir = self.dir.path().join("blobs/runs");
        std::fs::read_dir(dir).map(|d| d.count()).unwrap_or(0)
    }
}

/// The whole local app on a manual clock, for scenarios that run hours of schedule without
/// waiting: `config` with a fresh webhook secret as `hook-secret` in `dir`, crashes injected
/// by `faults` when given, and an ingest service on the same embedded store (its metrics
/// dropped, so the app's metrics hold only what delivery and health emit).
pub async fn on_manual_clock(
    config: Config,
    dir: &std::path::Path,
    clock: Arc<testrelay_domain::ports::ManualClock>,
    faults: Option<Arc<dyn testrelay_domain::delivery::steps::Faults>>,
) -> (App, Arc<testrelay_domain::ingest::IngestService>) {
    testrelay_embedded::FileSecretStore::new(testrelay_cli::app::secrets_dir(dir))
        .put(
            "hook-secret",
            &testrelay_domain::delivery::signing::WebhookSecret::generate().1,
        )
        .unwrap();
    let app = App::build_with_faults(config, clock.clone(), RetryPolicy::default(), faults)
        .await
        .unwrap();
    let ingest = Arc::new(testrelay_domain::ingest::IngestService::new(
        app.config.clone(),
        ingest_ports(&app, dir, clock),
    ));
    (app, ingest)
}

/// The local app's ingest ports (its store, the blobs in `dir`) on `clock`.
pub fn ingest_ports(
    app: &App,
    dir: &std::path::Path,
    clock: Arc<testrelay_domain::ports::ManualClock>,
) -> testrelay_domain::ingest::Ports {
    testrelay_domain::ingest::Ports {
        blobs: Arc::new(testrelay_embedded::FileBlobStore::new(dir.join("blobs"))),
        runs: Arc::new(app.store.clone()),
        idempotency: Arc::new(app.store.clone()),
        queue: Arc::new(app.store.clone()),
        dead_letters: Arc::new(app.store.clone()),
        state: Arc::new(app.store.clone()),
        clock,
        metrics: Arc::new(testrelay_domain::health::metrics::NoMetrics),
    }
}

/// Submits `n` small reports (one pass, one failure; project `web`, commit `c<i>`) through
/// `ingest`, 16 at a time; their run ids in submission order.
pub async fn submit_runs(
    ingest: Arc<testrelay_domain::ingest::IngestService>,
    n: usize,
) -> Vec<testrelay_domain::ids::RunId> {
    use futures::StreamExt;
    futures::stream::iter(0..n)
        .map(|i| {
            let ingest = ingest.clone();
            async move {
                ingest
                    .submit(testrelay_domain::ingest::Submission {
                        authorization: Some(format!("Bearer {API_KEY}")),
                        query: Some(format!("project=web&commit=c{i}")),
                        content_encoding: None,
                        idempotency_key: None,
                        body: bytes::Bytes::from(format!(
                            r#"<testsuite name="s{i}"><testcase name="a"/><testcase name="b"><failure message="x"/></testcase></testsuite>"#
                        )),
                        reservation: Default::default(),
                    })
                    .await
                    .expect("accepted")
                    .accepted
                    .run_id
            }
        })
        .buffered(16)
        .collect()
        .await
}

/// Delivers until the embedded queue is empty: `dispatch` handles what is due (answering how
/// many messages it handled); when nothing was due, the manual clock moves to the next
/// message's visibility. At most `max_rounds` rounds: a bound, not a wait.
pub async fn settle<F, Fut>(
    store: &testrelay_embedded::SqliteStore,
    clock: &testrelay_domain::ports::ManualClock,
    max_rounds: usize,
    dispatch: F,
) where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = usize>,
{
    use testrelay_domain::ports::Clock;
    for round in 0.. {
        assert!(round < max_rounds, "not settled after {max_rounds} rounds");
        let handled = dispatch().await;
        if store.queue_len().await.unwrap() == 0 {
            return;
        }
        if handled == 0 {
            let next = store.next_visible_at().await.unwrap().unwrap();
            clock.advance(std::time::Duration::from_millis(
                next.saturating_sub(clock.now_ms()).max(1),
            ));
        }
    }
}
