//! Fault injection: 1,000 runs through a fake vendor that fails a share of calls (5xx,
//! slow answers past the timeout, connection resets, 429 with Retry-After, 400) with an
//! outage in the middle, while deliveries crash at every point between a step and its
//! bookkeeping. On the embedded adapters, on the AWS adapters with DynamoDB Local + MiniStack,
//! and (a tenth as many runs) with moto. Time is a manual clock: hours of retry schedule and
//! breaker cool-downs pass without waiting.
//!
//! Every run must end delivered exactly once (the vendor counts effects by idempotency key)
//! or dead-lettered with a reason; none lost, none duplicated.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;
use testrelay_domain::config::{Config, ConnectorConfig, ConnectorKind};
use testrelay_domain::delivery::retry::RetryPolicy;
use testrelay_domain::delivery::steps::CrashPoint;
use testrelay_domain::health::metrics::MemoryMetrics;
use testrelay_domain::ids::{ConnectorName, RunId};
use testrelay_domain::ingest::IngestService;
use testrelay_domain::ports::{DeadLetterStore, DeliveryState, ManualClock, RunStore};
use testrelay_tests::aws::Engine;
use testrelay_tests::fake_vendor::{Answer, FakeVendor, Plan};
use testrelay_tests::faults::RandomCrashes;

/// Runs per scenario on the embedded store and on DynamoDB Local + MiniStack.
const RUNS: usize = 1000;
/// Runs on moto: see README, "The two commands", for why moto runs a tenth.
const MOTO_RUNS: usize = 100;
const T0: u64 = 1_800_000_000_000;
/// Rounds of "deliver what is due, then move the clock": a bound, not a wait.
const MAX_ROUNDS: usize = 2_000;

/// 5xx, 429, slow, reset and 400 answers at random, after a two-minute outage.
fn plan(clock: Arc<ManualClock>) -> Plan {
    Plan {
        seed: 20261122,
        server_error: 10,
        throttled: 5,
        slow: 3,
        reset: 4,
        bad_request: 2,
        clock,
        outage_until_ms: T0 + 2 * 60 * 1000,
        slow_by: Duration::from_millis(400),
    }
}

/// The local test config pointed at the fake vendor, with a short timeout.
fn config(dir: &std::path::Path, url: &str) -> Config {
    let mut c = testrelay_tests::local::config(dir, url);
    c.server.delivery_concurrency = 16;
    for cfg in c.connectors.values_mut() {
        if let ConnectorConfig::Webhook(w) = cfg {
            w.timeout_ms = 150;
        }
    }
    c
}

/// What a finished scenario is checked against.
struct Outcome<'a> {
    ids: &'a [RunId],
    runs: &'a dyn RunStore,
    dead_letters: &'a dyn DeadLetterStore,
    vendor: &'a FakeVendor,
    crashes: &'a RandomCrashes,
    metrics: &'a MemoryMetrics,
}

