//! The ingest service: authenticate, check, decode, parse, then store and enqueue.
//!
//! Policy: every check that can reject a request runs before anything is written, so a
//! rejected request stores nothing and enqueues nothing. An accepted request is written in
//! the order blob -> run record -> messages; a crash part-way is repaired by the client's
//! retry with the same `Idempotency-Key` (the run id is derived from it, and every write
//! is idempotent).

pub mod hooks;
pub mod inflate;
mod params;
pub mod signatures;

use crate::config::{ApiKeyConfig, Config, ConnectorKind, hash_api_key};
use crate::error::ApiError;
use crate::ids::{ConnectorName, IdempotencyKey, ProjectName, RunId};
use crate::ingest::inflate::{Inflight, Reservation};
use crate::ports::{
    BlobStore, Claim, Clock, Created, DeliveryMessage, DeliveryQueue, DeliveryRecord,
    DeliveryState, IdempotencyStore, RunRecord, RunStore, Skipped, rfc3339, run_blob_key,
};
use crate::report::model::{Format, Report, RunMeta, Summary, TestRun};
use crate::report::parse;
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::Arc;

/// How long a completed `Idempotency-Key` is remembered.
pub const IDEMPOTENCY_TTL_MS: u64 = 24 * 60 * 60 * 1000;
/// How long one request may hold a key before another may take over.
pub const IDEMPOTENCY_LEASE_MS: u64 = 60 * 1000;

/// The adapters the services run on, chosen at start-up (AWS or embedded).
#[derive(Clone)]
pub struct Ports {
    pub blobs: Arc<dyn BlobStore>,
    pub runs: Arc<dyn RunStore>,
    pub idempotency: Arc<dyn IdempotencyStore>,
    pub queue: Arc<dyn DeliveryQueue>,
    pub dead_letters: Arc<dyn crate::ports::DeadLetterStore>,
    /// Health reports (`GET /v1/health`).
    pub state: Arc<dyn crate::ports::StateStore>,
    pub clock: Arc<dyn Clock>,
    pub metrics: Arc<dyn crate::health::metrics::Metrics>,
}

/// A report upload as the HTTP edge received it.
#[derive(Default)]
pub struct Submission {
    pub authorization: Option<String>,
    /// The raw query string, without `?`.
    pub query: Option<String>,
    pub content_encoding: Option<String>,
    pub idempotency_key: Option<String>,
    pub body: Bytes,
    /// What the edge reserved of the in-flight budget while it read the body.
    pub reservation: Reservation,
}

/// Never prints the bearer token (nor the body).
impl std::fmt::Debug for Submission {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Submission")
            .field(
                "authorization",
                &self.authorization.as_ref().map(|_| "[redacted]"),
            )
            .field("query", &self.query)
            .field("content_encoding", &self.content_encoding)
            .field("idempotency_key", &self.idempotency_key)
            .field("body_bytes", &self.body.len())
            .finish()
    }
}

/// The 202 answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Accepted {
    pub run_id: RunId,
    pub status_url: String,
    pub deliveries: Vec<QueuedDelivery>,
    /// The project's connectors this run is not for, and why.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub skipped: Vec<Skipped>,
    pub summary: Summary,
    /// What changed against the base: for a whole run its classification, for a pipeline's
    /// part its own tests against the same base (its CI job's verdict).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub changes: Option<Box<crate::history::Changes>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueuedDelivery {
    pub connector: ConnectorName,
    pub kind: ConnectorKind,
    pub state: DeliveryState,
}

/// The answer to a submission, and whether it replays an earlier one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubmitResult {
    pub accepted: Accepted,
    pub replayed: bool,
}

/// `GET /v1/runs/{id}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RunStatus {
    #[serde(flatten)]
    pub record: RunRecord,
    pub status_url: String,
}

pub struct IngestService {
    pub(crate) config: Arc<Config>,
    keys: HashMap<String, ApiKeyConfig>,
    pub(crate) ports: Ports,
    pub(crate) hooks: crate::ingest::signatures::HookSecrets,
    /// Inflated bytes being parsed at once, across requests.
    pub(crate) inflight: Inflight,
}

/// A report ready to be accepted.
pub(crate) struct Accept {
    pub project: ProjectName,
    pub meta: RunMeta,
    pub report: crate::report::model::Report,
    /// The idempotency record that makes a repeat replay the first answer.
    pub claim_key: Option<String>,
    /// What a repeat must match (a hash of the request).
    pub fingerprint: String,
    /// Bytes of the memory budget left for the stored JSON (see `parse::limits`).
    pub blob_budget: usize,
}

