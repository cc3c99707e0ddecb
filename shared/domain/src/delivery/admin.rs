//! Operator endpoints behind admin API keys: list and redrive dead letters. The same calls
//! serve `testrelay deadletters list|redrive` for the local process and for AWS.

use crate::config::ConnectorKind;
use crate::error::ApiError;
use crate::ingest::IngestService;
use crate::ports::Listed;

/// At most this many dead letters per call.
pub const MAX_BATCH: usize = 100;

fn parse(kind: Option<&str>, max: Option<&str>) -> Result<(ConnectorKind, usize), ApiError> {
    let kind = match kind {
        None => ConnectorKind::Webhook,
        Some(k) => ConnectorKind::from_name(k)
            .ok_or_else(|| ApiError::bad_request(format!("unknown connector kind {k:?}")))?,
    };
    let max = match max {
        None => 50,
        Some(m) => m
            .parse::<usize>()
            .ok()
            .filter(|m| (1..=MAX_BATCH).contains(m))
            .ok_or_else(|| ApiError::bad_request(format!("max must be 1..={MAX_BATCH}")))?,
    };
    Ok((kind, max))
}

impl IngestService {
    fn admin(&self, authorization: Option<&str>) -> Result<(), ApiError> {
        let key = self.authenticate(authorization)?;
        if key.admin {
            Ok(())
        } else {
            Err(ApiError::forbidden(format!(
                "API key {:?} is not an admin key (set admin = true)",
                key.id.as_str()
            )))
        }
    }

    /// The latest health report (any valid API key); 404 before the first check.
    pub async fn health(
        &self,
        authorization: Option<&str>,
    ) -> Result<crate::health::HealthReport, ApiError> {
        let key = self.authenticate(authorization)?;
        let mut report = crate::health::HealthService::latest(self.ports.state.as_ref())
            .await
            .map_err(|e| ApiError::unavailable(e.to_string()))?
            .ok_or_else(|| ApiError::not_found("no health check has run yet".to_string()))?;
        // A key limited to some projects sees their connectors only, and the status they
        // make; admin keys and keys for every project see all.
        if let (false, Some(projects)) = (key.admin, &key.projects) {
            let visible: std::collections::HashSet<_> = projects
                .iter()
                .filter_map(|p| self.config.projects.get(p))
                .flat_map(|p| p.connectors.iter())
                .collect();
            report.connectors.retain(|c| visible.contains(&c.connector));
            report.status = crate::health::overall(&report.connectors, &report.system);
        }
        Ok(report)
    }

    /// Dead letters of `kind` (default webhook), up to `max` (default 50).
    pub async fn dead_letters(
        &self,
        authorization: Option<&str>,
        kind: Option<&str>,
        max: Option<&str>,
    ) -> Result<Vec<Listed>, ApiError> {
        self.admin(authorization)?;
        let (kind, max) = parse(kind, max)?;
        self.ports
            .dead_letters
            .list(kind, max)
            .await
            .map_err(|e| ApiError::unavailable(e.to_string()))
    }

    /// Moves up to `max` dead letters back to their queue; returns how many.
    pub async fn redrive(
        &self,
        authorization: Option<&str>,
        kind: Option<&str>,
        max: Option<&str>,
    ) -> Result<usize, ApiError> {
        self.admin(authorization)?;
        let (kind, max) = parse(kind, max)?;
        let n = crate::delivery::redrive(
            self.ports.dead_letters.as_ref(),
            self.ports.queue.as_ref(),
            kind,
            max,
        )
        .await
        .map_err(|e| ApiError::unavailable(e.to_string()))?;
        tracing::info!(kind = kind.as_str(), redriven = n, "dead letters redriven");
        Ok(n)
    }
}
