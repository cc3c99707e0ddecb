//! Fallback: when a connector's delivery of a run is dead-lettered, or is still failing
//! `fallback_after_minutes` after the run arrived (retrying, or waiting on its target's open
//! circuit breaker), a short notice goes
//! through the connector's `fallback` ("Slack delivery for web · main failed: <reason>; run
//! <link>"), once per run and connector.
//!
//! The notice is a delivery of the run like any other (named `<connector>.fallback`, with
//! `notice_for` and `via`), added to the run record by a conditional write, so the run's
//! status shows it and it is delivered exactly once in effect: its message may be enqueued
//! more than once (the dead-letter path enqueues it before marking the delivery
//! dead-lettered, so a crash between the two cannot lose it), and the worker delivers it
//! once. Notices never fall back themselves. It goes through the fallback connector's alert
//! message (the one health alerts use), titled with the notice.

use super::DeliveryService;
use crate::config::{Config, ConnectorKind};
use crate::health::{HealthAlert, Overall};
use crate::ids::ConnectorName;
use crate::ports::{
    Connector, Delivered, DeliveryContext, DeliveryMessage, DeliveryRecord, DeliveryState,
    RunRecord, StepError, rfc3339,
};
use std::collections::BTreeMap;

/// Where a connector's failures go.
#[derive(Debug, Clone)]
pub struct Fallback {
    pub via: ConnectorName,
    pub kind: ConnectorKind,
    pub after_ms: u64,
}

/// Every connector's fallback, from the configuration.
pub fn fallbacks(config: &Config) -> BTreeMap<ConnectorName, Fallback> {
    config
        .connectors
        .iter()
        .filter_map(|(name, cfg)| {
            let common = cfg.common();
            let via = common.fallback?;
            Some((
                name.clone(),
                Fallback {
                    via: via.clone(),
                    kind: config.connector_kind(via)?,
                    after_ms: common.fallback_after_minutes * 60_000,
                },
            ))
        })
        .collect()
}

/// The name of the notice's delivery in the run: `<connector>.fallback`.
pub fn notice_name(failed: &ConnectorName) -> ConnectorName {
    let base: String = failed.as_str().chars().take(55).collect();
    ConnectorName::parse(&format!("{base}.fallback")).expect("a connector name plus a suffix")
}

impl DeliveryService {
    /// Falls back from `msg`'s delivery, if its connector has a fallback: the notice's
    /// delivery added to the run (once) and its message enqueued. `always_enqueue`: enqueue
    /// even when the notice existed already (a retry of the dead-letter path).
    pub(super) async fn fall_back(
        &self,
        msg: &DeliveryMessage,
        always_enqueue: bool,
    ) -> Result<(), StepError> {
        let (Some(f), Some(queue), None) = (
            self.fallbacks.get(&msg.connector),
            &self.fallback_queue,
            &msg.via,
        ) else {
            return Ok(());
        };
        // While a target is down every deferral and retry of the delivery comes here: once
        // this process has enqueued its notice, they cost nothing more.
        let seen = (msg.run_id.clone(), msg.connector.clone());
        if !always_enqueue
            && self
                .fallen_back
                .lock()
                .expect("not poisoned")
                .contains(&seen)
        {
            return Ok(());
        }
        let mut record = DeliveryRecord::queued(notice_name(&msg.connector), f.kind);
        record.notice_for = Some(msg.connector.clone());
        record.via = Some(f.via.clone());
        let added = self.ports.runs.add_delivery(&msg.run_id, &record).await?;
        let pending = added
            || always_enqueue
            || self
                .ports
                .runs
                .get_run(&msg.run_id)
                .await?
                .and_then(|r| {
                    r.deliveries
                        .into_iter()
                        .find(|d| d.connector == record.connector)
                })
                .is_some_and(|d| d.state == DeliveryState::Queued);
        if pending {
            let mut message =
                DeliveryMessage::new(msg.run_id.clone(), record.connector.clone(), f.kind);
            message.via = Some(f.via.clone());
            message.accepted_ms = Some(self.ports.clock.now_ms());
            queue.enqueue(&[message]).await?;
            if added {
                tracing::warn!(run_id = %msg.run_id, connector = %msg.connector, via = %f.via, "falling back");
                self.ports
                    .metrics
                    .count("Fallbacks", &[("Connector", msg.connector.as_str())], 1);
            }
        }
        // Enqueued, or delivered already: nothing more to do for it in this process.
        let mut done = self.fallen_back.lock().expect("not poisoned");
        if done.len() >= 10_000 {
            done.clear();
        }
        done.insert(seen);
        Ok(())
    }

    /// Whether `msg`'s delivery, still failing or held by an open breaker, has waited long
    /// enough to fall back.
    pub(super) fn waited_too_long(&self, msg: &DeliveryMessage, now: u64) -> bool {
        self.fallbacks.get(&msg.connector).is_some_and(|f| {
            msg.via.is_none()
                && msg
                    .accepted_ms
                    .is_some_and(|at| now.saturating_sub(at) >= f.after_ms)
        })
    }

    /// Sends the notice of `failed`'s delivery of `record`'s run through `via`, once.
    pub(super) async fn notify(
        &self,
        via: &dyn Connector,
        record: &RunRecord,
        failed: &ConnectorName,
        ctx: &DeliveryContext,
        steps: &crate::delivery::steps::Steps,
    ) -> Result<Delivered, StepError> {
        let alert = notice(record, failed, &ctx.status_url, ctx.now_ms);
        let step = steps
            .once("notice", |_| async {
                via.alert(&alert).await.map(|()| "sent".to_string())
            })
            .await?;
        Ok(Delivered {
            status_code: None,
            external_ref: Some(format!("notice of {failed}'s delivery")),
            resumed: step.resumed,
        })
    }
}

/// The notice: `Slack delivery for web · main failed: <reason>; run <link>`.
pub fn notice(
    record: &RunRecord,
    failed: &ConnectorName,
    status_url: &str,
    now_ms: u64,
) -> HealthAlert {
    let delivery = record.deliveries.iter().find(|d| &d.connector == failed);
    let kind = delivery.map_or("", |d| d.kind.as_str());
    let what = match delivery.map(|d| d.state) {
        Some(DeliveryState::DeadLettered) => "failed",
        _ => "is held up",
    };
    let reason = delivery
        .and_then(|d| d.last_error.clone())
        .unwrap_or_else(|| "no reason recorded".into());
    let m = &record.meta;
    let mut context = vec![m.project.clone()];
    context.extend(m.branch.clone());
    let headline = format!(
        "{} delivery ({kind}) for {} {what}: {}; run {status_url}",
        failed,
        context.join(" · "),
        crate::report::render::cut(&reason, 300)
    );
    HealthAlert {
        status: Overall::Critical,
        previous: Overall::Healthy,
        at: rfc3339(now_ms),
        problems: vec![
            format!("{failed}: {}", crate::report::render::cut(&reason, 500)),
            format!("run: {status_url}"),
            crate::report::render::summary_counts(&record.summary),
        ],
        headline: Some(headline),
    }
}
