//! Generic webhooks: a `run.completed` event POSTed as JSON and signed per Standard Webhooks.
//! `webhook-id` is the delivery's event id, the same on every retry, so receivers dedupe.
//! An endpoint that answers 410 Gone is disabled (recorded in the state store, so every
//! instance knows): later deliveries to it fail at once, saying so, until its URL changes
//! or an operator re-enables it.

use crate::{Base, Env, origin, parse_url};
use async_trait::async_trait;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use testrelay_domain::config::{ConnectorConfig, WebhookConfig};
use testrelay_domain::delivery::signing::WebhookSecret;
use testrelay_domain::delivery::steps::Steps;
use testrelay_domain::health::HealthAlert;
use testrelay_domain::ids::ConnectorName;
use testrelay_domain::ports::{
    Clock, Connector, Delivered, DeliveryContext, DeliveryError, ErrorClass, Probe, StateStore,
    StepError, rfc3339,
};
use testrelay_domain::report::model::TestRun;
use testrelay_domain::report::payload::run_completed;

pub struct WebhookConnector {
    base: Base,
    url: reqwest::Url,
    secret: WebhookSecret,
    state: Arc<dyn StateStore>,
    clock: Arc<dyn Clock>,
    /// State-store key of this endpoint's disabled flag.
    disabled_key: String,
    url_hash: String,
    probe_url: Option<reqwest::Url>,
}

/// Why an endpoint is disabled.
#[derive(Debug, Serialize, Deserialize)]
pub struct Disabled {
    pub disabled: bool,
    /// Hash of the URL that was disabled: a new URL is enabled again.
    pub url_hash: String,
    pub at: String,
    pub reason: String,
}

/// The state-store key of a connector's disabled flag.
pub fn disabled_key(connector: &ConnectorName) -> String {
    format!("disabled/{connector}")
}

impl WebhookConnector {
    pub fn new(
        name: &ConnectorName,
        cfg: &ConnectorConfig,
        config: &WebhookConfig,
        secret: &SecretString,
        env: &Env,
    ) -> Result<Self, String> {
        let url = parse_url(&config.url, "url")?;
        let secret =
            WebhookSecret::parse(secret.expose_secret()).map_err(|e| format!("secret: {e}"))?;
        // One breaker per receiving server: endpoints on the same host fail together.
        let target = format!("webhook:{}", origin(&url));
        use sha2::Digest;
        let url_hash = hex::encode(&sha2::Sha256::digest(config.url.as_bytes())[..8]);
        Ok(WebhookConnector {
            base: Base::new(env.http.clone(), target, cfg),
            url,
            secret,
            state: env.state.clone(),
            clock: env.clock.clone(),
            disabled_key: disabled_key(name),
            url_hash,
            probe_url: config
                .probe_url
                .as_deref()
                .map(|u| parse_url(u, "probe_url"))
                .transpose()?,
        })
    }

    async fn disabled(&self) -> Result<Option<Disabled>, StepError> {
        let Some(v) = self.state.load(&self.disabled_key).await? else {
            return Ok(None);
        };
        Ok(serde_json::from_str::<Disabled>(&v.value)
            .ok()
            .filter(|d| d.disabled && d.url_hash == self.url_hash))
    }

    /// Records that the endpoint asked to be disabled (first writer wins; a lost race
    /// means someone else recorded the same thing).
    async fn disable(&self, reason: &str) -> Result<(), StepError> {
        let current = self.state.load(&self.disabled_key).await?;
        let record = Disabled {
            disabled: true,
            url_hash: self.url_hash.clone(),
            at: rfc3339(self.clock.now_ms()),
            reason: reason.to_string(),
        };
        let value = serde_json::to_string(&record).expect("serialisable");
        self.state
            .save(&self.disabled_key, &value, current.map(|c| c.version))
            .await?;
        Ok(())
    }
}

#[async_trait]
impl Connector for WebhookConnector {
    crate::basics!(Webhook);

