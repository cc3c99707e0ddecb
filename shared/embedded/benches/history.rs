//! What one pipeline's history update costs: calls to the ports (each is one AWS call on
//! Lambda: a blob read is an S3 GetObject, a conditional blob write a PutObject with
//! If-Match, a state read a DynamoDB GetItem) and wall time, at 1,000 / 10,000 / 100,000
//! tests (and 200,000, the most a branch keeps), on the embedded adapters (files for blobs,
//! SQLite for state), release build.
//!
//! `cargo bench -p testrelay-embedded --bench history`
//!
//! Per size: five pipelines of the default branch, then five of a pull-request branch (which
//! also reads the default branch's history as its base); each pipeline has 1 % of its tests
//! failing, a different 1 % each time. The figures are the median of each five; peak RSS is
//! the process's so far (the reports themselves included), so it grows with the sizes.

use async_trait::async_trait;
use bytes::Bytes;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;
use testrelay_domain::config::Config;
use testrelay_domain::health::metrics::NoMetrics;
use testrelay_domain::ids::RunId;
use testrelay_domain::ingest::{IngestService, Ports};
use testrelay_domain::ports::{
    BlobStore, Clock, StateStore, StoreError, SystemClock, Tagged, Versioned,
};
use testrelay_domain::report::model::{
    Format, PipelineRef, Report, RunMeta, Status, Suite, TestCase, TestRun,
};
use testrelay_embedded::{FileBlobStore, SqliteStore};

#[derive(Default)]
struct Calls {
    blob_reads: AtomicU64,
    blob_writes: AtomicU64,
    state_reads: AtomicU64,
    state_writes: AtomicU64,
    /// Bytes of the last snapshot written.
    written: AtomicU64,
}

impl Calls {
    fn take(&self) -> [u64; 4] {
        [
            self.blob_reads.swap(0, Ordering::SeqCst),
            self.blob_writes.swap(0, Ordering::SeqCst),
            self.state_reads.swap(0, Ordering::SeqCst),
            self.state_writes.swap(0, Ordering::SeqCst),
        ]
    }
}

struct Blobs(FileBlobStore, Arc<Calls>);
struct State(SqliteStore, Arc<Calls>);

#[async_trait]
impl BlobStore for Blobs {
    async fn put(&self, key: &str, bytes: Bytes) -> Result<(), StoreError> {
        self.1.blob_writes.fetch_add(1, Ordering::SeqCst);
        self.0.put(key, bytes).await
    }
    async fn get(&self, key: &str) -> Result<Option<Bytes>, StoreError> {
        self.1.blob_reads.fetch_add(1, Ordering::SeqCst);
        self.0.get(key).await
    }
    async fn get_tagged(&self, key: &str) -> Result<Option<Tagged>, StoreError> {
        self.1.blob_reads.fetch_add(1, Ordering::SeqCst);
        self.0.get_tagged(key).await
    }
    async fn put_if(
        &self,
        key: &str,
        bytes: Bytes,
        expected: Option<&str>,
    ) -> Result<bool, StoreError> {
        self.1.blob_writes.fetch_add(1, Ordering::SeqCst);
        self.1.written.store(bytes.len() as u64, Ordering::SeqCst);
        self.0.put_if(key, bytes, expected).await
    }
}

#[async_trait]
impl StateStore for State {
    async fn load(&self, key: &str) -> Result<Option<Versioned>, StoreError> {
        self.1.state_reads.fetch_add(1, Ordering::SeqCst);
        self.0.load(key).await
    }
    async fn save(
        &self,
        key: &str,
        value: &str,
        expected: Option<u64>,
    ) -> Result<bool, StoreError> {
        self.1.state_writes.fetch_add(1, Ordering::SeqCst);
        self.0.save(key, value, expected).await
    }
}

