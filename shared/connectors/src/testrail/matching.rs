//! Which TestRail case a test reports on. The `name` matcher reads case ids users put in
//! test names and properties, the forms TestRail's own CLI (trcli) reads plus the seed
//! reporter's; the `automation_id` matcher looks the test's `classname.name` up in the
//! suite's cases (see `cases.rs`, and `render::automation_id`).
//!
//! Name rules (an id is `C` and digits; `c` is accepted where the form leaves no doubt):
//! - in square brackets anywhere: `[C123]`, `[c123]`, `[C1, C2]`, `[TC-123]`;
//! - `@testrail(123)` / `@testrail(C123)`;
//! - the first or last word of a name in words: `C123 logs in`, `logs in C123`,
//!   `C123: logs in`;
//! - any part of a snake_case identifier: `test_login_C123`, `C123_login`,
//!   `module_1_C123_login`, `C1_C2_login`, JUnit 5's `login_C123()`;
//! - properties `test_id` / `testrail_case_id`: `C123`, `123`, `C1, C2`.
//!
//! Not an id: a `C<digits>` word inside a sentence (`supports C11 atomics`), a longer word
//! (`C3PO`, `ABC123`), bare numbers in brackets (`sums[1, 2]` is a parameter list).

use testrelay_domain::report::model::TestCase;

/// Case ids a test names in its properties, then its name; duplicates removed, order kept.
pub fn case_ids(case: &TestCase) -> Vec<u64> {
    let mut ids = property_ids(case);
    let mut add = |id: Option<u64>| {
        if let Some(id) = id.filter(|&id| id > 0)
            && !ids.contains(&id)
        {
            ids.push(id);
        }
    };
    let name = case.name.as_str();
    let mut rest = name;
    while let Some(open) = rest.find('[') {
        let after = &rest[open + 1..];
        let Some(close) = after.find(']') else { break };
        for part in after[..close].split(',') {
            let t = part.trim();
            add(c_number(t, true).or_else(|| digits(t.strip_prefix("TC-")?)));
        }
        rest = &after[close + 1..];
    }
    let mut rest = name;
    while let Some(at) = rest.find("@testrail(") {
        let after = &rest[at + "@testrail(".len()..];
        if let Some(close) = after.find(')') {
            let t = after[..close].trim();
            add(c_number(t, false).or_else(|| digits(t)));
        }
        rest = after;
    }
    let words: Vec<&str> = name.split_whitespace().collect();
    for (i, word) in words.iter().enumerate() {
        // JUnit 5 display names end in `()`; a label may end in `:`.
        let word = word.trim_end_matches(':');
        let word = word.strip_suffix("()").unwrap_or(word);
        if word.contains('_') {
            for part in word.split('_') {
                add(c_number(part, true));
            }
        } else if i == 0 || i + 1 == words.len() {
            add(c_number(word, false));
        }
    }
    ids
}

/// Case ids in the properties `test_id` / `testrail_case_id`.
pub fn property_ids(case: &TestCase) -> Vec<u64> {
    let mut ids = Vec::new();
    for p in &case.properties {
        if p.name == "test_id" || p.name == "testrail_case_id" {
            for part in p.value.split([',', ' ']) {
                let t = part.trim();
                if let Some(id) = c_number(t, true).or_else(|| t.parse().ok())
                    && id > 0
                    && !ids.contains(&id)
                {
                    ids.push(id);
                }
            }
        }
    }
    ids
}

/// `C123` (and `c123` when `lowercase`) -> 123.
fn c_number(s: &str, lowercase: bool) -> Option<u64> {
    let d = s
        .strip_prefix('C')
        .or_else(|| s.strip_prefix('c').filter(|_| lowercase))?;
    digits(d)
}

fn digits(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use testrelay_domain::report::model::{Property, Status};

    fn ids(name: &str) -> Vec<u64> {
        case_ids(&TestCase::new(name, Status::Passed))
    }

    #[test]
    fn finds_case_ids_in_every_documented_form() {
        assert_eq!(ids("C123 logs in"), vec![123]);
        assert_eq!(ids("logs in C123"), vec![123]);
        assert_eq!(ids("C123: logs in"), vec![123]);
        assert_eq!(ids("[C123] logs in"), vec![123]);
        assert_eq!(ids("logs in [C1, C2]"), vec![1, 2]);
        assert_eq!(ids("[TC-77] seed format"), vec![77]);
        assert_eq!(ids("@testrail(42) seed format"), vec![42]);
        assert_eq!(ids("@testrail(C43) seed format"), vec![43]);
        assert_eq!(ids("[C5] again C5"), vec![5]);
        let mut c = TestCase::new("plain", Status::Failed);
        c.properties = vec![
            Property {
                name: "test_id".into(),
                value: "C9".into(),
            },
            Property {
                name: "testrail_case_id".into(),
                value: "10, C11".into(),
            },
        ];
        assert_eq!(case_ids(&c), vec![9, 10, 11]);
    }

    /// The forms trcli's name matcher reads, which users of it rely on.
    #[test]
    fn reads_the_forms_trcli_reads() {
        assert_eq!(ids("test_login_C123"), vec![123]);
        assert_eq!(ids("C123_login"), vec![123]);
        assert_eq!(ids("module_1_C123_my_test_case"), vec![123]);
        assert_eq!(ids("login_C123()"), vec![123], "JUnit 5 method name");
        assert_eq!(ids("C1_C2_login"), vec![1, 2]);
        assert_eq!(ids("[c123] logs in"), vec![123]);
        assert_eq!(ids("test_login_c123"), vec![123]);
    }

    /// An ordinary name that happens to hold `C<digits>` is not a case id.
    #[test]
    fn ordinary_names_are_not_case_ids() {
        assert!(ids("supports C11 atomics").is_empty());
        assert!(ids("compiles as C99 and C11 code fine").is_empty());
        assert!(ids("C3PO talks; ABC123; logs in").is_empty());
        assert!(ids("sums[1, 2]").is_empty(), "a parameter list");
        assert!(ids("c1 config loads").is_empty(), "lowercase in prose");
        assert!(ids("no id here").is_empty());
    }
}
