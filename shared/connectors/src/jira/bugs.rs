//! Bugs for failing tests: one per failure fingerprint (project + test identity + error
//! class). The fingerprint -> issue key record lives in the state store (Jira's search is
//! eventually consistent and cannot prevent a duplicate created seconds ago); it is claimed
//! before the bug is created, so two runs failing the same way at once open one bug. The
//! issue is labelled with the fingerprint; a later run with the same failure comments.
//!
//! With the run classified against its base (`file_for = "new_failures"`, the default), only
//! NEW failures file or comment: a test already failing on the base has its bug, flaky and
//! quarantined tests get none. A NEW failure whose bug is Done is a regression: the bug is
//! reopened (the first transition out of the Done category, "Reopen" preferred), or with
//! `on_regression = "new_linked"` a new bug is filed that relates to it (each fingerprint's
//! chain of bugs is followed to its latest). A test the run FIXED gets "passing again in
//! <run>" on its bug.

use super::Jira;
use crate::http::json;
use serde_json::{Value, json};
use testrelay_domain::config::{BugsConfig, FileFor, OnRegression};
use testrelay_domain::delivery::steps::{StepCall, Steps};
use testrelay_domain::history::Class;
use testrelay_domain::ports::{DeliveryContext, DeliveryError, StepError};
use testrelay_domain::report::model::{Suite, TestCase, TestRun};
use testrelay_domain::report::render;

const REOPENED: &str = "reopened";

/// Bugs a fingerprint's chain (a bug, the bug filed after it regressed, ...) is followed for.
const MAX_CHAIN: usize = 20;

/// What the bugs part of a delivery did.
#[derive(Default)]
pub(super) struct Filed {
    pub opened: Vec<String>,
    pub commented: usize,
    pub reopened: Vec<String>,
    pub fixed: usize,
    pub resumed: bool,
}

impl Filed {
    pub fn describe(&self) -> String {
        let list = |v: &[String]| {
            if v.is_empty() {
                "none".to_string()
            } else {
                v.join(", ")
            }
        };
        let mut s = format!(
            "bugs opened: {}; commented: {}",
            list(&self.opened),
            self.commented
        );
        if !self.reopened.is_empty() {
            s.push_str(&format!("; reopened: {}", list(&self.reopened)));
        }
        if self.fixed > 0 {
            s.push_str(&format!("; passing again: {}", self.fixed));
        }
        s
    }
}

impl Jira {
    pub(super) async fn file_bugs(
        &self,
        run: &TestRun,
        ctx: &DeliveryContext,
        steps: &Steps,
        bugs: &BugsConfig,
    ) -> Result<Filed, StepError> {
        let mut filed = Filed {
            resumed: true,
            ..Filed::default()
        };
        let new_only = bugs.file_for == FileFor::NewFailures && run.changes.is_some();
        let failures = render::classified_failures(run)
            .into_iter()
            .filter(|(_, _, class)| !new_only || *class == Some(Class::New))
            .take(bugs.max_per_run);
        for (suite, case, _) in failures {
            let fp = fingerprint(&self.c.project_key, suite, case);
            let (first, ours) = self.bug(run, ctx, (suite, case), &fp, steps).await?;
            let test = test_key(suite, case);
            if ours {
                self.remember(&test, &first).await?;
                filed.opened.push(first);
                continue;
            }
            let issue = self.latest(&fp, first).await?;
            let issue = match self
                .regression(run, ctx, (suite, case), &fp, &issue, steps, bugs)
                .await?
            {
                Some(Regressed::Reopened) => {
                    filed.reopened.push(issue.clone());
                    issue
                }
                Some(Regressed::Filed(new)) => {
                    filed.opened.push(new.clone());
                    self.remember(&test, &new).await?;
                    continue;
                }
                None => issue,
            };
            self.remember(&test, &issue).await?;
            let body = format!(
                "Failed again in {} ({}).\n{}",
                where_(run),
                ctx.status_url,
                render::reason(case, 1000).unwrap_or_default()
            );
            let step = steps
                .once(&format!("comment/{fp}"), |call| {
                    self.comment(&issue, &body, ctx, call)
                })
                .await?;
            filed.resumed &= step.resumed;
            filed.commented += 1;
        }
        if bugs.comment_when_fixed
            && let Some(changes) = &run.changes
        {
            let fixed = changes.tests.iter().filter(|t| t.class == Class::Fixed);
            for t in fixed.take(bugs.max_per_run) {
                let test = format!(
                    "{}\n{}\n{}",
                    t.suite,
                    t.classname.as_deref().unwrap_or(""),
                    t.name
                );
                let Some(issue) = self
                    .state
                    .load(&self.test_key(&test))
                    .await?
                    .map(|v| v.value)
                else {
                    continue;
                };
                let body = format!("Passing again in {} ({}).", where_(run), ctx.status_url);
                let step = steps
                    .once(&format!("fixed/{}", crate::digest8(&test)), |call| {
                        self.comment(&issue, &body, ctx, call)
                    })
                    .await?;
                filed.resumed &= step.resumed;
                filed.fixed += 1;
            }
        }
        Ok(filed)
    }

