//! `testrelay send`, the CI client, against the real local app and against a flaky server.

use testrelay_cli::send::{SendArgs, send};
use testrelay_tests::corpus;
use testrelay_tests::local::{API_KEY, spawn_app};
use wiremock::matchers::{header, header_exists, method, path, query_param};
use wiremock::{Mock, MockServer, ResponseTemplate};

fn args(url: &str, file: &str) -> SendArgs {
    SendArgs {
        file: corpus(file),
        url: url.to_string(),
        project: "web".into(),
        branch: Some("main".into()),
        commit: Some("abc123".into()),
        build_url: None,
        environment: Some("staging".into()),
        format: None,
        retries: 2,
        timeout: 10,
        api_key_env: "UNUSED".into(),
    }
}

#[tokio::test]
async fn sends_gzipped_and_the_run_is_delivered() {
    let t = spawn_app().await;
    let body = send(
        &args(&t.base, "ctrf/ctrf/examples/comprehensive.json"),
        API_KEY,
    )
    .await
    .unwrap();
    let id = body["run_id"].as_str().unwrap();
    assert_eq!(t.dispatch_all_pending().await, 1);
    let status: serde_json::Value = t.get_run(id).await.json().await.unwrap();
    assert_eq!(status["meta"]["environment"], "staging");
    assert_eq!(status["format"], "ctrf");
    assert_eq!(status["deliveries"][0]["state"], "delivered");
}

#[tokio::test]
async fn a_rejected_report_is_an_error_with_the_reason() {
    let t = spawn_app().await;
    let err = send(
        &args(&t.base, "junit/go-junit-report/testdata/014-panic.txt"),
        API_KEY,
    )
    .await
    .unwrap_err();
    assert!(err.contains("HTTP 400"), "{err}");
    assert!(err.contains("not a recognised report"), "{err}");
    let err = send(
        &args(&t.base, "ctrf/ctrf/examples/minimal.json"),
        "wrong-key",
    )
    .await
    .unwrap_err();
    assert!(err.contains("HTTP 401"), "{err}");
}

#[tokio::test]
async fn retries_server_errors_with_the_same_idempotency_key() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/reports"))
        .respond_with(ResponseTemplate::new(503))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/v1/reports"))
        .and(query_param("project", "web"))
        .and(query_param("commit", "abc123"))
        .and(header("content-encoding", "gzip"))
        .and(header(
            "authorization",
            format!("Bearer {API_KEY}").as_str(),
        ))
        .and(header_exists("idempotency-key"))
        .respond_with(ResponseTemplate::new(202).set_body_json(serde_json::json!({
            "run_id": "01ARZ3NDEKTSV4RRFFQ69G5FAV",
            "status_url": "/v1/runs/01ARZ3NDEKTSV4RRFFQ69G5FAV",
            "deliveries": [],
            "summary": {"total": 1}
        })))
        .with_priority(2)
        .mount(&server)
        .await;
    let body = send(
        &args(&server.uri(), "ctrf/ctrf/examples/minimal.json"),
        API_KEY,
    )
    .await
    .unwrap();
    assert_eq!(body["run_id"], "01ARZ3NDEKTSV4RRFFQ69G5FAV");
    let requests = server.received_requests().await.unwrap();
    assert_eq!(requests.len(), 2);
    assert_eq!(
        requests[0].headers["idempotency-key"], requests[1].headers["idempotency-key"],
        "a retry must not be able to create a second run"
    );
}
