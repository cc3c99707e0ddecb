//! Discord: a run as a message with one embed (what changed, the counts, the first failures
//! as fields, new ones first) through a channel webhook, within Discord's limits: 2,000
//! characters of content; per embed a 256-character title, a 4,096-character description and
//! 25 fields (256-character names, 1,024-character values); 6,000 characters over all
//! embeds. `allowed_mentions` is empty, so text from a report can never ping anyone.
//!
//! Exactly once: the post asks `?wait=true`, so Discord answers with the message, whose id is
//! the step's result; a redriven delivery edits that message (`PATCH .../messages/{id}`)
//! instead of posting again (a deleted one, `Unknown Message`, is posted anew). A webhook
//! cannot look messages up, so in the one window where a try crashes after Discord accepted
//! the post and before that is recorded, the retry posts again (as for Teams).

use crate::cut_chars;
use crate::http::json;
use crate::{Base, Env, origin, parse_secret_url};
use async_trait::async_trait;
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Value, json};
use testrelay_domain::config::{ConnectorConfig, DiscordConfig};
use testrelay_domain::delivery::steps::Steps;
use testrelay_domain::health::{HealthAlert, Overall};
use testrelay_domain::ports::{
    Connector, Delivered, DeliveryContext, DeliveryError, Probe, StepError,
};
use testrelay_domain::report::model::{RunOutcome, TestRun};
use testrelay_domain::report::render;

/// Discord's limits, in characters.
pub const MAX_CONTENT: usize = 2000;
pub const MAX_TITLE: usize = 256;
pub const MAX_DESCRIPTION: usize = 4096;
pub const MAX_FIELDS: usize = 25;
pub const MAX_FIELD_NAME: usize = 256;
pub const MAX_FIELD_VALUE: usize = 1024;
pub const MAX_EMBED_TOTAL: usize = 6000;

const RED: u32 = 0xD7_3A_49;
const GREEN: u32 = 0x2E_A0_43;
const AMBER: u32 = 0xD2_99_22;

pub struct Discord {
    base: Base,
    url: SecretString,
    max_failures: usize,
    username: Option<String>,
}

impl Discord {
    pub fn new(
        cfg: &ConnectorConfig,
        c: &DiscordConfig,
        url: &SecretString,
        env: &Env,
    ) -> Result<Self, String> {
        let parsed = parse_secret_url(url.expose_secret(), "url", c.allow_http)?;
        // Discord limits per webhook: the target is the webhook's id (never its token).
        let id = parsed
            .path_segments()
            .and_then(|mut s| s.find(|seg| *seg == "webhooks").and(s.next()))
            .filter(|id| !id.is_empty() && id.bytes().all(|b| b.is_ascii_digit()))
            .ok_or("url: not a Discord webhook URL (.../api/webhooks/<id>/<token>)")?
            .to_string();
        Ok(Discord {
            base: Base::new(
                env.http.clone(),
                format!("discord:{}/{id}", origin(&parsed)),
                cfg,
            ),
            url: url.clone(),
            max_failures: c.max_failures.min(MAX_FIELDS),
            username: c.username.clone(),
        })
    }

    /// The webhook URL with `path` appended and `wait=true` when posting.
    fn endpoint(&self, path: &str, wait: bool) -> reqwest::Url {
        let mut u = reqwest::Url::parse(self.url.expose_secret()).expect("checked when built");
        if !path.is_empty() {
            let joined = format!("{}/{path}", u.path().trim_end_matches('/'));
            u.set_path(&joined);
        }
        if wait {
            u.query_pairs_mut().append_pair("wait", "true");
        }
        u
    }

    fn message(&self, run: &TestRun, ctx: &DeliveryContext) -> Value {
        let mut m = message(run, &ctx.status_url, self.max_failures);
        if let Some(u) = &self.username {
            m["username"] = json!(u);
        }
        m
    }

    /// Posts the run's message; the message id.
    async fn post(&self, run: &TestRun, ctx: &DeliveryContext) -> Result<String, DeliveryError> {
        let request = self
            .base
            .http
            .client()
            .post(self.endpoint("", true))
            .json(&self.message(run, ctx));
        let posted: Value = json(self.base.send(request).await?, "Discord").await?;
        posted["id"]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| crate::http::permanent("Discord answered without a message id"))
    }

    /// Edits message `id` to the run's message; posts it anew if Discord no longer has it.
    async fn edit(
        &self,
        run: &TestRun,
        ctx: &DeliveryContext,
        id: &str,
    ) -> Result<String, DeliveryError> {
        let request = self
            .base
            .http
            .client()
            .patch(self.endpoint(&format!("messages/{id}"), false))
            .json(&self.message(run, ctx));
        match self.base.send(request).await {
            Ok(_) => Ok(id.to_string()),
            Err(e) if e.status_code == Some(404) => self.post(run, ctx).await,
            Err(e) => Err(e),
        }
    }
}

