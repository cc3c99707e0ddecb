//! The delivery service: what happens to one delivery message, the same on Lambda (an SQS
//! record) and locally (a row of the embedded queue).
//!
//! Per message: skip what is finished (a duplicate) or stale (an old generation of a
//! redriven delivery); ask the target's circuit breaker (OPEN: defer without using up an
//! attempt); call the connector, whose steps are idempotent ([`Steps`]); tell the breaker
//! how it went; record the attempt. A transient failure schedules a retry on the
//! [`RetryPolicy`]; a permanent one, or the end of the schedule, dead-letters the message
//! with the reason. Nothing is acknowledged before its outcome is recorded.

pub mod admin;
pub mod breaker;
pub mod breakers;
pub mod fallback;
pub mod net;
pub mod retry;
pub mod signing;
pub mod steps;
pub mod worker;

use crate::delivery::breaker::{Admission, Signal};
use crate::delivery::breakers::Breakers;
use crate::delivery::retry::RetryPolicy;
use crate::delivery::steps::{CrashPoint, Faults, NoFaults, Steps};
use crate::health::metrics::Metrics;
use crate::ids::ConnectorName;
use crate::ports::{
    Attempt, BlobStore, Clock, Connector, DeadLetter, DeadLetterStore, Delivered, DeliveryContext,
    DeliveryMessage, DeliveryQueue, DeliveryRecord, DeliveryState, DeliveryUpdate, ErrorClass,
    IdempotencyStore, Redrive, RunStore, StateStore, StepError, StoreError, rfc3339, run_blob_key,
};
use crate::report::model::TestRun;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

/// What the queue should do with the message once the service is done with it.
/// How long a pipeline's merged result waits before it looks at its parts' deliveries again.
pub const PARTS_WAIT: Duration = Duration::from_secs(5);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disposition {
    /// Delete it: delivered, dead-lettered, or nothing left to do.
    Done,
    /// Put it back as a fresh message due after this delay: a scheduled retry or a breaker
    /// deferral (does not count towards the dead-letter queue's receive limit).
    Requeue(Duration),
    /// Leave it and make it visible again after this delay: testrelay's own stores failed
    /// (a crash loop of those reaches the dead-letter queue).
    RetryIn(Duration),
    /// An injected crash: settle nothing (the visibility timeout brings it back).
    Crashed,
}

/// A delivery the target throttled this many times in one generation is dead-lettered.
/// Throttled attempts do not use up the retry schedule (the target is up and asked us to
/// wait), so this is what ends a delivery to a target that never stops throttling.
pub const MAX_THROTTLED: u32 = 50;

/// Where an attempt stands in its generation.
#[derive(Debug, Clone, Copy)]
struct Position {
    /// 1-based position on the retry schedule (throttled attempts not counted).
    attempt: u32,
    /// Throttled attempts so far.
    throttled: u32,
}

/// A vendor's error text kept with a delivery (each attempt, the last error, the dead
/// letter's reason) is cut to this many bytes: with every attempt it must still fit one
/// DynamoDB item (400 KB) and one SQS message (256 KiB), whatever the vendor answered.
pub const ERROR_DETAIL_CAP: usize = 2 * 1024;

/// When testrelay's own stores fail, the message is simply tried again this much later.
pub const STORE_RETRY: Duration = Duration::from_secs(30);

pub type Connectors = HashMap<ConnectorName, Arc<dyn Connector>>;

/// The adapters a delivery needs.
#[derive(Clone)]
pub struct DeliveryPorts {
    pub runs: Arc<dyn RunStore>,
    pub blobs: Arc<dyn BlobStore>,
    pub idempotency: Arc<dyn IdempotencyStore>,
    pub state: Arc<dyn StateStore>,
    pub dead_letters: Arc<dyn DeadLetterStore>,
    pub clock: Arc<dyn Clock>,
    pub metrics: Arc<dyn Metrics>,
}

