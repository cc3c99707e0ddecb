//! The pre-flight: the suite's cases, read with `get_cases` (paged) before a run is created
//! or extended. `add_run`, `add_plan_entry` and `update_run` refuse the WHOLE request (400,
//! "Field :case_ids contains one or more invalid cases") when one id is unknown, deleted or
//! from another suite, so ids not in the suite are left out, counted and named in the
//! delivery status. The same read maps automation ids to cases.
//!
//! The read is cached per connector (it is one project and suite) for [`CASES_TTL`]: a
//! retry, or the next report minutes later, does not read the suite again. A run refused
//! with a cached read is retried once with a fresh one.

use serde_json::Value;
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How long a suite's case list is reused.
pub const CASES_TTL: Duration = Duration::from_secs(300);

/// A suite's cases.
#[derive(Debug, Default, Clone)]
pub struct CaseIndex {
    ids: HashSet<u64>,
    by_automation_id: HashMap<String, u64>,
}

impl CaseIndex {
    /// Adds `get_cases` items, reading automation ids from `field`.
    pub fn add(&mut self, cases: &[Value], field: &str) {
        let index = self;
        for case in cases {
            let Some(id) = case["id"].as_u64() else {
                continue;
            };
            index.ids.insert(id);
            if let Some(a) = case[field]
                .as_str()
                .map(str::trim)
                .filter(|a| !a.is_empty())
            {
                // The first case wins, as in TestRail's CLI; a duplicate id field is the
                // suite's own ambiguity.
                index.by_automation_id.entry(a.to_string()).or_insert(id);
            }
        }
    }

    pub fn contains(&self, id: u64) -> bool {
        self.ids.contains(&id)
    }

    pub fn by_automation_id(&self, automation_id: &str) -> Option<u64> {
        self.by_automation_id.get(automation_id).copied()
    }

    /// A case this delivery created.
    pub fn insert(&mut self, id: u64, automation_id: &str) {
        self.ids.insert(id);
        self.by_automation_id
            .entry(automation_id.to_string())
            .or_insert(id);
    }

    pub fn len(&self) -> usize {
        self.ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }
}

/// The last read and when it was made (clock milliseconds).
#[derive(Default)]
pub struct CaseCache(Mutex<Option<(u64, Arc<CaseIndex>)>>);

impl CaseCache {
    /// The cached index if read within [`CASES_TTL`] of `now_ms`.
    pub fn get(&self, now_ms: u64) -> Option<Arc<CaseIndex>> {
        let cached = self.0.lock().expect("not poisoned");
        cached
            .as_ref()
            .filter(|(at, _)| now_ms < at + CASES_TTL.as_millis() as u64)
            .map(|(_, index)| index.clone())
    }

    pub fn put(&self, now_ms: u64, index: Arc<CaseIndex>) {
        *self.0.lock().expect("not poisoned") = Some((now_ms, index));
    }
}

/// `C1, C2, ... and N more` for a delivery status.
pub fn named(ids: &[u64]) -> String {
    const SHOWN: usize = 10;
    let mut s = ids
        .iter()
        .take(SHOWN)
        .map(|id| format!("C{id}"))
        .collect::<Vec<_>>()
        .join(", ");
    if ids.len() > SHOWN {
        s.push_str(&format!(" and {} more", ids.len() - SHOWN));
    }
    s
}
