//! One branch's history as one document: the last `window` pipelines of the branch and, per
//! test, its outcome in each of them (one character per pipeline, aligned with the list),
//! when it started failing in its current streak and where it last passed.
//!
//! Stored gzipped in the blob store (S3 on AWS) and replaced by a conditional write, so a
//! pipeline's history update costs a read and a write whatever the number of tests.

use crate::ids::RunId;
use crate::report::model::{Status, TestRun};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io::{Read, Write};

/// Outcome letters: passed, failed, error, skipped, flaky (passed on a re-run), not run.
pub const PASSED: u8 = b'P';
pub const FAILED: u8 = b'F';
pub const ERROR: u8 = b'E';
pub const SKIPPED: u8 = b'S';
pub const FLAKY: u8 = b'K';
pub const ABSENT: u8 = b'.';

/// Tests a branch's history keeps at most: past this, those seen least recently are dropped.
pub const MAX_TESTS: usize = 200_000;
/// Names are kept cut to these many bytes (the id is of the whole identity).
pub const MAX_SUITE: usize = 150;
pub const MAX_NAME: usize = 300;

pub fn letter(status: Status) -> u8 {
    match status {
        Status::Passed => PASSED,
        Status::Failed => FAILED,
        Status::Error => ERROR,
        Status::Skipped => SKIPPED,
        Status::Flaky => FLAKY,
    }
}

pub fn is_failure(letter: u8) -> bool {
    matches!(letter, FAILED | ERROR)
}

pub fn is_pass(letter: u8) -> bool {
    matches!(letter, PASSED | FLAKY)
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    pub branch: String,
    /// The branch's last pipelines (and runs outside pipelines), oldest first.
    pub pipelines: Vec<Entry>,
    /// Where tests began failing or last passed: shared by every test of that run (tests
    /// refer to them by index), so a mark costs its bytes once, not once per test.
    #[serde(default)]
    pub marks: Vec<Mark>,
    /// By test id (ordered: the same history always encodes to the same bytes).
    pub tests: BTreeMap<String, TestHistory>,
}

/// One pipeline (or run) in a branch's history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// `pipeline:<id>` or `run:<run id>`: a pipeline completing again replaces its entry.
    pub key: String,
    /// The run that was recorded (the pipeline's latest merged result).
    pub run_id: RunId,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commit: Option<String>,
    /// RFC 3339.
    pub at: String,
    pub total: u64,
    pub failed: u64,
}

impl Entry {
    pub fn mark(&self) -> Mark {
        Mark {
            run_id: self.run_id.clone(),
            commit: self.commit.clone(),
            at: self.at.clone(),
        }
    }
}

/// Where something happened: a run, its commit and time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mark {
    pub run_id: RunId,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commit: Option<String>,
    pub at: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TestHistory {
    pub suite: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub classname: Option<String>,
    pub name: String,
    /// One outcome letter per entry of `pipelines`.
    pub o: String,
    /// The first run of its current failing streak (an index into `marks`).
    #[serde(default, rename = "f", skip_serializing_if = "Option::is_none")]
    pub failing_since: Option<u32>,
    /// Its last passing run (an index into `marks`).
    #[serde(default, rename = "p", skip_serializing_if = "Option::is_none")]
    pub last_passed: Option<u32>,
}

impl TestHistory {
    pub fn at(&self, index: usize) -> u8 {
        self.o.as_bytes().get(index).copied().unwrap_or(ABSENT)
    }

    /// Its outcomes that ran (passed, failed, errored, flaky), oldest first, leaving out
    /// the entry at `except`.
    pub fn ran(&self, except: Option<usize>) -> impl Iterator<Item = u8> + '_ {
        self.o
            .bytes()
            .enumerate()
            .filter(move |(i, l)| Some(*i) != except && !matches!(*l, ABSENT | SKIPPED))
            .map(|(_, l)| l)
    }

    /// How often it changed between passing and failing, over the changes it could have
    /// made (a flaky outcome is a change in itself); `None` under `min` outcomes.
    pub fn flip_rate(&self, except: Option<usize>, then: Option<u8>, min: usize) -> Option<f64> {
        let ran: Vec<u8> = self.ran(except).chain(then).collect();
        if ran.len() < min {
            return None;
        }
        let flips = ran
            .windows(2)
            .filter(|w| is_failure(w[0]) != is_failure(w[1]))
            .count()
            + ran.iter().filter(|l| **l == FLAKY).count();
        Some(flips as f64 / (ran.len() - 1) as f64)
    }

    /// Failing in the latest entry it ran in.
    pub fn failing(&self) -> bool {
        self.ran(None).last().is_some_and(is_failure)
    }
}

/// One test of a run, identified.
pub struct Outcome<'a> {
    pub id: String,
    pub suite: &'a str,
    pub classname: Option<&'a str>,
    pub name: &'a str,
    pub status: Status,
}

/// Every test of `run`, identified (the last of two that normalise to one identity wins).
pub fn outcomes(run: &TestRun) -> Vec<Outcome<'_>> {
    run.report
        .cases_in_suites()
        .map(|(s, c)| Outcome {
            id: super::identity::id_of(&s.name, c.classname.as_deref(), &c.name),
            suite: &s.name,
            classname: c.classname.as_deref(),
            name: &c.name,
            status: c.status,
        })
        .collect()
}

impl Snapshot {
    pub fn new(branch: &str) -> Self {
        Snapshot {
            branch: branch.into(),
            ..Default::default()
        }
    }

