//! Datadog: each run as an event (`POST /api/v1/events`: the intake with `alert_type` that
//! takes the `DD-API-KEY` alone) and its counts as metrics (`POST /api/v2/series`), tagged
//! `project:`, `branch:`, `env:` (and the configured tags), so a team can graph pass rate per
//! branch and see failing runs in its event stream.
//!
//! The event: a title of at most 100 characters, a text of at most 4,000 (the summary, what
//! changed, the first failures, new ones first, a link to the run), `alert_type` from the
//! outcome, and an `aggregation_key` derived from the project, branch and pipeline (or run),
//! so a pipeline's updates group under one rollup.
//!
//! Exactly once: Datadog's intake has no idempotency key and nothing to look events up by a
//! marker in time, so a retry that cannot know whether the event went through (a crash after
//! the call, a timeout) may send it again: with the same aggregation key and the run's tag
//! (`testrelay_run:<id>`), a duplicate groups with the first instead of piling up (README
//! states this, as for Teams). The series are gauges at the run's time: sent again, they
//! replace the same points.

use crate::cut_chars;
use crate::http::json;
use crate::{Base, Env};
use async_trait::async_trait;
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Value, json};
use testrelay_domain::config::{ConnectorConfig, DatadogConfig};
use testrelay_domain::delivery::steps::Steps;
use testrelay_domain::health::{HealthAlert, Overall};
use testrelay_domain::ports::{
    Connector, Delivered, DeliveryContext, DeliveryError, Probe, StepError,
};
use testrelay_domain::report::model::{RunOutcome, TestRun};
use testrelay_domain::report::render;

/// Datadog's limits, in characters.
pub const MAX_TITLE: usize = 100;
pub const MAX_TEXT: usize = 4000;
pub const MAX_AGGREGATION_KEY: usize = 100;
pub const MAX_TAG: usize = 200;

pub struct Datadog {
    base: Base,
    api: String,
    api_key: SecretString,
    max_failures: usize,
    metrics: bool,
    tags: Vec<String>,
}

impl Datadog {
    pub fn new(
        cfg: &ConnectorConfig,
        c: &DatadogConfig,
        api_key: SecretString,
        env: &Env,
    ) -> Result<Self, String> {
        let api = match &c.api_url {
            // Checked with the configuration (https unless allow_http).
            Some(u) => u.trim_end_matches('/').to_string(),
            None => api_base(&c.site),
        };
        Ok(Datadog {
            base: Base::new(env.http.clone(), format!("datadog:{}", c.site), cfg),
            api,
            api_key,
            max_failures: c.max_failures,
            metrics: c.metrics,
            tags: c.tags.clone(),
        })
    }

    fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.base
            .http
            .client()
            .request(method, format!("{}{path}", self.api))
            .header("DD-API-KEY", self.api_key.expose_secret())
            .header(reqwest::header::ACCEPT, "application/json")
    }

    /// Posts the run's event; its id.
    async fn event(&self, run: &TestRun, ctx: &DeliveryContext) -> Result<String, DeliveryError> {
        let request = self
            .request(reqwest::Method::POST, "/api/v1/events")
            .json(&event(run, &ctx.status_url, self.max_failures, &self.tags));
        let answer: Value = json(self.base.send(request).await?, "Datadog").await?;
        Ok(answer["event"]["id_str"]
            .as_str()
            .map(str::to_string)
            .or_else(|| answer["event"]["id"].as_u64().map(|n| n.to_string()))
            .unwrap_or_default())
    }

    async fn series(&self, run: &TestRun) -> Result<String, DeliveryError> {
        let request = self
            .request(reqwest::Method::POST, "/api/v2/series")
            .json(&series(run, &self.tags));
        self.base.send(request).await?;
        Ok("sent".into())
    }
}

#[async_trait]
impl Connector for Datadog {
    crate::basics!(Datadog);

    async fn deliver(
        &self,
        run: &TestRun,
        ctx: &DeliveryContext,
        steps: &Steps,
    ) -> Result<Delivered, StepError> {
        let posted = steps.once("event", |_| self.event(run, ctx)).await?;
        let mut resumed = posted.resumed;
        if self.metrics {
            let sent = steps.once("series", |_| self.series(run)).await?;
            resumed &= sent.resumed;
        }
        Ok(Delivered {
            status_code: Some(202),
            external_ref: Some(format!("datadog event {}", posted.value)),
            resumed,
        })
    }

    async fn alert(&self, alert: &HealthAlert) -> Result<(), DeliveryError> {
        let alert_type = match alert.status {
            Overall::Healthy => "success",
            Overall::Degraded => "warning",
            Overall::Critical => "error",
        };
        let body = json!({
            "title": cut_chars(&alert.title(), MAX_TITLE),
            "text": cut_chars(&alert.problems.join("\n"), MAX_TEXT),
            "alert_type": alert_type,
            "aggregation_key": "testrelay-health",
            "source_type_name": "testrelay",
            "tags": ["source:testrelay", "testrelay:health"],
        });
        let request = self
            .request(reqwest::Method::POST, "/api/v1/events")
            .json(&body);
        self.base.send(request).await.map(|_| ())
    }

