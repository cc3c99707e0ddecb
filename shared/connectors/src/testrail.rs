//! TestRail (API v2): results matched to cases by id, a run per report (or an entry in a
//! plan, or an existing run), results in bulk, optionally the run closed.
//!
//! Steps, each checkpointed: `run` (the TestRail run id), `results/<n>` per batch of
//! `batch_size`, `close`. Created runs carry a marker (`testrelay run <id>`) in their
//! description; a retry that cannot know whether an earlier try created the run looks for
//! the marker first, and one that cannot know whether a batch went in skips the cases that
//! already have a result in the run.

use crate::http::{json, permanent};
use crate::{Base, Env, origin, parse_url};
use async_trait::async_trait;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::{Value, json};
use std::collections::BTreeSet;
use testrelay_domain::config::{ConnectorConfig, TestRailConfig};
use testrelay_domain::model::{Status, TestCase, TestRun};
use testrelay_domain::ports::{
    Connector, Delivered, DeliveryContext, DeliveryError, ErrorClass, Probe, StepError,
};
use testrelay_domain::render;
use testrelay_domain::steps::{StepCall, Steps};

/// Longest comment posted per result (message, trace and CI metadata).
pub const MAX_COMMENT: usize = 4000;

pub struct TestRail {
    base: Base,
    api: String,
    user: String,
    key: SecretString,
    c: TestRailConfig,
}

/// One result to post.
#[derive(Debug, Clone, PartialEq)]
pub struct Planned {
    pub case_id: u64,
    pub body: Value,
}

impl TestRail {
    pub fn new(
        cfg: &ConnectorConfig,
        c: &TestRailConfig,
        key: SecretString,
        env: &Env,
    ) -> Result<Self, String> {
        let url = parse_url(&c.url, "url")?;
        Ok(TestRail {
            // TestRail throttles per instance.
            base: Base::new(env.http.clone(), format!("testrail:{}", origin(&url)), cfg),
            api: format!("{}/index.php?/api/v2/", c.url.trim_end_matches('/')),
            user: c.user.clone(),
            key,
            c: c.clone(),
        })
    }

    fn request(&self, method: reqwest::Method, endpoint: &str) -> reqwest::RequestBuilder {
        self.base
            .http
            .client()
            .request(method, format!("{}{endpoint}", self.api))
            .basic_auth(&self.user, Some(self.key.expose_secret()))
            .header(reqwest::header::CONTENT_TYPE, "application/json")
    }

    async fn get<T: serde::de::DeserializeOwned>(
        &self,
        endpoint: &str,
    ) -> Result<T, DeliveryError> {
        let response = self
            .base
            .send(self.request(reqwest::Method::GET, endpoint))
            .await
            .map_err(classify)?;
        json(response, "TestRail").await
    }

    async fn post<T: serde::de::DeserializeOwned>(
        &self,
        endpoint: &str,
        body: &Value,
    ) -> Result<T, DeliveryError> {
        let request = self.request(reqwest::Method::POST, endpoint).json(body);
        json(self.base.send(request).await.map_err(classify)?, "TestRail").await
    }

    /// Every page of a paginated list (`{_links: {next}, <field>: [...]}`), asked for by
    /// `limit` and `offset`: `_links.next` only says whether there is a next page (links seen
    /// in the wild carry `limit=0`, which TestRail then refuses). Older TestRail versions
    /// answer a bare array, unpaged.
    async fn list(&self, endpoint: &str, field: &str) -> Result<Vec<Value>, DeliveryError> {
        const PAGE: usize = 250;
        let mut out = Vec::new();
        loop {
            let page: Value = self
                .get(&format!("{endpoint}&limit={PAGE}&offset={}", out.len()))
                .await?;
            let Value::Object(mut o) = page else {
                if let Value::Array(items) = page {
                    out.extend(items);
                }
                return Ok(out);
            };
            let items = match o.remove(field) {
                Some(Value::Array(items)) => items,
                _ => Vec::new(),
            };
            let more = o
                .get("_links")
                .and_then(|l| l.get("next"))
                .is_some_and(|n| n.is_string());
            let read = items.len();
            out.extend(items);
            if !more || read == 0 {
                return Ok(out);
            }
        }
    }

