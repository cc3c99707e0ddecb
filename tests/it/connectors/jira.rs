//! Jira + Xray against wiremock: the Test Execution created with its run label, the Xray
//! import into it (Cloud: authenticate + `/api/v2/import/execution`; Data Center:
//! `/rest/raven/1.0/import/execution` with a PAT), one bug per failure fingerprint ever
//! (later runs comment), and a stateful fake Jira for a crash at every step. Xray's test-key
//! pre-flight, duplicates, test creation and its own target are in `xray.rs`.

use base64::Engine;
use serde_json::{Value, json};
use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use testrelay_connectors::jira;
use testrelay_domain::delivery::steps::CrashPoint;
use testrelay_tests::vendor::*;
use wiremock::matchers::{body_json, body_partial_json, header, method, path};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

const TOKEN: &str = "jira-api-token-0123";

fn basic() -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("ci@example.com:{TOKEN}"))
    )
}

async fn cloud(
    h: &Harness,
    jira: &MockServer,
    xray: &MockServer,
    extra: &str,
) -> Arc<dyn testrelay_domain::ports::Connector> {
    h.secret("jira", TOKEN)
        .secret("xray-id", "CLIENTID")
        .secret("xray-secret", "CLIENTSECRET");
    h.connector(
        "c",
        &format!(
            "kind = \"jira\"\nurl = \"{}\"\ndeployment = \"cloud\"\nemail = \"ci@example.com\"\ntoken = {{ secret = \"jira\" }}\nproject_key = \"SHOP\"\nallow_http = true\n{extra}\n[connectors.c.xray]\nclient_id = {{ secret = \"xray-id\" }}\nclient_secret = {{ secret = \"xray-secret\" }}\nurl = \"{}\"\ntest_plan_key = \"SHOP-100\"\nenvironments = [\"chrome\"]\n",
            jira.uri(),
            xray.uri()
        ),
    )
    .await
}

/// The keys, as the set of tests Jira has.
pub fn known(keys: &[&str]) -> HashSet<String> {
    keys.iter().map(|k| k.to_string()).collect()
}

/// Jira has `keys` as issues of `issue_type` (Cloud bulk fetch: unknown keys are simply not
/// in `issues`).
pub async fn jira_has(server: &MockServer, keys: &[&str], issue_type: &str) {
    Mock::given(method("POST"))
        .and(path("/rest/api/3/issue/bulkfetch"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"issues": issues(keys, issue_type), "issueErrors": []})),
        )
        .mount(server)
        .await;
}

/// Issues as Jira lists them, with only their issue type.
pub fn issues(keys: &[&str], issue_type: &str) -> Value {
    keys.iter()
        .map(|k| json!({"id": "1", "key": k, "fields": {"issuetype": {"name": issue_type}}}))
        .collect()
}

