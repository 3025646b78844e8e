//! Azure Resource Manager: one client for every management call.
//!
//! - 429 and 5xx (and dropped connections) are retried, honouring `Retry-After`, else
//!   with jittered exponential backoff, within a bounded total.
//! - A 401 refreshes the token once and retries.
//! - `MissingSubscriptionRegistration` registers the provider and retries.
//! - Long-running operations follow `Azure-AsyncOperation`, then `Location`, then the
//!   resource's `provisioningState`.
//! - Errors carry status, ARM error code, message and `x-ms-request-id`.

use crate::auth::{self, Endpoints};
use crate::error::{Error, ErrorKind, Result};
use crate::BoxFuture;
use azure_core::credentials::{AccessToken, TokenCredential};
use rand::RngExt;
use reqwest::{Method, StatusCode};
use serde_json::Value;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Pinned api-versions, in one place.
pub mod api {
    pub const RESOURCES: &str = "2021-04-01";
    pub const CONTAINER_INSTANCE: &str = "2023-05-01";
    pub const CONTAINER_REGISTRY: &str = "2025-04-01";
    pub const CONTAINER_REGISTRY_TASKS: &str = "2019-04-01";
    pub const LOGIC: &str = "2019-05-01";
    /// Managed API connections. 2018-07-01-preview is the version whose connections
    /// take `parameterValueSet`, which a multi-authentication connector (azureblob)
    /// needs for managed identity ("Authenticate with managed identities in Azure
    /// Logic Apps", ARM template section); single-authentication ones (aci) keep
    /// `parameterValueType: Alternative` in the same version.
    pub const WEB_CONNECTIONS: &str = "2018-07-01-preview";
    pub const MANAGED_IDENTITY: &str = "2023-01-31";
    pub const AUTHORIZATION: &str = "2022-04-01";
}

/// The token audience of a Resource Manager endpoint, with its trailing slash: a
/// sovereign cloud's own (Azure Government, Azure operated by 21Vianet, as their
/// cloud configurations in the Azure SDKs and `az cloud show` give them), else the
/// public cloud's, which the local Azure's Resource Manager takes too.
pub fn arm_audience(endpoint: &str) -> String {
    let host = endpoint
        .split_once("://")
        .map_or(endpoint, |(_, rest)| rest)
        .split(['/', ':'])
        .next()
        .unwrap_or_default()
        .to_ascii_lowercase();
    match host.as_str() {
        "management.usgovcloudapi.net" | "management.chinacloudapi.cn" => {
            format!("https://{host}/")
        }
        _ => "https://management.azure.com/".to_string(),
    }
}

/// How hard to try before giving up.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    pub max_retries: u32,
    pub base_delay: Duration,
    pub max_delay: Duration,
    /// Give up once this much time has passed, whatever `max_retries` says.
    pub max_total: Duration,
    /// Poll interval for long-running operations without `Retry-After`.
    pub poll_interval: Duration,
    /// Give up waiting for a long-running operation after this long.
    pub lro_timeout: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_retries: 8,
            base_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(30),
            max_total: Duration::from_secs(180),
            poll_interval: Duration::from_secs(5),
            lro_timeout: Duration::from_secs(1800),
        }
    }
}

/// What the client did, for benchmarks and diagnostics.
#[derive(Debug, Default)]
pub struct ArmStats {
    pub calls: AtomicU64,
    pub retries: AtomicU64,
}

pub struct ArmClient {
    http: reqwest::Client,
    endpoint: String,
    credential: Arc<dyn TokenCredential>,
    token: Mutex<Option<AccessToken>>,
    pub retry: RetryPolicy,
    pub stats: Arc<ArmStats>,
}

/// A response that passed error checking.
#[derive(Debug)]
pub struct ArmResponse {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
}

impl ArmResponse {
    fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    }
}

fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    headers
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_secs)
}

/// The provider namespace in a resource path, e.g. `Microsoft.ContainerInstance`.
fn provider_namespace(path: &str) -> Option<String> {
    let lower = path.to_ascii_lowercase();
    let idx = lower.rfind("/providers/")?;
    let rest = &path[idx + "/providers/".len()..];
    rest.split('/').next().map(str::to_owned)
}

/// A string field of a resource, or an error naming what the resource lacks.
pub fn string_field(resource: &Value, pointer: &str, what: &str) -> Result<String> {
    resource
        .pointer(pointer)
        .and_then(Value::as_str)
        .map(str::to_string)
        .ok_or_else(|| Error::azure(200, None, format!("the {what} has no `{pointer}`")))
}

