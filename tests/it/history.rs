//! Test history and what changed, through the ingest service on the embedded store and on
//! the AWS adapters (moto; DynamoDB Local + MiniStack), one scripted sequence:
//! main green (with one known failure) -> a PR with 2 new failures and the pre-existing one
//! -> main breaks (a sharded pipeline) -> main fixed -> a test flipping on the same commit ->
//! quarantined. Each step checks the classification, the connector's `on = "change"` rule,
//! the CI verdict (`--fail-on`) and, at the end, the history API.

use std::sync::Arc;
use testrelay_domain::config::routes::{On, When};
use testrelay_domain::history::identity::id_of;
use testrelay_domain::history::{Changes, FailOn};
use testrelay_domain::ids::ConnectorName;
use testrelay_domain::ingest::{Accepted, IngestService, Submission};
use testrelay_domain::ports::RunStore;
use testrelay_tests::aws::Engine;
use testrelay_tests::local::API_KEY;

const TESTS: [&str; 5] = ["a", "b", "c", "d", "e"];

fn auth() -> String {
    format!("Bearer {API_KEY}")
}

/// A JUnit report of suite `unit` where the tests named in `failing` fail.
fn report(tests: &[&str], failing: &[&str]) -> String {
    let cases: String = tests
        .iter()
        .map(|t| match failing.contains(t) {
            true => format!(r#"<testcase name="{t}"><failure message="{t} broke"/></testcase>"#),
            false => format!(r#"<testcase name="{t}"/>"#),
        })
        .collect();
    format!(r#"<testsuite name="unit">{cases}</testsuite>"#)
}

async fn post(ingest: &IngestService, query: &str, failing: &[&str]) -> Accepted {
    post_tests(ingest, query, &TESTS, failing).await
}

async fn post_tests(
    ingest: &IngestService,
    query: &str,
    tests: &[&str],
    failing: &[&str],
) -> Accepted {
    ingest
        .submit(Submission {
            authorization: Some(auth()),
            query: Some(format!("project=web&{query}")),
            body: bytes::Bytes::from(report(tests, failing)),
            ..Default::default()
        })
        .await
        .unwrap()
        .accepted
}

fn id(name: &str) -> String {
    id_of("unit", None, name)
}

/// The names in `changes` of class `class`, sorted.
fn named(changes: &Changes, class: &str) -> Vec<String> {
    let mut v: Vec<String> = changes
        .tests
        .iter()
        .filter(|t| serde_json::to_value(t.class).unwrap() == class)
        .map(|t| t.name.clone())
        .collect();
    v.sort();
    v
}

fn counts(c: &Changes) -> (u64, u64, u64, u64) {
    (
        c.counts.new,
        c.counts.still_failing,
        c.counts.fixed,
        c.counts.flaky,
    )
}

/// Whether the run went to the connector, or was skipped by its `on` rule.
fn delivered(a: &Accepted) -> bool {
    a.deliveries.len() == 1 && a.skipped.is_empty()
}

async fn scripted(ingest: Arc<IngestService>, runs: Arc<dyn RunStore>) {
    // 1. main is green but for `d`, a known failure: nothing to compare with yet.
    let main1 = post(&ingest, "branch=main&commit=c1", &["d"]).await;
    let c = main1.changes.as_ref().unwrap();
    assert!(c.base.is_none());
    assert_eq!(counts(c), (1, 0, 0, 0), "with no base every failure is new");
    assert!(delivered(&main1), "a first failing run is a change");

    // 2. A PR breaks `a` and `b`; `d` fails as on main.
    let pr = post(&ingest, "branch=feat-x&commit=c2", &["a", "b", "d"]).await;
    let c = pr.changes.as_ref().unwrap();
    assert_eq!(c.base.as_ref().unwrap().branch, "main");
    assert_eq!(c.base.as_ref().unwrap().run_id, main1.run_id);
    assert_eq!(counts(c), (2, 1, 0, 0), "{c:?}");
    assert_eq!(named(c, "new"), ["a", "b"]);
    assert_eq!(named(c, "still_failing"), ["d"]);
    assert_eq!(
        c.tests[0].class,
        testrelay_domain::history::Class::New,
        "new failures first"
    );
    assert_eq!(
        c.verdict(FailOn::NewFailures).as_deref(),
        Some("2 new failures")
    );
    assert!(
        c.headline()
            .starts_with("2 new failures · 1 still failing (vs main @ c1")
    );
    // A PR failing only where main fails is not blocked by `--fail-on new-failures`.
    let pr2 = post(&ingest, "branch=feat-y&commit=c2b", &["d"]).await;
    let c = pr2.changes.as_ref().unwrap();
    assert_eq!(counts(c), (0, 1, 0, 0));
    assert_eq!(c.verdict(FailOn::NewFailures), None);
    assert_eq!(c.verdict(FailOn::AnyFailure).as_deref(), Some("1 failure"));
    assert_eq!(c.verdict(FailOn::None), None);

    // 3. main breaks `a`, in a pipeline of two shards. Each shard's answer classifies its own
    //    tests against main's last pipeline (its CI job's verdict), without recording them.
    let s1 = post_tests(
        &ingest,
        "branch=main&commit=c3&pipeline=p3&shard=1/2",
        &["a", "b"],
        &["a"],
    )
    .await;
    assert_eq!(counts(s1.changes.as_ref().unwrap()), (1, 0, 0, 0));
    let s2 = post_tests(
        &ingest,
        "branch=main&commit=c3&pipeline=p3&shard=2/2",
        &["c", "d", "e"],
        &["d"],
    )
    .await;
    assert_eq!(counts(s2.changes.as_ref().unwrap()), (0, 1, 0, 0));
    let merged = runs
        .get_run(&testrelay_domain::pipelines::merged_run_id("web", "p3", 1))
        .await
        .unwrap()
        .expect("the pipeline completed");
    let c = merged.changes.as_ref().unwrap();
    assert_eq!(
        c.base.as_ref().unwrap().run_id,
        main1.run_id,
        "against main's previous"
    );
    assert_eq!(counts(c), (1, 1, 0, 0), "{c:?}");
    assert_eq!(named(c, "new"), ["a"]);
    assert_eq!(merged.deliveries.len(), 1, "main broke: a change");
    let status = ingest
        .pipeline_status(Some(&auth()), "p3", Some("project=web"))
        .await
        .unwrap();
    let shown = status.merged.as_ref().unwrap().changes.as_ref().unwrap();
    assert_eq!(
        shown.counts.new, 1,
        "GET /v1/pipelines/p3 shows what changed"
    );

    // 4. main fixed: `a` and `d` pass again.
    let main4 = post(&ingest, "branch=main&commit=c4", &[]).await;
    let c = main4.changes.as_ref().unwrap();
    assert_eq!(c.base.as_ref().unwrap().run_id, merged.run_id);
    assert_eq!(counts(c), (0, 0, 2, 0), "{c:?}");
    assert_eq!(named(c, "fixed"), ["a", "d"]);
    assert!(delivered(&main4), "main recovered: a change");
    assert!(c.headline().starts_with("2 fixed"));
    // The same result again: nothing changed, so the `on = "change"` connector is skipped.
    let same = post(&ingest, "branch=main&commit=c4", &[]).await;
    assert_eq!(counts(same.changes.as_ref().unwrap()), (0, 0, 0, 0));
    assert!(!delivered(&same));
    assert_eq!(
        same.skipped[0].reason,
        "routing rule: on = change: nothing changed against the base"
    );

    // 5. `e` fails on commit c4, where it passed before: flaky, not new.
    let flip = post(&ingest, "branch=main&commit=c4", &["e"]).await;
    let c = flip.changes.as_ref().unwrap();
    assert_eq!(counts(c), (0, 0, 0, 1), "{c:?}");
    assert_eq!(
        c.tests[0].why.as_deref(),
        Some("passed before on the same commit c4")
    );
    assert_eq!(c.verdict(FailOn::NewFailures), None);

    // 6. Quarantined, `e` fails again on a new commit: counted apart, failing no verdict.
    let quarantined = ingest
        .quarantine_add(
            Some(&auth()),
            "web",
            &id("e"),
            br#"{"reason": "races the clock, #123"}"#,
        )
        .await
        .unwrap();
    assert_eq!(quarantined.added_by, "ci");
    assert_eq!(quarantined.name.as_deref(), Some("unit › e"));
    let q = post(&ingest, "branch=main&commit=c6", &["e"]).await;
    let c = q.changes.as_ref().unwrap();
    assert_eq!(
        (c.counts.quarantined, c.counts.failing, c.counts.new),
        (1, 0, 0),
        "{c:?}"
    );
    assert!(c.tests.iter().all(|t| t.quarantined));
    assert_eq!(c.verdict(FailOn::AnyFailure), None);
    let listed = ingest.quarantine(Some(&auth()), "web").await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].reason, "races the clock, #123");
    ingest
        .quarantine_remove(Some(&auth()), "web", &id("e"))
        .await
        .unwrap();
    let again = ingest
        .quarantine_remove(Some(&auth()), "web", &id("e"))
        .await;
    assert_eq!(again.unwrap_err().status, 404);

    // The history API: `e` is failing on main, `d` has passed since; `a`'s outcomes.
    let failing = ingest
        .tests(Some(&auth()), "web", Some("status=failing"))
        .await
        .unwrap();
    assert_eq!(failing.branch, "main");
    let names: Vec<&str> = failing.tests.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, ["e"]);
    assert!(failing.tests[0].failing_since.is_some());
    let flaky = ingest
        .tests(Some(&auth()), "web", Some("status=flaky&branch=main"))
        .await
        .unwrap();
    assert_eq!(
        flaky.matching, 0,
        "a break and its fix in six outcomes is no flip rate yet (ten at least): {flaky:?}"
    );
    let a = ingest
        .test_history(Some(&auth()), "web", &id("a"), None)
        .await
        .unwrap();
    let outcomes: Vec<&str> = a.outcomes.iter().map(|o| o.status).collect();
    assert_eq!(
        outcomes,
        ["passed", "passed", "passed", "passed", "failed", "passed"]
    );
    assert_eq!(a.outcomes[4].run_id, merged.run_id);
    assert_eq!(
        a.test.last_passed.as_ref().unwrap().commit.as_deref(),
        Some("c6")
    );
    let pr_history = ingest
        .test_history(Some(&auth()), "web", &id("a"), Some("branch=feat-x"))
        .await
        .unwrap();
    assert_eq!(pr_history.outcomes.len(), 1);
    assert_eq!(pr_history.test.status, "failed");
}

