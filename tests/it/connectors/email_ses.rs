//! The SES transport against wiremock standing in for SES v2: the documented SendEmail
//! request (raw content, the envelope, the configuration set), one call per try (the SDK's
//! own retries are off), and SES's real error answers (`x-amzn-ErrorType` and a JSON
//! `message`) read as throttled, permanent or transient.

use base64::Engine as _;
use serde_json::json;
use std::time::Duration;
use testrelay_domain::config::SesConfig;
use testrelay_domain::ports::{ErrorClass, MailTransport, Outgoing};
use wiremock::matchers::{body_json, method, path, path_regex};
use wiremock::{Mock, MockServer, ResponseTemplate};

const OUTBOUND: &str = "/v2/email/outbound-emails";

async fn ses(server: &MockServer) -> testrelay_aws::SesMail {
    let sdk = testrelay_tests::aws::sdk_at(&server.uri()).await;
    let config = SesConfig {
        region: Some("eu-west-1".into()),
        configuration_set: Some("ci".into()),
    };
    testrelay_aws::SesMail::new(&sdk, &config, "ci@example.com")
}

fn to() -> Vec<String> {
    vec!["team@example.com".into(), "lead@example.com".into()]
}

const RAW: &[u8] = b"From: ci@example.com\r\nTo: team@example.com\r\nSubject: x\r\n\r\nbody\r\n";

#[tokio::test]
async fn send_email_is_the_documented_request_and_answers_the_message_id() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(OUTBOUND))
        .and(body_json(json!({
            "FromEmailAddress": "ci@example.com",
            "Destination": {"ToAddresses": ["team@example.com", "lead@example.com"]},
            "Content": {"Raw": {"Data": base64::engine::general_purpose::STANDARD.encode(RAW)}},
            "ConfigurationSetName": "ci"
        })))
        .respond_with(ResponseTemplate::new(200).set_body_json(
            json!({"MessageId": "0102018c1f2e3d4c-7a1b2c3d-4e5f-6a7b-8c9d-0e1f2a3b4c5d-000000"}),
        ))
        .expect(1)
        .mount(&server)
        .await;
    let t = ses(&server).await;
    assert_eq!(t.target(), "ses:eu-west-1");
    let id = t
        .send(&Outgoing {
            from: "ci@example.com",
            to: &to(),
            raw: RAW,
        })
        .await
        .unwrap();
    assert!(id.starts_with("0102018c1f2e3d4c-"), "{id}");
}

/// SES's answers, as it sends them, and how each is read; none is retried by the SDK.
#[tokio::test]
async fn real_ses_answers_are_read_as_ses_means_them() {
    for (status, error_type, message, class, pause) in [
        (
            429,
            "TooManyRequestsException",
            "Maximum sending rate exceeded.",
            ErrorClass::Throttled,
            Some(60),
        ),
        (
            400,
            "LimitExceededException",
            "Daily message quota exceeded.",
            ErrorClass::Throttled,
            Some(3600),
        ),
        (
            400,
            "MessageRejected",
            "Email address is not verified. The following identities failed the check in region EU-WEST-1: ci@example.com",
            ErrorClass::Permanent,
            None,
        ),
        (
            400,
            "SendingPausedException",
            "Sending is paused for this account. For more information, please check the AWS Service Health Dashboard.",
            ErrorClass::Permanent,
            None,
        ),
        (
            400,
            "MailFromDomainNotVerifiedException",
            "The MAIL FROM domain is not verified.",
            ErrorClass::Permanent,
            None,
        ),
        (
            404,
            "NotFoundException",
            "Configuration set <ci> does not exist.",
            ErrorClass::Permanent,
            None,
        ),
        (
            500,
            "InternalFailure",
            "An internal error occurred.",
            ErrorClass::Transient,
            None,
        ),
        (
            503,
            "ServiceUnavailable",
            "Service is unavailable.",
            ErrorClass::Transient,
            None,
        ),
    ] {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .and(path(OUTBOUND))
            .respond_with(
                ResponseTemplate::new(status)
                    .insert_header(
                        "x-amzn-ErrorType",
                        format!("{error_type}:http://internal.amazon.com/coral/com.amazon.sesv2/"),
                    )
                    .insert_header("x-amzn-RequestId", "5b1a2c3d-4e5f-6a7b-8c9d-0e1f2a3b4c5d")
                    .set_body_json(json!({"message": message})),
            )
            .expect(1)
            .mount(&server)
            .await;
        let e = ses(&server)
            .await
            .send(&Outgoing {
                from: "ci@example.com",
                to: &to(),
                raw: RAW,
            })
            .await
            .unwrap_err();
        assert_eq!(e.class, class, "{error_type}: {e:?}");
        assert_eq!(
            e.retry_after,
            pause.map(Duration::from_secs),
            "{error_type}: {e:?}"
        );
        assert!(
            e.detail.contains(error_type) && e.detail.contains(message),
            "{e:?}"
        );
        // `expect(1)`, checked when the server drops: one call, no SDK retry.
    }
}

#[tokio::test]
async fn the_probe_reads_the_senders_identity_then_its_domain() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path_regex(r"^/v2/email/identities/ci(@|%40)example\.com$"))
        .respond_with(
            ResponseTemplate::new(404)
                .insert_header("x-amzn-ErrorType", "NotFoundException")
                .set_body_json(
                    json!({"message": "Email identity <ci@example.com> does not exist."}),
                ),
        )
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/v2/email/identities/example.com"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "IdentityType": "DOMAIN", "FeedbackForwardingStatus": true,
            "VerifiedForSendingStatus": true, "VerificationStatus": "SUCCESS",
            "DkimAttributes": {"SigningEnabled": true, "Status": "SUCCESS", "Tokens": []},
            "Policies": {}, "Tags": []
        })))
        .expect(1)
        .mount(&server)
        .await;
    let p = ses(&server).await.probe().await.unwrap();
    assert!(p.check.contains("example.com"), "{p:?}");
}
