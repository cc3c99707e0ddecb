//! Which CI pipeline a report is a part of, from the CI's own variables (or flags), and
//! `testrelay complete`.
//!
//! A pipeline is filled in when the job says it is one of several: `--shard` or
//! `--pipeline` given, or a CI variable for parallel jobs with more than one (GitLab
//! `parallel:`, Buildkite `parallelism`, CircleCI `parallelism`). A single job stays a
//! pipeline of one, delivered as it arrives.

use std::time::Duration;

/// Where CI variables are read from: the process environment, or a test's map.
pub type Vars<'a> = &'a dyn Fn(&str) -> Option<String>;

/// The process environment, empty values as absent.
pub fn process_env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

fn number(env: Vars, name: &str) -> Option<u32> {
    env(name)?.trim().parse().ok()
}

/// The CI's own id for the pipeline run (all its jobs share it).
pub fn ci_pipeline_id(env: Vars) -> Option<String> {
    if let Some(run) = env("GITHUB_RUN_ID") {
        return Some(format!("gh-{run}"));
    }
    if let Some(p) = env("CI_PIPELINE_ID") {
        return Some(format!("gl-{p}"));
    }
    if let Some(b) = env("BUILDKITE_BUILD_ID") {
        return Some(format!("bk-{b}"));
    }
    if let Some(w) = env("CIRCLE_WORKFLOW_ID") {
        return Some(format!("cc-{w}"));
    }
    env("BUILD_TAG").map(|t| t.replace(|c: char| !c.is_ascii_alphanumeric() && c != '-', "-"))
}

/// This job's shard `(index, total)`, 1-based, when the CI runs it as one of several.
pub fn ci_shard(env: Vars) -> Option<(u32, u32)> {
    // GitLab: CI_NODE_INDEX is 1-based.
    if let (Some(i), Some(n)) = (number(env, "CI_NODE_INDEX"), number(env, "CI_NODE_TOTAL")) {
        return (n > 1).then_some((i, n));
    }
    // Buildkite and CircleCI count from 0.
    for (index, total) in [
        ("BUILDKITE_PARALLEL_JOB", "BUILDKITE_PARALLEL_JOB_COUNT"),
        ("CIRCLE_NODE_INDEX", "CIRCLE_NODE_TOTAL"),
    ] {
        if let (Some(i), Some(n)) = (number(env, index), number(env, total)) {
            return (n > 1).then_some((i + 1, n));
        }
    }
    None
}

/// The pipeline's run attempt: GitHub's re-run count, Buildkite's retries.
pub fn ci_attempt(env: Vars) -> Option<u32> {
    number(env, "GITHUB_RUN_ATTEMPT")
        .or_else(|| number(env, "BUILDKITE_RETRY_COUNT").map(|r| r + 1))
}

/// A report's place in its pipeline, as its query gives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Part {
    pub pipeline: String,
    pub shard: Option<String>,
    pub attempt: Option<u32>,
}

/// The report's place in a pipeline, from the flags and the CI; `None`: a report of its own.
pub fn resolve(
    env: Vars,
    pipeline: Option<&str>,
    shard: Option<&str>,
    attempt: Option<u32>,
    single: bool,
) -> Result<Option<Part>, String> {
    if single {
        return Ok(None);
    }
    let shard = match shard {
        Some(s) => Some(s.to_string()),
        None => ci_shard(env).map(|(i, n)| format!("{i}/{n}")),
    };
    let pipeline = match pipeline {
        Some(p) => Some(p.to_string()),
        None if shard.is_some() => Some(ci_pipeline_id(env).ok_or(
            "--shard needs --pipeline outside a CI this knows (GitHub Actions, GitLab, Buildkite, CircleCI, Jenkins)",
        )?),
        None => None,
    };
    Ok(pipeline.map(|pipeline| Part {
        pipeline,
        shard,
        attempt: attempt.or_else(|| ci_attempt(env)),
    }))
}

#[derive(Debug, Clone, clap::Args)]
pub struct CompleteArgs {
    /// The pipeline to complete; the CI's own run id when absent.
    #[arg(long)]
    pub pipeline: Option<String>,
    #[arg(long, env = "TESTRELAY_URL")]
    pub url: String,
    #[arg(long, env = "TESTRELAY_PROJECT")]
    pub project: String,
    #[arg(long = "api-key-env", default_value = "TESTRELAY_API_KEY")]
    pub api_key_env: String,
}

/// `testrelay complete`: the pipeline's parts are all in; deliver its result now.
pub async fn run(args: CompleteArgs) -> i32 {
    let Some(key) = crate::api::key("complete", &args.api_key_env) else {
        return 1;
    };
    let Some(pipeline) = args
        .pipeline
        .clone()
        .or_else(|| ci_pipeline_id(&process_env))
    else {
        eprintln!("testrelay complete: give --pipeline (no CI run id found)");
        return 1;
    };
    match complete(&args.url, &args.project, &pipeline, &key).await {
        Ok(body) => {
            println!(
                "pipeline {pipeline}: {} ({} parts)",
                body["state"].as_str().unwrap_or("?"),
                body["parts"].as_array().map_or(0, Vec::len)
            );
            0
        }
        Err(e) => {
            eprintln!("testrelay complete: {e}");
            1
        }
    }
}

/// `POST /v1/pipelines/{id}/complete?project=`; the pipeline's status.
pub async fn complete(
    url: &str,
    project: &str,
    pipeline: &str,
    key: &str,
) -> Result<serde_json::Value, String> {
    let base = url.trim_end_matches('/').trim_end_matches("/v1/reports");
    let mut u =
        reqwest::Url::parse(&format!("{base}/v1/pipelines/")).map_err(|e| format!("--url: {e}"))?;
    u.path_segments_mut()
        .map_err(|_| "--url: not a base URL".to_string())?
        .pop_if_empty()
        .push(pipeline)
        .push("complete");
    u.query_pairs_mut().append_pair("project", project);
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .map_err(|e| e.to_string())?;
    crate::api::call(client.post(u), key).await
}
