//! Amazon SES (v2 `SendEmail` with raw content): the email connector's transport on AWS.
//! The message is sent as rendered (text and HTML parts, headers); SES replaces its
//! `Message-ID` with its own and returns that id.
//!
//! One call per try: the SDK's own retries are off, since a SendEmail retried after a
//! timeout would be a second mail; the delivery schedule retries, with its idempotency
//! records and breakers.
//!
//! Answers: `TooManyRequestsException` / `LimitExceededException` / `Throttling`
//! throttled (a minute; an hour for the daily quota); `MessageRejected` (an unverified
//! sender or recipient in the sandbox), `MailFromDomainNotVerifiedException`,
//! `SendingPausedException`, `AccountSuspendedException`, `NotFoundException` (the
//! configuration set) and other 4xx permanent; 5xx, timeouts and no connection transient.

use async_trait::async_trait;
use aws_sdk_sesv2::config::http::HttpResponse;
use aws_sdk_sesv2::config::retry::RetryConfig;
use aws_sdk_sesv2::config::timeout::TimeoutConfig;
use aws_sdk_sesv2::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_sesv2::primitives::Blob;
use aws_sdk_sesv2::types::{Destination, EmailContent, RawMessage};
use std::time::Duration;
use testrelay_domain::config::SesConfig;
use testrelay_domain::ports::{DeliveryError, ErrorClass, MailTransport, Outgoing, Probe};

pub struct SesMail {
    client: aws_sdk_sesv2::Client,
    target: String,
    /// The sender's address: the probe looks for it, then its domain, among the identities.
    sender: String,
    configuration_set: Option<String>,
}

impl SesMail {
    pub fn new(sdk: &aws_config::SdkConfig, c: &SesConfig, sender: &str) -> Self {
        let mut config = aws_sdk_sesv2::config::Builder::from(sdk)
            .retry_config(RetryConfig::disabled())
            .timeout_config(
                TimeoutConfig::builder()
                    .connect_timeout(Duration::from_secs(5))
                    .operation_timeout(Duration::from_secs(30))
                    .build(),
            );
        if let Some(r) = &c.region {
            config = config.region(aws_types::region::Region::new(r.clone()));
        }
        let region = c
            .region
            .clone()
            .or_else(|| sdk.region().map(|r| r.to_string()))
            .unwrap_or_else(|| "default".into());
        SesMail {
            client: aws_sdk_sesv2::Client::from_conf(config.build()),
            target: format!("ses:{region}"),
            sender: sender.to_string(),
            configuration_set: c.configuration_set.clone(),
        }
    }

    /// Whether `identity` exists and is verified for sending (`None`: SES has no such
    /// identity).
    async fn verified(&self, identity: &str) -> Result<Option<bool>, DeliveryError> {
        match self
            .client
            .get_email_identity()
            .email_identity(identity)
            .send()
            .await
        {
            Ok(found) => Ok(Some(found.verified_for_sending_status())),
            Err(SdkError::ServiceError(e)) if e.err().is_not_found_exception() => Ok(None),
            Err(e) => Err(classify(e)),
        }
    }
}

#[async_trait]
impl MailTransport for SesMail {
    fn target(&self) -> &str {
        &self.target
    }

    async fn send(&self, mail: &Outgoing<'_>) -> Result<String, DeliveryError> {
        let raw = RawMessage::builder()
            .data(Blob::new(mail.raw.to_vec()))
            .build()
            .map_err(|e| permanent(format!("SES: {e}")))?;
        let sent = self
            .client
            .send_email()
            .from_email_address(mail.from)
            .destination(
                Destination::builder()
                    .set_to_addresses(Some(mail.to.to_vec()))
                    .build(),
            )
            .content(EmailContent::builder().raw(raw).build())
            .set_configuration_set_name(self.configuration_set.clone())
            .send()
            .await
            .map_err(classify)?;
        Ok(sent.message_id().unwrap_or_default().to_string())
    }

    async fn probe(&self) -> Result<Probe, DeliveryError> {
        let domain = self.sender.rsplit_once('@').map(|(_, d)| d).unwrap_or("");
        for identity in [self.sender.as_str(), domain] {
            match self.verified(identity).await? {
                Some(true) => {
                    return Ok(Probe {
                        check: format!("SES GetEmailIdentity {identity} ({})", self.target),
                        detail: Some("verified for sending".into()),
                    });
                }
                Some(false) => {
                    return Err(permanent(format!(
                        "SES: identity {identity} is not verified for sending in {}",
                        self.target
                    )));
                }
                None => {}
            }
        }
        Err(permanent(format!(
            "SES: neither {} nor {domain} is an identity in {}",
            self.sender, self.target
        )))
    }
}

/// An SES failure as a delivery error (see the module's table).
fn classify<E>(e: SdkError<E, HttpResponse>) -> DeliveryError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    let (code, message, status) = match &e {
        SdkError::ServiceError(s) => (
            s.err().code().unwrap_or("Unknown").to_string(),
            s.err().message().unwrap_or("").to_string(),
            s.raw().status().as_u16(),
        ),
        SdkError::ConstructionFailure(_) => {
            return permanent("SES: the request could not be built".into());
        }
        _ => {
            return error(
                ErrorClass::Transient,
                format!("SES: {}", aws_sdk_sesv2::error::DisplayErrorContext(&e)),
                None,
            );
        }
    };
    let detail = format!("SES {code}: {message}");
    let daily = message.to_ascii_lowercase().contains("daily");
    match code.as_str() {
        "TooManyRequestsException"
        | "LimitExceededException"
        | "Throttling"
        | "ThrottlingException" => {
            let pause = Duration::from_secs(if daily { 3600 } else { 60 });
            error(ErrorClass::Throttled, detail, Some(pause))
        }
        _ if status >= 500 => error(ErrorClass::Transient, detail, None),
        _ => error(ErrorClass::Permanent, detail, None),
    }
}

fn error(class: ErrorClass, detail: String, retry_after: Option<Duration>) -> DeliveryError {
    let detail = if detail.len() > 500 {
        let mut end = 500;
        while !detail.is_char_boundary(end) {
            end -= 1;
        }
        detail[..end].to_string()
    } else {
        detail
    };
    DeliveryError {
        class,
        status_code: None,
        detail,
        retry_after,
        target: None,
    }
}

fn permanent(detail: String) -> DeliveryError {
    error(ErrorClass::Permanent, detail, None)
}
