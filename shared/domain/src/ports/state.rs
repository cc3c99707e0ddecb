//! Idempotency records and versioned shared state.

use super::StoreError;
use async_trait::async_trait;

/// What a claim on an idempotency key found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// The caller now holds the key until `lease_until`: do the work, then `complete`.
    /// `taken_over`: an earlier claim's lease ran out unfinished, so its holder may have
    /// done the work before it crashed (look for it before doing it again).
    Acquired { taken_over: bool },
    /// Another caller holds a live lease.
    InProgress { fingerprint: String },
    /// The work was done; here is what it produced.
    Completed {
        fingerprint: String,
        response: String,
    },
}

/// Idempotency records: a claim with a lease, completion with the result, expiry (TTL).
/// DynamoDB conditional writes in AWS, SQLite transactions locally.
#[async_trait]
pub trait IdempotencyStore: Send + Sync {
    /// Claims `key` for `fingerprint` (a hash of the request). Succeeds when no live record
    /// exists: none at all, one past `expires_at_ms`, or an in-progress one whose lease ran
    /// out (its holder crashed). Exactly one of any number of concurrent claimers acquires.
    async fn claim(
        &self,
        key: &str,
        fingerprint: &str,
        now_ms: u64,
        lease_until_ms: u64,
        expires_at_ms: u64,
    ) -> Result<Claim, StoreError>;
    /// Marks the key completed with `response`, kept until `expires_at_ms`.
    async fn complete(
        &self,
        key: &str,
        fingerprint: &str,
        response: &str,
        expires_at_ms: u64,
    ) -> Result<(), StoreError>;
    /// Drops an in-progress claim, so that a rejected request leaves nothing behind.
    async fn release(&self, key: &str) -> Result<(), StoreError>;
}

/// A document and the version it was read at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Versioned {
    pub version: u64,
    pub value: String,
}

/// Small shared documents with optimistic concurrency (breaker states; later health
/// records): DynamoDB conditional writes in AWS, SQLite transactions locally.
#[async_trait]
pub trait StateStore: Send + Sync {
    async fn load(&self, key: &str) -> Result<Option<Versioned>, StoreError>;
    /// Writes `value` as version `expected + 1`, or as version 1 when `expected` is `None`
    /// (the key must not exist). Returns false, writing nothing, when the stored version is
    /// not `expected`: someone else wrote first; reload and decide again.
    async fn save(&self, key: &str, value: &str, expected: Option<u64>)
    -> Result<bool, StoreError>;
}
