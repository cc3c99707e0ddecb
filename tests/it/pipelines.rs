//! Pipelines through the ingest service, on the embedded store and on the AWS adapters
//! (moto; DynamoDB Local + MiniStack): shards posted at once complete a pipeline once; a
//! re-run attempt replaces what it re-ran (failed then passed is flaky) and completes it
//! again; `complete` and the quiet period complete pipelines without a shard count; bad
//! parameters change nothing.

use std::sync::Arc;
use std::time::Duration;
use testrelay_domain::error::ApiError;
use testrelay_domain::ingest::{IngestService, Submission};
use testrelay_domain::pipelines::PipelineStatus;
use testrelay_domain::ports::{ManualClock, RunStore};
use testrelay_tests::aws::Engine;
use testrelay_tests::local::API_KEY;

fn report(shard: u32, status_of_a: &str) -> String {
    let a = match status_of_a {
        "failed" => r#"<testcase name="a"><failure message="boom"/></testcase>"#.to_string(),
        _ => r#"<testcase name="a"/>"#.to_string(),
    };
    format!(
        r#"<testsuite name="shard{shard}">{a}<testcase name="b{shard}"/><testcase name="c{shard}"><failure message="x"/></testcase></testsuite>"#
    )
}

async fn post(ingest: &IngestService, query: &str, body: String) -> Result<String, ApiError> {
    ingest
        .submit(Submission {
            authorization: Some(format!("Bearer {API_KEY}")),
            query: Some(format!("project=web&{query}")),
            body: bytes::Bytes::from(body),
            ..Default::default()
        })
        .await
        .map(|r| r.accepted.run_id.to_string())
}

/// The local app on a manual clock, its config changed by `change` first; the data
/// directory lives as long as the returned guard.
pub(crate) async fn local(
    change: impl FnOnce(&mut testrelay_domain::config::Config),
) -> (
    testrelay_cli::app::App,
    Arc<IngestService>,
    Arc<ManualClock>,
    tempfile::TempDir,
) {
    let dir = tempfile::tempdir().unwrap();
    let mut config = testrelay_tests::local::config(dir.path(), "http://127.0.0.1:9");
    change(&mut config);
    let clock = Arc::new(ManualClock::new(1_800_000_000_000));
    let (app, ingest) =
        testrelay_tests::local::on_manual_clock(config, dir.path(), clock.clone(), None).await;
    (app, ingest, clock, dir)
}

async fn status(ingest: &IngestService, id: &str) -> PipelineStatus {
    let auth = format!("Bearer {API_KEY}");
    ingest
        .pipeline_status(Some(&auth), id, Some("project=web"))
        .await
        .unwrap()
}

/// Eight shards at once, then a re-run attempt of two of them (one of which now passes the
/// test that failed).
async fn shards_and_a_rerun(ingest: Arc<IngestService>, runs: Arc<dyn RunStore>) {
    let posts = (1..=8).map(|i| {
        let ingest = ingest.clone();
        async move {
            post(
                &ingest,
                &format!("pipeline=gh-1&shard={i}/8&attempt=1"),
                report(i, "failed"),
            )
            .await
        }
    });
    for r in futures::future::join_all(posts).await {
        r.unwrap();
    }
    let s = status(&ingest, "gh-1").await;
    assert_eq!((s.state, s.completions), ("complete", 1), "{s:?}");
    assert_eq!(s.completed_by.as_deref(), Some("all_shards"));
    assert_eq!(s.parts.len(), 8);
    let merged = s.merged.as_ref().expect("the merged run");
    // Each shard's suite holds a, b<i> and c<i>.
    assert_eq!(merged.summary.total, 24);
    assert_eq!(merged.summary.failed, 16);
    assert_eq!(merged.deliveries.len(), 1, "the webhook, on completion");
    assert!(
        s.parts.iter().all(|p| p.deliveries.is_empty()),
        "a webhook takes no parts"
    );
    let pipeline = merged.meta.pipeline.as_ref().unwrap();
    assert_eq!((pipeline.completion, pipeline.attempt), (Some(1), 1));

    // Re-run of shards 3 and 5: `a` passes now in shard 3, still fails in 5.
    post(
        &ingest,
        "pipeline=gh-1&shard=3/8&attempt=2",
        report(3, "passed"),
    )
    .await
    .unwrap();
    post(
        &ingest,
        "pipeline=gh-1&shard=5/8&attempt=2",
        report(5, "failed"),
    )
    .await
    .unwrap();
    let s = status(&ingest, "gh-1").await;
    assert_eq!(
        (s.state, s.completions, s.latest_attempt),
        ("complete", 3, 2),
        "{s:?}"
    );
    let merged = s.merged.as_ref().unwrap();
    assert_eq!(merged.summary.total, 24, "re-run tests replace, never add");
    assert_eq!(merged.summary.flaky, 1, "failed, then passed on re-run");
    assert_eq!(merged.summary.failed, 15);
    let first = runs
        .get_run(&testrelay_domain::pipelines::merged_run_id(
            "web", "gh-1", 1,
        ))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        first.summary.failed, 16,
        "the first completion's result stays as it was"
    );
}

