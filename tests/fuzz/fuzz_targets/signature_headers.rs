//! Every signature-header parser, and full verification for every scheme, on arbitrary
//! header values and bodies: nothing may panic, and nothing but the genuine signature may
//! verify.

#![no_main]

use libfuzzer_sys::fuzz_target;
use testrelay_domain::ingest::signatures::{
    Algorithm, Encoding, Headers, HmacScheme, HookSecret, SchemeName, parse_generic,
    parse_github, parse_slack, parse_standard, parse_stripe, parse_timestamp, verify,
};

struct Any<'a>(&'a str);

impl Headers for Any<'_> {
    /// Every header the schemes read has the fuzzed value.
    fn get(&self, _: &str) -> Option<&str> {
        Some(self.0)
    }
}

fuzz_target!(|data: &[u8]| {
    // The first line is the header value, the rest the body.
    let split = data.iter().position(|&b| b == b'\n').unwrap_or(data.len());
    let Ok(value) = std::str::from_utf8(&data[..split]) else {
        return;
    };
    let body = data.get(split + 1..).unwrap_or(&[]);
    let _ = parse_github(value);
    let _ = parse_standard(value);
    let _ = parse_slack(value);
    let _ = parse_stripe(value);
    let _ = parse_timestamp(value);
    for encoding in [Encoding::Hex, Encoding::Base64] {
        let _ = parse_generic(value, None, encoding);
        let _ = parse_generic(value, Some("sha256="), encoding);
    }
    let generic = HmacScheme {
        header: "x-signature".into(),
        algorithm: Algorithm::Sha512,
        encoding: Encoding::Base64,
        prefix: Some("sha512=".into()),
        timestamp_header: Some("x-timestamp".into()),
        id_header: Some("x-id".into()),
    };
    for scheme in [
        SchemeName::Github,
        SchemeName::StandardWebhooks,
        SchemeName::Slack,
        SchemeName::Stripe,
        SchemeName::Hmac,
    ] {
        let text = if scheme == SchemeName::StandardWebhooks {
            "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
        } else {
            "fuzz-secret"
        };
        let secret = HookSecret::new(&scheme, text).unwrap();
        let verified = verify(
            &scheme,
            Some(&generic),
            std::slice::from_ref(&secret),
            &Any(value),
            body,
            1_700_000_000,
            300,
        );
        // Forging an HMAC by chance is out of reach: any success is a bug.
        assert!(verified.is_err(), "{scheme:?} verified a fuzzed signature");
    }
});
