//! Resources in the local AWS engines `tests/run-all.sh` starts: moto (`AWS_ENDPOINT_URL`, the
//! default of every process the tests start) and, as a second engine, AWS's own DynamoDB
//! Local for tables with MiniStack for queues, buckets and secrets
//! (`TESTRELAY_DYNAMODB_LOCAL_URL`, `TESTRELAY_MINISTACK_URL`). Every test creates its own
//! uniquely named resources, so tests run in parallel without seeing each other.

use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType,
};
use aws_types::service_config::{LoadServiceConfig, ServiceConfigKey};
use std::collections::HashMap;
use testrelay_domain::config::ConnectorKind;

/// A local AWS the adapters are run against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    /// moto: every service at `AWS_ENDPOINT_URL`.
    Moto,
    /// DynamoDB Local (AWS's own engine) for DynamoDB; MiniStack for SQS, S3, Secrets
    /// Manager and SES.
    DynamoDbLocal,
}

impl Engine {
    pub const ALL: [Engine; 2] = [Engine::Moto, Engine::DynamoDbLocal];
}

/// The SDK configuration pointed at moto; panics with instructions when it is not running.
pub async fn sdk() -> aws_config::SdkConfig {
    sdk_on(Engine::Moto).await
}

fn endpoint(var: &str) -> String {
    std::env::var(var).unwrap_or_else(|_| {
        panic!("{var} is not set: the AWS adapter tests run against the local engines `bash tests/run-all.sh` starts")
    })
}

/// The SDK configuration pointed at `engine`.
pub async fn sdk_on(engine: Engine) -> aws_config::SdkConfig {
    let base = testrelay_aws::sdk_config().await;
    match engine {
        Engine::Moto => {
            endpoint("AWS_ENDPOINT_URL");
            base
        }
        Engine::DynamoDbLocal => {
            let routes = Endpoints {
                dynamodb: endpoint("TESTRELAY_DYNAMODB_LOCAL_URL"),
                others: endpoint("TESTRELAY_MINISTACK_URL"),
            };
            let mut builder = base.into_builder();
            builder.set_endpoint_url(None);
            builder.service_config(routes).build()
        }
    }
}

/// The SDK configuration with every service at `url` (a wiremock server standing in for
/// an AWS API).
pub async fn sdk_at(url: &str) -> aws_config::SdkConfig {
    let mut builder = testrelay_aws::sdk_config().await.into_builder();
    builder.set_endpoint_url(None);
    builder
        .service_config(Endpoints {
            dynamodb: url.to_string(),
            others: url.to_string(),
        })
        .build()
}

/// Per-service endpoints, the way `AWS_ENDPOINT_URL_<SERVICE>` gives them to the SDK, so two
/// engines can serve one process.
#[derive(Debug)]
struct Endpoints {
    dynamodb: String,
    others: String,
}

impl LoadServiceConfig for Endpoints {
    fn load_config(&self, key: ServiceConfigKey<'_>) -> Option<String> {
        if key.env() != "AWS_ENDPOINT_URL" {
            return None;
        }
        Some(match key.service_id() {
            "DynamoDB" => self.dynamodb.clone(),
            _ => self.others.clone(),
        })
    }
}

/// A table with a string hash key `pk` and, when `with_sort`, a string range key `sk`.
pub async fn table(sdk: &aws_config::SdkConfig, prefix: &str, with_sort: bool) -> String {
    let client = aws_sdk_dynamodb::Client::new(sdk);
    let name = crate::unique(prefix);
    let attr = |n: &str| {
        AttributeDefinition::builder()
            .attribute_name(n)
            .attribute_type(ScalarAttributeType::S)
            .build()
            .unwrap()
    };
    let key = |n: &str, t| {
        KeySchemaElement::builder()
            .attribute_name(n)
            .key_type(t)
            .build()
            .unwrap()
    };
    let mut req = client
        .create_table()
        .table_name(&name)
        .billing_mode(BillingMode::PayPerRequest)
        .attribute_definitions(attr("pk"))
        .key_schema(key("pk", KeyType::Hash));
    if with_sort {
        req = req
            .attribute_definitions(attr("sk"))
            .key_schema(key("sk", KeyType::Range));
    }
    req.send().await.expect("create table");
    name
}