pub struct DeliveryService {
    ports: DeliveryPorts,
    fallbacks: std::collections::BTreeMap<ConnectorName, fallback::Fallback>,
    /// Where fallback notices are enqueued (fallbacks are off without it).
    fallback_queue: Option<Arc<dyn crate::ports::DeliveryQueue>>,
    /// Deliveries this process has enqueued a notice for (bounded).
    fallen_back: std::sync::Mutex<std::collections::HashSet<(crate::ids::RunId, ConnectorName)>>,
    breakers: Breakers,
    connectors: Connectors,
    policy: RetryPolicy,
    faults: Arc<dyn Faults>,
    public_url: Option<String>,
}

/// An attempt's result on its way to the run record.
struct Outcome {
    attempt: Attempt,
    result: Result<Delivered, crate::ports::DeliveryError>,
}

impl DeliveryService {
    pub fn new(ports: DeliveryPorts, connectors: Connectors, policy: RetryPolicy) -> Self {
        DeliveryService {
            breakers: Breakers::new(
                ports.state.clone(),
                ports.clock.clone(),
                ports.metrics.clone(),
            ),
            ports,
            connectors,
            policy,
            faults: Arc::new(NoFaults),
            public_url: None,
            fallbacks: Default::default(),
            fallback_queue: None,
            fallen_back: Default::default(),
        }
    }

    /// The connectors' fallbacks (`fallback = "<connector>"`), their notices enqueued on
    /// `queue`.
    pub fn with_fallbacks(
        mut self,
        config: &crate::config::Config,
        queue: Arc<dyn crate::ports::DeliveryQueue>,
    ) -> Self {
        self.fallbacks = fallback::fallbacks(config);
        self.fallback_queue = Some(queue);
        self
    }

    /// Where users reach this testrelay (`server.public_url`): links in messages point
    /// at `<public_url>/v1/runs/<id>`; without it they are paths.
    pub fn with_public_url(mut self, url: Option<String>) -> Self {
        self.public_url = url.map(|u| u.trim_end_matches('/').to_string());
        self
    }

    /// Crash injection, for fault-injection tests.
    pub fn with_faults(mut self, faults: Arc<dyn Faults>) -> Self {
        self.faults = faults;
        self
    }

    fn outcome(&self, msg: &DeliveryMessage, outcome: &str) {
        let connector = msg.connector.as_str();
        self.ports.metrics.count(
            "DeliveryOutcome",
            &[("Connector", connector), ("Outcome", outcome)],
            1,
        );
        // How long a delivery has been waiting, each time it stays undelivered for now (and
        // 0 once one is delivered): what the undelivered-age alarm watches, per connector
        // and across all.
        let age_s = match outcome {
            "retry" | "deferred" => msg
                .accepted_ms
                .map(|at| self.ports.clock.now_ms().saturating_sub(at) as f64 / 1000.0),
            "delivered" => Some(0.0),
            _ => None,
        };
        if let Some(age_s) = age_s {
            self.ports
                .metrics
                .gauge("UndeliveredAge", &[("Connector", connector)], age_s);
            self.ports.metrics.gauge("UndeliveredAge", &[], age_s);
        }
    }

    /// Handles one message. Never loses it: anything unexpected from testrelay's own
    /// stores means "try again later".
    pub async fn handle(&self, msg: &DeliveryMessage) -> Disposition {
        let now = self.ports.clock.now_ms();
        if let Some(not_before) = msg.not_before_ms.filter(|&t| t > now) {
            return Disposition::Requeue(Duration::from_millis(not_before - now));
        }
        match self.try_handle(msg).await {
            Ok(d) => d,
            Err(StepError::Crashed) => Disposition::Crashed,
            // Waiting for another delivery (a step's or a claim's holder, a pipeline's first
            // part) is not a failure: a fresh delayed message, so that a long wait never
            // counts towards the queue's receive limit (SQS would move the message to the
            // dead-letter queue after maxReceiveCount, the run still "delivering").
            Err(StepError::Busy { retry_in }) => Disposition::Requeue(retry_in),
            Err(StepError::Store(e)) => {
                tracing::warn!(run_id = %msg.run_id, connector = %msg.connector, error = %e, "store error; will retry the message");
                Disposition::RetryIn(STORE_RETRY)
            }
            Err(StepError::Failed(e)) => {
                tracing::error!(run_id = %msg.run_id, error = %e, "unclassified failure; will retry the message");
                Disposition::RetryIn(STORE_RETRY)
            }
        }
    }

