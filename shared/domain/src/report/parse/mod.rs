//! Report parsers: JUnit XML (all common dialects), CTRF JSON and Playwright JSON, into the
//! canonical [`Report`](crate::report::model::Report).
//!
//! Policy: a report is either parsed completely or rejected with a [`ReportError`] that names
//! what is wrong and where (line and column for XML and JSON). Nothing is guessed silently:
//! an XML document with a DOCTYPE is refused outright (no entity is ever expanded, so XXE and
//! "billion laughs" cannot happen), and unknown entity references are errors.
//!
//! No parser recurses on the input's depth without a cap, and every one charges what it
//! keeps to a [`limits::Budget`]: see [`limits`] for what a report may cost.

mod ctrf;
mod json;
mod junit;
pub mod limits;
mod playwright;
mod text;

use crate::report::model::{Format, Report};
pub use limits::Limits;
use std::fmt;

/// Why a report was rejected. `Display` gives the message users see in problem+json `detail`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReportError {
    pub format: Option<Format>,
    pub message: String,
    /// 1-based line and column of the problem, when the parser knows it.
    pub line: Option<u64>,
    pub column: Option<u64>,
    /// The report is readable but over a size limit (413), not malformed (400).
    pub too_large: bool,
}

impl ReportError {
    fn new(format: Option<Format>, message: impl Into<String>) -> Self {
        ReportError {
            format,
            message: message.into(),
            line: None,
            column: None,
            too_large: false,
        }
    }

    fn exceeded(format: Format, e: limits::Exceeded) -> Self {
        ReportError {
            too_large: true,
            ..Self::new(Some(format), e.to_string())
        }
    }

    fn at(mut self, input: &[u8], offset: u64) -> Self {
        let (line, column) = text::line_col(input, offset as usize);
        self.line = Some(line);
        self.column = Some(column);
        self
    }

    fn at_line(mut self, line: usize, column: usize) -> Self {
        self.line = Some(line as u64);
        self.column = Some(column as u64);
        self
    }
}

impl fmt::Display for ReportError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(format) = self.format {
            write!(f, "{} report: ", format.as_str())?;
        }
        f.write_str(&self.message)?;
        if let (Some(line), Some(column)) = (self.line, self.column) {
            write!(f, " (line {line}, column {column})")?;
        }
        Ok(())
    }
}

impl std::error::Error for ReportError {}

/// A value from a request, short enough to quote in an error message.
pub fn shown(s: &str) -> String {
    text::capped(s, 64)
}

/// Guesses the format from the first meaningful bytes and, for JSON, the top-level keys.
pub fn detect(input: &[u8]) -> Result<Format, ReportError> {
    let body = text::strip_bom(input);
    let first = body.iter().find(|b| !b.is_ascii_whitespace());
    match first {
        None => Err(ReportError::new(None, "the report is empty")),
        Some(b'<') => Ok(Format::Junit),
        Some(b'{') => detect_json(body),
        Some(_) => Err(ReportError::new(
            None,
            "not a recognised report: expected JUnit XML (starting with '<') or a CTRF / Playwright JSON object (starting with '{')",
        )),
    }
}

/// The top-level keys of a JSON object, read without keeping them: only whether the keys
/// that tell the formats apart are there, and the first few for the error message.
#[derive(Default)]
struct TopKeys {
    results: bool,
    suites: bool,
    config: bool,
    first: Vec<String>,
}

impl<'de> serde::de::Visitor<'de> for TopKeys {
    type Value = TopKeys;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(mut self, mut map: A) -> Result<Self, A::Error> {
        while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
            match key.as_ref() {
                "results" => self.results = true,
                "suites" => self.suites = true,
                "config" => self.config = true,
                _ => {}
            }
            if self.first.len() < 8 {
                let mut k = String::new();
                text::push_capped(&mut k, &key, 64);
                self.first.push(k);
            }
            map.next_value::<serde::de::IgnoredAny>()?;
        }
        Ok(self)
    }
}

fn detect_json(body: &[u8]) -> Result<Format, ReportError> {
    use serde::Deserializer;
    let mut de = serde_json::Deserializer::from_slice(body);
    let keys = de
        .deserialize_map(TopKeys::default())
        .and_then(|k| de.end().map(|()| k))
        .map_err(|e| json_error(None, &e))?;
    if keys.results {
        Ok(Format::Ctrf)
    } else if keys.suites || keys.config {
        Ok(Format::Playwright)
    } else {
        Err(ReportError::new(
            None,
            format!(
                "JSON report of unknown shape: expected a CTRF object with \"results\" or a Playwright report with \"suites\", found the keys [{}]",
                keys.first.join(", ")
            ),
        ))
    }
}

/// A parsed report and the heap bytes its model was charged (see [`limits`]).
#[derive(Debug)]
pub struct Parsed {
    pub report: Report,
    pub heap_bytes: usize,
}

/// Parses `input` as `format`, or detects the format first when `format` is `None`, within
/// the default [`Limits`].
pub fn parse(input: &[u8], format: Option<Format>) -> Result<Report, ReportError> {
    parse_with(input, format, &Limits::default()).map(|p| p.report)
}

