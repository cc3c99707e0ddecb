//! `POST /v1/hooks/{source}`: a provider's signed delivery, verified on the raw bytes
//! ([`crate::ingest::signatures`]), deduplicated across instances (an idempotency record in the state
//! store: a repeat answers the first run id and relays nothing), turned into a run (a report,
//! a GitHub event or the documented envelope) and accepted like a report posted with an API
//! key.
//!
//! Policy: only what the provider signed identifies a delivery. A signed delivery id
//! (Standard Webhooks) is the key; otherwise the key is the body's hash, and an unsigned id
//! (GitHub's `X-GitHub-Delivery`, a generic `id_header`) must match the one first seen with
//! that body: a captured delivery replayed under a new id is refused like a bad signature,
//! never relayed again. The query string is not signed either: it is refused unless the
//! source opts in, and a URL from it is never accepted (it would render as a link).

use crate::config::HookFormat;
use crate::error::ApiError;
use crate::ingest::signatures::{Headers, Rejected, Verified, verify};
use crate::ingest::{Accept, IngestService, SubmitResult};
use crate::report::model::{Format, Property, Report, RunMeta, Status, Suite, TestCase};
use bytes::Bytes;
use serde::Deserialize;
use serde_json::value::RawValue;

/// What a hook request came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HookOutcome {
    /// A run was accepted (or, `replayed`, this delivery was seen before).
    Accepted(SubmitResult),
    /// Verified, but nothing to relay (a GitHub `ping`, an event still in progress...).
    Ignored(String),
}

/// A hook request as the HTTP edge received it.
pub struct HookRequest<'a> {
    pub source: &'a str,
    pub headers: &'a dyn Headers,
    /// The raw query string (report metadata for `format = "report"`).
    pub query: Option<&'a str>,
    pub body: Bytes,
    /// What the edge reserved of the in-flight budget while it read the body.
    pub reservation: crate::ingest::inflate::Reservation,
}

impl IngestService {
    pub async fn submit_hook(&self, mut req: HookRequest<'_>) -> Result<HookOutcome, ApiError> {
        let not_found = || crate::ingest::signatures::unknown_source(req.source);
        let hook = self.config.hooks.get(req.source).ok_or_else(not_found)?;
        let secrets = self.hooks.of(req.source).ok_or_else(not_found)?;
        let max = self.config.server.max_body_bytes;
        if req.body.len() > max {
            return Err(ApiError::body_too_large(max));
        }
        let now_s = self.ports.clock.now_ms() / 1000;
        let verified: Verified = verify(
            &hook.scheme,
            hook.hmac.as_ref(),
            secrets,
            req.headers,
            &req.body,
            now_s,
            hook.tolerance_s,
        )
        .map_err(|e: Rejected| {
            tracing::warn!(source = req.source, reason = %e, "hook signature rejected");
            ApiError::bad_signature()
        })?;
        // Verified: only now is the body read. The query is not signed.
        let query = req.query.unwrap_or("");
        if !query.is_empty() && !hook.query_metadata {
            return Err(ApiError::bad_request(format!(
                "the query string is not covered by the signature, so source {:?} does not accept one (set hooks.{}.query_metadata = true to take branch, commit and environment from it)",
                req.source, req.source
            )));
        }
        let (delivery, fingerprint) = delivery_key(&verified, &req.body);
        let mut reservation = std::mem::take(&mut req.reservation);
        let body = self.inflight.decode(
            &req.body,
            req.headers.get("content-encoding"),
            self.config.server.max_decompressed_bytes,
            &mut reservation,
        )?;
        // The body is held once, as `body`, from here until the report is parsed.
        drop(req.body);
        let project = hook.project.as_str();
        let (meta, report, blob_budget) = match hook.format {
            HookFormat::Report => {
                let meta = metadata(query, project)?;
                let (report, left) = self.parse_report(&body, None)?;
                (meta, report, left)
            }
            HookFormat::Envelope => {
                let e = Envelope::read(&body)?;
                let (report, left) = self.parse_report(&e.text, e.format).map_err(|mut err| {
                    err.detail = format!("envelope report: {}", err.detail);
                    err
                })?;
                (e.meta(project)?, report, left)
            }
            HookFormat::Github => match github(verified.event.as_deref(), &body, project)? {
                Some((meta, report)) => (meta, report, usize::MAX),
                None => {
                    return Ok(HookOutcome::Ignored(format!(
                        "GitHub event {:?} is not a completed workflow_run or check_run",
                        verified.event.as_deref().unwrap_or("?")
                    )));
                }
            },
        };
        drop(body);
        let result = self
            .accept(Accept {
                project: hook.project.clone(),
                meta,
                report,
                claim_key: Some(format!("hook/{}/{delivery}", req.source)),
                fingerprint,
                blob_budget,
            })
            .await
            .map_err(|e| {
                // A signed id reused with another body, or a body replayed under another
                // unsigned id: a forgery or a provider bug, refused like a bad signature.
                if e.status == 422 {
                    ApiError::bad_signature()
                } else {
                    e
                }
            })?;
        Ok(HookOutcome::Accepted(result))
    }
}

