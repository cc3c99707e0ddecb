//! Health checks: probes in parallel with a timeout each, the recorded picture and bounded
//! history, CRITICAL / DEGRADED / HEALTHY, alerts only on transitions, an OPEN breaker moved
//! to HALF_OPEN when its target answers, queue problems, `GET /v1/health` and `/metrics`.

use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;
use testrelay_domain::config::Config;
use testrelay_domain::delivery::breaker::{Phase, Signal};
use testrelay_domain::delivery::breakers::Breakers;
use testrelay_domain::health::metrics::MemoryMetrics;
use testrelay_domain::health::{HealthService, Overall};
use testrelay_domain::ports::{Clock, DeadLetter, DeadLetterStore, DeliveryMessage};
use testrelay_tests::vendor::Harness;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

struct Setup {
    h: Harness,
    health: HealthService,
    metrics: Arc<MemoryMetrics>,
    config: Config,
    slack: MockServer,
    testrail: MockServer,
}

/// Slack (the alert route, healthy) and TestRail (critical), both on wiremock.
async fn setup(extra: &str) -> Setup {
    let slack = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/api/auth.test"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"ok": true, "team": "Acme", "user": "bot"})),
        )
        .mount(&slack)
        .await;
    let testrail = MockServer::start().await;
    let h = Harness::new();
    h.secret("t", "token");
    let text = format!(
        r#"
[network]
allow = ["127.0.0.0/8"]

[health]
critical = ["qa"]
alert = "chat"
history = 3
timeout_ms = 500
{extra}

[connectors.chat]
kind = "slack"
token = {{ secret = "t" }}
channel = "C1"
api_url = "{}/api"
allow_http = true

[connectors.qa]
kind = "testrail"
url = "{}"
user = "u@example.com"
api_key = {{ secret = "t" }}
project_id = 7
allow_http = true
"#,
        slack.uri(),
        testrail.uri()
    );
    let config = Config::from_toml(&text, "test.toml").unwrap();
    let connectors = testrelay_connectors::build(&config, &h.secrets, &h.env)
        .await
        .unwrap();
    let metrics = Arc::new(MemoryMetrics::default());
    let health = HealthService::new(
        connectors,
        Arc::new(h.store.clone()),
        Arc::new(h.store.clone()),
        h.clock.clone(),
        metrics.clone(),
        config.health.clone(),
    );
    Setup {
        h,
        health,
        metrics,
        config,
        slack,
        testrail,
    }
}

async fn testrail_answers(s: &Setup, status: u16) {
    s.testrail.reset().await;
    Mock::given(method("GET"))
        .respond_with(
            ResponseTemplate::new(status)
                .set_body_json(json!({"id": 7, "name": "Shop", "suite_mode": 1})),
        )
        .mount(&s.testrail)
        .await;
}

