//! What the commands that call testrelay's API share: the key from the environment and
//! reading an answer (JSON, or `HTTP <status>: <problem detail>`).

/// The API key in the environment variable `var`; `None` after saying so for `command`.
pub fn key(command: &str, var: &str) -> Option<String> {
    let key = std::env::var(var).ok();
    if key.is_none() {
        eprintln!("testrelay {command}: set the API key in the environment variable {var}");
    }
    key
}

/// Sends `request` with `key`; the JSON answer of a 2xx (`null` when empty), else an error
/// with the status and the problem's `detail`. Errors never carry the URL.
pub async fn call(
    request: reqwest::RequestBuilder,
    key: &str,
) -> Result<serde_json::Value, String> {
    let res = request
        .bearer_auth(key)
        .send()
        .await
        .map_err(|e| format!("request failed: {}", e.without_url()))?;
    let status = res.status();
    let bytes = res.bytes().await.map_err(|e| e.without_url().to_string())?;
    let body: Option<serde_json::Value> = serde_json::from_slice(&bytes).ok();
    if status.is_success() {
        match body {
            Some(b) => Ok(b),
            None if bytes.is_empty() => Ok(serde_json::Value::Null),
            None => Err(format!("HTTP {status}: the answer is not JSON")),
        }
    } else {
        let body = body.unwrap_or_default();
        Err(format!(
            "HTTP {status}: {}",
            body["detail"].as_str().unwrap_or("")
        ))
    }
}
