//! `testrelay send`, the CI client, against the real local app and against a flaky server.

use testrelay_cli::send::{SendArgs, send};
use testrelay_cli::verdict::{FAILED, judge};
use testrelay_domain::history::FailOn;
use testrelay_tests::corpus;
use testrelay_tests::local::{API_KEY, spawn_app};
use wiremock::matchers::{header, header_exists, method, path, query_param};
use wiremock::{Mock, MockServer, ResponseTemplate};

fn args(url: &str, file: &str) -> SendArgs {
    SendArgs {
        file: corpus(file),
        url: url.to_string(),
        project: "web".into(),
        branch: Some("main".into()),
        commit: Some("abc123".into()),
        build_url: None,
        environment: Some("staging".into()),
        format: None,
        retries: 2,
        timeout: 10,
        api_key_env: "UNUSED".into(),
        pipeline: None,
        shard: None,
        attempt: None,
        single: false,
        complete: false,
        fail_on: FailOn::None,
    }
}

/// The pipeline parameters `send` puts in the report's query with CI variables `vars`.
fn pipeline_query(a: &SendArgs, vars: &[(&str, &str)]) -> Vec<(String, String)> {
    let env = |name: &str| {
        vars.iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.to_string())
    };
    testrelay_cli::send::report_url_in(a, &env)
        .unwrap()
        .query_pairs()
        .filter(|(k, _)| ["pipeline", "shard", "attempt"].contains(&k.as_ref()))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn pairs(p: &[(&str, &str)]) -> Vec<(String, String)> {
    p.iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// CI parallel-job variables make a report a pipeline's part; a single job stays a report of
/// its own; flags override.
#[test]
fn pipeline_parameters_come_from_the_ci() {
    let a = args("http://x", "ctrf/ctrf/examples/minimal.json");
    let gitlab = [
        ("CI_PIPELINE_ID", "77"),
        ("CI_NODE_INDEX", "2"),
        ("CI_NODE_TOTAL", "4"),
    ];
    assert_eq!(
        pipeline_query(&a, &gitlab),
        pairs(&[("pipeline", "gl-77"), ("shard", "2/4")])
    );
    let buildkite = [
        ("BUILDKITE_BUILD_ID", "0190-ab"),
        ("BUILDKITE_PARALLEL_JOB", "0"),
        ("BUILDKITE_PARALLEL_JOB_COUNT", "3"),
        ("BUILDKITE_RETRY_COUNT", "1"),
    ];
    assert_eq!(
        pipeline_query(&a, &buildkite),
        pairs(&[
            ("pipeline", "bk-0190-ab"),
            ("shard", "1/3"),
            ("attempt", "2")
        ])
    );
    let circle_single = [
        ("CIRCLE_WORKFLOW_ID", "w1"),
        ("CIRCLE_NODE_INDEX", "0"),
        ("CIRCLE_NODE_TOTAL", "1"),
    ];
    assert!(
        pipeline_query(&a, &circle_single).is_empty(),
        "one node: a report of its own"
    );
    let github = [("GITHUB_RUN_ID", "123"), ("GITHUB_RUN_ATTEMPT", "2")];
    assert!(
        pipeline_query(&a, &github).is_empty(),
        "GitHub has no shard variables"
    );
    let mut sharded = a.clone();
    sharded.shard = Some("3/5".into());
    assert_eq!(
        pipeline_query(&sharded, &github),
        pairs(&[("pipeline", "gh-123"), ("shard", "3/5"), ("attempt", "2")])
    );
    let mut single = a.clone();
    single.single = true;
    assert!(pipeline_query(&single, &gitlab).is_empty());
    let mut named = a.clone();
    named.pipeline = Some("nightly-42".into());
    assert_eq!(
        pipeline_query(&named, &[]),
        pairs(&[("pipeline", "nightly-42")])
    );
    assert!(
        testrelay_cli::send::report_url_in(&sharded, &|_| None)
            .unwrap_err()
            .contains("--shard needs --pipeline")
    );
}

/// Two shards sent with `send`; the second completes the pipeline, whose one merged result is
/// delivered. A pipeline of jobs without shards completes with `--complete`.
#[tokio::test]
async fn sharded_sends_make_one_pipeline() {
    let t = spawn_app().await;
    for i in 1..=2 {
        let mut a = args(&t.base, "ctrf/ctrf/examples/minimal.json");
        a.pipeline = Some("p-1".into());
        a.shard = Some(format!("{i}/2"));
        send(&a, API_KEY).await.unwrap();
    }
    assert_eq!(t.dispatch_all_pending().await, 1, "the merged result, once");
    let mut a = args(&t.base, "ctrf/ctrf/examples/minimal.json");
    a.pipeline = Some("p-2".into());
    send(&a, API_KEY).await.unwrap();
    assert_eq!(
        t.dispatch_all_pending().await,
        0,
        "a part, waiting for the pipeline"
    );
    let done = testrelay_cli::pipeline::complete(&t.base, "web", "p-2", API_KEY)
        .await
        .unwrap();
    assert_eq!(done["state"], "complete");
    assert_eq!(t.dispatch_all_pending().await, 1);
}

/// `--fail-on`: a PR is failed for its new failures only, not for one already failing on
/// main; `any-failure` fails it for that one too; the whole pipeline is judged with
/// `--complete`. Through the local app's HTTP answers.
#[tokio::test]
async fn the_verdict_fails_a_job_only_for_what_the_team_chose() {
    let t = spawn_app().await;
    let dir = tempfile::tempdir().unwrap();
    let report = |name: &str, failing: &[&str]| {
        let cases: String = ["a", "b", "c"]
            .iter()
            .map(|n| match failing.contains(n) {
                true => format!(r#"<testcase name="{n}"><failure message="x"/></testcase>"#),
                false => format!(r#"<testcase name="{n}"/>"#),
            })
            .collect();
        let path = dir.path().join(name);
        std::fs::write(
            &path,
            format!(r#"<testsuite name="unit">{cases}</testsuite>"#),
        )
        .unwrap();
        path
    };
    let on = |branch: &str, file| SendArgs {
        file,
        branch: Some(branch.into()),
        environment: None,
        ..args(&t.base, "ctrf/ctrf/examples/minimal.json")
    };
    let verdict = |body: &serde_json::Value, rule| {
        let failed = body["summary"]["failed"].as_u64().unwrap();
        judge(body.get("changes"), failed, rule)
    };
    // main: `c` is a known failure.
    send(&on("main", report("main.xml", &["c"])), API_KEY)
        .await
        .unwrap();
    // A PR failing only `c`: not blocked by new-failures, blocked by any-failure.
    let same = send(&on("pr-1", report("pr1.xml", &["c"])), API_KEY)
        .await
        .unwrap();
    assert_eq!(same["changes"]["counts"]["still_failing"], 1);
    assert_eq!(verdict(&same, FailOn::NewFailures), 0);
    assert_eq!(verdict(&same, FailOn::AnyFailure), FAILED);
    assert_eq!(verdict(&same, FailOn::None), 0);
    // A PR breaking `a`: blocked.
    let broke = send(&on("pr-2", report("pr2.xml", &["a", "c"])), API_KEY)
        .await
        .unwrap();
    assert_eq!(broke["changes"]["counts"]["new"], 1);
    assert_eq!(verdict(&broke, FailOn::NewFailures), FAILED);
    // A pipeline's verdict from its completion: `b` breaks in one shard.
    for (i, failing) in [(1, vec!["c"]), (2, vec!["b"])] {
        let mut a = on("pr-3", report(&format!("s{i}.xml"), &failing));
        a.pipeline = Some("pr-3-run".into());
        send(&a, API_KEY).await.unwrap();
    }
    let done = testrelay_cli::pipeline::complete(&t.base, "web", "pr-3-run", API_KEY)
        .await
        .unwrap();
    assert_eq!(done["changes"]["counts"]["new"], 1, "{done}");
    assert_eq!(done["changes"], done["merged"]["changes"]);
    assert_eq!(judge(done.get("changes"), 2, FailOn::NewFailures), FAILED);
}

/// `testrelay quarantine add|list|remove` against the local app.
#[tokio::test]
async fn quarantine_from_the_command_line() {
    use testrelay_cli::quarantine::{Action, QuarantineArgs, call};
    let t = spawn_app().await;
    let q = |action| QuarantineArgs {
        action,
        url: Some(t.base.clone()),
        project: Some("web".into()),
        api_key_env: "UNUSED".into(),
    };
    let id = "0123456789abcdef".to_string();
    let added = call(
        &q(Action::Add {
            test_id: id.clone(),
            reason: "flaky on CI, #42".into(),
        }),
        API_KEY,
    )
    .await
    .unwrap();
    assert_eq!(added, format!("quarantined {id}"));
    let listed = call(&q(Action::List), API_KEY).await.unwrap();
    assert!(
        listed.starts_with(&id) && listed.contains("flaky on CI, #42; added by ci"),
        "{listed}"
    );
    call(
        &q(Action::Remove {
            test_id: id.clone(),
        }),
        API_KEY,
    )
    .await
    .unwrap();
    let again = call(
        &q(Action::Remove {
            test_id: id.clone(),
        }),
        API_KEY,
    )
    .await;
    assert!(again.unwrap_err().contains("404"));
    let bad = call(
        &q(Action::Add {
            test_id: "x".into(),
            reason: "r".into(),
        }),
        API_KEY,
    )
    .await;
    assert!(bad.unwrap_err().contains("16 lowercase hex digits"));
    assert_eq!(
        call(&q(Action::List), API_KEY).await.unwrap(),
        "no quarantined tests"
    );
}

#[tokio::test]
async fn sends_gzipped_and_the_run_is_delivered() {
    let t = spawn_app().await;
    let body = send(
        &args(&t.base, "ctrf/ctrf/examples/comprehensive.json"),
        API_KEY,
    )
    .await
    .unwrap();
    let id = body["run_id"].as_str().unwrap();
    assert_eq!(t.dispatch_all_pending().await, 1);
    let status: serde_json::Value = t.get_run(id).await.json().await.unwrap();
    assert_eq!(status["meta"]["environment"], "staging");
    assert_eq!(status["format"], "ctrf");
    assert_eq!(status["deliveries"][0]["state"], "delivered");
}

#[tokio::test]
async fn a_rejected_report_is_an_error_with_the_reason() {
    let t = spawn_app().await;
    let err = send(
        &args(&t.base, "junit/go-junit-report/testdata/014-panic.txt"),
        API_KEY,
    )
    .await
    .unwrap_err();
    assert!(err.contains("HTTP 400"), "{err}");
    assert!(err.contains("not a recognised report"), "{err}");
    let err = send(
        &args(&t.base, "ctrf/ctrf/examples/minimal.json"),
        "wrong-key",
    )
    .await
    .unwrap_err();
    assert!(err.contains("HTTP 401"), "{err}");
}

#[tokio::test]
async fn retries_server_errors_with_the_same_idempotency_key() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/reports"))
        .respond_with(ResponseTemplate::new(503))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/v1/reports"))
        .and(query_param("project", "web"))
        .and(query_param("commit", "abc123"))
        .and(header("content-encoding", "gzip"))
        .and(header(
            "authorization",
            format!("Bearer {API_KEY}").as_str(),
        ))
        .and(header_exists("idempotency-key"))
        .respond_with(ResponseTemplate::new(202).set_body_json(serde_json::json!({
            "run_id": "01ARZ3NDEKTSV4RRFFQ69G5FAV",
            "status_url": "/v1/runs/01ARZ3NDEKTSV4RRFFQ69G5FAV",
            "deliveries": [],
            "summary": {"total": 1}
        })))
        .with_priority(2)
        .mount(&server)
        .await;
    let body = send(
        &args(&server.uri(), "ctrf/ctrf/examples/minimal.json"),
        API_KEY,
    )
    .await
    .unwrap();
    assert_eq!(body["run_id"], "01ARZ3NDEKTSV4RRFFQ69G5FAV");
    let requests = server.received_requests().await.unwrap();
    assert_eq!(requests.len(), 2);
    assert_eq!(
        requests[0].headers["idempotency-key"], requests[1].headers["idempotency-key"],
        "a retry must not be able to create a second run"
    );
}