/// Parses `input` within `limits`; the [`Parsed::heap_bytes`] tell the caller how much of
/// the memory budget is left for storing the run.
pub fn parse_with(
    input: &[u8],
    format: Option<Format>,
    limits: &Limits,
) -> Result<Parsed, ReportError> {
    let format = match format {
        Some(f) => f,
        None => detect(input)?,
    };
    let body = text::strip_bom(input);
    let mut budget = limits::Budget::new(input.len(), limits);
    let report = match format {
        Format::Junit => junit::parse(body, &mut budget),
        Format::Ctrf => ctrf::parse(body, &mut budget),
        Format::Playwright => playwright::parse(body, &mut budget),
        Format::Github => Err(ReportError::new(
            Some(Format::Github),
            "GitHub events are accepted on /v1/hooks/<source>, not as reports".to_string(),
        )),
    }?;
    Ok(Parsed {
        report,
        heap_bytes: budget.used(),
    })
}

fn json_error(format: Option<Format>, e: &serde_json::Error) -> ReportError {
    let message = match e.classify() {
        serde_json::error::Category::Eof => "the JSON ends too early".to_string(),
        _ => strip_serde_position(&e.to_string()),
    };
    let err = ReportError::new(format, message);
    if e.line() > 0 {
        err.at_line(e.line(), e.column())
    } else {
        err
    }
}

/// serde_json appends " at line L column C"; we report the position in our own fields.
fn strip_serde_position(msg: &str) -> String {
    match msg.rfind(" at line ") {
        Some(i) => msg[..i].to_string(),
        None => msg.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detects_by_shape() {
        assert_eq!(
            detect(b"\xEF\xBB\xBF  <testsuites/>").unwrap(),
            Format::Junit
        );
        assert_eq!(
            detect(br#"{"results":{"tool":{"name":"x"}}}"#).unwrap(),
            Format::Ctrf
        );
        assert_eq!(
            detect(br#"{"config":{},"suites":[]}"#).unwrap(),
            Format::Playwright
        );
        assert!(detect(b"   ").unwrap_err().message.contains("empty"));
        assert!(
            detect(b"PASS ok")
                .unwrap_err()
                .message
                .contains("not a recognised")
        );
        let err = detect(b"{\"a\":\n  [1,}").unwrap_err();
        assert_eq!(err.line, Some(2), "{err}");
    }

    #[test]
    fn deep_json_is_refused_with_its_position_not_a_stack_overflow() {
        // Complete documents, so that only the depth is wrong.
        let deep = |prefix: &str, suffix: &str| {
            format!(
                "{prefix}{}{}{suffix}",
                "[".repeat(100_000),
                "]".repeat(100_000)
            )
        };
        // A deep value testrelay reads hits serde_json's recursion limit...
        let labels = deep(
            "{\"results\":{\"tests\":[{\"name\":\"a\",\"status\":\"passed\",\"duration\":1,\"labels\":{\"l\":",
            "}}]}}",
        );
        let e = parse(labels.as_bytes(), None).unwrap_err();
        assert!(e.message.contains("recursion limit"), "{e}");
        assert!(e.line.is_some() && !e.too_large, "{e}");
        // ...and one it ignores is read past without recursing at all.
        for (input, format) in [
            (
                deep("{\"suites\":[{\"title\":\"f\",\"x\":", "}]}"),
                Some(Format::Playwright),
            ),
            (deep("{\"results\":{\"tests\":[],\"extra\":", "}}"), None),
        ] {
            assert!(parse(input.as_bytes(), format).is_ok());
        }
        // Cut short, it is an early end, found without recursing.
        let e = parse(format!("{{\"x\":{}", "[".repeat(100_000)).as_bytes(), None).unwrap_err();
        assert!(e.message.contains("ends too early"), "{e}");
        let mut describes = String::from("{\"suites\":[{\"title\":\"f\",\"suites\":[");
        describes.push_str(&"{\"title\":\"d\",\"suites\":[".repeat(40));
        describes.push_str(&"]}".repeat(41));
        describes.push_str("]}");
        let e = parse(describes.as_bytes(), None).unwrap_err();
        assert!(
            e.message
                .contains("describe blocks nested more than 32 deep"),
            "{e}"
        );
    }

    #[test]
    fn a_describe_path_is_built_once_and_shared_by_its_cases() {
        let title = "t".repeat(5000);
        let specs = r#"{"title":"s","tests":[{"status":"expected"}]}"#;
        let doc = format!(
            r#"{{"suites":[{{"title":"f.spec.ts","suites":[{{"title":"{title}","specs":[{specs},{specs}]}}]}}]}}"#
        );
        let r = parse(doc.as_bytes(), None).unwrap();
        let cases = &r.suites[0].cases;
        let (a, b) = (
            cases[0].classname.as_ref().unwrap(),
            cases[1].classname.as_ref().unwrap(),
        );
        assert!(std::sync::Arc::ptr_eq(a, b));
        assert!(a.len() <= limits::NAME_CAP + 3 && a.ends_with('…'));
    }

    #[test]
    fn json_keys_repeated_to_read_a_part_twice_are_refused() {
        let e = parse(br#"{"results":{"tests":[]},"results":{"tests":[]}}"#, None).unwrap_err();
        assert!(e.message.contains("duplicate field `results`"), "{e}");
        let e = parse(br#"{"suites":[],"suites":[]}"#, None).unwrap_err();
        assert!(e.message.contains("duplicate field `suites`"), "{e}");
    }
}
