//! Xray: step `execution` creates the Test Execution as a Jira issue labelled
//! `testrelay-run-<run id>` (a retry that cannot know whether an earlier try created it
//! searches for the label first); step `import` imports the results INTO that execution
//! (Cloud `/api/v2/import/execution`; Server/DC `/rest/raven/1.0/import/execution`, the
//! documented path, which older Xray versions have and newer ones keep), which Xray treats
//! as an update, so a repeated import changes nothing.
//!
//! Xray refuses a WHOLE import (400, "Test issue with key X not found") for one unknown
//! test key, so keys are checked first (Jira bulk fetch on Cloud, a JQL search on DC;
//! known keys cached for [`KEYS_TTL`]): unknown keys and keys of other issue types are left
//! out and named. Tests reporting one key (parametrised variants) become one test, the
//! worst outcome standing. Tests without a key are imported with `testInfo` when
//! `create_tests` is set, claimed once ever per definition so that two runs meeting a new
//! test at the same moment do not make Xray create it twice.
//!
//! Xray Cloud is its own service: its own rate limit (`xray:<origin>`) and breaker.

use super::Jira;
use crate::Base;
use crate::http::{json, permanent};
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashSet};
use std::time::Duration;
use testrelay_domain::config::{JiraConfig, JiraDeployment, XrayConfig};
use testrelay_domain::delivery::steps::{StepCall, Steps};
use testrelay_domain::ports::{DeliveryContext, DeliveryError, StepError};
use testrelay_domain::report::model::{Status, Suite, TestCase, TestRun};
use testrelay_domain::report::render;

/// Xray JSON comments per test are cut to this (less when the run is large).
pub const MAX_TEST_COMMENT: usize = 2000;
/// How long test keys found in Jira are taken as existing.
pub const KEYS_TTL: Duration = Duration::from_secs(300);

/// Xray Cloud's side of a Jira connector: its HTTP target and token.
pub struct XrayCloud {
    pub base: Base,
    credentials: Option<(SecretString, SecretString)>,
    token: tokio::sync::Mutex<Option<(SecretString, tokio::time::Instant)>>,
}

impl XrayCloud {
    pub fn new(base: Base, credentials: Option<(SecretString, SecretString)>) -> Self {
        XrayCloud {
            base,
            credentials,
            token: tokio::sync::Mutex::new(None),
        }
    }

    /// `Bearer <token>`, authenticating when the cached token is older than 50 minutes.
    pub async fn bearer(&self, x: &XrayConfig) -> Result<String, DeliveryError> {
        let mut cached = self.token.lock().await;
        if let Some((token, at)) = cached.as_ref()
            && at.elapsed() < Duration::from_secs(50 * 60)
        {
            return Ok(format!("Bearer {}", token.expose_secret()));
        }
        let (id, secret) = self
            .credentials
            .as_ref()
            .ok_or_else(|| permanent("xray: client_id and client_secret are not configured"))?;
        let request = self
            .base
            .http
            .client()
            .post(format!(
                "{}/api/v2/authenticate",
                x.url.trim_end_matches('/')
            ))
            .json(
                &json!({"client_id": id.expose_secret(), "client_secret": secret.expose_secret()}),
            );
        // The answer is a bare JSON string.
        let token: String = json(self.base.send(request).await?, "Xray").await?;
        let bearer = format!("Bearer {token}");
        *cached = Some((SecretString::from(token), tokio::time::Instant::now()));
        Ok(bearer)
    }

    fn failed(&self, e: DeliveryError) -> DeliveryError {
        e.from_target(self.base.target())
    }
}

/// What an import holds and leaves out.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Import {
    pub body: Value,
    /// Distinct test keys imported.
    pub keyed: usize,
    /// Tests imported with `testInfo` (created by Xray if new).
    pub created: usize,
    /// Tests without a key, not imported (`create_tests` off).
    pub unkeyed: usize,
    /// Keys Jira does not have as tests, not imported.
    pub unknown: Vec<String>,
}

