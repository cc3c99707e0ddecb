//! Xray against wiremock, answering as Xray does: the whole import refused (400) for one
//! unknown test key, so keys are checked in Jira first; duplicate keys; tests without a key
//! created once through `testInfo`; Xray Cloud as its own target, with its own rate limit and
//! its own breaker.

use super::jira::{issues, jira_has, known};
use serde_json::{Value, json};
use std::sync::Arc;
use testrelay_connectors::jira;
use testrelay_domain::delivery::breaker::Phase;
use testrelay_domain::delivery::steps::{CrashPoint, NoFaults};
use testrelay_domain::ports::{Connector, ErrorClass, ManualClock, StepError};
use testrelay_domain::report::model::{Status, TestCase};
use testrelay_tests::vendor::*;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

const OTHER_RUN: &str = "01ARZ3NDEKTSV4RRFFQ69G5FBW";

fn jira_toml(jira: &MockServer, xray: &MockServer, extra: &str) -> String {
    format!(
        "kind = \"jira\"\nurl = \"{}\"\ndeployment = \"cloud\"\nemail = \"ci@example.com\"\ntoken = {{ secret = \"jira\" }}\nproject_key = \"SHOP\"\nallow_http = true\n[connectors.c.xray]\nclient_id = {{ secret = \"xray-id\" }}\nclient_secret = {{ secret = \"xray-secret\" }}\nurl = \"{}\"\n{extra}",
        jira.uri(),
        xray.uri()
    )
}

async fn connector(
    h: &Harness,
    jira: &MockServer,
    xray: &MockServer,
    extra: &str,
) -> Arc<dyn Connector> {
    h.secret("jira", "jira-token-0123")
        .secret("xray-id", "ID")
        .secret("xray-secret", "SECRET");
    h.connector("c", &jira_toml(jira, xray, extra)).await
}

/// Jira creates every issue asked for (`SHOP-300`, `SHOP-301`, ...).
async fn jira_creates_issues(server: &MockServer) {
    let next = std::sync::atomic::AtomicU32::new(300);
    Mock::given(method("POST"))
        .and(path("/rest/api/2/issue"))
        .respond_with(move |_: &Request| {
            let n = next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            ResponseTemplate::new(201)
                .set_body_json(json!({"id": "1", "key": format!("SHOP-{n}"), "self": "x"}))
        })
        .mount(server)
        .await;
}

/// A Jira that creates issues and has the sample run's keys as tests, and an Xray server.
async fn jira_and_xray() -> (MockServer, MockServer) {
    let (jira_server, xray) = (MockServer::start().await, MockServer::start().await);
    jira_creates_issues(&jira_server).await;
    jira_has(
        &jira_server,
        &["SHOP-2", "SHOP-3", "SHOP-5", "SHOP-6"],
        "Test",
    )
    .await;
    (jira_server, xray)
}

/// Xray: authenticates, and imports unless a test key is one it does not have as a test,
/// which it answers as it does, refusing the whole import. Returns the imports it took.
async fn xray_importing(
    server: &MockServer,
    tests: &'static [&'static str],
) -> Arc<std::sync::Mutex<Vec<Value>>> {
    Mock::given(method("POST"))
        .and(path("/api/v2/authenticate"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!("xray-token")))
        .mount(server)
        .await;
    let imports: Arc<std::sync::Mutex<Vec<Value>>> = Arc::default();
    let taken = imports.clone();
    Mock::given(method("POST"))
        .and(path("/api/v2/import/execution"))
        .respond_with(move |r: &Request| {
            let body: Value = r.body_json().unwrap();
            let unknown = body["tests"].as_array().unwrap().iter().find_map(|t| {
                let key = t["testKey"].as_str()?;
                (!tests.contains(&key)).then(|| key.to_string())
            });
            if let Some(key) = unknown {
                return ResponseTemplate::new(400).set_body_json(json!({
                    "error": format!("Error importing execution results to database:\n\nTest issue with key {key} not found.")
                }));
            }
            taken.lock().unwrap().push(body);
            ResponseTemplate::new(200).set_body_json(json!({"id": "1", "key": "SHOP-300", "self": "x"}))
        })
        .mount(server)
        .await;
    imports
}

