//! The HTTP layer every connector shares: one client that never follows redirects and
//! refuses non-public addresses after DNS resolution (SSRF), a per-target rate limiter,
//! and the classification of answers and transport errors into [`DeliveryError`]s.
//!
//! Policy: only 2xx is success; statuses are read by the table in [`crate::answers`] (408,
//! 5xx transient; 429 throttling, the target's `Retry-After` / `X-RateLimit-Reset` pausing
//! every request to it; every other status permanent); timeouts and connection errors are
//! transient. Error details never include URLs (webhook URLs often embed tokens) or
//! response bodies.

use crate::ratelimit::RateLimiter;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;
use testrelay_domain::config::RateLimit;
use testrelay_domain::delivery::net::AddressPolicy;
use testrelay_domain::ports::{DeliveryError, ErrorClass};

pub const USER_AGENT: &str = concat!("testrelay/", env!("CARGO_PKG_VERSION"));

/// Requests wait this long at most for their rate-limit slot in process; a longer wait
/// hands the delivery back to the queue as throttled.
pub const MAX_SLOT_WAIT: Duration = Duration::from_secs(20);
/// Largest vendor answer read.
const MAX_ANSWER: usize = 1024 * 1024;

tokio::task_local! {
    static UNLIMITED: ();
}

/// Runs `f` with its requests outside the rate limiter: health probes, a few a target per
/// check, must not wait behind (or time out behind) a backlog of deliveries.
pub async fn unlimited<F: std::future::Future>(f: F) -> F::Output {
    UNLIMITED.scope((), f).await
}

/// The HTTP client, address policy and rate limiter the connectors of a process share.
#[derive(Clone)]
pub struct Http {
    client: reqwest::Client,
    policy: Arc<AddressPolicy>,
    limiter: Arc<RateLimiter>,
    /// How many processes share each target's limit (see [`Http::shared_by`]).
    instances: u32,
}

/// Where a request goes, for rate limiting: the target key and its limit.
#[derive(Debug, Clone)]
pub struct Limit {
    pub key: String,
    pub rate: Option<RateLimit>,
}

impl Http {
    pub fn new(policy: AddressPolicy) -> Self {
        let policy = Arc::new(policy);
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            // A proxy would resolve names itself, out of the address policy's sight.
            .no_proxy()
            .dns_resolver(GuardedResolver(policy.clone()))
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(30))
            .user_agent(USER_AGENT)
            .pool_idle_timeout(Duration::from_secs(60))
            .build()
            .expect("the TLS backend initialises");
        Http {
            client,
            policy,
            limiter: Arc::new(RateLimiter::default()),
            instances: 1,
        }
    }

    /// Holds each target to its share of the limit when `instances` processes send to it at
    /// once (a Lambda delivery function at its maximum concurrency), so that together they
    /// keep to the vendor's limit.
    pub fn shared_by(mut self, instances: u32) -> Self {
        self.instances = instances.max(1);
        self
    }

    /// The limit this process keeps to for `limit`.
    pub fn effective_rate(&self, limit: &Limit) -> Option<RateLimit> {
        limit.rate.map(|r| r.shared_by(self.instances))
    }

    pub fn client(&self) -> &reqwest::Client {
        &self.client
    }

    /// Sends `request` within `limit` and `timeout`; a non-2xx answer is an error.
    pub async fn send(
        &self,
        limit: &Limit,
        request: reqwest::RequestBuilder,
        timeout: Duration,
    ) -> Result<reqwest::Response, DeliveryError> {
        let request = request
            .timeout(timeout)
            .build()
            .map_err(|e| permanent(format!("could not build the request: {}", e.without_url())))?;
        // Names are checked when resolved; literal addresses never reach the resolver.
        if let Some(host) = request.url().host_str() {
            let bare = host.trim_start_matches('[').trim_end_matches(']');
            if let Ok(ip) = bare.parse::<IpAddr>() {
                self.policy.check(ip).map_err(permanent)?;
            }
        }
        self.slot(limit).await?;
        let response = self
            .client
            .execute(request)
            .await
            .map_err(|e| transport_error(e, timeout))?;
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        let mut e = status_error(status, response.headers());
        if status.as_u16() == 429 && e.retry_after.is_none() {
            // Some vendors say it only in the body (Discord: `{"retry_after": 1.5}`).
            e.retry_after = body_retry_after(response).await;
        }
        self.throttled(limit, &e);
        Err(e)
    }

    /// Takes `limit`'s next slot, waiting for it in process up to [`MAX_SLOT_WAIT`]; a
    /// longer wait is a throttled error saying when to come back. Probes run
    /// [`unlimited`]. For every request to a target, HTTP or not (an email).
    pub async fn slot(&self, limit: &Limit) -> Result<(), DeliveryError> {
        let rate = self
            .effective_rate(limit)
            .filter(|_| UNLIMITED.try_with(|_| ()).is_err());
        let slot = match rate {
            Some(rate) => self.limiter.reserve(&limit.key, rate, MAX_SLOT_WAIT),
            // Without a limit there is no bucket to pause: the delivery that was throttled
            // waits as asked (its retry honours Retry-After), others go ahead.
            None => Ok(Duration::ZERO),
        };
        match slot {
            Ok(wait) if wait.is_zero() => Ok(()),
            Ok(wait) => {
                tokio::time::sleep(wait).await;
                Ok(())
            }
            Err(wait) => Err(DeliveryError {
                class: ErrorClass::Throttled,
                status_code: None,
                detail: format!(
                    "rate limit for {}: next slot in {} s",
                    limit.key,
                    wait.as_secs()
                ),
                retry_after: Some(wait),
                target: None,
            }),
        }
    }

    /// The target answered `e`: when it is throttling with a stated time, everything to
    /// this target waits as asked, not only this delivery. (Without a stated time, only
    /// this delivery backs off.)
    pub fn throttled(&self, limit: &Limit, e: &DeliveryError) {
        if let (ErrorClass::Throttled, Some(pause), Some(_)) = (e.class, e.retry_after, limit.rate)
        {
            self.limiter.pause(&limit.key, pause);
        }
    }

    /// The addresses of `host` the address policy lets a connection go to, for connections
    /// made outside this client (SMTP).
    pub async fn addresses(&self, host: &str, port: u16) -> Result<Vec<SocketAddr>, Unreachable> {
        allowed_addresses(&self.policy, host, port).await
    }
}

