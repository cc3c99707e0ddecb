//! README's connector sections show how each vendor's answers are read, exactly as the table
//! in code (`testrelay_connectors::answers`) reads them.

use testrelay_connectors::answers::{self, Vendor};
use testrelay_domain::config::ConnectorKind;

#[test]
fn readme_shows_every_vendors_answers_as_the_code_reads_them() {
    let readme = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../README.md"),
    )
    .unwrap();
    let mut missing = Vec::new();
    for (section, vendor) in [
        ("### Webhook", Vendor::Kind(ConnectorKind::Webhook)),
        ("### TestRail", Vendor::Kind(ConnectorKind::Testrail)),
        ("### Jira + Xray", Vendor::Kind(ConnectorKind::Jira)),
        ("### Jira + Xray", Vendor::XrayCloud),
        ("### Slack", Vendor::Kind(ConnectorKind::Slack)),
        ("### Microsoft Teams", Vendor::Kind(ConnectorKind::Teams)),
        ("### PagerDuty", Vendor::Kind(ConnectorKind::Pagerduty)),
        ("### Discord", Vendor::Kind(ConnectorKind::Discord)),
        ("### Datadog", Vendor::Kind(ConnectorKind::Datadog)),
    ] {
        let start = readme
            .find(section)
            .unwrap_or_else(|| panic!("{section} in README"));
        let end = readme[start + 4..]
            .find("\n## ")
            .or_else(|| readme[start + 4..].find("\n### "))
            .map_or(readme.len(), |e| start + 4 + e);
        let end = readme[start + 4..]
            .find("\n### ")
            .map_or(end, |e| (start + 4 + e).min(end));
        let table = answers::markdown(vendor);
        if !readme[start..end].contains(&table) {
            missing.push(format!("{section} ({vendor:?}):\n{table}"));
        }
    }
    assert!(
        missing.is_empty(),
        "README's tables differ from the code's; put these in:\n\n{}",
        missing.join("\n")
    );
}
