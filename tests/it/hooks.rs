//! `POST /v1/hooks/{source}` end to end on the local process: each signature scheme as its
//! provider signs, forgeries and replays refused with one 401 that stores and enqueues
//! nothing, duplicates answered with the first run (locally and across two AWS instances),
//! and the three payload formats.

use base64::Engine;
use hmac::{Hmac, KeyInit, Mac};
use serde_json::{Value, json};
use std::sync::Arc;
use testrelay_domain::config::{HookConfig, HookFormat, SecretRef};
use testrelay_domain::delivery::retry::RetryPolicy;
use testrelay_domain::delivery::signing::WebhookSecret;
use testrelay_domain::ids::ProjectName;
use testrelay_domain::ingest::signatures::{Algorithm, Encoding, HmacScheme, SchemeName};
use testrelay_domain::ports::{Clock, SystemClock};
use testrelay_tests::local::{TestApp, spawn_app_secrets};

const GH_SECRET: &str = "gh-secret-current";
const GH_OLD: &str = "gh-secret-previous";
const SLACK_SECRET: &str = "8f742231b10e8888abcd99yyyzzz85a5";
const STRIPE_SECRET: &str = "whsec_stripe_test_secret";
const GENERIC_SECRET: &str = "generic-secret";

fn hook(scheme: SchemeName, format: HookFormat, secrets: &[&str]) -> HookConfig {
    HookConfig {
        scheme,
        secrets: secrets
            .iter()
            .map(|s| SecretRef::Secret(s.to_string()))
            .collect(),
        format,
        project: ProjectName::parse("web").unwrap(),
        tolerance_s: 300,
        hmac: None,
        query_metadata: false,
    }
}

/// The local app with one source per scheme, their secrets in its data directory; the
/// Standard Webhooks secret (`whsec_...`) too.
async fn app() -> (TestApp, String) {
    let (_, whsec) = WebhookSecret::generate();
    let secrets = [
        ("gh", GH_SECRET),
        ("gh-old", GH_OLD),
        ("std", whsec.as_str()),
        ("slack", SLACK_SECRET),
        ("stripe", STRIPE_SECRET),
        ("generic", GENERIC_SECRET),
    ];
    let t = spawn_app_secrets(
        200,
        Arc::new(SystemClock),
        RetryPolicy::default(),
        |c| {
            c.hooks.insert(
                "github".into(),
                hook(SchemeName::Github, HookFormat::Github, &["gh", "gh-old"]),
            );
            let mut ci = hook(SchemeName::StandardWebhooks, HookFormat::Report, &["std"]);
            ci.query_metadata = true;
            c.hooks.insert("ci".into(), ci);
            c.hooks.insert(
                "slack".into(),
                hook(SchemeName::Slack, HookFormat::Envelope, &["slack"]),
            );
            c.hooks.insert(
                "stripe".into(),
                hook(SchemeName::Stripe, HookFormat::Report, &["stripe"]),
            );
            let mut generic = hook(SchemeName::Hmac, HookFormat::Report, &["generic"]);
            generic.hmac = Some(HmacScheme {
                header: "X-Signature".into(),
                algorithm: Algorithm::Sha512,
                encoding: Encoding::Base64,
                prefix: Some("sha512=".into()),
                timestamp_header: None,
                id_header: Some("X-Delivery".into()),
            });
            c.hooks.insert("generic".into(), generic);
            c.validate().unwrap();
        },
        &secrets,
    )
    .await;
    (t, whsec)
}

fn hmac256_hex(key: &str, parts: &[&[u8]]) -> String {
    let mut m = Hmac::<sha2::Sha256>::new_from_slice(key.as_bytes()).unwrap();
    parts.iter().for_each(|p| m.update(p));
    hex::encode(m.finalize().into_bytes())
}

