//! Every shape of the hostile corpus (`tests/support/hostile.rs`) posted to a real
//! `testrelay serve` process, one after another: each gets its documented answer
//! (202, or a 4xx problem+json), a refusal stores nothing, and after each the process is
//! still running, still answering, and its peak resident memory stays bounded.

#[path = "../../../tests/support/hostile.rs"]
mod hostile;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A `testrelay serve` child on a free loopback port with the dev default in a temporary
/// data directory; killed when dropped.
struct Serve {
    child: Child,
    base: String,
    data: tempfile::TempDir,
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Serve {
    async fn start() -> Serve {
        let data = tempfile::tempdir().unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new(env!("CARGO_BIN_EXE_testrelay"))
            .args([
                "serve",
                "--listen",
                &format!("127.0.0.1:{port}"),
                "--data-dir",
            ])
            .arg(data.path())
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let mut s = Serve {
            child,
            base: format!("http://127.0.0.1:{port}"),
            data,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while !s.answers().await {
            assert!(Instant::now() < deadline, "testrelay serve did not start");
            assert!(
                s.child.try_wait().unwrap().is_none(),
                "testrelay serve exited"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        s
    }

    async fn answers(&self) -> bool {
        reqwest::get(format!("{}/healthz", self.base))
            .await
            .is_ok_and(|r| r.status() == 200)
    }

    fn api_key(&self) -> String {
        std::fs::read_to_string(self.data.path().join("dev-api-key"))
            .unwrap()
            .trim()
            .to_string()
    }

    fn stored_runs(&self) -> usize {
        std::fs::read_dir(self.data.path().join("blobs/runs")).map_or(0, |d| d.count())
    }

    /// The process's peak resident set, from /proc (Linux).
    fn peak_rss_kb(&self) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).ok()?;
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_reports_cannot_take_testrelay_serve_down() {
    let mut serve = Serve::start().await;
    let key = serve.api_key();
    let client = reqwest::Client::new();
    for shape in hostile::shapes() {
        let stored = serve.stored_runs();
        let mut url = format!("{}/v1/reports?project=web", serve.base);
        if let Some(f) = shape.format {
            url.push_str(&format!("&format={f}"));
        }
        let mut req = client.post(url).bearer_auth(&key).body(shape.body);
        if shape.gzip {
            req = req.header("content-encoding", "gzip");
        }
        let started = Instant::now();
        let res = req.send().await.unwrap_or_else(|e| {
            panic!(
                "{}: no answer ({e}); process: {:?}",
                shape.name,
                serve.child.try_wait()
            )
        });
        let status = res.status().as_u16();
        let content_type = res.headers()["content-type"].to_str().unwrap().to_string();
        let body = res.text().await.unwrap();
        let took = started.elapsed();
        match shape.expect {
            hostile::Expect::Accepted => assert_eq!(status, 202, "{}: {body}", shape.name),
            hostile::Expect::Refused(want) => {
                assert_eq!(status, want, "{}: {body}", shape.name);
                assert_eq!(content_type, "application/problem+json", "{}", shape.name);
                assert_eq!(
                    serve.stored_runs(),
                    stored,
                    "{}: a refusal stored a run",
                    shape.name
                );
            }
        }
        assert!(
            serve.child.try_wait().unwrap().is_none(),
            "{}: the process died",
            shape.name
        );
        assert!(
            serve.answers().await,
            "{}: the process stopped answering",
            shape.name
        );
        println!(
            "{:<55} {status} in {:>6.0} ms, peak RSS so far {} MB",
            shape.name,
            took.as_secs_f64() * 1e3,
            serve.peak_rss_kb().unwrap_or(0) / 1024
        );
    }
    // Shapes run one at a time, each within 4x its inflated size (at most 64 MiB) + 8 MB.
    if let Some(kb) = serve.peak_rss_kb() {
        assert!(kb < 1024 * 1024, "peak RSS {kb} kB");
    }
    let _ = serve.child.kill();
}
