//! A TestRail that keeps a suite's cases, runs (standalone and in plans), results and
//! closings, answers lookups from them, and answers errors as TestRail does: 400 for a
//! run naming one case the suite lacks, 403 for `update_run` on a run in a plan, 400 for a
//! result for a case not in the run, `limit` at most 250. Every call is counted.

use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

/// TestRail's answer when one case id of a run is unknown, deleted or another suite's.
pub const INVALID_CASES: &str = "Field :case_ids contains one or more invalid cases.";
/// TestRail's answer to `update_run` on a run that belongs to a plan.
pub const PLAN_RUN: &str = "This operation is not allowed. The test run belongs to a test plan and cannot be edited independently.";

#[derive(Default)]
pub struct FakeTestRail {
    /// The suite: case id -> case (`id`, `title`, `custom_automation_id`).
    pub cases: BTreeMap<u64, Value>,
    pub runs: Vec<Value>,
    /// Plans: plan id -> entries (`{id, runs: [{id}]}`).
    pub plans: BTreeMap<u64, Vec<Value>>,
    /// (run id, case id, status, comment)
    pub results: Vec<(u64, u64, u64, String)>,
    pub closed: Vec<u64>,
    /// Endpoint of every call, in order (`add_run`, `get_cases`, ...).
    pub calls: Vec<String>,
    /// Each run's cases, for quick membership checks.
    sets: std::collections::HashMap<u64, std::collections::HashSet<u64>>,
}

impl FakeTestRail {
    pub fn with_cases(ids: impl IntoIterator<Item = u64>) -> Self {
        let mut fake = FakeTestRail::default();
        for id in ids {
            fake.cases
                .insert(id, json!({"id": id, "title": format!("case {id}")}));
        }
        fake
    }

    pub fn count(&self, endpoint: &str) -> usize {
        self.calls.iter().filter(|c| *c == endpoint).count()
    }

    /// A run already in TestRail (holding `case_ids`), optionally in plan `plan`'s entry.
    pub fn existing_run(&mut self, id: u64, case_ids: &[u64], plan: Option<(u64, &str, bool)>) {
        let mut run = json!({"id": id, "case_ids": case_ids, "plan_id": null, "config_ids": []});
        if let Some((plan_id, entry, configs)) = plan {
            run["plan_id"] = json!(plan_id);
            if configs {
                run["config_ids"] = json!([1]);
            }
            self.plans
                .entry(plan_id)
                .or_default()
                .push(json!({"id": entry, "runs": [{"id": id}]}));
        }
        self.runs.push(run);
        self.set_cases(id, json!(case_ids));
    }

    pub fn run_cases(&self, id: u64) -> Vec<u64> {
        let run = self.runs.iter().find(|r| r["id"] == id).expect("the run");
        serde_json::from_value(run["case_ids"].clone()).unwrap()
    }

    fn invalid(&self, ids: &Value) -> bool {
        ids.as_array()
            .into_iter()
            .flatten()
            .any(|id| !self.cases.contains_key(&id.as_u64().unwrap_or(0)))
    }

