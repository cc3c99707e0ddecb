//! StateStore contract: versioned documents with conditional writes, and the shared circuit
//! breaker built on it, hammered from 32 tasks.

use super::Fixture;
use std::sync::Arc;
use std::time::Duration;
use testrelay_domain::delivery::breaker::{Admission, BreakerConfig, Phase, Signal};
use testrelay_domain::delivery::breakers::Breakers;
use testrelay_domain::health::metrics::MemoryMetrics;
use testrelay_domain::ports::{ManualClock, StateStore};

type Port = Arc<dyn StateStore>;

async fn embedded_port() -> Fixture<Port> {
    super::sqlite(|s| Arc::new(s) as Port)
}

async fn aws_port(engine: testrelay_tests::aws::Engine) -> Fixture<Port> {
    let sdk = testrelay_tests::aws::sdk_on(engine).await;
    let table = testrelay_tests::aws::state_table(&sdk).await;
    Fixture {
        port: Arc::new(testrelay_aws::DynamoStateStore::new(&sdk, table)),
        _keep: None,
    }
}

async fn versions_guard_every_write(store: &Port) {
    let k = testrelay_tests::unique("doc");
    assert_eq!(store.load(&k).await.unwrap(), None);
    assert!(store.save(&k, "v1", None).await.unwrap());
    assert!(
        !store.save(&k, "again", None).await.unwrap(),
        "create only once"
    );
    let v = store.load(&k).await.unwrap().unwrap();
    assert_eq!((v.version, v.value.as_str()), (1, "v1"));
    assert!(store.save(&k, "v2", Some(1)).await.unwrap());
    assert!(
        !store.save(&k, "stale", Some(1)).await.unwrap(),
        "a stale version loses"
    );
    let v = store.load(&k).await.unwrap().unwrap();
    assert_eq!((v.version, v.value.as_str()), (2, "v2"));
}

async fn concurrent_increments_lose_nothing(store: &Port) {
    let k = testrelay_tests::unique("counter");
    store.save(&k, "0", None).await.unwrap();
    let tasks: Vec<_> = (0..16)
        .map(|_| {
            let (store, k) = (store.clone(), k.clone());
            tokio::spawn(async move {
                loop {
                    let v = store.load(&k).await.unwrap().unwrap();
                    let n: u64 = v.value.parse().unwrap();
                    if store
                        .save(&k, &(n + 1).to_string(), Some(v.version))
                        .await
                        .unwrap()
                    {
                        return;
                    }
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(store.load(&k).await.unwrap().unwrap().value, "16");
}

const T0: u64 = 1_800_000_000_000;

/// 32 tasks, one breaker: failures open it exactly once, and after the cool-down exactly one
/// of 32 concurrent deliveries is granted the HALF_OPEN probe.
async fn one_probe_among_32(store: &Port) {
    let clock = Arc::new(ManualClock::new(T0));
    let metrics = Arc::new(MemoryMetrics::default());
    let breakers = Arc::new(Breakers::new(store.clone(), clock.clone(), metrics.clone()));
    let target = testrelay_tests::unique("webhook:hooks.example.com");
    let cfg = BreakerConfig::default();

    let failures: Vec<_> = (0..32)
        .map(|_| {
            let (b, t, c) = (breakers.clone(), target.clone(), cfg.clone());
            tokio::spawn(async move { b.record(&t, &c, Signal::Failure, false).await })
        })
        .collect();
    for f in failures {
        f.await.unwrap();
    }
    let (state, _) = breakers.load(&target, &cfg).await.unwrap();
    assert_eq!(state.phase, Phase::Open);
    assert_eq!(
        metrics.get("BreakerTransition", &[("Target", &target), ("To", "OPEN")]),
        1
    );

    let during = breakers.admit(&target, &cfg).await;
    assert_eq!(
        during,
        Admission::Reject {
            retry_at_ms: state.open_until_ms
        }
    );

    clock.advance(Duration::from_secs(30));
    let admissions: Vec<_> = (0..32)
        .map(|_| {
            let (b, t, c) = (breakers.clone(), target.clone(), cfg.clone());
            tokio::spawn(async move { b.admit(&t, &c).await })
        })
        .collect();
    let mut probes = 0;
    for a in admissions {
        match a.await.unwrap() {
            Admission::Probe => probes += 1,
            Admission::Reject { .. } => {}
            Admission::Allow => panic!("HALF_OPEN let a non-probe through"),
        }
    }
    assert_eq!(probes, 1, "exactly one probe across all instances");

    breakers.record(&target, &cfg, Signal::Success, true).await;
    let (state, _) = breakers.load(&target, &cfg).await.unwrap();
    assert_eq!(state.phase, Phase::Closed);
    assert_eq!(breakers.admit(&target, &cfg).await, Admission::Allow);
}

crate::contract!(versioned_writes, versions_guard_every_write);
crate::contract!(concurrent_writes, concurrent_increments_lose_nothing);
crate::contract!(breaker_under_contention, one_probe_among_32);
