//! Run records and idempotency records in DynamoDB.
//!
//! Runs table (`pk`, `sk`): the run head at (`RUN#<id>`, `RUN`), one item per delivery at
//! (`RUN#<id>`, `DELIVERY#<connector>`). A run is created deliveries first, head last, each
//! put only if absent; a delivery update is one UpdateItem (state set, attempt appended with
//! `list_append`), so concurrent updates never lose an attempt.
//!
//! State table (`pk`): idempotency records at `IDEM#<key>`, with a `ttl` attribute (epoch
//! seconds) for DynamoDB's expiry. DynamoDB deletes expired items late (and moto never),
//! so every read checks `expires_at` itself.

use async_trait::async_trait;
use aws_sdk_dynamodb::operation::delete_item::DeleteItemError;
use aws_sdk_dynamodb::operation::put_item::PutItemError;
use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValue, ReturnValuesOnConditionCheckFailure};
use std::collections::HashMap;
use testrelay_domain::ids::{ConnectorName, RunId};
use testrelay_domain::ports::{
    Claim, Created, DeliveryRecord, DeliveryState, DeliveryUpdate, IdempotencyStore, RunRecord,
    RunStore, StateStore, StoreError, Versioned,
};

const BACKEND: &str = "DynamoDB";
type Item = HashMap<String, AttributeValue>;

fn err(e: impl std::error::Error) -> StoreError {
    StoreError::new(BACKEND, aws_sdk_dynamodb::error::DisplayErrorContext(e))
}

fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

fn n(v: u64) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

fn get_s<'a>(item: &'a Item, key: &str) -> Option<&'a str> {
    item.get(key)
        .and_then(|v| v.as_s().ok())
        .map(String::as_str)
}

fn get_n(item: &Item, key: &str) -> Option<u64> {
    item.get(key)
        .and_then(|v| v.as_n().ok())
        .and_then(|v| v.parse().ok())
}

fn corrupt(what: &str) -> StoreError {
    StoreError::new(BACKEND, format!("malformed item: {what}"))
}

/// A JSON string for a serde enum variant such as `DeliveryState::Queued` -> "queued".
fn enum_str<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_value(v)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}

fn enum_from<T: serde::de::DeserializeOwned>(s: &str) -> Result<T, StoreError> {
    serde_json::from_value(serde_json::Value::String(s.to_string())).map_err(|_| corrupt(s))
}

fn run_pk(id: &RunId) -> String {
    format!("RUN#{id}")
}

fn delivery_sk(connector: &ConnectorName) -> String {
    format!("DELIVERY#{connector}")
}

#[derive(Clone)]
pub struct DynamoRunStore {
    client: aws_sdk_dynamodb::Client,
    table: String,
    /// Run items get a `ttl` (epoch seconds) this far ahead, for the table's TTL to delete
    /// them with their report bodies (the template passes `ReportRetentionDays`).
    retention: Option<std::time::Duration>,
}

impl DynamoRunStore {
    pub fn new(sdk: &aws_config::SdkConfig, table: impl Into<String>) -> Self {
        DynamoRunStore {
            client: aws_sdk_dynamodb::Client::new(sdk),
            table: table.into(),
            retention: None,
        }
    }

    /// Runs written from now on expire `retention` after they were accepted.
    pub fn with_retention(mut self, retention: std::time::Duration) -> Self {
        self.retention = Some(retention);
        self
    }

    /// `item` with its `ttl`, when runs expire.
    fn expiring(&self, mut item: Item) -> Item {
        if let Some(r) = self.retention {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default();
            item.insert("ttl".into(), n((now + r).as_secs()));
        }
        item
    }

    pub fn client(&self) -> &aws_sdk_dynamodb::Client {
        &self.client
    }

    /// Puts `item` unless an item with its key exists; whether it wrote.
    async fn put_if_absent(&self, item: Item) -> Result<bool, StoreError> {
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(pk)")
            .send()
            .await;
        match result {
            Ok(_) => Ok(true),
            Err(e) => match e.as_service_error() {
                Some(PutItemError::ConditionalCheckFailedException(_)) => Ok(false),
                _ => Err(err(e)),
            },
        }
    }
}