    /// One step, `post`: the receiver dedupes a repeat on `webhook-id`.
    async fn deliver(
        &self,
        run: &TestRun,
        ctx: &DeliveryContext,
        steps: &Steps,
    ) -> Result<Delivered, StepError> {
        if let Some(d) = self.disabled().await? {
            return Err(StepError::Failed(crate::http::permanent(format!(
                "endpoint disabled since {}: {}; configure its new URL to enable it again",
                d.at, d.reason
            ))));
        }
        match steps.once("post", |_| self.post(run, ctx)).await {
            Ok(step) => Ok(Delivered {
                status_code: step.value.parse().ok(),
                external_ref: None,
                resumed: step.resumed,
            }),
            Err(StepError::Failed(e)) if e.status_code == Some(410) => {
                self.disable("it answered 410 Gone").await?;
                Err(StepError::Failed(DeliveryError {
                    detail: "HTTP 410 Gone: the endpoint asked to be disabled; it is disabled now"
                        .into(),
                    class: ErrorClass::Permanent,
                    ..e
                }))
            }
            Err(e) => Err(e),
        }
    }

    /// A signed `health.changed` event.
    async fn alert(&self, alert: &HealthAlert) -> Result<(), DeliveryError> {
        let now = self.clock.now_ms();
        // A fallback notice (another connector's delivery failed) or a health change.
        let (kind, id) = match alert.headline {
            Some(_) => ("delivery.fallback", format!("notice_{now}")),
            None => ("health.changed", format!("health_{now}")),
        };
        let body = serde_json::to_vec(&serde_json::json!({
            "type": kind,
            "timestamp": rfc3339(now),
            "data": alert,
        }))
        .expect("serialisable");
        self.signed(&id, now / 1000, body).await.map(|_| ())
    }

    /// A signed `ping` event: receivers answer 2xx without acting on it.
    async fn probe(&self) -> Result<Probe, DeliveryError> {
        crate::http::unlimited(async {
            if let Some(url) = &self.probe_url {
                let request = self.base.http.client().get(url.clone());
                match self.base.send(request).await {
                    Ok(_) => {}
                    Err(e) if e.status_code.is_some_and(|c| c < 500 && c != 429) => {}
                    Err(e) => return Err(e),
                }
                return Ok(Probe {
                    check: "GET probe_url".into(),
                    detail: None,
                });
            }
            let now = self.clock.now_ms();
            let id = format!("ping_{now}");
            let body = serde_json::to_vec(&serde_json::json!({
                "type": "ping",
                "timestamp": rfc3339(now),
                "data": {}
            }))
            .expect("serialisable");
            self.signed(&id, now / 1000, body).await?;
            Ok(Probe {
                check: "POST signed ping event".into(),
                detail: None,
            })
        })
        .await
    }
}

impl WebhookConnector {
    /// POSTs the signed event; the status code on success.
    async fn post(&self, run: &TestRun, ctx: &DeliveryContext) -> Result<String, DeliveryError> {
        // The event happened when the run was accepted: the same `timestamp` on every retry
        // (`webhook-timestamp` carries the send time).
        let event = run_completed(run, &ctx.status_url, &run.received_at);
        let body = serde_json::to_vec(&event).expect("serialisable");
        let response = self.signed(&ctx.event_id, ctx.now_ms / 1000, body).await?;
        Ok(response.status().as_u16().to_string())
    }

    async fn signed(
        &self,
        id: &str,
        timestamp: u64,
        body: Vec<u8>,
    ) -> Result<reqwest::Response, DeliveryError> {
        let signature = self.secret.sign(id, timestamp, &body);
        let request = self
            .base
            .http
            .client()
            .post(self.url.clone())
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header("webhook-id", id)
            .header("webhook-timestamp", timestamp.to_string())
            .header("webhook-signature", signature)
            .body(body);
        self.base.send(request).await
    }
}