/// Reads a JSON answer (at most 1 MiB); an unreadable one is transient (a proxy's error
/// page, a truncated body).
pub async fn json<T: serde::de::DeserializeOwned>(
    response: reqwest::Response,
    what: &str,
) -> Result<T, DeliveryError> {
    json_up_to(response, what, MAX_ANSWER).await
}

/// As [`json`], for a list page whose items the vendor makes large (TestRail's cases carry
/// their steps): at most `max` bytes.
pub async fn json_up_to<T: serde::de::DeserializeOwned>(
    response: reqwest::Response,
    what: &str,
    max: usize,
) -> Result<T, DeliveryError> {
    let bytes = read(response, max).await?;
    serde_json::from_slice(&bytes).map_err(|e| DeliveryError {
        class: ErrorClass::Transient,
        status_code: None,
        detail: format!("unexpected answer from {what}: {e}"),
        retry_after: None,
        target: None,
    })
}

async fn read(mut response: reqwest::Response, max: usize) -> Result<Vec<u8>, DeliveryError> {
    let mut out = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(|e| DeliveryError {
        class: ErrorClass::Transient,
        status_code: None,
        detail: format!("reading the answer failed: {}", e.without_url()),
        retry_after: None,
        target: None,
    })? {
        if out.len() + chunk.len() > max {
            return Err(DeliveryError {
                class: ErrorClass::Transient,
                status_code: None,
                detail: format!("the answer is larger than {} MiB", max >> 20),
                retry_after: None,
                target: None,
            });
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}

pub fn permanent(detail: impl Into<String>) -> DeliveryError {
    DeliveryError {
        class: ErrorClass::Permanent,
        status_code: None,
        detail: detail.into(),
        retry_after: None,
        target: None,
    }
}

/// Resolves names with the system resolver and drops addresses the policy refuses; a name
/// with nothing left fails with [`Refused`].
struct GuardedResolver(Arc<AddressPolicy>);

/// A name resolved only to refused addresses.
#[derive(Debug)]
struct Refused(String);

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Refused {}

impl reqwest::dns::Resolve for GuardedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let policy = self.0.clone();
        let host = name.as_str().to_string();
        Box::pin(async move {
            let allowed = allowed_addresses(&policy, &host, 0)
                .await
                .map_err(|e| match e {
                    Unreachable::Lookup(io) => {
                        Box::new(io) as Box<dyn std::error::Error + Send + Sync>
                    }
                    Unreachable::Refused(why) => Box::new(Refused(why)),
                })?;
            Ok(Box::new(allowed.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

/// Why a host has no address to connect to.
#[derive(Debug)]
pub enum Unreachable {
    /// The name did not resolve (maybe for now): transient.
    Lookup(std::io::Error),
    /// It resolves only to addresses the policy refuses: permanent.
    Refused(String),
}

/// The addresses `host` resolves to that the policy allows, with `port`.
pub async fn allowed_addresses(
    policy: &AddressPolicy,
    host: &str,
    port: u16,
) -> Result<Vec<SocketAddr>, Unreachable> {
    let resolved: Vec<SocketAddr> = tokio::net::lookup_host((host, port))
        .await
        .map_err(Unreachable::Lookup)?
        .collect();
    let mut refusal = None;
    let allowed: Vec<SocketAddr> = resolved
        .into_iter()
        .filter(|a| match policy.check(a.ip()) {
            Ok(()) => true,
            Err(e) => {
                refusal.get_or_insert(e);
                false
            }
        })
        .collect();
    if allowed.is_empty() {
        let why = refusal.unwrap_or_else(|| "no address".into());
        return Err(Unreachable::Refused(format!(
            "{host} resolves to a refused address: {why}"
        )));
    }
    Ok(allowed)
}

/// Seconds from `Retry-After`, or the time until `X-RateLimit-Reset` (Unix seconds or an
/// ISO 8601 time, as Jira sends it). The HTTP-date form of `Retry-After` is ignored.
pub fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
    };
    // Seconds, whole or not (Discord sends `0.5`), rounded up.
    let seconds = |v: &str| {
        v.parse::<f64>()
            .ok()
            .filter(|n| n.is_finite() && *n >= 0.0)
            .map(|n| Duration::from_secs(n.ceil() as u64))
    };
    if let Some(d) = header("retry-after").and_then(seconds) {
        return Some(d);
    }
    if let Some(d) = header("x-ratelimit-reset-after").and_then(seconds) {
        return Some(d);
    }
    let reset = header("x-ratelimit-reset")?;
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let at = match reset.parse::<f64>().ok().filter(|n| n.is_finite()) {
        Some(n) if n > 1_000_000_000.0 => n.ceil() as i64,
        // A small number is a delay in seconds (some APIs send that).
        Some(n) => now + n.ceil() as i64,
        None => time::OffsetDateTime::parse(reset, &time::format_description::well_known::Rfc3339)
            .or_else(|_| {
                time::OffsetDateTime::parse(
                    reset,
                    &time::format_description::well_known::Iso8601::DEFAULT,
                )
            })
            .ok()?
            .unix_timestamp(),
    };
    Some(Duration::from_secs(at.saturating_sub(now).max(1) as u64))
}

/// `retry_after` (seconds) in a small JSON body, rounded up.
async fn body_retry_after(response: reqwest::Response) -> Option<Duration> {
    let bytes = read(response, 4096).await.ok()?;
    let n = serde_json::from_slice::<serde_json::Value>(&bytes).ok()?["retry_after"].as_f64()?;
    (n.is_finite() && n >= 0.0).then(|| Duration::from_secs(n.ceil() as u64))
}

/// Classifies a non-2xx answer by the rules for every vendor ([`crate::answers`]); a
/// connector's own rules are applied after ([`crate::answers::reclassify`]).
pub fn status_error(
    status: reqwest::StatusCode,
    headers: &reqwest::header::HeaderMap,
) -> DeliveryError {
    let code = status.as_u16();
    let reason = status.canonical_reason().unwrap_or("");
    let rule = crate::answers::for_status(None, code);
    let detail = match (code, rule) {
        (429 | 300..=399, Some(r)) => format!("HTTP {code} {reason}: {}", r.meaning),
        _ => format!("HTTP {code} {reason}"),
    };
    DeliveryError {
        class: rule.map_or(ErrorClass::Permanent, |r| r.class),
        status_code: Some(code),
        detail,
        retry_after: retry_after(headers),
        target: None,
    }
}

/// Classifies a transport error, without its URL. A refused address is permanent.
pub fn transport_error(e: reqwest::Error, timeout: Duration) -> DeliveryError {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&e);
    while let Some(err) = source {
        if let Some(refused) = err.downcast_ref::<Refused>() {
            return permanent(refused.0.clone());
        }
        source = err.source();
    }
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
        target: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::{HeaderMap, HeaderValue};

    #[test]
    fn retry_after_and_rate_limit_reset() {
        let mut h = HeaderMap::new();
        h.insert("retry-after", HeaderValue::from_static("7"));
        assert_eq!(retry_after(&h), Some(Duration::from_secs(7)));
        let mut h = HeaderMap::new();
        let at = time::OffsetDateTime::now_utc() + time::Duration::seconds(90);
        let iso = at
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap();
        h.insert("x-ratelimit-reset", HeaderValue::from_str(&iso).unwrap());
        let d = retry_after(&h).unwrap().as_secs();
        assert!((88..=90).contains(&d), "{d}");
        let mut h = HeaderMap::new();
        let epoch = (at.unix_timestamp()).to_string();
        h.insert("x-ratelimit-reset", HeaderValue::from_str(&epoch).unwrap());
        let d = retry_after(&h).unwrap().as_secs();
        assert!((88..=90).contains(&d), "{d}");
        assert_eq!(retry_after(&HeaderMap::new()), None);
    }

    #[test]
    fn instances_sharing_a_limit_keep_together_within_it() {
        let limit = |rate| Limit {
            key: "https://example.testrail.io:443".into(),
            rate,
        };
        let testrail = limit(Some(RateLimit::new(180, 10)));
        let alone = Http::new(AddressPolicy::new(&[]));
        assert_eq!(
            alone.effective_rate(&testrail),
            Some(RateLimit::new(180, 10))
        );
        let one_of_three = alone.clone().shared_by(3);
        assert_eq!(
            one_of_three.effective_rate(&testrail),
            Some(RateLimit::new(60, 3))
        );
        // Never below one request a minute, one at a time; no limit stays none.
        let many = alone.shared_by(500);
        assert_eq!(many.effective_rate(&testrail), Some(RateLimit::new(1, 1)));
        assert_eq!(many.effective_rate(&limit(None)), None);
    }
}
