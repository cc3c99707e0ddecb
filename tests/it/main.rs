//! All integration tests in one binary (one link, shared helpers in `testrelay-tests`).
//! Contract suites run every port's contract against the embedded adapter and the AWS one
//! (on moto and on DynamoDB Local + MiniStack); the other modules drive the whole system.

mod connectors;
mod contract;
mod fault_injection;
mod health;
mod hooks;
mod hostile;
mod lambda;
mod local_flow;
mod send;
mod vendor_text;
mod webhook;