async fn post(
    t: &TestApp,
    source: &str,
    query: &str,
    headers: &[(&str, String)],
    body: &[u8],
) -> reqwest::Response {
    let mut req = t
        .client
        .post(format!("{}/v1/hooks/{source}?{query}", t.base))
        .body(body.to_vec());
    for (k, v) in headers {
        req = req.header(*k, v);
    }
    req.send().await.unwrap()
}

fn workflow_run(conclusion: &str) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "action": "completed",
        "workflow_run": {
            "id": 30433642, "name": "CI", "head_branch": "main",
            "head_sha": "acb5820ced9479c074f688cc328bf03f341a511d",
            "conclusion": conclusion, "run_attempt": 1,
            "html_url": "https://github.com/octo-org/octo-repo/actions/runs/30433642",
            "run_started_at": "2026-11-22T10:00:00Z", "updated_at": "2026-11-22T10:03:05Z"
        },
        "repository": {"full_name": "octo-org/octo-repo"}
    }))
    .unwrap()
}

fn github_headers(secret: &str, body: &[u8], delivery: &str) -> Vec<(&'static str, String)> {
    vec![
        (
            "x-hub-signature-256",
            format!("sha256={}", hmac256_hex(secret, &[body])),
        ),
        ("x-github-delivery", delivery.to_string()),
        ("x-github-event", "workflow_run".to_string()),
        ("content-type", "application/json".to_string()),
    ]
}

async fn problem(r: reqwest::Response, status: u16) -> Value {
    assert_eq!(r.status(), status);
    assert_eq!(r.headers()["content-type"], "application/problem+json");
    r.json().await.unwrap()
}

#[tokio::test]
async fn github_workflow_runs_become_runs_once() {
    let (t, _) = app().await;
    let body = workflow_run("failure");
    let r = post(
        &t,
        "github",
        "",
        &github_headers(GH_SECRET, &body, "d-1"),
        &body,
    )
    .await;
    assert_eq!(r.status(), 202);
    let first: Value = r.json().await.unwrap();
    assert_eq!(first["summary"]["failed"], 1);
    let run: Value = t
        .get_run(first["run_id"].as_str().unwrap())
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(run["meta"]["branch"], "main");
    assert_eq!(
        run["meta"]["commit"],
        "acb5820ced9479c074f688cc328bf03f341a511d"
    );
    assert_eq!(
        run["meta"]["build_url"],
        "https://github.com/octo-org/octo-repo/actions/runs/30433642"
    );
    assert_eq!(run["format"], "github");
    // The same delivery again: the first answer, nothing relayed twice.
    let r = post(
        &t,
        "github",
        "",
        &github_headers(GH_SECRET, &body, "d-1"),
        &body,
    )
    .await;
    assert_eq!(r.status(), 200);
    let again: Value = r.json().await.unwrap();
    assert_eq!(again["run_id"], first["run_id"]);
    // The same signed body under a new (unsigned) delivery id is a replay: refused.
    let r = post(
        &t,
        "github",
        "",
        &github_headers(GH_SECRET, &body, "d-1-again"),
        &body,
    )
    .await;
    problem(r, 401).await;
    // A rotated-out secret still verifies; another delivery is another run.
    let second = workflow_run("success");
    let r = post(
        &t,
        "github",
        "",
        &github_headers(GH_OLD, &second, "d-2"),
        &second,
    )
    .await;
    assert_eq!(r.status(), 202);
    t.dispatch_all_pending().await;
    let events = t.receiver.verified_events().await;
    assert_eq!(events.len(), 2, "d-1 once, d-2 once");
    let mut outcomes: Vec<_> = events
        .iter()
        .map(|e| e.1["data"]["outcome"].as_str().unwrap().to_string())
        .collect();
    outcomes.sort();
    assert_eq!(outcomes, ["failed", "passed"]);
    // Not a completed run: verified, ignored, nothing stored.
    let blobs = t.stored_blobs();
    let ping = br#"{"zen":"Keep it logically awesome.","hook_id":1}"#;
    let mut h = github_headers(GH_SECRET, ping, "d-3");
    h[2].1 = "ping".into();
    let r = post(&t, "github", "", &h, ping).await;
    assert_eq!(r.status(), 200);
    assert!(
        r.json::<Value>().await.unwrap()["ignored"]
            .as_str()
            .unwrap()
            .contains("ping")
    );
    assert_eq!(t.stored_blobs(), blobs);
}

