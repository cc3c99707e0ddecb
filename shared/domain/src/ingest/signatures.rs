//! Inbound signed webhooks: verifying a provider's signature on the RAW body, before any
//! parsing, in constant time, within a replay window, against every active secret of the
//! source (rotation). Each scheme is a header parser (fuzzed: `tests/fuzz`) plus what is
//! signed:
//!
//! - GitHub: `X-Hub-Signature-256: sha256=<hex HMAC-SHA256(secret, body)>`; delivery id
//!   `X-GitHub-Delivery`, event `X-GitHub-Event`; no timestamp (deliveries are deduped).
//! - Standard Webhooks: `webhook-id`, `webhook-timestamp`, `webhook-signature: v1,<base64>`
//!   (several, space-separated), over `{id}.{timestamp}.{body}` with a `whsec_` secret.
//! - Slack: `X-Slack-Signature: v0=<hex>` over `v0:{X-Slack-Request-Timestamp}:{body}`.
//! - Stripe-style: `Stripe-Signature: t=<ts>,v1=<hex>[,v1=<hex>]` over `{t}.{body}`.
//! - Generic HMAC: a configured header, SHA-256 or SHA-512, hex or base64, an optional
//!   prefix, an optional timestamp header (then `{timestamp}.{body}` is signed) and an
//!   optional delivery-id header.
//!
//! Every failure is one [`Rejected`] value: the HTTP answer never says which part failed.

use crate::config::Config;
use crate::error::ApiError;
use crate::ports::{SecretStore, resolve_secret};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, KeyInit, Mac};
use secrecy::{ExposeSecret, SecretBox};
use serde::Deserialize;
use sha2::{Sha256, Sha512};
use std::collections::HashMap;

/// The signature schemes.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SchemeName {
    Github,
    StandardWebhooks,
    Slack,
    Stripe,
    Hmac,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Algorithm {
    Sha256,
    Sha512,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Encoding {
    Hex,
    Base64,
}

/// `[hooks.<source>.hmac]`: the generic scheme's settings.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HmacScheme {
    /// The header carrying the signature, e.g. `X-Signature`.
    pub header: String,
    #[serde(default = "sha256")]
    pub algorithm: Algorithm,
    #[serde(default = "hex")]
    pub encoding: Encoding,
    /// Stripped from the header value first, e.g. `sha256=`.
    #[serde(default)]
    pub prefix: Option<String>,
    /// When set, `{timestamp}.{body}` is signed and the timestamp must be recent.
    #[serde(default)]
    pub timestamp_header: Option<String>,
    /// A header with the provider's delivery id (deduplication).
    #[serde(default)]
    pub id_header: Option<String>,
}

fn sha256() -> Algorithm {
    Algorithm::Sha256
}
fn hex() -> Encoding {
    Encoding::Hex
}

/// A verification failure. Deliberately opaque outside: the HTTP answer is the same 401
/// whatever the reason; the reason is only logged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Rejected {
    #[error("a signature header is missing")]
    Missing,
    #[error("a signature header is malformed")]
    Malformed,
    #[error("the timestamp is outside the replay window")]
    Stale,
    #[error("no active secret produces this signature")]
    Mismatch,
}

/// What a verified request carries besides its body.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Verified {
    /// The provider's id for this delivery, when it sends one.
    pub delivery_id: Option<String>,
    /// Whether the signature covers `delivery_id` (Standard Webhooks signs it; GitHub's
    /// `X-GitHub-Delivery` and a generic `id_header` are not signed: anyone who captured a
    /// delivery can change them).
    pub id_signed: bool,
    /// GitHub's `X-GitHub-Event`.
    pub event: Option<String>,
}

/// One source's secret: the key bytes (`whsec_` secrets decoded; others as written).
pub struct HookSecret(SecretBox<Vec<u8>>);

impl std::fmt::Debug for HookSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("HookSecret([redacted])")
    }
}