    fn marker(run: &TestRun) -> String {
        format!("testrelay run {}", run.run_id)
    }

    fn description(&self, run: &TestRun, ctx: &DeliveryContext) -> String {
        let m = &run.meta;
        let mut d = vec![render::headline(run), render::counts(run)];
        d.extend(m.branch.as_ref().map(|b| format!("Branch: {b}")));
        d.extend(m.commit.as_ref().map(|c| format!("Commit: {c}")));
        d.extend(m.build_url.as_ref().map(|b| format!("Build: {b}")));
        d.push(format!("Run status: {}", ctx.status_url));
        d.push(Self::marker(run));
        d.join("\n")
    }

    /// The run to post into: created (or found, when an earlier try may have created it),
    /// or the configured one with its case list extended.
    async fn open_run(
        &self,
        run: &TestRun,
        ctx: &DeliveryContext,
        case_ids: &[u64],
        call: StepCall,
    ) -> Result<String, DeliveryError> {
        let name = render::fill(&self.c.run_name, run, &[]);
        let description = self.description(run, ctx);
        // The run (or plan entry) to create: only the matched cases.
        let mut body = json!({"name": name, "description": description,
            "include_all": false, "case_ids": case_ids});
        if let Some(s) = self.c.suite_id {
            body["suite_id"] = json!(s);
        }
        if let Some(run_id) = self.c.run_id {
            let tests = self.list(&format!("get_tests/{run_id}"), "tests").await?;
            let mut ids: BTreeSet<u64> = tests
                .iter()
                .filter_map(|t| t.get("case_id").and_then(Value::as_u64))
                .collect();
            let before = ids.len();
            ids.extend(case_ids);
            if ids.len() > before {
                let _: Value = self
                    .post(
                        &format!("update_run/{run_id}"),
                        &json!({"include_all": false, "case_ids": ids}),
                    )
                    .await?;
            }
            return Ok(run_id.to_string());
        }
        let marker = Self::marker(run);
        if let Some(plan_id) = self.c.plan_id {
            if call.check_first {
                let plan: Value = self.get(&format!("get_plan/{plan_id}")).await?;
                let found = plan["entries"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .find_map(|e| {
                        e["runs"].as_array()?.iter().find_map(|r| {
                            r["description"]
                                .as_str()?
                                .contains(&marker)
                                .then(|| r["id"].as_u64())?
                        })
                    });
                if let Some(id) = found {
                    return Ok(id.to_string());
                }
            }
            let entry: Value = self
                .post(&format!("add_plan_entry/{plan_id}"), &body)
                .await?;
            return entry["runs"][0]["id"]
                .as_u64()
                .map(|id| id.to_string())
                .ok_or_else(|| permanent("add_plan_entry answered without a run id"));
        }
        let project = self.c.project_id;
        if call.check_first {
            let runs = self
                .list(&format!("get_runs/{project}&is_completed=0"), "runs")
                .await?;
            let found = runs.iter().find_map(|r| {
                r["description"]
                    .as_str()?
                    .contains(&marker)
                    .then(|| r["id"].as_u64())?
            });
            if let Some(id) = found {
                return Ok(id.to_string());
            }
        }
        if let Some(m) = self.c.milestone_id {
            body["milestone_id"] = json!(m);
        }
        if let Some(c) = &run.meta.commit {
            body["refs"] = json!(render::short_commit(c));
        }
        let created: Created = self.post(&format!("add_run/{project}"), &body).await?;
        Ok(created.id.to_string())
    }

    async fn post_batch(
        &self,
        run_id: &str,
        batch: &[Planned],
        call: StepCall,
    ) -> Result<String, DeliveryError> {
        let mut batch: Vec<&Planned> = batch.iter().collect();
        if call.check_first {
            // Cases with a result already (status other than 3, Untested) went in earlier.
            let tests = self.list(&format!("get_tests/{run_id}"), "tests").await?;
            let done: BTreeSet<u64> = tests
                .iter()
                .filter(|t| t["status_id"].as_u64().is_some_and(|s| s != 3))
                .filter_map(|t| t["case_id"].as_u64())
                .collect();
            batch.retain(|p| !done.contains(&p.case_id));
        }
        if batch.is_empty() {
            return Ok("0".into());
        }
        let results: Vec<&Value> = batch.iter().map(|p| &p.body).collect();
        let posted: Vec<Value> = self
            .post(
                &format!("add_results_for_cases/{run_id}"),
                &json!({ "results": results }),
            )
            .await?;
        Ok(posted.len().to_string())
    }

    async fn close(&self, run_id: &str, call: StepCall) -> Result<String, DeliveryError> {
        if call.check_first {
            let r: Value = self.get(&format!("get_run/{run_id}")).await?;
            if r["is_completed"].as_bool() == Some(true) {
                return Ok("closed".into());
            }
        }
        let _: Value = self
            .post(&format!("close_run/{run_id}"), &json!({}))
            .await?;
        Ok("closed".into())
    }
}

#[derive(Deserialize)]
struct Created {
    id: u64,
}

#[async_trait]
impl Connector for TestRail {
    crate::basics!(Testrail);