#[async_trait]
impl Connector for Discord {
    crate::basics!(Discord);

    async fn deliver(
        &self,
        run: &TestRun,
        ctx: &DeliveryContext,
        steps: &Steps,
    ) -> Result<Delivered, StepError> {
        let posted = steps.once("post", |_| self.post(run, ctx)).await?;
        let mut id = posted.value.clone();
        let mut resumed = posted.resumed;
        // A redrive of a delivery whose message is out there edits it, once per redrive.
        if posted.resumed && ctx.generation > 0 {
            let step = format!("edit/{}", ctx.generation);
            let edited = steps
                .once(&step, |_| self.edit(run, ctx, &posted.value))
                .await?;
            id = edited.value;
            resumed = edited.resumed;
        }
        Ok(Delivered {
            status_code: Some(200),
            external_ref: Some(format!("discord:{id}")),
            resumed,
        })
    }

    async fn alert(&self, alert: &HealthAlert) -> Result<(), DeliveryError> {
        let color = match alert.status {
            Overall::Healthy => GREEN,
            Overall::Degraded => AMBER,
            Overall::Critical => RED,
        };
        let problems: Vec<String> = alert
            .shown_problems(300)
            .map(|p| format!("• {p}"))
            .collect();
        let body = json!({
            "content": "",
            "embeds": [{
                "title": cut_chars(&alert.title(), MAX_TITLE),
                "description": cut_chars(&problems.join("\n"), MAX_DESCRIPTION),
                "color": color,
            }],
            "allowed_mentions": {"parse": []},
        });
        let request = self
            .base
            .http
            .client()
            .post(self.endpoint("", false))
            .json(&body);
        self.base.send(request).await.map(|_| ())
    }

    /// `GET` on the webhook URL: Discord answers with the webhook (its name), posting
    /// nothing.
    async fn probe(&self) -> Result<Probe, DeliveryError> {
        crate::http::unlimited(async {
            let request = self.base.http.client().get(self.endpoint("", false));
            let hook: Value = json(self.base.send(request).await?, "Discord").await?;
            Ok(Probe {
                check: "GET the webhook".into(),
                detail: hook["name"].as_str().map(str::to_string),
            })
        })
        .await
    }
}

fn chars(s: &str) -> usize {
    s.chars().count()
}

/// The webhook body: `content` (the notification line), one embed within Discord's limits,
/// and no mentions allowed.
pub fn message(run: &TestRun, status_url: &str, max_failures: usize) -> Value {
    let failed = run.summary.outcome() == RunOutcome::Failed;
    let icon = if failed { "❌" } else { "✅" };
    let lead = render::changes_line(run).unwrap_or_else(|| render::headline(run));
    let content = cut_chars(
        &format!("{icon} {} — {lead}", render::context(run)),
        MAX_CONTENT,
    );
    let title = cut_chars(&format!("{icon} {}", render::context(run)), MAX_TITLE);
    let mut description = vec![];
    if let Some(changes) = render::changes_line(run) {
        description.push(format!("**{changes}**"));
    }
    description.push(render::headline(run));
    description.push(render::counts(run));
    if let Some(b) = &run.meta.build_url {
        description.push(format!("Build: {b}"));
    }
    let description = cut_chars(&description.join("\n"), 1500);
    let total = render::failure_count(run);
    let mut used = chars(&title) + chars(&description);
    // Room kept for the footer.
    let budget = MAX_EMBED_TOTAL - 200;
    let mut fields = Vec::new();
    for (suite, case, class) in render::classified_failures(run)
        .into_iter()
        .take(max_failures.min(MAX_FIELDS))
    {
        let name = cut_chars(
            &render::labelled_title(suite, case, class),
            MAX_FIELD_NAME.min(200),
        );
        let value = match render::reason(case, 600) {
            Some(r) => format!("```{}```", cut_chars(&r.replace("```", "'''"), 400)),
            None => case.status.as_str().to_string(),
        };
        let size = chars(&name) + chars(&value);
        if used + size > budget {
            break;
        }
        used += size;
        fields.push(json!({"name": name, "value": value, "inline": false}));
    }
    let listed = fields.len() as u64;
    let mut footer = vec![];
    if total > listed {
        footer.push(render::more(total - listed, "failures"));
    }
    footer.push(format!("run {}", run.run_id));
    let mut embed = json!({
        "title": title,
        "description": description,
        "color": if failed { RED } else { GREEN },
        "fields": fields,
        "footer": {"text": footer.join(" · ")},
        "timestamp": run.received_at,
    });
    if status_url.starts_with("http") {
        embed["url"] = json!(status_url);
    }
    json!({
        "content": content,
        "embeds": [embed],
        "allowed_mentions": {"parse": []},
    })
}
