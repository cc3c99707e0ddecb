//! The HTTP client every connector shares, and the classification of answers and transport
//! errors into [`DeliveryError`]s.
//!
//! Policy: only 2xx is success; redirects are never followed (a redirect could send signed
//! data elsewhere); 408, 5xx, timeouts and connection errors are transient; 429 is
//! throttling; every other status is permanent. Error details never include URLs (webhook
//! URLs often embed tokens) or response bodies.

use std::time::Duration;
use testrelay_domain::ports::{DeliveryError, ErrorClass};

pub const USER_AGENT: &str = concat!("testrelay/", env!("CARGO_PKG_VERSION"));

pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(30))
        .user_agent(USER_AGENT)
        .pool_idle_timeout(Duration::from_secs(60))
        .build()
        .expect("the TLS backend initialises")
}

/// Seconds from a `Retry-After` header (the HTTP-date form is ignored).
pub fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    let v = headers.get(reqwest::header::RETRY_AFTER)?.to_str().ok()?;
    v.trim().parse::<u64>().ok().map(Duration::from_secs)
}

/// Classifies a non-2xx answer.
pub fn status_error(
    status: reqwest::StatusCode,
    headers: &reqwest::header::HeaderMap,
) -> DeliveryError {
    let code = status.as_u16();
    let reason = status.canonical_reason().unwrap_or("");
    let (class, detail) = match code {
        429 => (
            ErrorClass::Throttled,
            format!("HTTP 429 {reason}: the target asks us to slow down"),
        ),
        408 | 500..=599 => (ErrorClass::Transient, format!("HTTP {code} {reason}")),
        300..=399 => (
            ErrorClass::Permanent,
            format!("HTTP {code} {reason}: redirects are not followed; configure the final URL"),
        ),
        410 => (
            ErrorClass::Permanent,
            "HTTP 410 Gone: the endpoint asks to be disabled".into(),
        ),
        _ => (ErrorClass::Permanent, format!("HTTP {code} {reason}")),
    };
    DeliveryError {
        class,
        status_code: Some(code),
        detail,
        retry_after: retry_after(headers),
    }
}

/// Classifies a transport error, without its URL.
pub fn transport_error(e: reqwest::Error, timeout: Duration) -> DeliveryError {
    let detail = if e.is_timeout() {
        format!("timed out after {} ms", timeout.as_millis())
    } else if e.is_connect() {
        "could not connect".to_string()
    } else {
        format!("request failed: {}", e.without_url())
    };
    DeliveryError {
        class: ErrorClass::Transient,
        status_code: None,
        detail,
        retry_after: None,
    }
}
