//! `testrelay deadletters list|redrive`: the operator's view of failed deliveries, through
//! the admin HTTP endpoints, so it works the same against `testrelay serve` and AWS.

#[derive(Debug, Clone, clap::Args)]
pub struct DeadLetterArgs {
    #[command(subcommand)]
    pub action: Action,
    /// testrelay's base URL.
    #[arg(
        long,
        env = "TESTRELAY_URL",
        global = true,
        default_value = "http://127.0.0.1:8080"
    )]
    pub url: String,
    /// Connector kind.
    #[arg(long, default_value = "webhook", global = true)]
    pub kind: String,
    /// At most this many (1-100).
    #[arg(long, default_value_t = 50, global = true)]
    pub max: u32,
}

#[derive(Debug, Clone, clap::Subcommand)]
pub enum Action {
    /// Show dead letters with their reasons (hides them for 30 s on AWS).
    List,
    /// Put dead letters back on their delivery queue; already-delivered ones are no-ops.
    Redrive,
}

/// Runs the command with an admin key from `TESTRELAY_API_KEY`; the exit code.
pub async fn run(args: DeadLetterArgs) -> i32 {
    let Some(key) = crate::api::key("deadletters", "TESTRELAY_API_KEY") else {
        return 1;
    };
    match call(&args, &key).await {
        Ok(body) => {
            match args.action {
                Action::Redrive => println!("redriven: {}", body["redriven"]),
                Action::List => {
                    let letters = body["dead_letters"].as_array().cloned().unwrap_or_default();
                    println!("{} dead letter(s)", letters.len());
                    for l in letters {
                        println!(
                            "{}  run {}  connector {}  attempts {}  {}",
                            l["at"].as_str().unwrap_or(""),
                            l["message"]["run_id"].as_str().unwrap_or("?"),
                            l["message"]["connector"].as_str().unwrap_or("?"),
                            l["attempts"],
                            l["reason"].as_str().unwrap_or("")
                        );
                    }
                }
            }
            0
        }
        Err(e) => {
            eprintln!("testrelay deadletters: {e}");
            1
        }
    }
}

pub async fn call(args: &DeadLetterArgs, key: &str) -> Result<serde_json::Value, String> {
    let base = args.url.trim_end_matches('/');
    let client = reqwest::Client::new();
    let path = match args.action {
        Action::List => "/v1/deadletters",
        Action::Redrive => "/v1/deadletters/redrive",
    };
    let mut url =
        reqwest::Url::parse(&format!("{base}{path}")).map_err(|e| format!("--url: {e}"))?;
    url.query_pairs_mut()
        .append_pair("kind", &args.kind)
        .append_pair("max", &args.max.to_string());
    let req = match args.action {
        Action::List => client.get(url),
        Action::Redrive => client.post(url),
    };
    crate::api::call(req, key).await
}
