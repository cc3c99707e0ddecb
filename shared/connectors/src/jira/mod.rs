//! Jira: Xray Test Executions (`xray.rs`) and bugs for failing tests (`bugs.rs`).

mod bugs;
mod xray;

pub use bugs::fingerprint;

pub use xray::{Import, MAX_TEST_COMMENT, test_key, xray_import};

use crate::http::json;
use crate::{Base, Env, origin, parse_url};
use async_trait::async_trait;
use base64::Engine;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::{Value, json};
use std::sync::Arc;
use testrelay_domain::config::{ConnectorConfig, JiraConfig, JiraDeployment, XRAY_RATE};
use testrelay_domain::delivery::steps::Steps;
use testrelay_domain::ids::ConnectorName;
use testrelay_domain::ports::{
    Clock, Connector, Delivered, DeliveryContext, DeliveryError, Probe, StateStore, StepError,
};
use testrelay_domain::report::model::TestRun;

pub struct Jira {
    base: Base,
    name: ConnectorName,
    url: String,
    /// The whole `Authorization` value (it holds the token).
    auth: SecretString,
    c: JiraConfig,
    /// Xray Cloud: its own target (rate limit, breaker) and token.
    xray_cloud: Option<xray::XrayCloud>,
    /// Test keys found in Jira, and when the set was started (clock ms).
    known_tests: tokio::sync::Mutex<Option<(u64, std::collections::HashSet<String>)>>,
    state: Arc<dyn StateStore>,
    clock: Arc<dyn Clock>,
}

#[derive(Deserialize)]
struct Created {
    key: String,
}

impl Jira {
    pub fn new(
        name: &ConnectorName,
        cfg: &ConnectorConfig,
        c: &JiraConfig,
        token: SecretString,
        xray_credentials: Option<(SecretString, SecretString)>,
        env: &Env,
    ) -> Result<Self, String> {
        let url = parse_url(&c.url, "url")?;
        let auth = SecretString::from(match c.deployment {
            JiraDeployment::Cloud => {
                let email = c.email.as_deref().unwrap_or_default();
                let pair = format!("{email}:{}", token.expose_secret());
                format!(
                    "Basic {}",
                    base64::engine::general_purpose::STANDARD.encode(pair)
                )
            }
            JiraDeployment::DataCenter => format!("Bearer {}", token.expose_secret()),
        });
        let xray_cloud = match (&c.xray, c.deployment) {
            (Some(x), JiraDeployment::Cloud) => {
                let xray_url = parse_url(&x.url, "xray.url")?;
                let mut base =
                    Base::new(env.http.clone(), format!("xray:{}", origin(&xray_url)), cfg);
                base.limit.rate = Some(x.rate_limit.unwrap_or(XRAY_RATE));
                base.vendor = crate::answers::Vendor::XrayCloud;
                Some(xray::XrayCloud::new(base, xray_credentials))
            }
            _ => None,
        };
        Ok(Jira {
            base: Base::new(env.http.clone(), format!("jira:{}", origin(&url)), cfg),
            name: name.clone(),
            url: c.url.trim_end_matches('/').to_string(),
            auth,
            c: c.clone(),
            xray_cloud,
            known_tests: tokio::sync::Mutex::new(None),
            state: env.state.clone(),
            clock: env.clock.clone(),
        })
    }

    fn jira(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.base
            .http
            .client()
            .request(method, format!("{}{path}", self.url))
            .header(reqwest::header::AUTHORIZATION, self.auth.expose_secret())
            .header(reqwest::header::ACCEPT, "application/json")
    }

    async fn create_issue(&self, fields: Value) -> Result<String, DeliveryError> {
        let request = self
            .jira(reqwest::Method::POST, "/rest/api/2/issue")
            .json(&json!({ "fields": fields }));
        let created: Created = json(self.base.send(request).await?, "Jira").await?;
        Ok(created.key)
    }

