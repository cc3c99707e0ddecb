//! The JUnit parser's tests: dialects, limits, and errors that say what and where.
use crate::report::model::{Format, Report, Status};
use crate::report::parse::limits::{Limits, MAX_ATTRIBUTES, MAX_DEPTH, NAME_CAP};
use crate::report::parse::{ReportError, parse_with};

fn parse(xml: &[u8]) -> Result<Report, ReportError> {
    crate::report::parse::parse(xml, Some(Format::Junit))
}

#[test]
fn nesting_past_the_cap_is_refused_with_its_line() {
    let mut xml = String::from("<testsuites>\n");
    for _ in 0..=MAX_DEPTH {
        xml.push_str("<testsuite name=\"s\">\n");
    }
    let e = parse(xml.as_bytes()).unwrap_err();
    assert!(e.message.contains("nested more than 32 deep"), "{e}");
    assert_eq!(e.line, Some(MAX_DEPTH as u64 + 2), "{e}");
    assert!(!e.too_large);
    // At the cap it still parses.
    let mut ok = String::new();
    for _ in 0..MAX_DEPTH {
        ok.push_str("<testsuite name=\"s\">");
    }
    ok.push_str("<testcase name=\"t\"/>");
    ok.push_str(&"</testsuite>".repeat(MAX_DEPTH));
    let r = parse(ok.as_bytes()).unwrap();
    assert_eq!(r.summary().total, 1);
}

#[test]
fn names_are_cut_and_joined_names_cannot_multiply() {
    let long = "n".repeat(6000);
    let xml = format!(
        "<testsuite name=\"{long}\"><testsuite name=\"{long}\"><testcase name=\"{long}\" classname=\"{long}\"/></testsuite></testsuite>"
    );
    let r = parse(xml.as_bytes()).unwrap();
    for s in &r.suites {
        assert!(s.name.len() <= NAME_CAP + 3, "{}", s.name.len());
        assert!(s.name.ends_with('…'));
    }
    let case = &r.suites[1].cases[0];
    assert!(case.name.len() <= NAME_CAP + 3);
    assert!(case.classname.as_deref().unwrap().len() <= NAME_CAP + 3);
}

#[test]
fn a_class_name_is_shared_by_consecutive_cases() {
    let r = parse(br#"<testsuite><testcase name="a" classname="k.C"/><testcase name="b" classname="k.C"/></testsuite>"#).unwrap();
    let (a, b) = (&r.suites[0].cases[0], &r.suites[0].cases[1]);
    assert!(std::sync::Arc::ptr_eq(
        a.classname.as_ref().unwrap(),
        b.classname.as_ref().unwrap()
    ));
}

#[test]
fn too_many_attributes_are_refused() {
    let attrs: String = (0..=MAX_ATTRIBUTES)
        .map(|i| format!(" a{i}=\"x\""))
        .collect();
    let xml = format!("<testsuite>\n<testcase name=\"t\"{attrs}/></testsuite>");
    let e = parse(xml.as_bytes()).unwrap_err();
    assert!(e.message.contains("more than 64 attributes"), "{e}");
    assert_eq!(e.line, Some(2));
}

#[test]
fn case_cap_and_memory_budget_answer_too_large() {
    let xml = format!(
        "<testsuite>{}</testsuite>",
        "<testcase name=\"t\"/>".repeat(11)
    );
    let e = parse_with(xml.as_bytes(), None, &Limits { max_cases: 10 }).unwrap_err();
    assert!(
        e.too_large && e.message.contains("more than 10 test cases"),
        "{e}"
    );
    // Tiny cases cost far more in memory than on the wire: the budget stops them.
    let xml = format!("<testsuite>{}</testsuite>", "<testcase/>".repeat(200_000));
    let e = parse(xml.as_bytes()).unwrap_err();
    assert!(e.too_large && e.message.contains("once parsed"), "{e}");
    assert!(e.line.is_some());
}

#[test]
fn reads_a_single_testsuite_root_with_all_outcomes() {
    let xml = br#"<?xml version="1.0"?>
<testsuite name="unit" time="1,5">
  <testcase name="ok" classname="a.B" time="0.25" file="a/b.py" line="12"/>
  <testcase name="bad" classname="a.B"><failure message="expected 1" type="AssertionError"><![CDATA[trace <here>]]></failure></testcase>
  <testcase name="boom"><error>NullPointer&#10;at x</error></testcase>
  <testcase name="later"><skipped message="not today"/></testcase>
  <testcase name="odd" time="N/A"><system-out>lots</system-out></testcase>
</testsuite>"#;
    let r = parse(xml).unwrap();
    let cases: Vec<_> = r.cases().collect();
    assert_eq!(cases.len(), 5);
    assert_eq!(r.suites[0].duration_ms, Some(1500.0));
    assert_eq!(cases[0].duration_ms, Some(250.0));
    assert_eq!(cases[0].file.as_deref(), Some("a/b.py"));
    assert_eq!(cases[0].line, Some(12));
    assert_eq!(cases[1].status, Status::Failed);
    assert_eq!(cases[1].message.as_deref(), Some("expected 1"));
    assert_eq!(cases[1].trace.as_deref(), Some("trace <here>"));
    assert_eq!(cases[2].status, Status::Error);
    assert_eq!(cases[2].message.as_deref(), Some("NullPointer"));
    assert_eq!(cases[2].trace.as_deref(), Some("NullPointer\nat x"));
    assert_eq!(cases[3].status, Status::Skipped);
    assert_eq!(cases[3].message.as_deref(), Some("not today"));
    assert_eq!(cases[4].duration_ms, None);
    let s = r.summary();
    assert_eq!(
        (s.total, s.passed, s.failed, s.errored, s.skipped),
        (5, 2, 1, 1, 1)
    );
}

#[test]
fn flattens_nested_suites_and_reads_properties() {
    let xml = br#"<testsuites><testsuite name="outer">
  <testcase name="a"><properties><property name="test_id" value="C12"/><property name="note">multi
line</property></properties></testcase>
  <testsuite name="inner"><testcase name="b"/></testsuite>
</testsuite></testsuites>"#;
    let r = parse(xml).unwrap();
    let names: Vec<_> = r.suites.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["outer", "outer / inner"]);
    let a = &r.suites[0].cases[0];
    assert_eq!(a.property("test_id"), Some("C12"));
    assert_eq!(a.property("note"), Some("multi\nline"));
}

