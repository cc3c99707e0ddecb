//! Slack: one Block Kit message per run, through a bot token (`chat.postMessage`, and
//! `chat.update` when a redriven delivery finds the message already posted) or an incoming
//! webhook.
//!
//! Exactly once: the message's `ts` is the step's result. Posts carry message metadata
//! (`testrelay_run` with the event id), so a retry that cannot know whether an earlier try
//! posted (a crash after the call, a timeout) looks in the channel's history since the run
//! arrived first (needs the `channels:history` scope; without it, it posts). Slack limits
//! that lookup for apps outside its Marketplace to 1 request a minute and 15 messages a
//! page, so it has its own rate bucket (`slack-history:<channel>`: its waits and 429s never
//! hold up posting), never posts blind when throttled (the step is retried), and keeps its
//! place (the page cursor, in the state store) across attempts; after
//! [`HISTORY_MAX_PAGES`] pages without the message it posts. Incoming webhooks have no
//! history: in that one window they may post twice.
//!
//! Thread mode (`thread = true`, bot token): the message is the run's summary (what
//! changed, counts, links) and its failures, new ones first, are one reply in the message's
//! thread, posted once per run (a retry looks in the thread first, within the same history
//! limit); a pipeline's reply follows each completion's final summary.

mod blocks;
mod history;
mod pipeline;

use blocks::escape;
pub use blocks::{render, summary};

use crate::http::{Limit, json, permanent};
use crate::{Base, Env, origin};
use async_trait::async_trait;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::{Value, json};
use std::sync::Arc;
use testrelay_domain::config::{ConnectorConfig, ConnectorKind, SLACK_HISTORY_RATE, SlackConfig};
use testrelay_domain::delivery::steps::{StepCall, Steps};
use testrelay_domain::health::{HealthAlert, Overall};
use testrelay_domain::ports::{
    Connector, Delivered, DeliveryContext, DeliveryError, Probe, StateStore, StepError,
};
use testrelay_domain::report::model::TestRun;
use testrelay_domain::report::render;

/// Slack's documented limits, with room to spare.
pub const MAX_BLOCKS: usize = 50;
pub const MAX_SECTION: usize = 3000;
pub const MAX_HEADER: usize = 150;
/// Total text budget (Slack refuses messages around 13k characters of blocks).
pub const MAX_TOTAL: usize = 11_000;
/// Messages a `conversations.history` page holds for apps outside the Marketplace.
pub const HISTORY_PAGE: usize = 15;
/// History pages read (at the history limit, one a minute) before posting anyway.
pub const HISTORY_MAX_PAGES: u32 = 20;

pub enum Auth {
    Token(SecretString),
    Webhook(SecretString),
}

pub struct Slack {
    base: Base,
    /// `conversations.history`'s own limit.
    history: Limit,
    state: Arc<dyn StateStore>,
    clock: Arc<dyn testrelay_domain::ports::Clock>,
    auth: Auth,
    channel: String,
    api: String,
    max_failures: usize,
    thread: bool,
}

impl Slack {
    pub fn new(
        cfg: &ConnectorConfig,
        c: &SlackConfig,
        auth: Auth,
        env: &Env,
    ) -> Result<Self, String> {
        let channel = c.channel.clone().unwrap_or_default();
        let target = match &auth {
            // Slack limits posting per channel.
            Auth::Token(_) => format!("slack:{channel}"),
            Auth::Webhook(u) => {
                let url = crate::parse_secret_url(u.expose_secret(), "webhook_url", c.allow_http)?;
                format!("slack-webhook:{}", origin(&url))
            }
        };
        Ok(Slack {
            history: Limit {
                key: format!("slack-history:{channel}"),
                rate: Some(c.history_rate_limit.unwrap_or(SLACK_HISTORY_RATE)),
            },
            base: Base::new(env.http.clone(), target, cfg),
            state: env.state.clone(),
            clock: env.clock.clone(),
            auth,
            channel,
            api: c.api_url.trim_end_matches('/').to_string(),
            max_failures: c.max_failures,
            thread: c.thread,
        })
    }

    async fn call(&self, method: &str, body: &Value) -> Result<Api, DeliveryError> {
        let Auth::Token(token) = &self.auth else {
            return Err(permanent("no bot token configured"));
        };
        let request = self
            .base
            .http
            .client()
            .post(format!("{}/{method}", self.api))
            .bearer_auth(token.expose_secret())
            .json(body);
        let answer: Api = json(self.base.send(request).await?, "Slack").await?;
        if answer.ok {
            Ok(answer)
        } else {
            Err(api_error(
                method,
                answer.error.as_deref().unwrap_or("unknown"),
            ))
        }
    }

