//! Email against a real SMTP server (`tests/smtp_server.py`: STARTTLS with AUTH, implicit
//! TLS, a port with no TLS) and SES on moto: the message as received (text and HTML
//! parts, the derived Message-ID and References), exactly once across retries and
//! crashes, the SMTP answers real servers give (Postfix, Gmail, SES's SMTP interface), a
//! server that offers no STARTTLS or an untrusted certificate getting nothing, 10,000
//! failures within the size budget, and the rendered fixture.

use std::sync::Arc;
use std::time::Duration;
use testrelay_connectors::email::render;
use testrelay_domain::delivery::steps::CrashPoint;
use testrelay_domain::ports::{Connector, ErrorClass};
use testrelay_domain::report::model::TestRun;
use testrelay_tests::mail::{SmtpServer, parse, recipient};
use testrelay_tests::vendor::*;

const PASSWORD: &str = "smtp-test-password";

/// An email connector to the test server's `port` with `tls`, to `to`; `smtp` is added to
/// its `smtp` table, `top` to the connector's.
async fn smtp(h: &Harness, to: &str, tls: &str, port: u16, smtp: &str) -> Arc<dyn Connector> {
    email(h, to, tls, port, smtp, "", PASSWORD).await
}

async fn email(
    h: &Harness,
    to: &str,
    tls: &str,
    port: u16,
    smtp: &str,
    top: &str,
    password: &str,
) -> Arc<dyn Connector> {
    let s = SmtpServer::get();
    h.secret("smtp-password", password);
    h.connector(
        "c",
        &format!(
            "kind = \"email\"\nfrom = \"CI results <ci@example.test>\"\nto = [\"{to}\"]\n{top}\n\
             smtp = {{ host = \"127.0.0.1\", port = {port}, tls = \"{tls}\", ca_file = {ca:?} {smtp} }}",
            ca = s.ca_file().display().to_string(),
        ),
    )
    .await
}

/// A fresh harness and a connector to a fresh recipient `<prefix>...` over STARTTLS with
/// AUTH (the submission port).
async fn submission(prefix: &str) -> (String, Harness, Arc<dyn Connector>) {
    let to = recipient(prefix);
    let h = Harness::new();
    let c = smtp(&h, &to, "starttls", SmtpServer::get().starttls, AUTH).await;
    (to, h, c)
}

const AUTH: &str = ", username = \"testrelay\", password = { secret = \"smtp-password\" }";

fn header<'a>(m: &'a mail_parser::Message<'a>, name: &'static str) -> &'a str {
    m.header_raw(name)
        .unwrap_or_else(|| panic!("no {name} header"))
        .trim()
}

#[tokio::test]
async fn starttls_with_auth_delivers_one_message_with_text_and_html_parts() {
    let server = SmtpServer::get();
    let (to, h, c) = submission("team").await;
    let run = sample_run_with_changes();
    let d = deliver(&h, c.as_ref(), &run, 0).await.unwrap();
    let id = format!("<{}.", run.run_id);
    assert!(
        d.external_ref
            .as_deref()
            .unwrap()
            .starts_with(&format!("email:{id}")),
        "{d:?}"
    );
    assert!(
        d.external_ref.as_deref().unwrap().contains("queued as"),
        "{d:?}"
    );
    assert!(deliver(&h, c.as_ref(), &run, 0).await.unwrap().resumed);
    assert!(
        deliver(&h, c.as_ref(), &run, 1).await.unwrap().resumed,
        "a redrive of a sent message sends nothing"
    );

    let got = server.received(&to);
    assert_eq!(got.len(), 1, "one message");
    let m = parse(&got[0]);
    assert_eq!(header(&m, "X-Envelope-TLS"), "yes");
    assert_eq!(header(&m, "X-Envelope-Auth"), "yes");
    assert_eq!(header(&m, "X-Envelope-From"), "ci@example.test");
    let message_id = header(&m, "Message-ID");
    assert!(message_id.starts_with(&id) && message_id.ends_with("@example.test>"));
    assert_eq!(header(&m, "References"), message_id);
    assert_eq!(header(&m, "X-Testrelay-Run"), run.run_id.as_str());
    assert_eq!(header(&m, "Auto-Submitted"), "auto-generated");
    let expected = render::run_message(&run, &ctx("c", 0).status_url, 10);
    assert_eq!(m.subject(), Some(expected.subject.as_str()));
    assert_eq!(m.body_text(0).unwrap().replace("\r\n", "\n"), expected.text);
    assert_eq!(m.body_html(0).unwrap().replace("\r\n", "\n"), expected.html);
    assert!(expected.text.contains("new failure"), "{}", expected.text);
}

