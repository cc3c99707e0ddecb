//! `--fail-on`: the CI job's verdict from what changed against the base, as testrelay's
//! answer carries it. Exit codes: 0 passes, 2 fails by the rule (1 is kept for "could not
//! send").

use testrelay_domain::history::{Changes, Class, FailOn};

/// The job fails by its rule.
pub const FAILED: i32 = 2;

pub fn parse_fail_on(s: &str) -> Result<FailOn, String> {
    FailOn::parse(s).ok_or_else(|| format!("{s:?}: one of new-failures, any-failure, none"))
}

/// Prints what changed and answers the exit code under `rule`. `changes`: the answer's
/// `changes` (absent from a testrelay that does not classify: every failure counts as new);
/// `failed`: the run's failed and errored tests.
pub fn judge(changes: Option<&serde_json::Value>, failed: u64, rule: FailOn) -> i32 {
    let changes: Option<Changes> = changes.and_then(|c| serde_json::from_value(c.clone()).ok());
    let why = match &changes {
        Some(c) => {
            println!("what changed: {}", c.headline());
            let new: Vec<String> = c
                .tests
                .iter()
                .filter(|t| t.class == Class::New && !t.quarantined)
                .take(10)
                .map(|t| format!("  new failure: {} › {}", t.suite, t.name))
                .collect();
            for line in &new {
                println!("{line}");
            }
            if c.counts.new > new.len() as u64 {
                println!("  (+{} more new failures)", c.counts.new - new.len() as u64);
            }
            c.verdict(rule)
        }
        None if failed > 0 && rule != FailOn::None => Some(format!(
            "{failed} failures (no classification in the answer)"
        )),
        None => None,
    };
    match why {
        Some(why) => {
            let rule = serde_json::to_value(rule).unwrap_or_default();
            eprintln!(
                "testrelay: failing the job (--fail-on {}): {why}",
                rule.as_str().unwrap_or("?")
            );
            FAILED
        }
        None => 0,
    }
}