#[tokio::test]
async fn cloud_creates_the_execution_and_imports_into_it() {
    let jira_server = MockServer::start().await;
    let xray = MockServer::start().await;
    let run = sample_run();
    Mock::given(method("POST"))
        .and(path("/rest/api/2/issue"))
        .and(header("authorization", basic().as_str()))
        .and(body_partial_json(json!({"fields": {
            "project": {"key": "SHOP"},
            "issuetype": {"name": "Test Execution"},
            "labels": ["testrelay", format!("testrelay-run-{}", RUN_ID.to_ascii_lowercase())]
        }})))
        .respond_with(
            ResponseTemplate::new(201)
                .set_body_json(json!({"id": "10001", "key": "SHOP-200", "self": "x"})),
        )
        .expect(1)
        .mount(&jira_server)
        .await;
    Mock::given(method("POST"))
        .and(path("/api/v2/authenticate"))
        .and(body_json(
            json!({"client_id": "CLIENTID", "client_secret": "CLIENTSECRET"}),
        ))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!("xray-jwt-token")))
        .expect(1)
        .mount(&xray)
        .await;
    Mock::given(method("POST"))
        .and(path("/rest/api/3/issue/bulkfetch"))
        .and(header("authorization", basic().as_str()))
        .and(body_json(json!({
            "issueIdsOrKeys": ["SHOP-2", "SHOP-3", "SHOP-5", "SHOP-6"], "fields": ["issuetype"]
        })))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "issues": issues(&["SHOP-2", "SHOP-3", "SHOP-5", "SHOP-6"], "Test"),
            "issueErrors": []
        })))
        .expect(1)
        .mount(&jira_server)
        .await;
    let config = connector_config(
        "c",
        "kind = \"jira\"\nurl = \"https://x.atlassian.net\"\ndeployment = \"cloud\"\nemail = \"e\"\ntoken = { secret = \"jira\" }\nproject_key = \"SHOP\"\n[connectors.c.xray]\nclient_id = { secret = \"a\" }\nclient_secret = { secret = \"b\" }\ntest_plan_key = \"SHOP-100\"\nenvironments = [\"chrome\"]",
    );
    let testrelay_domain::config::ConnectorConfig::Jira(jc) = one(&config) else {
        unreachable!()
    };
    let import = jira::xray_import(
        &run,
        "SHOP-200",
        jc,
        &known(&["SHOP-2", "SHOP-3", "SHOP-5", "SHOP-6"]),
    )
    .body;
    assert_eq!(import["testExecutionKey"], "SHOP-200");
    assert_eq!(import["info"]["testPlanKey"], "SHOP-100");
    assert_eq!(import["info"]["testEnvironments"], json!(["chrome"]));
    assert_eq!(import["info"]["revision"], "a1b2c3d4e5f6a7b8c9d0");
    let statuses: Vec<(String, String)> = import["tests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (
                t["testKey"].as_str().unwrap().into(),
                t["status"].as_str().unwrap().into(),
            )
        })
        .collect();
    assert_eq!(
        statuses,
        vec![
            ("SHOP-2".to_string(), "PASSED".to_string()),
            ("SHOP-3".into(), "FAILED".into()),
            ("SHOP-5".into(), "PASSED".into()),
            ("SHOP-6".into(), "FAILED".into()),
        ]
    );
    Mock::given(method("POST"))
        .and(path("/api/v2/import/execution"))
        .and(header("authorization", "Bearer xray-jwt-token"))
        .and(body_json(&import))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"id": "10001", "key": "SHOP-200", "self": "x"})),
        )
        .expect(1)
        .mount(&xray)
        .await;
    let h = Harness::new();
    let c = cloud(&h, &jira_server, &xray, "").await;
    let d = deliver(&h, c.as_ref(), &run, 0).await.unwrap();
    assert_eq!(
        d.external_ref.as_deref(),
        Some("jira: execution SHOP-200 (4 tests; 4 without a test key, not imported)")
    );
    assert!(deliver(&h, c.as_ref(), &run, 0).await.unwrap().resumed);
}

/// Xray Server/DC's documented import path is `/rest/raven/1.0/...`: older Xray versions
/// have only that one (`2.0` answers 404 there, which would be permanent), newer ones keep it.
#[tokio::test]
async fn data_center_imports_with_a_personal_access_token() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/rest/raven/2.0/import/execution"))
        .respond_with(ResponseTemplate::new(404))
        .expect(0)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/rest/api/2/search"))
        .and(wiremock::matchers::query_param(
            "jql",
            "key in (SHOP-2,SHOP-3,SHOP-5,SHOP-6)",
        ))
        .and(wiremock::matchers::query_param("validateQuery", "warn"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "issues": issues(&["SHOP-2", "SHOP-3", "SHOP-5", "SHOP-6"], "Test"),
            "warningMessages": []
        })))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/rest/api/2/issue"))
        .and(header("authorization", format!("Bearer {TOKEN}").as_str()))
        .respond_with(
            ResponseTemplate::new(201)
                .set_body_json(json!({"id": "1", "key": "SHOP-9", "self": "x"})),
        )
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/rest/raven/1.0/import/execution"))
        .and(header("authorization", format!("Bearer {TOKEN}").as_str()))
        .and(body_partial_json(json!({"testExecutionKey": "SHOP-9", "tests": [{"testKey": "SHOP-2", "status": "PASS"}, {"testKey": "SHOP-3", "status": "FAIL"}]})))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"testExecIssue": {"id": "1", "key": "SHOP-9", "self": "x"}})))
        .expect(1)
        .mount(&server)
        .await;
    let h = Harness::new();
    h.secret("pat", TOKEN);
    let c = h.connector("c", &format!("kind = \"jira\"\nurl = \"{}\"\ndeployment = \"data_center\"\ntoken = {{ secret = \"pat\" }}\nproject_key = \"SHOP\"\nallow_http = true\n[connectors.c.xray]\n", server.uri())).await;
    deliver(&h, c.as_ref(), &sample_run(), 0).await.unwrap();
}

#[derive(Default)]
struct FakeJira {
    issues: Vec<Value>,
    comments: Vec<(String, String)>,
    imports: Vec<Value>,
}

