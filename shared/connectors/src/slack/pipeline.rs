//! One Slack message per CI pipeline. The first part to reach Slack posts it (a claim keyed
//! by the pipeline: one message however many parts arrive at once); later parts update it
//! with the pipeline's progress (shards in, counts so far), at most once per
//! [`PROGRESS_EVERY`] (parts in between are folded into the next update or the final one);
//! each completion replaces it with the merged result. Incoming webhooks, which cannot edit
//! a message, post once per completion.

use super::blocks::{escape, link};
use super::{MAX_HEADER, MAX_SECTION, Slack};
use crate::claim;
use serde_json::{Value, json};
use std::time::Duration;
use testrelay_domain::delivery::steps::{StepCall, Steps};
use testrelay_domain::pipelines::{PipelineState, key, latest_sum};
use testrelay_domain::ports::{Delivered, DeliveryContext, StepError};
use testrelay_domain::report::model::{PipelineRef, TestRun};
use testrelay_domain::report::render;

/// Progress updates of one pipeline's message are this far apart at least.
pub const PROGRESS_EVERY: Duration = Duration::from_secs(5);

impl Slack {
    pub(super) async fn deliver_pipeline(
        &self,
        run: &TestRun,
        ctx: &DeliveryContext,
        p: &PipelineRef,
        steps: &Steps,
    ) -> Result<Delivered, StepError> {
        let message_key = format!(
            "slack-pipeline/{}/{}/{}",
            self.channel, run.meta.project, p.id
        );
        let final_message = p.is_merged();
        let message = if final_message {
            self.message(run, ctx)
        } else {
            self.progress(run, ctx, p).await?
        };
        let owner = run.run_id.to_string();
        let first = message.clone();
        let (ts, posted) = claim::once_ever(
            self.state.as_ref(),
            self.clock.as_ref(),
            &message_key,
            &owner,
            |taken_over| {
                let first = first.clone();
                async move {
                    let step = steps
                        .once("post", |call| {
                            // A run that held the claim and never finished may have posted
                            // the pipeline's message: its metadata names the pipeline.
                            let check_first = call.check_first || taken_over;
                            self.post(run, ctx, Some(first), StepCall { check_first })
                        })
                        .await?;
                    Ok(step.value)
                }
            },
        )
        .await?;
        let external_ref = Some(format!("slack:{}/{ts}", self.channel));
        if posted {
            if final_message {
                self.reply_failures(run, ctx, &ts, steps).await?;
            }
            return Ok(Delivered {
                status_code: Some(200),
                external_ref,
                resumed: false,
            });
        }
        if !final_message && !self.progress_due(&message_key).await? {
            return Ok(Delivered {
                status_code: None,
                external_ref: Some(format!(
                    "slack:{}/{ts} (progress folded into the next update)",
                    self.channel
                )),
                resumed: false,
            });
        }
        let step = steps
            .once("update", |_| self.update_to(&ts, message))
            .await?;
        let mut resumed = step.resumed;
        if final_message {
            resumed &= self.reply_failures(run, ctx, &ts, steps).await?;
        }
        Ok(Delivered {
            status_code: Some(200),
            external_ref,
            resumed,
        })
    }

    /// Whether this pipeline's message may be updated now (then it is marked updated).
    async fn progress_due(&self, message_key: &str) -> Result<bool, StepError> {
        let k = format!("{message_key}/updated");
        let now = self.clock.now_ms();
        let current = self.state.load(&k).await?;
        let last: u64 = current
            .as_ref()
            .and_then(|v| v.value.parse().ok())
            .unwrap_or(0);
        if now < last + PROGRESS_EVERY.as_millis() as u64 {
            return Ok(false);
        }
        Ok(self
            .state
            .save(&k, &now.to_string(), current.map(|v| v.version))
            .await?)
    }

    /// The pipeline so far: shards in, the latest results' counts.
    async fn progress(
        &self,
        run: &TestRun,
        ctx: &DeliveryContext,
        p: &PipelineRef,
    ) -> Result<Value, StepError> {
        let state: Option<PipelineState> = self
            .state
            .load(&key(&run.meta.project, &p.id))
            .await?
            .and_then(|v| serde_json::from_str(&v.value).ok());
        let (parts, summary, expected) = match &state {
            Some(s) => (s.parts.len(), latest_sum(s), s.total()),
            None => (1, run.summary, p.shard.map(|s| s.total)),
        };
        let shards = match expected {
            Some(n) => format!("{parts} of {n} shards in"),
            None => format!("{parts} jobs in"),
        };
        let pipeline_url = ctx
            .status_url
            .rsplit_once("/v1/runs/")
            .map(|(base, _)| format!("{base}/v1/pipelines/{}?project={}", p.id, run.meta.project))
            .unwrap_or_default();
        let header = render::cut(&format!("⏳ {}", render::context(run)), MAX_HEADER);
        let body = render::cut(
            &format!(
                "*Pipeline {}: {shards}* (attempt {})\n{}",
                escape(&p.id),
                p.attempt,
                escape(&render::summary_counts(&summary))
            ),
            MAX_SECTION,
        );
        let mut links = vec![link(&pipeline_url, "Pipeline status")];
        if let Some(b) = &run.meta.build_url {
            links.push(link(b, "Build"));
        }
        Ok(json!({
            "text": escape(&format!("{} — pipeline {}: {shards}", render::context(run), p.id)),
            "blocks": [
                {"type": "header", "text": {"type": "plain_text", "emoji": true, "text": header}},
                {"type": "section", "text": {"type": "mrkdwn", "text": body}},
                {"type": "context", "elements": [{"type": "mrkdwn", "text": links.join(" · ")}]}
            ]
        }))
    }
}
