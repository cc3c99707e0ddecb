//! Jira: Xray Test Executions and bugs for failing tests.
//!
//! Xray: step `execution` creates the Test Execution as a Jira issue labelled
//! `testrelay-run-<run id>` (a retry that cannot know whether an earlier try created it
//! searches for the label first); step `import` imports the results INTO that execution
//! (Cloud `/api/v2/import/execution`, Server/DC `/rest/raven/2.0/import/execution`), which
//! Xray treats as an update, so a repeated import changes nothing.
//!
//! Bugs: one per failure fingerprint (project + test identity + error class), ever. The
//! fingerprint -> issue key record lives in the state store (Jira's search is eventually
//! consistent and cannot prevent a duplicate created seconds ago); it is claimed before the
//! bug is created, so two runs failing the same way at once open one bug. The issue is
//! labelled with the fingerprint; a later run with the same failure comments instead.

use crate::http::{json, permanent};
use crate::{Base, Env, origin, parse_url};
use async_trait::async_trait;
use base64::Engine;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;
use testrelay_domain::config::{ConnectorConfig, JiraConfig, JiraDeployment};
use testrelay_domain::ids::ConnectorName;
use testrelay_domain::model::{Status, Suite, TestCase, TestRun};
use testrelay_domain::ports::{
    Clock, Connector, Delivered, DeliveryContext, DeliveryError, Probe, StateStore, StepError,
};
use testrelay_domain::render;
use testrelay_domain::steps::{StepCall, Steps};

/// Xray JSON comments per test are cut to this (less when the run is large).
pub const MAX_TEST_COMMENT: usize = 2000;

pub struct Jira {
    base: Base,
    name: ConnectorName,
    url: String,
    /// The whole `Authorization` value (it holds the token).
    auth: SecretString,
    c: JiraConfig,
    xray_credentials: Option<(SecretString, SecretString)>,
    xray_token: tokio::sync::Mutex<Option<(SecretString, tokio::time::Instant)>>,
    state: Arc<dyn StateStore>,
    clock: Arc<dyn Clock>,
}

#[derive(Deserialize)]
struct Created {
    key: String,
}

impl Jira {
    pub fn new(
        name: &ConnectorName,
        cfg: &ConnectorConfig,
        c: &JiraConfig,
        token: SecretString,
        xray_credentials: Option<(SecretString, SecretString)>,
        env: &Env,
    ) -> Result<Self, String> {
        let url = parse_url(&c.url, "url")?;
        let auth = SecretString::from(match c.deployment {
            JiraDeployment::Cloud => {
                let email = c.email.as_deref().unwrap_or_default();
                let pair = format!("{email}:{}", token.expose_secret());
                format!(
                    "Basic {}",
                    base64::engine::general_purpose::STANDARD.encode(pair)
                )
            }
            JiraDeployment::DataCenter => format!("Bearer {}", token.expose_secret()),
        });
        Ok(Jira {
            base: Base::new(env.http.clone(), format!("jira:{}", origin(&url)), cfg),
            name: name.clone(),
            url: c.url.trim_end_matches('/').to_string(),
            auth,
            c: c.clone(),
            xray_credentials,
            xray_token: tokio::sync::Mutex::new(None),
            state: env.state.clone(),
            clock: env.clock.clone(),
        })
    }

    fn jira(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.base
            .http
            .client()
            .request(method, format!("{}{path}", self.url))
            .header(reqwest::header::AUTHORIZATION, self.auth.expose_secret())
            .header(reqwest::header::ACCEPT, "application/json")
    }

    async fn create_issue(&self, fields: Value) -> Result<String, DeliveryError> {
        let request = self
            .jira(reqwest::Method::POST, "/rest/api/2/issue")
            .json(&json!({ "fields": fields }));
        let created: Created = json(self.base.send(request).await?, "Jira").await?;
        Ok(created.key)
    }

    /// The key of an issue of this project carrying `label`, if Jira's search finds one.
    async fn find_labelled(&self, label: &str) -> Result<Option<String>, DeliveryError> {
        let jql = format!(
            "project = \"{}\" AND labels = \"{label}\"",
            self.c.project_key
        );
        let path = match self.c.deployment {
            JiraDeployment::Cloud => "/rest/api/3/search/jql",
            JiraDeployment::DataCenter => "/rest/api/2/search",
        };
        let request = self.jira(reqwest::Method::GET, path).query(&[
            ("jql", jql.as_str()),
            ("fields", "key"),
            ("maxResults", "1"),
        ]);
        let found: Value = json(self.base.send(request).await?, "Jira").await?;
        Ok(found["issues"][0]["key"].as_str().map(str::to_string))
    }

