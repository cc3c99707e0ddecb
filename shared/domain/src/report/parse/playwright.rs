//! Playwright's JSON reporter output (`--reporter=json`).
//!
//! Each (spec, project) pair is one test case: the same spec run in Chromium and Firefox is
//! two results. Playwright's own verdict (`expected`, `unexpected`, `flaky`, `skipped`) decides
//! the status; the attempts after the first count as retries. Describe blocks become the
//! case's `classname` (joined with " › ", as Playwright prints them): built once per describe
//! block and shared by its cases. Each top-level file suite becomes a suite.
//!
//! The document is read in one streaming pass (one spec at a time, see [`super::json`]);
//! describe blocks nest at most [`MAX_DEPTH`] deep. A describe block's title must come before
//! its specs to be part of their path, as Playwright writes it.

use super::ReportError;
use super::json::{Charges, duplicate, read};
use super::limits::{Budget, MAX_DEPTH, MESSAGE_CAP, NAME_CAP, TRACE_CAP};
use super::text::{cap_owned, capped};
use crate::report::model::{Format, Property, Report, Status, Suite, TestCase};
use serde::Deserialize;
use serde::de::{DeserializeSeed, Error as _, IgnoredAny, MapAccess, SeqAccess, Visitor};
use std::fmt;
use std::sync::Arc;