impl IngestService {
    pub fn new(config: Arc<Config>, ports: Ports) -> Self {
        let keys = config
            .api_keys
            .iter()
            .map(|k| (k.sha256.to_ascii_lowercase(), k.clone()))
            .collect();
        let inflight = Inflight::new(config.server.max_inflight_bytes);
        IngestService {
            config,
            keys,
            ports,
            hooks: Default::default(),
            inflight,
        }
    }

    /// The `[hooks.*]` sources' secrets (resolved at start): enables `/v1/hooks/{source}`.
    pub fn with_hooks(mut self, hooks: crate::ingest::signatures::HookSecrets) -> Self {
        self.hooks = hooks;
        self
    }

    /// The largest body accepted on the wire.
    pub fn max_body_bytes(&self) -> usize {
        self.config.server.max_body_bytes
    }

    /// Looks the bearer token up by its hash: the key itself is never stored or compared.
    pub(crate) fn authenticate(
        &self,
        authorization: Option<&str>,
    ) -> Result<&ApiKeyConfig, ApiError> {
        let header = authorization.ok_or_else(|| {
            ApiError::unauthorized("send the API key as 'Authorization: Bearer <key>'")
        })?;
        let token = header
            .strip_prefix("Bearer ")
            .or_else(|| header.strip_prefix("bearer "))
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| {
                ApiError::unauthorized("the Authorization header must be 'Bearer <key>'")
            })?;
        self.keys
            .get(&hash_api_key(token))
            .ok_or_else(|| ApiError::unauthorized("unknown API key"))
    }

    pub(crate) fn may_access(key: &ApiKeyConfig, project: &ProjectName) -> bool {
        key.projects.as_ref().is_none_or(|ps| ps.contains(project))
    }

    /// Refuses an unknown or missing API key before the body is read: a request without a
    /// valid key never holds any of the in-flight budget.
    pub fn check_key(&self, authorization: Option<&str>) -> Result<(), ApiError> {
        self.authenticate(authorization).map(|_| ())
    }

    /// Refuses an unknown hook source before the body is read.
    pub fn check_hook_source(&self, source: &str) -> Result<(), ApiError> {
        self.config
            .hooks
            .get(source)
            .map(|_| ())
            .ok_or_else(|| crate::ingest::signatures::unknown_source(source))
    }

    /// The in-flight budget: the HTTP edge reserves a body from it as it reads it.
    pub fn inflight(&self) -> &Inflight {
        &self.inflight
    }

    pub async fn submit(&self, mut req: Submission) -> Result<SubmitResult, ApiError> {
        let key = self.authenticate(req.authorization.as_deref())?;
        let params = params::parse_params(req.query.as_deref().unwrap_or(""))?;
        self.config.projects.get(&params.project).ok_or_else(|| {
            ApiError::not_found(format!(
                "unknown project {:?}: it must be configured under [projects.{}]",
                params.project.as_str(),
                params.project
            ))
        })?;
        if !Self::may_access(key, &params.project) {
            return Err(ApiError::forbidden(format!(
                "API key {:?} may not post to project {:?}",
                key.id.as_str(),
                params.project.as_str()
            )));
        }
        let idempotency_key = req
            .idempotency_key
            .as_deref()
            .map(IdempotencyKey::parse)
            .transpose()
            .map_err(ApiError::bad_request)?;
        let max_wire = self.config.server.max_body_bytes;
        if req.body.len() > max_wire {
            return Err(ApiError::body_too_large(max_wire));
        }
        let fingerprint = request_fingerprint(req.query.as_deref().unwrap_or(""), &req.body);
        // Held until the run is stored: what is being parsed counts against the budget.
        let mut reservation = std::mem::take(&mut req.reservation);
        let body = self.inflight.decode(
            &req.body,
            req.content_encoding.as_deref(),
            self.config.server.max_decompressed_bytes,
            &mut reservation,
        )?;
        drop(req);
        let (report, blob_budget) = self.parse_report(&body, params.format)?;
        drop(body);
        let claim_key = idempotency_key
            .as_ref()
            .map(|k| format!("ingest/{}/{}", key.id, k.as_str()));
        self.accept(Accept {
            project: params.project,
            meta: params.meta,
            report,
            claim_key,
            fingerprint,
            blob_budget,
        })
        .await
    }

    /// Parses within the configured limits; a 400 names what and where, a 413 the limit.
    /// Also answers the bytes of the memory budget left for the stored JSON, once `body` is
    /// dropped: callers drop it before they accept.
    pub(crate) fn parse_report(
        &self,
        body: &[u8],
        format: Option<Format>,
    ) -> Result<(crate::report::model::Report, usize), ApiError> {
        let limits = parse::Limits {
            max_cases: self.config.server.max_cases_per_report,
        };
        let parsed = parse::parse_with(body, format, &limits).map_err(report_error)?;
        let left = parse::limits::stored_budget(body.len(), parsed.heap_bytes);
        Ok((parsed.report, left))
    }

    /// Stores and enqueues a parsed, authorised report; with a `claim_key`, at most once
    /// (a repeat with the same fingerprint replays the first answer).
    pub(crate) async fn accept(&self, a: Accept) -> Result<SubmitResult, ApiError> {
        let Accept {
            project: project_name,
            meta,
            report,
            claim_key,
            fingerprint,
            blob_budget,
        } = a;
        let project = self.config.projects.get(&project_name).ok_or_else(|| {
            ApiError::not_found(format!("unknown project {:?}", project_name.as_str()))
        })?;
        let summary = report.summary();
        let now = self.ports.clock.now_ms();
        let run_id = match &claim_key {
            Some(k) => RunId::derived(k.as_bytes()),
            None => RunId::new(now),
        };
        let part_of = meta.pipeline.clone();
        let received_at = rfc3339(now);
        let run = TestRun {
            run_id: run_id.clone(),
            received_at: received_at.clone(),
            meta,
            summary,
            report,
            changes: None,
        };
        // Refused for its size before anything is written, the idempotency claim included.
        let blob = encode_run(&run, blob_budget)?;
        if let Some(claim_key) = &claim_key {
            match self
                .ports
                .idempotency
                .claim(
                    claim_key,
                    &fingerprint,
                    now,
                    now + IDEMPOTENCY_LEASE_MS,
                    now + IDEMPOTENCY_TTL_MS,
                )
                .await
                .map_err(|e| store_unavailable(&e))?
            {
                Claim::Acquired { .. } => {}
                Claim::Completed {
                    fingerprint: f,
                    response,
                } if f == fingerprint => {
                    let accepted: Accepted = serde_json::from_str(&response).map_err(|e| {
                        ApiError::unavailable(format!("stored idempotent response unreadable: {e}"))
                    })?;
                    return Ok(SubmitResult {
                        accepted,
                        replayed: true,
                    });
                }
                Claim::InProgress { fingerprint: f } if f == fingerprint => {
                    return Err(ApiError::idempotency_in_progress(
                        "a request with this Idempotency-Key is still being processed; retry shortly",
                    ));
                }
                Claim::Completed { .. } | Claim::InProgress { .. } => {
                    return Err(ApiError::idempotency_mismatch(
                        "this Idempotency-Key was used for a request with a different body or parameters",
                    ));
                }
            }
        }

        let routed = self
            .classify_and_route(project, &run, part_of.is_none())
            .await;
        let (changes, connectors, skipped) = match routed {
            Ok(r) => r,
            Err(e) => {
                if let Some(k) = &claim_key {
                    let _ = self.ports.idempotency.release(k).await;
                }
                return Err(e);
            }
        };
        let accepted = Accepted {
            run_id: run_id.clone(),
            status_url: format!("/v1/runs/{run_id}"),
            deliveries: connectors
                .iter()
                .map(|(c, k)| QueuedDelivery {
                    connector: c.clone(),
                    kind: *k,
                    state: DeliveryState::Queued,
                })
                .collect(),
            skipped: skipped.clone(),
            summary,
            changes: Some(Box::new(changes.shortened(crate::history::RECORD_LIMIT))),
        };
        let record = record_of(&run, &connectors, skipped, Some(changes));
        // The stored JSON replaces the model: the two are never held longer than needed.
        drop(run);
        let part = part_of.map(|p| {
            (
                p,
                record.run_id.clone(),
                record.summary,
                record.meta.clone(),
            )
        });
        let mut result = self.store_and_enqueue(blob, record, &connectors).await;
        if let (Ok(()), Some((p, run_id, summary, meta))) = (&result, &part) {
            result = self
                .record_part(&project_name, run_id, *summary, meta, p)
                .await;
        }
        if let Err(e) = result {
            if let Some(k) = &claim_key {
                // Let the client's retry redo the work; every step above is idempotent.
                let _ = self.ports.idempotency.release(k).await;
            }
            return Err(e);
        }
        if let Some(k) = &claim_key {
            let response = serde_json::to_string(&accepted).expect("serialisable");
            if let Err(e) = self
                .ports
                .idempotency
                .complete(k, &fingerprint, &response, now + IDEMPOTENCY_TTL_MS)
                .await
            {
                // The run is accepted and queued; a retry will find it (same run id).
                tracing::warn!(run_id = %run_id, error = %e, "could not record idempotent response");
            }
        }
        tracing::info!(
            run_id = %run_id,
            project = %project_name,
            tests = summary.total,
            failed = summary.failed + summary.errored,
            deliveries = connectors.len(),
            "run accepted"
        );
        self.ports.metrics.count("RunsAccepted", &[], 1);
        self.ports
            .metrics
            .count("TestsAccepted", &[], summary.total);
        Ok(SubmitResult {
            accepted,
            replayed: false,
        })
    }

    async fn store_and_enqueue(
        &self,
        blob: Vec<u8>,
        record: RunRecord,
        connectors: &[(ConnectorName, ConnectorKind)],
    ) -> Result<(), ApiError> {
        let run = &record;
        self.ports
            .blobs
            .put(&run_blob_key(&run.run_id), Bytes::from(blob))
            .await
            .map_err(|e| store_unavailable(&e))?;
        let created = self
            .ports
            .runs
            .create_run(&record)
            .await
            .map_err(|e| store_unavailable(&e))?;
        if created == Created::AlreadyExists {
            tracing::info!(run_id = %run.run_id, "run exists already (retried request); re-enqueueing");
        }
        let accepted_ms = self.ports.clock.now_ms();
        let messages: Vec<DeliveryMessage> = connectors
            .iter()
            .map(|(c, k)| {
                DeliveryMessage::new(run.run_id.clone(), c.clone(), *k).accepted_at(accepted_ms)
            })
            .collect();
        if !messages.is_empty() {
            self.ports
                .queue
                .enqueue(&messages)
                .await
                .map_err(|e| store_unavailable(&e))?;
        }
        Ok(())
    }

    /// Stores `report` as run `run_id` (received now) and enqueues it to its project's
    /// connectors (by their routing rules). Repeating it is harmless: the run exists already
    /// and the deliveries dedupe.
    pub(crate) async fn store_run(
        &self,
        run_id: RunId,
        meta: RunMeta,
        report: Report,
    ) -> Result<(), ApiError> {
        let summary = report.summary();
        let project = ProjectName::parse(&meta.project)
            .ok()
            .and_then(|p| self.config.projects.get(&p))
            .ok_or_else(|| ApiError::not_found(format!("unknown project {:?}", meta.project)))?;
        let run = TestRun {
            run_id,
            received_at: rfc3339(self.ports.clock.now_ms()),
            summary,
            meta,
            report,
            changes: None,
        };
        let (changes, connectors, skipped) = self.classify_and_route(project, &run, true).await?;
        // Built from parts each within its budget.
        let blob = encode_run(&run, usize::MAX)?;
        let record = record_of(&run, &connectors, skipped, Some(changes));
        drop(run);
        self.store_and_enqueue(blob, record, &connectors).await
    }

    /// Classifies `run` against its base (recording it in its branch's history when it is a
    /// `whole` result, not a pipeline's part), then routes it.
    async fn classify_and_route(
        &self,
        project: &crate::config::ProjectConfig,
        run: &TestRun,
        whole: bool,
    ) -> Result<Routed, ApiError> {
        let changes = self.changes_of(run, whole).await?;
        let outcome = whole.then(|| run.summary.outcome());
        let (to, skipped) = self.route(project, &run.meta, outcome, Some(&changes));
        Ok((changes, to, skipped))
    }

    /// The project's connectors a run goes to, and those it does not with why: routing
    /// rules (`when`), and for a pipeline's part (`outcome` unknown) the connectors that act
    /// on its merged result only.
    fn route(
        &self,
        project: &crate::config::ProjectConfig,
        meta: &RunMeta,
        outcome: Option<crate::report::model::RunOutcome>,
        changes: Option<&crate::history::Changes>,
    ) -> (Vec<(ConnectorName, ConnectorKind)>, Vec<Skipped>) {
        let part = meta.pipeline.as_ref().is_some_and(|p| !p.is_merged());
        let (mut to, mut skipped) = (Vec::new(), Vec::new());
        for c in &project.connectors {
            let Some(kind) = self.config.connector_kind(c) else {
                continue;
            };
            let takes_parts = self
                .config
                .connectors
                .get(c)
                .is_some_and(|c| c.takes_parts());
            let reason = if part && !takes_parts {
                Some("acts on the pipeline's merged result, when it completes".to_string())
            } else {
                project
                    .when
                    .get(c)
                    .and_then(|w| w.skip_reason(meta, outcome, changes))
                    .map(|r| format!("routing rule: {r}"))
            };
            match reason {
                Some(reason) => skipped.push(Skipped {
                    connector: c.clone(),
                    reason,
                }),
                None => to.push((c.clone(), kind)),
            }
        }
        (to, skipped)
    }

    pub async fn run_status(
        &self,
        authorization: Option<&str>,
        id: &str,
    ) -> Result<RunStatus, ApiError> {
        let key = self.authenticate(authorization)?;
        let not_found = || ApiError::not_found(format!("no run with id {id:?}"));
        let run_id = RunId::parse(id).ok_or_else(not_found)?;
        let record = self
            .ports
            .runs
            .get_run(&run_id)
            .await
            .map_err(|e| store_unavailable(&e))?
            .ok_or_else(not_found)?;
        let project = ProjectName::parse(&record.meta.project).map_err(|_| not_found())?;
        if !Self::may_access(key, &project) {
            return Err(not_found());
        }
        Ok(RunStatus {
            status_url: format!("/v1/runs/{run_id}"),
            record,
        })
    }
}

