//! Errors as the HTTP edge shows them: RFC 9457 problem details. The services return
//! [`ApiError`]; the API crate only serialises it.

use serde::Serialize;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ApiError {
    /// A stable slug; the problem `type` is `urn:testrelay:problem:<slug>`.
    #[serde(skip)]
    pub slug: &'static str,
    pub title: &'static str,
    pub status: u16,
    /// What exactly is wrong, precise enough to fix the request. Never contains secrets.
    pub detail: String,
    /// Seconds after which a retry may succeed (`Retry-After`), for 503s that say so.
    #[serde(skip)]
    pub retry_after: Option<u32>,
}

impl ApiError {
    pub fn new(
        status: u16,
        slug: &'static str,
        title: &'static str,
        detail: impl Into<String>,
    ) -> Self {
        ApiError {
            slug,
            title,
            status,
            detail: detail.into(),
            retry_after: None,
        }
    }

    pub fn unauthorized(detail: impl Into<String>) -> Self {
        Self::new(401, "unauthorized", "Missing or invalid API key", detail)
    }
    /// A hook request whose signature did not verify; the detail never says which part.
    pub fn bad_signature() -> Self {
        Self::new(
            401,
            "invalid-signature",
            "Invalid signature",
            "the request's signature could not be verified",
        )
    }
    pub fn forbidden(detail: impl Into<String>) -> Self {
        Self::new(403, "forbidden", "This API key may not do that", detail)
    }
    pub fn not_found(detail: impl Into<String>) -> Self {
        Self::new(404, "not-found", "Not found", detail)
    }
    pub fn bad_request(detail: impl Into<String>) -> Self {
        Self::new(400, "bad-request", "Bad request", detail)
    }
    pub fn invalid_report(detail: impl Into<String>) -> Self {
        Self::new(
            400,
            "invalid-report",
            "The report could not be read",
            detail,
        )
    }
    pub fn too_large(detail: impl Into<String>) -> Self {
        Self::new(
            413,
            "payload-too-large",
            "The request body is too large",
            detail,
        )
    }
    /// The body on the wire is over `limit` bytes.
    pub fn body_too_large(limit: usize) -> Self {
        Self::too_large(format!(
            "the body is larger than {limit} bytes (gzip it: Content-Encoding: gzip)"
        ))
    }
    pub fn unsupported_encoding(detail: impl Into<String>) -> Self {
        Self::new(
            415,
            "unsupported-encoding",
            "Unsupported Content-Encoding",
            detail,
        )
    }
    pub fn idempotency_mismatch(detail: impl Into<String>) -> Self {
        Self::new(
            422,
            "idempotency-key-reused",
            "Idempotency-Key reused with a different request",
            detail,
        )
    }
    pub fn idempotency_in_progress(detail: impl Into<String>) -> Self {
        Self::new(
            409,
            "request-in-progress",
            "The same request is still being processed",
            detail,
        )
    }
    pub fn unavailable(detail: impl Into<String>) -> Self {
        Self::new(503, "unavailable", "Temporarily unavailable", detail)
    }

    /// Too much is being parsed at once: retry after `seconds`.
    pub fn busy(detail: impl Into<String>, seconds: u32) -> Self {
        ApiError {
            retry_after: Some(seconds),
            ..Self::new(503, "busy", "Too many reports in progress", detail)
        }
    }

    pub fn type_uri(&self) -> String {
        format!("urn:testrelay:problem:{}", self.slug)
    }

    /// The problem+json body.
    pub fn to_problem_json(&self) -> serde_json::Value {
        serde_json::json!({
            "type": self.type_uri(),
            "title": self.title,
            "status": self.status,
            "detail": self.detail,
        })
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}: {}", self.status, self.title, self.detail)
    }
}

impl std::error::Error for ApiError {}