impl HookSecret {
    pub fn new(scheme: &SchemeName, text: &str) -> Result<Self, &'static str> {
        let text = text.trim();
        let bytes = if *scheme == SchemeName::StandardWebhooks {
            let b64 = text.strip_prefix("whsec_").unwrap_or(text);
            STANDARD
                .decode(b64)
                .map_err(|_| "a Standard Webhooks secret must be whsec_ followed by base64")?
        } else {
            text.as_bytes().to_vec()
        };
        if bytes.is_empty() {
            return Err("the secret is empty");
        }
        Ok(HookSecret(SecretBox::new(Box::new(bytes))))
    }

    fn key(&self) -> &[u8] {
        self.0.expose_secret()
    }
}

/// Headers by case-insensitive name.
pub trait Headers: Sync {
    fn get(&self, name: &str) -> Option<&str>;
}

/// Verifies `body` as received, against every secret, within `tolerance_s` either way.
pub fn verify(
    scheme: &SchemeName,
    hmac: Option<&HmacScheme>,
    secrets: &[HookSecret],
    headers: &dyn Headers,
    body: &[u8],
    now_secs: u64,
    tolerance_s: u64,
) -> Result<Verified, Rejected> {
    let fresh = |ts: u64| {
        if ts.abs_diff(now_secs) <= tolerance_s {
            Ok(())
        } else {
            Err(Rejected::Stale)
        }
    };
    let header = |name: &str| headers.get(name).ok_or(Rejected::Missing);
    match scheme {
        SchemeName::Github => {
            let raw = header("x-hub-signature-256")?;
            let sig = parse_github(raw).ok_or(Rejected::Malformed)?;
            check(secrets, Algorithm::Sha256, &[body], &[sig])?;
            Ok(Verified {
                delivery_id: headers.get("x-github-delivery").map(str::to_string),
                id_signed: false,
                event: headers.get("x-github-event").map(str::to_string),
            })
        }
        SchemeName::StandardWebhooks => {
            let id = header("webhook-id")?;
            let ts = parse_timestamp(header("webhook-timestamp")?).ok_or(Rejected::Malformed)?;
            let raw = header("webhook-signature")?;
            let sigs = parse_standard(raw);
            if sigs.is_empty() {
                return Err(Rejected::Malformed);
            }
            fresh(ts)?;
            let ts = ts.to_string();
            check(
                secrets,
                Algorithm::Sha256,
                &[id.as_bytes(), b".", ts.as_bytes(), b".", body],
                &sigs,
            )?;
            Ok(Verified {
                delivery_id: Some(id.to_string()),
                id_signed: true,
                event: None,
            })
        }
        SchemeName::Slack => {
            let raw_ts = header("x-slack-request-timestamp")?;
            let ts = parse_timestamp(raw_ts).ok_or(Rejected::Malformed)?;
            let raw = header("x-slack-signature")?;
            let sig = parse_slack(raw).ok_or(Rejected::Malformed)?;
            fresh(ts)?;
            check(
                secrets,
                Algorithm::Sha256,
                &[b"v0:", raw_ts.trim().as_bytes(), b":", body],
                &[sig],
            )?;
            Ok(Verified::default())
        }
        SchemeName::Stripe => {
            let raw = header("stripe-signature")?;
            let (ts, sigs) = parse_stripe(raw).ok_or(Rejected::Malformed)?;
            fresh(ts)?;
            let t = ts.to_string();
            check(
                secrets,
                Algorithm::Sha256,
                &[t.as_bytes(), b".", body],
                &sigs,
            )?;
            Ok(Verified::default())
        }
        SchemeName::Hmac => {
            let h = hmac.ok_or(Rejected::Malformed)?;
            let raw = header(&h.header)?;
            let sig =
                parse_generic(raw, h.prefix.as_deref(), h.encoding).ok_or(Rejected::Malformed)?;
            match &h.timestamp_header {
                Some(name) => {
                    let raw = header(name)?;
                    let ts = parse_timestamp(raw).ok_or(Rejected::Malformed)?;
                    fresh(ts)?;
                    check(
                        secrets,
                        h.algorithm,
                        &[raw.trim().as_bytes(), b".", body],
                        &[sig],
                    )?;
                }
                None => check(secrets, h.algorithm, &[body], &[sig])?,
            }
            Ok(Verified {
                delivery_id: h
                    .id_header
                    .as_deref()
                    .and_then(|n| headers.get(n))
                    .map(str::to_string),
                id_signed: false,
                event: None,
            })
        }
    }
}

