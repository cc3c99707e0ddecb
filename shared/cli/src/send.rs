//! `testrelay send`: the CI client. Gzips the report, posts it with an Idempotency-Key (one
//! per invocation, so its own retries can never create a second run), retries 5xx, 429 and
//! connection errors with exponential backoff, and succeeds only on 202. With `--fail-on`,
//! the job then fails (exit 2) only for what the team chose, judged on what changed against
//! the base (see `verdict.rs`).

use flate2::Compression;
use flate2::write::GzEncoder;
use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, Clone, clap::Args)]
pub struct SendArgs {
    /// The report file (JUnit XML, CTRF JSON or Playwright JSON).
    pub file: PathBuf,
    /// testrelay's base URL, e.g. https://testrelay.example.com
    #[arg(long, env = "TESTRELAY_URL")]
    pub url: String,
    #[arg(long, env = "TESTRELAY_PROJECT")]
    pub project: String,
    /// Defaults to the CI's branch variable (GITHUB_REF_NAME, CI_COMMIT_REF_NAME, ...).
    #[arg(long)]
    pub branch: Option<String>,
    /// Defaults to the CI's commit variable (GITHUB_SHA, CI_COMMIT_SHA, ...).
    #[arg(long)]
    pub commit: Option<String>,
    /// Defaults to the CI's job URL when it has one.
    #[arg(long)]
    pub build_url: Option<String>,
    #[arg(long)]
    pub environment: Option<String>,
    /// junit, ctrf or playwright; detected when absent.
    #[arg(long)]
    pub format: Option<String>,
    /// Retries after the first attempt.
    #[arg(long, default_value_t = 5)]
    pub retries: u32,
    /// Per-request timeout in seconds.
    #[arg(long, default_value_t = 60)]
    pub timeout: u64,
    /// The API key; read from the environment so that it stays out of process listings.
    #[arg(long = "api-key-env", default_value = "TESTRELAY_API_KEY")]
    pub api_key_env: String,
    /// The CI pipeline this report is a part of; defaults to the CI's run id when the job
    /// is one of several (see --shard).
    #[arg(long)]
    pub pipeline: Option<String>,
    /// This job's shard, `<index>/<total>` from 1; defaults to the CI's parallel-job
    /// variables (GitLab CI_NODE_INDEX/CI_NODE_TOTAL, Buildkite, CircleCI).
    #[arg(long)]
    pub shard: Option<String>,
    /// The pipeline's run attempt; defaults to GITHUB_RUN_ATTEMPT or Buildkite's retry count.
    #[arg(long)]
    pub attempt: Option<u32>,
    /// Send as a report of its own even in a parallel CI job.
    #[arg(long, conflicts_with_all = ["pipeline", "shard"])]
    pub single: bool,
    /// After this report, complete the pipeline (its last part is in).
    #[arg(long)]
    pub complete: bool,
    /// What fails this CI job (exit 2), judged on what changed against the base:
    /// `new-failures` (failures not failing on the base, not flaky, not quarantined),
    /// `any-failure` (any failure of a test not quarantined) or `none`. With --complete, the
    /// whole pipeline's result is judged; otherwise this report's.
    #[arg(long, value_parser = crate::verdict::parse_fail_on, default_value = "none")]
    pub fail_on: testrelay_domain::history::FailOn,
}

fn first_env(names: &[&str]) -> Option<String> {
    names
        .iter()
        .find_map(|n| std::env::var(n).ok().filter(|v| !v.is_empty()))
}

fn ci_build_url() -> Option<String> {
    if let (Some(server), Some(repo), Some(run)) = (
        first_env(&["GITHUB_SERVER_URL"]),
        first_env(&["GITHUB_REPOSITORY"]),
        first_env(&["GITHUB_RUN_ID"]),
    ) {
        return Some(format!("{server}/{repo}/actions/runs/{run}"));
    }
    first_env(&[
        "CI_JOB_URL",
        "BUILDKITE_BUILD_URL",
        "CIRCLE_BUILD_URL",
        "BUILD_URL",
    ])
}

/// The full report URL with its query.
pub fn report_url(args: &SendArgs) -> Result<reqwest::Url, String> {
    report_url_in(args, &crate::pipeline::process_env)
}

/// [`report_url`] with CI variables read from `env`.
pub fn report_url_in(args: &SendArgs, env: crate::pipeline::Vars) -> Result<reqwest::Url, String> {
    let base = args.url.trim_end_matches('/');
    let full = if base.ends_with("/v1/reports") {
        base.to_string()
    } else {
        format!("{base}/v1/reports")
    };
    let mut url = reqwest::Url::parse(&full).map_err(|e| format!("--url: {e}"))?;
    {
        let mut q = url.query_pairs_mut();
        q.append_pair("project", &args.project);
        let branch = args.branch.clone().or_else(|| {
            first_env(&[
                "GITHUB_HEAD_REF",
                "GITHUB_REF_NAME",
                "CI_COMMIT_REF_NAME",
                "BUILDKITE_BRANCH",
                "CIRCLE_BRANCH",
                "GIT_BRANCH",
            ])
        });
        let commit = args.commit.clone().or_else(|| {
            first_env(&[
                "GITHUB_SHA",
                "CI_COMMIT_SHA",
                "BUILDKITE_COMMIT",
                "CIRCLE_SHA1",
                "GIT_COMMIT",
            ])
        });
        let part = crate::pipeline::resolve(
            env,
            args.pipeline.as_deref(),
            args.shard.as_deref(),
            args.attempt,
            args.single,
        )?;
        let (pipeline, shard, attempt) = match part {
            Some(p) => (Some(p.pipeline), p.shard, p.attempt.map(|a| a.to_string())),
            None => (None, None, None),
        };
        let pairs = [
            ("pipeline", pipeline),
            ("shard", shard),
            ("attempt", attempt),
            ("branch", branch),
            ("commit", commit),
            ("build_url", args.build_url.clone().or_else(ci_build_url)),
            ("environment", args.environment.clone()),
            ("format", args.format.clone()),
        ];
        for (k, v) in pairs {
            if let Some(v) = v {
                q.append_pair(k, &v);
            }
        }
    }
    Ok(url)
}

