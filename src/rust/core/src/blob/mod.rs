//! Azure Blob Storage through the official `azure_storage_blob` crate.
//!
//! Auth is one of: an account key (turned into short-lived container SAS URLs, since
//! the crate has no Shared Key credential), a user's SAS token, or an Entra ID bearer
//! token source. Paths are `container/path/in/container`, as in the R API.

pub mod sas;
mod transfer;

pub use transfer::{DownloadOptions, DownloadOutcome, UploadOptions, UploadOutcome};

use crate::error::{Error, Result};
use crate::BoxFuture;
use azure_core::credentials::TokenCredential;
use azure_core::http::{
    ClientOptions, Etag, ExponentialRetryOptions, RequestContent, RetryOptions, Transport, Url,
};
use azure_storage_blob::models::{BlobClientUploadOptions, BlobContainerClientListBlobsOptions};
use azure_storage_blob::{
    BlobClient, BlobClientOptions, BlobContainerClient, BlobContainerClientOptions,
};
use futures::TryStreamExt;
use sas::{Access, SasInfo};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::Arc;

/// How to reach a storage account, as the R side describes it.
#[derive(Clone, Deserialize)]
pub struct StorageConfig {
    pub account: String,
    /// Blob endpoint, e.g. `https://acct.blob.core.windows.net` or Azurite's
    /// `http://127.0.0.1:10000/devstoreaccount1`.
    pub endpoint: String,
    #[serde(default)]
    pub key: Option<String>,
    #[serde(default)]
    pub sas: Option<String>,
    /// An Entra ID access token for `https://storage.azure.com` the user already has.
    #[serde(default)]
    pub token: Option<String>,
    /// Or a credential to get tokens from, with its endpoints.
    #[serde(default)]
    pub credential: Option<crate::auth::CredentialSpec>,
    #[serde(default)]
    pub endpoints: Option<crate::auth::Endpoints>,
    /// A PEM certificate to trust in addition to the system roots (the local Azure's
    /// Azurite serves HTTPS with it, so bearer tokens work as in Azure).
    #[serde(default)]
    pub ca_pem: Option<String>,
    /// How long to keep retrying a failed call (connection refused, 5xx, 429), in
    /// seconds; `None` keeps the Azure SDK's default (a minute, then the last try).
    #[serde(default)]
    pub retry_seconds: Option<f64>,
}

// Keep secrets out of any debug output.
impl std::fmt::Debug for StorageConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StorageConfig")
            .field("account", &self.account)
            .field("endpoint", &self.endpoint)
            .finish_non_exhaustive()
    }
}

/// The Blob REST version we speak: current in Azure and supported by Azurite 3.35+
/// (the crate's default is newer than Azurite knows, and we keep Azurite strict).
pub const API_VERSION: &str = "2025-11-05";

enum Auth {
    AccountKey(String),
    Sas(String, SasInfo),
    Bearer(Arc<dyn TokenCredential>),
}

/// A storage account client: the auth plus one shared HTTP transport (connection pool).
pub struct Storage {
    account: String,
    endpoint: Url,
    auth: Auth,
    transport: Transport,
    retry: Option<RetryOptions>,
}

/// One blob in a listing.
#[derive(Debug, Clone, Serialize)]
pub struct BlobEntry {
    /// `container/name`
    pub path: String,
    pub size: u64,
    pub last_modified: Option<String>,
    pub etag: Option<String>,
}

/// Split `container/path/in/container` into its parts, checking both.
pub fn split_path(path: &str) -> Result<(&str, &str)> {
    let path = path.trim_start_matches('/');
    let (container, blob) = path.split_once('/').ok_or_else(|| {
        Error::input(format!(
            "blob path `{path}` must be `container/path/in/container`"
        ))
    })?;
    check_container_name(container)?;
    // Azure counts characters, not bytes: 1,024 `é` is a valid name.
    if blob.is_empty() || blob.chars().count() > 1024 {
        return Err(Error::input(format!(
            "blob path `{path}` needs a blob name of 1 to 1024 characters after the container"
        )));
    }
    // URLs resolve `.` and `..` segments before they reach the service, so
    // `serverless/../other/x` would write into container `other`; Azure's naming rules
    // also warn against names ending in `.` or `/`, and an empty segment (`a//b`) is
    // almost always a mistake of string building. All are refused here.
    // (Naming and Referencing Containers, Blobs, and Metadata, Blob service REST API.)
    if let Some(bad) = blob
        .split('/')
        .find(|s| s.is_empty() || *s == "." || *s == "..")
    {
        let what = if bad.is_empty() {
            "an empty segment"
        } else {
            "a `.` or `..` segment"
        };
        return Err(Error::input(format!(
            "blob path `{path}` has {what}: give the path in the container without `.`, `..` or `//`"
        )));
    }
    if blob.ends_with('.') {
        return Err(Error::input(format!(
            "blob path `{path}` ends with `.`: Azure does not allow blob names that end with a dot"
        )));
    }
    Ok((container, blob))
}

