//! Discord against wiremock: the documented webhook execution (`?wait=true`, embeds, no
//! mentions allowed), the stored message edited on redrive (and posted anew when Discord no
//! longer has it), Discord's real error answers (429 with `retry_after` in the body or the
//! headers, `Invalid Form Body`, `Unknown Webhook`), its limits with 10,000 failures, and
//! what a crash does.

use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use testrelay_connectors::discord;
use testrelay_domain::delivery::steps::CrashPoint;
use testrelay_domain::ports::ErrorClass;
use testrelay_tests::vendor::*;
use wiremock::matchers::{body_json, header, method, path, query_param};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

const HOOK: &str = "/api/webhooks/1317000000000000002/s3cr3t-t0ken";
const MESSAGE_ID: &str = "1317000000000000001";

async fn discord(h: &Harness, server: &MockServer) -> Arc<dyn testrelay_domain::ports::Connector> {
    h.secret("discord-url", &format!("{}{HOOK}", server.uri()));
    h.connector(
        "c",
        "kind = \"discord\"\nurl = { secret = \"discord-url\" }\nallow_http = true",
    )
    .await
}

/// A message as Discord answers `?wait=true` with it.
fn message_object(id: &str) -> Value {
    json!({
        "id": id, "type": 0, "content": "…", "channel_id": "1317000000000000000",
        "author": {"id": "1317000000000000002", "username": "testrelay", "bot": true},
        "embeds": [], "mentions": [], "mention_roles": [], "pinned": false,
        "mention_everyone": false, "tts": false, "timestamp": "2026-11-28T10:00:00.000000+00:00",
        "edited_timestamp": null, "flags": 0, "components": [],
        "webhook_id": "1317000000000000002"
    })
}

#[tokio::test]
async fn posts_with_wait_then_edits_the_message_on_redrive() {
    let server = MockServer::start().await;
    let run = sample_run_with_changes();
    let expected = discord::message(&run, &ctx("c", 0).status_url, 10);
    assert_eq!(expected["allowed_mentions"], json!({"parse": []}));
    Mock::given(method("POST"))
        .and(path(HOOK))
        .and(query_param("wait", "true"))
        .and(header("content-type", "application/json"))
        .and(body_json(&expected))
        .respond_with(ResponseTemplate::new(200).set_body_json(message_object(MESSAGE_ID)))
        .expect(1)
        .mount(&server)
        .await;
    let redriven = discord::message(&run, &ctx("c", 1).status_url, 10);
    Mock::given(method("PATCH"))
        .and(path(format!("{HOOK}/messages/{MESSAGE_ID}")))
        .and(body_json(&redriven))
        .respond_with(ResponseTemplate::new(200).set_body_json(message_object(MESSAGE_ID)))
        .expect(1)
        .mount(&server)
        .await;
    let h = Harness::new();
    let c = discord(&h, &server).await;
    let d = deliver(&h, c.as_ref(), &run, 0).await.unwrap();
    assert_eq!(
        d.external_ref.as_deref(),
        Some("discord:1317000000000000001")
    );
    assert!(
        deliver(&h, c.as_ref(), &run, 0).await.unwrap().resumed,
        "a duplicate sends nothing"
    );
    let d = deliver(&h, c.as_ref(), &run, 1).await.unwrap();
    assert!(!d.resumed, "a redrive edits the message");
    assert!(deliver(&h, c.as_ref(), &run, 1).await.unwrap().resumed);
}

/// Discord no longer has the message (deleted in the channel): the redrive posts it anew.
#[tokio::test]
async fn a_deleted_message_is_posted_anew_on_redrive() {
    let server = MockServer::start().await;
    let posts = Arc::new(AtomicUsize::new(0));
    let n = posts.clone();
    Mock::given(method("POST"))
        .and(path(HOOK))
        .respond_with(move |_: &Request| {
            let i = n.fetch_add(1, Ordering::SeqCst) + 1;
            ResponseTemplate::new(200)
                .set_body_json(message_object(&format!("13170000000000000{i:02}")))
        })
        .mount(&server)
        .await;
    Mock::given(method("PATCH"))
        .respond_with(
            ResponseTemplate::new(404)
                .set_body_json(json!({"message": "Unknown Message", "code": 10008})),
        )
        .mount(&server)
        .await;
    let h = Harness::new();
    let c = discord(&h, &server).await;
    let run = sample_run();
    deliver(&h, c.as_ref(), &run, 0).await.unwrap();
    let d = deliver(&h, c.as_ref(), &run, 1).await.unwrap();
    assert_eq!(
        d.external_ref.as_deref(),
        Some("discord:1317000000000000002")
    );
    assert_eq!(posts.load(Ordering::SeqCst), 2);
}

