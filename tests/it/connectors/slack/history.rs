//! A retried post looks for the message an earlier try may have posted in the channel's
//! history, as Slack serves it to apps outside its Marketplace: at most 15 messages a page
//! whatever `limit` asks, newest first, and 1 request a minute (then 429 `ratelimited`).

use super::{TOKEN, slack};
use serde_json::{Value, json};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use testrelay_domain::delivery::steps::{CrashPoint, NoFaults};
use testrelay_domain::ports::{ErrorClass, StateStore, StepError};
use testrelay_tests::vendor::*;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

const OTHER_RUN: &str = "01ARZ3NDEKTSV4RRFFQ69G5FBW";

#[derive(Default)]
pub struct Channel {
    /// Oldest first: `{ts, metadata}`.
    pub messages: Vec<Value>,
    /// History requests, and how many Slack refused for the per-minute limit.
    pub history_calls: usize,
    /// `chat.update` calls: (ts, the message's text).
    pub updates: Vec<(String, String)>,
    pub refused: usize,
    last_history: Option<Instant>,
}

impl Channel {
    /// Someone else posts in the channel.
    pub fn chatter(&mut self, n: usize) {
        for _ in 0..n {
            let ts = format!("1795341600.{:06}", self.messages.len() + 1);
            self.messages.push(json!({"ts": ts, "text": "hi"}));
        }
    }

    pub fn ours(&self) -> usize {
        self.messages
            .iter()
            .filter(|m| m.get("metadata").is_some())
            .count()
    }
}

/// A Slack channel that keeps what is posted (with metadata) and serves its history as Slack
/// does; `per_minute` history requests at most (`None`: unlimited, as for internal apps).
pub async fn fake_slack(per_minute: Option<u32>) -> (MockServer, Arc<Mutex<Channel>>) {
    let server = MockServer::start().await;
    let channel: Arc<Mutex<Channel>> = Arc::default();
    let c = channel.clone();
    Mock::given(method("POST"))
        .and(path("/api/chat.postMessage"))
        .respond_with(move |r: &Request| {
            let body: Value = r.body_json().unwrap();
            let mut ch = c.lock().unwrap();
            let ts = format!("1795341600.{:06}", ch.messages.len() + 1);
            let mut m = json!({"ts": ts, "metadata": body["metadata"], "text": body["text"]});
            if let Some(parent) = body["thread_ts"].as_str() {
                m["thread_ts"] = json!(parent);
                m["blocks"] = body["blocks"].clone();
            }
            ch.messages.push(m);
            ResponseTemplate::new(200).set_body_json(json!({"ok": true, "ts": ts}))
        })
        .mount(&server)
        .await;
    let c = channel.clone();
    Mock::given(method("POST"))
        .and(path("/api/chat.update"))
        .respond_with(move |r: &Request| {
            let body: Value = r.body_json().unwrap();
            let ts = body["ts"].as_str().unwrap_or_default().to_string();
            let mut ch = c.lock().unwrap();
            if !ch.messages.iter().any(|m| m["ts"] == ts.as_str()) {
                return ResponseTemplate::new(200)
                    .set_body_json(json!({"ok": false, "error": "message_not_found"}));
            }
            let text = body["text"].as_str().unwrap_or_default().to_string();
            ch.updates.push((ts.clone(), text));
            ResponseTemplate::new(200).set_body_json(json!({"ok": true, "ts": ts}))
        })
        .mount(&server)
        .await;
    let c = channel.clone();
    Mock::given(method("GET"))
        .and(path("/api/conversations.history"))
        .respond_with(move |r: &Request| {
            let mut ch = c.lock().unwrap();
            ch.history_calls += 1;
            let now = Instant::now();
            if let (Some(limit), Some(last)) = (per_minute, ch.last_history)
                && now.duration_since(last) < Duration::from_secs(60 / limit as u64)
            {
                ch.refused += 1;
                return ResponseTemplate::new(429)
                    .insert_header("retry-after", "60")
                    .set_body_json(json!({"ok": false, "error": "ratelimited"}));
            }
            ch.last_history = Some(now);
            let param = |k: &str| r.url.query_pairs().find(|(n, _)| n == k).map(|(_, v)| v.to_string());
            let limit: usize = param("limit").and_then(|l| l.parse().ok()).unwrap_or(100).min(15);
            let from: usize = param("cursor")
                .and_then(|c| c.strip_prefix("page-").and_then(|n| n.parse().ok()))
                .unwrap_or(0);
            // Replies stay in their threads.
            let newest_first: Vec<Value> = ch
                .messages
                .iter()
                .rev()
                .filter(|m| m.get("thread_ts").is_none())
                .cloned()
                .collect();
            let page: Vec<Value> = newest_first.iter().skip(from).take(limit).cloned().collect();
            let more = from + limit < newest_first.len();
            ResponseTemplate::new(200).set_body_json(json!({
                "ok": true, "messages": page, "has_more": more,
                "response_metadata": {"next_cursor": if more { format!("page-{}", from + limit) } else { String::new() }}
            }))
        })
        .mount(&server)
        .await;
    // A thread: its parent, then its replies, oldest first.
    let c = channel.clone();
    Mock::given(method("GET"))
        .and(path("/api/conversations.replies"))
        .respond_with(move |r: &Request| {
            let mut ch = c.lock().unwrap();
            ch.history_calls += 1;
            let ts = r
                .url
                .query_pairs()
                .find(|(k, _)| k == "ts")
                .unwrap()
                .1
                .to_string();
            let thread: Vec<Value> = ch
                .messages
                .iter()
                .filter(|m| m["ts"] == ts.as_str() || m["thread_ts"] == ts.as_str())
                .cloned()
                .collect();
            ResponseTemplate::new(200).set_body_json(json!({
                "ok": true, "messages": thread, "has_more": false,
                "response_metadata": {"next_cursor": ""}
            }))
        })
        .mount(&server)
        .await;
    (server, channel)
}

