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
mod pipeline;
mod results;
mod runs;

pub use cases::CaseIndex;
pub use matching::{case_ids, property_ids};
pub use results::{Plan, Planned, plan, plan_with};

use crate::http::{json, json_up_to, permanent};
use crate::{Base, Env, origin, parse_url};
use async_trait::async_trait;
use cases::CaseCache;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::Value;
use std::collections::BTreeSet;
use std::sync::Arc;
use testrelay_domain::config::{ConnectorConfig, TestRailConfig};
use testrelay_domain::delivery::steps::Steps;
use testrelay_domain::ids::ConnectorName;
use testrelay_domain::ports::{
    Clock, Connector, Delivered, DeliveryContext, DeliveryError, Probe, StateStore, StepError,
};
use testrelay_domain::report::model::TestRun;

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
        let pipeline = run.meta.pipeline.as_ref();
        if let Some(p) = pipeline.filter(|p| p.is_merged()) {
            return self.complete_pipeline(run, p, steps).await;
        }
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
            let opened = match (pipeline, self.c.run_id) {
                // A configured run is shared by every report: its case list is rewritten
                // under its lock.
                (_, Some(id)) => {
                    let owner = run.run_id.to_string();
                    self.extend_locked(id, &owner, &case_ids, steps, "run")
                        .await
                }
                (Some(p), None) => self.pipeline_run(run, ctx, p, &case_ids, steps).await,
                (None, None) => {
                    steps
                        .once("run", |call| self.open_run(run, ctx, &case_ids, call))
                        .await
                }
            };
            match opened {
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
        // A pipeline's run is closed when the pipeline completes.
        if self.c.close_run && self.c.run_id.is_none() && pipeline.is_none() {
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