#[test]
fn surefire_flaky_and_rerun_failures() {
    let xml = br#"<testsuite name="s">
  <testcase name="flaky"><flakyFailure message="first try"><stackTrace>at x</stackTrace></flakyFailure></testcase>
  <testcase name="stubborn"><failure message="no"/><rerunFailure message="no"/><rerunFailure message="no"/></testcase>
</testsuite>"#;
    let r = parse(xml).unwrap();
    let cases: Vec<_> = r.cases().collect();
    assert_eq!(cases[0].status, Status::Flaky);
    assert_eq!(cases[0].retries, 1);
    assert_eq!(cases[0].message.as_deref(), Some("first try"));
    assert_eq!(cases[1].status, Status::Failed);
    assert_eq!(cases[1].retries, 2);
}

#[test]
fn bom_and_huge_system_out() {
    let mut xml = b"\xEF\xBB\xBF<testsuite name=\"s\"><system-out>".to_vec();
    xml.extend(std::iter::repeat_n(b'x', 20 << 20));
    xml.extend_from_slice(b"</system-out><testcase name=\"t\"/></testsuite>");
    let r = crate::report::parse::parse(&xml, None).unwrap();
    assert_eq!(r.summary().total, 1);
}

#[test]
fn refuses_doctype_xxe_and_billion_laughs() {
    let xxe = br#"<?xml version="1.0"?>
<!DOCTYPE foo [ <!ENTITY xxe SYSTEM "file:///etc/passwd"> ]>
<testsuite name="&xxe;"/>"#;
    let e = parse(xxe).unwrap_err();
    assert!(e.message.contains("DOCTYPE"), "{e}");
    assert_eq!(e.line, Some(2));
    let lol = br#"<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;">]><testsuite name="&lol2;"/>"#;
    assert!(parse(lol).unwrap_err().message.contains("DOCTYPE"));
    // Without a DOCTYPE, an entity reference is simply undefined.
    let e =
        parse(b"<testsuite>\n<testcase name=\"a\"><failure>&xxe;</failure></testcase></testsuite>")
            .unwrap_err();
    assert!(e.message.contains("undefined entity &xxe;"), "{e}");
    assert_eq!(e.line, Some(2));
}

#[test]
fn broken_documents_say_what_and_where() {
    let e = parse(b"<testsuite name=\"s\">\n  <testcase name=\"a\">\n").unwrap_err();
    assert!(e.message.contains("<testcase> (opened on line 2)"), "{e}");
    let e = parse(b"<testsuite>\n<testcase name=\"a\"></testsuite>").unwrap_err();
    assert!(e.message.contains("malformed XML"), "{e}");
    assert_eq!(e.line, Some(2), "{e}");
    let e = parse(b"<html><body/></html>").unwrap_err();
    assert!(e.message.contains("found <html>"), "{e}");
    let e = parse(b"<testsuite/><testsuite/>").unwrap_err();
    assert!(e.message.contains("second root"), "{e}");
}
