//! `POST /v1/hooks/{source}`: a provider's signed delivery, verified on the raw bytes
//! ([`crate::hooks`]), deduplicated by its delivery id across instances (an idempotency
//! record in the state store: a repeat answers the first run id and relays nothing), turned
//! into a run (a report, a GitHub event or the documented envelope) and accepted like a
//! report posted with an API key.

use crate::config::{Config, HookFormat};
use crate::error::ApiError;
use crate::hooks::{Headers, HookSecret, Rejected, Verified, verify};
use crate::ingest::{Accept, IngestService, SubmitResult, decode_body};
use crate::model::{Format, Property, Report, RunMeta, Status, Suite, TestCase};
use crate::parse;
use crate::ports::{SecretStore, resolve_secret};
use bytes::Bytes;
use serde::Deserialize;
use serde_json::Value;
use std::collections::HashMap;

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
}

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
}

impl IngestService {
    pub async fn submit_hook(&self, req: HookRequest<'_>) -> Result<HookOutcome, ApiError> {
        let not_found = || ApiError::not_found(format!("no hook source {:?}", req.source));
        let hook = self.config.hooks.get(req.source).ok_or_else(not_found)?;
        let secrets = self.hooks.0.get(req.source).ok_or_else(not_found)?;
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
        // Verified: only now is the body parsed.
        let (meta, report) = match hook.format {
            HookFormat::Report => {
                let meta = metadata(req.query.unwrap_or(""), hook.project.as_str())?;
                let body = decode_body(
                    &req.body,
                    req.headers.get("content-encoding"),
                    self.config.server.max_decompressed_bytes,
                )?;
                let report = parse::parse(&body, None)
                    .map_err(|e| ApiError::invalid_report(e.to_string()))?;
                (meta, report)
            }
            HookFormat::Envelope => envelope(&req.body, hook.project.as_str())?,
            HookFormat::Github => {
                match github(verified.event.as_deref(), &req.body, hook.project.as_str())? {
                    Some(run) => run,
                    None => {
                        return Ok(HookOutcome::Ignored(format!(
                            "GitHub event {:?} is not a completed workflow_run or check_run",
                            verified.event.as_deref().unwrap_or("?")
                        )));
                    }
                }
            }
        };
        // Ids short and plain enough for any store key are used as they are; others hashed.
        let delivery = match verified.delivery_id {
            Some(id)
                if id.len() <= 128
                    && id
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b)) =>
            {
                format!("id-{id}")
            }
            Some(id) => {
                use sha2::Digest;
                format!("idh-{}", hex::encode(sha2::Sha256::digest(id.as_bytes())))
            }
            None => format!("sig-{}", verified.signature_digest),
        };
        let fingerprint = {
            use sha2::Digest;
            hex::encode(sha2::Sha256::digest(&req.body))
        };
        let result = self
            .accept(Accept {
                project: hook.project.clone(),
                meta,
                report,
                claim_key: Some(format!("hook/{}/{delivery}", req.source)),
                fingerprint,
            })
            .await
            .map_err(|e| {
                // A delivery id reused with another body is a forgery or a provider bug:
                // refuse it the same way as a bad signature.
                if e.status == 422 {
                    ApiError::bad_signature()
                } else {
                    e
                }
            })?;
        Ok(HookOutcome::Accepted(result))
    }
}

