//! Crash injection: crashes a delivery at each crash point with a fixed probability, by a
//! deterministic sequence, and counts the crashes.

use crate::fake_vendor::mix;
use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use testrelay_domain::delivery::steps::{CrashPoint, Faults};
use testrelay_domain::ports::DeliveryMessage;

pub struct RandomCrashes {
    seed: u64,
    percent: u64,
    n: AtomicU64,
    pub crashes: Mutex<HashMap<CrashPoint, u64>>,
}

impl RandomCrashes {
    pub fn new(seed: u64, percent: u64) -> Self {
        RandomCrashes {
            seed,
            percent,
            n: AtomicU64::new(0),
            crashes: Mutex::default(),
        }
    }

    pub fn count(&self, point: CrashPoint) -> u64 {
        self.crashes
            .lock()
            .unwrap()
            .get(&point)
            .copied()
            .unwrap_or(0)
    }
}

impl Faults for RandomCrashes {
    fn crash(&self, point: CrashPoint, _: &str, _: &DeliveryMessage) -> bool {
        let n = self.n.fetch_add(1, Ordering::SeqCst);
        let crash = mix(self.seed, n) % 100 < self.percent;
        if crash {
            *self.crashes.lock().unwrap().entry(point).or_default() += 1;
        }
        crash
    }
}

/// Crashes the first delivery to reach each (crash point, step, connector): every step of
/// every connector is crashed once before its call, once after it, and every connector once
/// after a step's record and once after the run record, whatever order deliveries run in.
#[derive(Default)]
pub struct EachPointOnce {
    seen: Mutex<std::collections::HashSet<(CrashPoint, String, String)>>,
}

impl EachPointOnce {
    /// How many crashes at `point`.
    pub fn count(&self, point: CrashPoint) -> usize {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .filter(|(p, _, _)| *p == point)
            .count()
    }

    /// Whether a delivery was crashed at `point` of `step` for `connector`.
    pub fn crashed(&self, point: CrashPoint, step: &str, connector: &str) -> bool {
        self.seen
            .lock()
            .unwrap()
            .contains(&(point, step.to_string(), connector.to_string()))
    }
}

impl Faults for EachPointOnce {
    fn crash(&self, point: CrashPoint, step: &str, message: &DeliveryMessage) -> bool {
        self.seen
            .lock()
            .unwrap()
            .insert((point, step.to_string(), message.connector.to_string()))
    }
}
