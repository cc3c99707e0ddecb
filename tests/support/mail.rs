//! The email tests' peers: the SMTP server `tests/smtp_server.py` (started by the test
//! command, see `tests/engines.sh`) and SES on moto. Messages are read back as the servers
//! took them.

use std::path::PathBuf;

/// The SMTP server's ports and folder.
pub struct SmtpServer {
    pub starttls: u16,
    pub tls: u16,
    pub plain: u16,
    pub dir: PathBuf,
}

impl SmtpServer {
    /// The server `tests/run-all.sh` started (its environment variables).
    pub fn get() -> SmtpServer {
        let var = |name: &str| {
            std::env::var(name).unwrap_or_else(|_| {
                panic!("{name} is not set: run the tests through tests/run-all.sh (it starts tests/smtp_server.py)")
            })
        };
        let port = |name: &str| var(name).parse().unwrap();
        SmtpServer {
            starttls: port("TESTRELAY_SMTP_STARTTLS_PORT"),
            tls: port("TESTRELAY_SMTP_TLS_PORT"),
            plain: port("TESTRELAY_SMTP_PLAIN_PORT"),
            dir: PathBuf::from(var("TESTRELAY_SMTP_DIR")),
        }
    }

    /// The throwaway CA the server's certificate is signed by.
    pub fn ca_file(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }

    /// Every message whose first recipient is `rcpt`, oldest first (envelope headers
    /// `X-Envelope-From`, `-To`, `-TLS`, `-Auth` first, then the message as sent).
    pub fn received(&self, rcpt: &str) -> Vec<Vec<u8>> {
        let folder = self.dir.join(rcpt.to_ascii_lowercase());
        let mut names: Vec<PathBuf> = match std::fs::read_dir(&folder) {
            Ok(entries) => entries
                .map(|e| e.unwrap().path())
                .filter(|p| p.extension().is_some_and(|x| x == "eml"))
                .collect(),
            Err(_) => return Vec::new(),
        };
        names.sort();
        names.iter().map(|p| std::fs::read(p).unwrap()).collect()
    }
}

/// A recipient address no other test uses: `<prefix><unique>@example.test`.
pub fn recipient(prefix: &str) -> String {
    format!("{}@example.test", crate::unique(prefix))
}

/// One raw message SES (on moto) took.
#[derive(Debug, serde::Deserialize)]
pub struct SesSent {
    pub id: String,
    pub source: String,
    pub destinations: Vec<String>,
    pub raw: String,
}

/// Every raw message moto's SES took in `region` (see `tests/moto_server.py`).
pub async fn ses_sent(region: &str) -> Vec<SesSent> {
    let endpoint = std::env::var("AWS_ENDPOINT_URL").expect("AWS_ENDPOINT_URL (moto)");
    reqwest::get(format!("{endpoint}/_testrelay/ses-sent?region={region}"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// Makes `identity` (an address or a domain) an SES identity verified for sending:
/// MiniStack verifies at once; on moto (which verifies nothing) the test server marks it
/// verified, as its DNS records would.
pub async fn ses_identity(sdk: &aws_config::SdkConfig, engine: crate::aws::Engine, identity: &str) {
    aws_sdk_sesv2::Client::new(sdk)
        .create_email_identity()
        .email_identity(identity)
        .send()
        .await
        .unwrap();
    if engine == crate::aws::Engine::Moto {
        let endpoint = std::env::var("AWS_ENDPOINT_URL").expect("AWS_ENDPOINT_URL (moto)");
        let r = reqwest::Client::new()
            .post(format!(
                "{endpoint}/_testrelay/ses-verify?identity={identity}"
            ))
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "{r:?}");
    }
}

/// A parsed message.
pub fn parse(raw: &[u8]) -> mail_parser::Message<'_> {
    mail_parser::MessageParser::default()
        .parse(raw)
        .expect("a message")
}

/// One message MiniStack's SES took (it keeps the parsed parts, not the raw message).
#[derive(Debug, serde::Deserialize)]
pub struct MiniStackSent {
    #[serde(rename = "To")]
    pub to: Vec<String>,
    #[serde(rename = "Subject")]
    pub subject: String,
    #[serde(rename = "BodyText")]
    pub body_text: String,
    #[serde(rename = "BodyHtml")]
    pub body_html: Option<String>,
}

/// Every message MiniStack's SES took (`GET /_ministack/ses/messages`), all accounts.
pub async fn ministack_sent() -> Vec<MiniStackSent> {
    let endpoint = std::env::var("TESTRELAY_MINISTACK_URL").expect("TESTRELAY_MINISTACK_URL");
    let all: std::collections::HashMap<String, serde_json::Value> =
        reqwest::get(format!("{endpoint}/_ministack/ses/messages"))
            .await
            .unwrap()
            .json::<serde_json::Value>()
            .await
            .unwrap()["messages"]
            .as_object()
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .collect();
    all.into_values()
        .flat_map(|v| serde_json::from_value::<Vec<MiniStackSent>>(v).unwrap())
        .collect()
}