/// A Jira (+ Xray) that keeps issues, comments and imports; search finds issues by label.
async fn fake_jira() -> (MockServer, Arc<Mutex<FakeJira>>) {
    let server = MockServer::start().await;
    let state: Arc<Mutex<FakeJira>> = Arc::default();
    let s = state.clone();
    Mock::given(wiremock::matchers::any())
        .respond_with(move |r: &Request| {
            let mut st = s.lock().unwrap();
            let p = r.url.path().to_string();
            let answer = if p == "/rest/api/2/issue" {
                let key = format!("SHOP-{}", 300 + st.issues.len());
                let mut fields = r.body_json::<Value>().unwrap()["fields"].clone();
                fields["key"] = json!(key);
                st.issues.push(fields);
                json!({"id": "1", "key": key, "self": "x"})
            } else if p == "/rest/api/3/search/jql" {
                let jql = r
                    .url
                    .query_pairs()
                    .find(|(k, _)| k == "jql")
                    .unwrap()
                    .1
                    .to_string();
                let label = jql
                    .split("labels = \"")
                    .nth(1)
                    .unwrap()
                    .trim_end_matches('"')
                    .to_string();
                let hits: Vec<Value> = st
                    .issues
                    .iter()
                    .filter(|i| {
                        i["labels"]
                            .as_array()
                            .unwrap()
                            .iter()
                            .any(|l| l == &json!(label))
                    })
                    .map(|i| json!({"key": i["key"]}))
                    .collect();
                json!({"issues": hits})
            } else if let Some(issue) = p
                .strip_prefix("/rest/api/2/issue/")
                .and_then(|x| x.strip_suffix("/comment"))
            {
                if r.method.as_str() == "GET" {
                    let listed: Vec<Value> = st
                        .comments
                        .iter()
                        .enumerate()
                        .filter(|(_, c)| c.0 == issue)
                        .map(|(i, c)| json!({"id": format!("{}", i + 1), "body": c.1}))
                        .collect();
                    return ResponseTemplate::new(200).set_body_json(json!({"comments": listed}));
                }
                st.comments.push((
                    issue.to_string(),
                    r.body_json::<Value>().unwrap()["body"]
                        .as_str()
                        .unwrap()
                        .to_string(),
                ));
                json!({"id": format!("{}", st.comments.len())})
            } else if p == "/rest/api/3/issue/bulkfetch" {
                // Every key asked for is a test.
                let keys = r.body_json::<Value>().unwrap()["issueIdsOrKeys"].clone();
                let issues: Vec<Value> = keys
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|k| json!({"key": k, "fields": {"issuetype": {"name": "Test"}}}))
                    .collect();
                json!({ "issues": issues })
            } else if p == "/api/v2/authenticate" {
                json!("token")
            } else if p == "/api/v2/import/execution" {
                st.imports.push(r.body_json::<Value>().unwrap());
                json!({"key": "x"})
            } else {
                return ResponseTemplate::new(404);
            };
            ResponseTemplate::new(200).set_body_json(answer)
        })
        .mount(&server)
        .await;
    (server, state)
}

const BUGS: &str = "[connectors.c.bugs]\nlabels = [\"ci\"]\npriority = \"High\"";

#[tokio::test]
async fn one_bug_per_fingerprint_and_comments_on_later_runs() {
    let (server, state) = fake_jira().await;
    let h = Harness::new();
    let c = cloud(&h, &server, &server, BUGS).await;
    let run = sample_run();
    let d = deliver(&h, c.as_ref(), &run, 0).await.unwrap();
    {
        let st = state.lock().unwrap();
        // The execution and one bug per failing test (SHOP-3 failed, SHOP-6 errored).
        let bugs: Vec<&Value> = st
            .issues
            .iter()
            .filter(|i| i["issuetype"]["name"] == "Bug")
            .collect();
        assert_eq!(bugs.len(), 2);
        let labels = bugs[0]["labels"].as_array().unwrap();
        assert!(
            labels
                .iter()
                .any(|l| l.as_str().unwrap().starts_with("testrelay-fp-"))
        );
        assert!(labels.contains(&json!("ci")));
        assert_eq!(bugs[0]["priority"], json!({"name": "High"}));
        assert_eq!(st.imports.len(), 1);
    }
    assert!(
        d.external_ref
            .unwrap()
            .contains("bugs opened: SHOP-301, SHOP-302; commented: 0")
    );
    // The same failures in a later run: comments, no new bug.
    let mut later = sample_run();
    later.run_id = testrelay_domain::ids::RunId::parse("01ARZ3NDEKTSV4RRFFQ69G5FAW").unwrap();
    let d = later_deliver(&h, c.as_ref(), &later).await;
    let st = state.lock().unwrap();
    assert_eq!(
        st.issues
            .iter()
            .filter(|i| i["issuetype"]["name"] == "Bug")
            .count(),
        2
    );
    assert_eq!(st.comments.len(), 2);
    assert!(
        st.comments[0]
            .1
            .starts_with("Failed again in web · main · a1b2c3d")
    );
    assert!(d.contains("bugs opened: none; commented: 2"), "{d}");
}