async fn shards_and_a_rerun_on(engine: Engine) {
    let receiver = testrelay_tests::receiver::Receiver::start(200).await;
    let (_stack, app) = crate::lambda::app_on(&receiver, engine).await;
    let ingest = Arc::new(IngestService::new(app.config.clone(), app.ports()));
    shards_and_a_rerun(ingest, Arc::new(app.runs.clone())).await;
}

crate::on_engines!(shards_and_a_rerun_on);

#[tokio::test]
async fn shards_and_a_rerun_embedded() {
    let (app, ingest, _clock, _dir) = local(|_| {}).await;
    shards_and_a_rerun(ingest, Arc::new(app.store.clone())).await;
}

/// Matrix jobs that do not know a shard count: the pipeline completes when asked to, or
/// after the project's quiet period (the sweep on the manual clock), never before. Each
/// job's environment keeps its results apart.
#[tokio::test]
async fn complete_on_request_or_after_the_quiet_period() {
    let (_app, ingest, clock, _dir) = local(|_| {}).await;
    for p in ["asked", "quiet"] {
        for job in ["linux", "mac"] {
            post(
                &ingest,
                &format!("pipeline={p}&environment={job}"),
                report(1, "passed"),
            )
            .await
            .unwrap();
        }
    }
    let auth = format!("Bearer {API_KEY}");
    let done = ingest
        .complete_pipeline(Some(&auth), "asked", Some("project=web"))
        .await
        .unwrap();
    assert_eq!(
        (done.state, done.completed_by.as_deref()),
        ("complete", Some("requested"))
    );
    let again = ingest
        .complete_pipeline(Some(&auth), "asked", Some("project=web"))
        .await
        .unwrap();
    assert_eq!(again.completions, 1, "asking twice completes once");

    clock.advance(Duration::from_secs(9 * 60));
    assert_eq!(ingest.sweep_pipelines().await.unwrap(), 0);
    assert_eq!(status(&ingest, "quiet").await.state, "open");
    clock.advance(Duration::from_secs(61));
    assert_eq!(ingest.sweep_pipelines().await.unwrap(), 1);
    let s = status(&ingest, "quiet").await;
    assert_eq!(
        (s.state, s.completed_by.as_deref()),
        ("complete", Some("quiet"))
    );
    assert_eq!(
        s.merged.unwrap().summary.total,
        6,
        "the same tests in two environments"
    );
    assert_eq!(
        ingest.sweep_pipelines().await.unwrap(),
        0,
        "nothing left open"
    );
}