/// Report metadata from the (unsigned) query string: `branch`, `commit` and `environment`
/// only; the project is the hook's.
fn metadata(query: &str, project: &str) -> Result<RunMeta, ApiError> {
    let mut meta = RunMeta {
        project: project.to_string(),
        branch: None,
        commit: None,
        build_url: None,
        environment: None,
        pipeline: None,
    };
    for (k, v) in url::form_urlencoded::parse(query.as_bytes()) {
        let v = Some(v.trim().to_string()).filter(|v| !v.is_empty());
        match k.as_ref() {
            "branch" => meta.branch = v,
            "commit" => meta.commit = v,
            "environment" => meta.environment = v,
            "build_url" => {
                return Err(ApiError::bad_request(
                    "build_url is not accepted in a hook's query string: it is not signed, and testrelay never renders an unsigned URL as a link (send an envelope, whose build_url is signed)",
                ));
            }
            other => {
                return Err(ApiError::bad_request(format!(
                    "unknown query parameter {:?} (a hook's query may carry branch, commit and environment)",
                    crate::report::parse::shown(other)
                )));
            }
        }
    }
    check_meta(&meta)?;
    Ok(meta)
}

fn check_meta(meta: &RunMeta) -> Result<(), ApiError> {
    for (name, v, max) in [
        ("branch", &meta.branch, 256),
        ("commit", &meta.commit, 128),
        ("environment", &meta.environment, 64),
        ("build_url", &meta.build_url, 2048),
    ] {
        if v.as_ref().is_some_and(|v| v.len() > max) {
            return Err(ApiError::bad_request(format!(
                "{name} is longer than {max} characters"
            )));
        }
    }
    if let Some(u) = &meta.build_url {
        let ok = url::Url::parse(u).is_ok_and(|u| matches!(u.scheme(), "http" | "https"));
        if !ok {
            return Err(ApiError::bad_request("build_url must be an http(s) URL"));
        }
    }
    Ok(())
}

/// The documented envelope: a report plus its metadata. The report is borrowed from the
/// body, never copied into a JSON tree.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EnvelopeDoc<'a> {
    /// The report: its text (XML or JSON as a string), or a JSON report inline.
    #[serde(borrow)]
    report: &'a RawValue,
    #[serde(default)]
    format: Option<String>,
    #[serde(default)]
    branch: Option<String>,
    #[serde(default)]
    commit: Option<String>,
    #[serde(default)]
    build_url: Option<String>,
    #[serde(default)]
    environment: Option<String>,
}

struct Envelope<'a> {
    text: std::borrow::Cow<'a, [u8]>,
    format: Option<Format>,
    doc: EnvelopeDoc<'a>,
}

impl<'a> Envelope<'a> {
    fn read(body: &'a [u8]) -> Result<Self, ApiError> {
        let doc: EnvelopeDoc<'a> = serde_json::from_slice(body)
            .map_err(|e| ApiError::invalid_report(format!("envelope: {e}")))?;
        let format = match doc.format.as_deref() {
            None => None,
            Some(f) => Some(Format::from_name(f).ok_or_else(|| {
                ApiError::bad_request(format!(
                    "envelope: unknown format {:?}",
                    crate::report::parse::shown(f)
                ))
            })?),
        };
        let raw = doc.report.get();
        let text = match raw.as_bytes().first() {
            Some(b'"') => {
                let s: std::borrow::Cow<'a, str> = serde_json::from_str(raw)
                    .map_err(|e| ApiError::invalid_report(format!("envelope: {e}")))?;
                match s {
                    std::borrow::Cow::Borrowed(s) => std::borrow::Cow::Borrowed(s.as_bytes()),
                    std::borrow::Cow::Owned(s) => std::borrow::Cow::Owned(s.into_bytes()),
                }
            }
            Some(b'{') => std::borrow::Cow::Borrowed(raw.as_bytes()),
            _ => {
                return Err(ApiError::invalid_report(
                    "envelope: \"report\" must be the report's text or a JSON report",
                ));
            }
        };
        Ok(Envelope { text, format, doc })
    }

    fn meta(self, project: &str) -> Result<RunMeta, ApiError> {
        let d = self.doc;
        let meta = RunMeta {
            project: project.to_string(),
            branch: d.branch,
            commit: d.commit,
            build_url: d.build_url,
            environment: d.environment,
            pipeline: None,
        };
        check_meta(&meta)?;
        Ok(meta)
    }
}

