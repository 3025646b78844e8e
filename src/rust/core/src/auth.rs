//! Token sources. Everything that speaks to Azure with Entra ID takes an
//! `Arc<dyn TokenCredential>` (the `azure_core` trait), so ARM, Blob and ACR share one.
//!
//! `azure_identity` supplies the flows it has (client secret, managed identity, workload
//! identity, Azure CLI); device code is ours, behind the same trait. Authority host and
//! the trusted CA are configurable: that is how the local Azure plugs in.

use crate::error::{Error, ErrorKind, Result};
use crate::BoxFuture;
use azure_core::cloud::{CloudConfiguration, CustomConfiguration};
use azure_core::credentials::{AccessToken, Secret, TokenCredential, TokenRequestOptions};
use azure_core::http::{ClientOptions, Transport};
use serde::Deserialize;
use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use time::OffsetDateTime;

/// Where the identity and management endpoints are (Azure's by default).
#[derive(Clone, Deserialize)]
pub struct Endpoints {
    #[serde(default = "default_authority")]
    pub authority_host: String,
    #[serde(default = "default_arm")]
    pub arm: String,
    /// A PEM certificate to trust in addition to the system roots (the local Azure's).
    #[serde(default)]
    pub ca_pem: Option<String>,
}

fn default_authority() -> String {
    "https://login.microsoftonline.com".into()
}

fn default_arm() -> String {
    "https://management.azure.com".into()
}

impl Default for Endpoints {
    fn default() -> Self {
        Endpoints {
            authority_host: default_authority(),
            arm: default_arm(),
            ca_pem: None,
        }
    }
}

impl fmt::Debug for Endpoints {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Endpoints")
            .field("authority_host", &self.authority_host)
            .field("arm", &self.arm)
            .finish_non_exhaustive()
    }
}

impl Endpoints {
    /// One HTTP client for every call to these endpoints, trusting `ca_pem` if given.
    pub fn http_client(&self) -> Result<reqwest::Client> {
        crate::install_crypto_provider();
        let mut builder = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(20))
            .timeout(Duration::from_secs(120));
        if let Some(pem) = &self.ca_pem {
            let cert = reqwest::Certificate::from_pem(pem.as_bytes())
                .map_err(|e| Error::input(format!("the CA certificate is not valid PEM: {e}")))?;
            builder = builder.add_root_certificate(cert);
        }
        builder
            .build()
            .map_err(|e| Error::internal(format!("cannot build the HTTP client: {e}")))
    }

    fn client_options(&self) -> Result<ClientOptions> {
        let mut custom = CustomConfiguration::default();
        custom.authority_host = self.authority_host.trim_end_matches('/').to_string();
        let cloud: CloudConfiguration = custom.into();
        Ok(ClientOptions {
            cloud: Some(Arc::new(cloud)),
            transport: Some(Transport::new(Arc::new(self.http_client()?))),
            ..Default::default()
        })
    }
}

/// A credential as the R side describes it.
#[derive(Clone, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum CredentialSpec {
    ClientSecret {
        tenant: String,
        client_id: String,
        client_secret: String,
    },
    DeviceCode {
        tenant: String,
        client_id: String,
    },
    ManagedIdentity {
        #[serde(default)]
        client_id: Option<String>,
    },
    /// The identity Azure Container Instances gives a container: tokens from the
    /// instance metadata service (IMDS), exactly as a scoring job gets them. Its
    /// `endpoint` is `http://169.254.169.254` unless overridden (the local Azure).
    Imds {
        #[serde(default)]
        client_id: Option<String>,
        #[serde(default)]
        endpoint: Option<String>,
    },
    WorkloadIdentity {
        #[serde(default)]
        tenant: Option<String>,
        #[serde(default)]
        client_id: Option<String>,
    },
    Cli {
        #[serde(default)]
        tenant: Option<String>,
    },
    /// A token the user already has (e.g. from `az account get-access-token`).
    Token {
        token: String,
    },
}

impl fmt::Debug for CredentialSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CredentialSpec::ClientSecret { .. } => "ClientSecret",
            CredentialSpec::DeviceCode { .. } => "DeviceCode",
            CredentialSpec::ManagedIdentity { .. } => "ManagedIdentity",
            CredentialSpec::Imds { .. } => "Imds",
            CredentialSpec::WorkloadIdentity { .. } => "WorkloadIdentity",
            CredentialSpec::Cli { .. } => "Cli",
            CredentialSpec::Token { .. } => "Token",
        })
    }
}

