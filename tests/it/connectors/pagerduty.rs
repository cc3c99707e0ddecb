//! PagerDuty Events API v2 against wiremock: trigger with a stable dedup key, resolve when
//! the same key goes green, out-of-order runs, error classes, crash recovery.

use serde_json::{Value, json};
use std::sync::{Arc, Mutex};
use testrelay_connectors::pagerduty;
use testrelay_domain::delivery::steps::CrashPoint;
use testrelay_domain::ports::ErrorClass;
use testrelay_tests::vendor::*;
use wiremock::matchers::{body_json, body_partial_json, method, path};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

const KEY: &str = "R0UTINGKEY0123456789abcdef012345";

async fn pd(h: &Harness, server: &MockServer) -> Arc<dyn testrelay_domain::ports::Connector> {
    h.secret("pd", KEY);
    h.connector(
        "c",
        &format!("kind = \"pagerduty\"\nrouting_key = {{ secret = \"pd\" }}\nurl = \"{}\"\nallow_http = true\nsuite = \"e2e\"", server.uri()),
    )
    .await
}

fn accepted() -> ResponseTemplate {
    ResponseTemplate::new(202).set_body_json(
        json!({"status": "success", "message": "Event processed", "dedup_key": "web:main:e2e"}),
    )
}

#[tokio::test]
async fn triggers_on_failure_and_resolves_on_green() {
    let server = MockServer::start().await;
    let failing = sample_run();
    let config = connector_config(
        "c",
        "kind = \"pagerduty\"\nrouting_key = { secret = \"pd\" }\nsuite = \"e2e\"",
    );
    let testrelay_domain::config::ConnectorConfig::Pagerduty(pc) = one(&config) else {
        unreachable!()
    };
    let trigger = pagerduty::event(&failing, &ctx("c", 0), pc, KEY, "web:main:e2e", "trigger");
    assert_eq!(
        trigger["payload"]["severity"], "critical",
        "an errored test makes it critical"
    );
    assert_eq!(trigger["payload"]["component"], "web");
    assert_eq!(
        trigger["links"][0]["href"],
        format!("{PUBLIC}/v1/runs/{RUN_ID}")
    );
    Mock::given(method("POST"))
        .and(path("/v2/enqueue"))
        .and(body_json(&trigger))
        .respond_with(accepted())
        .expect(1)
        .mount(&server)
        .await;
    let mut green = passing_run();
    green.run_id = testrelay_domain::ids::RunId::parse("01ARZ3NDEKTSV4RRFFQ69G5FAW").unwrap();
    green.received_at = "2026-11-22T11:00:00.000Z".into();
    Mock::given(method("POST"))
        .and(path("/v2/enqueue"))
        .and(body_json(
            json!({"routing_key": KEY, "event_action": "resolve", "dedup_key": "web:main:e2e"}),
        ))
        .respond_with(accepted())
        .expect(1)
        .mount(&server)
        .await;
    let h = Harness::new();
    let c = pd(&h, &server).await;
    let d = deliver(&h, c.as_ref(), &failing, 0).await.unwrap();
    assert_eq!(
        d.external_ref.as_deref(),
        Some("pagerduty:web:main:e2e (trigger)")
    );
    let d = deliver(&h, c.as_ref(), &green, 0).await.unwrap();
    assert_eq!(
        d.external_ref.as_deref(),
        Some("pagerduty:web:main:e2e (resolve)")
    );
    // Green again: nothing open, nothing sent. The older failing run arriving late: nothing.
    let mut green2 = green.clone();
    green2.run_id = testrelay_domain::ids::RunId::parse("01ARZ3NDEKTSV4RRFFQ69G5FAX").unwrap();
    green2.received_at = "2026-11-22T12:00:00.000Z".into();
    let d = deliver(&h, c.as_ref(), &green2, 0).await.unwrap();
    assert!(d.external_ref.unwrap().contains("nothing open"));
    let mut late = sample_run();
    late.run_id = testrelay_domain::ids::RunId::parse("01ARZ3NDEKTSV4RRFFQ69G5FAY").unwrap();
    late.received_at = "2026-11-22T09:00:00.000Z".into();
    let d = deliver(&h, c.as_ref(), &late, 0).await.unwrap();
    assert!(d.external_ref.unwrap().contains("newer run"));
}

#[tokio::test]
async fn bad_request_is_permanent_throttling_and_5xx_retry() {
    for (status, class) in [
        (400, ErrorClass::Permanent),
        (429, ErrorClass::Throttled),
        (500, ErrorClass::Transient),
    ] {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .respond_with(
                ResponseTemplate::new(status).set_body_json(json!({"status": "invalid event"})),
            )
            .mount(&server)
            .await;
        let h = Harness::new();
        let c = pd(&h, &server).await;
        let e = failed(deliver(&h, c.as_ref(), &sample_run(), 0).await);
        assert_eq!(e.class, class, "{status}");
        assert!(!e.detail.contains(KEY));
    }
}

