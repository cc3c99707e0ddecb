//! The one configuration file (TOML): server limits, API keys (as SHA-256 hashes, never in
//! clear), projects and their routes, and connector settings with secrets referenced, not
//! inlined. Validation happens once at start; every error names the offending key.

use crate::ids::{ConnectorName, KeyId, ProjectName};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

pub const DEFAULT_MAX_BODY_BYTES: usize = 6 * 1024 * 1024;
pub const DEFAULT_MAX_DECOMPRESSED_BYTES: usize = 64 * 1024 * 1024;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub server: ServerConfig,
    #[serde(default)]
    pub api_keys: Vec<ApiKeyConfig>,
    #[serde(default)]
    pub projects: BTreeMap<ProjectName, ProjectConfig>,
    #[serde(default)]
    pub connectors: BTreeMap<ConnectorName, ConnectorConfig>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    /// Where `testrelay serve` listens.
    #[serde(default = "default_listen")]
    pub listen: String,
    /// Where the embedded store keeps its database and files.
    #[serde(default = "default_data_dir")]
    pub data_dir: PathBuf,
    /// Largest request body accepted on the wire (Lambda's synchronous limit is 6 MB).
    #[serde(default = "default_max_body")]
    pub max_body_bytes: usize,
    /// Largest report accepted after `Content-Encoding: gzip` is undone.
    #[serde(default = "default_max_decompressed")]
    pub max_decompressed_bytes: usize,
    /// How many deliveries one worker runs at once (`testrelay serve`).
    #[serde(default = "default_concurrency")]
    pub delivery_concurrency: usize,
}