    fn bug_key(&self, fingerprint: &str) -> String {
        format!("jira-bug/{}/{fingerprint}", self.name)
    }

    /// The record of the bug filed after `issue` regressed (`new_linked`).
    fn after_key(&self, fingerprint: &str, issue: &str) -> String {
        format!("jira-bug/{}/{fingerprint}/after/{issue}", self.name)
    }

    /// The record of a test's latest bug (for "passing again" comments).
    fn test_key(&self, test: &str) -> String {
        format!("jira-test/{}/{}", self.name, crate::digest8(test))
    }

    /// Records `issue` as `test`'s latest bug (the last writer wins: any of them is right).
    async fn remember(&self, test: &str, issue: &str) -> Result<(), StepError> {
        let key = self.test_key(test);
        for _ in 0..8 {
            let current = self.state.load(&key).await?;
            if current.as_ref().is_some_and(|c| c.value == issue) {
                return Ok(());
            }
            if self
                .state
                .save(&key, issue, current.map(|c| c.version))
                .await?
            {
                return Ok(());
            }
        }
        Ok(())
    }

    /// The latest bug of `fingerprint`'s chain, starting at its first.
    async fn latest(&self, fingerprint: &str, first: String) -> Result<String, StepError> {
        let mut issue = first;
        for _ in 0..MAX_CHAIN {
            match crate::claim::reference(self.state.as_ref(), &self.after_key(fingerprint, &issue))
                .await?
            {
                Some(next) => issue = next,
                None => break,
            }
        }
        Ok(issue)
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
        let label = format!("testrelay-fp-{fingerprint}");
        crate::claim::once_ever(
            self.state.as_ref(),
            self.clock.as_ref(),
            &self.bug_key(fingerprint),
            &run.run_id.to_string(),
            // The bug's label finds what an earlier holder created (`create_bug`).
            |_| async {
                let step = steps
                    .once(&format!("bug/{fingerprint}"), |_| {
                        self.create_bug(run, ctx, failure, &label, None)
                    })
                    .await?;
                Ok(step.value)
            },
        )
        .await
    }

    /// A NEW failure whose bug is Done: reopened, or a new bug filed after it.
    #[allow(clippy::too_many_arguments)]
    async fn regression(
        &self,
        run: &TestRun,
        ctx: &DeliveryContext,
        failure: (&Suite, &TestCase),
        fingerprint: &str,
        issue: &str,
        steps: &Steps,
        bugs: &BugsConfig,
    ) -> Result<Option<Regressed>, StepError> {
        if run.changes.is_none() {
            return Ok(None);
        }
        let request = self.jira(
            reqwest::Method::GET,
            &format!("/rest/api/2/issue/{issue}?fields=status"),
        );
        let found: Value = json(self.base.send(request).await?, "Jira").await?;
        if found["fields"]["status"]["statusCategory"]["key"] != "done" {
            return Ok(None);
        }
        match bugs.on_regression {
            OnRegression::Reopen => {
                let step = steps
                    .once(&format!("reopen/{fingerprint}/{issue}"), |_| {
                        self.reopen(issue)
                    })
                    .await?;
                Ok((step.value == REOPENED).then_some(Regressed::Reopened))
            }
            OnRegression::NewLinked => {
                let label = format!("testrelay-fp-{fingerprint}-after-{issue}");
                let (new, _) = crate::claim::once_ever(
                    self.state.as_ref(),
                    self.clock.as_ref(),
                    &self.after_key(fingerprint, issue),
                    &run.run_id.to_string(),
                    |_| async {
                        let step = steps
                            .once(&format!("bug/{fingerprint}/after/{issue}"), |_| {
                                self.create_bug(run, ctx, failure, &label, Some(issue))
                            })
                            .await?;
                        Ok(step.value)
                    },
                )
                .await?;
                Ok(Some(Regressed::Filed(new)))
            }
        }
    }

