//! What every human-facing message says about a run, in plain text pieces that each vendor
//! renderer (Slack blocks, Teams cards, TestRail comments, Jira descriptions, PagerDuty
//! summaries) lays out within its own size limits: failures first, then "+N more" and a
//! link to the run's status.

use crate::history::Class;
use crate::report::model::{RunOutcome, Status, Suite, TestCase, TestRun};

/// Failed and errored tests: NEW failures first, then still failing, then flaky (when the
/// run was classified against its base), otherwise in report order.
pub fn failures(run: &TestRun) -> impl Iterator<Item = (&Suite, &TestCase)> {
    classified_failures(run).into_iter().map(|(s, c, _)| (s, c))
}

/// [`failures`] with each one's class, when the run's classification lists it.
pub fn classified_failures(run: &TestRun) -> Vec<(&Suite, &TestCase, Option<Class>)> {
    let by_id = run.changes.as_ref().map(|c| c.by_id());
    let mut failing: Vec<(&Suite, &TestCase, Option<Class>)> = run
        .report
        .cases_in_suites()
        .filter(|(_, c)| c.status.is_failure())
        .map(|(s, c)| {
            let class = by_id.as_ref().and_then(|by_id| {
                let id = crate::history::identity::id_of(&s.name, c.classname.as_deref(), &c.name);
                by_id.get(id.as_str()).map(|t| t.class)
            });
            (s, c, class)
        })
        .collect();
    if by_id.is_some() {
        // Stable: report order within a class; failures the shortened list left out last.
        failing.sort_by_key(|(_, _, class)| class.map_or(9, |c| c as u8));
    }
    failing
}

/// `NEW`, `STILL FAILING`, `FLAKY`, `FIXED`: how a message labels a test's class.
pub fn class_label(class: Class) -> &'static str {
    match class {
        Class::New => "NEW",
        Class::StillFailing => "STILL FAILING",
        Class::Flaky => "FLAKY",
        Class::Fixed => "FIXED",
    }
}

/// A failure's title with its class first: `NEW · suite › name`.
pub fn labelled_title(suite: &Suite, case: &TestCase, class: Option<Class>) -> String {
    match class {
        Some(c) => format!("{} · {}", class_label(c), title(suite, case)),
        None => title(suite, case),
    }
}

/// What changed against the base, as messages lead with it:
/// `2 new failures · 5 still failing · 3 fixed · 1 flaky (vs main @ a1b2c3d)`.
pub fn changes_line(run: &TestRun) -> Option<String> {
    run.changes.as_ref().map(|c| c.headline())
}

/// A test's automation id, as TestRail's CLI and Xray's JUnit import name a test:
/// `classname.name` (the suite's name stands in for a missing classname).
pub fn automation_id(suite: &Suite, case: &TestCase) -> String {
    let class = case.classname.as_deref().unwrap_or(suite.name.as_str());
    format!("{class}.{}", case.name)
}

pub fn failure_count(run: &TestRun) -> u64 {
    run.summary.failed + run.summary.errored
}

/// Percentage of executed (not skipped) tests that passed, flaky ones included.
pub fn pass_rate(run: &TestRun) -> f64 {
    let s = &run.summary;
    let executed = s.total - s.skipped;
    if executed == 0 {
        return 100.0;
    }
    (s.passed + s.flaky) as f64 * 100.0 / executed as f64
}

/// `1h 2m 5s`, `1m 5s`, `30s`; never zero (a 300 ms run is `1s`): TestRail rejects a zero
/// timespan, and rounding down would drop every fast test's timing.
pub fn timespan(ms: f64) -> String {
    let secs = (ms / 1000.0).ceil().max(1.0) as u64;
    let (h, m, s) = (secs / 3600, secs / 60 % 60, secs % 60);
    let mut parts = Vec::new();
    if h > 0 {
        parts.push(format!("{h}h"));
    }
    if m > 0 {
        parts.push(format!("{m}m"));
    }
    if s > 0 {
        parts.push(format!("{s}s"));
    }
    parts.join(" ")
}

/// Human duration for headlines: `850 ms`, `12.3 s`, `4m 5s`.
pub fn duration(ms: u64) -> String {
    match ms {
        0..1000 => format!("{ms} ms"),
        1000..60_000 => format!("{:.1} s", ms as f64 / 1000.0),
        _ => timespan(ms as f64),
    }
}

pub fn short_commit(commit: &str) -> &str {
    cut_at(commit, 7)
}

/// `web · main · a1b2c3d`
pub fn context(run: &TestRun) -> String {
    let m = &run.meta;
    let mut parts = vec![m.project.clone()];
    parts.extend(m.branch.clone());
    parts.extend(m.commit.as_deref().map(|c| short_commit(c).to_string()));
    parts.extend(m.environment.clone());
    parts.join(" · ")
}

/// `Tests failed: 3 of 120 failed · 97.5% passed · 1m 5s` (the status word first).
pub fn headline(run: &TestRun) -> String {
    let s = &run.summary;
    let verdict = match s.outcome() {
        RunOutcome::Failed => format!("Tests failed: {} of {} failed", failure_count(run), s.total),
        RunOutcome::Passed => format!("Tests passed: {} tests", s.total),
    };
    format!(
        "{verdict} · {:.1}% passed · {}",
        pass_rate(run),
        duration(s.duration_ms)
    )
}