pub async fn runs_table(sdk: &aws_config::SdkConfig) -> String {
    table(sdk, "runs", true).await
}

pub async fn state_table(sdk: &aws_config::SdkConfig) -> String {
    table(sdk, "state", false).await
}

pub async fn bucket(sdk: &aws_config::SdkConfig) -> String {
    let name = crate::unique("blobs");
    testrelay_aws::S3BlobStore::new(sdk, &name)
        .client()
        .create_bucket()
        .bucket(&name)
        .send()
        .await
        .expect("create bucket");
    name
}

/// A queue with a dead-letter queue after 10 receives, as infra/ sets them up; the URLs of
/// both.
pub async fn queue_with_dlq(sdk: &aws_config::SdkConfig) -> (String, String) {
    let client = aws_sdk_sqs::Client::new(sdk);
    let dlq = client
        .create_queue()
        .queue_name(crate::unique("dlq"))
        .send()
        .await
        .expect("create DLQ");
    let dlq_arn = client
        .get_queue_attributes()
        .queue_url(dlq.queue_url().unwrap())
        .attribute_names(aws_sdk_sqs::types::QueueAttributeName::QueueArn)
        .send()
        .await
        .unwrap()
        .attributes
        .unwrap()[&aws_sdk_sqs::types::QueueAttributeName::QueueArn]
        .clone();
    let out = client
        .create_queue()
        .queue_name(crate::unique("deliveries"))
        .attributes(
            aws_sdk_sqs::types::QueueAttributeName::RedrivePolicy,
            format!(r#"{{"deadLetterTargetArn":"{dlq_arn}","maxReceiveCount":"10"}}"#),
        )
        .send()
        .await
        .expect("create queue");
    (
        out.queue_url().unwrap().to_string(),
        dlq.queue_url().unwrap().to_string(),
    )
}

/// A delivery queue (with its DLQ); its URL.
pub async fn queue(sdk: &aws_config::SdkConfig) -> String {
    queue_with_dlq(sdk).await.0
}

pub fn queues(url: &str) -> HashMap<ConnectorKind, String> {
    ConnectorKind::ALL
        .into_iter()
        .map(|k| (k, url.to_string()))
        .collect()
}

pub async fn put_secret(sdk: &aws_config::SdkConfig, name: &str, value: &str) {
    aws_sdk_secretsmanager::Client::new(sdk)
        .create_secret()
        .name(name)
        .secret_string(value)
        .send()
        .await
        .expect("create secret");
}

/// Every resource a function needs, created fresh and exported the way the deployment does.
pub struct Stack {
    pub sdk: aws_config::SdkConfig,
    pub bucket: String,
    pub runs_table: String,
    pub state_table: String,
    pub queue_url: String,
    pub dlq_url: String,
}

impl Stack {
    /// On moto.
    pub async fn create() -> Stack {
        Stack::create_on(Engine::Moto).await
    }

    pub async fn create_on(engine: Engine) -> Stack {
        let sdk = sdk_on(engine).await;
        let (queue_url, dlq_url) = queue_with_dlq(&sdk).await;
        Stack {
            bucket: bucket(&sdk).await,
            runs_table: runs_table(&sdk).await,
            state_table: state_table(&sdk).await,
            queue_url,
            dlq_url,
            sdk,
        }
    }

    pub fn resources(&self) -> testrelay_aws::Resources {
        testrelay_aws::Resources {
            bucket: self.bucket.clone(),
            runs_table: self.runs_table.clone(),
            state_table: self.state_table.clone(),
            queues: queues(&self.queue_url),
            dead_letter_queues: queues(&self.dlq_url),
        }
    }
}