#[derive(Deserialize)]
struct Stats {
    duration: Option<f64>,
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

pub fn parse(input: &[u8], budget: &mut Budget) -> Result<Report, ReportError> {
    let mut charges = Charges::new(budget);
    let result = read(input, DocSeed(&mut charges));
    let (suites, duration_ms) = charges.finish(Format::Playwright, result)?;
    Ok(Report {
        format: Format::Playwright,
        tool: Some("playwright".into()),
        duration_ms,
        suites,
    })
}

struct DocSeed<'s, 'b>(&'s mut Charges<'b>);

impl<'de> DeserializeSeed<'de> for DocSeed<'_, '_> {
    type Value = (Vec<Suite>, Option<f64>);
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for DocSeed<'_, '_> {
    type Value = (Vec<Suite>, Option<f64>);
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a Playwright JSON report")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let (mut suites, mut duration) = (None, None);
        while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
            match key.as_ref() {
                "suites" if suites.is_some() => return Err(duplicate("suites")),
                "suites" => suites = Some(map.next_value_seed(FilesSeed(&mut *self.0))?),
                "stats" => duration = map.next_value::<Option<Stats>>()?.and_then(|s| s.duration),
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        let suites = suites.ok_or_else(|| A::Error::missing_field("suites"))?;
        Ok((suites, duration))
    }
}

/// The top-level (file) suites: each becomes a [`Suite`].
struct FilesSeed<'s, 'b>(&'s mut Charges<'b>);

impl<'de> DeserializeSeed<'de> for FilesSeed<'_, '_> {
    type Value = Vec<Suite>;
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Vec<Suite>, D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for FilesSeed<'_, '_> {
    type Value = Vec<Suite>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an array of suites")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<Suite>, A::Error> {
        let mut out = Vec::new();
        loop {
            let mut cases = Vec::new();
            let seed = SuiteSeed {
                charges: &mut *self.0,
                cases: &mut cases,
                parent: None,
                depth: 0,
            };
            let Some((title, file)) = seq.next_element_seed(seed)? else {
                break;
            };
            let suite = Suite {
                name: title,
                file,
                duration_ms: None,
                properties: Vec::new(),
                cases,
            };
            self.0.suite(&mut out, suite)?;
        }
        Ok(out)
    }
}

/// One suite object: a file at depth 0, a describe block below. Its specs' cases go to
/// `cases` (the file's), with the describe path as their class name.
struct SuiteSeed<'s, 'b> {
    charges: &'s mut Charges<'b>,
    cases: &'s mut Vec<TestCase>,
    /// The enclosing describe blocks' path (none for a file or a first-level describe).
    parent: Option<Arc<str>>,
    depth: usize,
}

impl<'de> DeserializeSeed<'de> for SuiteSeed<'_, '_> {
    /// The suite's title and file.
    type Value = (String, Option<String>);
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for SuiteSeed<'_, '_> {
    type Value = (String, Option<String>);
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a Playwright suite")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        if self.depth > MAX_DEPTH {
            return Err(A::Error::custom(format_args!(
                "describe blocks nested more than {MAX_DEPTH} deep"
            )));
        }
        let (mut title, mut file) = (None::<String>, None);
        // The path this suite's specs and children get: the parent's for a file.
        let mut path = self.parent.clone();
        while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
            match key.as_ref() {
                "title" if title.is_some() => return Err(duplicate("title")),
                "title" => {
                    let t = capped(&map.next_value::<std::borrow::Cow<'de, str>>()?, NAME_CAP);
                    if self.depth > 0 {
                        path = Some(join(self.parent.as_deref(), &t));
                        self.charges.bytes(t.len() + 16)?;
                    }
                    title = Some(t);
                }
                "file" => {
                    file = map
                        .next_value::<Option<String>>()?
                        .map(|f| cap_owned(f, NAME_CAP))
                }
                "specs" => map.next_value_seed(SpecsSeed {
                    charges: &mut *self.charges,
                    cases: &mut *self.cases,
                    path: path.clone(),
                })?,
                "suites" => map.next_value_seed(ChildrenSeed {
                    charges: &mut *self.charges,
                    cases: &mut *self.cases,
                    parent: path.clone(),
                    depth: self.depth + 1,
                })?,
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        let title = title.ok_or_else(|| A::Error::missing_field("title"))?;
        Ok((title, file))
    }
}

/// `parent › title`, cut to [`NAME_CAP`]: built once per describe block.
fn join(parent: Option<&str>, title: &str) -> Arc<str> {
    match parent {
        Some(parent) => super::limits::join_name(parent, " › ", title).into(),
        None => title.into(),
    }
}

struct ChildrenSeed<'s, 'b> {
    charges: &'s mut Charges<'b>,
    cases: &'s mut Vec<TestCase>,
    parent: Option<Arc<str>>,
    depth: usize,
}

impl<'de> DeserializeSeed<'de> for ChildrenSeed<'_, '_> {
    type Value = ();
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for ChildrenSeed<'_, '_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an array of suites")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        loop {
            let seed = SuiteSeed {
                charges: &mut *self.charges,
                cases: &mut *self.cases,
                parent: self.parent.clone(),
                depth: self.depth,
            };
            if seq.next_element_seed(seed)?.is_none() {
                return Ok(());
            }
        }
    }
}

struct SpecsSeed<'s, 'b> {
    charges: &'s mut Charges<'b>,
    cases: &'s mut Vec<TestCase>,
    path: Option<Arc<str>>,
}

impl<'de> DeserializeSeed<'de> for SpecsSeed<'_, '_> {
    type Value = ();
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for SpecsSeed<'_, '_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an array of specs")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while let Some(spec) = seq.next_element::<Spec>()? {
            for test in &spec.tests {
                let case = to_case(&spec, test, self.path.as_ref());
                self.charges.case(self.cases, case)?;
            }
        }
        Ok(())
    }
}

fn to_case(spec: &Spec, test: &PwTest, path: Option<&Arc<str>>) -> TestCase {
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
    let mut case = TestCase::new(capped(&spec.title, NAME_CAP), status);
    case.classname = path.cloned();
    case.file = spec.file.as_deref().map(|f| capped(f, NAME_CAP));
    case.line = spec.line;
    case.duration_ms = last.and_then(|r| r.duration);
    case.retries = test.results.len().saturating_sub(1) as u32;
    let error = test.results.iter().rev().find_map(|r| r.error.as_ref());
    if let Some(e) = error {
        case.message = e
            .message
            .as_deref()
            .map(|m| cap_owned(strip_ansi(m), MESSAGE_CAP));
        case.trace = e
            .stack
            .as_deref()
            .map(|t| cap_owned(strip_ansi(t), TRACE_CAP));
    }
    if let Some(project) = &test.project_name
        && !project.is_empty()
    {
        case.properties.push(Property {
            name: "project".into(),
            value: capped(project, NAME_CAP),
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
