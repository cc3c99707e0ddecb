//! Configuration parsing and validation: every error names its key (and line).

use super::*;

const GOOD: &str = r#"
[server]
listen = "127.0.0.1:9999"

[[api_keys]]
id = "ci"
sha256 = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
projects = ["web"]

[projects.web]
connectors = ["team"]

[connectors.team]
kind = "webhook"
url = "https://hooks.example.com/in"
secret = { env = "TEAM_SECRET" }
"#;

#[test]
fn parses_a_full_config() {
    let c = Config::from_toml(GOOD, "testrelay.toml").unwrap();
    assert_eq!(c.server.listen, "127.0.0.1:9999");
    assert_eq!(c.server.max_body_bytes, DEFAULT_MAX_BODY_BYTES);
    let team = ConnectorName::parse("team").unwrap();
    let ConnectorConfig::Webhook(w) = &c.connectors[&team] else {
        panic!("a webhook")
    };
    assert_eq!(w.secret, SecretRef::Env("TEAM_SECRET".into()));
    assert_eq!(c.connector_kind(&team), Some(ConnectorKind::Webhook));
}

#[test]
fn syntax_and_unknown_keys_name_the_line() {
    let bad = GOOD.replace("listen =", "lisen =");
    let e = Config::from_toml(&bad, "testrelay.toml")
        .unwrap_err()
        .to_string();
    assert!(e.contains("testrelay.toml"), "{e}");
    assert!(e.contains("line 3"), "{e}");
    assert!(e.contains("lisen"), "{e}");
}

#[test]
fn semantic_errors_name_the_key() {
    let bad = GOOD
        .replace("connectors = [\"team\"]", "connectors = [\"teams\"]")
        .replace("https://hooks", "http://hooks")
        .replace("9f86d08", "zz86d08");
    let e = Config::from_toml(&bad, "t.toml").unwrap_err();
    let all = e.to_string();
    assert!(
        all.contains("projects.web.connectors[0]: unknown connector \"teams\""),
        "{all}"
    );
    assert!(
        all.contains("connectors.team.url: plain http is refused"),
        "{all}"
    );
    assert!(all.contains("api_keys[0].sha256 (id ci)"), "{all}");
    assert_eq!(e.0.len(), 3);
}

#[test]
fn secrets_are_references_only() {
    let bad = GOOD.replace(
        "secret = { env = \"TEAM_SECRET\" }",
        "secret = \"whsec_abc\"",
    );
    let e = Config::from_toml(&bad, "t.toml").unwrap_err().to_string();
    assert!(
        e.contains("line ") && e.contains("must be a reference"),
        "{e}"
    );
    assert!(!e.contains("whsec_abc"), "a secret was echoed: {e}");
}

#[test]
fn every_connector_kind_parses_with_defaults() {
    let text = r#"
[connectors.qa]
kind = "testrail"
url = "https://acme.testrail.io"
user = "ci@acme.com"
api_key = { secret = "tr" }
project_id = 1

[connectors.jira]
kind = "jira"
url = "https://acme.atlassian.net"
deployment = "cloud"
email = "ci@acme.com"
token = { secret = "jira" }
project_key = "SHOP"
[connectors.jira.bugs]

[connectors.chat]
kind = "slack"
token = { env = "SLACK_TOKEN" }
channel = "C0123"

[connectors.cards]
kind = "teams"
url = { secret = "teams-url" }

[connectors.pager]
kind = "pagerduty"
routing_key = { secret = "pd" }
"#;
    let c = Config::from_toml(text, "t.toml").unwrap();
    let kind = |n: &str| c.connector_kind(&ConnectorName::parse(n).unwrap()).unwrap();
    assert_eq!(kind("qa"), ConnectorKind::Testrail);
    assert_eq!(kind("jira"), ConnectorKind::Jira);
    assert_eq!(kind("chat"), ConnectorKind::Slack);
    assert_eq!(kind("cards"), ConnectorKind::Teams);
    assert_eq!(kind("pager"), ConnectorKind::Pagerduty);
    let qa = &c.connectors[&ConnectorName::parse("qa").unwrap()];
    assert_eq!(qa.common().rate_limit, Some(TESTRAIL_RATE));
    let ConnectorConfig::Testrail(t) = qa else {
        panic!()
    };
    assert_eq!(
        (t.status.failed, t.status.skipped, t.batch_size),
        (5, None, 100)
    );
}

