//! Pipelines: one result per CI pipeline, however many shards, jobs and re-runs post to it.
//!
//! A report posted with `?pipeline=<id>` (and `shard=<i>/<n>`, `attempt=<k>`) is stored and
//! delivered as a run of its own to the connectors that build up one result from parts
//! (TestRail, Jira/Xray, Slack: they keep one run, execution or message per pipeline), and
//! recorded as a PART of the pipeline: a record in the state store, changed only by
//! conditional writes, so shards arriving at once on many instances never lose each other.
//!
//! The pipeline COMPLETES when its parts cover every shard index `1..=n` (a later attempt's
//! shard replacing the earlier one of its index), on `POST /v1/pipelines/{id}/complete`, or
//! after the project's quiet period with no new part (the sweep, run on the health schedule,
//! so it survives restarts). Completion stores the merged result ([`merge`]) as a run with a
//! derived id and delivers it to every connector of the project. A part arriving after
//! completion reopens the pipeline; its next completion is delivered as an update.
//!
//! Crash safety: completion is first written to the record (the completion number), then the
//! merged run is stored and enqueued under an id derived from the pipeline and that number;
//! the pipeline stays in the open index until that is done, and the sweep redoes it.

pub mod merge;

use crate::error::ApiError;
use crate::ids::{ProjectName, RunId};
use crate::ingest::IngestService;
use crate::ports::{
    DeliveryMessage, DeliveryState, RunRecord, StateStore, StoreError, rfc3339, run_blob_key,
};
use crate::report::model::{PipelineRef, RunMeta, Shard, Summary, TestRun};
use serde::{Deserialize, Serialize};

/// Parts a pipeline holds at most (shards times attempts).
pub const MAX_PARTS: usize = 1000;
/// The state-store key listing pipelines not yet completed and delivered.
const OPEN_INDEX: &str = "pipelines/open";

/// A pipeline as the state store holds it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PipelineState {
    pub project: String,
    pub id: String,
    /// The first part's metadata (branch, commit, build, environment).
    pub meta: RunMeta,
    pub parts: Vec<Part>,
    /// Completions so far.
    pub completions: u32,
    /// Parts arrived since the last completion (or none completed yet).
    pub open: bool,
    /// How the last completion came: `all_shards`, `requested` or `quiet`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completed_by: Option<String>,
    pub first_ms: u64,
    pub last_ms: u64,
}

/// One report of the pipeline.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Part {
    pub run_id: RunId,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shard: Option<Shard>,
    pub attempt: u32,
    pub received_ms: u64,
    pub summary: Summary,
}

impl PipelineState {
    /// The shard count the parts state (the largest `n`), if any did.
    pub fn total(&self) -> Option<u32> {
        self.parts
            .iter()
            .filter_map(|p| p.shard.map(|s| s.total))
            .max()
    }

    /// Every shard index `1..=n` has arrived (in any attempt).
    pub fn covers_all(&self) -> bool {
        self.total().is_some_and(|n| {
            (1..=n).all(|i| {
                self.parts
                    .iter()
                    .any(|p| p.shard.is_some_and(|s| s.index == i))
            })
        })
    }

    pub fn latest_attempt(&self) -> u32 {
        self.parts.iter().map(|p| p.attempt).max().unwrap_or(1)
    }

    /// The parts that make the result, earliest attempt first: per shard index every
    /// attempt (a re-run replaces what came before it); parts without a shard all.
    pub fn in_merge_order(&self) -> Vec<&Part> {
        let mut parts: Vec<&Part> = self.parts.iter().collect();
        parts.sort_by_key(|p| (p.attempt, p.received_ms));
        parts
    }

    /// Completes it (`by`: what completed it): the next completion number.
    fn complete(mut self, by: &str) -> (Self, Change) {
        self.open = false;
        self.completions += 1;
        self.completed_by = Some(by.into());
        let n = self.completions;
        (self, Change::Completed(n))
    }

    /// The run id of completion `n`'s merged result.
    pub fn merged_run_id(&self, n: u32) -> RunId {
        merged_run_id(&self.project, &self.id, n)
    }
}

pub fn merged_run_id(project: &str, id: &str, n: u32) -> RunId {
    RunId::derived(format!("pipeline\n{project}\n{id}\n{n}").as_bytes())
}

/// The state-store key of a pipeline's record.
pub fn key(project: &str, id: &str) -> String {
    format!("pipeline/{project}/{id}")
}

/// What recording a part or a completion request did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// The pipeline is (still) open.
    Open,
    /// It completed now: completion number.
    Completed(u32),
    /// It was complete already (a repeated request).
    AlreadyComplete(u32),
}