/// Where deliveries added after the run was created sort: after every delivery it was
/// created with.
const ADDED_POSITION: usize = 10_000;

fn delivery_item(pk: &str, position: usize, d: &DeliveryRecord) -> Result<Item, StoreError> {
    let mut item = Item::from([
        ("pk".into(), s(pk)),
        ("sk".into(), s(delivery_sk(&d.connector))),
        ("position".into(), n(position as u64)),
        ("connector".into(), s(d.connector.as_str())),
        ("kind".into(), s(d.kind.as_str())),
        ("state".into(), s(enum_str(&d.state))),
        ("generation".into(), n(d.generation as u64)),
        ("redrive_from".into(), n(d.redrive_from as u64)),
    ]);
    if !d.attempts.is_empty() {
        let attempts = d
            .attempts
            .iter()
            .map(|a| {
                serde_json::to_string(a)
                    .map(s)
                    .map_err(|e| StoreError::new(BACKEND, e))
            })
            .collect::<Result<Vec<_>, _>>()?;
        item.insert("attempts".into(), AttributeValue::L(attempts));
    }
    for (k, v) in [
        ("next_attempt_at", &d.next_attempt_at),
        ("last_error", &d.last_error),
        ("external_ref", &d.external_ref),
    ] {
        if let Some(v) = v {
            item.insert(k.into(), s(v.clone()));
        }
    }
    for (k, v) in [("notice_for", &d.notice_for), ("via", &d.via)] {
        if let Some(v) = v {
            item.insert(k.into(), s(v.as_str()));
        }
    }
    Ok(item)
}

fn delivery_from(item: &Item) -> Result<(u64, DeliveryRecord), StoreError> {
    let connector =
        ConnectorName::parse(get_s(item, "connector").ok_or_else(|| corrupt("connector"))?)
            .map_err(|e| corrupt(&e))?;
    let kind =
        testrelay_domain::config::ConnectorKind::from_name(get_s(item, "kind").unwrap_or(""))
            .ok_or_else(|| corrupt("kind"))?;
    let state = enum_from(get_s(item, "state").ok_or_else(|| corrupt("state"))?)?;
    let attempts = match item.get("attempts") {
        Some(AttributeValue::L(list)) => list
            .iter()
            .map(|v| {
                let text = v.as_s().map_err(|_| corrupt("attempt"))?;
                serde_json::from_str(text).map_err(|_| corrupt("attempt"))
            })
            .collect::<Result<Vec<_>, _>>()?,
        _ => Vec::new(),
    };
    let opt = |k: &str| get_s(item, k).map(str::to_string);
    Ok((
        get_n(item, "position").unwrap_or(0),
        DeliveryRecord {
            connector,
            kind,
            state,
            attempts,
            next_attempt_at: opt("next_attempt_at"),
            last_error: opt("last_error"),
            external_ref: opt("external_ref"),
            generation: get_n(item, "generation").unwrap_or(0) as u32,
            redrive_from: get_n(item, "redrive_from").unwrap_or(0) as u32,
            notice_for: get_s(item, "notice_for").and_then(|c| ConnectorName::parse(c).ok()),
            via: get_s(item, "via").and_then(|c| ConnectorName::parse(c).ok()),
        },
    ))
}

#[async_trait]
impl RunStore for DynamoRunStore {
    /// Deliveries first, each only if absent, then the head only if absent: a run is
    /// visible (has a head) only once all its deliveries exist, a retried request never
    /// resets a delivery's progress, and no transaction is needed (half the write cost).
    async fn create_run(&self, run: &RunRecord) -> Result<Created, StoreError> {
        let pk = run_pk(&run.run_id);
        for (i, d) in run.deliveries.iter().enumerate() {
            self.put_if_absent(self.expiring(delivery_item(&pk, i, d)?))
                .await?;
        }
        let mut head = run.clone();
        head.deliveries.clear();
        let head_item = Item::from([
            ("pk".into(), s(&pk)),
            ("sk".into(), s("RUN")),
            ("project".into(), s(&run.meta.project)),
            (
                "record".into(),
                s(serde_json::to_string(&head).map_err(|e| StoreError::new(BACKEND, e))?),
            ),
        ]);
        if self.put_if_absent(self.expiring(head_item)).await? {
            Ok(Created::Created)
        } else {
            Ok(Created::AlreadyExists)
        }
    }

