//! RunStore contract: DynamoDB and SQLite hold runs to the same rules.

use super::Fixture;
use std::sync::Arc;
use testrelay_domain::config::ConnectorKind;
use testrelay_domain::ids::{ConnectorName, RunId};
use testrelay_domain::ports::{
    Attempt, Created, DeliveryRecord, DeliveryState, DeliveryUpdate, ErrorClass, Redrive,
    RunRecord, RunStore,
};
use testrelay_domain::report::model::{Format, RunMeta, Summary};

type Port = Arc<dyn RunStore>;

async fn embedded_port() -> Fixture<Port> {
    super::sqlite(|s| Arc::new(s) as Port)
}

async fn aws_port(engine: testrelay_tests::aws::Engine) -> Fixture<Port> {
    let sdk = testrelay_tests::aws::sdk_on(engine).await;
    let table = testrelay_tests::aws::runs_table(&sdk).await;
    Fixture {
        port: Arc::new(testrelay_aws::DynamoRunStore::new(&sdk, table)),
        _keep: None,
    }
}

/// The run's (first) delivery as stored now.
async fn stored(store: &Port, run: &RunRecord) -> DeliveryRecord {
    store
        .get_run(&run.run_id)
        .await
        .unwrap()
        .unwrap()
        .deliveries[0]
        .clone()
}

fn name(s: &str) -> ConnectorName {
    ConnectorName::parse(s).unwrap()
}

fn record(connectors: &[&str]) -> RunRecord {
    RunRecord {
        skipped: vec![],
        // The record carries the run's classification (shortened): kept as it was written.
        changes: Some(serde_json::from_value(serde_json::json!({
            "base": {"branch": "main", "run_id": "01KAB0000000000000000000AA", "commit": "abc000",
                     "at": "2026-11-21T10:00:00.000Z", "outcome": "passed"},
            "counts": {"new": 1, "still_failing": 0, "fixed": 0, "flaky": 0, "quarantined": 0, "failing": 1},
            "tests": [{"id": "0123456789abcdef", "class": "new", "suite": "unit",
                       "classname": "Cart", "name": "adds", "status": "failed"}],
            "omitted": 3
        })).unwrap()),
        run_id: RunId::new(1_700_000_000_000),
        received_at: "2026-11-22T10:00:00.000Z".into(),
        meta: RunMeta {
            project: "web".into(),
            branch: Some("main".into()),
            commit: Some("abc123".into()),
            build_url: None,
            environment: None,
            pipeline: None,
        },
        format: Format::Junit,
        summary: Summary {
            total: 3,
            passed: 2,
            failed: 1,
            ..Summary::default()
        },
        deliveries: connectors
            .iter()
            .map(|c| DeliveryRecord::queued(name(c), ConnectorKind::Webhook))
            .collect(),
    }
}

fn attempt(n: u32, ok: bool) -> Attempt {
    Attempt {
        number: n,
        started_at: "2026-11-22T10:00:01.000Z".into(),
        duration_ms: 12,
        ok,
        status_code: Some(if ok { 200 } else { 503 }),
        error_class: (!ok).then_some(ErrorClass::Transient),
        error: (!ok).then(|| "HTTP 503 Service Unavailable".into()),
    }
}

async fn create_then_get(store: &Port) {
    let run = record(&["zeta", "alpha", "mid"]);
    assert_eq!(store.create_run(&run).await.unwrap(), Created::Created);
    let back = store.get_run(&run.run_id).await.unwrap().unwrap();
    assert_eq!(back, run, "deliveries keep their configured order");
    assert_eq!(store.get_run(&RunId::new(1)).await.unwrap(), None);
}

async fn create_is_conditional(store: &Port) {
    let run = record(&["hook"]);
    store.create_run(&run).await.unwrap();
    store
        .update_delivery(
            &run.run_id,
            &name("hook"),
            &DeliveryUpdate {
                state: DeliveryState::Delivered,
                attempt: Some(attempt(1, true)),
                next_attempt_at: None,
                last_error: None,
                external_ref: Some("ext-1".into()),
                redrive: None,
            },
        )
        .await
        .unwrap();
    let mut again = run.clone();
    again.meta.branch = Some("other".into());
    assert_eq!(
        store.create_run(&again).await.unwrap(),
        Created::AlreadyExists
    );
    let back = store.get_run(&run.run_id).await.unwrap().unwrap();
    assert_eq!(back.meta.branch.as_deref(), Some("main"), "not overwritten");
    assert_eq!(
        back.deliveries[0].state,
        DeliveryState::Delivered,
        "progress kept"
    );
}

