//! Sending a whole email message: an SMTP relay locally (and wherever a team has one),
//! Amazon SES on AWS. The email connector renders the message once; a transport only carries
//! it, so both send the same bytes.

use super::{DeliveryError, Probe};
use async_trait::async_trait;

/// A rendered message and its envelope.
#[derive(Debug, Clone, Copy)]
pub struct Outgoing<'a> {
    /// The envelope sender: an address, without a display name.
    pub from: &'a str,
    /// Every envelope recipient (To and Cc), addresses only.
    pub to: &'a [String],
    /// The RFC 5322 message, headers and MIME body, CRLF line ends.
    pub raw: &'a [u8],
}

#[async_trait]
pub trait MailTransport: Send + Sync {
    /// Where messages go (`smtp://host:port`, `ses:eu-west-1`): the breaker and rate-limit
    /// key. Never holds a credential.
    fn target(&self) -> &str;
    /// Sends `mail` once; the id the server gave it (the SMTP reply text, SES's MessageId).
    /// Answers are classified like the HTTP vendors': transient, throttled or permanent.
    async fn send(&self, mail: &Outgoing<'_>) -> Result<String, DeliveryError>;
    /// Reachable and accepts us, sending nothing (SMTP: connect, TLS, AUTH, NOOP; SES: the
    /// sender's identity is verified for sending).
    async fn probe(&self) -> Result<Probe, DeliveryError>;
}
