//! The Lambda functions' handlers driven by the sample events in `events/`, on the AWS
//! adapters against moto and against DynamoDB Local + MiniStack: what the functions do on
//! AWS, short of the runtime API itself.

use lambda_http::request::LambdaRequest;
use lambda_http::tower::Service;
use lambda_http::{Adapter, Context, LambdaEvent};
use serde_json::Value;
use std::time::Duration;
use testrelay_domain::config::{Config, ConnectorKind, hash_api_key};
use testrelay_domain::delivery::retry::RetryPolicy;
use testrelay_domain::ids::RunId;
use testrelay_domain::ports::{BlobStore, DeliveryState, QueueConsumer, RunStore, run_blob_key};
use testrelay_lambda::bootstrap::AwsApp;
use testrelay_tests::aws::{Engine, Stack, put_secret};
use testrelay_tests::local::{ADMIN_KEY, API_KEY};
use testrelay_tests::receiver::Receiver;

const PLACEHOLDER: &str = "00000000000000000000000000";

/// A fresh stack in moto, the receiver's secret in Secrets Manager, and the function's
/// adapters on both, configured the way an operator would.
pub(crate) async fn app(receiver: &Receiver) -> (Stack, AwsApp) {
    app_on(receiver, Engine::Moto).await
}

/// [`app`] on `engine`.
pub(crate) async fn app_on(receiver: &Receiver, engine: Engine) -> (Stack, AwsApp) {
    app_with(receiver, engine, "").await
}

/// [`app_on`] with `extra` appended to its configuration.
pub(crate) async fn app_with(receiver: &Receiver, engine: Engine, extra: &str) -> (Stack, AwsApp) {
    let stack = Stack::create_on(engine).await;
    let secret_name = testrelay_tests::unique("testrelay/team-hook");
    put_secret(&stack.sdk, &secret_name, &receiver.secret_text).await;
    let toml = format!(
        r#"
[network]
allow = ["127.0.0.0/8"]   # the test receiver is on loopback

[[api_keys]]
id = "ci"
sha256 = "{}"

[[api_keys]]
id = "ops"
sha256 = "{}"
admin = true

[projects.web]
connectors = ["team-hook"]

[connectors.team-hook]
kind = "webhook"
url = "{}"
allow_http = true
secret = {{ secret = "{secret_name}" }}
"#,
        hash_api_key(API_KEY),
        hash_api_key(ADMIN_KEY),
        receiver.url()
    ) + extra;
    let config = Config::from_toml(&toml, "test").unwrap();
    let app = AwsApp::new(config, &stack.sdk, stack.resources());
    (stack, app)
}

/// Runs one API Gateway event through the same adapter `lambda_http::run` uses; returns
/// the status and the JSON body of the API Gateway response.
pub(crate) async fn invoke(app: &AwsApp, event: &str) -> (u16, Value) {
    let request: LambdaRequest = serde_json::from_str(event).expect("an API Gateway event");
    let mut adapter = Adapter::from(testrelay_lambda::ingest::router(app).await.unwrap());
    let response = adapter
        .call(LambdaEvent::new(request, Context::default()))
        .await
        .unwrap();
    let response = serde_json::to_value(response).unwrap();
    let status = response["statusCode"].as_u64().unwrap() as u16;
    let body = response["body"].as_str().unwrap_or("null");
    (status, serde_json::from_str(body).unwrap_or(Value::Null))
}

pub(crate) async fn ingest(app: &AwsApp) -> RunId {
    let (status, body) = invoke(app, &testrelay_tests::event("apigw-post-report.json")).await;
    assert_eq!(status, 202, "{body}");
    RunId::parse(body["run_id"].as_str().unwrap()).unwrap()
}

/// The webhook queue's visible messages (hidden for 30 s once read).
async fn queued(app: &AwsApp) -> Vec<testrelay_domain::ports::Received> {
    app.queue
        .receive(ConnectorKind::Webhook, 10, Duration::from_secs(30))
        .await
        .unwrap()
}

