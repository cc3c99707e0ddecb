//! Breakers shared by every delivery instance: the [`breaker`](crate::delivery::breaker) state machine
//! stored through the [`StateStore`] port. Every transition is a conditional write on the
//! version read, so concurrent instances never lose an update: the loser reloads and decides
//! again on the new state. If the store cannot be reached, deliveries go ahead (a breaker
//! protects the target, it must not become an outage of its own) and a metric says so.

use crate::delivery::breaker::{self, Admission, BreakerConfig, BreakerState, Signal};
use crate::health::metrics::Metrics;
use crate::ports::{Clock, StateStore, StoreError};
use std::sync::Arc;

/// Attempts at a conditional write before giving up on a contended breaker.
const MAX_RACES: usize = 16;

pub struct Breakers {
    store: Arc<dyn StateStore>,
    clock: Arc<dyn Clock>,
    metrics: Arc<dyn Metrics>,
}

fn key(target: &str) -> String {
    format!("breaker/{target}")
}

impl Breakers {
    pub fn new(
        store: Arc<dyn StateStore>,
        clock: Arc<dyn Clock>,
        metrics: Arc<dyn Metrics>,
    ) -> Self {
        Breakers {
            store,
            clock,
            metrics,
        }
    }

    /// The stored state (CLOSED when none is stored) and its version.
    pub async fn load(
        &self,
        target: &str,
        cfg: &BreakerConfig,
    ) -> Result<(BreakerState, Option<u64>), StoreError> {
        match self.store.load(&key(target)).await? {
            Some(v) => {
                let state = serde_json::from_str(&v.value).map_err(|e| {
                    StoreError::new("state store", format!("breaker {target}: {e}"))
                })?;
                Ok((state, Some(v.version)))
            }
            None => Ok((BreakerState::closed(cfg, self.clock.now_ms()), None)),
        }
    }

    fn unavailable(&self, target: &str, e: &StoreError) {
        tracing::warn!(target, error = %e, "breaker state unavailable; delivering without it");
        self.metrics
            .count("BreakerStoreUnavailable", &[("Target", target)], 1);
    }

    /// Applies `decide` to the current state until its write wins; returns what it decided.
    async fn transact<T: Copy>(
        &self,
        target: &str,
        cfg: &BreakerConfig,
        on_store_error: T,
        on_contention: impl Fn(u64) -> T,
        decide: impl Fn(&BreakerState, u64) -> (T, Option<BreakerState>),
    ) -> T {
        for _ in 0..MAX_RACES {
            let (state, version) = match self.load(target, cfg).await {
                Ok(s) => s,
                Err(e) => {
                    self.unavailable(target, &e);
                    return on_store_error;
                }
            };
            let now = self.clock.now_ms();
            let (answer, next) = decide(&state, now);
            let Some(next) = next else { return answer };
            let value = serde_json::to_string(&next).expect("serialisable");
            match self.store.save(&key(target), &value, version).await {
                Ok(true) => {
                    if next.phase != state.phase {
                        let to = serde_json::to_value(next.phase).expect("serialisable");
                        let to = to.as_str().unwrap_or("?");
                        tracing::info!(target, from = ?state.phase, to, "breaker transition");
                        self.metrics.count(
                            "BreakerTransition",
                            &[("Target", target), ("To", to)],
                            1,
                        );
                    }
                    return answer;
                }
                Ok(false) => continue,
                Err(e) => {
                    self.unavailable(target, &e);
                    return on_store_error;
                }
            }
        }
        tracing::warn!(target, "breaker contended; deciding later");
        on_contention(self.clock.now_ms())
    }

    /// Whether a delivery to `target` may call it now. Exactly one caller across all
    /// instances is granted the HALF_OPEN probe.
    pub async fn admit(&self, target: &str, cfg: &BreakerConfig) -> Admission {
        self.transact(
            target,
            cfg,
            Admission::Allow,
            |now| Admission::Reject {
                retry_at_ms: now + 1_000,
            },
            |state, now| breaker::admit(state, cfg, now),
        )
        .await
    }

    /// Records how a call went (`probe`: it was admitted as the probe).
    pub async fn record(&self, target: &str, cfg: &BreakerConfig, signal: Signal, probe: bool) {
        self.transact(
            target,
            cfg,
            (),
            |_| (),
            |state, now| ((), breaker::record(state, cfg, signal, probe, now)),
        )
        .await
    }

    /// A health check reached `target`: an OPEN breaker goes HALF_OPEN now.
    pub async fn target_healthy(&self, target: &str, cfg: &BreakerConfig) {
        self.transact(
            target,
            cfg,
            (),
            |_| (),
            |state, now| ((), breaker::target_healthy(state, now)),
        )
        .await
    }
}
