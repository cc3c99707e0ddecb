//! SQLite adapter for runs, idempotency records and the durable delivery queue.
//!
//! One writing connection behind a mutex, used from blocking threads: every write is a short
//! transaction, so serialising them costs less than a pool would. Reads (runs, breaker
//! states) go through a second, read-only connection, which WAL lets run beside the writer. WAL mode with
//! `synchronous=NORMAL` survives process crashes (not power loss of the last commits).
//! Conditional writes are transactions with `BEGIN IMMEDIATE`, which gives the same
//! all-or-nothing guarantee as DynamoDB's condition expressions.

use async_trait::async_trait;
use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use testrelay_domain::config::ConnectorKind;
use testrelay_domain::ids::{ConnectorName, RunId};
use testrelay_domain::ports::{
    Claim, Clock, Created, DeadLetter, DeadLetterStore, DeliveryMessage, DeliveryQueue,
    DeliveryRecord, DeliveryState, DeliveryUpdate, IdempotencyStore, Listed, QueueConsumer,
    QueueDepth, QueueStats, Received, RunRecord, RunStore, StateStore, StoreError, Versioned,
};
use tokio::sync::Notify;

const BACKEND: &str = "embedded store";

const SCHEMA: &str = r#"
PRAGMA journal_mode = WAL;
PRAGMA synchronous = NORMAL;
PRAGMA foreign_keys = ON;
CREATE TABLE IF NOT EXISTS runs (
    run_id TEXT PRIMARY KEY,
    record TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS deliveries (
    run_id TEXT NOT NULL REFERENCES runs(run_id),
    connector TEXT NOT NULL,
    position INTEGER NOT NULL,
    record TEXT NOT NULL,
    PRIMARY KEY (run_id, connector)
);
CREATE TABLE IF NOT EXISTS idempotency (
    key TEXT PRIMARY KEY,
    fingerprint TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('in_progress', 'completed')),
    lease_until INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    response TEXT
);
CREATE TABLE IF NOT EXISTS queue (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL,
    body TEXT NOT NULL,
    visible_at INTEGER NOT NULL,
    receive_count INTEGER NOT NULL DEFAULT 0,
    receipt TEXT
);
CREATE INDEX IF NOT EXISTS queue_ready ON queue (kind, visible_at);
CREATE TABLE IF NOT EXISTS dead_letters (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL,
    letter TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS state (
    key TEXT PRIMARY KEY,
    version INTEGER NOT NULL,
    value TEXT NOT NULL
);
"#;

/// The SQLite database in the data directory.
#[derive(Clone)]
pub struct SqliteStore {
    conn: Arc<Mutex<Connection>>,
    reader: Arc<Mutex<Connection>>,
    clock: Arc<dyn Clock>,
    wake: Arc<Notify>,
}

fn db_err(e: impl std::fmt::Display) -> StoreError {
    StoreError::new(BACKEND, e)
}

impl SqliteStore {
    /// Opens (creating if needed) the database file and its schema.
    pub fn open(path: &Path, clock: Arc<dyn Clock>) -> Result<Self, StoreError> {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(db_err)?;
        }
        let conn = Connection::open(path).map_err(db_err)?;
        conn.busy_timeout(Duration::from_secs(5)).map_err(db_err)?;
        conn.execute_batch(SCHEMA).map_err(db_err)?;
        let reader = Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .map_err(db_err)?;
        reader
            .busy_timeout(Duration::from_secs(5))
            .map_err(db_err)?;
        Ok(SqliteStore {
            conn: Arc::new(Mutex::new(conn)),
            reader: Arc::new(Mutex::new(reader)),
            clock,
            wake: Arc::new(Notify::new()),
        })
    }

    /// Notified on every enqueue, so that workers pick new messages up at once.
    pub fn wake(&self) -> Arc<Notify> {
        self.wake.clone()
    }

    async fn with<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
    {
        Self::on(self.conn.clone(), f).await
    }

    /// Runs a read on the read-only connection.
    async fn read<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
    {
        Self::on(self.reader.clone(), f).await
    }

    async fn on<T, F>(conn: Arc<Mutex<Connection>>, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
    {
        tokio::task::spawn_blocking(move || {
            let mut guard = conn.lock().map_err(|_| db_err("connection poisoned"))?;
            f(&mut guard)
        })
        .await
        .map_err(db_err)?
    }

    /// When the next queued message becomes visible (Unix ms), if any is queued.
    pub async fn next_visible_at(&self) -> Result<Option<u64>, StoreError> {
        self.read(|c| {
            c.query_row("SELECT MIN(visible_at) FROM queue", [], |r| {
                r.get::<_, Option<i64>>(0)
            })
            .map(|v| v.map(|v| v as u64))
            .map_err(db_err)
        })
        .await
    }

    /// Messages in the queue (visible or not); for status pages and tests.
    pub async fn queue_len(&self) -> Result<u64, StoreError> {
        self.read(|c| {
            c.query_row("SELECT COUNT(*) FROM queue", [], |r| r.get::<_, i64>(0))
                .map(|n| n as u64)
                .map_err(db_err)
        })
        .await
    }
}

#[async_trait]
impl QueueStats for SqliteStore {
    /// Depth counts every message of the kind (due, delayed or in flight); the oldest age is
    /// how long the longest-due message has been waiting.
    async fn stats(&self, kind: ConnectorKind, now_ms: u64) -> Result<QueueDepth, StoreError> {
        let kind = kind.as_str().to_string();
        self.read(move |c| {
            let (depth, oldest): (i64, Option<i64>) = c
                .query_row(
                    "SELECT COUNT(*), MIN(CASE WHEN visible_at <= ?2 THEN visible_at END) FROM queue WHERE kind = ?1",
                    params![kind, now_ms as i64],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .map_err(db_err)?;
            let dead: i64 = c
                .query_row(
                    "SELECT COUNT(*) FROM dead_letters WHERE kind = ?1",
                    [&kind],
                    |r| r.get(0),
                )
                .map_err(db_err)?;
            Ok(QueueDepth {
                depth: depth as u64,
                oldest_age_ms: oldest.map(|t| now_ms.saturating_sub(t as u64)),
                dead_letters: dead as u64,
            })
        })
        .await
    }
}

fn to_json<T: serde::Serialize>(v: &T) -> Result<String, StoreError> {
    serde_json::to_string(v).map_err(db_err)
}

fn from_json<T: serde::de::DeserializeOwned>(s: &str) -> Result<T, StoreError> {
    serde_json::from_str(s).map_err(db_err)
}

#[async_trait]
impl RunStore for SqliteStore {
    async fn create_run(&self, run: &RunRecord) -> Result<Created, StoreError> {
        let mut head = run.clone();
        let deliveries = std::mem::take(&mut head.deliveries);
        let id = run.run_id.to_string();
        let head = to_json(&head)?;
        let rows: Vec<(String, String)> = deliveries
            .iter()
            .map(|d| Ok((d.connector.to_string(), to_json(d)?)))
            .collect::<Result<_, StoreError>>()?;
        self.with(move |c| {
            let tx = c
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(db_err)?;
            let inserted = tx
                .execute(
                    "INSERT OR IGNORE INTO runs (run_id, record) VALUES (?1, ?2)",
                    params![id, head],
                )
                .map_err(db_err)?;
            if inserted == 0 {
                return Ok(Created::AlreadyExists);
            }
            for (pos, (connector, record)) in rows.iter().enumerate() {
                tx.execute(
                    "INSERT INTO deliveries (run_id, connector, position, record) VALUES (?1, ?2, ?3, ?4)",
                    params![id, connector, pos as i64, record],
                )
                .map_err(db_err)?;
            }
            tx.commit().map_err(db_err)?;
            Ok(Created::Created)
        })
        .await
    }

    async fn get_run(&self, id: &RunId) -> Result<Option<RunRecord>, StoreError> {
        let id = id.to_string();
        self.read(move |c| {
            let tx = c.transaction().map_err(db_err)?;
            let head: Option<String> = tx
                .query_row("SELECT record FROM runs WHERE run_id = ?1", [&id], |r| {
                    r.get(0)
                })
                .optional()
                .map_err(db_err)?;
            let Some(head) = head else { return Ok(None) };
            let mut record: RunRecord = from_json(&head)?;
            let mut stmt = tx
                .prepare_cached("SELECT record FROM deliveries WHERE run_id = ?1 ORDER BY position")
                .map_err(db_err)?;
            let rows = stmt
                .query_map([&id], |r| r.get::<_, String>(0))
                .map_err(db_err)?;
            for row in rows {
                record.deliveries.push(from_json(&row.map_err(db_err)?)?);
            }
            Ok(Some(record))
        })
        .await
    }

    async fn add_delivery(&self, id: &RunId, d: &DeliveryRecord) -> Result<bool, StoreError> {
        let id = id.to_string();
        let connector = d.connector.to_string();
        let record = to_json(d)?;
        self.with(move |c| {
            let added = c
                .execute(
                    "INSERT OR IGNORE INTO deliveries (run_id, connector, position, record)
                     SELECT run_id, ?2,
                       (SELECT COALESCE(MAX(position), -1) + 1 FROM deliveries WHERE run_id = ?1),
                       ?3
                     FROM runs WHERE run_id = ?1",
                    params![id, connector, record],
                )
                .map_err(db_err)?;
            Ok(added == 1)
        })
        .await
    }

    async fn update_delivery(
        &self,
        id: &RunId,
        connector: &ConnectorName,
        update: &DeliveryUpdate,
    ) -> Result<(), StoreError> {
        let (id, connector, update) = (id.to_string(), connector.to_string(), update.clone());
        self.with(move |c| {
            let tx = c
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(db_err)?;
            let current: Option<String> = tx
                .query_row(
                    "SELECT record FROM deliveries WHERE run_id = ?1 AND connector = ?2",
                    params![id, connector],
                    |r| r.get(0),
                )
                .optional()
                .map_err(db_err)?;
            let Some(current) = current else {
                return Err(db_err(format!("no delivery {connector} for run {id}")));
            };
            let mut record: DeliveryRecord = from_json(&current)?;
            apply_update(&mut record, update);
            tx.execute(
                "UPDATE deliveries SET record = ?3 WHERE run_id = ?1 AND connector = ?2",
                params![id, connector, to_json(&record)?],
            )
            .map_err(db_err)?;
            tx.commit().map_err(db_err)
        })
        .await
    }
}

/// The update semantics of [`RunStore::update_delivery`], shared with nothing else: the
/// DynamoDB adapter expresses the same rules as an update expression.
fn apply_update(record: &mut DeliveryRecord, update: DeliveryUpdate) {
    let revives = record.state == DeliveryState::DeadLettered
        && update.state != DeliveryState::DeadLettered
        && update.redrive.is_none();
    if record.state == DeliveryState::Delivered || revives {
        return;
    }
    if let Some(r) = update.redrive {
        record.generation = r.generation;
        record.redrive_from = r.redrive_from;
    }
    record.state = update.state;
    if let Some(a) = update.attempt {
        record.attempts.push(a);
    }
    record.next_attempt_at = update.next_attempt_at;
    record.last_error = update.last_error;
    if update.external_ref.is_some() {
        record.external_ref = update.external_ref;
    }
}

#[async_trait]
impl IdempotencyStore for SqliteStore {
    async fn claim(
        &self,
        key: &str,
        fingerprint: &str,
        now_ms: u64,
        lease_until_ms: u64,
        expires_at_ms: u64,
    ) -> Result<Claim, StoreError> {
        let (key, fingerprint) = (key.to_string(), fingerprint.to_string());
        self.with(move |c| {
            let tx = c
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(db_err)?;
            let existing: Option<(String, String, i64, i64, Option<String>)> = tx
                .query_row(
                    "SELECT fingerprint, status, lease_until, expires_at, response FROM idempotency WHERE key = ?1",
                    [&key],
                    |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
                )
                .optional()
                .map_err(db_err)?;
            let now = now_ms as i64;
            let mut taken_over = false;
            if let Some((fp, status, lease_until, expires_at, response)) = existing {
                let live = expires_at > now;
                if live && status == "completed" {
                    return Ok(Claim::Completed {
                        fingerprint: fp,
                        response: response.unwrap_or_default(),
                    });
                }
                if live && lease_until > now {
                    return Ok(Claim::InProgress { fingerprint: fp });
                }
                taken_over = live && status == "in_progress";
            }
            tx.execute(
                "INSERT OR REPLACE INTO idempotency (key, fingerprint, status, lease_until, expires_at, response)
                 VALUES (?1, ?2, 'in_progress', ?3, ?4, NULL)",
                params![key, fingerprint, lease_until_ms as i64, expires_at_ms as i64],
            )
            .map_err(db_err)?;
            tx.commit().map_err(db_err)?;
            Ok(Claim::Acquired { taken_over })
        })
        .await
    }

    async fn complete(
        &self,
        key: &str,
        fingerprint: &str,
        response: &str,
        expires_at_ms: u64,
    ) -> Result<(), StoreError> {
        let (key, fingerprint, response) = (
            key.to_string(),
            fingerprint.to_string(),
            response.to_string(),
        );
        self.with(move |c| {
            c.execute(
                "INSERT OR REPLACE INTO idempotency (key, fingerprint, status, lease_until, expires_at, response)
                 VALUES (?1, ?2, 'completed', 0, ?3, ?4)",
                params![key, fingerprint, expires_at_ms as i64, response],
            )
            .map(|_| ())
            .map_err(db_err)
        })
        .await
    }

    async fn release(&self, key: &str) -> Result<(), StoreError> {
        let key = key.to_string();
        self.with(move |c| {
            c.execute(
                "DELETE FROM idempotency WHERE key = ?1 AND status = 'in_progress'",
                [&key],
            )
            .map(|_| ())
            .map_err(db_err)
        })
        .await
    }
}

#[async_trait]
impl DeliveryQueue for SqliteStore {
    async fn enqueue(&self, messages: &[DeliveryMessage]) -> Result<(), StoreError> {
        let now = self.clock.now_ms() as i64;
        let rows: Vec<(String, String)> = messages
            .iter()
            .map(|m| Ok((m.kind.as_str().to_string(), to_json(m)?)))
            .collect::<Result<_, StoreError>>()?;
        self.with(move |c| {
            let tx = c.transaction().map_err(db_err)?;
            {
                let mut stmt = tx
                    .prepare_cached(
                        "INSERT INTO queue (kind, body, visible_at) VALUES (?1, ?2, ?3)",
                    )
                    .map_err(db_err)?;
                for (kind, body) in &rows {
                    stmt.execute(params![kind, body, now]).map_err(db_err)?;
                }
            }
            tx.commit().map_err(db_err)
        })
        .await?;
        self.wake.notify_waiters();
        self.wake.notify_one();
        Ok(())
    }

    async fn enqueue_after(
        &self,
        message: &DeliveryMessage,
        delay: Duration,
    ) -> Result<(), StoreError> {
        let at = self.clock.now_ms() as i64 + delay.as_millis() as i64;
        let (kind, body) = (message.kind.as_str().to_string(), to_json(message)?);
        self.with(move |c| {
            c.execute(
                "INSERT INTO queue (kind, body, visible_at) VALUES (?1, ?2, ?3)",
                params![kind, body, at],
            )
            .map(|_| ())
            .map_err(db_err)
        })
        .await
    }
}

#[async_trait]
impl DeadLetterStore for SqliteStore {
    async fn put(&self, letter: &DeadLetter) -> Result<(), StoreError> {
        let (kind, body) = (letter.message.kind.as_str().to_string(), to_json(letter)?);
        self.with(move |c| {
            c.execute(
                "INSERT INTO dead_letters (kind, letter) VALUES (?1, ?2)",
                params![kind, body],
            )
            .map(|_| ())
            .map_err(db_err)
        })
        .await
    }

    async fn list(&self, kind: ConnectorKind, max: usize) -> Result<Vec<Listed>, StoreError> {
        self.read(move |c| {
            let mut stmt = c
                .prepare_cached(
                    "SELECT id, letter FROM dead_letters WHERE kind = ?1 ORDER BY id LIMIT ?2",
                )
                .map_err(db_err)?;
            let rows = stmt
                .query_map(params![kind.as_str(), max as i64], |r| {
                    Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?))
                })
                .map_err(db_err)?;
            let mut out = Vec::new();
            for row in rows {
                let (id, letter) = row.map_err(db_err)?;
                out.push(Listed {
                    handle: id.to_string(),
                    letter: from_json(&letter)?,
                });
            }
            Ok(out)
        })
        .await
    }

    async fn remove(&self, kind: ConnectorKind, handle: &str) -> Result<(), StoreError> {
        let id: i64 = handle
            .parse()
            .map_err(|_| db_err("malformed dead-letter handle"))?;
        self.with(move |c| {
            c.execute(
                "DELETE FROM dead_letters WHERE id = ?1 AND kind = ?2",
                params![id, kind.as_str()],
            )
            .map(|_| ())
            .map_err(db_err)
        })
        .await
    }
}

