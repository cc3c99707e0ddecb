//! Structure-aware: the fuzzer's bytes describe a report (suites, cases, texts) with
//! repetition and nesting counts, rendered as JUnit XML, CTRF or Playwright JSON up to
//! 8 MiB, so a few bytes of input reach the deep, wide and long documents that blow up
//! parsers. Every rendered report goes through the ingest path's memory-heavy part (parse
//! within the default limits, then the stored JSON within the budget left) under a counting
//! allocator, and the peak heap must stay within 4x the report plus 8 MB. Run it with
//! `-rss_limit_mb` and `-malloc_limit_mb` (README, Fuzzing) so that a blow-up the budget
//! misses is a crash too.

#![no_main]

use libfuzzer_sys::arbitrary::{self, Arbitrary};
use libfuzzer_sys::fuzz_target;
use std::fmt::Write;
use testrelay_domain::report::model::{Format, RunMeta, TestRun};

#[path = "../../../shared/domain/benches/support/counting.rs"]
mod counting;

/// Rendered documents stop growing here: large enough for every blow-up to show against
/// the budget, small enough for the fuzzer to run many.
const MAX_BYTES: usize = 8 << 20;

#[derive(Arbitrary, Debug)]
enum Fmt {
    Junit,
    Ctrf,
    Playwright,
}

#[derive(Arbitrary, Debug)]
enum Text {
    Short(String),
    /// `unit` repeated up to a million times.
    Long {
        unit: String,
        times: u32,
    },
    /// Raw bytes, unescaped: invalid UTF-8, NULs, markup.
    Raw(Vec<u8>),
}

#[derive(Arbitrary, Debug)]
enum Node {
    Suite {
        name: Text,
        children: Vec<Node>,
    },
    Case {
        name: Text,
        class: Text,
        status: u8,
        text: Text,
        time: Text,
    },
    /// The node, `times` times over (up to 65,535).
    Repeat {
        times: u16,
        node: Box<Node>,
    },
    /// The node inside `depth` suites (up to 65,535 deep).
    Nest {
        depth: u16,
        name: Text,
        node: Box<Node>,
    },
}

#[derive(Arbitrary, Debug)]
struct Doc {
    format: Fmt,
    nodes: Vec<Node>,
}

struct Out {
    s: Vec<u8>,
    /// Enclosing suite names (CTRF writes them into each test).
    path: Vec<String>,
}

impl Out {
    fn full(&self) -> bool {
        self.s.len() >= MAX_BYTES
    }
    fn push(&mut self, s: &str) {
        self.s.extend_from_slice(s.as_bytes());
    }
    fn text(&mut self, t: &Text, json: bool) {
        match t {
            Text::Short(s) => self.escaped(s, json),
            Text::Long { unit, .. } if unit.is_empty() => {}
            Text::Long { unit, times } => {
                for _ in 0..(*times % 1_000_001) {
                    if self.full() {
                        break;
                    }
                    self.escaped(unit, json);
                }
            }
            Text::Raw(b) => self.s.extend_from_slice(b),
        }
    }
    fn escaped(&mut self, s: &str, json: bool) {
        if json {
            let quoted = serde_json::to_string(s).expect("a string");
            self.push(&quoted[1..quoted.len() - 1]);
        } else {
            for c in s.chars() {
                match c {
                    '<' => self.push("&lt;"),
                    '&' => self.push("&amp;"),
                    '"' => self.push("&quot;"),
                    c => {
                        let mut b = [0u8; 4];
                        self.push(c.encode_utf8(&mut b));
                    }
                }
            }
        }
    }
    /// A comma before every item of a JSON list but the first.
    fn separate(&mut self, first: &mut bool) {
        if !std::mem::take(first) {
            self.push(",");
        }
    }
    /// `render` up to `times` times, until the document is full; once is enough when it
    /// wrote nothing (repeating nothing would only spin).
    fn repeat(&mut self, times: u16, mut render: impl FnMut(&mut Out)) {
        for _ in 0..times {
            let before = self.s.len();
            if self.full() {
                break;
            }
            render(self);
            if self.s.len() == before {
                break;
            }
        }
    }
    fn plain(t: &Text) -> String {
        match t {
            Text::Short(s) => s.clone(),
            Text::Long { unit, times } => unit.repeat((*times as usize % 1_000) + 1),
            Text::Raw(b) => String::from_utf8_lossy(b).into_owned(),
        }
    }
}

