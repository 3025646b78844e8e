//! Outbound HTTP of workflow actions: host rewriting onto the emulator, managed
//! identity tokens, the default retry policy and the asynchronous (202 + Location)
//! pattern.

use std::sync::Arc;
use std::time::Duration;

use reqwest::Url;
use serde_json::{json, Map, Value};

use crate::state::Inner;
use crate::token::{audience_of_scope, Principal};
use crate::util;

/// The HTTP client of workflow actions: trusts only the emulator's CA (ARM and
/// Azurite both serve certificates it signed).
pub fn client(ca: rustls::pki_types::CertificateDer<'static>) -> Result<reqwest::Client, String> {
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(ca)
        .map_err(|e| format!("cannot trust the local CA: {e}"))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS setup failed: {e}"))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        // Azure's outbound request timeout.
        .timeout(Duration::from_secs(120))
        .build()
        .map_err(|e| format!("cannot build the workflow HTTP client: {e}"))
}

/// Where a request of the definition really goes: `management.azure.com` is this
/// emulator's ARM, `{account}.blob.core.windows.net` a seeded storage account's blob
/// endpoint, and loopback addresses themselves. Anything else is refused: the
/// emulator never reaches beyond the machine.
pub fn rewrite(inner: &Inner, uri: &str) -> Result<Url, String> {
    let url = Url::parse(uri).map_err(|e| format!("The URI '{uri}' is not valid: {e}."))?;
    let host = url.host_str().unwrap_or_default().to_ascii_lowercase();
    let rebase = |base: &str| -> Result<Url, String> {
        let mut out = base.trim_end_matches('/').to_string();
        out.push_str(url.path());
        if let Some(q) = url.query() {
            out.push('?');
            out.push_str(q);
        }
        Url::parse(&out).map_err(|e| format!("The URI '{out}' is not valid: {e}."))
    };
    if host == "management.azure.com" && url.scheme() == "https" {
        return rebase(&inner.https_base);
    }
    if let Some(account) = host.strip_suffix(".blob.core.windows.net") {
        return match blob_endpoint(inner, account) {
            Some(endpoint) => rebase(&endpoint),
            None => Err(format!(
                "The storage account '{account}' is not known to the local Azure (seed it with Config::storage_accounts or LocalAzure::add_storage_account)."
            )),
        };
    }
    if matches!(host.as_str(), "127.0.0.1" | "localhost" | "[::1]" | "::1") {
        return Ok(url);
    }
    Err(format!(
        "The local Azure only sends workflow HTTP requests to https://management.azure.com (its own ARM), https://ACCOUNT.blob.core.windows.net (seeded storage accounts) and loopback addresses, not to '{host}'."
    ))
}

/// A seeded storage account's blob endpoint, by account name.
pub fn blob_endpoint(inner: &Inner, account: &str) -> Option<String> {
    inner.world().storage_account(account).and_then(|v| {
        v["properties"]["primaryEndpoints"]["blob"]
            .as_str()
            .map(str::to_string)
    })
}

/// A bearer token for a workflow identity, as its managed-identity endpoint would give.
pub fn identity_token(inner: &Inner, principal: &Principal, audience: &str, mirid: &str) -> String {
    let extra = [("idtyp", json!("app")), ("xms_mirid", json!(mirid))];
    inner
        .signer
        .issue(principal, &audience_of_scope(audience), &extra)
        .0
}

/// How often and how long to retry.
#[derive(Debug, Clone, Copy)]
pub struct Retry {
    pub count: u32,
    pub interval: Duration,
    pub exponential: bool,
}

impl Retry {
    /// Azure's default policy is 4 exponential retries (intervals of about 7.5 s
    /// growing to a minute); here the same count with intervals scaled down to
    /// 0.5 s, 1 s, 2 s, 4 s, so local runs stay quick.
    pub const DEFAULT: Retry = Retry {
        count: 4,
        interval: Duration::from_millis(500),
        exponential: true,
    };

    pub fn from_policy(p: &Value) -> Retry {
        if p.is_null() {
            return Retry::DEFAULT;
        }
        let ty = p["type"].as_str().unwrap_or_default().to_ascii_lowercase();
        if ty == "none" {
            return Retry {
                count: 0,
                interval: Duration::ZERO,
                exponential: false,
            };
        }
        // Bounded: at most 10 retries, at most 10 s apart.
        let count = p["count"].as_u64().unwrap_or(4).min(10) as u32;
        let interval = p["interval"]
            .as_str()
            .and_then(super::validate::parse_duration)
            .unwrap_or(Duration::from_secs(1))
            .min(Duration::from_secs(10));
        Retry {
            count,
            interval,
            exponential: ty == "exponential",
        }
    }

    fn delay(&self, attempt: u32, retry_after: Option<Duration>) -> Duration {
        let base = if self.exponential {
            self.interval.saturating_mul(1u32 << attempt.min(10))
        } else {
            self.interval
        };
        retry_after.unwrap_or(base).min(Duration::from_secs(10))
    }
}

/// What an HTTP exchange produced.
pub struct Exchange {
    pub status: u16,
    pub headers: Map<String, Value>,
    pub body: Value,
    /// One entry per failed attempt that was retried.
    pub retry_history: Vec<Value>,
}

/// A transport failure (no response at all).
pub struct TransportError {
    pub message: String,
    pub retry_history: Vec<Value>,
}

fn retryable(status: u16) -> bool {
    status == 408 || status == 429 || status >= 500
}

