//! What a report becomes in TestRail: one result per case (the worst of the tests mapped to
//! it), each with its comment.

use super::{CaseIndex, MAX_COMMENT, case_ids, property_ids};
use serde_json::json;
use std::collections::BTreeSet;
use testrelay_domain::config::{CaseMatcher, TestRailConfig};
use testrelay_domain::ports::DeliveryContext;
use testrelay_domain::report::model::{Status, TestCase, TestRun};
use testrelay_domain::report::render;

/// One result to post.
#[derive(Debug, Clone, PartialEq)]
pub struct Planned {
    pub case_id: u64,
    pub body: serde_json::Value,
}

/// What a run becomes in TestRail.
#[derive(Debug, Default)]
pub struct Plan {
    pub results: Vec<Planned>,
    /// Tests without a case id.
    pub unmatched: usize,
    /// Skipped tests not posted (no `status.skipped` configured).
    pub skipped: usize,
    /// Case ids tests name that the suite does not have (unknown, deleted, another
    /// suite's), ascending: not posted, since one of them would sink the whole run.
    pub unknown: Vec<u64>,
}

impl Plan {
    /// What was left out, for the delivery status: `; 3 tests without a case id, ...`.
    pub fn notes(&self) -> String {
        let mut s = String::new();
        if self.unmatched > 0 {
            s.push_str(&format!(
                "; {} tests without a case id, not posted",
                self.unmatched
            ));
        }
        if !self.unknown.is_empty() {
            s.push_str(&format!(
                "; {} case ids not in the suite, not posted: {}",
                self.unknown.len(),
                super::cases::named(&self.unknown)
            ));
        }
        if self.skipped > 0 {
            s.push_str(&format!("; {} skipped, not posted", self.skipped));
        }
        s
    }
}

/// The results to post, every id taken as known (no pre-flight).
pub fn plan(run: &TestRun, ctx: &DeliveryContext, c: &TestRailConfig) -> Plan {
    plan_with(run, ctx, c, None)
}

/// The results to post: tests matched to cases by `c.case_matcher`, ids checked against
/// `index` (the suite's cases) when given.
pub fn plan_with(
    run: &TestRun,
    ctx: &DeliveryContext,
    c: &TestRailConfig,
    index: Option<&CaseIndex>,
) -> Plan {
    let mut plan = Plan::default();
    let mut unknown = BTreeSet::new();
    // Each case id's tests, in the order the ids first appear: parametrised tests map several
    // to one case, and TestRail keeps only the last result it is sent for a case.
    let mut order: Vec<u64> = Vec::new();
    let mut by_case: std::collections::HashMap<u64, Vec<(&TestCase, u32)>> =
        std::collections::HashMap::new();
    for (suite, case) in run.report.cases_in_suites() {
        let mut ids = match c.case_matcher {
            CaseMatcher::Name => case_ids(case),
            // Ids in properties stand; names are matched by automation id only.
            CaseMatcher::AutomationId => {
                let mut ids = property_ids(case);
                if ids.is_empty() {
                    ids.extend(
                        index.and_then(|i| i.by_automation_id(&render::automation_id(suite, case))),
                    );
                }
                ids
            }
        };
        if ids.is_empty() {
            plan.unmatched += 1;
            continue;
        }
        let status = match case.status {
            Status::Passed => c.status.passed,
            Status::Failed => c.status.failed,
            Status::Error => c.status.error,
            Status::Flaky => c.status.flaky,
            Status::Skipped => match c.status.skipped {
                Some(s) => s,
                None => {
                    plan.skipped += 1;
                    continue;
                }
            },
        };
        if let Some(index) = index {
            let (known, missing) = ids.into_iter().partition(|&id| index.contains(id));
            unknown.extend::<Vec<u64>>(missing);
            ids = known;
            if ids.is_empty() {
                continue;
            }
        }
        for id in ids {
            let tests = by_case.entry(id).or_default();
            if tests.is_empty() {
                order.push(id);
            }
            tests.push((case, status));
        }
    }
    for id in order {
        let tests = &by_case[&id];
        let (worst, status) = render::worst(tests);
        let variants = (tests.len() > 1).then(|| render::variants(tests.iter().map(|(t, _)| *t)));
        let comment = comment(run, ctx, worst, variants);
        let mut body = json!({"case_id": id, "status_id": status, "comment": comment});
        let times: Vec<f64> = tests.iter().filter_map(|(t, _)| t.duration_ms).collect();
        if !times.is_empty() {
            body["elapsed"] = json!(render::timespan(times.iter().sum()));
        }
        if let Some(c) = &run.meta.commit {
            body["version"] = json!(render::short_commit(c));
        }
        plan.results.push(Planned { case_id: id, body });
    }
    plan.unknown = unknown.into_iter().collect();
    plan
}

/// A result's comment: the variants (if several tests share the case), the retry note, the
/// message, as much trace as fits, and the CI lines, which always end it whole: the run's
/// status URL there is how a retry recognises this delivery's results in a shared run.
fn comment(
    run: &TestRun,
    ctx: &DeliveryContext,
    case: &TestCase,
    variants: Option<String>,
) -> String {
    let meta = &run.meta;
    let mut ci = Vec::new();
    ci.extend(
        meta.branch
            .as_ref()
            .map(|b| format!("Branch: {}", render::cut(b, 200))),
    );
    ci.extend(
        meta.commit
            .as_ref()
            .map(|c| format!("Commit: {}", render::cut(c, 100))),
    );
    ci.extend(
        meta.build_url
            .as_ref()
            .map(|b| format!("Build: {}", render::cut(b, 500))),
    );
    ci.push(format!("Run: {}", ctx.status_url));
    let ci = ci.join("\n");
    let room = MAX_COMMENT.saturating_sub(ci.len() + 2);
    let mut parts = Vec::new();
    parts.extend(variants.map(|v| render::cut(&v, room / 2)));
    parts.extend(render::retry_note(case));
    if let Some(m) = case.message.as_deref().filter(|m| !m.trim().is_empty()) {
        parts.push(render::cut(m.trim(), 1000));
    }
    if let Some(t) = case.trace.as_deref().filter(|t| !t.trim().is_empty()) {
        let used: usize = parts.iter().map(|p| p.len() + 2).sum::<usize>() + 16;
        let left = room.saturating_sub(used);
        if left > 100 {
            // Code block in TestRail's Markdown: four-space indent.
            let trace = render::cut(t.trim(), left);
            parts.push(
                trace
                    .lines()
                    .map(|l| format!("    {l}"))
                    .collect::<Vec<_>>()
                    .join("\n"),
            );
        }
    }
    let body = render::cut(&parts.join("\n\n"), room);
    if body.is_empty() {
        ci
    } else {
        format!("{body}\n\n{ci}")
    }
}