async fn ingest_stores_the_run_in_s3_and_dynamodb_and_enqueues_to_sqs(engine: Engine) {
    let receiver = Receiver::start(200).await;
    let (_stack, app) = app_on(&receiver, engine).await;
    let (status, body) = invoke(&app, &testrelay_tests::event("apigw-post-report.json")).await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["summary"]["total"], 3);
    assert_eq!(body["summary"]["failed"], 1);
    let id = RunId::parse(body["run_id"].as_str().unwrap()).unwrap();

    let record = app
        .runs
        .get_run(&id)
        .await
        .unwrap()
        .expect("run record in DynamoDB");
    assert_eq!(record.meta.commit.as_deref(), Some("abc123"));
    assert_eq!(record.deliveries[0].state, DeliveryState::Queued);
    let blob = app
        .blobs
        .get(&run_blob_key(&id))
        .await
        .unwrap()
        .expect("run in S3");
    let run: Value = serde_json::from_slice(&blob).unwrap();
    assert_eq!(
        run["report"]["suites"][0]["cases"][2]["name"],
        "applies a coupon [C1234]"
    );
    let msgs = queued(&app).await;
    assert_eq!(msgs.len(), 1, "one message per connector");
    assert_eq!(msgs[0].message.run_id, id);
    assert_eq!(msgs[0].message.connector.as_str(), "team-hook");
}

async fn ingest_accepts_base64_gzip_bodies_and_serves_status_and_health(engine: Engine) {
    let receiver = Receiver::start(200).await;
    let (_stack, app) = app_on(&receiver, engine).await;
    let (status, body) = invoke(&app, &testrelay_tests::event("apigw-post-report-gzip.json")).await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["summary"]["total"], 2);
    let id = body["run_id"].as_str().unwrap();

    let get = testrelay_tests::event("apigw-get-run.json").replace(PLACEHOLDER, id);
    let (status, run) = invoke(&app, &get).await;
    assert_eq!(status, 200, "{run}");
    assert_eq!(run["meta"]["branch"], "feature/login");
    assert_eq!(run["format"], "ctrf");
    assert_eq!(run["deliveries"][0]["state"], "queued");

    let (status, missing) = invoke(&app, &testrelay_tests::event("apigw-get-run.json")).await;
    assert_eq!(status, 404);
    assert_eq!(missing["type"], "urn:testrelay:problem:not-found");

    let (status, health) = invoke(&app, &testrelay_tests::event("apigw-healthz.json")).await;
    assert_eq!((status, health), (200, serde_json::json!({"status": "ok"})));
}

async fn ingest_rejects_without_writing_to_aws(engine: Engine) {
    let receiver = Receiver::start(200).await;
    let (_stack, app) = app_on(&receiver, engine).await;
    let bad = testrelay_tests::event("apigw-post-report.json").replace("</testsuites>", "");
    let (status, problem) = invoke(&app, &bad).await;
    assert_eq!(status, 400, "{problem}");
    assert!(
        problem["detail"].as_str().unwrap().contains("<testsuites>"),
        "{problem}"
    );
    let unauthorised = testrelay_tests::event("apigw-post-report.json").replace(API_KEY, "nope");
    assert_eq!(invoke(&app, &unauthorised).await.0, 401);
    let msgs = queued(&app).await;
    assert!(msgs.is_empty(), "nothing enqueued");
}

/// The webhook delivery function on `app`, and the sample SQS batch aimed at run `id`.
struct Deliver {
    function: testrelay_lambda::deliver::Deliverer,
    batch: String,
}

impl Deliver {
    async fn new(app: &AwsApp, id: &RunId) -> Deliver {
        let function = testrelay_lambda::deliver::build_with(
            app,
            ConnectorKind::Webhook,
            RetryPolicy::default(),
        )
        .await
        .unwrap();
        let batch =
            testrelay_tests::event("sqs-webhook-batch.json").replace(PLACEHOLDER, id.as_str());
        Deliver { function, batch }
    }

    async fn batch(&self) -> aws_lambda_events::event::sqs::SqsBatchResponse {
        self.function
            .handle_batch(serde_json::from_str(&self.batch).unwrap())
            .await
    }
}

