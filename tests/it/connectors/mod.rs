//! Every connector against wiremock: the exact requests its vendor documents, how answers
//! are classified, a crash at each step, rendering within the vendor's limits (10,000
//! failures) and the rendered fixtures README shows. Plus the shared HTTP layer: SSRF
//! refusal, rate limiting and `Retry-After`.

mod answers;
mod datadog;
mod discord;
mod email;
mod email_ses;
mod jira;
mod jira_changes;
mod limits;
mod pagerduty;
pub(crate) mod slack;
mod teams;
pub(crate) mod testrail;
mod xray;