impl Jira {
    pub(super) async fn execution(
        &self,
        run: &TestRun,
        ctx: &DeliveryContext,
        call: StepCall,
    ) -> Result<String, DeliveryError> {
        let label = run_label(run);
        if call.check_first
            && let Some(key) = self.find_labelled(&label).await?
        {
            return Ok(key);
        }
        let xray = self.c.xray.as_ref().expect("xray configured");
        self.create_issue(json!({
            "project": { "key": self.c.project_key },
            "issuetype": { "name": xray.execution_issue_type },
            "summary": render::cut(&format!("{} — {}", render::context(run), render::headline(run)), 250),
            "description": run_description(run, ctx),
            "labels": ["testrelay", label],
        }))
        .await
    }

    /// The keys among `keys` that Jira has as tests (of `test_issue_type`).
    async fn existing_tests(&self, keys: &[String]) -> Result<HashSet<String>, DeliveryError> {
        let x = self.c.xray.as_ref().expect("xray configured");
        let now = self.clock.now_ms();
        let mut known = self.known_tests.lock().await;
        if known
            .as_ref()
            .is_some_and(|(at, _)| now >= at + KEYS_TTL.as_millis() as u64)
        {
            *known = None;
        }
        let (_, cached) = known.get_or_insert_with(|| (now, HashSet::new()));
        let missing: Vec<&String> = keys.iter().filter(|k| !cached.contains(*k)).collect();
        for chunk in missing.chunks(100) {
            let found: Value = match self.c.deployment {
                JiraDeployment::Cloud => {
                    let request = self
                        .jira(reqwest::Method::POST, "/rest/api/3/issue/bulkfetch")
                        .json(&json!({"issueIdsOrKeys": chunk, "fields": ["issuetype"]}));
                    json(self.base.send(request).await?, "Jira").await?
                }
                JiraDeployment::DataCenter => {
                    let jql = format!(
                        "key in ({})",
                        chunk
                            .iter()
                            .map(|k| k.as_str())
                            .collect::<Vec<_>>()
                            .join(",")
                    );
                    // `warn`: an unknown key is a warning, not a 400 for the whole query.
                    let request = self
                        .jira(reqwest::Method::GET, "/rest/api/2/search")
                        .query(&[
                            ("jql", jql.as_str()),
                            ("fields", "issuetype"),
                            ("maxResults", "100"),
                            ("validateQuery", "warn"),
                        ]);
                    json(self.base.send(request).await?, "Jira").await?
                }
            };
            for issue in found["issues"].as_array().into_iter().flatten() {
                if issue["fields"]["issuetype"]["name"].as_str() == Some(&x.test_issue_type)
                    && let Some(key) = issue["key"].as_str()
                {
                    cached.insert(key.to_string());
                }
            }
        }
        Ok(keys
            .iter()
            .filter(|k| cached.contains(*k))
            .cloned()
            .collect())
    }

    /// The Test Execution and its import; the delivery status part.
    pub(super) async fn deliver_xray(
        &self,
        run: &TestRun,
        ctx: &DeliveryContext,
        steps: &Steps,
    ) -> Result<(String, bool), StepError> {
        let x = self.c.xray.as_ref().expect("xray configured");
        let exec = match &run.meta.pipeline {
            // One Test Execution per pipeline, created by its first part to get here.
            Some(p) => {
                let key = format!("xray-pipeline/{}/{}/{}", self.name, run.meta.project, p.id);
                let (key, created) = crate::claim::once_ever(
                    self.state.as_ref(),
                    self.clock.as_ref(),
                    &key,
                    &run.run_id.to_string(),
                    |taken_over| async move {
                        let step = steps
                            .once("execution", |call| {
                                let check_first = call.check_first || taken_over;
                                self.execution(run, ctx, StepCall { check_first })
                            })
                            .await?;
                        Ok(step.value)
                    },
                )
                .await?;
                testrelay_domain::delivery::steps::StepResult {
                    value: key,
                    resumed: !created,
                }
            }
            None => {
                steps
                    .once("execution", |call| self.execution(run, ctx, call))
                    .await?
            }
        };
        let keys: Vec<String> = keyed(run).into_keys().collect();
        let known = self.existing_tests(&keys).await?;
        // New tests, claimed in one order (see `claim::claim`) before the import creates them.
        let mut mine = Vec::new();
        if x.create_tests {
            let owner = run.run_id.to_string();
            let definitions: Vec<String> = unkeyed(run)
                .map(|(s, c)| render::automation_id(s, c))
                .collect::<std::collections::BTreeSet<_>>()
                .into_iter()
                .collect();
            for d in definitions {
                let key = format!("xray-test/{}/{}", self.name, crate::digest8(&d));
                let claimed =
                    crate::claim::claim(self.state.as_ref(), self.clock.as_ref(), &key, &owner)
                        .await?;
                if matches!(claimed, crate::claim::Claimed::Mine { .. }) {
                    mine.push(key);
                }
            }
        }
        let import = xray_import(run, &exec.value, &self.c, &known);
        let imported = steps
            .once("import", |_| self.import(&import.body, &exec.value))
            .await?;
        for key in &mine {
            crate::claim::complete(
                self.state.as_ref(),
                key,
                &run.run_id.to_string(),
                &exec.value,
            )
            .await?;
        }
        let mut r = format!("execution {} ({} tests", exec.value, import.keyed);
        if import.created > 0 {
            r.push_str(&format!(
                "; {} by definition, created if new",
                import.created
            ));
        }
        if import.unkeyed > 0 {
            r.push_str(&format!(
                "; {} without a test key, not imported",
                import.unkeyed
            ));
        }
        if !import.unknown.is_empty() {
            let shown: Vec<&str> = import.unknown.iter().take(10).map(String::as_str).collect();
            let more = import.unknown.len().saturating_sub(shown.len());
            r.push_str(&format!(
                "; {} test keys Jira does not have as tests, not imported: {}{}",
                import.unknown.len(),
                shown.join(", "),
                if more > 0 {
                    format!(" and {more} more")
                } else {
                    String::new()
                }
            ));
        }
        Ok((r + ")", exec.resumed && imported.resumed))
    }

