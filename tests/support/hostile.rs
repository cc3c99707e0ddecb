//! The hostile corpus: reports an API-key holder (or a signed provider) could send to hurt
//! testrelay, generated here rather than checked in. The same generator feeds the tests
//! (`tests/it/hostile.rs` through the ingest Lambda handler, `shared/cli/tests/hostile.rs`
//! through a real `testrelay serve` process) and the memory bench
//! (`shared/domain/benches/parse.rs`), which include this file by path. Only std and flate2.

use std::fmt::Write as _;
use std::io::Write as _;

/// What testrelay must answer to a shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    /// 202: an honest (if odd) report gets through.
    Accepted,
    /// This 4xx problem+json, with nothing stored or enqueued.
    Refused(u16),
}

pub struct Shape {
    pub name: &'static str,
    /// The `?format=` to send, when detection is not what is being tested.
    pub format: Option<&'static str>,
    /// The body on the wire.
    pub body: Vec<u8>,
    pub gzip: bool,
    pub expect: Expect,
}

impl Shape {
    fn new(name: &'static str, body: Vec<u8>, expect: Expect) -> Self {
        Shape {
            name,
            format: None,
            body,
            gzip: false,
            expect,
        }
    }

    fn gzipped(mut self) -> Self {
        self.body = gzip(&self.body);
        self.gzip = true;
        self
    }

    fn format(mut self, f: &'static str) -> Self {
        self.format = Some(f);
        self
    }
}

pub fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(data).expect("in memory");
    e.finish().expect("in memory")
}

/// An honest JUnit report of `tests` cases (5 % failing with a trace), as CI tools write it.
pub fn honest_junit(tests: usize) -> Vec<u8> {
    let mut s = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<testsuites>\n");
    for suite in 0..tests.div_ceil(100) {
        let _ = writeln!(
            s,
            "<testsuite name=\"com.example.suite{suite}.ServiceTest\" time=\"1.5\">"
        );
        for case in 0..100.min(tests - suite * 100) {
            let _ = write!(
                s,
                "<testcase name=\"handles request variant {case} correctly\" classname=\"com.example.suite{suite}.ServiceTest\" time=\"0.012\""
            );
            if case % 20 == 7 {
                s.push_str("><failure message=\"expected 200 but was 500\">at ServiceTest.java:42\nat Runner.java:7</failure></testcase>\n");
            } else {
                s.push_str("/>\n");
            }
        }
        s.push_str("</testsuite>\n");
    }
    s.push_str("</testsuites>\n");
    s.into_bytes()
}