/// Six runs of main at once all land in its history (conditional writes, applied again on a
/// conflict); a late re-run part completing a pipeline again replaces its entry, never adds
/// one.
async fn at_once(ingest: Arc<IngestService>) {
    let posts = (0..6).map(|i| {
        let ingest = ingest.clone();
        async move {
            let failing = [TESTS[i % TESTS.len()]];
            post(&ingest, &format!("branch=main&commit=x{i}"), &failing).await
        }
    });
    futures::future::join_all(posts).await;
    let list = ingest.tests(Some(&auth()), "web", None).await.unwrap();
    assert_eq!(list.pipelines, 6, "every run landed: {list:?}");
    let a = ingest
        .test_history(Some(&auth()), "web", &id("a"), None)
        .await
        .unwrap();
    assert_eq!(a.outcomes.len(), 6);

    post(
        &ingest,
        "branch=main&commit=y&pipeline=late&shard=1/1",
        &["a"],
    )
    .await;
    post(
        &ingest,
        "branch=main&commit=y&pipeline=late&shard=1/1&attempt=2",
        &[],
    )
    .await;
    let list = ingest.tests(Some(&auth()), "web", None).await.unwrap();
    assert_eq!(
        list.pipelines, 7,
        "one entry for the pipeline, completed twice"
    );
    let a = ingest
        .test_history(Some(&auth()), "web", &id("a"), None)
        .await
        .unwrap();
    assert_eq!(
        a.outcomes[0].status, "flaky",
        "the re-run's result (failed, then passed) replaced the first"
    );
}

