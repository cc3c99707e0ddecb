//! The query string of `POST /v1/reports`: run metadata and a pipeline part's place, each
//! checked, every unknown parameter refused (a typo must not drop metadata silently).

use crate::error::ApiError;
use crate::ids::ProjectName;
use crate::report::model::{Format, PipelineRef, RunMeta, Shard};

/// Run metadata from the query string, checked.
#[derive(Debug)]
pub(super) struct Params {
    pub meta: RunMeta,
    pub project: ProjectName,
    pub format: Option<Format>,
}

pub(super) fn parse_params(query: &str) -> Result<Params, ApiError> {
    let mut project = None;
    let mut meta = RunMeta {
        project: String::new(),
        branch: None,
        commit: None,
        build_url: None,
        environment: None,
        pipeline: None,
    };
    let mut format = None;
    let (mut pipeline, mut shard, mut attempt) = (None, None, None);
    for (k, v) in url::form_urlencoded::parse(query.as_bytes()) {
        let v = v.trim().to_string();
        let limited = |max: usize| -> Result<Option<String>, ApiError> {
            if v.len() > max {
                Err(ApiError::bad_request(format!(
                    "query parameter {k:?} is longer than {max} characters"
                )))
            } else {
                Ok(Some(v.clone()).filter(|v| !v.is_empty()))
            }
        };
        match k.as_ref() {
            "project" => {
                project = Some(ProjectName::parse(&v).map_err(|e| {
                    ApiError::bad_request(format!("query parameter \"project\": {e}"))
                })?)
            }
            "branch" => meta.branch = limited(256)?,
            "commit" => meta.commit = limited(128)?,
            "environment" => meta.environment = limited(64)?,
            "build_url" => {
                meta.build_url = limited(2048)?;
                if let Some(u) = &meta.build_url {
                    let ok = url::Url::parse(u)
                        .map(|u| matches!(u.scheme(), "http" | "https"))
                        .unwrap_or(false);
                    if !ok {
                        return Err(ApiError::bad_request(
                            "query parameter \"build_url\" must be an http(s) URL",
                        ));
                    }
                }
            }
            "format" => {
                format = Some(Format::from_name(&v).ok_or_else(|| {
                    ApiError::bad_request(format!(
                        "query parameter \"format\": unknown format {v:?} (use junit, ctrf or playwright, or leave it out to detect)"
                    ))
                })?)
            }
            "pipeline" => {
                crate::pipelines::check_id(&v)
                    .map_err(|e| ApiError::bad_request(format!("query parameter \"pipeline\": {e}")))?;
                pipeline = Some(v.clone());
            }
            "shard" => shard = Some(parse_shard(&v)?),
            "attempt" => {
                attempt = Some(v.parse::<u32>().ok().filter(|a| (1..=100).contains(a)).ok_or_else(
                    || ApiError::bad_request("query parameter \"attempt\" must be a number from 1 to 100"),
                )?)
            }
            other => {
                return Err(ApiError::bad_request(format!(
                    "unknown query parameter {other:?} (known: project, branch, commit, build_url, environment, format, pipeline, shard, attempt)"
                )));
            }
        }
    }
    let project =
        project.ok_or_else(|| ApiError::bad_request("query parameter \"project\" is required"))?;
    meta.project = project.to_string();
    meta.pipeline = match pipeline {
        Some(id) => Some(PipelineRef {
            id,
            shard,
            attempt: attempt.unwrap_or(1),
            completion: None,
        }),
        None if shard.is_some() || attempt.is_some() => {
            return Err(ApiError::bad_request(
                "query parameters \"shard\" and \"attempt\" need \"pipeline\"",
            ));
        }
        None => None,
    };
    Ok(Params {
        meta,
        project,
        format,
    })
}

/// `i/n`, 1 <= i <= n <= 1000.
fn parse_shard(v: &str) -> Result<Shard, ApiError> {
    let bad = || {
        ApiError::bad_request(format!(
            "query parameter \"shard\" must be <index>/<total> with 1 <= index <= total <= 1000, got {:?}",
            crate::report::parse::shown(v)
        ))
    };
    let (i, n) = v.split_once('/').ok_or_else(bad)?;
    let (index, total) = (
        i.trim().parse::<u32>().map_err(|_| bad())?,
        n.trim().parse::<u32>().map_err(|_| bad())?,
    );
    if index == 0 || index > total || total > 1000 {
        return Err(bad());
    }
    Ok(Shard { index, total })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_parameters_are_checked() {
        let p = parse_params("project=web&branch=main&commit=abc&build_url=https%3A%2F%2Fci%2F1")
            .unwrap();
        assert_eq!(p.meta.branch.as_deref(), Some("main"));
        assert_eq!(p.meta.build_url.as_deref(), Some("https://ci/1"));
        assert!(
            parse_params("branch=main")
                .unwrap_err()
                .detail
                .contains("\"project\" is required")
        );
        assert!(
            parse_params("project=web&projet=x")
                .unwrap_err()
                .detail
                .contains("unknown query parameter \"projet\"")
        );
        assert!(
            parse_params("project=web&format=tap")
                .unwrap_err()
                .detail
                .contains("unknown format")
        );
        assert!(parse_params("project=web&build_url=javascript:x").is_err());
        assert!(parse_params("project=../etc").is_err());
    }
}