#[tokio::test]
async fn forgeries_are_refused_alike_and_change_nothing() {
    let (t, _) = app().await;
    let body = workflow_run("success");
    let good = github_headers(GH_SECRET, &body, "d-9");
    let mut tampered = body.clone();
    tampered[20] ^= 1;
    let mut missing = good.clone();
    missing.remove(0);
    let mut malformed = good.clone();
    malformed[0].1 = "sha256=not-hex".into();
    let mut wrong = good.clone();
    wrong[0].1 = format!("sha256={}", hmac256_hex("not the secret", &[&body]));
    let mut details = Vec::new();
    for (headers, b) in [
        (&good, &tampered),
        (&missing, &body),
        (&malformed, &body),
        (&wrong, &body),
    ] {
        let p = problem(post(&t, "github", "", headers, b).await, 401).await;
        assert_eq!(p["type"], "urn:testrelay:problem:invalid-signature");
        details.push(p["detail"].as_str().unwrap().to_string());
    }
    assert!(
        details.iter().all(|d| d == &details[0]),
        "the answer does not say what failed: {details:?}"
    );
    assert_eq!(t.stored_blobs(), 0);
    assert_eq!(t.app.store.queue_len().await.unwrap(), 0);
    // The delivery id of a refused request can still be used by the genuine one.
    assert_eq!(post(&t, "github", "", &good, &body).await.status(), 202);
    // A captured delivery replayed under a new delivery id is refused the same way, and
    // relays nothing.
    let blobs = t.stored_blobs();
    let replay = github_headers(GH_SECRET, &body, "d-10");
    problem(post(&t, "github", "", &replay, &body).await, 401).await;
    assert_eq!(t.stored_blobs(), blobs);
    // Query-string metadata is not signed: refused unless the source opts in.
    let p = problem(
        post(
            &t,
            "github",
            "branch=evil",
            &github_headers(GH_SECRET, &body, "d-9"),
            &body,
        )
        .await,
        400,
    )
    .await;
    assert!(p["detail"].as_str().unwrap().contains("query_metadata"));
    // Unknown source, oversized body.
    problem(post(&t, "nope", "", &good, &body).await, 404).await;
    let huge = vec![b'x'; t.app.config.server.max_body_bytes + 1];
    problem(post(&t, "github", "", &good, &huge).await, 413).await;
}

#[tokio::test]
async fn standard_webhooks_replay_window_and_reports() {
    let (t, whsec) = app().await;
    let secret = WebhookSecret::parse(&whsec).unwrap();
    let body = br#"<testsuite name="s"><testcase name="a"/><testcase name="b"><failure message="boom"/></testcase></testsuite>"#;
    let now = SystemClock.now_ms() / 1000;
    let send = |id: &str, ts: u64| {
        vec![
            ("webhook-id", id.to_string()),
            ("webhook-timestamp", ts.to_string()),
            ("webhook-signature", secret.sign(id, ts, body)),
        ]
    };
    for (id, ts) in [("msg-old", now - 301), ("msg-future", now + 301)] {
        problem(
            post(&t, "ci", "branch=main", &send(id, ts), body).await,
            401,
        )
        .await;
    }
    let r = post(
        &t,
        "ci",
        "branch=main&commit=abc",
        &send("msg-1", now - 200),
        body,
    )
    .await;
    assert_eq!(r.status(), 202);
    let first: Value = r.json().await.unwrap();
    assert_eq!(first["summary"]["failed"], 1);
    let run: Value = t
        .get_run(first["run_id"].as_str().unwrap())
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        (
            run["meta"]["project"].as_str(),
            run["meta"]["branch"].as_str()
        ),
        (Some("web"), Some("main"))
    );
    let r = post(
        &t,
        "ci",
        "branch=main&commit=abc",
        &send("msg-1", now),
        body,
    )
    .await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await.unwrap()["run_id"], first["run_id"]);
    // Even a source that reads its query never takes a URL from it.
    let p = problem(
        post(
            &t,
            "ci",
            "build_url=https%3A%2F%2Fevil.example.com",
            &send("msg-2", now),
            body,
        )
        .await,
        400,
    )
    .await;
    assert!(
        p["detail"]
            .as_str()
            .unwrap()
            .contains("never renders an unsigned URL")
    );
}