/// Report metadata from the query string (`branch`, `commit`, `build_url`, `environment`);
/// the project is the hook's.
fn metadata(query: &str, project: &str) -> Result<RunMeta, ApiError> {
    let mut meta = RunMeta {
        project: project.to_string(),
        branch: None,
        commit: None,
        build_url: None,
        environment: None,
    };
    for (k, v) in url::form_urlencoded::parse(query.as_bytes()) {
        let v = Some(v.trim().to_string()).filter(|v| !v.is_empty());
        match k.as_ref() {
            "branch" => meta.branch = v,
            "commit" => meta.commit = v,
            "build_url" => meta.build_url = v,
            "environment" => meta.environment = v,
            _ => {}
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

/// The documented envelope: a report plus its metadata.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Envelope {
    /// The report: its text (XML or JSON as a string), or a JSON report inline.
    report: Value,
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

fn envelope(body: &[u8], project: &str) -> Result<(RunMeta, Report), ApiError> {
    let e: Envelope = serde_json::from_slice(body)
        .map_err(|e| ApiError::invalid_report(format!("envelope: {e}")))?;
    let format = match e.format.as_deref() {
        None => None,
        Some(f) => Some(
            Format::from_name(f)
                .ok_or_else(|| ApiError::bad_request(format!("envelope: unknown format {f:?}")))?,
        ),
    };
    let text = match &e.report {
        Value::String(s) => s.clone().into_bytes(),
        Value::Object(_) => serde_json::to_vec(&e.report).expect("serialisable"),
        _ => {
            return Err(ApiError::invalid_report(
                "envelope: \"report\" must be the report's text or a JSON report",
            ));
        }
    };
    let report = parse::parse(&text, format)
        .map_err(|err| ApiError::invalid_report(format!("envelope report: {err}")))?;
    let meta = RunMeta {
        project: project.to_string(),
        branch: e.branch,
        commit: e.commit,
        build_url: e.build_url,
        environment: e.environment,
    };
    check_meta(&meta)?;
    Ok((meta, report))
}

/// A completed `workflow_run` or `check_run` as a run of one test (the workflow or check),
/// its conclusion as the status; anything else is ignored (`None`).
pub fn github(
    event: Option<&str>,
    body: &[u8],
    project: &str,
) -> Result<Option<(RunMeta, Report)>, ApiError> {
    let payload: Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::invalid_report(format!("GitHub event: {e}")))?;
    if payload["action"] != "completed" {
        return Ok(None);
    }
    let (run, branch, kind) = match event {
        Some("workflow_run") => {
            let r = &payload["workflow_run"];
            (r, r["head_branch"].as_str(), "workflow_run")
        }
        Some("check_run") => {
            let r = &payload["check_run"];
            (r, r["check_suite"]["head_branch"].as_str(), "check_run")
        }
        _ => return Ok(None),
    };
    let s = |v: &Value| v.as_str().map(str::to_string);
    let name = s(&run["name"]).unwrap_or_else(|| kind.to_string());
    let conclusion = run["conclusion"].as_str().unwrap_or("unknown");
    let status = match conclusion {
        "success" | "neutral" => Status::Passed,
        "failure" => Status::Failed,
        "timed_out" | "startup_failure" => Status::Error,
        _ => Status::Skipped,
    };
    let started = run["run_started_at"]
        .as_str()
        .or(run["started_at"].as_str());
    let ended = run["updated_at"].as_str().or(run["completed_at"].as_str());
    let duration_ms = match (started.and_then(ts), ended.and_then(ts)) {
        (Some(a), Some(b)) if b >= a => Some((b - a) as f64),
        _ => None,
    };
    let mut case = TestCase::new(name.clone(), status);
    case.duration_ms = duration_ms;
    if status != Status::Passed {
        case.message = Some(format!("{kind} concluded {conclusion}"));
    }
    case.properties = [
        ("github_event", Some(kind.to_string())),
        ("github_run_id", run["id"].as_u64().map(|i| i.to_string())),
        (
            "github_run_attempt",
            run["run_attempt"].as_u64().map(|i| i.to_string()),
        ),
        ("conclusion", Some(conclusion.to_string())),
    ]
    .into_iter()
    .filter_map(|(k, v)| {
        Some(Property {
            name: k.to_string(),
            value: v?,
        })
    })
    .collect();
    let repo = s(&payload["repository"]["full_name"]).unwrap_or_else(|| "github".to_string());
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
        branch: branch.map(str::to_string),
        commit: s(&run["head_sha"]),
        build_url: s(&run["html_url"]).filter(|u| u.starts_with("https://")),
        environment: None,
    };
    check_meta(&meta)?;
    Ok(Some((meta, report)))
}

fn ts(s: &str) -> Option<i64> {
    time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
        .ok()
        .map(|t| (t.unix_timestamp_nanos() / 1_000_000) as i64)
}
