//! Things a connector creates once EVER, not once per run: Jira's bug per failure
//! fingerprint, TestRail's case per automation id, Xray's Test per test. The record
//! `key -> created reference` lives in the state store; a run claims the key (a conditional
//! write) before creating, so two runs meeting the same new thing at the same moment create
//! it once: the second waits (`Busy`) and then finds the first's reference.

use serde::{Deserialize, Serialize};
use std::future::Future;
use std::time::Duration;
use testrelay_domain::ports::{Clock, StateStore, StepError};

/// A claim older than this whose holder never finished is taken over.
pub const CLAIM_LEASE: Duration = Duration::from_secs(600);

#[derive(Debug, Serialize, Deserialize)]
struct Record {
    #[serde(default)]
    key: Option<String>,
    /// The run that claimed the key and is creating the thing.
    claimed_by: String,
    claimed_at_ms: u64,
}

/// The reference stored under `key`, created by `create` if nobody has: `(reference,
/// created by owner)`. `create` runs only while `owner` holds the claim; it is a step of
/// the owner's delivery, so an owner's retry after a crash resumes it. A claim held by
/// another run within [`CLAIM_LEASE`] answers `Busy`.
pub async fn once_ever<F, Fut>(
    state: &dyn StateStore,
    clock: &dyn Clock,
    key: &str,
    owner: &str,
    mut create: F,
) -> Result<(String, bool), StepError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<String, StepError>>,
{
    for _ in 0..8 {
        let now = clock.now_ms();
        let current = state.load(key).await?;
        let record = current
            .as_ref()
            .and_then(|v| serde_json::from_str::<Record>(&v.value).ok());
        match record {
            Some(Record {
                key: Some(k),
                claimed_by,
                ..
            }) => return Ok((k, claimed_by == owner)),
            Some(r)
                if r.claimed_by != owner
                    && now < r.claimed_at_ms + CLAIM_LEASE.as_millis() as u64 =>
            {
                return Err(StepError::Busy {
                    retry_in: Duration::from_secs(30),
                });
            }
            Some(r) if r.claimed_by == owner => {
                let created = create().await?;
                let done = Record {
                    key: Some(created.clone()),
                    claimed_by: owner.to_string(),
                    claimed_at_ms: r.claimed_at_ms,
                };
                let value = serde_json::to_string(&done).expect("serialisable");
                if state.save(key, &value, current.map(|v| v.version)).await? {
                    return Ok((created, true));
                }
            }
            // Nobody's, or an abandoned claim: claim it.
            _ => {
                let claim = Record {
                    key: None,
                    claimed_by: owner.to_string(),
                    claimed_at_ms: now,
                };
                let value = serde_json::to_string(&claim).expect("serialisable");
                state.save(key, &value, current.map(|v| v.version)).await?;
            }
        }
    }
    Err(StepError::Busy {
        retry_in: Duration::from_secs(5),
    })
}
