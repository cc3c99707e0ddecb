//! A run as an email: a subject, a plain-text part and an HTML part saying the same thing
//! (what changed, the verdict, the counts, the first failures with a few lines of their
//! message, a link to the run). Every piece of report text is cut and, in HTML, escaped.
//!
//! Size: at most [`MAX_LISTED`] failures, each at most ~1.6 KB of text, and the listing
//! stops at [`MAX_TEXT`] bytes of text or [`MAX_HTML`] of escaped HTML, so with the transfer
//! encoding (base64 at worst, 4/3) a message stays under 1 MB whatever the report holds
//! (SES takes 40 MB, common relays 10-35 MB).

use testrelay_domain::health::HealthAlert;
use testrelay_domain::report::model::{RunOutcome, TestCase, TestRun};
use testrelay_domain::report::render;

/// The most failures one message lists (config `max_failures` is capped to it).
pub const MAX_LISTED: usize = 500;
/// The listing stops growing when the text part's items reach this many bytes...
pub const MAX_TEXT: usize = 256 * 1024;
/// ... or the HTML part's, escaped (report text that is all `"` grows sixfold).
pub const MAX_HTML: usize = 448 * 1024;
/// Lines and bytes of a failure's message shown.
const DETAIL_LINES: usize = 12;
const DETAIL_BYTES: usize = 1200;

/// What the message says, before MIME.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Rendered {
    pub subject: String,
    pub text: String,
    pub html: String,
}

/// A listed failure, as text and as escaped HTML (escaped once: its size counts too).
struct Item {
    title: String,
    detail: Option<String>,
    html: String,
}

/// `❌ web · main · a1b2c3d: 2 new failures · 1 still failing (vs main @ 9f8e7d6)`, at most
/// 200 characters on one line.
pub fn subject(run: &TestRun) -> String {
    let failed = run.summary.outcome() == RunOutcome::Failed;
    let icon = if failed { "❌" } else { "✅" };
    let lead = render::changes_line(run).unwrap_or_else(|| render::headline(run));
    one_line(&crate::cut_chars(
        &format!("{icon} {}: {lead}", render::context(run)),
        200,
    ))
}

/// The message for `run`, listing at most `max_failures` failures.
pub fn run_message(run: &TestRun, status_url: &str, max_failures: usize) -> Rendered {
    let mut lead = Vec::new();
    if let Some(changes) = render::changes_line(run) {
        lead.push(changes);
    }
    lead.push(render::headline(run));
    lead.push(render::counts(run));
    let mut links = Vec::new();
    if let Some(b) = &run.meta.build_url {
        links.push(("Build", render::cut(b, 500)));
    }
    links.push(("Run", render::cut(status_url, 500)));

    let total = render::failure_count(run);
    let mut items = Vec::new();
    let (mut text_size, mut html_size) = (0, 0);
    for (suite, case, class) in render::classified_failures(run)
        .into_iter()
        .take(max_failures.min(MAX_LISTED))
    {
        let title = one_line(&render::cut(
            &render::labelled_title(suite, case, class),
            300,
        ));
        let detail = detail(case);
        let mut html = format!("<li><b>{}</b>", escape(&title));
        if let Some(d) = &detail {
            html.push_str(&format!(
                "<pre style=\"white-space:pre-wrap;background:#f6f8fa;padding:6px\">{}</pre>",
                escape(d)
            ));
        }
        html.push_str("</li>\n");
        text_size += title.len() + detail.as_ref().map_or(0, String::len) + 8;
        html_size += html.len();
        let item = Item {
            title,
            detail,
            html,
        };
        if text_size > MAX_TEXT || html_size > MAX_HTML {
            break;
        }
        items.push(item);
    }
    let more = total.saturating_sub(items.len() as u64);
    let footer = format!("testrelay · run {}", run.run_id);

    let mut text = lead.join("\n");
    text.push_str("\n\n");
    for (label, url) in &links {
        text.push_str(&format!("{label}: {url}\n"));
    }
    if !items.is_empty() {
        text.push_str(&format!("\nFailures ({} of {total}):\n", items.len()));
    }
    for (i, item) in items.iter().enumerate() {
        text.push_str(&format!("\n{}. {}\n", i + 1, item.title));
        for line in item.detail.iter().flat_map(|d| d.lines()) {
            text.push_str(&format!("   {line}\n"));
        }
    }
    if more > 0 {
        text.push_str(&format!("\n{}\n", render::more(more, "failures")));
    }
    text.push_str(&format!("\n-- \n{footer}\n"));

    let failed = run.summary.outcome() == RunOutcome::Failed;
    let color = if failed { "#d73a49" } else { "#2ea043" };
    let mut html = String::with_capacity(text.len() * 2);
    html.push_str("<!DOCTYPE html><html><body style=\"font-family:sans-serif;font-size:14px\">\n");
    html.push_str(&format!(
        "<h2 style=\"color:{color};margin:0 0 8px\">{}</h2>\n",
        escape(&render::context(run))
    ));
    for (i, line) in lead.iter().enumerate() {
        let style = if i == 0 { "font-weight:bold" } else { "" };
        html.push_str(&format!(
            "<p style=\"margin:2px 0;{style}\">{}</p>\n",
            escape(line)
        ));
    }
    html.push_str("<p>");
    for (label, url) in &links {
        html.push_str(&format!("{label}: {} ", link(url)));
    }
    html.push_str("</p>\n");
    if !items.is_empty() {
        html.push_str(&format!(
            "<h3>Failures ({} of {total})</h3>\n<ol>\n",
            items.len()
        ));
    }
    for item in &items {
        html.push_str(&item.html);
    }
    if !items.is_empty() {
        html.push_str("</ol>\n");
    }
    if more > 0 {
        html.push_str(&format!(
            "<p>{}</p>\n",
            escape(&render::more(more, "failures"))
        ));
    }
    html.push_str(&format!(
        "<p style=\"color:#6a737d;font-size:12px\">{}</p>\n</body></html>\n",
        escape(&footer)
    ));
    Rendered {
        subject: subject(run),
        text,
        html,
    }
}

