//! testrelay's domain: the canonical test-run model, report parsers, configuration, the ports
//! every adapter implements, and the ingest and delivery services written against those ports.
//!
//! This crate has no AWS, Lambda or HTTP-server dependency: the same code runs in the Lambda
//! functions and in `testrelay serve`.

pub mod admin;
pub mod breaker;
pub mod breakers;
pub mod config;
pub mod delivery;
pub mod error;
pub mod health;
pub mod hook_ingest;
pub mod hooks;
pub mod ids;
pub mod inflate;
pub mod ingest;
pub mod metrics;
pub mod model;
pub mod net;
pub mod parse;
pub mod payload;
pub mod ports;
pub mod render;
pub mod retry;
pub mod signing;
pub mod steps;
pub mod worker;