    async fn try_handle(&self, msg: &DeliveryMessage) -> Result<Disposition, StepError> {
        let now = self.ports.clock.now_ms();
        // A fallback notice goes through the connector it names.
        let connector = self
            .connectors
            .get(msg.via.as_ref().unwrap_or(&msg.connector));
        // The breaker first, without reading the run: while a target is down, thousands of
        // messages cycle through here and each deferral must stay cheap. The run store
        // ignores the Deferred state for a delivery that is delivered or dead-lettered.
        // Every target the connector calls (Jira and Xray Cloud are two), each admitted by
        // its own breaker.
        let mut admissions: Vec<(&str, Admission)> = Vec::new();
        let mut rejected = None;
        if let Some(c) = connector {
            for target in targets(c.as_ref()) {
                let admission = self.breakers.admit(target, c.breaker()).await;
                if let Admission::Reject { retry_at_ms } = admission {
                    rejected = Some((target, retry_at_ms));
                    break;
                }
                admissions.push((target, admission));
            }
        }
        if let Some((target, retry_at_ms)) = rejected {
            let mut update = DeliveryUpdate::to(DeliveryState::Deferred);
            update.next_attempt_at = Some(rfc3339(retry_at_ms));
            update.last_error = Some(format!("circuit breaker open for {target}"));
            self.ports
                .runs
                .update_delivery(&msg.run_id, &msg.connector, &update)
                .await?;
            if self.waited_too_long(msg, now) {
                self.fall_back(msg, false).await?;
            }
            self.outcome(msg, "deferred");
            return Ok(Disposition::Requeue(Duration::from_millis(
                retry_at_ms.saturating_sub(now),
            )));
        }
        // From here a probe admission that finds nothing to do lets its lease run out
        // (`probe_lease`), after which another delivery probes.
        let Some(record) = self.ports.runs.get_run(&msg.run_id).await? else {
            tracing::error!(run_id = %msg.run_id, "message for an unknown run; dropping it");
            return Ok(Disposition::Done);
        };
        let Some(delivery) = record
            .deliveries
            .iter()
            .find(|d| d.connector == msg.connector)
        else {
            tracing::error!(run_id = %msg.run_id, connector = %msg.connector, "message for a delivery the run does not have; dropping it");
            return Ok(Disposition::Done);
        };
        if delivery.state == DeliveryState::Delivered {
            self.outcome(msg, "duplicate");
            return Ok(Disposition::Done);
        }
        if delivery.state == DeliveryState::DeadLettered && msg.generation <= delivery.generation {
            tracing::info!(run_id = %msg.run_id, connector = %msg.connector, "stale message of a dead-lettered delivery");
            // Its notice may not have been enqueued (a crash right after dead-lettering).
            self.fall_back(msg, false).await?;
            return Ok(Disposition::Done);
        }
        let redrive = (msg.generation > delivery.generation).then_some(Redrive {
            generation: msg.generation,
            redrive_from: delivery.attempts.len() as u32,
        });
        let redrive_from = redrive.map_or(delivery.redrive_from, |r| r.redrive_from);
        // Attempts in this generation, this one included: the retry schedule's position.
        // Throttled attempts do not move it (the target was up and asked us to wait), but
        // too many of them end the delivery like any other exhausted schedule.
        let this_generation = delivery
            .attempts
            .get(redrive_from as usize..)
            .unwrap_or_default();
        let throttled = this_generation
            .iter()
            .filter(|a| a.error_class == Some(ErrorClass::Throttled))
            .count() as u32;
        let position = Position {
            attempt: this_generation.len() as u32 - throttled + 1,
            throttled,
        };
        let number = delivery.attempts.len() as u32 + 1;

        let Some(connector) = connector else {
            let reason = format!(
                "connector {:?} is not configured here",
                msg.connector.as_str()
            );
            let outcome = Outcome {
                attempt: attempt(number, now, now),
                result: Err(permanent(reason)),
            };
            return self.finish(msg, delivery, redrive, position, outcome).await;
        };
        // A pipeline's merged result goes to a connector that builds it from the parts
        // (closing the TestRail run, the final Slack message) only once every part's
        // delivery to that connector has ended: it waits, without using up an attempt.
        if connector.kind().builds_from_parts()
            && delivery.notice_for.is_none()
            && let Some(p) = record.meta.pipeline.as_ref().filter(|p| p.is_merged())
            && self
                .parts_pending(&record.meta.project, &p.id, &msg.connector)
                .await?
        {
            let mut update = DeliveryUpdate::to(DeliveryState::Deferred);
            update.next_attempt_at = Some(rfc3339(now + PARTS_WAIT.as_millis() as u64));
            update.last_error = Some("waits for the pipeline's parts to be delivered".into());
            self.ports
                .runs
                .update_delivery(&msg.run_id, &msg.connector, &update)
                .await?;
            self.outcome(msg, "deferred");
            return Ok(Disposition::Requeue(PARTS_WAIT));
        }
        let mut update = DeliveryUpdate::to(DeliveryState::Delivering);
        update.last_error = delivery.last_error.clone();
        update.redrive = redrive;
        self.ports
            .runs
            .update_delivery(&msg.run_id, &msg.connector, &update)
            .await?;

        let steps = Steps::new(
            self.ports.idempotency.clone(),
            self.ports.clock.clone(),
            self.faults.clone(),
            msg.clone(),
        )
        .after_attempts(delivery.attempts.len());
        let ctx = DeliveryContext {
            event_id: crate::ids::event_id(&msg.run_id, &msg.connector),
            attempt: number,
            generation: msg.generation,
            now_ms: now,
            status_url: format!(
                "{}/v1/runs/{}",
                self.public_url.as_deref().unwrap_or(""),
                msg.run_id
            ),
        };
        let delivered = match &delivery.notice_for {
            // A fallback notice: the run's record says what failed.
            Some(failed) => {
                self.notify(connector.as_ref(), &record, failed, &ctx, &steps)
                    .await
            }
            None => {
                let Some(bytes) = self.ports.blobs.get(&run_blob_key(&msg.run_id)).await? else {
                    let outcome = Outcome {
                        attempt: attempt(number, now, now),
                        result: Err(permanent("the stored report is missing".into())),
                    };
                    return self.finish(msg, delivery, None, position, outcome).await;
                };
                let mut run: TestRun = serde_json::from_slice(&bytes).map_err(|e| {
                    StoreError::new("blob store", format!("stored run unreadable: {e}"))
                })?;
                run.changes = record.changes.clone();
                connector.deliver(&run, &ctx, &steps).await
            }
        };
        let result = match delivered {
            Ok(d) => Ok(d),
            Err(StepError::Failed(e)) => Err(e),
            Err(other) => return Err(other),
        };
        let ended = self.ports.clock.now_ms();
        self.ports.metrics.millis(
            "DeliveryLatency",
            &[("Connector", msg.connector.as_str())],
            ended.saturating_sub(now) as f64,
        );
        let signal = match &result {
            // A step resumed from an earlier attempt made no call: it says nothing new about
            // the target (and must not close a breaker as a probe would).
            Ok(d) if d.resumed => Signal::Neutral,
            Ok(_) => Signal::Success,
            Err(e) => match e.class {
                ErrorClass::Transient => Signal::Failure,
                ErrorClass::Throttled => Signal::Throttled,
                ErrorClass::Permanent => Signal::Neutral,
            },
        };
        // A failure counts against the target that answered; a success for them all.
        let answered = match &result {
            Err(e) => e.target.as_deref().unwrap_or(connector.target()),
            Ok(_) => "",
        };
        for (target, admission) in &admissions {
            let signal = if result.is_err() && *target != answered {
                Signal::Neutral
            } else {
                signal
            };
            self.breakers
                .record(
                    target,
                    connector.breaker(),
                    signal,
                    *admission == Admission::Probe,
                )
                .await;
        }
        steps.crash(CrashPoint::AfterStep, "")?;
        let outcome = Outcome {
            attempt: attempt(number, now, ended),
            result,
        };
        let disposition = self.finish(msg, delivery, None, position, outcome).await?;
        steps.crash(CrashPoint::AfterRecord, "")?;
        Ok(disposition)
    }