#[tokio::test]
async fn concurrent_runs_embedded() {
    let (_app, ingest, _clock, _dir) = crate::pipelines::local(|_| {}).await;
    at_once(ingest).await;
}

async fn concurrent_runs(engine: Engine) {
    let receiver = testrelay_tests::receiver::Receiver::start(200).await;
    let (_stack, app) = crate::lambda::app_on(&receiver, engine).await;
    at_once(Arc::new(IngestService::new(
        app.config.clone(),
        app.ports(),
    )))
    .await;
}

crate::on_engines!(concurrent_runs);

fn on_change(connector: &str) -> impl FnOnce(&mut testrelay_domain::config::Config) + '_ {
    move |config| {
        let web = config
            .projects
            .get_mut(&testrelay_domain::ids::ProjectName::parse("web").unwrap())
            .unwrap();
        web.when.insert(
            ConnectorName::parse(connector).unwrap(),
            When {
                on: On::Change,
                ..Default::default()
            },
        );
    }
}

#[tokio::test]
async fn scripted_sequence_embedded() {
    let (app, ingest, _clock, _dir) = crate::pipelines::local(on_change("hook")).await;
    scripted(ingest, Arc::new(app.store.clone())).await;
}

async fn scripted_sequence(engine: Engine) {
    let receiver = testrelay_tests::receiver::Receiver::start(200).await;
    let (_stack, app) = crate::lambda::app_with(
        &receiver,
        engine,
        "\n[projects.web.when.team-hook]\non = \"change\"\n",
    )
    .await;
    let ingest = Arc::new(IngestService::new(app.config.clone(), app.ports()));
    scripted(ingest, Arc::new(app.runs.clone())).await;
}

