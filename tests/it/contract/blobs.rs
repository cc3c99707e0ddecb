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

crate::contract!(roundtrip_bytes, roundtrip);
crate::contract!(missing_key, missing_is_none);
crate::contract!(overwrite, put_replaces);
