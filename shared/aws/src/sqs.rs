//! Delivery queues in SQS: one standard queue per connector kind, each with a dead-letter
//! queue by redrive policy (set up in infra/). Messages are small JSON references.

use async_trait::async_trait;
use aws_sdk_sqs::operation::change_message_visibility::ChangeMessageVisibilityError;
use aws_sdk_sqs::operation::delete_message::DeleteMessageError;
use aws_sdk_sqs::types::{
    MessageSystemAttributeName, QueueAttributeName, SendMessageBatchRequestEntry,
};
use std::collections::HashMap;
use std::time::Duration;
use testrelay_domain::config::ConnectorKind;
use testrelay_domain::ports::{
    Clock, DeadLetter, DeadLetterStore, DeliveryMessage, DeliveryQueue, Listed, QueueConsumer,
    QueueDepth, QueueStats, Received, StoreError, SystemClock, rfc3339,
};

const BACKEND: &str = "SQS";
/// SQS caps visibility timeouts at 12 hours.
const MAX_VISIBILITY: Duration = Duration::from_secs(12 * 60 * 60);
/// SQS caps message delays at 15 minutes.
const MAX_DELAY: Duration = Duration::from_secs(15 * 60);
/// Listing dead letters hides them this long (their handles stay valid for a redrive).
const LIST_VISIBILITY: i32 = 30;

fn err(e: impl std::error::Error) -> StoreError {
    StoreError::new(BACKEND, aws_sdk_sqs::error::DisplayErrorContext(e))
}

/// A message body SQS accepts. SQS refuses characters outside `#x9 | #xA | #xD | #x20-#xD7FF
/// | #xE000-#xFFFD | #x10000-#x10FFFF` (`InvalidMessageContents`); serde_json escapes the
/// control characters, but writes U+FFFE and U+FFFF (which a vendor's error text may carry
/// into a dead letter's reason) as they are, so those become `\uFFFE` / `\uFFFF` escapes:
/// the same JSON value, in characters SQS takes.
fn body(value: &impl serde::Serialize) -> String {
    let json = serde_json::to_string(value).expect("serialisable");
    if !json.contains(['\u{FFFE}', '\u{FFFF}']) {
        return json;
    }
    let mut out = String::with_capacity(json.len() + 16);
    for c in json.chars() {
        match c {
            '\u{FFFE}' => out.push_str("\\uFFFE"),
            '\u{FFFF}' => out.push_str("\\uFFFF"),
            c => out.push(c),
        }
    }
    out
}

/// Settling with a receipt handle that is no longer the message's latest: AWS answers
/// success and may leave the message to whoever received it since (its DeleteMessage
/// documentation), other engines answer `ReceiptHandleIsInvalid` (seen on MiniStack). Either
/// way the message is settled by its current holder or comes back: nothing to report.
fn stale_receipt<T, E, R>(
    result: Result<T, aws_sdk_sqs::error::SdkError<E, R>>,
    stale: impl Fn(&E) -> bool,
) -> Result<(), StoreError>
where
    E: std::error::Error + 'static,
    R: std::fmt::Debug,
{
    match result {
        Ok(_) => Ok(()),
        Err(e) if e.as_service_error().is_some_and(&stale) => {
            tracing::debug!("settled with a stale receipt handle: left to its current holder");
            Ok(())
        }
        Err(e) => Err(err(e)),
    }
}

#[derive(Clone)]
pub struct SqsQueue {
    client: aws_sdk_sqs::Client,
    urls: HashMap<ConnectorKind, String>,
}

impl SqsQueue {
    pub fn new(sdk: &aws_config::SdkConfig, urls: HashMap<ConnectorKind, String>) -> Self {
        SqsQueue {
            client: aws_sdk_sqs::Client::new(sdk),
            urls,
        }
    }

    pub fn client(&self) -> &aws_sdk_sqs::Client {
        &self.client
    }

    fn url(&self, kind: ConnectorKind) -> Result<&str, StoreError> {
        self.urls.get(&kind).map(String::as_str).ok_or_else(|| {
            StoreError::new(
                BACKEND,
                format!("no queue configured for {}", kind.as_str()),
            )
        })
    }
}