/// Discord's answers, as it sends them.
#[tokio::test]
async fn discords_error_answers_are_read_as_it_means_them() {
    let rate_limited =
        json!({"message": "You are being rate limited.", "retry_after": 1.37, "global": false});
    let cases = [
        // The body only (a proxy's 429 can lack the headers): 1.37 s, rounded up.
        (ResponseTemplate::new(429).set_body_json(&rate_limited), ErrorClass::Throttled, Some(2)),
        // The headers as Discord sends them with it.
        (
            ResponseTemplate::new(429)
                .insert_header("retry-after", "3")
                .insert_header("x-ratelimit-reset-after", "2.5")
                .insert_header("x-ratelimit-scope", "user")
                .set_body_json(&rate_limited),
            ErrorClass::Throttled,
            Some(3),
        ),
        (
            ResponseTemplate::new(429)
                .insert_header("x-ratelimit-reset-after", "0.4")
                .set_body_json(&rate_limited),
            ErrorClass::Throttled,
            Some(1),
        ),
        (
            ResponseTemplate::new(400).set_body_json(json!({
                "code": 50035,
                "errors": {"embeds": {"0": {"description": {"_errors": [
                    {"code": "BASE_TYPE_MAX_LENGTH", "message": "Must be 4096 or fewer in length."}]}}}},
                "message": "Invalid Form Body"})),
            ErrorClass::Permanent,
            None,
        ),
        (
            ResponseTemplate::new(404).set_body_json(json!({"message": "Unknown Webhook", "code": 10015})),
            ErrorClass::Permanent,
            None,
        ),
        (
            ResponseTemplate::new(502).set_body_string("<html>502 Bad Gateway</html>"),
            ErrorClass::Transient,
            None,
        ),
    ];
    for (answer, class, retry_after) in cases {
        let e = error_for(answer, |h, s| Box::pin(discord(h, s))).await;
        assert_eq!(e.class, class, "{e:?}");
        assert_eq!(e.retry_after, retry_after.map(Duration::from_secs), "{e:?}");
        assert!(
            !e.detail.contains("s3cr3t"),
            "the token stays out of errors: {e:?}"
        );
    }
}

#[tokio::test]
async fn crash_before_the_call_posts_once_and_after_it_posts_again_as_documented() {
    for (point, posts) in [(CrashPoint::BeforeCall, 1), (CrashPoint::AfterCall, 2)] {
        let server = MockServer::start().await;
        let n = Arc::new(AtomicUsize::new(0));
        let counter = n.clone();
        Mock::given(method("POST"))
            .respond_with(move |_: &Request| {
                counter.fetch_add(1, Ordering::SeqCst);
                ResponseTemplate::new(200).set_body_json(message_object(MESSAGE_ID))
            })
            .mount(&server)
            .await;
        let h = Harness::new();
        let c = discord(&h, &server).await;
        crash_then_retry(&h, c.as_ref(), &sample_run(), point, "post").await;
        assert_eq!(n.load(Ordering::SeqCst), posts, "{point:?}");
    }
}

/// 10,000 failures, report text full of mentions and markdown: within every Discord limit,
/// new failures first, and nobody pinged.
#[tokio::test]
async fn ten_thousand_failures_stay_within_discords_limits() {
    let mut run = run_with_failures(10_000);
    run.report.suites[0].cases[0].name = "@everyone <@&1234> look".into();
    let m = discord::message(&run, &ctx("c", 0).status_url, 25);
    let chars = |v: &Value| v.as_str().unwrap_or("").chars().count();
    assert!(chars(&m["content"]) <= discord::MAX_CONTENT);
    assert_eq!(m["allowed_mentions"], json!({"parse": []}));
    let embeds = m["embeds"].as_array().unwrap();
    assert!(embeds.len() <= 10);
    let mut total = 0;
    for e in embeds {
        assert!(chars(&e["title"]) <= discord::MAX_TITLE);
        assert!(chars(&e["description"]) <= discord::MAX_DESCRIPTION);
        let fields = e["fields"].as_array().unwrap();
        assert!(!fields.is_empty() && fields.len() <= discord::MAX_FIELDS);
        total += chars(&e["title"]) + chars(&e["description"]) + chars(&e["footer"]["text"]);
        for f in fields {
            assert!(chars(&f["name"]) <= discord::MAX_FIELD_NAME);
            assert!(chars(&f["value"]) <= discord::MAX_FIELD_VALUE);
            total += chars(&f["name"]) + chars(&f["value"]);
        }
    }
    assert!(
        total <= discord::MAX_EMBED_TOTAL,
        "{total} characters of embeds"
    );
    let footer = embeds[0]["footer"]["text"].as_str().unwrap();
    assert!(footer.contains("more failures"), "{footer}");
}

#[tokio::test]
async fn probe_reads_the_webhook_without_posting() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path(HOOK))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "type": 1, "id": "1317000000000000002", "name": "CI results",
            "channel_id": "1317000000000000000", "guild_id": "1317000000000000003",
            "application_id": null, "token": "s3cr3t-t0ken"})))
        .expect(1)
        .mount(&server)
        .await;
    let h = Harness::new();
    let c = discord(&h, &server).await;
    let p = c.probe().await.unwrap();
    assert_eq!(p.detail.as_deref(), Some("CI results"));
}

#[tokio::test]
async fn rendered_message_fixture() {
    let m = discord::message(&sample_run_with_changes(), &ctx("c", 0).status_url, 10);
    let first = m["embeds"][0]["fields"][0]["name"].as_str().unwrap();
    assert!(first.starts_with("NEW · "), "{first}");
    fixture("discord-message.json", &m);
}