#[tokio::test]
async fn implicit_tls_delivers_and_the_probe_sends_nothing() {
    let server = SmtpServer::get();
    let to = recipient("tls");
    let h = Harness::new();
    let c = smtp(&h, &to, "implicit", server.tls, "").await;
    let p = c.probe().await.unwrap();
    assert!(p.check.contains("TLS"), "{p:?}");
    assert!(server.received(&to).is_empty(), "the probe sends no mail");
    deliver(&h, c.as_ref(), &sample_run(), 0).await.unwrap();
    let got = server.received(&to);
    assert_eq!(got.len(), 1);
    assert_eq!(header(&parse(&got[0]), "X-Envelope-TLS"), "yes");
}

#[tokio::test]
async fn a_server_without_starttls_or_with_an_untrusted_certificate_gets_nothing() {
    let server = SmtpServer::get();
    let to = recipient("downgrade");
    let h = Harness::new();
    // The plain port offers no STARTTLS: a connector that requires it sends nothing.
    let c = smtp(&h, &to, "starttls", server.plain, AUTH).await;
    let e = failed(deliver(&h, c.as_ref(), &sample_run(), 0).await);
    assert_eq!(e.class, ErrorClass::Permanent, "{e:?}");
    // A certificate from a CA the connector does not trust.
    let h = Harness::new();
    h.secret("smtp-password", PASSWORD);
    let c = h
        .connector(
            "c",
            &format!(
                "kind = \"email\"\nfrom = \"ci@example.test\"\nto = [\"{to}\"]\n\
                 smtp = {{ host = \"127.0.0.1\", port = {}, tls = \"implicit\" }}",
                server.tls
            ),
        )
        .await;
    let e = failed(deliver(&h, c.as_ref(), &sample_run(), 0).await);
    assert_eq!(e.class, ErrorClass::Transient, "{e:?}");
    assert!(c.probe().await.is_err());
    assert!(server.received(&to).is_empty());
}

#[tokio::test]
async fn a_wrong_password_is_permanent_and_never_shown() {
    let server = SmtpServer::get();
    let to = recipient("auth");
    let h = Harness::new();
    let c = email(
        &h,
        &to,
        "starttls",
        server.starttls,
        AUTH,
        "",
        "not-the-password",
    )
    .await;
    let e = failed(deliver(&h, c.as_ref(), &sample_run(), 0).await);
    assert_eq!(e.class, ErrorClass::Permanent, "{e:?}");
    assert!(e.detail.contains("535"), "{e:?}");
    assert!(
        !e.detail.contains("not-the-password") && !format!("{e:?}").contains("not-the-password")
    );
    assert!(server.received(&to).is_empty());
}

/// What real servers answer, as the test server gives it, and how each is read.
#[tokio::test]
async fn real_smtp_answers_are_read_as_the_servers_mean_them() {
    let server = SmtpServer::get();
    for (prefix, class, pause, code) in [
        ("unknown-", ErrorClass::Permanent, None, "550"),
        ("greylist-", ErrorClass::Transient, None, "450"),
        ("ratelimit-", ErrorClass::Throttled, Some(60), "450"),
        ("throttle-", ErrorClass::Throttled, Some(60), "454"),
        ("quota-", ErrorClass::Throttled, Some(3600), "454"),
        ("unverified-", ErrorClass::Permanent, None, "554"),
    ] {
        let (to, h, c) = submission(prefix).await;
        let e = failed(deliver(&h, c.as_ref(), &sample_run(), 0).await);
        assert_eq!(e.class, class, "{prefix}: {e:?}");
        assert_eq!(
            e.retry_after,
            pause.map(Duration::from_secs),
            "{prefix}: {e:?}"
        );
        assert!(e.detail.contains(code), "{prefix}: {e:?}");
        assert!(server.received(&to).is_empty(), "{prefix}");
    }
}

