//! Discord, Datadog and email end to end with a crash at every point of every step: runs
//! posted through ingest, delivered by the delivery service, on the embedded adapters
//! (email over SMTP to the test server) and on the AWS adapters (email over SES) on moto and
//! on DynamoDB Local + MiniStack. Time is a manual clock.
//!
//! Each run reaches each channel once; the one exception is the documented one: a crash
//! after the vendor took the message and before that was recorded sends it again (Discord
//! posts again, Datadog's event groups under the same aggregation key, the email is the same
//! message), so each channel has exactly one more effect than runs, on the run that crashed
//! there. Every delivery ends delivered.

use std::collections::HashMap;
use std::sync::Arc;
use testrelay_domain::config::Config;
use testrelay_domain::delivery::steps::CrashPoint;
use testrelay_domain::ids::RunId;
use testrelay_domain::ports::{DeliveryState, ManualClock, RunStore};
use testrelay_tests::aws::Engine;
use testrelay_tests::faults::EachPointOnce;
use testrelay_tests::mail::SmtpServer;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

const RUNS: usize = 5;
const T0: u64 = 1_800_000_000_000;
const MAX_ROUNDS: usize = 1_000;
const HOOK: &str = "/api/webhooks/1317000000000000002/flow-token";

/// The channels' vendors: Discord and Datadog on wiremock, and where email goes.
struct Channels {
    discord: MockServer,
    datadog: MockServer,
    to: String,
}

/// How email leaves: SMTP to the test server, or SES on `engine` as `sender`.
enum Mail {
    Smtp,
    Ses { engine: Engine, sender: String },
}

impl Channels {
    async fn start() -> Channels {
        let discord = MockServer::start().await;
        Mock::given(method("POST"))
            .and(path(HOOK))
            .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!({
                "id": "1317000000000000001", "type": 0, "channel_id": "1317000000000000000",
                "webhook_id": "1317000000000000002", "content": "", "embeds": []
            })))
            .mount(&discord)
            .await;
        let datadog = MockServer::start().await;
        Mock::given(method("POST"))
            .and(path("/api/v1/events"))
            .respond_with(ResponseTemplate::new(202).set_body_json(serde_json::json!({
                "status": "ok",
                "event": {"id": 7180000000000000001u64, "id_str": "7180000000000000001"}
            })))
            .mount(&datadog)
            .await;
        Mock::given(method("POST"))
            .and(path("/api/v2/series"))
            .respond_with(
                ResponseTemplate::new(202).set_body_json(serde_json::json!({"errors": []})),
            )
            .mount(&datadog)
            .await;
        Channels {
            discord,
            datadog,
            to: testrelay_tests::mail::recipient("flow"),
        }
    }

    /// Project `web` to Discord `rooms`, Datadog `dd` and email `mail`.
    fn config(&self, base: Config, mail: &Mail, secret: impl Fn(&str) -> String) -> Config {
        let fast = "rate_limit = { per_minute = 60000, burst = 1000 }";
        let transport = match mail {
            Mail::Smtp => {
                let s = SmtpServer::get();
                format!(
                    "from = \"CI <ci@example.test>\"\nsmtp = {{ host = \"127.0.0.1\", port = {}, ca_file = {:?}, username = \"testrelay\", password = {{ secret = \"{}\" }} }}",
                    s.starttls,
                    s.ca_file().display().to_string(),
                    secret("smtp")
                )
            }
            Mail::Ses { sender, .. } => format!("from = \"CI <{sender}>\"\nses = {{}}"),
        };
        let channels = Config::from_toml(
            &format!(
                r#"
[network]
allow = ["127.0.0.0/8"]

[connectors.rooms]
kind = "discord"
url = {{ secret = "{}" }}
allow_http = true
{fast}

[connectors.dd]
kind = "datadog"
api_key = {{ secret = "{}" }}
api_url = "{}"
allow_http = true
{fast}

[connectors.mail]
kind = "email"
to = ["{}"]
{fast}
{transport}
"#,
                secret("discord"),
                secret("datadog"),
                self.datadog.uri(),
                self.to,
            ),
            "channels.toml",
        )
        .unwrap();
        let mut config = base;
        config.connectors = channels.connectors;
        for p in config.projects.values_mut() {
            p.connectors = ["rooms", "dd", "mail"]
                .map(|c| testrelay_domain::ids::ConnectorName::parse(c).unwrap())
                .to_vec();
        }
        config
    }

    fn secrets(&self) -> [(&'static str, String); 3] {
        [
            ("discord", format!("{}{HOOK}", self.discord.uri())),
            ("datadog", "dd-api-key-0123456789abcdef".to_string()),
            ("smtp", "smtp-test-password".to_string()),
        ]
    }

    /// Every request `server` took on `path`, its body as text.
    async fn bodies(server: &MockServer, path: &str) -> Vec<String> {
        server
            .received_requests()
            .await
            .unwrap()
            .into_iter()
            .filter(|r| r.url.path() == path)
            .map(|r| String::from_utf8(r.body).unwrap())
            .collect()
    }

    /// Each run's effects per channel: one each, one more on the run whose send crashed
    /// after the call; every delivery delivered.
    async fn check(&self, runs: &[RunId], store: &dyn RunStore, mail: &Mail, c: &EachPointOnce) {
        let posts = Self::bodies(&self.discord, HOOK).await;
        let events = Self::bodies(&self.datadog, "/api/v1/events").await;
        let mails: Vec<String> = match mail {
            Mail::Smtp => SmtpServer::get()
                .received(&self.to)
                .iter()
                .map(|raw| {
                    testrelay_tests::mail::parse(raw)
                        .body_text(0)
                        .unwrap()
                        .to_string()
                })
                .collect(),
            Mail::Ses {
                engine: Engine::Moto,
                ..
            } => testrelay_tests::mail::ses_sent("us-east-1")
                .await
                .into_iter()
                .filter(|m| m.destinations.contains(&self.to))
                .map(|m| m.raw)
                .collect(),
            Mail::Ses { .. } => testrelay_tests::mail::ministack_sent()
                .await
                .into_iter()
                .filter(|m| m.to.contains(&self.to))
                .map(|m| m.body_text)
                .collect(),
        };
        for (connector, step, effects) in [
            ("rooms", "post", &posts),
            ("dd", "event", &events),
            ("mail", "send", &mails),
        ] {
            let mut per_run: HashMap<&RunId, usize> = HashMap::new();
            for e in effects.iter() {
                let run = runs
                    .iter()
                    .find(|r| e.contains(r.as_str()))
                    .unwrap_or_else(|| panic!("{connector}: an effect of no run: {e:.300}"));
                *per_run.entry(run).or_default() += 1;
            }
            let again = c.crashed(CrashPoint::AfterCall, step, connector) as usize;
            assert_eq!(
                per_run.len(),
                runs.len(),
                "{connector}: every run: {per_run:?}"
            );
            assert_eq!(
                effects.len(),
                runs.len() + again,
                "{connector}: once per run, plus the documented resend: {per_run:?}"
            );
            assert!(
                per_run.values().all(|&n| n <= 2),
                "{connector}: {per_run:?}"
            );
        }
        for run in runs {
            let record = store.get_run(run).await.unwrap().unwrap();
            for d in &record.deliveries {
                assert_eq!(d.state, DeliveryState::Delivered, "{run}: {d:?}");
            }
            assert_eq!(record.deliveries.len(), 3);
        }
    }
}