    async fn import(&self, body: &Value, execution: &str) -> Result<String, DeliveryError> {
        let x = self.c.xray.as_ref().expect("xray configured");
        match (&self.xray_cloud, self.c.deployment) {
            (Some(cloud), JiraDeployment::Cloud) => {
                let bearer = cloud.bearer(x).await.map_err(|e| cloud.failed(e))?;
                let request = cloud
                    .base
                    .http
                    .client()
                    .post(format!(
                        "{}/api/v2/import/execution",
                        x.url.trim_end_matches('/')
                    ))
                    .header(reqwest::header::AUTHORIZATION, bearer)
                    .json(body);
                cloud
                    .base
                    .send(request)
                    .await
                    .map_err(|e| cloud.failed(e))?;
            }
            _ => {
                let request = self
                    .jira(reqwest::Method::POST, "/rest/raven/1.0/import/execution")
                    .json(body);
                self.base.send(request).await?;
            }
        }
        Ok(execution.to_string())
    }
}

/// The label a created Test Execution carries, for a retry to find it: the pipeline's for a
/// pipeline's execution, else the run's.
pub(super) fn run_label(run: &TestRun) -> String {
    match &run.meta.pipeline {
        Some(p) => format!(
            "testrelay-pipeline-{}",
            crate::digest8(&format!("{}/{}", run.meta.project, p.id))
        ),
        None => format!(
            "testrelay-run-{}",
            run.run_id.to_string().to_ascii_lowercase()
        ),
    }
}

/// Jira wiki markup.
fn run_description(run: &TestRun, ctx: &DeliveryContext) -> String {
    let m = &run.meta;
    let mut d = vec![format!("*{}*", render::headline(run)), render::counts(run)];
    d.extend(m.branch.as_ref().map(|b| format!("Branch: {b}")));
    d.extend(m.commit.as_ref().map(|c| format!("Commit: {c}")));
    d.extend(m.build_url.as_ref().map(|b| format!("Build: [{b}]")));
    d.push(format!("Run status: {}", ctx.status_url));
    d.join("\n")
}

/// A Jira issue key a test names: `PROJ-123: title` / `PROJ-123 title`, or the properties
/// `test_key` / `test_id`.
pub fn test_key(case: &TestCase) -> Option<String> {
    for p in ["test_key", "test_id"] {
        if let Some(v) = case.property(p).map(str::trim).filter(|v| is_issue_key(v)) {
            return Some(v.to_string());
        }
    }
    let first = case.name.split([':', ' ']).next()?;
    is_issue_key(first).then(|| first.to_string())
}

