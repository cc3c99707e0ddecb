//! Driving one connector directly: its config from TOML (validated like a real file), its
//! secrets in a real embedded secret store, step records and state in a real SQLite store,
//! time on a manual clock, and crashes injected at a chosen step.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use testrelay_connectors::Env;
use testrelay_domain::config::{Config, ConnectorConfig, ConnectorKind};
use testrelay_domain::delivery::steps::{CrashPoint, Faults, NoFaults, STEP_LEASE, Steps};
use testrelay_domain::ids::{ConnectorName, RunId};
use testrelay_domain::ports::{
    Connector, Delivered, DeliveryContext, DeliveryError, DeliveryMessage, ManualClock, StepError,
};
use testrelay_domain::report::model::{
    Format, Property, Report, RunMeta, Status, Suite, TestCase, TestRun,
};
use testrelay_embedded::{FileSecretStore, SqliteStore};

pub const RUN_ID: &str = "01ARZ3NDEKTSV4RRFFQ69G5FAV";
pub const PUBLIC: &str = "https://testrelay.example.com";
/// 2026-11-22T10:00:00Z
pub const T0: u64 = 1_795_341_600_000;

pub struct Harness {
    pub store: SqliteStore,
    pub clock: Arc<ManualClock>,
    pub secrets: FileSecretStore,
    pub env: Env,
    pub dir: tempfile::TempDir,
}

impl Default for Harness {
    fn default() -> Self {
        Self::new()
    }
}

impl Harness {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let clock = Arc::new(ManualClock::new(T0));
        let store = SqliteStore::open(&dir.path().join("t.db"), clock.clone()).unwrap();
        let secrets = FileSecretStore::new(dir.path().join("secrets"));
        let config = Config::from_toml("[network]\nallow = [\"127.0.0.0/8\"]\n", "test").unwrap();
        let env = Env::new(&config, Arc::new(store.clone()), clock.clone());
        Harness {
            store,
            clock,
            secrets,
            env,
            dir,
        }
    }

    pub fn secret(&self, name: &str, value: &str) -> &Self {
        self.secrets.put(name, value).unwrap();
        self
    }

    /// The connector `name` configured by the TOML table body `table`.
    pub async fn connector(&self, name: &str, table: &str) -> Arc<dyn Connector> {
        let config = connector_config(name, table);
        testrelay_connectors::build(&config, &self.secrets, &self.env)
            .await
            .unwrap_or_else(|e| panic!("connector builds: {e}"))
            .remove(&ConnectorName::parse(name).unwrap())
            .unwrap()
    }

    pub fn steps(&self, connector: &str, kind: ConnectorKind, generation: u32) -> Steps {
        self.steps_with(connector, kind, generation, Arc::new(NoFaults))
    }

    pub fn steps_with(
        &self,
        connector: &str,
        kind: ConnectorKind,
        generation: u32,
        faults: Arc<dyn Faults>,
    ) -> Steps {
        self.steps_of(RUN_ID, connector, kind, generation, faults)
    }

    /// Steps of the delivery of run `run_id` (another run than the sample's).
    pub fn steps_of(
        &self,
        run_id: &str,
        connector: &str,
        kind: ConnectorKind,
        generation: u32,
        faults: Arc<dyn Faults>,
    ) -> Steps {
        let mut message = DeliveryMessage::new(
            RunId::parse(run_id).unwrap(),
            ConnectorName::parse(connector).unwrap(),
            kind,
        );
        message.generation = generation;
        Steps::new(
            Arc::new(self.store.clone()),
            self.clock.clone(),
            faults,
            message,
        )
    }

    /// Lets every step lease run out, as after a crashed worker.
    pub fn expire_leases(&self) {
        self.clock.advance(STEP_LEASE + Duration::from_secs(1));
    }
}

/// A validated config holding one connector.
pub fn connector_config(name: &str, table: &str) -> Config {
    let text = format!("[network]\nallow = [\"127.0.0.0/8\"]\n\n[connectors.{name}]\n{table}\n");
    Config::from_toml(&text, "test.toml").unwrap_or_else(|e| panic!("{e}"))
}

pub fn one(config: &Config) -> &ConnectorConfig {
    config.connectors.values().next().unwrap()
}

