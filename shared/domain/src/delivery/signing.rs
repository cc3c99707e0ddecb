//! Standard Webhooks signatures (<https://www.standardwebhooks.com>): how testrelay signs
//! the events it sends, and how a receiver (the dev sink, the tests) verifies them.
//!
//! Signed content is `{webhook-id}.{webhook-timestamp}.{raw body}`, HMAC-SHA256 with the
//! base64-decoded part of a `whsec_...` secret; the header carries `v1,<base64>` entries,
//! space-separated, so a receiver can accept either of two secrets during rotation.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, KeyInit, Mac};
use secrecy::{ExposeSecret, SecretBox};
use sha2::Sha256;

/// Receivers accept timestamps this far from their own clock, either way.
pub const TOLERANCE_SECS: u64 = 5 * 60;

/// A webhook signing key. `Debug` never shows it.
pub struct WebhookSecret(SecretBox<Vec<u8>>);

impl std::fmt::Debug for WebhookSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WebhookSecret([redacted])")
    }
}

impl WebhookSecret {
    /// Parses `whsec_<base64>` (the prefix is optional, as in the reference libraries).
    /// The error never repeats the input.
    pub fn parse(s: &str) -> Result<Self, &'static str> {
        let b64 = s.trim().strip_prefix("whsec_").unwrap_or(s.trim());
        let bytes = STANDARD
            .decode(b64)
            .map_err(|_| "a webhook secret must be whsec_ followed by base64")?;
        // Standard Webhooks: between 24 and 64 bytes (longer ones are taken as they are).
        if bytes.len() < 24 {
            return Err("a webhook secret must hold at least 24 bytes");
        }
        Ok(WebhookSecret(SecretBox::new(Box::new(bytes))))
    }

    /// A fresh random 32-byte secret and its `whsec_` form.
    pub fn generate() -> (Self, String) {
        let bytes: [u8; 32] = rand::random();
        let text = format!("whsec_{}", STANDARD.encode(bytes));
        (
            WebhookSecret(SecretBox::new(Box::new(bytes.to_vec()))),
            text,
        )
    }

    fn mac(&self, id: &str, timestamp: u64, body: &[u8]) -> Hmac<Sha256> {
        let mut mac = Hmac::<Sha256>::new_from_slice(self.0.expose_secret())
            .expect("HMAC takes keys of any length");
        mac.update(id.as_bytes());
        mac.update(b".");
        mac.update(timestamp.to_string().as_bytes());
        mac.update(b".");
        mac.update(body);
        mac
    }

    /// The `webhook-signature` header value for one message.
    pub fn sign(&self, id: &str, timestamp: u64, body: &[u8]) -> String {
        let tag = self.mac(id, timestamp, body).finalize().into_bytes();
        format!("v1,{}", STANDARD.encode(tag))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    #[error("the signature does not match")]
    Mismatch,
    #[error("the timestamp is outside the tolerance window")]
    Timestamp,
    #[error("malformed signature headers")]
    Malformed,
}

/// Verifies a message against any of `secrets` (rotation), in constant time per comparison.
pub fn verify(
    secrets: &[WebhookSecret],
    id: &str,
    timestamp: &str,
    signature_header: &str,
    body: &[u8],
    now_secs: u64,
) -> Result<(), VerifyError> {
    let ts: u64 = timestamp
        .trim()
        .parse()
        .map_err(|_| VerifyError::Malformed)?;
    if ts.abs_diff(now_secs) > TOLERANCE_SECS {
        return Err(VerifyError::Timestamp);
    }
    let candidates: Vec<Vec<u8>> = signature_header
        .split_whitespace()
        .filter_map(|entry| entry.strip_prefix("v1,"))
        .filter_map(|b64| STANDARD.decode(b64).ok())
        .collect();
    if candidates.is_empty() {
        return Err(VerifyError::Malformed);
    }
    for secret in secrets {
        for candidate in &candidates {
            if secret.mac(id, ts, body).verify_slice(candidate).is_ok() {
                return Ok(());
            }
        }
    }
    Err(VerifyError::Mismatch)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The test vector published with the Standard Webhooks reference libraries.
    #[test]
    fn matches_the_reference_vector() {
        let secret = WebhookSecret::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let id = "msg_p5jXN8AQM9LWM0D4loKWxJek";
        let body = br#"{"test": 2432232314}"#;
        let sig = secret.sign(id, 1614265330, body);
        assert_eq!(sig, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
        assert_eq!(
            verify(&[secret], id, "1614265330", &sig, body, 1614265330),
            Ok(())
        );
    }

    #[test]
    fn refuses_tampering_old_timestamps_and_garbage() {
        let (secret, _) = WebhookSecret::generate();
        let sig = secret.sign("id", 1000, b"body");
        let s = [secret];
        assert_eq!(
            verify(&s, "id", "1000", &sig, b"bodx", 1000),
            Err(VerifyError::Mismatch)
        );
        assert_eq!(
            verify(&s, "id", "1000", &sig, b"body", 1000 + 301),
            Err(VerifyError::Timestamp)
        );
        assert_eq!(
            verify(&s, "id", "1000", "v2,abc", b"body", 1000),
            Err(VerifyError::Malformed)
        );
        let rotated = format!("v1,AAAA {sig}");
        assert_eq!(verify(&s, "id", "1000", &rotated, b"body", 1000), Ok(()));
    }

    #[test]
    fn secret_errors_and_debug_do_not_leak() {
        let (secret, text) = WebhookSecret::generate();
        assert!(!format!("{secret:?}").contains(&text[6..]));
        assert!(WebhookSecret::parse("whsec_***not base64***").is_err());
        assert!(WebhookSecret::parse("whsec_c2hvcnQ=").is_err());
    }

    /// Standard Webhooks: a secret holds 24 to 64 bytes.
    #[test]
    fn secrets_shorter_than_24_bytes_are_refused() {
        let of = |n: usize| format!("whsec_{}", STANDARD.encode(vec![7u8; n]));
        assert_eq!(
            WebhookSecret::parse(&of(23)).err(),
            Some("a webhook secret must hold at least 24 bytes")
        );
        assert!(WebhookSecret::parse(&of(24)).is_ok());
        assert!(WebhookSecret::parse(&of(64)).is_ok());
    }
}
