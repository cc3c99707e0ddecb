//! Connectors: one module per vendor over a shared HTTP layer ([`http::Http`]: SSRF guard,
//! no redirects, per-target rate limits). Each turns a canonical
//! [`TestRun`](testrelay_domain::report::model::TestRun) into the vendor's requests, runs every
//! side effect as an idempotent step, and classifies the answers as success, transient,
//! throttled or permanent.

pub mod answers;
pub mod claim;
pub mod datadog;
pub mod discord;
pub mod email;
pub mod http;
pub mod jira;
pub mod pagerduty;
pub mod ratelimit;
pub mod slack;
pub mod teams;
pub mod testrail;
pub mod webhook;

use http::{Http, Limit};
use secrecy::SecretString;
use std::sync::Arc;
use std::time::Duration;
use testrelay_domain::config::{
    Config, ConnectorConfig, ConnectorKind, SecretRef, address_of, check_url,
};
use testrelay_domain::delivery::Connectors;
use testrelay_domain::delivery::breaker::BreakerConfig;
use testrelay_domain::delivery::net::AddressPolicy;
use testrelay_domain::ids::ConnectorName;
use testrelay_domain::ports::{
    Clock, Connector, DeliveryError, MailTransport, SecretStore, StateStore, resolve_secret,
};

/// What every connector holds: the shared HTTP layer, its target's rate limit, timeout and
/// breaker settings.
#[derive(Clone)]
pub struct Base {
    pub http: Http,
    pub limit: Limit,
    pub timeout: Duration,
    pub breaker: BreakerConfig,
    /// Whose rules read the answers ([`answers`]).
    pub vendor: answers::Vendor,
}

impl Base {
    pub fn new(http: Http, target: String, cfg: &ConnectorConfig) -> Self {
        let common = cfg.common();
        Base {
            vendor: answers::Vendor::Kind(cfg.kind()),
            http,
            limit: Limit {
                key: target,
                rate: common.rate_limit,
            },
            timeout: Duration::from_millis(common.timeout_ms),
            breaker: common.breaker.clone(),
        }
    }

    /// The circuit-breaker and rate-limit key.
    pub fn target(&self) -> &str {
        &self.limit.key
    }

    pub async fn send(
        &self,
        request: reqwest::RequestBuilder,
    ) -> Result<reqwest::Response, DeliveryError> {
        self.http
            .send(&self.limit, request, self.timeout)
            .await
            .map_err(|e| answers::reclassify(self.vendor, e))
    }
}

/// `kind`, `target` and `breaker` of a connector holding a [`Base`] as `base`.
#[macro_export]
macro_rules! basics {
    ($kind:ident) => {
        fn kind(&self) -> testrelay_domain::config::ConnectorKind {
            testrelay_domain::config::ConnectorKind::$kind
        }

        fn target(&self) -> &str {
            self.base.target()
        }

        fn breaker(&self) -> &testrelay_domain::delivery::breaker::BreakerConfig {
            &self.base.breaker
        }
    };
}

/// What connectors that keep state across runs need (Slack's message per run, Jira's bug
/// per fingerprint, PagerDuty's open incidents).
#[derive(Clone)]
pub struct Env {
    pub http: Http,
    pub state: Arc<dyn StateStore>,
    pub clock: Arc<dyn Clock>,
    /// Amazon SES for email connectors set to `ses` (on AWS; `None` in the local binary).
    pub ses: Option<email::SesTransports>,
}

impl Env {
    pub fn new(config: &Config, state: Arc<dyn StateStore>, clock: Arc<dyn Clock>) -> Self {
        Env {
            http: Http::new(AddressPolicy::new(&config.network.allow)),
            state,
            clock,
            ses: None,
        }
    }

    /// Email connectors set to `ses` send through `ses`.
    pub fn with_ses(mut self, ses: email::SesTransports) -> Self {
        self.ses = Some(ses);
        self
    }

    /// Every target's rate limit shared by `instances` processes (see [`Http::shared_by`]).
    pub fn shared_by(mut self, instances: u32) -> Self {
        self.http = self.http.shared_by(instances);
        self
    }
}

/// `scheme://host:port` of a URL, for target keys (never the path: it may hold a token).
pub fn origin(url: &reqwest::Url) -> String {
    format!(
        "{}://{}:{}",
        url.scheme(),
        url.host_str().unwrap_or(""),
        url.port_or_known_default().unwrap_or(0)
    )
}

