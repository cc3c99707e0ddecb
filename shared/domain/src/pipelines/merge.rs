//! A pipeline's merged result: its shards' reports as one, the latest attempt winning.
//!
//! Tests are the same test across shards and attempts when environment, suite, classname and
//! name are equal. A test in a later attempt replaces its earlier result; one that failed and
//! then passed in a later attempt is FLAKY (it needed a re-run), with the re-runs counted in
//! its `retries`. Suites of the same name are one suite; when the parts ran in several
//! environments (matrix jobs), each environment's suites are kept apart, named
//! `<suite> · <environment>`.

use crate::report::model::{Format, Report, Status, Suite, TestCase, TestRun};
use std::collections::HashMap;

/// `runs` in attempt order (earliest first): one report.
pub fn merge<'a>(runs: impl IntoIterator<Item = &'a TestRun>) -> Report {
    let runs: Vec<&TestRun> = runs.into_iter().collect();
    let environments: std::collections::BTreeSet<Option<&str>> =
        runs.iter().map(|r| r.meta.environment.as_deref()).collect();
    let apart = environments.len() > 1;
    let mut suites: Vec<Suite> = Vec::new();
    let mut suite_at: HashMap<String, usize> = HashMap::new();
    // (suite as merged, classname, name) -> (suite index, case index)
    let mut case_at: HashMap<(String, Option<String>, String), (usize, usize)> = HashMap::new();
    let mut format = None;
    let mut duration: f64 = 0.0;
    for run in runs {
        format.get_or_insert(run.report.format);
        duration = duration.max(run.report.duration_ms.unwrap_or(0.0));
        for suite in &run.report.suites {
            let name = match (apart, run.meta.environment.as_deref()) {
                (true, Some(env)) => format!("{} · {env}", suite.name),
                _ => suite.name.clone(),
            };
            let si = *suite_at.entry(name.clone()).or_insert_with(|| {
                suites.push(Suite {
                    name: name.clone(),
                    file: suite.file.clone(),
                    duration_ms: None,
                    properties: suite.properties.clone(),
                    cases: Vec::new(),
                });
                suites.len() - 1
            });
            for case in &suite.cases {
                let key = (
                    name.clone(),
                    case.classname.as_deref().map(str::to_string),
                    case.name.clone(),
                );
                match case_at.get(&key) {
                    Some(&(s, c)) => {
                        let earlier = &suites[s].cases[c];
                        let replaced = rerun(earlier, case);
                        suites[s].cases[c] = replaced;
                    }
                    None => {
                        suites[si].cases.push(case.clone());
                        case_at.insert(key, (si, suites[si].cases.len() - 1));
                    }
                }
            }
        }
    }
    Report {
        format: format.unwrap_or(Format::Junit),
        tool: None,
        duration_ms: (duration > 0.0).then_some(duration),
        suites,
    }
}

/// A test run again in a later attempt: the later result, flaky when it passed after an
/// earlier failure.
fn rerun(earlier: &TestCase, later: &TestCase) -> TestCase {
    let mut case = later.clone();
    let failed_before = earlier.status.is_failure() || earlier.status == Status::Flaky;
    if failed_before && matches!(later.status, Status::Passed | Status::Flaky) {
        case.status = Status::Flaky;
        case.retries = earlier.retries + later.retries + 1;
        if case.message.is_none() {
            case.message = earlier.message.clone();
        }
    }
    case
}
