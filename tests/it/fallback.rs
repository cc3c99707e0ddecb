//! Fallback: a Slack delivery Slack refuses for good (`channel_not_found`) is dead-lettered,
//! and a short notice goes through the Slack connector's `fallback` (a webhook) once, shown
//! in the run's status; a message of the dead-lettered delivery arriving again (a crash
//! after dead-lettering, a duplicate) sends nothing more. On the embedded adapters, moto and
//! DynamoDB Local + MiniStack, the delivery workers on a manual clock.

use serde_json::json;
use std::sync::Arc;
use testrelay_domain::config::Config;
use testrelay_domain::delivery::DeliveryService;
use testrelay_domain::ingest::{IngestService, Submission};
use testrelay_domain::ports::{DeliveryState, ManualClock, RunStore};
use testrelay_tests::aws::Engine;
use testrelay_tests::local::API_KEY;
use testrelay_tests::receiver::Receiver;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

const T0: u64 = 1_800_000_000_000;

/// A Slack that refuses every post as Slack does for a channel the bot cannot see.
async fn refusing_slack() -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/api/chat.postMessage"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"ok": false, "error": "channel_not_found"})),
        )
        .mount(&server)
        .await;
    server
}

/// Project `web` to Slack `chat` only; `chat` falls back to webhook `hook`.
fn config(
    base: Config,
    slack: &MockServer,
    hook: &Receiver,
    secret: impl Fn(&str) -> String,
) -> Config {
    let vendors = Config::from_toml(
        &format!(
            r#"
[network]
allow = ["127.0.0.0/8"]

[connectors.chat]
kind = "slack"
token = {{ secret = "{}" }}
channel = "C0123"
api_url = "{}/api"
allow_http = true
fallback = "hook"

[connectors.hook]
kind = "webhook"
url = "{}"
secret = {{ secret = "{}" }}
allow_http = true
"#,
            secret("slack"),
            slack.uri(),
            hook.url(),
            secret("hook"),
        ),
        "fallback.toml",
    )
    .unwrap();
    let mut config = base;
    config.connectors = vendors.connectors;
    for p in config.projects.values_mut() {
        p.connectors = vec![testrelay_domain::ids::ConnectorName::parse("chat").unwrap()];
    }
    config
}

async fn scenario<F, Fut>(
    ingest: Arc<IngestService>,
    runs: Arc<dyn RunStore>,
    delivery: Arc<DeliveryService>,
    hook: &Receiver,
    settle: F,
) where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let accepted = ingest
        .submit(Submission {
            authorization: Some(format!("Bearer {API_KEY}")),
            query: Some("project=web&branch=main&commit=abc1234".into()),
            body: bytes::Bytes::from_static(br#"<testsuite name="unit"><testcase name="a"><failure message="boom"/></testcase></testsuite>"#),
            ..Default::default()
        })
        .await
        .unwrap()
        .accepted;
    settle().await;
    let record = runs.get_run(&accepted.run_id).await.unwrap().unwrap();
    let states: Vec<(&str, DeliveryState)> = record
        .deliveries
        .iter()
        .map(|d| (d.connector.as_str(), d.state))
        .collect();
    assert_eq!(
        states,
        [
            ("chat", DeliveryState::DeadLettered),
            ("chat.fallback", DeliveryState::Delivered)
        ],
        "{record:?}"
    );
    let notice = &record.deliveries[1];
    assert_eq!(notice.notice_for.as_ref().unwrap().as_str(), "chat");
    assert_eq!(notice.via.as_ref().unwrap().as_str(), "hook");
    let events = hook.verified_events_as_sent().await;
    assert_eq!(events.len(), 1, "one notice: {events:?}");
    let (_, event) = &events[0];
    assert_eq!(event["type"], "delivery.fallback");
    let title = event["data"]["headline"].as_str().unwrap();
    assert!(
        title.starts_with("chat delivery (slack) for web · main failed: Slack chat.postMessage: channel_not_found; run /v1/runs/"),
        "{title}"
    );
    // The dead-lettered delivery's message once more (a crash right after dead-lettering
    // brings it back): the notice is not sent again.
    let again = testrelay_domain::ports::DeliveryMessage::new(
        accepted.run_id.clone(),
        testrelay_domain::ids::ConnectorName::parse("chat").unwrap(),
        testrelay_domain::config::ConnectorKind::Slack,
    );
    delivery.handle(&again).await;
    settle().await;
    assert_eq!(
        hook.verified_events_as_sent().await.len(),
        1,
        "still one notice"
    );
}

