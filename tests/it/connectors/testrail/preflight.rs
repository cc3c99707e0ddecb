//! TestRail against a fake that answers as TestRail does (`fake.rs`): the pre-flight
//! against the suite's cases, configured runs (standalone and in plans), retries into a run
//! that holds other CI runs' results, the automation-id matcher with opt-in case creation,
//! and the request budget of a 10,000-test delivery.

use super::fake::{self, FakeTestRail, INVALID_CASES, PLAN_RUN};
use super::{KEY, testrail};
use serde_json::{Value, json};
use std::sync::Arc;
use testrelay_domain::delivery::steps::{CrashPoint, NoFaults};
use testrelay_domain::ports::{Connector, StepError};
use testrelay_domain::report::model::{Status, TestCase, TestRun};
use testrelay_tests::vendor::*;

const OTHER_RUN: &str = "01ARZ3NDEKTSV4RRFFQ69G5FBW";

/// What TestRail itself answers `add_run` naming one case the suite lacks: 400 for the whole
/// run. (The fake's answer, checked here, is what the delivery tests below run against.)
#[tokio::test]
async fn testrail_refuses_a_whole_run_for_one_unknown_case() {
    let (server, _) = fake::serve(FakeTestRail::with_cases(101..=106)).await;
    let answer = reqwest::Client::new()
        .post(format!("{}/index.php?/api/v2/add_run/7", server.uri()))
        .basic_auth("ci@example.com", Some(KEY))
        .json(&json!({"name": "x", "include_all": false, "case_ids": [101, 999]}))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 400);
    let body: Value = answer.json().await.unwrap();
    assert_eq!(body["error"], INVALID_CASES);
}

/// A deleted case (C103) and another suite's (C999) are left out and named; every other
/// result goes in. Before the pre-flight, the whole delivery was dead-lettered.
#[tokio::test]
async fn unknown_case_ids_are_left_out_and_named_never_the_run_lost() {
    let mut run = sample_run();
    run.report.suites[0]
        .cases
        .push(TestCase::new("C999 from another suite", Status::Failed));
    let (server, state) = fake::serve(FakeTestRail::with_cases([101, 102, 104, 105, 106])).await;
    let h = Harness::new();
    let c = testrail(&h, &server, "").await;
    let d = deliver(&h, c.as_ref(), &run, 0).await.unwrap();
    assert_eq!(
        d.external_ref.as_deref(),
        Some(
            "testrail:run/501 (5 results; 1 tests without a case id, not posted; 2 case ids not in the suite, not posted: C103, C999; 1 skipped, not posted)"
        )
    );
    let st = state.lock().unwrap();
    assert_eq!(st.run_cases(501), vec![101, 102, 104, 105, 106]);
    assert_eq!(st.results.len(), 5);
}

/// The suite's cases are read once and reused; a case deleted since that read makes TestRail
/// refuse the run, and the delivery reads the suite again, once, and goes through.
#[tokio::test]
async fn a_case_deleted_since_the_cached_read_is_found_by_reading_again() {
    let (server, state) = fake::serve(FakeTestRail::with_cases(101..=106)).await;
    let h = Harness::new();
    let c = testrail(&h, &server, "").await;
    deliver(&h, c.as_ref(), &sample_run(), 0).await.unwrap();
    state.lock().unwrap().cases.remove(&102);
    let mut second = sample_run();
    second.run_id = testrelay_domain::ids::RunId::parse(OTHER_RUN).unwrap();
    let d = deliver_run(&h, c.as_ref(), &second).await.unwrap();
    assert!(
        d.external_ref
            .unwrap()
            .contains("not in the suite, not posted: C102"),
        "named"
    );
    let st = state.lock().unwrap();
    assert_eq!(st.count("get_cases"), 2, "read, reused, read again once");
    assert_eq!(st.count("add_run"), 3, "refused once, then created");
}

async fn deliver_run(
    h: &Harness,
    c: &dyn Connector,
    run: &TestRun,
) -> Result<testrelay_domain::ports::Delivered, StepError> {
    let steps = h.steps_of(run.run_id.as_str(), "c", c.kind(), 0, Arc::new(NoFaults));
    c.deliver(run, &ctx("c", 0), &steps).await
}

