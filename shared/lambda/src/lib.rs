//! Lambda glue: bootstrap (tracing, configuration, AWS adapters built once per cold start),
//! the ingest HTTP handler (the shared axum Router behind `lambda_http`) and the SQS batch
//! lifter for delivery functions (partial batch failures), and the scheduled health check.

pub mod bootstrap;
pub mod config_source;
pub mod deliver;
pub mod emf;
pub mod health;
pub mod ingest;