/// A health alert or fallback notice: its title and one line per problem (20 at most).
pub fn alert_message(alert: &HealthAlert) -> Rendered {
    let subject = one_line(&crate::cut_chars(&alert.title(), 200));
    let problems: Vec<String> = alert.shown_problems(500).map(|p| one_line(&p)).collect();
    let mut text = format!("{subject}\n\n");
    for p in &problems {
        text.push_str(&format!("- {p}\n"));
    }
    text.push_str(&format!("\n-- \ntestrelay · {}\n", alert.at));
    let mut html = format!(
        "<!DOCTYPE html><html><body style=\"font-family:sans-serif\"><h3>{}</h3>\n<ul>\n",
        escape(&subject)
    );
    for p in &problems {
        html.push_str(&format!("<li>{}</li>\n", escape(p)));
    }
    html.push_str(&format!(
        "</ul>\n<p style=\"color:#6a737d;font-size:12px\">testrelay · {}</p>\n</body></html>\n",
        escape(&alert.at)
    ));
    Rendered {
        subject,
        text,
        html,
    }
}

/// The first lines of a failure's message (or trace), cut.
fn detail(case: &TestCase) -> Option<String> {
    let text = case.message.as_deref().or(case.trace.as_deref())?;
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim_end)
        .filter(|l| !l.trim().is_empty())
        .take(DETAIL_LINES)
        .collect();
    if lines.is_empty() {
        return None;
    }
    let joined = lines
        .iter()
        .map(|l| render::cut(l, 300))
        .collect::<Vec<_>>()
        .join("\n");
    Some(clean(&render::cut(&joined, DETAIL_BYTES)))
}

/// Control characters (but newlines and tabs) dropped: report text may hold any byte.
fn clean(s: &str) -> String {
    s.chars()
        .filter(|c| !c.is_control() || *c == '\n' || *c == '\t')
        .collect()
}

/// One line: newlines and other control characters become spaces (subjects, titles).
fn one_line(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

/// HTML text: `& < > " '` escaped, so report text is shown, never interpreted.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + s.len() / 8);
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A link when `url` is http(s), else the escaped text (a status path without a public
/// URL configured).
fn link(url: &str) -> String {
    if url.starts_with("https://") || url.starts_with("http://") {
        format!("<a href=\"{}\">{}</a>", escape(url), escape(url))
    } else {
        escape(url)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn report_text_is_escaped_and_kept_on_one_line() {
        assert_eq!(
            escape("<script>alert('x')</script> & \"q\""),
            "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; &quot;q&quot;"
        );
        assert_eq!(
            one_line("a\r\nBcc: evil@example.com"),
            "a  Bcc: evil@example.com"
        );
        assert_eq!(link("javascript:alert(1)"), "javascript:alert(1)");
    }
}