/// Messages a credential wants the user to see (the device-code prompt).
pub type Notices = Arc<Mutex<Vec<String>>>;

/// Build the credential `spec` describes.
pub fn credential(
    spec: &CredentialSpec,
    endpoints: &Endpoints,
    notices: Notices,
) -> Result<Arc<dyn TokenCredential>> {
    let map = |e: azure_core::Error| Error::auth(e.to_string());
    Ok(match spec {
        CredentialSpec::ClientSecret {
            tenant,
            client_id,
            client_secret,
        } => {
            let options = azure_identity::ClientSecretCredentialOptions {
                client_options: endpoints.client_options()?,
            };
            azure_identity::ClientSecretCredential::new(
                tenant,
                client_id.clone(),
                Secret::new(client_secret.clone()),
                Some(options),
            )
            .map_err(map)?
        }
        CredentialSpec::DeviceCode { tenant, client_id } => Arc::new(DeviceCodeCredential {
            tenant: tenant.clone(),
            client_id: client_id.clone(),
            authority_host: endpoints.authority_host.trim_end_matches('/').to_string(),
            http: endpoints.http_client()?,
            notices,
            cache: TokenCache::default(),
        }),
        CredentialSpec::ManagedIdentity { client_id } => {
            let options = azure_identity::ManagedIdentityCredentialOptions {
                user_assigned_id: client_id
                    .clone()
                    .map(azure_identity::UserAssignedId::ClientId),
                client_options: endpoints.client_options()?,
            };
            azure_identity::ManagedIdentityCredential::new(Some(options)).map_err(map)?
        }
        CredentialSpec::Imds {
            client_id,
            endpoint,
        } => Arc::new(ImdsCredential {
            endpoint: endpoint
                .as_deref()
                .unwrap_or(IMDS_ENDPOINT)
                .trim_end_matches('/')
                .to_string(),
            client_id: client_id.clone(),
            http: Endpoints::default().http_client()?,
            cache: TokenCache::default(),
        }),
        CredentialSpec::WorkloadIdentity { tenant, client_id } => {
            let options = azure_identity::WorkloadIdentityCredentialOptions {
                tenant_id: tenant.clone(),
                client_id: client_id.clone(),
                credential_options: azure_identity::ClientAssertionCredentialOptions {
                    client_options: endpoints.client_options()?,
                },
                ..Default::default()
            };
            azure_identity::WorkloadIdentityCredential::new(Some(options)).map_err(map)?
        }
        CredentialSpec::Cli { tenant } => {
            let options = azure_identity::AzureCliCredentialOptions {
                tenant_id: tenant.clone(),
                ..Default::default()
            };
            azure_identity::AzureCliCredential::new(Some(options)).map_err(map)?
        }
        CredentialSpec::Token { token } => Arc::new(StaticToken::new(
            token.clone(),
            OffsetDateTime::now_utc() + time::Duration::hours(1),
        )),
    })
}

/// Get a token for `scope`, with errors in our terms (never quoting the secret).
pub fn token<'a>(
    cred: &'a dyn TokenCredential,
    scope: &'a str,
) -> BoxFuture<'a, Result<AccessToken>> {
    Box::pin(async move {
        cred.get_token(&[scope], None).await.map_err(|e| {
            let text = crate::error::redact(&e.to_string());
            // The SDK appends a troubleshooting link; the first line is the service's word.
            let first = text.lines().next().unwrap_or("").to_string();
            Error::new(
                ErrorKind::Auth,
                format!("could not get a token for {scope}: {first}"),
            )
        })
    })
}

/// The claims of a JWT-shaped token, without checking its signature (for display:
/// audience, tenant, expiry).
pub fn jwt_claims(token: &str) -> Option<serde_json::Value> {
    use base64::Engine;
    let payload = token.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// A bearer token the user already has.
pub struct StaticToken {
    token: Secret,
    expires_on: OffsetDateTime,
}

impl StaticToken {
    pub fn new(token: String, expires_on: OffsetDateTime) -> Self {
        StaticToken {
            token: Secret::new(token),
            expires_on,
        }
    }
}

// Never print the token itself.
impl fmt::Debug for StaticToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StaticToken")
            .field("expires_on", &self.expires_on)
            .finish_non_exhaustive()
    }
}