/// The pipeline's id as users give it: 1 to 128 of `A-Z a-z 0-9 . _ - :`.
pub fn check_id(id: &str) -> Result<(), String> {
    if id.is_empty() || id.len() > 128 {
        return Err("must be 1 to 128 characters".into());
    }
    if !id
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b':'))
    {
        return Err("may hold only letters, digits and . _ - :".into());
    }
    Ok(())
}

/// Reads `project`/`id`, lets `change` decide (`None`: leave it as it is, or absent),
/// writes it back conditionally, and repeats on a conflicting write. `None` when there is
/// nothing to change.
async fn update<F>(
    state: &dyn StateStore,
    project: &str,
    id: &str,
    mut change: F,
) -> Result<Option<(PipelineState, Change)>, StoreError>
where
    F: FnMut(Option<PipelineState>) -> Option<(PipelineState, Change)>,
{
    let k = key(project, id);
    loop {
        let current = state.load(&k).await?;
        let version = current.as_ref().map(|v| v.version);
        let parsed = current
            .as_ref()
            .map(|v| serde_json::from_str::<PipelineState>(&v.value))
            .transpose()
            .map_err(|e| StoreError::new("state store", format!("pipeline {id}: {e}")))?;
        let Some((next, what)) = change(parsed.clone()) else {
            return Ok(None);
        };
        if Some(&next) == parsed.as_ref() {
            return Ok(Some((next, what)));
        }
        let value = serde_json::to_string(&next).expect("serialisable");
        if state.save(&k, &value, version).await? {
            return Ok(Some((next, what)));
        }
    }
}

/// Adds or removes `(project, id)` in the open index.
async fn index(
    state: &dyn StateStore,
    project: &str,
    id: &str,
    open: bool,
) -> Result<(), StoreError> {
    let entry = format!("{project}/{id}");
    loop {
        let current = state.load(OPEN_INDEX).await?;
        let mut list: Vec<String> = current
            .as_ref()
            .and_then(|v| serde_json::from_str(&v.value).ok())
            .unwrap_or_default();
        let has = list.contains(&entry);
        if has == open {
            return Ok(());
        }
        if open {
            list.push(entry.clone());
        } else {
            list.retain(|e| *e != entry);
        }
        let value = serde_json::to_string(&list).expect("serialisable");
        if state
            .save(OPEN_INDEX, &value, current.map(|v| v.version))
            .await?
        {
            return Ok(());
        }
    }
}

fn unavailable(e: &StoreError) -> ApiError {
    ApiError::unavailable(format!("{} is unavailable; retry later", e.backend))
}

/// `GET /v1/pipelines/{id}`.
#[derive(Debug, Clone, Serialize)]
pub struct PipelineStatus {
    pub project: String,
    pub id: String,
    /// `open` (waiting for parts) or `complete`.
    pub state: &'static str,
    pub completions: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub completed_by: Option<String>,
    pub latest_attempt: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shards_expected: Option<u32>,
    /// The merged result's summary once complete; the parts' latest results added up while
    /// open.
    pub summary: Summary,
    pub parts: Vec<PartStatus>,
    /// What changed in the last completion's merged result against its base (the same as
    /// `merged.changes`): the pipeline's verdict.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub changes: Option<crate::history::Changes>,
    /// The last completion's merged run and its deliveries.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub merged: Option<RunRecord>,
}

#[derive(Debug, Clone, Serialize)]
pub struct PartStatus {
    pub run_id: RunId,
    pub status_url: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shard: Option<Shard>,
    pub attempt: u32,
    pub received_at: String,
    pub summary: Summary,
    /// The part's own deliveries (connectors that build one result from parts).
    pub deliveries: Vec<crate::ports::DeliveryRecord>,
}

impl IngestService {
    /// Records an accepted part; completes the pipeline when the parts cover every shard.
    pub(crate) async fn record_part(
        &self,
        project: &ProjectName,
        run_id: &RunId,
        summary: Summary,
        meta: &RunMeta,
        pipeline: &PipelineRef,
    ) -> Result<(), ApiError> {
        let state = self.ports.state.as_ref();
        let now = self.ports.clock.now_ms();
        let part = Part {
            run_id: run_id.clone(),
            shard: pipeline.shard,
            attempt: pipeline.attempt,
            received_ms: now,
            summary,
        };
        index(state, project.as_str(), &pipeline.id, true)
            .await
            .map_err(|e| unavailable(&e))?;
        let (p, change) = update(state, project.as_str(), &pipeline.id, |current| {
            let mut p = current.unwrap_or_else(|| PipelineState {
                project: project.to_string(),
                id: pipeline.id.clone(),
                meta: RunMeta {
                    pipeline: None,
                    ..meta.clone()
                },
                parts: Vec::new(),
                completions: 0,
                open: true,
                completed_by: None,
                first_ms: now,
                last_ms: now,
            });
            if !p.parts.iter().any(|x| x.run_id == part.run_id) {
                if p.parts.len() >= MAX_PARTS {
                    return Some((p, Change::Open));
                }
                p.parts.push(part.clone());
                p.open = true;
                p.last_ms = now;
            }
            if p.open && p.covers_all() {
                return Some(p.complete("all_shards"));
            }
            Some((p, Change::Open))
        })
        .await
        .map_err(|e| unavailable(&e))?
        .expect("a part always makes a pipeline");
        if let Change::Completed(n) = change {
            self.deliver_merged(&p, n).await?;
        }
        Ok(())
    }