/// One unknown key (SHOP-99) and one key of a Bug (SHOP-7) would sink the whole import;
/// they are left out and named, the other results imported.
#[tokio::test]
async fn unknown_test_keys_are_left_out_and_named() {
    let (jira_server, xray) = (MockServer::start().await, MockServer::start().await);
    jira_creates_issues(&jira_server).await;
    let mut found = issues(&["SHOP-2", "SHOP-3", "SHOP-5", "SHOP-6"], "Test");
    found
        .as_array_mut()
        .unwrap()
        .extend(issues(&["SHOP-7"], "Bug").as_array().unwrap().clone());
    Mock::given(method("POST"))
        .and(path("/rest/api/3/issue/bulkfetch"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(json!({"issues": found, "issueErrors": []})),
        )
        .mount(&jira_server)
        .await;
    let imports = xray_importing(&xray, &["SHOP-2", "SHOP-3", "SHOP-5", "SHOP-6"]).await;
    let refused = reqwest::Client::new()
        .post(format!("{}/api/v2/import/execution", xray.uri()))
        .json(&json!({"tests": [{"testKey": "SHOP-99", "status": "PASSED"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 400, "Xray's answer to one unknown key");

    let mut run = sample_run();
    run.report.suites[0].cases.extend([
        TestCase::new("SHOP-99: deleted test", Status::Passed),
        TestCase::new("SHOP-7: names a bug", Status::Failed),
    ]);
    let h = Harness::new();
    let c = connector(&h, &jira_server, &xray, "").await;
    let d = deliver(&h, c.as_ref(), &run, 0).await.unwrap();
    assert_eq!(
        d.external_ref.as_deref(),
        Some(
            "jira: execution SHOP-300 (4 tests; 4 without a test key, not imported; 2 test keys Jira does not have as tests, not imported: SHOP-7, SHOP-99)"
        )
    );
    assert_eq!(
        imports.lock().unwrap()[0]["tests"]
            .as_array()
            .unwrap()
            .len(),
        4
    );
}

/// Several tests reporting one key (parametrised variants) are one test in the import: the
/// worst outcome stands and the comment lists every variant. Sent as they were, Xray kept
/// whichever came last.
#[tokio::test]
async fn duplicate_keys_become_one_test_the_worst_wins() {
    let mut run = sample_run();
    run.report.suites[0].cases = vec![
        TestCase::new("SHOP-2: sums [1-2]", Status::Passed),
        TestCase::new("SHOP-2: sums [2-3]", Status::Failed),
        TestCase::new("SHOP-2: sums [3-4]", Status::Passed),
    ];
    let config = connector_config(
        "c",
        "kind = \"jira\"\nurl = \"https://x.atlassian.net\"\ndeployment = \"cloud\"\nemail = \"e\"\ntoken = { secret = \"jira\" }\nproject_key = \"SHOP\"\n[connectors.c.xray]\nclient_id = { secret = \"a\" }\nclient_secret = { secret = \"b\" }",
    );
    let testrelay_domain::config::ConnectorConfig::Jira(jc) = one(&config) else {
        unreachable!()
    };
    let import = jira::xray_import(&run, "SHOP-1", jc, &known(&["SHOP-2"]));
    let tests = import.body["tests"].as_array().unwrap();
    assert_eq!(tests.len(), 1);
    assert_eq!(tests[0]["status"], "FAILED");
    let comment = tests[0]["comment"].as_str().unwrap();
    assert!(comment.starts_with("3 results for this case"), "{comment}");
    assert!(
        comment.contains("- SHOP-2: sums [2-3]: failed"),
        "{comment}"
    );
}

/// With `create_tests`, tests without a key go in with `testInfo` (a Generic test defined
/// by `classname.name`), as Xray's own JUnit import creates them. A run meeting a new test
/// while another run's import of it is under way waits for it, so that Xray creates the test
/// once and matches the second import to it by its definition.
#[tokio::test]
async fn tests_without_a_key_are_created_once() {
    let (jira_server, xray) = jira_and_xray().await;
    let imports = xray_importing(&xray, &["SHOP-2", "SHOP-3", "SHOP-5", "SHOP-6"]).await;
    let h = Harness::new();
    let c = connector(&h, &jira_server, &xray, "create_tests = true").await;
    let first = sample_run();
    let mut second = sample_run();
    second.run_id = testrelay_domain::ids::RunId::parse(OTHER_RUN).unwrap();
    let steps = |run: &str, faults| h.steps_of(run, "c", c.kind(), 0, faults);

    let crash = CrashOnce::new(CrashPoint::BeforeCall, "import");
    let crashed = c.deliver(&first, &ctx("c", 0), &steps(RUN_ID, crash)).await;
    assert!(matches!(crashed, Err(StepError::Crashed)));
    let waiting = c
        .deliver(&second, &ctx("c", 0), &steps(OTHER_RUN, Arc::new(NoFaults)))
        .await;
    assert!(
        matches!(waiting, Err(StepError::Busy { .. })),
        "{waiting:?}"
    );
    assert!(imports.lock().unwrap().is_empty());

    h.expire_leases();
    let d = c
        .deliver(&first, &ctx("c", 0), &steps(RUN_ID, Arc::new(NoFaults)))
        .await
        .unwrap();
    assert!(
        d.external_ref
            .unwrap()
            .contains("(4 tests; 4 by definition, created if new)"),
        "the unkeyed tests"
    );
    c.deliver(&second, &ctx("c", 0), &steps(OTHER_RUN, Arc::new(NoFaults)))
        .await
        .unwrap();
    let imports = imports.lock().unwrap();
    assert_eq!(imports.len(), 2, "the second after the first");
    let info: Vec<&Value> = imports[0]["tests"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|t| t.get("testInfo"))
        .collect();
    assert_eq!(info.len(), 4);
    assert_eq!(
        info[0],
        &json!({"projectKey": "SHOP", "summary": "C101 browses the catalogue", "type": "Generic", "definition": "shop.CheckoutTest.C101 browses the catalogue"})
    );
}

/// Xray Cloud throttles on its own: its 429 pauses Xray calls, not Jira's, and the failure is
/// marked as Xray's (its own breaker takes it).
#[tokio::test]
async fn xray_cloud_has_its_own_rate_limit() {
    let (jira_server, xray) = jira_and_xray().await;
    Mock::given(method("POST"))
        .and(path("/api/v2/authenticate"))
        .respond_with(ResponseTemplate::new(429).insert_header("retry-after", "120"))
        .expect(1)
        .mount(&xray)
        .await;
    let h = Harness::new();
    let c = connector(&h, &jira_server, &xray, "").await;
    let xray_target = format!("xray:http://127.0.0.1:{}", xray.address().port());
    assert_eq!(c.other_targets(), vec![xray_target.as_str()]);
    let e = failed(deliver(&h, c.as_ref(), &sample_run(), 0).await);
    assert_eq!(e.class, ErrorClass::Throttled);
    assert_eq!(e.target.as_deref(), Some(xray_target.as_str()));
    // Another run: Jira creates its execution; only the Xray call waits out the pause.
    let mut other = sample_run();
    other.run_id = testrelay_domain::ids::RunId::parse(OTHER_RUN).unwrap();
    let steps = h.steps_of(OTHER_RUN, "c", c.kind(), 0, Arc::new(NoFaults));
    let e = match c.deliver(&other, &ctx("c", 0), &steps).await {
        Err(StepError::Failed(e)) => e,
        other => panic!("{other:?}"),
    };
    assert!(e.detail.starts_with("rate limit for xray:"), "{}", e.detail);
    let created = jira_server
        .received_requests()
        .await
        .unwrap()
        .iter()
        .filter(|r| r.url.path() == "/rest/api/2/issue")
        .count();
    assert_eq!(created, 2, "both executions created while Xray paused");
}

/// Through the delivery service: while Xray Cloud is down, its breaker opens and holds the
/// deliveries; Jira's breaker (which its bugs and other connectors on the site share) stays
/// closed, and the health report shows the connector's worst breaker.
#[tokio::test]
async fn xray_outage_opens_its_own_breaker_not_jiras() {
    let (jira_server, xray) = (MockServer::start().await, MockServer::start().await);
    jira_creates_issues(&jira_server).await;
    Mock::given(method("POST"))
        .and(path("/rest/api/3/issue/bulkfetch"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"issues": []})))
        .mount(&jira_server)
        .await;
    Mock::given(wiremock::matchers::any())
        .respond_with(ResponseTemplate::new(503))
        .mount(&xray)
        .await;
    let dir = tempfile::tempdir().unwrap();
    let mut config = testrelay_tests::local::config(dir.path(), "http://127.0.0.1:9");
    let tracker = testrelay_domain::ids::ConnectorName::parse("tracker").unwrap();
    let jira_config = connector_config(
        "tracker",
        &jira_toml(&jira_server, &xray, "").replace("connectors.c.", "connectors.tracker."),
    );
    config.connectors = jira_config.connectors.clone();
    for p in config.projects.values_mut() {
        p.connectors = vec![tracker.clone()];
    }
    let secrets =
        testrelay_embedded::FileSecretStore::new(testrelay_cli::app::secrets_dir(dir.path()));
    for (name, value) in [
        ("jira", "jira-token-0123"),
        ("xray-id", "ID"),
        ("xray-secret", "SECRET"),
    ] {
        secrets.put(name, value).unwrap();
    }
    let clock = Arc::new(ManualClock::new(1_800_000_000_000));
    let (app, ingest) =
        testrelay_tests::local::on_manual_clock(config, dir.path(), clock.clone(), None).await;
    testrelay_tests::local::submit_runs(ingest, 12).await;
    app.dispatch_all_pending().await;

    let breakers = testrelay_domain::delivery::breakers::Breakers::new(
        Arc::new(app.store.clone()),
        clock.clone(),
        Arc::new(testrelay_domain::health::metrics::NoMetrics),
    );
    let cfg = testrelay_domain::delivery::breaker::BreakerConfig::default();
    let port = |s: &MockServer| s.address().port();
    let xray_target = format!("xray:http://127.0.0.1:{}", port(&xray));
    let jira_target = format!("jira:http://127.0.0.1:{}", port(&jira_server));
    assert_eq!(
        breakers.load(&xray_target, &cfg).await.unwrap().0.phase,
        Phase::Open
    );
    assert_eq!(
        breakers.load(&jira_target, &cfg).await.unwrap().0.phase,
        Phase::Closed
    );
    let report = app.health.check().await;
    assert_eq!(
        report.connectors[0].breaker,
        Phase::Open,
        "{:?}",
        report.connectors[0]
    );
}

/// A CI pipeline's parts go into ONE Test Execution: the first part to get there creates it
/// (labelled for the pipeline), every part is imported into it, and bugs wait for the merged
/// result.
#[tokio::test]
async fn a_pipelines_parts_share_one_test_execution() {
    use testrelay_domain::report::model::{PipelineRef, Shard};
    let (jira_server, xray) = jira_and_xray().await;
    let imports = xray_importing(&xray, &["SHOP-2", "SHOP-3", "SHOP-5", "SHOP-6"]).await;
    let h = Harness::new();
    let c = connector(&h, &jira_server, &xray, "").await;
    let parts: Vec<_> = (1..=3)
        .map(|i| {
            let mut r = sample_run();
            r.run_id = testrelay_domain::ids::RunId::derived(format!("part {i}").as_bytes());
            r.meta.pipeline = Some(PipelineRef {
                id: "gl-42".into(),
                shard: Some(Shard { index: i, total: 3 }),
                attempt: 1,
                completion: None,
            });
            r
        })
        .collect();
    let delivered =
        super::testrail::pipeline::deliver_all(&h, c.as_ref(), &parts.iter().collect::<Vec<_>>())
            .await;
    for d in &delivered {
        assert!(
            d.external_ref
                .as_deref()
                .unwrap()
                .starts_with("jira: execution SHOP-300 "),
            "{d:?}"
        );
    }
    let created: Vec<Value> = jira_server
        .received_requests()
        .await
        .unwrap()
        .iter()
        .filter(|r| r.url.path() == "/rest/api/2/issue")
        .map(|r| r.body_json::<Value>().unwrap())
        .collect();
    assert_eq!(created.len(), 1, "one Test Execution");
    let labels = created[0]["fields"]["labels"].to_string();
    assert!(labels.contains("testrelay-pipeline-"), "{labels}");
    let imports = imports.lock().unwrap();
    assert_eq!(imports.len(), 3, "every part imported");
    assert!(imports.iter().all(|i| i["testExecutionKey"] == "SHOP-300"));
}
