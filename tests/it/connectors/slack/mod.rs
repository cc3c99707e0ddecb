//! Slack against wiremock: the documented `chat.postMessage` / `chat.update` requests, the
//! `ok: false` error codes, incoming webhooks, crash recovery through message metadata, and
//! Slack's size limits with 10,000 failures. Crash recovery through the channel's history,
//! within that lookup's own limits, is in `history.rs`.

pub(crate) mod history;
mod thread;

use serde_json::{Value, json};
use std::sync::Arc;
use testrelay_connectors::slack;
use testrelay_domain::ports::ErrorClass;
use testrelay_tests::vendor::*;
use wiremock::matchers::{body_partial_json, header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

const TOKEN: &str = "xoxb-test-token-1234";

async fn slack(h: &Harness, server: &MockServer) -> Arc<dyn testrelay_domain::ports::Connector> {
    h.secret("slack-bot", TOKEN);
    h.connector(
        "c",
        &format!(
            "kind = \"slack\"\ntoken = {{ secret = \"slack-bot\" }}\nchannel = \"C0123\"\napi_url = \"{}/api\"\nallow_http = true",
            server.uri()
        ),
    )
    .await
}

#[tokio::test]
async fn posts_once_then_updates_on_redrive() {
    let server = MockServer::start().await;
    let h = Harness::new();
    let c = slack(&h, &server).await;
    let run = sample_run();
    let expected = slack::render(&run, &ctx("c", 0).status_url, 10);
    Mock::given(method("POST"))
        .and(path("/api/chat.postMessage"))
        .and(header("authorization", format!("Bearer {TOKEN}").as_str()))
        .and(header("content-type", "application/json"))
        .and(body_partial_json(json!({
            "channel": "C0123",
            "text": expected["text"],
            "blocks": expected["blocks"],
            "unfurl_links": false,
            "metadata": {"event_type": "testrelay_run",
                         "event_payload": {"event_id": format!("evt_{RUN_ID}_c"), "run_id": RUN_ID}}
        })))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"ok": true, "channel": "C0123", "ts": "1795341600.000100"})),
        )
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/api/chat.update"))
        .and(header("authorization", format!("Bearer {TOKEN}").as_str()))
        .and(body_partial_json(
            json!({"channel": "C0123", "ts": "1795341600.000100", "blocks": expected["blocks"]}),
        ))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"ok": true, "ts": "1795341600.000100"})),
        )
        .expect(1)
        .mount(&server)
        .await;

    let d = deliver(&h, c.as_ref(), &run, 0).await.unwrap();
    assert_eq!(
        d.external_ref.as_deref(),
        Some("slack:C0123/1795341600.000100")
    );
    assert!(!d.resumed);
    // A duplicate message: nothing is sent again.
    assert!(deliver(&h, c.as_ref(), &run, 0).await.unwrap().resumed);
    // A redrive (generation 1) updates the message it finds, once.
    let redriven = deliver(&h, c.as_ref(), &run, 1).await.unwrap();
    assert!(!redriven.resumed);
    assert!(deliver(&h, c.as_ref(), &run, 1).await.unwrap().resumed);
}

#[tokio::test]
async fn maps_slack_error_codes() {
    // Slack spells "rate limited" two ways: `rate_limited` is the code chat.postMessage
    // documents, `ratelimited` the one other methods answer. Both are throttling.
    for (code, class) in [
        ("ratelimited", ErrorClass::Throttled),
        ("rate_limited", ErrorClass::Throttled),
        ("internal_error", ErrorClass::Transient),
        ("invalid_auth", ErrorClass::Permanent),
        ("channel_not_found", ErrorClass::Permanent),
    ] {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .respond_with(
                ResponseTemplate::new(200).set_body_json(json!({"ok": false, "error": code})),
            )
            .mount(&server)
            .await;
        let h = Harness::new();
        let c = slack(&h, &server).await;
        let e = failed(deliver(&h, c.as_ref(), &sample_run(), 0).await);
        assert_eq!(e.class, class, "{code}");
        assert!(e.detail.contains(code), "{}", e.detail);
        assert!(!e.detail.contains(TOKEN));
    }
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(429).insert_header("retry-after", "30"))
        .mount(&server)
        .await;
    let h = Harness::new();
    let c = slack(&h, &server).await;
    let e = failed(deliver(&h, c.as_ref(), &sample_run(), 0).await);
    assert_eq!(
        (e.class, e.retry_after),
        (
            ErrorClass::Throttled,
            Some(std::time::Duration::from_secs(30))
        )
    );
}

/// Slack refuses a message's blocks with `invalid_blocks`, and an empty `blocks` array the
/// same way: the plain-text fallback must leave the key out.
#[tokio::test]
async fn the_fallback_for_refused_blocks_sends_no_blocks_key() {
    struct RefusesBlocks;
    impl wiremock::Respond for RefusesBlocks {
        fn respond(&self, r: &wiremock::Request) -> ResponseTemplate {
            let body: Value = serde_json::from_slice(&r.body).unwrap();
            if body.get("blocks").is_some() {
                ResponseTemplate::new(200)
                    .set_body_json(json!({"ok": false, "error": "invalid_blocks"}))
            } else {
                ResponseTemplate::new(200)
                    .set_body_json(json!({"ok": true, "channel": "C1", "ts": "1795341600.000100"}))
            }
        }
    }
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(RefusesBlocks)
        .mount(&server)
        .await;
    let h = Harness::new();
    let c = slack(&h, &server).await;
    let delivered = deliver(&h, c.as_ref(), &sample_run(), 0)
        .await
        .expect("the plain-text fallback is accepted");
    assert!(
        delivered
            .external_ref
            .as_deref()
            .is_some_and(|r| r.ends_with("/1795341600.000100")),
        "{:?}",
        delivered.external_ref
    );
    let requests = server.received_requests().await.unwrap();
    assert_eq!(
        requests.len(),
        2,
        "the message with blocks, then the fallback"
    );
    let fallback: Value = serde_json::from_slice(&requests[1].body).unwrap();
    assert!(fallback.get("blocks").is_none(), "{fallback}");
    assert!(fallback["text"].as_str().is_some_and(|t| !t.is_empty()));
}