#[tokio::test]
async fn slack_envelope_stripe_and_generic_hmac() {
    let (t, _) = app().await;
    let now = (SystemClock.now_ms() / 1000).to_string();
    let envelope = serde_json::to_vec(&json!({
        "format": "junit",
        "report": "<testsuite name=\"e\"><testcase name=\"x\"/></testsuite>",
        "branch": "release", "commit": "def456", "build_url": "https://ci.example.com/9"
    }))
    .unwrap();
    let sig = hmac256_hex(SLACK_SECRET, &[b"v0:", now.as_bytes(), b":", &envelope]);
    let headers = vec![
        ("x-slack-request-timestamp", now.clone()),
        ("x-slack-signature", format!("v0={sig}")),
    ];
    let r = post(&t, "slack", "", &headers, &envelope).await;
    assert_eq!(r.status(), 202);
    let run_id = r.json::<Value>().await.unwrap()["run_id"]
        .as_str()
        .unwrap()
        .to_string();
    let run: Value = t.get_run(&run_id).await.json().await.unwrap();
    assert_eq!(
        (
            run["meta"]["branch"].as_str(),
            run["meta"]["build_url"].as_str()
        ),
        (Some("release"), Some("https://ci.example.com/9"))
    );
    // Replaying the exact request (same signature) is a duplicate; so is the same
    // signature spelt another way (upper-case hex, spaces).
    assert_eq!(
        post(&t, "slack", "", &headers, &envelope).await.status(),
        200
    );
    let respelt = vec![
        ("x-slack-request-timestamp", now.clone()),
        ("x-slack-signature", format!(" v0={} ", sig.to_uppercase())),
    ];
    assert_eq!(
        post(&t, "slack", "", &respelt, &envelope).await.status(),
        200
    );

    let report = br#"{"results":{"tool":{"name":"jest"},"summary":{"tests":1,"passed":1,"failed":0,"pending":0,"skipped":0,"other":0,"start":0,"stop":1},"tests":[{"name":"t","status":"passed","duration":1}]}}"#;
    let sig = hmac256_hex(STRIPE_SECRET, &[now.as_bytes(), b".", report]);
    let r = post(
        &t,
        "stripe",
        "",
        &[("stripe-signature", format!("t={now},v1={sig}"))],
        report,
    )
    .await;
    assert_eq!(r.status(), 202);
    // The same delivery with its v1 entries reordered, repeated or upper-cased: a duplicate.
    let forged = hmac256_hex("not the secret", &[now.as_bytes(), b".", report]);
    for header in [
        format!("t={now},v1={forged},v1={sig}"),
        format!("t={now},v1={sig},v1={sig}"),
        format!("t={now}, v1={}", sig.to_uppercase()),
    ] {
        let r = post(
            &t,
            "stripe",
            "",
            &[("stripe-signature", header.clone())],
            report,
        )
        .await;
        assert_eq!(r.status(), 200, "{header}");
    }

    let mut m = Hmac::<sha2::Sha512>::new_from_slice(GENERIC_SECRET.as_bytes()).unwrap();
    m.update(report);
    let sig = base64::engine::general_purpose::STANDARD.encode(m.finalize().into_bytes());
    let headers = vec![
        ("x-signature", format!("sha512={sig}")),
        ("x-delivery", "g-1".to_string()),
    ];
    let first: Value = post(&t, "generic", "", &headers, report)
        .await
        .json()
        .await
        .unwrap();
    let again = post(&t, "generic", "", &headers, report).await;
    assert_eq!(again.status(), 200);
    assert_eq!(
        again.json::<Value>().await.unwrap()["run_id"],
        first["run_id"]
    );
    // The same signed body under another (unsigned) id is a replay: refused.
    let renamed = vec![
        ("x-signature", headers[0].1.clone()),
        ("x-delivery", "g-2".to_string()),
    ];
    problem(post(&t, "generic", "", &renamed, report).await, 401).await;
    // A long or odd delivery id with a new body is a new delivery, and still dedupes.
    let other = String::from_utf8_lossy(report).replace(r#""name":"t""#, r#""name":"u""#);
    let mut m = Hmac::<sha2::Sha512>::new_from_slice(GENERIC_SECRET.as_bytes()).unwrap();
    m.update(other.as_bytes());
    let sig = base64::engine::general_purpose::STANDARD.encode(m.finalize().into_bytes());
    let odd = vec![
        ("x-signature", format!("sha512={sig}")),
        ("x-delivery", format!("{} /?#", "x".repeat(600))),
    ];
    assert_eq!(
        post(&t, "generic", "", &odd, other.as_bytes())
            .await
            .status(),
        202
    );
    assert_eq!(
        post(&t, "generic", "", &odd, other.as_bytes())
            .await
            .status(),
        200
    );
}

struct Map(Vec<(&'static str, String)>);

impl testrelay_domain::ingest::signatures::Headers for Map {
    fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Two ingest instances (two Lambda cold starts) on one DynamoDB: the second sees the
/// first's delivery and answers its run.
async fn duplicates_are_caught_across_instances_on_aws(engine: testrelay_tests::aws::Engine) {
    use testrelay_domain::ingest::IngestService;
    use testrelay_domain::ingest::hooks::{HookOutcome, HookRequest};
    use testrelay_domain::ingest::signatures::HookSecrets;
    let stack = testrelay_tests::aws::Stack::create_on(engine).await;
    let name = testrelay_tests::unique("testrelay/gh");
    testrelay_tests::aws::put_secret(&stack.sdk, &name, GH_SECRET).await;
    let toml = format!(
        "[projects.web]\n\n[hooks.github]\nscheme = \"github\"\nsecrets = [{{ secret = \"{name}\" }}]\nformat = \"github\"\nproject = \"web\"\n"
    );
    let config = testrelay_domain::config::Config::from_toml(&toml, "test").unwrap();
    let body = bytes::Bytes::from(workflow_run("failure"));
    let headers = Map(github_headers(GH_SECRET, &body, "d-aws"));
    let mut runs = Vec::new();
    for _ in 0..2 {
        let app =
            testrelay_lambda::bootstrap::AwsApp::new(config.clone(), &stack.sdk, stack.resources());
        let hooks = HookSecrets::resolve(&app.config, &app.secrets)
            .await
            .unwrap();
        let ingest = IngestService::new(app.config.clone(), app.ports()).with_hooks(hooks);
        let out = ingest
            .submit_hook(HookRequest {
                source: "github",
                headers: &headers,
                query: None,
                body: body.clone(),
                reservation: Default::default(),
            })
            .await
            .unwrap();
        let HookOutcome::Accepted(r) = out else {
            panic!("accepted")
        };
        runs.push((r.accepted.run_id, r.replayed));
    }
    assert_eq!(runs[0].0, runs[1].0);
    assert_eq!((runs[0].1, runs[1].1), (false, true));
}

crate::on_engines!(duplicates_are_caught_across_instances_on_aws);
