//! Connector settings, one table per kind (`[connectors.<name>] kind = "..."`), and their
//! validation. Credentials are secret references; URLs that embed a token (Teams workflow,
//! Slack incoming webhook) are secrets too.

use super::channels::DATADOG_SITES;
use super::{SecretRef, check_url};
use crate::delivery::breaker::BreakerConfig;
use crate::ids::ConnectorName;
use serde::Deserialize;

/// A token bucket per target: `per_minute` requests on average, up to `burst` at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimit {
    pub per_minute: u32,
    #[serde(default = "one")]
    pub burst: u32,
}

fn one() -> u32 {
    1
}

impl RateLimit {
    pub const fn new(per_minute: u32, burst: u32) -> Self {
        RateLimit { per_minute, burst }
    }

    /// This limit's share for one of `instances` processes that each hold a bucket (Lambda
    /// instances of one delivery function): together they stay within it. Never below one
    /// request a minute and a burst of one.
    pub fn shared_by(self, instances: u32) -> Self {
        let n = instances.max(1);
        RateLimit {
            per_minute: (self.per_minute / n).max(1),
            burst: (self.burst / n).max(1),
        }
    }

    fn problems(&self) -> Vec<String> {
        let mut p = Vec::new();
        if self.per_minute == 0 {
            p.push("per_minute must be at least 1".into());
        }
        if self.burst == 0 {
            p.push("burst must be at least 1".into());
        }
        p
    }
}

pub(super) fn default_timeout() -> u64 {
    10_000
}

/// A connector kind's settings struct: its own fields, then the settings every connector
/// has (read through [`super::ConnectorConfig::common`]), written once here.
macro_rules! connector_config {
    (pub struct $name:ident { $($fields:tt)* }) => {
        #[derive(Debug, Clone, serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        pub struct $name {
            $($fields)*
            /// Per-request timeout, 1-30000 ms.
            #[serde(default = "crate::config::connectors::default_timeout")]
            pub timeout_ms: u64,
            /// Circuit-breaker settings for the connector's target
            /// (`[connectors.<name>.breaker]`).
            #[serde(default)]
            pub breaker: crate::delivery::breaker::BreakerConfig,
            /// The vendor's documented limit unless configured (webhooks: none).
            #[serde(default)]
            pub rate_limit: Option<crate::config::RateLimit>,
            /// Another connector that hears, once per run, when this one's delivery of the
            /// run fails for good (dead-lettered) or has waited `fallback_after_minutes` on
            /// an open circuit breaker.
            #[serde(default)]
            pub fallback: Option<crate::ids::ConnectorName>,
            #[serde(default = "crate::config::connectors::default_fallback_after")]
            pub fallback_after_minutes: u64,
        }
    };
}
pub(super) use connector_config;

/// What every connector has besides its vendor settings.
pub struct Common<'a> {
    pub timeout_ms: u64,
    pub breaker: &'a BreakerConfig,
    pub rate_limit: Option<RateLimit>,
    pub fallback: Option<&'a ConnectorName>,
    pub fallback_after_minutes: u64,
}

connector_config! {
    pub struct WebhookConfig {
        pub url: String,
        /// A Standard Webhooks secret, `whsec_<base64>`.
        pub secret: SecretRef,
        /// Plain `http://` is refused unless this is set (local receivers, tests).
        #[serde(default)]
        pub allow_http: bool,
        /// The health check GETs this URL (any answer below 500 is healthy) instead of posting
        /// a signed `ping` event to `url`.
        #[serde(default)]
        pub probe_url: Option<String>,
        /// Also send a `run.completed` event for each part of a CI pipeline (by default only
        /// the pipeline's `pipeline.completed` / `pipeline.updated`).
        #[serde(default)]
        pub parts: bool,
    }
}

/// TestRail's documented throttle on Cloud Professional is about 180 requests a minute.
pub const TESTRAIL_RATE: RateLimit = RateLimit::new(180, 10);

