//! The webhook connector against wiremock: the exact request Standard Webhooks prescribes,
//! and how every kind of answer is classified.

use secrecy::SecretString;
use std::sync::Arc;
use std::time::Duration;
use testrelay_connectors::webhook::WebhookConnector;
use testrelay_domain::config::ConnectorKind;
use testrelay_domain::config::{ConnectorConfig, SecretRef, WebhookConfig};
use testrelay_domain::delivery::signing::WebhookSecret;
use testrelay_domain::delivery::steps::{NoFaults, Steps};
use testrelay_domain::ids::ConnectorName;
use testrelay_domain::ids::RunId;
use testrelay_domain::ports::{
    Connector, DeliveryContext, DeliveryError, DeliveryMessage, ErrorClass, StepError, SystemClock,
};
use testrelay_domain::report::model::{Format, Report, RunMeta, Status, Suite, TestCase, TestRun};
use testrelay_embedded::SqliteStore;
use wiremock::matchers::{body_partial_json, header, header_exists, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

fn run() -> TestRun {
    let mut failing = TestCase::new("checkout fails", Status::Failed);
    failing.message = Some("expected 200".into());
    let report = Report {
        format: Format::Junit,
        tool: None,
        duration_ms: Some(1200.0),
        suites: vec![Suite {
            name: "shop".into(),
            file: None,
            duration_ms: None,
            properties: vec![],
            cases: vec![TestCase::new("browse", Status::Passed), failing],
        }],
    };
    TestRun {
        changes: None,
        run_id: RunId::parse("01ARZ3NDEKTSV4RRFFQ69G5FAV").unwrap(),
        received_at: "2026-11-22T10:00:00.000Z".into(),
        meta: RunMeta {
            project: "web".into(),
            branch: Some("main".into()),
            commit: Some("abc123".into()),
            build_url: None,
            environment: None,
            pipeline: None,
        },
        summary: report.summary(),
        report,
    }
}

fn ctx(now_ms: u64) -> DeliveryContext {
    DeliveryContext {
        event_id: "evt_01ARZ3NDEKTSV4RRFFQ69G5FAV_team".into(),
        attempt: 1,
        now_ms,
        generation: 0,
        status_url: "/v1/runs/01ARZ3NDEKTSV4RRFFQ69G5FAV".into(),
    }
}

/// Step records in a fresh embedded store (the connector runs its POST as one step).
fn steps() -> (Steps, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(SystemClock);
    let store = SqliteStore::open(&dir.path().join("t.db"), clock.clone()).unwrap();
    let message = DeliveryMessage::new(
        RunId::parse("01ARZ3NDEKTSV4RRFFQ69G5FAV").unwrap(),
        ConnectorName::parse("team").unwrap(),
        ConnectorKind::Webhook,
    );
    (
        Steps::new(Arc::new(store), clock, Arc::new(NoFaults), message),
        dir,
    )
}

/// The connector; its state lives in `steps`' store directory (`dir`).
fn connector(
    url: String,
    secret: &str,
    timeout_ms: u64,
    dir: &tempfile::TempDir,
) -> WebhookConnector {
    let config = WebhookConfig {
        fallback: None,
        fallback_after_minutes: 60,
        url,
        secret: SecretRef::Env("UNUSED".into()),
        timeout_ms,
        allow_http: true,
        breaker: Default::default(),
        rate_limit: None,
        probe_url: None,
        parts: false,
    };
    let clock = Arc::new(SystemClock);
    let store = SqliteStore::open(&dir.path().join("t.db"), clock.clone()).unwrap();
    let allow =
        testrelay_domain::config::Config::from_toml("[network]\nallow = [\"127.0.0.0/8\"]", "t")
            .unwrap();
    let env = testrelay_connectors::Env::new(&allow, Arc::new(store), clock);
    WebhookConnector::new(
        &ConnectorName::parse("team").unwrap(),
        &ConnectorConfig::Webhook(config.clone()),
        &config,
        &SecretString::from(secret.to_string()),
        &env,
    )
    .unwrap()
}

/// The event's `timestamp` is when it happened (the run's acceptance), the same on every
/// retry, as Standard Webhooks defines it; `webhook-timestamp` is the attempt's send time.
#[tokio::test]
async fn a_retry_carries_the_events_own_timestamp() {
    let server = MockServer::start().await;
    let (_, secret) = WebhookSecret::generate();
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(503))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(204))
        .mount(&server)
        .await;
    let (steps, dir) = steps();
    let webhook = connector(format!("{}/in", server.uri()), &secret, 5_000, &dir);
    let accepted = 1_795_341_600_000; // the run's received_at
    let first = webhook
        .deliver(&run(), &ctx(accepted + 5_000), &steps)
        .await;
    assert!(first.is_err(), "the 503 is a failed attempt");
    let second = webhook
        .deliver(&run(), &ctx(accepted + 600_000), &steps)
        .await;
    assert_eq!(second.unwrap().status_code, Some(204));
    let requests = server.received_requests().await.unwrap();
    assert_eq!(requests.len(), 2);
    let sent: Vec<(String, String)> = requests
        .iter()
        .map(|r| {
            let body: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
            (
                body["timestamp"].as_str().unwrap().to_string(),
                r.headers["webhook-timestamp"].to_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        sent[0].0, "2026-11-22T10:00:00.000Z",
        "when the run was accepted"
    );
    assert_eq!(sent[0].0, sent[1].0, "the same on the retry");
    assert_eq!(
        (sent[0].1.as_str(), sent[1].1.as_str()),
        ("1795341605", "1795342200"),
        "the send times"
    );
}

#[tokio::test]
async fn sends_the_documented_request() {
    let server = MockServer::start().await;
    let (_, secret) = WebhookSecret::generate();
    let now_ms = 1_795_341_600_000;
    let expected_signature = WebhookSecret::parse(&secret).unwrap().sign(
        "evt_01ARZ3NDEKTSV4RRFFQ69G5FAV_team",
        1_795_341_600,
        &serde_json::to_vec(&testrelay_domain::report::payload::run_completed(
            &run(),
            "/v1/runs/01ARZ3NDEKTSV4RRFFQ69G5FAV",
            "2026-11-22T10:00:00.000Z",
        ))
        .unwrap(),
    );
    Mock::given(method("POST"))
        .and(path("/in"))
        .and(header("content-type", "application/json"))
        .and(header("webhook-id", "evt_01ARZ3NDEKTSV4RRFFQ69G5FAV_team"))
        .and(header("webhook-timestamp", "1795341600"))
        .and(header_exists("webhook-signature"))
        .and(header_exists("user-agent"))
        .and(body_partial_json(serde_json::json!({
            "type": "run.completed",
            "timestamp": "2026-11-22T10:00:00.000Z",
            "data": {
                "run_id": "01ARZ3NDEKTSV4RRFFQ69G5FAV",
                "status_url": "/v1/runs/01ARZ3NDEKTSV4RRFFQ69G5FAV",
                "project": "web", "branch": "main", "commit": "abc123",
                "outcome": "failed",
                "summary": {"total": 2, "passed": 1, "failed": 1, "duration_ms": 1200},
                "failures": [{"suite": "shop", "name": "checkout fails", "status": "failed", "message": "expected 200"}],
                "failures_omitted": 0
            }
        })))
        .respond_with(ResponseTemplate::new(204))
        .expect(1)
        .mount(&server)
        .await;
    let (steps, dir) = steps();
    let webhook = connector(format!("{}/in", server.uri()), &secret, 5_000, &dir);
    let delivered = webhook.deliver(&run(), &ctx(now_ms), &steps).await.unwrap();
    assert_eq!(delivered.status_code, Some(204));
    // A retry after the step completed (a crash before bookkeeping) does not post again.
    let again = webhook.deliver(&run(), &ctx(now_ms), &steps).await.unwrap();
    assert_eq!(again.status_code, Some(204));
    assert!(again.resumed && !delivered.resumed);
    // wiremock's header matcher splits values on commas, so the signature is checked here.
    let request = &server.received_requests().await.unwrap()[0];
    assert_eq!(
        request.headers["webhook-signature"],
        expected_signature.as_str()
    );
}

fn failed(e: StepError) -> DeliveryError {
    match e {
        StepError::Failed(e) => e,
        other => panic!("expected a failed attempt, got {other}"),
    }
}

async fn answer(template: ResponseTemplate) -> DeliveryError {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(template)
        .mount(&server)
        .await;
    let (_, secret) = WebhookSecret::generate();
    let (steps, dir) = steps();
    let webhook = connector(
        format!("{}/in?token=s3cr3t-in-url", server.uri()),
        &secret,
        300,
        &dir,
    );
    failed(
        webhook
            .deliver(&run(), &ctx(1_795_341_600_000), &steps)
            .await
            .unwrap_err(),
    )
}

#[tokio::test]
async fn classifies_answers() {
    let e = answer(ResponseTemplate::new(503)).await;
    assert_eq!((e.class, e.status_code), (ErrorClass::Transient, Some(503)));
    let e = answer(ResponseTemplate::new(408)).await;
    assert_eq!(e.class, ErrorClass::Transient);
    let e = answer(ResponseTemplate::new(429).insert_header("retry-after", "42")).await;
    assert_eq!(e.class, ErrorClass::Throttled);
    assert_eq!(e.retry_after, Some(Duration::from_secs(42)));
    let e = answer(ResponseTemplate::new(410)).await;
    assert_eq!(e.class, ErrorClass::Permanent);
    assert!(e.detail.contains("410 Gone"));
    let e = answer(ResponseTemplate::new(401)).await;
    assert_eq!(e.class, ErrorClass::Permanent);
}

#[tokio::test]
async fn never_follows_redirects() {
    let target = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200))
        .expect(0)
        .mount(&target)
        .await;
    let e = answer(
        ResponseTemplate::new(307)
            .insert_header("location", format!("{}/elsewhere", target.uri()).as_str()),
    )
    .await;
    assert_eq!((e.class, e.status_code), (ErrorClass::Permanent, Some(307)));
    assert!(e.detail.contains("redirects are not followed"));
}