    async fn deliver(
        &self,
        run: &TestRun,
        ctx: &DeliveryContext,
        steps: &Steps,
    ) -> Result<Delivered, StepError> {
        let plan = plan(run, ctx, &self.c);
        if plan.results.is_empty() {
            return Ok(Delivered {
                status_code: None,
                external_ref: Some(format!(
                    "testrail: nothing posted: {} tests without a case id",
                    plan.unmatched
                )),
                resumed: false,
            });
        }
        let case_ids: Vec<u64> = plan
            .results
            .iter()
            .map(|p| p.case_id)
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let opened = steps
            .once("run", |call| self.open_run(run, ctx, &case_ids, call))
            .await?;
        let mut resumed = opened.resumed;
        let run_id = opened.value;
        for (i, batch) in plan.results.chunks(self.c.batch_size).enumerate() {
            let step = steps
                .once(&format!("results/{i}"), |call| {
                    self.post_batch(&run_id, batch, call)
                })
                .await?;
            resumed &= step.resumed;
        }
        if self.c.close_run && self.c.run_id.is_none() {
            let step = steps
                .once("close", |call| self.close(&run_id, call))
                .await?;
            resumed &= step.resumed;
        }
        let mut summary = format!("testrail:run/{run_id} ({} results", plan.results.len());
        if plan.unmatched > 0 {
            summary.push_str(&format!(
                "; {} tests without a case id, not posted",
                plan.unmatched
            ));
        }
        if plan.skipped > 0 {
            summary.push_str(&format!("; {} skipped, not posted", plan.skipped));
        }
        summary.push(')');
        Ok(Delivered {
            status_code: Some(200),
            external_ref: Some(summary),
            resumed,
        })
    }

