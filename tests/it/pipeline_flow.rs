//! A CI pipeline end to end, on the embedded adapters and on the AWS adapters (moto;
//! DynamoDB Local + MiniStack): 8 shards posted at once, delivered by the delivery service to
//! TestRail, Slack and a signed webhook, then a re-run attempt of 2 shards. Exactly one
//! TestRail run holding every case once with the latest result; one Slack message, updated;
//! one `pipeline.completed` event (the re-run's completions are `pipeline.updated`). With
//! crashes injected at random between every step and its bookkeeping (and between a
//! delivery's record and its message's settling), the same holds. Time is a manual clock: a
//! delivery told to wait, or crashed, comes back when the queue makes it visible again.

use std::sync::Arc;
use testrelay_domain::config::{Config, ConnectorKind};
use testrelay_domain::delivery::steps::CrashPoint;
use testrelay_domain::ingest::{IngestService, Submission};
use testrelay_domain::ports::ManualClock;
use testrelay_tests::aws::Engine;
use testrelay_tests::faults::EachPointOnce;
use testrelay_tests::local::API_KEY;
use testrelay_tests::receiver::Receiver;

use crate::connectors::slack::history::{Channel, fake_slack};
use crate::connectors::testrail::fake::{self, FakeTestRail};

pub(crate) const T0: u64 = 1_800_000_000_000;
const SHARDS: u32 = 8;
const TESTS: u32 = 3;
const MAX_ROUNDS: usize = 1_000;

/// The vendors a pipeline is delivered to.
pub(crate) struct Vendors {
    pub testrail: wiremock::MockServer,
    pub testrail_state: Arc<std::sync::Mutex<FakeTestRail>>,
    pub slack: wiremock::MockServer,
    pub channel: Arc<std::sync::Mutex<Channel>>,
    pub hook: Receiver,
    shards: u32,
    tests: u32,
}

/// Test `k` of shard `i`'s case id.
pub(crate) fn case_id(i: u32, k: u32) -> u64 {
    i as u64 * 10_000 + k as u64
}

impl Vendors {
    pub async fn start(shards: u32, tests: u32) -> Vendors {
        let cases = (1..=shards).flat_map(|i| (1..=tests).map(move |k| case_id(i, k)));
        let (testrail, testrail_state) = fake::serve(FakeTestRail::with_cases(cases)).await;
        let (slack, channel) = fake_slack(None).await;
        Vendors {
            testrail,
            testrail_state,
            slack,
            channel,
            hook: Receiver::start(200).await,
            shards,
            tests,
        }
    }

    /// Project `web` to TestRail `qa`, Slack `chat` and webhook `hook`; secrets by the
    /// names `secret` gives.
    pub fn config(&self, base: Config, secret: impl Fn(&str) -> String) -> Config {
        let vendors = Config::from_toml(
            &format!(
                r#"
[network]
allow = ["127.0.0.0/8"]

[connectors.qa]
kind = "testrail"
url = "{}"
user = "ci@example.com"
api_key = {{ secret = "{}" }}
project_id = 7
suite_id = 3
allow_http = true
rate_limit = {{ per_minute = 60000, burst = 1000 }}

[connectors.chat]
kind = "slack"
token = {{ secret = "{}" }}
channel = "C0123"
api_url = "{}/api"
allow_http = true
rate_limit = {{ per_minute = 60000, burst = 1000 }}
# The history lookup's own limit is tested apart (slack/history.rs); time here is a manual
# clock, the limiter's is real.
history_rate_limit = {{ per_minute = 60000, burst = 1000 }}

[connectors.hook]
kind = "webhook"
url = "{}"
secret = {{ secret = "{}" }}
allow_http = true
"#,
                self.testrail.uri(),
                secret("tr"),
                secret("slack"),
                self.slack.uri(),
                self.hook.url(),
                secret("hook"),
            ),
            "pipeline.toml",
        )
        .unwrap();
        let mut config = base;
        config.connectors = vendors.connectors;
        for p in config.projects.values_mut() {
            p.connectors = ["qa", "chat", "hook"]
                .map(|c| testrelay_domain::ids::ConnectorName::parse(c).unwrap())
                .to_vec();
        }
        config
    }

