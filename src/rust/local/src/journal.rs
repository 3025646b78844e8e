//! The journal: one entry per control-plane call, with secrets redacted.

use serde::Serialize;
use serde_json::Value;

/// One control-plane call as the emulator saw it.
#[derive(Debug, Clone, Serialize)]
pub struct JournalEntry {
    /// When the call arrived (RFC 3339, UTC).
    pub time: String,
    pub method: String,
    pub path: String,
    /// The query string (without `?`), secret parameters redacted; `None` if none.
    pub query: Option<String>,
    pub api_version: Option<String>,
    /// Status sent back; 0 when the connection was dropped on purpose (fault `resets`).
    pub status: u16,
    /// The request body (JSON, or form fields as an object) with secrets replaced by
    /// "REDACTED".
    pub body: Option<Value>,
}

/// True for field names whose values are secrets.
fn is_secret_name(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    n == "securevalue"
        || n == "password"
        || n == "device_code"
        || n == "assertion"
        || n.contains("secret")
        || n.contains("key")
        || n.contains("token")
}

/// A query string with the values of secret parameters (a SAS's `sig`, keys,
/// tokens) replaced by "REDACTED"; the rest is kept as sent.
pub fn redact_query(query: Option<&str>) -> Option<String> {
    let query = query.filter(|q| !q.is_empty())?;
    let parts: Vec<String> = query
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some((name, _)) if name == "sig" || is_secret_name(name) => {
                format!("{name}=REDACTED")
            }
            _ => pair.to_string(),
        })
        .collect();
    Some(parts.join("&"))
}

/// Replaces every value stored under a secret-looking name, at any depth, and the
/// `value` of objects flagged `"isSecret": true` (ACR Tasks run arguments).
pub fn redact(value: &Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| {
                    let flagged = k == "value" && map.get("isSecret") == Some(&Value::Bool(true));
                    let v = if flagged || is_secret_name(k) {
                        Value::String("REDACTED".into())
                    } else {
                        redact(v)
                    };
                    (k.clone(), v)
                })
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(redact).collect()),
        other => other.clone(),
    }
}

/// The journal's view of a request body: JSON if it parses, form fields if it is a form.
/// Uploaded build sources are only counted (they are data, and may hold anything).
pub fn body_for_journal(path: &str, content_type: Option<&str>, bytes: &[u8]) -> Option<Value> {
    if bytes.is_empty() {
        return None;
    }
    if path.starts_with("/_acr/") {
        return Some(Value::String(format!("<{} bytes>", bytes.len())));
    }
    let ct = content_type.unwrap_or("").to_ascii_lowercase();
    if ct.starts_with("application/x-www-form-urlencoded") {
        let map: serde_json::Map<String, Value> = crate::util::parse_form(bytes)
            .into_iter()
            .map(|(k, v)| (k, Value::String(v)))
            .collect();
        return Some(redact(&Value::Object(map)));
    }
    serde_json::from_slice::<Value>(bytes)
        .ok()
        .map(|v| redact(&v))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_strings_are_kept_with_secrets_redacted() {
        assert_eq!(redact_query(None), None);
        assert_eq!(redact_query(Some("")), None);
        assert_eq!(
            redact_query(Some("api-version=2021-04-01&$filter=tagName%20eq%20'a'")).as_deref(),
            Some("api-version=2021-04-01&$filter=tagName%20eq%20'a'")
        );
        assert_eq!(
            redact_query(Some("sv=2022-11-02&sig=abc%3D&comp=list&access_token=t")).as_deref(),
            Some("sv=2022-11-02&sig=REDACTED&comp=list&access_token=REDACTED")
        );
    }
    use serde_json::json;

    #[test]
    fn redacts_nested_secrets() {
        let body = json!({"properties": {"containers": [{"properties": {"environmentVariables": [
            {"name": "A", "value": "plain"}, {"name": "B", "secureValue": "s3cr3t"}]}}],
            "imageRegistryCredentials": [{"server": "x", "password": "p"}]},
            "client_secret": "c", "accessKey": "k", "myToken": "t",
            "arguments": [{"name": "A", "value": "argsecret", "isSecret": true}]});
        let text = redact(&body).to_string();
        for secret in ["s3cr3t", "\"p\"", "\"c\"", "\"k\"", "\"t\"", "argsecret"] {
            assert!(!text.contains(secret), "{secret} leaked in {text}");
        }
        assert!(text.contains("plain"));
    }

    #[test]
    fn redacts_acr_oauth_forms_and_counts_uploads() {
        let form = b"grant_type=access_token&service=127.0.0.1%3A1&access_token=aaa.bbb.ccc&refresh_token=rrr&password=ppp";
        let v = body_for_journal(
            "/oauth2/exchange",
            Some("application/x-www-form-urlencoded"),
            form,
        )
        .unwrap()
        .to_string();
        for secret in ["aaa.bbb.ccc", "rrr", "ppp"] {
            assert!(!v.contains(secret), "{secret} leaked in {v}");
        }
        let upload = body_for_journal("/_acr/source/r/source/x.tar.gz", None, b"{\"a\":1}");
        assert_eq!(upload, Some(Value::String("<7 bytes>".into())));
    }
}