#[tokio::test]
async fn a_dead_lettered_slack_delivery_falls_back_once_embedded() {
    let slack = refusing_slack().await;
    let hook = Receiver::start(200).await;
    let dir = tempfile::tempdir().unwrap();
    let base = testrelay_tests::local::config(dir.path(), "http://127.0.0.1:9");
    let config = config(base, &slack, &hook, |s| s.to_string());
    let secrets =
        testrelay_embedded::FileSecretStore::new(testrelay_cli::app::secrets_dir(dir.path()));
    secrets.put("slack", "xoxb-test-token-1234").unwrap();
    secrets.put("hook", &hook.secret_text).unwrap();
    let clock = Arc::new(ManualClock::new(T0));
    let (app, ingest) =
        testrelay_tests::local::on_manual_clock(config, dir.path(), clock.clone(), None).await;
    let settle =
        || testrelay_tests::local::settle(&app.store, &clock, 200, || app.dispatch_all_pending());
    scenario(
        ingest,
        Arc::new(app.store.clone()),
        app.delivery.clone(),
        &hook,
        settle,
    )
    .await;
}

async fn a_dead_lettered_slack_delivery_falls_back_once(engine: Engine) {
    let slack = refusing_slack().await;
    let hook = Receiver::start(200).await;
    let stack = testrelay_tests::aws::Stack::create_on(engine).await;
    let secrets = [
        ("slack", "xoxb-test-token-1234".to_string()),
        ("hook", hook.secret_text.clone()),
    ];
    let secret = crate::pipeline_flow::aws_secrets(&stack, secrets).await;
    let dir = tempfile::tempdir().unwrap();
    let base = testrelay_tests::local::config(dir.path(), "http://127.0.0.1:9");
    let config = config(base, &slack, &hook, secret);
    let clock = Arc::new(ManualClock::new(T0));
    let app = testrelay_lambda::bootstrap::AwsApp::new(config, &stack.sdk, stack.resources());
    let on = crate::pipeline_flow::OnAws::start(app, clock, None, 2).await;
    scenario(
        on.ingest.clone(),
        Arc::new(on.app.runs.clone()),
        on.service.clone(),
        &hook,
        || on.settle(200),
    )
    .await;
}

crate::on_engines!(a_dead_lettered_slack_delivery_falls_back_once);

/// Slack down (503s): the delivery retries, its breaker opens; once the run has waited
/// `fallback_after_minutes`, the notice goes out, once, however many retries and deferrals
/// follow (and when the delivery is finally dead-lettered, no second notice).
#[tokio::test]
async fn a_delivery_held_up_by_an_open_breaker_falls_back_once() {
    let slack = MockServer::start().await;
    Mock::given(wiremock::matchers::any())
        .respond_with(ResponseTemplate::new(503))
        .mount(&slack)
        .await;
    let hook = Receiver::start(200).await;
    let dir = tempfile::tempdir().unwrap();
    let base = testrelay_tests::local::config(dir.path(), "http://127.0.0.1:9");
    let mut config = config(base, &slack, &hook, |s| s.to_string());
    if let Some(testrelay_domain::config::ConnectorConfig::Slack(s)) = config
        .connectors
        .get_mut(&testrelay_domain::ids::ConnectorName::parse("chat").unwrap())
    {
        s.fallback_after_minutes = 2;
        // The history lookup's own limit runs on real time; time here is a manual clock.
        s.history_rate_limit = Some(testrelay_domain::config::RateLimit::new(60_000, 1_000));
        // Opens after three failures in a row, and stays open long enough to be seen.
        s.breaker.consecutive_failures = 3;
        s.breaker.cooldown = std::time::Duration::from_secs(600);
    }
    let secrets =
        testrelay_embedded::FileSecretStore::new(testrelay_cli::app::secrets_dir(dir.path()));
    secrets.put("slack", "xoxb-test-token-1234").unwrap();
    secrets.put("hook", &hook.secret_text).unwrap();
    let clock = Arc::new(ManualClock::new(T0));
    let (app, ingest) =
        testrelay_tests::local::on_manual_clock(config, dir.path(), clock.clone(), None).await;
    ingest
        .submit(Submission {
            authorization: Some(format!("Bearer {API_KEY}")),
            query: Some("project=web&branch=main".into()),
            body: bytes::Bytes::from_static(
                br#"<testsuite name="unit"><testcase name="a"/></testsuite>"#,
            ),
            ..Default::default()
        })
        .await
        .unwrap();
    testrelay_tests::local::settle(&app.store, &clock, 2_000, || app.dispatch_all_pending()).await;
    let events = hook.verified_events_as_sent().await;
    assert_eq!(events.len(), 1, "one notice: {events:?}");
    let title = events[0].1["data"]["headline"].as_str().unwrap();
    assert!(
        title.starts_with("chat delivery (slack) for web · main is held up: HTTP 503"),
        "{title}"
    );
}