    /// Posts `message` (the run's, unless given), unless an earlier try did.
    async fn post(
        &self,
        run: &TestRun,
        ctx: &DeliveryContext,
        message: Option<Value>,
        call: StepCall,
    ) -> Result<String, DeliveryError> {
        if call.check_first
            && let Some(ts) = self.find_posted(run, ctx, None).await?
        {
            return Ok(ts);
        }
        let mut message = message.unwrap_or_else(|| self.message(run, ctx));
        message["channel"] = json!(self.channel);
        message["unfurl_links"] = json!(false);
        message["metadata"] = json!({
            "event_type": "testrelay_run",
            "event_payload": { "event_id": ctx.event_id, "run_id": run.run_id.to_string() }
        });
        if let Some(pipeline) = pipeline_marker(run) {
            message["metadata"]["event_payload"]["pipeline"] = json!(pipeline);
        }
        let answer = match self.call("chat.postMessage", &message).await {
            // Slack's own limits moved: fall back to the plain text message, without the
            // `blocks` key (an empty array is refused as `invalid_blocks` too).
            Err(e)
                if ["invalid_blocks", "msg_blocks_too_long", "msg_too_long"]
                    .iter()
                    .any(|code| e.detail.ends_with(code)) =>
            {
                if let Some(fields) = message.as_object_mut() {
                    fields.remove("blocks");
                }
                self.call("chat.postMessage", &message).await?
            }
            other => other?,
        };
        answer
            .ts
            .ok_or_else(|| permanent("chat.postMessage answered without a ts"))
    }

    async fn update(
        &self,
        run: &TestRun,
        ctx: &DeliveryContext,
        ts: &str,
    ) -> Result<String, DeliveryError> {
        self.update_to(ts, self.message(run, ctx)).await
    }

    /// The run's message: all of it, or in thread mode its summary.
    fn message(&self, run: &TestRun, ctx: &DeliveryContext) -> Value {
        if self.thread {
            blocks::summary(run, &ctx.status_url)
        } else {
            render(run, &ctx.status_url, self.max_failures)
        }
    }

    /// Thread mode: the run's failures as a reply under message `parent`, once per run.
    /// Answers whether it was done before (resumed).
    async fn reply_failures(
        &self,
        run: &TestRun,
        ctx: &DeliveryContext,
        parent: &str,
        steps: &Steps,
    ) -> Result<bool, StepError> {
        if !self.thread || render::failure_count(run) == 0 {
            return Ok(true);
        }
        let step = steps
            .once(&format!("reply/{parent}"), |call| async move {
                if call.check_first
                    && let Some(ts) = self.find_posted(run, ctx, Some(parent)).await?
                {
                    return Ok(ts);
                }
                let mut m = blocks::failures_reply(run, self.max_failures);
                m["channel"] = json!(self.channel);
                m["thread_ts"] = json!(parent);
                m["unfurl_links"] = json!(false);
                m["metadata"] = json!({
                    "event_type": "testrelay_run",
                    "event_payload": {
                        "event_id": ctx.event_id,
                        "run_id": run.run_id.to_string(),
                        "part": "failures",
                    }
                });
                let answer = self.call("chat.postMessage", &m).await?;
                answer
                    .ts
                    .ok_or_else(|| permanent("chat.postMessage answered without a ts"))
            })
            .await?;
        Ok(step.resumed)
    }

    /// Replaces message `ts` with `message`.
    async fn update_to(&self, ts: &str, mut message: Value) -> Result<String, DeliveryError> {
        message["channel"] = json!(self.channel);
        message["ts"] = json!(ts);
        self.call("chat.update", &message).await?;
        Ok(ts.to_string())
    }

    async fn post_webhook(
        &self,
        url: &SecretString,
        run: &TestRun,
        ctx: &DeliveryContext,
    ) -> Result<String, DeliveryError> {
        let message = render(run, &ctx.status_url, self.max_failures);
        let request = self
            .base
            .http
            .client()
            .post(url.expose_secret())
            .json(&message);
        self.base.send(request).await?;
        Ok(String::new())
    }
}

