//! The HTTP API as an axum [`Router`]: the ingest Lambda hands it to `lambda_http::run`, and
//! `testrelay serve` to `axum::serve`, so both speak exactly the same API.
//!
//! - `POST /v1/reports?project=..&branch=..&commit=..&build_url=..&environment=..&format=..`
//! - `GET /v1/runs/{id}`
//! - `GET /v1/pipelines/{id}?project=`, `POST /v1/pipelines/{id}/complete?project=`
//! - `GET /v1/projects/{p}/tests?status=flaky|failing&branch=&limit=`
//! - `GET /v1/projects/{p}/tests/{test_id}/history?branch=`
//! - `GET /v1/projects/{p}/quarantine`, `PUT|DELETE /v1/projects/{p}/quarantine/{test_id}`
//! - `GET /v1/deadletters?kind=webhook&max=50` (admin keys)
//! - `POST /v1/deadletters/redrive?kind=webhook&max=50` (admin keys)
//! - `GET /healthz`
//!
//! Every error is RFC 9457 `application/problem+json`.

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, Query, RawQuery, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use std::sync::Arc;
use testrelay_domain::error::ApiError;
use testrelay_domain::ingest::inflate::Reservation;
use testrelay_domain::ingest::{IngestService, Submission};

pub const PROBLEM_JSON: &str = "application/problem+json";

/// Wraps [`ApiError`] so that it renders as problem+json.
pub struct Problem(pub ApiError);

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let status =
            StatusCode::from_u16(self.0.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut res = (status, axum::Json(self.0.to_problem_json())).into_response();
        res.headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
        if let Some(secs) = self.0.retry_after {
            res.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        if status == StatusCode::UNAUTHORIZED && self.0.slug == "unauthorized" {
            res.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        res
    }
}

pub fn router(ingest: Arc<IngestService>) -> Router {
    Router::new()
        .route("/v1/reports", post(submit_report))
        .route("/v1/runs/{id}", get(run_status))
        .route("/v1/pipelines/{id}", get(pipeline_status))
        .route("/v1/pipelines/{id}/complete", post(complete_pipeline))
        .route("/v1/projects/{project}/tests", get(tests))
        .route(
            "/v1/projects/{project}/tests/{id}/history",
            get(test_history),
        )
        .route("/v1/projects/{project}/quarantine", get(quarantine))
        .route(
            "/v1/projects/{project}/quarantine/{id}",
            put(quarantine_add).delete(quarantine_remove),
        )
        .route("/v1/deadletters", get(list_dead_letters))
        .route("/v1/deadletters/redrive", post(redrive))
        .route("/v1/health", get(health))
        .route("/v1/hooks/{source}", post(submit_hook))
        .route("/healthz", get(healthz))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(ingest)
}

fn header_str(headers: &HeaderMap, name: impl header::AsHeaderName) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

/// The request's headers and body, refused with 413 beyond `max_body_bytes` (by its
/// declared length before reading, or while reading), and with 503 when the bytes it adds
/// would pass the in-flight budget: the body is reserved chunk by chunk as it arrives, so
/// many slow uploads at once cannot add up past it either.
async fn read_body(
    ingest: &IngestService,
    request: Request,
) -> Result<(HeaderMap, axum::body::Bytes, Reservation), Problem> {
    use futures::StreamExt;
    let limit = ingest.max_body_bytes();
    let headers = request.headers().clone();
    let declared =
        header_str(&headers, header::CONTENT_LENGTH).and_then(|v| v.parse::<usize>().ok());
    let too_large = || Problem(ApiError::body_too_large(limit));
    if declared.is_some_and(|n| n > limit) {
        return Err(too_large());
    }
    let mut reservation = Reservation::default();
    let mut chunks = request.into_body().into_data_stream();
    let mut body = Vec::with_capacity(declared.unwrap_or(0));
    ingest
        .inflight()
        .grow(&mut reservation, body.capacity())
        .map_err(Problem)?;
    while let Some(chunk) = chunks.next().await {
        let chunk = chunk.map_err(|e| {
            Problem(ApiError::bad_request(format!(
                "the request body could not be read: {e}"
            )))
        })?;
        let len = body.len() + chunk.len();
        if len > limit {
            return Err(too_large());
        }
        // What the buffer will hold once it grows (doubling, within the limit) is reserved
        // before it is allocated.
        let capacity = if len <= body.capacity() {
            body.capacity()
        } else {
            (2 * body.capacity()).clamp(len, limit)
        };
        ingest
            .inflight()
            .grow(&mut reservation, capacity)
            .map_err(Problem)?;
        body.reserve_exact(capacity - body.len());
        body.extend_from_slice(&chunk);
    }
    Ok((headers, body.into(), reservation))
}

async fn submit_report(
    State(ingest): State<Arc<IngestService>>,
    RawQuery(query): RawQuery,
    request: Request,
) -> Result<Response, Problem> {
    ingest
        .check_key(header_str(request.headers(), header::AUTHORIZATION).as_deref())
        .map_err(Problem)?;
    let (headers, body, reservation) = read_body(&ingest, request).await?;
    let submission = Submission {
        authorization: header_str(&headers, header::AUTHORIZATION),
        query,
        content_encoding: header_str(&headers, header::CONTENT_ENCODING),
        idempotency_key: header_str(&headers, "idempotency-key"),
        body,
        reservation,
    };
    let result = ingest.submit(submission).await.map_err(Problem)?;
    let mut res = (StatusCode::ACCEPTED, axum::Json(&result.accepted)).into_response();
    if let Ok(v) = HeaderValue::from_str(&result.accepted.status_url) {
        res.headers_mut().insert(header::LOCATION, v);
    }
    if result.replayed {
        res.headers_mut()
            .insert("idempotent-replayed", HeaderValue::from_static("true"));
    }
    Ok(res)
}

struct HeaderLookup<'a>(&'a HeaderMap);

