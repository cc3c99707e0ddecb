//! The one configuration file (TOML): server limits, API keys (as SHA-256 hashes, never in
//! clear), projects and their routes, and connector settings with secrets referenced, not
//! inlined. Validation happens once at start; every error names the offending key.

mod connectors;

pub use connectors::*;

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
    /// TestRail: a run per report (or an existing run / plan), results in bulk.
    Testrail(TestRailConfig),
    /// Jira: Xray Test Executions and/or a bug per failing test.
    Jira(JiraConfig),
    /// Slack: a Block Kit message per run (bot token or incoming webhook).
    Slack(SlackConfig),
    /// Microsoft Teams: an Adaptive Card through a Workflows webhook.
    Teams(TeamsConfig),
    /// PagerDuty Events API v2: trigger on failure, resolve on green.
    Pagerduty(PagerDutyConfig),
}

impl ConnectorConfig {
    pub fn kind(&self) -> ConnectorKind {
        match self {
            ConnectorConfig::Webhook(_) => ConnectorKind::Webhook,
            ConnectorConfig::Testrail(_) => ConnectorKind::Testrail,
            ConnectorConfig::Jira(_) => ConnectorKind::Jira,
            ConnectorConfig::Slack(_) => ConnectorKind::Slack,
            ConnectorConfig::Teams(_) => ConnectorKind::Teams,
            ConnectorConfig::Pagerduty(_) => ConnectorKind::Pagerduty,
        }
    }

    /// Timeout, breaker and rate limit (the configured one, else the vendor's documented
    /// limit; webhooks have none unless configured).
    pub fn common(&self) -> Common<'_> {
        macro_rules! common {
            ($c:expr, $default:expr) => {
                Common {
                    timeout_ms: $c.timeout_ms,
                    breaker: &$c.breaker,
                    rate_limit: $c.rate_limit.or($default),
                }
            };
        }
        match self {
            ConnectorConfig::Webhook(c) => common!(c, None),
            ConnectorConfig::Testrail(c) => common!(c, Some(TESTRAIL_RATE)),
            ConnectorConfig::Jira(c) => common!(c, Some(JIRA_RATE)),
            ConnectorConfig::Slack(c) => common!(c, Some(SLACK_RATE)),
            ConnectorConfig::Teams(c) => common!(c, Some(TEAMS_RATE)),
            ConnectorConfig::Pagerduty(c) => common!(c, Some(PAGERDUTY_RATE)),
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
    Testrail,
    Jira,
    Slack,
    Teams,
    Pagerduty,
}

impl ConnectorKind {
    pub const ALL: [ConnectorKind; 6] = [
        ConnectorKind::Webhook,
        ConnectorKind::Testrail,
        ConnectorKind::Jira,
        ConnectorKind::Slack,
        ConnectorKind::Teams,
        ConnectorKind::Pagerduty,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ConnectorKind::Webhook => "webhook",
            ConnectorKind::Testrail => "testrail",
            ConnectorKind::Jira => "jira",
            ConnectorKind::Slack => "slack",
            ConnectorKind::Teams => "teams",
            ConnectorKind::Pagerduty => "pagerduty",
        }
    }

