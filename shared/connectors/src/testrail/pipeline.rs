//! One TestRail run per CI pipeline. The first part to reach TestRail creates it (a claim in
//! the state store keyed by the pipeline: never two, however many parts arrive at once on
//! however many instances; the others wait, then add their cases to it under a lock, since
//! `update_run` replaces the whole case list), every part posts its results into it, and the
//! pipeline's completion closes it when `close_run` is set. A part arriving after the run
//! was closed opens the pipeline's next run (TestRail takes no results into a closed run).
//!
//! The run's case list is kept in the state store as well (delta-encoded ids), so a part
//! extends it with one `update_run` instead of reading every page of `get_tests` first: a
//! 50-shard pipeline of 100,000 cases would otherwise read 400 pages per shard.

use super::TestRail;
use crate::claim;
use base64::Engine;
use serde_json::json;
use std::collections::BTreeSet;
use std::time::Duration;
use testrelay_domain::delivery::steps::{StepCall, StepResult, Steps};
use testrelay_domain::ports::{
    Delivered, DeliveryContext, DeliveryError, ErrorClass, StepError, StoreError,
};
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
            |taken_over| async move {
                let step = steps
                    .once("run", |call| {
                        // A run that held the claim and never finished may have created
                        // the pipeline's run: it carries the pipeline's marker.
                        let check_first = call.check_first || taken_over;
                        self.open_run(run, ctx, case_ids, StepCall { check_first })
                    })
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

    /// Adds `case_ids` to pipeline run `id` (its lock held), from the case list kept in the
    /// state store (read from TestRail when there is none yet).
    pub(super) async fn extend_pipeline_run(
        &self,
        id: u64,
        case_ids: &[u64],
    ) -> Result<(), DeliveryError> {
        let key = format!("testrail-cases/{}/{id}", self.base.target());
        let stored = self.state.load(&key).await.map_err(store)?;
        let mut ids = match stored.as_ref().and_then(|v| decode_ids(&v.value)) {
            Some(ids) => ids,
            None => self.run_case_ids(id).await?,
        };
        let before = ids.len();
        ids.extend(case_ids);
        if ids.len() == before && stored.is_some() {
            return Ok(());
        }
        if ids.len() > before {
            // A run this connector created for the pipeline, outside any plan.
            if self.c.plan_id.is_none() {
                let body = json!({"include_all": false, "case_ids": ids});
                let _: serde_json::Value = self.post(&format!("update_run/{id}"), &body).await?;
            } else {
                self.set_cases(id, &ids).await?;
            }
        }
        // Under the run's lock: no other part writes it meanwhile.
        self.state
            .save(&key, &encode_ids(&ids), stored.map(|v| v.version))
            .await
            .map_err(store)?;
        Ok(())
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
                        match self.c.run_id {
                            Some(_) => self.extend_run(id, case_ids).await?,
                            None => self.extend_pipeline_run(id, case_ids).await?,
                        }
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
            |_| async { Ok(run_id.clone()) },
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

fn store(e: StoreError) -> DeliveryError {
    DeliveryError {
        class: ErrorClass::Transient,
        status_code: None,
        detail: format!("{}: {}", e.backend, e.message),
        retry_after: None,
        target: None,
    }
}

/// Sorted ids as base64 of their LEB128-encoded gaps: about 1.5 bytes an id for a suite's
/// case ids, so 100,000 of them fit one state-store item.
pub fn encode_ids(ids: &BTreeSet<u64>) -> String {
    let mut out = Vec::with_capacity(ids.len() * 2);
    let mut last = 0u64;
    for &id in ids {
        let mut gap = id - last;
        last = id;
        loop {
            let byte = (gap & 0x7f) as u8;
            gap >>= 7;
            if gap == 0 {
                out.push(byte);
                break;
            }
            out.push(byte | 0x80);
        }
    }
    base64::engine::general_purpose::STANDARD_NO_PAD.encode(out)
}

pub fn decode_ids(s: &str) -> Option<BTreeSet<u64>> {
    let bytes = base64::engine::general_purpose::STANDARD_NO_PAD
        .decode(s)
        .ok()?;
    let (mut ids, mut last, mut gap, mut shift) = (BTreeSet::new(), 0u64, 0u64, 0u32);
    for b in bytes {
        if shift > 63 {
            return None;
        }
        gap |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            last = last.checked_add(gap)?;
            ids.insert(last);
            (gap, shift) = (0, 0);
        } else {
            shift += 7;
        }
    }
    Some(ids)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn case_lists_round_trip_small() {
        for ids in [
            BTreeSet::new(),
            BTreeSet::from([1]),
            BTreeSet::from([3, 4, 300, 70_000, u32::MAX as u64 * 9]),
        ] {
            assert_eq!(decode_ids(&encode_ids(&ids)), Some(ids));
        }
        let suite: BTreeSet<u64> = (1..=100_000).map(|i| i * 3).collect();
        let encoded = encode_ids(&suite);
        assert!(
            encoded.len() < 150_000,
            "{} bytes for 100,000 ids",
            encoded.len()
        );
        assert_eq!(decode_ids(&encoded), Some(suite));
    }
}