#[async_trait]
impl DeliveryQueue for SqsQueue {
    async fn enqueue(&self, messages: &[DeliveryMessage]) -> Result<(), StoreError> {
        let mut by_kind: HashMap<ConnectorKind, Vec<&DeliveryMessage>> = HashMap::new();
        for m in messages {
            by_kind.entry(m.kind).or_default().push(m);
        }
        for (kind, msgs) in by_kind {
            let url = self.url(kind)?;
            for chunk in msgs.chunks(10) {
                let entries = chunk
                    .iter()
                    .enumerate()
                    .map(|(i, m)| {
                        SendMessageBatchRequestEntry::builder()
                            .id(i.to_string())
                            .message_body(body(m))
                            .build()
                            .map_err(err)
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                let out = self
                    .client
                    .send_message_batch()
                    .queue_url(url)
                    .set_entries(Some(entries))
                    .send()
                    .await
                    .map_err(err)?;
                if let Some(f) = out.failed.first() {
                    return Err(StoreError::new(
                        BACKEND,
                        format!(
                            "{} of {} messages refused: {}",
                            out.failed.len(),
                            chunk.len(),
                            f.code
                        ),
                    ));
                }
            }
        }
        Ok(())
    }

    async fn enqueue_after(
        &self,
        message: &DeliveryMessage,
        delay: Duration,
    ) -> Result<(), StoreError> {
        let mut message = message.clone();
        // Longer than SQS can delay: hop through the queue until `not_before_ms`.
        message.not_before_ms =
            (delay > MAX_DELAY).then(|| SystemClock.now_ms() + delay.as_millis() as u64);
        self.client
            .send_message()
            .queue_url(self.url(message.kind)?)
            .message_body(body(&message))
            .delay_seconds(delay.min(MAX_DELAY).as_secs() as i32)
            .send()
            .await
            .map_err(err)?;
        Ok(())
    }
}

#[async_trait]
impl QueueConsumer for SqsQueue {
    async fn receive(
        &self,
        kind: ConnectorKind,
        max: usize,
        visibility: Duration,
    ) -> Result<Vec<Received>, StoreError> {
        let out = self
            .client
            .receive_message()
            .queue_url(self.url(kind)?)
            .max_number_of_messages(max.clamp(1, 10) as i32)
            .visibility_timeout(visibility.min(MAX_VISIBILITY).as_secs() as i32)
            .message_system_attribute_names(MessageSystemAttributeName::ApproximateReceiveCount)
            .send()
            .await
            .map_err(err)?;
        let mut received = Vec::new();
        for m in out.messages.unwrap_or_default() {
            let receipt = m.receipt_handle.clone().unwrap_or_default();
            let count = m
                .attributes
                .as_ref()
                .and_then(|a| a.get(&MessageSystemAttributeName::ApproximateReceiveCount))
                .and_then(|c| c.parse().ok())
                .unwrap_or(1);
            match m
                .body
                .as_deref()
                .map(serde_json::from_str::<DeliveryMessage>)
            {
                Some(Ok(message)) => received.push(Received {
                    message,
                    receipt,
                    receive_count: count,
                }),
                // Left alone, it goes to the dead-letter queue after maxReceiveCount.
                _ => tracing::error!(message_id = ?m.message_id, "unreadable delivery message"),
            }
        }
        Ok(received)
    }

    async fn ack(&self, kind: ConnectorKind, receipt: &str) -> Result<(), StoreError> {
        let result = self
            .client
            .delete_message()
            .queue_url(self.url(kind)?)
            .receipt_handle(receipt)
            .send()
            .await;
        stale_receipt(result, DeleteMessageError::is_receipt_handle_is_invalid)
    }

    async fn retry_later(
        &self,
        kind: ConnectorKind,
        receipt: &str,
        delay: Duration,
    ) -> Result<(), StoreError> {
        let result = self
            .client
            .change_message_visibility()
            .queue_url(self.url(kind)?)
            .receipt_handle(receipt)
            .visibility_timeout(delay.min(MAX_VISIBILITY).as_secs() as i32)
            .send()
            .await;
        stale_receipt(result, |e: &ChangeMessageVisibilityError| {
            e.is_receipt_handle_is_invalid() || e.is_message_not_inflight()
        })
    }
}

/// The dead-letter queue of each delivery queue. It holds two kinds of bodies: dead letters
/// testrelay wrote (with the reason) and raw delivery messages SQS moved there after
/// `maxReceiveCount` receives (a crash loop or an unreadable message).
#[derive(Clone)]
pub struct SqsDeadLetters {
    client: aws_sdk_sqs::Client,
    urls: HashMap<ConnectorKind, String>,
}

impl SqsDeadLetters {
    pub fn new(sdk: &aws_config::SdkConfig, urls: HashMap<ConnectorKind, String>) -> Self {
        SqsDeadLetters {
            client: aws_sdk_sqs::Client::new(sdk),
            urls,
        }
    }

    fn url(&self, kind: ConnectorKind) -> Result<&str, StoreError> {
        self.urls.get(&kind).map(String::as_str).ok_or_else(|| {
            StoreError::new(
                BACKEND,
                format!("no dead-letter queue for {}", kind.as_str()),
            )
        })
    }
}

/// Reads a DLQ body of either kind.
fn dead_letter_from(body: &str, receive_count: Option<&str>) -> Option<DeadLetter> {
    if let Ok(letter) = serde_json::from_str::<DeadLetter>(body) {
        return Some(letter);
    }
    let message = serde_json::from_str::<DeliveryMessage>(body).ok()?;
    Some(DeadLetter {
        message,
        reason: format!(
            "moved to the dead-letter queue by SQS after {} receives (a crash or a store outage)",
            receive_count.unwrap_or("?")
        ),
        attempts: 0,
        last_status: None,
        at: rfc3339(SystemClock.now_ms()),
    })
}

#[async_trait]
impl DeadLetterStore for SqsDeadLetters {
    async fn put(&self, letter: &DeadLetter) -> Result<(), StoreError> {
        self.client
            .send_message()
            .queue_url(self.url(letter.message.kind)?)
            .message_body(body(letter))
            .send()
            .await
            .map_err(err)?;
        Ok(())
    }

    async fn list(&self, kind: ConnectorKind, max: usize) -> Result<Vec<Listed>, StoreError> {
        let url = self.url(kind)?;
        let mut out = Vec::new();
        while out.len() < max {
            let got = self
                .client
                .receive_message()
                .queue_url(url)
                .max_number_of_messages((max - out.len()).clamp(1, 10) as i32)
                .visibility_timeout(LIST_VISIBILITY)
                .message_system_attribute_names(MessageSystemAttributeName::ApproximateReceiveCount)
                .send()
                .await
                .map_err(err)?
                .messages
                .unwrap_or_default();
            if got.is_empty() {
                break;
            }
            for m in got {
                let count = m
                    .attributes
                    .as_ref()
                    .and_then(|a| a.get(&MessageSystemAttributeName::ApproximateReceiveCount))
                    .map(String::as_str);
                match m.body.as_deref().and_then(|b| dead_letter_from(b, count)) {
                    Some(letter) => out.push(Listed {
                        handle: m.receipt_handle.unwrap_or_default(),
                        letter,
                    }),
                    None => {
                        tracing::error!(message_id = ?m.message_id, "unreadable dead letter left in place")
                    }
                }
            }
        }
        Ok(out)
    }

    async fn remove(&self, kind: ConnectorKind, handle: &str) -> Result<(), StoreError> {
        let result = self
            .client
            .delete_message()
            .queue_url(self.url(kind)?)
            .receipt_handle(handle)
            .send()
            .await;
        stale_receipt(result, DeleteMessageError::is_receipt_handle_is_invalid)
    }
}

/// Queue depths from SQS queue attributes (SQS does not report the oldest message's age:
/// CloudWatch's `ApproximateAgeOfOldestMessage` alarm watches that).
#[derive(Clone)]
pub struct SqsStats {
    client: aws_sdk_sqs::Client,
    queues: HashMap<ConnectorKind, String>,
    dead_letter_queues: HashMap<ConnectorKind, String>,
}

impl SqsStats {
    pub fn new(
        sdk: &aws_config::SdkConfig,
        queues: HashMap<ConnectorKind, String>,
        dead_letter_queues: HashMap<ConnectorKind, String>,
    ) -> Self {
        SqsStats {
            client: aws_sdk_sqs::Client::new(sdk),
            queues,
            dead_letter_queues,
        }
    }

    /// Visible + in flight + delayed messages of one queue.
    async fn depth(&self, url: Option<&String>, kind: ConnectorKind) -> Result<u64, StoreError> {
        let url = url.ok_or_else(|| {
            StoreError::new(
                BACKEND,
                format!("no queue configured for {}", kind.as_str()),
            )
        })?;
        let out = self
            .client
            .get_queue_attributes()
            .queue_url(url)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesDelayed)
            .send()
            .await
            .map_err(err)?;
        Ok(out
            .attributes()
            .map(|a| a.values().filter_map(|v| v.parse::<u64>().ok()).sum())
            .unwrap_or(0))
    }
}

#[async_trait]
impl QueueStats for SqsStats {
    async fn stats(&self, kind: ConnectorKind, _now_ms: u64) -> Result<QueueDepth, StoreError> {
        Ok(QueueDepth {
            depth: self.depth(self.queues.get(&kind), kind).await?,
            oldest_age_ms: None,
            dead_letters: self.depth(self.dead_letter_queues.get(&kind), kind).await?,
        })
    }
}