async fn alerts(s: &Setup) -> Vec<String> {
    s.slack
        .received_requests()
        .await
        .unwrap()
        .iter()
        .filter(|r| r.url.path() == "/api/chat.postMessage")
        .map(|r| {
            r.body_json::<Value>().unwrap()["text"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect()
}

#[tokio::test]
async fn transitions_alert_once_and_history_is_bounded() {
    let s = setup("").await;
    Mock::given(method("POST"))
        .and(path("/api/chat.postMessage"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"ok": true, "ts": "1.2"})))
        .mount(&s.slack)
        .await;
    testrail_answers(&s, 500).await;
    let r = s.health.check().await;
    assert_eq!(r.status, Overall::Critical);
    let qa = r
        .connectors
        .iter()
        .find(|c| c.connector.as_str() == "qa")
        .unwrap();
    assert!(!qa.ok && qa.critical);
    assert_eq!(qa.consecutive_failures, 1);
    assert_eq!(qa.error.as_deref(), Some("HTTP 500 Internal Server Error"));
    let chat = r
        .connectors
        .iter()
        .find(|c| c.connector.as_str() == "chat")
        .unwrap();
    assert!(chat.ok);
    assert_eq!(chat.check, "POST auth.test");
    assert_eq!(chat.detail.as_deref(), Some("bot in Acme"));
    assert_eq!(
        alerts(&s).await,
        vec!["testrelay health: CRITICAL (was HEALTHY)"]
    );

    // Still failing: no new alert; failures counted; history kept to 3.
    for _ in 0..3 {
        s.h.clock.advance(Duration::from_secs(300));
        assert_eq!(s.health.check().await.status, Overall::Critical);
    }
    assert_eq!(alerts(&s).await.len(), 1);
    let latest = HealthService::latest(&s.h.store).await.unwrap().unwrap();
    let qa = latest
        .connectors
        .iter()
        .find(|c| c.connector.as_str() == "qa")
        .unwrap();
    assert_eq!(qa.consecutive_failures, 4);
    assert_eq!(qa.history.len(), 3);
    assert!(qa.last_success_at.is_none());

    testrail_answers(&s, 200).await;
    s.h.clock.advance(Duration::from_secs(300));
    let r = s.health.check().await;
    assert_eq!(r.status, Overall::Healthy);
    let qa = r
        .connectors
        .iter()
        .find(|c| c.connector.as_str() == "qa")
        .unwrap();
    assert_eq!(
        (qa.consecutive_failures, qa.detail.as_deref()),
        (0, Some("Shop"))
    );
    assert_eq!(qa.last_success_at.as_deref(), Some(r.checked_at.as_str()));
    assert_eq!(
        alerts(&s).await,
        vec![
            "testrelay health: CRITICAL (was HEALTHY)",
            "testrelay health: HEALTHY (was CRITICAL)"
        ]
    );
    assert_eq!(
        s.metrics
            .gauge_value("HealthStatus", &[("Scope", "overall")]),
        Some(0.0)
    );
    assert_eq!(s.metrics.get("HealthAlerts", &[("Outcome", "sent")]), 2);
}

#[tokio::test]
async fn a_slow_target_times_out_and_a_non_critical_failure_degrades() {
    let s = setup("").await;
    testrail_answers(&s, 200).await;
    s.slack.reset().await;
    Mock::given(method("POST"))
        .and(path("/api/auth.test"))
        .respond_with(ResponseTemplate::new(200).set_delay(Duration::from_secs(5)))
        .mount(&s.slack)
        .await;
    let started = std::time::Instant::now();
    let r = s.health.check().await;
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "probes have a timeout"
    );
    assert_eq!(r.status, Overall::Degraded, "chat is not critical");
    let chat = r
        .connectors
        .iter()
        .find(|c| c.connector.as_str() == "chat")
        .unwrap();
    assert_eq!(chat.error.as_deref(), Some("timed out after 500 ms"));
}

#[tokio::test]
async fn an_open_breaker_goes_half_open_when_its_target_answers() {
    let s = setup("").await;
    testrail_answers(&s, 200).await;
    let qa = testrelay_connectors::build(&s.config, &s.h.secrets, &s.h.env)
        .await
        .unwrap();
    let qa = &qa[&testrelay_domain::ids::ConnectorName::parse("qa").unwrap()];
    let breakers = Breakers::new(
        Arc::new(s.h.store.clone()),
        s.h.clock.clone(),
        s.metrics.clone(),
    );
    for _ in 0..5 {
        breakers
            .record(qa.target(), qa.breaker(), Signal::Failure, false)
            .await;
    }
    assert_eq!(
        breakers
            .load(qa.target(), qa.breaker())
            .await
            .unwrap()
            .0
            .phase,
        Phase::Open
    );
    let r = s.health.check().await;
    let c = r
        .connectors
        .iter()
        .find(|c| c.connector.as_str() == "qa")
        .unwrap();
    assert_eq!(c.breaker, Phase::HalfOpen);
    assert_eq!(
        breakers
            .load(qa.target(), qa.breaker())
            .await
            .unwrap()
            .0
            .phase,
        Phase::HalfOpen
    );
}

#[tokio::test]
async fn dead_letters_and_old_messages_degrade() {
    let s = setup("max_queue_age_s = 60").await;
    testrail_answers(&s, 200).await;
    let msg = DeliveryMessage::new(
        testrelay_domain::ids::RunId::new(s.h.clock.now_ms()),
        testrelay_domain::ids::ConnectorName::parse("qa").unwrap(),
        testrelay_domain::config::ConnectorKind::Testrail,
    );
    use testrelay_domain::ports::DeliveryQueue;
    s.h.store.enqueue(std::slice::from_ref(&msg)).await.unwrap();
    assert_eq!(s.health.check().await.status, Overall::Healthy);
    s.h.clock.advance(Duration::from_secs(120));
    let r = s.health.check().await;
    assert_eq!(r.status, Overall::Degraded);
    assert_eq!(
        r.system.problems,
        vec!["testrail queue: oldest message is 120 s old"]
    );
    s.h.store
        .put(&DeadLetter {
            message: msg,
            reason: "HTTP 400".into(),
            attempts: 1,
            last_status: Some(400),
            at: "t".into(),
        })
        .await
        .unwrap();
    let r = s.health.check().await;
    assert!(
        r.system
            .problems
            .contains(&"testrail dead-letter queue holds 1".to_string())
    );
    let q = &r.system.queues[0];
    assert_eq!((q.depth, q.dead_letters, q.oldest_age_s), (1, 1, Some(120)));
}

