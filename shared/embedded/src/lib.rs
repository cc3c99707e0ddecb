//! Embedded adapters for `testrelay serve`: one data directory on local disk, durable across
//! restarts. SQLite (WAL mode) holds run records, idempotency records and the delivery queue;
//! report blobs and secrets are files. They implement the same ports, under the same contract
//! tests, as the DynamoDB / SQS / S3 / Secrets Manager adapters.

mod files;
mod sqlite;

pub use files::{FileBlobStore, FileSecretStore};
pub use sqlite::SqliteStore;
