//! What the two JSON parsers share: they read a report in one streaming pass (serde seeds
//! that turn each test into a case as soon as it is read, never a tree of the whole
//! document) and charge every case to the [`Budget`] on the way.

use super::limits::{Budget, Exceeded};
use super::{ReportError, json_error};
use crate::report::model::{Format, Suite, TestCase};

/// The budget, and why it refused once it did (serde only carries a message back).
pub(super) struct Charges<'b> {
    budget: &'b mut Budget,
    exceeded: Option<Exceeded>,
}

impl<'b> Charges<'b> {
    pub fn new(budget: &'b mut Budget) -> Self {
        Charges {
            budget,
            exceeded: None,
        }
    }

    fn refuse<E: serde::de::Error>(&mut self, e: Exceeded) -> E {
        let err = E::custom(&e);
        self.exceeded = Some(e);
        err
    }

    pub fn case<E: serde::de::Error>(
        &mut self,
        cases: &mut Vec<TestCase>,
        case: TestCase,
    ) -> Result<(), E> {
        self.budget.case(cases, case).map_err(|e| self.refuse(e))
    }

    pub fn suite<E: serde::de::Error>(
        &mut self,
        suites: &mut Vec<Suite>,
        suite: Suite,
    ) -> Result<(), E> {
        self.budget.suite(suites, suite).map_err(|e| self.refuse(e))
    }

    pub fn bytes<E: serde::de::Error>(&mut self, n: usize) -> Result<(), E> {
        self.budget.charge(n).map_err(|e| self.refuse(e))
    }

    /// Maps a streaming pass's outcome to the report error users see: a 413 naming the limit
    /// when the budget refused, else the JSON error with its line and column.
    pub fn finish<T>(
        self,
        format: Format,
        result: Result<T, serde_json::Error>,
    ) -> Result<T, ReportError> {
        result.map_err(|e| match self.exceeded {
            Some(x) => {
                let err = ReportError::exceeded(format, x);
                if e.line() > 0 {
                    err.at_line(e.line(), e.column())
                } else {
                    err
                }
            }
            None => json_error(Some(format), &e),
        })
    }
}

/// Reads one whole document with `seed`, refusing trailing characters.
pub(super) fn read<'de, S: serde::de::DeserializeSeed<'de>>(
    input: &'de [u8],
    seed: S,
) -> Result<S::Value, serde_json::Error> {
    let mut de = serde_json::Deserializer::from_slice(input);
    let value = seed.deserialize(&mut de)?;
    de.end()?;
    Ok(value)
}

/// A duplicate key would make a streaming pass read a part twice.
pub(super) fn duplicate<E: serde::de::Error>(key: &'static str) -> E {
    E::custom(format_args!("duplicate field `{key}`"))
}