impl ArmClient {
    pub fn new(endpoints: &Endpoints, credential: Arc<dyn TokenCredential>) -> Result<Self> {
        Ok(ArmClient {
            http: endpoints.http_client()?,
            endpoint: endpoints.arm.trim_end_matches('/').to_string(),
            credential,
            token: Mutex::new(None),
            retry: RetryPolicy::default(),
            stats: Arc::new(ArmStats::default()),
        })
    }

    /// The HTTP client ARM calls use (it trusts the local Azure's CA when given), for
    /// the data-plane calls that go with them (registry, build logs).
    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    /// A bearer token for Resource Manager, e.g. to exchange for a registry token.
    pub async fn access_token(&self) -> Result<String> {
        self.bearer(false).await
    }

    async fn bearer(&self, refresh: bool) -> Result<String> {
        if !refresh {
            if let Some(t) = self
                .token
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .as_ref()
            {
                if t.expires_on > time::OffsetDateTime::now_utc() + time::Duration::minutes(2) {
                    return Ok(t.token.secret().to_string());
                }
            }
        }
        let scope = format!("{}.default", arm_audience(&self.endpoint));
        let t = auth::token(self.credential.as_ref(), &scope).await?;
        let secret = t.token.secret().to_string();
        *self.token.lock().unwrap_or_else(|e| e.into_inner()) = Some(t);
        Ok(secret)
    }

    fn url(&self, path_or_url: &str, api_version: Option<&str>) -> String {
        let base = if path_or_url.starts_with("http") {
            path_or_url.to_string()
        } else {
            format!("{}{}", self.endpoint, path_or_url)
        };
        match api_version {
            Some(v) if !base.contains("api-version=") => {
                let sep = if base.contains('?') { '&' } else { '?' };
                format!("{base}{sep}api-version={v}")
            }
            _ => base,
        }
    }

    fn backoff(&self, attempt: u32) -> Duration {
        let exp = self.retry.base_delay.as_millis() as u64 * 2u64.saturating_pow(attempt);
        let capped = exp.min(self.retry.max_delay.as_millis() as u64);
        let jitter = rand::rng().random_range(0..=capped / 2 + 1);
        Duration::from_millis(capped / 2 + jitter)
    }

    /// One ARM call with retries; returns the response or an error in our terms.
    pub async fn request(
        &self,
        method: Method,
        path: &str,
        api_version: Option<&str>,
        body: Option<&Value>,
    ) -> Result<ArmResponse> {
        let url = self.url(path, api_version);
        let started = Instant::now();
        let mut attempt = 0u32;
        let mut refreshed = false;
        let mut registered = false;
        loop {
            self.stats.calls.fetch_add(1, Ordering::Relaxed);
            let token = self.bearer(false).await?;
            let mut req = self
                .http
                .request(method.clone(), &url)
                .bearer_auth(token)
                .header("x-ms-client-request-id", uuid_v4());
            if let Some(body) = body {
                req = req.json(body);
            } else if method == Method::POST || method == Method::PUT {
                req = req.header("content-length", "0");
            }
            let outcome = req.send().await;
            let (retryable, wait, last_err) = match outcome {
                Err(e) => {
                    // Dropped or refused connections: safe to retry, as creates are PUTs.
                    let msg = crate::error::redact(&e.to_string());
                    (
                        true,
                        None,
                        Error::azure(0, None, format!("connection to Azure failed: {msg}")),
                    )
                }
                Ok(rsp) => {
                    let status = rsp.status();
                    let headers = rsp.headers().clone();
                    let bytes = rsp.bytes().await.unwrap_or_default();
                    let json: Value = if bytes.is_empty() {
                        Value::Null
                    } else {
                        serde_json::from_slice(&bytes).unwrap_or(Value::Null)
                    };
                    if status.is_success() {
                        return Ok(ArmResponse {
                            status: status.as_u16(),
                            headers,
                            body: json,
                        });
                    }
                    let err = arm_error(status, &headers, &json, &bytes);
                    match status {
                        StatusCode::UNAUTHORIZED if !refreshed => {
                            refreshed = true;
                            let _ = self.bearer(true).await?;
                            continue;
                        }
                        StatusCode::CONFLICT
                            if err.code.as_deref() == Some("MissingSubscriptionRegistration")
                                && !registered =>
                        {
                            registered = true;
                            self.register_provider(path).await?;
                            continue;
                        }
                        StatusCode::TOO_MANY_REQUESTS
                        | StatusCode::INTERNAL_SERVER_ERROR
                        | StatusCode::BAD_GATEWAY
                        | StatusCode::SERVICE_UNAVAILABLE
                        | StatusCode::GATEWAY_TIMEOUT => (true, retry_after(&headers), err),
                        _ => return Err(err),
                    }
                }
            };
            debug_assert!(retryable);
            let wait = wait.unwrap_or_else(|| self.backoff(attempt));
            if attempt >= self.retry.max_retries || started.elapsed() + wait > self.retry.max_total
            {
                return Err(if last_err.status == Some(429) {
                    Error {
                        kind: ErrorKind::Throttled,
                        message: format!(
                            "Azure kept throttling (429) after {} tries; try again later",
                            attempt + 1
                        ),
                        ..last_err
                    }
                } else {
                    last_err.context(format!("after {} tries", attempt + 1))
                });
            }
            self.stats.retries.fetch_add(1, Ordering::Relaxed);
            attempt += 1;
            tokio::time::sleep(wait).await;
        }
    }

