//! Routing rules: `[projects.<p>.when.<connector>]` says which runs a connector gets, by
//! branch (globs: `*` any run of characters, `?` one), outcome and environment. Evaluated at
//! ingest: a run a connector's rule does not match is not enqueued for it, and the run's
//! status says why. A pipeline's parts are matched by branch and environment only (a part's
//! outcome is not the pipeline's); its merged result by all three.
//!
//! `on` says which results are worth a message, by what changed against the base (see
//! [`crate::history`]): `always`, `failure` (the run failed), `change` (a test started or
//! stopped failing, or the outcome differs from the base's) or `new_failures`. A connector
//! with an `on` other than `always` gets a pipeline's merged result only, not its parts.

use crate::history::Changes;
use crate::report::model::{RunMeta, RunOutcome};
use serde::Deserialize;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum On {
    #[default]
    Always,
    Failure,
    Change,
    NewFailures,
}

impl On {
    pub fn as_str(self) -> &'static str {
        match self {
            On::Always => "always",
            On::Failure => "failure",
            On::Change => "change",
            On::NewFailures => "new_failures",
        }
    }

    /// Why a result with `outcome` and `changes` is not worth a message under this rule.
    fn skip_reason(self, outcome: RunOutcome, changes: Option<&Changes>) -> Option<String> {
        let c = changes.map(|c| c.counts).unwrap_or_default();
        let changed = match changes.and_then(|c| c.base.as_ref()) {
            Some(base) => c.new > 0 || c.fixed > 0 || base.outcome != outcome,
            None => outcome == RunOutcome::Failed,
        };
        let skip = match self {
            On::Always => false,
            On::Failure => outcome == RunOutcome::Passed,
            On::Change => !changed,
            On::NewFailures => c.new == 0,
        };
        skip.then(|| match self {
            On::Failure => "on = failure: the run passed".to_string(),
            On::Change => "on = change: nothing changed against the base".to_string(),
            _ => "on = new_failures: no new failures".to_string(),
        })
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct When {
    /// Branch globs, e.g. `["main", "release/*"]`; any branch when empty.
    #[serde(default)]
    pub branches: Vec<String>,
    /// `passed` / `failed`; any outcome when empty.
    #[serde(default)]
    pub outcomes: Vec<RunOutcome>,
    /// Environments; any when empty.
    #[serde(default)]
    pub environments: Vec<String>,
    #[serde(default)]
    pub on: On,
}

impl When {
    /// Why a run with `meta` (and `outcome` and `changes`, when it is a whole result, not a
    /// pipeline's part) is not for this connector.
    pub fn skip_reason(
        &self,
        meta: &RunMeta,
        outcome: Option<RunOutcome>,
        changes: Option<&Changes>,
    ) -> Option<String> {
        if !self.branches.is_empty() {
            let branch = meta.branch.as_deref().unwrap_or("");
            if !self.branches.iter().any(|g| glob(g, branch)) {
                return Some(format!(
                    "branch {branch:?} matches none of {:?}",
                    self.branches
                ));
            }
        }
        if !self.environments.is_empty() {
            let env = meta.environment.as_deref().unwrap_or("");
            if !self.environments.iter().any(|e| e == env) {
                return Some(format!(
                    "environment {env:?} is none of {:?}",
                    self.environments
                ));
            }
        }
        if let Some(o) = outcome
            && !self.outcomes.is_empty()
            && !self.outcomes.contains(&o)
        {
            let word = |o: &RunOutcome| match o {
                RunOutcome::Passed => "passed",
                RunOutcome::Failed => "failed",
            };
            return Some(format!(
                "outcome {} is none of [{}]",
                word(&o),
                self.outcomes
                    .iter()
                    .map(word)
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        match outcome {
            None if self.on != On::Always => Some(format!(
                "on = {}: decided on the pipeline's merged result",
                self.on.as_str()
            )),
            None => None,
            Some(o) => self.on.skip_reason(o, changes),
        }
    }

    pub fn problems(&self) -> Vec<String> {
        let mut p = Vec::new();
        for g in &self.branches {
            if g.is_empty() || g.len() > 256 {
                p.push(format!("branches: {g:?} must be 1 to 256 characters"));
            }
        }
        p
    }
}

/// `*` matches any run of characters (slashes too), `?` one character.
pub fn glob(pattern: &str, s: &str) -> bool {
    let (p, s): (Vec<char>, Vec<char>) = (pattern.chars().collect(), s.chars().collect());
    // Iterative matching with one backtrack point per `*` (linear in practice).
    let (mut pi, mut si) = (0, 0);
    let (mut star, mut mark) = (None, 0);
    while si < s.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == s[si]) {
            pi += 1;
            si += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = si;
            pi += 1;
        } else if let Some(st) = star {
            pi = st + 1;
            mark += 1;
            si = mark;
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        assert!(glob("main", "main"));
        assert!(!glob("main", "maint"));
        assert!(glob("release/*", "release/1.2"));
        assert!(glob("*", ""));
        assert!(glob("feat-?", "feat-a"));
        assert!(!glob("feat-?", "feat-ab"));
        assert!(glob("*/*-fix", "team/ui-fix"));
        assert!(!glob("release/*", "main"));
    }

    #[test]
    fn reasons_name_what_did_not_match() {
        let w = When {
            branches: vec!["main".into()],
            outcomes: vec![RunOutcome::Failed],
            environments: vec![],
            on: On::Always,
        };
        let meta = |branch: &str| RunMeta {
            project: "web".into(),
            branch: Some(branch.into()),
            commit: None,
            build_url: None,
            environment: None,
            pipeline: None,
        };
        assert_eq!(
            w.skip_reason(&meta("main"), Some(RunOutcome::Failed), None),
            None
        );
        assert_eq!(
            w.skip_reason(&meta("dev"), None, None).as_deref(),
            Some("branch \"dev\" matches none of [\"main\"]")
        );
        assert_eq!(
            w.skip_reason(&meta("main"), Some(RunOutcome::Passed), None)
                .as_deref(),
            Some("outcome passed is none of [failed]")
        );
        assert_eq!(
            w.skip_reason(&meta("main"), None, None),
            None,
            "a part: outcome unknown"
        );
    }
}
