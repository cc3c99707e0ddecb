//! Microsoft Teams: an Adaptive Card (1.4) posted to a Workflows webhook (the Office 365
//! connectors are retired). The card stays under Teams' ~28 KB: failures are added while
//! they fit, then "+N more" and a link to the run.
//!
//! Workflows webhooks have no idempotency key and nothing to look messages up by, so in the
//! one window where a try crashes after Teams accepted the card and before that is
//! recorded, the retry posts the card again (documented in README).

use crate::{Base, Env, origin, parse_secret_url};
use async_trait::async_trait;
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Value, json};
use testrelay_domain::config::{ConnectorConfig, TeamsConfig};
use testrelay_domain::delivery::steps::Steps;
use testrelay_domain::health::{HealthAlert, Overall};
use testrelay_domain::ports::{
    Connector, Delivered, DeliveryContext, DeliveryError, Probe, StepError,
};
use testrelay_domain::report::model::{RunOutcome, TestRun};
use testrelay_domain::report::render;

/// Teams refuses cards over about 28 KB; this leaves room for the envelope.
pub const MAX_CARD_BYTES: usize = 26_000;

pub struct Teams {
    base: Base,
    url: SecretString,
    max_failures: usize,
}

impl Teams {
    pub fn new(
        cfg: &ConnectorConfig,
        c: &TeamsConfig,
        url: &SecretString,
        env: &Env,
    ) -> Result<Self, String> {
        let parsed = parse_secret_url(url.expose_secret(), "url", c.allow_http)?;
        Ok(Teams {
            base: Base::new(env.http.clone(), format!("teams:{}", origin(&parsed)), cfg),
            url: url.clone(),
            max_failures: c.max_failures,
        })
    }

    async fn post(&self, run: &TestRun, ctx: &DeliveryContext) -> Result<String, DeliveryError> {
        let request = self
            .base
            .http
            .client()
            .post(self.url.expose_secret())
            .json(&message(run, &ctx.status_url, self.max_failures));
        let response = self.base.send(request).await?;
        Ok(response.status().as_u16().to_string())
    }
}

#[async_trait]
impl Connector for Teams {
    crate::basics!(Teams);

    async fn deliver(
        &self,
        run: &TestRun,
        ctx: &DeliveryContext,
        steps: &Steps,
    ) -> Result<Delivered, StepError> {
        let step = steps.once("post", |_| self.post(run, ctx)).await?;
        Ok(Delivered {
            status_code: step.value.parse().ok(),
            external_ref: None,
            resumed: step.resumed,
        })
    }

    async fn alert(&self, alert: &HealthAlert) -> Result<(), DeliveryError> {
        let color = match alert.status {
            Overall::Healthy => "Good",
            Overall::Degraded => "Warning",
            Overall::Critical => "Attention",
        };
        let mut body = vec![
            json!({"type": "TextBlock", "size": "Medium", "weight": "Bolder",
            "wrap": true, "color": color, "text": alert.title()}),
        ];
        for p in alert.shown_problems(300) {
            body.push(json!({"type": "TextBlock", "wrap": true, "text": p}));
        }
        let card = json!({
            "type": "message",
            "attachments": [{
                "contentType": "application/vnd.microsoft.card.adaptive",
                "contentUrl": null,
                "content": {"$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
                    "type": "AdaptiveCard", "version": "1.4", "body": body},
            }]
        });
        let request = self
            .base
            .http
            .client()
            .post(self.url.expose_secret())
            .json(&card);
        self.base.send(request).await.map(|_| ())
    }

    async fn probe(&self) -> Result<Probe, DeliveryError> {
        Ok(Probe {
            check: "Workflows webhook (cannot be checked without posting)".into(),
            detail: None,
        })
    }
}

/// The Workflows webhook body: a message with one Adaptive Card attachment.
pub fn message(run: &TestRun, status_url: &str, max_failures: usize) -> Value {
    let total = render::failure_count(run);
    let mut shown = (max_failures as u64).min(total) as usize;
    loop {
        let m = json!({
            "type": "message",
            "attachments": [{
                "contentType": "application/vnd.microsoft.card.adaptive",
                "contentUrl": null,
                "content": card(run, status_url, shown),
            }]
        });
        if shown == 0 || m.to_string().len() <= MAX_CARD_BYTES {
            return m;
        }
        shown = shown * 3 / 4;
    }
}

fn card(run: &TestRun, status_url: &str, shown: usize) -> Value {
    let failed = run.summary.outcome() == RunOutcome::Failed;
    let m = &run.meta;
    let mut facts = vec![json!({"title": "Project", "value": m.project})];
    if let Some(b) = &m.branch {
        facts.push(json!({"title": "Branch", "value": b}));
    }
    if let Some(c) = &m.commit {
        facts.push(json!({"title": "Commit", "value": render::short_commit(c)}));
    }
    if let Some(e) = &m.environment {
        facts.push(json!({"title": "Environment", "value": e}));
    }
    facts.push(json!({"title": "Tests", "value": render::counts(run)}));
    facts.push(json!({"title": "Duration", "value": render::duration(run.summary.duration_ms)}));
    let color = if failed { "Attention" } else { "Good" };
    let mut body = Vec::new();
    // What changed leads; the run's own headline follows.
    if let Some(changes) = render::changes_line(run) {
        body.push(
            json!({"type": "TextBlock", "size": "Medium", "weight": "Bolder", "wrap": true,
            "color": color, "text": changes}),
        );
        body.push(json!({"type": "TextBlock", "wrap": true, "spacing": "None",
            "text": render::headline(run)}));
    } else {
        body.push(
            json!({"type": "TextBlock", "size": "Medium", "weight": "Bolder", "wrap": true,
            "color": color, "text": render::headline(run)}),
        );
    }
    body.push(json!({"type": "FactSet", "facts": facts}));
    let total = render::failure_count(run);
    if total > 0 {
        body.push(json!({"type": "TextBlock", "weight": "Bolder", "text": "Failures", "wrap": true, "spacing": "Medium"}));
    }
    for (suite, case, class) in render::classified_failures(run).into_iter().take(shown) {
        body.push(
            json!({"type": "TextBlock", "weight": "Bolder", "wrap": true, "spacing": "Small",
            "text": render::cut(&render::labelled_title(suite, case, class), 300)}),
        );
        if let Some(reason) = render::reason(case, 400) {
            body.push(
                json!({"type": "TextBlock", "isSubtle": true, "wrap": true, "spacing": "None",
                "fontType": "Monospace", "text": reason}),
            );
        }
    }
    if total > shown as u64 {
        body.push(json!({"type": "TextBlock", "isSubtle": true, "wrap": true,
            "text": render::more(total - shown as u64, "failures")}));
    }
    let mut actions = Vec::new();
    // Action.OpenUrl needs an absolute URL.
    if status_url.starts_with("http") {
        actions.push(json!({"type": "Action.OpenUrl", "title": "Run status", "url": status_url}));
    } else {
        body.push(json!({"type": "TextBlock", "isSubtle": true, "wrap": true,
            "text": format!("Run status: {status_url}")}));
    }
    if let Some(b) = m.build_url.as_deref().filter(|b| b.starts_with("http")) {
        actions.push(json!({"type": "Action.OpenUrl", "title": "Build", "url": b}));
    }
    json!({
        "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
        "type": "AdaptiveCard",
        "version": "1.4",
        "body": body,
        "actions": actions,
    })
}
