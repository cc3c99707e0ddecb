//! CTRF JSON (Common Test Report Format).
//!
//! Policy: testrelay reads what real CTRF producers write, old and new. It rejects what would
//! make the run wrong: a missing or mistyped field that testrelay reads (test `name`, `status`,
//! `duration`, suite, retries, ...), an unknown `status`, a `reportFormat` other than "CTRF".
//! It accepts what the strict schema forbids but older reporters emit: no `reportFormat` /
//! `specVersion`, no `summary`, unknown extra properties, `suite` as a plain string.
//! Counts come from the tests themselves, never from `summary`.

use super::{ReportError, json_error};
use crate::model::{Format, Property, Report, Status, Suite, TestCase};
use serde::Deserialize;
use std::collections::BTreeMap;

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Document {
    report_format: Option<String>,
    #[allow(dead_code)]
    spec_version: Option<String>,
    results: Results,
}

#[derive(Deserialize)]
struct Results {
    tool: Option<Tool>,
    summary: Option<SummaryBlock>,
    tests: Vec<Test>,
}

#[derive(Deserialize)]
struct Tool {
    name: String,
    #[allow(dead_code)]
    version: Option<String>,
}

/// Only type-checked: the counts are recomputed from the tests.
#[derive(Deserialize)]
#[allow(dead_code)]
struct SummaryBlock {
    tests: Option<u64>,
    passed: Option<u64>,
    failed: Option<u64>,
    skipped: Option<u64>,
    pending: Option<u64>,
    other: Option<u64>,
    flaky: Option<u64>,
    suites: Option<u64>,
    start: Option<u64>,
    stop: Option<u64>,
    duration: Option<u64>,
}

#[derive(Deserialize, Clone, Copy)]
#[serde(rename_all = "lowercase")]
enum CtrfStatus {
    Passed,
    Failed,
    Skipped,
    Pending,
    Other,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum SuiteField {
    Path(Vec<String>),
    Name(String),
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Test {
    name: String,
    status: CtrfStatus,
    duration: f64,
    #[allow(dead_code)]
    start: Option<u64>,
    #[allow(dead_code)]
    stop: Option<u64>,
    suite: Option<SuiteField>,
    message: Option<String>,
    trace: Option<String>,
    line: Option<u32>,
    file_path: Option<String>,
    retries: Option<u32>,
    flaky: Option<bool>,
    test_id: Option<String>,
    tags: Option<Vec<String>>,
    labels: Option<BTreeMap<String, Label>>,
    #[serde(rename = "type")]
    kind: Option<String>,
    retry_attempts: Option<Vec<RetryAttempt>>,
    stdout: Option<Vec<String>>,
    stderr: Option<Vec<String>>,
}

#[derive(Deserialize)]
#[allow(dead_code)]
struct RetryAttempt {
    attempt: u32,
    status: CtrfStatus,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Label {
    Scalar(Scalar),
    List(Vec<Scalar>),
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Scalar {
    Text(String),
    Number(serde_json::Number),
    Flag(bool),
}

impl Scalar {
    fn render(&self) -> String {
        match self {
            Scalar::Text(s) => s.clone(),
            Scalar::Number(n) => n.to_string(),
            Scalar::Flag(b) => b.to_string(),
        }
    }
}

pub fn parse(input: &[u8]) -> Result<Report, ReportError> {
    let doc: Document =
        serde_json::from_slice(input).map_err(|e| json_error(Some(Format::Ctrf), &e))?;
    let invalid = |msg: String| ReportError::new(Some(Format::Ctrf), msg);
    if let Some(rf) = &doc.report_format
        && rf != "CTRF"
    {
        return Err(invalid(format!(
            "reportFormat must be \"CTRF\", found {rf:?}"
        )));
    }
    if let Some(tool) = &doc.results.tool
        && tool.name.is_empty()
    {
        return Err(invalid("results.tool.name must not be empty".into()));
    }
    let _ = &doc.results.summary;

    // Suites keep the order in which they first appear.
    let mut suites: Vec<Suite> = Vec::new();
    for (i, t) in doc.results.tests.into_iter().enumerate() {
        if t.name.is_empty() {
            return Err(invalid(format!(
                "results.tests[{i}].name must not be empty"
            )));
        }
        if !t.duration.is_finite() || t.duration < 0.0 {
            return Err(invalid(format!(
                "results.tests[{i}].duration must be a non-negative number of milliseconds"
            )));
        }
        if let Some(labels) = &t.labels
            && let Some((k, _)) = labels
                .iter()
                .find(|(_, v)| matches!(v, Label::List(l) if l.is_empty()))
        {
            return Err(invalid(format!(
                "results.tests[{i}].labels.{k} must not be an empty list"
            )));
        }
        let suite_name = match &t.suite {
            Some(SuiteField::Path(p)) if p.is_empty() => {
                return Err(invalid(format!(
                    "results.tests[{i}].suite must name at least one suite"
                )));
            }
            Some(SuiteField::Path(p)) => p.join(" / "),
            Some(SuiteField::Name(n)) => n.clone(),
            None => t.file_path.clone().unwrap_or_default(),
        };
        let case = to_case(t);
        match suites.iter_mut().find(|s| s.name == suite_name) {
            Some(s) => s.cases.push(case),
            None => suites.push(Suite {
                name: suite_name,
                file: None,
                duration_ms: None,
                properties: Vec::new(),
                cases: vec![case],
            }),
        }
    }
    let duration_ms = doc.results.summary.as_ref().and_then(|s| {
        s.duration
            .or_else(|| Some(s.stop?.saturating_sub(s.start?)))
            .map(|d| d as f64)
    });
    Ok(Report {
        format: Format::Ctrf,
        tool: doc.results.tool.map(|t| t.name),
        duration_ms,
        suites,
    })
}

fn to_case(t: Test) -> TestCase {
    let status = match t.status {
        CtrfStatus::Passed if t.flaky == Some(true) => Status::Flaky,
        CtrfStatus::Passed => Status::Passed,
        CtrfStatus::Failed => Status::Failed,
        // "pending" and "other" never reached a verdict: they count as not run.
        CtrfStatus::Skipped | CtrfStatus::Pending | CtrfStatus::Other => Status::Skipped,
    };
    let mut case = TestCase::new(t.name, status);
    case.duration_ms = Some(t.duration);
    case.message = t.message.filter(|m| !m.is_empty());
    case.trace = t.trace.filter(|m| !m.is_empty());
    case.file = t.file_path;
    case.line = t.line;
    case.retries = t
        .retries
        .or_else(|| t.retry_attempts.as_ref().map(|a| a.len() as u32))
        .unwrap_or(0);
    let mut props = Vec::new();
    if let Some(id) = t.test_id {
        props.push(Property {
            name: "test_id".into(),
            value: id,
        });
    }
    if let Some(kind) = t.kind {
        props.push(Property {
            name: "type".into(),
            value: kind,
        });
    }
    for tag in t.tags.unwrap_or_default() {
        props.push(Property {
            name: "tag".into(),
            value: tag,
        });
    }
    for (name, label) in t.labels.unwrap_or_default() {
        let value = match label {
            Label::Scalar(s) => s.render(),
            Label::List(l) => l.iter().map(Scalar::render).collect::<Vec<_>>().join(","),
        };
        props.push(Property { name, value });
    }
    let _ = (t.stdout, t.stderr);
    case.properties = props;
    case
}