/// A configured run that belongs to a plan cannot be changed with `update_run` (TestRail
/// answers 403); it is changed through its plan entry, or with `update_run_in_plan_entry`
/// when the entry has configurations. `get_run` tells which.
#[tokio::test]
async fn a_configured_run_in_a_plan_is_extended_through_its_entry() {
    for (plan, expected) in [
        (None, "update_run"),
        (Some((12, "entry-a", false)), "update_plan_entry"),
        (Some((12, "entry-b", true)), "update_run_in_plan_entry"),
    ] {
        let mut tr = FakeTestRail::with_cases((101..=106).chain([900]));
        tr.existing_run(42, &[900], plan);
        let (server, state) = fake::serve(tr).await;
        if plan.is_some() {
            let refused = reqwest::Client::new()
                .post(format!("{}/index.php?/api/v2/update_run/42", server.uri()))
                .json(&json!({"include_all": false, "case_ids": [900, 101]}))
                .send()
                .await
                .unwrap();
            assert_eq!(refused.status(), 403);
            assert_eq!(refused.json::<Value>().await.unwrap()["error"], PLAN_RUN);
        }
        let h = Harness::new();
        let c = testrail(&h, &server, "run_id = 42").await;
        let d = deliver(&h, c.as_ref(), &sample_run(), 0).await.unwrap();
        assert!(d.external_ref.unwrap().starts_with("testrail:run/42"));
        let st = state.lock().unwrap();
        assert_eq!(st.count(expected), 1, "{expected}: {:?}", st.calls);
        assert_eq!(st.run_cases(42), vec![101, 102, 103, 104, 105, 106, 900]);
        assert_eq!(st.results.len(), 6, "{expected}");
    }
}

/// A configured run holds results of earlier CI runs. A retry that cannot know whether a
/// batch went in skips only the cases with a result from THIS delivery (its comment names
/// this run's status URL), and reads the run's results once per attempt, not per batch.
#[tokio::test]
async fn a_retry_into_a_configured_run_skips_only_this_deliverys_results() {
    for point in [CrashPoint::BeforeCall, CrashPoint::AfterCall] {
        let mut tr = FakeTestRail::with_cases(101..=106);
        tr.existing_run(42, &[101, 102, 103, 104, 105, 106], None);
        for case in 101..=106 {
            tr.results.push((
                42,
                case,
                1,
                "Run: https://old.example/v1/runs/earlier".into(),
            ));
        }
        let (server, state) = fake::serve(tr).await;
        let h = Harness::new();
        let c = testrail(&h, &server, "run_id = 42\nbatch_size = 1").await;
        crash_then_retry(&h, c.as_ref(), &sample_run(), point, "results/2").await;
        let st = state.lock().unwrap();
        let ours: Vec<u64> = st
            .results
            .iter()
            .filter(|r| r.3.contains(RUN_ID))
            .map(|r| r.1)
            .collect();
        assert_eq!(
            ours.len(),
            6,
            "{point:?}: each of this run's results once: {ours:?}"
        );
        assert_eq!(
            st.count("get_tests"),
            2,
            "{point:?}: extend, then one re-read"
        );
        assert_eq!(st.count("get_results_for_run"), 1, "{point:?}");
    }
}

/// TestRail's own CLI matches by automation id (`classname.name`) and, with `-y`, creates
/// the cases it lacks. Here: opt-in, in the configured section, carrying the automation id,
/// created once however many runs meet the new test at the same moment.
#[tokio::test]
async fn missing_cases_are_created_once_and_matched_by_automation_id() {
    let mut tr = FakeTestRail::with_cases([]);
    tr.cases.insert(
        1,
        json!({"id": 1, "custom_automation_id": "shop.CheckoutTest.logs in"}),
    );
    let (server, state) = fake::serve(tr).await;
    let h = Harness::new();
    let config = "case_matcher = \"automation_id\"\ncreate_cases_in_section = 5";
    // Two processes (no shared cache), one state store.
    let a = testrail(&h, &server, config).await;
    let b = testrail(&h, &server, config).await;
    let run = |id: &str| {
        let mut r = sample_run();
        r.run_id = testrelay_domain::ids::RunId::parse(id).unwrap();
        r.report.suites[0].cases = ["logs in", "logs out"]
            .map(|name| {
                let mut t = TestCase::new(name, Status::Passed);
                t.classname = Some("shop.CheckoutTest".into());
                t
            })
            .to_vec();
        r
    };
    let (one, two) = (run(RUN_ID), run(OTHER_RUN));
    let (x, y) = tokio::join!(
        deliver_run(&h, a.as_ref(), &one),
        deliver_run(&h, b.as_ref(), &two)
    );
    // The run that found the other creating the case (either may) waits and tries again.
    let busy = |r: &Result<_, StepError>| matches!(r, Err(StepError::Busy { .. }));
    let x = if busy(&x) {
        deliver_run(&h, a.as_ref(), &one).await
    } else {
        x
    };
    let y = if busy(&y) {
        deliver_run(&h, b.as_ref(), &two).await
    } else {
        y
    };
    for d in [x, y] {
        assert_eq!(
            d.unwrap()
                .external_ref
                .as_deref()
                .map(|r| r.ends_with("(2 results)")),
            Some(true)
        );
    }
    let st = state.lock().unwrap();
    assert_eq!(st.count("add_case"), 1, "{:?}", st.calls);
    let created = &st.cases[&2];
    assert_eq!(
        created["custom_automation_id"],
        "shop.CheckoutTest.logs out"
    );
    assert_eq!(created["title"], "logs out");
    assert_eq!(
        st.results.iter().filter(|r| r.1 == 2).count(),
        2,
        "both runs' results"
    );
}

