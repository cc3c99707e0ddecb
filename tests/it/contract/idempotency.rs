//! IdempotencyStore contract: claims with leases, completion, expiry, release; exactly one
//! winner among concurrent claimers. Time is passed in, so no test waits.

use super::Fixture;
use std::sync::Arc;
use testrelay_domain::ports::{Claim, IdempotencyStore};

type Port = Arc<dyn IdempotencyStore>;

async fn embedded_port() -> Fixture<Port> {
    super::sqlite(|s| Arc::new(s) as Port)
}

async fn aws_port(engine: testrelay_tests::aws::Engine) -> Fixture<Port> {
    let sdk = testrelay_tests::aws::sdk_on(engine).await;
    let table = testrelay_tests::aws::state_table(&sdk).await;
    Fixture {
        port: Arc::new(testrelay_aws::DynamoIdempotencyStore::new(&sdk, table)),
        _keep: None,
    }
}

const T0: u64 = 1_800_000_000_000;
const LEASE: u64 = 60_000;
const TTL: u64 = 86_400_000;

fn key() -> String {
    testrelay_tests::unique("key")
}

async fn claim_lease_complete(store: &Port) {
    let k = key();
    assert_eq!(
        store
            .claim(&k, "fp1", T0, T0 + LEASE, T0 + TTL)
            .await
            .unwrap(),
        Claim::Acquired { taken_over: false }
    );
    assert_eq!(
        store
            .claim(&k, "fp1", T0 + 1, T0 + 1 + LEASE, T0 + TTL)
            .await
            .unwrap(),
        Claim::InProgress {
            fingerprint: "fp1".into()
        },
        "a live lease blocks"
    );
    assert_eq!(
        store
            .claim(&k, "fp2", T0 + LEASE, T0 + 2 * LEASE, T0 + TTL)
            .await
            .unwrap(),
        Claim::Acquired { taken_over: true },
        "an expired lease (crashed holder) is taken over, and says so"
    );
    store
        .complete(&k, "fp2", r#"{"run_id":"x"}"#, T0 + TTL)
        .await
        .unwrap();
    assert_eq!(
        store
            .claim(&k, "fp3", T0 + 5 * LEASE, T0 + 6 * LEASE, T0 + TTL)
            .await
            .unwrap(),
        Claim::Completed {
            fingerprint: "fp2".into(),
            response: r#"{"run_id":"x"}"#.into()
        }
    );
}

async fn expiry_is_checked_on_read(store: &Port) {
    let k = key();
    store
        .claim(&k, "fp", T0, T0 + LEASE, T0 + TTL)
        .await
        .unwrap();
    store.complete(&k, "fp", "r", T0 + TTL).await.unwrap();
    // DynamoDB deletes expired items late (moto never does): the claim must not care.
    assert_eq!(
        store
            .claim(&k, "fp", T0 + TTL, T0 + TTL + LEASE, T0 + 2 * TTL)
            .await
            .unwrap(),
        Claim::Acquired { taken_over: false }
    );
}

async fn release_drops_only_in_progress(store: &Port) {
    let k = key();
    store
        .claim(&k, "fp", T0, T0 + LEASE, T0 + TTL)
        .await
        .unwrap();
    store.release(&k).await.unwrap();
    assert_eq!(
        store
            .claim(&k, "fp", T0 + 1, T0 + LEASE, T0 + TTL)
            .await
            .unwrap(),
        Claim::Acquired { taken_over: false }
    );
    store.complete(&k, "fp", "done", T0 + TTL).await.unwrap();
    store.release(&k).await.unwrap();
    assert!(matches!(
        store
            .claim(&k, "fp", T0 + 2, T0 + LEASE, T0 + TTL)
            .await
            .unwrap(),
        Claim::Completed { .. }
    ));
    store.release(&key()).await.unwrap();
}

async fn one_winner_among_concurrent_claims(store: &Port) {
    let k = key();
    let tasks: Vec<_> = (0..16)
        .map(|i| {
            let store = store.clone();
            let k = k.clone();
            tokio::spawn(async move {
                store
                    .claim(&k, &format!("fp{i}"), T0, T0 + LEASE, T0 + TTL)
                    .await
                    .unwrap()
            })
        })
        .collect();
    let mut acquired = 0;
    for t in tasks {
        if matches!(t.await.unwrap(), Claim::Acquired { .. }) {
            acquired += 1;
        }
    }
    assert_eq!(acquired, 1);
}

crate::contract!(lease_and_complete, claim_lease_complete);
crate::contract!(expiry, expiry_is_checked_on_read);
crate::contract!(release, release_drops_only_in_progress);
crate::contract!(concurrent_claims, one_winner_among_concurrent_claims);
