//! Datadog against wiremock: the documented event (`/api/v1/events`) and series
//! (`/api/v2/series`) requests with `DD-API-KEY`, Datadog's real answers (202 with the event,
//! 403 `Forbidden`, 429 with its `X-RateLimit-*` headers), its size limits with 10,000
//! failures, sites, the probe, and what a crash does (a resent event groups with the first).

use serde_json::{Value, json};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use testrelay_connectors::datadog;
use testrelay_domain::delivery::steps::CrashPoint;
use testrelay_domain::ports::ErrorClass;
use testrelay_tests::vendor::*;
use wiremock::matchers::{body_json, header, method, path};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

const KEY: &str = "0123456789abcdef0123456789abcdef";

async fn datadog(h: &Harness, server: &MockServer) -> Arc<dyn testrelay_domain::ports::Connector> {
    h.secret("dd", KEY);
    h.connector(
        "c",
        &format!(
            "kind = \"datadog\"\napi_key = {{ secret = \"dd\" }}\napi_url = \"{}\"\nallow_http = true\ntags = [\"team:web\"]",
            server.uri()
        ),
    )
    .await
}

/// The event as Datadog's intake answers it.
fn accepted_event() -> ResponseTemplate {
    ResponseTemplate::new(202).set_body_json(json!({
        "status": "ok",
        "event": {"id": 7180000000000000001u64, "id_str": "7180000000000000001",
                  "title": "Tests failed: web · main · a1b2c3d", "text": "…",
                  "date_happened": 1795341600, "handle": null, "priority": "normal",
                  "related_event_id": null, "tags": ["source:testrelay"],
                  "url": "https://app.datadoghq.com/event/event?id=7180000000000000001"}
    }))
}