#[tokio::test]
async fn loopback_is_refused_unless_the_network_policy_allows_it() {
    let server = SmtpServer::get();
    let to = recipient("ssrf");
    let mut h = Harness::new();
    let closed = testrelay_domain::config::Config::from_toml("", "test").unwrap();
    h.env = testrelay_connectors::Env::new(&closed, Arc::new(h.store.clone()), h.clock.clone());
    let c = smtp(&h, &to, "implicit", server.tls, "").await;
    let e = failed(deliver(&h, c.as_ref(), &sample_run(), 0).await);
    assert_eq!(e.class, ErrorClass::Permanent, "{e:?}");
    assert!(e.detail.contains("refused"), "{e:?}");
    assert!(server.received(&to).is_empty());
}

/// A crash before the send sends once; a crash after the server took the message and
/// before that is recorded sends it again, as the same message (same Message-ID).
#[tokio::test]
async fn crash_before_the_send_sends_once_and_after_it_resends_the_same_message() {
    let server = SmtpServer::get();
    for (point, sent) in [(CrashPoint::BeforeCall, 1), (CrashPoint::AfterCall, 2)] {
        let (to, h, c) = submission("crash").await;
        crash_then_retry(&h, c.as_ref(), &sample_run(), point, "send").await;
        let got = server.received(&to);
        assert_eq!(got.len(), sent, "{point:?}");
        let ids: std::collections::BTreeSet<String> = got
            .iter()
            .map(|raw| header(&parse(raw), "Message-ID").to_string())
            .collect();
        assert_eq!(ids.len(), 1, "{point:?}: one Message-ID: {ids:?}");
    }
}

/// 10,000 failures with long traces and hostile text: one message of bounded size that
/// lists the configured number, says how many more, and shows the text, never runs it.
#[tokio::test]
async fn ten_thousand_failures_make_one_bounded_message() {
    let mut run = run_with_failures(10_000);
    run.report.suites[0].cases[0].name = "<script>alert(1)</script>\r\nBcc: x@evil.test".into();
    for max in [10, 500] {
        let r = render::run_message(&run, "https://relay.example.com/v1/runs/x", max);
        assert!(!r.html.contains("<script>"));
        assert!(r.html.contains("&lt;script&gt;"));
        assert!(
            r.text.contains(&format!("+{} more failures", 10_000 - max)),
            "{max}"
        );
        assert!(
            r.text.len() + r.html.len() < 1024 * 1024,
            "{max}: {} bytes",
            r.text.len() + r.html.len()
        );
    }
    let got = sent_within_a_megabyte(&run, "big").await;
    let m = parse(&got[0]);
    assert!(
        m.header_raw("Bcc").is_none(),
        "report text never becomes a header"
    );
    assert!(m.body_text(0).unwrap().contains("+9500 more failures"));
    println!(
        "10,000 failures, 500 listed: {} bytes on the wire",
        got[0].len()
    );

    // The worst text for size: every failure's message twelve long lines of what HTML
    // escapes sixfold and of characters that need base64.
    for c in run.report.suites[0].cases.iter_mut() {
        c.message = Some(format!("{}{}\n", "\"".repeat(150), "é".repeat(75)).repeat(12));
    }
    let got = sent_within_a_megabyte(&run, "worst").await;
    let text = parse(&got[0]).body_text(0).unwrap().to_string();
    let more: u64 = regex::Regex::new(r"\+(\d+) more failures")
        .unwrap()
        .captures(&text)
        .expect("+N more failures")[1]
        .parse()
        .unwrap();
    let listed = 10_000 - more;
    assert!(listed > 0 && listed < 500, "{listed} listed");
    println!(
        "10,000 failures of hostile text: {} bytes on the wire ({listed} listed)",
        got[0].len()
    );
}

/// `run` sent with up to 500 failures listed, as the server took it: one message, under
/// 1 MB.
async fn sent_within_a_megabyte(run: &TestRun, prefix: &str) -> Vec<Vec<u8>> {
    let server = SmtpServer::get();
    let to = recipient(prefix);
    let h = Harness::new();
    let c = email(
        &h,
        &to,
        "starttls",
        server.starttls,
        AUTH,
        "max_failures = 500",
        PASSWORD,
    )
    .await;
    deliver(&h, c.as_ref(), run, 0).await.unwrap();
    let got = server.received(&to);
    assert_eq!(got.len(), 1);
    assert!(got[0].len() < 1024 * 1024, "{} bytes", got[0].len());
    got
}