pub fn ctx(connector: &str, generation: u32) -> DeliveryContext {
    DeliveryContext {
        event_id: format!("evt_{RUN_ID}_{connector}"),
        attempt: 1,
        generation,
        now_ms: T0,
        status_url: format!("{PUBLIC}/v1/runs/{RUN_ID}"),
    }
}

/// Delivers with fresh steps, as one attempt of the delivery service would.
pub async fn deliver(
    h: &Harness,
    c: &dyn Connector,
    run: &TestRun,
    generation: u32,
) -> Result<Delivered, StepError> {
    let name = "c";
    c.deliver(
        run,
        &ctx(name, generation),
        &h.steps(name, c.kind(), generation),
    )
    .await
}

pub fn failed(r: Result<Delivered, StepError>) -> DeliveryError {
    match r {
        Err(StepError::Failed(e)) => e,
        Err(other) => panic!("expected a failed attempt, got {other}"),
        Ok(d) => panic!("expected a failed attempt, got {d:?}"),
    }
}

/// Crashes once, at `point` of step `step`.
pub struct CrashOnce {
    point: CrashPoint,
    step: String,
    fired: AtomicBool,
}

impl CrashOnce {
    pub fn new(point: CrashPoint, step: &str) -> Arc<Self> {
        Arc::new(CrashOnce {
            point,
            step: step.into(),
            fired: AtomicBool::new(false),
        })
    }

    pub fn fired(&self) -> bool {
        self.fired.load(Ordering::SeqCst)
    }
}

impl Faults for CrashOnce {
    fn crash(&self, point: CrashPoint, step: &str, _: &DeliveryMessage) -> bool {
        point == self.point && step == self.step && !self.fired.swap(true, Ordering::SeqCst)
    }
}

/// Runs a delivery that crashes at (`point`, `step`), lets the leases run out, and runs it
/// again: what a crashed worker and the queue's redelivery do. Returns the second outcome.
pub async fn crash_then_retry(
    h: &Harness,
    c: &dyn Connector,
    run: &TestRun,
    point: CrashPoint,
    step: &str,
) -> Delivered {
    let name = "c";
    let crash = CrashOnce::new(point, step);
    let first = c
        .deliver(
            run,
            &ctx(name, 0),
            &h.steps_with(name, c.kind(), 0, crash.clone()),
        )
        .await;
    assert!(
        matches!(first, Err(StepError::Crashed)),
        "expected the crash at {point:?} of {step}, got {first:?}"
    );
    assert!(crash.fired());
    h.expire_leases();
    c.deliver(run, &ctx(name, 0), &h.steps(name, c.kind(), 0))
        .await
        .unwrap_or_else(|e| panic!("the retry after a crash at {point:?} of {step}: {e}"))
}

fn case(name: &str, status: Status, ms: f64) -> TestCase {
    let mut c = TestCase::new(name, status);
    c.classname = Some("shop.CheckoutTest".into());
    c.duration_ms = Some(ms);
    if status.is_failure() {
        c.message = Some("AssertionError: expected 200, got 503".into());
        c.trace = Some("AssertionError: expected 200, got 503\n    at checkout (shop/checkout.spec.ts:42:7)\n    at run (node:internal/test:1:1)".into());
    }
    c
}

/// A small failing run: case ids and test keys in several forms, a flaky test, a skip and
/// a test with no id.
pub fn sample_run() -> TestRun {
    let mut flaky = case("C104 applies a coupon", Status::Flaky, 2300.0);
    flaky.retries = 1;
    let mut by_property = case("pays by card", Status::Passed, 450.0);
    by_property.properties = vec![
        Property {
            name: "test_id".into(),
            value: "C105".into(),
        },
        Property {
            name: "test_key".into(),
            value: "SHOP-5".into(),
        },
    ];
    let cases = vec![
        case("C101 browses the catalogue", Status::Passed, 1200.0),
        case("SHOP-2: [C102] adds to cart", Status::Passed, 300.0),
        case(
            "SHOP-3: checkout fails on 503 [C103]",
            Status::Failed,
            65_400.0,
        ),
        flaky,
        by_property,
        case("SHOP-6 @testrail(106) refunds", Status::Error, 80.0),
        case("C107 exports invoices", Status::Skipped, 0.0),
        case("has no case id", Status::Passed, 10.0),
    ];
    run_of(cases)
}