#[tokio::test]
async fn sends_the_event_and_the_series_once() {
    let server = MockServer::start().await;
    let run = sample_run_with_changes();
    let extra = vec!["team:web".to_string()];
    let event = datadog::event(&run, &ctx("c", 0).status_url, 10, &extra);
    assert_eq!(event["alert_type"], "error");
    assert_eq!(
        event["aggregation_key"],
        "testrelay:web:main:run:01ARZ3NDEKTSV4RRFFQ69G5FAV"
    );
    let tags: Vec<&str> = event["tags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap())
        .collect();
    assert_eq!(
        tags,
        [
            "source:testrelay",
            "project:web",
            "branch:main",
            "team:web",
            "testrelay_run:01arz3ndektsv4rrffq69g5fav"
        ]
    );
    Mock::given(method("POST"))
        .and(path("/api/v1/events"))
        .and(header("DD-API-KEY", KEY))
        .and(header("content-type", "application/json"))
        .and(body_json(&event))
        .respond_with(accepted_event())
        .expect(1)
        .mount(&server)
        .await;
    let series = datadog::series(&run, &extra);
    assert_eq!(series["series"][2]["metric"], "testrelay.tests.failed");
    assert_eq!(series["series"][2]["points"][0]["value"], 2.0);
    Mock::given(method("POST"))
        .and(path("/api/v2/series"))
        .and(header("DD-API-KEY", KEY))
        .and(body_json(&series))
        .respond_with(ResponseTemplate::new(202).set_body_json(json!({"errors": []})))
        .expect(1)
        .mount(&server)
        .await;
    let h = Harness::new();
    let c = datadog(&h, &server).await;
    let d = deliver(&h, c.as_ref(), &run, 0).await.unwrap();
    assert_eq!(
        d.external_ref.as_deref(),
        Some("datadog event 7180000000000000001")
    );
    assert!(deliver(&h, c.as_ref(), &run, 0).await.unwrap().resumed);
}

#[tokio::test]
async fn datadogs_answers_are_read_as_it_means_them() {
    let cases = [
        (
            ResponseTemplate::new(403).set_body_json(json!({"errors": ["Forbidden"]})),
            ErrorClass::Permanent,
            None,
        ),
        (
            // As Datadog limits: the period's size, what is left, seconds until it resets.
            ResponseTemplate::new(429)
                .insert_header("x-ratelimit-limit", "1000")
                .insert_header("x-ratelimit-period", "60")
                .insert_header("x-ratelimit-remaining", "0")
                .insert_header("x-ratelimit-reset", "7")
                .set_body_json(json!({"errors": ["Rate limit of 1000 requests in 60 seconds reached. Please try again later."]})),
            ErrorClass::Throttled,
            Some(7),
        ),
        (
            ResponseTemplate::new(400).set_body_json(json!({"errors": ["Event too far in the past (older than 18 hours)"]})),
            ErrorClass::Permanent,
            None,
        ),
        (ResponseTemplate::new(503).set_body_string("upstream connect error"), ErrorClass::Transient, None),
    ];
    for (answer, class, retry_after) in cases {
        let e = error_for(answer, |h, s| Box::pin(datadog(h, s))).await;
        assert_eq!(e.class, class, "{e:?}");
        if let Some(secs) = retry_after {
            let got = e.retry_after.unwrap();
            assert!(
                got <= Duration::from_secs(secs) && got >= Duration::from_secs(secs - 1),
                "{e:?}"
            );
        }
        assert!(!e.detail.contains(KEY), "the key stays out of errors");
    }
}

/// A crash after Datadog took the event: the retry sends it again under the same
/// aggregation key and run tag, so the two group as one rollup.
#[tokio::test]
async fn a_resent_event_groups_with_the_first() {
    for (point, events) in [(CrashPoint::BeforeCall, 1), (CrashPoint::AfterCall, 2)] {
        let server = MockServer::start().await;
        let seen: Arc<Mutex<Vec<Value>>> = Arc::default();
        let log = seen.clone();
        Mock::given(method("POST"))
            .and(path("/api/v1/events"))
            .respond_with(move |r: &Request| {
                log.lock().unwrap().push(r.body_json().unwrap());
                accepted_event()
            })
            .mount(&server)
            .await;
        Mock::given(method("POST"))
            .and(path("/api/v2/series"))
            .respond_with(ResponseTemplate::new(202).set_body_json(json!({"errors": []})))
            .mount(&server)
            .await;
        let h = Harness::new();
        let c = datadog(&h, &server).await;
        crash_then_retry(&h, c.as_ref(), &sample_run(), point, "event").await;
        let seen = seen.lock().unwrap();
        assert_eq!(seen.len(), events, "{point:?}");
        assert!(
            seen.iter()
                .all(|e| e["aggregation_key"] == seen[0]["aggregation_key"])
        );
    }
}

#[tokio::test]
async fn ten_thousand_failures_stay_within_datadogs_limits() {
    let mut run = run_with_failures(10_000);
    run.meta.branch = Some(format!("feature/{}", "x".repeat(300)));
    let e = datadog::event(&run, &ctx("c", 0).status_url, 10_000, &[]);
    let chars = |v: &Value| v.as_str().unwrap().chars().count();
    assert!(chars(&e["title"]) <= datadog::MAX_TITLE);
    assert!(chars(&e["text"]) <= datadog::MAX_TEXT);
    assert!(chars(&e["aggregation_key"]) <= datadog::MAX_AGGREGATION_KEY);
    assert!(
        e["tags"]
            .as_array()
            .unwrap()
            .iter()
            .all(|t| chars(t) <= datadog::MAX_TAG)
    );
    let text = e["text"].as_str().unwrap();
    assert!(text.starts_with("%%% \n") && text.ends_with("\n %%%"));
    assert!(
        text.contains("more failures") && text.contains("testrelay run "),
        "{text}"
    );
}

#[tokio::test]
async fn sites_and_the_probe() {
    assert_eq!(
        datadog::api_base("datadoghq.eu"),
        "https://api.datadoghq.eu"
    );
    assert_eq!(
        datadog::api_base("us3.datadoghq.com"),
        "https://api.us3.datadoghq.com"
    );
    assert_eq!(
        datadog::api_base("ddog-gov.com"),
        "https://api.ddog-gov.com"
    );
    let bad = testrelay_domain::config::Config::from_toml(
        "[connectors.dd]\nkind = \"datadog\"\napi_key = { secret = \"dd\" }\nsite = \"datadog.com\"\n",
        "test",
    )
    .err()
    .unwrap()
    .to_string();
    assert!(
        bad.contains("connectors.dd.site: must be one of datadoghq.com"),
        "{bad}"
    );
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/api/v1/validate"))
        .and(header("DD-API-KEY", KEY))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"valid": true})))
        .expect(1)
        .mount(&server)
        .await;
    let h = Harness::new();
    let c = datadog(&h, &server).await;
    assert_eq!(c.probe().await.unwrap().check, "GET /api/v1/validate");
}

#[tokio::test]
async fn rendered_event_fixture() {
    let e = datadog::event(&sample_run_with_changes(), &ctx("c", 0).status_url, 10, &[]);
    assert!(e["text"].as_str().unwrap().contains("- NEW · "));
    fixture("datadog-event.json", &e);
}