#[tokio::test]
async fn rendered_message_fixture() {
    let r = render::run_message(&sample_run_with_changes(), &ctx("c", 0).status_url, 10);
    assert!(r.text.contains("NEW · "), "{}", r.text);
    fixture("email-message.json", &serde_json::to_value(&r).unwrap());
}

/// The connector set to `ses`, on SES v2 (moto): the same message, its Message-ID and
/// References as rendered (moto keeps them; SES itself replaces the Message-ID, which is
/// why References carries it too), once; an identity SES does not have fails the probe.
#[tokio::test]
async fn on_ses_the_connector_sends_the_same_message_once() {
    use testrelay_tests::aws::Engine;
    let sdk = testrelay_tests::aws::sdk_on(Engine::Moto).await;
    let domain = format!("{}.test", testrelay_tests::unique("ses"));
    testrelay_tests::mail::ses_identity(&sdk, Engine::Moto, &domain).await;
    let to = recipient("ses");
    let mut h = Harness::new();
    h.env = h
        .env
        .clone()
        .with_ses(testrelay_lambda::bootstrap::ses_transports(sdk.clone()));
    let table = |from: &str| {
        format!("kind = \"email\"\nfrom = \"CI <{from}>\"\nto = [\"{to}\"]\nses = {{}}")
    };
    let c = h.connector("c", &table(&format!("ci@{domain}"))).await;
    assert!(c.probe().await.unwrap().check.contains(&domain));
    let run = sample_run_with_changes();
    let d = deliver(&h, c.as_ref(), &run, 0).await.unwrap();
    assert!(deliver(&h, c.as_ref(), &run, 0).await.unwrap().resumed);
    let sent: Vec<_> = testrelay_tests::mail::ses_sent("us-east-1")
        .await
        .into_iter()
        .filter(|m| m.destinations.contains(&to))
        .collect();
    assert_eq!(sent.len(), 1);
    assert!(d.external_ref.unwrap().contains(&sent[0].id));
    let m = parse(sent[0].raw.as_bytes());
    let id = header(&m, "Message-ID");
    assert!(id.starts_with(&format!("<{}.", run.run_id)) && id.ends_with(&format!("@{domain}>")));
    assert_eq!(header(&m, "References"), id);
    let expected = render::run_message(&run, &ctx("c", 0).status_url, 10);
    assert_eq!(m.body_text(0).unwrap().replace("\r\n", "\n"), expected.text);

    let stranger = h.connector("c", &table("ci@unknown-sender.test")).await;
    let e = stranger.probe().await.unwrap_err();
    assert_eq!(e.class, ErrorClass::Permanent, "{e:?}");
}

/// `ses` needs the AWS build: the local binary's connectors refuse it by name.
#[tokio::test]
async fn ses_without_aws_is_a_named_configuration_error() {
    let h = Harness::new();
    let config = connector_config(
        "mail",
        "kind = \"email\"\nfrom = \"ci@example.test\"\nto = [\"a@example.test\"]\nses = {}",
    );
    let e = testrelay_connectors::build(&config, &h.secrets, &h.env)
        .await
        .err()
        .unwrap();
    assert!(e.starts_with("connectors.mail.ses: "), "{e}");
}

/// Health alerts and fallback notices go out as a short message of their own.
#[tokio::test]
async fn an_alert_is_a_short_message() {
    let server = SmtpServer::get();
    let (to, _h, c) = submission("alert").await;
    let alert = testrelay_domain::health::HealthAlert {
        status: testrelay_domain::health::Overall::Critical,
        previous: testrelay_domain::health::Overall::Healthy,
        at: "2026-11-28T10:00:00Z".into(),
        problems: vec!["jira (critical): timed out after 10000 ms".into()],
        headline: Some("chat delivery (slack) for web · main failed".into()),
    };
    c.alert(&alert).await.unwrap();
    let got = server.received(&to);
    assert_eq!(got.len(), 1);
    let m = parse(&got[0]);
    assert_eq!(
        m.subject(),
        Some("chat delivery (slack) for web · main failed")
    );
    assert!(
        m.body_text(0)
            .unwrap()
            .contains("jira (critical): timed out")
    );
}