    async fn get_run(&self, id: &RunId) -> Result<Option<RunRecord>, StoreError> {
        let mut items = Vec::new();
        let mut start = None;
        loop {
            let out = self
                .client
                .query()
                .table_name(&self.table)
                .key_condition_expression("pk = :pk")
                .expression_attribute_values(":pk", s(run_pk(id)))
                .consistent_read(true)
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(err)?;
            items.extend(out.items.unwrap_or_default());
            match out.last_evaluated_key {
                Some(k) if !k.is_empty() => start = Some(k),
                _ => break,
            }
        }
        let Some(head) = items.iter().find(|i| get_s(i, "sk") == Some("RUN")) else {
            return Ok(None);
        };
        let mut record: RunRecord =
            serde_json::from_str(get_s(head, "record").ok_or_else(|| corrupt("record"))?)
                .map_err(|_| corrupt("record"))?;
        let mut deliveries = items
            .iter()
            .filter(|i| get_s(i, "sk").is_some_and(|sk| sk.starts_with("DELIVERY#")))
            .map(delivery_from)
            .collect::<Result<Vec<_>, _>>()?;
        deliveries.sort_by_key(|(pos, _)| *pos);
        record.deliveries = deliveries.into_iter().map(|(_, d)| d).collect();
        Ok(Some(record))
    }

    async fn add_delivery(&self, id: &RunId, d: &DeliveryRecord) -> Result<bool, StoreError> {
        use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
        use aws_sdk_dynamodb::types::{ConditionCheck, Put, TransactWriteItem};
        let pk = run_pk(id);
        // After the run's own deliveries (which hold positions from 0); only to a run that
        // exists, and only once: one transaction of both conditions.
        let item = self.expiring(delivery_item(&pk, ADDED_POSITION, d)?);
        let run_exists = ConditionCheck::builder()
            .table_name(&self.table)
            .key("pk", s(&pk))
            .key("sk", s("RUN"))
            .condition_expression("attribute_exists(pk)")
            .build()
            .map_err(|e| StoreError::new(BACKEND, e))?;
        let put = Put::builder()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(pk)")
            .build()
            .map_err(|e| StoreError::new(BACKEND, e))?;
        let result = self
            .client
            .transact_write_items()
            .transact_items(
                TransactWriteItem::builder()
                    .condition_check(run_exists)
                    .build(),
            )
            .transact_items(TransactWriteItem::builder().put(put).build())
            .send()
            .await;
        match result {
            Ok(_) => Ok(true),
            Err(e) => match e.as_service_error() {
                // A condition failed: no such run, or the delivery exists.
                Some(TransactWriteItemsError::TransactionCanceledException(c))
                    if c.cancellation_reasons()
                        .iter()
                        .any(|r| r.code() == Some("ConditionalCheckFailed")) =>
                {
                    Ok(false)
                }
                _ => Err(err(e)),
            },
        }
    }