fn parse_receipt(receipt: &str) -> Result<(i64, &str), StoreError> {
    let (id, nonce) = receipt
        .split_once(':')
        .ok_or_else(|| db_err("malformed receipt"))?;
    Ok((id.parse().map_err(|_| db_err("malformed receipt"))?, nonce))
}

#[async_trait]
impl QueueConsumer for SqliteStore {
    async fn receive(
        &self,
        kind: ConnectorKind,
        max: usize,
        visibility: Duration,
    ) -> Result<Vec<Received>, StoreError> {
        let now = self.clock.now_ms() as i64;
        let hidden_until = now + visibility.as_millis() as i64;
        self.with(move |c| {
            let tx = c
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(db_err)?;
            let picked: Vec<(i64, String, i64)> = {
                let mut stmt = tx
                    .prepare_cached(
                        "SELECT id, body, receive_count FROM queue
                         WHERE kind = ?1 AND visible_at <= ?2 ORDER BY visible_at, id LIMIT ?3",
                    )
                    .map_err(db_err)?;
                stmt.query_map(params![kind.as_str(), now, max as i64], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?))
                })
                .map_err(db_err)?
                .collect::<Result<_, _>>()
                .map_err(db_err)?
            };
            let mut out = Vec::with_capacity(picked.len());
            for (id, body, count) in picked {
                let nonce = format!("{:016x}", rand::random::<u64>());
                tx.execute(
                    "UPDATE queue SET visible_at = ?2, receive_count = receive_count + 1, receipt = ?3 WHERE id = ?1",
                    params![id, hidden_until, nonce],
                )
                .map_err(db_err)?;
                match serde_json::from_str::<DeliveryMessage>(&body) {
                    Ok(message) => out.push(Received {
                        message,
                        receipt: format!("{id}:{nonce}"),
                        receive_count: count as u32 + 1,
                    }),
                    Err(e) => {
                        tracing::error!(id, error = %e, "unreadable queue message; removing it");
                        tx.execute("DELETE FROM queue WHERE id = ?1", [id]).map_err(db_err)?;
                    }
                }
            }
            tx.commit().map_err(db_err)?;
            Ok(out)
        })
        .await
    }

    async fn ack(&self, _kind: ConnectorKind, receipt: &str) -> Result<(), StoreError> {
        let (id, nonce) = parse_receipt(receipt)?;
        let nonce = nonce.to_string();
        self.with(move |c| {
            // A stale receipt (the message was received again since) deletes nothing,
            // exactly as SQS ignores an outdated receipt handle.
            c.execute(
                "DELETE FROM queue WHERE id = ?1 AND receipt = ?2",
                params![id, nonce],
            )
            .map(|_| ())
            .map_err(db_err)
        })
        .await
    }

    async fn retry_later(
        &self,
        _kind: ConnectorKind,
        receipt: &str,
        delay: Duration,
    ) -> Result<(), StoreError> {
        let (id, nonce) = parse_receipt(receipt)?;
        let nonce = nonce.to_string();
        let at = self.clock.now_ms() as i64 + delay.as_millis() as i64;
        self.with(move |c| {
            c.execute(
                "UPDATE queue SET visible_at = ?3 WHERE id = ?1 AND receipt = ?2",
                params![id, nonce, at],
            )
            .map(|_| ())
            .map_err(db_err)
        })
        .await
    }
}

#[async_trait]
impl StateStore for SqliteStore {
    async fn load(&self, key: &str) -> Result<Option<Versioned>, StoreError> {
        let key = key.to_string();
        self.read(move |c| {
            c.query_row(
                "SELECT version, value FROM state WHERE key = ?1",
                [&key],
                |r| {
                    Ok(Versioned {
                        version: r.get::<_, i64>(0)? as u64,
                        value: r.get(1)?,
                    })
                },
            )
            .optional()
            .map_err(db_err)
        })
        .await
    }

    async fn save(
        &self,
        key: &str,
        value: &str,
        expected: Option<u64>,
    ) -> Result<bool, StoreError> {
        let (key, value) = (key.to_string(), value.to_string());
        self.with(move |c| {
            let changed = match expected {
                None => c.execute(
                    "INSERT OR IGNORE INTO state (key, version, value) VALUES (?1, 1, ?2)",
                    params![key, value],
                ),
                Some(v) => c.execute(
                    "UPDATE state SET version = version + 1, value = ?3 WHERE key = ?1 AND version = ?2",
                    params![key, v as i64, value],
                ),
            }
            .map_err(db_err)?;
            Ok(changed == 1)
        })
        .await
    }
}
