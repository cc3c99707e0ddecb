//! The history API: `GET /v1/projects/{p}/tests?status=flaky|failing&branch=&limit=` and
//! `GET /v1/projects/{p}/tests/{test_id}/history?branch=`. The branch is the project's
//! default branch unless `branch` names another.

use super::classify::MIN_OUTCOMES_FOR_RATE;
use super::snapshot::{self, Mark, Snapshot, TestHistory};
use crate::error::ApiError;
use crate::ids::{ProjectName, RunId};
use crate::ingest::IngestService;
use crate::ports::StoreError;
use serde::Serialize;

pub const DEFAULT_LIMIT: usize = 100;
pub const MAX_LIMIT: usize = 1000;

pub(crate) fn unavailable(e: &StoreError) -> ApiError {
    ApiError::unavailable(format!("{} is unavailable; retry later", e.backend))
}

#[derive(Debug, Clone, Serialize)]
pub struct TestList {
    pub project: String,
    pub branch: String,
    /// Pipelines (or runs) the branch's history holds.
    pub pipelines: usize,
    /// Tests matching the filter; `tests` lists at most `limit` of them.
    pub matching: usize,
    pub tests: Vec<TestSummary>,
}

#[derive(Debug, Clone, Serialize)]
pub struct TestSummary {
    pub id: String,
    pub suite: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub classname: Option<String>,
    pub name: String,
    /// Its latest outcome on the branch.
    pub status: &'static str,
    /// Share of its outcomes that flipped between passing and failing (ten outcomes at
    /// least).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub flip_rate: Option<f64>,
    pub flaky: bool,
    pub quarantined: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failing_since: Option<Mark>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_passed: Option<Mark>,
}

#[derive(Debug, Clone, Serialize)]
pub struct TestHistoryView {
    #[serde(flatten)]
    pub test: TestSummary,
    pub branch: String,
    /// Newest first.
    pub outcomes: Vec<OutcomeView>,
}

#[derive(Debug, Clone, Serialize)]
pub struct OutcomeView {
    pub run_id: RunId,
    pub status_url: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub commit: Option<String>,
    pub at: String,
    pub status: &'static str,
}

fn word(letter: u8) -> &'static str {
    match letter {
        snapshot::PASSED => "passed",
        snapshot::FAILED => "failed",
        snapshot::ERROR => "error",
        snapshot::SKIPPED => "skipped",
        snapshot::FLAKY => "flaky",
        _ => "not run",
    }
}

fn summary(
    snapshot: &Snapshot,
    id: &str,
    h: &TestHistory,
    rate_threshold: f64,
    quarantined: &std::collections::HashSet<String>,
) -> TestSummary {
    let flip_rate = h.flip_rate(None, None, MIN_OUTCOMES_FOR_RATE);
    TestSummary {
        id: id.to_string(),
        suite: h.suite.clone(),
        classname: h.classname.clone(),
        name: h.name.clone(),
        status: word(h.ran(None).last().unwrap_or(snapshot::SKIPPED)),
        flaky: flip_rate.is_some_and(|r| r >= rate_threshold)
            || h.o.bytes().any(|l| l == snapshot::FLAKY),
        flip_rate: flip_rate.map(|r| (r * 1000.0).round() / 1000.0),
        quarantined: quarantined.contains(id),
        failing_since: snapshot.mark(h.failing_since).cloned(),
        last_passed: snapshot.mark(h.last_passed).cloned(),
    }
}

struct Query {
    branch: Option<String>,
    status: Option<String>,
    limit: usize,
}

fn query(raw: Option<&str>) -> Result<Query, ApiError> {
    let mut q = Query {
        branch: None,
        status: None,
        limit: DEFAULT_LIMIT,
    };
    for (k, v) in url::form_urlencoded::parse(raw.unwrap_or("").as_bytes()) {
        match k.as_ref() {
            "branch" if !v.is_empty() && v.len() <= 256 => q.branch = Some(v.to_string()),
            "branch" => return Err(ApiError::bad_request("branch: must be 1 to 256 characters")),
            "status" if matches!(v.as_ref(), "flaky" | "failing") => q.status = Some(v.to_string()),
            "status" => {
                return Err(ApiError::bad_request(
                    "status: must be \"flaky\" or \"failing\"",
                ));
            }
            "limit" => {
                q.limit = v
                    .parse()
                    .ok()
                    .filter(|n| (1..=MAX_LIMIT).contains(n))
                    .ok_or_else(|| {
                        ApiError::bad_request(format!("limit: must be 1 to {MAX_LIMIT}"))
                    })?
            }
            other => {
                return Err(ApiError::bad_request(format!(
                    "unknown query parameter {:?}",
                    crate::report::render::cut(other, 40)
                )));
            }
        }
    }
    Ok(q)
}

