//! The local `testrelay` process: `serve` composes the API, the workers and the embedded
//! store in one process; `send` is the CI client. No AWS SDK is linked here.

pub mod api;
pub mod app;
pub mod deadletters;
pub mod dev;
pub mod pipeline;
pub mod quarantine;
pub mod send;
pub mod verdict;
