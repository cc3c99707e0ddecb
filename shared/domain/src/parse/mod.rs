//! Report parsers: JUnit XML (all common dialects), CTRF JSON and Playwright JSON, into the
//! canonical [`Report`](crate::model::Report).
//!
//! Policy: a report is either parsed completely or rejected with a [`ReportError`] that names
//! what is wrong and where (line and column for XML and JSON). Nothing is guessed silently:
//! an XML document with a DOCTYPE is refused outright (no entity is ever expanded, so XXE and
//! "billion laughs" cannot happen), and unknown entity references are errors.

mod ctrf;
mod junit;
mod playwright;
mod text;

use crate::model::{Format, Report};
use std::fmt;

/// Why a report was rejected. `Display` gives the message users see in problem+json `detail`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReportError {
    pub format: Option<Format>,
    pub message: String,
    /// 1-based line and column of the problem, when the parser knows it.
    pub line: Option<u64>,
    pub column: Option<u64>,
}

impl ReportError {
    fn new(format: Option<Format>, message: impl Into<String>) -> Self {
        ReportError {
            format,
            message: message.into(),
            line: None,
            column: None,
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

fn detect_json(body: &[u8]) -> Result<Format, ReportError> {
    let keys: std::collections::BTreeMap<String, serde::de::IgnoredAny> =
        serde_json::from_slice(body).map_err(|e| json_error(None, &e))?;
    if keys.contains_key("results") {
        Ok(Format::Ctrf)
    } else if keys.contains_key("suites") || keys.contains_key("config") {
        Ok(Format::Playwright)
    } else {
        let found: Vec<&str> = keys.keys().take(8).map(String::as_str).collect();
        Err(ReportError::new(
            None,
            format!(
                "JSON report of unknown shape: expected a CTRF object with \"results\" or a Playwright report with \"suites\", found the keys [{}]",
                found.join(", ")
            ),
        ))
    }
}

/// Parses `input` as `format`, or detects the format first when `format` is `None`.
pub fn parse(input: &[u8], format: Option<Format>) -> Result<Report, ReportError> {
    let format = match format {
        Some(f) => f,
        None => detect(input)?,
    };
    let body = text::strip_bom(input);
    match format {
        Format::Junit => junit::parse(body),
        Format::Ctrf => ctrf::parse(body),
        Format::Playwright => playwright::parse(body),
        Format::Github => Err(ReportError::new(
            Some(Format::Github),
            "GitHub events are accepted on /v1/hooks/<source>, not as reports".to_string(),
        )),
    }
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
}