pub(crate) async fn connector(
    h: &Harness,
    server: &MockServer,
    extra: &str,
) -> Arc<dyn testrelay_domain::ports::Connector> {
    h.secret("slack-bot", TOKEN);
    h.connector(
        "c",
        &format!(
            "kind = \"slack\"\ntoken = {{ secret = \"slack-bot\" }}\nchannel = \"C0123\"\napi_url = \"{}/api\"\nallow_http = true\n{extra}",
            server.uri()
        ),
    )
    .await
}

#[tokio::test]
async fn a_crash_before_or_after_posting_never_posts_twice() {
    for point in [CrashPoint::BeforeCall, CrashPoint::AfterCall] {
        let (server, channel) = fake_slack(None).await;
        let h = Harness::new();
        let c = slack(&h, &server).await;
        let d = crash_then_retry(&h, c.as_ref(), &sample_run(), point, "post").await;
        assert_eq!(channel.lock().unwrap().ours(), 1, "{point:?}");
        assert_eq!(
            d.external_ref.as_deref(),
            Some("slack:C0123/1795341600.000001")
        );
    }
}

/// The first try posts and crashes before recording it; 40 messages follow in the channel.
async fn posted_then_buried(
    h: &Harness,
    c: &dyn testrelay_domain::ports::Connector,
    channel: &Mutex<Channel>,
    run: &testrelay_domain::report::model::TestRun,
) {
    let crash = CrashOnce::new(CrashPoint::AfterCall, "post");
    let first = c
        .deliver(run, &ctx("c", 0), &h.steps_with("c", c.kind(), 0, crash))
        .await;
    assert!(matches!(first, Err(StepError::Crashed)));
    channel.lock().unwrap().chatter(40);
    h.expire_leases();
}

/// 40 messages came after ours: Slack serves 15 a page whatever `limit` asks (reading one
/// page of "200" missed ours and posted again). The lookup pages through.
#[tokio::test]
async fn a_retry_finds_its_message_behind_a_busy_channel() {
    let (server, channel) = fake_slack(None).await;
    let h = Harness::new();
    let fast = "history_rate_limit = { per_minute = 600, burst = 10 }";
    let c = connector(&h, &server, fast).await;
    let run = sample_run();
    posted_then_buried(&h, c.as_ref(), &channel, &run).await;
    let d = deliver(&h, c.as_ref(), &run, 0).await.unwrap();
    assert_eq!(
        d.external_ref.as_deref(),
        Some("slack:C0123/1795341600.000001")
    );
    let ch = channel.lock().unwrap();
    assert_eq!(ch.ours(), 1, "not posted again");
    assert_eq!(ch.history_calls, 3, "15 + 15 + 11 messages");
}

/// At Slack's limit for Marketplace-less apps (1 lookup a minute): the lookup never calls
/// Slack faster than that, a throttled lookup never posts blind (the step is retried, from
/// the page it reached), and posting for other runs is not held up by it.
#[tokio::test]
async fn the_history_limit_never_holds_up_posting_or_posts_blind() {
    let (server, channel) = fake_slack(Some(1)).await;
    let h = Harness::new();
    let c = connector(&h, &server, "").await;
    let run = sample_run();
    posted_then_buried(&h, c.as_ref(), &channel, &run).await;
    let e = failed(deliver(&h, c.as_ref(), &run, 0).await);
    assert_eq!(e.class, ErrorClass::Throttled);
    assert!(
        e.detail.starts_with("rate limit for slack-history:C0123"),
        "{}",
        e.detail
    );
    // Where the lookup stopped is kept for the next attempt.
    let place = h
        .store
        .load(&format!("slack-history/evt_{RUN_ID}_c"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        serde_json::from_str::<Value>(&place.value).unwrap(),
        json!({"cursor": "page-15", "pages": 1})
    );
    // Another run posts at once.
    let mut other = sample_run();
    other.run_id = testrelay_domain::ids::RunId::parse(OTHER_RUN).unwrap();
    let steps = h.steps_of(OTHER_RUN, "c", c.kind(), 0, Arc::new(NoFaults));
    c.deliver(&other, &ctx("c", 0), &steps).await.unwrap();
    let ch = channel.lock().unwrap();
    assert_eq!(
        ch.ours(),
        2,
        "the crashed run's message once, the other run's"
    );
    assert_eq!(
        (ch.history_calls, ch.refused),
        (1, 0),
        "one lookup, never refused"
    );
}