/// Without the opt-in nothing is created: tests the suite lacks are counted, not posted.
#[tokio::test]
async fn without_the_opt_in_unmatched_tests_are_counted() {
    let (server, state) = fake::serve(FakeTestRail::with_cases(101..=106)).await;
    let h = Harness::new();
    let c = testrail(&h, &server, "case_matcher = \"automation_id\"").await;
    let d = deliver(&h, c.as_ref(), &sample_run(), 0).await.unwrap();
    // Only the property-given id (C105) matches; names are not read by this matcher.
    assert_eq!(
        d.external_ref.as_deref(),
        Some("testrail:run/501 (1 results; 7 tests without a case id, not posted)")
    );
    assert_eq!(state.lock().unwrap().count("add_case"), 0);
}

/// The request budget of a 10,000-test delivery into a fresh run with one crash mid-way:
/// at most 3 + ceil(n / batch_size) + 2 x ceil(cases / 250) calls. Prints the count.
#[tokio::test]
async fn request_budget_of_a_ten_thousand_test_delivery() {
    let n = 10_000usize;
    let mut run = sample_run();
    run.report.suites[0].cases = (1..=n)
        .map(|i| {
            let status = if i % 20 == 0 {
                Status::Failed
            } else {
                Status::Passed
            };
            TestCase::new(format!("C{i} test number {i}"), status)
        })
        .collect();
    let (server, state) = fake::serve(FakeTestRail::with_cases(1..=n as u64 + 1000)).await;
    let h = Harness::new();
    // The count, not TestRail's 180 a minute, is under test here.
    let config = "close_run = true\nrate_limit = { per_minute = 60000, burst = 1000 }";
    let c = testrail(&h, &server, config).await;
    crash_then_retry(&h, c.as_ref(), &run, CrashPoint::AfterCall, "results/50").await;
    let st = state.lock().unwrap();
    let cases = st.cases.len();
    let batches = n.div_ceil(100);
    let budget = 3 + batches + 2 * cases.div_ceil(250);
    let mut by_endpoint: Vec<(String, usize)> = Vec::new();
    for call in &st.calls {
        match by_endpoint.iter_mut().find(|(e, _)| e == call) {
            Some((_, k)) => *k += 1,
            None => by_endpoint.push((call.clone(), 1)),
        }
    }
    println!(
        "testrail request budget: {n} tests, {cases} cases in the suite, batch 100, crash after batch 50: {} calls (budget {budget}): {by_endpoint:?}",
        st.calls.len()
    );
    assert!(st.calls.len() <= budget, "{} > {budget}", st.calls.len());
    assert_eq!(st.results.len(), n, "every result once");
    assert_eq!(st.closed, vec![501]);
}

/// Cases carry their steps and custom fields: a page of 250 can be megabytes, past the
/// 1 MiB other answers may be (such a page used to fail as "larger than 1 MiB", on every
/// retry). Pages up to 16 MiB are read, and only ids and automation ids kept.
#[tokio::test]
async fn large_case_pages_are_read() {
    let mut tr = FakeTestRail::with_cases(1..=300);
    for case in tr.cases.values_mut() {
        case["custom_steps"] = json!("Open the shop, then check out. ".repeat(256));
    }
    let (server, state) = fake::serve(tr).await;
    let h = Harness::new();
    let c = testrail(&h, &server, "").await;
    let d = deliver(&h, c.as_ref(), &sample_run(), 0).await.unwrap();
    assert!(
        d.external_ref
            .unwrap()
            .starts_with("testrail:run/501 (6 results")
    );
    assert_eq!(state.lock().unwrap().count("get_cases"), 2);
}