/// Pipeline `n` of `branch`: `tests` tests in 20 suites, 1 % failing (a different 1 % each
/// time).
fn pipeline(branch: &str, n: usize, tests: usize) -> TestRun {
    let per_suite = tests / 20;
    let suites = (0..20)
        .map(|s| Suite {
            name: format!("suite {s}"),
            file: None,
            duration_ms: None,
            properties: vec![],
            cases: (0..per_suite)
                .map(|i| {
                    let k = s * per_suite + i;
                    let failing = (k + n * 37).is_multiple_of(100);
                    let mut c = TestCase::new(
                        format!("test number {k} does what it says [param-{}]", k % 7),
                        if failing {
                            Status::Failed
                        } else {
                            Status::Passed
                        },
                    );
                    c.classname = Some(Arc::from(format!("com.example.module{}.Spec{s}", s % 5)));
                    c
                })
                .collect(),
        })
        .collect();
    let report = Report {
        format: Format::Junit,
        tool: None,
        duration_ms: None,
        suites,
    };
    TestRun {
        run_id: RunId::derived(format!("{branch}/{n}").as_bytes()),
        received_at: format!("2026-11-28T10:{:02}:00.000Z", n % 60),
        meta: RunMeta {
            project: "web".into(),
            branch: Some(branch.into()),
            commit: Some(format!("{n:040x}")),
            build_url: None,
            environment: None,
            pipeline: Some(PipelineRef {
                id: format!("{branch}-{n}"),
                shard: None,
                attempt: 1,
                completion: Some(1),
            }),
        },
        summary: report.summary(),
        report,
        changes: None,
    }
}

/// The process's peak resident memory so far (Linux), in MB.
fn peak_rss_mb() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        })
        .map_or(0, |kb| kb / 1024)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

#[tokio::main]
async fn main() {
    println!(
        "| tests | branch | S3 GetObject | S3 PutObject (If-Match) | DynamoDB GetItem | calls | median ms | snapshot | peak RSS |"
    );
    println!("|---:|---|---:|---:|---:|---:|---:|---:|---:|");
    for tests in [1_000, 10_000, 100_000, 200_000] {
        let dir = tempfile::tempdir().unwrap();
        let calls = Arc::new(Calls::default());
        let clock: Arc<dyn Clock> = Arc::new(SystemClock);
        let sqlite = SqliteStore::open(&dir.path().join("db"), clock.clone()).unwrap();
        let config = Config::from_toml(
            "[projects.web]\nconnectors = []\n[[api_keys]]\nid = \"ci\"\nsha256 = \"0000000000000000000000000000000000000000000000000000000000000000\"\n",
            "bench",
        )
        .unwrap();
        let ports = Ports {
            blobs: Arc::new(Blobs(
                FileBlobStore::new(dir.path().join("blobs")),
                calls.clone(),
            )),
            runs: Arc::new(sqlite.clone()),
            idempotency: Arc::new(sqlite.clone()),
            queue: Arc::new(sqlite.clone()),
            dead_letters: Arc::new(sqlite.clone()),
            state: Arc::new(State(sqlite.clone(), calls.clone())),
            clock,
            metrics: Arc::new(NoMetrics),
        };
        let ingest = IngestService::new(Arc::new(config), ports);
        for branch in ["main", "feature/x"] {
            let mut times = Vec::new();
            let mut counted = Vec::new();
            for n in 0..5 {
                let run = pipeline(branch, n, tests);
                calls.take();
                let start = Instant::now();
                let changes = ingest.changes_of(&run, true).await.unwrap();
                times.push(start.elapsed().as_secs_f64() * 1000.0);
                counted.push(calls.take());
                std::hint::black_box(changes);
            }
            // The first update of a branch has nothing to read; the rest are steady.
            let steady = counted[4];
            let [reads, writes, state_reads, state_writes] = steady;
            assert_eq!(state_writes, 0);
            println!(
                "| {tests} | {branch} | {reads} | {writes} | {state_reads} | {} | {:.1} | {} KB | {} MB |",
                reads + writes + state_reads,
                median(times),
                calls.written.load(Ordering::SeqCst) / 1024,
                peak_rss_mb()
            );
        }
    }
}
