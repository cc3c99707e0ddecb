//! The report parsers (detection, JUnit XML, CTRF, Playwright) on arbitrary bytes: errors
//! are fine, panics and hangs are not; a parsed report's counts add up.

#![no_main]

use libfuzzer_sys::fuzz_target;
use testrelay_domain::report::model::Format;
use testrelay_domain::report::parse::parse;

fuzz_target!(|data: &[u8]| {
    for format in [None, Some(Format::Junit), Some(Format::Ctrf), Some(Format::Playwright)] {
        if let Ok(report) = parse(data, format) {
            let s = report.summary();
            assert_eq!(s.passed + s.failed + s.errored + s.skipped + s.flaky, s.total);
        }
    }
});