impl testrelay_domain::ingest::signatures::Headers for HeaderLookup<'_> {
    fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).and_then(|v| v.to_str().ok())
    }
}

/// A provider's signed delivery: 202 with the run, 200 with the same run for a delivery
/// seen before (or for a verified event with nothing to relay).
async fn submit_hook(
    State(ingest): State<Arc<IngestService>>,
    Path(source): Path<String>,
    RawQuery(query): RawQuery,
    request: Request,
) -> Result<Response, Problem> {
    use testrelay_domain::ingest::hooks::{HookOutcome, HookRequest};
    ingest.check_hook_source(&source).map_err(Problem)?;
    let (headers, body, reservation) = read_body(&ingest, request).await?;
    let outcome = ingest
        .submit_hook(HookRequest {
            source: &source,
            headers: &HeaderLookup(&headers),
            query: query.as_deref(),
            body,
            reservation,
        })
        .await
        .map_err(Problem)?;
    Ok(match outcome {
        HookOutcome::Accepted(r) => {
            let status = if r.replayed {
                StatusCode::OK
            } else {
                StatusCode::ACCEPTED
            };
            (status, axum::Json(&r.accepted)).into_response()
        }
        HookOutcome::Ignored(why) => (
            StatusCode::OK,
            axum::Json(serde_json::json!({ "ignored": why })),
        )
            .into_response(),
    })
}

