//! Email: a message per run through an SMTP relay (STARTTLS or implicit TLS) or, on AWS,
//! Amazon SES.

use super::SecretRef;
use super::connectors::connector_config;
use super::connectors::{RateLimit, default_max_failures};
use serde::Deserialize;

/// One message a second, burst 5: Amazon SES's sending rate for a new (sandbox) account,
/// and a pace that common relays (Gmail, Microsoft 365) take without throttling.
pub const EMAIL_RATE: RateLimit = RateLimit::new(60, 5);

/// SES takes at most 50 recipients a message.
pub const MAX_RECIPIENTS: usize = 50;

connector_config! {
    pub struct EmailConfig {
        /// The sender, `ci@example.com` or `CI results <ci@example.com>` (on SES a verified
        /// identity: the address or its domain).
        pub from: String,
        pub to: Vec<String>,
        #[serde(default)]
        pub cc: Vec<String>,
        #[serde(default)]
        pub reply_to: Option<String>,
        /// Set exactly one of `smtp` and `ses`.
        #[serde(default)]
        pub smtp: Option<SmtpConfig>,
        #[serde(default)]
        pub ses: Option<SesConfig>,
        /// Failures listed in the message (the rest are counted).
        #[serde(default = "default_max_failures")]
        pub max_failures: usize,
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SmtpTls {
    /// Plain connection upgraded by STARTTLS, which the server must offer (port 587).
    Starttls,
    /// TLS from the first byte (port 465).
    Implicit,
    /// No encryption: only with `allow_plaintext` and without credentials.
    None,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmtpConfig {
    pub host: String,
    /// 587 for STARTTLS, 465 for implicit TLS, 25 without TLS, when absent.
    #[serde(default)]
    pub port: Option<u16>,
    #[serde(default = "starttls")]
    pub tls: SmtpTls,
    #[serde(default)]
    pub username: Option<String>,
    #[serde(default)]
    pub password: Option<SecretRef>,
    /// A PEM file of CA certificates trusted besides the system's (a private relay).
    #[serde(default)]
    pub ca_file: Option<std::path::PathBuf>,
    #[serde(default)]
    pub allow_plaintext: bool,
}

fn starttls() -> SmtpTls {
    SmtpTls::Starttls
}

impl SmtpConfig {
    pub fn port(&self) -> u16 {
        self.port.unwrap_or(match self.tls {
            SmtpTls::Starttls => 587,
            SmtpTls::Implicit => 465,
            SmtpTls::None => 25,
        })
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SesConfig {
    /// The function's own region when absent.
    #[serde(default)]
    pub region: Option<String>,
    #[serde(default)]
    pub configuration_set: Option<String>,
}

/// The address part of `Name <addr>` or `addr`, when it looks like one.
pub fn address_of(mailbox: &str) -> Option<&str> {
    let addr = match (mailbox.rfind('<'), mailbox.ends_with('>')) {
        (Some(i), true) => &mailbox[i + 1..mailbox.len() - 1],
        _ => mailbox,
    }
    .trim();
    let (local, domain) = addr.rsplit_once('@')?;
    let fine = |s: &str| {
        !s.is_empty()
            && s.len() <= 254
            && !s
                .chars()
                .any(|c| c.is_whitespace() || c.is_control() || "<>,;\"".contains(c))
    };
    (fine(local) && fine(domain) && (domain.contains('.') || domain == "localhost")).then_some(addr)
}

pub(super) fn problems(e: &EmailConfig) -> Vec<String> {
    let mut p = Vec::new();
    let mut mailbox = |key: String, raw: &str| {
        if raw.contains(['\r', '\n']) || address_of(raw).is_none() {
            p.push(format!("{key}: {raw:?} is not an email address"));
        }
    };
    mailbox("from".into(), &e.from);
    for (i, to) in e.to.iter().enumerate() {
        mailbox(format!("to[{i}]"), to);
    }
    for (i, cc) in e.cc.iter().enumerate() {
        mailbox(format!("cc[{i}]"), cc);
    }
    if let Some(r) = &e.reply_to {
        mailbox("reply_to".into(), r);
    }
    if e.to.is_empty() {
        p.push("to: at least one recipient".into());
    }
    if e.to.len() + e.cc.len() > MAX_RECIPIENTS {
        p.push(format!(
            "to, cc: at most {MAX_RECIPIENTS} recipients in all"
        ));
    }
    if e.max_failures == 0 || e.max_failures > 500 {
        p.push("max_failures: must be 1 to 500".into());
    }
    match (&e.smtp, &e.ses) {
        (Some(s), None) => {
            if s.host.is_empty()
                || (s.host.contains(['/', ':', ' '])
                    && s.host.parse::<std::net::Ipv6Addr>().is_err())
            {
                p.push(format!(
                    "smtp.host: {:?} is not a host name or address",
                    s.host
                ));
            }
            if s.port == Some(0) {
                p.push("smtp.port: must be 1 to 65535".into());
            }
            if s.username.is_some() != s.password.is_some() {
                p.push("smtp.username, smtp.password: set both or neither".into());
            }
            if s.tls == SmtpTls::None {
                if !s.allow_plaintext {
                    p.push("smtp.tls: \"none\" sends mail in the clear; use starttls or implicit, or set allow_plaintext = true".into());
                }
                if s.password.is_some() {
                    p.push(
                        "smtp.password: never sent without TLS; use starttls or implicit".into(),
                    );
                }
            }
        }
        (None, Some(s)) => {
            if let Some(r) = &s.region
                && (r.is_empty() || !r.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'))
            {
                p.push(format!("ses.region: {r:?} is not a region name"));
            }
        }
        _ => p.push("smtp, ses: set exactly one".into()),
    }
    p
}