fn default_listen() -> String {
    "127.0.0.1:8080".into()
}
fn default_data_dir() -> PathBuf {
    PathBuf::from("data")
}
fn default_max_body() -> usize {
    DEFAULT_MAX_BODY_BYTES
}
fn default_max_decompressed() -> usize {
    DEFAULT_MAX_DECOMPRESSED_BYTES
}
fn default_concurrency() -> usize {
    32
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: default_listen(),
            data_dir: default_data_dir(),
            max_body_bytes: default_max_body(),
            max_decompressed_bytes: default_max_decompressed(),
            delivery_concurrency: default_concurrency(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiKeyConfig {
    pub id: KeyId,
    /// Hex SHA-256 of the key (`testrelay keygen` prints a key and its hash).
    pub sha256: String,
    /// Projects this key may post to; all projects when absent.
    #[serde(default)]
    pub projects: Option<Vec<ProjectName>>,
    /// May list and redrive dead letters.
    #[serde(default)]
    pub admin: bool,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProjectConfig {
    /// Connectors every run of this project is delivered to.
    #[serde(default)]
    pub connectors: Vec<ConnectorName>,
}

/// Where a secret's value lives. The value itself is never in the config file.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "SecretRefRepr")]
pub enum SecretRef {
    /// An environment variable of the testrelay process.
    Env(String),
    /// A file (its content, trimmed).
    File(PathBuf),
    /// A name in the secret store: AWS Secrets Manager on Lambda, `<data_dir>/secrets/<name>`
    /// locally.
    Secret(String),
}

#[derive(Deserialize)]
#[serde(untagged)]
enum SecretRefRepr {
    Reference(SecretRefTable),
    /// Anything else, most likely a secret pasted inline; never echoed back.
    Other(serde::de::IgnoredAny),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
enum SecretRefTable {
    Env(String),
    File(PathBuf),
    Secret(String),
}

impl TryFrom<SecretRefRepr> for SecretRef {
    type Error = &'static str;
    fn try_from(r: SecretRefRepr) -> Result<Self, Self::Error> {
        match r {
            SecretRefRepr::Reference(SecretRefTable::Env(v)) => Ok(SecretRef::Env(v)),
            SecretRefRepr::Reference(SecretRefTable::File(v)) => Ok(SecretRef::File(v)),
            SecretRefRepr::Reference(SecretRefTable::Secret(v)) => Ok(SecretRef::Secret(v)),
            SecretRefRepr::Other(_) => Err(
                "a secret must be a reference: { env = \"VAR\" }, { file = \"path\" } or { secret = \"name\" }, never the value itself",
            ),
        }
    }
}

impl fmt::Display for SecretRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SecretRef::Env(v) => write!(f, "env:{v}"),
            SecretRef::File(p) => write!(f, "file:{}", p.display()),
            SecretRef::Secret(n) => write!(f, "secret:{n}"),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum ConnectorConfig {
    /// A generic HTTPS endpoint that receives `run.completed` events signed per Standard
    /// Webhooks.
    Webhook(WebhookConfig),
}

impl ConnectorConfig {
    pub fn kind(&self) -> ConnectorKind {
        match self {
            ConnectorConfig::Webhook(_) => ConnectorKind::Webhook,
        }
    }
}

/// The kinds of connector; each is a deploy unit (its own queue and delivery function).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum ConnectorKind {
    Webhook,
}

impl ConnectorKind {
    pub const ALL: [ConnectorKind; 1] = [ConnectorKind::Webhook];

    pub fn as_str(self) -> &'static str {
        match self {
            ConnectorKind::Webhook => "webhook",
        }
    }

    pub fn from_name(s: &str) -> Option<ConnectorKind> {
        ConnectorKind::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    pub url: String,
    /// A Standard Webhooks secret, `whsec_<base64>`.
    pub secret: SecretRef,
    /// Per-request timeout; capped at 30 s.
    #[serde(default = "default_webhook_timeout")]
    pub timeout_ms: u64,
    /// Plain `http://` is refused unless this is set (local receivers, tests).
    #[serde(default)]
    pub allow_http: bool,
    /// Circuit-breaker settings for this endpoint's host (`[connectors.<name>.breaker]`).
    #[serde(default)]
    pub breaker: crate::breaker::BreakerConfig,
}

fn default_webhook_timeout() -> u64 {
    10_000
}

/// Everything wrong with a configuration, each naming its key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError(pub Vec<String>);

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid configuration:")?;
        for e in &self.0 {
            write!(f, "\n  - {e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

impl Config {
    /// Parses and validates a TOML document. `origin` names it in errors (a path, an env var).
    pub fn from_toml(text: &str, origin: &str) -> Result<Config, ConfigError> {
        let config: Config = toml::from_str(text).map_err(|e| {
            // toml's own Display quotes the offending source line, which could hold a secret
            // pasted by mistake; report the position and the message only.
            let at = match e.span() {
                Some(span) => {
                    let before = &text[..span.start.min(text.len())];
                    let line = before.matches('\n').count() + 1;
                    let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
                    format!("{origin}: line {line}, column {column}")
                }
                None => origin.to_string(),
            };
            ConfigError(vec![format!("{at}: {}", e.message().trim_end())])
        })?;
        config.validate()?;
        Ok(config)
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        let mut errors = Vec::new();
        let s = &self.server;
        if s.max_body_bytes == 0 {
            errors.push("server.max_body_bytes: must be greater than 0".into());
        }
        if s.max_decompressed_bytes < s.max_body_bytes {
            errors.push(
                "server.max_decompressed_bytes: must be at least server.max_body_bytes".into(),
            );
        }
        if s.delivery_concurrency == 0 || s.delivery_concurrency > 1024 {
            errors.push("server.delivery_concurrency: must be between 1 and 1024".into());
        }
        let mut seen_hashes = std::collections::HashSet::new();
        for (i, key) in self.api_keys.iter().enumerate() {
            let h = &key.sha256;
            if h.len() != 64 || !h.bytes().all(|b| b.is_ascii_hexdigit()) {
                errors.push(format!(
                    "api_keys[{i}].sha256 (id {}): must be 64 hex digits, the SHA-256 of the key (testrelay keygen prints one)",
                    key.id
                ));
            } else if !seen_hashes.insert(h.to_ascii_lowercase()) {
                errors.push(format!(
                    "api_keys[{i}].sha256 (id {}): the same key is listed twice",
                    key.id
                ));
            }
            for p in key.projects.iter().flatten() {
                if !self.projects.contains_key(p) {
                    errors.push(format!(
                        "api_keys[{i}].projects: unknown project {:?}",
                        p.as_str()
                    ));
                }
            }
        }
        for (name, project) in &self.projects {
            for (i, c) in project.connectors.iter().enumerate() {
                if !self.connectors.contains_key(c) {
                    errors.push(format!(
                        "projects.{name}.connectors[{i}]: unknown connector {:?} (define it under [connectors.{c}])",
                        c.as_str()
                    ));
                }
            }
        }
        for (name, connector) in &self.connectors {
            match connector {
                ConnectorConfig::Webhook(w) => {
                    if let Err(e) = check_url(&w.url, w.allow_http) {
                        errors.push(format!("connectors.{name}.url: {e}"));
                    }
                    if w.timeout_ms == 0 || w.timeout_ms > 30_000 {
                        errors.push(format!(
                            "connectors.{name}.timeout_ms: must be between 1 and 30000"
                        ));
                    }
                    for p in w.breaker.problems() {
                        errors.push(format!("connectors.{name}.breaker: {p}"));
                    }
                }
            }
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(ConfigError(errors))
        }
    }

    pub fn connector_kind(&self, name: &ConnectorName) -> Option<ConnectorKind> {
        self.connectors.get(name).map(ConnectorConfig::kind)
    }
}

fn check_url(raw: &str, allow_http: bool) -> Result<(), String> {
    let url = url::Url::parse(raw).map_err(|e| format!("not a URL ({e})"))?;
    match url.scheme() {
        "https" => Ok(()),
        "http" if allow_http => Ok(()),
        "http" => Err("plain http is refused; use https or set allow_http = true".into()),
        other => Err(format!("unsupported scheme {other:?}")),
    }?;
    if url.host_str().is_none_or(str::is_empty) {
        return Err("the URL has no host".into());
    }
    Ok(())
}

/// SHA-256 of an API key, as configured in `api_keys[].sha256`.
pub fn hash_api_key(key: &str) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(key.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
[server]
listen = "127.0.0.1:9999"

[[api_keys]]
id = "ci"
sha256 = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
projects = ["web"]

[projects.web]
connectors = ["team"]

[connectors.team]
kind = "webhook"
url = "https://hooks.example.com/in"
secret = { env = "TEAM_SECRET" }
"#;

    #[test]
    fn parses_a_full_config() {
        let c = Config::from_toml(GOOD, "testrelay.toml").unwrap();
        assert_eq!(c.server.listen, "127.0.0.1:9999");
        assert_eq!(c.server.max_body_bytes, DEFAULT_MAX_BODY_BYTES);
        let team = ConnectorName::parse("team").unwrap();
        let ConnectorConfig::Webhook(w) = &c.connectors[&team];
        assert_eq!(w.secret, SecretRef::Env("TEAM_SECRET".into()));
        assert_eq!(c.connector_kind(&team), Some(ConnectorKind::Webhook));
    }

    #[test]
    fn syntax_and_unknown_keys_name_the_line() {
        let bad = GOOD.replace("listen =", "lisen =");
        let e = Config::from_toml(&bad, "testrelay.toml")
            .unwrap_err()
            .to_string();
        assert!(e.contains("testrelay.toml"), "{e}");
        assert!(e.contains("line 3"), "{e}");
        assert!(e.contains("lisen"), "{e}");
    }

    #[test]
    fn semantic_errors_name_the_key() {
        let bad = GOOD
            .replace("connectors = [\"team\"]", "connectors = [\"teams\"]")
            .replace("https://hooks", "http://hooks")
            .replace("9f86d08", "zz86d08");
        let e = Config::from_toml(&bad, "t.toml").unwrap_err();
        let all = e.to_string();
        assert!(
            all.contains("projects.web.connectors[0]: unknown connector \"teams\""),
            "{all}"
        );
        assert!(
            all.contains("connectors.team.url: plain http is refused"),
            "{all}"
        );
        assert!(all.contains("api_keys[0].sha256 (id ci)"), "{all}");
        assert_eq!(e.0.len(), 3);
    }

    #[test]
    fn secrets_are_references_only() {
        let bad = GOOD.replace(
            "secret = { env = \"TEAM_SECRET\" }",
            "secret = \"whsec_abc\"",
        );
        let e = Config::from_toml(&bad, "t.toml").unwrap_err().to_string();
        assert!(
            e.contains("line ") && e.contains("must be a reference"),
            "{e}"
        );
        assert!(!e.contains("whsec_abc"), "a secret was echoed: {e}");
    }

    #[test]
    fn key_hash_is_sha256_hex() {
        assert_eq!(
            hash_api_key("test"),
            "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
        );
    }
}