    /// `GET /api/v1/validate`: whether Datadog takes the API key; nothing sent.
    async fn probe(&self) -> Result<Probe, DeliveryError> {
        crate::http::unlimited(async {
            let request = self.request(reqwest::Method::GET, "/api/v1/validate");
            let answer: Value = json(self.base.send(request).await?, "Datadog").await?;
            if answer["valid"] != true {
                return Err(crate::http::permanent(
                    "Datadog says the API key is not valid",
                ));
            }
            Ok(Probe {
                check: "GET /api/v1/validate".into(),
                detail: None,
            })
        })
        .await
    }
}

/// The API of a Datadog site: `https://api.<site>` (`api.datadoghq.eu`,
/// `api.us3.datadoghq.com`, `api.ddog-gov.com`, ...).
pub fn api_base(site: &str) -> String {
    format!("https://api.{site}")
}

/// A tag value as Datadog keeps it: lowercase, letters, digits and `_ - : . /`, others `_`.
fn tag_value(v: &str) -> String {
    v.chars()
        .map(|c| c.to_ascii_lowercase())
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | ':' | '.' | '/') {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// The run's tags: `project:`, `branch:`, `env:` (when known), `source:testrelay`, the
/// configured ones.
pub fn tags(run: &TestRun, extra: &[String]) -> Vec<String> {
    let m = &run.meta;
    let mut t = vec![
        "source:testrelay".to_string(),
        format!("project:{}", tag_value(&m.project)),
    ];
    if let Some(b) = &m.branch {
        t.push(format!("branch:{}", tag_value(b)));
    }
    if let Some(e) = &m.environment {
        t.push(format!("env:{}", tag_value(e)));
    }
    t.extend(extra.iter().cloned());
    t.into_iter().map(|x| cut_chars(&x, MAX_TAG)).collect()
}

/// Groups a pipeline's (or run's) events: project, branch and pipeline, hashed when long.
pub fn aggregation_key(run: &TestRun) -> String {
    let m = &run.meta;
    let what = match &m.pipeline {
        Some(p) => format!("pipeline:{}", p.id),
        None => format!("run:{}", run.run_id),
    };
    let key = format!(
        "testrelay:{}:{}:{what}",
        m.project,
        m.branch.as_deref().unwrap_or("-")
    );
    if key.chars().count() <= MAX_AGGREGATION_KEY {
        key
    } else {
        format!("testrelay:{}", crate::digest8(&key))
    }
}

/// The event (`POST /api/v1/events`).
pub fn event(run: &TestRun, status_url: &str, max_failures: usize, extra: &[String]) -> Value {
    let failed = run.summary.outcome() == RunOutcome::Failed;
    let title = cut_chars(
        &format!(
            "{} {}",
            if failed {
                "Tests failed:"
            } else {
                "Tests passed:"
            },
            render::context(run)
        ),
        MAX_TITLE,
    );
    let mut text = Vec::new();
    if let Some(changes) = render::changes_line(run) {
        text.push(format!("**{changes}**"));
    }
    text.push(render::headline(run));
    text.push(render::counts(run));
    let footer = format!(
        "Run status: {status_url}{}\ntestrelay run {}",
        run.meta
            .build_url
            .as_deref()
            .map(|b| format!("\nBuild: {b}"))
            .unwrap_or_default(),
        run.run_id
    );
    let total = render::failure_count(run);
    // The markdown markers, the "+N more" line and the footer fit in what is left.
    let budget = MAX_TEXT - 40 - footer.chars().count() - 40;
    let mut used: usize = text.iter().map(|l| l.chars().count() + 1).sum();
    let mut listed = 0u64;
    for (suite, case, class) in render::classified_failures(run)
        .into_iter()
        .take(max_failures)
    {
        let mut line = format!(
            "- {}",
            cut_chars(&render::labelled_title(suite, case, class), 300)
        );
        if let Some(reason) = render::reason(case, 300) {
            line.push_str(&format!(": `{}`", reason.replace('`', "'")));
        }
        if used + line.chars().count() + 1 > budget {
            break;
        }
        used += line.chars().count() + 1;
        text.push(line);
        listed += 1;
    }
    if total > listed {
        text.push(render::more(total - listed, "failures"));
    }
    text.push(footer);
    let body = format!("%%% \n{}\n %%%", text.join("\n"));
    let mut tags = tags(run, extra);
    tags.push(format!(
        "testrelay_run:{}",
        run.run_id.as_str().to_ascii_lowercase()
    ));
    json!({
        "title": title,
        "text": cut_chars(&body, MAX_TEXT),
        "alert_type": if failed { "error" } else { "success" },
        "priority": "normal",
        "aggregation_key": aggregation_key(run),
        "source_type_name": "testrelay",
        "date_happened": render::received_secs(run),
        "tags": tags,
    })
}

/// The run's counts as gauges at its time (`POST /api/v2/series`, type 3).
pub fn series(run: &TestRun, extra: &[String]) -> Value {
    let s = &run.summary;
    let at = render::received_secs(run);
    let tags = tags(run, extra);
    let metric = |name: &str, value: f64| {
        json!({"metric": format!("testrelay.{name}"), "type": 3,
               "points": [{"timestamp": at, "value": value}], "tags": tags})
    };
    json!({"series": [
        metric("tests.total", s.total as f64),
        metric("tests.passed", s.passed as f64),
        metric("tests.failed", (s.failed + s.errored) as f64),
        metric("tests.skipped", s.skipped as f64),
        metric("tests.flaky", s.flaky as f64),
        metric("run.duration_ms", s.duration_ms as f64),
        metric("run.pass_rate", render::pass_rate(run)),
    ]})
}
