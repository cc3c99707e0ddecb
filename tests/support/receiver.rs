//! A webhook endpoint on wiremock that records what it receives, and a check that every
//! request carries a valid Standard Webhooks signature.

use serde_json::Value;
use testrelay_domain::delivery::signing::{WebhookSecret, verify};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

pub struct Receiver {
    pub server: MockServer,
    /// The `whsec_...` text, as an operator would configure it.
    pub secret_text: String,
}

impl Receiver {
    /// Answers every POST /hook with `status`.
    pub async fn start(status: u16) -> Receiver {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .and(path("/hook"))
            .respond_with(ResponseTemplate::new(status))
            .mount(&server)
            .await;
        let (_, secret_text) = WebhookSecret::generate();
        Receiver {
            server,
            secret_text,
        }
    }

    pub fn url(&self) -> String {
        format!("{}/hook", self.server.uri())
    }

    /// Every request received so far, after checking its headers and signature; the parsed
    /// JSON bodies with their `webhook-id`.
    pub async fn verified_events(&self) -> Vec<(String, Value)> {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        self.verified_events_at(now).await
    }

    /// As [`Self::verified_events`], for a receiver whose clock reads `now` (Unix seconds).
    pub async fn verified_events_at(&self, now: u64) -> Vec<(String, Value)> {
        self.verified(Some(now)).await
    }

    /// As [`Self::verified_events`], each checked by a receiver whose clock read the time it
    /// was sent (tests on a manual clock that runs hours of schedule).
    pub async fn verified_events_as_sent(&self) -> Vec<(String, Value)> {
        self.verified(None).await
    }

    async fn verified(&self, now: Option<u64>) -> Vec<(String, Value)> {
        let secret = WebhookSecret::parse(&self.secret_text).unwrap();
        let secrets = [secret];
        let mut out = Vec::new();
        for req in self.server.received_requests().await.unwrap_or_default() {
            let h = |n: &str| {
                req.headers
                    .get(n)
                    .unwrap_or_else(|| panic!("missing header {n}"))
                    .to_str()
                    .unwrap()
                    .to_string()
            };
            assert_eq!(h("content-type"), "application/json");
            assert!(h("user-agent").starts_with("testrelay/"));
            let id = h("webhook-id");
            let now = now.unwrap_or_else(|| h("webhook-timestamp").parse().unwrap());
            verify(
                &secrets,
                &id,
                &h("webhook-timestamp"),
                &h("webhook-signature"),
                &req.body,
                now,
            )
            .unwrap_or_else(|e| panic!("bad signature on {id}: {e}"));
            out.push((id, serde_json::from_slice(&req.body).expect("JSON body")));
        }
        out
    }

    pub async fn count(&self) -> usize {
        self.server
            .received_requests()
            .await
            .unwrap_or_default()
            .len()
    }
}
