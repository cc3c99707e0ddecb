//! The shared HTTP layer: addresses refused after DNS resolution (SSRF), a webhook endpoint
//! disabled by 410 Gone, and a burst of 200 runs to one rate-limited target.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use testrelay_domain::config::{ConnectorConfig, RateLimit};
use testrelay_domain::delivery::retry::RetryPolicy;
use testrelay_domain::ports::{ErrorClass, SystemClock};
use testrelay_tests::local::spawn_app_config;
use testrelay_tests::vendor::*;
use wiremock::matchers::method;
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

/// A harness whose network policy is the default one: nothing private allowed.
fn strict() -> Harness {
    let mut h = Harness::new();
    let config = testrelay_domain::config::Config::from_toml("", "test").unwrap();
    h.env = testrelay_connectors::Env::new(&config, Arc::new(h.store.clone()), h.clock.clone());
    h
}

async fn webhook_to(h: &Harness, url: &str) -> Arc<dyn testrelay_domain::ports::Connector> {
    h.secret(
        "hook",
        &testrelay_domain::delivery::signing::WebhookSecret::generate().1,
    );
    h.connector("c", &format!("kind = \"webhook\"\nurl = \"{url}\"\nsecret = {{ secret = \"hook\" }}\nallow_http = true"))
        .await
}

#[tokio::test]
async fn private_addresses_are_refused_after_resolution() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200))
        .expect(0)
        .mount(&server)
        .await;
    let port = server.address().port();
    let h = strict();
    for url in [
        format!("http://127.0.0.1:{port}/hook"),
        // A name that resolves to loopback: judged on the resolved address.
        format!("http://localhost:{port}/hook"),
        "http://169.254.169.254/latest/meta-data/".to_string(),
        "http://[::ffff:10.0.0.1]/hook".to_string(),
    ] {
        let c = webhook_to(&h, &url).await;
        let e = failed(deliver(&h, c.as_ref(), &sample_run(), 0).await);
        assert_eq!(e.class, ErrorClass::Permanent, "{url}: {}", e.detail);
        assert!(e.detail.contains("refus"), "{url}: {}", e.detail);
    }
    // The same endpoint, allow-listed (as the tests' harness does), is reached.
    let open = Harness::new();
    let c = webhook_to(&open, &format!("http://127.0.0.1:{port}/hook")).await;
    server.reset().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(204))
        .expect(1)
        .mount(&server)
        .await;
    deliver(&open, c.as_ref(), &sample_run(), 0).await.unwrap();
}

#[tokio::test]
async fn gone_disables_the_endpoint_until_its_url_changes() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(410))
        .expect(1)
        .mount(&server)
        .await;
    let h = Harness::new();
    let c = webhook_to(&h, &format!("{}/hook", server.uri())).await;
    let e = failed(deliver(&h, c.as_ref(), &sample_run(), 0).await);
    assert_eq!(e.class, ErrorClass::Permanent);
    assert!(
        e.detail.contains("410 Gone") && e.detail.contains("disabled"),
        "{}",
        e.detail
    );
    // Later runs are not sent; the error says why.
    let mut other = sample_run();
    other.run_id = testrelay_domain::ids::RunId::parse("01ARZ3NDEKTSV4RRFFQ69G5FAW").unwrap();
    let e = failed(deliver(&h, c.as_ref(), &other, 0).await);
    assert!(
        e.detail.starts_with("endpoint disabled since"),
        "{}",
        e.detail
    );
    // A new URL for the connector is a new endpoint.
    let moved = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200))
        .expect(1)
        .mount(&moved)
        .await;
    let c = webhook_to(&h, &format!("{}/hook", moved.uri())).await;
    deliver(&h, c.as_ref(), &other, 0).await.unwrap();
}

#[tokio::test]
async fn a_burst_of_200_runs_stays_within_the_rate_limit_and_finishes() {
    // 50 a second with bursts of 10: 200 runs take about 4 s.
    let limit = RateLimit::new(3000, 10);
    let vendor = MockServer::start().await;
    let arrivals: Arc<Mutex<Vec<Instant>>> = Arc::default();
    let a = arrivals.clone();
    Mock::given(method("POST"))
        .respond_with(move |_: &Request| {
            a.lock().unwrap().push(Instant::now());
            ResponseTemplate::new(200)
        })
        .mount(&vendor)
        .await;
    let url = format!("{}/hook", vendor.uri());
    let app = spawn_app_config(200, Arc::new(SystemClock), RetryPolicy::default(), |c| {
        for cfg in c.connectors.values_mut() {
            if let ConnectorConfig::Webhook(w) = cfg {
                w.url = url.clone();
                w.rate_limit = Some(limit);
            }
        }
    })
    .await;
    let body = r#"<testsuite name="s"><testcase name="a"/></testsuite>"#;
    for i in 0..200 {
        let r = app
            .post_report(&format!("project=web&branch=b{i}"), body)
            .await;
        assert_eq!(r.status(), 202);
    }
    let (_tx, rx) = tokio::sync::watch::channel(false);
    let _workers = app.app.spawn_workers(rx);
    testrelay_tests::eventually(Duration::from_secs(60), "200 deliveries", || {
        let arrivals = arrivals.clone();
        async move { (arrivals.lock().unwrap().len() >= 200).then_some(()) }
    })
    .await;
    let mut t = arrivals.lock().unwrap().clone();
    assert_eq!(t.len(), 200, "each run delivered once");
    t.sort();
    // In any one-second window: at most the burst plus a second's worth (50), with one
    // request of slack for scheduling jitter between the limiter and the server's clock.
    let allowed = (limit.burst + limit.per_minute / 60 + 1) as usize;
    for (i, start) in t.iter().enumerate() {
        let in_window = t[i..]
            .iter()
            .take_while(|x| x.duration_since(*start) < Duration::from_secs(1))
            .count();
        assert!(
            in_window <= allowed,
            "{in_window} requests within one second (limit {allowed})"
        );
    }
    let took = t[199].duration_since(t[0]);
    assert!(
        took >= Duration::from_millis(3000),
        "200 requests at 50/s took only {took:?}"
    );
}

#[tokio::test]
async fn webhook_probes_sign_a_ping_or_get_the_probe_url() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(wiremock::matchers::path("/hook"))
        .and(wiremock::matchers::body_partial_json(
            serde_json::json!({"type": "ping"}),
        ))
        .and(wiremock::matchers::header_exists("webhook-signature"))
        .respond_with(ResponseTemplate::new(204))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(wiremock::matchers::path("/health"))
        .respond_with(ResponseTemplate::new(503))
        .expect(1)
        .mount(&server)
        .await;
    let h = Harness::new();
    let c = webhook_to(&h, &format!("{}/hook", server.uri())).await;
    assert_eq!(c.probe().await.unwrap().check, "POST signed ping event");
    let c = h
        .connector(
            "c",
            &format!(
                "kind = \"webhook\"\nurl = \"{0}/hook\"\nprobe_url = \"{0}/health\"\nsecret = {{ secret = \"hook\" }}\nallow_http = true",
                server.uri()
            ),
        )
        .await;
    let e = c.probe().await.unwrap_err();
    assert_eq!(e.status_code, Some(503));
}