async fn run_status(
    State(ingest): State<Arc<IngestService>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, Problem> {
    let auth = header_str(&headers, header::AUTHORIZATION);
    let status = ingest
        .run_status(auth.as_deref(), &id)
        .await
        .map_err(Problem)?;
    Ok(axum::Json(status).into_response())
}

async fn pipeline_status(
    State(ingest): State<Arc<IngestService>>,
    Path(id): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Result<Response, Problem> {
    let auth = header_str(&headers, header::AUTHORIZATION);
    let status = ingest
        .pipeline_status(auth.as_deref(), &id, query.as_deref())
        .await
        .map_err(Problem)?;
    Ok(axum::Json(status).into_response())
}

async fn complete_pipeline(
    State(ingest): State<Arc<IngestService>>,
    Path(id): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Result<Response, Problem> {
    let auth = header_str(&headers, header::AUTHORIZATION);
    let status = ingest
        .complete_pipeline(auth.as_deref(), &id, query.as_deref())
        .await
        .map_err(Problem)?;
    Ok(axum::Json(status).into_response())
}

async fn tests(
    State(ingest): State<Arc<IngestService>>,
    Path(project): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Result<Response, Problem> {
    let auth = header_str(&headers, header::AUTHORIZATION);
    let list = ingest
        .tests(auth.as_deref(), &project, query.as_deref())
        .await
        .map_err(Problem)?;
    Ok(axum::Json(list).into_response())
}

async fn test_history(
    State(ingest): State<Arc<IngestService>>,
    Path((project, id)): Path<(String, String)>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Result<Response, Problem> {
    let auth = header_str(&headers, header::AUTHORIZATION);
    let history = ingest
        .test_history(auth.as_deref(), &project, &id, query.as_deref())
        .await
        .map_err(Problem)?;
    Ok(axum::Json(history).into_response())
}

async fn quarantine(
    State(ingest): State<Arc<IngestService>>,
    Path(project): Path<String>,
    headers: HeaderMap,
) -> Result<Response, Problem> {
    let auth = header_str(&headers, header::AUTHORIZATION);
    let list = ingest
        .quarantine(auth.as_deref(), &project)
        .await
        .map_err(Problem)?;
    Ok(axum::Json(serde_json::json!({ "quarantined": list })).into_response())
}

async fn quarantine_add(
    State(ingest): State<Arc<IngestService>>,
    Path((project, id)): Path<(String, String)>,
    request: Request,
) -> Result<Response, Problem> {
    ingest
        .check_key(header_str(request.headers(), header::AUTHORIZATION).as_deref())
        .map_err(Problem)?;
    let (headers, body, _reservation) = read_body(&ingest, request).await?;
    let auth = header_str(&headers, header::AUTHORIZATION);
    let entry = ingest
        .quarantine_add(auth.as_deref(), &project, &id, &body)
        .await
        .map_err(Problem)?;
    Ok(axum::Json(entry).into_response())
}

async fn quarantine_remove(
    State(ingest): State<Arc<IngestService>>,
    Path((project, id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Response, Problem> {
    let auth = header_str(&headers, header::AUTHORIZATION);
    ingest
        .quarantine_remove(auth.as_deref(), &project, &id)
        .await
        .map_err(Problem)?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[derive(serde::Deserialize)]
struct BatchQuery {
    kind: Option<String>,
    max: Option<String>,
}

async fn list_dead_letters(
    State(ingest): State<Arc<IngestService>>,
    Query(q): Query<BatchQuery>,
    headers: HeaderMap,
) -> Result<Response, Problem> {
    let auth = header_str(&headers, header::AUTHORIZATION);
    let letters = ingest
        .dead_letters(auth.as_deref(), q.kind.as_deref(), q.max.as_deref())
        .await
        .map_err(Problem)?;
    Ok(axum::Json(serde_json::json!({ "dead_letters": letters })).into_response())
}

async fn redrive(
    State(ingest): State<Arc<IngestService>>,
    Query(q): Query<BatchQuery>,
    headers: HeaderMap,
) -> Result<Response, Problem> {
    let auth = header_str(&headers, header::AUTHORIZATION);
    let n = ingest
        .redrive(auth.as_deref(), q.kind.as_deref(), q.max.as_deref())
        .await
        .map_err(Problem)?;
    Ok(axum::Json(serde_json::json!({ "redriven": n })).into_response())
}

async fn health(
    State(ingest): State<Arc<IngestService>>,
    headers: HeaderMap,
) -> Result<Response, Problem> {
    let auth = header_str(&headers, header::AUTHORIZATION);
    let report = ingest.health(auth.as_deref()).await.map_err(Problem)?;
    Ok(axum::Json(report).into_response())
}

async fn healthz() -> Response {
    axum::Json(serde_json::json!({"status": "ok"})).into_response()
}

async fn not_found(request: Request<Body>) -> Problem {
    Problem(ApiError::not_found(format!(
        "no route for {} {}",
        request.method(),
        request.uri().path()
    )))
}

async fn method_not_allowed(request: Request<Body>) -> Problem {
    Problem(ApiError::new(
        405,
        "method-not-allowed",
        "Method not allowed",
        format!(
            "{} is not allowed on {}",
            request.method(),
            request.uri().path()
        ),
    ))
}
