//! The azureblob "when a blob is added or modified (properties only)" polling
//! trigger: lists the folder on the seeded account's blob endpoint (Azurite) on each
//! recurrence and reports blobs that are new or changed since the previous poll.

use std::collections::HashMap;
use std::sync::Arc;

use base64::Engine;
use serde_json::{json, Value};

use super::connectors::connection_key;
use super::expr::{self, Context};
use crate::state::Inner;
use crate::token::Principal;
use crate::util;

/// Blobs seen by earlier polls (path -> ETag); `None` before the first poll, which
/// only takes stock (blobs already there when the trigger starts do not fire).
#[derive(Default)]
pub struct Seen(Option<HashMap<String, String>>);

/// Trigger inputs only see parameters (no actions, trigger or loops yet).
struct ParamsOnly(serde_json::Map<String, Value>);

impl Context for ParamsOnly {
    fn parameter(&self, name: &str) -> Option<Value> {
        self.0.get(name).cloned()
    }
    fn action(&self, _: &str) -> Option<Value> {
        None
    }
    fn trigger(&self) -> Option<Value> {
        None
    }
    fn item(&self, _: &str) -> Option<Value> {
        None
    }
    fn iteration(&self, _: &str) -> Option<usize> {
        None
    }
    fn variable(&self, _: &str) -> Option<Value> {
        None
    }
    fn workflow(&self) -> Value {
        Value::Null
    }
    fn scope_result(&self, _: &str) -> Option<Value> {
        None
    }
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = s
                .get(i + 1..i + 3)
                .filter(|h| h.bytes().all(|c| c.is_ascii_hexdigit()));
            if let Some(v) = hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `folderId`: a path (`/container/folder`), or its base64 (of the path or of its
/// percent-encoding) as the designer writes it.
pub fn folder_path(folder_id: &str) -> Option<String> {
    let decoded = if folder_id.starts_with('/') {
        folder_id.to_string()
    } else {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(folder_id)
            .ok()?;
        percent_decode(&String::from_utf8(bytes).ok()?)
    };
    let decoded = percent_decode(&decoded);
    decoded.starts_with('/').then_some(decoded)
}

fn xml_unescape(s: &str) -> String {
    s.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&apos;", "'")
        .replace("&amp;", "&")
}

fn tag<'a>(xml: &'a str, name: &str) -> Option<&'a str> {
    let open = format!("<{name}>");
    let close = format!("</{name}>");
    let start = xml.find(&open)? + open.len();
    let end = xml[start..].find(&close)? + start;
    Some(&xml[start..end])
}

/// One listed blob: path without the container, ETag, size, type, last modified.
#[derive(Debug, Clone, PartialEq)]
pub struct Listed {
    pub name: String,
    pub etag: String,
    pub size: u64,
    pub content_type: String,
    pub last_modified: String,
}

/// Parses a List Blobs page: the blobs and the next marker.
pub fn parse_list(xml: &str) -> (Vec<Listed>, Option<String>) {
    let mut out = Vec::new();
    let mut rest = xml;
    while let Some(start) = rest.find("<Blob>") {
        let after = &rest[start + 6..];
        let Some(end) = after.find("</Blob>") else {
            break;
        };
        let blob = &after[..end];
        rest = &after[end + 7..];
        let Some(name) = tag(blob, "Name") else {
            continue;
        };
        out.push(Listed {
            name: xml_unescape(name),
            etag: tag(blob, "Etag").map(xml_unescape).unwrap_or_default(),
            size: tag(blob, "Content-Length")
                .and_then(|s| s.trim().parse().ok())
                .unwrap_or(0),
            content_type: tag(blob, "Content-Type")
                .map(xml_unescape)
                .unwrap_or_default(),
            last_modified: tag(blob, "Last-Modified")
                .and_then(rfc1123_to_rfc3339)
                .unwrap_or_default(),
        });
    }
    let next = tag(xml, "NextMarker")
        .map(xml_unescape)
        .filter(|m| !m.is_empty());
    (out, next)
}

/// `Fri, 27 Nov 2026 03:40:00 GMT` -> `2026-11-27T03:40:00Z`.
fn rfc1123_to_rfc3339(s: &str) -> Option<String> {
    let parts: Vec<&str> = s.split_whitespace().collect();
    let [_, day, month, year, hms, _] = parts.as_slice() else {
        return None;
    };
    let months = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let m = months.iter().position(|x| x.eq_ignore_ascii_case(month))? + 1;
    let day: u8 = day.parse().ok()?;
    let iso = format!("{year}-{m:02}-{day:02}T{hms}Z");
    expr::parse_timestamp(&iso).map(util::rfc3339)
}

