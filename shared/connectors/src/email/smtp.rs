//! SMTP through lettre: STARTTLS (required: a server that does not offer it gets nothing)
//! or implicit TLS, AUTH when credentials are set, one connection per message to an
//! address the network policy allows (the name is resolved and checked first; the TLS
//! certificate is checked against the configured host name).
//!
//! Replies: 2xx sent; 4xx transient, or throttled when the server says it is limiting
//! (`454 Throttling failure: Maximum sending rate exceeded.` from SES's SMTP interface,
//! `421 4.7.0 ... too many messages`, `450 4.2.1 ... rate`); 5xx permanent (an unknown
//! recipient, `535` bad credentials, an unverified sender); no connection, a timeout or a
//! TLS failure transient.

use crate::http::{Http, Unreachable, permanent};
use async_trait::async_trait;
use lettre::address::{Address, Envelope};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};
use secrecy::{ExposeSecret, SecretString};
use std::time::Duration;
use testrelay_domain::config::{SmtpConfig, SmtpTls};
use testrelay_domain::ports::{DeliveryError, ErrorClass, MailTransport, Outgoing, Probe};

/// How long a throttled sender waits when the server does not say: a minute, or an hour
/// for a daily quota.
const THROTTLE_PAUSE: Duration = Duration::from_secs(60);
const QUOTA_PAUSE: Duration = Duration::from_secs(3600);

pub struct Smtp {
    target: String,
    host: String,
    port: u16,
    mode: SmtpTls,
    /// Built once: the roots (the system's, and `ca_file`'s) and the name to check.
    tls: Tls,
    credentials: Option<(String, SecretString)>,
    http: Http,
    timeout: Duration,
}

impl Smtp {
    pub fn new(
        c: &SmtpConfig,
        password: Option<SecretString>,
        http: Http,
        timeout: Duration,
    ) -> Result<Self, String> {
        let mut params = TlsParameters::builder(c.host.clone());
        if let Some(path) = &c.ca_file {
            let pem = std::fs::read(path)
                .map_err(|e| format!("smtp.ca_file: {}: {e}", path.display()))?;
            params = params.add_root_certificate(
                Certificate::from_pem(&pem)
                    .map_err(|e| format!("smtp.ca_file: {}: {e}", path.display()))?,
            );
        }
        let params = || params.build_rustls().map_err(|e| format!("smtp.tls: {e}"));
        let tls = match c.tls {
            SmtpTls::Starttls => Tls::Required(params()?),
            SmtpTls::Implicit => Tls::Wrapper(params()?),
            SmtpTls::None => Tls::None,
        };
        Ok(Smtp {
            target: format!("smtp://{}:{}", c.host, c.port()),
            host: c.host.clone(),
            port: c.port(),
            mode: c.tls,
            tls,
            credentials: c.username.clone().zip(password),
            http,
            timeout,
        })
    }

    /// A transport to one allowed address of the host.
    async fn transport(&self) -> Result<AsyncSmtpTransport<Tokio1Executor>, DeliveryError> {
        let addresses = self
            .http
            .addresses(&self.host, self.port)
            .await
            .map_err(|e| match e {
                Unreachable::Lookup(e) => transient(format!("{}: {e}", self.host)),
                Unreachable::Refused(why) => permanent(why),
            })?;
        // IPv4 first: a host's IPv6 address is the one more often unreachable from a VPC.
        let address = addresses
            .iter()
            .find(|a| a.is_ipv4())
            .unwrap_or(&addresses[0])
            .ip();
        let mut builder =
            AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(address.to_string())
                .port(self.port)
                .tls(self.tls.clone())
                .timeout(Some(self.timeout));
        if let Some((user, password)) = &self.credentials {
            builder = builder.credentials(Credentials::new(
                user.clone(),
                password.expose_secret().to_string(),
            ));
        }
        Ok(builder.build())
    }
}

#[async_trait]
impl MailTransport for Smtp {
    fn target(&self) -> &str {
        &self.target
    }

    async fn send(&self, mail: &Outgoing<'_>) -> Result<String, DeliveryError> {
        let parse = |a: &str| {
            a.parse::<Address>()
                .map_err(|e| permanent(format!("{a:?} is not an email address: {e}")))
        };
        let to = mail
            .to
            .iter()
            .map(|a| parse(a))
            .collect::<Result<Vec<_>, _>>()?;
        let envelope = Envelope::new(Some(parse(mail.from)?), to)
            .map_err(|e| permanent(format!("envelope: {e}")))?;
        let transport = self.transport().await?;
        let sent = tokio::time::timeout(self.timeout * 3, transport.send_raw(&envelope, mail.raw))
            .await
            .map_err(|_| {
                transient(format!(
                    "no answer within {} ms",
                    (self.timeout * 3).as_millis()
                ))
            })?
            .map_err(classify)?;
        Ok(sent.message().next().unwrap_or("").to_string())
    }

    async fn probe(&self) -> Result<Probe, DeliveryError> {
        let transport = self.transport().await?;
        let ok = tokio::time::timeout(self.timeout * 2, transport.test_connection())
            .await
            .map_err(|_| transient("no answer in time".into()))?
            .map_err(classify)?;
        if !ok {
            return Err(transient("the server did not answer NOOP".into()));
        }
        Ok(Probe {
            check: format!(
                "SMTP {} (connect, {}{}, NOOP)",
                self.target,
                match self.mode {
                    SmtpTls::Starttls => "STARTTLS",
                    SmtpTls::Implicit => "TLS",
                    SmtpTls::None => "no TLS",
                },
                if self.credentials.is_some() {
                    ", AUTH"
                } else {
                    ""
                },
            ),
            detail: None,
        })
    }
}

/// An SMTP failure as a delivery error (see the module's table).
pub fn classify(e: lettre::transport::smtp::Error) -> DeliveryError {
    let text = e.to_string();
    let Some(code) = e.status() else {
        // No reply to read: no connection, a timeout, TLS, or a server that does not
        // offer STARTTLS (lettre's client error, which retrying will not change).
        let class = if e.is_client() {
            ErrorClass::Permanent
        } else {
            ErrorClass::Transient
        };
        return error(class, format!("SMTP: {text}"), None);
    };
    let code = code.to_string();
    let lower = text.to_ascii_lowercase();
    if code.starts_with('4') {
        let throttled = ["rate", "throttl", "too many", "slow down", "quota"]
            .iter()
            .any(|w| lower.contains(w));
        if throttled {
            let pause = if lower.contains("daily") {
                QUOTA_PAUSE
            } else {
                THROTTLE_PAUSE
            };
            return error(ErrorClass::Throttled, format!("SMTP {text}"), Some(pause));
        }
        return error(ErrorClass::Transient, format!("SMTP {text}"), None);
    }
    error(ErrorClass::Permanent, format!("SMTP {text}"), None)
}

fn error(class: ErrorClass, detail: String, retry_after: Option<Duration>) -> DeliveryError {
    DeliveryError {
        class,
        status_code: None,
        detail: crate::cut_chars(&detail, 500),
        retry_after,
        target: None,
    }
}

fn transient(detail: String) -> DeliveryError {
    error(ErrorClass::Transient, detail, None)
}
