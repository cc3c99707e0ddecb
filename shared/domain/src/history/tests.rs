use super::classify::{Class, Inputs, classify};
use super::snapshot::{Entry, Outcome, Snapshot};
use crate::config::routes::{On, When};
use crate::ids::RunId;
use crate::report::model::{RunMeta, RunOutcome, Status};
use std::collections::HashSet;

fn entry(n: u64, commit: &str) -> Entry {
    Entry {
        key: format!("run:{n}"),
        run_id: RunId::derived(&n.to_be_bytes()),
        commit: Some(commit.into()),
        at: format!("2026-11-28T10:{:02}:00.000Z", n % 60),
        total: 1,
        failed: 0,
    }
}

fn outcome(name: &'static str, status: Status) -> Outcome<'static> {
    Outcome {
        id: super::identity::id_of("unit", None, name),
        suite: "unit",
        classname: None,
        name,
        status,
    }
}

#[test]
fn the_window_slides_and_tests_gone_from_it_are_dropped() {
    let mut s = Snapshot::new("main");
    s.apply(entry(0, "c0"), &[outcome("old", Status::Passed)], 50);
    for n in 1..=60 {
        s.apply(entry(n, "c"), &[outcome("kept", Status::Passed)], 50);
    }
    assert_eq!(s.pipelines.len(), 50);
    assert_eq!(s.pipelines[0].key, "run:11");
    let kept = &s.tests[&super::identity::id_of("unit", None, "kept")];
    assert_eq!(kept.o, "P".repeat(50));
    assert_eq!(s.tests.len(), 1, "`old` ran only before the window");
}

#[test]
fn recording_a_run_again_replaces_its_entry() {
    let mut s = Snapshot::new("main");
    s.apply(entry(1, "c1"), &[outcome("a", Status::Passed)], 50);
    s.apply(entry(2, "c2"), &[outcome("a", Status::Failed)], 50);
    let once = s.clone();
    s.apply(entry(2, "c2"), &[outcome("a", Status::Failed)], 50);
    assert_eq!(s, once, "the same entry twice is recorded once");
    // A pipeline completing again with another result replaces its column.
    s.apply(entry(2, "c2"), &[outcome("a", Status::Passed)], 50);
    assert_eq!(s.pipelines.len(), 2);
    let a = &s.tests[&super::identity::id_of("unit", None, "a")];
    assert_eq!(a.o, "PP");
    assert_eq!(s.marks.len(), 1, "only the marks tests refer to are kept");
    assert!(a.failing_since.is_none());
    assert_eq!(s.mark(a.last_passed).unwrap().commit.as_deref(), Some("c2"));
    let bytes = s.encode();
    assert_eq!(Snapshot::decode(&bytes).unwrap(), s);
    assert!(Snapshot::decode(b"not gzip").is_err());
}

#[test]
fn a_test_flipping_often_is_flaky_not_new() {
    let mut s = Snapshot::new("main");
    for n in 0..12 {
        let status = if n % 2 == 0 {
            Status::Passed
        } else {
            Status::Failed
        };
        s.apply(
            entry(n, &format!("c{n}")),
            &[outcome("wobbly", status), outcome("steady", Status::Passed)],
            50,
        );
    }
    let now = [
        outcome("wobbly", Status::Failed),
        outcome("steady", Status::Failed),
    ];
    let changes = classify(&Inputs {
        key: "run:99",
        commit: Some("c99"),
        tests: &now,
        branch: Some(&s),
        base: Some(super::classify::BaseSide {
            snapshot: &s,
            index: 11,
        }),
        default_branch: None,
        quarantined: &HashSet::new(),
        flaky_flip_rate: 0.3,
    });
    let class = |name: &str| {
        changes
            .tests
            .iter()
            .find(|t| t.name == name)
            .map(|t| (t.class, t.why.clone()))
            .unwrap()
    };
    assert_eq!(class("steady"), (Class::New, None));
    let (c, why) = class("wobbly");
    assert_eq!(c, Class::Flaky);
    assert!(
        why.unwrap()
            .starts_with("flips between passing and failing")
    );
    assert_eq!(changes.tests[0].name, "steady", "new failures first");
    assert_eq!((changes.counts.new, changes.counts.flaky), (1, 1));
}

#[test]
fn shortened_changes_stay_small() {
    let long = "x".repeat(10_000);
    let tests: Vec<Outcome> = (0..200)
        .map(|_| Outcome {
            id: "0".repeat(16),
            suite: "unit",
            classname: None,
            name: &long,
            status: Status::Failed,
        })
        .collect();
    let c = classify(&Inputs {
        key: "run:1",
        commit: None,
        tests: &tests,
        branch: None,
        base: None,
        default_branch: None,
        quarantined: &HashSet::new(),
        flaky_flip_rate: 0.3,
    });
    let short = c.shortened(50);
    assert_eq!((short.tests.len(), short.omitted), (50, 150));
    assert!(serde_json::to_string(&short).unwrap().len() < 30_000);
}

#[test]
fn on_rules_act_on_what_changed() {
    let meta = RunMeta {
        project: "web".into(),
        branch: Some("main".into()),
        commit: None,
        build_url: None,
        environment: None,
        pipeline: None,
    };
    let with =
        |json: serde_json::Value| -> super::Changes { serde_json::from_value(json).unwrap() };
    let base = |outcome: &str| serde_json::json!({"branch": "main", "run_id": RunId::derived(b"b"), "at": "t", "outcome": outcome});
    let quiet = with(
        serde_json::json!({"base": base("failed"), "counts": {"new": 0, "still_failing": 3, "fixed": 0, "flaky": 0, "quarantined": 0, "failing": 3}, "tests": []}),
    );
    let broke = with(
        serde_json::json!({"base": base("passed"), "counts": {"new": 1, "still_failing": 0, "fixed": 0, "flaky": 0, "quarantined": 0, "failing": 1}, "tests": []}),
    );
    let recovered = with(
        serde_json::json!({"base": base("failed"), "counts": {"new": 0, "still_failing": 0, "fixed": 3, "flaky": 0, "quarantined": 0, "failing": 0}, "tests": []}),
    );
    let rule = |on| When {
        on,
        ..Default::default()
    };
    let skip =
        |on, outcome, c: &super::Changes| rule(on).skip_reason(&meta, Some(outcome), Some(c));
    assert!(
        skip(On::Change, RunOutcome::Failed, &quiet).is_some(),
        "still failing is no change"
    );
    assert!(skip(On::Change, RunOutcome::Failed, &broke).is_none());
    assert!(skip(On::Change, RunOutcome::Passed, &recovered).is_none());
    assert!(skip(On::NewFailures, RunOutcome::Failed, &quiet).is_some());
    assert!(skip(On::NewFailures, RunOutcome::Failed, &broke).is_none());
    assert!(skip(On::Failure, RunOutcome::Passed, &recovered).is_some());
    assert!(skip(On::Always, RunOutcome::Passed, &recovered).is_none());
    assert_eq!(
        rule(On::Change).skip_reason(&meta, None, None).as_deref(),
        Some("on = change: decided on the pipeline's merged result"),
        "a pipeline's part"
    );
}

#[test]
fn the_least_recently_seen_tests_go_first_and_encoding_is_stable() {
    let mut s = Snapshot::new("main");
    s.apply(entry(1, "c1"), &[outcome("old", Status::Passed)], 50);
    s.apply(
        entry(2, "c2"),
        &[
            outcome("mid", Status::Passed),
            outcome("new", Status::Failed),
        ],
        50,
    );
    s.apply(entry(3, "c3"), &[outcome("new", Status::Failed)], 50);
    s.prune(2);
    let names: Vec<&str> = s.tests.values().map(|t| t.name.as_str()).collect();
    assert_eq!(names.len(), 2);
    assert!(!names.contains(&"old"), "{names:?}");
    // The same history always encodes to the same bytes (a redone update writes nothing).
    let bytes = s.encode();
    assert_eq!(Snapshot::decode(&bytes).unwrap().encode(), bytes);
    let long = "n".repeat(5000);
    let mut big = Snapshot::new("main");
    big.apply(
        entry(1, "c"),
        &[Outcome {
            id: "1".repeat(16),
            suite: "unit",
            classname: None,
            name: &long,
            status: Status::Passed,
        }],
        50,
    );
    assert!(
        big.tests
            .values()
            .all(|t| t.name.len() <= super::snapshot::MAX_NAME)
    );
}
