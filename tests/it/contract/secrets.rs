//! SecretStore contract: Secrets Manager and files.

use super::Fixture;
use secrecy::ExposeSecret;
use testrelay_domain::ports::{SecretError, SecretStore};

const VALUE: &str = "whsec_c2VjcmV0LXZhbHVlLWZvci10aGUtY29udHJhY3Q=";

async fn embedded_port() -> Fixture<std::sync::Arc<dyn SecretStore>> {
    let dir = tempfile::tempdir().unwrap();
    let store = testrelay_embedded::FileSecretStore::new(dir.path());
    store.put("team/hook", &format!("{VALUE}\n")).unwrap();
    Fixture {
        port: std::sync::Arc::new(store),
        _keep: Some(dir),
    }
}

async fn aws_port(
    engine: testrelay_tests::aws::Engine,
) -> Fixture<std::sync::Arc<dyn SecretStore>> {
    let sdk = testrelay_tests::aws::sdk_on(engine).await;
    let prefix = testrelay_tests::unique("team");
    testrelay_tests::aws::put_secret(&sdk, &format!("{prefix}/hook"), VALUE).await;
    Fixture {
        port: std::sync::Arc::new(Prefixed(
            prefix,
            testrelay_aws::SecretsManagerStore::new(&sdk),
        )),
        _keep: None,
    }
}

/// Maps the contract's names into this test's own namespace in the shared emulator.
struct Prefixed(String, testrelay_aws::SecretsManagerStore);

#[async_trait::async_trait]
impl SecretStore for Prefixed {
    async fn get(&self, name: &str) -> Result<secrecy::SecretString, SecretError> {
        let name = name
            .strip_prefix("team/")
            .map(|n| format!("{}/{n}", self.0));
        self.1.get(name.as_deref().unwrap_or("absent")).await
    }
}

async fn reads_trimmed_value(store: &std::sync::Arc<dyn SecretStore>) {
    assert_eq!(store.get("team/hook").await.unwrap().expose_secret(), VALUE);
}

async fn missing_is_not_found(store: &std::sync::Arc<dyn SecretStore>) {
    let err = store.get("team/absent").await.unwrap_err();
    assert!(matches!(err, SecretError::NotFound(_)), "{err}");
    assert!(!err.to_string().contains(VALUE));
}

crate::contract!(read, reads_trimmed_value);
crate::contract!(missing, missing_is_not_found);
