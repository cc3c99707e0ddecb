//! JUnit XML in the dialects CI tools actually write: a `<testsuites>` or `<testsuite>` root,
//! nested suites, missing or odd `time` values, Surefire's `flakyFailure` / `rerunFailure`,
//! testcase properties, CDATA, a BOM and huge `system-out` blocks (skipped without copying).
//!
//! The reader is a streaming pull parser over the input slice: text is borrowed, not copied,
//! except where the model keeps it (names, messages and traces, all capped; see
//! [`super::limits`]). Only nested `<testsuite>`s recurse, at most [`MAX_DEPTH`] deep; every
//! other element is skipped or read iteratively. A class name shared by consecutive cases is
//! kept once.

use super::ReportError;
use super::limits::{
    Budget, MAX_ATTRIBUTES, MAX_DEPTH, MESSAGE_CAP, NAME_CAP, TRACE_CAP, VALUE_CAP,
};
use super::text::{cap_owned, capped, push_capped, seconds_to_ms};
use crate::report::model::{Format, Property, Report, Status, Suite, TestCase};
use quick_xml::XmlVersion;
use quick_xml::events::attributes::Attribute;
use quick_xml::events::{BytesRef, BytesStart, Event};
use quick_xml::reader::Reader;
use std::sync::Arc;

pub fn parse(input: &[u8], budget: &mut Budget) -> Result<Report, ReportError> {
    let mut p = Parser {
        input,
        reader: Reader::from_reader(input),
        budget,
        classname: None,
    };
    p.document()
}

struct Parser<'a, 'b> {
    input: &'a [u8],
    reader: Reader<&'a [u8]>,
    budget: &'b mut Budget,
    /// The last class name read: the next case with the same one shares it.
    classname: Option<Arc<str>>,
}

/// What a `<failure>`, `<error>`, `<skipped>` or Surefire rerun element said.
struct Outcome {
    message: Option<String>,
    kind: Option<String>,
    text: String,
}

