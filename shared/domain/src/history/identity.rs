//! A test's stable identity across runs: suite + classname + name, normalised so that what
//! changes from run to run without the test changing does not make it a new test.
//!
//! Kept as they are: parameters (`test_login[firefox-1]`, `adds(2, 3)`): each parameter set
//! is a test of its own, and a failure of one is not a failure of another.
//! Replaced, wherever they appear in suite, classname or name:
//! - UUIDs (`8-4-4-4-12` hex) by `<uuid>`;
//! - memory addresses (`0x` and 6 or more hex digits) by `<addr>`;
//! - other runs of 16 or more hex digits holding both a digit and a letter (hashes, random
//!   temp-directory suffixes) by `<hex>`;
//! - a duration at the end (` (12 ms)`, ` (0.53s)`, ` [1.2 s]`) is dropped;
//! - runs of whitespace become one space, and the ends are trimmed.
//!
//! In a matrix pipeline the suite carries its environment (`unit · linux`), so the same test
//! on two environments has two histories.

/// The normalised identity, `suite\u{1f}classname\u{1f}name`.
pub fn identity(suite: &str, classname: Option<&str>, name: &str) -> String {
    format!(
        "{}\u{1f}{}\u{1f}{}",
        normalise(suite),
        classname.map(normalise).unwrap_or_default(),
        normalise(name)
    )
}

/// The test's id in URLs and history: 16 hex digits of the identity's SHA-256.
pub fn test_id(identity: &str) -> String {
    crate::ids::digest16(identity)
}

/// The id of a test as a report names it.
pub fn id_of(suite: &str, classname: Option<&str>, name: &str) -> String {
    test_id(&identity(suite, classname, name))
}

pub fn normalise(s: &str) -> String {
    let s = drop_trailing_duration(s.trim());
    let chars: Vec<char> = s.chars().collect();
    let mut out = String::with_capacity(s.len());
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_ascii_hexdigit() && (i == 0 || !chars[i - 1].is_ascii_alphanumeric()) {
            let run = chars[i..]
                .iter()
                .take_while(|c| c.is_ascii_hexdigit() || **c == '-')
                .count();
            if is_uuid(&chars[i..i + run]) {
                out.push_str("<uuid>");
                i += 36;
                continue;
            }
            if c == '0'
                && chars.get(i + 1) == Some(&'x')
                && chars[i + 2..]
                    .iter()
                    .take_while(|c| c.is_ascii_hexdigit())
                    .count()
                    >= 6
            {
                let n = chars[i + 2..]
                    .iter()
                    .take_while(|c| c.is_ascii_hexdigit())
                    .count();
                out.push_str("<addr>");
                i += 2 + n;
                continue;
            }
            let hex = chars[i..]
                .iter()
                .take_while(|c| c.is_ascii_hexdigit())
                .count();
            let word = &chars[i..i + hex];
            if hex >= 16
                && !chars
                    .get(i + hex)
                    .is_some_and(|c| c.is_ascii_alphanumeric())
                && word.iter().any(|c| c.is_ascii_digit())
                && word.iter().any(|c| c.is_ascii_alphabetic())
            {
                out.push_str("<hex>");
                i += hex;
                continue;
            }
        }
        if c.is_whitespace() {
            if !out.ends_with(' ') {
                out.push(' ');
            }
        } else {
            out.push(c);
        }
        i += 1;
    }
    out
}

fn is_uuid(c: &[char]) -> bool {
    c.len() >= 36
        && c[..36].iter().enumerate().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => *c == '-',
            _ => c.is_ascii_hexdigit(),
        })
        && !c.get(36).is_some_and(|c| c.is_ascii_hexdigit())
}

/// ` (12 ms)`, ` (0.53s)`, ` [1.2 s]` at the end.
fn drop_trailing_duration(s: &str) -> &str {
    let Some(close) = s.chars().last().filter(|c| matches!(c, ')' | ']')) else {
        return s;
    };
    let open = if close == ')' { '(' } else { '[' };
    let Some(start) = s.rfind(open) else {
        return s;
    };
    let inner = s[start + 1..s.len() - 1].trim();
    let unit_at = inner
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(inner.len());
    let (number, unit) = inner.split_at(unit_at);
    let is_duration = !number.is_empty()
        && number.parse::<f64>().is_ok()
        && matches!(
            unit.trim(),
            "ms" | "s" | "sec" | "secs" | "seconds" | "m" | "min"
        );
    if is_duration && start > 0 {
        s[..start].trim_end()
    } else {
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameters_stay_and_noise_goes() {
        assert_eq!(normalise("test_login[firefox-1]"), "test_login[firefox-1]");
        assert_eq!(normalise("adds(2, 3)"), "adds(2, 3)");
        assert_eq!(
            normalise("uploads to /tmp/pytest-3f9a2c7d8e1b4a6f9c0d/x"),
            "uploads to /tmp/pytest-<hex>/x"
        );
        assert_eq!(
            normalise("order 123e4567-e89b-12d3-a456-426614174000 ships"),
            "order <uuid> ships"
        );
        assert_eq!(
            normalise("<Widget object at 0x7f3a2b1c9d80> renders"),
            "<Widget object at <addr>> renders"
        );
        assert_eq!(normalise("loads the page (12 ms)"), "loads the page");
        assert_eq!(normalise("loads the page [0.53s]"), "loads the page");
        assert_eq!(
            normalise("  two   spaces\tand a tab "),
            "two spaces and a tab"
        );
        // Plain numbers, words of hex letters and short hashes are the test's own words.
        assert_eq!(normalise("handles 1000000 rows"), "handles 1000000 rows");
        assert_eq!(normalise("decaf beef added"), "decaf beef added");
        assert_eq!(normalise("retry (3)"), "retry (3)");
        assert_eq!(
            normalise("commit abc1234 is read"),
            "commit abc1234 is read"
        );
    }

    #[test]
    fn the_same_test_has_the_same_id_across_runs() {
        let a = id_of("unit", Some("Cart"), "adds 0x7f00aa11bb22 item (5 ms)");
        let b = id_of("unit", Some("Cart"), "adds 0x55d0c0ffee00 item (7 ms)");
        assert_eq!(a, b);
        assert_eq!(a.len(), 16);
        assert_ne!(a, id_of("unit", None, "adds 0x7f00aa11bb22 item"));
        assert_ne!(
            id_of("unit", Some("Cart"), "x[1]"),
            id_of("unit", Some("Cart"), "x[2]")
        );
    }
}