/// Azure's container rule, which model names share: 3-63 lowercase letters, digits and
/// single dashes, starting and ending with a letter or digit.
pub(crate) fn is_container_like_name(name: &str) -> bool {
    (3..=63).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-')
        && !name.contains("--")
}

pub fn check_container_name(name: &str) -> Result<()> {
    if is_container_like_name(name) {
        Ok(())
    } else {
        Err(Error::input(format!(
            "container name `{name}` is invalid: use 3 to 63 lowercase letters, digits and single dashes"
        )))
    }
}

impl Storage {
    pub fn new(config: StorageConfig, token: Option<Arc<dyn TokenCredential>>) -> Result<Self> {
        let mut endpoint = Url::parse(&config.endpoint).map_err(|_| {
            Error::input(format!(
                "storage endpoint `{}` is not a URL",
                config.endpoint
            ))
        })?;
        if !endpoint.path().ends_with('/') {
            let p = format!("{}/", endpoint.path());
            endpoint.set_path(&p);
        }
        let from_spec = match &config.credential {
            Some(spec) => Some(crate::auth::credential(
                spec,
                &config.endpoints.clone().unwrap_or_default(),
                Default::default(),
            )?),
            None => None,
        };
        let token = token.or(from_spec).or_else(|| {
            config.token.map(|t| {
                // The service rejects it once expired; we only need a refresh horizon.
                let horizon = time::OffsetDateTime::now_utc() + time::Duration::hours(1);
                Arc::new(crate::auth::StaticToken::new(t, horizon)) as Arc<dyn TokenCredential>
            })
        });
        let auth = match (config.key, config.sas, token) {
            (Some(key), _, _) => Auth::AccountKey(key),
            (None, Some(sas), _) => {
                let info = sas::parse_sas(&sas)?;
                Auth::Sas(sas.trim_start_matches('?').to_string(), info)
            }
            (None, None, Some(cred)) => {
                if endpoint.scheme() != "https" {
                    return Err(Error::input(
                        "bearer tokens need an https storage endpoint",
                    ));
                }
                Auth::Bearer(cred)
            }
            (None, None, None) => {
                return Err(Error::auth(format!(
                    "no credential for storage account `{}`: give a key, a SAS token or an Entra ID credential",
                    config.account
                )))
            }
        };
        let transport = match &config.ca_pem {
            // reqwest as built here does no decompression, like the default below.
            Some(pem) => Transport::new(Arc::new(
                crate::auth::Endpoints {
                    ca_pem: Some(pem.clone()),
                    ..Default::default()
                }
                .http_client()?,
            )),
            None => Transport::new({
                crate::install_crypto_provider();
                azure_core::http::new_http_client(Some(azure_core::http::HttpClientOptions {
                    automatic_decompression: false,
                }))
            }),
        };
        Ok(Storage {
            account: config.account,
            endpoint,
            auth,
            transport,
            retry: config.retry_seconds.map(|s| {
                RetryOptions::exponential(ExponentialRetryOptions {
                    max_total_elapsed: azure_core::time::Duration::milliseconds(
                        (s.clamp(0.0, 86_400.0) * 1000.0) as i64,
                    ),
                    ..Default::default()
                })
            }),
        })
    }

    pub fn account(&self) -> &str {
        &self.account
    }

    /// Fail before any call when a SAS token cannot do `access`.
    fn check(&self, access: Access) -> Result<()> {
        match &self.auth {
            Auth::Sas(_, info) => info.check(access),
            _ => Ok(()),
        }
    }

    fn client_options(&self) -> ClientOptions {
        ClientOptions {
            transport: Some(self.transport.clone()),
            retry: self.retry.clone().unwrap_or_default(),
            ..Default::default()
        }
    }

