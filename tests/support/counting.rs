//! A state store that counts the calls made to it, for the benchmarks that print them.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use testrelay_domain::ports::{StateStore, StoreError, Versioned};

pub struct CountingState {
    inner: Arc<dyn StateStore>,
    pub loads: AtomicU64,
    pub saves: AtomicU64,
}

impl CountingState {
    pub fn new(inner: Arc<dyn StateStore>) -> Self {
        CountingState {
            inner,
            loads: AtomicU64::new(0),
            saves: AtomicU64::new(0),
        }
    }

    /// `(loads, saves)` so far.
    pub fn counts(&self) -> (u64, u64) {
        (
            self.loads.load(Ordering::SeqCst),
            self.saves.load(Ordering::SeqCst),
        )
    }
}

#[async_trait::async_trait]
impl StateStore for CountingState {
    async fn load(&self, key: &str) -> Result<Option<Versioned>, StoreError> {
        self.loads.fetch_add(1, Ordering::SeqCst);
        self.inner.load(key).await
    }

    async fn save(
        &self,
        key: &str,
        value: &str,
        expected: Option<u64>,
    ) -> Result<bool, StoreError> {
        self.saves.fetch_add(1, Ordering::SeqCst);
        self.inner.save(key, value, expected).await
    }
}