fn crashed_everywhere(c: &EachPointOnce) {
    for (connector, step) in [("rooms", "post"), ("dd", "event"), ("mail", "send")] {
        for point in [CrashPoint::BeforeCall, CrashPoint::AfterCall] {
            assert!(
                c.crashed(point, step, connector),
                "{connector}: no crash at {point:?} of {step}"
            );
        }
    }
    for point in [CrashPoint::AfterStep, CrashPoint::AfterRecord] {
        assert!(c.count(point) >= 3, "{point:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn discord_datadog_and_email_on_the_embedded_adapters_with_crashes() {
    let channels = Channels::start().await;
    let dir = tempfile::tempdir().unwrap();
    let base = testrelay_tests::local::config(dir.path(), "http://127.0.0.1:9");
    let config = channels.config(base, &Mail::Smtp, |s| s.to_string());
    let secrets =
        testrelay_embedded::FileSecretStore::new(testrelay_cli::app::secrets_dir(dir.path()));
    for (name, value) in channels.secrets() {
        secrets.put(name, &value).unwrap();
    }
    let clock = Arc::new(ManualClock::new(T0));
    let crashes = Arc::new(EachPointOnce::default());
    let faults = crashes.clone() as Arc<dyn testrelay_domain::delivery::steps::Faults>;
    let (app, ingest) =
        testrelay_tests::local::on_manual_clock(config, dir.path(), clock.clone(), Some(faults))
            .await;
    let runs = testrelay_tests::local::submit_runs(ingest, RUNS).await;
    testrelay_tests::local::settle(&app.store, &clock, MAX_ROUNDS, || {
        app.dispatch_all_pending()
    })
    .await;
    channels
        .check(&runs, &app.store, &Mail::Smtp, &crashes)
        .await;
    crashed_everywhere(&crashes);
}

async fn discord_datadog_and_email_on_aws_with_crashes(engine: Engine) {
    let channels = Channels::start().await;
    let stack = testrelay_tests::aws::Stack::create_on(engine).await;
    let secret = crate::pipeline_flow::aws_secrets(&stack, channels.secrets()).await;
    let domain = format!("{}.test", testrelay_tests::unique("flow"));
    testrelay_tests::mail::ses_identity(&stack.sdk, engine, &domain).await;
    let mail = Mail::Ses {
        engine,
        sender: format!("ci@{domain}"),
    };
    let dir = tempfile::tempdir().unwrap();
    let base = testrelay_tests::local::config(dir.path(), "http://127.0.0.1:9");
    let config = channels.config(base, &mail, secret);
    let clock = Arc::new(ManualClock::new(T0));
    let app = testrelay_lambda::bootstrap::AwsApp::new(config, &stack.sdk, stack.resources());
    let crashes = Arc::new(EachPointOnce::default());
    let on = crate::pipeline_flow::OnAws::start(app, clock, Some(crashes.clone()), 4).await;
    let runs = testrelay_tests::local::submit_runs(on.ingest.clone(), RUNS).await;
    on.settle(MAX_ROUNDS).await;
    channels.check(&runs, &on.app.runs, &mail, &crashes).await;
    crashed_everywhere(&crashes);
}

crate::on_engines!(discord_datadog_and_email_on_aws_with_crashes);
