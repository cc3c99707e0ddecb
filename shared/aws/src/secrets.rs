//! Credentials from Secrets Manager, read once per cold start by the connector builder.

use async_trait::async_trait;
use aws_sdk_secretsmanager::operation::get_secret_value::GetSecretValueError;
use secrecy::SecretString;
use testrelay_domain::ports::{SecretError, SecretStore};

#[derive(Clone)]
pub struct SecretsManagerStore {
    client: aws_sdk_secretsmanager::Client,
}

impl SecretsManagerStore {
    pub fn new(sdk: &aws_config::SdkConfig) -> Self {
        SecretsManagerStore {
            client: aws_sdk_secretsmanager::Client::new(sdk),
        }
    }

    pub fn client(&self) -> &aws_sdk_secretsmanager::Client {
        &self.client
    }
}

#[async_trait]
impl SecretStore for SecretsManagerStore {
    async fn get(&self, name: &str) -> Result<SecretString, SecretError> {
        match self.client.get_secret_value().secret_id(name).send().await {
            Ok(out) => out
                .secret_string
                .map(|s| SecretString::from(s.trim().to_string()))
                .ok_or_else(|| SecretError::NotFound(format!("{name} (no string value)"))),
            Err(e) => match e.as_service_error() {
                Some(GetSecretValueError::ResourceNotFoundException(_)) => {
                    Err(SecretError::NotFound(name.to_string()))
                }
                // The SDK's error text names the operation and the service, not the value.
                _ => Err(SecretError::Unavailable(
                    aws_sdk_secretsmanager::error::DisplayErrorContext(e).to_string(),
                )),
            },
        }
    }
}
