//! A test report as testrelay holds it: the canonical model every format is parsed into, the
//! parsers, and what human-facing messages and events say about a run.

pub mod model;
pub mod parse;
pub mod payload;
pub mod render;
