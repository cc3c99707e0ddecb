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

/// Where a key stands for `owner`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claimed {
    /// Created: its reference, and whether `owner` created it.
    Done { reference: String, by_owner: bool },
    /// `owner` holds the claim (just taken, or held from an earlier try): create, then
    /// [`complete`].
    Mine,
}

/// Claims `key` for `owner` unless it is done; `Busy` while another run holds it within
/// [`CLAIM_LEASE`]. Runs that claim several keys claim them in one (sorted) order, so two
/// never wait on each other.
pub async fn claim(
    state: &dyn StateStore,
    clock: &dyn Clock,
    key: &str,
    owner: &str,
) -> Result<Claimed, StepError> {
    for _ in 0..8 {
        let now = clock.now_ms();
        let current = state.load(key).await?;
        let record = current
            .as_ref()
            .and_then(|v| serde_json::from_str::<Record>(&v.value).ok());
        match record {
            Some(Record {
                key: Some(reference),
                claimed_by,
                ..
            }) => {
                return Ok(Claimed::Done {
                    by_owner: claimed_by == owner,
                    reference,
                });
            }
            Some(r) if r.claimed_by == owner => return Ok(Claimed::Mine),
            Some(r) if now < r.claimed_at_ms + CLAIM_LEASE.as_millis() as u64 => {
                return Err(StepError::Busy {
                    retry_in: Duration::from_secs(30),
                });
            }
            // Nobody's, or an abandoned claim: claim it.
            _ => {
                let claim = Record {
                    key: None,
                    claimed_by: owner.to_string(),
                    claimed_at_ms: now,
                };
                let value = serde_json::to_string(&claim).expect("serialisable");
                if state.save(key, &value, current.map(|v| v.version)).await? {
                    return Ok(Claimed::Mine);
                }
            }
        }
    }
    Err(StepError::Busy {
        retry_in: Duration::from_secs(5),
    })
}

/// Records what `owner`, holding the claim on `key`, created. False if the claim was
/// taken over meanwhile (the new holder finds what was created by its marker).
pub async fn complete(
    state: &dyn StateStore,
    key: &str,
    owner: &str,
    reference: &str,
) -> Result<bool, StepError> {
    let Some(current) = state.load(key).await? else {
        return Ok(false);
    };
    let Ok(mut record) = serde_json::from_str::<Record>(&current.value) else {
        return Ok(false);
    };
    if record.claimed_by != owner {
        return Ok(false);
    }
    record.key = Some(reference.to_string());
    let value = serde_json::to_string(&record).expect("serialisable");
    Ok(state.save(key, &value, Some(current.version)).await?)
}

/// The reference stored under `key`, created by `create` if nobody has: `(reference,
/// created by owner)`. `create` runs only while `owner` holds the claim; it is a step of
/// the owner's delivery, so an owner's retry after a crash resumes it.
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
        match claim(state, clock, key, owner).await? {
            Claimed::Done {
                reference,
                by_owner,
            } => return Ok((reference, by_owner)),
            Claimed::Mine => {
                let created = create().await?;
                if complete(state, key, owner, &created).await? {
                    return Ok((created, true));
                }
            }
        }
    }
    Err(StepError::Busy {
        retry_in: Duration::from_secs(5),
    })
}