    // ---- Xray ----

    async fn execution(
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

    async fn xray_bearer(&self) -> Result<String, DeliveryError> {
        let mut cached = self.xray_token.lock().await;
        if let Some((token, at)) = cached.as_ref()
            && at.elapsed() < Duration::from_secs(50 * 60)
        {
            return Ok(format!("Bearer {}", token.expose_secret()));
        }
        let (id, secret) = self
            .xray_credentials
            .as_ref()
            .ok_or_else(|| permanent("xray: client_id and client_secret are not configured"))?;
        let xray = self.c.xray.as_ref().expect("xray configured");
        let request = self
            .base
            .http
            .client()
            .post(format!(
                "{}/api/v2/authenticate",
                xray.url.trim_end_matches('/')
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

    async fn import(&self, run: &TestRun, execution: &str) -> Result<String, DeliveryError> {
        let xray = self.c.xray.as_ref().expect("xray configured");
        let body = xray_import(run, execution, &self.c);
        let request = match self.c.deployment {
            JiraDeployment::Cloud => self
                .base
                .http
                .client()
                .post(format!(
                    "{}/api/v2/import/execution",
                    xray.url.trim_end_matches('/')
                ))
                .header(reqwest::header::AUTHORIZATION, self.xray_bearer().await?),
            JiraDeployment::DataCenter => {
                self.jira(reqwest::Method::POST, "/rest/raven/2.0/import/execution")
            }
        };
        self.base.send(request.json(&body)).await?;
        Ok(execution.to_string())
    }

    // ---- Bugs ----

    fn bug_key(&self, fingerprint: &str) -> String {
        format!("jira-bug/{}/{fingerprint}", self.name)
    }

    /// The fingerprint's bug and whether this run created it (see [`crate::claim`]).
    async fn bug(
        &self,
        run: &TestRun,
        ctx: &DeliveryContext,
        failure: (&Suite, &TestCase),
        fingerprint: &str,
        steps: &Steps,
    ) -> Result<(String, bool), StepError> {
        crate::claim::once_ever(
            self.state.as_ref(),
            self.clock.as_ref(),
            &self.bug_key(fingerprint),
            &run.run_id.to_string(),
            || async {
                let step = steps
                    .once(&format!("bug/{fingerprint}"), |call| {
                        self.create_bug(run, ctx, failure, fingerprint, call)
                    })
                    .await?;
                Ok(step.value)
            },
        )
        .await
    }

    async fn create_bug(
        &self,
        run: &TestRun,
        ctx: &DeliveryContext,
        (suite, case): (&Suite, &TestCase),
        fingerprint: &str,
        _call: StepCall,
    ) -> Result<String, DeliveryError> {
        let label = format!("testrelay-fp-{fingerprint}");
        // Whoever held the claim before may have created the bug and crashed: the label
        // finds it (a claim taken over is always an earlier try's).
        if let Some(key) = self.find_labelled(&label).await? {
            return Ok(key);
        }
        let bugs = self.c.bugs.as_ref().expect("bugs configured");
        let mut labels = vec!["testrelay".to_string(), label];
        labels.extend(bugs.labels.iter().cloned());
        let mut fields = json!({
            "project": { "key": self.c.project_key },
            "issuetype": { "name": bugs.issue_type },
            "summary": render::cut(&format!("Test failing: {}", render::title(suite, case)), 250),
            "description": bug_description(run, ctx, case),
            "labels": labels,
        });
        if let Some(p) = &bugs.priority {
            fields["priority"] = json!({ "name": p });
        }
        self.create_issue(fields).await
    }

    async fn comment(
        &self,
        issue: &str,
        run: &TestRun,
        ctx: &DeliveryContext,
        case: &TestCase,
        call: StepCall,
    ) -> Result<String, DeliveryError> {
        if call.check_first {
            // An earlier try may have commented: its comment names this run's status URL.
            let request = self.jira(
                reqwest::Method::GET,
                &format!("/rest/api/2/issue/{issue}/comment?orderBy=-created&maxResults=50"),
            );
            let listed: Value = json(self.base.send(request).await?, "Jira").await?;
            let found = listed["comments"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|c| {
                    c["body"]
                        .as_str()
                        .is_some_and(|b| b.contains(&ctx.status_url))
                });
            if let Some(c) = found {
                return Ok(c["id"].as_str().unwrap_or_default().to_string());
            }
        }
        let body = format!(
            "Failed again in {} ({}).\n{}",
            render::context(run),
            ctx.status_url,
            render::reason(case, 1000).unwrap_or_default()
        );
        let request = self
            .jira(
                reqwest::Method::POST,
                &format!("/rest/api/2/issue/{issue}/comment"),
            )
            .json(&json!({ "body": body }));
        let c: Value = json(self.base.send(request).await?, "Jira").await?;
        Ok(c["id"].as_str().unwrap_or_default().to_string())
    }
}

#[async_trait]
impl Connector for Jira {
    crate::basics!(Jira);

    async fn deliver(
        &self,
        run: &TestRun,
        ctx: &DeliveryContext,
        steps: &Steps,
    ) -> Result<Delivered, StepError> {
        let mut resumed = true;
        let mut refs = Vec::new();
        if self.c.xray.is_some() {
            let exec = steps
                .once("execution", |call| self.execution(run, ctx, call))
                .await?;
            let imported = steps
                .once("import", |_| self.import(run, &exec.value))
                .await?;
            resumed &= exec.resumed && imported.resumed;
            let (keyed, unkeyed) = keyed_tests(run);
            let mut r = format!("execution {} ({keyed} tests", exec.value);
            if unkeyed > 0 {
                r.push_str(&format!("; {unkeyed} without a test key, not imported"));
            }
            refs.push(r + ")");
        }
        if let Some(bugs) = &self.c.bugs {
            let mut opened = Vec::new();
            let mut commented = 0;
            for failure in render::failures(run).take(bugs.max_per_run) {
                let fp = fingerprint(&self.c.project_key, failure.0, failure.1);
                let (issue, ours) = self.bug(run, ctx, failure, &fp, steps).await?;
                if ours {
                    opened.push(issue);
                } else {
                    let step = steps
                        .once(&format!("comment/{fp}"), |call| {
                            self.comment(&issue, run, ctx, failure.1, call)
                        })
                        .await?;
                    resumed &= step.resumed;
                    commented += 1;
                }
            }
            refs.push(format!(
                "bugs opened: {}; commented: {commented}",
                if opened.is_empty() {
                    "none".into()
                } else {
                    opened.join(", ")
                }
            ));
        }
        Ok(Delivered {
            status_code: Some(200),
            external_ref: Some(format!("jira: {}", refs.join("; "))),
            resumed,
        })
    }

    async fn probe(&self) -> Result<Probe, DeliveryError> {
        crate::http::unlimited(async {
            let request = self.jira(reqwest::Method::GET, "/rest/api/2/myself");
            let me: Value = json(self.base.send(request).await?, "Jira").await?;
            if self.c.xray.is_some() && self.c.deployment == JiraDeployment::Cloud {
                self.xray_bearer().await?;
            }
            Ok(Probe {
                check: "GET /rest/api/2/myself".into(),
                detail: me["displayName"].as_str().map(str::to_string),
            })
        })
        .await
    }
}

fn run_label(run: &TestRun) -> String {
    format!(
        "testrelay-run-{}",
        run.run_id.to_string().to_ascii_lowercase()
    )
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

fn bug_description(run: &TestRun, ctx: &DeliveryContext, case: &TestCase) -> String {
    let mut d = vec![format!(
        "Failing since {} ({}).",
        render::context(run),
        ctx.status_url
    )];
    if let Some(m) = &case.message {
        d.push(format!(
            "*Message*\n{{noformat}}{}{{noformat}}",
            render::cut(m, 2000)
        ));
    }
    if let Some(t) = &case.trace {
        d.push(format!(
            "*Trace*\n{{noformat}}{}{{noformat}}",
            render::cut(t, 8000)
        ));
    }
    if let Some(b) = &run.meta.build_url {
        d.push(format!("Build: [{b}]"));
    }
    d.join("\n\n")
}

/// A stable identity for "this test failing this way": project, suite, classname, name and
/// the error class (the message's leading `SomethingError` / `Exception` word, else its
/// first line with digits removed, so changing numbers do not make a new bug).
pub fn fingerprint(project: &str, suite: &Suite, case: &TestCase) -> String {
    use sha2::Digest;
    let class = error_class(case);
    let identity = format!(
        "{project}\n{}\n{}\n{}\n{class}",
        suite.name,
        case.classname.as_deref().unwrap_or(""),
        case.name
    );
    hex::encode(&sha2::Sha256::digest(identity.as_bytes())[..8])
}

fn error_class(case: &TestCase) -> String {
    let text = case
        .message
        .as_deref()
        .or(case.trace.as_deref())
        .unwrap_or("");
    let first = text
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or("");
    let word = first
        .split(|c: char| c == ':' || c.is_whitespace())
        .next()
        .unwrap_or("");
    if word.ends_with("Error") || word.ends_with("Exception") {
        return word.to_string();
    }
    render::cut(first, 200)
        .chars()
        .filter(|c| !c.is_ascii_digit())
        .collect()
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

fn keyed_tests(run: &TestRun) -> (usize, usize) {
    let keyed = run.report.cases().filter(|c| test_key(c).is_some()).count();
    (keyed, run.summary.total as usize - keyed)
}

/// The Xray JSON import of a run into an existing Test Execution.
pub fn xray_import(run: &TestRun, execution: &str, c: &JiraConfig) -> Value {
    let cloud = c.deployment == JiraDeployment::Cloud;
    let keyed: Vec<(&TestCase, String)> = run
        .report
        .cases()
        .filter_map(|case| Some((case, test_key(case)?)))
        .collect();
    // Keep the whole import within a few MB however many tests fail.
    let room = (4_000_000 / keyed.len().max(1)).clamp(200, MAX_TEST_COMMENT);
    let tests: Vec<Value> = keyed
        .iter()
        .map(|(case, key)| {
            let status = match (case.status, cloud) {
                (Status::Passed | Status::Flaky, true) => "PASSED",
                (Status::Failed | Status::Error, true) => "FAILED",
                (Status::Skipped, _) => "TODO",
                (Status::Passed | Status::Flaky, false) => "PASS",
                (Status::Failed | Status::Error, false) => "FAIL",
            };
            let mut t = json!({ "testKey": key, "status": status });
            let mut comment = Vec::new();
            comment.extend(render::retry_note(case));
            comment.extend(case.message.clone());
            comment.extend(case.trace.clone());
            if !comment.is_empty() {
                t["comment"] = json!(render::cut(&comment.join("\n"), room));
            }
            t
        })
        .collect();
    let xray = c.xray.as_ref();
    let mut info = json!({
        "summary": render::cut(&format!("{} — {}", render::context(run), render::headline(run)), 250),
        "description": render::counts(run),
        "startDate": run.received_at,
        "finishDate": run.received_at,
    });
    if let Some(commit) = &run.meta.commit {
        info["revision"] = json!(commit);
    }
    if let Some(plan) = xray.and_then(|x| x.test_plan_key.as_ref()) {
        info["testPlanKey"] = json!(plan);
    }
    if let Some(envs) = xray.map(|x| &x.environments).filter(|e| !e.is_empty()) {
        info["testEnvironments"] = json!(envs);
    }
    json!({ "testExecutionKey": execution, "info": info, "tests": tests })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_keys_and_fingerprints() {
        assert_eq!(
            test_key(&TestCase::new("PROJ-12: logs in", Status::Passed)).as_deref(),
            Some("PROJ-12")
        );
        assert_eq!(test_key(&TestCase::new("logs in", Status::Passed)), None);
        assert_eq!(
            test_key(&TestCase::new("utf-8 works", Status::Passed)),
            None
        );
        let suite = Suite {
            name: "s".into(),
            file: None,
            duration_ms: None,
            properties: vec![],
            cases: vec![],
        };
        let mut a = TestCase::new("t", Status::Failed);
        a.message = Some("AssertionError: expected 1 to be 2".into());
        let mut b = a.clone();
        b.message = Some("AssertionError: expected 3 to be 4".into());
        let mut c = a.clone();
        c.message = Some("TimeoutError: 30000 ms".into());
        assert_eq!(fingerprint("P", &suite, &a), fingerprint("P", &suite, &b));
        assert_ne!(fingerprint("P", &suite, &a), fingerprint("P", &suite, &c));
        assert_ne!(fingerprint("P", &suite, &a), fingerprint("Q", &suite, &a));
    }
}
