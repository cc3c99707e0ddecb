//! A project's quarantine: tests whose failures never fail a verdict, each with why and who
//! put it there. One state-store document per project, changed by conditional writes.
//!
//! `GET /v1/projects/{p}/quarantine`, `PUT /v1/projects/{p}/quarantine/{test_id}` with
//! `{"reason": ".."}`, `DELETE /v1/projects/{p}/quarantine/{test_id}`.

use crate::error::ApiError;
use crate::ingest::IngestService;
use crate::ports::{StateStore, StoreError};
use serde::{Deserialize, Serialize};
use std::collections::HashSet;

/// Tests a project's quarantine holds at most (one state-store document: a DynamoDB item
/// holds 400 KB; 300 entries of a 300-byte reason and a 300-byte name stay well under it).
pub const MAX_ENTRIES: usize = 300;
pub const MAX_REASON: usize = 300;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Quarantined {
    pub test_id: String,
    /// The test's name as its history last saw it, when it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub reason: String,
    /// The API key that added it.
    pub added_by: String,
    pub added_at: String,
}

fn key(project: &str) -> String {
    format!("quarantine/{project}")
}

async fn read(
    state: &dyn StateStore,
    project: &str,
) -> Result<(Vec<Quarantined>, Option<u64>), StoreError> {
    let Some(v) = state.load(&key(project)).await? else {
        return Ok((Vec::new(), None));
    };
    let list = serde_json::from_str(&v.value)
        .map_err(|e| StoreError::new("state store", format!("quarantine unreadable: {e}")))?;
    Ok((list, Some(v.version)))
}

/// The quarantined test ids of `project`.
pub async fn ids(state: &dyn StateStore, project: &str) -> Result<HashSet<String>, StoreError> {
    Ok(read(state, project)
        .await?
        .0
        .into_iter()
        .map(|q| q.test_id)
        .collect())
}

/// A test id as the API takes it: 16 lowercase hex digits.
pub fn check_test_id(id: &str) -> Result<(), ApiError> {
    if id.len() == 16 && id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        Ok(())
    } else {
        Err(ApiError::bad_request(format!(
            "test id {:?}: must be 16 lowercase hex digits (as the history API and a run's changes list them)",
            crate::report::render::cut(id, 40)
        )))
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AddBody {
    reason: String,
}

impl IngestService {
    /// `GET /v1/projects/{p}/quarantine`.
    pub async fn quarantine(
        &self,
        authorization: Option<&str>,
        project: &str,
    ) -> Result<Vec<Quarantined>, ApiError> {
        let (project, _) = self.project_access(authorization, project)?;
        Ok(read(self.ports.state.as_ref(), project.as_str())
            .await
            .map_err(|e| super::api::unavailable(&e))?
            .0)
    }

    /// `PUT /v1/projects/{p}/quarantine/{test_id}` (idempotent: a second add updates the
    /// reason).
    pub async fn quarantine_add(
        &self,
        authorization: Option<&str>,
        project: &str,
        test_id: &str,
        body: &[u8],
    ) -> Result<Quarantined, ApiError> {
        let (project, by) = self.project_access(authorization, project)?;
        check_test_id(test_id)?;
        let body: AddBody = serde_json::from_slice(body).map_err(|e| {
            ApiError::bad_request(format!(
                "the body must be {{\"reason\": \"...\"}}: {}",
                crate::report::render::cut(&e.to_string(), 200)
            ))
        })?;
        let reason = body.reason.trim();
        if reason.is_empty() || reason.len() > MAX_REASON {
            return Err(ApiError::bad_request(format!(
                "reason: must be 1 to {MAX_REASON} bytes"
            )));
        }
        let name = self
            .test_name(project.as_str(), test_id)
            .await
            .map(|n| crate::report::render::cut(&n, 300));
        let entry = Quarantined {
            test_id: test_id.to_string(),
            name,
            reason: reason.to_string(),
            added_by: by,
            added_at: super::now(self.ports.clock.now_ms()),
        };
        self.change_quarantine(project.as_str(), |list| {
            list.retain(|q| q.test_id != entry.test_id);
            if list.len() >= MAX_ENTRIES {
                return Err(ApiError::bad_request(format!(
                    "the quarantine holds {MAX_ENTRIES} tests at most; remove some first"
                )));
            }
            list.push(entry.clone());
            Ok(())
        })
        .await?;
        Ok(entry)
    }

    /// `DELETE /v1/projects/{p}/quarantine/{test_id}`: 404 when it was not quarantined.
    pub async fn quarantine_remove(
        &self,
        authorization: Option<&str>,
        project: &str,
        test_id: &str,
    ) -> Result<(), ApiError> {
        let (project, _) = self.project_access(authorization, project)?;
        check_test_id(test_id)?;
        self.change_quarantine(project.as_str(), |list| {
            let before = list.len();
            list.retain(|q| q.test_id != test_id);
            if list.len() == before {
                return Err(ApiError::not_found(format!(
                    "test {test_id} is not quarantined"
                )));
            }
            Ok(())
        })
        .await
    }

    async fn change_quarantine(
        &self,
        project: &str,
        mut change: impl FnMut(&mut Vec<Quarantined>) -> Result<(), ApiError>,
    ) -> Result<(), ApiError> {
        let state = self.ports.state.as_ref();
        loop {
            let (mut list, version) = read(state, project)
                .await
                .map_err(|e| super::api::unavailable(&e))?;
            change(&mut list)?;
            let value = serde_json::to_string(&list).expect("serialisable");
            if state
                .save(&key(project), &value, version)
                .await
                .map_err(|e| super::api::unavailable(&e))?
            {
                return Ok(());
            }
        }
    }
}
