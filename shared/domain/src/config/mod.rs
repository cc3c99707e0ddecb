//! The one configuration file (TOML): server limits, API keys (as SHA-256 hashes, never in
//! clear), projects and their routes, and connector settings with secrets referenced, not
//! inlined. Validation happens once at start; every error names the offending key.

mod channels;
mod connectors;
mod email;
pub mod history;
mod kinds;
pub mod routes;

pub use channels::*;
pub use connectors::*;
pub use email::*;
pub use kinds::*;

use crate::ids::{ConnectorName, KeyId, ProjectName};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

pub const DEFAULT_MAX_BODY_BYTES: usize = 6 * 1024 * 1024;
pub const DEFAULT_MAX_DECOMPRESSED_BYTES: usize = 64 * 1024 * 1024;
/// Two largest reports at once.
pub const DEFAULT_MAX_INFLIGHT_BYTES: usize = 2 * DEFAULT_MAX_DECOMPRESSED_BYTES;

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
    #[serde(default)]
    pub network: NetworkConfig,
    #[serde(default)]
    pub health: HealthConfig,
    /// Inbound signed webhooks, by source name (`POST /v1/hooks/<source>`).
    #[serde(default)]
    pub hooks: BTreeMap<String, HookConfig>,
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
    /// Reports with more test cases are refused (413).
    #[serde(default = "default_max_cases")]
    pub max_cases_per_report: usize,
    /// Inflated report bytes being parsed at once, across requests; past it new reports are
    /// answered 503 with `Retry-After` instead of growing the process.
    #[serde(default = "default_max_inflight")]
    pub max_inflight_bytes: usize,
    /// How many deliveries one worker runs at once (`testrelay serve`).
    #[serde(default = "default_concurrency")]
    pub delivery_concurrency: usize,
    /// Where users reach testrelay (`https://testrelay.example.com`): links to a run's
    /// status in messages and cards. Paths only when unset.
    #[serde(default)]
    pub public_url: Option<String>,
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
fn default_max_cases() -> usize {
    crate::report::parse::limits::DEFAULT_MAX_CASES
}
fn default_max_inflight() -> usize {
    DEFAULT_MAX_INFLIGHT_BYTES
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
            max_cases_per_report: default_max_cases(),
            max_inflight_bytes: default_max_inflight(),
            delivery_concurrency: default_concurrency(),
            public_url: None,
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
    /// A pipeline with no new shard for this long completes on its own.
    #[serde(default = "default_pipeline_quiet_minutes")]
    pub pipeline_quiet_minutes: u64,
    /// Which runs each connector gets (`[projects.<p>.when.<connector>]`); all when absent.
    #[serde(default)]
    pub when: BTreeMap<ConnectorName, routes::When>,
    /// The branch every other branch's runs are compared with (test history).
    #[serde(default = "history::default_branch")]
    pub default_branch: String,
    #[serde(default)]
    pub history: history::HistoryConfig,
}

fn default_pipeline_quiet_minutes() -> u64 {
    10
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

/// An inbound webhook source (`[hooks.<source>]`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HookConfig {
    pub scheme: crate::ingest::signatures::SchemeName,
    /// Every active secret (two during a rotation).
    pub secrets: Vec<SecretRef>,
    #[serde(default)]
    pub format: HookFormat,
    /// The project runs from this source belong to.
    pub project: ProjectName,
    /// Accepted clock difference, either way, for schemes that sign a timestamp.
    #[serde(default = "default_tolerance")]
    pub tolerance_s: u64,
    /// The generic scheme's settings (`scheme = "hmac"`).
    #[serde(default)]
    pub hmac: Option<crate::ingest::signatures::HmacScheme>,
    /// Accept `branch`, `commit` and `environment` from the (unsigned) query string of a
    /// `format = "report"` source. Off by default: the query is not covered by the signature.
    #[serde(default)]
    pub query_metadata: bool,
}

fn default_tolerance() -> u64 {
    300
}

/// What a hook's body is.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HookFormat {
    /// A JUnit XML, CTRF or Playwright report, as on `/v1/reports` (metadata in the query).
    #[default]
    Report,
    /// GitHub `workflow_run` / `check_run` events; completed ones become runs.
    Github,
    /// `{"report": ..., "format"?, "branch"?, "commit"?, "build_url"?, "environment"?}`.
    Envelope,
}

