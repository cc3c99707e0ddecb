//! Small text helpers shared by the parsers.

/// Drops a UTF-8 byte-order mark.
pub fn strip_bom(input: &[u8]) -> &[u8] {
    input.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(input)
}

/// 1-based line and column of a byte offset (columns count bytes).
pub fn line_col(input: &[u8], offset: usize) -> (u64, u64) {
    let offset = offset.min(input.len());
    let before = &input[..offset];
    let line = before.iter().filter(|&&b| b == b'\n').count() as u64 + 1;
    let line_start = before
        .iter()
        .rposition(|&b| b == b'\n')
        .map_or(0, |i| i + 1);
    (line, (offset - line_start) as u64 + 1)
}

/// Seconds as reporters write them ("1.5", "1,234.5", "0,5", " 3 ") to milliseconds.
/// Anything unreadable, negative or not finite is treated as unknown.
pub fn seconds_to_ms(raw: &str) -> Option<f64> {
    let raw = raw.trim();
    if raw.is_empty() {
        return None;
    }
    let normalized;
    let s = if raw.contains(',') {
        normalized = if raw.contains('.') || is_thousands_grouped(raw) {
            raw.replace(',', "")
        } else {
            raw.replace(',', ".")
        };
        normalized.as_str()
    } else {
        raw
    };
    let secs: f64 = s.parse().ok()?;
    (secs.is_finite() && secs >= 0.0).then_some(secs * 1000.0)
}

fn is_thousands_grouped(s: &str) -> bool {
    let mut groups = s.split(',');
    let first = groups.next().unwrap_or("");
    !first.is_empty()
        && first.len() <= 3
        && first.bytes().all(|b| b.is_ascii_digit())
        && groups.all(|g| g.len() == 3 && g.bytes().all(|b| b.is_ascii_digit()))
}

/// Appends `piece` to `buf` without letting `buf` grow past `cap` bytes (cut on a char
/// boundary); returns false once something was dropped.
pub fn push_capped(buf: &mut String, piece: &str, cap: usize) -> bool {
    if buf.len() >= cap {
        return piece.is_empty();
    }
    let room = cap - buf.len();
    if piece.len() <= room {
        buf.push_str(piece);
        true
    } else {
        let mut end = room;
        while !piece.is_char_boundary(end) {
            end -= 1;
        }
        buf.push_str(&piece[..end]);
        false
    }
}

/// `s` cut to at most `cap` bytes on a char boundary, with `…` appended when cut.
pub fn capped(s: &str, cap: usize) -> String {
    if s.len() <= cap {
        return s.to_string();
    }
    let mut out = String::with_capacity(cap + '…'.len_utf8());
    push_capped(&mut out, s, cap);
    out.push('…');
    out
}

/// Like [`capped`], for a string already owned (no copy when it fits).
pub fn cap_owned(s: String, cap: usize) -> String {
    if s.len() <= cap { s } else { capped(&s, cap) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_odd_times() {
        assert_eq!(seconds_to_ms("1.5"), Some(1500.0));
        assert_eq!(seconds_to_ms(" 2 "), Some(2000.0));
        assert_eq!(seconds_to_ms("1,234.5"), Some(1_234_500.0));
        assert_eq!(seconds_to_ms("1,234"), Some(1_234_000.0));
        assert_eq!(seconds_to_ms("0,5"), Some(500.0));
        assert_eq!(seconds_to_ms(""), None);
        assert_eq!(seconds_to_ms("N/A"), None);
        assert_eq!(seconds_to_ms("-1"), None);
        assert_eq!(seconds_to_ms("inf"), None);
    }

    #[test]
    fn positions_are_one_based() {
        assert_eq!(line_col(b"ab\ncd", 0), (1, 1));
        assert_eq!(line_col(b"ab\ncd", 4), (2, 2));
    }

    #[test]
    fn capped_push_cuts_on_char_boundary() {
        let mut s = String::new();
        assert!(push_capped(&mut s, "ab", 3));
        assert!(!push_capped(&mut s, "éé", 3));
        assert_eq!(s, "ab");
        assert_eq!(capped("abcdef", 3), "abc…");
        assert_eq!(cap_owned("ab".into(), 3), "ab");
        assert_eq!(capped("aéb", 2), "a…");
    }
}