async fn deliver_function_delivers_and_reports_only_bad_records(engine: Engine) {
    let receiver = Receiver::start(200).await;
    let (_stack, app) = app_on(&receiver, engine).await;
    let id = ingest(&app).await;
    let deliver = Deliver::new(&app, &id).await;
    let response = deliver.batch().await;
    let failed: Vec<_> = response
        .batch_item_failures
        .iter()
        .map(|f| f.item_identifier.as_str())
        .collect();
    assert_eq!(
        failed,
        ["2e1424d4-f796-459a-8184-9c92662be6da"],
        "only the unreadable record"
    );

    let events = receiver.verified_events().await;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].1["data"]["run_id"], id.as_str());
    assert_eq!(
        events[0].1["data"]["failures"][0]["message"],
        "expected 90 but was 100"
    );
    let d = &app.runs.get_run(&id).await.unwrap().unwrap().deliveries[0];
    assert_eq!(d.state, DeliveryState::Delivered);
    assert_eq!(d.attempts.len(), 1);

    // SQS delivers at least once: the same batch again changes nothing.
    let again = deliver.batch().await;
    assert_eq!(again.batch_item_failures.len(), 1);
    assert_eq!(receiver.count().await, 1);
}

async fn deliver_function_returns_a_failing_target_to_the_queue(engine: Engine) {
    let receiver = Receiver::start(503).await;
    let (stack, app) = app_on(&receiver, engine).await;
    let id = ingest(&app).await;
    let deliver = Deliver::new(&app, &id).await;
    let response = deliver.batch().await;
    assert_eq!(
        response.batch_item_failures.len(),
        1,
        "the failing delivery is requeued as a fresh delayed message, not returned"
    );
    let attrs = aws_sdk_sqs::Client::new(&stack.sdk)
        .get_queue_attributes()
        .queue_url(&stack.queue_url)
        .attribute_names(aws_sdk_sqs::types::QueueAttributeName::All)
        .send()
        .await
        .unwrap()
        .attributes
        .unwrap();
    let count = |n: aws_sdk_sqs::types::QueueAttributeName| attrs[&n].parse::<u32>().unwrap();
    use aws_sdk_sqs::types::QueueAttributeName as Q;
    assert_eq!(
        count(Q::ApproximateNumberOfMessages) + count(Q::ApproximateNumberOfMessagesDelayed),
        2,
        "the original (ingest) message and the delayed retry"
    );
    let d = &app.runs.get_run(&id).await.unwrap().unwrap().deliveries[0];
    assert_eq!(d.state, DeliveryState::Retrying);
    assert_eq!(d.attempts[0].status_code, Some(503));
    assert!(d.next_attempt_at.is_some());
}

async fn a_dead_letter_in_the_sqs_dlq_is_redriven_through_the_api(engine: Engine) {
    let receiver = Receiver::start(400).await;
    let (stack, app) = app_on(&receiver, engine).await;
    let id = ingest(&app).await;
    let deliver = Deliver::new(&app, &id).await;
    deliver.batch().await;
    let d = &app.runs.get_run(&id).await.unwrap().unwrap().deliveries[0];
    assert_eq!(d.state, DeliveryState::DeadLettered);
    assert_eq!(d.last_error.as_deref(), Some("HTTP 400 Bad Request"));

    let redrive = testrelay_tests::event("apigw-post-report.json")
        .replace("\"/v1/reports\"", "\"/v1/deadletters/redrive\"")
        .replace(
            "project=web&branch=main&commit=abc123",
            "kind=webhook&max=10",
        )
        .replace(API_KEY, ADMIN_KEY);
    let (status, body) = invoke(&app, &redrive).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["redriven"], 1);
    let dlq = aws_sdk_sqs::Client::new(&stack.sdk)
        .receive_message()
        .queue_url(&stack.dlq_url)
        .send()
        .await
        .unwrap();
    assert!(
        dlq.messages.unwrap_or_default().is_empty(),
        "moved out of the DLQ"
    );
    // The original ingest message and the redriven one (generation 1) are on the queue.
    let msgs = queued(&app).await;
    let generations: Vec<u32> = msgs.iter().map(|m| m.message.generation).collect();
    assert!(generations.contains(&1), "{generations:?}");
}

