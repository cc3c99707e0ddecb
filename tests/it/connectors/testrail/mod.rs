//! TestRail against wiremock: the documented requests (Basic auth, `add_run` with the
//! matched case ids, `add_results_for_cases` in batches, `close_run`), the probe, and a
//! stateful fake TestRail for a crash at every step.

use base64::Engine;
use serde_json::{Value, json};
use std::sync::{Arc, Mutex};
use testrelay_connectors::testrail;
use testrelay_domain::delivery::steps::CrashPoint;
use testrelay_domain::ports::ErrorClass;
use testrelay_tests::vendor::*;

pub(crate) mod fake;
pub(crate) mod pipeline;
mod preflight;

use fake::FakeTestRail;
use wiremock::matchers::{body_json, header, method};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

const KEY: &str = "tr-api-key-0123456789";

fn basic() -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("ci@example.com:{KEY}"))
    )
}

async fn testrail(
    h: &Harness,
    server: &MockServer,
    extra: &str,
) -> Arc<dyn testrelay_domain::ports::Connector> {
    h.secret("tr", KEY);
    h.connector(
        "c",
        &format!(
            "kind = \"testrail\"\nurl = \"{}\"\nuser = \"ci@example.com\"\napi_key = {{ secret = \"tr\" }}\nproject_id = 7\nsuite_id = 3\nallow_http = true\n{extra}",
            server.uri()
        ),
    )
    .await
}

/// The defaults, as a user who sets only the required keys gets them.
fn plain_config() -> testrelay_domain::config::TestRailConfig {
    let config = connector_config(
        "c",
        "kind = \"testrail\"\nurl = \"https://x.testrail.io\"\nuser = \"u\"\napi_key = { secret = \"tr\" }\nproject_id = 7",
    );
    match one(&config) {
        testrelay_domain::config::ConnectorConfig::Testrail(t) => t.clone(),
        _ => unreachable!(),
    }
}

/// The suite holds `ids` (one `get_cases` page).
async fn suite_has(server: &MockServer, ids: impl IntoIterator<Item = u64>) {
    let cases: Vec<Value> = ids.into_iter().map(|id| json!({"id": id})).collect();
    Mock::given(method("GET"))
        .and(endpoint("get_cases/7"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "offset": 0, "limit": 250, "size": cases.len(),
            "_links": {"next": null, "prev": null}, "cases": cases
        })))
        .mount(server)
        .await;
}

/// A standalone run (not in a plan).
async fn standalone_run(server: &MockServer, id: u64) {
    Mock::given(method("GET"))
        .and(endpoint(Box::leak(
            format!("get_run/{id}").into_boxed_str(),
        )))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"id": id, "plan_id": null, "config_ids": []})),
        )
        .mount(server)
        .await;
}

/// TestRail puts the endpoint in the query string: `index.php?/api/v2/add_run/7`.
fn endpoint(e: &'static str) -> impl wiremock::Match {
    EndpointIs(e)
}

