//! The `run.completed` event every webhook receives (`pipeline.completed` /
//! `pipeline.updated` for a pipeline's merged result): the run summary plus the failures,
//! first ones first (new failures first when the run was classified against its base, with
//! `data.changes` saying what changed), bounded so that a run with 10,000 failures still
//! makes a small event.

use crate::report::model::TestRun;
use serde_json::{Value, json};

/// At most this many failures are listed; the rest are counted in `failures_omitted`.
pub const MAX_FAILURES: usize = 50;
/// Traces are cut to this many bytes in the event; the full report stays in testrelay.
pub const MAX_TRACE: usize = 4096;

/// The event; `timestamp` is when it happened (Standard Webhooks), for a run its acceptance.
pub fn run_completed(run: &TestRun, status_url: &str, timestamp: &str) -> Value {
    let mut failures = Vec::new();
    let mut omitted = 0u64;
    for (suite, case, class) in crate::report::render::classified_failures(run) {
        if failures.len() == MAX_FAILURES {
            omitted += 1;
            continue;
        }
        failures.push(json!({
            "suite": suite.name,
            "name": case.name,
            "classname": case.classname,
            "status": case.status,
            "message": case.message,
            "trace": case.trace.as_deref().map(|t| crate::report::render::cut(t, MAX_TRACE)),
            "file": case.file,
            "line": case.line,
            "duration_ms": case.duration_ms,
            "class": class,
        }));
    }
    // A pipeline's merged result: `pipeline.completed` the first time, `pipeline.updated`
    // when late parts reopened it and it completed again.
    let (kind, pipeline) = match &run.meta.pipeline {
        Some(p) if p.is_merged() => (
            if p.completion == Some(1) {
                "pipeline.completed"
            } else {
                "pipeline.updated"
            },
            Some(json!({"id": p.id, "completion": p.completion, "attempt": p.attempt})),
        ),
        Some(p) => (
            "run.completed",
            Some(json!({"id": p.id, "shard": p.shard, "attempt": p.attempt})),
        ),
        None => ("run.completed", None),
    };
    let mut event = json!({
        "type": kind,
        "timestamp": timestamp,
        "data": {
            "run_id": run.run_id,
            "status_url": status_url,
            "received_at": run.received_at,
            "project": run.meta.project,
            "branch": run.meta.branch,
            "commit": run.meta.commit,
            "build_url": run.meta.build_url,
            "environment": run.meta.environment,
            "format": run.report.format,
            "tool": run.report.tool,
            "outcome": run.summary.outcome(),
            "summary": run.summary,
            "failures": failures,
            "failures_omitted": omitted,
        }
    });
    if let Some(p) = pipeline {
        event["data"]["pipeline"] = p;
    }
    // What changed against the base: counts, the base run and the classified tests (new
    // failures first, at most 50 listed).
    if let Some(c) = &run.changes {
        event["data"]["changes"] = serde_json::to_value(c).expect("serialisable");
    }
    event
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::RunId;
    use crate::report::model::*;

    #[test]
    fn lists_first_failures_and_counts_the_rest() {
        let mut cases: Vec<TestCase> = (0..10_000)
            .map(|i| {
                let mut c = TestCase::new(format!("t{i}"), Status::Failed);
                c.trace = Some("x".repeat(10_000));
                c
            })
            .collect();
        cases.push(TestCase::new("ok", Status::Passed));
        let report = Report {
            format: Format::Junit,
            tool: None,
            duration_ms: None,
            suites: vec![Suite {
                name: "s".into(),
                file: None,
                duration_ms: None,
                properties: vec![],
                cases,
            }],
        };
        let run = TestRun {
            changes: None,
            run_id: RunId::new(0),
            received_at: "t".into(),
            meta: RunMeta {
                project: "web".into(),
                branch: Some("main".into()),
                commit: None,
                build_url: None,
                environment: None,
                pipeline: None,
            },
            summary: report.summary(),
            report,
        };
        let v = run_completed(&run, "/v1/runs/x", "now");
        let data = &v["data"];
        assert_eq!(data["failures"].as_array().unwrap().len(), MAX_FAILURES);
        assert_eq!(data["failures"][0]["name"], "t0");
        assert_eq!(data["failures_omitted"], 10_000 - MAX_FAILURES as u64);
        assert_eq!(data["outcome"], "failed");
        assert_eq!(data["summary"]["failed"], 10_000);
        assert!(serde_json::to_vec(&v).unwrap().len() < 300_000);
    }

    #[test]
    fn a_pipeline_says_what_it_is() {
        let run = |pipeline: Option<PipelineRef>| TestRun {
            changes: None,
            run_id: RunId::new(0),
            received_at: "t".into(),
            meta: RunMeta {
                project: "web".into(),
                branch: None,
                commit: None,
                build_url: None,
                environment: None,
                pipeline,
            },
            summary: Summary::default(),
            report: Report {
                format: Format::Junit,
                tool: None,
                duration_ms: None,
                suites: vec![],
            },
        };
        let merged = |n| PipelineRef {
            id: "gh-1".into(),
            shard: None,
            attempt: 2,
            completion: Some(n),
        };
        let first = run_completed(&run(Some(merged(1))), "/x", "now");
        assert_eq!(first["type"], "pipeline.completed");
        assert_eq!(first["data"]["pipeline"]["completion"], 1);
        assert_eq!(
            run_completed(&run(Some(merged(2))), "/x", "now")["type"],
            "pipeline.updated"
        );
        let part = PipelineRef {
            id: "gh-1".into(),
            shard: Some(Shard { index: 2, total: 4 }),
            attempt: 1,
            completion: None,
        };
        let p = run_completed(&run(Some(part)), "/x", "now");
        assert_eq!(p["type"], "run.completed");
        assert_eq!(p["data"]["pipeline"]["shard"]["index"], 2);
        let plain = run_completed(&run(None), "/x", "now");
        assert!(
            plain["data"].get("pipeline").is_none(),
            "a plain run's event is as before"
        );
    }
}
