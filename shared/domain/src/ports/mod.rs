//! The ports: every piece of I/O the services need, as small traits over domain types.
//! Each has an AWS adapter and an embedded adapter, held to the same contract by one test
//! suite (`tests/it/contract/`) run against both.

mod connector;
mod mail;
mod queue;
mod runs;
mod secrets;
mod state;
mod time;

pub use connector::*;
pub use mail::*;
pub use queue::*;
pub use runs::*;
pub use secrets::*;
pub use state::*;
pub use time::*;

use crate::ids::RunId;
use async_trait::async_trait;
use bytes::Bytes;

/// A store or queue could not be reached or answered with an error. Retrying later may work;
/// the request or message that hit it must not be acknowledged.
#[derive(Debug, thiserror::Error)]
#[error("{backend}: {message}")]
pub struct StoreError {
    pub backend: &'static str,
    pub message: String,
}

impl StoreError {
    pub fn new(backend: &'static str, message: impl std::fmt::Display) -> Self {
        StoreError {
            backend,
            message: message.to_string(),
        }
    }
}

/// Opaque bytes by key: S3 in AWS, files in the data directory locally.
#[async_trait]
pub trait BlobStore: Send + Sync {
    /// Stores `bytes` under `key`, replacing what was there. Durable once it returns.
    async fn put(&self, key: &str, bytes: Bytes) -> Result<(), StoreError>;
    /// `None` when nothing is stored under `key`.
    async fn get(&self, key: &str) -> Result<Option<Bytes>, StoreError>;
    /// The blob and a tag naming the version read (S3's ETag), for [`BlobStore::put_if`].
    async fn get_tagged(&self, key: &str) -> Result<Option<Tagged>, StoreError>;
    /// Stores `bytes` under `key` only if the stored blob is still the version tagged
    /// `expected` (`None`: only if nothing is stored there): a conditional write (S3
    /// `If-Match` / `If-None-Match`). Returns false, writing nothing, when another write came
    /// first; exactly one of concurrent writers expecting the same version wins.
    async fn put_if(
        &self,
        key: &str,
        bytes: Bytes,
        expected: Option<&str>,
    ) -> Result<bool, StoreError>;
}

/// A blob as read, with the tag of its version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tagged {
    pub bytes: Bytes,
    pub tag: String,
}

/// Where a run's normalized report lives in the blob store.
pub fn run_blob_key(id: &RunId) -> String {
    format!("runs/{id}.json")
}
