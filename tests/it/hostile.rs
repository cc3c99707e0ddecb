//! Hostile and huge reports on the AWS side and under concurrency: every shape of the
//! hostile corpus (`tests/support/hostile.rs`) through the ingest Lambda handler on moto
//! (the same shapes go through a real `testrelay serve` in `shared/cli/tests/hostile.rs`),
//! and the in-flight budget answering 503 with `Retry-After` instead of growing.

use base64::Engine;
use serde_json::Value;
use std::sync::Arc;
use std::time::Duration;
use testrelay_domain::config::ConnectorKind;
use testrelay_domain::ports::{BlobStore, QueueConsumer, StoreError};
use testrelay_tests::hostile::{Expect, shapes};
use testrelay_tests::receiver::Receiver;

/// An API Gateway (HTTP API) event posting `body` as a report, base64 as API Gateway sends
/// binary bodies.
fn event(body: &[u8], gzip: bool, format: Option<&str>) -> String {
    let mut e: Value =
        serde_json::from_str(&testrelay_tests::event("apigw-post-report-gzip.json")).unwrap();
    let query = match format {
        Some(f) => format!("project=web&format={f}"),
        None => "project=web".to_string(),
    };
    e["rawQueryString"] = query.clone().into();
    e["queryStringParameters"] = url_params(&query);
    e["headers"]["authorization"] = format!("Bearer {}", testrelay_tests::local::API_KEY).into();
    if !gzip {
        e["headers"]
            .as_object_mut()
            .unwrap()
            .remove("content-encoding");
    }
    e["body"] = base64::engine::general_purpose::STANDARD
        .encode(body)
        .into();
    e["isBase64Encoded"] = true.into();
    e.to_string()
}

fn url_params(query: &str) -> Value {
    query
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_string(), Value::from(v)))
        .collect::<serde_json::Map<_, _>>()
        .into()
}

#[tokio::test]
async fn every_hostile_shape_through_the_ingest_lambda_handler() {
    let receiver = Receiver::start(200).await;
    let (stack, app) = crate::lambda::app(&receiver).await;
    let mut accepted = 0;
    for shape in shapes() {
        let (status, body) =
            crate::lambda::invoke(&app, &event(&shape.body, shape.gzip, shape.format)).await;
        match shape.expect {
            Expect::Accepted => {
                assert_eq!(status, 202, "{}: {body}", shape.name);
                accepted += 1;
            }
            Expect::Refused(want) => {
                assert_eq!(status, want, "{}: {body}", shape.name);
                assert!(
                    body["type"]
                        .as_str()
                        .is_some_and(|t| t.starts_with("urn:testrelay:problem:")),
                    "{}: {body}",
                    shape.name
                );
            }
        }
    }
    // Refusals stored and enqueued nothing: one run in S3 and one message per acceptance.
    let s3 = aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(&stack.sdk)
            .force_path_style(true)
            .build(),
    );
    let objects = s3
        .list_objects_v2()
        .bucket(&stack.bucket)
        .send()
        .await
        .unwrap();
    assert_eq!(objects.key_count().unwrap_or(0) as usize, accepted);
    let mut messages = 0;
    loop {
        let got = app
            .queue
            .receive(ConnectorKind::Webhook, 10, Duration::from_secs(60))
            .await
            .unwrap();
        if got.is_empty() {
            break;
        }
        messages += got.len();
    }
    assert_eq!(messages, accepted);
}

/// A blob store that holds every `put` until the test lets it go: a request blocked there
/// still holds its in-flight reservation.
struct Gate {
    inner: testrelay_embedded::FileBlobStore,
    entered: tokio::sync::mpsc::UnboundedSender<()>,
    open: tokio::sync::watch::Receiver<bool>,
}

#[async_trait::async_trait]
impl BlobStore for Gate {
    async fn put(&self, key: &str, bytes: bytes::Bytes) -> Result<(), StoreError> {
        let _ = self.entered.send(());
        let mut open = self.open.clone();
        let _ = open.wait_for(|o| *o).await;
        self.inner.put(key, bytes).await
    }
    async fn get(&self, key: &str) -> Result<Option<bytes::Bytes>, StoreError> {
        self.inner.get(key).await
    }
    async fn get_tagged(
        &self,
        key: &str,
    ) -> Result<Option<testrelay_domain::ports::Tagged>, StoreError> {
        self.inner.get_tagged(key).await
    }
    async fn put_if(
        &self,
        key: &str,
        bytes: bytes::Bytes,
        expected: Option<&str>,
    ) -> Result<bool, StoreError> {
        self.inner.put_if(key, bytes, expected).await
    }
}

