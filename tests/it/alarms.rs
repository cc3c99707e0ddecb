//! The alarms follow the harm. A 40-minute vendor outage, driven through the delivery and
//! health code on a manual clock, trips the alarms the template sets on testrelay's own
//! metrics at their default thresholds, although the breaker re-opens many times on the way
//! and every retry or deferral is a fresh message; once the vendor is back, both clear.

use std::sync::Arc;
use std::time::Duration;
use testrelay_domain::ports::{DeliveryState, ManualClock, RunStore};
use testrelay_tests::fake_vendor::{FakeVendor, Plan};

const T0: u64 = 1_800_000_000_000;
const MINUTE: Duration = Duration::from_secs(60);
const OUTAGE_MIN: u64 = 40;
/// infra/template.src.yaml's defaults: `UndeliveredAlarmSeconds` (Maximum of
/// `UndeliveredAge` over 5 minutes) and `BreakerOpenAlarmMinutes` (`BreakersOpenLongest`).
const UNDELIVERED_ALARM_S: f64 = 1800.0;
const BREAKER_OPEN_ALARM_MIN: f64 = 15.0;
/// `HealthCriticalAlarm`: `HealthStatus` (overall) at least this in 2 of 3 periods.
const CRITICAL: f64 = 2.0;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_long_outage_trips_the_alarms_and_recovery_clears_them() {
    let clock = Arc::new(ManualClock::new(T0));
    let vendor = FakeVendor::start(Plan {
        seed: 7,
        server_error: 0,
        throttled: 0,
        slow: 0,
        reset: 0,
        bad_request: 0,
        clock: clock.clone(),
        outage_until_ms: T0 + OUTAGE_MIN * 60_000,
        slow_by: Duration::from_millis(100),
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let mut config = testrelay_tests::local::config(dir.path(), &vendor.url);
    // Its failure makes the whole status CRITICAL (the health alarm's level).
    config.health.critical = vec![testrelay_domain::ids::ConnectorName::parse("hook").unwrap()];
    let (app, ingest) =
        testrelay_tests::local::on_manual_clock(config, dir.path(), clock.clone(), None).await;
    let ids = testrelay_tests::local::submit_runs(ingest, 20).await;

    // A minute at a time for an hour: what is due is delivered (or deferred, or retried),
    // the health check runs every five minutes, and the alarms' metrics are read.
    let (mut undelivered, mut open_longest, mut health) = (Vec::new(), Vec::new(), Vec::new());
    for minute in 0..=60u64 {
        app.dispatch_all_pending().await;
        if minute % 5 == 0 {
            app.health.check().await;
            let longest = app.metrics.gauge_value("BreakersOpenLongest", &[]).unwrap();
            open_longest.push((minute, longest));
            let status = app
                .metrics
                .gauge_value("HealthStatus", &[("Scope", "overall")])
                .unwrap();
            health.push((minute, status));
        }
        let age = app.metrics.gauge_value("UndeliveredAge", &[]);
        undelivered.push((minute, age));
        clock.advance(MINUTE);
    }

    // Then whatever retries are still scheduled come due (their jittered delays may reach
    // past the hour): a bound on rounds, not a wait.
    for round in 0.. {
        assert!(round < 1_000, "not settled");
        app.dispatch_all_pending().await;
        match app.store.next_visible_at().await.unwrap() {
            Some(next) => clock.advance(Duration::from_millis(
                next.saturating_sub(testrelay_domain::ports::Clock::now_ms(clock.as_ref()))
                    .max(1),
            )),
            None => break,
        }
    }
    app.health.check().await;
    undelivered.push((61, app.metrics.gauge_value("UndeliveredAge", &[])));
    open_longest.push((
        61,
        app.metrics.gauge_value("BreakersOpenLongest", &[]).unwrap(),
    ));
    health.push((
        61,
        app.metrics
            .gauge_value("HealthStatus", &[("Scope", "overall")])
            .unwrap(),
    ));

    let openings = app.metrics.get(
        "BreakerTransition",
        &[
            (
                "Target",
                &format!(
                    "webhook:{}",
                    testrelay_connectors::origin(&reqwest::Url::parse(&vendor.url).unwrap())
                ),
            ),
            ("To", "OPEN"),
        ],
    );
    let during = |m: u64| m <= OUTAGE_MIN;
    let tripped = undelivered
        .iter()
        .find(|(m, age)| during(*m) && age.is_some_and(|a| a >= UNDELIVERED_ALARM_S));
    assert!(
        tripped.is_some(),
        "the undelivered-age alarm trips during the outage: {undelivered:?}"
    );
    let breaker_tripped = open_longest
        .iter()
        .find(|(m, longest)| during(*m) && *longest >= BREAKER_OPEN_ALARM_MIN);
    assert!(
        breaker_tripped.is_some() && openings >= 2,
        "the breaker alarm trips though the breaker re-opened {openings} times: {open_longest:?}"
    );
    // The health alarm: CRITICAL (2) in 2 of 3 consecutive five-minute checks.
    let health_tripped = health
        .windows(3)
        .find(|w| during(w[0].0) && w.iter().filter(|(_, s)| *s >= CRITICAL).count() >= 2);
    assert!(
        health_tripped.is_some(),
        "the health alarm trips during the outage: {health:?}"
    );
    // Recovered: deliveries flow, the breaker closed, the metrics back to 0.
    assert_eq!(health.last().unwrap().1, 0.0, "{health:?}");
    let (_, last_age) = undelivered.last().unwrap();
    assert_eq!(*last_age, Some(0.0), "{undelivered:?}");
    assert_eq!(open_longest.last().unwrap().1, 0.0, "{open_longest:?}");
    for id in &ids {
        let run = app.store.get_run(id).await.unwrap().unwrap();
        assert!(
            matches!(
                run.deliveries[0].state,
                DeliveryState::Delivered | DeliveryState::DeadLettered
            ),
            "{id}: settled, not lost: {:?}",
            run.deliveries[0].state
        );
    }
    println!(
        "outage of {OUTAGE_MIN} min: undelivered-age alarm tripped at minute {}, outage alarm at minute {} after {openings} openings, health alarm at minute {}",
        tripped.unwrap().0,
        breaker_tripped.unwrap().0,
        health_tripped.unwrap()[2].0
    );
}
