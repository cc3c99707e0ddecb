//! Parser throughput and the ingest memory budget:
//! `cargo bench -p testrelay-domain --bench parse`.
//!
//! 1. Generates a 10,000-test JUnit report (5 % failures with stack traces, properties,
//!    system-out) plus CTRF and Playwright reports of the same size, parses each repeatedly
//!    and prints MB/s, tests/s and the peak heap the parse needed (a counting allocator).
//! 2. Runs every shape of the hostile corpus (`tests/support/hostile.rs`), and honest
//!    reports of every format up to 200,000 tests, through the ingest path's memory-heavy
//!    part (body, gzip undone within the in-flight budget, parse, stored JSON) and prints,
//!    per shape, bytes on the wire, bytes inflated, the answer, the time, the peak heap and
//!    its ratio to the inflated size, checked against the budget: 4 x inflated + 8 MB.

#[path = "support/counting.rs"]
mod counting;
#[path = "../../../tests/support/hostile.rs"]
mod hostile;

use std::fmt::Write;
use std::time::Instant;
use testrelay_domain::report::model::{Format, RunMeta, TestRun};

const TESTS: usize = 10_000;

fn junit() -> String {
    let mut s =
        String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<testsuites name=\"bench\">\n");
    for suite in 0..TESTS / 100 {
        let _ = writeln!(
            s,
            "  <testsuite name=\"com.example.suite{suite}.ServiceTest\" tests=\"100\" time=\"12.5\">"
        );
        s.push_str("    <properties><property name=\"java.version\" value=\"21\"/></properties>\n");
        for case in 0..100 {
            let _ = write!(
                s,
                "    <testcase name=\"handles request variant {case} correctly [C{}]\" classname=\"com.example.suite{suite}.ServiceTest\" time=\"0.{case:03}\"",
                suite * 100 + case
            );
            if case % 20 == 7 {
                s.push_str(">\n      <failure message=\"expected: &lt;200&gt; but was: &lt;500&gt;\" type=\"org.opentest4j.AssertionFailedError\"><![CDATA[org.opentest4j.AssertionFailedError: expected: <200> but was: <500>\n");
                for frame in 0..25 {
                    let _ = writeln!(
                        s,
                        "\tat com.example.suite{suite}.ServiceTest.frame{frame}(ServiceTest.java:{})",
                        100 + frame
                    );
                }
                s.push_str("]]></failure>\n      <system-out><![CDATA[");
                for line in 0..20 {
                    let _ = writeln!(
                        s,
                        "2026-11-22 10:00:{line:02} INFO request handled in 12 ms"
                    );
                }
                s.push_str("]]></system-out>\n    </testcase>\n");
            } else {
                s.push_str("/>\n");
            }
        }
        s.push_str("  </testsuite>\n");
    }
    s.push_str("</testsuites>\n");
    s
}

fn ctrf() -> String {
    ctrf_of(TESTS)
}

fn ctrf_of(n: usize) -> String {
    let tests: Vec<_> = (0..n)
        .map(|i| {
            let failed = i % 20 == 7;
            serde_json::json!({
                "name": format!("handles request variant {i} correctly"),
                "status": if failed { "failed" } else { "passed" },
                "duration": i % 300,
                "suite": [format!("suite{}", i / 100)],
                "message": if failed { Some("expected 200 but was 500") } else { None },
                "trace": if failed { Some("at ServiceTest.frame(ServiceTest.java:100)\n".repeat(25)) } else { None },
                "filePath": format!("src/suite{}.test.ts", i / 100),
            })
        })
        .collect();
    serde_json::json!({"reportFormat": "CTRF", "specVersion": "1.0.0", "results": {"tool": {"name": "jest"}, "tests": tests}}).to_string()
}

fn playwright() -> String {
    playwright_of(TESTS)
}

fn playwright_of(n: usize) -> String {
    let suites: Vec<_> = (0..n / 100)
        .map(|f| {
            let specs: Vec<_> = (0..100)
                .map(|i| {
                    let failed = i % 20 == 7;
                    serde_json::json!({
                        "title": format!("variant {i}"), "ok": !failed, "file": format!("f{f}.spec.ts"), "line": i, "column": 3,
                        "tests": [{"projectName": "chromium", "expectedStatus": "passed", "status": if failed {"unexpected"} else {"expected"},
                            "results": [{"status": if failed {"failed"} else {"passed"}, "duration": 120, "retry": 0,
                                "error": if failed { Some(serde_json::json!({"message": "expect(received).toBe(expected)", "stack": "Error\n    at f.spec.ts:10:5\n".repeat(10)})) } else { None }}]}]
                    })
                })
                .collect();
            serde_json::json!({"title": format!("f{f}.spec.ts"), "file": format!("f{f}.spec.ts"), "specs": specs, "suites": []})
        })
        .collect();
    serde_json::json!({"config": {}, "suites": suites, "stats": {"duration": 60000.0}}).to_string()
}

fn bench(name: &str, input: &[u8], format: Format) {
    let report =
        testrelay_domain::report::parse::parse(input, Some(format)).expect("bench input parses");
    assert_eq!(report.summary().total, TESTS as u64);
    drop(report);
    let iterations = 30;
    let start = Instant::now();
    for _ in 0..iterations {
        let r = testrelay_domain::report::parse::parse(std::hint::black_box(input), Some(format))
            .unwrap();
        std::hint::black_box(&r);
    }
    let secs = start.elapsed().as_secs_f64() / iterations as f64;
    let base = counting::current();
    let (r, peak) =
        counting::peak_of(|| testrelay_domain::report::parse::parse(input, Some(format)));
    let kept = counting::current() - base;
    drop(r);
    let mb = input.len() as f64 / 1e6;
    println!(
        "{name:<11} {mb:>6.2} MB  {:>7.2} ms/parse  {:>7.1} MB/s  {:>10.0} tests/s  peak heap {:>6.1} MB (model {:>5.1} MB)",
        secs * 1e3,
        mb / secs,
        TESTS as f64 / secs,
        peak as f64 / 1e6,
        kept as f64 / 1e6,
    );
}