    /// URL of a container or blob, with a SAS query when the auth is key or SAS.
    fn url(&self, container: &str, blob: Option<&str>) -> Result<Url> {
        let mut url = self
            .endpoint
            .join(&format!("{container}/"))
            .map_err(|_| Error::input(format!("container `{container}` does not form a URL")))?;
        if let Some(blob) = blob {
            let encoded: Vec<String> = blob.split('/').map(percent_encode).collect();
            url = url
                .join(&encoded.join("/"))
                .map_err(|_| Error::input(format!("blob name `{blob}` does not form a URL")))?;
        } else {
            // Container URLs have no trailing slash.
            let p = url.path().trim_end_matches('/').to_string();
            url.set_path(&p);
        }
        let query = match &self.auth {
            Auth::AccountKey(key) => Some(sas::account_sas(&self.account, key, "racwdl", 2)?),
            Auth::Sas(token, _) => Some(token.clone()),
            Auth::Bearer(_) => None,
        };
        url.set_query(query.as_deref());
        Ok(url)
    }

    fn credential(&self) -> Option<Arc<dyn TokenCredential>> {
        match &self.auth {
            Auth::Bearer(cred) => Some(cred.clone()),
            _ => None,
        }
    }

    pub(crate) fn blob_client(&self, container: &str, blob: &str) -> Result<BlobClient> {
        let url = self.url(container, Some(blob))?;
        let options = BlobClientOptions {
            client_options: self.client_options(),
            version: API_VERSION.to_string(),
        };
        Ok(BlobClient::new(url, self.credential(), Some(options))?)
    }

    fn container_client(&self, container: &str) -> Result<BlobContainerClient> {
        let url = self.url(container, None)?;
        let options = BlobContainerClientOptions {
            client_options: self.client_options(),
            version: API_VERSION.to_string(),
        };
        Ok(BlobContainerClient::new(
            url,
            self.credential(),
            Some(options),
        )?)
    }

    /// Create the container if it does not exist (used by the local Azure and setup).
    pub fn ensure_container<'a>(&'a self, container: &'a str) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            check_container_name(container)?;
            self.check(Access::Write)?;
            let client = self.container_client(container)?;
            match client.create(None).await {
                Ok(_) => Ok(()),
                Err(e) => {
                    let e = Error::from(e);
                    if e.status == Some(409) {
                        Ok(())
                    } else {
                        Err(e.context(format!("creating container `{container}`")))
                    }
                }
            }
        })
    }

    /// Fails, naming the container, unless `container` exists (one listing of at most
    /// one blob): checked before creating something that would write there later.
    pub fn check_container<'a>(&'a self, container: &'a str) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            check_container_name(container)?;
            self.check(Access::List)?;
            let client = self.container_client(container)?;
            let options = BlobContainerClientListBlobsOptions {
                maxresults: Some(1),
                ..Default::default()
            };
            let mut pages = client.list_blobs(Some(options))?.into_pages();
            pages
                .try_next()
                .await
                .map_err(|e| not_found_hint(Error::from(e), container, &self.account))?;
            Ok(())
        })
    }

    /// All blobs under `container/prefix`, following continuation markers.
    pub fn list<'a>(
        &'a self,
        container: &'a str,
        prefix: &'a str,
    ) -> BoxFuture<'a, Result<Vec<BlobEntry>>> {
        Box::pin(async move {
            check_container_name(container)?;
            self.check(Access::List)?;
            let client = self.container_client(container)?;
            let options = BlobContainerClientListBlobsOptions {
                prefix: (!prefix.is_empty()).then(|| prefix.to_string()),
                ..Default::default()
            };
            let mut pages = client.list_blobs(Some(options))?.into_pages();
            let mut out = Vec::new();
            while let Some(page) = pages
                .try_next()
                .await
                .map_err(|e| not_found_hint(Error::from(e), container, &self.account))?
            {
                let page = page.into_model()?;
                for item in page.blob_items {
                    let Some(name) = item.name else {
                        continue;
                    };
                    let props = item.properties;
                    out.push(BlobEntry {
                        path: format!("{container}/{name}"),
                        size: props.as_ref().and_then(|p| p.content_length).unwrap_or(0),
                        last_modified: props.as_ref().and_then(|p| p.last_modified).and_then(|t| {
                            t.format(&time::format_description::well_known::Rfc3339)
                                .ok()
                        }),
                        etag: props.and_then(|p| p.etag).map(|e| e.to_string()),
                    });
                }
            }
            Ok(out)
        })
    }

    pub fn delete<'a>(&'a self, container: &'a str, blob: &'a str) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            self.check(Access::Delete)?;
            let client = self.blob_client(container, blob)?;
            client.delete(None).await.map_err(|e| {
                not_found_hint_for(Error::from(e), container, Some(blob), &self.account)
            })?;
            Ok(())
        })
    }

    /// Read a small blob (a manifest, a record) whole.
    pub async fn get_bytes(&self, container: &str, blob: &str) -> Result<Vec<u8>> {
        self.check(Access::Read)?;
        let client = self.blob_client(container, blob)?;
        let result = client.download(None).await.map_err(|e| {
            not_found_hint_for(Error::from(e), container, Some(blob), &self.account)
        })?;
        let body: Vec<bytes::Bytes> = result.body.try_collect().await?;
        Ok(body.concat())
    }

    /// Write a small blob in one request. With `if_none_match`, an existing blob is
    /// never overwritten: the call fails with a 409 conflict instead.
    pub async fn put_bytes(
        &self,
        container: &str,
        blob: &str,
        data: Vec<u8>,
        content_type: &str,
        if_none_match: bool,
    ) -> Result<()> {
        self.check(Access::Write)?;
        let client = self.blob_client(container, blob)?;
        let md5 = md5_digest(&data);
        let options = BlobClientUploadOptions {
            if_none_match: if_none_match.then(|| Etag::from("*")),
            blob_content_type: Some(content_type.to_string()),
            blob_content_md5: Some(md5),
            ..Default::default()
        };
        let body: RequestContent<azure_core::Bytes, azure_core::http::NoFormat> =
            azure_core::Bytes::from(data).into();
        client
            .upload(body, Some(options))
            .await
            .map_err(|e| not_found_hint(Error::from(e), container, &self.account))?;
        Ok(())
    }

    /// User metadata of a blob (`x-ms-meta-*`), e.g. the sha256 we store on upload.
    pub async fn metadata(&self, container: &str, blob: &str) -> Result<HashMap<String, String>> {
        self.check(Access::Read)?;
        let client = self.blob_client(container, blob)?;
        let props = client.get_properties(None).await.map_err(|e| {
            not_found_hint_for(Error::from(e), container, Some(blob), &self.account)
        })?;
        Ok(azure_storage_blob::models::BlobClientGetPropertiesResultHeaders::metadata(&props)?)
    }
}

