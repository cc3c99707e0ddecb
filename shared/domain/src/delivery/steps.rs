//! Exactly-once effects per (run, connector): every externally visible step of a delivery
//! (POST the webhook; create the TestRail run, post its results, ...) runs inside
//! [`Steps::once`], which claims an idempotency record for the step (a lease), runs it, and
//! records what it created. A duplicate message, a retry or a redrive finds the step
//! COMPLETED and resumes after it with the stored result; a worker that crashed mid-step
//! loses its lease, and the next attempt runs the step again.
//!
//! The one window this cannot close is between the target's side effect and the completion
//! write (a crash there repeats the call); connectors send a stable idempotency key for that
//! (the webhook's `webhook-id`), so the target dedupes.

use crate::ports::{
    Claim, Clock, DeliveryError, DeliveryMessage, ErrorClass, IdempotencyStore, StepError,
};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

/// How long a step may run before another worker may take it over.
pub const STEP_LEASE: Duration = Duration::from_secs(120);
/// How long completed steps are remembered: longer than the retry schedule plus the
/// dead-letter retention, so a redrive still resumes.
pub const STEP_TTL: Duration = Duration::from_secs(15 * 24 * 60 * 60);

/// Where a fault-injection test may crash a delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CrashPoint {
    /// The step is claimed; the target has not been called.
    BeforeCall,
    /// The target accepted; its acceptance is not recorded yet.
    AfterCall,
    /// The step is recorded; the run record is not updated yet.
    AfterStep,
    /// The run record is updated; the queue message is not settled yet.
    AfterRecord,
}

/// Crash injection for tests; production uses [`NoFaults`].
pub trait Faults: Send + Sync {
    /// `step` names the step for `BeforeCall` / `AfterCall`, and is empty otherwise.
    fn crash(&self, point: CrashPoint, step: &str, message: &DeliveryMessage) -> bool;
}

pub struct NoFaults;

impl Faults for NoFaults {
    fn crash(&self, _: CrashPoint, _: &str, _: &DeliveryMessage) -> bool {
        false
    }
}

/// A step's result and whether an earlier attempt produced it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepResult {
    pub value: String,
    pub resumed: bool,
}

/// What a step's call is told about earlier tries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StepCall {
    /// An earlier try of this delivery may have done this step without recording it (it
    /// crashed after the call, or the call failed in a way that leaves the target's state
    /// unknown, such as a timeout). A step that creates something looks for what it would
    /// create (by the marker it puts on it) before creating it again.
    pub check_first: bool,
}

pub struct Steps {
    store: Arc<dyn IdempotencyStore>,
    clock: Arc<dyn Clock>,
    faults: Arc<dyn Faults>,
    message: DeliveryMessage,
    earlier_tries: bool,
}

impl Steps {
    pub fn new(
        store: Arc<dyn IdempotencyStore>,
        clock: Arc<dyn Clock>,
        faults: Arc<dyn Faults>,
        message: DeliveryMessage,
    ) -> Self {
        Steps {
            earlier_tries: message.generation > 0,
            store,
            clock,
            faults,
            message,
        }
    }

    /// This delivery was attempted before (its run record lists attempts).
    pub fn after_attempts(mut self, attempts: usize) -> Self {
        self.earlier_tries |= attempts > 0;
        self
    }

    fn key(&self, step: &str) -> String {
        format!(
            "step/{}/{}/{step}",
            self.message.run_id, self.message.connector
        )
    }

    pub(crate) fn crash(&self, point: CrashPoint, step: &str) -> Result<(), StepError> {
        if self.faults.crash(point, step, &self.message) {
            Err(StepError::Crashed)
        } else {
            Ok(())
        }
    }

    /// Runs `call` unless an earlier attempt completed `step`; returns what `call` returned
    /// (then or now). `call` returns the external reference it created (or "").
    pub async fn once<F, Fut>(&self, step: &str, call: F) -> Result<StepResult, StepError>
    where
        F: FnOnce(StepCall) -> Fut,
        Fut: Future<Output = Result<String, DeliveryError>>,
    {
        let key = self.key(step);
        let now = self.clock.now_ms();
        let ttl = STEP_TTL.as_millis() as u64;
        let taken_over = match self
            .store
            .claim(
                &key,
                step,
                now,
                now + STEP_LEASE.as_millis() as u64,
                now + ttl,
            )
            .await?
        {
            Claim::Completed { response, .. } => {
                return Ok(StepResult {
                    value: response,
                    resumed: true,
                });
            }
            Claim::InProgress { .. } => {
                return Err(StepError::Busy {
                    retry_in: STEP_LEASE,
                });
            }
            Claim::Acquired { taken_over } => taken_over,
        };
        self.crash(CrashPoint::BeforeCall, step)?;
        let check_first = taken_over || self.earlier_tries;
        match call(StepCall { check_first }).await {
            Ok(value) => {
                self.crash(CrashPoint::AfterCall, step)?;
                self.store
                    .complete(&key, step, &value, self.clock.now_ms() + ttl)
                    .await?;
                Ok(StepResult {
                    value,
                    resumed: false,
                })
            }
            Err(e) => {
                // While it is unknown whether the step's effect happened (its answer was
                // never read; or this try had to look first and the look did not finish:
                // no answer, or throttled), the claim is kept until its lease runs out, so
                // the next try looks first even if this attempt is never recorded (a crash
                // right after it). A definite answer lets the next try go at once.
                let unanswered = e.status_code.is_none();
                let uncertain = (unanswered && (check_first || e.class == ErrorClass::Transient))
                    || (check_first && e.class == ErrorClass::Throttled);
                if !uncertain {
                    self.store.release(&key).await?;
                }
                Err(StepError::Failed(e))
            }
        }
    }
}
