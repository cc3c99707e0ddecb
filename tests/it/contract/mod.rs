//! One contract per port, run against every adapter on every engine. `contract!(suite, test)`
//! makes `suite::test::embedded` (SQLite, files), `suite::test::moto` and
//! `suite::test::dynamodb_local` (the AWS adapters on DynamoDB Local + MiniStack) from one
//! async fn taking the port.

mod blobs;
mod dead_letters;
mod idempotency;
mod mail;
mod queue;
mod runs;
mod secrets;
mod state;
mod stats;

use std::sync::Arc;
use testrelay_domain::ports::SystemClock;
use testrelay_embedded::SqliteStore;

/// An adapter plus whatever must live as long as it (a temporary directory).
pub struct Fixture<T> {
    pub port: T,
    _keep: Option<tempfile::TempDir>,
}

/// A fresh SQLite store in a temporary directory, as the port `as_port` makes of it.
pub fn sqlite<T: ?Sized>(as_port: impl FnOnce(SqliteStore) -> Arc<T>) -> Fixture<Arc<T>> {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("t.db"), Arc::new(SystemClock)).unwrap();
    Fixture {
        port: as_port(store),
        _keep: Some(dir),
    }
}

/// Defines `mod $name { embedded, moto, dynamodb_local }` running `$body` on the fixtures that
/// the calling module builds with its `embedded_port()` and `aws_port(engine)`.
#[macro_export]
macro_rules! contract {
    ($name:ident, $body:ident) => {
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn embedded() {
                let fixture = super::embedded_port().await;
                super::$body(&fixture.port).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn moto() {
                let fixture = super::aws_port(testrelay_tests::aws::Engine::Moto).await;
                super::$body(&fixture.port).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn dynamodb_local() {
                let fixture = super::aws_port(testrelay_tests::aws::Engine::DynamoDbLocal).await;
                super::$body(&fixture.port).await;
            }
        }
    };
}
