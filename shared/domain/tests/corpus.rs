//! Every file in the shared corpus of real reports (`../shared/corpus`, beside the repository)
//! goes through the parsers: valid reports must parse with the right counts, everything else
//! must be rejected with a message that says what is wrong.
//!
//! Oracles, in order of preference: the source project's own expected results
//! (`*.results.json`, `*.exception`), an independent count of `<testcase` elements, and for
//! Playwright a walk over the raw JSON.

use serde_json::Value;
use std::path::{Path, PathBuf};
use testrelay_domain::report::model::{Format, Report};
use testrelay_domain::report::parse;

fn corpus_dir() -> PathBuf {
    if let Ok(dir) = std::env::var("TESTRELAY_CORPUS") {
        return PathBuf::from(dir);
    }
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/corpus")
}

fn files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("corpus directory is readable") {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files(&path, out);
        } else {
            out.push(path);
        }
    }
}

/// What the source project expects, next to the input file.
fn sibling(path: &Path, suffix: &str) -> Option<PathBuf> {
    let stem = path.to_str()?.strip_suffix(".xml")?;
    let p = PathBuf::from(format!("{stem}{suffix}"));
    p.exists().then_some(p)
}

fn naive_testcase_count(xml: &str) -> usize {
    let mut n = 0;
    let mut rest = xml;
    while let Some(i) = rest.find("<testcase") {
        let after = &rest[i + "<testcase".len()..];
        if after.starts_with(|c: char| c.is_whitespace() || c == '>' || c == '/') {
            n += 1;
        }
        rest = after;
    }
    n
}

