//! A 50-shard pipeline of 2,000 tests a shard (100,000 cases) on the embedded adapters, plus
//! a re-run of 2 shards: the same outcome as the 8-shard one (one TestRail run holding every
//! case once with the latest result, one Slack message, one `pipeline.completed`), and the
//! vendor calls and state-store calls per shard, printed (`--no-capture`) and bounded.

use crate::pipeline_flow::{T0, Vendors, pipeline, workers};
use std::sync::Arc;
use testrelay_domain::delivery::retry::RetryPolicy;
use testrelay_domain::delivery::{DeliveryPorts, DeliveryService};
use testrelay_domain::ingest::{IngestService, Ports};
use testrelay_domain::ports::ManualClock;
use testrelay_embedded::{FileBlobStore, FileSecretStore, SqliteStore};
use testrelay_tests::counting::CountingState;

const SHARDS: u32 = 50;
const TESTS: u32 = 2_000;
const MAX_ROUNDS: usize = 2_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fifty_shards_of_two_thousand_tests() {
    let vendors = Vendors::start(SHARDS, TESTS).await;
    let dir = tempfile::tempdir().unwrap();
    let config = vendors.config(
        testrelay_tests::local::config(dir.path(), "http://127.0.0.1:9"),
        |s| s.to_string(),
    );
    let secrets = FileSecretStore::new(dir.path().join("secrets"));
    for (name, value) in vendors.secrets() {
        secrets.put(name, &value).unwrap();
    }
    let clock = Arc::new(ManualClock::new(T0));
    let store = SqliteStore::open(&dir.path().join("t.db"), clock.clone()).unwrap();
    let state = Arc::new(CountingState::new(Arc::new(store.clone())));
    let blobs = Arc::new(FileBlobStore::new(dir.path().join("blobs")));
    let env = testrelay_connectors::Env::new(&config, state.clone(), clock.clone());
    let connectors = testrelay_connectors::build(&config, &secrets, &env)
        .await
        .unwrap();
    let service = Arc::new(DeliveryService::new(
        DeliveryPorts {
            runs: Arc::new(store.clone()),
            blobs: blobs.clone(),
            idempotency: Arc::new(store.clone()),
            state: state.clone(),
            dead_letters: Arc::new(store.clone()),
            clock: clock.clone(),
            metrics: Arc::new(testrelay_domain::health::metrics::NoMetrics),
        },
        connectors,
        RetryPolicy::default(),
    ));
    let workers = workers(
        &service,
        Arc::new(store.clone()),
        Arc::new(store.clone()),
        8,
    );
    let ingest = Arc::new(IngestService::new(
        Arc::new(config),
        Ports {
            blobs,
            runs: Arc::new(store.clone()),
            idempotency: Arc::new(store.clone()),
            queue: Arc::new(store.clone()),
            dead_letters: Arc::new(store.clone()),
            state: state.clone(),
            clock: clock.clone(),
            metrics: Arc::new(testrelay_domain::health::metrics::NoMetrics),
        },
    ));
    let drain = || async {
        let mut handled = 0;
        for w in &workers {
            handled += w.drain().await;
        }
        handled
    };
    let settle = || testrelay_tests::local::settle(&store, &clock, MAX_ROUNDS, drain);
    let started = std::time::Instant::now();
    pipeline(ingest, SHARDS, TESTS, settle).await;
    let took = started.elapsed();
    vendors.check().await;

    let parts = (SHARDS + 2) as f64;
    let testrail = vendors.testrail_state.lock().unwrap().calls.len();
    let slack = vendors.slack.received_requests().await.unwrap().len();
    let hook = vendors.hook.count().await;
    let (loads, saves) = state.counts();
    println!(
        "pipeline of {SHARDS} shards x {TESTS} tests + a 2-shard re-run ({} parts), embedded, debug build, {:.1} s: \
         TestRail {testrail} calls ({:.1} a part), Slack {slack} ({:.1} a part), webhook {hook}; \
         state store {loads} loads + {saves} writes ({:.1} + {:.1} a part)",
        SHARDS + 2,
        took.as_secs_f64(),
        testrail as f64 / parts,
        slack as f64 / parts,
        loads as f64 / parts,
        saves as f64 / parts,
    );
    // A part's own results (20 batches of 100) and one case-list update; the suite read once
    // (400 pages) and the run's tests once (400 pages) for the whole pipeline.
    assert!(
        (testrail as f64) / parts < 40.0,
        "{testrail} TestRail calls for {parts} parts"
    );
    // Claims, locks and the pipeline record's conditional writes (retried under contention).
    assert!(
        (loads + saves) as f64 / parts < 100.0,
        "{loads} + {saves} state-store calls"
    );
}