/// Turn a bare 404 into a message that says what is missing and what to do.
fn not_found_hint(err: Error, container: &str, account: &str) -> Error {
    not_found_hint_for(err, container, None, account)
}

/// [`not_found_hint`] for an operation on one blob, which a 404 then names.
pub(crate) fn not_found_hint_for(
    err: Error,
    container: &str,
    blob: Option<&str>,
    account: &str,
) -> Error {
    match err.code.as_deref() {
        Some("ContainerNotFound") => {
            let message = format!(
                "container `{container}` does not exist in storage account `{account}`; create it (e.g. `az storage container create -n {container}`) or use another container"
            );
            Error { message, ..err }
        }
        Some("BlobNotFound") => Error {
            message: match blob {
                Some(b) => format!(
                    "{}: blob `{container}/{b}` does not exist in storage account `{account}`; list what is there with `blob_list()`",
                    err.message
                ),
                None => format!("{} (no such blob in `{container}`)", err.message),
            },
            ..err
        },
        _ => err,
    }
}

pub(crate) fn md5_digest(data: &[u8]) -> Vec<u8> {
    use md5::{Digest, Md5};
    Md5::digest(data).to_vec()
}

fn percent_encode(segment: &str) -> String {
    const KEEP: &[u8] = b"-_.~";
    let mut out = String::with_capacity(segment.len());
    for b in segment.bytes() {
        if b.is_ascii_alphanumeric() || KEEP.contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_path_checks_container_and_name() {
        assert_eq!(split_path("data/in/a.csv").unwrap(), ("data", "in/a.csv"));
        assert!(split_path("data").is_err());
        assert!(split_path("Data/x").is_err());
        assert!(split_path("ab/x").is_err());
        assert!(split_path("a--b/x").is_err());
        // Segments a URL would resolve, empty ones and a trailing dot are input errors.
        for bad in [
            "serverless/../other/x.csv",
            "serverless/./x.csv",
            "serverless/a/..",
            "serverless/a//b",
            "serverless/a/",
            "serverless/x.",
        ] {
            let err = split_path(bad).unwrap_err();
            assert_eq!(err.kind, crate::ErrorKind::Input, "{bad}");
        }
        assert_eq!(split_path("data/a.b/..c").unwrap(), ("data", "a.b/..c"));
    }

    #[test]
    fn percent_encoding_keeps_unreserved() {
        assert_eq!(percent_encode("a b%é.csv"), "a%20b%25%C3%A9.csv");
    }
}
