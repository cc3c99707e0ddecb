//! How every vendor's answers are read, in one table: an HTTP status (or Slack's `ok: false`
//! error code) -> transient (retried on the schedule), throttled (retried after the pause the
//! vendor asks for; does not use up the schedule) or permanent (dead-lettered). A vendor's
//! own rules come first; the rules for every vendor apply after them. README's connector
//! sections show each vendor's table as [`markdown`] renders it (a test keeps them equal).

use testrelay_domain::config::ConnectorKind;
use testrelay_domain::ports::{DeliveryError, ErrorClass};

/// Whose answers a rule reads: a connector kind, or Xray Cloud (a Jira connector's other
/// target).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Vendor {
    Kind(ConnectorKind),
    XrayCloud,
}

/// What a rule matches.
#[derive(Debug, Clone, Copy)]
pub enum Answer {
    /// An HTTP status in this inclusive range.
    Status(u16, u16),
    /// HTTP 200 with `ok: false` and one of these `error` codes (Slack); empty: any code.
    Code(&'static [&'static str]),
}

#[derive(Debug)]
pub struct Rule {
    /// `None`: every vendor.
    pub vendor: Option<Vendor>,
    pub answer: Answer,
    pub class: ErrorClass,
    pub meaning: &'static str,
}

use Answer::{Code, Status};
use ConnectorKind::{Datadog, Discord, Jira, Slack, Testrail, Webhook};
use ErrorClass::{Permanent, Throttled, Transient};

const fn rule(
    vendor: Option<Vendor>,
    answer: Answer,
    class: ErrorClass,
    meaning: &'static str,
) -> Rule {
    Rule {
        vendor,
        answer,
        class,
        meaning,
    }
}

const fn of(kind: ConnectorKind) -> Option<Vendor> {
    Some(Vendor::Kind(kind))
}

pub const RULES: &[Rule] = &[
    rule(
        of(Testrail),
        Status(409, 409),
        Transient,
        "TestRail Cloud's daily maintenance (`Account is undergoing daily maintenance`), with or without `Retry-After`",
    ),
    rule(
        of(Testrail),
        Status(400, 400),
        Permanent,
        "a request TestRail refuses; case ids it does not have are left out before asking (a run refused after a cached case list is retried once with a fresh one)",
    ),
    rule(
        of(Jira),
        Status(400, 400),
        Permanent,
        "a request Jira refuses (a field the project's screens lack, an unknown issue type)",
    ),
    rule(
        Some(Vendor::XrayCloud),
        Status(400, 400),
        Permanent,
        "an import Xray refuses; test keys Jira does not have are left out before importing",
    ),
    rule(
        Some(Vendor::XrayCloud),
        Status(429, 429),
        Throttled,
        "Xray Cloud's own limit (300 or 1,000 requests per 5 minutes): pauses Xray calls only",
    ),
    rule(
        Some(Vendor::XrayCloud),
        Status(500, 599),
        Transient,
        "Xray Cloud's outage: counts against Xray's own breaker, not Jira's",
    ),
    rule(
        of(Slack),
        Code(&["ratelimited", "rate_limited"]),
        Throttled,
        "both spellings; `rate_limited` is the one chat.postMessage documents",
    ),
    rule(
        of(Slack),
        Code(&[
            "internal_error",
            "fatal_error",
            "service_unavailable",
            "request_timeout",
        ]),
        Transient,
        "Slack's own trouble",
    ),
    rule(
        of(Slack),
        Code(&["invalid_blocks", "msg_blocks_too_long", "msg_too_long"]),
        Permanent,
        "sent again at once as the text alone (no `blocks` key); permanent only if that fails too",
    ),
    rule(
        of(Slack),
        Code(&[]),
        Permanent,
        "any other code: auth, scopes, channel",
    ),
    rule(
        of(Discord),
        Status(429, 429),
        Throttled,
        "Discord's limit per webhook and channel: waits `retry_after` (the body's seconds, or `Retry-After`, `X-RateLimit-Reset-After`)",
    ),
    rule(
        of(Discord),
        Status(404, 404),
        Permanent,
        "`Unknown Webhook` (code 10015): the webhook was deleted; `Unknown Message` (10008) on an edit posts the message anew instead",
    ),
    rule(
        of(Discord),
        Status(400, 400),
        Permanent,
        "`Invalid Form Body` (code 50035): a message Discord refuses (testrelay keeps within its limits)",
    ),
    rule(
        of(Datadog),
        Status(403, 403),
        Permanent,
        "`{\"errors\": [\"Forbidden\"]}`: the API key is wrong or revoked, or not for this site",
    ),
    rule(
        of(Datadog),
        Status(429, 429),
        Throttled,
        "waits `X-RateLimit-Reset` (seconds until the period ends, as Datadog sends it)",
    ),
    rule(
        of(Webhook),
        Status(410, 410),
        Permanent,
        "the endpoint asks to be disabled: later runs fail at once until its URL changes",
    ),
    rule(
        None,
        Status(429, 429),
        Throttled,
        "every request to the target waits out `Retry-After` or `X-RateLimit-Reset`",
    ),
    rule(None, Status(408, 408), Transient, "request timeout"),
    rule(None, Status(500, 599), Transient, "the vendor's trouble"),
    rule(
        None,
        Status(300, 399),
        Permanent,
        "redirects are not followed: configure the final URL",
    ),
    rule(
        None,
        Status(400, 499),
        Permanent,
        "auth, permissions, not found, refused",
    ),
];