#[tokio::test]
async fn incoming_webhook_mode() {
    let server = MockServer::start().await;
    let run = sample_run();
    let expected = slack::render(&run, &ctx("c", 0).status_url, 10);
    Mock::given(method("POST"))
        .and(path("/services/T000/B000/XXXX"))
        .and(body_partial_json(
            json!({"text": expected["text"], "blocks": expected["blocks"]}),
        ))
        .respond_with(ResponseTemplate::new(200).set_body_string("ok"))
        .expect(1)
        .mount(&server)
        .await;
    let h = Harness::new();
    h.secret(
        "slack-hook",
        &format!("{}/services/T000/B000/XXXX", server.uri()),
    );
    let c = h
        .connector(
            "c",
            "kind = \"slack\"\nwebhook_url = { secret = \"slack-hook\" }\nallow_http = true",
        )
        .await;
    deliver(&h, c.as_ref(), &run, 0).await.unwrap();
    assert!(deliver(&h, c.as_ref(), &run, 0).await.unwrap().resumed);
}

#[tokio::test]
async fn ten_thousand_failures_stay_within_slack_limits() {
    let run = run_with_failures(10_000);
    let m = slack::render(&run, &ctx("c", 0).status_url, 10_000);
    let blocks = m["blocks"].as_array().unwrap();
    assert!(blocks.len() <= slack::MAX_BLOCKS);
    let total: usize = blocks.iter().map(|b| b.to_string().len()).sum();
    assert!(total <= 13_000, "{total} characters of blocks");
    for b in blocks {
        if let Some(t) = b["text"]["text"].as_str() {
            assert!(t.chars().count() <= slack::MAX_SECTION);
        }
    }
    assert!(blocks[0]["text"]["text"].as_str().unwrap().chars().count() <= slack::MAX_HEADER);
    let last = blocks.last().unwrap()["elements"][0]["text"]
        .as_str()
        .unwrap();
    assert!(last.contains("more failures"), "{last}");
    assert!(
        last.contains(&format!("<{PUBLIC}/v1/runs/{RUN_ID}|Run status>")),
        "{last}"
    );
    assert!(
        m["text"]
            .as_str()
            .unwrap()
            .contains("10000 of 10001 failed")
    );
}

#[tokio::test]
async fn rendered_message_fixture() {
    let m = slack::render(&sample_run(), &ctx("c", 0).status_url, 10);
    fixture("slack-message.json", &m);
}

/// A run classified against its base leads with what changed and lists new failures first.
#[tokio::test]
async fn rendered_message_with_changes_fixture() {
    let run = testrelay_tests::vendor::sample_run_with_changes();
    let m = slack::render(&run, &ctx("c", 0).status_url, 10);
    let lead = m["blocks"][1]["text"]["text"].as_str().unwrap();
    assert!(
        lead.starts_with(":x: *1 new failure · 1 still failing · 1 flaky (vs main @ 0a1b2c3)*"),
        "{lead}"
    );
    let first = m["blocks"][2]["text"]["text"].as_str().unwrap();
    assert!(first.starts_with("*NEW · "), "{first}");
    fixture("slack-message-changes.json", &m);
}

/// Report text is escaped for mrkdwn (`&`, `<`, `>`): a JUnit message such as
/// `expected:<200> but was:<503>` would otherwise become broken links, and `<!channel>` in a
/// test's name or message would ping the whole channel.
#[tokio::test]
async fn report_text_cannot_ping_the_channel_or_make_links() {
    let mut run = sample_run();
    for suite in &mut run.report.suites {
        for case in suite.cases.iter_mut().filter(|c| c.status.is_failure()) {
            case.name = format!("{} <!channel> & <https://evil.example|click>", case.name);
            case.message = Some("expected:<200> but was:<503> <!here>".into());
            case.trace = Some("java.lang.AssertionError: expected:<200> but was:<503>".into());
        }
    }
    let message = slack::render(&run, &ctx("c", 0).status_url, 10);
    let text = message.to_string();
    for raw in [
        "<!channel>",
        "<!here>",
        "<200>",
        "<503>",
        "<https://evil.example",
    ] {
        assert!(!text.contains(raw), "{raw} reached Slack unescaped: {text}");
    }
    assert!(text.contains("&lt;!channel&gt; &amp; "), "{text}");
    assert!(
        text.contains("expected:&lt;200&gt; but was:&lt;503&gt;"),
        "{text}"
    );
}

#[tokio::test]
async fn probe_is_auth_test() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/api/auth.test"))
        .and(header("authorization", format!("Bearer {TOKEN}").as_str()))
        .respond_with(ResponseTemplate::new(200).set_body_json(
            json!({"ok": true, "team": "Acme", "user": "testrelay", "team_id": "T1", "user_id": "U1"}),
        ))
        .expect(1)
        .mount(&server)
        .await;
    let h = Harness::new();
    let c = slack(&h, &server).await;
    let p = c.probe().await.unwrap();
    assert_eq!(p.detail.as_deref(), Some("testrelay in Acme"));
}