impl IngestService {
    /// The project a key may read, and the key's id.
    pub(crate) fn project_access(
        &self,
        authorization: Option<&str>,
        project: &str,
    ) -> Result<(ProjectName, String), ApiError> {
        let key = self.authenticate(authorization)?;
        let unknown = || ApiError::not_found(format!("unknown project {project:?}"));
        let name = ProjectName::parse(project).map_err(|_| unknown())?;
        if !self.config.projects.contains_key(&name) || !Self::may_access(key, &name) {
            return Err(unknown());
        }
        Ok((name, key.id.as_str().to_string()))
    }

    async fn branch_history(
        &self,
        project: &ProjectName,
        branch: Option<String>,
    ) -> Result<(String, Snapshot), ApiError> {
        let branch = branch.unwrap_or_else(|| self.config.projects[project].default_branch.clone());
        let snapshot = super::load(
            self.ports.blobs.as_ref(),
            &super::snapshot_key(project.as_str(), &branch),
        )
        .await
        .map_err(|e| unavailable(&e))?
        .map(|(s, _)| s)
        .unwrap_or_else(|| Snapshot::new(&branch));
        Ok((branch, snapshot))
    }

    /// `GET /v1/projects/{p}/tests`.
    pub async fn tests(
        &self,
        authorization: Option<&str>,
        project: &str,
        raw_query: Option<&str>,
    ) -> Result<TestList, ApiError> {
        let (project, _) = self.project_access(authorization, project)?;
        let q = query(raw_query)?;
        let (branch, snapshot) = self.branch_history(&project, q.branch).await?;
        let quarantined = super::quarantine::ids(self.ports.state.as_ref(), project.as_str())
            .await
            .map_err(|e| unavailable(&e))?;
        let rate = self.config.projects[&project].history.flaky_flip_rate;
        let mut tests: Vec<TestSummary> = snapshot
            .tests
            .iter()
            .filter(|(_, h)| q.status.as_deref() != Some("failing") || h.failing())
            .map(|(id, h)| summary(&snapshot, id, h, rate, &quarantined))
            .filter(|t| q.status.as_deref() != Some("flaky") || t.flaky)
            .collect();
        tests.sort_by(|a, b| {
            b.flip_rate
                .unwrap_or(0.0)
                .total_cmp(&a.flip_rate.unwrap_or(0.0))
                .then_with(|| {
                    (&a.suite, &a.classname, &a.name).cmp(&(&b.suite, &b.classname, &b.name))
                })
        });
        let matching = tests.len();
        tests.truncate(q.limit);
        Ok(TestList {
            project: project.to_string(),
            branch,
            pipelines: snapshot.pipelines.len(),
            matching,
            tests,
        })
    }

    /// `GET /v1/projects/{p}/tests/{test_id}/history`.
    pub async fn test_history(
        &self,
        authorization: Option<&str>,
        project: &str,
        test_id: &str,
        raw_query: Option<&str>,
    ) -> Result<TestHistoryView, ApiError> {
        let (project, _) = self.project_access(authorization, project)?;
        super::quarantine::check_test_id(test_id)?;
        let q = query(raw_query)?;
        if q.status.is_some() || q.limit != DEFAULT_LIMIT {
            return Err(ApiError::bad_request(
                "only \"branch\" applies to a test's history",
            ));
        }
        let (branch, snapshot) = self.branch_history(&project, q.branch).await?;
        let h = snapshot.tests.get(test_id).ok_or_else(|| {
            ApiError::not_found(format!("no history of test {test_id} on branch {branch:?}"))
        })?;
        let quarantined = super::quarantine::ids(self.ports.state.as_ref(), project.as_str())
            .await
            .map_err(|e| unavailable(&e))?;
        let rate = self.config.projects[&project].history.flaky_flip_rate;
        let outcomes = snapshot
            .pipelines
            .iter()
            .enumerate()
            .rev()
            .filter(|(i, _)| h.at(*i) != snapshot::ABSENT)
            .map(|(i, e)| OutcomeView {
                status_url: format!("/v1/runs/{}", e.run_id),
                run_id: e.run_id.clone(),
                commit: e.commit.clone(),
                at: e.at.clone(),
                status: word(h.at(i)),
            })
            .collect();
        Ok(TestHistoryView {
            test: summary(&snapshot, test_id, h, rate, &quarantined),
            branch,
            outcomes,
        })
    }

    /// A test's name as the default branch's history knows it.
    pub(crate) async fn test_name(&self, project: &str, test_id: &str) -> Option<String> {
        let name = ProjectName::parse(project).ok()?;
        let (_, snapshot) = self.branch_history(&name, None).await.ok()?;
        snapshot.tests.get(test_id).map(|h| {
            [
                Some(h.suite.as_str()),
                h.classname.as_deref(),
                Some(h.name.as_str()),
            ]
            .into_iter()
            .flatten()
            .collect::<Vec<_>>()
            .join(" › ")
        })
    }
}
