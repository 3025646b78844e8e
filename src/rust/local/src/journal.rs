//! The journal: one entry per control-plane call, with secrets redacted.

use serde::Serialize;
use serde_json::Value;

/// One control-plane call as the emulator saw it.
#[derive(Debug, Clone, Serialize)]
pub struct JournalEntry {
    /// When the call arrived (RFC 3339, UTC).
    pub time: String,
    pub method: String,
    /// Path only; the query string is left out.
    pub path: String,
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

/// Replaces every value stored under a secret-looking name, at any depth.
pub fn redact(value: &Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| {
                    let v = if is_secret_name(k) {
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
pub fn body_for_journal(content_type: Option<&str>, bytes: &[u8]) -> Option<Value> {
    if bytes.is_empty() {
        return None;
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
    use serde_json::json;

    #[test]
    fn redacts_nested_secrets() {
        let body = json!({"properties": {"containers": [{"properties": {"environmentVariables": [
            {"name": "A", "value": "plain"}, {"name": "B", "secureValue": "s3cr3t"}]}}],
            "imageRegistryCredentials": [{"server": "x", "password": "p"}]},
            "client_secret": "c", "accessKey": "k", "myToken": "t"});
        let text = redact(&body).to_string();
        for secret in ["s3cr3t", "\"p\"", "\"c\"", "\"k\"", "\"t\""] {
            assert!(!text.contains(secret), "{secret} leaked in {text}");
        }
        assert!(text.contains("plain"));
    }
}
