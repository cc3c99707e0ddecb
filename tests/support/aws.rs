//! Resources in the local AWS emulator. `tests/run-all.sh` starts moto and sets
//! `AWS_ENDPOINT_URL`; every test creates its own uniquely named resources, so tests run in
//! parallel without seeing each other.

use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType,
};
use std::collections::HashMap;
use testrelay_domain::config::ConnectorKind;

/// The SDK configuration pointed at moto; panics with instructions when it is not running.
pub async fn sdk() -> aws_config::SdkConfig {
    assert!(
        std::env::var_os("AWS_ENDPOINT_URL").is_some(),
        "AWS_ENDPOINT_URL is not set: the AWS adapter tests run against moto; run `bash tests/run-all.sh`"
    );
    testrelay_aws::sdk_config().await
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
    req.send().await.expect("create table in moto");
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
        .expect("create bucket in moto");
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
        .expect("create secret in moto");
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
    pub async fn create() -> Stack {
        let sdk = sdk().await;
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