struct EndpointIs(&'static str);

impl wiremock::Match for EndpointIs {
    fn matches(&self, r: &Request) -> bool {
        r.url.path() == "/index.php"
            && r.url.query().is_some_and(|q| {
                let e = format!("/api/v2/{}", self.0);
                // Paged lists add `&limit=..&offset=..`.
                q == e || q.starts_with(&format!("{e}&"))
            })
    }
}

#[tokio::test]
async fn creates_a_run_posts_results_and_closes_it() {
    let server = MockServer::start().await;
    suite_has(&server, 101..=106).await;
    let run = sample_run();
    let plan = testrail::plan(&run, &ctx("c", 0), &plain_config());
    assert_eq!(plan.unmatched, 1, "'has no case id' is counted");
    assert_eq!(plan.skipped, 1, "skipped tests are not posted by default");
    let ids: Vec<u64> = plan.results.iter().map(|p| p.case_id).collect();
    assert_eq!(ids, vec![101, 102, 103, 104, 105, 106]);
    let failed = &plan.results[2].body;
    assert_eq!(failed["status_id"], 5);
    assert_eq!(failed["elapsed"], "1m 6s");
    assert_eq!(failed["version"], "a1b2c3d");
    let comment = failed["comment"].as_str().unwrap();
    assert!(comment.contains("AssertionError: expected 200, got 503"));
    assert!(comment.contains("    at checkout (shop/checkout.spec.ts:42:7)"));
    assert!(
        comment.contains("Branch: main")
            && comment.contains("Build: https://ci.example.com/builds/812")
    );
    assert_eq!(plan.results[3].body["status_id"], 1, "flaky is passed...");
    assert!(
        plan.results[3].body["comment"]
            .as_str()
            .unwrap()
            .starts_with("flaky: passed after 1 retry")
    );
    assert_eq!(plan.results[5].body["status_id"], 5, "error is failed");

    Mock::given(method("POST"))
        .and(endpoint("add_run/7"))
        .and(header("authorization", basic().as_str()))
        .and(header("content-type", "application/json"))
        .and(CaseIds(vec![101, 102, 103, 104, 105, 106], true))
        .respond_with(ResponseTemplate::new(200).set_body_json(
            json!({"id": 501, "url": "https://x.testrail.io/index.php?/runs/view/501"}),
        ))
        .expect(1)
        .mount(&server)
        .await;
    let batch_one: Vec<&Value> = plan.results[..4].iter().map(|p| &p.body).collect();
    let batch_two: Vec<&Value> = plan.results[4..].iter().map(|p| &p.body).collect();
    for (batch, n) in [(batch_one, 4), (batch_two, 2)] {
        Mock::given(method("POST"))
            .and(endpoint("add_results_for_cases/501"))
            .and(header("authorization", basic().as_str()))
            .and(body_json(json!({ "results": batch })))
            .respond_with(
                ResponseTemplate::new(200)
                    .set_body_json((0..n).map(|i| json!({"id": 9000 + i})).collect::<Vec<_>>()),
            )
            .expect(1)
            .mount(&server)
            .await;
    }
    Mock::given(method("POST"))
        .and(endpoint("close_run/501"))
        .and(header("authorization", basic().as_str()))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(json!({"id": 501, "is_completed": true})),
        )
        .expect(1)
        .mount(&server)
        .await;
    let h = Harness::new();
    let c = testrail(&h, &server, "batch_size = 4\nclose_run = true").await;
    let d = deliver(&h, c.as_ref(), &run, 0).await.unwrap();
    assert_eq!(
        d.external_ref.as_deref(),
        Some(
            "testrail:run/501 (6 results; 1 tests without a case id, not posted; 1 skipped, not posted)"
        )
    );
    assert!(deliver(&h, c.as_ref(), &run, 0).await.unwrap().resumed);
}

/// The add_run body lists exactly these case ids, with include_all false and the marker.
/// (and, for `add_run`, the short commit as `refs`).
struct CaseIds(Vec<u64>, bool);

impl wiremock::Match for CaseIds {
    fn matches(&self, r: &Request) -> bool {
        let Ok(b) = r.body_json::<Value>() else {
            return false;
        };
        let ids: Vec<u64> = b["case_ids"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_u64)
            .collect();
        ids == self.0
            && b["include_all"] == false
            && b["suite_id"] == 3
            && b["name"] == "web main a1b2c3d"
            && (!self.1 || b["refs"] == "a1b2c3d")
            && b["description"]
                .as_str()
                .is_some_and(|d| d.contains(&format!("testrelay run {RUN_ID}")))
    }
}

#[tokio::test]
async fn probe_reads_the_project() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(endpoint("get_project/7"))
        .and(header("authorization", basic().as_str()))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"id": 7, "name": "Shop", "suite_mode": 3})),
        )
        .expect(1)
        .mount(&server)
        .await;
    let h = Harness::new();
    let c = testrail(&h, &server, "").await;
    let p = c.probe().await.unwrap();
    assert_eq!(p.detail.as_deref(), Some("Shop"));
}

#[tokio::test]
async fn throttling_and_auth_errors() {
    for (status, class) in [
        (429, ErrorClass::Throttled),
        (401, ErrorClass::Permanent),
        (503, ErrorClass::Transient),
    ] {
        let server = MockServer::start().await;
        Mock::given(wiremock::matchers::any())
            .respond_with(ResponseTemplate::new(status).insert_header("retry-after", "12"))
            .mount(&server)
            .await;
        let h = Harness::new();
        let c = testrail(&h, &server, "").await;
        let e = failed(deliver(&h, c.as_ref(), &sample_run(), 0).await);
        assert_eq!(e.class, class);
        assert!(!e.detail.contains(KEY));
    }
}

