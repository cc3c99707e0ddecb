//! A run as a Block Kit message within Slack's limits, every text from a report escaped.

use super::{MAX_BLOCKS, MAX_HEADER, MAX_SECTION, MAX_TOTAL};
use serde_json::{Value, json};
use testrelay_domain::report::model::{RunOutcome, TestRun};
use testrelay_domain::report::render;

/// The message: `text` (notifications, and the fallback) and `blocks`.
pub fn render(run: &TestRun, status_url: &str, max_failures: usize) -> Value {
    render_as(run, status_url, max_failures, false)
}

/// Thread mode's message: the summary, its failures said to be in the thread.
pub fn summary(run: &TestRun, status_url: &str) -> Value {
    render_as(run, status_url, 0, true)
}

/// Thread mode's reply: the failures, new ones first, within Slack's limits.
pub fn failures_reply(run: &TestRun, max_failures: usize) -> Value {
    let mut blocks = Vec::new();
    let listed = failure_blocks(run, max_failures, &mut blocks, MAX_TOTAL - 600);
    let total = render::failure_count(run);
    if total > listed {
        blocks.push(json!({"type": "context", "elements": [{"type": "mrkdwn",
            "text": render::more(total - listed, "failures")}]}));
    }
    json!({
        "text": escape(&format!("{} failures of {}", total, render::context(run))),
        "blocks": blocks,
    })
}

/// Appends a section per failure (new ones first, labelled) while `budget` characters and
/// Slack's block count allow; answers how many it listed.
fn failure_blocks(run: &TestRun, max: usize, blocks: &mut Vec<Value>, mut budget: usize) -> u64 {
    let mut listed = 0u64;
    for (suite, case, class) in render::classified_failures(run).into_iter().take(max) {
        let mut line = format!(
            "*{}*",
            escape(&render::cut(
                &render::labelled_title(suite, case, class),
                300
            ))
        );
        if let Some(reason) = render::reason(case, 400) {
            line.push_str(&format!("\n```{}```", escape(&reason.replace('`', "'"))));
        }
        // Leave room for the context block and the "+N more" line.
        if line.len() > budget || blocks.len() + 2 >= MAX_BLOCKS {
            break;
        }
        budget -= line.len();
        blocks.push(json!({"type": "section", "text": {"type": "mrkdwn", "text": line}}));
        listed += 1;
    }
    listed
}

fn render_as(run: &TestRun, status_url: &str, max_failures: usize, in_thread: bool) -> Value {
    let failed = run.summary.outcome() == RunOutcome::Failed;
    let icon = if failed { ":x:" } else { ":white_check_mark:" };
    let headline = render::headline(run);
    // What changed leads; the run's own headline and counts follow.
    let lead = match render::changes_line(run) {
        Some(changes) => format!("{icon} *{}*\n{}", escape(&changes), escape(&headline)),
        None => format!("{icon} *{}*", escape(&headline)),
    };
    let mut blocks = vec![
        json!({"type": "header", "text": {"type": "plain_text", "emoji": true,
            "text": render::cut(&format!("{} {}", if failed { "❌" } else { "✅" }, render::context(run)), MAX_HEADER)}}),
        json!({"type": "section", "text": {"type": "mrkdwn",
            "text": render::cut(&format!("{lead}\n{}", escape(&render::counts(run))), MAX_SECTION)}}),
    ];
    let budget = MAX_TOTAL.saturating_sub(text_len(&blocks) + 600);
    let total = render::failure_count(run);
    let listed = failure_blocks(run, max_failures, &mut blocks, budget);
    let mut links = Vec::new();
    if in_thread && total > 0 {
        links.push(format!("{total} failures in the thread"));
    } else if total > listed {
        links.push(render::more(total - listed, "failures"));
    }
    links.push(link(status_url, "Run status"));
    if let Some(b) = &run.meta.build_url {
        links.push(link(b, "Build"));
    }
    blocks.push(
        json!({"type": "context", "elements": [{"type": "mrkdwn", "text": links.join(" · ")}]}),
    );
    json!({
        "text": escape(&format!(
            "{} — {}",
            render::context(run),
            render::changes_line(run).unwrap_or(headline)
        )),
        "blocks": blocks,
    })
}

pub(super) fn link(url: &str, text: &str) -> String {
    if url.starts_with("http") {
        format!("<{}|{text}>", url.replace('|', "%7C").replace('>', "%3E"))
    } else {
        format!("{text}: {}", escape(url))
    }
}

/// Slack's three control characters in mrkdwn.
pub(super) fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

pub(super) fn text_len(blocks: &[Value]) -> usize {
    blocks.iter().map(|b| b.to_string().len()).sum()
}