#[tokio::test]
async fn crashes_around_the_trigger_send_one_incident() {
    for point in [CrashPoint::BeforeCall, CrashPoint::AfterCall] {
        let server = MockServer::start().await;
        let events: Arc<Mutex<Vec<Value>>> = Arc::default();
        let e = events.clone();
        Mock::given(method("POST"))
            .and(path("/v2/enqueue"))
            .and(body_partial_json(json!({"event_action": "trigger"})))
            .respond_with(move |r: &Request| {
                e.lock().unwrap().push(r.body_json::<Value>().unwrap());
                accepted()
            })
            .mount(&server)
            .await;
        let h = Harness::new();
        let c = pd(&h, &server).await;
        crash_then_retry(&h, c.as_ref(), &sample_run(), point, "trigger").await;
        let events = events.lock().unwrap();
        // PagerDuty folds events with one dedup key into one incident: a repeat after the
        // unrecordable window is harmless, and it is the same key.
        assert!(!events.is_empty() && events.len() <= 2, "{point:?}");
        assert!(events.iter().all(|e| e["dedup_key"] == "web:main:e2e"));
        if point == CrashPoint::BeforeCall {
            assert_eq!(events.len(), 1);
        }
    }
}

#[tokio::test]
async fn ten_thousand_failures_make_a_small_event() {
    let config = connector_config(
        "c",
        "kind = \"pagerduty\"\nrouting_key = { secret = \"pd\" }",
    );
    let testrelay_domain::config::ConnectorConfig::Pagerduty(pc) = one(&config) else {
        unreachable!()
    };
    let e = pagerduty::event(
        &run_with_failures(10_000),
        &ctx("c", 0),
        pc,
        KEY,
        "k",
        "trigger",
    );
    assert!(e.to_string().len() < 512 * 1024);
    assert!(e["payload"]["summary"].as_str().unwrap().chars().count() <= pagerduty::MAX_SUMMARY);
    assert_eq!(
        e["payload"]["custom_details"]["failures"]
            .as_array()
            .unwrap()
            .len(),
        pagerduty::MAX_LISTED
    );
    assert_eq!(
        e["payload"]["custom_details"]["failures_not_listed"],
        10_000 - pagerduty::MAX_LISTED as u64
    );
}

#[tokio::test]
async fn rendered_event_fixture() {
    let config = connector_config(
        "c",
        "kind = \"pagerduty\"\nrouting_key = { secret = \"pd\" }",
    );
    let testrelay_domain::config::ConnectorConfig::Pagerduty(pc) = one(&config) else {
        unreachable!()
    };
    let e = pagerduty::event(
        &sample_run(),
        &ctx("c", 0),
        pc,
        "<routing key>",
        "web:main:tests",
        "trigger",
    );
    fixture("pagerduty-event.json", &e);
}

/// Classified runs: new failures page, failures already failing on the base do not (and
/// hold the incident open), and it resolves once nothing new or still failing is left,
/// whatever flaky test still fails.
#[tokio::test]
async fn pages_on_new_failures_and_resolves_when_the_base_failures_are_fixed() {
    let server = MockServer::start().await;
    let sent = Arc::new(Mutex::new(Vec::<Value>::new()));
    let log = sent.clone();
    Mock::given(method("POST"))
        .and(path("/v2/enqueue"))
        .respond_with(move |r: &Request| {
            log.lock().unwrap().push(r.body_json().unwrap());
            accepted()
        })
        .mount(&server)
        .await;
    let h = Harness::new();
    let c = pd(&h, &server).await;
    let run = |n: u8, new: u64, still: u64, flaky: u64| {
        let mut r = sample_run_with_changes();
        r.run_id = testrelay_domain::ids::RunId::derived(&[n]);
        r.received_at = format!("2026-11-22T1{n}:00:00.000Z");
        let counts = &mut r.changes.as_mut().unwrap().counts;
        (counts.new, counts.still_failing, counts.flaky) = (new, still, flaky);
        r
    };
    let outcomes = [
        (run(1, 0, 2, 0), "no new failures"),
        (run(2, 1, 1, 0), "trigger"),
        (run(3, 0, 2, 0), "still failing; the incident stays open"),
        (run(4, 0, 0, 1), "resolve"),
    ];
    for (r, expected) in &outcomes {
        let d = deliver(&h, c.as_ref(), r, 0).await.unwrap();
        assert!(
            d.external_ref.as_deref().unwrap().contains(expected),
            "{expected}: {:?}",
            d.external_ref
        );
    }
    let sent = sent.lock().unwrap();
    assert_eq!(sent.len(), 2, "one trigger, one resolve: {sent:?}");
    let details = &sent[0]["payload"]["custom_details"];
    assert_eq!(details["changes"]["counts"]["new"], 1);
    assert_eq!(
        details["failures"][0]["class"], "new",
        "new failures listed first"
    );
    assert!(
        sent[0]["payload"]["summary"]
            .as_str()
            .unwrap()
            .contains(": 1 new failure · 1 still failing"),
        "{}",
        sent[0]["payload"]["summary"]
    );
}