async fn later_deliver(
    h: &Harness,
    c: &dyn testrelay_domain::ports::Connector,
    run: &testrelay_domain::report::model::TestRun,
) -> String {
    later_deliver_result(h, c, run)
        .await
        .unwrap()
        .external_ref
        .unwrap()
}

#[tokio::test]
async fn two_runs_failing_the_same_way_at_once_open_one_bug() {
    let (server, state) = fake_jira().await;
    let h = Harness::new();
    h.secret("jira", TOKEN);
    let c = h.connector("c", &format!("kind = \"jira\"\nurl = \"{}\"\ndeployment = \"cloud\"\nemail = \"ci@example.com\"\ntoken = {{ secret = \"jira\" }}\nproject_key = \"SHOP\"\nallow_http = true\n{BUGS}", server.uri())).await;
    let a = sample_run();
    let mut b = sample_run();
    b.run_id = testrelay_domain::ids::RunId::parse("01ARZ3NDEKTSV4RRFFQ69G5FAW").unwrap();
    let (ra, rb) = tokio::join!(
        later_deliver_result(&h, c.as_ref(), &a),
        later_deliver_result(&h, c.as_ref(), &b)
    );
    // One of them may be told to come back (another run is creating that bug): retry it.
    for (r, run) in [(ra, &a), (rb, &b)] {
        if r.is_err() {
            later_deliver(&h, c.as_ref(), run).await;
        }
    }
    let st = state.lock().unwrap();
    assert_eq!(
        st.issues
            .iter()
            .filter(|i| i["issuetype"]["name"] == "Bug")
            .count(),
        2
    );
    assert_eq!(st.comments.len(), 2);
}

async fn later_deliver_result(
    h: &Harness,
    c: &dyn testrelay_domain::ports::Connector,
    run: &testrelay_domain::report::model::TestRun,
) -> Result<testrelay_domain::ports::Delivered, String> {
    let message = testrelay_domain::ports::DeliveryMessage::new(
        run.run_id.clone(),
        testrelay_domain::ids::ConnectorName::parse("c").unwrap(),
        c.kind(),
    );
    let steps = testrelay_domain::delivery::steps::Steps::new(
        Arc::new(h.store.clone()),
        h.clock.clone(),
        Arc::new(testrelay_domain::delivery::steps::NoFaults),
        message,
    );
    c.deliver(run, &ctx("c", 0), &steps)
        .await
        .map_err(|e| e.to_string())
}

#[tokio::test]
async fn a_crash_at_any_step_creates_each_issue_once() {
    let probe = sample_run();
    let fps: Vec<String> = testrelay_domain::report::render::failures(&probe)
        .map(|(s, c)| jira::fingerprint("SHOP", s, c))
        .collect();
    let mut steps = vec!["execution".to_string(), "import".to_string()];
    steps.extend(fps.iter().map(|f| format!("bug/{f}")));
    for step in &steps {
        for point in [CrashPoint::BeforeCall, CrashPoint::AfterCall] {
            let (server, state) = fake_jira().await;
            let h = Harness::new();
            let c = cloud(&h, &server, &server, BUGS).await;
            crash_then_retry(&h, c.as_ref(), &sample_run(), point, step).await;
            let st = state.lock().unwrap();
            assert_eq!(
                st.issues.len(),
                3,
                "{step} {point:?}: one execution and two bugs"
            );
            assert!(
                !st.imports.is_empty()
                    && st
                        .imports
                        .iter()
                        .all(|i| i["testExecutionKey"] == "SHOP-300"),
                "{step} {point:?}"
            );
        }
    }
    // Comments: a later run crashing around its comment.
    for point in [CrashPoint::BeforeCall, CrashPoint::AfterCall] {
        let (server, state) = fake_jira().await;
        let h = Harness::new();
        let c = cloud(&h, &server, &server, BUGS).await;
        deliver(&h, c.as_ref(), &sample_run(), 0).await.unwrap();
        let mut later = sample_run();
        later.run_id = testrelay_domain::ids::RunId::parse("01ARZ3NDEKTSV4RRFFQ69G5FAW").unwrap();
        let crash = CrashOnce::new(point, &format!("comment/{}", fps[0]));
        let message = testrelay_domain::ports::DeliveryMessage::new(
            later.run_id.clone(),
            testrelay_domain::ids::ConnectorName::parse("c").unwrap(),
            c.kind(),
        );
        let steps = testrelay_domain::delivery::steps::Steps::new(
            Arc::new(h.store.clone()),
            h.clock.clone(),
            crash.clone(),
            message,
        );
        assert!(c.deliver(&later, &ctx("c", 0), &steps).await.is_err());
        h.expire_leases();
        later_deliver(&h, c.as_ref(), &later).await;
        let st = state.lock().unwrap();
        // The retry finds the comment that names this run instead of adding another.
        assert_eq!(
            st.comments.len(),
            2,
            "{point:?}: one comment per failure of the later run"
        );
    }
}

