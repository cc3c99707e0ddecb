//! What changed in a run against its base: each failure NEW, STILL FAILING or FLAKY, each
//! base failure now passing FIXED.
//!
//! The base: on the project's default branch, the branch's previous pipeline; on any other
//! branch, the default branch's latest. A failure is FLAKY, not new, when the test passed on
//! the same commit before (on this branch), when its outcomes flip between passing and
//! failing at least `flaky_flip_rate` of the time (over its last outcomes on this branch or
//! the default branch, at least ten of them), and a test that passed only on a re-run is
//! FLAKY too. Quarantined tests are classified like any other but never count towards a
//! verdict: their failures are counted apart.

use super::snapshot::{Mark, Outcome, Snapshot, is_failure, letter};
use crate::ids::RunId;
use crate::report::model::{RunOutcome, Status};
use serde::{Deserialize, Serialize};
use std::collections::{HashMap, HashSet};

/// Fewest outcomes a flip rate is judged on.
pub const MIN_OUTCOMES_FOR_RATE: usize = 10;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Class {
    New,
    StillFailing,
    Flaky,
    Fixed,
}

/// The run a run was compared with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Base {
    pub branch: String,
    pub run_id: RunId,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commit: Option<String>,
    pub at: String,
    pub outcome: RunOutcome,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    /// Failing here, passing (or absent) on the base.
    pub new: u64,
    pub still_failing: u64,
    pub fixed: u64,
    pub flaky: u64,
    /// Failures of quarantined tests (counted in none of the above).
    pub quarantined: u64,
    /// Failed or errored tests not quarantined.
    pub failing: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Changed {
    pub id: String,
    pub class: Class,
    pub suite: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub classname: Option<String>,
    pub name: String,
    pub status: Status,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub quarantined: bool,
    /// Why a failure counts as flaky.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub why: Option<String>,
    /// Where its current failing streak began (on this branch).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failing_since: Option<Mark>,
}

/// A run's classification. `tests` lists new failures first, then still failing, flaky and
/// fixed; `omitted` counts what a shortened copy leaves out.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Changes {
    /// `None`: nothing to compare with yet (every failure is new).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base: Option<Base>,
    pub counts: Counts,
    pub tests: Vec<Changed>,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub omitted: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// What fails a CI job (`testrelay send --fail-on`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FailOn {
    /// A failure that is not failing on the base, not flaky and not quarantined.
    NewFailures,
    /// Any failure of a test not quarantined.
    AnyFailure,
    None,
}

impl FailOn {
    pub fn parse(s: &str) -> Option<FailOn> {
        match s {
            "new-failures" => Some(FailOn::NewFailures),
            "any-failure" => Some(FailOn::AnyFailure),
            "none" => Some(FailOn::None),
            _ => None,
        }
    }
}

impl Changes {
    /// Why the job fails under `rule`, or `None` when it passes.
    pub fn verdict(&self, rule: FailOn) -> Option<String> {
        let c = &self.counts;
        let plural = |n: u64, what: &str| format!("{n} {what}{}", if n == 1 { "" } else { "s" });
        match rule {
            FailOn::NewFailures if c.new > 0 => Some(plural(c.new, "new failure")),
            FailOn::AnyFailure if c.failing > 0 => Some(plural(c.failing, "failure")),
            _ => None,
        }
    }

    /// `2 new failures · 5 still failing · 3 fixed · 1 flaky`, against what.
    pub fn headline(&self) -> String {
        let c = &self.counts;
        let mut parts = Vec::new();
        let plural =
            |n: u64, one: &str, many: &str| format!("{n} {}", if n == 1 { one } else { many });
        if c.new > 0 {
            parts.push(plural(c.new, "new failure", "new failures"));
        }
        if c.still_failing > 0 {
            parts.push(format!("{} still failing", c.still_failing));
        }
        if c.fixed > 0 {
            parts.push(format!("{} fixed", c.fixed));
        }
        if c.flaky > 0 {
            parts.push(format!("{} flaky", c.flaky));
        }
        if c.quarantined > 0 {
            parts.push(format!("{} quarantined", c.quarantined));
        }
        let against = match &self.base {
            Some(b) => format!(
                "vs {}{}",
                b.branch,
                b.commit
                    .as_deref()
                    .map(|c| format!(" @ {}", crate::report::render::short_commit(c)))
                    .unwrap_or_default()
            ),
            None => "no earlier run to compare with".to_string(),
        };
        if parts.is_empty() {
            parts.push("no change".into());
        }
        format!("{} ({against})", parts.join(" · "))
    }

    /// The classes of tests by id.
    pub fn by_id(&self) -> HashMap<&str, &Changed> {
        self.tests.iter().map(|t| (t.id.as_str(), t)).collect()
    }

    /// A copy listing at most `limit` tests (new failures first), for records of bounded size.
    /// Names are cut to 300 bytes.
    pub fn shortened(&self, limit: usize) -> Changes {
        let cut = |s: &str| crate::report::render::cut(s, 300);
        Changes {
            base: self.base.clone(),
            counts: self.counts,
            tests: self
                .tests
                .iter()
                .take(limit)
                .map(|t| Changed {
                    suite: cut(&t.suite),
                    classname: t.classname.as_deref().map(cut),
                    name: cut(&t.name),
                    ..t.clone()
                })
                .collect(),
            omitted: self.omitted + self.tests.len().saturating_sub(limit) as u64,
        }
    }
}