#[tokio::test]
async fn past_the_inflight_budget_testrelay_answers_503_with_retry_after() {
    use testrelay_domain::ingest::{IngestService, Ports};
    use testrelay_domain::ports::SystemClock;
    let dir = tempfile::tempdir().unwrap();
    let mut config = testrelay_tests::local::config(dir.path(), "http://127.0.0.1:9/unused");
    // Room for one 3 MB report at a time.
    config.server.max_decompressed_bytes = 4 << 20;
    config.server.max_body_bytes = 4 << 20;
    config.server.max_inflight_bytes = 4 << 20;
    config.validate().unwrap();
    let clock = Arc::new(SystemClock);
    let store =
        testrelay_embedded::SqliteStore::open(&dir.path().join("db"), clock.clone()).unwrap();
    let (entered_tx, mut entered) = tokio::sync::mpsc::unbounded_channel();
    let (open_tx, open_rx) = tokio::sync::watch::channel(false);
    let ports = Ports {
        blobs: Arc::new(Gate {
            inner: testrelay_embedded::FileBlobStore::new(dir.path().join("blobs")),
            entered: entered_tx,
            open: open_rx,
        }),
        runs: Arc::new(store.clone()),
        idempotency: Arc::new(store.clone()),
        queue: Arc::new(store.clone()),
        dead_letters: Arc::new(store.clone()),
        state: Arc::new(store.clone()),
        clock,
        metrics: Arc::new(testrelay_domain::health::metrics::MemoryMetrics::default()),
    };
    let ingest = Arc::new(IngestService::new(Arc::new(config), ports));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        axum::serve(listener, testrelay_api::router(ingest))
            .await
            .unwrap()
    });
    let report = testrelay_tests::hostile::honest_junit(25_000);
    assert!(report.len() > 2 << 20 && report.len() < 4 << 20);
    let post = |body: Vec<u8>| {
        let url = format!("{base}/v1/reports?project=web");
        async move {
            reqwest::Client::new()
                .post(url)
                .bearer_auth(testrelay_tests::local::API_KEY)
                .body(body)
                .send()
                .await
                .unwrap()
        }
    };
    // The first report holds its reservation while it is being stored...
    let first = tokio::spawn(post(report.clone()));
    entered
        .recv()
        .await
        .expect("the first report reached the store");
    // ...so the second is refused at once, with when to come back, and stores nothing.
    let refused = post(report.clone()).await;
    assert_eq!(refused.status(), 503);
    assert_eq!(refused.headers()["retry-after"], "2");
    assert_eq!(
        refused.headers()["content-type"],
        "application/problem+json"
    );
    let problem: Value = refused.json().await.unwrap();
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("server.max_inflight_bytes"),
        "{problem}"
    );
    // A request without a valid key is refused before its body is read: 401, not 503.
    let anonymous = reqwest::Client::new()
        .post(format!("{base}/v1/reports?project=web"))
        .body(report.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), 401);
    // A small report still fits beside it.
    let small = post(b"<testsuite><testcase name=\"a\"/></testsuite>".to_vec());
    let small = tokio::spawn(small);
    entered
        .recv()
        .await
        .expect("the small report reached the store");
    open_tx.send(true).unwrap();
    assert_eq!(first.await.unwrap().status(), 202);
    assert_eq!(small.await.unwrap().status(), 202);
    // Released: the second one now goes through.
    assert_eq!(post(report).await.status(), 202);
}

#[tokio::test]
async fn a_chunked_body_without_a_length_is_read_within_the_limits() {
    use lambda_http::tower::ServiceExt;
    let t = testrelay_tests::local::spawn_app().await;
    let request = |chunks: Vec<Vec<u8>>| {
        let stream = futures::stream::iter(
            chunks
                .into_iter()
                .map(|c| Ok::<_, std::io::Error>(bytes::Bytes::from(c))),
        );
        axum::http::Request::post("/v1/reports?project=web")
            .header(
                "authorization",
                format!("Bearer {}", testrelay_tests::local::API_KEY),
            )
            .body(axum::body::Body::from_stream(stream))
            .unwrap()
    };
    let report = testrelay_tests::hostile::honest_junit(500);
    let chunks: Vec<Vec<u8>> = report.chunks(1000).map(<[u8]>::to_vec).collect();
    let res = t.app.router.clone().oneshot(request(chunks)).await.unwrap();
    assert_eq!(res.status(), 202);
    // Past max_body_bytes while streaming: 413 at once, nothing stored.
    let stored = t.stored_blobs();
    let chunk = vec![b' '; 1 << 20];
    let too_many = vec![chunk; t.app.config.server.max_body_bytes / (1 << 20) + 1];
    let res = t
        .app
        .router
        .clone()
        .oneshot(request(too_many))
        .await
        .unwrap();
    assert_eq!(res.status(), 413);
    assert_eq!(t.stored_blobs(), stored);
}