    fn set_cases(&mut self, run: u64, ids: Value) {
        let set = ids
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_u64)
            .collect();
        self.sets.insert(run, set);
        let r = self.runs.iter_mut().find(|r| r["id"] == run).unwrap();
        r["case_ids"] = ids;
    }

    fn answer(&mut self, endpoint: &str, q: &str, body: Option<Value>) -> ResponseTemplate {
        let id = |n: usize| -> u64 {
            q.split(['/', '&'])
                .nth(n)
                .unwrap_or("")
                .parse()
                .unwrap_or(0)
        };
        let param = |name: &str| -> Option<usize> {
            q.split('&')
                .find_map(|kv| kv.strip_prefix(&format!("{name}=")))
                .and_then(|v| v.parse().ok())
        };
        // One page of `total` items, taking only that page from `items`.
        let page_of = |items: &mut dyn Iterator<Item = Value>, total: usize, field: &str| {
            let limit = param("limit").unwrap_or(250);
            let offset = param("offset").unwrap_or(0);
            if limit == 0 || limit > 250 {
                return error(400, "Field :limit is not a valid integer.");
            }
            let slice: Vec<Value> = items.skip(offset).take(limit).collect();
            let end = offset + slice.len();
            let next = (end < total).then(|| format!("/api/v2/x&limit=0&offset={end}"));
            ok(
                json!({"offset": offset, "limit": limit, "size": slice.len(),
                "_links": {"next": next, "prev": null}, field: slice}),
            )
        };
        let page = |items: Vec<Value>, field: &str| {
            let total = items.len();
            page_of(&mut items.into_iter(), total, field)
        };
        let body = body.unwrap_or(Value::Null);
        match endpoint {
            "get_cases" => {
                let total = self.cases.len();
                page_of(&mut self.cases.values().cloned(), total, "cases")
            }
            "add_case" => {
                let new = self.cases.keys().max().copied().unwrap_or(0) + 1;
                let mut case = body;
                case["id"] = json!(new);
                self.cases.insert(new, case.clone());
                ok(case)
            }
            "add_run" | "add_plan_entry" => {
                if self.invalid(&body["case_ids"]) {
                    return error(400, INVALID_CASES);
                }
                let run_id = 500 + self.runs.len() as u64 + 1;
                let mut run = body.clone();
                run["id"] = json!(run_id);
                self.runs.push(run.clone());
                self.set_cases(run_id, body["case_ids"].clone());
                if endpoint == "add_plan_entry" {
                    let entry = json!({"id": format!("entry-{run_id}"), "runs": [run]});
                    self.plans.entry(id(1)).or_default().push(entry.clone());
                    return ok(entry);
                }
                ok(run)
            }
            "get_runs" => page(self.runs.clone(), "runs"),
            "get_run" => match self.runs.iter().find(|r| r["id"] == id(1)) {
                Some(r) => {
                    let mut r = r.clone();
                    r["is_completed"] = json!(self.closed.contains(&id(1)));
                    ok(r)
                }
                None => error(400, "Field :run_id is not a valid test run."),
            },
            "get_plan" => ok(json!({"id": id(1), "entries": self.plans.get(&id(1))})),
            "update_run" | "update_run_in_plan_entry" | "update_plan_entry" => {
                if self.invalid(&body["case_ids"]) {
                    return error(400, INVALID_CASES);
                }
                let run = if endpoint == "update_plan_entry" {
                    let entry = q.split(['/', '&']).nth(2).unwrap_or("");
                    let found = self.plans.get(&id(1)).and_then(|entries| {
                        entries.iter().find(|e| e["id"] == entry)?["runs"][0]["id"].as_u64()
                    });
                    match found {
                        Some(run) => run,
                        None => return error(400, "Field :entry_id is not a valid entry."),
                    }
                } else {
                    id(1)
                };
                let Some(r) = self.runs.iter().find(|r| r["id"] == run) else {
                    return error(400, "Field :run_id is not a valid test run.");
                };
                let in_plan = !r["plan_id"].is_null();
                let configs = r["config_ids"].as_array().is_some_and(|c| !c.is_empty());
                match endpoint {
                    "update_run" if in_plan => return error(403, PLAN_RUN),
                    "update_run_in_plan_entry" if !configs => {
                        return error(400, "Field :run_id is not a valid test run.");
                    }
                    _ => {}
                }
                self.set_cases(run, body["case_ids"].clone());
                ok(json!({"id": run}))
            }
            "add_results_for_cases" => {
                let run = id(1);
                let results = body["results"].as_array().cloned().unwrap_or_default();
                let empty = std::collections::HashSet::new();
                let in_run = self.sets.get(&run).unwrap_or(&empty);
                let missing = results
                    .iter()
                    .filter_map(|x| x["case_id"].as_u64())
                    .find(|case| !in_run.contains(case));
                if let Some(case) = missing {
                    return error(
                        400,
                        &format!(
                            "Field :results cannot be added: case C{case} is not part of the test run."
                        ),
                    );
                }
                for x in &results {
                    self.results.push((
                        run,
                        x["case_id"].as_u64().unwrap(),
                        x["status_id"].as_u64().unwrap(),
                        x["comment"].as_str().unwrap_or("").to_string(),
                    ));
                }
                let n = self.results.len();
                ok(json!(
                    (n - results.len()..n)
                        .map(|i| json!({"id": i + 1}))
                        .collect::<Vec<_>>()
                ))
            }
            "get_tests" => {
                let run = id(1);
                let latest: std::collections::HashMap<u64, u64> = self
                    .results
                    .iter()
                    .filter(|r| r.0 == run)
                    .map(|r| (r.1, r.2))
                    .collect();
                let tests: Vec<Value> = self
                    .run_cases(run)
                    .into_iter()
                    .map(|c| {
                        let status = latest.get(&c).copied().unwrap_or(3);
                        json!({"id": test_id(run, c), "case_id": c, "status_id": status})
                    })
                    .collect();
                page(tests, "tests")
            }
            "get_results_for_run" => {
                let run = id(1);
                let results: Vec<Value> = self
                    .results
                    .iter()
                    .enumerate()
                    .rev()
                    .filter(|(_, r)| r.0 == run)
                    .map(|(i, r)| {
                        json!({"id": i + 1, "test_id": test_id(run, r.1), "status_id": r.2, "comment": r.3})
                    })
                    .collect();
                page(results, "results")
            }
            "close_run" => {
                self.closed.push(id(1));
                ok(json!({"id": id(1), "is_completed": true}))
            }
            _ => ResponseTemplate::new(404),
        }
    }
}

fn test_id(run: u64, case: u64) -> u64 {
    run * 1_000_000 + case
}

fn ok(body: Value) -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_json(body)
}

fn error(status: u16, message: &str) -> ResponseTemplate {
    ResponseTemplate::new(status).set_body_json(json!({ "error": message }))
}

/// Serves `state` as a TestRail instance.
pub async fn serve(state: FakeTestRail) -> (MockServer, Arc<Mutex<FakeTestRail>>) {
    let server = MockServer::start().await;
    let state = Arc::new(Mutex::new(state));
    let s = state.clone();
    Mock::given(wiremock::matchers::any())
        .respond_with(move |r: &Request| {
            let q = r
                .url
                .query()
                .unwrap_or("")
                .trim_start_matches("/api/v2/")
                .to_string();
            let endpoint = q.split(['/', '&']).next().unwrap_or("").to_string();
            let mut st = s.lock().unwrap();
            st.calls.push(endpoint.clone());
            let body = r.body_json::<Value>().ok();
            st.answer(&endpoint, &q, body)
        })
        .mount(&server)
        .await;
    (server, state)
}