/// Runs the command; the process exit code is 0 only when testrelay answered 202.
pub async fn run(args: SendArgs) -> i32 {
    let Some(key) = crate::api::key("send", &args.api_key_env) else {
        return 1;
    };
    match send(&args, &key).await {
        Ok(body) if args.complete => {
            let pipeline = report_url(&args).ok().and_then(|u| {
                u.query_pairs()
                    .find(|(k, _)| k == "pipeline")
                    .map(|(_, v)| v.to_string())
            });
            let Some(pipeline) = pipeline else {
                eprintln!("testrelay send: --complete needs a pipeline (--pipeline or --shard)");
                return 1;
            };
            println!("accepted: run {}", body["run_id"].as_str().unwrap_or("?"));
            match crate::pipeline::complete(&args.url, &args.project, &pipeline, &key).await {
                Ok(status) => {
                    println!("pipeline {pipeline}: complete");
                    let failed = status["summary"]["failed"].as_u64().unwrap_or(0)
                        + status["summary"]["errored"].as_u64().unwrap_or(0);
                    crate::verdict::judge(status.get("changes"), failed, args.fail_on)
                }
                Err(e) => {
                    eprintln!("testrelay send: the report is in; completing {pipeline}: {e}");
                    1
                }
            }
        }
        Ok(body) => {
            let run_id = body["run_id"].as_str().unwrap_or("?");
            let status = body["status_url"].as_str().unwrap_or("");
            println!(
                "accepted: run {run_id} ({} tests)",
                body["summary"]["total"]
            );
            println!(
                "status: {}{status}",
                args.url
                    .trim_end_matches('/')
                    .trim_end_matches("/v1/reports")
            );
            let failed = body["summary"]["failed"].as_u64().unwrap_or(0)
                + body["summary"]["errored"].as_u64().unwrap_or(0);
            crate::verdict::judge(body.get("changes"), failed, args.fail_on)
        }
        Err(e) => {
            eprintln!("testrelay send: {e}");
            1
        }
    }
}

/// Posts the report; the 202 body, or why it was not accepted.
pub async fn send(args: &SendArgs, key: &str) -> Result<serde_json::Value, String> {
    let raw = std::fs::read(&args.file).map_err(|e| format!("{}: {e}", args.file.display()))?;
    let mut gz = GzEncoder::new(Vec::with_capacity(raw.len() / 4), Compression::default());
    gz.write_all(&raw).map_err(|e| e.to_string())?;
    let body = gz.finish().map_err(|e| e.to_string())?;
    let url = report_url(args)?;
    let idempotency_key = format!("send-{}", hex::encode(rand::random::<[u8; 16]>()));
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(args.timeout))
        .user_agent(concat!("testrelay-send/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| e.to_string())?;
    let mut attempt = 0u32;
    loop {
        attempt += 1;
        let result = client
            .post(url.clone())
            .bearer_auth(key)
            .header("content-encoding", "gzip")
            .header("idempotency-key", &idempotency_key)
            .body(body.clone())
            .send()
            .await;
        let (msg, retry_after): (String, Option<u64>) = match result {
            Ok(res) => {
                let status = res.status();
                let retry_after = res
                    .headers()
                    .get("retry-after")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.parse::<u64>().ok());
                let text = res.text().await.unwrap_or_default();
                if status.as_u16() == 202 {
                    return serde_json::from_str(&text)
                        .map_err(|e| format!("unreadable 202 answer: {e}"));
                }
                let detail = serde_json::from_str::<serde_json::Value>(&text)
                    .ok()
                    .and_then(|v| v["detail"].as_str().map(str::to_string))
                    .unwrap_or(text);
                let msg = format!("HTTP {status}: {detail}");
                if status.is_server_error() || status.as_u16() == 429 || status.as_u16() == 409 {
                    (msg, retry_after)
                } else {
                    return Err(msg);
                }
            }
            Err(e) => (format!("request failed: {}", e.without_url()), None),
        };
        if attempt > args.retries {
            return Err(format!("{msg} (gave up after {attempt} attempts)"));
        }
        let backoff = Duration::from_millis(500 * 2u64.pow(attempt.min(6)));
        let jitter = Duration::from_millis(rand::random::<u64>() % 500);
        let wait = retry_after
            .map(Duration::from_secs)
            .unwrap_or(backoff + jitter)
            .min(Duration::from_secs(60));
        eprintln!("testrelay send: {msg}; retrying in {} ms", wait.as_millis());
        tokio::time::sleep(wait).await;
    }
}