fn matches_status(r: &Rule, vendor: Option<Vendor>, status: u16) -> bool {
    (r.vendor.is_none() || r.vendor == vendor)
        && matches!(r.answer, Status(lo, hi) if (lo..=hi).contains(&status))
}

/// The rule for an HTTP status from `vendor` (`None`: any vendor), if any (2xx has none).
pub fn for_status(vendor: Option<Vendor>, status: u16) -> Option<&'static Rule> {
    RULES.iter().find(|r| matches_status(r, vendor, status))
}

/// The rule for Slack's `ok: false` code.
pub fn for_code(vendor: Vendor, code: &str) -> &'static Rule {
    RULES
        .iter()
        .find(|r| {
            r.vendor == Some(vendor)
                && matches!(r.answer, Code(codes) if codes.is_empty() || codes.contains(&code))
        })
        .expect("a catch-all code rule per vendor that answers with codes")
}

/// `e` (classified by the rules for every vendor) read by `vendor`'s own rules.
pub fn reclassify(vendor: Vendor, e: DeliveryError) -> DeliveryError {
    let Some(status) = e.status_code else {
        return e;
    };
    match RULES
        .iter()
        .find(|r| r.vendor == Some(vendor) && matches_status(r, Some(vendor), status))
    {
        Some(r) if r.class != e.class => DeliveryError {
            class: r.class,
            detail: format!("HTTP {status}: {}", r.meaning),
            ..e
        },
        _ => e,
    }
}

/// `vendor`'s answers as a Markdown table: its own rules, then those for every vendor.
pub fn markdown(vendor: Vendor) -> String {
    let mut out = String::from("| Answer | Class | Meaning |\n|---|---|---|\n");
    for r in RULES
        .iter()
        .filter(|r| r.vendor == Some(vendor) || r.vendor.is_none())
    {
        // A rule for every vendor that the vendor's own rules cover entirely is not shown.
        if r.vendor.is_none()
            && let Status(lo, hi) = r.answer
            && RULES.iter().any(|v| {
                v.vendor == Some(vendor) && matches!(v.answer, Status(a, b) if a <= lo && hi <= b)
            })
        {
            continue;
        }
        let own_within = |lo: u16, hi: u16| {
            RULES.iter().any(|v| {
                v.vendor == Some(vendor)
                    && matches!(v.answer, Status(a, _) if (lo..=hi).contains(&a))
            }) || (lo..=hi).contains(&429)
                || (lo..=hi).contains(&408)
        };
        let answer = match r.answer {
            Status(lo, hi) if lo == hi => format!("HTTP {lo}"),
            Status(lo, hi) if hi - lo == 99 && r.vendor.is_none() && own_within(lo, hi) => {
                format!("other HTTP {}xx", lo / 100)
            }
            Status(lo, hi) if hi - lo == 99 => format!("HTTP {}xx", lo / 100),
            Status(lo, hi) => format!("HTTP {lo}-{hi}"),
            Code([]) => "`ok: false`, other codes".to_string(),
            Code(codes) => format!(
                "`ok: false`, {}",
                codes
                    .iter()
                    .map(|c| format!("`{c}`"))
                    .collect::<Vec<_>>()
                    .join(" ")
            ),
        };
        let class = match r.class {
            Transient => "transient",
            Throttled => "throttled",
            Permanent => "permanent",
        };
        out.push_str(&format!("| {answer} | {class} | {} |\n", r.meaning));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_answer_has_one_reading() {
        for vendor in ConnectorKind::ALL
            .into_iter()
            .map(Vendor::Kind)
            .chain([Vendor::XrayCloud])
        {
            for status in 300..600 {
                assert!(
                    for_status(Some(vendor), status).is_some(),
                    "{vendor:?} {status}"
                );
            }
            assert!(for_status(Some(vendor), 200).is_none());
        }
        let slack = Vendor::Kind(ConnectorKind::Slack);
        assert_eq!(for_code(slack, "rate_limited").class, Throttled);
        assert_eq!(for_code(slack, "ratelimited").class, Throttled);
        assert_eq!(for_code(slack, "fatal_error").class, Transient);
        assert_eq!(for_code(slack, "channel_not_found").class, Permanent);
        let testrail = Some(Vendor::Kind(ConnectorKind::Testrail));
        assert_eq!(for_status(testrail, 409).unwrap().class, Transient);
        assert_eq!(for_status(None, 409).unwrap().class, Permanent);
    }
}