/// Health checks (`[health]`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HealthConfig {
    /// Seconds between checks in `testrelay serve` (on AWS the schedule does this).
    #[serde(default = "default_health_interval")]
    pub interval_s: u64,
    /// Each probe's timeout.
    #[serde(default = "default_health_timeout")]
    pub timeout_ms: u64,
    /// Connectors whose failure makes the whole status CRITICAL (others: DEGRADED).
    #[serde(default)]
    pub critical: Vec<ConnectorName>,
    /// The connector that carries alerts on status transitions (slack, teams, pagerduty, discord, datadog, email or
    /// webhook).
    #[serde(default)]
    pub alert: Option<ConnectorName>,
    /// Checks kept per connector.
    #[serde(default = "default_health_history")]
    pub history: usize,
    /// A queue whose oldest message is older than this is DEGRADED.
    #[serde(default = "default_queue_age")]
    pub max_queue_age_s: u64,
}

fn default_health_interval() -> u64 {
    300
}
fn default_health_timeout() -> u64 {
    10_000
}
fn default_health_history() -> usize {
    20
}
fn default_queue_age() -> u64 {
    900
}

impl Default for HealthConfig {
    fn default() -> Self {
        HealthConfig {
            interval_s: default_health_interval(),
            timeout_ms: default_health_timeout(),
            critical: Vec::new(),
            alert: None,
            history: default_health_history(),
            max_queue_age_s: default_queue_age(),
        }
    }
}