/// The memory-heavy part of one ingest, as `IngestService::submit` runs it: the body,
/// gzip undone within the in-flight budget, the parse within the default limits, the run
/// encoded as it is stored. Answers the status (202 or the refusal's).
fn ingest(wire: &[u8], gzip: bool, format: Option<Format>) -> (u16, usize) {
    use testrelay_domain::ingest::inflate::Inflight;
    use testrelay_domain::report::parse::{Limits, limits::stored_budget, parse_with};
    let body = bytes::Bytes::copy_from_slice(wire);
    let inflight = Inflight::new(testrelay_domain::config::DEFAULT_MAX_INFLIGHT_BYTES);
    let cap = testrelay_domain::config::DEFAULT_MAX_DECOMPRESSED_BYTES;
    let mut reservation = testrelay_domain::ingest::inflate::Reservation::default();
    let inflated = match inflight.decode(&body, gzip.then_some("gzip"), cap, &mut reservation) {
        Ok(ok) => ok,
        // Refused while inflating: it held up to the cap.
        Err(e) => return (e.status, if e.status == 413 { cap } else { 0 }),
    };
    drop(body);
    let len = inflated.len();
    let parsed = match parse_with(&inflated, format, &Limits::default()) {
        Ok(p) => p,
        Err(e) => return (if e.too_large { 413 } else { 400 }, len),
    };
    drop(inflated);
    let summary = parsed.report.summary();
    let run = TestRun {
        changes: None,
        run_id: testrelay_domain::ids::RunId::new(0),
        received_at: "2026-11-28T00:00:00Z".into(),
        meta: RunMeta {
            project: "web".into(),
            branch: Some("main".into()),
            commit: None,
            build_url: None,
            environment: None,
            pipeline: None,
        },
        summary,
        report: parsed.report,
    };
    let left = stored_budget(len, parsed.heap_bytes);
    match testrelay_domain::ingest::encode_run(&run, left) {
        Ok(blob) => {
            drop(run);
            std::hint::black_box(&blob);
            (202, len)
        }
        Err(e) => (e.status, len),
    }
}

/// One shape through [`ingest`]: a table row, and whether it kept to the budget and answered
/// what it must.
fn budget_row(name: &str, wire: &[u8], gzip: bool, format: Option<Format>, expect: u16) -> bool {
    let start = Instant::now();
    let ((status, inflated), peak) = counting::peak_of(|| ingest(wire, gzip, format));
    let ms = start.elapsed().as_secs_f64() * 1e3;
    // A refusal before inflating (the bomb) is measured against what it was allowed to hold.
    let measured = inflated.max(wire.len());
    let budget = 4 * measured + 8_000_000;
    let ok = peak <= budget && status == expect;
    println!(
        "| {name} | {:.2} MB | {:.2} MB | {status} | {ms:.0} ms | {:.1} MB | {:.2}x | {} |",
        wire.len() as f64 / 1e6,
        inflated as f64 / 1e6,
        peak as f64 / 1e6,
        peak as f64 / measured.max(1) as f64,
        if ok { "yes" } else { "NO" },
    );
    ok
}

fn budget_table() {
    println!(
        "\nmemory budget: peak heap of one ingest (body, gzip undone, parse, stored JSON) <= 4 x inflated + 8 MB"
    );
    println!(
        "| shape | wire | inflated | answer | time | peak heap | peak / inflated | within budget |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    let mut all = true;
    for shape in hostile::shapes() {
        let format = shape.format.and_then(Format::from_name);
        let expect = match shape.expect {
            hostile::Expect::Accepted => 202,
            hostile::Expect::Refused(s) => s,
        };
        all &= budget_row(shape.name, &shape.body, shape.gzip, format, expect);
    }
    for tests in [100_000, 200_000] {
        let junit = hostile::honest_junit(tests);
        let name = format!("junit: honest {tests} tests, not gzipped");
        all &= budget_row(&name, &junit, false, None, 202);
    }
    let ctrf = ctrf_of(100_000);
    all &= budget_row(
        "ctrf: honest 100,000 tests",
        ctrf.as_bytes(),
        false,
        None,
        202,
    );
    let pw = playwright_of(100_000);
    all &= budget_row(
        "playwright: honest 100,000 tests",
        pw.as_bytes(),
        false,
        None,
        202,
    );
    assert!(all, "a shape broke the memory budget or answered otherwise");
}

fn main() {
    // `cargo test --benches` runs this with --bench absent: keep it quick then.
    let quick = !std::env::args().any(|a| a == "--bench");
    let j = junit();
    if quick {
        let r = testrelay_domain::report::parse::parse(j.as_bytes(), None).unwrap();
        assert_eq!(r.summary().total, TESTS as u64);
        return;
    }
    println!("parsing {TESTS}-test reports (mean of 30 parses each):");
    bench("junit", j.as_bytes(), Format::Junit);
    bench("ctrf", ctrf().as_bytes(), Format::Ctrf);
    bench("playwright", playwright().as_bytes(), Format::Playwright);
    budget_table();
}