impl<'a> Parser<'a, '_> {
    fn error(&self, message: impl Into<String>, offset: u64) -> ReportError {
        ReportError::new(Some(Format::Junit), message).at(self.input, offset)
    }

    fn over(&self, e: super::limits::Exceeded, offset: u64) -> ReportError {
        let (line, column) = super::text::line_col(self.input, offset as usize);
        ReportError::exceeded(Format::Junit, e).at_line(line as usize, column as usize)
    }

    fn push_case(
        &mut self,
        cases: &mut Vec<TestCase>,
        case: TestCase,
        pos: u64,
    ) -> Result<(), ReportError> {
        self.budget.case(cases, case).map_err(|e| self.over(e, pos))
    }

    fn push_suite(
        &mut self,
        out: &mut Vec<Suite>,
        suite: Suite,
        pos: u64,
    ) -> Result<(), ReportError> {
        self.budget.suite(out, suite).map_err(|e| self.over(e, pos))
    }

    /// The element's attributes, refused past [`MAX_ATTRIBUTES`] (quick-xml's duplicate check
    /// is quadratic in their number).
    fn attributes<'s>(
        &self,
        start: &'s BytesStart<'a>,
        pos: u64,
    ) -> Result<Vec<Attribute<'s>>, ReportError> {
        let mut out = Vec::new();
        for attr in start.attributes() {
            if out.len() == MAX_ATTRIBUTES {
                let tag = start.local_name().as_ref().to_string();
                return Err(self.error(
                    format!(
                        "<{}> has more than {MAX_ATTRIBUTES} attributes",
                        capped(&tag, 64)
                    ),
                    pos,
                ));
            }
            out.push(attr.map_err(|e| self.error(format!("malformed attribute: {e}"), pos))?);
        }
        Ok(out)
    }

    fn next(&mut self) -> Result<Event<'a>, ReportError> {
        match self.reader.read_event() {
            Ok(Event::DocType(_)) => Err(self.error(
                "DOCTYPE declarations are not accepted (testrelay never expands XML entities)",
                self.reader.buffer_position(),
            )),
            Ok(event) => Ok(event),
            Err(e) => Err(self.error(format!("malformed XML: {e}"), self.reader.error_position())),
        }
    }

    fn document(&mut self) -> Result<Report, ReportError> {
        let mut suites = Vec::new();
        let mut root_seen = false;
        loop {
            let pos = self.reader.buffer_position();
            match self.next()? {
                Event::Eof => break,
                Event::Decl(_) | Event::PI(_) | Event::Comment(_) => {}
                Event::Text(t) if t.xml10_content().trim().is_empty() => {}
                Event::Text(_) | Event::CData(_) | Event::GeneralRef(_) => {
                    return Err(self.error("text outside the root element", pos));
                }
                Event::End(_) => return Err(self.error("unexpected closing tag", pos)),
                Event::Start(e) | Event::Empty(e) if root_seen => {
                    let name = e.local_name().as_ref().to_string();
                    return Err(self.error(
                        format!("a second root element <{name}> after the first one"),
                        pos,
                    ));
                }
                ev @ (Event::Start(_) | Event::Empty(_)) => {
                    root_seen = true;
                    let empty = matches!(ev, Event::Empty(_));
                    let (Event::Start(e) | Event::Empty(e)) = ev else {
                        unreachable!()
                    };
                    match e.local_name().as_ref() {
                        "testsuites" => self.testsuites(&e, empty, pos, &mut suites)?,
                        "testsuite" => self.testsuite(&e, empty, pos, "", 1, &mut suites)?,
                        other => {
                            let other = other.to_string();
                            return Err(self.error(
                                format!(
                                    "expected <testsuites> or <testsuite> as the root element, found <{other}>"
                                ),
                                pos,
                            ));
                        }
                    }
                }
                Event::DocType(_) => unreachable!("refused in next()"),
            }
        }
        if !root_seen {
            return Err(ReportError::new(
                Some(Format::Junit),
                "no <testsuites> or <testsuite> element found",
            ));
        }
        Ok(Report {
            format: Format::Junit,
            tool: None,
            duration_ms: None,
            suites,
        })
    }

    fn testsuites(
        &mut self,
        start: &BytesStart<'a>,
        empty: bool,
        open_pos: u64,
        out: &mut Vec<Suite>,
    ) -> Result<(), ReportError> {
        let mut name = String::new();
        for attr in self.attributes(start, open_pos)? {
            if attr.key.local_name().as_ref() == "name" {
                name = self.name(&attr, open_pos)?;
            }
        }
        if empty {
            return Ok(());
        }
        // Test cases written straight under <testsuites> (a few tools do) get a suite of
        // their own so that they are counted, not dropped.
        let mut loose = Vec::new();
        loop {
            let pos = self.reader.buffer_position();
            match self.next()? {
                Event::End(_) => break,
                Event::Eof => return Err(self.unclosed("testsuites", open_pos)),
                ev @ (Event::Start(_) | Event::Empty(_)) => {
                    let empty = matches!(ev, Event::Empty(_));
                    let (Event::Start(e) | Event::Empty(e)) = ev else {
                        unreachable!()
                    };
                    match e.local_name().as_ref() {
                        "testsuite" => self.testsuite(&e, empty, pos, "", 1, out)?,
                        "testcase" => {
                            let case = self.testcase(&e, empty, pos)?;
                            self.push_case(&mut loose, case, pos)?;
                        }
                        _ if !empty => self.skip(&e)?,
                        _ => {}
                    }
                }
                _ => {}
            }
        }
        if !loose.is_empty() {
            let suite = Suite {
                name,
                file: None,
                duration_ms: None,
                properties: Vec::new(),
                cases: loose,
            };
            self.push_suite(out, suite, open_pos)?;
        }
        Ok(())
    }

    fn testsuite(
        &mut self,
        start: &BytesStart<'a>,
        empty: bool,
        open_pos: u64,
        parent: &str,
        depth: usize,
        out: &mut Vec<Suite>,
    ) -> Result<(), ReportError> {
        if depth > MAX_DEPTH {
            return Err(self.error(
                format!("<testsuite> elements nested more than {MAX_DEPTH} deep"),
                open_pos,
            ));
        }
        let mut suite = Suite {
            name: String::new(),
            file: None,
            duration_ms: None,
            properties: Vec::new(),
            cases: Vec::new(),
        };
        for attr in self.attributes(start, open_pos)? {
            match attr.key.local_name().as_ref() {
                "name" => suite.name = self.name(&attr, open_pos)?,
                "time" => suite.duration_ms = seconds_to_ms(&self.value(&attr, open_pos)?),
                "file" | "filepath" => suite.file = Some(self.name(&attr, open_pos)?),
                _ => {}
            }
        }
        if !parent.is_empty() {
            // Built once per suite and cut like any name, so deep nesting cannot multiply it.
            suite.name = super::limits::join_name(parent, " / ", &suite.name);
        }
        let index = out.len();
        self.push_suite(out, suite, open_pos)?;
        if empty {
            return Ok(());
        }
        loop {
            let pos = self.reader.buffer_position();
            match self.next()? {
                Event::End(_) => break,
                Event::Eof => return Err(self.unclosed("testsuite", open_pos)),
                ev @ (Event::Start(_) | Event::Empty(_)) => {
                    let empty = matches!(ev, Event::Empty(_));
                    let (Event::Start(e) | Event::Empty(e)) = ev else {
                        unreachable!()
                    };
                    match e.local_name().as_ref() {
                        "testcase" => {
                            let case = self.testcase(&e, empty, pos)?;
                            self.push_case(&mut out[index].cases, case, pos)?;
                        }
                        "testsuite" => {
                            let name = out[index].name.clone();
                            self.testsuite(&e, empty, pos, &name, depth + 1, out)?;
                        }
                        "properties" if !empty => {
                            // Charged as they are read.
                            out[index].properties = self.properties()?;
                        }
                        _ if !empty => self.skip(&e)?,
                        _ => {}
                    }
                }
                _ => {}
            }
        }
        Ok(())
    }

    fn testcase(
        &mut self,
        start: &BytesStart<'a>,
        empty: bool,
        open_pos: u64,
    ) -> Result<TestCase, ReportError> {
        let mut case = TestCase::new(String::new(), Status::Passed);
        // gtest, tst and others mark tests that never ran with an attribute instead of
        // a <skipped/> child.
        let mut marked_not_run = false;
        for attr in self.attributes(start, open_pos)? {
            match attr.key.local_name().as_ref() {
                "name" => case.name = self.name(&attr, open_pos)?,
                "classname" => {
                    let name = self.name(&attr, open_pos)?;
                    case.classname = Some(self.shared_classname(name, open_pos)?);
                }
                "time" => case.duration_ms = seconds_to_ms(&self.value(&attr, open_pos)?),
                "file" => case.file = Some(self.name(&attr, open_pos)?),
                "line" => case.line = self.value(&attr, open_pos)?.trim().parse().ok(),
                "status" | "result" => {
                    let v = self.value(&attr, open_pos)?.to_ascii_lowercase();
                    marked_not_run |= matches!(
                        v.as_str(),
                        "disabled" | "skipped" | "notrun" | "not_run" | "ignored" | "pending"
                    );
                }
                _ => {}
            }
        }
        if empty {
            if marked_not_run {
                case.status = Status::Skipped;
            }
            return Ok(case);
        }
        let (mut failed, mut errored, mut skipped) = (false, false, marked_not_run);
        let (mut flaky_runs, mut reruns) = (0u32, 0u32);
        loop {
            let pos = self.reader.buffer_position();
            match self.next()? {
                Event::End(_) => break,
                Event::Eof => return Err(self.unclosed("testcase", open_pos)),
                ev @ (Event::Start(_) | Event::Empty(_)) => {
                    let empty = matches!(ev, Event::Empty(_));
                    let (Event::Start(e) | Event::Empty(e)) = ev else {
                        unreachable!()
                    };
                    match e.local_name().as_ref() {
                        "failure" => {
                            failed = true;
                            let o = self.outcome(&e, empty, pos)?;
                            keep_first(&mut case, o);
                        }
                        "error" => {
                            errored = true;
                            let o = self.outcome(&e, empty, pos)?;
                            keep_first(&mut case, o);
                        }
                        "skipped" => {
                            skipped = true;
                            let o = self.outcome(&e, empty, pos)?;
                            if case.message.is_none() {
                                case.message = o.message.or_else(|| first_line(&o.text));
                            }
                        }
                        "flakyFailure" | "flakyError" => {
                            flaky_runs += 1;
                            let o = self.outcome(&e, empty, pos)?;
                            keep_first(&mut case, o);
                        }
                        "rerunFailure" | "rerunError" => {
                            reruns += 1;
                            if !empty {
                                self.skip(&e)?;
                            }
                        }
                        "properties" if !empty => {
                            let props = self.properties()?;
                            case.properties.extend(props);
                        }
                        "property" => {
                            let prop = self.property(&e, empty, pos)?;
                            case.properties.extend(prop);
                        }
                        _ if !empty => self.skip(&e)?,
                        _ => {}
                    }
                }
                _ => {}
            }
        }
        case.status = if errored {
            Status::Error
        } else if failed {
            Status::Failed
        } else if skipped {
            Status::Skipped
        } else if flaky_runs > 0 {
            Status::Flaky
        } else {
            Status::Passed
        };
        case.retries = flaky_runs + reruns;
        // Its properties were charged as they were read; pushing the case charges them.
        self.budget
            .refund(super::limits::props_len(&case.properties));
        Ok(case)
    }

    /// Reads a `<failure>`-like element: its `message` and `type` attributes and all the text
    /// inside it, including nested elements such as Surefire's `<stackTrace>`.
    fn outcome(
        &mut self,
        start: &BytesStart<'a>,
        empty: bool,
        open_pos: u64,
    ) -> Result<Outcome, ReportError> {
        let mut out = Outcome {
            message: None,
            kind: None,
            text: String::new(),
        };
        for attr in self.attributes(start, open_pos)? {
            match attr.key.local_name().as_ref() {
                "message" => {
                    let mut m = String::new();
                    push_capped(&mut m, self.value(&attr, open_pos)?.trim(), MESSAGE_CAP);
                    out.message = Some(m).filter(|m| !m.is_empty());
                }
                "type" => out.kind = Some(self.name(&attr, open_pos)?),
                _ => {}
            }
        }
        if !empty {
            let tag = start.local_name().as_ref().to_string();
            self.text_content(open_pos, &tag, &mut out.text, TRACE_CAP)?;
        }
        Ok(out)
    }

    /// Collects the text of the current element (and of elements nested in it) up to `cap`
    /// bytes, then consumes the rest of the element.
    fn text_content(
        &mut self,
        open_pos: u64,
        tag: &str,
        buf: &mut String,
        cap: usize,
    ) -> Result<(), ReportError> {
        let mut depth = 0usize;
        loop {
            let pos = self.reader.buffer_position();
            match self.next()? {
                Event::Text(t) => {
                    push_capped(buf, &t.xml10_content(), cap);
                }
                Event::CData(t) => {
                    push_capped(buf, &t.xml10_content(), cap);
                }
                Event::GeneralRef(r) => {
                    let c = self.entity(&r, pos)?;
                    let mut tmp = [0u8; 4];
                    push_capped(buf, c.encode_utf8(&mut tmp), cap);
                }
                Event::Start(_) => depth += 1,
                Event::End(_) if depth == 0 => return Ok(()),
                Event::End(_) => depth -= 1,
                Event::Eof => return Err(self.unclosed(tag, open_pos)),
                _ => {}
            }
        }
    }

    fn properties(&mut self) -> Result<Vec<Property>, ReportError> {
        let open_pos = self.reader.buffer_position();
        let mut props = Vec::new();
        loop {
            let pos = self.reader.buffer_position();
            match self.next()? {
                Event::End(_) => return Ok(props),
                Event::Eof => return Err(self.unclosed("properties", open_pos)),
                Event::Start(e) if e.local_name().as_ref() == "property" => {
                    props.extend(self.property(&e, false, pos)?)
                }
                Event::Empty(e) if e.local_name().as_ref() == "property" => {
                    props.extend(self.property(&e, true, pos)?)
                }
                Event::Start(e) => self.skip(&e)?,
                _ => {}
            }
        }
    }

    /// `<property name=".." value=".."/>` or `<property name="..">value</property>`.
    fn property(
        &mut self,
        start: &BytesStart<'a>,
        empty: bool,
        open_pos: u64,
    ) -> Result<Option<Property>, ReportError> {
        let (mut name, mut value) = (None, None);
        for attr in self.attributes(start, open_pos)? {
            match attr.key.local_name().as_ref() {
                "name" => name = Some(self.name(&attr, open_pos)?),
                "value" => value = Some(cap_owned(self.value(&attr, open_pos)?, VALUE_CAP)),
                _ => {}
            }
        }
        if !empty {
            let mut text = String::new();
            self.text_content(open_pos, "property", &mut text, VALUE_CAP)?;
            if value.is_none() {
                value = Some(text.trim().to_string());
            }
        }
        let Some(name) = name else {
            return Ok(None);
        };
        let value = value.unwrap_or_default();
        // Charged now, so that a flood of properties is stopped while it is read (twice the
        // struct: the vector holding them grows by doubling).
        self.budget
            .charge(2 * std::mem::size_of::<Property>() + name.capacity() + value.capacity())
            .map_err(|e| self.over(e, open_pos))?;
        Ok(Some(Property { name, value }))
    }

    fn skip(&mut self, start: &BytesStart<'a>) -> Result<(), ReportError> {
        let open_pos = self.reader.buffer_position();
        let name = start.name();
        match self.reader.read_to_end(name) {
            Ok(_) => Ok(()),
            Err(quick_xml::Error::IllFormed(_)) | Err(quick_xml::Error::Syntax(_)) => {
                let tag = name.as_ref().to_string();
                Err(self.unclosed(&tag, open_pos))
            }
            Err(e) => Err(self.error(format!("malformed XML: {e}"), self.reader.error_position())),
        }
    }

    /// A name-like attribute (suite, test, class, file, property name), cut to [`NAME_CAP`].
    fn name(&self, attr: &Attribute<'_>, pos: u64) -> Result<String, ReportError> {
        Ok(cap_owned(self.value(attr, pos)?, NAME_CAP))
    }

    /// The previous case's class name when it is the same, else a new shared one.
    fn shared_classname(&mut self, name: String, pos: u64) -> Result<Arc<str>, ReportError> {
        if let Some(last) = &self.classname
            && **last == *name
        {
            return Ok(last.clone());
        }
        self.budget
            .charge(name.len() + 2 * std::mem::size_of::<usize>())
            .map_err(|e| self.over(e, pos))?;
        let shared: Arc<str> = name.into();
        self.classname = Some(shared.clone());
        Ok(shared)
    }

    fn value(&self, attr: &Attribute<'_>, pos: u64) -> Result<String, ReportError> {
        attr.normalized_value(XmlVersion::Implicit1_0)
            .map(|v| v.into_owned())
            .map_err(|e| self.error(format!("bad attribute value: {e}"), pos))
    }

    fn entity(&self, r: &BytesRef<'a>, pos: u64) -> Result<char, ReportError> {
        if r.is_char_ref() {
            return match r.resolve_char_ref() {
                Ok(Some(c)) => Ok(c),
                _ => Err(self.error(format!("invalid character reference &{};", &**r), pos)),
            };
        }
        match &**r {
            "lt" => Ok('<'),
            "gt" => Ok('>'),
            "amp" => Ok('&'),
            "apos" => Ok('\''),
            "quot" => Ok('"'),
            other => Err(self.error(
                format!(
                    "undefined entity &{other}; (testrelay expands only the five XML entities)"
                ),
                pos,
            )),
        }
    }

    fn unclosed(&self, tag: &str, open_pos: u64) -> ReportError {
        let (line, _) = super::text::line_col(self.input, open_pos as usize);
        self.error(
            format!("the document ends before <{tag}> (opened on line {line}) is closed"),
            self.input.len() as u64,
        )
    }
}

/// The first failure of a test is the one worth showing; later ones are usually consequences.
fn keep_first(case: &mut TestCase, o: Outcome) {
    if case.message.is_none() && case.trace.is_none() {
        let text = o.text.trim();
        case.message = o
            .message
            .or_else(|| first_line(text))
            .or_else(|| o.kind.clone());
        if !text.is_empty() {
            case.trace = Some(text.to_string());
        }
    }
}

fn first_line(text: &str) -> Option<String> {
    let line = text.lines().map(str::trim).find(|l| !l.is_empty())?;
    let mut out = String::new();
    push_capped(&mut out, line, MESSAGE_CAP);
    Some(out)
}

#[cfg(test)]
mod tests;