#[tokio::test]
async fn bad_pipeline_parameters_change_nothing() {
    let (app, ingest, _clock, _dir) = local(|_| {}).await;
    for (query, says) in [
        ("pipeline=p&shard=0/4", "shard"),
        ("pipeline=p&shard=5/4", "shard"),
        ("pipeline=p&shard=1/1001", "shard"),
        ("pipeline=p&shard=x", "shard"),
        ("pipeline=p&attempt=0", "attempt"),
        ("shard=1/2", "need \"pipeline\""),
        ("pipeline=has%20space", "pipeline"),
        (&format!("pipeline={}", "x".repeat(129)), "pipeline"),
    ] {
        let e = post(&ingest, query, report(1, "passed")).await.unwrap_err();
        assert_eq!(e.status, 400, "{query}");
        assert!(e.detail.contains(says), "{query}: {}", e.detail);
    }
    let e = ingest
        .pipeline_status(
            Some(&format!("Bearer {API_KEY}")),
            "never",
            Some("project=web"),
        )
        .await
        .unwrap_err();
    assert_eq!(e.status, 404);
    assert_eq!(app.dispatch_all_pending().await, 0, "nothing was enqueued");
}

/// Routing rules: a connector gets only the runs its rule matches (branch glob, outcome,
/// environment); the others are not enqueued for it, and the run's status says why.
#[tokio::test]
async fn routing_rules_decide_at_ingest() {
    use testrelay_domain::config::routes::When;
    use testrelay_domain::report::model::RunOutcome;
    let hook = testrelay_domain::ids::ConnectorName::parse("hook").unwrap();
    let (app, ingest, _clock, _dir) = local(|config| {
        for p in config
            .projects
            .values_mut()
            .filter(|p| p.connectors.contains(&hook))
        {
            p.when.insert(
                hook.clone(),
                When {
                    branches: vec!["main".into(), "release/*".into()],
                    outcomes: vec![RunOutcome::Failed],
                    environments: vec![],
                    on: Default::default(),
                },
            );
        }
    })
    .await;
    let failing =
        r#"<testsuite name="s"><testcase name="a"><failure message="x"/></testcase></testsuite>"#;
    let passing = r#"<testsuite name="s"><testcase name="a"/></testsuite>"#.to_string();
    for (query, body, reason) in [
        (
            "branch=dev",
            failing.to_string(),
            Some("routing rule: branch \"dev\" matches none of [\"main\", \"release/*\"]"),
        ),
        (
            "branch=main",
            passing.clone(),
            Some("routing rule: outcome passed is none of [failed]"),
        ),
        ("branch=release/2.1", failing.to_string(), None),
    ] {
        let id = post(&ingest, query, body).await.unwrap();
        let run = app
            .store
            .get_run(&testrelay_domain::ids::RunId::parse(&id).unwrap())
            .await
            .unwrap()
            .unwrap();
        match reason {
            Some(r) => {
                assert!(run.deliveries.is_empty(), "{query}");
                assert_eq!(run.skipped[0].reason, r, "{query}");
                assert_eq!(
                    app.dispatch_all_pending().await,
                    0,
                    "{query}: nothing enqueued"
                );
            }
            None => {
                assert!(run.skipped.is_empty(), "{query}");
                assert_eq!(run.deliveries.len(), 1);
            }
        }
    }
}

/// A webhook gets a pipeline's parts only when it asks (`parts = true`): then each part is a
/// `run.completed` carrying its place in the pipeline; without, it waits for the merged
/// result, and the part's status says so.
#[tokio::test]
async fn webhooks_get_parts_only_when_they_ask() {
    for parts in [false, true] {
        let (app, ingest, _clock, _dir) = local(|config| {
            for c in config.connectors.values_mut() {
                if let testrelay_domain::config::ConnectorConfig::Webhook(w) = c {
                    w.parts = parts;
                }
            }
        })
        .await;
        let id = post(&ingest, "pipeline=p&shard=1/2", report(1, "passed"))
            .await
            .unwrap();
        let run = app
            .store
            .get_run(&testrelay_domain::ids::RunId::parse(&id).unwrap())
            .await
            .unwrap()
            .unwrap();
        if parts {
            assert_eq!(run.deliveries.len(), 1);
        } else {
            assert!(run.deliveries.is_empty());
            assert_eq!(
                run.skipped[0].reason,
                "acts on the pipeline's merged result, when it completes"
            );
        }
    }
}

