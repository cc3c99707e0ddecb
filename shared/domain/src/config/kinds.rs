//! The connectors' configuration by kind, and the kinds: each kind is a deploy unit (its own
//! queue and delivery function on AWS).

use super::channels::*;
use super::connectors::*;
use super::email::*;
use serde::Deserialize;

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
    /// Discord: an embed message through a channel webhook, edited on redrive.
    Discord(DiscordConfig),
    /// Datadog: an event per run (Events API) and its counts as metrics (series API).
    Datadog(DatadogConfig),
    /// Email: a message per run through an SMTP relay, or Amazon SES on AWS.
    Email(EmailConfig),
}

impl ConnectorConfig {
    /// Whether it gets each part of a CI pipeline: the kinds that build one result from the
    /// parts (Jira only for Xray: bugs are filed from the merged result), and webhooks that
    /// ask for them (`parts = true`).
    pub fn takes_parts(&self) -> bool {
        match self {
            ConnectorConfig::Webhook(w) => w.parts,
            ConnectorConfig::Jira(j) => j.xray.is_some(),
            other => other.kind().builds_from_parts(),
        }
    }

    pub fn kind(&self) -> ConnectorKind {
        match self {
            ConnectorConfig::Webhook(_) => ConnectorKind::Webhook,
            ConnectorConfig::Testrail(_) => ConnectorKind::Testrail,
            ConnectorConfig::Jira(_) => ConnectorKind::Jira,
            ConnectorConfig::Slack(_) => ConnectorKind::Slack,
            ConnectorConfig::Teams(_) => ConnectorKind::Teams,
            ConnectorConfig::Pagerduty(_) => ConnectorKind::Pagerduty,
            ConnectorConfig::Discord(_) => ConnectorKind::Discord,
            ConnectorConfig::Datadog(_) => ConnectorKind::Datadog,
            ConnectorConfig::Email(_) => ConnectorKind::Email,
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
                    fallback: $c.fallback.as_ref(),
                    fallback_after_minutes: $c.fallback_after_minutes,
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
            ConnectorConfig::Discord(c) => common!(c, Some(DISCORD_RATE)),
            ConnectorConfig::Datadog(c) => common!(c, Some(DATADOG_RATE)),
            ConnectorConfig::Email(c) => common!(c, Some(EMAIL_RATE)),
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
    Discord,
    Datadog,
    Email,
}

impl ConnectorKind {
    pub const ALL: [ConnectorKind; 9] = [
        ConnectorKind::Webhook,
        ConnectorKind::Testrail,
        ConnectorKind::Jira,
        ConnectorKind::Slack,
        ConnectorKind::Teams,
        ConnectorKind::Pagerduty,
        ConnectorKind::Discord,
        ConnectorKind::Datadog,
        ConnectorKind::Email,
    ];

    /// Whether the connector builds one result per pipeline from its parts as they arrive
    /// (one TestRail run, one Xray execution, one Slack message): it gets every part. The
    /// others act once, on the pipeline's merged result.
    pub fn builds_from_parts(self) -> bool {
        matches!(
            self,
            ConnectorKind::Testrail | ConnectorKind::Jira | ConnectorKind::Slack
        )
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ConnectorKind::Webhook => "webhook",
            ConnectorKind::Testrail => "testrail",
            ConnectorKind::Jira => "jira",
            ConnectorKind::Slack => "slack",
            ConnectorKind::Teams => "teams",
            ConnectorKind::Pagerduty => "pagerduty",
            ConnectorKind::Discord => "discord",
            ConnectorKind::Datadog => "datadog",
            ConnectorKind::Email => "email",
        }
    }

    pub fn from_name(s: &str) -> Option<ConnectorKind> {
        ConnectorKind::ALL.into_iter().find(|k| k.as_str() == s)
    }
}
