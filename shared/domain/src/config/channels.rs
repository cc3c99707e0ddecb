//! The configuration of the connectors that post a message per run where a team reads it:
//! Microsoft Teams, Discord, Datadog.

use super::SecretRef;
use super::connectors::{
    RateLimit, default_fallback_after, default_max_failures, default_timeout, yes,
};
use crate::delivery::breaker::BreakerConfig;
use crate::ids::ConnectorName;
use serde::Deserialize;

pub const TEAMS_RATE: RateLimit = RateLimit::new(60, 5);

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TeamsConfig {
    /// The Workflows webhook URL (it carries a signature: keep it secret).
    pub url: SecretRef,
    #[serde(default = "default_max_failures")]
    pub max_failures: usize,
    #[serde(default = "default_timeout")]
    pub timeout_ms: u64,
    #[serde(default)]
    pub allow_http: bool,
    #[serde(default)]
    pub breaker: BreakerConfig,
    #[serde(default)]
    pub rate_limit: Option<RateLimit>,
    /// Another connector that hears, once per run, when this one's delivery of the run
    /// fails for good (dead-lettered) or has waited `fallback_after_minutes` on an open
    /// circuit breaker.
    #[serde(default)]
    pub fallback: Option<ConnectorName>,
    #[serde(default = "default_fallback_after")]
    pub fallback_after_minutes: u64,
}

/// Discord allows a webhook about 5 requests per 2 seconds and a channel about 30 messages
/// a minute.
pub const DISCORD_RATE: RateLimit = RateLimit::new(30, 5);

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DiscordConfig {
    /// The webhook URL, `https://discord.com/api/webhooks/<id>/<token>` (the token is in it:
    /// keep it secret).
    pub url: SecretRef,
    #[serde(default = "default_max_failures")]
    pub max_failures: usize,
    /// The name the messages are posted under (the webhook's own when absent).
    #[serde(default)]
    pub username: Option<String>,
    #[serde(default = "default_timeout")]
    pub timeout_ms: u64,
    #[serde(default)]
    pub allow_http: bool,
    #[serde(default)]
    pub breaker: BreakerConfig,
    #[serde(default)]
    pub rate_limit: Option<RateLimit>,
    /// Another connector that hears, once per run, when this one's delivery of the run
    /// fails for good (dead-lettered) or has waited `fallback_after_minutes` on an open
    /// circuit breaker.
    #[serde(default)]
    pub fallback: Option<ConnectorName>,
    #[serde(default = "default_fallback_after")]
    pub fallback_after_minutes: u64,
}

/// Datadog's event intake allows far more; this keeps a run's event and series well inside
/// it (each run makes two calls).
pub const DATADOG_RATE: RateLimit = RateLimit::new(300, 30);

/// The Datadog sites: `datadoghq.com` (US1), `us3.datadoghq.com`, `us5.datadoghq.com`,
/// `datadoghq.eu`, `ap1.datadoghq.com`, `ap2.datadoghq.com`, `ddog-gov.com`.
pub const DATADOG_SITES: [&str; 7] = [
    "datadoghq.com",
    "us3.datadoghq.com",
    "us5.datadoghq.com",
    "datadoghq.eu",
    "ap1.datadoghq.com",
    "ap2.datadoghq.com",
    "ddog-gov.com",
];

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatadogConfig {
    /// The API key (`DD-API-KEY`).
    pub api_key: SecretRef,
    /// One of [`DATADOG_SITES`]; the API is `https://api.<site>`.
    #[serde(default = "default_datadog_site")]
    pub site: String,
    /// Instead of the site's API (a proxy, or a test double).
    #[serde(default)]
    pub api_url: Option<String>,
    /// Failures listed in the event's text.
    #[serde(default = "default_max_failures")]
    pub max_failures: usize,
    /// Also send the run's counts as metrics (`testrelay.tests.*`), for graphs per branch.
    #[serde(default = "yes")]
    pub metrics: bool,
    /// More tags on the event and the series (`team:web`).
    #[serde(default)]
    pub tags: Vec<String>,
    #[serde(default = "default_timeout")]
    pub timeout_ms: u64,
    #[serde(default)]
    pub allow_http: bool,
    #[serde(default)]
    pub breaker: BreakerConfig,
    #[serde(default)]
    pub rate_limit: Option<RateLimit>,
    /// Another connector that hears, once per run, when this one's delivery of the run
    /// fails for good (dead-lettered) or has waited `fallback_after_minutes` on an open
    /// circuit breaker.
    #[serde(default)]
    pub fallback: Option<ConnectorName>,
    #[serde(default = "default_fallback_after")]
    pub fallback_after_minutes: u64,
}

fn default_datadog_site() -> String {
    "datadoghq.com".into()
}
