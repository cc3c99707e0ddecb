//! The TestRail run results go into: created per report (or per pipeline), an entry of a
//! configured plan, or a configured run whose case list is extended; and how a retry finds
//! what an earlier try did.

use super::{Created, Planned, TestRail};
use crate::http::permanent;
use serde_json::{Value, json};
use std::collections::{BTreeSet, HashMap};
use testrelay_domain::delivery::steps::StepCall;
use testrelay_domain::ports::{DeliveryContext, DeliveryError};
use testrelay_domain::report::model::TestRun;
use testrelay_domain::report::render;

impl TestRail {
    /// What a created run's description carries, for a retry to find it: the pipeline for
    /// a pipeline's run, else the report's run id.
    pub(super) fn marker(run: &TestRun) -> String {
        match &run.meta.pipeline {
            Some(p) => format!("testrelay pipeline {}/{}", run.meta.project, p.id),
            None => format!("testrelay run {}", run.run_id),
        }
    }

    pub(super) fn description(&self, run: &TestRun, ctx: &DeliveryContext) -> String {
        let m = &run.meta;
        let mut d = vec![render::headline(run), render::counts(run)];
        d.extend(m.branch.as_ref().map(|b| format!("Branch: {b}")));
        d.extend(m.commit.as_ref().map(|c| format!("Commit: {c}")));
        d.extend(m.build_url.as_ref().map(|b| format!("Build: {b}")));
        d.push(format!("Run status: {}", ctx.status_url));
        d.push(Self::marker(run));
        d.join("\n")
    }

    /// The run to create (or find, when an earlier try may have created it): a run of the
    /// project, or an entry of the configured plan.
    pub(super) async fn open_run(
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
    pub(super) async fn extend_run(
        &self,
        run_id: u64,
        case_ids: &[u64],
    ) -> Result<(), DeliveryError> {
        let mut ids = self.run_case_ids(run_id).await?;
        let before = ids.len();
        ids.extend(case_ids);
        if ids.len() == before {
            return Ok(());
        }
        self.set_cases(run_id, &ids).await
    }

    /// The case ids run `run_id` holds (`get_tests`, every page).
    pub(super) async fn run_case_ids(&self, run_id: u64) -> Result<BTreeSet<u64>, DeliveryError> {
        let tests = self.list(&format!("get_tests/{run_id}"), "tests").await?;
        Ok(tests
            .iter()
            .filter_map(|t| t.get("case_id").and_then(Value::as_u64))
            .collect())
    }

    /// Makes `ids` run `run_id`'s case list.
    pub(super) async fn set_cases(
        &self,
        run_id: u64,
        ids: &BTreeSet<u64>,
    ) -> Result<(), DeliveryError> {
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

    /// Case ids with a result from this delivery already, read once per attempt: in a run
    /// this delivery created, every case with a result; in a configured run (which holds
    /// results of earlier CI runs too), the cases whose results carry this run's status URL.
    pub(super) async fn posted_before(
        &self,
        run_id: &str,
        run: &TestRun,
        ctx: &DeliveryContext,
    ) -> Result<BTreeSet<u64>, DeliveryError> {
        let tests = self.list(&format!("get_tests/{run_id}"), "tests").await?;
        // A run only this report posts into: any result in it is this delivery's.
        if self.c.run_id.is_none() && run.meta.pipeline.is_none() {
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

    pub(super) async fn post_batch(
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

    pub(super) async fn close(
        &self,
        run_id: &str,
        call: StepCall,
    ) -> Result<String, DeliveryError> {
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
