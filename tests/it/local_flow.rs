//! The local process end to end: a report posted over HTTP reaches a signed webhook, and
//! every way a request can be wrong is rejected with problem+json, storing nothing.

use serde_json::Value;
use std::io::Write;
use std::sync::Arc;
use std::time::Duration;
use testrelay_domain::config::ConnectorKind;
use testrelay_domain::delivery::retry::RetryPolicy;
use testrelay_domain::ids::{ConnectorName, RunId};
use testrelay_domain::ports::{Clock, ManualClock};
use testrelay_domain::ports::{
    DeadLetter, DeadLetterStore, DeliveryMessage, DeliveryQueue, QueueConsumer,
};
use testrelay_tests::corpus;
use testrelay_tests::local::{ADMIN_KEY, API_KEY, spawn_app, spawn_app_with};
use wiremock::matchers::method;
use wiremock::{Mock, ResponseTemplate};

const JEST: &str = "junit/test-reporter/__tests__/fixtures/jest-junit.xml";

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

#[tokio::test]
async fn a_posted_report_reaches_the_webhook_signed() {
    let t = spawn_app().await;
    let res = t
        .post_report(
            "project=web&branch=main&commit=abc123&build_url=https%3A%2F%2Fci.example%2F42",
            std::fs::read(corpus(JEST)).unwrap(),
        )
        .await;
    assert_eq!(res.status(), 202);
    let location = res.headers()["location"].to_str().unwrap().to_string();
    let body: Value = res.json().await.unwrap();
    let run_id = body["run_id"].as_str().unwrap().to_string();
    assert_eq!(body["status_url"], format!("/v1/runs/{run_id}"));
    assert_eq!(location, format!("/v1/runs/{run_id}"));
    assert_eq!(body["deliveries"][0]["connector"], "hook");
    assert_eq!(body["deliveries"][0]["state"], "queued");
    assert_eq!(body["summary"]["total"], 6);
    assert_eq!(body["summary"]["failed"], 4);

    assert_eq!(t.dispatch_all_pending().await, 1);
    let events = t.receiver.verified_events().await;
    assert_eq!(events.len(), 1);
    let (webhook_id, event) = &events[0];
    assert_eq!(webhook_id, &format!("evt_{run_id}_hook"));
    assert_eq!(event["type"], "run.completed");
    let data = &event["data"];
    assert_eq!(data["run_id"], run_id);
    assert_eq!(data["project"], "web");
    assert_eq!(data["branch"], "main");
    assert_eq!(data["commit"], "abc123");
    assert_eq!(data["build_url"], "https://ci.example/42");
    assert_eq!(data["outcome"], "failed");
    assert_eq!(data["summary"]["total"], 6);
    assert_eq!(data["failures"].as_array().unwrap().len(), 4);
    assert_eq!(data["failures"][0]["name"], "Failing test");

    let status: Value = t.get_run(&run_id).await.json().await.unwrap();
    let d = &status["deliveries"][0];
    assert_eq!(d["state"], "delivered");
    assert_eq!(d["attempts"].as_array().unwrap().len(), 1);
    assert_eq!(d["attempts"][0]["status_code"], 200);
    assert_eq!(d["attempts"][0]["ok"], true);
    assert_eq!(status["meta"]["commit"], "abc123");

    // A duplicate message (SQS delivers at least once) does not deliver twice.
    assert_eq!(t.dispatch_all_pending().await, 0);
    assert_eq!(t.receiver.count().await, 1);
}

#[tokio::test]
async fn the_worker_loop_delivers_without_being_drained() {
    let t = spawn_app().await;
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let workers = t.app.spawn_workers(stopped);
    let res = t
        .post_report("project=web", std::fs::read(corpus(JEST)).unwrap())
        .await;
    assert_eq!(res.status(), 202);
    testrelay_tests::eventually(Duration::from_secs(10), "the webhook delivery", || async {
        (t.receiver.count().await == 1).then_some(())
    })
    .await;
    stop.send(true).unwrap();
    for w in workers {
        w.await.unwrap();
    }
    assert_eq!(t.receiver.verified_events().await.len(), 1);
}

#[tokio::test]
async fn gzip_ctrf_and_playwright_are_accepted() {
    let t = spawn_app().await;
    let xml = std::fs::read(corpus(JEST)).unwrap();
    let res = t
        .post_with("project=web", &[("content-encoding", "gzip")], gzip(&xml))
        .await;
    assert_eq!(res.status(), 202);
    let ctrf = std::fs::read(corpus("ctrf/ctrf/examples/with-retries.json")).unwrap();
    let res = t.post_report("project=web&format=ctrf", ctrf).await;
    assert_eq!(res.status(), 202);
    let pw = std::fs::read(corpus(
        "playwright/playwright-report-summary/__tests__/__fixtures__/report-valid.json",
    ))
    .unwrap();
    let body: Value = t.post_report("project=web", pw).await.json().await.unwrap();
    assert_eq!(body["summary"]["total"], 14);
    assert_eq!(body["summary"]["flaky"], 1);
    assert_eq!(t.dispatch_all_pending().await, 3);
    assert_eq!(t.receiver.verified_events().await.len(), 3);
}