crate::on_engines!(ingest_stores_the_run_in_s3_and_dynamodb_and_enqueues_to_sqs);
crate::on_engines!(ingest_accepts_base64_gzip_bodies_and_serves_status_and_health);
crate::on_engines!(ingest_rejects_without_writing_to_aws);
crate::on_engines!(deliver_function_delivers_and_reports_only_bad_records);
crate::on_engines!(deliver_function_returns_a_failing_target_to_the_queue);
crate::on_engines!(a_dead_letter_in_the_sqs_dlq_is_redriven_through_the_api);

/// A delivery function builds only its kind's connectors and reads only their secrets (its
/// IAM policy allows no other): another kind's missing secret cannot stop it.
async fn a_delivery_function_reads_only_its_kinds_secrets(engine: Engine) {
    let receiver = Receiver::start(200).await;
    let missing = testrelay_tests::unique("testrelay/testrail/missing");
    let extra = format!(
        r#"
[connectors.qa]
kind = "testrail"
url = "https://example.testrail.io"
user = "ci@example.com"
api_key = {{ secret = "{missing}" }}
project_id = 1
"#
    );
    let (_stack, app) = app_with(&receiver, engine, &extra).await;
    let webhook =
        testrelay_lambda::deliver::build_with(&app, ConnectorKind::Webhook, RetryPolicy::default())
            .await;
    assert!(webhook.is_ok(), "deliver-webhook starts");
    let testrail = testrelay_lambda::deliver::build_with(
        &app,
        ConnectorKind::Testrail,
        RetryPolicy::default(),
    )
    .await;
    let error = testrail
        .err()
        .expect("deliver-testrail cannot start")
        .to_string();
    assert!(
        error.contains("connectors.qa") && error.contains(&missing),
        "{error}"
    );
}

crate::on_engines!(a_delivery_function_reads_only_its_kinds_secrets);

/// A target slower than the invocation has left: the record is stopped before the deadline
/// (its call dropped) and listed for retry, and the batch answers in time; nothing is
/// recorded as delivered.
async fn a_batch_answers_before_the_invocations_deadline(engine: Engine) {
    use wiremock::{Mock, ResponseTemplate, matchers::method};
    let receiver = Receiver::start(200).await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_delay(Duration::from_secs(20)))
        .with_priority(1)
        .mount(&receiver.server)
        .await;
    let (_stack, app) = app_on(&receiver, engine).await;
    let id = ingest(&app).await;
    let deliver = Deliver::new(&app, &id).await;
    let budget = testrelay_lambda::deliver::DEADLINE_MARGIN + Duration::from_millis(500);
    let started = std::time::Instant::now();
    let response = deliver
        .function
        .handle_batch_within(serde_json::from_str(&deliver.batch).unwrap(), budget)
        .await;
    assert!(started.elapsed() < budget, "answered within the invocation");
    assert_eq!(
        response.batch_item_failures.len(),
        2,
        "the unreadable record and the one stopped at the deadline"
    );
    let d = &app.runs.get_run(&id).await.unwrap().unwrap().deliveries[0];
    assert_ne!(d.state, DeliveryState::Delivered);
}

crate::on_engines!(a_batch_answers_before_the_invocations_deadline);

/// A real deployment's configuration: 20 connectors, 50 projects, past 10 KB (Lambda's 4 KB
/// of environment could not carry it).
fn large_config() -> String {
    let mut toml = format!(
        "[[api_keys]]\nid = \"ci\"\nsha256 = \"{}\"\n\n[network]\nallow = [\"10.0.0.0/8\"]\n",
        hash_api_key(API_KEY)
    );
    for i in 0..20 {
        if i % 2 == 0 {
            toml += &format!(
                "\n# Team {i:02}'s build dashboard: every run, signed.\n[connectors.hook-{i:02}]\nkind = \"webhook\"\nurl = \"https://hooks-{i:02}.example.com/testrelay/runs\"\nsecret = {{ secret = \"testrelay/prod/webhook/hook-{i:02}\" }}\ntimeout_ms = 5000\nrate_limit = {{ per_minute = 600, burst = 20 }}\n"
            );
        } else {
            toml += &format!(
                "\n# Team {i:02}'s TestRail project (results only for cases with ids).\n[connectors.qa-{i:02}]\nkind = \"testrail\"\nurl = \"https://team-{i:02}.testrail.io\"\nuser = \"ci-{i:02}@example.com\"\napi_key = {{ secret = \"testrelay/prod/testrail/qa-{i:02}\" }}\nproject_id = {i}\ntimeout_ms = 15000\nrate_limit = {{ per_minute = 90, burst = 5 }}\n"
            );
        }
    }
    for p in 0..50 {
        let (a, b) = ((p * 2) % 20, (p * 2 + 1) % 20);
        toml += &format!(
            "\n# service-{p:02}: owned by team {a:02}, cases in team {b:02}'s TestRail\n[projects.service-{p:02}]\nconnectors = [\"hook-{a:02}\", \"qa-{b:02}\"]\n"
        );
    }
    toml
}