async fn check(o: Outcome<'_>) {
    let hook = ConnectorName::parse("hook").unwrap();
    let record = o.vendor.record.lock().unwrap().clone();
    let (mut delivered, mut dead) = (0, HashSet::new());
    for id in o.ids {
        let run = o
            .runs
            .get_run(id)
            .await
            .unwrap()
            .expect("every accepted run exists");
        let d = run.deliveries.iter().find(|d| d.connector == hook).unwrap();
        let key = format!("evt_{id}_hook");
        match d.state {
            DeliveryState::Delivered => {
                assert_eq!(
                    record.effects.get(&key),
                    Some(&1),
                    "{id}: delivered exactly once"
                );
                delivered += 1;
            }
            DeliveryState::DeadLettered => {
                assert!(
                    d.last_error.as_deref().is_some_and(|e| !e.is_empty()),
                    "{id}: a reason"
                );
                assert!(
                    !record.effects.contains_key(&key),
                    "{id}: dead-lettered yet delivered"
                );
                dead.insert(id.clone());
            }
            other => panic!("{id} lost in state {other:?}"),
        }
        assert!(
            d.attempts.len() <= 8,
            "{id}: deferrals never use up attempts"
        );
    }
    assert_eq!(delivered + dead.len(), o.ids.len(), "zero lost");
    assert_eq!(
        record.effects.len(),
        delivered,
        "no effect for a run that was not delivered"
    );
    let letters = o
        .dead_letters
        .list(ConnectorKind::Webhook, 100)
        .await
        .unwrap();
    let lettered: HashSet<RunId> = letters
        .iter()
        .map(|l| l.letter.message.run_id.clone())
        .collect();
    assert!(
        dead.iter().all(|id| lettered.contains(id)),
        "every dead-lettered run is in the dead-letter store"
    );
    // Sends the vendor had to dedupe come only from the two windows nothing can close: an
    // answer lost after the vendor acted (slow), and a crash right after the target accepted.
    let ambiguous = record.answers.get(&Answer::Slow).copied().unwrap_or(0)
        + o.crashes.count(CrashPoint::AfterCall);
    assert!(
        record.replays <= ambiguous,
        "replays {} > ambiguous windows {ambiguous}",
        record.replays
    );
    for point in [
        CrashPoint::BeforeCall,
        CrashPoint::AfterCall,
        CrashPoint::AfterStep,
        CrashPoint::AfterRecord,
    ] {
        assert!(o.crashes.count(point) > 0, "no crash injected at {point:?}");
    }
    let opened = o.metrics.total("BreakerTransition");
    let deferred = o.metrics.get(
        "DeliveryOutcome",
        &[("Connector", "hook"), ("Outcome", "deferred")],
    );
    assert!(
        opened > 0 && deferred > 0,
        "the outage opened the breaker ({opened}) and deferred deliveries ({deferred})"
    );
    println!(
        "fault injection: {} runs, {delivered} delivered, {} dead-lettered, answers {:?}, replays {}, crashes {:?}, breaker transitions {opened}, deferrals {deferred}",
        o.ids.len(),
        dead.len(),
        record.answers,
        record.replays,
        o.crashes.crashes.lock().unwrap()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn embedded_adapters_lose_and_duplicate_nothing() {
    let clock = Arc::new(ManualClock::new(T0));
    let vendor = FakeVendor::start(plan(clock.clone())).await;
    let crashes = Arc::new(RandomCrashes::new(99, 3));
    let dir = tempfile::tempdir().unwrap();
    let (app, ingest) = testrelay_tests::local::on_manual_clock(
        config(dir.path(), &vendor.url),
        dir.path(),
        clock.clone(),
        Some(crashes.clone()),
    )
    .await;
    let ids = testrelay_tests::local::submit_runs(ingest, RUNS).await;

    testrelay_tests::local::settle(&app.store, &clock, MAX_ROUNDS, || {
        app.dispatch_all_pending()
    })
    .await;
    check(Outcome {
        ids: &ids,
        runs: &app.store,
        dead_letters: &app.store,
        vendor: &vendor,
        crashes: &crashes,
        metrics: &app.metrics,
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn aws_adapters_on_dynamodb_local_lose_and_duplicate_nothing() {
    aws_adapters(Engine::DynamoDbLocal, RUNS, 16).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn aws_adapters_on_moto_lose_and_duplicate_nothing() {
    // moto serves one request at a time (tests/moto_server.py); more in flight only queue.
    aws_adapters(Engine::Moto, MOTO_RUNS, 4).await;
}

/// The scenario through the Lambda functions' adapters on `engine`: `runs` reports,
/// `concurrency` deliveries in flight.
async fn aws_adapters(engine: Engine, runs: usize, concurrency: usize) {
    use testrelay_domain::config::SecretRef;
    use testrelay_domain::delivery::DeliveryService;
    use testrelay_domain::delivery::worker::Worker;
    use testrelay_tests::warp::WarpQueue;

    let clock = Arc::new(ManualClock::new(T0));
    let vendor = FakeVendor::start(plan(clock.clone())).await;
    let crashes = Arc::new(RandomCrashes::new(99, 3));
    let stack = testrelay_tests::aws::Stack::create_on(engine).await;
    let secret = testrelay_tests::unique("testrelay/hook");
    testrelay_tests::aws::put_secret(
        &stack.sdk,
        &secret,
        &testrelay_domain::delivery::signing::WebhookSecret::generate().1,
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let mut config = config(dir.path(), &vendor.url);
    for cfg in config.connectors.values_mut() {
        if let ConnectorConfig::Webhook(w) = cfg {
            w.secret = SecretRef::Secret(secret.clone());
        }
    }
    let app = testrelay_lambda::bootstrap::AwsApp::new(config, &stack.sdk, stack.resources());
    let warp = Arc::new(WarpQueue::new(app.queue.clone(), clock.clone()));
    let metrics = Arc::new(MemoryMetrics::default());
    let (ports, ingest_ports) =
        testrelay_tests::warp::ports_on(&app, &warp, &clock, metrics.clone());
    let connectors = app.connectors().await.unwrap();
    let service = DeliveryService::new(ports, connectors, RetryPolicy::default())
        .with_faults(crashes.clone());
    let worker = Worker {
        kind: ConnectorKind::Webhook,
        consumer: warp.clone(),
        queue: warp.clone(),
        service: Arc::new(service),
        concurrency,
    };
    let ingest = Arc::new(IngestService::new(app.config.clone(), ingest_ports));
    let ids = testrelay_tests::local::submit_runs(ingest, runs).await;

    testrelay_tests::warp::settle(&warp, &clock, MAX_ROUNDS, || worker.drain()).await;
    check(Outcome {
        ids: &ids,
        runs: &app.runs,
        dead_letters: &app.dead_letters,
        vendor: &vendor,
        crashes: &crashes,
        metrics: &metrics,
    })
    .await;
}