/// The idempotency key and fingerprint of a verified delivery (see the module's policy).
fn delivery_key(verified: &Verified, body: &[u8]) -> (String, String) {
    use sha2::Digest;
    let hash = |b: &[u8]| hex::encode(sha2::Sha256::digest(b));
    let body_hash = hash(body);
    match (&verified.delivery_id, verified.id_signed) {
        // Ids short and plain enough for any store key are used as they are; others hashed.
        (Some(id), true)
            if id.len() <= 128
                && id
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b)) =>
        {
            (format!("id-{id}"), body_hash)
        }
        (Some(id), true) => (format!("idh-{}", hash(id.as_bytes())), body_hash),
        (Some(id), false) => (
            format!("body-{body_hash}"),
            format!("{body_hash}/{}", hash(id.as_bytes())),
        ),
        (None, _) => (format!("body-{body_hash}"), body_hash),
    }
}

/// The parts of a GitHub event testrelay reads; everything else is skipped unread.
#[derive(Deserialize, Default)]
#[serde(default)]
struct GithubEvent {
    action: Option<String>,
    workflow_run: Option<GithubRun>,
    check_run: Option<GithubRun>,
    repository: Option<GithubRepo>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct GithubRun {
    id: Option<u64>,
    name: Option<String>,
    conclusion: Option<String>,
    head_branch: Option<String>,
    head_sha: Option<String>,
    html_url: Option<String>,
    run_attempt: Option<u64>,
    run_started_at: Option<String>,
    started_at: Option<String>,
    updated_at: Option<String>,
    completed_at: Option<String>,
    check_suite: Option<GithubCheckSuite>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct GithubCheckSuite {
    head_branch: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct GithubRepo {
    full_name: Option<String>,
}

/// A completed `workflow_run` or `check_run` as a run of one test (the workflow or check),
/// its conclusion as the status; anything else is ignored (`None`).
pub fn github(
    event: Option<&str>,
    body: &[u8],
    project: &str,
) -> Result<Option<(RunMeta, Report)>, ApiError> {
    let payload: GithubEvent = serde_json::from_slice(body)
        .map_err(|e| ApiError::invalid_report(format!("GitHub event: {e}")))?;
    if payload.action.as_deref() != Some("completed") {
        return Ok(None);
    }
    let (run, kind) = match event {
        Some("workflow_run") => (payload.workflow_run, "workflow_run"),
        Some("check_run") => (payload.check_run, "check_run"),
        _ => return Ok(None),
    };
    let Some(run) = run else {
        return Ok(None);
    };
    let branch = match kind {
        "workflow_run" => run.head_branch.clone(),
        _ => run.check_suite.as_ref().and_then(|s| s.head_branch.clone()),
    };
    let name = run
        .name
        .as_deref()
        .map(crate::report::parse::limits::cut_name)
        .unwrap_or_else(|| kind.to_string());
    let conclusion = run.conclusion.as_deref().unwrap_or("unknown");
    let status = match conclusion {
        "success" | "neutral" => Status::Passed,
        "failure" => Status::Failed,
        "timed_out" | "startup_failure" => Status::Error,
        _ => Status::Skipped,
    };
    let started = run.run_started_at.as_deref().or(run.started_at.as_deref());
    let ended = run.updated_at.as_deref().or(run.completed_at.as_deref());
    let duration_ms = match (started.and_then(ts), ended.and_then(ts)) {
        (Some(a), Some(b)) if b >= a => Some((b - a) as f64),
        _ => None,
    };
    let conclusion = crate::report::parse::shown(conclusion);
    let mut case = TestCase::new(name, status);
    case.duration_ms = duration_ms;
    if status != Status::Passed {
        case.message = Some(format!("{kind} concluded {conclusion}"));
    }
    case.properties = [
        ("github_event", Some(kind.to_string())),
        ("github_run_id", run.id.map(|i| i.to_string())),
        ("github_run_attempt", run.run_attempt.map(|i| i.to_string())),
        ("conclusion", Some(conclusion)),
    ]
    .into_iter()
    .filter_map(|(k, v)| {
        Some(Property {
            name: k.to_string(),
            value: v?,
        })
    })
    .collect();
    let repo = payload
        .repository
        .and_then(|r| r.full_name)
        .map(|n| crate::report::parse::limits::cut_name(&n))
        .unwrap_or_else(|| "github".to_string());
    let report = Report {
        format: Format::Github,
        tool: Some("github-actions".into()),
        duration_ms,
        suites: vec![Suite {
            name: repo,
            file: None,
            duration_ms,
            properties: vec![],
            cases: vec![case],
        }],
    };
    let meta = RunMeta {
        project: project.to_string(),
        branch,
        commit: run.head_sha,
        build_url: run.html_url.filter(|u| u.starts_with("https://")),
        environment: None,
        pipeline: None,
    };
    check_meta(&meta)?;
    Ok(Some((meta, report)))
}

fn ts(s: &str) -> Option<i64> {
    time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
        .ok()
        .map(|t| (t.unix_timestamp_nanos() / 1_000_000) as i64)
}