fn is_issue_key(s: &str) -> bool {
    let Some((project, number)) = s.split_once('-') else {
        return false;
    };
    project.len() >= 2
        && project.starts_with(|c: char| c.is_ascii_uppercase())
        && project
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_')
        && !number.is_empty()
        && number.bytes().all(|b| b.is_ascii_digit())
}

/// Tests by the key they report on, in key order.
fn keyed(run: &TestRun) -> BTreeMap<String, Vec<&TestCase>> {
    let mut by_key: BTreeMap<String, Vec<&TestCase>> = BTreeMap::new();
    for case in run.report.cases() {
        if let Some(key) = test_key(case) {
            by_key.entry(key).or_default().push(case);
        }
    }
    by_key
}

fn unkeyed(run: &TestRun) -> impl Iterator<Item = (&Suite, &TestCase)> {
    run.report
        .cases_in_suites()
        .filter(|(_, c)| test_key(c).is_none())
}

/// The Xray JSON import of a run into an existing Test Execution: one test per key in
/// `known` (the worst of its variants), `testInfo` tests for unkeyed ones when
/// `create_tests` is set.
pub fn xray_import(
    run: &TestRun,
    execution: &str,
    c: &JiraConfig,
    known: &HashSet<String>,
) -> Import {
    let cloud = c.deployment == JiraDeployment::Cloud;
    let x = c.xray.as_ref();
    let create = x.is_some_and(|x| x.create_tests);
    let mut import = Import::default();
    let mut entries: Vec<(Vec<&TestCase>, Option<Value>)> = Vec::new();
    for (key, cases) in keyed(run) {
        if known.contains(&key) {
            entries.push((cases, Some(json!({ "testKey": key }))));
        } else {
            import.unknown.push(key);
        }
    }
    import.keyed = entries.len();
    for (suite, case) in unkeyed(run) {
        if !create {
            import.unkeyed += 1;
            continue;
        }
        let info = json!({ "testInfo": {
            "projectKey": c.project_key,
            "summary": render::cut(&case.name, 250),
            "type": "Generic",
            "definition": render::automation_id(suite, case),
        }});
        entries.push((vec![case], Some(info)));
        import.created += 1;
    }
    // Keep the whole import within a few MB however many tests fail.
    let room = (4_000_000 / entries.len().max(1)).clamp(200, MAX_TEST_COMMENT);
    let tests: Vec<Value> = entries
        .into_iter()
        .filter_map(|(cases, t)| {
            let mut t = t?;
            let pairs: Vec<(&TestCase, ())> = cases.iter().map(|c| (*c, ())).collect();
            let (case, ()) = render::worst(&pairs);
            t["status"] = json!(status(case.status, cloud));
            let mut comment = Vec::new();
            if cases.len() > 1 {
                comment.push(render::variants(cases.iter().copied()));
            }
            comment.extend(render::retry_note(case));
            comment.extend(case.message.clone());
            comment.extend(case.trace.clone());
            if !comment.is_empty() {
                t["comment"] = json!(render::cut(&comment.join("\n"), room));
            }
            Some(t)
        })
        .collect();
    let mut info = json!({
        "summary": render::cut(&format!("{} — {}", render::context(run), render::headline(run)), 250),
        "description": render::counts(run),
        "startDate": run.received_at,
        "finishDate": run.received_at,
    });
    if let Some(commit) = &run.meta.commit {
        info["revision"] = json!(commit);
    }
    if let Some(plan) = x.and_then(|x| x.test_plan_key.as_ref()) {
        info["testPlanKey"] = json!(plan);
    }
    if let Some(envs) = x.map(|x| &x.environments).filter(|e| !e.is_empty()) {
        info["testEnvironments"] = json!(envs);
    }
    import.body = json!({ "testExecutionKey": execution, "info": info, "tests": tests });
    import
}

/// Xray's status names: Cloud `PASSED|FAILED|TODO`, Server/DC `PASS|FAIL|TODO`.
fn status(s: Status, cloud: bool) -> &'static str {
    match (s, cloud) {
        (Status::Passed | Status::Flaky, true) => "PASSED",
        (Status::Failed | Status::Error, true) => "FAILED",
        (Status::Skipped, _) => "TODO",
        (Status::Passed | Status::Flaky, false) => "PASS",
        (Status::Failed | Status::Error, false) => "FAIL",
    }
}
