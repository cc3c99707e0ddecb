//! The configuration of the connectors that post a message per run where a team reads it:
//! Microsoft Teams, Discord, Datadog.

use super::SecretRef;
use super::connectors::connector_config;
use super::connectors::{RateLimit, default_max_failures, yes};

pub const TEAMS_RATE: RateLimit = RateLimit::new(60, 5);

connector_config! {
    pub struct TeamsConfig {
        /// The Workflows webhook URL (it carries a signature: keep it secret).
        pub url: SecretRef,
        #[serde(default = "default_max_failures")]
        pub max_failures: usize,
        #[serde(default)]
        pub allow_http: bool,
    }
}

/// Discord allows a webhook about 5 requests per 2 seconds and a channel about 30 messages
/// a minute.
pub const DISCORD_RATE: RateLimit = RateLimit::new(30, 5);

connector_config! {
    pub struct DiscordConfig {
        /// The webhook URL, `https://discord.com/api/webhooks/<id>/<token>` (the token is in it:
        /// keep it secret).
        pub url: SecretRef,
        #[serde(default = "default_max_failures")]
        pub max_failures: usize,
        /// The name the messages are posted under (the webhook's own when absent).
        #[serde(default)]
        pub username: Option<String>,
        #[serde(default)]
        pub allow_http: bool,
    }
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

connector_config! {
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
        #[serde(default)]
        pub allow_http: bool,
    }
}

fn default_datadog_site() -> String {
    "datadoghq.com".into()
}
