//! What one report may cost: caps on names and texts, nesting depth, attribute counts and
//! cases, and a memory budget every parser charges as it builds the model.
//!
//! Policy: a hostile report must never cost more than a small multiple of its own size. Long
//! strings are cut (names to [`NAME_CAP`], texts to their caps, a `…` marks the cut); what
//! cannot be cut is refused with the line where it happened: nesting deeper than
//! [`MAX_DEPTH`], more than [`MAX_ATTRIBUTES`] attributes on one element, more cases than
//! [`Limits::max_cases`]. Whatever passes those checks is charged to a [`Budget`]: the model's
//! heap bytes (the capacity of the vectors that hold cases and suites, as they grow, and the
//! owned strings; a string shared by many cases is charged once), and, before it is stored,
//! the JSON the run is stored as. While it is parsed, the report (1x) and the model (at most
//! [`EXPANSION`] times the report plus [`EXPANSION_BASE`]) are held; once parsed, the report
//! is dropped and the model and its JSON together may take `EXPANSION + 1` times the report
//! plus [`EXPANSION_BASE`]. Past either, the report is refused (413), so the peak heap of one
//! ingest stays within 4x its size plus 8 MB.

use crate::report::model::{Property, Suite, TestCase};

/// Suite, test, class, file and property names are cut to this many bytes.
pub const NAME_CAP: usize = 1024;
/// Property values are cut to this many bytes.
pub const VALUE_CAP: usize = 8 * 1024;
/// Failure messages are cut here: they are headlines, not logs.
pub const MESSAGE_CAP: usize = 4 * 1024;
/// Stack traces are cut here; connectors truncate further for their own limits.
pub const TRACE_CAP: usize = 64 * 1024;
/// Nested JUnit `<testsuite>`s and Playwright describe blocks deeper than this are refused.
pub const MAX_DEPTH: usize = 32;
/// Elements with more attributes than this are refused.
pub const MAX_ATTRIBUTES: usize = 64;
/// The default for `server.max_cases_per_report`.
pub const DEFAULT_MAX_CASES: usize = 250_000;
/// The model may take this many bytes per inflated report byte while the report is held
/// (and, with the report dropped, the model plus its stored JSON one byte more)...
pub const EXPANSION: usize = 3;
/// ...plus this many.
pub const EXPANSION_BASE: usize = 6 << 20;

/// The limits a deployment can configure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Reports with more test cases are refused (413).
    pub max_cases: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_cases: DEFAULT_MAX_CASES,
        }
    }
}

/// `parent`, `sep` and `name` joined and cut to [`NAME_CAP`] (`…` marks a cut), in one
/// allocation of the size it needs: nested suite names and describe paths.
pub fn join_name(parent: &str, sep: &str, name: &str) -> String {
    let full = parent.len() + sep.len() + name.len();
    let mut s = String::with_capacity(full.min(NAME_CAP) + '…'.len_utf8());
    let whole = super::text::push_capped(&mut s, parent, NAME_CAP)
        && super::text::push_capped(&mut s, sep, NAME_CAP)
        && super::text::push_capped(&mut s, name, NAME_CAP);
    if !whole {
        s.push('…');
    }
    s
}

/// A name from outside a report (a GitHub run or repository), cut to [`NAME_CAP`].
pub fn cut_name(s: &str) -> String {
    super::text::capped(s, NAME_CAP)
}

/// The bytes the model may take while a report of `input_len` bytes is parsed.
pub fn memory_budget(input_len: usize) -> usize {
    input_len
        .saturating_mul(EXPANSION)
        .saturating_add(EXPANSION_BASE)
}

/// The bytes the stored JSON may take once the report is dropped, beside a model of
/// `model_bytes`.
pub fn stored_budget(input_len: usize, model_bytes: usize) -> usize {
    memory_budget(input_len)
        .saturating_add(input_len)
        .saturating_sub(model_bytes)
}

/// Why the budget refused: the caller turns it into a 413 naming the limit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Exceeded {
    Cases(usize),
    Memory(usize),
}