    async fn register_provider(&self, path: &str) -> Result<()> {
        let namespace = provider_namespace(path)
            .ok_or_else(|| Error::internal("no provider in a path that needs registration"))?;
        let sub = path
            .split('/')
            .skip_while(|s| !s.eq_ignore_ascii_case("subscriptions"))
            .nth(1)
            .ok_or_else(|| Error::internal("no subscription in the path"))?;
        let reg = format!("/subscriptions/{sub}/providers/{namespace}/register");
        Box::pin(self.request(Method::POST, &reg, Some(api::RESOURCES), None))
            .await
            .map(|_| ())
            .map_err(|e| e.context(format!("registering resource provider {namespace}")))
    }

    pub fn get<'a>(&'a self, path: &'a str, api_version: &'a str) -> BoxFuture<'a, Result<Value>> {
        Box::pin(async move {
            Ok(self
                .request(Method::GET, path, Some(api_version), None)
                .await?
                .body)
        })
    }

    /// GET that maps 404 to `None`.
    pub async fn get_opt(&self, path: &str, api_version: &str) -> Result<Option<Value>> {
        match self.get(path, api_version).await {
            Ok(v) => Ok(Some(v)),
            Err(e) if e.status == Some(404) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Idempotent create-or-update, waiting for the operation to finish.
    pub async fn put(&self, path: &str, api_version: &str, body: &Value) -> Result<Value> {
        let rsp = self
            .request(Method::PUT, path, Some(api_version), Some(body))
            .await?;
        self.finish(rsp, path, api_version, true).await
    }

    /// POST an action, following a long-running operation if it starts one.
    pub async fn post(&self, path: &str, api_version: &str, body: Option<&Value>) -> Result<Value> {
        let rsp = self
            .request(Method::POST, path, Some(api_version), body)
            .await?;
        self.finish(rsp, path, api_version, false).await
    }

    /// DELETE, waiting until the resource is gone. Absent resources are fine.
    pub async fn delete(&self, path: &str, api_version: &str) -> Result<()> {
        match self
            .request(Method::DELETE, path, Some(api_version), None)
            .await
        {
            Ok(rsp) => self.finish(rsp, path, api_version, false).await.map(|_| ()),
            Err(e) if e.status == Some(404) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Follow a long-running operation to its end (RPC async contract).
    async fn finish(
        &self,
        rsp: ArmResponse,
        path: &str,
        api_version: &str,
        is_put: bool,
    ) -> Result<Value> {
        let deadline = Instant::now() + self.retry.lro_timeout;
        let wait_for =
            |rsp: &ArmResponse| retry_after(&rsp.headers).unwrap_or(self.retry.poll_interval);
        if let Some(op) = rsp.header("azure-asyncoperation") {
            let mut delay = wait_for(&rsp);
            loop {
                tokio::time::sleep(delay).await;
                let st = self.request(Method::GET, &op, None, None).await?;
                let status = st.body.get("status").and_then(Value::as_str).unwrap_or("");
                match status {
                    "Succeeded" => break,
                    "Failed" | "Canceled" | "Cancelled" => {
                        let code = st.body.pointer("/error/code").and_then(Value::as_str);
                        let msg = st
                            .body
                            .pointer("/error/message")
                            .and_then(Value::as_str)
                            .unwrap_or("the operation failed");
                        return Err(Error::azure(
                            200,
                            code.map(str::to_owned),
                            format!("{status}: {msg}"),
                        ));
                    }
                    _ => {}
                }
                if Instant::now() > deadline {
                    return Err(Error::new(
                        ErrorKind::Timeout,
                        format!("operation on {path} did not finish in time"),
                    ));
                }
                delay = wait_for(&st);
            }
            return if is_put {
                self.get(path, api_version).await
            } else {
                Ok(Value::Null)
            };
        }
        if rsp.status == 202 {
            if let Some(loc) = rsp.header("location") {
                let mut delay = wait_for(&rsp);
                loop {
                    tokio::time::sleep(delay).await;
                    let st = self.request(Method::GET, &loc, None, None).await?;
                    if st.status != 202 {
                        return Ok(st.body);
                    }
                    if Instant::now() > deadline {
                        return Err(Error::new(
                            ErrorKind::Timeout,
                            format!("operation on {path} did not finish in time"),
                        ));
                    }
                    delay = wait_for(&st);
                }
            }
        }
        if is_put {
            // No headers: poll the resource until its provisioningState is terminal.
            let mut body = rsp.body;
            loop {
                let state = body
                    .pointer("/properties/provisioningState")
                    .and_then(Value::as_str)
                    .unwrap_or("Succeeded");
                match state {
                    "Succeeded" => return Ok(body),
                    "Failed" | "Canceled" => {
                        return Err(Error::azure(
                            200,
                            Some(state.into()),
                            format!("provisioning of {path} ended {state}"),
                        ))
                    }
                    _ => {}
                }
                if Instant::now() > deadline {
                    return Err(Error::new(
                        ErrorKind::Timeout,
                        format!("{path} did not finish provisioning in time"),
                    ));
                }
                tokio::time::sleep(self.retry.poll_interval).await;
                body = self.get(path, api_version).await?;
            }
        }
        Ok(rsp.body)
    }
}

fn arm_error(
    status: StatusCode,
    headers: &reqwest::header::HeaderMap,
    json: &Value,
    raw: &[u8],
) -> Error {
    let code = json
        .pointer("/error/code")
        .and_then(Value::as_str)
        .map(str::to_owned);
    let message = json
        .pointer("/error/message")
        .and_then(Value::as_str)
        .map(str::to_owned)
        .unwrap_or_else(|| {
            let text = String::from_utf8_lossy(raw);
            let text = text.trim();
            if text.is_empty() {
                status.canonical_reason().unwrap_or("error").to_string()
            } else {
                text.chars().take(300).collect()
            }
        });
    let kind = match status.as_u16() {
        401 | 403 => ErrorKind::Auth,
        429 => ErrorKind::Throttled,
        _ => ErrorKind::Azure,
    };
    Error {
        kind,
        message: format!(
            "Azure Resource Manager answered {} {}: {}",
            status.as_u16(),
            code.as_deref().unwrap_or(""),
            crate::error::redact(&message)
        ),
        status: Some(status.as_u16()),
        code,
        request_id: headers
            .get("x-ms-request-id")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned),
    }
}

/// A random (v4) UUID, as ARM wants for request ids and role assignment names.
pub fn uuid_v4() -> String {
    let mut b: [u8; 16] = rand::rng().random();
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h = hex::encode(b);
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sovereign_clouds_get_their_own_arm_audience() {
        for (endpoint, audience) in [
            (
                "https://management.azure.com",
                "https://management.azure.com/",
            ),
            (
                "https://management.usgovcloudapi.net/",
                "https://management.usgovcloudapi.net/",
            ),
            (
                "https://MANAGEMENT.chinacloudapi.cn",
                "https://management.chinacloudapi.cn/",
            ),
            ("https://127.0.0.1:8443", "https://management.azure.com/"),
        ] {
            assert_eq!(arm_audience(endpoint), audience, "{endpoint}");
        }
    }

    #[test]
    fn provider_namespace_is_found() {
        assert_eq!(
            provider_namespace("/subscriptions/s/resourceGroups/r/providers/Microsoft.ContainerInstance/containerGroups/g").as_deref(),
            Some("Microsoft.ContainerInstance")
        );
        assert_eq!(
            provider_namespace("/subscriptions/s/resourcegroups/r"),
            None
        );
    }

    #[test]
    fn uuids_are_v4_shaped() {
        let u = uuid_v4();
        assert_eq!(u.len(), 36);
        assert_eq!(&u[14..15], "4");
    }
}