#[tokio::test]
async fn probe_checks_credentials() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/rest/api/2/myself"))
        .and(header("authorization", basic().as_str()))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"displayName": "CI Bot"})))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/api/v2/authenticate"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!("t")))
        .expect(1)
        .mount(&server)
        .await;
    let h = Harness::new();
    let c = cloud(&h, &server, &server, "").await;
    assert_eq!(c.probe().await.unwrap().detail.as_deref(), Some("CI Bot"));
}

#[tokio::test]
async fn ten_thousand_failures_make_a_bounded_import() {
    let mut run = run_with_failures(10_000);
    for (i, c) in run.report.suites[0].cases.iter_mut().enumerate() {
        c.name = format!("SHOP-{}: {}", i + 1, c.name);
    }
    let config = connector_config(
        "c",
        "kind = \"jira\"\nurl = \"https://x.atlassian.net\"\ndeployment = \"cloud\"\nemail = \"e\"\ntoken = { secret = \"jira\" }\nproject_key = \"SHOP\"\n[connectors.c.xray]\nclient_id = { secret = \"a\" }\nclient_secret = { secret = \"b\" }",
    );
    let testrelay_domain::config::ConnectorConfig::Jira(jc) = one(&config) else {
        unreachable!()
    };
    let keys: HashSet<String> = (1..=10_001).map(|i| format!("SHOP-{i}")).collect();
    let import = jira::xray_import(&run, "SHOP-1", jc, &keys).body;
    assert_eq!(import["tests"].as_array().unwrap().len(), 10_001);
    let size = import.to_string().len();
    assert!(size < 6_000_000, "{size} bytes");
}

#[tokio::test]
async fn rendered_import_fixture() {
    let config = connector_config(
        "c",
        "kind = \"jira\"\nurl = \"https://x.atlassian.net\"\ndeployment = \"cloud\"\nemail = \"e\"\ntoken = { secret = \"jira\" }\nproject_key = \"SHOP\"\n[connectors.c.xray]\nclient_id = { secret = \"a\" }\nclient_secret = { secret = \"b\" }\ntest_plan_key = \"SHOP-100\"",
    );
    let testrelay_domain::config::ConnectorConfig::Jira(jc) = one(&config) else {
        unreachable!()
    };
    fixture(
        "xray-import-execution.json",
        &jira::xray_import(
            &sample_run(),
            "SHOP-200",
            jc,
            &known(&["SHOP-2", "SHOP-3", "SHOP-5", "SHOP-6"]),
        )
        .body,
    );
}

#[tokio::test]
async fn rate_limit_reset_is_honoured() {
    let server = MockServer::start().await;
    let reset = time::OffsetDateTime::now_utc() + time::Duration::seconds(120);
    let iso = reset
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    Mock::given(method("POST"))
        .and(path("/rest/api/2/issue"))
        .respond_with(
            ResponseTemplate::new(429)
                .insert_header("x-ratelimit-reset", iso.as_str())
                .insert_header("x-ratelimit-limit", "100")
                .insert_header("x-ratelimit-remaining", "0"),
        )
        .expect(1)
        .mount(&server)
        .await;
    let h = Harness::new();
    let c = cloud(&h, &server, &server, "").await;
    let e = failed(deliver(&h, c.as_ref(), &sample_run(), 0).await);
    assert_eq!(e.class, testrelay_domain::ports::ErrorClass::Throttled);
    let wait = e.retry_after.unwrap().as_secs();
    assert!((115..=120).contains(&wait), "{wait}");
    assert!(!e.detail.contains(TOKEN));
    // Every request to this Jira now waits out the reset: the next one is held back.
    let e = failed(deliver(&h, c.as_ref(), &sample_run(), 0).await);
    assert!(e.detail.starts_with("rate limit for jira:"), "{}", e.detail);
}