    /// Moves `issue` out of Done by the first transition that leads out of the Done
    /// category ("Reopen" preferred): [`REOPENED`], or `kept` when its workflow offers none.
    async fn reopen(&self, issue: &str) -> Result<String, DeliveryError> {
        let request = self.jira(
            reqwest::Method::GET,
            &format!("/rest/api/2/issue/{issue}/transitions"),
        );
        let listed: Value = json(self.base.send(request).await?, "Jira").await?;
        let transitions = listed["transitions"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let open = |t: &&Value| t["to"]["statusCategory"]["key"] != "done";
        let chosen = transitions
            .iter()
            .filter(open)
            .find(|t| {
                t["name"]
                    .as_str()
                    .is_some_and(|n| n.to_lowercase().contains("reopen"))
            })
            .or_else(|| transitions.iter().find(open));
        let Some(id) = chosen.and_then(|t| t["id"].as_str()) else {
            tracing::warn!(issue, "no transition leads out of Done; commenting only");
            return Ok("kept".into());
        };
        let request = self
            .jira(
                reqwest::Method::POST,
                &format!("/rest/api/2/issue/{issue}/transitions"),
            )
            .json(&json!({ "transition": { "id": id } }));
        match self.base.send(request).await {
            Ok(_) => Ok(REOPENED.into()),
            // The workflow refuses it (a transition screen with required fields answers 400
            // with `errors`): the bug stays Done and gets the comment; nothing to retry.
            Err(e) if e.status_code == Some(400) => {
                tracing::warn!(issue, error = %e.detail, "Jira refused to reopen; commenting only");
                Ok("kept".into())
            }
            Err(e) => Err(e),
        }
    }

    /// Creates the bug carrying `label`, unless an earlier try did (the label finds it);
    /// `after`: the Done bug it follows, which it is linked to.
    async fn create_bug(
        &self,
        run: &TestRun,
        ctx: &DeliveryContext,
        (suite, case): (&Suite, &TestCase),
        label: &str,
        after: Option<&str>,
    ) -> Result<String, DeliveryError> {
        // Whoever held the claim before may have created the bug and crashed: the label
        // finds it (a claim taken over is always an earlier try's).
        if let Some(key) = self.find_labelled(label).await? {
            return Ok(key);
        }
        let bugs = self.c.bugs.as_ref().expect("bugs configured");
        let mut labels = vec!["testrelay".to_string(), label.to_string()];
        labels.extend(bugs.labels.iter().cloned());
        let mut fields = json!({
            "project": { "key": self.c.project_key },
            "issuetype": { "name": bugs.issue_type },
            "summary": render::cut(&format!("Test failing: {}", render::title(suite, case)), 250),
            "description": bug_description(run, ctx, case, after),
            "labels": labels,
        });
        if let Some(p) = &bugs.priority {
            fields["priority"] = json!({ "name": p });
        }
        let key = self.create_issue(fields).await?;
        if let Some(earlier) = after {
            let request = self
                .jira(reqwest::Method::POST, "/rest/api/2/issueLink")
                .json(&json!({
                    "type": { "name": "Relates" },
                    "inwardIssue": { "key": key },
                    "outwardIssue": { "key": earlier },
                }));
            self.base.send(request).await?;
        }
        Ok(key)
    }

    /// Comments `body` on `issue`, unless an earlier try did (its comment names this run's
    /// status URL).
    async fn comment(
        &self,
        issue: &str,
        body: &str,
        ctx: &DeliveryContext,
        call: StepCall,
    ) -> Result<String, DeliveryError> {
        if call.check_first {
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
                    c["body"].as_str().is_some_and(|b| {
                        b.contains(&ctx.status_url)
                            && b.starts_with(&body[..body.find(' ').unwrap_or(0)])
                    })
                });
            if let Some(c) = found {
                return Ok(c["id"].as_str().unwrap_or_default().to_string());
            }
        }
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

/// `pipeline gh-1 (web · main · a1b2c3d)`, or the context alone for a run of its own.
fn where_(run: &TestRun) -> String {
    match &run.meta.pipeline {
        Some(p) => format!("pipeline {} ({})", p.id, render::context(run)),
        None => render::context(run),
    }
}

pub(super) enum Regressed {
    Reopened,
    Filed(String),
}

/// A test as the bug records know it (suite, classname, name).
fn test_key(suite: &Suite, case: &TestCase) -> String {
    format!(
        "{}\n{}\n{}",
        suite.name,
        case.classname.as_deref().unwrap_or(""),
        case.name
    )
}

fn bug_description(
    run: &TestRun,
    ctx: &DeliveryContext,
    case: &TestCase,
    after: Option<&str>,
) -> String {
    let mut d = vec![format!(
        "Failing since {} ({}).",
        render::context(run),
        ctx.status_url
    )];
    if let Some(earlier) = after {
        d.push(format!(
            "A regression: {earlier} was done, and the test fails again."
        ));
    }
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
    let class = error_class(case);
    let identity = format!(
        "{project}\n{}\n{}\n{}\n{class}",
        suite.name,
        case.classname.as_deref().unwrap_or(""),
        case.name
    );
    crate::digest8(&identity)
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
