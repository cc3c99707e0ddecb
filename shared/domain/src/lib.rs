//! testrelay's domain: the canonical test-run model, report parsers, configuration, the ports
//! every adapter implements, and the ingest and delivery services written against those ports.
//!
//! This crate has no AWS, Lambda or HTTP-server dependency: the same code runs in the Lambda
//! functions and in `testrelay serve`. Its folders are its capabilities:
//!
//! - [`report`]: the canonical run model, the parsers (JUnit, CTRF, Playwright) and what
//!   messages say about a run;
//! - [`ingest`]: accepting reports and signed provider hooks (authentication, limits,
//!   signature schemes, storing and enqueueing);
//! - [`pipelines`]: one result per CI pipeline from its shards, jobs and re-runs;
//! - [`delivery`]: delivering a run to each connector exactly once (steps, retries, circuit
//!   breakers, the outbound address policy, signing, the dead-letter admin);
//! - [`health`]: scheduled connector checks and the metrics operators watch;
//! - [`history`]: each test's history per branch, and what changed in a run against its
//!   base (new, still failing, flaky, fixed), quarantine;
//! - [`config`]: the configuration file and its validation;
//! - [`ports`]: what adapters implement (stores, queues, secrets, clock, connectors);
//! - [`ids`] and [`error`]: identifiers and the problem+json errors the edge shows.

pub mod config;
pub mod delivery;
pub mod error;
pub mod health;
pub mod history;
pub mod ids;
pub mod ingest;
pub mod pipelines;
pub mod ports;
pub mod report;
