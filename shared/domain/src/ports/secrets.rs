//! Secrets by reference.

use async_trait::async_trait;
use secrecy::SecretString;

#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("secret {0:?} does not exist")]
    NotFound(String),
    #[error("secret store: {0}")]
    Unavailable(String),
}

/// Secret values by name: Secrets Manager in AWS, `<data_dir>/secrets/<name>` locally.
#[async_trait]
pub trait SecretStore: Send + Sync {
    async fn get(&self, name: &str) -> Result<SecretString, SecretError>;
}

/// Reads a configured secret: environment and files directly, names through the store.
pub async fn resolve_secret(
    reference: &crate::config::SecretRef,
    store: &dyn SecretStore,
) -> Result<SecretString, SecretError> {
    use crate::config::SecretRef;
    match reference {
        SecretRef::Env(var) => std::env::var(var)
            .map(|v| SecretString::from(v.trim().to_string()))
            .map_err(|_| SecretError::NotFound(format!("env:{var}"))),
        SecretRef::File(path) => std::fs::read_to_string(path)
            .map(|v| SecretString::from(v.trim().to_string()))
            .map_err(|e| SecretError::NotFound(format!("file:{} ({})", path.display(), e.kind()))),
        SecretRef::Secret(name) => store.get(name).await,
    }
}
