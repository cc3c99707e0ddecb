//! `testrelay`: run the relay locally (`serve`), post a report from CI (`send`), make an API
//! key (`keygen`). Wiring only; the logic lives in the library crates.

use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::sync::Arc;
use testrelay_cli::app::App;
use testrelay_cli::{deadletters, dev, pipeline, quarantine, send};
use testrelay_domain::config::Config;
use testrelay_domain::delivery::retry::RetryPolicy;
use testrelay_domain::ports::SystemClock;

#[derive(Parser)]
#[command(
    name = "testrelay",
    version,
    about = "Relay CI test results to the tools that need them"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the API, the delivery workers and the embedded store in one process.
    Serve {
        /// A config file; without one (and no ./testrelay.toml) the dev default runs.
        #[arg(long, env = "TESTRELAY_CONFIG")]
        config: Option<PathBuf>,
        /// Listen address for the dev default (a config file sets server.listen).
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: String,
        /// Data directory for the dev default (a config file sets server.data_dir).
        #[arg(long, default_value = "data")]
        data_dir: PathBuf,
    },
    /// Post a report to testrelay (the CI client).
    Send(send::SendArgs),
    /// Complete a CI pipeline now: its parts are all in (see `send --pipeline`).
    Complete(pipeline::CompleteArgs),
    /// List, add or remove quarantined tests (their failures never fail a verdict).
    Quarantine(quarantine::QuarantineArgs),
    /// List or redrive dead letters (needs an admin key in TESTRELAY_API_KEY).
    Deadletters(deadletters::DeadLetterArgs),
    /// Print a new API key and the line that configures it.
    Keygen {
        #[arg(long, default_value = "ci")]
        id: String,
    },
}

#[tokio::main]
async fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,hyper=warn,reqwest=warn".into()),
        )
        .with_target(false)
        .init();
    let code = match Cli::parse().command {
        Command::Serve {
            config,
            listen,
            data_dir,
        } => serve(config, listen, data_dir).await,
        Command::Send(args) => send::run(args).await,
        Command::Complete(args) => pipeline::run(args).await,
        Command::Deadletters(args) => deadletters::run(args).await,
        Command::Quarantine(args) => quarantine::run(args).await,
        Command::Keygen { id } => {
            let key = format!("trk_{}", hex::encode(rand::random::<[u8; 24]>()));
            println!(
                "API key (give it to CI as TESTRELAY_API_KEY; it is not stored anywhere):\n  {key}\n"
            );
            println!(
                "config:\n[[api_keys]]\nid = \"{id}\"\nsha256 = \"{}\"",
                testrelay_domain::config::hash_api_key(&key)
            );
            0
        }
    };
    std::process::exit(code);
}

async fn serve(config_path: Option<PathBuf>, listen: String, data_dir: PathBuf) -> i32 {
    let config_path = config_path.or_else(|| {
        let p = PathBuf::from("testrelay.toml");
        p.exists().then_some(p)
    });
    let file_config = match &config_path {
        Some(path) => {
            let text = match std::fs::read_to_string(path) {
                Ok(t) => t,
                Err(e) => {
                    eprintln!("testrelay: {}: {e}", path.display());
                    return 2;
                }
            };
            match Config::from_toml(&text, &path.display().to_string()) {
                Ok(c) => Some(c),
                Err(e) => {
                    eprintln!("testrelay: {e}");
                    return 2;
                }
            }
        }
        None => None,
    };
    let addr = file_config
        .as_ref()
        .map_or(listen, |c| c.server.listen.clone());
    let listener = match tokio::net::TcpListener::bind(&addr).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("testrelay: cannot listen on {addr}: {e}");
            return 2;
        }
    };
    let local = listener.local_addr().expect("bound");
    let (config, dev_key) = match file_config {
        Some(c) => (c, None),
        None => match dev::dev_config(&data_dir, local) {
            Ok((c, key)) => (c, Some(key)),
            Err(e) => {
                eprintln!("testrelay: dev default: {e}");
                return 2;
            }
        },
    };
    let data_dir = config.server.data_dir.clone();
    let app = match App::build(config, Arc::new(SystemClock), RetryPolicy::default()).await {
        Ok(a) => a,
        Err(e) => {
            eprintln!("testrelay: {e}");
            return 2;
        }
    };
    let mut router = app.router.clone();
    if dev_key.is_some() {
        match dev::dev_sink_secret(&data_dir) {
            Ok(secret) => router = router.merge(dev::DevSink::new(secret).router()),
            Err(e) => {
                eprintln!("testrelay: dev sink: {e}");
                return 2;
            }
        }
    }
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut workers = app.spawn_workers(stop_rx.clone());
    workers.push(app.spawn_health(stop_rx));
    print_banner(local, &data_dir, config_path.as_deref(), dev_key.as_deref());
    let served = axum::serve(listener, router)
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await;
    let _ = stop_tx.send(true);
    for w in workers {
        let _ = w.await;
    }
    match served {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("testrelay: {e}");
            1
        }
    }
}

fn print_banner(
    addr: std::net::SocketAddr,
    data_dir: &std::path::Path,
    config: Option<&std::path::Path>,
    dev_key: Option<&str>,
) {
    println!("testrelay listening on http://{addr}");
    println!("  data directory: {}", data_dir.display());
    match (config, dev_key) {
        (Some(path), _) => {
            println!("  config: {}", path.display());
            println!(
                "\nSend reports with a key listed under [[api_keys]] (testrelay keygen makes one):"
            );
            println!(
                "  curl -sS -H \"Authorization: Bearer $TESTRELAY_API_KEY\" --data-binary @junit.xml \\\n    \"http://{addr}/v1/reports?project=<project>&branch=main&commit=abc123\""
            );
        }
        (None, Some(key)) => {
            println!(
                "  config: none, running the dev default (project \"web\" -> built-in webhook receiver /dev/sink)"
            );
            println!("\nSend a first report:");
            println!("  export TESTRELAY_API_KEY={key}");
            println!(
                "  curl -sS -H \"Authorization: Bearer $TESTRELAY_API_KEY\" --data-binary @junit.xml \\\n    \"http://{addr}/v1/reports?project=web&branch=main&commit=abc123\""
            );
            println!(
                "Then: curl -sS -H \"Authorization: Bearer $TESTRELAY_API_KEY\" http://{addr}/v1/runs/<run_id>"
            );
            println!("      curl -sS http://{addr}/dev/sink   (what the webhook receiver got)");
        }
        (None, None) => {}
    }
}
