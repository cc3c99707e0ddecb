//! Where a function's configuration comes from, first found wins:
//!
//! 1. `TESTRELAY_CONFIG`: the TOML itself. Lambda allows 4 KB of environment for all
//!    variables together (and CloudFormation 4 KB per parameter), so only small ones fit.
//! 2. `TESTRELAY_CONFIG_S3`: `s3://<bucket>/<key>`, an object of any size, read once per
//!    cold start (the template's `ConfigBucket` / `ConfigKey`).
//! 3. `TESTRELAY_CONFIG_FILE`: a file packaged beside the binary (default `testrelay.toml`).
//!
//! Empty values count as unset. No configuration, an empty one, or one that admits no
//! request (no API key and no inbound hook) stops the cold start with a message saying what
//! to set, instead of deploying a service that answers 401 to everything.

use std::path::PathBuf;
use testrelay_domain::config::Config;
use testrelay_domain::ports::BlobStore;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigSource {
    Inline(String),
    S3 { bucket: String, key: String },
    File(PathBuf),
}

const WHAT_TO_SET: &str = "set the template's ConfigBucket and ConfigKey (an S3 object, any \
    size), or Config (the TOML itself, up to about 2 KB), or package testrelay.toml beside \
    the binary";

impl ConfigSource {
    /// From the process environment.
    pub fn from_env() -> Result<Self, String> {
        Self::from_vars(|name| std::env::var(name).ok())
    }

    /// From variables as `var` gives them.
    pub fn from_vars(var: impl Fn(&str) -> Option<String>) -> Result<Self, String> {
        let set = |name: &str| var(name).filter(|v| !v.trim().is_empty());
        if let Some(text) = set("TESTRELAY_CONFIG") {
            return Ok(ConfigSource::Inline(text));
        }
        if let Some(uri) = set("TESTRELAY_CONFIG_S3") {
            let (bucket, key) = uri
                .trim()
                .strip_prefix("s3://")
                .and_then(|rest| rest.split_once('/'))
                .filter(|(b, k)| !b.is_empty() && !k.is_empty())
                .ok_or_else(|| {
                    format!("TESTRELAY_CONFIG_S3 must be s3://<bucket>/<key>, not {uri:?}")
                })?;
            return Ok(ConfigSource::S3 {
                bucket: bucket.into(),
                key: key.into(),
            });
        }
        Ok(ConfigSource::File(PathBuf::from(
            set("TESTRELAY_CONFIG_FILE").unwrap_or_else(|| "testrelay.toml".into()),
        )))
    }

    /// Where it is, for messages.
    pub fn origin(&self) -> String {
        match self {
            ConfigSource::Inline(_) => "TESTRELAY_CONFIG".into(),
            ConfigSource::S3 { bucket, key } => format!("s3://{bucket}/{key}"),
            ConfigSource::File(path) => path.display().to_string(),
        }
    }

    /// Reads and checks the configuration; S3 through `sdk`.
    pub async fn load(&self, sdk: &aws_config::SdkConfig) -> Result<Config, String> {
        let origin = self.origin();
        let text = match self {
            ConfigSource::Inline(text) => text.clone(),
            ConfigSource::S3 { bucket, key } => {
                let bytes = testrelay_aws::S3BlobStore::new(sdk, bucket.clone())
                    .get(key)
                    .await
                    .map_err(|e| format!("reading the configuration {origin}: {e}"))?
                    .ok_or_else(|| format!("no configuration at {origin}: {WHAT_TO_SET}"))?;
                String::from_utf8(bytes.to_vec())
                    .map_err(|_| format!("{origin}: the configuration is not UTF-8"))?
            }
            ConfigSource::File(path) => std::fs::read_to_string(path).map_err(|e| {
                format!("no configuration ({}: {e}): {WHAT_TO_SET}", path.display())
            })?,
        };
        if text.trim().is_empty() {
            return Err(format!(
                "the configuration at {origin} is empty: {WHAT_TO_SET}"
            ));
        }
        let config = Config::from_toml(&text, &origin).map_err(|e| e.to_string())?;
        if config.api_keys.is_empty() && config.hooks.is_empty() {
            return Err(format!(
                "{origin}: no [[api_keys]] and no [hooks.*]: this configuration admits no request"
            ));
        }
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn source(vars: &[(&str, &str)]) -> Result<ConfigSource, String> {
        let vars: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        ConfigSource::from_vars(|name| vars.get(name).cloned())
    }

    #[test]
    fn the_first_source_set_wins_and_empty_values_are_unset() {
        let s3 = ("TESTRELAY_CONFIG_S3", "s3://configs/testrelay/prod.toml");
        assert_eq!(
            source(&[("TESTRELAY_CONFIG", "[projects.web]"), s3]),
            Ok(ConfigSource::Inline("[projects.web]".into()))
        );
        // The template passes an empty Config parameter as an empty variable.
        assert_eq!(
            source(&[("TESTRELAY_CONFIG", ""), s3]),
            Ok(ConfigSource::S3 {
                bucket: "configs".into(),
                key: "testrelay/prod.toml".into()
            })
        );
        assert_eq!(
            source(&[("TESTRELAY_CONFIG", " "), ("TESTRELAY_CONFIG_S3", "")]),
            Ok(ConfigSource::File("testrelay.toml".into()))
        );
        let bad = source(&[("TESTRELAY_CONFIG_S3", "configs/prod.toml")]).unwrap_err();
        assert!(bad.contains("s3://<bucket>/<key>"), "{bad}");
    }
}
