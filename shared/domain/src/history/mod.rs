//! Test history: what each test did in each branch's last pipelines, and what changed in a
//! run against its base (NEW / STILL FAILING / FLAKY failures, FIXED tests).
//!
//! Every whole result (a pipeline's merged result, or a run posted outside a pipeline) is
//! classified at ingest, before it is routed, so routing rules can act on what changed and
//! every connector renders it; with a branch, it is then recorded in the branch's history.
//! A pipeline's part is classified against the same base without being recorded, so each
//! shard's CI job gets a verdict on its own tests.
//!
//! Storage: one gzipped snapshot per (project, branch) in the blob store
//! ([`snapshot::Snapshot`]), replaced by a conditional write (S3 `If-Match`), so an update
//! costs the same few calls for 10 or 100,000 tests: the quarantine list (one state-store
//! read), the default branch's snapshot (one read, other branches only), the branch's
//! snapshot (one read) and its replacement (one conditional write). A conflicting write
//! (another pipeline of the branch landed first) reloads and applies again; a pipeline
//! recorded again (a late part completed it again, a crashed completion redone) replaces its
//! own entry, so it counts once.

pub mod api;
pub mod classify;
pub mod identity;
pub mod quarantine;
pub mod snapshot;

pub use classify::{Changes, Class, Counts, FailOn};

use crate::error::ApiError;
use crate::ingest::IngestService;
use crate::ports::{StoreError, rfc3339};
use crate::report::model::TestRun;
use bytes::Bytes;
use classify::{BaseSide, Inputs};
use snapshot::{Entry, Snapshot};

/// Tests a run's record lists of its classification (its stored report keeps all).
pub const RECORD_LIMIT: usize = 50;

/// The blob key of `branch`'s history in `project`.
pub fn snapshot_key(project: &str, branch: &str) -> String {
    format!("history/{project}/{}.json.gz", crate::ids::digest16(branch))
}

/// The history entry key of a run: its pipeline's, or its own.
pub fn entry_key(run: &TestRun) -> String {
    match &run.meta.pipeline {
        Some(p) => format!("pipeline:{}", p.id),
        None => format!("run:{}", run.run_id),
    }
}

impl IngestService {
    /// Classifies `run` against its base and, when `record` and the run names its branch,
    /// records it in the branch's history.
    pub async fn changes_of(&self, run: &TestRun, record: bool) -> Result<Changes, ApiError> {
        let unavailable = |e: StoreError| {
            tracing::warn!(error = %e, "history unavailable");
            api::unavailable(&e)
        };
        let project = crate::ids::ProjectName::parse(&run.meta.project)
            .ok()
            .and_then(|p| self.config.projects.get(&p))
            .ok_or_else(|| {
                ApiError::not_found(format!("unknown project {:?}", run.meta.project))
            })?;
        let blobs = &self.ports.blobs;
        let quarantined = quarantine::ids(self.ports.state.as_ref(), &run.meta.project)
            .await
            .map_err(unavailable)?;
        let default = project.default_branch.as_str();
        let branch = run.meta.branch.as_deref();
        let on_default = branch == Some(default);
        let default_snapshot = if on_default {
            None
        } else {
            load(blobs.as_ref(), &snapshot_key(&run.meta.project, default))
                .await
                .map_err(unavailable)?
                .map(|(s, _)| s)
        };
        let tests = snapshot::outcomes(run);
        let key = entry_key(run);
        let classify = |own: Option<&Snapshot>| {
            let base = match (on_default, own, &default_snapshot) {
                (true, Some(s), _) => {
                    let end = s.index_of(&key).unwrap_or(s.pipelines.len());
                    end.checked_sub(1)
                        .map(|index| BaseSide { snapshot: s, index })
                }
                (false, _, Some(d)) => d
                    .pipelines
                    .len()
                    .checked_sub(1)
                    .map(|index| BaseSide { snapshot: d, index }),
                _ => None,
            };
            classify::classify(&Inputs {
                key: &key,
                commit: run.meta.commit.as_deref(),
                tests: &tests,
                branch: own,
                base,
                default_branch: default_snapshot.as_ref(),
                quarantined: &quarantined,
                flaky_flip_rate: project.history.flaky_flip_rate,
            })
        };
        let Some(branch) = branch else {
            return Ok(classify(None));
        };
        let blob_key = snapshot_key(&run.meta.project, branch);
        loop {
            let loaded = load_raw(blobs.as_ref(), &blob_key)
                .await
                .map_err(unavailable)?;
            let (own, tag, raw) = match loaded {
                Some((s, tag, raw)) => (Some(s), Some(tag), Some(raw)),
                None => (None, None, None),
            };
            let changes = classify(own.as_ref());
            if !record {
                return Ok(changes);
            }
            let mut next = own.unwrap_or_else(|| Snapshot::new(branch));
            next.branch = branch.to_string();
            next.apply(
                Entry {
                    key: key.clone(),
                    run_id: run.run_id.clone(),
                    commit: run.meta.commit.clone(),
                    at: run.received_at.clone(),
                    total: run.summary.total,
                    failed: run.summary.failed + run.summary.errored,
                },
                &tests,
                project.history.window,
            );
            let bytes = next.encode();
            drop(next);
            // Recorded already (a completion redone): the same history encodes the same.
            if raw.as_deref() == Some(&bytes[..]) {
                return Ok(changes);
            }
            let written = blobs
                .put_if(&blob_key, Bytes::from(bytes), tag.as_deref())
                .await
                .map_err(unavailable)?;
            if written {
                self.ports.metrics.count("HistoryUpdates", &[], 1);
                return Ok(changes);
            }
            tracing::info!(branch, "history changed meanwhile; applying again");
        }
    }
}

/// A branch's snapshot and the tag of the version read.
pub(crate) async fn load(
    blobs: &dyn crate::ports::BlobStore,
    key: &str,
) -> Result<Option<(Snapshot, String)>, StoreError> {
    Ok(load_raw(blobs, key).await?.map(|(s, tag, _)| (s, tag)))
}

/// [`load`], with the bytes read.
async fn load_raw(
    blobs: &dyn crate::ports::BlobStore,
    key: &str,
) -> Result<Option<(Snapshot, String, Bytes)>, StoreError> {
    let Some(t) = blobs.get_tagged(key).await? else {
        return Ok(None);
    };
    // An unreadable snapshot must not stop the branch's results: its history starts again
    // (replacing it, conditionally, like any update).
    let s = Snapshot::decode(&t.bytes).unwrap_or_else(|e| {
        tracing::error!(key, error = %e, "history snapshot unreadable; starting it again");
        Snapshot::default()
    });
    Ok(Some((s, t.tag, t.bytes)))
}

/// RFC 3339 of now, for quarantine entries.
pub(crate) fn now(ms: u64) -> String {
    rfc3339(ms)
}

#[cfg(test)]
mod tests;