/// Posts the jest report to project web; the accepted run's id.
async fn accept_jest(t: &testrelay_tests::local::TestApp) -> String {
    let res = t
        .post_report("project=web", std::fs::read(corpus(JEST)).unwrap())
        .await;
    assert_eq!(res.status(), 202);
    let body: Value = res.json().await.unwrap();
    body["run_id"].as_str().unwrap().to_string()
}

async fn problem(res: reqwest::Response, status: u16) -> Value {
    assert_eq!(res.status(), status);
    assert_eq!(res.headers()["content-type"], "application/problem+json");
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["status"], status);
    assert!(
        body["type"]
            .as_str()
            .unwrap()
            .starts_with("urn:testrelay:problem:")
    );
    body
}

/// Asserts a problem+json answer whose `detail` says `says`.
async fn rejected(res: reqwest::Response, status: u16, says: &str) {
    let p = problem(res, status).await;
    let detail = p["detail"].as_str().unwrap();
    assert!(
        detail.contains(says),
        "{status}: {detail:?} does not say {says:?}"
    );
}

#[tokio::test]
async fn rejected_requests_store_and_enqueue_nothing() {
    let t = spawn_app().await;
    let good = std::fs::read(corpus(JEST)).unwrap();

    let res = t
        .client
        .post(format!("{}/v1/reports?project=web", t.base))
        .body(good.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(res.headers()["www-authenticate"], "Bearer");
    rejected(res, 401, "Authorization: Bearer").await;
    let res = t
        .client
        .post(format!("{}/v1/reports?project=web", t.base))
        .bearer_auth("wrong")
        .body(good.clone())
        .send()
        .await
        .unwrap();
    rejected(res, 401, "unknown API key").await;

    rejected(
        t.post_report("project=nope", good.clone()).await,
        404,
        "unknown project \"nope\"",
    )
    .await;
    rejected(
        t.post_report("project=quiet", good.clone()).await,
        403,
        "may not post to project",
    )
    .await;
    rejected(
        t.post_report("branch=main", good.clone()).await,
        400,
        "\"project\" is required",
    )
    .await;

    let broken = b"<testsuite name=\"s\">\n  <testcase name=\"a\">\n    <failure>oops</fail>\n";
    let res = t.post_report("project=web", &broken[..]).await;
    rejected(res, 400, "junit report: malformed XML").await;
    let p = problem(t.post_report("project=web", &broken[..]).await, 400).await;
    assert!(
        p["detail"].as_str().unwrap().contains("(line 3, column"),
        "{p}"
    );
    assert_eq!(p["title"], "The report could not be read");

    let xxe = "<?xml version=\"1.0\"?><!DOCTYPE x [<!ENTITY e SYSTEM \"file:///etc/passwd\">]><testsuite name=\"&e;\"/>";
    rejected(t.post_report("project=web", xxe).await, 400, "DOCTYPE").await;

    let res = t
        .post_with("project=web", &[("content-encoding", "br")], good.clone())
        .await;
    rejected(res, 415, "\"br\" is not supported").await;
    let huge = vec![b' '; 6 * 1024 * 1024 + 1];
    rejected(
        t.post_report("project=web", huge).await,
        413,
        "larger than 6291456 bytes",
    )
    .await;
    let bomb = gzip(&vec![b'a'; 65 * 1024 * 1024]);
    let res = t
        .post_with("project=web", &[("content-encoding", "gzip")], bomb)
        .await;
    rejected(res, 413, "after decompression").await;
    let res = t
        .post_with(
            "project=web",
            &[("idempotency-key", "has space")],
            good.clone(),
        )
        .await;
    rejected(res, 400, "Idempotency-Key").await;

    assert_eq!(t.stored_blobs(), 0, "nothing stored");
    assert_eq!(
        t.app.store.queue_len().await.unwrap(),
        0,
        "nothing enqueued"
    );
    assert_eq!(t.dispatch_all_pending().await, 0);
    assert_eq!(t.receiver.count().await, 0);
}

#[tokio::test]
async fn idempotency_key_replays_the_first_answer() {
    let t = spawn_app().await;
    let xml = std::fs::read(corpus(JEST)).unwrap();
    let post =
        |body: Vec<u8>| t.post_with("project=web", &[("idempotency-key", "ci-run-77")], body);
    let first = post(xml.clone()).await;
    assert_eq!(first.status(), 202);
    assert!(first.headers().get("idempotent-replayed").is_none());
    let first: Value = first.json().await.unwrap();
    let again = post(xml.clone()).await;
    assert_eq!(again.status(), 202);
    assert_eq!(again.headers()["idempotent-replayed"], "true");
    let again: Value = again.json().await.unwrap();
    assert_eq!(again, first);

    let mut other = xml.clone();
    other.extend_from_slice(b"\n<!-- different -->");
    rejected(post(other).await, 422, "different body").await;

    assert_eq!(t.stored_blobs(), 1);
    assert_eq!(t.dispatch_all_pending().await, 1);
    assert_eq!(t.receiver.count().await, 1, "delivered once");
}

#[tokio::test]
async fn transient_failures_are_retried_then_given_up_with_the_reason() {
    let clock = Arc::new(ManualClock::new(1_800_000_000_000));
    let policy = RetryPolicy {
        schedule: vec![Duration::from_secs(5), Duration::from_secs(60)],
        jitter: 0.0,
        max_retry_after: Duration::from_secs(3600),
    };
    let t = spawn_app_with(503, clock.clone(), policy).await;
    let id = accept_jest(&t).await;

    assert_eq!(t.dispatch_all_pending().await, 1);
    let s: Value = t.get_run(&id).await.json().await.unwrap();
    let d = &s["deliveries"][0];
    assert_eq!(d["state"], "retrying");
    assert_eq!(d["attempts"][0]["status_code"], 503);
    assert_eq!(d["attempts"][0]["error_class"], "transient");
    assert_eq!(d["next_attempt_at"], "2027-01-15T08:00:05.000Z");
    assert_eq!(t.dispatch_all_pending().await, 0, "not due yet");

    clock.advance(Duration::from_secs(5));
    assert_eq!(t.dispatch_all_pending().await, 1);
    clock.advance(Duration::from_secs(60));
    assert_eq!(t.dispatch_all_pending().await, 1);
    let s: Value = t.get_run(&id).await.json().await.unwrap();
    let d = &s["deliveries"][0];
    assert_eq!(d["state"], "dead_lettered");
    assert_eq!(d["attempts"].as_array().unwrap().len(), 3);
    assert_eq!(
        d["last_error"],
        "gave up after 3 attempts: HTTP 503 Service Unavailable"
    );
    let events = t.receiver.verified_events_at(clock.now_ms() / 1000).await;
    assert_eq!(events.len(), 3);
    assert!(
        events.iter().all(|(id, _)| id == &events[0].0),
        "the same webhook-id on every retry"
    );
    clock.advance(Duration::from_secs(3600));
    assert_eq!(t.dispatch_all_pending().await, 0, "the message is gone");
}

#[tokio::test]
async fn throttling_does_not_use_up_the_retry_schedule() {
    let clock = Arc::new(ManualClock::new(1_800_000_000_000));
    let policy = RetryPolicy {
        schedule: vec![Duration::from_secs(5), Duration::from_secs(60)],
        jitter: 0.0,
        max_retry_after: Duration::from_secs(3600),
    };
    let t = spawn_app_with(429, clock.clone(), policy).await;
    let id = accept_jest(&t).await;
    let max = testrelay_domain::delivery::MAX_THROTTLED as usize;
    for n in 1..=max {
        assert_eq!(t.dispatch_all_pending().await, 1, "attempt {n}");
        let s: Value = t.get_run(&id).await.json().await.unwrap();
        let d = &s["deliveries"][0];
        if n < max {
            // Three transient failures would have ended it; throttles back off instead.
            assert_eq!(d["state"], "retrying", "after {n} throttled attempts");
            assert_eq!(d["attempts"][n - 1]["error_class"], "throttled");
        } else {
            assert_eq!(d["state"], "dead_lettered");
            assert!(
                d["last_error"]
                    .as_str()
                    .unwrap()
                    .starts_with(&format!("throttled {max} times: HTTP 429")),
                "{}",
                d["last_error"]
            );
        }
        // Backoff without Retry-After: 5 s doubling, at most 10 minutes.
        clock.advance(Duration::from_secs(601));
    }
    assert_eq!(t.dispatch_all_pending().await, 0);
}

#[tokio::test]
async fn permanent_failures_are_dead_lettered_then_redriven_once() {
    let t = spawn_app_with(
        400,
        Arc::new(testrelay_domain::ports::SystemClock),
        RetryPolicy::default(),
    )
    .await;
    let id = accept_jest(&t).await;
    assert_eq!(t.dispatch_all_pending().await, 1);
    let s: Value = t.get_run(&id).await.json().await.unwrap();
    let d = &s["deliveries"][0];
    assert_eq!(d["state"], "dead_lettered");
    assert_eq!(
        d["attempts"].as_array().unwrap().len(),
        1,
        "a permanent failure is not retried"
    );
    assert_eq!(d["attempts"][0]["error_class"], "permanent");
    assert_eq!(d["last_error"], "HTTP 400 Bad Request");

    // Only admin keys see dead letters.
    rejected(
        t.admin("GET", "/v1/deadletters", API_KEY).await,
        403,
        "not an admin key",
    )
    .await;
    let listed: Value = t
        .admin("GET", "/v1/deadletters", ADMIN_KEY)
        .await
        .json()
        .await
        .unwrap();
    let letters = listed["dead_letters"].as_array().unwrap();
    assert_eq!(letters.len(), 1);
    assert_eq!(letters[0]["message"]["run_id"], id.as_str());
    assert_eq!(letters[0]["reason"], "HTTP 400 Bad Request");
    assert_eq!(letters[0]["attempts"], 1);
    assert_eq!(letters[0]["last_status"], 400);

    // The operator fixes the receiver and redrives.
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200))
        .with_priority(1)
        .mount(&t.receiver.server)
        .await;
    let res: Value = t
        .admin("POST", "/v1/deadletters/redrive", ADMIN_KEY)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(res["redriven"], 1);
    assert_eq!(t.dispatch_all_pending().await, 1);
    let s: Value = t.get_run(&id).await.json().await.unwrap();
    let d = &s["deliveries"][0];
    assert_eq!(d["state"], "delivered");
    assert_eq!(d["generation"], 1);
    assert_eq!(d["attempts"].as_array().unwrap().len(), 2);
    let listed: Value = t
        .admin("GET", "/v1/deadletters", ADMIN_KEY)
        .await
        .json()
        .await
        .unwrap();
    assert!(listed["dead_letters"].as_array().unwrap().is_empty());

    // A stray dead letter for the delivered run: redriving it is a no-op.
    let message = DeliveryMessage::new(
        RunId::parse(&id).unwrap(),
        ConnectorName::parse("hook").unwrap(),
        ConnectorKind::Webhook,
    );
    DeadLetterStore::put(
        &t.app.store,
        &DeadLetter {
            message,
            reason: "duplicate".into(),
            attempts: 1,
            last_status: None,
            at: "2026-11-22T10:00:00.000Z".into(),
        },
    )
    .await
    .unwrap();
    let before = t.receiver.count().await;
    let res: Value = t
        .admin("POST", "/v1/deadletters/redrive", ADMIN_KEY)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(res["redriven"], 1);
    assert_eq!(t.dispatch_all_pending().await, 1);
    assert_eq!(t.receiver.count().await, before, "nothing sent again");
    let s: Value = t.get_run(&id).await.json().await.unwrap();
    assert_eq!(s["deliveries"][0]["attempts"].as_array().unwrap().len(), 2);
    assert_eq!(
        t.app.metrics.get(
            "DeliveryOutcome",
            &[("Connector", "hook"), ("Outcome", "duplicate")]
        ),
        1
    );
}