#[tokio::test]
async fn health_route_and_prometheus_metrics_locally() {
    let t = testrelay_tests::local::spawn_app().await;
    let r = t
        .client
        .get(format!("{}/v1/health", t.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let r = t
        .admin("GET", "/v1/health", testrelay_tests::local::API_KEY)
        .await;
    assert_eq!(r.status(), 404, "no check has run yet");
    t.app.health.check().await;
    let r = t
        .admin("GET", "/v1/health", testrelay_tests::local::API_KEY)
        .await;
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["status"], "HEALTHY");
    let hook = &body["connectors"][0];
    assert_eq!(hook["connector"], "hook");
    assert_eq!(hook["check"], "POST signed ping event");
    assert_eq!(hook["breaker"], "CLOSED");
    assert!(hook["latency_ms"].is_u64() && hook["last_success_at"].is_string());

    let r = t
        .post_report(
            "project=web",
            r#"<testsuite name="s"><testcase name="a"/><testcase name="b"/></testsuite>"#,
        )
        .await;
    assert_eq!(r.status(), 202);
    t.dispatch_all_pending().await;
    let r = t
        .client
        .get(format!("{}/metrics", t.base))
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.headers()["content-type"],
        "text/plain; version=0.0.4; charset=utf-8"
    );
    let text = r.text().await.unwrap();
    for line in [
        "testrelay_runs_accepted_total 1",
        "testrelay_tests_accepted_total 2",
        "testrelay_delivery_outcome_total{connector=\"hook\",outcome=\"delivered\"} 1",
        "testrelay_health_status{scope=\"overall\"} 0",
        "# TYPE testrelay_delivery_latency_ms summary",
    ] {
        assert!(
            text.lines().any(|l| l == line),
            "missing {line:?} in\n{text}"
        );
    }
}

/// `GET /v1/health` shows a key limited to some projects only their connectors (and the
/// status those make); an admin key sees every connector.
#[tokio::test]
async fn the_health_route_shows_a_key_its_projects_connectors() {
    use testrelay_domain::config::{ConnectorConfig, ProjectConfig};
    use testrelay_domain::ids::{ConnectorName, ProjectName};
    let t = testrelay_tests::local::spawn_app_config(
        200,
        std::sync::Arc::new(testrelay_domain::ports::SystemClock),
        testrelay_domain::delivery::retry::RetryPolicy::default(),
        |c| {
            let hook = c.connectors.values().next().unwrap().clone();
            let ConnectorConfig::Webhook(mut other) = hook else {
                panic!("the test config's connector is a webhook")
            };
            other.url = "http://127.0.0.1:9/other-team".into();
            c.connectors.insert(
                ConnectorName::parse("other-team").unwrap(),
                ConnectorConfig::Webhook(other),
            );
            c.projects.insert(
                ProjectName::parse("mobile").unwrap(),
                ProjectConfig {
                    connectors: vec![ConnectorName::parse("other-team").unwrap()],
                    pipeline_quiet_minutes: 10,
                    when: Default::default(),
                    default_branch: "main".into(),
                    history: Default::default(),
                },
            );
        },
    )
    .await;
    t.app.health.check().await;
    let names = |body: &Value| -> Vec<String> {
        body["connectors"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["connector"].as_str().unwrap().to_string())
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect()
    };
    let admin: Value = t
        .admin("GET", "/v1/health", testrelay_tests::local::ADMIN_KEY)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(names(&admin), ["hook", "other-team"]);
    assert_ne!(
        admin["status"], "HEALTHY",
        "the other team's target is down"
    );
    let web: Value = t
        .admin("GET", "/v1/health", testrelay_tests::local::API_KEY)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        names(&web),
        ["hook"],
        "the web key sees web's connector only"
    );
    assert_eq!(web["status"], "HEALTHY", "and the status it makes");
}
