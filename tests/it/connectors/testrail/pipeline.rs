//! One TestRail run per CI pipeline, against the fake TestRail: eight parts delivered at
//! once create one run holding every case once; a re-run attempt's results are the latest;
//! the pipeline's completion closes the run; a part arriving after that opens the next run
//! instead of losing its results.

use super::fake::{self, FakeTestRail};
use super::testrail;
use std::sync::Arc;
use testrelay_domain::delivery::steps::NoFaults;
use testrelay_domain::ids::RunId;
use testrelay_domain::ports::{Connector, Delivered, StepError};
use testrelay_domain::report::model::{PipelineRef, Shard, Status, TestCase, TestRun};
use testrelay_tests::vendor::*;

/// Part `index` of 8 (attempt `attempt`): cases C<index>1..C<index>3, the first failing
/// unless `passing`.
fn part(index: u32, attempt: u32, passing: bool) -> TestRun {
    let mut run = sample_run();
    run.run_id = RunId::derived(format!("part {index} {attempt}").as_bytes());
    run.meta.pipeline = Some(PipelineRef {
        id: "gh-77".into(),
        shard: Some(Shard { index, total: 8 }),
        attempt,
        completion: None,
    });
    run.report.suites[0].cases = (1..=3)
        .map(|k| {
            let status = if k == 1 && !passing {
                Status::Failed
            } else {
                Status::Passed
            };
            TestCase::new(format!("C{index}{k} test {k} of shard {index}"), status)
        })
        .collect();
    run
}

fn merged(completion: u32) -> TestRun {
    let mut run = sample_run();
    run.run_id = RunId::derived(format!("merged {completion}").as_bytes());
    run.meta.pipeline = Some(PipelineRef {
        id: "gh-77".into(),
        shard: None,
        attempt: 2,
        completion: Some(completion),
    });
    run
}

/// Delivers `runs` at once, in rounds: a delivery told to wait (another part holds the
/// pipeline's claim or its run's lock) is tried again in the next round, as the queue would
/// redeliver it, once every other delivery of the round has finished.
pub async fn deliver_all(h: &Harness, c: &dyn Connector, runs: &[&TestRun]) -> Vec<Delivered> {
    let mut done: Vec<Option<Delivered>> = vec![None; runs.len()];
    for _round in 0..runs.len() + 1 {
        let pending: Vec<usize> = (0..runs.len()).filter(|&i| done[i].is_none()).collect();
        if pending.is_empty() {
            break;
        }
        let tries = pending.iter().map(|&i| async move {
            let steps = h.steps_of(
                runs[i].run_id.as_str(),
                "c",
                c.kind(),
                0,
                Arc::new(NoFaults),
            );
            (i, c.deliver(runs[i], &ctx("c", 0), &steps).await)
        });
        for (i, outcome) in futures::future::join_all(tries).await {
            match outcome {
                Err(StepError::Busy { .. }) => {}
                other => done[i] = Some(other.unwrap()),
            }
        }
    }
    done.into_iter()
        .map(|d| d.expect("delivered within as many rounds as there are runs"))
        .collect()
}

async fn deliver_one(h: &Harness, c: &dyn Connector, run: &TestRun) -> Delivered {
    deliver_all(h, c, &[run]).await.remove(0)
}

#[tokio::test]
async fn eight_parts_at_once_make_one_run_and_completion_closes_it() {
    let cases = (1..=8).flat_map(|i| (1..=3).map(move |k| (i * 10 + k) as u64));
    let (server, state) = fake::serve(FakeTestRail::with_cases(cases)).await;
    let h = Harness::new();
    // The calls, not TestRail's 180 a minute, are under test.
    let config = "close_run = true\nrate_limit = { per_minute = 60000, burst = 1000 }";
    let c = testrail(&h, &server, config).await;
    let parts: Vec<TestRun> = (1..=8).map(|i| part(i, 1, false)).collect();
    let all = deliver_all(&h, c.as_ref(), &parts.iter().collect::<Vec<_>>()).await;
    for d in &all {
        assert!(
            d.external_ref
                .as_deref()
                .unwrap()
                .starts_with("testrail:run/501 (3 results"),
            "{d:?}"
        );
    }
    // The re-run of shards 2 and 5: their first tests pass now.
    for i in [2, 5] {
        deliver_one(&h, c.as_ref(), &part(i, 2, true)).await;
    }
    let d = deliver_one(&h, c.as_ref(), &merged(1)).await;
    assert_eq!(
        d.external_ref.as_deref(),
        Some("testrail:run/501 (the pipeline's run, closed)")
    );
    {
        let st = state.lock().unwrap();
        assert_eq!(st.count("add_run"), 1, "one run: {:?}", st.calls);
        let mut in_run = st.run_cases(501);
        in_run.sort();
        assert_eq!(in_run.len(), 24, "every case once");
        let latest = |case: u64| st.results.iter().rev().find(|r| r.1 == case).unwrap().2;
        assert_eq!(latest(21), 1, "re-run: passed");
        assert_eq!(latest(51), 1, "re-run: passed");
        assert_eq!(latest(31), 5, "not re-run: failed");
        assert_eq!(st.closed, vec![501]);
    }
    // A part after the run was closed: the pipeline's next run takes it.
    let late = deliver_one(&h, c.as_ref(), &part(8, 3, true)).await;
    assert!(late.external_ref.unwrap().starts_with("testrail:run/502"));
    let st = state.lock().unwrap();
    assert_eq!(st.count("add_run"), 2);
    assert_eq!(st.run_cases(502), vec![81, 82, 83]);
}