#[test]
fn every_corpus_file_is_parsed_or_rejected_as_its_source_expects() {
    let root = corpus_dir();
    let mut all = Vec::new();
    files(&root, &mut all);
    all.sort();
    assert!(
        all.len() > 150,
        "corpus at {} looks incomplete",
        root.display()
    );

    let mut checked = 0;
    let mut failures = Vec::new();
    for path in &all {
        let name = path.strip_prefix(&root).unwrap().display().to_string();
        let is_oracle = name.ends_with(".results.json")
            || name.ends_with(".exception")
            || name.ends_with(".md");
        if is_oracle {
            continue;
        }
        let bytes = std::fs::read(path).unwrap();
        let result = parse::parse(&bytes, None);
        checked += 1;
        let verdict = check(path, &name, &bytes, &result);
        if let Err(why) = verdict {
            failures.push(format!("{name}: {why}"));
        }
    }
    assert!(checked > 150);
    assert!(
        failures.is_empty(),
        "{} of {checked} corpus files misjudged:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

fn check(
    path: &Path,
    name: &str,
    bytes: &[u8],
    result: &Result<Report, parse::ReportError>,
) -> Result<(), String> {
    let oracle: Option<Value> = sibling(path, ".results.json")
        .map(|p| serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap());
    let source_reports_errors = oracle.as_ref().is_some_and(|v| {
        v["stats"]["errors"]
            .as_array()
            .is_some_and(|e| !e.is_empty())
    });
    let must_reject = source_reports_errors
        || name.ends_with(".txt")
        || name.contains("/schema/")
        || name.ends_with(".test.json")
        || name.contains("report-invalid")
        || (name.ends_with(".xml") && sibling(path, ".exception").is_some());
    if must_reject {
        if std::env::var_os("CORPUS_VERBOSE").is_some()
            && let Err(e) = result
        {
            eprintln!("{name}: {e}");
        }
        return match result {
            Ok(r) => Err(format!(
                "accepted a file its source rejects ({} tests)",
                r.summary().total
            )),
            Err(e) if e.to_string().len() < 16 => Err(format!("vague rejection: {e}")),
            // A document that starts as XML but breaks must say where it breaks.
            Err(e) if bytes.trim_ascii_start().starts_with(b"<") && e.line.is_none() => {
                Err(format!("rejection without a position: {e}"))
            }
            Err(_) => Ok(()),
        };
    }
    let report = result.as_ref().map_err(|e| format!("rejected: {e}"))?;
    let s = report.summary();
    // Deliberate divergence: this suite declares tests="6" in attributes but lists no
    // <testcase>; testrelay counts the test cases it can see and deliver, so 0.
    if name.ends_with("no-cases-but-tests.xml") {
        return if s.total == 0 {
            Ok(())
        } else {
            Err(format!("{s:?}"))
        };
    }
    if let Some(v) = oracle {
        let stats = &v["stats"];
        // `runs*` count <testcase> elements, `tests*` unique names. Where both totals agree,
        // `tests_*` is the better oracle: it counts a disabled test as skipped and a testcase
        // with several results once.
        let p = if stats["tests"] == stats["runs"] {
            "tests"
        } else {
            "runs"
        };
        let key = |suffix: &str| format!("{p}{suffix}");
        let want = |k: &str| {
            stats[k]
                .as_u64()
                .unwrap_or_else(|| panic!("{name}: stats.{k} = {}", stats[k]))
        };
        let got = (s.total, s.passed + s.flaky, s.skipped, s.failed, s.errored);
        let expected = (
            want(&key("")),
            want(&key("_succ")),
            want(&key("_skip")),
            want(&key("_fail")),
            want(&key("_error")),
        );
        if got != expected {
            return Err(format!(
                "(total, passed, skipped, failed, errors) = {got:?}, source expects {expected:?}"
            ));
        }
        return Ok(());
    }
    match report.format {
        Format::Junit => {
            let text = String::from_utf8_lossy(bytes);
            let naive = naive_testcase_count(&text) as u64;
            if s.total != naive {
                return Err(format!(
                    "{} cases parsed, {naive} <testcase> elements",
                    s.total
                ));
            }
        }
        Format::Playwright => {
            let v: Value = serde_json::from_slice(bytes).unwrap();
            let mut statuses = Vec::new();
            walk_playwright(&v, &mut statuses);
            let count = |st: &str| statuses.iter().filter(|s| *s == st).count() as u64;
            let got = (s.total, s.passed, s.failed + s.errored, s.flaky, s.skipped);
            let expected = (
                statuses.len() as u64,
                count("expected"),
                count("unexpected"),
                count("flaky"),
                count("skipped"),
            );
            if got != expected {
                return Err(format!("counts {got:?}, raw JSON says {expected:?}"));
            }
        }
        Format::Ctrf => {
            let v: Value = serde_json::from_slice(bytes).unwrap();
            let n = v["results"]["tests"].as_array().unwrap().len() as u64;
            if s.total != n {
                return Err(format!("{} tests parsed, {n} in the document", s.total));
            }
        }
        Format::Github => return Err("the corpus holds no GitHub events".into()),
    }
    Ok(())
}

fn walk_playwright(v: &Value, out: &mut Vec<String>) {
    for suite in v["suites"].as_array().into_iter().flatten() {
        for spec in suite["specs"].as_array().into_iter().flatten() {
            for test in spec["tests"].as_array().into_iter().flatten() {
                out.push(test["status"].as_str().unwrap().to_string());
            }
        }
        walk_playwright(suite, out);
    }
}

/// The CTRF spec's own conformance documents: testrelay must accept every valid one, and
/// reject the invalid ones that would make a run wrong (see the policy in `parse/ctrf.rs`).
/// The invalid ones it deliberately tolerates are listed here, so that the policy is explicit.
#[test]
fn ctrf_conformance_documents() {
    const TOLERATED: &[&str] = &[
        // Older CTRF reporters omit these, and they change nothing testrelay reads.
        "reportFormat",
        "specVersion",
        "summary",
        "unknown property",
        "tool property",
        // Parts testrelay does not read.
        "reportId",
        "runId",
        "timestamp",
        "generatedBy",
        "extra",
        "Attachment",
        "attachment",
        "Step",
        "Baseline",
        "Environment",
        "insights",
        "executionId",
        "legacy id",
        "testId",
        "attemptId",
        "RetryAttempt with attempt value",
        "negative attempt",
        "labels containing an object",
        "labels containing null",
        "labels containing invalid",
        "suite as string",
        "Results object missing required summary",
        "Unknown property",
        "Summary object missing",
        "parameters",
        "steps",
        "environment",
        "baseline",
        "MetricDelta",
    ];
    let dir = corpus_dir().join("ctrf/ctrf/tests");
    let mut docs = vec![dir.join("ctrf.test.json")];
    for e in std::fs::read_dir(dir.join("normative")).unwrap() {
        docs.push(e.unwrap().path());
    }
    let (mut accepted_valid, mut rejected_invalid, mut tolerated) = (0, 0, 0);
    let mut wrong = Vec::new();
    for doc in docs {
        let v: Value = serde_json::from_slice(&std::fs::read(&doc).unwrap()).unwrap();
        for case in v["tests"].as_array().unwrap() {
            let desc = case["description"].as_str().unwrap();
            let valid = case["valid"].as_bool().unwrap();
            let data = match case["dataPath"].as_str() {
                Some(rel) => std::fs::read(doc.parent().unwrap().join(rel)).unwrap(),
                None => serde_json::to_vec(&case["data"]).unwrap(),
            };
            let result = parse::parse(&data, Some(Format::Ctrf));
            match (valid, &result) {
                (true, Ok(_)) => accepted_valid += 1,
                (false, Err(_)) => rejected_invalid += 1,
                (false, Ok(_)) if TOLERATED.iter().any(|t| desc.contains(t)) => tolerated += 1,
                (true, Err(e)) => wrong.push(format!("valid {desc:?} rejected: {e}")),
                (false, Ok(_)) => wrong.push(format!("invalid {desc:?} accepted")),
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    assert!(
        accepted_valid >= 10 && rejected_invalid >= 40,
        "{accepted_valid} {rejected_invalid} {tolerated}"
    );
}