    pub fn from_name(s: &str) -> Option<ConnectorKind> {
        ConnectorKind::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

/// An inbound webhook source (`[hooks.<source>]`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HookConfig {
    pub scheme: crate::hooks::SchemeName,
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
    pub hmac: Option<crate::hooks::HmacScheme>,
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
    /// The connector that carries alerts on status transitions (slack, teams, pagerduty or
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
            for p in connectors::problems(connector) {
                errors.push(format!("connectors.{name}.{p}"));
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
                    "health.alert: {:?} cannot carry alerts; use a slack, teams, pagerduty or webhook connector",
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
            let generic = hook.scheme == crate::hooks::SchemeName::Hmac;
            if generic != hook.hmac.is_some() {
                errors.push(format!(
                    "{at}.hmac: set [{at}.hmac] exactly when scheme = \"hmac\""
                ));
            }
        }
        for (i, net) in self.network.allow.iter().enumerate() {
            if let Err(e) = crate::net::IpNet::parse(net) {
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
        let ConnectorConfig::Webhook(w) = &c.connectors[&team] else {
            panic!("a webhook")
        };
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
    fn every_connector_kind_parses_with_defaults() {
        let text = r#"
[connectors.qa]
kind = "testrail"
url = "https://acme.testrail.io"
user = "ci@acme.com"
api_key = { secret = "tr" }
project_id = 1

[connectors.jira]
kind = "jira"
url = "https://acme.atlassian.net"
deployment = "cloud"
email = "ci@acme.com"
token = { secret = "jira" }
project_key = "SHOP"
[connectors.jira.bugs]

[connectors.chat]
kind = "slack"
token = { env = "SLACK_TOKEN" }
channel = "C0123"

[connectors.cards]
kind = "teams"
url = { secret = "teams-url" }

[connectors.pager]
kind = "pagerduty"
routing_key = { secret = "pd" }
"#;
        let c = Config::from_toml(text, "t.toml").unwrap();
        let kind = |n: &str| c.connector_kind(&ConnectorName::parse(n).unwrap()).unwrap();
        assert_eq!(kind("qa"), ConnectorKind::Testrail);
        assert_eq!(kind("jira"), ConnectorKind::Jira);
        assert_eq!(kind("chat"), ConnectorKind::Slack);
        assert_eq!(kind("cards"), ConnectorKind::Teams);
        assert_eq!(kind("pager"), ConnectorKind::Pagerduty);
        let qa = &c.connectors[&ConnectorName::parse("qa").unwrap()];
        assert_eq!(qa.common().rate_limit, Some(TESTRAIL_RATE));
        let ConnectorConfig::Testrail(t) = qa else {
            panic!()
        };
        assert_eq!(
            (t.status.failed, t.status.skipped, t.batch_size),
            (5, None, 100)
        );
    }

    #[test]
    fn connector_errors_name_their_key() {
        let text = r#"
[network]
allow = ["10.0.0.0/33"]

[connectors.qa]
kind = "testrail"
url = "http://acme.testrail.io"
user = ""
api_key = { secret = "tr" }
project_id = 1
run_id = 2
plan_id = 3
batch_size = 0
rate_limit = { per_minute = 0 }

[connectors.jira]
kind = "jira"
url = "https://acme.atlassian.net"
deployment = "cloud"
token = { secret = "jira" }
project_key = "shop"
[connectors.jira.xray]

[connectors.chat]
kind = "slack"
token = { env = "SLACK_TOKEN" }

[connectors.pager]
kind = "pagerduty"
routing_key = { secret = "pd" }
severity = { failed = "sev1" }
timeout_ms = 60000
"#;
        let e = Config::from_toml(text, "t.toml").unwrap_err();
        let all = e.to_string();
        for expected in [
            "network.allow[0]: \"10.0.0.0/33\": the prefix length must be 0 to 32",
            "connectors.qa.url: plain http is refused",
            "connectors.qa.run_id, plan_id: set one or neither",
            "connectors.qa.batch_size: must be between 1 and 1000",
            "connectors.qa.user: must be the account's email",
            "connectors.qa.rate_limit: per_minute must be at least 1",
            "connectors.jira.email: Jira Cloud authenticates with email + API token",
            "connectors.jira.project_key: must be a Jira project key",
            "connectors.jira.xray: Xray Cloud needs client_id and client_secret",
            "connectors.chat.set token and channel, or webhook_url",
            "connectors.pager.severity.failed: must be one of critical, error, warning, info",
            "connectors.pager.timeout_ms: must be between 1 and 30000",
        ] {
            assert!(all.contains(expected), "missing {expected:?} in:\n{all}");
        }
        assert_eq!(e.0.len(), 12, "{all}");
        // A misspelt key names its line; a missing one its table's.
        let text = "[server]\nlisten = \"127.0.0.1:1\"\n\n[connectors.x]\nkind = \"slack\"\nchanel = \"C1\"\n\n[connectors.y]\nkind = \"teams\"\n";
        let e = Config::from_toml(text, "t.toml").unwrap_err().to_string();
        assert!(
            e.contains("t.toml: line 6: connectors.x: unknown field `chanel`"),
            "{e}"
        );
        let text = "[connectors.y]\nkind = \"teams\"\nmax_failures = 3\n";
        let e = Config::from_toml(text, "t.toml").unwrap_err().to_string();
        assert!(
            e.contains("t.toml: line 1: connectors.y: missing field `url`"),
            "{e}"
        );
    }

    #[test]
    fn hook_sources_are_validated() {
        let text = r#"
[projects.web]

[hooks.GitHub]
scheme = "hmac"
secrets = []
project = "api"
tolerance_s = 0
"#;
        let e = Config::from_toml(text, "t.toml").unwrap_err().to_string();
        for expected in [
            "hooks.GitHub: a source name is 1-64 of a-z, 0-9, - and _",
            "hooks.GitHub.secrets: list 1 to 5 secrets",
            "hooks.GitHub.project: unknown project \"api\"",
            "hooks.GitHub.tolerance_s: must be between 1 and 3600",
            "hooks.GitHub.hmac: set [hooks.GitHub.hmac] exactly when scheme = \"hmac\"",
        ] {
            assert!(e.contains(expected), "missing {expected:?} in:\n{e}");
        }
        let e = Config::from_toml(
            "[projects.web]\n[hooks.gh]\nscheme = \"gitlab\"\nsecrets = [{ env = \"X\" }]\nproject = \"web\"\n",
            "t.toml",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("t.toml: line 3") && e.contains("gitlab"), "{e}");
    }

    #[test]
    fn key_hash_is_sha256_hex() {
        assert_eq!(
            hash_api_key("test"),
            "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
        );
    }
}