impl std::fmt::Display for Exceeded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Exceeded::Cases(max) => write!(
                f,
                "the report has more than {max} test cases (server.max_cases_per_report); split it"
            ),
            Exceeded::Memory(limit) => write!(
                f,
                "the report would take more than {limit} bytes once parsed ({EXPANSION} bytes per report byte plus {} MiB): names, describe titles or suite paths repeated across many tests make it far larger than it is on the wire",
                EXPANSION_BASE >> 20
            ),
        }
    }
}

/// Counts what a parser keeps. Every case and suite goes through it.
#[derive(Debug)]
pub struct Budget {
    limit: usize,
    used: usize,
    cases: usize,
    max_cases: usize,
}

impl Budget {
    pub fn new(input_len: usize, limits: &Limits) -> Self {
        Budget {
            limit: memory_budget(input_len),
            used: 0,
            cases: 0,
            max_cases: limits.max_cases,
        }
    }

    /// Bytes charged so far.
    pub fn used(&self) -> usize {
        self.used
    }

    /// Charges `bytes` kept by the model (a shared string, a buffer).
    pub fn charge(&mut self, bytes: usize) -> Result<(), Exceeded> {
        self.used = self.used.saturating_add(bytes);
        if self.used > self.limit {
            Err(Exceeded::Memory(self.limit))
        } else {
            Ok(())
        }
    }

    /// Gives back `bytes` charged earlier that a later charge will count again (a parser
    /// that charges properties as it reads them, before the case that holds them).
    pub fn refund(&mut self, bytes: usize) {
        self.used = self.used.saturating_sub(bytes);
    }

    /// Counts and charges one more case (its own strings and properties), then pushes it.
    pub fn case(&mut self, cases: &mut Vec<TestCase>, case: TestCase) -> Result<(), Exceeded> {
        self.cases += 1;
        if self.cases > self.max_cases {
            return Err(Exceeded::Cases(self.max_cases));
        }
        let strings = case.name.capacity()
            + opt_len(&case.message)
            + opt_len(&case.trace)
            + opt_len(&case.file)
            + props_len(&case.properties);
        self.charge(strings)?;
        self.push(cases, case)
    }

    /// Charges one more suite (its name, file and properties; not its cases), then pushes it.
    pub fn suite(&mut self, suites: &mut Vec<Suite>, suite: Suite) -> Result<(), Exceeded> {
        self.charge(suite.name.capacity() + opt_len(&suite.file) + props_len(&suite.properties))?;
        self.push(suites, suite)
    }

    /// Pushes `item`, charging what the vector grows by: its capacity, not its length, as
    /// a growing vector holds up to twice what it keeps.
    fn push<T>(&mut self, v: &mut Vec<T>, item: T) -> Result<(), Exceeded> {
        if v.len() == v.capacity() {
            // Charged before it grows: a refusal never allocates what it refuses.
            let grown = (2 * v.capacity()).max(4);
            self.charge((grown - v.capacity()) * std::mem::size_of::<T>())?;
            v.reserve_exact(grown - v.len());
        }
        v.push(item);
        Ok(())
    }
}

/// Strings are charged by capacity: what they hold on the heap, slack included.
fn opt_len(s: &Option<String>) -> usize {
    s.as_ref().map_or(0, String::capacity)
}

/// What [`Budget::case`] charges for a case's properties.
pub fn props_len(props: &[Property]) -> usize {
    props
        .iter()
        .map(|p| std::mem::size_of::<Property>() + p.name.capacity() + p.value.capacity())
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::model::Status;

    #[test]
    fn refuses_past_the_case_cap_and_the_memory_budget() {
        let mut b = Budget::new(0, &Limits { max_cases: 2 });
        let mut cases = Vec::new();
        let case = TestCase::new("a", Status::Passed);
        b.case(&mut cases, case.clone()).unwrap();
        b.case(&mut cases, case.clone()).unwrap();
        assert_eq!(b.case(&mut cases, case), Err(Exceeded::Cases(2)));
        assert!(b.used() >= cases.capacity() * std::mem::size_of::<TestCase>());

        let mut b = Budget::new(10, &Limits::default());
        assert!(b.charge(EXPANSION_BASE).is_ok());
        assert!(b.charge(30).is_ok());
        assert_eq!(b.charge(1), Err(Exceeded::Memory(memory_budget(10))));
    }
}