#[async_trait::async_trait]
impl TokenCredential for StaticToken {
    async fn get_token(
        &self,
        _scopes: &[&str],
        _options: Option<TokenRequestOptions<'_>>,
    ) -> azure_core::Result<AccessToken> {
        Ok(AccessToken::new(self.token.clone(), self.expires_on))
    }
}

/// Tokens by scope (or resource), reused while more than five minutes remain.
#[derive(Default)]
struct TokenCache(Mutex<HashMap<String, AccessToken>>);

impl TokenCache {
    fn fresh(&self, key: &str) -> Option<AccessToken> {
        let cache = self.0.lock().unwrap_or_else(|e| e.into_inner());
        cache
            .get(key)
            .filter(|t| t.expires_on > OffsetDateTime::now_utc() + time::Duration::minutes(5))
            .cloned()
    }

    fn put(&self, key: String, token: &AccessToken) {
        let mut cache = self.0.lock().unwrap_or_else(|e| e.into_inner());
        cache.insert(key, token.clone());
    }
}

/// Where Azure serves the instance metadata service, in every VM and container.
const IMDS_ENDPOINT: &str = "http://169.254.169.254";

/// Tokens from the instance metadata service, as ACI serves it to containers:
/// `GET {endpoint}/metadata/identity/oauth2/token?api-version=2018-02-01&resource=R
/// [&client_id=C]` with `Metadata: true` (Microsoft's "How to use managed identities
/// with Azure Container Instances" and "acquire an access token" on a VM). Retries
/// 429 and 5xx, which IMDS answers while it starts or when throttled.
pub struct ImdsCredential {
    endpoint: String,
    client_id: Option<String>,
    http: reqwest::Client,
    cache: TokenCache,
}

impl fmt::Debug for ImdsCredential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ImdsCredential")
            .field("endpoint", &self.endpoint)
            .field("client_id", &self.client_id)
            .finish_non_exhaustive()
    }
}

#[derive(Deserialize)]
struct ImdsToken {
    access_token: String,
    /// Seconds since the epoch, as a string (IMDS) or a number.
    expires_on: serde_json::Value,
}

impl ImdsCredential {
    async fn fetch(&self, resource: &str) -> azure_core::Result<AccessToken> {
        let fail = |message: String| {
            azure_core::Error::with_message(azure_core::error::ErrorKind::Credential, message)
        };
        let mut query = vec![("api-version", "2018-02-01"), ("resource", resource)];
        if let Some(id) = &self.client_id {
            query.push(("client_id", id));
        }
        let url = url::Url::parse_with_params(
            &format!("{}/metadata/identity/oauth2/token", self.endpoint),
            &query,
        )
        .map_err(|e| fail(format!("the instance metadata endpoint is not a URL: {e}")))?;
        let mut delay = Duration::from_millis(500);
        for attempt in 1..=5 {
            let response = self
                .http
                .get(url.clone())
                .header("Metadata", "true")
                .send()
                .await;
            let retry = match response {
                Ok(r) if r.status().is_success() => {
                    let token: ImdsToken = r.json().await.map_err(|e| {
                        fail(format!("the instance metadata service answered: {e}"))
                    })?;
                    let expires = match &token.expires_on {
                        serde_json::Value::String(s) => s.parse::<i64>().ok(),
                        v => v.as_i64(),
                    }
                    .and_then(|t| OffsetDateTime::from_unix_timestamp(t).ok())
                    .ok_or_else(|| fail("the instance metadata service gave no expiry".into()))?;
                    return Ok(AccessToken::new(token.access_token, expires));
                }
                Ok(r) => {
                    let status = r.status();
                    let body = r.text().await.unwrap_or_default();
                    let message = format!(
                        "the instance metadata service refused a token for {resource}: {status} {}",
                        body.trim()
                    );
                    if !(status.as_u16() == 429 || status.is_server_error()) {
                        return Err(fail(message));
                    }
                    message
                }
                Err(e) => format!(
                    "the instance metadata service at {} did not answer: {}",
                    url.origin().ascii_serialization(),
                    e.without_url()
                ),
            };
            if attempt == 5 {
                return Err(fail(retry));
            }
            tokio::time::sleep(delay).await;
            delay *= 2;
        }
        unreachable!("the loop returns on its last attempt")
    }
}