/// Every hostile shape, at the sizes the issue describes, with what testrelay must answer.
pub fn shapes() -> Vec<Shape> {
    use Expect::{Accepted, Refused};
    let mut out = Vec::new();

    // Deep nesting: 100,000 levels in XML and JSON.
    let mut xml = String::from("<testsuites>");
    xml.push_str(&"<testsuite name=\"s\">".repeat(100_000));
    out.push(
        Shape::new(
            "junit: 100,000 nested <testsuite>",
            xml.into_bytes(),
            Refused(400),
        )
        .gzipped(),
    );
    let mut xml = String::from("<testsuite><testcase name=\"t\">");
    xml.push_str(&"<a>".repeat(100_000));
    xml.push_str(&"</a>".repeat(100_000));
    xml.push_str("</testcase></testsuite>");
    out.push(
        Shape::new(
            "junit: 100,000 nested elements in a case",
            xml.into_bytes(),
            Accepted,
        )
        .gzipped(),
    );
    let mut json = String::from("{\"results\":{\"tests\":");
    json.push_str(&"[".repeat(100_000));
    out.push(Shape::new("ctrf: 100,000 nested [", json.into_bytes(), Refused(400)).gzipped());
    let json = "{\"suites\":[".to_string() + &"{\"title\":\"d\",\"suites\":[".repeat(100_000);
    out.push(
        Shape::new(
            "playwright: 100,000 nested describes",
            json.into_bytes(),
            Refused(400),
        )
        .gzipped(),
    );
    let json = "[".repeat(100_000);
    out.push(
        Shape::new(
            "json: 100,000 [ at the top",
            json.into_bytes(),
            Refused(400),
        )
        .gzipped(),
    );

    // Quadratic names: long names concatenated at every level of nesting.
    let name = "n".repeat(6 * 1024);
    let mut xml = String::from("<testsuites>");
    for _ in 0..1_000 {
        let _ = write!(xml, "<testsuite name=\"{name}\"><testcase name=\"t\"/>");
    }
    out.push(
        Shape::new(
            "junit: 1,000 nested suites, 6 KB names",
            xml.into_bytes(),
            Refused(400),
        )
        .gzipped(),
    );
    let mut xml = String::from("<testsuites>");
    for _ in 0..200 {
        for _ in 0..32 {
            let _ = write!(xml, "<testsuite name=\"{name}\"><testcase name=\"t\"/>");
        }
        xml.push_str(&"</testsuite>".repeat(32));
    }
    xml.push_str("</testsuites>");
    out.push(
        Shape::new(
            "junit: 200 x 32 nested suites, 6 KB names",
            xml.into_bytes(),
            Accepted,
        )
        .gzipped(),
    );
    let tests: Vec<String> = (0..100_000)
        .map(|i| format!("{{\"name\":\"t{i}\",\"status\":\"passed\",\"duration\":1,\"suite\":[\"suite {i}\"]}}"))
        .collect();
    let json = format!("{{\"results\":{{\"tests\":[{}]}}}}", tests.join(","));
    // Each test its own suite: no longer quadratic, but 5x its size once parsed.
    out.push(
        Shape::new(
            "ctrf: 100,000 distinct suites",
            json.into_bytes(),
            Refused(413),
        )
        .gzipped(),
    );

    // Found by the report_shapes fuzz target: empty child suites whose joined names outgrew
    // their charge (a name built by doubling kept slack the budget did not see).
    let mut xml = format!("<testsuites><testsuite name=\"{}\">", "\u{1}".repeat(70));
    xml.push_str(&"<testsuite name=\"\"></testsuite>".repeat(250_000));
    xml.push_str("</testsuite></testsuites>");
    out.push(
        Shape::new(
            "junit: 250,000 empty child suites of a long name",
            xml.into_bytes(),
            Refused(413),
        )
        .gzipped(),
    );

    // Long titles times many specs / tests.
    let title = "t".repeat(3 << 20);
    let specs: Vec<String> = (0..50_000)
        .map(|i| format!("{{\"title\":\"s{i}\",\"tests\":[{{\"status\":\"expected\"}}]}}"))
        .collect();
    let json = format!(
        "{{\"suites\":[{{\"title\":\"f\",\"suites\":[{{\"title\":\"{title}\",\"specs\":[{}]}}]}}]}}",
        specs.join(",")
    );
    out.push(
        Shape::new(
            "playwright: 3 MB describe title over 50,000 specs",
            json.into_bytes(),
            Refused(413),
        )
        .gzipped(),
    );
    let mut xml = format!("<testsuite name=\"{title}\">");
    xml.push_str(&"<testcase name=\"t\" classname=\"c\"/>".repeat(50_000));
    xml.push_str("</testsuite>");
    out.push(
        Shape::new(
            "junit: 3 MB suite name over 50,000 cases",
            xml.into_bytes(),
            Accepted,
        )
        .gzipped(),
    );
    let long = "x".repeat(100_000);
    let tests: Vec<String> = (0..100)
        .map(|i| format!("{{\"name\":\"{long}{i}\",\"status\":\"failed\",\"duration\":1,\"message\":\"{long}\",\"trace\":\"{long}\",\"suite\":\"{long}\"}}"))
        .collect();
    let json = format!("{{\"results\":{{\"tests\":[{}]}}}}", tests.join(","));
    out.push(
        Shape::new(
            "ctrf: 100 tests with 100 KB names and texts",
            json.into_bytes(),
            Accepted,
        )
        .gzipped(),
    );

    // Sheer count: a million empty cases.
    let mut xml = String::from("<testsuite>");
    xml.push_str(&"<testcase/>".repeat(1_000_000));
    xml.push_str("</testsuite>");
    out.push(
        Shape::new(
            "junit: 1,000,000 empty testcases",
            xml.into_bytes(),
            Refused(413),
        )
        .gzipped(),
    );
    let tests = "{\"name\":\"t\",\"status\":\"passed\",\"duration\":0},".repeat(1_000_000);
    let json = format!(
        "{{\"results\":{{\"tests\":[{}]}}}}",
        tests.trim_end_matches(',')
    );
    out.push(Shape::new("ctrf: 1,000,000 tests", json.into_bytes(), Refused(413)).gzipped());

    // One element with a huge attribute count.
    let mut xml = String::from("<testsuite><testcase name=\"t\"");
    for i in 0..200_000 {
        let _ = write!(xml, " a{i}=\"\"");
    }
    xml.push_str("/></testsuite>");
    out.push(
        Shape::new(
            "junit: 200,000 attributes on one element",
            xml.into_bytes(),
            Refused(400),
        )
        .gzipped(),
    );

    // A flood of properties, on a suite and on a case.
    let props = "<property name=\"p\"/>".repeat(1_000_000);
    let xml =
        format!("<testsuite><properties>{props}</properties><testcase name=\"t\"/></testsuite>");
    out.push(
        Shape::new(
            "junit: 1,000,000 properties on a suite",
            xml.into_bytes(),
            Refused(413),
        )
        .gzipped(),
    );
    let xml = format!(
        "<testsuite><testcase name=\"t\"><properties>{props}</properties></testcase></testsuite>"
    );
    out.push(
        Shape::new(
            "junit: 1,000,000 properties on a case",
            xml.into_bytes(),
            Refused(413),
        )
        .gzipped(),
    );

    // Huge CDATA in every case.
    let cdata = "x".repeat(100_000);
    let mut xml = String::from("<testsuite>");
    for i in 0..300 {
        let _ = write!(
            xml,
            "<testcase name=\"t{i}\"><failure><![CDATA[{cdata}]]></failure><system-out><![CDATA[{cdata}]]></system-out></testcase>"
        );
    }
    xml.push_str("</testsuite>");
    out.push(
        Shape::new(
            "junit: 100 KB CDATA twice in each of 300 cases",
            xml.into_bytes(),
            Accepted,
        )
        .gzipped(),
    );

    // Huge numbers and durations.
    let digits = "9".repeat(5_000);
    let xml = format!(
        "<testsuite time=\"{digits}\"><testcase name=\"a\" time=\"1e400\" line=\"{digits}\"/><testcase name=\"b\" time=\"-{digits}\"/><testcase name=\"c\" time=\"NaN\"/></testsuite>"
    );
    out.push(Shape::new(
        "junit: huge times and lines",
        xml.into_bytes(),
        Accepted,
    ));
    let json = "{\"results\":{\"tests\":[{\"name\":\"a\",\"status\":\"passed\",\"duration\":1e308},{\"name\":\"b\",\"status\":\"passed\",\"duration\":1.7976931348623157e308}]}}";
    out.push(Shape::new(
        "ctrf: durations near f64::MAX",
        json.as_bytes().to_vec(),
        Accepted,
    ));
    let json = format!(
        "{{\"results\":{{\"tests\":[{{\"name\":\"a\",\"status\":\"passed\",\"duration\":1{digits}}}]}}}}"
    );
    out.push(Shape::new(
        "ctrf: a 5,000-digit duration",
        json.into_bytes(),
        Refused(400),
    ));
    let json = "{\"results\":{\"tests\":[{\"name\":\"a\",\"status\":\"passed\",\"duration\":1,\"retries\":99999999999}]}}";
    out.push(Shape::new(
        "ctrf: retries past u32",
        json.as_bytes().to_vec(),
        Refused(400),
    ));

    // NUL and invalid UTF-8 in names.
    out.push(Shape::new(
        "junit: NUL character reference in a name",
        b"<testsuite><testcase name=\"a&#0;b\"/></testsuite>".to_vec(),
        Refused(400),
    ));
    out.push(Shape::new(
        "junit: raw NUL byte in a name",
        b"<testsuite><testcase name=\"a\0b\"/></testsuite>".to_vec(),
        Accepted,
    ));
    out.push(Shape::new(
        "junit: invalid UTF-8 in a name",
        b"<testsuite><testcase name=\"a\xff\xfeb\"/></testsuite>".to_vec(),
        Refused(400),
    ));
    out.push(Shape::new(
        "ctrf: NUL escape in a name",
        br#"{"results":{"tests":[{"name":"a\u0000b","status":"passed","duration":1}]}}"#.to_vec(),
        Accepted,
    ));
    out.push(
        Shape::new(
            "ctrf: invalid UTF-8 in a name",
            b"{\"results\":{\"tests\":[{\"name\":\"a\xff\",\"status\":\"passed\",\"duration\":1}]}}"
                .to_vec(),
            Refused(400),
        )
        .format("ctrf"),
    );

    // A gzip bomb: 1 GiB of zeros in about 1 MB.
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    let zeros = vec![0u8; 1 << 20];
    for _ in 0..1024 {
        e.write_all(&zeros).expect("in memory");
    }
    let bomb = Shape {
        name: "gzip bomb: 1 GiB of zeros",
        format: None,
        body: e.finish().expect("in memory"),
        gzip: true,
        expect: Refused(413),
    };
    out.push(bomb);

    // And the honest big report that must always get through.
    out.push(
        Shape::new(
            "junit: honest 100,000 tests",
            honest_junit(100_000),
            Accepted,
        )
        .gzipped(),
    );
    out
}