    /// `POST /v1/pipelines/{id}/complete`: completes it now (idempotent).
    pub async fn complete_pipeline(
        &self,
        authorization: Option<&str>,
        id: &str,
        query: Option<&str>,
    ) -> Result<PipelineStatus, ApiError> {
        let project = self.pipeline_access(authorization, id, query)?;
        let (p, change) = update(self.ports.state.as_ref(), project.as_str(), id, |current| {
            let p = current?;
            if !p.open {
                let n = p.completions;
                return Some((p, Change::AlreadyComplete(n)));
            }
            Some(p.complete("requested"))
        })
        .await
        .map_err(|e| unavailable(&e))?
        .ok_or_else(|| no_pipeline(id))?;
        if let Change::Completed(n) = change {
            self.deliver_merged(&p, n).await?;
        }
        self.status_of(p).await
    }

    /// `GET /v1/pipelines/{id}?project=`.
    pub async fn pipeline_status(
        &self,
        authorization: Option<&str>,
        id: &str,
        query: Option<&str>,
    ) -> Result<PipelineStatus, ApiError> {
        let project = self.pipeline_access(authorization, id, query)?;
        let p = self
            .ports
            .state
            .load(&key(project.as_str(), id))
            .await
            .map_err(|e| unavailable(&e))?
            .and_then(|v| serde_json::from_str::<PipelineState>(&v.value).ok())
            .ok_or_else(|| no_pipeline(id))?;
        self.status_of(p).await
    }

    fn pipeline_access(
        &self,
        authorization: Option<&str>,
        id: &str,
        query: Option<&str>,
    ) -> Result<ProjectName, ApiError> {
        let key = self.authenticate(authorization)?;
        let project = url::form_urlencoded::parse(query.unwrap_or("").as_bytes())
            .find(|(k, _)| k == "project")
            .map(|(_, v)| v.to_string())
            .ok_or_else(|| ApiError::bad_request("query parameter \"project\" is required"))?;
        let project = ProjectName::parse(&project)
            .map_err(|e| ApiError::bad_request(format!("query parameter \"project\": {e}")))?;
        check_id(id).map_err(|e| ApiError::bad_request(format!("pipeline id: {e}")))?;
        if !Self::may_access(key, &project) {
            return Err(no_pipeline(id));
        }
        Ok(project)
    }

    async fn status_of(&self, p: PipelineState) -> Result<PipelineStatus, ApiError> {
        let runs = &self.ports.runs;
        let merged = match p.completions {
            0 => None,
            n => runs
                .get_run(&p.merged_run_id(n))
                .await
                .map_err(|e| unavailable(&e))?,
        };
        let mut parts = Vec::new();
        for part in &p.parts {
            let record = runs
                .get_run(&part.run_id)
                .await
                .map_err(|e| unavailable(&e))?;
            parts.push(PartStatus {
                status_url: format!("/v1/runs/{}", part.run_id),
                run_id: part.run_id.clone(),
                shard: part.shard,
                attempt: part.attempt,
                received_at: rfc3339(part.received_ms),
                summary: part.summary,
                deliveries: record.map(|r| r.deliveries).unwrap_or_default(),
            });
        }
        let summary = match (&merged, p.open) {
            (Some(m), false) => m.summary,
            _ => latest_sum(&p),
        };
        Ok(PipelineStatus {
            state: if p.open { "open" } else { "complete" },
            latest_attempt: p.latest_attempt(),
            shards_expected: p.total(),
            project: p.project,
            id: p.id,
            completions: p.completions,
            completed_by: p.completed_by,
            summary,
            parts,
            changes: merged.as_ref().and_then(|m| m.changes.clone()),
            merged,
        })
    }