    async fn update_delivery(
        &self,
        id: &RunId,
        connector: &ConnectorName,
        update: &DeliveryUpdate,
    ) -> Result<(), StoreError> {
        let mut sets = vec!["#state = :state".to_string()];
        let mut removes = Vec::new();
        let mut req = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", s(run_pk(id)))
            .key("sk", s(delivery_sk(connector)))
            // Delivered is final: a late update of a delivered delivery changes nothing; and
            // only a redrive takes a delivery out of the dead-letter state.
            .condition_expression(
                if update.redrive.is_none() && update.state != DeliveryState::DeadLettered {
                    "attribute_exists(pk) AND #state <> :delivered AND #state <> :dead_lettered"
                } else {
                    "attribute_exists(pk) AND #state <> :delivered"
                },
            )
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .expression_attribute_names("#state", "state")
            .expression_attribute_values(":state", s(enum_str(&update.state)))
            .expression_attribute_values(":delivered", s(enum_str(&DeliveryState::Delivered)));
        if update.redrive.is_none() && update.state != DeliveryState::DeadLettered {
            req = req.expression_attribute_values(
                ":dead_lettered",
                s(enum_str(&DeliveryState::DeadLettered)),
            );
        }
        if let Some(r) = update.redrive {
            sets.push("generation = :generation, redrive_from = :redrive_from".into());
            req = req
                .expression_attribute_values(":generation", n(r.generation as u64))
                .expression_attribute_values(":redrive_from", n(r.redrive_from as u64));
        }
        if let Some(a) = &update.attempt {
            sets.push("attempts = list_append(if_not_exists(attempts, :empty), :attempt)".into());
            let json = serde_json::to_string(a).map_err(|e| StoreError::new(BACKEND, e))?;
            req = req
                .expression_attribute_values(":empty", AttributeValue::L(vec![]))
                .expression_attribute_values(":attempt", AttributeValue::L(vec![s(json)]));
        }
        for (attr, value, clears) in [
            ("next_attempt_at", &update.next_attempt_at, true),
            ("last_error", &update.last_error, true),
            ("external_ref", &update.external_ref, false),
        ] {
            match value {
                Some(v) => {
                    sets.push(format!("{attr} = :{attr}"));
                    req = req.expression_attribute_values(format!(":{attr}"), s(v.clone()));
                }
                None if clears => removes.push(attr),
                None => {}
            }
        }
        let mut expr = format!("SET {}", sets.join(", "));
        if !removes.is_empty() {
            expr.push_str(&format!(" REMOVE {}", removes.join(", ")));
        }
        match req.update_expression(expr).send().await {
            Ok(_) => Ok(()),
            Err(e) => match e.as_service_error() {
                Some(UpdateItemError::ConditionalCheckFailedException(c)) if c.item().is_some() => {
                    Ok(())
                }
                Some(UpdateItemError::ConditionalCheckFailedException(_)) => Err(StoreError::new(
                    BACKEND,
                    format!("no delivery {connector} for run {id}"),
                )),
                _ => Err(err(e)),
            },
        }
    }
}

#[derive(Clone)]
pub struct DynamoIdempotencyStore {
    client: aws_sdk_dynamodb::Client,
    table: String,
}

impl DynamoIdempotencyStore {
    pub fn new(sdk: &aws_config::SdkConfig, table: impl Into<String>) -> Self {
        DynamoIdempotencyStore {
            client: aws_sdk_dynamodb::Client::new(sdk),
            table: table.into(),
        }
    }

    async fn current(&self, pk: &str) -> Result<Option<Item>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("pk", s(pk))
            .consistent_read(true)
            .send()
            .await
            .map_err(err)?;
        Ok(out.item)
    }
}

fn idem_pk(key: &str) -> String {
    format!("IDEM#{key}")
}

/// What a live record that blocked a claim means for the caller.
fn blocked_by(item: &Item) -> Claim {
    let fingerprint = get_s(item, "fingerprint").unwrap_or_default().to_string();
    if get_s(item, "status") == Some("completed") {
        Claim::Completed {
            fingerprint,
            response: get_s(item, "response").unwrap_or_default().to_string(),
        }
    } else {
        Claim::InProgress { fingerprint }
    }
}

