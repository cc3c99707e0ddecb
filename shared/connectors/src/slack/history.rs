//! Finding the message an earlier try of this delivery (or, for a CI pipeline, any run that
//! held the pipeline's message before) may have posted, in the channel's history, within Slack's limits on `conversations.history` (see the crate's Slack docs).

use super::{Auth, HISTORY_MAX_PAGES, HISTORY_PAGE, Slack, api_error};
use crate::http::json;
use secrecy::ExposeSecret;
use serde::Deserialize;
use serde_json::Value;
use testrelay_domain::ports::{DeliveryContext, DeliveryError};
use testrelay_domain::report::model::TestRun;
use testrelay_domain::report::render;

impl Slack {
    /// The `ts` of a message an earlier try posted for this event, if the channel's history
    /// since the run arrived shows one. Reads on from where an earlier attempt's lookup was
    /// throttled; answers `None` (post) when the history cannot be read (no scope, not in
    /// the channel) or holds more than [`HISTORY_MAX_PAGES`] pages. `thread`: the reply
    /// (thread mode's failures) under that message, read with `conversations.replies`.
    pub(super) async fn find_posted(
        &self,
        run: &TestRun,
        ctx: &DeliveryContext,
        thread: Option<&str>,
    ) -> Result<Option<String>, DeliveryError> {
        let Auth::Token(token) = &self.auth else {
            return Ok(None);
        };
        let key = match thread {
            Some(ts) => format!("slack-history/{}/{ts}", ctx.event_id),
            None => format!("slack-history/{}", ctx.event_id),
        };
        let saved = self.state.load(&key).await.ok().flatten();
        let mut place: HistoryPlace = saved
            .as_ref()
            .and_then(|v| serde_json::from_str(&v.value).ok())
            .unwrap_or_default();
        let version = saved.map(|v| v.version);
        let oldest = render::received_secs(run).saturating_sub(60).to_string();
        let limit = HISTORY_PAGE.to_string();
        while place.pages < HISTORY_MAX_PAGES {
            let mut query = vec![
                ("channel", self.channel.as_str()),
                ("oldest", oldest.as_str()),
                ("include_all_metadata", "true"),
                ("limit", limit.as_str()),
            ];
            if let Some(c) = &place.cursor {
                query.push(("cursor", c));
            }
            let method = match thread {
                Some(ts) => {
                    query.push(("ts", ts));
                    "conversations.replies"
                }
                None => "conversations.history",
            };
            let request = self
                .base
                .http
                .client()
                .get(format!("{}/{method}", self.api))
                .bearer_auth(token.expose_secret())
                .query(&query);
            let page = match self
                .base
                .http
                .send(&self.history, request, self.base.timeout)
                .await
            {
                Ok(response) => json::<History>(response, "Slack").await,
                Err(e) => Err(e),
            };
            let page = page.and_then(|p| match p.error.as_deref() {
                Some(code @ ("ratelimited" | "rate_limited")) if !p.ok => {
                    Err(api_error(method, code))
                }
                _ => Ok(p),
            });
            let page = match page {
                Ok(p) if p.ok => p,
                // No history to read (scope, membership): post.
                Ok(_) => return Ok(None),
                Err(e) => {
                    // Throttled or failed: keep our place for the next attempt.
                    let value = serde_json::to_string(&place).expect("serialisable");
                    let _ = self.state.save(&key, &value, version).await;
                    return Err(e);
                }
            };
            let pipeline = super::pipeline_marker(run);
            let found = page.messages.into_iter().find_map(|m| {
                let payload = m.metadata?.event_payload;
                // The failures reply is looked for in its thread, the message elsewhere.
                let reply = payload.get("part").and_then(Value::as_str) == Some("failures");
                if reply != thread.is_some() {
                    return None;
                }
                let ours = payload.get("event_id").and_then(Value::as_str)
                    == Some(ctx.event_id.as_str())
                    || (pipeline.is_some()
                        && !reply
                        && payload.get("pipeline").and_then(Value::as_str) == pipeline.as_deref());
                ours.then_some(m.ts)
            });
            if found.is_some() {
                return Ok(found);
            }
            match page.response_metadata.next_cursor.filter(|c| !c.is_empty()) {
                Some(next) if page.has_more => {
                    place.cursor = Some(next);
                    place.pages += 1;
                }
                _ => return Ok(None),
            }
        }
        Ok(None)
    }
}

#[derive(Deserialize)]
struct History {
    ok: bool,
    #[serde(default)]
    error: Option<String>,
    #[serde(default)]
    messages: Vec<HistoryMessage>,
    #[serde(default)]
    has_more: bool,
    #[serde(default)]
    response_metadata: Cursor,
}

#[derive(Deserialize, Default)]
struct Cursor {
    #[serde(default)]
    next_cursor: Option<String>,
}

/// Where a throttled history lookup stopped.
#[derive(serde::Serialize, Deserialize, Default)]
struct HistoryPlace {
    cursor: Option<String>,
    pages: u32,
}

#[derive(Deserialize)]
struct HistoryMessage {
    ts: String,
    #[serde(default)]
    metadata: Option<Metadata>,
}

#[derive(Deserialize)]
struct Metadata {
    #[serde(default)]
    event_payload: serde_json::Map<String, Value>,
}