    /// The key of an issue of this project carrying `label`, if Jira's search finds one.
    async fn find_labelled(&self, label: &str) -> Result<Option<String>, DeliveryError> {
        let jql = format!(
            "project = \"{}\" AND labels = \"{label}\"",
            self.c.project_key
        );
        let path = match self.c.deployment {
            JiraDeployment::Cloud => "/rest/api/3/search/jql",
            JiraDeployment::DataCenter => "/rest/api/2/search",
        };
        let request = self.jira(reqwest::Method::GET, path).query(&[
            ("jql", jql.as_str()),
            ("fields", "key"),
            ("maxResults", "1"),
        ]);
        let found: Value = json(self.base.send(request).await?, "Jira").await?;
        Ok(found["issues"][0]["key"].as_str().map(str::to_string))
    }
}

#[async_trait]
impl Connector for Jira {
    crate::basics!(Jira);

    fn other_targets(&self) -> Vec<&str> {
        self.xray_cloud.iter().map(|x| x.base.target()).collect()
    }

    async fn deliver(
        &self,
        run: &TestRun,
        ctx: &DeliveryContext,
        steps: &Steps,
    ) -> Result<Delivered, StepError> {
        let mut resumed = true;
        let mut refs = Vec::new();
        // A pipeline's parts are imported into its one Test Execution as they arrive; bugs
        // are filed from its merged result (a test that passed on a re-run is flaky, not a
        // bug).
        let pipeline = run.meta.pipeline.as_ref();
        let merged = pipeline.is_some_and(|p| p.is_merged());
        if self.c.xray.is_some() && !merged {
            let (r, xray_resumed) = self.deliver_xray(run, ctx, steps).await?;
            resumed &= xray_resumed;
            refs.push(r);
        }
        if let Some(bugs) = self
            .c
            .bugs
            .as_ref()
            .filter(|_| pipeline.is_none() || merged)
        {
            let filed = self.file_bugs(run, ctx, steps, bugs).await?;
            resumed &= filed.resumed;
            refs.push(filed.describe());
        }
        if refs.is_empty() {
            refs.push("bugs are filed from the pipeline's merged result".into());
        }
        Ok(Delivered {
            status_code: Some(200),
            external_ref: Some(format!("jira: {}", refs.join("; "))),
            resumed,
        })
    }

    async fn probe(&self) -> Result<Probe, DeliveryError> {
        crate::http::unlimited(async {
            let request = self.jira(reqwest::Method::GET, "/rest/api/2/myself");
            let me: Value = json(self.base.send(request).await?, "Jira").await?;
            if let (Some(cloud), Some(x)) = (&self.xray_cloud, &self.c.xray) {
                cloud
                    .bearer(x)
                    .await
                    .map_err(|e| e.from_target(cloud.base.target()))?;
            }
            Ok(Probe {
                check: "GET /rest/api/2/myself".into(),
                detail: me["displayName"].as_str().map(str::to_string),
            })
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use testrelay_domain::report::model::{Status, Suite, TestCase};

    #[test]
    fn test_keys_and_fingerprints() {
        assert_eq!(
            test_key(&TestCase::new("PROJ-12: logs in", Status::Passed)).as_deref(),
            Some("PROJ-12")
        );
        assert_eq!(test_key(&TestCase::new("logs in", Status::Passed)), None);
        assert_eq!(
            test_key(&TestCase::new("utf-8 works", Status::Passed)),
            None
        );
        let suite = Suite {
            name: "s".into(),
            file: None,
            duration_ms: None,
            properties: vec![],
            cases: vec![],
        };
        let mut a = TestCase::new("t", Status::Failed);
        a.message = Some("AssertionError: expected 1 to be 2".into());
        let mut b = a.clone();
        b.message = Some("AssertionError: expected 3 to be 4".into());
        let mut c = a.clone();
        c.message = Some("TimeoutError: 30000 ms".into());
        assert_eq!(fingerprint("P", &suite, &a), fingerprint("P", &suite, &b));
        assert_ne!(fingerprint("P", &suite, &a), fingerprint("P", &suite, &c));
        assert_ne!(fingerprint("P", &suite, &a), fingerprint("Q", &suite, &a));
    }
}