    async fn probe(&self) -> Result<Probe, DeliveryError> {
        crate::http::unlimited(async {
            let project: Value = self
                .get(&format!("get_project/{}", self.c.project_id))
                .await?;
            if project["suite_mode"].as_u64() == Some(3) && self.c.suite_id.is_none() {
                return Err(permanent(
                    "the project has several suites (suite_mode 3): set suite_id",
                ));
            }
            Ok(Probe {
                check: format!("GET get_project/{}", self.c.project_id),
                detail: project["name"].as_str().map(str::to_string),
            })
        })
        .await
    }
}

/// What a run becomes in TestRail.
#[derive(Debug, Default)]
pub struct Plan {
    pub results: Vec<Planned>,
    /// Tests without a case id.
    pub unmatched: usize,
    /// Skipped tests not posted (no `status.skipped` configured).
    pub skipped: usize,
}

/// TestRail's answers the generic classification gets wrong. `409` is TestRail Cloud's daily
/// maintenance (`{"error": "Account is undergoing daily maintenance (TestRail Cloud only)"}`,
/// with or without `Retry-After`): transient, retried after it, never the reason a run is
/// lost.
fn classify(e: DeliveryError) -> DeliveryError {
    match e.status_code {
        Some(409) => DeliveryError {
            class: ErrorClass::Transient,
            detail: "HTTP 409: TestRail Cloud's daily maintenance; retrying after it".into(),
            ..e
        },
        _ => e,
    }
}

pub fn plan(run: &TestRun, ctx: &DeliveryContext, c: &TestRailConfig) -> Plan {
    let mut plan = Plan::default();
    // Each case id's tests, in the order the ids first appear: parametrised tests map several
    // to one case, and TestRail keeps only the last result it is sent for a case.
    let mut order: Vec<u64> = Vec::new();
    let mut by_case: std::collections::HashMap<u64, Vec<(&TestCase, u32)>> =
        std::collections::HashMap::new();
    for case in run.report.cases() {
        let ids = case_ids(case);
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
        // The worst outcome stands for the case (the first of equals).
        let (worst, status) = tests
            .iter()
            .copied()
            .reduce(|w, t| {
                if severity(t.0.status) > severity(w.0.status) {
                    t
                } else {
                    w
                }
            })
            .expect("at least one test per case id");
        let mut comment = comment(run, ctx, worst);
        if tests.len() > 1 {
            let variants: Vec<String> = tests
                .iter()
                .map(|(t, _)| format!("- {}: {}", render::cut(&t.name, 200), status_word(t.status)))
                .collect();
            comment = render::cut(
                &format!(
                    "{} results for this case (one per variant; the worst stands):\n{}\n\n{comment}",
                    tests.len(),
                    variants.join("\n")
                ),
                MAX_COMMENT,
            );
        }
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
    plan
}

/// How bad an outcome is, for the one result that stands for several variants.
fn severity(status: Status) -> u8 {
    match status {
        Status::Skipped => 0,
        Status::Passed => 1,
        Status::Flaky => 2,
        Status::Failed | Status::Error => 3,
    }
}

fn status_word(status: Status) -> &'static str {
    match status {
        Status::Passed => "passed",
        Status::Failed => "failed",
        Status::Error => "error",
        Status::Skipped => "skipped",
        Status::Flaky => "flaky",
    }
}

fn comment(run: &TestRun, ctx: &DeliveryContext, case: &TestCase) -> String {
    let mut parts = Vec::new();
    if let Some(note) = render::retry_note(case) {
        parts.push(note);
    }
    if let Some(m) = case.message.as_deref().filter(|m| !m.trim().is_empty()) {
        parts.push(render::cut(m.trim(), 1000));
    }
    let meta = &run.meta;
    let mut ci = Vec::new();
    ci.extend(meta.branch.as_ref().map(|b| format!("Branch: {b}")));
    ci.extend(meta.commit.as_ref().map(|c| format!("Commit: {c}")));
    ci.extend(meta.build_url.as_ref().map(|b| format!("Build: {b}")));
    ci.push(format!("Run: {}", ctx.status_url));
    let ci = ci.join("\n");
    if let Some(t) = case.trace.as_deref().filter(|t| !t.trim().is_empty()) {
        let used: usize = parts.iter().map(|p| p.len() + 2).sum::<usize>() + ci.len() + 16;
        let room = MAX_COMMENT.saturating_sub(used);
        if room > 100 {
            // Code block in TestRail's Markdown: four-space indent.
            let trace = render::cut(t.trim(), room);
            parts.push(
                trace
                    .lines()
                    .map(|l| format!("    {l}"))
                    .collect::<Vec<_>>()
                    .join("\n"),
            );
        }
    }
    parts.push(ci);
    render::cut(&parts.join("\n\n"), MAX_COMMENT)
}

/// Case ids a test names: properties `test_id` / `testrail_case_id` (`C123`, `123`,
/// `C1, C2`), then the name: `C123` as a word, `[C123]`, `[C1, C2]`, `[TC-123]`,
/// `@testrail(123)`. Duplicates removed, order kept.
pub fn case_ids(case: &TestCase) -> Vec<u64> {
    let mut ids = Vec::new();
    let mut add = |id: u64| {
        if id > 0 && !ids.contains(&id) {
            ids.push(id);
        }
    };
    for p in &case.properties {
        if p.name == "test_id" || p.name == "testrail_case_id" {
            for part in p.value.split([',', ' ']) {
                let t = part.trim();
                let digits = t.strip_prefix(['C', 'c']).unwrap_or(t);
                if let Ok(id) = digits.parse() {
                    add(id);
                }
            }
        }
    }
    let name = &case.name;
    // [C1, C2] and [TC-123]
    let mut rest = name.as_str();
    while let Some(open) = rest.find('[') {
        let after = &rest[open + 1..];
        let Some(close) = after.find(']') else { break };
        for part in after[..close].split(',') {
            let t = part.trim();
            if let Some(id) = t
                .strip_prefix("TC-")
                .or_else(|| t.strip_prefix('C'))
                .and_then(|d| d.parse().ok())
            {
                add(id);
            }
        }
        rest = &after[close + 1..];
    }
    // @testrail(123) or @testrail(C123)
    let mut rest = name.as_str();
    while let Some(at) = rest.find("@testrail(") {
        let after = &rest[at + "@testrail(".len()..];
        if let Some(close) = after.find(')') {
            let t = after[..close].trim();
            if let Ok(id) = t.strip_prefix('C').unwrap_or(t).parse() {
                add(id);
            }
        }
        rest = after;
    }
    // C123 as a word of its own (`C123 logs in`, `logs in C123`, `C123: logs in`).
    for word in name.split(|ch: char| ch.is_whitespace() || ch == ',' || ch == ':') {
        if let Some(id) = word
            .strip_prefix('C')
            .filter(|d| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|d| d.parse().ok())
        {
            add(id);
        }
    }
    ids
}

#[cfg(test)]
mod tests {
    use super::*;
    use testrelay_domain::model::Property;

