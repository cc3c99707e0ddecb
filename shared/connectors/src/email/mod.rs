//! Email: a run as one message with a plain-text and an HTML part ([`render`]), sent through
//! an SMTP relay ([`smtp`]) or, on AWS, Amazon SES (a [`MailTransport`] the Lambda bootstrap
//! puts in the [`Env`]: the AWS SDK stays out of the local binary).
//!
//! Exactly once: the send is one step. Its `Message-ID` is derived from the run and the
//! connector (`<run.digest@sender-domain>`), and `References` carries it too (SES replaces
//! `Message-ID` with its own; `References` survives), so in the one window where a try
//! crashes after the server accepted the message and before that is recorded, the resend
//! is the same message: mail clients thread it with the first, and some drop it as a
//! duplicate. No mail protocol lets a sender ask whether a message went through.

pub mod render;
pub mod smtp;

use crate::{Base, Env, digest8};
use async_trait::async_trait;
use lettre::message::header::{HeaderName, HeaderValue};
use lettre::message::{Mailbox, MultiPart};
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use testrelay_domain::config::{ConnectorConfig, EmailConfig, address_of};
use testrelay_domain::delivery::steps::Steps;
use testrelay_domain::health::HealthAlert;
use testrelay_domain::ids::ConnectorName;
use testrelay_domain::ports::{
    Connector, Delivered, DeliveryContext, DeliveryError, MailTransport, Outgoing, Probe, StepError,
};
use testrelay_domain::report::model::TestRun;

/// Builds an SES transport for a connector's settings and sender (on AWS only).
pub type SesTransports =
    Arc<dyn Fn(&testrelay_domain::config::SesConfig, &str) -> Arc<dyn MailTransport> + Send + Sync>;

pub struct Email {
    base: Base,
    transport: Arc<dyn MailTransport>,
    from: Mailbox,
    to: Vec<Mailbox>,
    cc: Vec<Mailbox>,
    reply_to: Option<Mailbox>,
    /// `.<digest of the connector's name>@<the sender's domain>`: the Message-ID's tail.
    id_tail: String,
    max_failures: usize,
}

impl Email {
    pub fn new(
        name: &ConnectorName,
        cfg: &ConnectorConfig,
        c: &EmailConfig,
        transport: Arc<dyn MailTransport>,
        env: &Env,
    ) -> Result<Self, String> {
        let mailbox = |key: &str, raw: &str| {
            raw.parse::<Mailbox>()
                .map_err(|e| format!("{key}: {raw:?} is not an email address: {e}"))
        };
        let list = |key: &str, raws: &[String]| {
            raws.iter()
                .enumerate()
                .map(|(i, r)| mailbox(&format!("{key}[{i}]"), r))
                .collect::<Result<Vec<_>, _>>()
        };
        let from = mailbox("from", &c.from)?;
        let domain = address_of(&c.from)
            .and_then(|a| a.rsplit_once('@'))
            .map(|(_, d)| d.to_ascii_lowercase())
            .ok_or("from: no domain")?;
        let base = Base::new(env.http.clone(), transport.target().to_string(), cfg);
        Ok(Email {
            base,
            transport,
            from,
            to: list("to", &c.to)?,
            cc: list("cc", &c.cc)?,
            reply_to: c
                .reply_to
                .as_deref()
                .map(|r| mailbox("reply_to", r))
                .transpose()?,
            id_tail: format!(".{}@{domain}", digest8(name.as_str())),
            max_failures: c.max_failures,
        })
    }

    /// The Message-ID of `run`'s message from this connector.
    pub fn message_id(&self, run: &TestRun) -> String {
        format!("<{}{}>", run.run_id, self.id_tail)
    }

    /// The whole message: headers, and the text and HTML parts.
    pub fn compose(
        &self,
        r: &render::Rendered,
        message_id: &str,
        sent_at: SystemTime,
        run_id: Option<&str>,
    ) -> Result<Vec<u8>, DeliveryError> {
        let mut b = lettre::Message::builder()
            .from(self.from.clone())
            .subject(r.subject.clone())
            .date(sent_at)
            .message_id(Some(message_id.to_string()))
            .references(message_id.to_string())
            .raw_header(raw("Auto-Submitted", "auto-generated"));
        for to in &self.to {
            b = b.to(to.clone());
        }
        for cc in &self.cc {
            b = b.cc(cc.clone());
        }
        if let Some(r) = &self.reply_to {
            b = b.reply_to(r.clone());
        }
        if let Some(id) = run_id {
            b = b.raw_header(raw("X-Testrelay-Run", id));
        }
        let message = b
            .multipart(MultiPart::alternative_plain_html(
                r.text.clone(),
                r.html.clone(),
            ))
            .map_err(|e| crate::http::permanent(format!("could not build the message: {e}")))?;
        Ok(message.formatted())
    }

    /// Sends `raw` within the target's rate limit and this connector's timeout.
    async fn send(&self, raw: &[u8]) -> Result<String, DeliveryError> {
        let recipients: Vec<String> = self
            .to
            .iter()
            .chain(&self.cc)
            .map(|m| m.email.to_string())
            .collect();
        let from = self.from.email.to_string();
        let mail = Outgoing {
            from: &from,
            to: &recipients,
            raw,
        };
        self.base.http.slot(&self.base.limit).await?;
        let result = self.transport.send(&mail).await;
        if let Err(e) = &result {
            self.base.http.throttled(&self.base.limit, e);
        }
        result
    }
}

fn raw(name: &'static str, value: &str) -> HeaderValue {
    HeaderValue::new(HeaderName::new_from_ascii_str(name), value.to_string())
}

fn at_ms(ms: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_millis(ms)
}

#[async_trait]
impl Connector for Email {
    crate::basics!(Email);

    async fn deliver(
        &self,
        run: &TestRun,
        ctx: &DeliveryContext,
        steps: &Steps,
    ) -> Result<Delivered, StepError> {
        let id = self.message_id(run);
        let sent = steps
            .once("send", |_| async {
                let rendered = render::run_message(run, &ctx.status_url, self.max_failures);
                let raw =
                    self.compose(&rendered, &id, at_ms(ctx.now_ms), Some(run.run_id.as_str()))?;
                let answer = self.send(&raw).await?;
                Ok(format!("{id} {}", crate::cut_chars(&answer, 120))
                    .trim_end()
                    .to_string())
            })
            .await?;
        Ok(Delivered {
            status_code: None,
            external_ref: Some(format!("email:{}", sent.value)),
            resumed: sent.resumed,
        })
    }

    async fn alert(&self, alert: &HealthAlert) -> Result<(), DeliveryError> {
        let rendered = render::alert_message(alert);
        let id = format!(
            "<alert.{}{}>",
            digest8(&format!("{}|{}", alert.at, rendered.subject)),
            self.id_tail
        );
        let raw = self.compose(&rendered, &id, SystemTime::now(), None)?;
        self.send(&raw).await.map(|_| ())
    }

    /// SMTP: connect, TLS, AUTH and NOOP; SES: the sender is verified for sending.
    async fn probe(&self) -> Result<Probe, DeliveryError> {
        crate::http::unlimited(self.transport.probe()).await
    }
}