/// [`sample_run`] classified against a base of main on which the refund test already
/// failed and the checkout test passed (so: one new failure, one still failing).
pub fn sample_run_with_changes() -> TestRun {
    use testrelay_domain::history::classify::{BaseSide, Inputs, classify};
    use testrelay_domain::history::snapshot::{Entry, Snapshot, outcomes};
    let mut base_run = sample_run();
    for case in &mut base_run.report.suites[0].cases {
        case.status = match case.status {
            Status::Failed => Status::Passed,
            other => other,
        };
    }
    let mut main = Snapshot::new("main");
    main.apply(
        Entry {
            key: "pipeline:base".into(),
            run_id: RunId::derived(b"base"),
            commit: Some("0a1b2c3d4e5f".into()),
            at: "2026-11-21T09:00:00.000Z".into(),
            total: 8,
            failed: 1,
        },
        &outcomes(&base_run),
        50,
    );
    let mut run = sample_run();
    let tests = outcomes(&run);
    let changes = classify(&Inputs {
        key: "pipeline:this",
        commit: run.meta.commit.as_deref(),
        tests: &tests,
        branch: None,
        base: Some(BaseSide {
            snapshot: &main,
            index: 0,
        }),
        default_branch: Some(&main),
        quarantined: &Default::default(),
        flaky_flip_rate: 0.3,
    });
    drop(tests);
    run.changes = Some(changes);
    run
}

/// A run with `n` failures (and one pass), every failure with a long trace.
pub fn run_with_failures(n: usize) -> TestRun {
    let mut cases: Vec<TestCase> = (0..n)
        .map(|i| {
            let mut c = case(
                &format!("C{} test number {i} fails", 1000 + i),
                Status::Failed,
                100.0,
            );
            c.trace = Some(format!(
                "Error: boom {i}\n{}",
                "    at frame (file.js:1:1)\n".repeat(200)
            ));
            c
        })
        .collect();
    cases.push(case("C1 passes", Status::Passed, 5.0));
    run_of(cases)
}

pub fn passing_run() -> TestRun {
    run_of(vec![case(
        "C101 browses the catalogue",
        Status::Passed,
        1200.0,
    )])
}

fn run_of(cases: Vec<TestCase>) -> TestRun {
    let report = Report {
        format: Format::Junit,
        tool: None,
        duration_ms: Some(71_000.0),
        suites: vec![Suite {
            name: "checkout".into(),
            file: Some("shop/checkout.spec.ts".into()),
            duration_ms: None,
            properties: vec![],
            cases,
        }],
    };
    TestRun {
        changes: None,
        run_id: RunId::parse(RUN_ID).unwrap(),
        received_at: "2026-11-22T10:00:00.000Z".into(),
        meta: RunMeta {
            project: "web".into(),
            branch: Some("main".into()),
            commit: Some("a1b2c3d4e5f6a7b8c9d0".into()),
            build_url: Some("https://ci.example.com/builds/812".into()),
            environment: None,
            pipeline: None,
        },
        summary: report.summary(),
        report,
    }
}

/// Compares `value` with the fixture `tests/fixtures/connectors/<name>`, or rewrites the
/// fixture when `UPDATE_FIXTURES=1`. The fixtures are what README shows users.
pub fn fixture(name: &str, value: &serde_json::Value) {
    let path = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures/connectors")
        .join(name);
    let text = serde_json::to_string_pretty(value).unwrap() + "\n";
    if std::env::var("UPDATE_FIXTURES").as_deref() == Ok("1") {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, &text).unwrap();
        return;
    }
    let stored = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (UPDATE_FIXTURES=1 writes it)", path.display()));
    assert_eq!(
        stored,
        text,
        "{} is out of date (UPDATE_FIXTURES=1 rewrites it)",
        path.display()
    );
}

/// The error a connector reports for a sample run when its vendor answers every request
/// with `answer`: `connect` builds the connector against the wiremock server.
pub async fn error_for(
    answer: wiremock::ResponseTemplate,
    connect: impl for<'a> Fn(
        &'a Harness,
        &'a wiremock::MockServer,
    ) -> futures::future::BoxFuture<'a, Arc<dyn Connector>>,
) -> DeliveryError {
    let server = wiremock::MockServer::start().await;
    wiremock::Mock::given(wiremock::matchers::any())
        .respond_with(answer)
        .mount(&server)
        .await;
    let h = Harness::new();
    let c = connect(&h, &server).await;
    failed(deliver(&h, c.as_ref(), &sample_run(), 0).await)
}