async fn updates_follow_the_rules(store: &Port) {
    let run = record(&["hook"]);
    store.create_run(&run).await.unwrap();
    let hook = name("hook");
    store
        .update_delivery(
            &run.run_id,
            &hook,
            &DeliveryUpdate {
                state: DeliveryState::Retrying,
                attempt: Some(attempt(1, false)),
                next_attempt_at: Some("2026-11-22T10:00:06.000Z".into()),
                last_error: Some("HTTP 503 Service Unavailable".into()),
                external_ref: Some("ref-1".into()),
                redrive: None,
            },
        )
        .await
        .unwrap();
    let d = &stored(store, &run).await;
    assert_eq!(d.state, DeliveryState::Retrying);
    assert_eq!(
        d.next_attempt_at.as_deref(),
        Some("2026-11-22T10:00:06.000Z")
    );
    store
        .update_delivery(
            &run.run_id,
            &hook,
            &DeliveryUpdate {
                state: DeliveryState::Delivered,
                attempt: Some(attempt(2, true)),
                next_attempt_at: None,
                last_error: None,
                external_ref: None,
                redrive: None,
            },
        )
        .await
        .unwrap();
    let d = &stored(store, &run).await;
    assert_eq!(d.state, DeliveryState::Delivered);
    assert_eq!(d.attempts, vec![attempt(1, false), attempt(2, true)]);
    assert_eq!(d.next_attempt_at, None, "cleared");
    assert_eq!(d.last_error, None, "cleared");
    assert_eq!(d.external_ref.as_deref(), Some("ref-1"), "kept once set");
    let missing = store
        .update_delivery(
            &run.run_id,
            &name("nope"),
            &DeliveryUpdate {
                state: DeliveryState::Delivered,
                attempt: None,
                next_attempt_at: None,
                last_error: None,
                external_ref: None,
                redrive: None,
            },
        )
        .await;
    assert!(
        missing.is_err(),
        "updating a delivery that does not exist fails"
    );
}