/// `s` cut to `max` characters, with `…` when cut: for vendors that count characters, not
/// bytes (Discord, Datadog).
pub fn cut_chars(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    let mut out: String = s.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

/// The first 8 bytes of a SHA-256, in hex: short stable keys for state and steps.
pub fn digest8(s: &str) -> String {
    testrelay_domain::ids::digest16(s)
}

pub fn parse_url(raw: &str, key: &str) -> Result<reqwest::Url, String> {
    reqwest::Url::parse(raw).map_err(|e| format!("{key}: {e}"))
}

/// A URL read from a secret (a webhook URL carrying its token), held to the configuration's
/// rule for URLs ([`check_url`]) when the connector is built, since validation could not
/// see it.
pub fn parse_secret_url(raw: &str, key: &str, allow_http: bool) -> Result<reqwest::Url, String> {
    check_url(raw, allow_http).map_err(|e| format!("{key}: {e}"))?;
    parse_url(raw, key)
}

/// Builds every configured connector, resolving its secrets once (per process, or per Lambda
/// cold start). Errors name the connector and the secret reference, never a value.
pub async fn build(
    config: &Config,
    secrets: &dyn SecretStore,
    env: &Env,
) -> Result<Connectors, String> {
    build_where(config, secrets, env, |_| true).await
}

/// Only the connectors of `kind`, reading only their secrets: a delivery function on
/// Lambda, which may read no other kind's secrets and must not fail on one of them.
pub async fn build_kind(
    config: &Config,
    secrets: &dyn SecretStore,
    env: &Env,
    kind: ConnectorKind,
) -> Result<Connectors, String> {
    build_where(config, secrets, env, |k| k == kind).await
}

async fn build_where(
    config: &Config,
    secrets: &dyn SecretStore,
    env: &Env,
    wanted: impl Fn(ConnectorKind) -> bool,
) -> Result<Connectors, String> {
    let mut out = Connectors::new();
    for (name, cfg) in config.connectors.iter().filter(|(_, c)| wanted(c.kind())) {
        let connector = build_one(name, cfg, secrets, env)
            .await
            .map_err(|e| format!("connectors.{name}.{e}"))?;
        out.insert(name.clone(), connector);
    }
    Ok(out)
}

async fn secret(
    key: &str,
    reference: &SecretRef,
    secrets: &dyn SecretStore,
) -> Result<SecretString, String> {
    resolve_secret(reference, secrets)
        .await
        .map_err(|e| format!("{key} ({reference}): {e}"))
}

async fn build_one(
    name: &ConnectorName,
    cfg: &ConnectorConfig,
    secrets: &dyn SecretStore,
    env: &Env,
) -> Result<Arc<dyn Connector>, String> {
    Ok(match cfg {
        ConnectorConfig::Webhook(w) => {
            let s = secret("secret", &w.secret, secrets).await?;
            Arc::new(webhook::WebhookConnector::new(name, cfg, w, &s, env)?)
        }
        ConnectorConfig::Testrail(t) => {
            let key = secret("api_key", &t.api_key, secrets).await?;
            Arc::new(testrail::TestRail::new(name, cfg, t, key, env)?)
        }
        ConnectorConfig::Jira(j) => {
            let token = secret("token", &j.token, secrets).await?;
            let xray = match &j.xray {
                Some(x) => match (&x.client_id, &x.client_secret) {
                    (Some(id), Some(sec)) => Some((
                        secret("xray.client_id", id, secrets).await?,
                        secret("xray.client_secret", sec, secrets).await?,
                    )),
                    _ => None,
                },
                None => None,
            };
            Arc::new(jira::Jira::new(name, cfg, j, token, xray, env)?)
        }
        ConnectorConfig::Slack(s) => {
            let auth = match (&s.token, &s.webhook_url) {
                (Some(t), _) => slack::Auth::Token(secret("token", t, secrets).await?),
                (None, Some(u)) => slack::Auth::Webhook(secret("webhook_url", u, secrets).await?),
                (None, None) => return Err("token: not set".into()),
            };
            Arc::new(slack::Slack::new(cfg, s, auth, env)?)
        }
        ConnectorConfig::Teams(t) => {
            let url = secret("url", &t.url, secrets).await?;
            Arc::new(teams::Teams::new(cfg, t, &url, env)?)
        }
        ConnectorConfig::Pagerduty(p) => {
            let key = secret("routing_key", &p.routing_key, secrets).await?;
            Arc::new(pagerduty::PagerDuty::new(name, cfg, p, key, env)?)
        }
        ConnectorConfig::Discord(d) => {
            let url = secret("url", &d.url, secrets).await?;
            Arc::new(discord::Discord::new(cfg, d, &url, env)?)
        }
        ConnectorConfig::Datadog(d) => {
            let key = secret("api_key", &d.api_key, secrets).await?;
            Arc::new(datadog::Datadog::new(cfg, d, key, env)?)
        }
        ConnectorConfig::Email(e) => {
            let transport: Arc<dyn MailTransport> = match (&e.smtp, &e.ses) {
                (Some(s), _) => {
                    let password = match &s.password {
                        Some(p) => Some(secret("smtp.password", p, secrets).await?),
                        None => None,
                    };
                    let timeout = Duration::from_millis(e.timeout_ms);
                    Arc::new(email::smtp::Smtp::new(
                        s,
                        password,
                        env.http.clone(),
                        timeout,
                    )?)
                }
                (None, Some(s)) => match &env.ses {
                    Some(ses) => ses(s, address_of(&e.from).unwrap_or(&e.from)),
                    None => {
                        return Err("ses: Amazon SES is only available where testrelay runs on AWS; use smtp here".into());
                    }
                },
                (None, None) => return Err("smtp: not set (set smtp or ses)".into()),
            };
            Arc::new(email::Email::new(name, cfg, e, transport, env)?)
        }
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_secret_url_is_held_to_the_config_rule_without_being_repeated() {
        let e =
            super::parse_secret_url("http://hooks.example.com/t/s3cr3t", "url", false).unwrap_err();
        assert_eq!(
            e,
            "url: plain http is refused; use https or set allow_http = true"
        );
        assert!(super::parse_secret_url("http://hooks.example.com/t/s3cr3t", "url", true).is_ok());
        let e = super::parse_secret_url("file:///etc/s3cr3t", "url", true).unwrap_err();
        assert!(
            e.starts_with("url: unsupported scheme") && !e.contains("s3cr3t"),
            "{e}"
        );
    }
}
