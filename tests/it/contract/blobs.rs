//! BlobStore contract: S3 and files.

use super::Fixture;
use bytes::Bytes;
use testrelay_domain::ports::BlobStore;

async fn embedded_port() -> Fixture<std::sync::Arc<dyn BlobStore>> {
    let dir = tempfile::tempdir().unwrap();
    Fixture {
        port: std::sync::Arc::new(testrelay_embedded::FileBlobStore::new(dir.path())),
        _keep: Some(dir),
    }
}

async fn aws_port(engine: testrelay_tests::aws::Engine) -> Fixture<std::sync::Arc<dyn BlobStore>> {
    let sdk = testrelay_tests::aws::sdk_on(engine).await;
    let bucket = testrelay_tests::aws::bucket(&sdk).await;
    Fixture {
        port: std::sync::Arc::new(testrelay_aws::S3BlobStore::new(&sdk, bucket)),
        _keep: None,
    }
}

async fn roundtrip(store: &std::sync::Arc<dyn BlobStore>) {
    let data: Vec<u8> = (0..=255u8).cycle().take(300_000).collect();
    store
        .put("runs/01ABC.json", Bytes::from(data.clone()))
        .await
        .unwrap();
    assert_eq!(store.get("runs/01ABC.json").await.unwrap().unwrap(), data);
}

async fn missing_is_none(store: &std::sync::Arc<dyn BlobStore>) {
    assert_eq!(store.get("runs/nothing-here.json").await.unwrap(), None);
}

async fn put_replaces(store: &std::sync::Arc<dyn BlobStore>) {
    store
        .put("runs/x.json", Bytes::from_static(b"first, longer"))
        .await
        .unwrap();
    store
        .put("runs/x.json", Bytes::from_static(b"second"))
        .await
        .unwrap();
    assert_eq!(
        &store.get("runs/x.json").await.unwrap().unwrap()[..],
        b"second"
    );
}

/// A conditional write lands only on the version it read; of writers racing from the same
/// version exactly one wins, and a create lands only where nothing is.
async fn conditional_writes(store: &std::sync::Arc<dyn BlobStore>) {
    let key = "history/web/main.json.gz";
    assert!(store.get_tagged(key).await.unwrap().is_none());
    assert!(
        store
            .put_if(key, Bytes::from_static(b"v1"), None)
            .await
            .unwrap()
    );
    assert!(
        !store
            .put_if(key, Bytes::from_static(b"again"), None)
            .await
            .unwrap(),
        "a create where a blob exists must fail"
    );
    let v1 = store.get_tagged(key).await.unwrap().unwrap();
    assert_eq!(&v1.bytes[..], b"v1");
    let racers = (0..8).map(|i| {
        let store = store.clone();
        let tag = v1.tag.clone();
        tokio::spawn(async move {
            store
                .put_if(key, Bytes::from(format!("v2 by {i}")), Some(&tag))
                .await
                .unwrap()
        })
    });
    let won: Vec<bool> = futures::future::join_all(racers)
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
    assert_eq!(won.iter().filter(|w| **w).count(), 1, "{won:?}");
    let v2 = store.get_tagged(key).await.unwrap().unwrap();
    assert!(v2.bytes.starts_with(b"v2 by "));
    assert_ne!(v2.tag, v1.tag);
    assert!(
        !store
            .put_if(key, Bytes::from_static(b"stale"), Some(&v1.tag))
            .await
            .unwrap(),
        "a write from a stale version must fail"
    );
    assert!(
        store
            .put_if(key, Bytes::from_static(b"v3"), Some(&v2.tag))
            .await
            .unwrap()
    );
    assert_eq!(&store.get(key).await.unwrap().unwrap()[..], b"v3");
}

crate::contract!(conditional_write, conditional_writes);
crate::contract!(roundtrip_bytes, roundtrip);
crate::contract!(missing_key, missing_is_none);
crate::contract!(overwrite, put_replaces);