#[test]
fn connector_errors_name_their_key() {
    let text = r#"
[network]
allow = ["10.0.0.0/33"]

[connectors.qa]
kind = "testrail"
url = "http://acme.testrail.io"
user = ""
api_key = { secret = "tr" }
project_id = 1
run_id = 2
plan_id = 3
batch_size = 0
rate_limit = { per_minute = 0 }
create_cases_in_section = 4
automation_id_field = "refs"

[connectors.jira]
kind = "jira"
url = "https://acme.atlassian.net"
deployment = "cloud"
token = { secret = "jira" }
project_key = "shop"
[connectors.jira.xray]

[connectors.chat]
kind = "slack"
token = { env = "SLACK_TOKEN" }

[connectors.pager]
kind = "pagerduty"
routing_key = { secret = "pd" }
severity = { failed = "sev1" }
timeout_ms = 60000
"#;
    let e = Config::from_toml(text, "t.toml").unwrap_err();
    let all = e.to_string();
    for expected in [
        "network.allow[0]: \"10.0.0.0/33\": the prefix length must be 0 to 32",
        "connectors.qa.url: plain http is refused",
        "connectors.qa.run_id, plan_id: set one or neither",
        "connectors.qa.suite_id: required with plan_id (TestRail's add_plan_entry refuses an entry without it)",
        "connectors.qa.batch_size: must be between 1 and 1000",
        "connectors.qa.create_cases_in_section: needs case_matcher = \"automation_id\"",
        "connectors.qa.automation_id_field: \"refs\" is not a custom case field",
        "connectors.qa.user: must be the account's email",
        "connectors.qa.rate_limit: per_minute must be at least 1",
        "connectors.jira.email: Jira Cloud authenticates with email + API token",
        "connectors.jira.project_key: must be a Jira project key",
        "connectors.jira.xray: Xray Cloud needs client_id and client_secret",
        "connectors.chat.set token and channel, or webhook_url",
        "connectors.pager.severity.failed: must be one of critical, error, warning, info",
        "connectors.pager.timeout_ms: must be between 1 and 30000",
    ] {
        assert!(all.contains(expected), "missing {expected:?} in:\n{all}");
    }
    assert_eq!(e.0.len(), 15, "{all}");
    // A misspelt key names its line; a missing one its table's.
    let text = "[server]\nlisten = \"127.0.0.1:1\"\n\n[connectors.x]\nkind = \"slack\"\nchanel = \"C1\"\n\n[connectors.y]\nkind = \"teams\"\n";
    let e = Config::from_toml(text, "t.toml").unwrap_err().to_string();
    assert!(
        e.contains("t.toml: line 6: connectors.x: unknown field `chanel`"),
        "{e}"
    );
    let text = "[connectors.y]\nkind = \"teams\"\nmax_failures = 3\n";
    let e = Config::from_toml(text, "t.toml").unwrap_err().to_string();
    assert!(
        e.contains("t.toml: line 1: connectors.y: missing field `url`"),
        "{e}"
    );
}