#[tokio::test]
async fn timeouts_and_refused_connections_are_transient_and_hide_the_url() {
    let e = answer(ResponseTemplate::new(200).set_delay(Duration::from_secs(5))).await;
    assert_eq!(e.class, ErrorClass::Transient);
    assert!(e.detail.contains("timed out after 300 ms"), "{}", e.detail);
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    let (_, secret) = WebhookSecret::generate();
    let (steps, dir) = steps();
    let webhook = connector(
        format!("http://127.0.0.1:{port}/in?token=s3cr3t-in-url"),
        &secret,
        300,
        &dir,
    );
    let e = failed(
        webhook
            .deliver(&run(), &ctx(1_795_341_600_000), &steps)
            .await
            .unwrap_err(),
    );
    assert_eq!(e.class, ErrorClass::Transient);
    assert!(
        !e.detail.contains("s3cr3t"),
        "the URL (and its token) stays out of errors: {}",
        e.detail
    );
}

/// A classified result's event carries what changed (counts, base, the tests: new failures
/// first) and each listed failure's class; the event's own failures list new ones first.
#[test]
fn the_event_says_what_changed() {
    let mut run = testrelay_tests::vendor::sample_run_with_changes();
    run.meta.pipeline = Some(testrelay_domain::report::model::PipelineRef {
        id: "gh-1".into(),
        shard: None,
        attempt: 1,
        completion: Some(1),
    });
    let e = testrelay_domain::report::payload::run_completed(&run, "/v1/runs/x", "t");
    assert_eq!(e["type"], "pipeline.completed");
    let changes = &e["data"]["changes"];
    assert_eq!(changes["counts"]["new"], 1);
    assert_eq!(changes["counts"]["still_failing"], 1);
    assert_eq!(changes["base"]["branch"], "main");
    assert_eq!(changes["tests"][0]["class"], "new");
    let failures = e["data"]["failures"].as_array().unwrap();
    assert_eq!(failures[0]["class"], "new");
    assert_eq!(failures[1]["class"], "still_failing");
    assert!(
        failures[0]["name"]
            .as_str()
            .unwrap()
            .contains("checkout fails")
    );
}