/// The HTTP API of pipelines through the router `testrelay serve` runs: the 202 names the
/// connectors a part skips, `GET /v1/pipelines/{id}` shows the parts and the merged result
/// with its deliveries, `POST .../complete` completes it, and errors are problem+json.
#[tokio::test]
async fn the_pipeline_api_over_http() {
    let t = testrelay_tests::local::spawn_app().await;
    let body = r#"<testsuite name="s"><testcase name="a"/></testsuite>"#;
    let res = t
        .post_report("project=web&pipeline=ci-7&shard=1/2", body)
        .await;
    assert_eq!(res.status(), 202);
    let accepted: serde_json::Value = res.json().await.unwrap();
    assert_eq!(accepted["skipped"][0]["connector"], "hook");
    let get = |path: String| {
        t.client
            .get(format!("{}{path}", t.base))
            .bearer_auth(API_KEY)
            .send()
    };
    let open: serde_json::Value = get("/v1/pipelines/ci-7?project=web".into())
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(open["state"], "open");
    assert_eq!(open["shards_expected"], 2);
    assert_eq!(
        open["parts"][0]["shard"],
        serde_json::json!({"index": 1, "total": 2})
    );
    let done = t
        .client
        .post(format!("{}/v1/pipelines/ci-7/complete?project=web", t.base))
        .bearer_auth(API_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(done.status(), 200);
    assert_eq!(
        t.dispatch_all_pending().await,
        1,
        "the merged result to the webhook"
    );
    let complete: serde_json::Value = get("/v1/pipelines/ci-7?project=web".into())
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(complete["state"], "complete");
    assert_eq!(complete["completed_by"], "requested");
    assert_eq!(complete["merged"]["deliveries"][0]["state"], "delivered");
    let missing = get("/v1/pipelines/nope?project=web".into()).await.unwrap();
    assert_eq!(missing.status(), 404);
    assert_eq!(
        missing.headers()["content-type"],
        "application/problem+json"
    );
    let unnamed = get("/v1/pipelines/ci-7".into()).await.unwrap();
    assert_eq!(unnamed.status(), 400, "the project is required");
    let anonymous = t
        .client
        .get(format!("{}/v1/pipelines/ci-7?project=web", t.base))
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), 401);
}

/// A completion a crash interrupted (the pipeline left on the open index) is finished by the
/// sweep without building its merged result again: the stored one stands, and only its
/// deliveries still queued are enqueued.
#[tokio::test]
async fn the_sweep_finishes_an_interrupted_completion_once() {
    use testrelay_domain::ports::StateStore;
    let (app, ingest, _clock, _dir) = local(|_| {}).await;
    for i in 1..=2 {
        post(
            &ingest,
            &format!("pipeline=p&shard={i}/2"),
            report(i, "passed"),
        )
        .await
        .unwrap();
    }
    assert_eq!(app.dispatch_all_pending().await, 1);
    let merged = testrelay_domain::pipelines::merged_run_id("web", "p", 1);
    let before = app.store.get_run(&merged).await.unwrap().unwrap();
    // As if the process died before taking the pipeline off the open index.
    let open = app.store.load("pipelines/open").await.unwrap();
    assert!(
        app.store
            .save("pipelines/open", r#"["web/p"]"#, open.map(|v| v.version))
            .await
            .unwrap()
    );
    assert_eq!(ingest.sweep_pipelines().await.unwrap(), 1);
    assert_eq!(
        app.dispatch_all_pending().await,
        0,
        "delivered already: nothing enqueued"
    );
    let after = app.store.get_run(&merged).await.unwrap().unwrap();
    assert_eq!(
        after.received_at, before.received_at,
        "the stored result stands"
    );
    assert_eq!(
        ingest.sweep_pipelines().await.unwrap(),
        0,
        "off the index now"
    );
}