/// TestRail Cloud's daily maintenance: every call answers 409 with its error body, with or
/// without `Retry-After`. Transient (retried, after `Retry-After` when given), never the
/// permanent failure that dead-letters every run delivered during the window.
#[tokio::test]
async fn daily_maintenance_409_is_transient() {
    for retry_after in [Some("600"), None] {
        let server = MockServer::start().await;
        let mut answer = ResponseTemplate::new(409).set_body_json(json!({
            "error": "Account is undergoing daily maintenance (TestRail Cloud only)"
        }));
        if let Some(secs) = retry_after {
            answer = answer.insert_header("retry-after", secs);
        }
        Mock::given(wiremock::matchers::any())
            .respond_with(answer)
            .mount(&server)
            .await;
        let h = Harness::new();
        let c = testrail(&h, &server, "").await;
        let e = failed(deliver(&h, c.as_ref(), &sample_run(), 0).await);
        assert_eq!(e.class, ErrorClass::Transient, "{e:?}");
        assert_eq!(e.status_code, Some(409));
        assert!(e.detail.contains("maintenance"), "{}", e.detail);
        assert_eq!(
            e.retry_after,
            retry_after.map(|s| std::time::Duration::from_secs(s.parse().unwrap()))
        );
    }
}

/// TestRail pages lists (250 a page) and links the next page in `_links.next`; links seen in
/// the wild carry `limit=0`, which TestRail then refuses. The next page is asked for by
/// offset, never by following the link as given.
#[tokio::test]
async fn paged_lists_are_read_by_offset_not_by_the_next_link() {
    struct Tests;
    impl wiremock::Respond for Tests {
        fn respond(&self, r: &Request) -> ResponseTemplate {
            let q = r.url.query().unwrap_or_default().to_string();
            let param = |name: &str| {
                q.split('&')
                    .find_map(|kv| kv.strip_prefix(&format!("{name}=")))
                    .map(|v| v.parse::<usize>().unwrap())
            };
            let (limit, offset) = (param("limit").unwrap_or(250), param("offset").unwrap_or(0));
            if limit == 0 {
                return ResponseTemplate::new(400)
                    .set_body_json(json!({"error": "Field :limit is not a valid integer."}));
            }
            let total = 600;
            let page: Vec<Value> = (offset..(offset + limit).min(total))
                .map(|i| json!({"case_id": 10_000 + i, "status_id": 3}))
                .collect();
            let next = (offset + limit < total)
                .then(|| format!("/api/v2/get_tests/42&limit=0&offset={}", offset + limit));
            ResponseTemplate::new(200).set_body_json(json!({
                "offset": offset, "limit": limit, "size": page.len(),
                "_links": {"next": next, "prev": null}, "tests": page
            }))
        }
    }
    let server = MockServer::start().await;
    suite_has(&server, 101..=106).await;
    standalone_run(&server, 42).await;
    Mock::given(method("GET"))
        .and(endpoint("get_tests/42"))
        .respond_with(Tests)
        .mount(&server)
        .await;
    let seen = Arc::new(Mutex::new(0usize));
    let count = seen.clone();
    Mock::given(method("POST"))
        .and(endpoint("update_run/42"))
        .respond_with(move |r: &Request| {
            let body: Value = serde_json::from_slice(&r.body).unwrap();
            *count.lock().unwrap() = body["case_ids"].as_array().unwrap().len();
            ResponseTemplate::new(200).set_body_json(json!({"id": 42}))
        })
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(endpoint("add_results_for_cases/42"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!([])))
        .mount(&server)
        .await;
    let h = Harness::new();
    let c = testrail(&h, &server, "run_id = 42").await;
    deliver(&h, c.as_ref(), &sample_run(), 0).await.unwrap();
    assert_eq!(
        *seen.lock().unwrap(),
        600 + 6,
        "the run keeps all 600 cases it had, plus the report's 6"
    );
}

#[tokio::test]
async fn a_crash_at_any_step_creates_one_run_and_posts_each_result_once() {
    for step in ["run", "results/0", "results/1", "close"] {
        for point in [CrashPoint::BeforeCall, CrashPoint::AfterCall] {
            let (server, state) = fake::serve(FakeTestRail::with_cases(101..=106)).await;
            let h = Harness::new();
            let c = testrail(&h, &server, "batch_size = 4\nclose_run = true").await;
            let d = crash_then_retry(&h, c.as_ref(), &sample_run(), point, step).await;
            let st = state.lock().unwrap();
            assert_eq!(st.runs.len(), 1, "{step} {point:?}: runs");
            let mut cases: Vec<u64> = st.results.iter().map(|r| r.1).collect();
            cases.sort();
            assert_eq!(
                cases,
                vec![101, 102, 103, 104, 105, 106],
                "{step} {point:?}: results"
            );
            assert_eq!(st.closed, vec![501], "{step} {point:?}: closed");
            assert!(d.external_ref.unwrap().starts_with("testrail:run/501"));
        }
    }
}

