//! The mail transport contract: SMTP (the local adapter, against the test command's SMTP
//! server, STARTTLS and AUTH) and SES v2 (the AWS adapter) on moto and on MiniStack. A sent
//! message reaches every recipient once, as rendered; a message the service refuses is a
//! permanent error and reaches nobody; the probe passes for a sender that may send, and
//! sends nothing.

use futures::future::BoxFuture;
use std::sync::Arc;
use testrelay_domain::config::{SesConfig, SmtpConfig, SmtpTls};
use testrelay_domain::ports::{ErrorClass, MailTransport, Outgoing};
use testrelay_tests::aws::Engine;
use testrelay_tests::mail::{SmtpServer, parse, recipient};

/// What a peer says it took for one recipient.
#[derive(Debug, PartialEq, Eq)]
pub struct Received {
    pub subject: String,
    pub text: String,
    pub recipients: Vec<String>,
}

type Reader = Box<dyn Fn(String) -> BoxFuture<'static, Vec<Received>> + Send + Sync>;

pub struct MailFixture {
    transport: Arc<dyn MailTransport>,
    sender: String,
    /// A sender and a recipient the service refuses to carry.
    refused: (String, String),
    /// Every message delivered to a recipient.
    received: Reader,
}

async fn embedded_port() -> super::Fixture<MailFixture> {
    let server = SmtpServer::get();
    let config = SmtpConfig {
        host: "127.0.0.1".into(),
        port: Some(server.starttls),
        tls: SmtpTls::Starttls,
        username: Some("testrelay".into()),
        password: None,
        ca_file: Some(server.ca_file()),
        allow_plaintext: false,
    };
    let http = testrelay_connectors::http::Http::new(
        testrelay_domain::delivery::net::AddressPolicy::allow_all(),
    );
    let transport = testrelay_connectors::email::smtp::Smtp::new(
        &config,
        Some("smtp-test-password".to_string().into()),
        http,
        std::time::Duration::from_secs(10),
    )
    .unwrap();
    let received: Reader = Box::new(move |rcpt: String| {
        let server = SmtpServer::get();
        Box::pin(async move {
            server
                .received(&rcpt)
                .iter()
                .map(|raw| {
                    let m = parse(raw);
                    Received {
                        subject: m.subject().unwrap_or_default().to_string(),
                        text: m.body_text(0).unwrap_or_default().replace("\r\n", "\n"),
                        recipients: m
                            .header_raw("X-Envelope-To")
                            .unwrap_or_default()
                            .split(',')
                            .map(|s| s.trim().to_string())
                            .collect(),
                    }
                })
                .collect()
        })
    });
    super::Fixture {
        port: MailFixture {
            transport: Arc::new(transport),
            sender: "ci@example.test".into(),
            refused: ("ci@example.test".into(), recipient("unverified-")),
            received,
        },
        _keep: None,
    }
}

async fn aws_port(engine: Engine) -> super::Fixture<MailFixture> {
    let sdk = testrelay_tests::aws::sdk_on(engine).await;
    let domain = format!("{}.test", testrelay_tests::unique("verified"));
    testrelay_tests::mail::ses_identity(&sdk, engine, &domain).await;
    let sender = format!("ci@{domain}");
    let ses = SesConfig {
        region: None,
        configuration_set: None,
    };
    let transport = testrelay_aws::SesMail::new(&sdk, &ses, &sender);
    let received: Reader = Box::new(move |rcpt: String| {
        Box::pin(async move {
            match engine {
                Engine::Moto => testrelay_tests::mail::ses_sent("us-east-1")
                    .await
                    .into_iter()
                    .filter(|m| m.destinations.contains(&rcpt))
                    .map(|m| {
                        let p = parse(m.raw.as_bytes());
                        Received {
                            subject: p.subject().unwrap_or_default().to_string(),
                            text: p.body_text(0).unwrap_or_default().replace("\r\n", "\n"),
                            recipients: m.destinations.clone(),
                        }
                    })
                    .collect(),
                Engine::DynamoDbLocal => testrelay_tests::mail::ministack_sent()
                    .await
                    .into_iter()
                    .filter(|m| m.to.contains(&rcpt))
                    .map(|m| Received {
                        subject: m.subject,
                        text: m.body_text.replace("\r\n", "\n"),
                        recipients: m.to,
                    })
                    .collect(),
            }
        })
    });
    super::Fixture {
        port: MailFixture {
            transport: Arc::new(transport),
            refused: (
                format!("ci@{}", testrelay_tests::unique("unverified")),
                recipient("r"),
            ),
            sender,
            received,
        },
        _keep: None,
    }
}

/// A two-part message as the email connector sends one.
fn message(from: &str, to: &[String], subject: &str) -> Vec<u8> {
    format!(
        "From: {from}\r\nTo: {}\r\nSubject: {subject}\r\nMessage-ID: <contract.{subject}@example.test>\r\n\
         MIME-Version: 1.0\r\nContent-Type: multipart/alternative; boundary=\"b1\"\r\n\r\n\
         --b1\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nTests failed: 2 of 8\r\n\
         --b1\r\nContent-Type: text/html; charset=utf-8\r\n\r\n<p>Tests failed: 2 of 8</p>\r\n--b1--\r\n",
        to.join(", ")
    )
    .into_bytes()
}

async fn sends_to_every_recipient_once(f: &MailFixture) {
    let to = vec![recipient("a"), recipient("b")];
    let subject = testrelay_tests::unique("subject");
    let raw = message(&f.sender, &to, &subject);
    let mail = Outgoing {
        from: &f.sender,
        to: &to,
        raw: &raw,
    };
    let id = f.transport.send(&mail).await.unwrap();
    assert!(!id.is_empty());
    for rcpt in &to {
        let got = (f.received)(rcpt.clone()).await;
        assert_eq!(got.len(), 1, "{rcpt}: {got:?}");
        assert_eq!(got[0].subject, subject);
        assert_eq!(got[0].text.trim_end(), "Tests failed: 2 of 8");
        for r in &to {
            assert!(got[0].recipients.contains(r), "{r} in {got:?}");
        }
    }
}
crate::contract!(sends_to_every_recipient_once, sends_to_every_recipient_once);

async fn a_refused_message_is_permanent_and_reaches_nobody(f: &MailFixture) {
    let (from, rcpt) = &f.refused;
    let to = vec![rcpt.clone()];
    let raw = message(from, &to, "refused");
    let e = f
        .transport
        .send(&Outgoing {
            from,
            to: &to,
            raw: &raw,
        })
        .await
        .unwrap_err();
    assert_eq!(e.class, ErrorClass::Permanent, "{e:?}");
    // SES and its SMTP interface say `Email address is not verified`; moto its own words.
    assert!(
        e.detail
            .to_ascii_lowercase()
            .replace(' ', "")
            .contains("messagerejected"),
        "{e:?}"
    );
    assert!((f.received)(rcpt.clone()).await.is_empty());
}
crate::contract!(
    a_refused_message_is_permanent_and_reaches_nobody,
    a_refused_message_is_permanent_and_reaches_nobody
);

async fn the_probe_passes_and_sends_nothing(f: &MailFixture) {
    let p = f.transport.probe().await.unwrap();
    assert!(!p.check.is_empty());
    assert!(
        f.transport.target().starts_with("smtp://") || f.transport.target().starts_with("ses:")
    );
}
crate::contract!(
    the_probe_passes_and_sends_nothing,
    the_probe_passes_and_sends_nothing
);
