//! Test support shared by the integration tests: the corpus location, the local AWS
//! emulator (moto, started by `tests/run-all.sh`), a signed-webhook receiver on wiremock,
//! and `spawn_app()`, the whole local process on a random port.

pub mod aws;
pub mod counting;
pub mod fake_vendor;
pub mod faults;
pub mod hostile;
pub mod local;
pub mod mail;
pub mod receiver;
pub mod vendor;
pub mod warp;

use std::path::PathBuf;

/// A file of the shared corpus of real reports, beside the repository.
pub fn corpus(rel: &str) -> PathBuf {
    let root = std::env::var("TESTRELAY_CORPUS")
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/corpus"));
    root.join(rel)
}

/// A file of this repository's `events/` folder.
pub fn event(name: &str) -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../events")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// A name unique to this test process and call, for tables, queues and buckets.
pub fn unique(prefix: &str) -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "{prefix}-{}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst),
        rand_suffix()
    )
}

fn rand_suffix() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!("{nanos:08x}")
}

/// Polls `check` until it returns `Some`, or panics after `deadline`. For waiting on
/// something another task does, without a fixed sleep.
pub async fn eventually<T, F, Fut>(deadline: std::time::Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let start = std::time::Instant::now();
    loop {
        if let Some(v) = check().await {
            return v;
        }
        if start.elapsed() > deadline {
            panic!("timed out after {deadline:?} waiting for {what}");
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}