/// Constant-time comparison of every candidate against every secret's MAC of `parts`.
fn check(
    secrets: &[HookSecret],
    algorithm: Algorithm,
    parts: &[&[u8]],
    candidates: &[Vec<u8>],
) -> Result<(), Rejected> {
    for secret in secrets {
        for candidate in candidates {
            let ok = match algorithm {
                Algorithm::Sha256 => matches::<Hmac<Sha256>>(secret.key(), parts, candidate),
                Algorithm::Sha512 => matches::<Hmac<Sha512>>(secret.key(), parts, candidate),
            };
            if ok {
                return Ok(());
            }
        }
    }
    Err(Rejected::Mismatch)
}

/// Whether the MAC of `parts` under `key` is `candidate` (constant-time).
fn matches<M: Mac + KeyInit>(key: &[u8], parts: &[&[u8]], candidate: &[u8]) -> bool {
    let mut mac = <M as KeyInit>::new_from_slice(key).expect("HMAC takes keys of any length");
    parts.iter().for_each(|p| mac.update(p));
    mac.verify_slice(candidate).is_ok()
}

/// Unix seconds, digits only.
pub fn parse_timestamp(s: &str) -> Option<u64> {
    let s = s.trim();
    if s.is_empty() || s.len() > 12 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    let s = s.trim();
    if s.is_empty() || s.len() > 256 {
        return None;
    }
    ::hex::decode(s).ok()
}

/// `sha256=<hex>`.
pub fn parse_github(value: &str) -> Option<Vec<u8>> {
    unhex(value.trim().strip_prefix("sha256=")?)
}

/// `v1,<base64>` entries, space-separated; other versions are ignored.
pub fn parse_standard(value: &str) -> Vec<Vec<u8>> {
    value
        .split_whitespace()
        .take(16)
        .filter_map(|e| e.strip_prefix("v1,"))
        .filter_map(|b| STANDARD.decode(b).ok())
        .collect()
}

/// `v0=<hex>`.
pub fn parse_slack(value: &str) -> Option<Vec<u8>> {
    unhex(value.trim().strip_prefix("v0=")?)
}

/// `t=<ts>,v1=<hex>[,v1=<hex>...]` (other schemes such as `v0=` ignored); needs `t` and
/// at least one `v1`.
pub fn parse_stripe(value: &str) -> Option<(u64, Vec<Vec<u8>>)> {
    let mut t = None;
    let mut sigs = Vec::new();
    for part in value.split(',').take(32) {
        let (k, v) = part.trim().split_once('=')?;
        match k {
            "t" if t.is_none() => t = Some(parse_timestamp(v)?),
            "t" => return None,
            "v1" => sigs.push(unhex(v)?),
            _ => {}
        }
    }
    (!sigs.is_empty()).then_some(())?;
    Some((t?, sigs))
}

/// The signature of the generic scheme: `prefix` stripped, then hex or base64.
pub fn parse_generic(value: &str, prefix: Option<&str>, encoding: Encoding) -> Option<Vec<u8>> {
    let v = value.trim();
    let v = match prefix {
        Some(p) => v.strip_prefix(p)?,
        None => v,
    };
    match encoding {
        Encoding::Hex => unhex(v),
        Encoding::Base64 => STANDARD.decode(v.trim()).ok().filter(|b| !b.is_empty()),
    }
}

/// Every configured source's secrets, resolved once at start.
#[derive(Debug, Default)]
pub struct HookSecrets(HashMap<String, Vec<HookSecret>>);