    /// Whether a part of pipeline `id` still has a delivery to `connector` under way.
    async fn parts_pending(
        &self,
        project: &str,
        id: &str,
        connector: &ConnectorName,
    ) -> Result<bool, StepError> {
        let Some(v) = self
            .ports
            .state
            .load(&crate::pipelines::key(project, id))
            .await?
        else {
            return Ok(false);
        };
        let Ok(p) = serde_json::from_str::<crate::pipelines::PipelineState>(&v.value) else {
            return Ok(false);
        };
        for part in &p.parts {
            let Some(r) = self.ports.runs.get_run(&part.run_id).await? else {
                continue;
            };
            let open = r.deliveries.iter().any(|d| {
                d.connector == *connector
                    && !matches!(
                        d.state,
                        DeliveryState::Delivered | DeliveryState::DeadLettered
                    )
            });
            if open {
                return Ok(true);
            }
        }
        Ok(false)
    }

    async fn finish(
        &self,
        msg: &DeliveryMessage,
        delivery: &DeliveryRecord,
        redrive: Option<Redrive>,
        position: Position,
        outcome: Outcome,
    ) -> Result<Disposition, StepError> {
        let attempt_in_generation = position.attempt;
        let Outcome {
            mut attempt,
            result,
        } = outcome;
        attempt.ok = result.is_ok();
        let mut update = DeliveryUpdate::to(DeliveryState::Delivered);
        update.redrive = redrive;
        let e = match result {
            Ok(delivered) => {
                attempt.status_code = delivered.status_code;
                update.external_ref = delivered.external_ref;
                update.attempt = Some(attempt);
                self.ports
                    .runs
                    .update_delivery(&msg.run_id, &msg.connector, &update)
                    .await?;
                tracing::info!(run_id = %msg.run_id, connector = %msg.connector, attempt = attempt_in_generation, "delivered");
                self.outcome(msg, "delivered");
                self.ports.metrics.count(
                    "DeliveryAttempts",
                    &[("Connector", msg.connector.as_str())],
                    attempt_in_generation as u64,
                );
                return Ok(Disposition::Done);
            }
            Err(e) => crate::ports::DeliveryError {
                detail: crate::report::render::cut(&e.detail, ERROR_DETAIL_CAP),
                ..e
            },
        };
        attempt.status_code = e.status_code;
        attempt.error_class = Some(e.class);
        attempt.error = Some(e.detail.clone());
        update.attempt = Some(attempt);
        let delay = match e.class {
            ErrorClass::Permanent => None,
            ErrorClass::Transient => {
                self.policy
                    .delay_after(attempt_in_generation, e.retry_after, rand::random::<f64>())
            }
            ErrorClass::Throttled if position.throttled + 1 >= MAX_THROTTLED => None,
            ErrorClass::Throttled => Some(self.policy.after_throttle(
                position.throttled,
                e.retry_after,
                rand::random::<f64>(),
            )),
        };
        if let Some(delay) = delay {
            let now = self.ports.clock.now_ms();
            tracing::warn!(run_id = %msg.run_id, connector = %msg.connector, attempt = attempt_in_generation, error = %e.detail, retry_in_ms = delay.as_millis() as u64, "delivery failed; will retry");
            update.state = DeliveryState::Retrying;
            update.next_attempt_at = Some(rfc3339(now + delay.as_millis() as u64));
            update.last_error = Some(e.detail);
            self.ports
                .runs
                .update_delivery(&msg.run_id, &msg.connector, &update)
                .await?;
            if self.waited_too_long(msg, now) {
                self.fall_back(msg, false).await?;
            }
            self.outcome(msg, "retry");
            return Ok(Disposition::Requeue(delay));
        }
        let reason = if e.class == ErrorClass::Permanent {
            e.detail
        } else if e.class == ErrorClass::Throttled {
            format!("throttled {MAX_THROTTLED} times: {}", e.detail)
        } else {
            format!(
                "gave up after {attempt_in_generation} attempts: {}",
                e.detail
            )
        };
        tracing::error!(run_id = %msg.run_id, connector = %msg.connector, error = %reason, "delivery failed for good; dead-lettered");
        // The dead letter first: if we crash before the run record says so, the message
        // comes back and ends here again; a dead letter is never lost.
        self.ports
            .dead_letters
            .put(&DeadLetter {
                message: DeliveryMessage {
                    generation: msg.generation.max(delivery.generation),
                    not_before_ms: None,
                    ..msg.clone()
                },
                reason: reason.clone(),
                attempts: attempt_in_generation,
                last_status: e.status_code,
                at: rfc3339(self.ports.clock.now_ms()),
            })
            .await?;
        update.state = DeliveryState::DeadLettered;
        update.last_error = Some(reason);
        self.ports
            .runs
            .update_delivery(&msg.run_id, &msg.connector, &update)
            .await?;
        // After the record says why (the notice reads it there). A crash before this brings
        // the message back as a stale one of a dead-lettered delivery, which falls back too.
        self.fall_back(msg, true).await?;
        self.outcome(msg, "dead_lettered");
        self.ports
            .metrics
            .count("DeadLetters", &[("Connector", msg.connector.as_str())], 1);
        Ok(Disposition::Done)
    }
}