/// The body of a response as Logic Apps shows it: JSON when it is JSON, text when it
/// is text, else `$content-type` and base64 `$content`.
fn body_value(content_type: &str, bytes: &[u8]) -> Value {
    if bytes.is_empty() {
        return Value::Null;
    }
    let ct = content_type.to_ascii_lowercase();
    if ct.contains("json") || ct.is_empty() {
        if let Ok(v) = serde_json::from_slice::<Value>(bytes) {
            return v;
        }
    }
    let texty =
        ct.is_empty() || ct.starts_with("text/") || ct.contains("xml") || ct.contains("json");
    match std::str::from_utf8(bytes) {
        Ok(s) if texty => Value::String(s.to_string()),
        _ => {
            use base64::Engine;
            json!({
                "$content-type": if ct.is_empty() { "application/octet-stream" } else { content_type },
                "$content": base64::engine::general_purpose::STANDARD.encode(bytes),
            })
        }
    }
}

/// One request, as an action sends it.
pub struct Outgoing {
    pub method: reqwest::Method,
    pub url: Url,
    pub headers: Vec<(String, String)>,
    pub body: Value,
    pub bearer: Option<String>,
    pub retry: Retry,
    /// Follow 202 + `Location` until the operation ends (Logic Apps' default).
    pub async_pattern: bool,
}

async fn send_once(
    client: &reqwest::Client,
    o: &Outgoing,
    method: reqwest::Method,
    url: Url,
    with_body: bool,
) -> Result<(u16, Map<String, Value>, Value), String> {
    let mut req = client.request(method, url);
    let mut has_ct = false;
    for (k, v) in &o.headers {
        has_ct |= k.eq_ignore_ascii_case("content-type");
        req = req.header(k.as_str(), v.as_str());
    }
    if let Some(t) = &o.bearer {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    if with_body {
        match &o.body {
            Value::Null => {}
            Value::String(s) => {
                if !has_ct {
                    req = req.header("content-type", "text/plain; charset=utf-8");
                }
                req = req.body(s.clone());
            }
            other => {
                if !has_ct {
                    req = req.header("content-type", "application/json");
                }
                req = req.body(other.to_string());
            }
        }
    }
    let resp = req.send().await.map_err(|e| {
        let mut msg = e.to_string();
        let mut src = std::error::Error::source(&e);
        while let Some(s) = src {
            msg.push_str(": ");
            msg.push_str(&s.to_string());
            src = s.source();
        }
        msg
    })?;
    let status = resp.status().as_u16();
    let mut headers = Map::new();
    for (k, v) in resp.headers() {
        if let Ok(v) = v.to_str() {
            headers.insert(k.as_str().to_string(), Value::String(v.to_string()));
        }
    }
    let ct = headers
        .get("content-type")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let bytes = resp.bytes().await.map_err(|e| e.to_string())?;
    Ok((status, headers, body_value(&ct, &bytes)))
}

fn retry_after(headers: &Map<String, Value>) -> Option<Duration> {
    headers
        .get("retry-after")
        .and_then(Value::as_str)
        .and_then(|s| s.trim().parse::<u64>().ok())
        .map(Duration::from_secs)
}

/// Sends with retries (408, 429, 5xx and transport failures), then follows the
/// asynchronous pattern when asked.
pub async fn send(client: &reqwest::Client, o: &Outgoing) -> Result<Exchange, TransportError> {
    let mut history = Vec::new();
    let mut attempt = 0u32;
    let (status, headers, body) = loop {
        let started = util::now_rfc3339();
        match send_once(client, o, o.method.clone(), o.url.clone(), true).await {
            Ok((status, headers, body)) if !retryable(status) || attempt >= o.retry.count => {
                break (status, headers, body)
            }
            Ok((status, headers, _)) => {
                history.push(json!({"startTime": started, "endTime": util::now_rfc3339(), "code": status.to_string(), "clientRequestId": util::new_uuid()}));
                tokio::time::sleep(o.retry.delay(attempt, retry_after(&headers))).await;
            }
            Err(message) if attempt >= o.retry.count => {
                return Err(TransportError {
                    message,
                    retry_history: history,
                })
            }
            Err(message) => {
                history.push(json!({"startTime": started, "endTime": util::now_rfc3339(), "code": "BadGateway", "error": {"code": "BadGateway", "message": message}}));
                tokio::time::sleep(o.retry.delay(attempt, None)).await;
            }
        }
        attempt += 1;
    };
    if !(o.async_pattern && status == 202) {
        return Ok(Exchange {
            status,
            headers,
            body,
            retry_history: history,
        });
    }
    let mut last = (status, headers, body);
    // Bounded polling: an operation that never ends stops the action after ~1 hour.
    for _ in 0..3600 {
        let Some(location) = last
            .1
            .get("location")
            .and_then(Value::as_str)
            .map(str::to_string)
        else {
            break;
        };
        let Ok(url) = Url::parse(&location).or_else(|_| o.url.join(&location)) else {
            break;
        };
        tokio::time::sleep(
            retry_after(&last.1)
                .unwrap_or(Duration::from_secs(1))
                .min(Duration::from_secs(10)),
        )
        .await;
        match send_once(client, o, reqwest::Method::GET, url, false).await {
            Ok(r) => {
                last = r;
                if last.0 != 202 {
                    break;
                }
            }
            Err(message) => {
                return Err(TransportError {
                    message,
                    retry_history: history,
                })
            }
        }
    }
    Ok(Exchange {
        status: last.0,
        headers: last.1,
        body: last.2,
        retry_history: history,
    })
}

/// `NotFound`, `BadRequest`, ...: the name Logic Apps gives an HTTP status as a code.
pub fn status_code_name(status: u16) -> String {
    reqwest::StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .map(|r| r.split_whitespace().collect::<String>())
        .unwrap_or_else(|| status.to_string())
}
