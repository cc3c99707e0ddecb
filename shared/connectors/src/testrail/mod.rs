//! TestRail (API v2): results matched to cases by id, a run per report (or an entry in a
//! plan, or an existing run), results in bulk, optionally the run closed.
//!
//! Steps, each checkpointed: `run` (the TestRail run id), `results/<n>` per batch of
//! `batch_size`, `close`. Created runs carry a marker (`testrelay run <id>`) in their
//! description; a retry that cannot know whether an earlier try created the run looks for
//! the marker first, and one that cannot know whether a batch went in skips the cases that
//! already have a result from THIS delivery (in a created run, any result; in a configured
//! `run_id`, results whose comment carries this run's status URL). That lookup is read once
//! per attempt, never once per batch.
//!
//! Before a run is created or extended, the suite's cases are read (`cases.rs`): unknown
//! ids are left out and named; with `case_matcher = "automation_id"` tests are matched by
//! `classname.name`, and with `create_cases_in_section` missing cases are created, once
//! ever per automation id (`crate::claim`).

mod cases;
pub mod matching;

pub use cases::CaseIndex;
pub use matching::{case_ids, property_ids};

use crate::http::{json, json_up_to, permanent};
use crate::{Base, Env, origin, parse_url};
use async_trait::async_trait;
use cases::CaseCache;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::{Value, json};
use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use testrelay_domain::config::{CaseMatcher, ConnectorConfig, TestRailConfig};
use testrelay_domain::delivery::steps::{StepCall, Steps};
use testrelay_domain::ids::ConnectorName;
use testrelay_domain::ports::{
    Clock, Connector, Delivered, DeliveryContext, DeliveryError, Probe, StateStore, StepError,
};
use testrelay_domain::report::model::{Status, TestCase, TestRun};
use testrelay_domain::report::render;

/// Longest comment posted per result (message, trace and CI metadata).
pub const MAX_COMMENT: usize = 4000;
/// Largest list page read (250 tests, runs or results).
const MAX_PAGE_BYTES: usize = 4 << 20;
/// Largest `get_cases` page read: 250 cases with their steps and custom fields.
const MAX_CASES_PAGE_BYTES: usize = 16 << 20;

pub struct TestRail {
    base: Base,
    name: ConnectorName,
    api: String,
    user: String,
    key: SecretString,
    c: TestRailConfig,
    cases: CaseCache,
    state: Arc<dyn StateStore>,
    clock: Arc<dyn Clock>,
}

/// One result to post.
#[derive(Debug, Clone, PartialEq)]
pub struct Planned {
    pub case_id: u64,
    pub body: Value,
}