#[async_trait::async_trait]
impl TokenCredential for ImdsCredential {
    async fn get_token(
        &self,
        scopes: &[&str],
        _options: Option<TokenRequestOptions<'_>>,
    ) -> azure_core::Result<AccessToken> {
        // IMDS takes a resource, not scopes: `https://storage.azure.com/.default`.
        let scope = scopes.first().copied().unwrap_or_default();
        let resource = scope.strip_suffix("/.default").unwrap_or(scope).to_string();
        if let Some(t) = self.cache.fresh(&resource) {
            return Ok(t);
        }
        let token = self.fetch(&resource).await?;
        self.cache.put(resource, &token);
        Ok(token)
    }
}

/// Device code flow (interactive): `azure_identity` 1.x does not have it.
pub struct DeviceCodeCredential {
    tenant: String,
    client_id: String,
    authority_host: String,
    http: reqwest::Client,
    notices: Notices,
    cache: TokenCache,
}

impl fmt::Debug for DeviceCodeCredential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DeviceCodeCredential")
            .field("tenant", &self.tenant)
            .field("client_id", &self.client_id)
            .finish_non_exhaustive()
    }
}

#[derive(Deserialize)]
struct DeviceCodeReply {
    device_code: String,
    message: Option<String>,
    user_code: String,
    verification_uri: String,
    #[serde(default = "five")]
    interval: u64,
    #[serde(default = "fifteen_minutes")]
    expires_in: u64,
}

fn five() -> u64 {
    5
}
fn fifteen_minutes() -> u64 {
    900
}

#[derive(Deserialize)]
struct TokenReply {
    access_token: Option<String>,
    expires_in: Option<u64>,
    error: Option<String>,
    error_description: Option<String>,
}

fn credential_error(message: String) -> azure_core::Error {
    azure_core::Error::with_message(azure_core::error::ErrorKind::Credential, message)
}

impl DeviceCodeCredential {
    async fn fetch(&self, scope: &str) -> azure_core::Result<AccessToken> {
        let base = format!("{}/{}/oauth2/v2.0", self.authority_host, self.tenant);
        let reply: DeviceCodeReply = self
            .http
            .post(format!("{base}/devicecode"))
            .form(&[("client_id", self.client_id.as_str()), ("scope", scope)])
            .send()
            .await
            .map_err(|e| credential_error(format!("device code request failed: {e}")))?
            .json()
            .await
            .map_err(|e| credential_error(format!("device code reply was not understood: {e}")))?;
        let prompt = reply.message.clone().unwrap_or_else(|| {
            format!(
                "To sign in, open {} and enter the code {}",
                reply.verification_uri, reply.user_code
            )
        });
        self.notices
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(prompt);
        let deadline = std::time::Instant::now() + Duration::from_secs(reply.expires_in);
        let mut interval = reply.interval.max(1);
        loop {
            tokio::time::sleep(Duration::from_secs(interval)).await;
            if std::time::Instant::now() > deadline {
                return Err(credential_error(
                    "the device code expired before sign-in".into(),
                ));
            }
            let rsp: TokenReply = self
                .http
                .post(format!("{base}/token"))
                .form(&[
                    ("grant_type", "urn:ietf:params:oauth:grant-type:device_code"),
                    ("client_id", self.client_id.as_str()),
                    ("device_code", reply.device_code.as_str()),
                ])
                .send()
                .await
                .map_err(|e| credential_error(format!("token request failed: {e}")))?
                .json()
                .await
                .map_err(|e| credential_error(format!("token reply was not understood: {e}")))?;
            match (rsp.access_token, rsp.error.as_deref()) {
                (Some(token), _) => {
                    let expires = OffsetDateTime::now_utc()
                        + time::Duration::seconds(rsp.expires_in.unwrap_or(3600) as i64);
                    return Ok(AccessToken::new(Secret::new(token), expires));
                }
                (None, Some("authorization_pending")) => {}
                (None, Some("slow_down")) => interval += 5,
                (None, err) => {
                    return Err(credential_error(format!(
                        "sign-in failed: {} {}",
                        err.unwrap_or("unknown error"),
                        rsp.error_description.unwrap_or_default()
                    )))
                }
            }
        }
    }
}

#[async_trait::async_trait]
impl TokenCredential for DeviceCodeCredential {
    async fn get_token(
        &self,
        scopes: &[&str],
        _options: Option<TokenRequestOptions<'_>>,
    ) -> azure_core::Result<AccessToken> {
        let scope = scopes.join(" ");
        if let Some(t) = self.cache.fresh(&scope) {
            return Ok(t);
        }
        let token = self.fetch(&scope).await?;
        self.cache.put(scope, &token);
        Ok(token)
    }
}