#[derive(Deserialize)]
struct Api {
    ok: bool,
    #[serde(default)]
    error: Option<String>,
    #[serde(default)]
    ts: Option<String>,
    #[serde(default)]
    team: Option<String>,
    #[serde(default)]
    user: Option<String>,
}

/// The pipeline a message stands for (`<project>/<id>`), carried in its metadata: a run
/// that takes over the pipeline's message from one that never finished finds it by this.
fn pipeline_marker(run: &TestRun) -> Option<String> {
    run.meta
        .pipeline
        .as_ref()
        .map(|p| format!("{}/{}", run.meta.project, p.id))
}

/// Slack answers HTTP 200 with `ok: false` and an error code ([`crate::answers`] reads it).
fn api_error(method: &str, code: &str) -> DeliveryError {
    DeliveryError {
        class: crate::answers::for_code(crate::answers::Vendor::Kind(ConnectorKind::Slack), code)
            .class,
        status_code: Some(200),
        detail: format!("Slack {method}: {code}"),
        retry_after: None,
        target: None,
    }
}

#[async_trait]
impl Connector for Slack {
    crate::basics!(Slack);

    async fn deliver(
        &self,
        run: &TestRun,
        ctx: &DeliveryContext,
        steps: &Steps,
    ) -> Result<Delivered, StepError> {
        let part = run.meta.pipeline.as_ref().is_some_and(|p| !p.is_merged());
        if let (Auth::Webhook(_), true) = (&self.auth, part) {
            // An incoming webhook cannot edit what it posted: the pipeline's message waits
            // for its completion.
            return Ok(Delivered {
                status_code: None,
                external_ref: Some("slack: waits for the pipeline to complete".into()),
                resumed: false,
            });
        }
        if let Auth::Webhook(url) = &self.auth {
            let step = steps
                .once("post", |_| self.post_webhook(url, run, ctx))
                .await?;
            return Ok(Delivered {
                status_code: Some(200),
                external_ref: None,
                resumed: step.resumed,
            });
        }
        if let Some(p) = &run.meta.pipeline {
            return self.deliver_pipeline(run, ctx, p, steps).await;
        }
        let posted = steps
            .once("post", |call| self.post(run, ctx, None, call))
            .await?;
        let mut resumed = posted.resumed;
        // A redrive of a delivery whose message is out there updates it, once per redrive.
        if posted.resumed && ctx.generation > 0 {
            let step = format!("update/{}", ctx.generation);
            let updated = steps
                .once(&step, |_| self.update(run, ctx, &posted.value))
                .await?;
            resumed = updated.resumed;
        }
        resumed &= self.reply_failures(run, ctx, &posted.value, steps).await?;
        Ok(Delivered {
            status_code: Some(200),
            external_ref: Some(format!("slack:{}/{}", self.channel, posted.value)),
            resumed,
        })
    }

    async fn alert(&self, alert: &HealthAlert) -> Result<(), DeliveryError> {
        let icon = match alert.status {
            Overall::Healthy => ":white_check_mark:",
            Overall::Degraded => ":warning:",
            Overall::Critical => ":rotating_light:",
        };
        let mut text = format!("{icon} *{}*", escape(&alert.title()));
        for p in alert.shown_problems(300) {
            text.push_str(&format!("\n• {}", escape(&p)));
        }
        let mut message = json!({
            "text": alert.title(),
            "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": render::cut(&text, MAX_SECTION)}}],
        });
        match &self.auth {
            Auth::Token(_) => {
                message["channel"] = json!(self.channel);
                self.call("chat.postMessage", &message).await.map(|_| ())
            }
            Auth::Webhook(url) => {
                let request = self
                    .base
                    .http
                    .client()
                    .post(url.expose_secret())
                    .json(&message);
                self.base.send(request).await.map(|_| ())
            }
        }
    }

    async fn probe(&self) -> Result<Probe, DeliveryError> {
        crate::http::unlimited(async {
            match &self.auth {
                Auth::Token(_) => {
                    let a = self.call("auth.test", &json!({})).await?;
                    Ok(Probe {
                        check: "POST auth.test".into(),
                        detail: Some(format!(
                            "{} in {}",
                            a.user.unwrap_or_default(),
                            a.team.unwrap_or_default()
                        )),
                    })
                }
                Auth::Webhook(_) => Ok(Probe {
                    check: "incoming webhook (cannot be checked without posting)".into(),
                    detail: None,
                }),
            }
        })
        .await
    }
}