connector_config! {
    pub struct TestRailConfig {
        /// The instance, e.g. `https://acme.testrail.io`.
        pub url: String,
        /// The account's email.
        pub user: String,
        /// An API key (My Settings -> API Keys) or the password.
        pub api_key: SecretRef,
        pub project_id: u64,
        /// Required when the project has several suites (suite_mode 3).
        #[serde(default)]
        pub suite_id: Option<u64>,
        /// Add results to this existing run (its case list is extended) instead of creating one.
        #[serde(default)]
        pub run_id: Option<u64>,
        /// Create each run as an entry of this test plan.
        #[serde(default)]
        pub plan_id: Option<u64>,
        #[serde(default)]
        pub milestone_id: Option<u64>,
        /// Name of created runs; `{project}`, `{branch}`, `{commit}`, `{environment}`, `{run_id}`
        /// are filled in.
        #[serde(default = "default_testrail_run_name")]
        pub run_name: String,
        /// Close created runs once their results are in (cannot be undone in TestRail).
        #[serde(default)]
        pub close_run: bool,
        #[serde(default)]
        pub status: TestRailStatusMap,
        /// Results per `add_results_for_cases` call.
        #[serde(default = "default_batch")]
        pub batch_size: usize,
        /// How a test finds its case: `name` (a case id in the test's name or its `test_id`
        /// property) or `automation_id` (the case whose automation id field equals the test's
        /// `classname.name`, as TestRail's own CLI matches by default).
        #[serde(default)]
        pub case_matcher: CaseMatcher,
        /// The case field holding the automation id.
        #[serde(default = "default_automation_id_field")]
        pub automation_id_field: String,
        /// Opt-in: tests without a case are created as cases in this section, carrying their
        /// automation id so the next run matches them (`case_matcher = "automation_id"` only).
        #[serde(default)]
        pub create_cases_in_section: Option<u64>,
        #[serde(default)]
        pub allow_http: bool,
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CaseMatcher {
    #[default]
    Name,
    AutomationId,
}

fn default_automation_id_field() -> String {
    "custom_automation_id".into()
}

fn default_testrail_run_name() -> String {
    "{project} {branch} {commit}".into()
}
fn default_batch() -> usize {
    100
}

/// TestRail `status_id` per outcome. Skipped tests are not posted unless `skipped` is set
/// (4 = Retest is what the popular CLI uses); flaky tests are posted as `flaky` (passed by
/// default) with a comment saying they needed retries.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TestRailStatusMap {
    #[serde(default = "st_passed")]
    pub passed: u32,
    #[serde(default = "st_failed")]
    pub failed: u32,
    #[serde(default = "st_failed")]
    pub error: u32,
    #[serde(default)]
    pub skipped: Option<u32>,
    #[serde(default = "st_passed")]
    pub flaky: u32,
}

fn st_passed() -> u32 {
    1
}
fn st_failed() -> u32 {
    5
}

impl Default for TestRailStatusMap {
    fn default() -> Self {
        TestRailStatusMap {
            passed: 1,
            failed: 5,
            error: 5,
            skipped: None,
            flaky: 1,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JiraDeployment {
    /// Atlassian Cloud: Basic `email:api_token`; Xray Cloud.
    Cloud,
    /// Jira Server / Data Center: Bearer personal access token; Xray Server/DC.
    DataCenter,
}

pub const JIRA_RATE: RateLimit = RateLimit::new(100, 10);

connector_config! {
    pub struct JiraConfig {
        /// e.g. `https://acme.atlassian.net` or `https://jira.acme.internal`.
        pub url: String,
        pub deployment: JiraDeployment,
        /// The account's email (Cloud only).
        #[serde(default)]
        pub email: Option<String>,
        /// API token (Cloud) or personal access token (Data Center).
        pub token: SecretRef,
        pub project_key: String,
        /// Import each run into Xray as a Test Execution.
        #[serde(default)]
        pub xray: Option<XrayConfig>,
        /// Open a bug per failing test (one per fingerprint, ever; later runs comment).
        #[serde(default)]
        pub bugs: Option<BugsConfig>,
        #[serde(default)]
        pub allow_http: bool,
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct XrayConfig {
    /// Xray Cloud API key (Cloud only).
    #[serde(default)]
    pub client_id: Option<SecretRef>,
    #[serde(default)]
    pub client_secret: Option<SecretRef>,
    /// Xray Cloud's base URL (Cloud only).
    #[serde(default = "default_xray_url")]
    pub url: String,
    #[serde(default)]
    pub test_plan_key: Option<String>,
    #[serde(default)]
    pub environments: Vec<String>,
    /// The Jira issue type testrelay creates the Test Execution as.
    #[serde(default = "default_exec_type")]
    pub execution_issue_type: String,
    /// The issue type of Xray tests: test keys of other issues are not imported.
    #[serde(default = "default_test_type")]
    pub test_issue_type: String,
    /// Opt-in: tests without a test key are imported with `testInfo` (a Generic test whose
    /// definition is `classname.name`), so Xray creates each once and matches it after, as
    /// its own JUnit import does.
    #[serde(default)]
    pub create_tests: bool,
    /// Xray Cloud's own limit, apart from Jira's: 300 requests per 5 minutes on the lower
    /// licence tiers (1000 on the higher) unless configured.
    #[serde(default)]
    pub rate_limit: Option<RateLimit>,
}

/// Xray Cloud's limit on the lower licence tiers: 300 requests per 5 minutes.
pub const XRAY_RATE: RateLimit = RateLimit::new(60, 10);

fn default_test_type() -> String {
    "Test".into()
}

fn default_xray_url() -> String {
    "https://xray.cloud.getxray.app".into()
}
fn default_exec_type() -> String {
    "Test Execution".into()
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BugsConfig {
    #[serde(default = "default_bug_type")]
    pub issue_type: String,
    #[serde(default)]
    pub labels: Vec<String>,
    #[serde(default)]
    pub priority: Option<String>,
    /// Bugs opened per run at most; the rest are listed in the last one's comment.
    #[serde(default = "default_max_bugs")]
    pub max_per_run: usize,
    /// `new_failures` (default): bugs for failures that are new against the run's base
    /// (still failing, flaky and quarantined ones file nothing); `failures`: every failure.
    #[serde(default)]
    pub file_for: FileFor,
    /// Comment "passing again in <run>" on the bug of a test the run fixed.
    #[serde(default = "yes")]
    pub comment_when_fixed: bool,
    /// A new failure whose bug is Done: `reopen` it (default) or file a `new_linked` bug
    /// that relates to it.
    #[serde(default)]
    pub on_regression: OnRegression,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FileFor {
    #[default]
    NewFailures,
    Failures,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnRegression {
    #[default]
    Reopen,
    NewLinked,
}

fn default_bug_type() -> String {
    "Bug".into()
}
fn default_max_bugs() -> usize {
    10
}

/// Slack allows about one message a second per channel.
pub const SLACK_RATE: RateLimit = RateLimit::new(60, 3);

connector_config! {
    pub struct SlackConfig {
        /// Bot token (`xoxb-...`) for `chat.postMessage` / `chat.update`.
        #[serde(default)]
        pub token: Option<SecretRef>,
        /// Channel id (`C0123...`) with `token`.
        #[serde(default)]
        pub channel: Option<String>,
        /// Incoming-webhook URL instead of a token (no updates: a re-send posts again).
        #[serde(default)]
        pub webhook_url: Option<SecretRef>,
        #[serde(default = "default_slack_api")]
        pub api_url: String,
        /// Failures listed in the message before "+N more".
        #[serde(default = "default_max_failures")]
        pub max_failures: usize,
        #[serde(default)]
        pub allow_http: bool,
        /// `conversations.history` (the lookup that keeps a retried post exactly once) has its
        /// own, far lower limit: 1 request a minute for apps distributed outside the Slack
        /// Marketplace, unless configured (internal custom apps keep about 50).
        #[serde(default)]
        pub history_rate_limit: Option<RateLimit>,
        /// Thread mode (bot token only): the message is the summary (what changed, counts,
        /// links) and the failures, new ones first, are a reply in its thread.
        #[serde(default)]
        pub thread: bool,
    }
}

/// `conversations.history` for apps outside the Marketplace (2025+): 1 request a minute,
/// 15 messages a page.
pub const SLACK_HISTORY_RATE: RateLimit = RateLimit::new(1, 1);

fn default_slack_api() -> String {
    "https://slack.com/api".into()
}
pub(super) fn default_max_failures() -> usize {
    10
}

pub(super) fn default_fallback_after() -> u64 {
    60
}

/// PagerDuty documents about 120 events a minute per routing key.
pub const PAGERDUTY_RATE: RateLimit = RateLimit::new(120, 10);

connector_config! {
    pub struct PagerDutyConfig {
        /// The integration's routing key (Events API v2).
        pub routing_key: SecretRef,
        #[serde(default = "default_pd_url")]
        pub url: String,
        /// `{project}`, `{branch}`, `{suite}`, `{environment}` are filled in; at most 255 chars.
        #[serde(default = "default_dedup")]
        pub dedup_key: String,
        /// What `{suite}` stands for (a name for this set of tests).
        #[serde(default = "default_suite")]
        pub suite: String,
        #[serde(default)]
        pub severity: Severity,
        /// Resolve the incident when a later run with the same dedup key passes (with
        /// `trigger_on = "new_failures"`: when none of the failures it was opened for fails).
        #[serde(default = "yes")]
        pub resolve: bool,
        /// `new_failures` (default): trigger for failures not failing on the run's base, resolve
        /// when nothing new or still failing is left (flaky and quarantined tests neither open
        /// nor hold an incident); `failure`: trigger on any failed run, resolve on a passing one.
        #[serde(default)]
        pub trigger_on: TriggerOn,
        #[serde(default)]
        pub allow_http: bool,
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TriggerOn {
    #[default]
    NewFailures,
    Failure,
}

fn default_pd_url() -> String {
    "https://events.pagerduty.com".into()
}
fn default_dedup() -> String {
    "{project}:{branch}:{suite}".into()
}
fn default_suite() -> String {
    "tests".into()
}
pub(super) fn yes() -> bool {
    true
}

/// PagerDuty severity of a failed run: `failed` when only assertions failed, `errored`
/// when tests could not run (errors, crashes).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Severity {
    #[serde(default = "sev_error")]
    pub failed: String,
    #[serde(default = "sev_critical")]
    pub errored: String,
}

fn sev_error() -> String {
    "error".into()
}
fn sev_critical() -> String {
    "critical".into()
}

impl Default for Severity {
    fn default() -> Self {
        Severity {
            failed: sev_error(),
            errored: sev_critical(),
        }
    }
}

const SEVERITIES: [&str; 4] = ["critical", "error", "warning", "info"];

/// Problems with one connector's settings, each prefixed with the key it is about.
pub(super) fn problems(cfg: &super::ConnectorConfig) -> Vec<String> {
    use super::ConnectorConfig as C;
    let mut p = Vec::new();
    let mut url = |key: &str, raw: &str, allow_http: bool| {
        if let Err(e) = check_url(raw, allow_http) {
            p.push(format!("{key}: {e}"));
        }
    };
    match cfg {
        C::Webhook(w) => {
            url("url", &w.url, w.allow_http);
            if let Some(p) = &w.probe_url {
                url("probe_url", p, w.allow_http);
            }
        }
        C::Testrail(t) => url("url", &t.url, t.allow_http),
        C::Jira(j) => {
            url("url", &j.url, j.allow_http);
            if let Some(x) = &j.xray
                && j.deployment == JiraDeployment::Cloud
            {
                url("xray.url", &x.url, j.allow_http);
            }
        }
        C::Slack(s) => url("api_url", &s.api_url, s.allow_http),
        C::Pagerduty(d) => url("url", &d.url, d.allow_http),
        C::Datadog(d) => {
            if let Some(u) = &d.api_url {
                url("api_url", u, d.allow_http);
            }
        }
        C::Teams(_) | C::Discord(_) | C::Email(_) => {}
    }
    match cfg {
        C::Testrail(t) => {
            if t.run_id.is_some() && t.plan_id.is_some() {
                p.push("run_id, plan_id: set one or neither (neither creates a run)".into());
            }
            if t.create_cases_in_section.is_some() && t.case_matcher != CaseMatcher::AutomationId {
                p.push(
                    "create_cases_in_section: needs case_matcher = \"automation_id\" (a created case is found again by its automation id)"
                        .into(),
                );
            }
            if !t.automation_id_field.starts_with("custom_") {
                p.push(format!(
                    "automation_id_field: {:?} is not a custom case field (they start with custom_)",
                    t.automation_id_field
                ));
            }
            if t.plan_id.is_some() && t.suite_id.is_none() {
                p.push(
                    "suite_id: required with plan_id (TestRail's add_plan_entry refuses an entry without it)"
                        .into(),
                );
            }
            if t.batch_size == 0 || t.batch_size > 1000 {
                p.push("batch_size: must be between 1 and 1000".into());
            }
            if t.user.trim().is_empty() {
                p.push("user: must be the account's email".into());
            }
        }
        C::Jira(j) => {
            if j.deployment == JiraDeployment::Cloud && j.email.is_none() {
                p.push("email: Jira Cloud authenticates with email + API token".into());
            }
            if j.project_key.is_empty()
                || !j
                    .project_key
                    .bytes()
                    .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_')
            {
                p.push("project_key: must be a Jira project key such as PROJ".into());
            }
            if let Some(x) = &j.xray
                && j.deployment == JiraDeployment::Cloud
                && (x.client_id.is_none() || x.client_secret.is_none())
            {
                p.push(
                    "xray: Xray Cloud needs client_id and client_secret (an Xray API key)".into(),
                );
            }
            if j.xray.is_none() && j.bugs.is_none() {
                p.push("set [xray], [bugs] or both: otherwise there is nothing to do".into());
            }
        }
        C::Slack(s) => {
            match (&s.token, &s.channel, &s.webhook_url) {
                (Some(_), Some(_), None) | (None, None, Some(_)) => {}
                _ => p.push("set token and channel, or webhook_url (not both)".into()),
            }
            if s.thread && s.webhook_url.is_some() {
                p.push("thread: needs token and channel (an incoming webhook cannot reply in a thread)".into());
            }
        }
        C::Pagerduty(d) => {
            for (k, v) in [
                ("severity.failed", &d.severity.failed),
                ("severity.errored", &d.severity.errored),
            ] {
                if !SEVERITIES.contains(&v.as_str()) {
                    p.push(format!("{k}: must be one of {}", SEVERITIES.join(", ")));
                }
            }
            if d.dedup_key.is_empty() || d.dedup_key.len() > 200 {
                p.push("dedup_key: must be 1 to 200 characters before filling in".into());
            }
        }
        C::Discord(d) => {
            if d.max_failures == 0 || d.max_failures > 100 {
                p.push("max_failures: must be 1 to 100".into());
            }
            if let Some(u) = &d.username
                && (u.is_empty() || u.chars().count() > 80 || u.to_lowercase().contains("discord"))
            {
                p.push(
                    "username: 1 to 80 characters, without \"discord\" (Discord refuses it)".into(),
                );
            }
        }
        C::Datadog(d) => {
            if !DATADOG_SITES.contains(&d.site.as_str()) {
                p.push(format!("site: must be one of {}", DATADOG_SITES.join(", ")));
            }
            for t in &d.tags {
                if t.is_empty() || t.len() > 200 {
                    p.push(format!("tags: {t:?} must be 1 to 200 characters"));
                }
            }
            if d.tags.len() > 20 {
                p.push("tags: at most 20".into());
            }
        }
        C::Email(e) => p.extend(super::email::problems(e)),
        C::Webhook(_) | C::Teams(_) => {}
    }
    let common = cfg.common();
    if common.timeout_ms == 0 || common.timeout_ms > 30_000 {
        p.push("timeout_ms: must be between 1 and 30000".into());
    }
    for b in common.breaker.problems() {
        p.push(format!("breaker: {b}"));
    }
    if let Some(r) = common.rate_limit {
        for e in r.problems() {
            p.push(format!("rate_limit: {e}"));
        }
    }
    let other_limits = match cfg {
        C::Slack(s) => vec![("history_rate_limit", s.history_rate_limit)],
        C::Jira(j) => vec![(
            "xray.rate_limit",
            j.xray.as_ref().and_then(|x| x.rate_limit),
        )],
        _ => vec![],
    };
    for (key, limit) in other_limits {
        for e in limit.iter().flat_map(|r| r.problems()) {
            p.push(format!("{key}: {e}"));
        }
    }
    p
}