/// A run's classification and where it goes: the connectors it is for, and those it is not
/// with why.
type Routed = (
    crate::history::Changes,
    Vec<(ConnectorName, ConnectorKind)>,
    Vec<Skipped>,
);

/// A new run's record: every delivery queued; its classification shortened to a size a
/// record holds.
fn record_of(
    run: &TestRun,
    connectors: &[(ConnectorName, ConnectorKind)],
    skipped: Vec<Skipped>,
    changes: Option<crate::history::Changes>,
) -> RunRecord {
    RunRecord {
        run_id: run.run_id.clone(),
        received_at: run.received_at.clone(),
        meta: run.meta.clone(),
        format: run.report.format,
        summary: run.summary,
        deliveries: connectors
            .iter()
            .map(|(c, k)| DeliveryRecord::queued(c.clone(), *k))
            .collect(),
        skipped,
        changes: changes.map(|c| c.shortened(crate::history::RECORD_LIMIT)),
    }
}

/// The report error users see: 413 for a limit, 400 for anything unreadable.
pub(crate) fn report_error(e: parse::ReportError) -> ApiError {
    if e.too_large {
        ApiError::too_large(e.to_string())
    } else {
        ApiError::invalid_report(e.to_string())
    }
}

/// The run as stored, sized exactly (counted first, then written once) and refused (413)
/// when it would take more than `budget` bytes.
pub fn encode_run(run: &TestRun, budget: usize) -> Result<Vec<u8>, ApiError> {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut count = Count(0);
    serde_json::to_writer(&mut count, run).expect("serialisable");
    if count.0 > budget {
        return Err(ApiError::too_large(format!(
            "the report would be stored as {} bytes of JSON, more than its memory budget allows ({budget} bytes left): names, describe titles or class names repeated across many tests make it far larger than it is on the wire",
            count.0
        )));
    }
    let mut blob = Vec::with_capacity(count.0);
    serde_json::to_writer(&mut blob, run).expect("serialisable");
    Ok(blob)
}

fn store_unavailable(e: &crate::ports::StoreError) -> ApiError {
    tracing::error!(error = %e, "store unavailable");
    ApiError::unavailable(format!(
        "{} is unavailable; nothing was accepted, retry later",
        e.backend
    ))
}

fn request_fingerprint(query: &str, body: &[u8]) -> String {
    use sha2::Digest;
    let mut h = sha2::Sha256::new();
    h.update(query.as_bytes());
    h.update([0]);
    h.update(body);
    hex::encode(h.finalize())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_submission_never_prints_its_bearer_token() {
        let s = Submission {
            authorization: Some("Bearer trk_live_secret".into()),
            body: Bytes::from_static(b"<testsuite/>"),
            ..Submission::default()
        };
        let shown = format!("{s:?} {s:#?}");
        assert!(!shown.contains("trk_live_secret"), "{shown}");
        assert!(shown.contains("[redacted]"));
    }
}