    /// Stores completion `n`'s merged result and delivers it to every connector of the
    /// project; then takes the pipeline off the open index (unless it reopened).
    async fn deliver_merged(&self, p: &PipelineState, n: u32) -> Result<(), ApiError> {
        let id = p.merged_run_id(n);
        // Finishing an interrupted completion: the merged run is kept as it was stored (its
        // time is its events' time); only what may not have been enqueued is enqueued.
        if let Some(stored) = self
            .ports
            .runs
            .get_run(&id)
            .await
            .map_err(|e| unavailable(&e))?
        {
            let queued: Vec<DeliveryMessage> = stored
                .deliveries
                .iter()
                .filter(|d| d.state == DeliveryState::Queued)
                .map(|d| {
                    DeliveryMessage::new(id.clone(), d.connector.clone(), d.kind)
                        .accepted_at(self.ports.clock.now_ms())
                })
                .collect();
            if !queued.is_empty() {
                self.ports
                    .queue
                    .enqueue(&queued)
                    .await
                    .map_err(|e| unavailable(&e))?;
            }
            return self.leave_index_unless_reopened(p).await;
        }
        let mut runs = Vec::new();
        for part in p.in_merge_order() {
            let bytes = self
                .ports
                .blobs
                .get(&run_blob_key(&part.run_id))
                .await
                .map_err(|e| unavailable(&e))?;
            if let Some(b) = bytes {
                let run: TestRun = serde_json::from_slice(&b).map_err(|e| {
                    ApiError::unavailable(format!("stored run {} unreadable: {e}", part.run_id))
                })?;
                runs.push(run);
            }
        }
        let report = merge::merge(&runs);
        drop(runs);
        let meta = RunMeta {
            pipeline: Some(PipelineRef {
                id: p.id.clone(),
                shard: None,
                attempt: p.latest_attempt(),
                completion: Some(n),
            }),
            ..p.meta.clone()
        };
        self.store_run(id, meta, report).await?;
        tracing::info!(project = %p.project, pipeline = %p.id, completion = n, "pipeline completed");
        self.ports.metrics.count("PipelinesCompleted", &[], 1);
        self.leave_index_unless_reopened(p).await
    }

    /// Takes a completed pipeline off the open index, unless a part reopened it meanwhile.
    async fn leave_index_unless_reopened(&self, p: &PipelineState) -> Result<(), ApiError> {
        let reopened = update(self.ports.state.as_ref(), &p.project, &p.id, |c| {
            c.map(|c| (c, Change::Open))
        })
        .await
        .ok()
        .flatten()
        .is_none_or(|(c, _)| c.open);
        if !reopened {
            index(self.ports.state.as_ref(), &p.project, &p.id, false)
                .await
                .map_err(|e| unavailable(&e))?;
        }
        Ok(())
    }

    /// Completes the pipelines quiet for their project's period, and finishes completions a
    /// crash interrupted. Run on the health schedule; answers how many it completed.
    pub async fn sweep_pipelines(&self) -> Result<usize, StoreError> {
        let state = self.ports.state.as_ref();
        let listed: Vec<String> = state
            .load(OPEN_INDEX)
            .await?
            .and_then(|v| serde_json::from_str(&v.value).ok())
            .unwrap_or_default();
        let now = self.ports.clock.now_ms();
        let mut completed = 0;
        for entry in listed {
            let Some((project, id)) = entry.split_once('/') else {
                continue;
            };
            let quiet_ms = ProjectName::parse(project)
                .ok()
                .and_then(|p| self.config.projects.get(&p))
                .map_or(10, |c| c.pipeline_quiet_minutes)
                * 60_000;
            let Some((p, change)) = update(state, project, id, |current| {
                let p = current?;
                if p.open && now >= p.last_ms + quiet_ms {
                    return Some(p.complete("quiet"));
                }
                Some((p, Change::Open))
            })
            .await?
            else {
                index(state, project, id, false).await?;
                continue;
            };
            let due = match change {
                Change::Completed(n) => Some(n),
                // Completed, but its merged run may never have been stored (a crash).
                _ if !p.open && p.completions > 0 => Some(p.completions),
                _ => None,
            };
            if let Some(n) = due {
                match self.deliver_merged(&p, n).await {
                    Ok(()) => completed += 1,
                    Err(e) => {
                        tracing::warn!(pipeline = %id, error = %e.detail, "pipeline completion failed; the next sweep retries")
                    }
                }
            }
        }
        Ok(completed)
    }
}

/// The parts' latest results added up: per shard index the latest attempt, plus every part
/// without a shard.
pub fn latest_sum(p: &PipelineState) -> Summary {
    let mut latest: std::collections::BTreeMap<Option<u32>, Vec<&Part>> = Default::default();
    for part in p.in_merge_order() {
        match part.shard {
            Some(s) => {
                latest.insert(Some(s.index), vec![part]);
            }
            None => latest.entry(None).or_default().push(part),
        }
    }
    let mut sum = Summary::default();
    for part in latest.values().flatten() {
        let s = part.summary;
        sum.total += s.total;
        sum.passed += s.passed;
        sum.failed += s.failed;
        sum.errored += s.errored;
        sum.skipped += s.skipped;
        sum.flaky += s.flaky;
        sum.duration_ms = sum.duration_ms.max(s.duration_ms);
    }
    sum
}

fn no_pipeline(id: &str) -> ApiError {
    ApiError::not_found(format!("no pipeline {id:?} in this project"))
}