/// What the run is compared with: a snapshot and the entry in it.
pub struct BaseSide<'a> {
    pub snapshot: &'a Snapshot,
    pub index: usize,
}

impl<'a> BaseSide<'a> {
    pub fn base(&self) -> Base {
        let e = &self.snapshot.pipelines[self.index];
        Base {
            branch: self.snapshot.branch.clone(),
            run_id: e.run_id.clone(),
            commit: e.commit.clone(),
            at: e.at.clone(),
            outcome: if e.failed > 0 {
                RunOutcome::Failed
            } else {
                RunOutcome::Passed
            },
        }
    }
}

pub struct Inputs<'a> {
    /// The run's entry key (its pipeline's, when it is one's merged result).
    pub key: &'a str,
    pub commit: Option<&'a str>,
    pub tests: &'a [Outcome<'a>],
    /// The run's branch before this run was recorded.
    pub branch: Option<&'a Snapshot>,
    pub base: Option<BaseSide<'a>>,
    /// The default branch's history, for flip rates (`None` on the default branch itself).
    pub default_branch: Option<&'a Snapshot>,
    pub quarantined: &'a HashSet<String>,
    pub flaky_flip_rate: f64,
}

pub fn classify(i: &Inputs<'_>) -> Changes {
    let own_index = i.branch.and_then(|b| b.index_of(i.key));
    let mut tests = Vec::new();
    let mut counts = Counts::default();
    let mut seen: HashSet<&str> = HashSet::new();
    for t in i.tests {
        seen.insert(&t.id);
        let quarantined = i.quarantined.contains(&t.id);
        let base_letter = i.base.as_ref().and_then(|b| {
            b.snapshot
                .tests
                .get(&t.id)
                .map(|h| h.at(b.index))
                .filter(|l| *l != super::snapshot::ABSENT)
        });
        let own = i.branch.and_then(|b| b.tests.get(&t.id));
        let (class, why) = if t.status == Status::Flaky {
            (Class::Flaky, Some("passed on a re-run".to_string()))
        } else if t.status.is_failure() {
            match flaky_why(i, t, own_index) {
                Some(why) => (Class::Flaky, Some(why)),
                None if base_letter.is_some_and(is_failure) => (Class::StillFailing, None),
                None => (Class::New, None),
            }
        } else if t.status == Status::Passed && base_letter.is_some_and(is_failure) {
            (Class::Fixed, None)
        } else {
            continue;
        };
        if t.status.is_failure() {
            if quarantined {
                counts.quarantined += 1;
            } else {
                counts.failing += 1;
            }
        }
        if !quarantined || class == Class::Fixed {
            match class {
                Class::New => counts.new += 1,
                Class::StillFailing => counts.still_failing += 1,
                Class::Flaky => counts.flaky += 1,
                Class::Fixed => counts.fixed += 1,
            }
        }
        tests.push(Changed {
            id: t.id.clone(),
            class,
            suite: t.suite.to_string(),
            classname: t.classname.map(str::to_string),
            name: t.name.to_string(),
            status: t.status,
            quarantined,
            why,
            failing_since: own
                .filter(|_| t.status.is_failure())
                .and_then(|h| i.branch.and_then(|b| b.mark(h.failing_since)).cloned()),
        });
    }
    tests.sort_by_key(|t| (t.quarantined, t.class));
    Changes {
        base: i.base.as_ref().map(BaseSide::base),
        counts,
        tests,
        omitted: 0,
    }
}

/// Why failing test `t` is flaky rather than broken, if it is.
fn flaky_why(i: &Inputs<'_>, t: &Outcome<'_>, own_index: Option<usize>) -> Option<String> {
    let now = letter(t.status);
    if let (Some(branch), Some(commit)) = (i.branch, i.commit)
        && let Some(h) = branch.tests.get(&t.id)
    {
        let passed_here = branch.pipelines.iter().enumerate().any(|(k, e)| {
            Some(k) != own_index
                && e.commit.as_deref() == Some(commit)
                && super::snapshot::is_pass(h.at(k))
        });
        if passed_here {
            return Some(format!(
                "passed before on the same commit {}",
                crate::report::render::short_commit(commit)
            ));
        }
    }
    let rates = [
        i.branch
            .and_then(|b| b.tests.get(&t.id))
            .and_then(|h| h.flip_rate(own_index, Some(now), MIN_OUTCOMES_FOR_RATE)),
        i.default_branch
            .and_then(|b| b.tests.get(&t.id))
            .and_then(|h| h.flip_rate(None, None, MIN_OUTCOMES_FOR_RATE)),
    ];
    rates
        .into_iter()
        .flatten()
        .find(|r| *r >= i.flaky_flip_rate)
        .map(|r| {
            format!(
                "flips between passing and failing {:.0}% of the time",
                r * 100.0
            )
        })
}
