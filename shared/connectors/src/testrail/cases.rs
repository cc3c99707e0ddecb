//! The pre-flight: the suite's cases, read with `get_cases` (paged) before a run is created
//! or extended. `add_run`, `add_plan_entry` and `update_run` refuse the WHOLE request (400,
//! "Field :case_ids contains one or more invalid cases") when one id is unknown, deleted or
//! from another suite, so ids not in the suite are left out, counted and named in the
//! delivery status. The same read maps automation ids to cases.
//!
//! The read is cached per connector (it is one project and suite) for [`CASES_TTL`]: a
//! retry, or the next report minutes later, does not read the suite again. A run refused
//! with a cached read is retried once with a fresh one.

use super::{Created, MAX_CASES_PAGE_BYTES, TestRail, property_ids};
use crate::http::permanent;
use serde_json::{Value, json};
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use testrelay_domain::delivery::steps::{StepCall, Steps};
use testrelay_domain::ports::{DeliveryError, StepError};
use testrelay_domain::report::model::{TestCase, TestRun};
use testrelay_domain::report::render;

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

/// The last read and when it was made (clock milliseconds), and the lock a read holds.
#[derive(Default)]
pub struct CaseCache {
    last: Mutex<Option<(u64, Arc<CaseIndex>)>>,
    pub reading: tokio::sync::Mutex<()>,
}

impl CaseCache {
    /// The cached index if read within [`CASES_TTL`] of `now_ms`.
    pub fn get(&self, now_ms: u64) -> Option<Arc<CaseIndex>> {
        let cached = self.last.lock().expect("not poisoned");
        cached
            .as_ref()
            .filter(|(at, _)| now_ms < at + CASES_TTL.as_millis() as u64)
            .map(|(_, index)| index.clone())
    }

    pub fn put(&self, now_ms: u64, index: Arc<CaseIndex>) {
        *self.last.lock().expect("not poisoned") = Some((now_ms, index));
    }
}

impl TestRail {
    /// The suite's cases: from the cache unless `fresh`; `(index, read from the cache)`.
    pub(super) async fn case_index(
        &self,
        fresh: bool,
    ) -> Result<(Arc<CaseIndex>, bool), DeliveryError> {
        let now = self.clock.now_ms();
        if !fresh && let Some(index) = self.cases.get(now) {
            return Ok((index, true));
        }
        // One read at a time: deliveries that find the cache empty together wait for the
        // first one's read instead of each reading every page.
        let _reading = self.cases.reading.lock().await;
        if !fresh && let Some(index) = self.cases.get(self.clock.now_ms()) {
            return Ok((index, true));
        }
        let mut endpoint = format!("get_cases/{}", self.c.project_id);
        if let Some(s) = self.c.suite_id {
            endpoint.push_str(&format!("&suite_id={s}"));
        }
        // Cases carry their steps and custom fields: a page may be large; only ids and
        // automation ids are kept.
        let mut index = CaseIndex::default();
        let field = self.c.automation_id_field.as_str();
        self.pages(&endpoint, "cases", MAX_CASES_PAGE_BYTES, |cases| {
            index.add(&cases, field)
        })
        .await?;
        let index = Arc::new(index);
        self.cases.put(now, index.clone());
        Ok((index, false))
    }

    /// Creates a case for every test (by automation id) the suite lacks, once ever per
    /// automation id however many runs meet it at once; the index with them added.
    pub(super) async fn create_missing(
        &self,
        run: &TestRun,
        steps: &Steps,
        section: u64,
        index: Arc<CaseIndex>,
    ) -> Result<Arc<CaseIndex>, StepError> {
        let mut missing: Vec<(String, &TestCase)> = Vec::new();
        for (suite, case) in run.report.cases_in_suites() {
            let a = render::automation_id(suite, case);
            if property_ids(case).is_empty()
                && index.by_automation_id(&a).is_none()
                && !missing.iter().any(|(m, _)| *m == a)
            {
                missing.push((a, case));
            }
        }
        if missing.is_empty() {
            return Ok(index);
        }
        let mut index = (*index).clone();
        let suite = self.c.suite_id.unwrap_or(0);
        for (a, case) in missing {
            let digest = crate::digest8(&a);
            let (a, digest) = (&a, &digest);
            let (id, _) = crate::claim::once_ever(
                self.state.as_ref(),
                self.clock.as_ref(),
                &format!("testrail-case/{}/{suite}/{digest}", self.name),
                &run.run_id.to_string(),
                |taken_over| async move {
                    let step = steps
                        .once(&format!("case/{digest}"), |call| {
                            let check_first = call.check_first || taken_over;
                            self.add_case(section, a, case, StepCall { check_first })
                        })
                        .await?;
                    Ok(step.value)
                },
            )
            .await?;
            let id = id
                .parse()
                .map_err(|_| StepError::Failed(permanent("a created case without an id")))?;
            index.insert(id, a);
        }
        let index = Arc::new(index);
        self.cases.put(self.clock.now_ms(), index.clone());
        Ok(index)
    }

    /// `add_case` in `section`, titled by the test and carrying its automation id; a retry
    /// that cannot know whether an earlier try created it reads the suite again first.
    pub(super) async fn add_case(
        &self,
        section: u64,
        automation_id: &str,
        case: &TestCase,
        call: StepCall,
    ) -> Result<String, DeliveryError> {
        if call.check_first
            && let Some(id) = self
                .case_index(true)
                .await?
                .0
                .by_automation_id(automation_id)
        {
            return Ok(id.to_string());
        }
        let mut body = json!({"title": render::cut(&case.name, 250)});
        body[self.c.automation_id_field.as_str()] = json!(automation_id);
        let created: Created = self.post(&format!("add_case/{section}"), &body).await?;
        Ok(created.id.to_string())
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