#[tokio::test]
async fn status_and_health_routes() {
    let t = spawn_app().await;
    let res = t
        .client
        .get(format!("{}/healthz", t.base))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    problem(t.get_run("01ARZ3NDEKTSV4RRFFQ69G5FAV").await, 404).await;
    problem(t.get_run("not-an-id").await, 404).await;
    let get = |path: &str| t.client.get(format!("{}{path}", t.base)).send();
    problem(
        get("/v1/runs/01ARZ3NDEKTSV4RRFFQ69G5FAV").await.unwrap(),
        401,
    )
    .await;
    problem(get("/v1/reports").await.unwrap(), 405).await;
    problem(get("/nowhere").await.unwrap(), 404).await;
}

#[tokio::test]
async fn a_delay_longer_than_the_queue_holds_is_served_in_hops() {
    let clock = Arc::new(ManualClock::new(1_800_000_000_000));
    let t = spawn_app_with(200, clock.clone(), RetryPolicy::default()).await;
    let id = RunId::parse(&accept_jest(&t).await).unwrap();
    // Replace the ingest message by one not due for an hour (as SQS hops would carry it).
    let _ = t
        .app
        .store
        .receive(ConnectorKind::Webhook, 10, Duration::from_secs(7200))
        .await
        .unwrap();
    let mut later = DeliveryMessage::new(
        id.clone(),
        ConnectorName::parse("hook").unwrap(),
        ConnectorKind::Webhook,
    );
    later.not_before_ms = Some(clock.now_ms() + 3_600_000);
    t.app.store.enqueue(&[later]).await.unwrap();
    assert_eq!(t.dispatch_all_pending().await, 1, "seen early and put back");
    assert_eq!(t.receiver.count().await, 0);
    clock.advance(Duration::from_secs(3600));
    assert_eq!(t.dispatch_all_pending().await, 1);
    assert_eq!(t.receiver.count().await, 1, "delivered once due");
}
