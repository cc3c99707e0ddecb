//! Lambda glue: bootstrap (tracing, configuration, AWS adapters built once per cold start),
//! the ingest HTTP handler (the shared axum Router behind `lambda_http`) and the SQS batch
//! lifter for delivery functions (partial batch failures).

pub mod bootstrap;
pub mod deliver;
pub mod emf;
pub mod ingest;
