//! Microsoft Teams against wiremock: the Workflows webhook message with an Adaptive Card
//! 1.4, its size limit with 10,000 failures, and what a crash does.

use serde_json::json;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use testrelay_connectors::teams;
use testrelay_domain::delivery::steps::CrashPoint;
use testrelay_domain::ports::ErrorClass;
use testrelay_tests::vendor::*;
use wiremock::matchers::{body_json, header, method, path, query_param};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

const FLOW_PATH: &str = "/workflows/abc/triggers/manual/paths/invoke";

async fn teams(h: &Harness, server: &MockServer) -> Arc<dyn testrelay_domain::ports::Connector> {
    h.secret(
        "teams-url",
        &format!("{}{FLOW_PATH}?api-version=1&sig=s3cr3t", server.uri()),
    );
    h.connector(
        "c",
        "kind = \"teams\"\nurl = { secret = \"teams-url\" }\nallow_http = true",
    )
    .await
}

#[tokio::test]
async fn posts_the_adaptive_card_once() {
    let server = MockServer::start().await;
    let run = sample_run();
    let expected = teams::message(&run, &ctx("c", 0).status_url, 10);
    assert_eq!(expected["attachments"][0]["content"]["version"], "1.4");
    assert_eq!(
        expected["attachments"][0]["contentType"],
        "application/vnd.microsoft.card.adaptive"
    );
    Mock::given(method("POST"))
        .and(path(FLOW_PATH))
        .and(query_param("sig", "s3cr3t"))
        .and(header("content-type", "application/json"))
        .and(body_json(&expected))
        .respond_with(ResponseTemplate::new(202))
        .expect(1)
        .mount(&server)
        .await;
    let h = Harness::new();
    let c = teams(&h, &server).await;
    let d = deliver(&h, c.as_ref(), &run, 0).await.unwrap();
    assert_eq!(d.status_code, Some(202));
    assert!(deliver(&h, c.as_ref(), &run, 0).await.unwrap().resumed);
}

#[tokio::test]
async fn errors_never_show_the_signed_url() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(400))
        .mount(&server)
        .await;
    let h = Harness::new();
    let c = teams(&h, &server).await;
    let e = failed(deliver(&h, c.as_ref(), &sample_run(), 0).await);
    assert_eq!(e.class, ErrorClass::Permanent);
    assert!(
        !e.detail.contains("s3cr3t") && !e.detail.contains("workflows"),
        "{}",
        e.detail
    );
}

#[tokio::test]
async fn crash_before_the_call_posts_once_and_after_it_posts_again_as_documented() {
    for (point, posts) in [(CrashPoint::BeforeCall, 1), (CrashPoint::AfterCall, 2)] {
        let server = MockServer::start().await;
        let count = Arc::new(AtomicUsize::new(0));
        let n = count.clone();
        Mock::given(method("POST"))
            .respond_with(move |_: &Request| {
                n.fetch_add(1, Ordering::SeqCst);
                ResponseTemplate::new(202)
            })
            .mount(&server)
            .await;
        let h = Harness::new();
        let c = teams(&h, &server).await;
        crash_then_retry(&h, c.as_ref(), &sample_run(), point, "post").await;
        // Workflows webhooks have no idempotency key and no history to look in: the one
        // window after Teams accepted and before we recorded it repeats the card.
        assert_eq!(count.load(Ordering::SeqCst), posts, "{point:?}");
    }
}

#[tokio::test]
async fn ten_thousand_failures_fit_in_one_card() {
    let run = run_with_failures(10_000);
    let m = teams::message(&run, &ctx("c", 0).status_url, 10_000);
    let size = m.to_string().len();
    assert!(size <= 28_000, "{size} bytes");
    let body = m["attachments"][0]["content"]["body"].as_array().unwrap();
    let texts: Vec<&str> = body.iter().filter_map(|b| b["text"].as_str()).collect();
    assert!(
        texts
            .iter()
            .any(|t| t.starts_with('+') && t.ends_with("more failures")),
        "{texts:?}"
    );
    assert_eq!(
        m["attachments"][0]["content"]["actions"][0],
        json!({"type": "Action.OpenUrl", "title": "Run status", "url": format!("{PUBLIC}/v1/runs/{RUN_ID}")})
    );
}

#[tokio::test]
async fn rendered_card_fixture() {
    let m = teams::message(&sample_run(), &ctx("c", 0).status_url, 10);
    fixture("teams-card.json", &m);
}

/// A run classified against its base leads with what changed and lists new failures first.
#[tokio::test]
async fn rendered_card_with_changes_fixture() {
    let run = testrelay_tests::vendor::sample_run_with_changes();
    let m = teams::message(&run, &ctx("c", 0).status_url, 10);
    let body = &m["attachments"][0]["content"]["body"];
    assert_eq!(
        body[0]["text"],
        "1 new failure · 1 still failing · 1 flaky (vs main @ 0a1b2c3)"
    );
    let titles: Vec<&str> = body
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|b| b["text"].as_str())
        .filter(|t| t.contains(" · ") && t.contains('›'))
        .collect();
    assert!(titles[0].starts_with("NEW · "), "{titles:?}");
    assert!(titles[1].starts_with("STILL FAILING · "), "{titles:?}");
    fixture("teams-card-changes.json", &m);
}