    fn ids(name: &str) -> Vec<u64> {
        case_ids(&TestCase::new(name, Status::Passed))
    }

    #[test]
    fn finds_case_ids_in_every_documented_form() {
        assert_eq!(ids("C123 logs in"), vec![123]);
        assert_eq!(ids("logs in C123"), vec![123]);
        assert_eq!(ids("C123: logs in"), vec![123]);
        assert_eq!(ids("[C123] logs in"), vec![123]);
        assert_eq!(ids("logs in [C1, C2]"), vec![1, 2]);
        assert_eq!(ids("[TC-77] seed format"), vec![77]);
        assert_eq!(ids("@testrail(42) seed format"), vec![42]);
        assert_eq!(ids("@testrail(C43) seed format"), vec![43]);
        assert_eq!(ids("[C5] again C5"), vec![5]);
        assert!(ids("C3PO talks; ABC123; logs in").is_empty());
        assert!(ids("no id here").is_empty());
        let mut c = TestCase::new("plain", Status::Failed);
        c.properties = vec![
            Property {
                name: "test_id".into(),
                value: "C9".into(),
            },
            Property {
                name: "testrail_case_id".into(),
                value: "10, C11".into(),
            },
        ];
        assert_eq!(case_ids(&c), vec![9, 10, 11]);
    }
}