/// Outbound network policy. Connectors refuse private, loopback, link-local and cloud
/// metadata addresses (checked on the resolved address, so DNS cannot smuggle them in)
/// unless a network is listed here (`allow = ["10.1.0.0/16"]`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetworkConfig {
    #[serde(default)]
    pub allow: Vec<String>,
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
            // Connector tables are read through their `kind` tag, which costs serde the
            // position: find the connector and the line ourselves.
            if let Some(found) = locate_connector_error(text, origin) {
                return ConfigError(vec![found]);
            }
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
        if s.max_cases_per_report == 0 {
            errors.push("server.max_cases_per_report: must be greater than 0".into());
        }
        if s.max_inflight_bytes < s.max_decompressed_bytes {
            errors.push(
                "server.max_inflight_bytes: must be at least server.max_decompressed_bytes (else the largest report could never be accepted)".into(),
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
            for (c, when) in &project.when {
                if !project.connectors.contains(c) {
                    errors.push(format!(
                        "projects.{name}.when.{c}: {:?} is not one of the project's connectors",
                        c.as_str()
                    ));
                }
                for p in when.problems() {
                    errors.push(format!("projects.{name}.when.{c}.{p}"));
                }
            }
            for p in project.history.problems() {
                errors.push(format!("projects.{name}.history.{p}"));
            }
            if project.default_branch.is_empty() || project.default_branch.len() > 256 {
                errors.push(format!(
                    "projects.{name}.default_branch: must be 1 to 256 characters"
                ));
            }
            if project.pipeline_quiet_minutes == 0 || project.pipeline_quiet_minutes > 24 * 60 {
                errors.push(format!(
                    "projects.{name}.pipeline_quiet_minutes: must be 1 to 1440"
                ));
            }
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
            for p in connectors::problems(connector) {
                errors.push(format!("connectors.{name}.{p}"));
            }
            let common = connector.common();
            if let Some(f) = common.fallback {
                match self.connector_kind(f) {
                    _ if f == name => errors.push(format!(
                        "connectors.{name}.fallback: a connector cannot be its own fallback"
                    )),
                    None => errors.push(format!(
                        "connectors.{name}.fallback: unknown connector {:?}",
                        f.as_str()
                    )),
                    Some(ConnectorKind::Testrail | ConnectorKind::Jira) => errors.push(format!(
                        "connectors.{name}.fallback: {:?} cannot carry a notice; use a slack, teams, pagerduty, discord, datadog, email or webhook connector",
                        f.as_str()
                    )),
                    Some(_) => {}
                }
            }
            if !(1..=10_080).contains(&common.fallback_after_minutes) {
                errors.push(format!(
                    "connectors.{name}.fallback_after_minutes: must be 1 to 10080"
                ));
            }
        }
        if let Some(u) = &s.public_url
            && let Err(e) = check_url(u, true)
        {
            errors.push(format!("server.public_url: {e}"));
        }
        let h = &self.health;
        if h.interval_s < 10 {
            errors.push("health.interval_s: must be at least 10".into());
        }
        if h.timeout_ms == 0 || h.timeout_ms > 60_000 {
            errors.push("health.timeout_ms: must be between 1 and 60000".into());
        }
        if h.history == 0 || h.history > 100 {
            errors.push("health.history: must be between 1 and 100".into());
        }
        for (i, c) in h.critical.iter().enumerate() {
            if !self.connectors.contains_key(c) {
                errors.push(format!(
                    "health.critical[{i}]: unknown connector {:?}",
                    c.as_str()
                ));
            }
        }
        if let Some(a) = &h.alert {
            match self.connector_kind(a) {
                None => errors.push(format!("health.alert: unknown connector {:?}", a.as_str())),
                Some(ConnectorKind::Testrail | ConnectorKind::Jira) => errors.push(format!(
                    "health.alert: {:?} cannot carry alerts; use a slack, teams, pagerduty, discord, datadog, email or webhook connector",
                    a.as_str()
                )),
                Some(_) => {}
            }
        }
        for (name, hook) in &self.hooks {
            let at = format!("hooks.{name}");
            if name.is_empty()
                || name.len() > 64
                || !name
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
            {
                errors.push(format!("{at}: a source name is 1-64 of a-z, 0-9, - and _"));
            }
            if hook.secrets.is_empty() || hook.secrets.len() > 5 {
                errors.push(format!("{at}.secrets: list 1 to 5 secrets"));
            }
            if !self.projects.contains_key(&hook.project) {
                errors.push(format!(
                    "{at}.project: unknown project {:?}",
                    hook.project.as_str()
                ));
            }
            if hook.tolerance_s == 0 || hook.tolerance_s > 3600 {
                errors.push(format!("{at}.tolerance_s: must be between 1 and 3600"));
            }
            if hook.query_metadata && hook.format != HookFormat::Report {
                errors.push(format!(
                    "{at}.query_metadata: only a format = \"report\" source reads its query string"
                ));
            }
            let generic = hook.scheme == crate::ingest::signatures::SchemeName::Hmac;
            if generic != hook.hmac.is_some() {
                errors.push(format!(
                    "{at}.hmac: set [{at}.hmac] exactly when scheme = \"hmac\""
                ));
            }
        }
        for (i, net) in self.network.allow.iter().enumerate() {
            if let Err(e) = crate::delivery::net::IpNet::parse(net) {
                errors.push(format!("network.allow[{i}]: {e}"));
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

/// A URL testrelay may call: https (http only with `allow_http`) with a host. The error
/// never repeats the URL (it may carry a token).
pub fn check_url(raw: &str, allow_http: bool) -> Result<(), String> {
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

/// The first connector table that does not deserialize, as `origin: line N: connectors.x:
/// message`, the line being the offending key's (unknown keys) or the table's header.
fn locate_connector_error(text: &str, origin: &str) -> Option<String> {
    let table: toml::Table = toml::from_str(text).ok()?;
    let connectors = table.get("connectors")?.as_table()?;
    for (name, value) in connectors {
        let Err(e) = value.clone().try_into::<ConnectorConfig>() else {
            continue;
        };
        let message = e.message().trim_end().to_string();
        let lines: Vec<&str> = text.lines().collect();
        let header = lines.iter().position(|l| {
            let l = l.trim();
            l == format!("[connectors.{name}]") || l == format!("[connectors.\"{name}\"]")
        });
        let key = message
            .strip_prefix("unknown field `")
            .and_then(|m| m.split('`').next());
        let line = match (header, key) {
            (Some(h), Some(key)) => lines[h + 1..]
                .iter()
                .take_while(|l| {
                    let l = l.trim_start();
                    !l.starts_with('[') || l.starts_with(&format!("[connectors.{name}."))
                })
                .position(|l| {
                    l.trim_start()
                        .strip_prefix(key)
                        .is_some_and(|rest| rest.trim_start().starts_with('='))
                })
                .map_or(h, |i| h + 1 + i),
            (Some(h), None) => h,
            (None, _) => return Some(format!("{origin}: connectors.{name}: {message}")),
        };
        return Some(format!(
            "{origin}: line {}: connectors.{name}: {message}",
            line + 1
        ));
    }
    None
}

/// SHA-256 of an API key, as configured in `api_keys[].sha256`.
pub fn hash_api_key(key: &str) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(key.as_bytes()))
}

#[cfg(test)]
mod tests;
