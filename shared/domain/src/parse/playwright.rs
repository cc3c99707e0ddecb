//! Playwright's JSON reporter output (`--reporter=json`).
//!
//! Each (spec, project) pair is one test case: the same spec run in Chromium and Firefox is
//! two results. Playwright's own verdict (`expected`, `unexpected`, `flaky`, `skipped`) decides
//! the status; the attempts after the first count as retries. Describe blocks become the
//! case's `classname` (joined with " › ", as Playwright prints them); each top-level file
//! suite becomes a suite.

use super::{ReportError, json_error};
use crate::model::{Format, Property, Report, Status, Suite, TestCase};
use serde::Deserialize;

#[derive(Deserialize)]
struct Document {
    suites: Vec<PwSuite>,
    stats: Option<Stats>,
}

#[derive(Deserialize)]
struct Stats {
    duration: Option<f64>,
}

#[derive(Deserialize)]
struct PwSuite {
    title: String,
    file: Option<String>,
    #[serde(default)]
    specs: Vec<Spec>,
    #[serde(default)]
    suites: Vec<PwSuite>,
}

#[derive(Deserialize)]
struct Spec {
    title: String,
    file: Option<String>,
    line: Option<u32>,
    #[serde(default)]
    tests: Vec<PwTest>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PwTest {
    project_name: Option<String>,
    status: PwStatus,
    #[serde(default)]
    results: Vec<PwResult>,
}

#[derive(Deserialize, Clone, Copy, PartialEq)]
#[serde(rename_all = "lowercase")]
enum PwStatus {
    Expected,
    Unexpected,
    Flaky,
    Skipped,
}

#[derive(Deserialize)]
struct PwResult {
    status: Option<String>,
    duration: Option<f64>,
    error: Option<PwError>,
}

#[derive(Deserialize)]
struct PwError {
    message: Option<String>,
    stack: Option<String>,
}

pub fn parse(input: &[u8]) -> Result<Report, ReportError> {
    let doc: Document =
        serde_json::from_slice(input).map_err(|e| json_error(Some(Format::Playwright), &e))?;
    let mut suites = Vec::with_capacity(doc.suites.len());
    for top in &doc.suites {
        let mut cases = Vec::new();
        collect(top, &mut Vec::new(), &mut cases);
        suites.push(Suite {
            name: top.title.clone(),
            file: top.file.clone(),
            duration_ms: None,
            properties: Vec::new(),
            cases,
        });
    }
    Ok(Report {
        format: Format::Playwright,
        tool: Some("playwright".into()),
        duration_ms: doc.stats.and_then(|s| s.duration),
        suites,
    })
}

fn collect<'a>(suite: &'a PwSuite, path: &mut Vec<&'a str>, out: &mut Vec<TestCase>) {
    for spec in &suite.specs {
        for test in &spec.tests {
            out.push(to_case(spec, test, path));
        }
    }
    for child in &suite.suites {
        path.push(&child.title);
        collect(child, path, out);
        path.pop();
    }
}

fn to_case(spec: &Spec, test: &PwTest, path: &[&str]) -> TestCase {
    let last = test.results.last();
    let status = match test.status {
        PwStatus::Expected if all_skipped(&test.results) => Status::Skipped,
        PwStatus::Expected => Status::Passed,
        PwStatus::Flaky => Status::Flaky,
        PwStatus::Skipped => Status::Skipped,
        PwStatus::Unexpected => match last.and_then(|r| r.status.as_deref()) {
            Some("timedOut") | Some("interrupted") => Status::Error,
            _ => Status::Failed,
        },
    };
    let mut case = TestCase::new(spec.title.clone(), status);
    if !path.is_empty() {
        case.classname = Some(path.join(" › "));
    }
    case.file = spec.file.clone();
    case.line = spec.line;
    case.duration_ms = last.and_then(|r| r.duration);
    case.retries = test.results.len().saturating_sub(1) as u32;
    let error = test.results.iter().rev().find_map(|r| r.error.as_ref());
    if let Some(e) = error {
        case.message = e.message.as_deref().map(strip_ansi);
        case.trace = e.stack.as_deref().map(strip_ansi);
    }
    if let Some(project) = &test.project_name
        && !project.is_empty()
    {
        case.properties.push(Property {
            name: "project".into(),
            value: project.clone(),
        });
    }
    case
}

fn all_skipped(results: &[PwResult]) -> bool {
    !results.is_empty()
        && results
            .iter()
            .all(|r| r.status.as_deref() == Some("skipped"))
}

/// Playwright colours its messages with ANSI escapes; they are noise outside a terminal.
fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' && chars.peek() == Some(&'[') {
            chars.next();
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn strips_ansi_colours() {
        assert_eq!(
            super::strip_ansi("\u{1b}[31mexpected\u{1b}[39m 1"),
            "expected 1"
        );
    }
}