fn junit(o: &mut Out, n: &Node) {
    if o.full() {
        return;
    }
    match n {
        Node::Suite { name, children } => {
            o.push("<testsuite name=\"");
            o.text(name, false);
            o.push("\">");
            children.iter().for_each(|c| junit(o, c));
            o.push("</testsuite>");
        }
        Node::Case {
            name,
            class,
            status,
            text,
            time,
        } => {
            o.push("<testcase name=\"");
            o.text(name, false);
            o.push("\" classname=\"");
            o.text(class, false);
            o.push("\" time=\"");
            o.text(time, false);
            o.push("\">");
            let tag =
                ["failure", "error", "skipped", "flakyFailure", "system-out"][*status as usize % 5];
            let _ = write!(Wrap(o), "<{tag}><![CDATA[");
            o.text(text, false);
            let _ = write!(Wrap(o), "]]></{tag}></testcase>");
        }
        Node::Repeat { times, node } => o.repeat(*times, |o| junit(o, node)),
        Node::Nest { depth, name, node } => {
            let mut opened = 0;
            while opened < *depth && !o.full() {
                o.push("<testsuite name=\"");
                o.text(name, false);
                o.push("\">");
                opened += 1;
            }
            junit(o, node);
            for _ in 0..opened {
                o.push("</testsuite>");
            }
        }
    }
}

fn ctrf(o: &mut Out, n: &Node, first: &mut bool) {
    if o.full() {
        return;
    }
    match n {
        Node::Suite { name, children } => {
            o.path.push(Out::plain(name));
            children.iter().for_each(|c| ctrf(o, c, first));
            o.path.pop();
        }
        Node::Case {
            name,
            class,
            status,
            text,
            time: _,
        } => {
            o.separate(first);
            o.push("{\"name\":\"");
            o.text(name, true);
            let st = ["passed", "failed", "skipped", "pending", "other"][*status as usize % 5];
            let _ = write!(
                Wrap(o),
                "\",\"status\":\"{st}\",\"duration\":{status},\"message\":\""
            );
            o.text(text, true);
            o.push("\",\"filePath\":\"");
            o.text(class, true);
            o.push("\",\"suite\":");
            let path = serde_json::to_string(&o.path).expect("strings");
            o.push(if o.path.is_empty() { "\"\"" } else { &path });
            o.push("}");
        }
        Node::Repeat { times, node } => o.repeat(*times, |o| ctrf(o, node, first)),
        Node::Nest { depth, name, node } => {
            // Deep JSON the parser must read past.
            o.separate(first);
            o.push("{\"name\":\"n\",\"status\":\"passed\",\"duration\":1,\"extra\":");
            o.push(&"[".repeat(*depth as usize));
            o.push(&"]".repeat(*depth as usize));
            o.push("}");
            o.path.push(Out::plain(name));
            ctrf(o, node, first);
            o.path.pop();
        }
    }
}

/// Playwright: suites hold specs and suites; a case outside a suite gets one.
fn playwright_suite(o: &mut Out, title: &Text, children: &[Node]) {
    o.push("{\"title\":\"");
    o.text(title, true);
    o.push("\",\"specs\":[");
    let mut first = true;
    for c in children {
        if let Node::Case { .. } | Node::Repeat { .. } = c {
            playwright_specs(o, c, &mut first);
        }
    }
    o.push("],\"suites\":[");
    let mut first = true;
    for c in children {
        if o.full() {
            break;
        }
        match c {
            Node::Suite { name, children } => {
                o.separate(&mut first);
                playwright_suite(o, name, children);
            }
            Node::Nest { depth, name, node } => {
                o.separate(&mut first);
                let mut opened = 0;
                while opened < *depth && !o.full() {
                    o.push("{\"title\":\"");
                    o.text(name, true);
                    o.push("\",\"suites\":[");
                    opened += 1;
                }
                playwright_suite(o, name, std::slice::from_ref(node));
                for _ in 0..opened {
                    o.push("]}");
                }
            }
            _ => {}
        }
    }
    o.push("]}");
}