fn rfc1123_now() -> String {
    time::OffsetDateTime::now_utc()
        .format(time::macros::format_description!(
            "[weekday repr:short], [day] [month repr:short] [year] [hour]:[minute]:[second] GMT"
        ))
        .unwrap_or_default()
}

/// The Shared Key `Authorization` of a GET without body (Blob service).
pub fn shared_key(
    account: &str,
    key_b64: &str,
    url: &reqwest::Url,
    headers: &[(&str, String)],
) -> Option<String> {
    let key = base64::engine::general_purpose::STANDARD
        .decode(key_b64)
        .ok()?;
    let mut ms: Vec<(String, String)> = headers
        .iter()
        .filter(|(k, _)| k.starts_with("x-ms-"))
        .map(|(k, v)| (k.to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    ms.sort();
    let mut to_sign = String::from("GET\n\n\n\n\n\n\n\n\n\n\n\n");
    for (k, v) in &ms {
        to_sign.push_str(&format!("{k}:{v}\n"));
    }
    to_sign.push_str(&format!("/{account}{}", url.path()));
    let mut q: Vec<(String, String)> = url
        .query_pairs()
        .map(|(k, v)| (k.to_ascii_lowercase(), v.into_owned()))
        .collect();
    q.sort();
    for (k, v) in q {
        to_sign.push_str(&format!("\n{k}:{v}"));
    }
    let k = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &key);
    let sig = ring::hmac::sign(&k, to_sign.as_bytes());
    Some(format!(
        "SharedKey {account}:{}",
        base64::engine::general_purpose::STANDARD.encode(sig.as_ref())
    ))
}

/// The storage account a trigger watches: its dataset, or the connection's
/// `accountName` for `AccountNameFromSettings`.
fn account_of(inner: &Inner, path: &str, connection: &Value) -> Option<String> {
    let after = path.split("/datasets/").nth(1)?;
    let dataset = percent_decode(&percent_decode(after.split('/').next()?));
    if dataset.eq_ignore_ascii_case("AccountNameFromSettings") || dataset == "default" {
        let id = connection["connectionId"].as_str()?.to_ascii_lowercase();
        let stored = inner.world().resources.get(&id).cloned()?;
        return stored["properties"]["parameterValues"]["accountName"]
            .as_str()
            .map(str::to_string);
    }
    // A dataset may also be the account's blob URL.
    let name = dataset
        .strip_prefix("https://")
        .and_then(|h| h.split('.').next())
        .unwrap_or(&dataset);
    Some(name.to_string())
}

fn log_poll_error(inner: &Inner, wf_key: &str, message: &str) -> String {
    // Failed polls are Failed trigger histories (as in Azure) and journaled too, so a
    // test (or a person) reading the journal sees why nothing fired.
    inner
        .journal
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push(crate::JournalEntry {
            time: util::now_rfc3339(),
            method: "POLL".into(),
            path: format!("{wf_key}/triggers (azureblob)"),
            query: None,
            api_version: None,
            status: 0,
            body: Some(json!({"error": message})),
        });
    message.to_string()
}

/// Lists the trigger's folder and returns the trigger bodies of new or changed blobs:
/// one body per blob with `splitOn`, else one array body.
pub async fn poll(
    inner: &Arc<Inner>,
    wf_key: &str,
    trigger: &Value,
    seen: &mut Seen,
) -> Result<Vec<Value>, String> {
    let Some(wf) = inner.world().resources.get(wf_key).cloned() else {
        return Err("the workflow no longer exists".into());
    };
    let params = super::engine::resolve_parameters(&wf);
    let ctx = ParamsOnly(params.clone());
    let Ok(inputs) = expr::evaluate_value(&trigger["inputs"], &ctx) else {
        return Err(log_poll_error(
            inner,
            wf_key,
            "the trigger inputs could not be evaluated",
        ));
    };
    let key = trigger["inputs"]["host"]["connection"]["name"]
        .as_str()
        .and_then(connection_key)
        .unwrap_or_default();
    let connection = params
        .get("$connections")
        .map(|c| c[&key].clone())
        .unwrap_or(Value::Null);
    let path = expr::to_text(&inputs["path"]);
    let Some(account) = account_of(inner, &path, &connection) else {
        return Err(log_poll_error(
            inner,
            wf_key,
            "the storage account of the trigger is not known",
        ));
    };
    let Some(folder) = inputs["queries"]["folderId"].as_str().and_then(folder_path) else {
        return Err(log_poll_error(
            inner,
            wf_key,
            "the folderId is not a folder path",
        ));
    };
    let trimmed = folder.trim_matches('/');
    let (container, prefix) = match trimmed.split_once('/') {
        Some((c, p)) => (c.to_string(), format!("{p}/")),
        None => (trimmed.to_string(), String::new()),
    };
    let Some(endpoint) = super::http::blob_endpoint(inner, &account) else {
        return Err(log_poll_error(
            inner,
            wf_key,
            &format!("storage account '{account}' is not seeded"),
        ));
    };
    let Ok(base) = reqwest::Url::parse(&endpoint) else {
        return Err(log_poll_error(
            inner,
            wf_key,
            &format!("the blob endpoint '{endpoint}' is not a URL"),
        ));
    };
    // Path-style endpoints (Azurite: http://127.0.0.1:10000/ACCOUNT/) sign with the
    // account in the path.
    let signing_account = match base.host_str() {
        Some(h) if h.parse::<std::net::IpAddr>().is_ok() || h == "localhost" => base
            .path_segments()
            .and_then(|mut s| s.next().map(str::to_string))
            .unwrap_or_else(|| account.clone()),
        Some(h) => h.split('.').next().unwrap_or(&account).to_string(),
        None => account.clone(),
    };
    // A managed-identity connection lists with the workflow identity's token (as the
    // connector does); a key connection with the account key.
    let stored = connection["connectionId"]
        .as_str()
        .and_then(|id| {
            inner
                .world()
                .resources
                .get(&id.to_ascii_lowercase())
                .cloned()
        })
        .unwrap_or(Value::Null);
    let managed_identity =
        stored["properties"]["parameterValueSet"]["name"] == "managedIdentityAuth";
    let storage_key = if managed_identity {
        None
    } else {
        inner
            .world()
            .storage_keys
            .get(&account.to_ascii_lowercase())
            .cloned()
    };
    if !managed_identity && storage_key.is_none() {
        return Err(log_poll_error(
            inner,
            wf_key,
            &format!("the connection has no managed identity parameter set and the key of '{account}' is not known"),
        ));
    }
    let mut listed = Vec::new();
    let mut marker: Option<String> = None;
    // Bounded: 50 pages of up to 5000 blobs.
    for _ in 0..50 {
        let mut url = format!(
            "{}/{}?restype=container&comp=list&delimiter=%2F&prefix={}",
            endpoint.trim_end_matches('/'),
            expr::encode_uri_component(&container),
            expr::encode_uri_component(&prefix)
        );
        if let Some(m) = &marker {
            url.push_str(&format!("&marker={}", expr::encode_uri_component(m)));
        }
        let Ok(url) = reqwest::Url::parse(&url) else {
            return Err(log_poll_error(inner, wf_key, "the list URL is not valid"));
        };
        let headers = vec![
            ("x-ms-date", rfc1123_now()),
            ("x-ms-version", "2025-05-05".to_string()),
        ];
        let auth = match &storage_key {
            Some(k) => shared_key(&signing_account, k, &url, &headers),
            None => {
                let identity =
                    connection["connectionProperties"]["authentication"]["identity"].as_str();
                principal(inner, &wf, identity).map(|(p, mirid)| {
                    format!(
                        "Bearer {}",
                        super::http::identity_token(
                            inner,
                            &p,
                            "https://storage.azure.com/",
                            &mirid
                        )
                    )
                })
            }
        };
        let mut req = inner.http.get(url);
        for (k, v) in &headers {
            req = req.header(*k, v.as_str());
        }
        if let Some(a) = auth {
            req = req.header("authorization", a);
        }
        let resp = match req.send().await {
            Ok(r) => r,
            Err(e) => {
                return Err(log_poll_error(
                    inner,
                    wf_key,
                    &format!("listing blobs failed: {e}"),
                ));
            }
        };
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap_or_default();
        if status != 200 {
            return Err(log_poll_error(
                inner,
                wf_key,
                &format!("listing blobs answered {status}: {text}"),
            ));
        }
        let (page, next) = parse_list(&text);
        listed.extend(page);
        marker = next;
        if marker.is_none() {
            break;
        }
    }
    let Some(known) = &mut seen.0 else {
        seen.0 = Some(listed.into_iter().map(|b| (b.name, b.etag)).collect());
        return Ok(Vec::new());
    };
    let mut fresh: Vec<Listed> = listed
        .into_iter()
        .filter(|b| known.get(&b.name) != Some(&b.etag))
        .collect();
    fresh.sort_by(|a, b| a.last_modified.cmp(&b.last_modified));
    let max = inputs["queries"]["maxFileCount"]
        .as_u64()
        .unwrap_or(10)
        .clamp(1, 100) as usize;
    // Blobs over the batch size wait for the next poll.
    fresh.truncate(max);
    let bodies: Vec<Value> = fresh
        .iter()
        .map(|b| {
            known.insert(b.name.clone(), b.etag.clone());
            let path = format!("/{container}/{}", b.name);
            let id = base64::engine::general_purpose::STANDARD
                .encode(expr::encode_uri_component(&path));
            let name = b.name.rsplit('/').next().unwrap_or(&b.name).to_string();
            json!({
                "Id": id,
                "Name": name,
                "DisplayName": name,
                "Path": path,
                "LastModified": b.last_modified,
                "Size": b.size,
                "MediaType": if b.content_type.is_empty() { "application/octet-stream" } else { b.content_type.as_str() },
                "IsFolder": false,
                "ETag": b.etag,
                "FileLocator": id,
                "LastModifiedBy": null,
            })
        })
        .collect();
    if bodies.is_empty() {
        return Ok(Vec::new());
    }
    Ok(if trigger["splitOn"].is_null() {
        vec![Value::Array(bodies)]
    } else {
        bodies
    })
}

fn principal(inner: &Inner, wf: &Value, user: Option<&str>) -> Option<(Principal, String)> {
    let identity = &wf["identity"];
    let tenant = inner.config.tenant_id.clone();
    match user {
        Some(id) => {
            let entry = identity["userAssignedIdentities"]
                .as_object()?
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(id))
                .map(|(_, v)| v.clone())?;
            Some((
                Principal {
                    tenant_id: tenant,
                    object_id: entry["principalId"].as_str()?.to_string(),
                    app_id: entry["clientId"].as_str().unwrap_or_default().to_string(),
                },
                id.to_string(),
            ))
        }
        None => {
            let p = identity["principalId"].as_str()?;
            Some((
                Principal {
                    tenant_id: tenant,
                    object_id: p.to_string(),
                    app_id: p.to_string(),
                },
                wf["id"].as_str().unwrap_or_default().to_string(),
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folder_ids() {
        assert_eq!(folder_path("/input").as_deref(), Some("/input"));
        // base64("%2finput%2fnew")
        assert_eq!(
            folder_path("JTJmaW5wdXQlMmZuZXc=").as_deref(),
            Some("/input/new")
        );
        assert_eq!(folder_path("!!"), None);
        assert_eq!(percent_decode("a%2Fb%"), "a/b%");
        assert_eq!(percent_decode("%zz%4"), "%zz%4");
    }

    #[test]
    fn list_pages() {
        let xml = r#"<?xml version="1.0"?><EnumerationResults><Blobs><Blob><Name>in/a&amp;b.csv</Name><Properties><Last-Modified>Fri, 27 Nov 2026 03:40:05 GMT</Last-Modified><Etag>0x1</Etag><Content-Length>12</Content-Length><Content-Type>text/csv</Content-Type></Properties></Blob><BlobPrefix><Name>in/sub/</Name></BlobPrefix><Blob><Name>in/b</Name><Properties><Etag>0x2</Etag></Properties></Blob></Blobs><NextMarker>m2</NextMarker></EnumerationResults>"#;
        let (blobs, next) = parse_list(xml);
        assert_eq!(blobs.len(), 2);
        assert_eq!(blobs[0].name, "in/a&b.csv");
        assert_eq!(blobs[0].size, 12);
        assert_eq!(blobs[0].last_modified, "2026-11-27T03:40:05Z");
        assert_eq!(blobs[1].etag, "0x2");
        assert_eq!(next.as_deref(), Some("m2"));
        assert_eq!(parse_list("<Blobs><Blob><Name>x").0.len(), 0);
    }

    #[test]
    fn shared_key_signs_the_canonical_request() {
        let url = reqwest::Url::parse(
            "http://127.0.0.1:10000/devstoreaccount1/input?restype=container&comp=list&prefix=",
        )
        .unwrap();
        let headers = vec![
            ("x-ms-date", "Fri, 27 Nov 2026 03:40:05 GMT".to_string()),
            ("x-ms-version", "2025-05-05".to_string()),
        ];
        let a = shared_key("devstoreaccount1", "a2V5", &url, &headers).unwrap();
        assert!(a.starts_with("SharedKey devstoreaccount1:"));
        assert_eq!(
            a,
            shared_key("devstoreaccount1", "a2V5", &url, &headers).unwrap()
        );
        assert!(shared_key("devstoreaccount1", "not base64!", &url, &headers).is_none());
    }
}