#[tokio::test]
async fn ten_thousand_failures_post_in_bounded_batches() {
    let t = &plain_config();
    let plan = testrail::plan(&run_with_failures(10_000), &ctx("c", 0), t);
    assert_eq!(plan.results.len(), 10_001);
    for p in &plan.results {
        assert!(p.body["comment"].as_str().unwrap().len() <= testrail::MAX_COMMENT);
    }
    let biggest = plan
        .results
        .chunks(t.batch_size)
        .map(|b| {
            serde_json::to_vec(&json!({"results": b.iter().map(|p| &p.body).collect::<Vec<_>>()}))
                .unwrap()
                .len()
        })
        .max()
        .unwrap();
    assert!(
        biggest < 1_000_000,
        "{biggest} bytes in one add_results_for_cases call"
    );
}

#[tokio::test]
async fn existing_run_is_extended_not_replaced() {
    let server = MockServer::start().await;
    suite_has(&server, 101..=106).await;
    standalone_run(&server, 42).await;
    Mock::given(method("GET"))
        .and(endpoint("get_tests/42"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"offset": 0, "limit": 250, "size": 2, "_links": {"next": null}, "tests": [{"case_id": 101, "status_id": 3}, {"case_id": 900, "status_id": 3}]})))
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(endpoint("update_run/42"))
        .and(body_json(
            json!({"include_all": false, "case_ids": [101, 102, 103, 104, 105, 106, 900]}),
        ))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"id": 42})))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(endpoint("add_results_for_cases/42"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!([])))
        .expect(1)
        .mount(&server)
        .await;
    let h = Harness::new();
    let c = testrail(&h, &server, "run_id = 42").await;
    deliver(&h, c.as_ref(), &sample_run(), 0).await.unwrap();
}

#[tokio::test]
async fn rendered_results_fixture() {
    let t = &plain_config();
    let plan = testrail::plan(&sample_run(), &ctx("c", 0), t);
    let results: Vec<&Value> = plan.results.iter().map(|p| &p.body).collect();
    fixture(
        "testrail-add-results-for-cases.json",
        &json!({ "results": results }),
    );
}

/// Parametrised tests map several results to one case id; TestRail keeps the last one it
/// is sent, so a failure followed by a pass would read as passed. One result per case: the
/// worst status, the variants' times added up, and the comment lists every variant.
#[tokio::test]
async fn parametrised_variants_make_one_result_the_worst_wins() {
    use testrelay_domain::report::model::{Status, TestCase};
    let mut run = sample_run();
    let variant = |name: &str, status, ms| {
        let mut c = TestCase::new(name, status);
        c.duration_ms = Some(ms);
        if status == Status::Failed {
            c.message = Some("expected 3 items, got 2".into());
        }
        c
    };
    run.report.suites[0].cases.extend([
        variant("C900 sums [1-2]", Status::Passed, 1000.0),
        variant("C900 sums [2-3]", Status::Failed, 2000.0),
        variant("C900 sums [3-4]", Status::Passed, 3000.0),
    ]);
    let plan = testrail::plan(&run, &ctx("c", 0), &plain_config());
    let c900: Vec<&Value> = plan
        .results
        .iter()
        .filter(|p| p.case_id == 900)
        .map(|p| &p.body)
        .collect();
    assert_eq!(c900.len(), 1, "one result for the case");
    let r = c900[0];
    assert_eq!(r["status_id"], 5, "the failure wins over the later pass");
    assert_eq!(r["elapsed"], "6s");
    let comment = r["comment"].as_str().unwrap();
    assert!(comment.contains("3 results for this case"), "{comment}");
    for name in [
        "sums [1-2]: passed",
        "sums [2-3]: failed",
        "sums [3-4]: passed",
    ] {
        assert!(comment.contains(name), "{name} in {comment}");
    }
    assert!(comment.contains("expected 3 items, got 2"), "{comment}");
}

#[tokio::test]
async fn plan_entries_are_created_in_the_configured_plan() {
    let server = MockServer::start().await;
    suite_has(&server, 101..=106).await;
    Mock::given(method("POST"))
        .and(endpoint("add_plan_entry/12"))
        .and(header("authorization", basic().as_str()))
        .and(CaseIds(vec![101, 102, 103, 104, 105, 106], false))
        .respond_with(ResponseTemplate::new(200).set_body_json(
            json!({"id": "3933d74b-4282-4c1f-be62-a641ab427063", "suite_id": 3, "runs": [{"id": 77, "url": "x"}]}),
        ))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(endpoint("add_results_for_cases/77"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!([])))
        .expect(1)
        .mount(&server)
        .await;
    let h = Harness::new();
    let c = testrail(&h, &server, "plan_id = 12").await;
    let d = deliver(&h, c.as_ref(), &sample_run(), 0).await.unwrap();
    assert!(d.external_ref.unwrap().starts_with("testrail:run/77"));
}
