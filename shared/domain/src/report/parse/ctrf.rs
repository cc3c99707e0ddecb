//! CTRF JSON (Common Test Report Format).
//!
//! Policy: testrelay reads what real CTRF producers write, old and new. It rejects what would
//! make the run wrong: a missing or mistyped field that testrelay reads (test `name`, `status`,
//! `duration`, suite, retries, ...), an unknown `status`, a `reportFormat` other than "CTRF".
//! It accepts what the strict schema forbids but older reporters emit: no `reportFormat` /
//! `specVersion`, no `summary`, unknown extra properties, `suite` as a plain string.
//! Counts come from the tests themselves, never from `summary`.
//!
//! The document is read in one pass: each test becomes a case as soon as it is read, so no
//! copy of the whole `tests` array is ever held (see [`super::json`]).

use super::ReportError;
use super::json::{Charges, duplicate, read};
use super::limits::{Budget, MESSAGE_CAP, NAME_CAP, TRACE_CAP, VALUE_CAP};
use super::text::{cap_owned, capped};
use crate::report::model::{Format, Property, Report, Status, Suite, TestCase};
use serde::Deserialize;
use serde::de::{DeserializeSeed, Error as _, IgnoredAny, MapAccess, SeqAccess, Visitor};
use std::collections::{BTreeMap, HashMap};
use std::fmt;

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
    // Type-checked, not kept: testrelay stores no output.
    #[allow(dead_code)]
    stdout: Option<Lines>,
    #[allow(dead_code)]
    stderr: Option<Lines>,
}

/// An array of strings, checked and read past without a copy.
struct Lines;
/// One string of [`Lines`].
struct Line;

impl<'de> Visitor<'de> for Line {
    type Value = Line;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a string")
    }
    fn visit_str<E: serde::de::Error>(self, _: &str) -> Result<Line, E> {
        Ok(Line)
    }
}

impl<'de> Deserialize<'de> for Line {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_str(Line)
    }
}

impl<'de> Visitor<'de> for Lines {
    type Value = Lines;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an array of strings")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Lines, A::Error> {
        while seq.next_element::<Line>()?.is_some() {}
        Ok(Lines)
    }
}

impl<'de> Deserialize<'de> for Lines {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_seq(Lines)
    }
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

pub fn parse(input: &[u8], budget: &mut Budget) -> Result<Report, ReportError> {
    let mut charges = Charges::new(budget);
    let mut doc = Doc {
        report_format: None,
        tool: None,
        duration_ms: None,
        suites: Vec::new(),
        by_name: HashMap::new(),
        seen_results: false,
    };
    let result = read(input, DocSeed(&mut doc, &mut charges));
    charges.finish(Format::Ctrf, result)?;
    let invalid = |msg: String| ReportError::new(Some(Format::Ctrf), msg);
    if let Some(rf) = &doc.report_format
        && rf != "CTRF"
    {
        return Err(invalid(format!(
            "reportFormat must be \"CTRF\", found {:?}",
            capped(rf, 64)
        )));
    }
    if !doc.seen_results {
        return Err(invalid("missing field `results`".into()));
    }
    Ok(Report {
        format: Format::Ctrf,
        tool: doc.tool,
        duration_ms: doc.duration_ms,
        suites: doc.suites,
    })
}

/// What the pass has read so far.
struct Doc {
    report_format: Option<String>,
    tool: Option<String>,
    duration_ms: Option<f64>,
    /// Suites keep the order in which they first appear.
    suites: Vec<Suite>,
    by_name: HashMap<String, usize>,
    seen_results: bool,
}