fn playwright_specs(o: &mut Out, n: &Node, first: &mut bool) {
    match n {
        Node::Case {
            name,
            class,
            status,
            text,
            time: _,
        } => {
            o.separate(first);
            o.push("{\"title\":\"");
            o.text(name, true);
            let st = ["expected", "unexpected", "flaky", "skipped"][*status as usize % 4];
            let _ = write!(Wrap(o), "\",\"tests\":[{{\"projectName\":\"");
            o.text(class, true);
            let _ = write!(
                Wrap(o),
                "\",\"status\":\"{st}\",\"results\":[{{\"status\":\"failed\",\"duration\":1,\"error\":{{\"message\":\""
            );
            o.text(text, true);
            o.push("\"}}]}]}");
        }
        Node::Repeat { times, node } => o.repeat(*times, |o| playwright_specs(o, node, first)),
        _ => {}
    }
}

struct Wrap<'a>(&'a mut Out);

impl Write for Wrap<'_> {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        self.0.push(s);
        Ok(())
    }
}

fn render(doc: &Doc) -> (Vec<u8>, Format) {
    let mut o = Out {
        s: Vec::new(),
        path: Vec::new(),
    };
    let format = match doc.format {
        Fmt::Junit => {
            o.push("<testsuites>");
            doc.nodes.iter().for_each(|n| junit(&mut o, n));
            o.push("</testsuites>");
            Format::Junit
        }
        Fmt::Ctrf => {
            o.push("{\"results\":{\"tool\":{\"name\":\"fuzz\"},\"tests\":[");
            let mut first = true;
            doc.nodes.iter().for_each(|n| ctrf(&mut o, n, &mut first));
            o.push("]}}");
            Format::Ctrf
        }
        Fmt::Playwright => {
            o.push("{\"config\":{},\"suites\":[");
            playwright_suite(&mut o, &Text::Short("file.spec.ts".into()), &doc.nodes);
            o.push("]}");
            Format::Playwright
        }
    };
    (o.s, format)
}

fuzz_target!(|doc: Doc| {
    let (input, format) = render(&doc);
    let len = input.len();
    // Measured from the report on: it was allocated before, and ingest drops it once parsed.
    let ((), above) = counting::peak_of(|| ingest(input, format));
    let peak = above + len;
    assert!(
        peak <= 4 * len + 8_000_000,
        "peak heap {peak} bytes for a {len} byte {format:?} report"
    );
});

/// As `IngestService` does: parse within the default limits, drop the report, then encode
/// the stored JSON within the budget left.
fn ingest(input: Vec<u8>, format: Format) {
    let limits = testrelay_domain::report::parse::Limits::default();
    let len = input.len();
    let parsed = testrelay_domain::report::parse::parse_with(&input, Some(format), &limits);
    drop(input);
    if let Ok(parsed) = parsed {
        let s = parsed.report.summary();
        assert_eq!(
            s.passed + s.failed + s.errored + s.skipped + s.flaky,
            s.total
        );
        let left = testrelay_domain::report::parse::limits::stored_budget(len, parsed.heap_bytes);
        let run = TestRun {
            run_id: testrelay_domain::ids::RunId::new(0),
            received_at: "2026-11-28T00:00:00Z".into(),
            meta: RunMeta {
                project: "web".into(),
                branch: None,
                commit: None,
                build_url: None,
                environment: None,
                pipeline: None,
            },
            summary: s,
            report: parsed.report,
        };
        let _ = testrelay_domain::ingest::encode_run(&run, left);
    }
}
