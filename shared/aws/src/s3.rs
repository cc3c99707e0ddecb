//! Run blobs in S3 (the bucket's lifecycle rule expires them).

use async_trait::async_trait;
use aws_sdk_s3::operation::get_object::GetObjectError;
use aws_sdk_s3::primitives::ByteStream;
use testrelay_domain::ports::{BlobStore, StoreError, Tagged};

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
        Ok(self.get_tagged(key).await?.map(|t| t.bytes))
    }

    async fn get_tagged(&self, key: &str) -> Result<Option<Tagged>, StoreError> {
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
        let tag = out.e_tag.clone().unwrap_or_default();
        let data = out
            .body
            .collect()
            .await
            .map_err(|e| StoreError::new(BACKEND, e))?;
        Ok(Some(Tagged {
            bytes: data.into_bytes(),
            tag,
        }))
    }

    async fn put_if(
        &self,
        key: &str,
        bytes: bytes::Bytes,
        expected: Option<&str>,
    ) -> Result<bool, StoreError> {
        let put = self
            .client
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .content_type("application/octet-stream")
            .body(ByteStream::from(bytes));
        let put = match expected {
            Some(tag) => put.if_match(tag),
            None => put.if_none_match("*"),
        };
        match put.send().await {
            Ok(_) => Ok(true),
            // 412: another write came first. 409 ConditionalRequestConflict: S3 is applying
            // a concurrent conditional write to the key; either way, reload and decide again.
            // 404: `If-Match` on a key that is gone.
            Err(e)
                if e.raw_response()
                    .is_some_and(|r| matches!(r.status().as_u16(), 412 | 409 | 404)) =>
            {
                Ok(false)
            }
            Err(e) => Err(StoreError::new(
                BACKEND,
                aws_sdk_s3::error::DisplayErrorContext(e),
            )),
        }
    }
}
