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
    /// The claim was taken over from a run that never finished: it may have created the
    /// thing, so the holder looks for it first.
    #[serde(default)]
    taken_over: bool,
}

/// Where a key stands for `owner`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claimed {
    /// Created: its reference, and whether `owner` created it.
    Done { reference: String, by_owner: bool },
    /// `owner` holds the claim (just taken, or held from an earlier try): create, then
    /// [`complete`]. `taken_over`: another run held it before and never finished; what it
    /// may have created must be looked for first (by the marker it carries).
    Mine { taken_over: bool },
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
            Some(r) if r.claimed_by == owner => {
                return Ok(Claimed::Mine {
                    taken_over: r.taken_over,
                });
            }
            Some(r) if now < r.claimed_at_ms + CLAIM_LEASE.as_millis() as u64 => {
                return Err(StepError::Busy {
                    retry_in: Duration::from_secs(30),
                });
            }
            // Nobody's, or an abandoned claim: claim it.
            abandoned => {
                let claim = Record {
                    key: None,
                    claimed_by: owner.to_string(),
                    claimed_at_ms: now,
                    taken_over: abandoned.is_some(),
                };
                let value = serde_json::to_string(&claim).expect("serialisable");
                if state.save(key, &value, current.map(|v| v.version)).await? {
                    return Ok(Claimed::Mine {
                        taken_over: claim.taken_over,
                    });
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
/// the owner's delivery, so an owner's retry after a crash resumes it. It is told whether
/// the claim was taken over from a run that never finished (then it looks for what that run
/// may have created before creating).
pub async fn once_ever<F, Fut>(
    state: &dyn StateStore,
    clock: &dyn Clock,
    key: &str,
    owner: &str,
    mut create: F,
) -> Result<(String, bool), StepError>
where
    F: FnMut(bool) -> Fut,
    Fut: Future<Output = Result<String, StepError>>,
{
    for _ in 0..8 {
        match claim(state, clock, key, owner).await? {
            Claimed::Done {
                reference,
                by_owner,
            } => return Ok((reference, by_owner)),
            Claimed::Mine { taken_over } => {
                let created = create(taken_over).await?;
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

/// What `key` was completed with, if it was (a read; claims nothing).
pub async fn reference(state: &dyn StateStore, key: &str) -> Result<Option<String>, StepError> {
    Ok(state
        .load(key)
        .await?
        .and_then(|v| serde_json::from_str::<Record>(&v.value).ok())
        .and_then(|r| r.key))
}

/// A lock held while a read-modify-write on the vendor's side must not interleave with
/// another run's (TestRail's `update_run` replaces a run's whole case list).
#[derive(Debug, Serialize, Deserialize)]
struct Lock {
    holder: Option<String>,
    until_ms: u64,
}

/// Runs `f` holding `key` for `owner` (at most `lease`: a crashed holder's lock runs out);
/// `Busy` while another holds it.
pub async fn locked<T, Fut>(
    state: &dyn StateStore,
    clock: &dyn Clock,
    key: &str,
    owner: &str,
    lease: Duration,
    f: impl FnOnce() -> Fut,
) -> Result<T, StepError>
where
    Fut: Future<Output = Result<T, StepError>>,
{
    let busy = || StepError::Busy {
        retry_in: Duration::from_secs(5),
    };
    let now = clock.now_ms();
    let current = state.load(key).await?;
    let held = current
        .as_ref()
        .and_then(|v| serde_json::from_str::<Lock>(&v.value).ok())
        .is_some_and(|l| l.holder.as_deref().is_some_and(|h| h != owner) && now < l.until_ms);
    if held {
        return Err(busy());
    }
    let mine = Lock {
        holder: Some(owner.to_string()),
        until_ms: now + lease.as_millis() as u64,
    };
    let value = serde_json::to_string(&mine).expect("serialisable");
    let version = current.map(|v| v.version);
    if !state.save(key, &value, version).await? {
        return Err(busy());
    }
    let result = f().await;
    let free = serde_json::to_string(&Lock {
        holder: None,
        until_ms: 0,
    })
    .expect("serialisable");
    // Unlocked at the version we wrote; if that fails, the lease runs out.
    let _ = state
        .save(key, &free, Some(version.map_or(1, |v| v + 1)))
        .await;
    result
}
