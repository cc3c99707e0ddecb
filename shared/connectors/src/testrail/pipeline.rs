//! One TestRail run per CI pipeline. The first part to reach TestRail creates it (a claim in
//! the state store keyed by the pipeline: never two, however many parts arrive at once on
//! however many instances; the others wait, then add their cases to it under a lock, since
//! `update_run` replaces the whole case list), every part posts its results into it, and the
//! pipeline's completion closes it when `close_run` is set. A part arriving after the run
//! was closed opens the pipeline's next run (TestRail takes no results into a closed run).

use super::TestRail;
use crate::claim;
use std::time::Duration;
use testrelay_domain::delivery::steps::{StepResult, Steps};
use testrelay_domain::ports::{Delivered, DeliveryContext, StepError};
use testrelay_domain::report::model::{PipelineRef, TestRun};

/// How long a part may hold a run's case list while it reads and rewrites it.
const EXTEND_LEASE: Duration = Duration::from_secs(60);

impl TestRail {
    /// The claim key of the pipeline's current run (past runs closed by completions).
    async fn pipeline_key(&self, run: &TestRun, p: &PipelineRef) -> Result<String, StepError> {
        let mut key = format!(
            "testrail-pipeline/{}/{}/{}",
            self.name, run.meta.project, p.id
        );
        while let Some(run_id) = claim::reference(self.state.as_ref(), &key).await? {
            if claim::reference(self.state.as_ref(), &closed_key(&run_id))
                .await?
                .is_none()
            {
                break;
            }
            key = format!("{key}/after-{run_id}");
        }
        Ok(key)
    }

    /// The run a pipeline part posts into, with `case_ids` in its case list.
    pub(super) async fn pipeline_run(
        &self,
        run: &TestRun,
        ctx: &DeliveryContext,
        p: &PipelineRef,
        case_ids: &[u64],
        steps: &Steps,
    ) -> Result<StepResult, StepError> {
        let key = self.pipeline_key(run, p).await?;
        let owner = run.run_id.to_string();
        let (run_id, created) = claim::once_ever(
            self.state.as_ref(),
            self.clock.as_ref(),
            &key,
            &owner,
            || async {
                let step = steps
                    .once("run", |call| self.open_run(run, ctx, case_ids, call))
                    .await?;
                Ok(step.value)
            },
        )
        .await?;
        if created {
            return Ok(StepResult {
                value: run_id,
                resumed: false,
            });
        }
        let id: u64 = run_id.parse().map_err(|_| {
            StepError::Failed(crate::http::permanent("a pipeline run without an id"))
        })?;
        self.extend_locked(id, &owner, case_ids, steps, "extend")
            .await
    }

    /// Extends run `id`'s case list as step `step`, holding the run's lock.
    pub(super) async fn extend_locked(
        &self,
        id: u64,
        owner: &str,
        case_ids: &[u64],
        steps: &Steps,
        step: &str,
    ) -> Result<StepResult, StepError> {
        let lock = format!("testrail-extend/{}/{id}", self.base.target());
        claim::locked(
            self.state.as_ref(),
            self.clock.as_ref(),
            &lock,
            owner,
            EXTEND_LEASE,
            || async {
                steps
                    .once(step, |_| async move {
                        self.extend_run(id, case_ids).await?;
                        Ok(id.to_string())
                    })
                    .await
            },
        )
        .await
    }

    /// The pipeline's merged result: its results went in with its parts; the run is closed
    /// when `close_run` is set.
    pub(super) async fn complete_pipeline(
        &self,
        run: &TestRun,
        p: &PipelineRef,
        steps: &Steps,
    ) -> Result<Delivered, StepError> {
        let key = self.pipeline_key(run, p).await?;
        let Some(run_id) = claim::reference(self.state.as_ref(), &key).await? else {
            let r = match self.c.run_id {
                Some(id) => {
                    format!("testrail:run/{id} (the pipeline's results went in with its parts)")
                }
                None => {
                    "testrail: nothing posted (no part of the pipeline had a case in the suite)"
                        .into()
                }
            };
            return Ok(Delivered {
                status_code: None,
                external_ref: Some(r),
                resumed: false,
            });
        };
        if !self.c.close_run {
            return Ok(Delivered {
                status_code: None,
                external_ref: Some(format!(
                    "testrail:run/{run_id} (the pipeline's run; its results went in with its parts)"
                )),
                resumed: false,
            });
        }
        let step = steps
            .once("close", |call| self.close(&run_id, call))
            .await?;
        // Recorded after closing: a part that finds the run closed opens the next one.
        claim::once_ever(
            self.state.as_ref(),
            self.clock.as_ref(),
            &closed_key(&run_id),
            &run.run_id.to_string(),
            || async { Ok(run_id.clone()) },
        )
        .await?;
        Ok(Delivered {
            status_code: Some(200),
            external_ref: Some(format!(
                "testrail:run/{run_id} (the pipeline's run, closed)"
            )),
            resumed: step.resumed,
        })
    }
}

fn closed_key(run_id: &str) -> String {
    format!("testrail-closed/{run_id}")
}
