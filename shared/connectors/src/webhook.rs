//! Generic webhooks: a `run.completed` event POSTed as JSON and signed per Standard Webhooks.
//! `webhook-id` is the delivery's event id, the same on every retry, so receivers dedupe.

use crate::http::{status_error, transport_error};
use async_trait::async_trait;
use secrecy::{ExposeSecret, SecretString};
use std::time::Duration;
use testrelay_domain::breaker::BreakerConfig;
use testrelay_domain::config::{ConnectorKind, WebhookConfig};
use testrelay_domain::model::TestRun;
use testrelay_domain::payload::run_completed;
use testrelay_domain::ports::{
    Connector, Delivered, DeliveryContext, DeliveryError, StepError, rfc3339,
};
use testrelay_domain::signing::WebhookSecret;
use testrelay_domain::steps::Steps;

pub struct WebhookConnector {
    client: reqwest::Client,
    url: reqwest::Url,
    secret: WebhookSecret,
    timeout: Duration,
    target: String,
    breaker: BreakerConfig,
}

impl WebhookConnector {
    pub fn new(
        client: reqwest::Client,
        config: &WebhookConfig,
        secret: &SecretString,
    ) -> Result<Self, String> {
        let url = reqwest::Url::parse(&config.url).map_err(|e| format!("url: {e}"))?;
        let secret =
            WebhookSecret::parse(secret.expose_secret()).map_err(|e| format!("secret: {e}"))?;
        // One breaker per receiving server: endpoints on the same host fail together.
        let target = format!(
            "webhook:{}://{}:{}",
            url.scheme(),
            url.host_str().unwrap_or(""),
            url.port_or_known_default().unwrap_or(0)
        );
        Ok(WebhookConnector {
            client,
            url,
            secret,
            timeout: Duration::from_millis(config.timeout_ms),
            target,
            breaker: config.breaker.clone(),
        })
    }
}

#[async_trait]
impl Connector for WebhookConnector {
    fn kind(&self) -> ConnectorKind {
        ConnectorKind::Webhook
    }

    fn target(&self) -> &str {
        &self.target
    }

    fn breaker(&self) -> &BreakerConfig {
        &self.breaker
    }

    /// One step, `post`: the receiver dedupes a repeat on `webhook-id`.
    async fn deliver(
        &self,
        run: &TestRun,
        ctx: &DeliveryContext,
        steps: &Steps,
    ) -> Result<Delivered, StepError> {
        let step = steps.once("post", || self.post(run, ctx)).await?;
        Ok(Delivered {
            status_code: step.value.parse().ok(),
            external_ref: None,
            resumed: step.resumed,
        })
    }
}

impl WebhookConnector {
    /// POSTs the signed event; the status code on success.
    async fn post(&self, run: &TestRun, ctx: &DeliveryContext) -> Result<String, DeliveryError> {
        let event = run_completed(run, &ctx.status_path, &rfc3339(ctx.now_ms));
        let body = serde_json::to_vec(&event).expect("serialisable");
        let timestamp = ctx.now_ms / 1000;
        let signature = self.secret.sign(&ctx.event_id, timestamp, &body);
        let response = self
            .client
            .post(self.url.clone())
            .timeout(self.timeout)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header("webhook-id", &ctx.event_id)
            .header("webhook-timestamp", timestamp.to_string())
            .header("webhook-signature", signature)
            .body(body)
            .send()
            .await
            .map_err(|e| transport_error(e, self.timeout))?;
        let status = response.status();
        if status.is_success() {
            Ok(status.as_u16().to_string())
        } else {
            Err(status_error(status, response.headers()))
        }
    }
}
