//! The canonical test-run model every report format is parsed into, and the summary
//! every connector renders from. Reports of any format become this one shape, so connectors
//! never see JUnit, CTRF or Playwright specifics.

use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// The report formats testrelay reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    Junit,
    Ctrf,
    Playwright,
    /// A GitHub Actions `workflow_run` / `check_run` event received on a hook (one test per
    /// workflow or check run); never a report format of `/v1/reports`.
    Github,
}

impl Format {
    pub fn as_str(self) -> &'static str {
        match self {
            Format::Junit => "junit",
            Format::Ctrf => "ctrf",
            Format::Playwright => "playwright",
            Format::Github => "github",
        }
    }

    /// Parses the `?format=` query value; `None` for an unknown name.
    pub fn from_name(name: &str) -> Option<Format> {
        match name.to_ascii_lowercase().as_str() {
            "junit" | "xunit" | "junit-xml" => Some(Format::Junit),
            "ctrf" => Some(Format::Ctrf),
            "playwright" => Some(Format::Playwright),
            _ => None,
        }
    }
}

/// Outcome of one test case after all its retries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Passed,
    Failed,
    /// The test could not run to an assertion (JUnit `<error>`, a crash, a timeout).
    Error,
    Skipped,
    /// Failed at least once, then passed on a retry.
    Flaky,
}

impl Status {
    /// Failed and errored tests are what a run's readers must look at.
    pub fn is_failure(self) -> bool {
        matches!(self, Status::Failed | Status::Error)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Status::Passed => "passed",
            Status::Failed => "failed",
            Status::Error => "error",
            Status::Skipped => "skipped",
            Status::Flaky => "flaky",
        }
    }

    /// How bad the outcome is, for one result that stands for several tests (parametrised
    /// variants reported on one TestRail case or Xray test): the worst stands.
    pub fn severity(self) -> u8 {
        match self {
            Status::Skipped => 0,
            Status::Passed => 1,
            Status::Flaky => 2,
            Status::Failed | Status::Error => 3,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Property {
    pub name: String,
    pub value: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TestCase {
    pub name: String,
    /// Shared by every case of the same class or describe block: parsers build it once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub classname: Option<Arc<str>>,
    pub status: Status,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_ms: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub line: Option<u32>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub properties: Vec<Property>,
    /// How many times the test was re-run after its first attempt.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub retries: u32,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

impl TestCase {
    pub fn new(name: impl Into<String>, status: Status) -> Self {
        TestCase {
            name: name.into(),
            classname: None,
            status,
            duration_ms: None,
            message: None,
            trace: None,
            file: None,
            line: None,
            properties: Vec::new(),
            retries: 0,
        }
    }

    pub fn property(&self, name: &str) -> Option<&str> {
        self.properties
            .iter()
            .find(|p| p.name == name)
            .map(|p| p.value.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Suite {
    /// Nested suites are flattened; their names are joined with " / ".
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_ms: Option<f64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub properties: Vec<Property>,
    pub cases: Vec<TestCase>,
}

/// A parsed report: what the CI tool said, before testrelay adds run metadata.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    pub format: Format,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool: Option<String>,
    /// Wall-clock duration the tool reported for the whole run, when it reported one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_ms: Option<f64>,
    pub suites: Vec<Suite>,
}

impl Report {
    pub fn cases(&self) -> impl Iterator<Item = &TestCase> {
        self.suites.iter().flat_map(|s| s.cases.iter())
    }

    /// Every case with its suite, in report order.
    pub fn cases_in_suites(&self) -> impl Iterator<Item = (&Suite, &TestCase)> {
        self.suites
            .iter()
            .flat_map(|s| s.cases.iter().map(move |c| (s, c)))
    }

    pub fn summary(&self) -> Summary {
        let mut s = Summary::default();
        let mut summed = 0.0;
        for case in self.cases() {
            s.total += 1;
            match case.status {
                Status::Passed => s.passed += 1,
                Status::Failed => s.failed += 1,
                Status::Error => s.errored += 1,
                Status::Skipped => s.skipped += 1,
                Status::Flaky => s.flaky += 1,
            }
            summed += case.duration_ms.unwrap_or(0.0);
        }
        let suites: f64 = self.suites.iter().filter_map(|s| s.duration_ms).sum();
        let ms = self
            .duration_ms
            .unwrap_or(if suites > 0.0 { suites } else { summed });
        s.duration_ms = ms.round() as u64;
        s
    }
}

/// Counts by status. `passed + failed + errored + skipped + flaky == total`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Summary {
    pub total: u64,
    pub passed: u64,
    pub failed: u64,
    pub errored: u64,
    pub skipped: u64,
    pub flaky: u64,
    pub duration_ms: u64,
}

impl Summary {
    /// A run "passes" when nothing failed or errored (skips and flakes do not fail a run).
    pub fn outcome(&self) -> RunOutcome {
        if self.failed + self.errored > 0 {
            RunOutcome::Failed
        } else {
            RunOutcome::Passed
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RunOutcome {
    Passed,
    Failed,
}

/// Where a run came from, as the CI said in its query parameters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunMeta {
    pub project: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub branch: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commit: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub build_url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub environment: Option<String>,
    /// The CI pipeline this report is a part of, or the pipeline's merged result.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pipeline: Option<PipelineRef>,
}

/// A report's place in its CI pipeline (`?pipeline=<id>&shard=<i>/<n>&attempt=<k>`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PipelineRef {
    pub id: String,
    /// Which of how many parallel jobs; `None` when the job did not say.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shard: Option<Shard>,
    /// The pipeline's run attempt (1 for the first; re-runs count up).
    pub attempt: u32,
    /// Set on the pipeline's merged result: which completion of the pipeline it is (1 for
    /// the first; a late shard reopens the pipeline and its next completion is 2, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completion: Option<u32>,
}

impl PipelineRef {
    /// Whether this run is the pipeline's merged result (not one of its shards).
    pub fn is_merged(&self) -> bool {
        self.completion.is_some()
    }
}

/// Shard `index` of `total` (1-based).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shard {
    pub index: u32,
    pub total: u32,
}

/// The normalized run as stored in the blob store and read by every connector.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TestRun {
    pub run_id: crate::ids::RunId,
    /// RFC 3339, when testrelay accepted the report.
    pub received_at: String,
    pub meta: RunMeta,
    pub summary: Summary,
    pub report: Report,
    /// What changed against the base, as the run's record holds it (set when a connector
    /// gets the run; not part of the stored report).
    #[serde(default, skip_serializing)]
    pub changes: Option<crate::history::Changes>,
}