#[async_trait]
impl IdempotencyStore for DynamoIdempotencyStore {
    async fn claim(
        &self,
        key: &str,
        fingerprint: &str,
        now_ms: u64,
        lease_until_ms: u64,
        expires_at_ms: u64,
    ) -> Result<Claim, StoreError> {
        let pk = idem_pk(key);
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .item("pk", s(&pk))
            .item("fingerprint", s(fingerprint))
            .item("status", s("in_progress"))
            .item("lease_until", n(lease_until_ms))
            .item("expires_at", n(expires_at_ms))
            .item("ttl", n(expires_at_ms / 1000))
            .condition_expression(
                "attribute_not_exists(pk) OR expires_at <= :now OR (#status = :in_progress AND lease_until <= :now)",
            )
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":now", n(now_ms))
            .expression_attribute_values(":in_progress", s("in_progress"))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .return_values(ReturnValue::AllOld)
            .send()
            .await;
        match result {
            Ok(out) => {
                // The replaced record, if any: an unexpired one still in progress had a
                // holder whose lease ran out.
                let taken_over = out.attributes().is_some_and(|old| {
                    old.get("status")
                        .and_then(|v| v.as_s().ok())
                        .map(String::as_str)
                        == Some("in_progress")
                        && old
                            .get("expires_at")
                            .and_then(|v| v.as_n().ok())
                            .and_then(|n| n.parse::<u64>().ok())
                            .is_some_and(|e| e > now_ms)
                });
                Ok(Claim::Acquired { taken_over })
            }
            Err(e) => match e.as_service_error() {
                Some(PutItemError::ConditionalCheckFailedException(c)) => {
                    let item = match c.item() {
                        Some(item) => item.clone(),
                        None => self
                            .current(&pk)
                            .await?
                            .ok_or_else(|| corrupt("vanished idempotency record"))?,
                    };
                    Ok(blocked_by(&item))
                }
                _ => Err(err(e)),
            },
        }
    }

    async fn complete(
        &self,
        key: &str,
        fingerprint: &str,
        response: &str,
        expires_at_ms: u64,
    ) -> Result<(), StoreError> {
        self.client
            .put_item()
            .table_name(&self.table)
            .item("pk", s(idem_pk(key)))
            .item("fingerprint", s(fingerprint))
            .item("status", s("completed"))
            .item("lease_until", n(0))
            .item("expires_at", n(expires_at_ms))
            .item("ttl", n(expires_at_ms / 1000))
            .item("response", s(response))
            .send()
            .await
            .map_err(err)?;
        Ok(())
    }

    async fn release(&self, key: &str) -> Result<(), StoreError> {
        let result = self
            .client
            .delete_item()
            .table_name(&self.table)
            .key("pk", s(idem_pk(key)))
            .condition_expression("#status = :in_progress")
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":in_progress", s("in_progress"))
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(e) => match e.as_service_error() {
                Some(DeleteItemError::ConditionalCheckFailedException(_)) => Ok(()),
                _ => Err(err(e)),
            },
        }
    }
}

/// Versioned documents in the state table at `STATE#<key>`, with attribute `version`.
#[derive(Clone)]
pub struct DynamoStateStore {
    client: aws_sdk_dynamodb::Client,
    table: String,
}

impl DynamoStateStore {
    pub fn new(sdk: &aws_config::SdkConfig, table: impl Into<String>) -> Self {
        DynamoStateStore {
            client: aws_sdk_dynamodb::Client::new(sdk),
            table: table.into(),
        }
    }
}

#[async_trait]
impl StateStore for DynamoStateStore {
    async fn load(&self, key: &str) -> Result<Option<Versioned>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("pk", s(format!("STATE#{key}")))
            .consistent_read(true)
            .send()
            .await
            .map_err(err)?;
        let Some(item) = out.item else {
            return Ok(None);
        };
        Ok(Some(Versioned {
            version: get_n(&item, "version").ok_or_else(|| corrupt("version"))?,
            value: get_s(&item, "value")
                .ok_or_else(|| corrupt("value"))?
                .to_string(),
        }))
    }

    async fn save(
        &self,
        key: &str,
        value: &str,
        expected: Option<u64>,
    ) -> Result<bool, StoreError> {
        let mut req = self
            .client
            .put_item()
            .table_name(&self.table)
            .item("pk", s(format!("STATE#{key}")))
            .item("version", n(expected.unwrap_or(0) + 1))
            .item("value", s(value));
        req = match expected {
            None => req.condition_expression("attribute_not_exists(pk)"),
            Some(v) => req
                .condition_expression("#version = :expected")
                .expression_attribute_names("#version", "version")
                .expression_attribute_values(":expected", n(v)),
        };
        match req.send().await {
            Ok(_) => Ok(true),
            Err(e) => match e.as_service_error() {
                Some(PutItemError::ConditionalCheckFailedException(_)) => Ok(false),
                _ => Err(err(e)),
            },
        }
    }
}