    pub fn secrets(&self) -> [(&'static str, String); 3] {
        [
            ("tr", "tr-api-key-0123456789".to_string()),
            ("slack", "xoxb-test-token-1234".to_string()),
            ("hook", self.hook.secret_text.clone()),
        ]
    }

    /// What the vendors saw, checked.
    pub async fn check(&self) {
        {
            let tr = self.testrail_state.lock().unwrap();
            assert_eq!(tr.count("add_run"), 1, "one TestRail run: {:?}", tr.calls);
            let mut cases = tr.run_cases(501);
            cases.sort();
            cases.dedup();
            let all = (self.tests * self.shards) as usize;
            assert_eq!(cases.len(), all, "every case once");
            let mut latest = std::collections::HashMap::new();
            for r in &tr.results {
                latest.insert(r.1, r.2);
            }
            assert_eq!(latest.len(), all, "a result for every case");
            assert_eq!(
                (latest[&case_id(2, 1)], latest[&case_id(5, 1)]),
                (1, 1),
                "the re-run's results are latest"
            );
            assert_eq!(latest[&case_id(3, 1)], 5);
        }
        {
            let ch = self.channel.lock().unwrap();
            assert_eq!(ch.ours(), 1, "one Slack message: {:?}", ch.messages);
            let last = &ch
                .updates
                .last()
                .expect("updated as shards arrive and at completion")
                .1;
            assert!(
                !last.contains("shards in"),
                "the final message, not progress, stands last: {last}"
            );
        }
        // Receivers dedupe on webhook-id (a crash right after the send repeats it).
        let events = self.hook.verified_events_as_sent().await;
        let kinds: Vec<&str> = events
            .iter()
            .map(|(_, e)| e["type"].as_str().unwrap())
            .collect();
        let completed: std::collections::HashSet<&str> = events
            .iter()
            .filter(|(_, e)| e["type"] == "pipeline.completed")
            .map(|(id, _)| id.as_str())
            .collect();
        assert_eq!(completed.len(), 1, "{kinds:?}");
        assert!(
            kinds.iter().all(|k| k.starts_with("pipeline.")),
            "{kinds:?}"
        );
    }
}

/// Shard `index` of `shards`: `tests` cases, the first failing unless `passing`.
fn part(index: u32, tests: u32, passing: bool) -> String {
    let mut xml = format!(r#"<testsuite name="shard {index}">"#);
    for k in 1..=tests {
        let id = case_id(index, k);
        if k == 1 && !passing {
            xml.push_str(&format!(
                r#"<testcase name="C{id} test {k}"><failure message="boom"/></testcase>"#
            ));
        } else {
            xml.push_str(&format!(r#"<testcase name="C{id} test {k}"/>"#));
        }
    }
    xml + "</testsuite>"
}

async fn post(
    ingest: Arc<IngestService>,
    index: u32,
    shards: u32,
    tests: u32,
    attempt: u32,
    passing: bool,
) {
    ingest
        .submit(Submission {
            authorization: Some(format!("Bearer {API_KEY}")),
            query: Some(format!(
                "project=web&branch=main&commit=abc1234&pipeline=gh-9&shard={index}/{shards}&attempt={attempt}"
            )),
            body: bytes::Bytes::from(part(index, tests, passing)),
            ..Default::default()
        })
        .await
        .unwrap();
}

/// Delivery workers, one per connector kind.
pub(crate) fn workers(
    service: &Arc<testrelay_domain::delivery::DeliveryService>,
    consumer: Arc<dyn testrelay_domain::ports::QueueConsumer>,
    queue: Arc<dyn testrelay_domain::ports::DeliveryQueue>,
    concurrency: usize,
) -> Vec<testrelay_domain::delivery::worker::Worker> {
    ConnectorKind::ALL
        .into_iter()
        .map(|kind| testrelay_domain::delivery::worker::Worker {
            kind,
            consumer: consumer.clone(),
            queue: queue.clone(),
            service: service.clone(),
            concurrency,
        })
        .collect()
}

/// Posts the shards at once, lets `settle` deliver, posts the re-run of shards 2 and 5
/// (their first tests pass now), settles again.
pub(crate) async fn pipeline<F, Fut>(ingest: Arc<IngestService>, shards: u32, tests: u32, settle: F)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    futures::future::join_all(
        (1..=shards).map(|i| post(ingest.clone(), i, shards, tests, 1, false)),
    )
    .await;
    settle().await;
    for i in [2, 5] {
        post(ingest.clone(), i, shards, tests, 2, true).await;
    }
    settle().await;
}

/// A crash at every point of every step of every connector, once each.
fn crashes() -> Arc<EachPointOnce> {
    Arc::new(EachPointOnce::default())
}

fn crashed_everywhere(c: &EachPointOnce) {
    for point in [
        CrashPoint::BeforeCall,
        CrashPoint::AfterCall,
        CrashPoint::AfterStep,
        CrashPoint::AfterRecord,
    ] {
        assert!(c.count(point) > 0, "no crash injected at {point:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_sharded_pipeline_on_the_embedded_adapters() {
    embedded(None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_sharded_pipeline_on_the_embedded_adapters_with_crashes() {
    let c = crashes();
    embedded(Some(c.clone())).await;
    crashed_everywhere(&c);
}

async fn embedded(faults: Option<Arc<EachPointOnce>>) {
    let vendors = Vendors::start(SHARDS, TESTS).await;
    let dir = tempfile::tempdir().unwrap();
    let base = testrelay_tests::local::config(dir.path(), "http://127.0.0.1:9");
    let config = vendors.config(base, |s| s.to_string());
    let secrets =
        testrelay_embedded::FileSecretStore::new(testrelay_cli::app::secrets_dir(dir.path()));
    for (name, value) in vendors.secrets() {
        secrets.put(name, &value).unwrap();
    }
    let clock = Arc::new(ManualClock::new(T0));
    let faults = faults.map(|f| f as Arc<dyn testrelay_domain::delivery::steps::Faults>);
    let (app, ingest) =
        testrelay_tests::local::on_manual_clock(config, dir.path(), clock.clone(), faults).await;
    let settle = || {
        testrelay_tests::local::settle(&app.store, &clock, MAX_ROUNDS, || {
            app.dispatch_all_pending()
        })
    };
    pipeline(ingest, SHARDS, TESTS, settle).await;
    vendors.check().await;
}

/// Puts `secrets` in `stack`'s Secrets Manager under unique names; answers the stored name
/// of each short one.
pub(crate) async fn aws_secrets(
    stack: &testrelay_tests::aws::Stack,
    secrets: impl IntoIterator<Item = (&'static str, String)>,
) -> impl Fn(&str) -> String {
    let mut names: Vec<(&'static str, String)> = Vec::new();
    for (short, value) in secrets {
        let name = testrelay_tests::unique(&format!("testrelay/{short}"));
        testrelay_tests::aws::put_secret(&stack.sdk, &name, &value).await;
        names.push((short, name));
    }
    move |s: &str| names.iter().find(|(n, _)| *n == s).unwrap().1.clone()
}

/// The AWS adapters on a manual clock: the delivery service (with `faults`, and the
/// configuration's fallbacks) and its workers on a warp queue, and ingest on the same queue.
pub(crate) struct OnAws {
    pub app: testrelay_lambda::bootstrap::AwsApp,
    pub service: Arc<testrelay_domain::delivery::DeliveryService>,
    pub ingest: Arc<IngestService>,
    warp: Arc<testrelay_tests::warp::WarpQueue>,
    clock: Arc<ManualClock>,
    workers: Vec<testrelay_domain::delivery::worker::Worker>,
}

impl OnAws {
    pub async fn start(
        app: testrelay_lambda::bootstrap::AwsApp,
        clock: Arc<ManualClock>,
        faults: Option<Arc<dyn testrelay_domain::delivery::steps::Faults>>,
        concurrency: usize,
    ) -> OnAws {
        use testrelay_domain::delivery::DeliveryService;
        use testrelay_domain::delivery::retry::RetryPolicy;
        let warp = Arc::new(testrelay_tests::warp::WarpQueue::new(
            app.queue.clone(),
            clock.clone(),
        ));
        // Email connectors set to `ses` send through the engine's SES, as on Lambda.
        let env =
            testrelay_connectors::Env::new(&app.config, Arc::new(app.state.clone()), clock.clone())
                .with_ses(testrelay_lambda::bootstrap::ses_transports(app.sdk.clone()));
        let connectors = testrelay_connectors::build(&app.config, &app.secrets, &env)
            .await
            .unwrap();
        let metrics = Arc::new(testrelay_domain::health::metrics::NoMetrics);
        let (ports, ingest_ports) = testrelay_tests::warp::ports_on(&app, &warp, &clock, metrics);
        let mut service = DeliveryService::new(ports, connectors, RetryPolicy::default())
            .with_fallbacks(&app.config, warp.clone());
        if let Some(f) = faults {
            service = service.with_faults(f);
        }
        let service = Arc::new(service);
        let workers = workers(&service, warp.clone(), warp.clone(), concurrency);
        let ingest = Arc::new(IngestService::new(app.config.clone(), ingest_ports));
        OnAws {
            app,
            service,
            ingest,
            warp,
            clock,
            workers,
        }
    }

    /// Delivers until nothing is left (see [`testrelay_tests::warp::settle`]).
    pub async fn settle(&self, max_rounds: usize) {
        let drain = || async {
            let mut handled = 0;
            for w in &self.workers {
                handled += w.drain().await;
            }
            handled
        };
        testrelay_tests::warp::settle(&self.warp, &self.clock, max_rounds, drain).await;
    }
}

/// On the AWS adapters, with a crash at every point of every step of every connector.
async fn a_sharded_pipeline_on_aws(engine: Engine) {
    let vendors = Vendors::start(SHARDS, TESTS).await;
    let stack = testrelay_tests::aws::Stack::create_on(engine).await;
    let secret = aws_secrets(&stack, vendors.secrets()).await;
    let dir = tempfile::tempdir().unwrap();
    let base = testrelay_tests::local::config(dir.path(), "http://127.0.0.1:9");
    let config = vendors.config(base, secret);
    let clock = Arc::new(ManualClock::new(T0));
    let app = testrelay_lambda::bootstrap::AwsApp::new(config, &stack.sdk, stack.resources());
    let crashes = crashes();
    let on = OnAws::start(app, clock, Some(crashes.clone()), 4).await;
    pipeline(on.ingest.clone(), SHARDS, TESTS, || on.settle(MAX_ROUNDS)).await;
    vendors.check().await;
    crashed_everywhere(&crashes);
}

crate::on_engines!(a_sharded_pipeline_on_aws);