fn attempt(number: u32, started: u64, ended: u64) -> Attempt {
    Attempt {
        number,
        started_at: rfc3339(started),
        duration_ms: ended.saturating_sub(started),
        ok: false,
        status_code: None,
        error_class: None,
        error: None,
    }
}

fn permanent(detail: String) -> crate::ports::DeliveryError {
    crate::ports::DeliveryError {
        class: ErrorClass::Permanent,
        status_code: None,
        detail,
        retry_after: None,
        target: None,
    }
}

/// Moves up to `max` dead letters of `kind` back to the delivery queue as a new generation.
/// A redriven delivery that was delivered meanwhile is a no-op when it arrives.
pub async fn redrive(
    dead_letters: &dyn DeadLetterStore,
    queue: &dyn DeliveryQueue,
    kind: crate::config::ConnectorKind,
    max: usize,
) -> Result<usize, StoreError> {
    let listed = dead_letters.list(kind, max).await?;
    for l in &listed {
        let message = DeliveryMessage {
            generation: l.letter.message.generation + 1,
            not_before_ms: None,
            ..l.letter.message.clone()
        };
        queue.enqueue(&[message]).await?;
        dead_letters.remove(kind, &l.handle).await?;
    }
    Ok(listed.len())
}

/// A connector's main target, then its others.
pub fn targets(c: &dyn Connector) -> Vec<&str> {
    let mut all = vec![c.target()];
    all.extend(c.other_targets());
    all
}