struct DocSeed<'s, 'b>(&'s mut Doc, &'s mut Charges<'b>);

impl<'de> DeserializeSeed<'de> for DocSeed<'_, '_> {
    type Value = ();
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for DocSeed<'_, '_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a CTRF object")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
            match key.as_ref() {
                "reportFormat" => self.0.report_format = map.next_value()?,
                "results" if self.0.seen_results => return Err(duplicate("results")),
                "results" => {
                    self.0.seen_results = true;
                    map.next_value_seed(ResultsSeed(&mut *self.0, &mut *self.1))?;
                }
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(())
    }
}

struct ResultsSeed<'s, 'b>(&'s mut Doc, &'s mut Charges<'b>);

impl<'de> DeserializeSeed<'de> for ResultsSeed<'_, '_> {
    type Value = ();
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for ResultsSeed<'_, '_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("the CTRF results object")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let mut tests = false;
        while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
            match key.as_ref() {
                "tool" => {
                    if let Some(tool) = map.next_value::<Option<Tool>>()? {
                        if tool.name.is_empty() {
                            return Err(A::Error::custom("results.tool.name must not be empty"));
                        }
                        self.0.tool = Some(capped(&tool.name, NAME_CAP));
                    }
                }
                "summary" => {
                    let s: Option<SummaryBlock> = map.next_value()?;
                    self.0.duration_ms = s.and_then(|s| {
                        s.duration
                            .or_else(|| Some(s.stop?.saturating_sub(s.start?)))
                            .map(|d| d as f64)
                    });
                }
                "tests" if tests => return Err(duplicate("tests")),
                "tests" => {
                    tests = true;
                    map.next_value_seed(TestsSeed(&mut *self.0, &mut *self.1))?;
                }
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        if !tests {
            return Err(A::Error::missing_field("tests"));
        }
        Ok(())
    }
}

struct TestsSeed<'s, 'b>(&'s mut Doc, &'s mut Charges<'b>);

impl<'de> DeserializeSeed<'de> for TestsSeed<'_, '_> {
    type Value = ();
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for TestsSeed<'_, '_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an array of CTRF tests")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let (doc, charges) = (self.0, self.1);
        let mut i = 0usize;
        while let Some(t) = seq.next_element::<Test>()? {
            let suite_name = check(&t, i).map_err(A::Error::custom)?;
            let case = to_case(t);
            let at = match doc.by_name.get(&suite_name) {
                Some(&at) => at,
                None => {
                    let suite = Suite {
                        name: suite_name.clone(),
                        file: None,
                        duration_ms: None,
                        properties: Vec::new(),
                        cases: Vec::new(),
                    };
                    // The index keeps a second copy of the name, in a table at most half
                    // full after it grows.
                    charges.bytes(
                        suite_name.len() + 2 * (std::mem::size_of::<(String, usize)>() + 1),
                    )?;
                    doc.by_name.insert(suite_name, doc.suites.len());
                    charges.suite(&mut doc.suites, suite)?;
                    doc.suites.len() - 1
                }
            };
            charges.case(&mut doc.suites[at].cases, case)?;
            i += 1;
        }
        Ok(())
    }
}

/// Refuses what would make the run wrong; the test's suite name, cut to [`NAME_CAP`].
fn check(t: &Test, i: usize) -> Result<String, String> {
    if t.name.is_empty() {
        return Err(format!("results.tests[{i}].name must not be empty"));
    }
    if !t.duration.is_finite() || t.duration < 0.0 {
        return Err(format!(
            "results.tests[{i}].duration must be a non-negative number of milliseconds"
        ));
    }
    if let Some(labels) = &t.labels
        && let Some((k, _)) = labels
            .iter()
            .find(|(_, v)| matches!(v, Label::List(l) if l.is_empty()))
    {
        return Err(format!(
            "results.tests[{i}].labels.{} must not be an empty list",
            capped(k, 64)
        ));
    }
    Ok(match &t.suite {
        Some(SuiteField::Path(p)) if p.is_empty() => {
            return Err(format!(
                "results.tests[{i}].suite must name at least one suite"
            ));
        }
        Some(SuiteField::Path(p)) => p
            .iter()
            .skip(1)
            .fold(capped(&p[0], NAME_CAP), |name, part| {
                super::limits::join_name(&name, " / ", part)
            }),
        Some(SuiteField::Name(n)) => capped(n, NAME_CAP),
        None => t
            .file_path
            .as_deref()
            .map(|f| capped(f, NAME_CAP))
            .unwrap_or_default(),
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
    let mut case = TestCase::new(cap_owned(t.name, NAME_CAP), status);
    case.duration_ms = Some(t.duration);
    case.message = t
        .message
        .filter(|m| !m.is_empty())
        .map(|m| cap_owned(m, MESSAGE_CAP));
    case.trace = t
        .trace
        .filter(|m| !m.is_empty())
        .map(|m| cap_owned(m, TRACE_CAP));
    case.file = t.file_path.map(|f| cap_owned(f, NAME_CAP));
    case.line = t.line;
    case.retries = t
        .retries
        .or_else(|| t.retry_attempts.as_ref().map(|a| a.len() as u32))
        .unwrap_or(0);
    let mut props = Vec::new();
    let mut prop = |name: String, value: String| {
        props.push(Property {
            name: cap_owned(name, NAME_CAP),
            value: cap_owned(value, VALUE_CAP),
        })
    };
    if let Some(id) = t.test_id {
        prop("test_id".into(), id);
    }
    if let Some(kind) = t.kind {
        prop("type".into(), kind);
    }
    for tag in t.tags.unwrap_or_default() {
        prop("tag".into(), tag);
    }
    for (name, label) in t.labels.unwrap_or_default() {
        let value = match label {
            Label::Scalar(s) => s.render(),
            Label::List(l) => l.iter().map(Scalar::render).collect::<Vec<_>>().join(","),
        };
        prop(name, value);
    }
    case.properties = props;
    case
}
