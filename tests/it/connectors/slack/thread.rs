//! Thread mode: the run's summary as the message, its failures (new first) as one reply in
//! its thread, once per run even when a try crashes after posting the reply.

use super::history::{connector, fake_slack};
use testrelay_domain::delivery::steps::CrashPoint;
use testrelay_tests::vendor::*;

#[tokio::test]
async fn the_summary_is_the_message_and_the_failures_its_reply_once() {
    for point in [CrashPoint::BeforeCall, CrashPoint::AfterCall] {
        let (server, channel) = fake_slack(None).await;
        let h = Harness::new();
        let c = connector(&h, &server, "thread = true").await;
        let run = sample_run_with_changes();
        let d = crash_then_retry(&h, c.as_ref(), &run, point, "reply/1795341600.000001").await;
        assert_eq!(
            d.external_ref.as_deref(),
            Some("slack:C0123/1795341600.000001")
        );
        let ch = channel.lock().unwrap();
        assert_eq!(
            ch.messages.len(),
            2,
            "{point:?}: one message, one reply: {:?}",
            ch.messages
        );
        let (parent, reply) = (&ch.messages[0], &ch.messages[1]);
        assert!(parent.get("thread_ts").is_none());
        assert!(parent["text"].as_str().unwrap().contains("1 new failure"));
        assert_eq!(reply["thread_ts"], "1795341600.000001");
        assert_eq!(reply["metadata"]["event_payload"]["part"], "failures");
        let first = reply["blocks"][0]["text"]["text"].as_str().unwrap();
        assert!(first.starts_with("*NEW · "), "new failures first: {first}");
        if point == CrashPoint::AfterCall {
            assert_eq!(ch.history_calls, 1, "the retry looked in the thread");
        }
    }
}

#[tokio::test]
async fn the_summary_lists_no_failures_and_a_green_run_gets_no_reply() {
    let run = sample_run_with_changes();
    let m = testrelay_connectors::slack::render(&run, &ctx("c", 0).status_url, 10);
    assert!(
        m["blocks"].as_array().unwrap().len() > 3,
        "the whole message lists failures"
    );
    let (server, channel) = fake_slack(None).await;
    let h = Harness::new();
    let c = connector(&h, &server, "thread = true").await;
    deliver(&h, c.as_ref(), &passing_run(), 0).await.unwrap();
    assert_eq!(
        channel.lock().unwrap().messages.len(),
        1,
        "nothing to reply with"
    );
}