/// `120 tests: 110 passed, 3 failed, 1 error, 5 skipped, 1 flaky` (zero counts left out).
pub fn counts(run: &TestRun) -> String {
    summary_counts(&run.summary)
}

/// `120 tests: 117 passed, 3 failed` from the counts alone.
pub fn summary_counts(s: &crate::report::model::Summary) -> String {
    let mut parts = Vec::new();
    for (n, what) in [
        (s.passed, "passed"),
        (s.failed, "failed"),
        (s.errored, "errored"),
        (s.skipped, "skipped"),
        (s.flaky, "flaky"),
    ] {
        if n > 0 {
            parts.push(format!("{n} {what}"));
        }
    }
    format!("{} tests: {}", s.total, parts.join(", "))
}

/// A failure's title: `suite › name`.
pub fn title(suite: &Suite, case: &TestCase) -> String {
    if suite.name.is_empty() || case.name.starts_with(&suite.name) {
        case.name.clone()
    } else {
        format!("{} › {}", suite.name, case.name)
    }
}

/// The first line of a failure's message (or of its trace), cut to `max` bytes.
pub fn reason(case: &TestCase, max: usize) -> Option<String> {
    let text = case.message.as_deref().or(case.trace.as_deref())?;
    let line = text.lines().map(str::trim).find(|l| !l.is_empty())?;
    Some(cut(line, max))
}

/// `s` cut to at most `max` bytes on a character boundary, with `…` when cut.
pub fn cut(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let head = cut_at(s, max.saturating_sub('…'.len_utf8()));
    format!("{head}…")
}

fn cut_at(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// `+9,990 more failures` style line.
pub fn more(n: u64, what: &str) -> String {
    format!("+{n} more {what}")
}

/// Fills `{project}`, `{branch}`, `{commit}`, `{environment}`, `{run_id}` and the extra
/// pairs given; absent values become `-`.
pub fn fill(template: &str, run: &TestRun, extra: &[(&str, &str)]) -> String {
    let m = &run.meta;
    let run_id = run.run_id.to_string();
    let short = m.commit.as_deref().map(short_commit);
    let mut out = template.to_string();
    for (k, v) in [
        ("project", Some(m.project.as_str())),
        ("branch", m.branch.as_deref()),
        ("commit", short),
        ("environment", m.environment.as_deref()),
        ("run_id", Some(run_id.as_str())),
    ]
    .into_iter()
    .chain(extra.iter().map(|(k, v)| (*k, Some(*v))))
    {
        out = out.replace(&format!("{{{k}}}"), v.unwrap_or("-"));
    }
    out
}

/// The test that stands for several reported on one case (parametrised variants): the
/// worst outcome, the first of equals.
pub fn worst<'a, T: Copy>(tests: &[(&'a TestCase, T)]) -> (&'a TestCase, T) {
    tests
        .iter()
        .copied()
        .reduce(|w, t| {
            if t.0.status.severity() > w.0.status.severity() {
                t
            } else {
                w
            }
        })
        .expect("at least one test")
}

/// `3 results for this case (one per variant; the worst stands):` and a line per variant.
pub fn variants<'a>(tests: impl ExactSizeIterator<Item = &'a TestCase>) -> String {
    let n = tests.len();
    let lines: Vec<String> = tests
        .map(|t| format!("- {}: {}", cut(&t.name, 200), t.status.as_str()))
        .collect();
    format!(
        "{n} results for this case (one per variant; the worst stands):\n{}",
        lines.join("\n")
    )
}

/// When the run was accepted, in Unix seconds (0 if its time does not parse).
pub fn received_secs(run: &TestRun) -> u64 {
    time::OffsetDateTime::parse(
        &run.received_at,
        &time::format_description::well_known::Rfc3339,
    )
    .map(|t| t.unix_timestamp().max(0) as u64)
    .unwrap_or(0)
}

/// Is the status worth a retry note (`flaky: passed after 2 retries`)?
pub fn retry_note(case: &TestCase) -> Option<String> {
    (case.status == Status::Flaky || case.retries > 0).then(|| {
        format!(
            "flaky: passed after {} {}",
            case.retries.max(1),
            if case.retries == 1 {
                "retry"
            } else {
                "retries"
            }
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timespans_never_drop_fast_tests() {
        assert_eq!(timespan(0.0), "1s");
        assert_eq!(timespan(300.0), "1s");
        assert_eq!(timespan(1000.0), "1s");
        assert_eq!(timespan(1001.0), "2s");
        assert_eq!(timespan(65_000.0), "1m 5s");
        assert_eq!(timespan(120_000.0), "2m");
        assert_eq!(timespan(3_725_000.0), "1h 2m 5s");
    }

    #[test]
    fn cuts_on_char_boundaries() {
        assert_eq!(cut("héllo wörld", 6), "hé…");
        assert!(cut("héllo wörld", 6).len() <= 6);
        assert_eq!(cut("short", 10), "short");
        assert_eq!(duration(850), "850 ms");
        assert_eq!(duration(12_340), "12.3 s");
        assert_eq!(duration(245_000), "4m 5s");
    }
}