impl TestRail {
    pub fn new(
        name: &ConnectorName,
        cfg: &ConnectorConfig,
        c: &TestRailConfig,
        key: SecretString,
        env: &Env,
    ) -> Result<Self, String> {
        let url = parse_url(&c.url, "url")?;
        Ok(TestRail {
            // TestRail throttles per instance.
            base: Base::new(env.http.clone(), format!("testrail:{}", origin(&url)), cfg),
            name: name.clone(),
            api: format!("{}/index.php?/api/v2/", c.url.trim_end_matches('/')),
            user: c.user.clone(),
            key,
            c: c.clone(),
            cases: CaseCache::default(),
            state: env.state.clone(),
            clock: env.clock.clone(),
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
            .await?;
        json(response, "TestRail").await
    }

    async fn post<T: serde::de::DeserializeOwned>(
        &self,
        endpoint: &str,
        body: &Value,
    ) -> Result<T, DeliveryError> {
        let request = self.request(reqwest::Method::POST, endpoint).json(body);
        json(self.base.send(request).await?, "TestRail").await
    }

    /// Every item of a paginated list (`{_links: {next}, <field>: [...]}`).
    async fn list(&self, endpoint: &str, field: &str) -> Result<Vec<Value>, DeliveryError> {
        let mut out = Vec::new();
        self.pages(endpoint, field, MAX_PAGE_BYTES, |items| out.extend(items))
            .await?;
        Ok(out)
    }

    /// Each page of a paginated list handed to `each`, asked for by `limit` and `offset`:
    /// `_links.next` only says whether there is a next page (links seen in the wild carry
    /// `limit=0`, which TestRail then refuses). Older TestRail versions answer a bare
    /// array, unpaged. A page may be `max` bytes.
    async fn pages(
        &self,
        endpoint: &str,
        field: &str,
        max: usize,
        mut each: impl FnMut(Vec<Value>),
    ) -> Result<(), DeliveryError> {
        const PAGE: usize = 250;
        let mut offset = 0;
        loop {
            let request = self.request(
                reqwest::Method::GET,
                &format!("{endpoint}&limit={PAGE}&offset={offset}"),
            );
            let page: Value = json_up_to(self.base.send(request).await?, "TestRail", max).await?;
            let Value::Object(mut o) = page else {
                if let Value::Array(items) = page {
                    each(items);
                }
                return Ok(());
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
            offset += read;
            each(items);
            if !more || read == 0 {
                return Ok(());
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
            self.extend_run(run_id, case_ids).await?;
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
                        e["runs"]
                            .as_array()?
                            .iter()
                            .find_map(|r| marked(r, &marker))
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
            let found = runs.iter().find_map(|r| marked(r, &marker));
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

    /// Adds `case_ids` to the configured run's case list (which is replaced as a whole, so
    /// it is read first). A run in a plan is changed through its plan entry; `get_run`
    /// says which (`plan_id`, `config_ids`).
    async fn extend_run(&self, run_id: u64, case_ids: &[u64]) -> Result<(), DeliveryError> {
        let tests = self.list(&format!("get_tests/{run_id}"), "tests").await?;
        let mut ids: BTreeSet<u64> = tests
            .iter()
            .filter_map(|t| t.get("case_id").and_then(Value::as_u64))
            .collect();
        let before = ids.len();
        ids.extend(case_ids);
        if ids.len() == before {
            return Ok(());
        }
        let body = json!({"include_all": false, "case_ids": ids});
        let info: Value = self.get(&format!("get_run/{run_id}")).await?;
        let Some(plan_id) = info["plan_id"].as_u64() else {
            let _: Value = self.post(&format!("update_run/{run_id}"), &body).await?;
            return Ok(());
        };
        if info["config_ids"].as_array().is_some_and(|c| !c.is_empty()) {
            let _: Value = self
                .post(&format!("update_run_in_plan_entry/{run_id}"), &body)
                .await?;
            return Ok(());
        }
        let plan: Value = self.get(&format!("get_plan/{plan_id}")).await?;
        let entry = plan["entries"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|e| {
                e["runs"]
                    .as_array()
                    .is_some_and(|runs| runs.iter().any(|r| r["id"].as_u64() == Some(run_id)))
            })
            .and_then(|e| e["id"].as_str().map(str::to_string))
            .ok_or_else(|| {
                permanent(format!(
                    "run {run_id} is in plan {plan_id}, but no entry of the plan holds it"
                ))
            })?;
        let _: Value = self
            .post(&format!("update_plan_entry/{plan_id}/{entry}"), &body)
            .await?;
        Ok(())
    }

    /// The suite's cases: from the cache unless `fresh`; `(index, read from the cache)`.
    async fn case_index(&self, fresh: bool) -> Result<(Arc<CaseIndex>, bool), DeliveryError> {
        let now = self.clock.now_ms();
        if !fresh && let Some(index) = self.cases.get(now) {
            return Ok((index, true));
        }
        let mut endpoint = format!("get_cases/{}", self.c.project_id);
        if let Some(s) = self.c.suite_id {
            endpoint.push_str(&format!("&suite_id={s}"));
        }
        // Cases carry their steps and custom fields: a page may be large; only ids and
        // automation ids are kept.
        let mut index = CaseIndex::default();
        let field = self.c.automation_id_field.as_str();
        self.pages(&endpoint, "cases", MAX_CASES_PAGE_BYTES, |cases| {
            index.add(&cases, field)
        })
        .await?;
        let index = Arc::new(index);
        self.cases.put(now, index.clone());
        Ok((index, false))
    }

    /// Creates a case for every test (by automation id) the suite lacks, once ever per
    /// automation id however many runs meet it at once; the index with them added.
    async fn create_missing(
        &self,
        run: &TestRun,
        steps: &Steps,
        section: u64,
        index: Arc<CaseIndex>,
    ) -> Result<Arc<CaseIndex>, StepError> {
        let mut missing: Vec<(String, &TestCase)> = Vec::new();
        for (suite, case) in run.report.cases_in_suites() {
            let a = render::automation_id(suite, case);
            if property_ids(case).is_empty()
                && index.by_automation_id(&a).is_none()
                && !missing.iter().any(|(m, _)| *m == a)
            {
                missing.push((a, case));
            }
        }
        if missing.is_empty() {
            return Ok(index);
        }
        let mut index = (*index).clone();
        let suite = self.c.suite_id.unwrap_or(0);
        for (a, case) in missing {
            let digest = crate::digest8(&a);
            let (id, _) = crate::claim::once_ever(
                self.state.as_ref(),
                self.clock.as_ref(),
                &format!("testrail-case/{}/{suite}/{digest}", self.name),
                &run.run_id.to_string(),
                || async {
                    let step = steps
                        .once(&format!("case/{digest}"), |call| {
                            self.add_case(section, &a, case, call)
                        })
                        .await?;
                    Ok(step.value)
                },
            )
            .await?;
            let id = id
                .parse()
                .map_err(|_| StepError::Failed(permanent("a created case without an id")))?;
            index.insert(id, &a);
        }
        let index = Arc::new(index);
        self.cases.put(self.clock.now_ms(), index.clone());
        Ok(index)
    }

    /// `add_case` in `section`, titled by the test and carrying its automation id; a retry
    /// that cannot know whether an earlier try created it reads the suite again first.
    async fn add_case(
        &self,
        section: u64,
        automation_id: &str,
        case: &TestCase,
        call: StepCall,
    ) -> Result<String, DeliveryError> {
        if call.check_first
            && let Some(id) = self
                .case_index(true)
                .await?
                .0
                .by_automation_id(automation_id)
        {
            return Ok(id.to_string());
        }
        let mut body = json!({"title": render::cut(&case.name, 250)});
        body[self.c.automation_id_field.as_str()] = json!(automation_id);
        let created: Created = self.post(&format!("add_case/{section}"), &body).await?;
        Ok(created.id.to_string())
    }

    /// Case ids with a result from this delivery already, read once per attempt: in a run
    /// this delivery created, every case with a result; in a configured run (which holds
    /// results of earlier CI runs too), the cases whose results carry this run's status URL.
    async fn posted_before(
        &self,
        run_id: &str,
        run: &TestRun,
        ctx: &DeliveryContext,
    ) -> Result<BTreeSet<u64>, DeliveryError> {
        let tests = self.list(&format!("get_tests/{run_id}"), "tests").await?;
        if self.c.run_id.is_none() {
            return Ok(tests
                .iter()
                .filter(|t| t["status_id"].as_u64().is_some_and(|s| s != 3))
                .filter_map(|t| t["case_id"].as_u64())
                .collect());
        }
        let case_of: HashMap<u64, u64> = tests
            .iter()
            .filter_map(|t| Some((t["id"].as_u64()?, t["case_id"].as_u64()?)))
            .collect();
        // Only results since the report arrived can be this delivery's.
        let since = render::received_secs(run).saturating_sub(60);
        let results = self
            .list(
                &format!("get_results_for_run/{run_id}&created_after={since}"),
                "results",
            )
            .await?;
        Ok(results
            .iter()
            .filter(|r| {
                r["comment"]
                    .as_str()
                    .is_some_and(|c| c.contains(&ctx.status_url))
            })
            .filter_map(|r| case_of.get(&r["test_id"].as_u64()?).copied())
            .collect())
    }

    async fn post_batch(
        &self,
        run_id: &str,
        batch: &[Planned],
        done: Option<&BTreeSet<u64>>,
    ) -> Result<String, DeliveryError> {
        let batch: Vec<&Value> = batch
            .iter()
            .filter(|p| done.is_none_or(|d| !d.contains(&p.case_id)))
            .map(|p| &p.body)
            .collect();
        if batch.is_empty() {
            return Ok("0".into());
        }
        let posted: Vec<Value> = self
            .post(
                &format!("add_results_for_cases/{run_id}"),
                &json!({ "results": batch }),
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

/// The id of `run` if its description carries `marker`.
fn marked(run: &Value, marker: &str) -> Option<u64> {
    run["description"]
        .as_str()?
        .contains(marker)
        .then(|| run["id"].as_u64())?
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
        let (mut index, mut cached) = self.case_index(false).await?;
        if let Some(section) = self.c.create_cases_in_section {
            index = self.create_missing(run, steps, section, index).await?;
        }
        let mut plan = plan_with(run, ctx, &self.c, Some(&index));
        if plan.results.is_empty() {
            return Ok(Delivered {
                status_code: None,
                external_ref: Some(format!("testrail: nothing posted{}", plan.notes())),
                resumed: false,
            });
        }
        let opened = loop {
            let case_ids: Vec<u64> = plan.results.iter().map(|p| p.case_id).collect();
            match steps
                .once("run", |call| self.open_run(run, ctx, &case_ids, call))
                .await
            {
                // A case deleted since the cached read sinks the run; read the suite again.
                Err(StepError::Failed(e)) if cached && e.status_code == Some(400) => {
                    (index, cached) = self.case_index(true).await?;
                    plan = plan_with(run, ctx, &self.c, Some(&index));
                }
                other => break other?,
            }
        };
        let mut resumed = opened.resumed;
        let run_id = opened.value;
        // What an earlier try posted, read when a batch first needs it.
        let mut done: Option<BTreeSet<u64>> = None;
        for (i, batch) in plan.results.chunks(self.c.batch_size).enumerate() {
            let (done, run_id) = (&mut done, &run_id);
            let step = steps
                .once(&format!("results/{i}"), |call| async move {
                    if call.check_first && done.is_none() {
                        *done = Some(self.posted_before(run_id, run, ctx).await?);
                    }
                    self.post_batch(run_id, batch, done.as_ref()).await
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
        Ok(Delivered {
            status_code: Some(200),
            external_ref: Some(format!(
                "testrail:run/{run_id} ({} results{})",
                plan.results.len(),
                plan.notes()
            )),
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
                cases::named(&self.unknown)
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