crate::on_engines!(scripted_sequence);

/// The history and quarantine routes over HTTP: answers, problem+json errors, keys limited
/// to their projects; a bad request changes nothing.
#[tokio::test]
async fn history_and_quarantine_routes() {
    use testrelay_tests::local::{ADMIN_KEY, spawn_app};
    let t = spawn_app().await;
    let call = |method: &str, path: &str, key: &str, body: Option<&str>| {
        let mut r = t
            .client
            .request(method.parse().unwrap(), format!("{}{path}", t.base))
            .bearer_auth(key);
        if let Some(b) = body {
            r = r
                .header("content-type", "application/json")
                .body(b.to_string());
        }
        async move {
            let res = r.send().await.unwrap();
            let status = res.status().as_u16();
            let problem = res
                .headers()
                .get("content-type")
                .is_some_and(|v| v == "application/problem+json");
            let body: serde_json::Value = res.json().await.unwrap_or_default();
            (status, problem, body)
        }
    };
    let posted = t
        .post_report("project=web&branch=main", report(&TESTS, &["b"]))
        .await;
    assert_eq!(posted.status(), 202);
    let (status, _, list) = call(
        "GET",
        "/v1/projects/web/tests?status=failing",
        API_KEY,
        None,
    )
    .await;
    assert_eq!(status, 200, "{list}");
    assert_eq!(list["branch"], "main");
    assert_eq!(list["pipelines"], 1);
    assert_eq!(list["tests"][0]["name"], "b");
    assert_eq!(list["tests"][0]["status"], "failed");
    for (method, path, key, body, expected) in [
        (
            "GET",
            "/v1/projects/web/tests?status=broken",
            API_KEY,
            None,
            400,
        ),
        ("GET", "/v1/projects/web/tests?limit=0", API_KEY, None, 400),
        ("GET", "/v1/projects/web/tests", ADMIN_KEY, None, 404),
        ("GET", "/v1/projects/nope/tests", API_KEY, None, 404),
        (
            "GET",
            "/v1/projects/web/tests/not-an-id/history",
            API_KEY,
            None,
            400,
        ),
        (
            "GET",
            "/v1/projects/web/tests/0123456789abcdef/history",
            API_KEY,
            None,
            404,
        ),
        (
            "PUT",
            "/v1/projects/web/quarantine/0123456789abcdef",
            API_KEY,
            Some("{}"),
            400,
        ),
        (
            "PUT",
            "/v1/projects/web/quarantine/0123456789abcdef",
            API_KEY,
            Some(r#"{"reason": ""}"#),
            400,
        ),
        (
            "PUT",
            "/v1/projects/web/quarantine/XYZ",
            API_KEY,
            Some(r#"{"reason": "r"}"#),
            400,
        ),
        (
            "DELETE",
            "/v1/projects/web/quarantine/0123456789abcdef",
            API_KEY,
            None,
            404,
        ),
        ("GET", "/v1/projects/web/quarantine", "trk_wrong", None, 401),
    ] {
        let (status, problem, body) = call(method, path, key, body).await;
        assert_eq!(status, expected, "{method} {path}: {body}");
        assert!(problem, "{method} {path}: problem+json");
    }
    let (_, _, q) = call("GET", "/v1/projects/web/quarantine", API_KEY, None).await;
    assert_eq!(
        q["quarantined"],
        serde_json::json!([]),
        "nothing was added by a bad request"
    );
    let put = call(
        "PUT",
        "/v1/projects/web/quarantine/0123456789abcdef",
        API_KEY,
        Some(r#"{"reason": "times out on arm64"}"#),
    )
    .await;
    assert_eq!((put.0, put.2["added_by"].as_str()), (200, Some("ci")));
    let (_, _, q) = call("GET", "/v1/projects/web/quarantine", API_KEY, None).await;
    assert_eq!(q["quarantined"][0]["reason"], "times out on arm64");
    let del = call(
        "DELETE",
        "/v1/projects/web/quarantine/0123456789abcdef",
        API_KEY,
        None,
    )
    .await;
    assert_eq!(del.0, 204);
}

/// A branch whose history snapshot cannot be read (damaged, or from a future format) still
/// takes results: its history starts again.
#[tokio::test]
async fn an_unreadable_history_starts_again() {
    let (app, ingest, _clock, dir) = crate::pipelines::local(|_| {}).await;
    let blobs = testrelay_embedded::FileBlobStore::new(dir.path().join("blobs"));
    let key = testrelay_domain::history::snapshot_key("web", "main");
    testrelay_domain::ports::BlobStore::put(&blobs, &key, bytes::Bytes::from_static(b"garbage"))
        .await
        .unwrap();
    let a = post(&ingest, "branch=main&commit=c1", &["a"]).await;
    assert!(a.changes.unwrap().base.is_none());
    let list = ingest.tests(Some(&auth()), "web", None).await.unwrap();
    assert_eq!(list.pipelines, 1);
    drop(app);
}

/// Stores every run but fails the first write of the run record `fail`: a crash between a
/// completion's history update and its merged run being stored.
struct FailOnce {
    inner: Arc<dyn RunStore>,
    fail: testrelay_domain::ids::RunId,
    failed: std::sync::atomic::AtomicBool,
}

#[async_trait::async_trait]
impl RunStore for FailOnce {
    async fn create_run(
        &self,
        run: &testrelay_domain::ports::RunRecord,
    ) -> Result<testrelay_domain::ports::Created, testrelay_domain::ports::StoreError> {
        if run.run_id == self.fail && !self.failed.swap(true, std::sync::atomic::Ordering::SeqCst) {
            return Err(testrelay_domain::ports::StoreError::new("test", "injected"));
        }
        self.inner.create_run(run).await
    }
    async fn get_run(
        &self,
        id: &testrelay_domain::ids::RunId,
    ) -> Result<Option<testrelay_domain::ports::RunRecord>, testrelay_domain::ports::StoreError>
    {
        self.inner.get_run(id).await
    }
    async fn update_delivery(
        &self,
        id: &testrelay_domain::ids::RunId,
        connector: &ConnectorName,
        update: &testrelay_domain::ports::DeliveryUpdate,
    ) -> Result<(), testrelay_domain::ports::StoreError> {
        self.inner.update_delivery(id, connector, update).await
    }
    async fn add_delivery(
        &self,
        id: &testrelay_domain::ids::RunId,
        d: &testrelay_domain::ports::DeliveryRecord,
    ) -> Result<bool, testrelay_domain::ports::StoreError> {
        self.inner.add_delivery(id, d).await
    }
}

/// A completion interrupted after its history update (the merged run not stored: the last
/// shard's request answers 503) is finished by the sweep; the pipeline counts once in its
/// branch's history and its classification is the one it would have had.
async fn interrupted_completion(
    config: Arc<testrelay_domain::config::Config>,
    mut ports: testrelay_domain::ingest::Ports,
) {
    let merged = testrelay_domain::pipelines::merged_run_id("web", "p1", 1);
    let runs = ports.runs.clone();
    ports.runs = Arc::new(FailOnce {
        inner: runs.clone(),
        fail: merged.clone(),
        failed: Default::default(),
    });
    let ingest = IngestService::new(config, ports);
    let main = post(&ingest, "branch=main&commit=c1", &[]).await;
    let refused = ingest
        .submit(Submission {
            authorization: Some(auth()),
            query: Some("project=web&branch=main&commit=c2&pipeline=p1&shard=1/1".into()),
            body: bytes::Bytes::from(report(&TESTS, &["a"])),
            ..Default::default()
        })
        .await;
    assert_eq!(refused.unwrap_err().status, 503);
    let list = ingest.tests(Some(&auth()), "web", None).await.unwrap();
    assert_eq!(
        list.pipelines, 2,
        "the history was written before the failure"
    );
    assert!(runs.get_run(&merged).await.unwrap().is_none());

    assert_eq!(ingest.sweep_pipelines().await.unwrap(), 1);
    let record = runs
        .get_run(&merged)
        .await
        .unwrap()
        .expect("the sweep stored it");
    let c = record.changes.unwrap();
    assert_eq!(
        c.base.as_ref().unwrap().run_id,
        main.run_id,
        "compared with main's previous run"
    );
    assert_eq!(counts(&c), (1, 0, 0, 0));
    let list = ingest.tests(Some(&auth()), "web", None).await.unwrap();
    assert_eq!(list.pipelines, 2, "the pipeline counts once");
}

#[tokio::test]
async fn interrupted_completion_embedded() {
    let (app, _ingest, clock, dir) = crate::pipelines::local(|_| {}).await;
    let ports = testrelay_tests::local::ingest_ports(&app, dir.path(), clock);
    interrupted_completion(app.config.clone(), ports).await;
}

async fn interrupted_completion_on(engine: Engine) {
    let receiver = testrelay_tests::receiver::Receiver::start(200).await;
    let (_stack, app) = crate::lambda::app_on(&receiver, engine).await;
    interrupted_completion(app.config.clone(), app.ports()).await;
}

crate::on_engines!(interrupted_completion_on);
