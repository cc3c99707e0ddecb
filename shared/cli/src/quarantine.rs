//! `testrelay quarantine list|add|remove`: the project's quarantined tests (their failures
//! never fail a verdict), through `/v1/projects/{p}/quarantine`.

use std::time::Duration;

#[derive(Debug, Clone, clap::Args)]
pub struct QuarantineArgs {
    #[command(subcommand)]
    pub action: Action,
    #[arg(long, env = "TESTRELAY_URL", global = true)]
    pub url: Option<String>,
    #[arg(long, env = "TESTRELAY_PROJECT", global = true)]
    pub project: Option<String>,
    #[arg(
        long = "api-key-env",
        default_value = "TESTRELAY_API_KEY",
        global = true
    )]
    pub api_key_env: String,
}

#[derive(Debug, Clone, clap::Subcommand)]
pub enum Action {
    /// The quarantined tests, with why and who added them.
    List,
    /// Quarantine a test by its id (as a run's changes and the history API list it).
    Add {
        test_id: String,
        #[arg(long)]
        reason: String,
    },
    /// Take a test out of quarantine.
    Remove { test_id: String },
}

pub async fn run(args: QuarantineArgs) -> i32 {
    let Some(key) = crate::api::key("quarantine", &args.api_key_env) else {
        return 1;
    };
    match call(&args, &key).await {
        Ok(out) => {
            println!("{out}");
            0
        }
        Err(e) => {
            eprintln!("testrelay quarantine: {e}");
            1
        }
    }
}

/// Does `args.action`; what to print, or why it failed.
pub async fn call(args: &QuarantineArgs, key: &str) -> Result<String, String> {
    let url = args
        .url
        .as_deref()
        .ok_or("--url (or TESTRELAY_URL) is required")?;
    let project = args
        .project
        .as_deref()
        .ok_or("--project (or TESTRELAY_PROJECT) is required")?;
    let base = url.trim_end_matches('/').trim_end_matches("/v1/reports");
    let mut u =
        reqwest::Url::parse(&format!("{base}/v1/projects/")).map_err(|e| format!("--url: {e}"))?;
    {
        let mut segments = u
            .path_segments_mut()
            .map_err(|_| "--url: not a base URL".to_string())?;
        segments.pop_if_empty().push(project).push("quarantine");
        if let Action::Add { test_id, .. } | Action::Remove { test_id } = &args.action {
            segments.push(test_id);
        }
    }
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .map_err(|e| e.to_string())?;
    let request = match &args.action {
        Action::List => client.get(u),
        Action::Add { reason, .. } => client.put(u).json(&serde_json::json!({ "reason": reason })),
        Action::Remove { .. } => client.delete(u),
    };
    let body = crate::api::call(request, key).await?;
    Ok(match &args.action {
        Action::List => {
            let listed = body["quarantined"].as_array().cloned().unwrap_or_default();
            if listed.is_empty() {
                return Ok("no quarantined tests".into());
            }
            listed
                .iter()
                .map(|q| {
                    format!(
                        "{}  {}  ({}; added by {} at {})",
                        q["test_id"].as_str().unwrap_or("?"),
                        q["name"].as_str().unwrap_or("-"),
                        q["reason"].as_str().unwrap_or(""),
                        q["added_by"].as_str().unwrap_or("?"),
                        q["added_at"].as_str().unwrap_or("?"),
                    )
                })
                .collect::<Vec<_>>()
                .join("\n")
        }
        Action::Add { test_id, .. } => format!("quarantined {test_id}"),
        Action::Remove { test_id } => format!("{test_id} is out of quarantine"),
    })
}