async fn concurrent_appends_lose_nothing(store: &Port) {
    let run = record(&["hook"]);
    store.create_run(&run).await.unwrap();
    let tasks: Vec<_> = (1..=12)
        .map(|n| {
            let store = store.clone();
            let id = run.run_id.clone();
            tokio::spawn(async move {
                store
                    .update_delivery(
                        &id,
                        &name("hook"),
                        &DeliveryUpdate {
                            state: DeliveryState::Retrying,
                            attempt: Some(attempt(n, false)),
                            next_attempt_at: None,
                            last_error: None,
                            external_ref: None,
                            redrive: None,
                        },
                    )
                    .await
                    .unwrap()
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let d = &stored(store, &run).await;
    let mut numbers: Vec<u32> = d.attempts.iter().map(|a| a.number).collect();
    numbers.sort();
    assert_eq!(numbers, (1..=12).collect::<Vec<_>>());
}

async fn delivered_is_final_and_redrive_is_stored(store: &Port) {
    let run = record(&["hook"]);
    store.create_run(&run).await.unwrap();
    let hook = name("hook");
    let mut redriven = DeliveryUpdate::to(DeliveryState::Delivering);
    redriven.redrive = Some(Redrive {
        generation: 2,
        redrive_from: 3,
    });
    store
        .update_delivery(&run.run_id, &hook, &redriven)
        .await
        .unwrap();
    let d = &stored(store, &run).await;
    assert_eq!((d.generation, d.redrive_from), (2, 3));
    let mut done = DeliveryUpdate::to(DeliveryState::Delivered);
    done.attempt = Some(attempt(1, true));
    store
        .update_delivery(&run.run_id, &hook, &done)
        .await
        .unwrap();
    let mut late = DeliveryUpdate::to(DeliveryState::Retrying);
    late.attempt = Some(attempt(2, false));
    store
        .update_delivery(&run.run_id, &hook, &late)
        .await
        .expect("a late update of a delivered delivery is not an error");
    let d = &stored(store, &run).await;
    assert_eq!(d.state, DeliveryState::Delivered, "delivered is final");
    assert_eq!(d.attempts, vec![attempt(1, true)]);
    assert_eq!((d.generation, d.redrive_from), (2, 3));
}

async fn only_a_redrive_revives_a_dead_letter(store: &Port) {
    let run = record(&["hook"]);
    store.create_run(&run).await.unwrap();
    let hook = name("hook");
    let mut dead = DeliveryUpdate::to(DeliveryState::DeadLettered);
    dead.last_error = Some("HTTP 400 Bad Request".into());
    store
        .update_delivery(&run.run_id, &hook, &dead)
        .await
        .unwrap();
    let stale = DeliveryUpdate::to(DeliveryState::Deferred);
    store
        .update_delivery(&run.run_id, &hook, &stale)
        .await
        .unwrap();
    let d = &stored(store, &run).await;
    assert_eq!(
        d.state,
        DeliveryState::DeadLettered,
        "a stale message cannot revive it"
    );
    assert_eq!(d.last_error.as_deref(), Some("HTTP 400 Bad Request"));
    let mut redriven = DeliveryUpdate::to(DeliveryState::Delivering);
    redriven.redrive = Some(Redrive {
        generation: 1,
        redrive_from: 1,
    });
    store
        .update_delivery(&run.run_id, &hook, &redriven)
        .await
        .unwrap();
    let d = &stored(store, &run).await;
    assert_eq!((d.state, d.generation), (DeliveryState::Delivering, 1));
}

/// A run whose records outgrow one DynamoDB query page (1 MB) still reads back whole, every
/// delivery in its place.
async fn a_run_larger_than_a_query_page_reads_back_whole(store: &Port) {
    let names: Vec<String> = (0..14).map(|i| format!("c{i:02}")).collect();
    let run = record(&names.iter().map(String::as_str).collect::<Vec<_>>());
    store.create_run(&run).await.unwrap();
    for (i, n) in names.iter().enumerate() {
        let mut a = attempt(1, false);
        a.error = Some(format!("{i:02}").repeat(40_000));
        store
            .update_delivery(
                &run.run_id,
                &name(n),
                &DeliveryUpdate {
                    attempt: Some(a),
                    ..DeliveryUpdate::to(DeliveryState::Retrying)
                },
            )
            .await
            .unwrap();
    }
    let got = store.get_run(&run.run_id).await.unwrap().unwrap();
    assert_eq!(
        got.deliveries.len(),
        names.len(),
        "every delivery, past 1 MB"
    );
    for (i, d) in got.deliveries.iter().enumerate() {
        assert_eq!(d.connector.as_str(), names[i], "in their order");
        assert_eq!(d.attempts[0].error.as_deref().map(str::len), Some(80_000));
    }
}

crate::contract!(create_and_get, create_then_get);
crate::contract!(
    past_one_page,
    a_run_larger_than_a_query_page_reads_back_whole
);
crate::contract!(dead_letters_stay_dead, only_a_redrive_revives_a_dead_letter);
crate::contract!(delivered_is_final, delivered_is_final_and_redrive_is_stored);
crate::contract!(conditional_create, create_is_conditional);
crate::contract!(delivery_updates, updates_follow_the_rules);
crate::contract!(concurrent_updates, concurrent_appends_lose_nothing);

/// DynamoDB only: with a retention, every item of a run carries a `ttl` (epoch seconds) that
/// far ahead, for the table's TTL to delete the run with its report body.
async fn run_items_carry_their_expiry(engine: testrelay_tests::aws::Engine) {
    let sdk = testrelay_tests::aws::sdk_on(engine).await;
    let table = testrelay_tests::aws::runs_table(&sdk).await;
    let thirty_days = std::time::Duration::from_secs(30 * 24 * 60 * 60);
    let store = testrelay_aws::DynamoRunStore::new(&sdk, table.clone()).with_retention(thirty_days);
    let run = record(&["hook", "chat"]);
    store.create_run(&run).await.unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let items = store
        .client()
        .query()
        .table_name(&table)
        .key_condition_expression("pk = :pk")
        .expression_attribute_values(
            ":pk",
            aws_sdk_dynamodb::types::AttributeValue::S(format!("RUN#{}", run.run_id)),
        )
        .send()
        .await
        .unwrap()
        .items
        .unwrap();
    assert_eq!(items.len(), 3, "the run and its two deliveries");
    for item in &items {
        let ttl: u64 = item["ttl"].as_n().unwrap().parse().unwrap();
        let expected = now + thirty_days.as_secs();
        assert!(
            ttl.abs_diff(expected) <= 60,
            "ttl {ttl}, expected about {expected}"
        );
    }
}

crate::on_engines!(run_items_carry_their_expiry);

/// A delivery added after the run was created (a fallback notice): once, after the run's
/// own, and only to a run that exists.
async fn added_deliveries(store: &std::sync::Arc<dyn RunStore>) {
    let run = record(&["chat", "hook"]);
    store.create_run(&run).await.unwrap();
    let mut notice = DeliveryRecord::queued(name("chat.fallback"), ConnectorKind::Webhook);
    notice.notice_for = Some(name("chat"));
    notice.via = Some(name("hook"));
    assert!(store.add_delivery(&run.run_id, &notice).await.unwrap());
    assert!(
        !store.add_delivery(&run.run_id, &notice).await.unwrap(),
        "once"
    );
    let existing = DeliveryRecord::queued(name("hook"), ConnectorKind::Webhook);
    assert!(
        !store.add_delivery(&run.run_id, &existing).await.unwrap(),
        "not over a delivery"
    );
    let elsewhere = RunId::new(1_700_000_000_001);
    assert!(
        !store.add_delivery(&elsewhere, &notice).await.unwrap(),
        "not to a missing run"
    );
    assert!(store.get_run(&elsewhere).await.unwrap().is_none());
    let got = store.get_run(&run.run_id).await.unwrap().unwrap();
    let names: Vec<&str> = got
        .deliveries
        .iter()
        .map(|d| d.connector.as_str())
        .collect();
    assert_eq!(names, ["chat", "hook", "chat.fallback"]);
    assert_eq!(got.deliveries[2], notice);
    store
        .update_delivery(
            &run.run_id,
            &name("chat.fallback"),
            &DeliveryUpdate::to(DeliveryState::Delivered),
        )
        .await
        .unwrap();
    let got = store.get_run(&run.run_id).await.unwrap().unwrap();
    assert_eq!(got.deliveries[2].state, DeliveryState::Delivered);
    assert_eq!(got.deliveries[2].via.as_ref().unwrap().as_str(), "hook");
}

crate::contract!(add_delivery, added_deliveries);