    pub fn index_of(&self, key: &str) -> Option<usize> {
        self.pipelines.iter().position(|e| e.key == key)
    }

    /// The mark at `index`, as tests refer to it.
    pub fn mark(&self, index: Option<u32>) -> Option<&Mark> {
        self.marks.get(index? as usize)
    }

    /// The index of `mark`, added if it is new.
    fn mark_index(&mut self, mark: Mark) -> u32 {
        match self.marks.iter().rposition(|m| *m == mark) {
            Some(i) => i as u32,
            None => {
                self.marks.push(mark);
                (self.marks.len() - 1) as u32
            }
        }
    }

    /// Keeps only the marks some test refers to.
    fn compact_marks(&mut self) {
        let mut used = vec![false; self.marks.len()];
        for t in self.tests.values() {
            for i in [t.failing_since, t.last_passed].into_iter().flatten() {
                if let Some(u) = used.get_mut(i as usize) {
                    *u = true;
                }
            }
        }
        let mut remap = vec![None; self.marks.len()];
        let mut kept = Vec::new();
        for (i, m) in std::mem::take(&mut self.marks).into_iter().enumerate() {
            if used[i] {
                remap[i] = Some(kept.len() as u32);
                kept.push(m);
            }
        }
        self.marks = kept;
        for t in self.tests.values_mut() {
            t.failing_since = t
                .failing_since
                .and_then(|i| remap.get(i as usize).copied().flatten());
            t.last_passed = t
                .last_passed
                .and_then(|i| remap.get(i as usize).copied().flatten());
        }
    }

    /// Records `entry` with its tests' outcomes: a new last entry (the oldest falls out past
    /// `window`), or in place of the entry with the same key (a pipeline completed again).
    /// Applying the same entry twice leaves the same snapshot.
    pub fn apply(&mut self, entry: Entry, tests: &[Outcome<'_>], window: usize) {
        let window = window.max(2);
        let mark = self.mark_index(entry.mark());
        let column = match self.index_of(&entry.key) {
            Some(i) => {
                self.pipelines[i] = entry;
                for t in self.tests.values_mut() {
                    set(&mut t.o, i, ABSENT);
                }
                i
            }
            None => {
                self.pipelines.push(entry);
                let drop = self.pipelines.len().saturating_sub(window);
                self.pipelines.drain(..drop);
                let len = self.pipelines.len();
                for t in self.tests.values_mut() {
                    t.o.drain(..drop.min(t.o.len()));
                    t.o.truncate(len - 1);
                    while t.o.len() < len {
                        t.o.push(ABSENT as char);
                    }
                }
                len - 1
            }
        };
        let latest = column + 1 == self.pipelines.len();
        let len = self.pipelines.len();
        for t in tests {
            let h = self
                .tests
                .entry(t.id.clone())
                .or_insert_with(|| TestHistory {
                    suite: String::new(),
                    classname: None,
                    name: String::new(),
                    o: String::from_utf8(vec![ABSENT; len]).expect("ascii"),
                    failing_since: None,
                    last_passed: None,
                });
            if latest {
                let cut = crate::report::render::cut;
                h.suite = cut(t.suite, MAX_SUITE);
                h.classname = t.classname.map(|c| cut(c, MAX_SUITE));
                h.name = cut(t.name, MAX_NAME);
            }
            let l = letter(t.status);
            set(&mut h.o, column, l);
            if !latest {
                continue;
            }
            if is_failure(l) {
                if h.failing_since.is_none() {
                    h.failing_since = Some(mark);
                }
            } else if is_pass(l) {
                h.failing_since = None;
                h.last_passed = Some(mark);
            }
        }
        self.tests.retain(|_, t| t.o.bytes().any(|l| l != ABSENT));
        self.prune(MAX_TESTS);
        self.compact_marks();
    }

    /// Drops the tests seen least recently until at most `max` are left.
    pub fn prune(&mut self, max: usize) {
        if self.tests.len() <= max {
            return;
        }
        let mut seen: Vec<(usize, String)> = self
            .tests
            .iter()
            .map(|(id, t)| {
                (
                    t.o.bytes().rposition(|l| l != ABSENT).unwrap_or(0),
                    id.clone(),
                )
            })
            .collect();
        seen.sort_unstable();
        let drop = seen.len() - max;
        for (_, id) in seen.into_iter().take(drop) {
            self.tests.remove(&id);
        }
    }

    /// Gzipped JSON.
    pub fn encode(&self) -> Vec<u8> {
        // Serialised first, then compressed in one write: the encoder is slow on the many
        // small writes a serialiser makes.
        let json = serde_json::to_vec(self).expect("serialisable");
        let mut gz = flate2::write::GzEncoder::new(
            Vec::with_capacity(json.len() / 8),
            flate2::Compression::fast(),
        );
        gz.write_all(&json).expect("in memory");
        gz.finish().expect("in memory")
    }

    pub fn decode(bytes: &[u8]) -> Result<Snapshot, String> {
        let mut json = Vec::new();
        flate2::read::GzDecoder::new(bytes)
            .read_to_end(&mut json)
            .map_err(|e| format!("history snapshot unreadable: {e}"))?;
        serde_json::from_slice(&json).map_err(|e| format!("history snapshot unreadable: {e}"))
    }
}

fn set(o: &mut String, i: usize, l: u8) {
    while o.len() <= i {
        o.push(ABSENT as char);
    }
    o.replace_range(i..i + 1, std::str::from_utf8(&[l]).expect("ascii"));
}