impl HookSecrets {
    /// Resolves every `[hooks.*]` secret; errors name the source and the reference.
    pub async fn resolve(config: &Config, store: &dyn SecretStore) -> Result<Self, String> {
        let mut out = HashMap::new();
        for (name, hook) in &config.hooks {
            let mut secrets = Vec::new();
            for (i, r) in hook.secrets.iter().enumerate() {
                let value = resolve_secret(r, store)
                    .await
                    .map_err(|e| format!("hooks.{name}.secrets[{i}] ({r}): {e}"))?;
                use secrecy::ExposeSecret;
                secrets.push(
                    HookSecret::new(&hook.scheme, value.expose_secret())
                        .map_err(|e| format!("hooks.{name}.secrets[{i}] ({r}): {e}"))?,
                );
            }
            out.insert(name.clone(), secrets);
        }
        Ok(HookSecrets(out))
    }

    /// The secrets of `source`, if it is configured.
    pub(crate) fn of(&self, source: &str) -> Option<&Vec<HookSecret>> {
        self.0.get(source)
    }
}

/// A source that is not configured (or whose secrets did not resolve).
pub(crate) fn unknown_source(source: &str) -> ApiError {
    ApiError::not_found(format!("no hook source {source:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    struct H(HashMap<String, String>);
    impl Headers for H {
        fn get(&self, name: &str) -> Option<&str> {
            self.0.get(&name.to_ascii_lowercase()).map(String::as_str)
        }
    }
    fn h(pairs: &[(&str, &str)]) -> H {
        H(pairs
            .iter()
            .map(|(k, v)| (k.to_ascii_lowercase(), v.to_string()))
            .collect())
    }
    fn secret(scheme: &SchemeName, s: &str) -> Vec<HookSecret> {
        vec![HookSecret::new(scheme, s).unwrap()]
    }

    /// GitHub's documented example ("Validating webhook deliveries").
    #[test]
    fn github_documented_vector() {
        let s = secret(&SchemeName::Github, "It's a Secret to Everybody");
        let headers = h(&[
            (
                "X-Hub-Signature-256",
                "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17",
            ),
            ("X-GitHub-Delivery", "72d3162e-cc78-11e3-81ab-4c9367dc0958"),
            ("X-GitHub-Event", "workflow_run"),
        ]);
        let v = verify(
            &SchemeName::Github,
            None,
            &s,
            &headers,
            b"Hello, World!",
            0,
            300,
        )
        .unwrap();
        assert_eq!(
            v.delivery_id.as_deref(),
            Some("72d3162e-cc78-11e3-81ab-4c9367dc0958")
        );
        assert_eq!(v.event.as_deref(), Some("workflow_run"));
        assert_eq!(
            verify(
                &SchemeName::Github,
                None,
                &s,
                &headers,
                b"Hello, World?",
                0,
                300
            ),
            Err(Rejected::Mismatch)
        );
    }

    /// Slack's documented example ("Verifying requests from Slack").
    #[test]
    fn slack_documented_vector() {
        let s = secret(&SchemeName::Slack, "8f742231b10e8888abcd99yyyzzz85a5");
        let body = b"token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text=&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c";
        let headers = h(&[
            ("X-Slack-Request-Timestamp", "1531420618"),
            (
                "X-Slack-Signature",
                "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503",
            ),
        ]);
        assert!(
            verify(
                &SchemeName::Slack,
                None,
                &s,
                &headers,
                body,
                1_531_420_618,
                300
            )
            .is_ok()
        );
        assert_eq!(
            verify(
                &SchemeName::Slack,
                None,
                &s,
                &headers,
                body,
                1_531_420_618 + 301,
                300
            ),
            Err(Rejected::Stale)
        );
        assert_eq!(
            verify(
                &SchemeName::Slack,
                None,
                &s,
                &headers,
                body,
                1_531_420_618 - 301,
                300
            ),
            Err(Rejected::Stale),
            "a timestamp from the future is refused too"
        );
    }

    /// The Standard Webhooks reference libraries' test vector.
    #[test]
    fn standard_webhooks_reference_vector_and_rotation() {
        let old = HookSecret::new(
            &SchemeName::StandardWebhooks,
            "whsec_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        )
        .unwrap();
        let current = HookSecret::new(
            &SchemeName::StandardWebhooks,
            "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
        )
        .unwrap();
        let headers = h(&[
            ("webhook-id", "msg_p5jXN8AQM9LWM0D4loKWxJek"),
            ("webhook-timestamp", "1614265330"),
            (
                "webhook-signature",
                "v2,ignored v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=",
            ),
        ]);
        let body = br#"{"test": 2432232314}"#;
        let v = verify(
            &SchemeName::StandardWebhooks,
            None,
            &[old, current],
            &headers,
            body,
            1_614_265_330,
            300,
        )
        .unwrap();
        assert_eq!(
            v.delivery_id.as_deref(),
            Some("msg_p5jXN8AQM9LWM0D4loKWxJek")
        );
    }

    #[test]
    fn stripe_and_generic_schemes() {
        let key = "whsec_stripe_test";
        let s = secret(&SchemeName::Stripe, key);
        let mut mac = Hmac::<Sha256>::new_from_slice(key.as_bytes()).unwrap();
        mac.update(b"1700000000.{\"a\":1}");
        let sig = ::hex::encode(mac.finalize().into_bytes());
        let headers = h(&[(
            "Stripe-Signature",
            &format!("t=1700000000,v1=00ff,v0=abc,v1={sig}"),
        )]);
        assert!(
            verify(
                &SchemeName::Stripe,
                None,
                &s,
                &headers,
                br#"{"a":1}"#,
                1_700_000_100,
                300
            )
            .is_ok()
        );

        let g = HmacScheme {
            header: "X-Signature".into(),
            algorithm: Algorithm::Sha512,
            encoding: Encoding::Base64,
            prefix: Some("sha512=".into()),
            timestamp_header: Some("X-Timestamp".into()),
            id_header: Some("X-Request-Id".into()),
        };
        let s = secret(&SchemeName::Hmac, "generic-secret");
        let mut mac = Hmac::<Sha512>::new_from_slice(b"generic-secret").unwrap();
        mac.update(b"1700000000.body");
        let sig = STANDARD.encode(mac.finalize().into_bytes());
        let headers = h(&[
            ("X-Signature", &format!("sha512={sig}")),
            ("X-Timestamp", "1700000000"),
            ("X-Request-Id", "req-1"),
        ]);
        let v = verify(
            &SchemeName::Hmac,
            Some(&g),
            &s,
            &headers,
            b"body",
            1_700_000_000,
            300,
        )
        .unwrap();
        assert_eq!(v.delivery_id.as_deref(), Some("req-1"));
        assert_eq!(
            verify(
                &SchemeName::Hmac,
                Some(&g),
                &s,
                &h(&[("X-Timestamp", "1700000000")]),
                b"body",
                1_700_000_000,
                300
            ),
            Err(Rejected::Missing)
        );
    }

    #[test]
    fn header_parsers_refuse_malformed_values() {
        assert_eq!(parse_github("sha1=abcd"), None);
        assert_eq!(parse_github("sha256=zz"), None);
        assert_eq!(parse_github("sha256="), None);
        assert_eq!(parse_slack("v1=abcd"), None);
        assert!(parse_standard("v1,!!! v2,abc").is_empty());
        assert_eq!(parse_stripe("t=1,t=2,v1=00"), None, "two timestamps");
        assert_eq!(parse_stripe("t=1"), None, "no v1");
        assert_eq!(parse_stripe("v1=00"), None, "no t");
        assert_eq!(parse_stripe("t=-5,v1=00"), None);
        assert_eq!(parse_stripe("garbage"), None);
        assert_eq!(parse_timestamp("+123"), None);
        assert_eq!(parse_timestamp("99999999999999999999"), None);
        assert_eq!(
            parse_generic("sha256=00", Some("sha512="), Encoding::Hex),
            None
        );
        assert_eq!(parse_generic("", None, Encoding::Base64), None);
    }
}