/// The configuration from an S3 object (the template's ConfigBucket / ConfigKey): one of
/// any size loads; a missing, empty or request-less one stops the cold start saying what to
/// set, instead of serving 401s.
async fn the_configuration_comes_from_s3_at_any_size(engine: Engine) {
    use testrelay_lambda::config_source::ConfigSource;
    let stack = Stack::create_on(engine).await;
    let put = |key: &'static str, text: String| {
        let blobs = testrelay_aws::S3BlobStore::new(&stack.sdk, stack.bucket.clone());
        async move { blobs.put(key, bytes::Bytes::from(text)).await.unwrap() }
    };
    let at = |key: &str| ConfigSource::S3 {
        bucket: stack.bucket.clone(),
        key: key.into(),
    };
    let large = large_config();
    assert!(large.len() > 10 * 1024, "{} bytes", large.len());
    put("config/prod.toml", large).await;
    let config = at("config/prod.toml").load(&stack.sdk).await.unwrap();
    assert_eq!((config.connectors.len(), config.projects.len()), (20, 50));

    let missing = at("config/none.toml").load(&stack.sdk).await.unwrap_err();
    assert!(
        missing.contains("no configuration at s3://") && missing.contains("ConfigBucket"),
        "{missing}"
    );
    put("config/empty.toml", " \n".into()).await;
    let empty = at("config/empty.toml").load(&stack.sdk).await.unwrap_err();
    assert!(empty.contains("is empty"), "{empty}");
    put("config/keyless.toml", "[projects.web]\n".into()).await;
    let keyless = at("config/keyless.toml")
        .load(&stack.sdk)
        .await
        .unwrap_err();
    assert!(keyless.contains("admits no request"), "{keyless}");
}

crate::on_engines!(the_configuration_comes_from_s3_at_any_size);

/// The largest body a Lambda invocation can carry base64-encoded is testrelay's limit there:
/// one byte more gets testrelay's own 413 problem+json (a larger one never reaches the
/// function: API Gateway answers), and nothing is stored.
async fn on_lambda_the_body_limit_is_what_an_invocation_carries(engine: Engine) {
    use base64::Engine as _;
    let receiver = Receiver::start(200).await;
    let (_stack, app) = app_on(&receiver, engine).await;
    assert!(app.config.server.max_body_bytes > testrelay_lambda::ingest::LAMBDA_MAX_BODY_BYTES);
    let body = vec![b'x'; testrelay_lambda::ingest::LAMBDA_MAX_BODY_BYTES + 1];
    let mut event: Value =
        serde_json::from_str(&testrelay_tests::event("apigw-post-report-gzip.json")).unwrap();
    event["body"] = base64::engine::general_purpose::STANDARD
        .encode(&body)
        .into();
    event["headers"]["content-length"] = body.len().to_string().into();
    let (status, problem) = invoke(&app, &event.to_string()).await;
    assert_eq!(status, 413, "{problem}");
    assert!(
        problem["detail"].as_str().unwrap().contains("4194304"),
        "{problem}"
    );
    let msgs = queued(&app).await;
    assert!(msgs.is_empty(), "nothing enqueued");
}

crate::on_engines!(on_lambda_the_body_limit_is_what_an_invocation_carries);
