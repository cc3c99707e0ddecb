//! Run blobs in S3 (the bucket's lifecycle rule expires them).

use async_trait::async_trait;
use aws_sdk_s3::operation::get_object::GetObjectError;
use aws_sdk_s3::primitives::ByteStream;
use testrelay_domain::ports::{BlobStore, StoreError};

const BACKEND: &str = "S3";

#[derive(Clone)]
pub struct S3BlobStore {
    client: aws_sdk_s3::Client,
    bucket: String,
}

impl S3BlobStore {
    pub fn new(sdk: &aws_config::SdkConfig, bucket: impl Into<String>) -> Self {
        let conf = aws_sdk_s3::config::Builder::from(sdk)
            .force_path_style(crate::s3_endpoint_overridden(sdk))
            .build();
        S3BlobStore {
            client: aws_sdk_s3::Client::from_conf(conf),
            bucket: bucket.into(),
        }
    }

    pub fn client(&self) -> &aws_sdk_s3::Client {
        &self.client
    }
}

#[async_trait]
impl BlobStore for S3BlobStore {
    async fn put(&self, key: &str, bytes: bytes::Bytes) -> Result<(), StoreError> {
        self.client
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .content_type("application/json")
            .body(ByteStream::from(bytes))
            .send()
            .await
            .map_err(|e| StoreError::new(BACKEND, aws_sdk_s3::error::DisplayErrorContext(e)))?;
        Ok(())
    }

    async fn get(&self, key: &str) -> Result<Option<bytes::Bytes>, StoreError> {
        let out = match self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
        {
            Ok(out) => out,
            Err(e) => {
                return match e.as_service_error() {
                    Some(GetObjectError::NoSuchKey(_)) => Ok(None),
                    _ => Err(StoreError::new(
                        BACKEND,
                        aws_sdk_s3::error::DisplayErrorContext(e),
                    )),
                };
            }
        };
        let data = out
            .body
            .collect()
            .await
            .map_err(|e| StoreError::new(BACKEND, e))?;
        Ok(Some(data.into_bytes()))
    }
}