#[test]
fn hook_sources_are_validated() {
    let text = r#"
[projects.web]

[hooks.GitHub]
scheme = "hmac"
secrets = []
project = "api"
tolerance_s = 0
"#;
    let e = Config::from_toml(text, "t.toml").unwrap_err().to_string();
    for expected in [
        "hooks.GitHub: a source name is 1-64 of a-z, 0-9, - and _",
        "hooks.GitHub.secrets: list 1 to 5 secrets",
        "hooks.GitHub.project: unknown project \"api\"",
        "hooks.GitHub.tolerance_s: must be between 1 and 3600",
        "hooks.GitHub.hmac: set [hooks.GitHub.hmac] exactly when scheme = \"hmac\"",
    ] {
        assert!(e.contains(expected), "missing {expected:?} in:\n{e}");
    }
    let e = Config::from_toml(
        "[projects.web]\n[hooks.gh]\nscheme = \"gitlab\"\nsecrets = [{ env = \"X\" }]\nproject = \"web\"\n",
        "t.toml",
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("t.toml: line 3") && e.contains("gitlab"), "{e}");
}

#[test]
fn report_limits_are_validated() {
    let text = "[server]\nmax_decompressed_bytes = 67108864\nmax_inflight_bytes = 1048576\nmax_cases_per_report = 0\n[projects.web]\n[hooks.gh]\nscheme = \"github\"\nsecrets = [{ env = \"X\" }]\nformat = \"github\"\nproject = \"web\"\nquery_metadata = true\n";
    let e = Config::from_toml(text, "t.toml").unwrap_err().to_string();
    for expected in [
        "server.max_inflight_bytes: must be at least server.max_decompressed_bytes",
        "server.max_cases_per_report: must be greater than 0",
        "hooks.gh.query_metadata: only a format = \"report\" source reads its query string",
    ] {
        assert!(e.contains(expected), "missing {expected:?} in:\n{e}");
    }
    let c = Config::from_toml("[projects.web]\n", "t.toml").unwrap();
    assert_eq!(c.server.max_cases_per_report, 250_000);
    assert_eq!(
        c.server.max_inflight_bytes,
        2 * DEFAULT_MAX_DECOMPRESSED_BYTES
    );
}

#[test]
fn key_hash_is_sha256_hex() {
    assert_eq!(
        hash_api_key("test"),
        "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
    );
}

#[test]
fn email_settings_are_validated_by_name() {
    let good = "[connectors.mail]\nkind = \"email\"\nfrom = \"CI <ci@example.com>\"\nto = [\"team@example.com\"]\nsmtp = { host = \"smtp.example.com\", username = \"ci\", password = { secret = \"smtp\" } }\n";
    let c = Config::from_toml(good, "t.toml").unwrap();
    let mail = &c.connectors[&ConnectorName::parse("mail").unwrap()];
    assert_eq!(mail.common().rate_limit, Some(EMAIL_RATE));
    let ConnectorConfig::Email(e) = mail else {
        panic!()
    };
    assert_eq!(e.smtp.as_ref().unwrap().port(), 587);
    let text = r#"
[connectors.both]
kind = "email"
from = "ci@example.com"
to = ["a@example.com", "not an address", "x@example.com\r\nBcc: y@evil.test"]
smtp = { host = "smtp.example.com", tls = "none", password = { secret = "p" } }
ses = {}
max_failures = 0

[connectors.neither]
kind = "email"
from = "ci"
to = []

[connectors.plain]
kind = "email"
from = "ci@example.com"
to = ["a@example.com"]
smtp = { host = "smtp.example.com", tls = "none", username = "ci", password = { secret = "p" } }
"#;
    let e = Config::from_toml(text, "t.toml").unwrap_err().to_string();
    for expected in [
        "connectors.both.to[1]: \"not an address\" is not an email address",
        "connectors.both.to[2]: ",
        "connectors.both.max_failures: must be 1 to 500",
        "connectors.both.smtp, ses: set exactly one",
        "connectors.neither.from: \"ci\" is not an email address",
        "connectors.neither.to: at least one recipient",
        "connectors.neither.smtp, ses: set exactly one",
        "connectors.plain.smtp.tls: \"none\" sends mail in the clear",
        "connectors.plain.smtp.password: never sent without TLS",
    ] {
        assert!(e.contains(expected), "missing {expected:?} in:\n{e}");
    }
}
