//! `[projects.<p>.history]`: how much of each branch's test history is kept and when a test
//! counts as flaky.

use serde::Deserialize;

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HistoryConfig {
    /// Pipelines (or runs) per branch whose outcomes each test's history keeps.
    pub window: usize,
    /// A test whose outcomes flip between passing and failing at least this often (over its
    /// last outcomes, at least ten) is flaky: its failures are not counted as new.
    pub flaky_flip_rate: f64,
}

impl Default for HistoryConfig {
    fn default() -> Self {
        HistoryConfig {
            window: 50,
            flaky_flip_rate: 0.3,
        }
    }
}

impl HistoryConfig {
    pub fn problems(&self) -> Vec<String> {
        let mut p = Vec::new();
        if !(2..=200).contains(&self.window) {
            p.push("window: must be 2 to 200".to_string());
        }
        if !(self.flaky_flip_rate > 0.0 && self.flaky_flip_rate <= 1.0) {
            p.push("flaky_flip_rate: must be more than 0 and at most 1".to_string());
        }
        p
    }
}

pub fn default_branch() -> String {
    "main".into()
}
